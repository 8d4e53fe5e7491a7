//! Prometheus metrics of a coordinator (served at `GET /metrics`, text format).
//!
//! Names follow Prometheus conventions: base units, `_total` for counters, `_seconds` for
//! durations. Gauges describing Raft are refreshed from openraft's metrics by
//! [`Metrics::refresh`]; counters are incremented where the event happens. Counters whose
//! label values are known in advance (503s by endpoint, record verdicts, beacon problems) are
//! created at zero, so `increase()` sees their first event.
//!
//! Series (see `grafana/README.md` for the full table):
//! - Raft: `failover_raft_term`, `failover_raft_leader_id`, `failover_raft_is_leader`,
//!   `failover_raft_last_log_index`, `failover_raft_applied_index`,
//!   `failover_raft_snapshot_last_index`, `failover_raft_replication_lag_entries{peer}` and
//!   `failover_raft_quorum_ack_age_seconds{leader}` (leader only),
//!   `failover_raft_elections_total` (term increases seen by this node),
//!   `failover_raft_leader_changes_total`, `failover_raft_snapshot_installs_total`;
//! - authority: `failover_authority_holder{agent}`, `failover_authority_token`,
//!   `failover_authority_fenced`, `failover_handovers{state}`,
//!   `failover_handover_state_age_seconds{state}`, `failover_handover_approvals_pending`,
//!   `failover_doppelganger_validators` (validators named by handovers stopped in
//!   `doppelganger_detected`), `failover_liveness_checks_total{result}` (leader: one per epoch
//!   of the liveness gate it tried, `clear`, `live` or `unavailable`);
//! - agents: `failover_agent_heartbeat_age_seconds{agent}`, `failover_agent_keys_loaded{agent}`;
//! - finality (beacon series on the leader only, which polls): `failover_finalized_epoch`,
//!   `failover_beacon_finalized_epoch{beacon}`, `failover_beacon_usable{beacon}`,
//!   `failover_beacon_head_slot{beacon}`, `failover_beacon_head_lag_slots{beacon}`,
//!   `failover_beacon_finality_lag_epochs{beacon}`, `failover_beacon_errors_total{beacon,kind}`;
//! - requests: `failover_unavailable_total{endpoint}` (every 503), `failover_records_total`,
//!   `failover_record_batch_size`, `failover_record_batch_seconds`,
//!   `failover_operator_actions_total{action,result}`,
//!   `failover_auth_failures_total{listener,reason}` ([`crate::guard`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use failover_common::beacon::BeaconPoll;
use failover_protocol::{AgentId, HandoverEvent, HandoverState};
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::state::StateData;
use crate::NodeId;
use failover_common::chain_time::now_ms;

/// Last heartbeat of an agent, as seen by this node (kept in the node's memory, exported as
/// `failover_agent_heartbeat_age_seconds` and in `GET /v1/status`).
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    /// When it arrived.
    pub at: Instant,
    /// Keys the agent reported loaded.
    pub keys_loaded: u64,
}

/// Routes whose 503 counter exists from the start (the fail-closed paths agents and
/// operators use); other routes get their series at their first 503.
pub const UNAVAILABLE_ENDPOINTS: &[&str] = &[
    "/v1/agent/records",
    "/v1/agent/register",
    "/v1/agent/heartbeat",
    "/v1/authority",
    "/v1/handovers",
    "/v1/handovers/{id}/approve",
    "/v1/handovers/{id}/abort",
    "/v1/slashing/import",
    "/internal/v1/write",
];

/// Label values of `failover_records_total{verdict}`: the accepted verdicts, every refusal
/// label (`failover_protocol::Refusal::label`) and the batch-level failures.
pub const RECORD_VERDICTS: &[&str] = &[
    "valid",
    "same_data",
    "double_block_proposal",
    "slot_below_watermark",
    "source_exceeds_target",
    "double_vote",
    "surrounding_vote",
    "surrounded_vote",
    "source_below_watermark",
    "target_below_watermark",
    "not_registered",
    "future_epoch",
    "not_holder",
    "unavailable",
];

/// Label values of `failover_beacon_errors_total{kind}` (`BeaconPoll::problem`).
pub const BEACON_ERROR_KINDS: &[&str] = &[
    "timeout",
    "transport",
    "http_status",
    "malformed",
    "syncing",
    "optimistic",
    "wrong_genesis",
    "invalid_checkpoint",
    "internal",
];

/// Open handover states, as `state` label values of the per-state age series.
const OPEN_STATES: [HandoverState; 4] = [
    HandoverState::AwaitingFinality,
    HandoverState::AwaitingLiveness,
    HandoverState::AwaitingApproval,
    HandoverState::DoppelgangerDetected,
];

/// Label values of `failover_liveness_checks_total{result}`.
pub const LIVENESS_RESULTS: &[&str] = &["clear", "live", "unavailable"];

/// The snake_case label of a handover state (its JSON form).
fn state_label(st: HandoverState) -> String {
    serde_json::to_value(st)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The Raft view counted by the change counters: last term and leader seen.
#[derive(Debug, Default)]
struct RaftSeen {
    term: Option<u64>,
    leader: Option<NodeId>,
}

/// All coordinator metrics and their registry.
pub struct Metrics {
    registry: Registry,
    names: Vec<String>,
    started: Instant,
    approvals_required: u32,
    raft_seen: Mutex<RaftSeen>,
    term: IntGauge,
    leader: IntGauge,
    is_leader: IntGauge,
    last_log_index: IntGauge,
    applied_index: IntGauge,
    snapshot_index: IntGauge,
    replication_lag: IntGaugeVec,
    quorum_ack_age: GaugeVec,
    elections: IntCounter,
    leader_changes: IntCounter,
    /// Snapshots this node installed from a leader (`POST /raft/snapshot`, last chunk
    /// accepted).
    pub snapshot_installs: IntCounter,
    authority_holder: IntGaugeVec,
    heartbeat_age: GaugeVec,
    agent_keys_loaded: IntGaugeVec,
    authority_token: IntGauge,
    authority_fenced: IntGauge,
    handovers: IntGaugeVec,
    handover_state_age: GaugeVec,
    approvals_pending: IntGauge,
    doppelganger_validators: IntGauge,
    /// Leader only: epochs of a liveness gate it tried, by `result` ([`LIVENESS_RESULTS`]).
    pub liveness_checks: IntCounterVec,
    finalized_epoch: IntGauge,
    beacon_finalized_epoch: IntGaugeVec,
    beacon_usable: IntGaugeVec,
    beacon_head_slot: IntGaugeVec,
    beacon_head_lag: IntGaugeVec,
    beacon_finality_lag: IntGaugeVec,
    beacon_errors: IntCounterVec,
    /// Every 503 this node answered, by `endpoint` (the matched route, e.g.
    /// `/v1/agent/records`): each one is a fail-closed refusal.
    pub unavailable: IntCounterVec,
    /// Record items by `verdict`: `valid`, `same_data`, a refusal label, or a batch-level
    /// failure (`not_holder`, `unavailable`) counted once per item of the batch.
    pub records: IntCounterVec,
    /// Items per record batch.
    pub batch_size: Histogram,
    /// Seconds from receiving a record batch to its committed answer.
    pub batch_latency: Histogram,
    /// Operator actions by `action` and `result` (`ok`, `rejected`, `unavailable`).
    pub operator_actions: IntCounterVec,
    /// Failed authentications by `listener` and `reason` ([`crate::guard`]).
    pub auth_failures: IntCounterVec,
    tls_not_after: IntGaugeVec,
    /// TLS reloads on SIGHUP by `result` (`ok`, `error`).
    pub tls_reloads: IntCounterVec,
    tls_handshake_failures: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric, for a cluster that needs one approval per
    /// handover (see [`Metrics::with_approvals_required`]).
    pub fn new() -> Self {
        Self::with_approvals_required(1)
    }

    /// Creates and registers every metric; `approvals_required` (the handover policy's
    /// `approvals_required`) is what `failover_handover_approvals_pending` counts against.
    pub fn with_approvals_required(approvals_required: u32) -> Self {
        let registry = Registry::new();
        let names = std::cell::RefCell::new(Vec::new());
        let reg = |c: Box<dyn prometheus::core::Collector>, name: &str| {
            registry.register(c).expect("register");
            names.borrow_mut().push(name.to_string());
        };
        let g = |name: &str, help: &str| {
            let m = IntGauge::new(name, help).expect("metric");
            reg(Box::new(m.clone()), name);
            m
        };
        let c = |name: &str, help: &str| {
            let m = IntCounter::new(name, help).expect("metric");
            reg(Box::new(m.clone()), name);
            m
        };
        let gv = |name: &str, help: &str, labels: &[&str]| {
            let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric");
            reg(Box::new(m.clone()), name);
            m
        };
        let fv = |name: &str, help: &str, labels: &[&str]| {
            let m = GaugeVec::new(Opts::new(name, help), labels).expect("metric");
            reg(Box::new(m.clone()), name);
            m
        };
        let cv = |name: &str, help: &str, labels: &[&str]| {
            let m = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
            reg(Box::new(m.clone()), name);
            m
        };
        let h = |name: &str, help: &str, buckets: Vec<f64>| {
            let m = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("metric");
            reg(Box::new(m.clone()), name);
            m
        };
        let mut metrics = Self {
            started: Instant::now(),
            approvals_required,
            raft_seen: Mutex::new(RaftSeen::default()),
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
            snapshot_index: g(
                "failover_raft_snapshot_last_index",
                "Log index covered by this node's last snapshot (built or installed), 0 if none.",
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
            elections: c(
                "failover_raft_elections_total",
                "Term increases seen by this node since it started (each new term is an election).",
            ),
            leader_changes: c(
                "failover_raft_leader_changes_total",
                "Times this node learned of a new leader since it started.",
            ),
            snapshot_installs: c(
                "failover_raft_snapshot_installs_total",
                "Snapshots installed from a leader through POST /raft/snapshot.",
            ),
            authority_holder: gv(
                "failover_authority_holder",
                "1 for the agent holding signing authority (no series while fenced).",
                &["agent"],
            ),
            heartbeat_age: fv(
                "failover_agent_heartbeat_age_seconds",
                "Seconds since this node last received a heartbeat from each agent (since this \
                 node started, for a registered agent it never heard from).",
                &["agent"],
            ),
            agent_keys_loaded: gv(
                "failover_agent_keys_loaded",
                "Keys each agent reported loaded in its last heartbeat to this node.",
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
            handover_state_age: fv(
                "failover_handover_state_age_seconds",
                "Seconds the oldest handover in each open state has been in it, 0 if none.",
                &["state"],
            ),
            approvals_pending: g(
                "failover_handover_approvals_pending",
                "Approvals still needed by handovers awaiting approval.",
            ),
            doppelganger_validators: g(
                "failover_doppelganger_validators",
                "Validators seen live outside the cluster by handovers stopped in \
                 doppelganger_detected (0 when none is).",
            ),
            liveness_checks: cv(
                "failover_liveness_checks_total",
                "Leader only: epochs of a handover's liveness gate checked, by result \
                 (clear, live, unavailable).",
                &["result"],
            ),
            finalized_epoch: g(
                "failover_finalized_epoch",
                "Agreed finalized epoch in the replicated state.",
            ),
            beacon_finalized_epoch: gv(
                "failover_beacon_finalized_epoch",
                "Leader only: finalized epoch each beacon node reported at the last poll.",
                &["beacon"],
            ),
            beacon_usable: gv(
                "failover_beacon_usable",
                "Leader only: 1 if the beacon node counted at the last poll.",
                &["beacon"],
            ),
            beacon_head_slot: gv(
                "failover_beacon_head_slot",
                "Leader only: head slot each beacon node reported at the last poll.",
                &["beacon"],
            ),
            beacon_head_lag: gv(
                "failover_beacon_head_lag_slots",
                "Leader only: slots each beacon node's head is behind the wall-clock slot \
                 (its sync_distance) at the last poll.",
                &["beacon"],
            ),
            beacon_finality_lag: gv(
                "failover_beacon_finality_lag_epochs",
                "Leader only: epochs between each beacon node's head and its finalized checkpoint.",
                &["beacon"],
            ),
            beacon_errors: cv(
                "failover_beacon_errors_total",
                "Beacon node polls that did not count, by beacon node and kind.",
                &["beacon", "kind"],
            ),
            unavailable: cv(
                "failover_unavailable_total",
                "503 answers (fail closed) by endpoint.",
                &["endpoint"],
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
            auth_failures: cv(
                "failover_auth_failures_total",
                "Requests refused because they failed to authenticate (401, or 403 for a \
                 token of the wrong principal), by listener and reason.",
                &["listener", "reason"],
            ),
            tls_not_after: gv(
                "failover_tls_cert_not_after_seconds",
                "notAfter of the TLS certificate in force, Unix seconds, by cert (`node`: this \
                 node's own, `ca`: the cluster CA's earliest). No series without TLS.",
                &["cert"],
            ),
            tls_reloads: cv(
                "failover_tls_reloads_total",
                "TLS material reloads on SIGHUP by result (`ok`, `error`: the old material stays).",
                &["result"],
            ),
            tls_handshake_failures: c(
                "failover_tls_handshake_failures_total",
                "TLS handshakes refused or not finished in time on this node's listeners (a \
                 client without an acceptable certificate, plain HTTP on a TLS port).",
            ),
            names: Vec::new(),
            registry: registry.clone(),
        };
        metrics.names = names.into_inner();
        for e in UNAVAILABLE_ENDPOINTS {
            metrics.unavailable.with_label_values(&[e]);
        }
        for r in LIVENESS_RESULTS {
            metrics.liveness_checks.with_label_values(&[r]);
        }
        for v in RECORD_VERDICTS {
            metrics.records.with_label_values(&[v]);
        }
        for st in OPEN_STATES {
            metrics
                .handover_state_age
                .with_label_values(&[state_label(st).as_str()])
                .set(0.0);
        }
        metrics
    }

    /// Sets the TLS gauges from the material in force (`None`: plaintext, no series) and the
    /// listeners' count of failed handshakes (`handshake_failures`, monotonic).
    pub fn refresh_tls(&self, tls: Option<&failover_common::tls::Tls>, handshake_failures: u64) {
        if let Some(t) = tls {
            self.tls_not_after
                .with_label_values(&["node"])
                .set(t.leaf().not_after);
            if let Some(ca) = t.ca().iter().map(|c| c.not_after).min() {
                self.tls_not_after.with_label_values(&["ca"]).set(ca);
            }
        }
        let seen = self.tls_handshake_failures.get();
        if handshake_failures > seen {
            self.tls_handshake_failures
                .inc_by(handshake_failures - seen);
        }
    }

    /// Names of every metric family this registry serves (histograms without their
    /// `_bucket`, `_sum` and `_count` suffixes), in registration order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Counts elections and leader changes between the last view and this one: a term
    /// increase by `n` counts `n` elections, a new known leader one leader change. The first
    /// view only sets the baseline.
    pub fn observe_raft(&self, term: u64, leader: Option<NodeId>) {
        let mut seen = self.raft_seen.lock().expect("raft view lock");
        if let Some(last) = seen.term {
            if term > last {
                self.elections.inc_by(term - last);
            }
            if leader.is_some() && leader != seen.leader {
                self.leader_changes.inc();
            }
        }
        seen.term = Some(term);
        if leader.is_some() {
            seen.leader = leader;
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
        self.observe_raft(m.current_term, m.current_leader);
        self.term.set(m.current_term as i64);
        self.leader.set(m.current_leader.unwrap_or(0) as i64);
        self.is_leader
            .set(i64::from(m.current_leader == Some(node)));
        self.last_log_index
            .set(m.last_log_index.unwrap_or(0) as i64);
        self.applied_index
            .set(m.last_applied.map_or(0, |l| l.index) as i64);
        self.snapshot_index
            .set(m.snapshot.map_or(0, |l| l.index) as i64);
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
        // Every registered agent has an age: one this node never heard from is silent at
        // least since this node started, so a dead holder's age keeps growing everywhere.
        for agent in s.agents.keys() {
            if !heartbeats.contains_key(agent) {
                self.heartbeat_age
                    .with_label_values(&[agent.as_str()])
                    .set(self.started.elapsed().as_secs_f64());
            }
        }
        for (agent, hb) in heartbeats {
            self.heartbeat_age
                .with_label_values(&[agent.as_str()])
                .set(hb.at.elapsed().as_secs_f64());
            self.agent_keys_loaded
                .with_label_values(&[agent.as_str()])
                .set(hb.keys_loaded as i64);
        }
        self.authority_token.set(s.authority.token as i64);
        self.authority_fenced
            .set(i64::from(s.authority.holder.is_none()));
        self.finalized_epoch.set(s.finalized_epoch() as i64);
        for st in [
            HandoverState::AwaitingFinality,
            HandoverState::AwaitingLiveness,
            HandoverState::AwaitingApproval,
            HandoverState::DoppelgangerDetected,
            HandoverState::Completed,
            HandoverState::Aborted,
        ] {
            let n = s.handovers.values().filter(|h| h.state == st).count();
            self.handovers
                .with_label_values(&[state_label(st).as_str()])
                .set(n as i64);
        }
        self.refresh_open_handovers(s, now_ms());
    }

    /// Sets the per-state ages and the pending approvals of open handovers, at wall-clock
    /// time `now` (ms; state changes carry the proposer's wall clock).
    fn refresh_open_handovers(&self, s: &StateData, now: u64) {
        for st in OPEN_STATES {
            // The events that can move a handover into `st` (the latest one counts).
            let entered: &[HandoverEvent] = match st {
                HandoverState::AwaitingFinality => &[HandoverEvent::Fenced],
                HandoverState::AwaitingLiveness => &[HandoverEvent::FinalityConfirmed],
                HandoverState::DoppelgangerDetected => &[HandoverEvent::DoppelgangerDetected],
                _ => &[
                    HandoverEvent::FinalityConfirmed,
                    HandoverEvent::LivenessConfirmed,
                ],
            };
            let oldest_ms = s
                .handovers
                .values()
                .filter(|h| h.state == st)
                .filter_map(|h| {
                    h.timeline
                        .iter()
                        .rev()
                        .find(|e| entered.contains(&e.event))
                        .or(h.timeline.first())
                        .map(|e| e.at_ms)
                })
                .min();
            let age = oldest_ms.map_or(0.0, |at| now.saturating_sub(at) as f64 / 1000.0);
            self.handover_state_age
                .with_label_values(&[state_label(st).as_str()])
                .set(age);
        }
        let pending: u64 = s
            .handovers
            .values()
            .filter(|h| h.state == HandoverState::AwaitingApproval)
            .map(|h| u64::from(self.approvals_required).saturating_sub(h.approvals.len() as u64))
            .sum();
        self.approvals_pending.set(pending as i64);
        let doppelgangers: usize = s
            .handovers
            .values()
            .filter(|h| h.state == HandoverState::DoppelgangerDetected)
            .filter_map(|h| h.liveness.as_ref())
            .map(|g| g.findings.len())
            .sum();
        self.doppelganger_validators.set(doppelgangers as i64);
    }

    /// Records one poll of the beacon nodes (`slots_per_epoch` converts head slots to
    /// epochs). Called on the leader, which polls.
    pub fn observe_beacons(&self, polls: &[BeaconPoll], slots_per_epoch: u64) {
        for p in polls {
            let o = &p.observation;
            let beacon = o.url.as_str();
            self.beacon_usable
                .with_label_values(&[beacon])
                .set(i64::from(o.is_usable()));
            for kind in BEACON_ERROR_KINDS {
                let c = self.beacon_errors.with_label_values(&[beacon, kind]);
                if p.problem == Some(*kind) {
                    c.inc();
                }
            }
            if let Some(cp) = &o.finalized {
                self.beacon_finalized_epoch
                    .with_label_values(&[beacon])
                    .set(cp.epoch as i64);
            }
            if let Some(sync) = &p.syncing {
                self.beacon_head_slot
                    .with_label_values(&[beacon])
                    .set(sync.head_slot as i64);
                self.beacon_head_lag
                    .with_label_values(&[beacon])
                    .set(sync.sync_distance as i64);
                if let (Some(cp), true) = (&o.finalized, slots_per_epoch > 0) {
                    let head_epoch = sync.head_slot / slots_per_epoch;
                    self.beacon_finality_lag
                        .with_label_values(&[beacon])
                        .set(head_epoch.saturating_sub(cp.epoch) as i64);
                }
            }
        }
    }

    /// Removes the beacon gauges: a node that is not the leader does not poll, and must not
    /// keep showing what it saw when it last was. The error counters stay.
    pub fn clear_beacons(&self) {
        self.beacon_usable.reset();
        self.beacon_finalized_epoch.reset();
        self.beacon_head_slot.reset();
        self.beacon_head_lag.reset();
        self.beacon_finality_lag.reset();
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
    use failover_common::beacon::{
        BeaconObservation, CheckpointObs, ObservationStatus, SyncingStatus,
    };
    use failover_common::types::Root;
    use failover_protocol::{Approval, Handover, TimelineEvent};
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

    fn handover(
        id: u64,
        state: HandoverState,
        events: &[(HandoverEvent, u64)],
        approvals: usize,
    ) -> Handover {
        Handover {
            id,
            from: Some("agent-eu".into()),
            to: "agent-us".into(),
            requested_by: "alice".into(),
            reason: "test".into(),
            state,
            fenced_at: id,
            required_epoch: 3,
            finality_evidence: None,
            approvals: (0..approvals)
                .map(|i| Approval {
                    operator: format!("op{i}"),
                    log_index: id + 1,
                    at_ms: 0,
                    break_glass: false,
                    acknowledged: vec![],
                })
                .collect(),
            granted_token: None,
            break_glass: false,
            timeline: events
                .iter()
                .map(|(e, at_ms)| TimelineEvent {
                    event: *e,
                    log_index: id,
                    at_ms: *at_ms,
                })
                .collect(),
            liveness: None,
        }
    }

    #[test]
    fn elections_and_leader_changes_count_changes_after_the_first_view() {
        let metrics = Metrics::new();
        metrics.observe_raft(5, Some(1));
        metrics.observe_raft(5, Some(1));
        let text = metrics.render();
        assert_eq!(value(&text, "failover_raft_elections_total"), Some(0.0));
        assert_eq!(
            value(&text, "failover_raft_leader_changes_total"),
            Some(0.0)
        );
        // An election without a winner yet, then a new leader two terms later.
        metrics.observe_raft(6, None);
        metrics.observe_raft(7, Some(2));
        // The same leader again after a term change is no leader change.
        metrics.observe_raft(8, Some(2));
        let text = metrics.render();
        assert_eq!(value(&text, "failover_raft_elections_total"), Some(3.0));
        assert_eq!(
            value(&text, "failover_raft_leader_changes_total"),
            Some(1.0)
        );
        metrics.snapshot_installs.inc();
        assert_eq!(
            value(&metrics.render(), "failover_raft_snapshot_installs_total"),
            Some(1.0)
        );
    }

    #[test]
    fn open_handovers_report_their_state_age_and_pending_approvals() {
        let metrics = Metrics::with_approvals_required(2);
        let mut s = StateData::default();
        let now = 1_000_000;
        s.handovers.insert(
            10,
            handover(
                10,
                HandoverState::AwaitingApproval,
                &[
                    (HandoverEvent::Requested, now - 90_000),
                    (HandoverEvent::Fenced, now - 90_000),
                    (HandoverEvent::FinalityConfirmed, now - 30_000),
                ],
                1,
            ),
        );
        s.handovers.insert(
            4,
            handover(
                4,
                HandoverState::Completed,
                &[(HandoverEvent::Fenced, 0)],
                2,
            ),
        );
        metrics.refresh_open_handovers(&s, now);
        let text = metrics.render();
        assert_eq!(
            value(
                &text,
                "failover_handover_state_age_seconds{state=\"awaiting_approval\"}"
            ),
            Some(30.0)
        );
        assert_eq!(
            value(
                &text,
                "failover_handover_state_age_seconds{state=\"awaiting_finality\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            value(&text, "failover_handover_approvals_pending"),
            Some(1.0)
        );

        let h = s.handovers.get_mut(&10).unwrap();
        h.state = HandoverState::AwaitingFinality;
        h.timeline.truncate(2);
        metrics.refresh_open_handovers(&s, now);
        let text = metrics.render();
        assert_eq!(
            value(
                &text,
                "failover_handover_state_age_seconds{state=\"awaiting_finality\"}"
            ),
            Some(90.0)
        );
        assert_eq!(
            value(
                &text,
                "failover_handover_state_age_seconds{state=\"awaiting_approval\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            value(&text, "failover_handover_approvals_pending"),
            Some(0.0)
        );
    }

    #[test]
    fn a_silent_agent_keeps_an_age_that_grows_on_every_node() {
        let metrics = Metrics::new();
        let m = RaftMetrics::<NodeId, openraft::BasicNode>::new_initial(2);
        let mut s = StateData::default();
        s.agents.insert("agent-eu".into(), Default::default());
        s.agents.insert("agent-us".into(), Default::default());
        s.authority.holder = Some("agent-us".into());
        // This node heard agent-eu once, 5 s ago, and never heard agent-us (it restarted, or
        // the agent talks to another coordinator).
        let heartbeats = BTreeMap::from([(
            "agent-eu".to_string(),
            Heartbeat {
                at: Instant::now() - std::time::Duration::from_secs(5),
                keys_loaded: 7,
            },
        )]);
        metrics.refresh(&m, 2, &s, &heartbeats);
        let text = metrics.render();
        let eu = value(
            &text,
            "failover_agent_heartbeat_age_seconds{agent=\"agent-eu\"}",
        )
        .unwrap();
        let us = value(
            &text,
            "failover_agent_heartbeat_age_seconds{agent=\"agent-us\"}",
        )
        .unwrap();
        assert!((5.0..60.0).contains(&eu), "{eu}");
        assert!((0.0..60.0).contains(&us), "{us}");
        assert_eq!(
            value(&text, "failover_agent_keys_loaded{agent=\"agent-eu\"}"),
            Some(7.0)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        metrics.refresh(&m, 2, &s, &heartbeats);
        let text = metrics.render();
        let eu2 = value(
            &text,
            "failover_agent_heartbeat_age_seconds{agent=\"agent-eu\"}",
        )
        .unwrap();
        let us2 = value(
            &text,
            "failover_agent_heartbeat_age_seconds{agent=\"agent-us\"}",
        )
        .unwrap();
        assert!(
            eu2 > eu && us2 > us,
            "ages must keep growing: {eu} -> {eu2}, {us} -> {us2}"
        );
    }

    #[test]
    fn beacon_polls_report_heads_lags_and_errors_on_the_leader_only() {
        let metrics = Metrics::new();
        let cp = |epoch| CheckpointObs {
            epoch,
            root: Root([epoch as u8 + 1; 32]),
        };
        let polls = [
            BeaconPoll {
                observation: BeaconObservation {
                    url: "http://a".into(),
                    status: ObservationStatus::Usable,
                    finalized: Some(cp(10)),
                },
                syncing: Some(SyncingStatus {
                    head_slot: 100,
                    sync_distance: 0,
                    is_syncing: false,
                    is_optimistic: false,
                    el_offline: false,
                }),
                problem: None,
            },
            BeaconPoll {
                observation: BeaconObservation {
                    url: "http://b".into(),
                    status: ObservationStatus::Error {
                        message: "syncing: no answer within 1000 ms".into(),
                    },
                    finalized: None,
                },
                syncing: None,
                problem: Some("timeout"),
            },
        ];
        metrics.observe_beacons(&polls, 8);
        metrics.observe_beacons(&polls, 8);
        let text = metrics.render();
        let a = |name: &str| value(&text, &format!("{name}{{beacon=\"http://a\"}}"));
        assert_eq!(a("failover_beacon_head_slot"), Some(100.0));
        assert_eq!(a("failover_beacon_head_lag_slots"), Some(0.0));
        assert_eq!(a("failover_beacon_finality_lag_epochs"), Some(2.0));
        assert_eq!(a("failover_beacon_finalized_epoch"), Some(10.0));
        assert_eq!(a("failover_beacon_usable"), Some(1.0));
        assert_eq!(
            value(&text, "failover_beacon_usable{beacon=\"http://b\"}"),
            Some(0.0)
        );
        assert_eq!(
            value(
                &text,
                "failover_beacon_errors_total{beacon=\"http://b\",kind=\"timeout\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &text,
                "failover_beacon_errors_total{beacon=\"http://a\",kind=\"timeout\"}"
            ),
            Some(0.0),
            "every kind exists from the first poll, at zero"
        );
        metrics.clear_beacons();
        let text = metrics.render();
        assert!(!text.contains("failover_beacon_head_slot{"), "{text}");
        assert!(text.contains("failover_beacon_errors_total{"), "{text}");
    }

    #[test]
    fn fail_closed_and_verdict_counters_exist_from_the_start() {
        let metrics = Metrics::new();
        let text = metrics.render();
        assert_eq!(
            value(
                &text,
                "failover_unavailable_total{endpoint=\"/v1/agent/records\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            value(&text, "failover_records_total{verdict=\"double_vote\"}"),
            Some(0.0)
        );
        for name in [
            "failover_raft_elections_total",
            "failover_raft_snapshot_installs_total",
            "failover_handover_approvals_pending",
            "failover_beacon_errors_total",
            "failover_unavailable_total",
            "failover_record_batch_seconds",
        ] {
            assert!(metrics.names().iter().any(|n| n == name), "{name}");
        }
    }
}
