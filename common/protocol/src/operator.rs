//! The operator API (`v1`) and the records it shows: handovers, the audit trail, finality,
//! the approval policy, the node's status and the Raft membership.
//!
//! Paths (operator bearer token): `GET /v1/status` ([`StatusView`]), `POST /v1/handovers`
//! ([`HandoverRequestBody`] → [`Handover`]), `POST /v1/handovers/{id}/approve`
//! ([`ApproveBody`]), `POST /v1/handovers/{id}/abort` ([`AbortBody`]), `GET /v1/handovers`,
//! `GET /v1/handovers/{id}`, `GET /v1/audit` ([`AuditEntry`]), `GET|POST /v1/policy`
//! ([`PolicyView`], [`ApprovalPolicy`]), `POST /v1/policy/confirm`, `GET /v1/cluster/members`
//! ([`MembersView`]), `POST /v1/cluster/learners` ([`AddLearnerBody`]),
//! `POST /v1/cluster/voters` ([`ChangeVotersBody`]) → [`ChangeOutcome`].
//!
//! Invariants:
//! - [`Handover`], [`AuditEntry`] and [`FinalityRecord`] are the records the replicated state
//!   keeps and operators read, so they are part of this contract: a change to them is a
//!   protocol change, made here and versioned, never a side effect of a state refactor;
//! - timeline events ([`HandoverEvent`]) and audit actions ([`AuditAction`]) are enums whose
//!   wire names are the strings reports and dashboards have always matched on; a name this
//!   build does not know decodes as `Unknown`, so an older client still reads a newer
//!   coordinator's answers;
//! - request bodies refuse unknown fields.

use std::time::Duration;

use failover_common::beacon::{BeaconObservation, CheckpointObs};
use serde::{Deserialize, Serialize};

use failover_common::types::Pubkey;

use crate::agent::AgentId;

/// Raft node id of a coordinator (≥ 1).
pub type NodeId = u64;

/// `POST /v1/handovers`: an operator asks to move authority to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoverRequestBody {
    /// Target agent id (must be registered).
    pub to: AgentId,
    /// Free-text reason, kept in the audit record.
    pub reason: String,
}

/// `POST /v1/handovers/{id}/approve`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Break-glass: approve without finality evidence. Needs the larger
    /// `break_glass_approvals` count and is flagged loudly in the audit record.
    #[serde(default)]
    pub break_glass: bool,
    /// Validators (BLS pubkeys, 48 bytes each) the operator acknowledges as seen live outside
    /// the cluster. A handover stopped in [`HandoverState::DoppelgangerDetected`] completes
    /// only through break-glass approvals that name every validator of its
    /// [`LivenessGate::findings`]; elsewhere the list is kept in the audit record and has no
    /// other effect. At most [`MAX_ACKNOWLEDGED_VALIDATORS`] entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acknowledge_validators: Vec<Pubkey>,
}

/// Most validators one approval may acknowledge ([`ApproveBody::acknowledge_validators`]).
pub const MAX_ACKNOWLEDGED_VALIDATORS: usize = 4096;

/// `POST /v1/handovers/{id}/abort`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortBody {
    /// Why the handover is aborted.
    #[serde(default)]
    pub reason: String,
}

/// The approval rules of the whole cluster, replicated :
/// set once by the bootstrap node from its `[handover]` configuration
/// (`init_policy` command), changed only by one operator's proposal confirmed by another
/// (`propose_policy`, `confirm_policy`), every step audited. Once set it
/// overrides the handover rules a proposing node carries in its commands, so one node
/// configured differently cannot loosen the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// Distinct operator approvals needed to complete a handover (≥ 1).
    pub approvals_required: u32,
    /// When true, the requester's own approval does not count.
    pub two_person_rule: bool,
    /// Distinct break-glass approvals needed to complete without finality evidence
    /// (≥ `approvals_required`).
    pub break_glass_approvals: u32,
}

impl ApprovalPolicy {
    /// Checks the rules that make a policy usable at all.
    ///
    /// Errors: `approvals_required` is 0, or `break_glass_approvals < approvals_required`.
    pub fn check(&self) -> Result<(), String> {
        if self.approvals_required == 0 {
            return Err("approvals_required must be ≥ 1".into());
        }
        if self.break_glass_approvals < self.approvals_required {
            return Err("break_glass_approvals must be ≥ approvals_required".into());
        }
        Ok(())
    }
}

/// A policy change proposed by one operator, waiting for another to confirm it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPolicy {
    /// The proposed policy.
    pub policy: ApprovalPolicy,
    /// Operator who proposed it (cannot confirm it).
    pub proposed_by: String,
    /// Log index of the proposal.
    pub log_index: u64,
}

/// Handover state (DESIGN.md "Handover").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoverState {
    /// Requested and fenced; waiting for finality to cover `required_epoch`.
    AwaitingFinality,
    /// Finality covers `required_epoch`; waiting for the liveness gate ([`LivenessGate`]):
    /// beacon nodes must report none of the target's validators live for
    /// `epochs_required` complete epochs from `first_epoch` on.
    AwaitingLiveness,
    /// Finality covers `required_epoch` and the liveness gate passed (or the handover has
    /// none); waiting for operator approvals.
    AwaitingApproval,
    /// A beacon node saw a validator of the target live in an epoch no agent of the cluster
    /// can have signed in: someone outside the cluster signs with that key. The handover is
    /// stopped; it ends by an abort, or by break-glass approvals that name every validator of
    /// [`LivenessGate::findings`] (runbooks/doppelganger-detected.md).
    DoppelgangerDetected,
    /// The target holds authority.
    Completed,
    /// Aborted before completion; the old holder stays fenced.
    Aborted,
}

impl HandoverState {
    /// True for states from which the handover can still complete or be aborted.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Self::AwaitingFinality
                | Self::AwaitingLiveness
                | Self::AwaitingApproval
                | Self::DoppelgangerDetected
        )
    }

    /// The wire name (`awaiting_finality`, `doppelganger_detected`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingFinality => "awaiting_finality",
            Self::AwaitingLiveness => "awaiting_liveness",
            Self::AwaitingApproval => "awaiting_approval",
            Self::DoppelgangerDetected => "doppelganger_detected",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
        }
    }
}

/// Epochs after a message's own epoch in which a beacon node may still see it: an attestation
/// of epoch `E` can be included in blocks until the end of epoch `E + 1` (EIP-7045, Deneb),
/// and a node that reports liveness from block contents may report it there. The liveness
/// gate therefore never counts epochs up to `required_epoch + 1` as evidence either way.
pub const INCLUSION_EPOCHS: u64 = 1;

/// The doppelganger check of one handover (DESIGN.md "Liveness gate"): before the target is
/// granted authority, beacon nodes (`POST /eth/v1/validator/liveness/{epoch}`, standard Beacon
/// API) must report none of its validators live in `epochs_required` consecutive complete
/// epochs starting at `first_epoch`. Evidence comes from the leader, one epoch per log entry,
/// in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessGate {
    /// First epoch checked (epochs): after the fenced holder's last recorded message and the
    /// epochs it can still be included in (`required_epoch + 1 + INCLUSION_EPOCHS`), and after
    /// the epoch of the request.
    pub first_epoch: u64,
    /// Complete epochs that must be found clear (configuration `handover.doppelganger_epochs`,
    /// default 2, as Lighthouse and Teku wait at start-up).
    pub epochs_required: u64,
    /// Last epoch found clear, if any (epochs); the next evidence must be for the epoch after
    /// it (or `first_epoch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_through: Option<u64>,
    /// Log index at which the gate passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed_at: Option<u64>,
    /// Validators seen live in the window; non-empty exactly when the handover is, or was,
    /// [`HandoverState::DoppelgangerDetected`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<DoppelgangerFinding>,
}

impl LivenessGate {
    /// The epoch the next evidence must be for (epochs); saturates at `u64::MAX`.
    pub fn next_epoch(&self) -> u64 {
        self.clear_through
            .map_or(self.first_epoch, |e| e.saturating_add(1))
    }

    /// Epochs found clear so far.
    pub fn clear_epochs(&self) -> u64 {
        self.clear_through
            .map_or(0, |e| e.saturating_sub(self.first_epoch).saturating_add(1))
    }

    /// True once `epochs_required` epochs were found clear and nobody was seen live.
    pub fn passed(&self) -> bool {
        self.passed_at.is_some()
    }

    /// The validator indices of [`LivenessGate::findings`], ascending, each once.
    pub fn found_indices(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.findings.iter().map(|f| f.index).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// One validator of a handover's target seen live by beacon nodes in the liveness window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoppelgangerFinding {
    /// The validator's BLS pubkey.
    pub pubkey: Pubkey,
    /// Its validator index on the chain.
    pub index: u64,
    /// The epoch it was seen live in (epochs).
    pub epoch: u64,
    /// Base URLs of the beacon nodes that reported it live.
    pub seen_by: Vec<String>,
    /// Log index of the evidence entry.
    pub log_index: u64,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Operator name.
    pub operator: String,
    /// Log index of the approval entry.
    pub log_index: u64,
    /// Proposer's wall clock (ms).
    pub at_ms: u64,
    /// Whether it was a break-glass approval.
    pub break_glass: bool,
    /// Validators the operator acknowledged as seen live outside the cluster
    /// ([`ApproveBody::acknowledge_validators`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acknowledged: Vec<Pubkey>,
}

/// One step in a handover's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// What happened.
    pub event: HandoverEvent,
    /// Log index of the entry.
    pub log_index: u64,
    /// Proposer's wall clock (ms).
    pub at_ms: u64,
}

/// A handover and its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// Id: the log index of the request entry.
    pub id: u64,
    /// Holder fenced by the request (`None` for the first grant).
    pub from: Option<AgentId>,
    /// Target agent.
    pub to: AgentId,
    /// Requesting operator.
    pub requested_by: String,
    /// Reason given.
    pub reason: String,
    /// Current state.
    pub state: HandoverState,
    /// Log index at which the holder was fenced.
    pub fenced_at: u64,
    /// Highest epoch the fenced holder recorded; finality must reach it.
    pub required_epoch: u64,
    /// Finality checkpoint that satisfied the gate, with the log index it arrived at.
    pub finality_evidence: Option<(CheckpointObs, u64)>,
    /// Approvals so far, in order.
    pub approvals: Vec<Approval>,
    /// Token granted on completion.
    pub granted_token: Option<u64>,
    /// Completed through the break-glass override.
    pub break_glass: bool,
    /// Timeline of the handover.
    pub timeline: Vec<TimelineEvent>,
    /// The doppelganger check; `None` only in handovers requested before the gate existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LivenessGate>,
}

/// One audit record: an operator action and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Log index of the entry that carried the action.
    pub log_index: u64,
    /// Proposer's wall clock (ms).
    pub at_ms: u64,
    /// Operator name.
    pub operator: String,
    /// What was done.
    pub action: AuditAction,
    /// Handover concerned, if any.
    pub handover: Option<u64>,
    /// Details (target, reason).
    pub detail: String,
    /// `accepted`, `completed`, or `refused: <why>`; for membership changes also
    /// `completed (no change needed)`, `added; catch-up timed out` and
    /// `proposed: removes the current leader`.
    pub outcome: String,
}

/// The agreed finality.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalityRecord {
    /// Agreed finalized checkpoint.
    pub checkpoint: CheckpointObs,
    /// Observations behind it.
    pub observations: Vec<BeaconObservation>,
    /// Log index it was committed at.
    pub log_index: u64,
    /// Proposer's wall clock (ms).
    pub at_ms: u64,
    /// `SLOTS_PER_EPOCH` carried by the evidence (0 in records from before it was kept).
    #[serde(default)]
    pub slots_per_epoch: u64,
}

/// One kind of step in a handover's timeline ([`TimelineEvent::event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoverEvent {
    /// The operator's request was committed.
    Requested,
    /// The old holder was fenced (same entry as the request).
    Fenced,
    /// Finality reached the fenced holder's highest recorded epoch.
    FinalityConfirmed,
    /// The liveness gate found no validator of the target live in its window.
    LivenessConfirmed,
    /// A validator of the target was seen live in the window: the handover stopped.
    DoppelgangerDetected,
    /// An operator approved.
    Approved,
    /// An operator approved through the break-glass override.
    ApprovedBreakGlass,
    /// The target was granted authority.
    Completed,
    /// The handover was aborted (by an operator, or by a restore).
    Aborted,
    /// An event this build does not know (from a newer coordinator); never written by this
    /// build.
    #[serde(other)]
    Unknown,
}

impl HandoverEvent {
    /// The wire name (`requested`, `finality_confirmed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Fenced => "fenced",
            Self::FinalityConfirmed => "finality_confirmed",
            Self::LivenessConfirmed => "liveness_confirmed",
            Self::DoppelgangerDetected => "doppelganger_detected",
            Self::Approved => "approved",
            Self::ApprovedBreakGlass => "approved_break_glass",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for HandoverEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What an audited operator action did ([`AuditEntry::action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditAction {
    /// `handover.request`.
    #[serde(rename = "handover.request")]
    HandoverRequest,
    /// `handover.approve`.
    #[serde(rename = "handover.approve")]
    HandoverApprove,
    /// `handover.approve.break_glass`.
    #[serde(rename = "handover.approve.break_glass")]
    HandoverApproveBreakGlass,
    /// `handover.abort`.
    #[serde(rename = "handover.abort")]
    HandoverAbort,
    /// `handover.doppelganger_detected`: the liveness gate stopped a handover (operator
    /// `node:<id>`, the leader that proposed the evidence).
    #[serde(rename = "handover.doppelganger_detected")]
    HandoverDoppelgangerDetected,
    /// `slashing.import`: an EIP-3076 interchange import (operator or agent).
    #[serde(rename = "slashing.import")]
    SlashingImport,
    /// `cluster.add_learner`.
    #[serde(rename = "cluster.add_learner")]
    ClusterAddLearner,
    /// `cluster.promote`.
    #[serde(rename = "cluster.promote")]
    ClusterPromote,
    /// `cluster.remove`.
    #[serde(rename = "cluster.remove")]
    ClusterRemove,
    /// `cluster.restore`: the state was restored from a backup.
    #[serde(rename = "cluster.restore")]
    ClusterRestore,
    /// `policy.init`: the bootstrap node set the approval policy (operator `node:<id>`).
    #[serde(rename = "policy.init")]
    PolicyInit,
    /// `policy.propose`.
    #[serde(rename = "policy.propose")]
    PolicyPropose,
    /// `policy.confirm`.
    #[serde(rename = "policy.confirm")]
    PolicyConfirm,
    /// An action this build does not know (from a newer coordinator); never written by this
    /// build.
    #[serde(other, rename = "unknown")]
    Unknown,
}

impl AuditAction {
    /// The wire name (`handover.request`, `cluster.remove`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HandoverRequest => "handover.request",
            Self::HandoverApprove => "handover.approve",
            Self::HandoverApproveBreakGlass => "handover.approve.break_glass",
            Self::HandoverAbort => "handover.abort",
            Self::HandoverDoppelgangerDetected => "handover.doppelganger_detected",
            Self::SlashingImport => "slashing.import",
            Self::ClusterAddLearner => "cluster.add_learner",
            Self::ClusterPromote => "cluster.promote",
            Self::ClusterRemove => "cluster.remove",
            Self::ClusterRestore => "cluster.restore",
            Self::PolicyInit => "policy.init",
            Self::PolicyPropose => "policy.propose",
            Self::PolicyConfirm => "policy.confirm",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Which membership change a [`ChangeOutcome`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// `POST /v1/cluster/learners`.
    AddLearner,
    /// `POST /v1/cluster/voters` with `promote`.
    Promote,
    /// `POST /v1/cluster/voters` with `remove`.
    Remove,
    /// A change this build does not know (from a newer coordinator).
    #[serde(other)]
    Unknown,
}

impl std::fmt::Display for ChangeAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Self::AddLearner => "add_learner",
            Self::Promote => "promote",
            Self::Remove => "remove",
            Self::Unknown => "unknown",
        })
    }
}

/// One agent as shown in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Agent id.
    pub id: AgentId,
    /// Region.
    pub region: String,
    /// Keys it announced.
    pub pubkeys: usize,
    /// Accepted records in total.
    pub records_accepted: u64,
    /// Seconds since its last heartbeat seen by this node, if any.
    pub heartbeat_age_seconds: Option<f64>,
}

/// One voter as shown in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// URL.
    pub url: String,
    /// Region from this node's config, if known.
    pub region: Option<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// Node answering.
    pub node_id: NodeId,
    /// Its region.
    pub region: String,
    /// Leader id known to this node.
    pub leader_id: Option<NodeId>,
    /// Leader URL.
    pub leader_url: Option<String>,
    /// Current term.
    pub term: u64,
    /// Last log index.
    pub last_log_index: Option<u64>,
    /// Last applied index.
    pub applied_index: Option<u64>,
    /// Voters.
    pub members: Vec<MemberStatus>,
    /// Authority holder.
    pub holder: Option<AgentId>,
    /// Fencing token.
    pub token: u64,
    /// Agreed finality.
    pub finality: Option<FinalityRecord>,
    /// Registered agents.
    pub agents: Vec<AgentStatus>,
    /// Validators with slashing-protection history.
    pub validators: usize,
    /// All handovers, oldest first.
    pub handovers: Vec<Handover>,
}

/// `GET /v1/policy`: the approval policy in force, a pending change, and this node's own
/// `[handover]` configuration (which applies only while no policy is replicated).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyView {
    /// The replicated policy; `None` until the bootstrap node set it.
    pub policy: Option<ApprovalPolicy>,
    /// A proposed change waiting for a second operator.
    pub pending: Option<PendingPolicy>,
    /// The answering node's configured `[handover]` rules.
    pub configured: ApprovalPolicy,
}

/// Default time `POST /v1/cluster/learners` waits for the new learner to catch up (ms).
pub const DEFAULT_CATCH_UP_TIMEOUT_MS: u64 = 60_000;

/// Largest accepted `catch_up_timeout_ms` (ms): one hour.
pub const MAX_CATCH_UP_TIMEOUT_MS: u64 = 3_600_000;

/// Body of `POST /v1/cluster/learners`. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddLearnerBody {
    /// Raft id of the new node (≥ 1, not a member yet); must equal the `node_id` of the
    /// coordinator answering at `url`.
    pub id: NodeId,
    /// Base URL of the new node, `http://` or `https://`, e.g. `http://10.0.4.5:7100`. It
    /// becomes the node's membership address, which every node whose own config does not list
    /// this id dials.
    pub url: String,
    /// How long to wait for the learner to catch up (ms); default
    /// [`DEFAULT_CATCH_UP_TIMEOUT_MS`], at most [`MAX_CATCH_UP_TIMEOUT_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_timeout_ms: Option<u64>,
}

impl AddLearnerBody {
    /// Checks the fields. Errors: a message for a 400.
    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("id must be ≥ 1".into());
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://"))
            || self.url.len() <= "https://".len()
        {
            return Err(format!(
                "url {:?} must be an http:// or https:// base URL",
                self.url
            ));
        }
        if let Some(t) = self.catch_up_timeout_ms {
            if t == 0 || t > MAX_CATCH_UP_TIMEOUT_MS {
                return Err(format!(
                    "catch_up_timeout_ms must be 1 to {MAX_CATCH_UP_TIMEOUT_MS}"
                ));
            }
        }
        Ok(())
    }

    /// The catch-up wait in force.
    pub fn catch_up_timeout(&self) -> Duration {
        Duration::from_millis(
            self.catch_up_timeout_ms
                .unwrap_or(DEFAULT_CATCH_UP_TIMEOUT_MS),
        )
    }
}

/// Body of `POST /v1/cluster/voters`: exactly one of `promote` (learners become voters) and
/// `remove` (members leave). Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeVotersBody {
    /// Learner ids to make voters; each must be caught up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promote: Vec<NodeId>,
    /// Member ids (voters or learners) to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<NodeId>,
    /// With `remove`: removed voters stay as learners instead of leaving the membership.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_learner: bool,
}

impl ChangeVotersBody {
    /// Checks the shape. Errors: a message for a 400.
    pub fn validate(&self) -> Result<(), String> {
        match (self.promote.is_empty(), self.remove.is_empty()) {
            (true, true) => return Err("give the ids to `promote` or to `remove`".into()),
            (false, false) => return Err("`promote` and `remove` go in separate requests".into()),
            _ => {}
        }
        if self.keep_learner && self.remove.is_empty() {
            return Err("`keep_learner` only applies to `remove`".into());
        }
        if self.promote.iter().chain(&self.remove).any(|id| *id == 0) {
            return Err("ids must be ≥ 1".into());
        }
        Ok(())
    }
}

/// Role of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Votes and counts towards the quorum.
    Voter,
    /// Receives the log; does not vote.
    Learner,
}

/// One member as shown by `GET /v1/cluster/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Raft id.
    pub id: NodeId,
    /// Voter or learner.
    pub role: MemberRole,
    /// Membership address (the URL given when the node was added, or the bootstrap node's
    /// `peers[].url`).
    pub url: String,
    /// Region from the answering node's config, when it lists this id.
    pub region: Option<String>,
    /// Whether this member is the leader.
    pub leader: bool,
    /// Highest log index the leader knows this member holds; `null` when nothing matched yet
    /// or when the answer does not come from the leader (`replication_known = false`).
    pub matched_index: Option<u64>,
    /// Entries this member is behind the leader's last log index; `null` when unknown, as for
    /// `matched_index`.
    pub lag: Option<u64>,
}

/// `GET /v1/cluster/members`: the Raft membership and replication progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersView {
    /// Node that built this view (the leader, unless no leader was reachable).
    pub answered_by: NodeId,
    /// Leader id known to that node.
    pub leader_id: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Highest index stored by a quorum of every voter configuration, computed by the leader
    /// from the members' matched indexes; `null` unless `replication_known`.
    pub commit_index: Option<u64>,
    /// Last log index of the answering node.
    pub last_log_index: Option<u64>,
    /// Last applied index of the answering node.
    pub applied_index: Option<u64>,
    /// Log index of the membership entry in force (it may not be committed yet).
    pub membership_log_index: Option<u64>,
    /// True while a change is between its two steps (joint configuration): `configs` then holds
    /// the old and the new voter sets. Re-running the same change completes it.
    pub joint: bool,
    /// Voter sets of the configuration (one, or two when joint).
    pub configs: Vec<Vec<NodeId>>,
    /// Voters, by id.
    pub voters: Vec<MemberView>,
    /// Learners, by id.
    pub learners: Vec<MemberView>,
    /// True when the view comes from the leader, with per-member replication progress.
    pub replication_known: bool,
}

/// Answer of a membership change (`POST /v1/cluster/learners`, `POST /v1/cluster/voters`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeOutcome {
    /// Which change.
    pub action: ChangeAction,
    /// False when the membership already was as asked (nothing proposed).
    pub changed: bool,
    /// Log index of the last membership entry proposed, when `changed`.
    pub log_index: Option<u64>,
    /// Things the operator should know: even or small voter counts, a removed leader.
    pub warnings: Vec<String>,
    /// The membership after the change, as this leader sees it.
    pub members: MembersView,
}

/// What an EIP-3076 import did (`POST /v1/slashing/import`, `POST /v1/agent/import`): counts
/// of the records in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    /// Distinct validators in the file.
    pub validators: usize,
    /// Block records in the file.
    pub blocks: usize,
    /// Attestation records in the file.
    pub attestations: usize,
    /// Records stored as new history.
    #[serde(default)]
    pub added: usize,
    /// Records already known (same message, or rootless copies of known ones).
    #[serde(default)]
    pub known: usize,
    /// Records slashable with the history or with the file itself (stored as refusals).
    #[serde(default)]
    pub slashable: usize,
    /// Records at or below the low watermarks (already refused by them).
    #[serde(default)]
    pub below_watermark: usize,
    /// Validators with at least one slashable record: they may already be slashable.
    #[serde(default)]
    pub slashable_validators: Vec<Pubkey>,
}
