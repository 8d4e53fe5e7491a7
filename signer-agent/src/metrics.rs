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
//! - `signer_agent_signatures_discarded_total`: signatures computed while the record was
//!   committing, then dropped unreleased because the verdict refused them;
//! - `signer_agent_record_batch_size`: records per batch sent to the coordinators;
//! - `signer_agent_record_batch_duration_seconds`: time from sending a batch to its answer;
//! - `signer_agent_record_batches_total{result}`: batches by result (`ok`, `not_holder`,
//!   `unavailable` (including timeouts and transport errors), `rejected`);
//! - `signer_agent_keys_loaded`: keys decrypted and usable;
//! - `signer_agent_keys_configured`: keys the agent is meant to hold: the keystores found at
//!   start, plus keys imported and minus keys deleted through the keymanager API (a loaded
//!   count below it, or zero keys, means keys are not loaded);
//! - `signer_agent_signing_state`: 1 for the current state label (`enabled`, `fenced`,
//!   `unknown`), 0 for the others; `signer_agent_authority_token`: last token observed.
//!
//! Counters whose label values are known in advance exist from the start at zero, so
//! `increase()` sees their first event: every Web3Signer type with the outcomes `signed`,
//! `not_holder` and `unavailable`, the slashable types with `slashing_protection`, and every
//! batch result.

use failover_common::eth::{SLASHABLE_TYPES, WEB3SIGNER_TYPES};
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
    /// Signatures queued or computed while the record was committing, then dropped because
    /// the verdict did not allow them (never released; DESIGN.md I4).
    pub signatures_discarded: IntCounter,
    /// Records per batch.
    pub batch_size: Histogram,
    /// Batch round-trip time (seconds).
    pub batch_duration: Histogram,
    /// Batches by `result`.
    pub batches: IntCounterVec,
    /// Keys loaded.
    pub keys_loaded: IntGauge,
    /// Keys the agent is meant to hold (keystores found at start, plus keymanager imports,
    /// minus deletions).
    pub keys_configured: IntGauge,
    /// Signing state, one series per state label.
    pub signing_state: IntGaugeVec,
    /// Last fencing token observed.
    pub authority_token: IntGauge,
    /// notAfter of the TLS certificates in force (Unix seconds) by `cert` (`agent`: this
    /// agent's own, `ca`: the cluster CA's earliest); no series without TLS.
    pub tls_not_after: IntGaugeVec,
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
        let signatures_discarded = IntCounter::new(
            "signer_agent_signatures_discarded_total",
            "Signatures queued or computed while their record was committing, dropped \
             unreleased because the verdict was not valid or same_data, or no verdict came.",
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
        let keys_configured = IntGauge::new(
            "signer_agent_keys_configured",
            "Validator keys the agent is meant to hold: keystores found at start, plus imports, \
             minus deletions.",
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
        let tls_not_after = IntGaugeVec::new(
            Opts::new(
                "signer_agent_tls_cert_not_after_seconds",
                "notAfter of the TLS certificate in force, Unix seconds, by cert (`agent`: this \
                 agent's own, `ca`: the cluster CA's earliest). No series without TLS.",
            ),
            &["cert"],
        )
        .expect("metric");
        for c in [
            Box::new(sign_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(tls_not_after.clone()),
            Box::new(sign_duration.clone()),
            Box::new(signatures.clone()),
            Box::new(signatures_discarded.clone()),
            Box::new(batch_size.clone()),
            Box::new(batch_duration.clone()),
            Box::new(batches.clone()),
            Box::new(keys_loaded.clone()),
            Box::new(keys_configured.clone()),
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
        for t in WEB3SIGNER_TYPES {
            for outcome in ["signed", "not_holder", "unavailable"] {
                sign_requests.with_label_values(&[t, outcome]);
            }
        }
        for t in SLASHABLE_TYPES {
            sign_requests.with_label_values(&[t, "slashing_protection"]);
        }
        for r in ["ok", "not_holder", "unavailable", "rejected"] {
            batches.with_label_values(&[r]);
        }
        Self {
            registry,
            sign_requests,
            sign_duration,
            signatures,
            signatures_discarded,
            batch_size,
            batch_duration,
            batches,
            keys_loaded,
            keys_configured,
            signing_state,
            authority_token,
            tls_not_after,
        }
    }

    /// Sets the TLS gauges from the material in force.
    pub fn refresh_tls(&self, tls: &failover_common::tls::Tls) {
        self.tls_not_after
            .with_label_values(&["agent"])
            .set(tls.leaf().not_after);
        if let Some(ca) = tls.ca().iter().map(|c| c.not_after).min() {
            self.tls_not_after.with_label_values(&["ca"]).set(ca);
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

    /// Names of every metric family (histograms without their `_bucket`, `_sum` and `_count`
    /// suffixes).
    pub fn names(&self) -> Vec<String> {
        [
            "signer_agent_sign_requests_total",
            "signer_agent_sign_duration_seconds",
            "signer_agent_signatures_total",
            "signer_agent_signatures_discarded_total",
            "signer_agent_record_batch_size",
            "signer_agent_record_batch_duration_seconds",
            "signer_agent_record_batches_total",
            "signer_agent_keys_loaded",
            "signer_agent_keys_configured",
            "signer_agent_signing_state",
            "signer_agent_authority_token",
            "signer_agent_tls_cert_not_after_seconds",
        ]
        .map(String::from)
        .to_vec()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the series whose line starts with `series` (name and labels).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn alerting_counters_and_key_gauges_exist_from_the_start() {
        let m = Metrics::new();
        let text = m.render();
        for series in [
            "signer_agent_sign_requests_total{outcome=\"slashing_protection\",type=\"ATTESTATION\"}",
            "signer_agent_sign_requests_total{outcome=\"unavailable\",type=\"BLOCK_V2\"}",
            "signer_agent_sign_requests_total{outcome=\"not_holder\",type=\"RANDAO_REVEAL\"}",
            "signer_agent_record_batches_total{result=\"unavailable\"}",
            "signer_agent_keys_loaded",
            "signer_agent_keys_configured",
        ] {
            assert_eq!(value(&text, series), Some(0.0), "{series} in\n{text}");
        }
        // Every family rendered is named by names(), and every name is a family.
        let families: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let m2 = Metrics::new();
        m2.sign_duration
            .with_label_values(&["ATTESTATION"])
            .observe(0.1);
        m2.batch_size.observe(1.0);
        m2.batch_duration.observe(0.1);
        m2.tls_not_after.with_label_values(&["agent"]).set(1);
        let text2 = m2.render();
        let families2: std::collections::BTreeSet<&str> = text2
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert!(families.is_subset(&families2));
        let names = m.names();
        assert_eq!(
            families2,
            names.iter().map(String::as_str).collect(),
            "names() must list every family"
        );
    }

    #[test]
    fn keys_configured_above_loaded_shows_keys_not_loaded() {
        let m = Metrics::new();
        m.keys_configured.set(8);
        m.keys_loaded.set(3);
        let text = m.render();
        assert_eq!(value(&text, "signer_agent_keys_configured"), Some(8.0));
        assert_eq!(value(&text, "signer_agent_keys_loaded"), Some(3.0));
    }
}
