//! Prometheus metrics of a coordinator (served at `GET /metrics`, text format).
//!
//! Names follow Prometheus conventions: base units, `_total` for counters, `_seconds` for
//! durations. Gauges describing Raft are refreshed from openraft's metrics by
//! [`Metrics::refresh`]; counters are incremented where the event happens.

use failover_common::beacon::{BeaconObservation, ObservationStatus};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::state::{HandoverState, StateData};
use crate::{NodeId, TypeConfig};

/// All coordinator metrics and their registry.
pub struct Metrics {
    registry: Registry,
    term: IntGauge,
    leader: IntGauge,
    is_leader: IntGauge,
    last_log_index: IntGauge,
    applied_index: IntGauge,
    authority_token: IntGauge,
    authority_fenced: IntGauge,
    handovers: IntGaugeVec,
    finalized_epoch: IntGauge,
    beacon_finalized_epoch: IntGaugeVec,
    beacon_usable: IntGaugeVec,
    /// Record verdicts by `verdict` (`valid`, `same_data`, or the refusal label) and
    /// `outcome` at the batch level (`recorded`, `not_holder`, `unavailable`).
    pub records: IntCounterVec,
    /// Items per record batch.
    pub batch_size: Histogram,
    /// Seconds from receiving a record batch to its committed answer.
    pub batch_latency: Histogram,
    /// Operator actions by `action` and `result` (`ok`, `rejected`, `unavailable`).
    pub operator_actions: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let g = |name: &str, help: &str| {
            let m = IntGauge::new(name, help).expect("metric");
            registry.register(Box::new(m.clone())).expect("register");
            m
        };
        let gv = |name: &str, help: &str, labels: &[&str]| {
            let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric");
            registry.register(Box::new(m.clone())).expect("register");
            m
        };
        let cv = |name: &str, help: &str, labels: &[&str]| {
            let m = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
            registry.register(Box::new(m.clone())).expect("register");
            m
        };
        let h = |name: &str, help: &str, buckets: Vec<f64>| {
            let m = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("metric");
            registry.register(Box::new(m.clone())).expect("register");
            m
        };
        Self {
            term: g("failover_raft_term", "Current Raft term."),
            leader: g(
                "failover_raft_leader_id",
                "Node id of the leader this node knows, 0 if none.",
            ),
            is_leader: g("failover_raft_is_leader", "1 if this node is the leader."),
            last_log_index: g(
                "failover_raft_last_log_index",
                "Index of the last log entry.",
            ),
            applied_index: g(
                "failover_raft_applied_index",
                "Index of the last applied entry.",
            ),
            authority_token: g(
                "failover_authority_token",
                "Current fencing token (log index of the grant).",
            ),
            authority_fenced: g(
                "failover_authority_fenced",
                "1 when no agent holds authority.",
            ),
            handovers: gv("failover_handovers", "Handovers by state.", &["state"]),
            finalized_epoch: g(
                "failover_finalized_epoch",
                "Agreed finalized epoch in the replicated state.",
            ),
            beacon_finalized_epoch: gv(
                "failover_beacon_finalized_epoch",
                "Finalized epoch reported by each beacon node at the last poll.",
                &["url"],
            ),
            beacon_usable: gv(
                "failover_beacon_usable",
                "1 if the beacon node counted at the last poll.",
                &["url"],
            ),
            records: cv(
                "failover_records_total",
                "Record items by verdict.",
                &["verdict"],
            ),
            batch_size: h(
                "failover_record_batch_size",
                "Items per agent record batch.",
                vec![1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0],
            ),
            batch_latency: h(
                "failover_record_batch_seconds",
                "Seconds from receiving a record batch to its committed answer.",
                prometheus::exponential_buckets(0.0005, 2.0, 14).expect("buckets"),
            ),
            operator_actions: cv(
                "failover_operator_actions_total",
                "Operator actions by action and result.",
                &["action", "result"],
            ),
            registry,
        }
    }

    /// Refreshes Raft and state gauges.
    pub fn refresh(
        &self,
        m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>,
        node: NodeId,
        s: &StateData,
    ) {
        let _: Option<TypeConfig> = None;
        self.term.set(m.current_term as i64);
        self.leader.set(m.current_leader.unwrap_or(0) as i64);
        self.is_leader
            .set(i64::from(m.current_leader == Some(node)));
        self.last_log_index
            .set(m.last_log_index.unwrap_or(0) as i64);
        self.applied_index
            .set(m.last_applied.map_or(0, |l| l.index) as i64);
        self.authority_token.set(s.authority.token as i64);
        self.authority_fenced
            .set(i64::from(s.authority.holder.is_none()));
        self.finalized_epoch.set(s.finalized_epoch() as i64);
        for st in [
            HandoverState::AwaitingFinality,
            HandoverState::AwaitingApproval,
            HandoverState::Completed,
            HandoverState::Aborted,
        ] {
            let n = s.handovers.values().filter(|h| h.state == st).count();
            let label = serde_json::to_value(st)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            self.handovers
                .with_label_values(&[label.as_str()])
                .set(n as i64);
        }
    }

    /// Records one poll of the beacon nodes.
    pub fn observe_beacons(&self, obs: &[BeaconObservation]) {
        for o in obs {
            let usable = matches!(o.status, ObservationStatus::Usable);
            self.beacon_usable
                .with_label_values(&[o.url.as_str()])
                .set(i64::from(usable));
            if let Some(cp) = &o.finalized {
                self.beacon_finalized_epoch
                    .with_label_values(&[o.url.as_str()])
                    .set(cp.epoch as i64);
            }
        }
    }

    /// Renders the Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encode metrics");
        String::from_utf8(buf).expect("utf8 metrics")
    }
}
