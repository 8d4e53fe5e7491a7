//! Prometheus metrics of one agent, in its own registry (so tests can run several agents in one
//! process). Served as text at `GET /metrics`.
//!
//! Series:
//! - `signer_agent_sign_requests_total{type, outcome}`: sign requests by Web3Signer type and
//!   outcome (`signed`, or the error code of `api::ErrorBody`: `slashing_protection`,
//!   `not_holder`, `unavailable`, `bad_request`, `unsupported_type`, `wrong_genesis`,
//!   `unknown_key`, `voluntary_exit_disabled`, `internal`); `type` is `unknown` until the body
//!   names a valid Web3Signer type;
//! - `signer_agent_sign_duration_seconds{type}`: sign request latency (seconds);
//! - `signer_agent_signatures_total`: signatures produced;
//! - `signer_agent_record_batch_size`: records per batch sent to the coordinators;
//! - `signer_agent_record_batch_duration_seconds`: time from sending a batch to its answer;
//! - `signer_agent_record_batches_total{result}`: batches by result (`ok`, `not_holder`,
//!   `unavailable` (including timeouts and transport errors), `rejected`);
//! - `signer_agent_keys_loaded`: keys decrypted and usable;
//! - `signer_agent_signing_state`: 1 for the current state label (`enabled`, `fenced`,
//!   `unknown`), 0 for the others; `signer_agent_authority_token`: last token observed.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All metrics of one agent.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Sign requests by `type` and `outcome`.
    pub sign_requests: IntCounterVec,
    /// Sign request latency by `type` (seconds).
    pub sign_duration: HistogramVec,
    /// Signatures produced.
    pub signatures: IntCounter,
    /// Records per batch.
    pub batch_size: Histogram,
    /// Batch round-trip time (seconds).
    pub batch_duration: Histogram,
    /// Batches by `result`.
    pub batches: IntCounterVec,
    /// Keys loaded.
    pub keys_loaded: IntGauge,
    /// Signing state, one series per state label.
    pub signing_state: IntGaugeVec,
    /// Last fencing token observed.
    pub authority_token: IntGauge,
}

impl Metrics {
    /// Creates and registers every series.
    ///
    /// Panics only on a duplicate registration, which this constructor cannot cause.
    pub fn new() -> Self {
        let registry = Registry::new();
        let sign_requests = IntCounterVec::new(
            Opts::new(
                "signer_agent_sign_requests_total",
                "Sign requests by Web3Signer type and outcome.",
            ),
            &["type", "outcome"],
        )
        .expect("metric");
        let sign_duration = HistogramVec::new(
            HistogramOpts::new(
                "signer_agent_sign_duration_seconds",
                "Sign request latency in seconds, from arrival to answer.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["type"],
        )
        .expect("metric");
        let signatures = IntCounter::new(
            "signer_agent_signatures_total",
            "BLS signatures produced and returned.",
        )
        .expect("metric");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "signer_agent_record_batch_size",
                "Records per POST /v1/agent/records batch.",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ]),
        )
        .expect("metric");
        let batch_duration = Histogram::with_opts(
            HistogramOpts::new(
                "signer_agent_record_batch_duration_seconds",
                "Record batch round trip to the coordinators in seconds.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("metric");
        let batches = IntCounterVec::new(
            Opts::new(
                "signer_agent_record_batches_total",
                "Record batches by result.",
            ),
            &["result"],
        )
        .expect("metric");
        let keys_loaded = IntGauge::new(
            "signer_agent_keys_loaded",
            "Validator keys decrypted and usable.",
        )
        .expect("metric");
        let signing_state = IntGaugeVec::new(
            Opts::new(
                "signer_agent_signing_state",
                "1 for the current signing state (enabled, fenced, unknown), else 0.",
            ),
            &["state"],
        )
        .expect("metric");
        let authority_token = IntGauge::new(
            "signer_agent_authority_token",
            "Largest fencing token observed from the coordinators.",
        )
        .expect("metric");
        for c in [
            Box::new(sign_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sign_duration.clone()),
            Box::new(signatures.clone()),
            Box::new(batch_size.clone()),
            Box::new(batch_duration.clone()),
            Box::new(batches.clone()),
            Box::new(keys_loaded.clone()),
            Box::new(signing_state.clone()),
            Box::new(authority_token.clone()),
        ] {
            registry.register(c).expect("register metric");
        }
        for s in ["enabled", "fenced", "unknown"] {
            signing_state
                .with_label_values(&[s])
                .set((s == "unknown") as i64);
        }
        Self {
            registry,
            sign_requests,
            sign_duration,
            signatures,
            batch_size,
            batch_duration,
            batches,
            keys_loaded,
            signing_state,
            authority_token,
        }
    }

    /// Marks `state` (`enabled`, `fenced` or `unknown`) as the current signing state.
    pub fn set_signing_state(&self, state: &str) {
        for s in ["enabled", "fenced", "unknown"] {
            self.signing_state
                .with_label_values(&[s])
                .set((s == state) as i64);
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of gathered metrics");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
