//! Prometheus metrics of a coordinator (served at `GET /metrics`, text format).
//!
//! Names follow Prometheus conventions: base units, `_total` for counters, `_seconds` for
//! durations. Gauges describing Raft are refreshed from openraft's metrics by
//! [`Metrics::refresh`]; counters are incremented where the event happens.

use failover_common::beacon::{BeaconObservation, ObservationStatus};
use std::collections::BTreeMap;

use failover_common::api::AgentId;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::node::Heartbeat;
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
    replication_lag: IntGaugeVec,
    quorum_ack_age: GaugeVec,
    authority_holder: IntGaugeVec,
    heartbeat_age: GaugeVec,
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
        let fv = |name: &str, help: &str, labels: &[&str]| {
            let m = GaugeVec::new(Opts::new(name, help), labels).expect("metric");
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
            replication_lag: gv(
                "failover_raft_replication_lag_entries",
                "Leader only: entries each follower is behind the leader's last log index.",
                &["peer"],
            ),
            quorum_ack_age: fv(
                "failover_raft_quorum_ack_age_seconds",
                "Leader only: seconds since a quorum last acknowledged this leader.",
                &["leader"],
            ),
            authority_holder: gv(
                "failover_authority_holder",
                "1 for the agent holding signing authority (no series while fenced).",
                &["agent"],
            ),
            heartbeat_age: fv(
                "failover_agent_heartbeat_age_seconds",
                "Seconds since this node last received a heartbeat from each agent.",
                &["agent"],
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

    /// Refreshes Raft, state and heartbeat gauges from openraft's metrics `m` of `node`, the
    /// replicated state `s` and the heartbeats this node received. Leader-only series
    /// (replication lag, quorum acknowledgement age) are removed on other nodes.
    pub fn refresh(
        &self,
        m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>,
        node: NodeId,
        s: &StateData,
        heartbeats: &BTreeMap<AgentId, Heartbeat>,
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
        self.replication_lag.reset();
        self.quorum_ack_age.reset();
        if m.current_leader == Some(node) {
            let last = m.last_log_index.unwrap_or(0);
            for (peer, matched) in m.replication.iter().flatten() {
                if *peer == node {
                    continue;
                }
                // Nothing matched yet: the whole log is missing (index 0 is the first entry).
                let behind = matched.map_or(last + 1, |l| last.saturating_sub(l.index));
                self.replication_lag
                    .with_label_values(&[peer.to_string().as_str()])
                    .set(behind as i64);
            }
            if let Some(ms) = m.millis_since_quorum_ack {
                self.quorum_ack_age
                    .with_label_values(&[node.to_string().as_str()])
                    .set(ms as f64 / 1000.0);
            }
        }
        self.authority_holder.reset();
        if let Some(h) = &s.authority.holder {
            self.authority_holder
                .with_label_values(&[h.as_str()])
                .set(1);
        }
        for (agent, hb) in heartbeats {
            self.heartbeat_age
                .with_label_values(&[agent.as_str()])
                .set(hb.at.elapsed().as_secs_f64());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, RaftMetrics};

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(3, 1), index)
    }

    /// The value of the series whose line starts with `series` (name and labels).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn leader_series_report_lag_quorum_age_holder_and_heartbeats() {
        let metrics = Metrics::new();
        let mut m = RaftMetrics::<NodeId, openraft::BasicNode>::new_initial(1);
        m.current_term = 3;
        m.current_leader = Some(1);
        m.last_log_index = Some(40);
        m.millis_since_quorum_ack = Some(250);
        m.replication = Some(BTreeMap::from([
            (1, Some(log_id(40))),
            (2, Some(log_id(37))),
            (3, None),
        ]));
        let mut s = StateData::default();
        s.authority.holder = Some("agent-eu".into());
        s.authority.token = 12;
        let heartbeats = BTreeMap::from([(
            "agent-eu".to_string(),
            Heartbeat {
                at: std::time::Instant::now() - std::time::Duration::from_secs(2),
                keys_loaded: 4,
            },
        )]);
        metrics.refresh(&m, 1, &s, &heartbeats);
        let text = metrics.render();
        assert_eq!(
            value(&text, "failover_raft_replication_lag_entries{peer=\"2\"}"),
            Some(3.0)
        );
        assert_eq!(
            value(&text, "failover_raft_replication_lag_entries{peer=\"3\"}"),
            Some(41.0)
        );
        assert_eq!(
            value(&text, "failover_raft_replication_lag_entries{peer=\"1\"}"),
            None
        );
        assert_eq!(
            value(&text, "failover_raft_quorum_ack_age_seconds{leader=\"1\"}"),
            Some(0.25)
        );
        assert_eq!(
            value(&text, "failover_authority_holder{agent=\"agent-eu\"}"),
            Some(1.0)
        );
        assert_eq!(value(&text, "failover_authority_token"), Some(12.0));
        let age = value(
            &text,
            "failover_agent_heartbeat_age_seconds{agent=\"agent-eu\"}",
        )
        .expect("a heartbeat age");
        assert!((2.0..60.0).contains(&age), "{age}");

        // The same node as a follower, with authority fenced: leader-only series and the
        // holder series disappear.
        m.current_leader = Some(2);
        s.authority.holder = None;
        metrics.refresh(&m, 1, &s, &heartbeats);
        let text = metrics.render();
        assert!(
            !text.contains("failover_raft_replication_lag_entries{"),
            "{text}"
        );
        assert!(
            !text.contains("failover_raft_quorum_ack_age_seconds{"),
            "{text}"
        );
        assert!(!text.contains("failover_authority_holder{"), "{text}");
        assert_eq!(value(&text, "failover_authority_fenced"), Some(1.0));
    }
}
