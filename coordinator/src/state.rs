//! The replicated state machine: authority, slashing protection, agents, handovers,
//! finality and the audit record.
//!
//! Every coordinator applies the same committed [`Command`]s in log order through
//! [`StateData::apply`], which is deterministic: it reads no clock, does no I/O and uses no
//! randomness. Anything time-like (a wall-clock stamp for the audit trail, an observed
//! finality checkpoint, the handover policy in force) is data inside the command, put there by
//! the proposing node. Bad input becomes a [`Response::Rejected`] answer, identically on every
//! replica.
//!
//! Invariants (DESIGN.md):
//! - **I1.** `authority.holder` names at most one agent; every grant sets `token` to the log
//!   index of the granting entry, so tokens strictly increase.
//! - **I2.** A record batch is accepted only when `(agent, token)` equals the current
//!   `(holder, token)`; otherwise the whole batch is refused with [`Response::NotHolder`].
//! - **I3.** Records pass through [`ValidatorHistory`]'s single check-and-insert entry point.
//! - **Own keys only.** A record for a validator the holder has not registered is refused
//!   ([`Refusal::NotRegistered`]) and nothing is stored for it.
//! - **No history, no past.** A validator's first record starts from
//!   [`StateData::fresh_floor`]: nothing at or below the finalized epoch minus
//!   [`FRESH_VALIDATOR_MARGIN_EPOCHS`] (or the restore floor) is signed.
//! - **I5.** A handover request fences the holder in the same entry (holder becomes `None`)
//!   and freezes `required_epoch`; the grant happens only in an approval entry, only after
//!   finality evidence covers `required_epoch` (or the larger break-glass quorum approved), and
//!   only with the required number of distinct approvals, not counting the requester's own
//!   under the two-person rule.
//! - **Liveness gate** (DESIGN.md "Liveness gate"). A handover requested with a
//!   `doppelganger_epochs` policy carries a [`LivenessGate`]; it reaches `AwaitingApproval`
//!   only after finality covers `required_epoch` *and* the leader's [`Command::Liveness`]
//!   evidence found no validator of the target live in `epochs_required` consecutive complete
//!   epochs from `first_epoch`, one epoch per entry, in order. Any validator reported live
//!   stops it in `DoppelgangerDetected`, from which only an abort, or break-glass approvals
//!   that each name every validator found, end it.
//! - There is no automatic failover: only operator commands move authority.
//! - **Restore.** A state restored from a backup (`backup` module) carries [`RestoreInfo`]:
//!   every validator history created later starts at the restore floor, and
//!   `required_epoch` of every handover is at least the floor epoch.
//!
//! Hostile input (STYLE.md 14): every epoch, slot and index here may be anything from 0 to
//! `u64::MAX`, committed by the log before anyone looked at it, so nothing in this module may
//! panic on it: arithmetic is checked or saturating, enforced by
//! `clippy::arithmetic_side_effects`, which CI runs with `-D warnings`.

#![deny(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, BTreeSet};

use failover_common::beacon::{BeaconObservation, CheckpointObs};
use failover_common::types::{Pubkey, Root};
use failover_protocol::{
    AgentId, Approval, ApprovalPolicy, AuditAction, AuditEntry, DoppelgangerFinding,
    FinalityRecord, Handover, HandoverEvent, HandoverState, KeyPossession, LivenessGate,
    PendingPolicy, RecordItem, Refusal, TimelineEvent, Verdict, INCLUSION_EPOCHS,
    MAX_ACKNOWLEDGED_VALIDATORS,
};
use serde::{Deserialize, Serialize};

use crate::slashing::{RestoreFloor, ValidatorHistory};

/// The handover rules a proposing node carries in each operator command (from its own
/// configuration). Only `slots_per_epoch` is always used; the approval rules apply only until
/// the replicated [`ApprovalPolicy`] is set ([`StateData::effective_policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverPolicy {
    /// Distinct operator approvals needed to complete a handover.
    pub approvals_required: u32,
    /// When true, the requester's own approval does not count.
    pub two_person_rule: bool,
    /// Distinct break-glass approvals needed to complete without finality evidence.
    pub break_glass_approvals: u32,
    /// Slots per epoch of the chain (consensus preset `SLOTS_PER_EPOCH`).
    pub slots_per_epoch: u64,
    /// Complete epochs the liveness gate must find clear before a grant (configuration
    /// `handover.doppelganger_epochs`, default 2). `None` only in commands written before the
    /// gate existed: those handovers replay without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doppelganger_epochs: Option<u64>,
}

impl HandoverPolicy {
    /// The approval rules it carries, as a replicated [`ApprovalPolicy`].
    pub fn approval(&self) -> ApprovalPolicy {
        ApprovalPolicy {
            approvals_required: self.approvals_required,
            two_person_rule: self.two_person_rule,
            break_glass_approvals: self.break_glass_approvals,
        }
    }
}

/// Epochs below the agreed finalized epoch under which a validator seen for the first time
/// signs nothing ([`StateData::fresh_floor`]).
pub const FRESH_VALIDATOR_MARGIN_EPOCHS: u64 = 1;

/// A command in the Raft log (the application data of an entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// An agent announces itself and its keys.
    RegisterAgent {
        /// Agent id.
        agent: AgentId,
        /// Region label.
        region: String,
        /// Validator keys the agent holds.
        pubkeys: Vec<Pubkey>,
    },
    /// A group-committed batch of slashable records from one agent.
    RecordBatch {
        /// The sending agent.
        agent: AgentId,
        /// The token the agent holds.
        token: u64,
        /// Records, checked in order.
        items: Vec<RecordItem>,
    },
    /// An operator requests a handover to `to`; fences the current holder.
    RequestHandover {
        /// Target agent.
        to: AgentId,
        /// Free-text reason.
        reason: String,
        /// Authenticated operator name.
        operator: String,
        /// Proposer's wall clock, milliseconds since the Unix epoch (audit only).
        at_ms: u64,
        /// Policy in force.
        policy: HandoverPolicy,
        /// The chain's current epoch by the proposer's chain clock (epochs); the liveness
        /// window starts after it. `None` when the proposer has no beacon node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chain_epoch: Option<u64>,
    },
    /// An operator approves a handover.
    ApproveHandover {
        /// Handover id.
        id: u64,
        /// Authenticated operator name.
        operator: String,
        /// Break-glass approval (finality gate override).
        break_glass: bool,
        /// Proposer's wall clock (ms).
        at_ms: u64,
        /// Policy in force.
        policy: HandoverPolicy,
        /// Validators the operator acknowledges as seen live outside the cluster
        /// ([`failover_protocol::ApproveBody::acknowledge_validators`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        acknowledged: Vec<Pubkey>,
    },
    /// An operator aborts a handover that has not completed.
    AbortHandover {
        /// Handover id.
        id: u64,
        /// Authenticated operator name.
        operator: String,
        /// Why.
        reason: String,
        /// Proposer's wall clock (ms).
        at_ms: u64,
    },
    /// An operator imports an EIP-3076 interchange (all-or-nothing; see `interchange`).
    ImportInterchange {
        /// The document.
        interchange: crate::interchange::Interchange,
        /// The cluster's genesis validators root, from the proposer's config.
        genesis_validators_root: failover_common::types::Root,
        /// Authenticated operator name.
        operator: String,
        /// Proposer's wall clock (ms).
        at_ms: u64,
        /// The operator overrode the far-future bound (`?allow_future=true`); audit only.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        allow_future: bool,
        /// Set when an agent imports (`POST /v1/agent/import`): it may import only for keys
        /// it proves it holds, one [`KeyPossession`] per validator in the file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<AgentId>,
        /// The agent's proofs of possession.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        possession: Vec<KeyPossession>,
    },
    /// An operator action carried out outside the state machine (a Raft membership change:
    /// `cluster.add_learner`, `cluster.promote`, `cluster.remove`), recorded in the audit trail
    /// only. Changes nothing else; answers [`Response::Ok`].
    RecordAudit {
        /// Authenticated operator name.
        operator: String,
        /// What was done, e.g. [`AuditAction::ClusterRemove`].
        action: AuditAction,
        /// Details (node ids, URLs).
        detail: String,
        /// Outcome as decided by the proposer: `completed`, `proposed: …`, `refused: …`.
        outcome: String,
        /// Proposer's wall clock (ms).
        at_ms: u64,
    },
    /// Sets the cluster's approval policy if none is set yet (proposed by the bootstrap node
    /// from its configuration); ignored (answers `Ok`) once a policy exists.
    InitPolicy {
        /// The policy.
        policy: ApprovalPolicy,
        /// Node that proposed it (audit).
        node: u64,
        /// Proposer's wall clock (ms).
        at_ms: u64,
    },
    /// An operator proposes a new approval policy; it takes effect only when another operator
    /// confirms it ([`Command::ConfirmPolicy`]). Replaces an earlier pending proposal.
    ProposePolicy {
        /// The proposed policy.
        policy: ApprovalPolicy,
        /// Authenticated operator name.
        operator: String,
        /// Proposer's wall clock (ms).
        at_ms: u64,
    },
    /// An operator other than the proposer confirms the pending policy, which then applies.
    ConfirmPolicy {
        /// Authenticated operator name.
        operator: String,
        /// Proposer's wall clock (ms).
        at_ms: u64,
    },
    /// The leader's agreed finality observation from the beacon nodes.
    Finality {
        /// Agreed finalized checkpoint.
        checkpoint: CheckpointObs,
        /// Every beacon node's observation behind it.
        observations: Vec<BeaconObservation>,
        /// Proposer's wall clock (ms).
        at_ms: u64,
        /// Slots per epoch, to prune blocks below the finalized epoch's first slot.
        slots_per_epoch: u64,
    },
    /// The leader's liveness evidence for one epoch of an open handover's liveness gate
    /// (DESIGN.md "Liveness gate"): which validators of the target beacon nodes reported live
    /// in `epoch` (`POST /eth/v1/validator/liveness/{epoch}`).
    Liveness {
        /// Handover id.
        handover: u64,
        /// The epoch checked (epochs); must be the gate's next epoch and complete.
        epoch: u64,
        /// The chain's current epoch by the leader's chain clock (epochs); `epoch` must be
        /// below it.
        current_epoch: u64,
        /// Validators of the target seen live, with the nodes that saw them; empty when every
        /// answering node reported every validator not live.
        live: Vec<LiveSighting>,
        /// Base URLs of the beacon nodes that answered for every validator (at least the
        /// beacon quorum, or the leader proposes nothing).
        answered: Vec<String>,
        /// Validators of the target checked (those the beacon nodes know an index for).
        checked: u64,
        /// The proposing leader (audit).
        node: u64,
        /// Proposer's wall clock (ms).
        at_ms: u64,
    },
}

impl Command {
    /// True for the evidence the leader proposes from its own beacon nodes
    /// ([`Command::Finality`], [`Command::Liveness`]): it opens a handover's gates, so it is
    /// never accepted from another node (`/internal/v1/write`).
    pub fn is_leader_evidence(&self) -> bool {
        matches!(self, Command::Finality { .. } | Command::Liveness { .. })
    }
}

/// A validator a beacon node reported live ([`Command::Liveness`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSighting {
    /// The validator's BLS pubkey.
    pub pubkey: Pubkey,
    /// Its validator index on the chain.
    pub index: u64,
    /// Base URLs of the beacon nodes that reported it live.
    pub seen_by: Vec<String>,
}

/// Who may sign now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authority {
    /// Current holder; `None` before the first grant and while fenced.
    pub holder: Option<AgentId>,
    /// Log index of the latest grant; 0 before any grant.
    pub token: u64,
}

/// A registered agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Region label.
    pub region: String,
    /// Keys it announced (a set: [`AgentInfo::holds`] is O(log n) per record; serialized as
    /// a sorted JSON array).
    pub pubkeys: BTreeSet<Pubkey>,
    /// Log index of its latest registration.
    pub registered_at: u64,
    /// Largest block slot it recorded (slots).
    pub max_block_slot: Option<u64>,
    /// Largest attestation target it recorded (epochs).
    pub max_target_epoch: Option<u64>,
    /// Accepted records (`Valid`) in total.
    pub records_accepted: u64,
}

impl AgentInfo {
    /// True when this agent registered validator `pubkey` (its latest registration).
    pub fn holds(&self, pubkey: &Pubkey) -> bool {
        self.pubkeys.contains(pubkey)
    }

    /// Highest epoch this agent recorded, for `required_epoch` (DESIGN.md handover step 1).
    pub fn max_epoch(&self, slots_per_epoch: u64) -> u64 {
        let b = self
            .max_block_slot
            .map(|s| crate::slashing::epoch_of_slot(s, slots_per_epoch))
            .unwrap_or(0);
        b.max(self.max_target_epoch.unwrap_or(0))
    }
}

/// Answer of the state machine to one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// Applied; nothing to report (blank entries, membership, registration, finality).
    Ok,
    /// Record batch verdicts, one per item.
    Records {
        /// Verdicts in request order.
        verdicts: Vec<Verdict>,
    },
    /// The batch did not carry the current holder's token (I2); nothing recorded.
    NotHolder {
        /// Current holder.
        holder: Option<AgentId>,
        /// Current token.
        token: u64,
    },
    /// The handover after the command.
    Handover {
        /// The handover.
        handover: Box<Handover>,
    },
    /// An interchange was imported.
    Imported {
        /// What the file held.
        summary: failover_protocol::ImportSummary,
    },
    /// Deterministic refusal of an operator command.
    Rejected {
        /// Why, as a kind the API layer maps to its error code and status.
        code: Rejection,
        /// What was wrong.
        message: String,
    },
}

/// Kind of a deterministic refusal ([`Response::Rejected`]). The state machine knows nothing
/// of HTTP: the API layer maps each kind to an error code and a status. Serialized in
/// `snake_case` (`not_found`, …) when a follower forwards a write and passes the answer back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// The command is malformed or names impossible values.
    BadRequest,
    /// The command names something that does not exist (a handover, a pending policy).
    NotFound,
    /// The command conflicts with the state (a handover already open, one already ended).
    Conflict,
    /// An approval rule forbids it (the two-person rule, a proposer confirming their own
    /// policy), or an agent import without proof of possession.
    Forbidden,
}

/// Which parts of the state a batch of applies changed, for persistence.
#[derive(Debug, Default)]
pub struct Dirty {
    /// Authority changed.
    pub authority: bool,
    /// Finality changed.
    pub finality: bool,
    /// Validators whose history changed.
    pub validators: BTreeSet<Pubkey>,
    /// Handovers that changed.
    pub handovers: BTreeSet<u64>,
    /// Agents whose registration (region, keys) changed.
    pub agents: BTreeSet<AgentId>,
    /// Agents whose counters alone changed (`max_block_slot`, `max_target_epoch`,
    /// `records_accepted`): stored apart from the key list, so a record batch does not rewrite
    /// it (issue 15 item 4).
    pub agent_counters: BTreeSet<AgentId>,
    /// Audit entries appended (indexes into `audit`).
    pub audit_from: Option<usize>,
    /// The restore record changed (only when a snapshot is installed or a store seeded).
    pub restore: bool,
    /// The approval policy or the pending proposal changed.
    pub policy: bool,
}

/// The whole replicated state (without Raft bookkeeping).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateData {
    /// Signing authority.
    pub authority: Authority,
    /// Slashing protection per validator.
    pub validators: BTreeMap<Pubkey, ValidatorHistory>,
    /// Registered agents.
    pub agents: BTreeMap<AgentId, AgentInfo>,
    /// Handovers by id.
    pub handovers: BTreeMap<u64, Handover>,
    /// Agreed finality.
    pub finality: Option<FinalityRecord>,
    /// Append-only audit record.
    pub audit: Vec<AuditEntry>,
    /// Set when this cluster was restored from a backup (`backup` module): the restore floor
    /// applies to every validator, including those first seen after the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreInfo>,
    /// The cluster's approval policy; `None` until the bootstrap node sets it, and until then
    /// the policy a command carries applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ApprovalPolicy>,
    /// A proposed policy change waiting for a second operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_policy: Option<PendingPolicy>,
}

/// How and from what this cluster was restored (`coordinator restore`; `backup` module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreInfo {
    /// Nothing at or below this is signed again, for any validator.
    pub floor: RestoreFloor,
    /// Where the floor epoch came from, e.g. `beacon wall-clock epoch 31 + margin 1` or
    /// `--floor-epoch 40` (audit and status only).
    pub floor_source: String,
    /// Last applied log index of the backed-up cluster (`None` for an empty one).
    pub backup_last_applied_index: Option<u64>,
    /// Node that served the backup.
    pub backup_source_node: crate::NodeId,
    /// When the backup was taken, the serving node's wall clock (ms since the Unix epoch).
    pub backup_created_at_ms: u64,
    /// Log index at which the restored state begins (the seeded snapshot's index).
    pub log_index: u64,
    /// When the restore ran, the restoring machine's wall clock (ms since the Unix epoch).
    pub at_ms: u64,
}

/// Most distinct validators one agent import may name: each costs a BLS verification at the
/// edge and on every replica, so the count is bounded, not only the body size.
pub const MAX_AGENT_IMPORT_KEYS: usize = 4096;

/// Checks that `agent` proved possession of every validator key in `doc` (DESIGN.md "Trust
/// boundaries": an agent imports history only for keys it holds). Deterministic: one BLS
/// verification per distinct key, of the first proof naming it; further proofs are ignored,
/// so the work is bounded by [`MAX_AGENT_IMPORT_KEYS`] whatever `possession` holds.
///
/// Errors: more than [`MAX_AGENT_IMPORT_KEYS`] distinct keys, or a message naming up to five
/// keys without a valid proof.
pub fn unproven_keys(
    doc: &crate::interchange::Interchange,
    agent: &str,
    possession: &[KeyPossession],
) -> Result<(), String> {
    let keys: BTreeSet<Pubkey> = doc.data.iter().map(|v| v.pubkey).collect();
    if keys.len() > MAX_AGENT_IMPORT_KEYS {
        return Err(format!(
            "an agent import names {} validators; at most {MAX_AGENT_IMPORT_KEYS} per import",
            keys.len()
        ));
    }
    let mut proofs: BTreeMap<Pubkey, &failover_common::types::Signature> = BTreeMap::new();
    for p in possession {
        proofs.entry(p.pubkey).or_insert(&p.signature);
    }
    let missing: Vec<&Pubkey> = keys
        .iter()
        .filter(|pk| {
            !proofs
                .get(pk)
                .is_some_and(|sig| failover_common::eth::verify_possession(pk, agent, sig))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = missing.iter().take(5).map(ToString::to_string).collect();
    Err(format!(
        "agent {agent} does not prove it holds {} of the keys in the file (e.g. {}); an agent \
         imports history only for keys it holds",
        missing.len(),
        named.join(", ")
    ))
}

fn describe_policy(p: &ApprovalPolicy) -> String {
    format!(
        "approvals_required {}, two_person_rule {}, break_glass_approvals {}",
        p.approvals_required, p.two_person_rule, p.break_glass_approvals
    )
}

fn rejected(code: Rejection, message: impl Into<String>) -> Response {
    Response::Rejected {
        code,
        message: message.into(),
    }
}

/// EIP-3076 interchange of the whole state (the format and merge rules are in
/// [`crate::interchange`], which knows nothing of the state).
impl StateData {
    /// Exports the history of `pubkeys` (all validators when `None`) as an EIP-3076
    /// interchange for `genesis_validators_root` ([`crate::interchange::export`]). Read-only.
    pub fn export_interchange(
        &self,
        genesis_validators_root: Root,
        pubkeys: Option<&[Pubkey]>,
    ) -> crate::interchange::Interchange {
        crate::interchange::export(&self.validators, genesis_validators_root, pubkeys)
    }

    /// Imports an interchange all-or-nothing ([`crate::interchange::merge`]); a validator new
    /// here starts at the restore floor. Returns what the import did and the validators it
    /// touched. Deterministic.
    ///
    /// Errors: [`crate::interchange::InterchangeError`]; on error the state is unchanged.
    pub fn import_interchange(
        &mut self,
        doc: &crate::interchange::Interchange,
        genesis_validators_root: Root,
    ) -> Result<(failover_protocol::ImportSummary, Vec<Pubkey>), crate::interchange::InterchangeError>
    {
        let (summary, merged) = crate::interchange::merge(
            &self.validators,
            self.restore_floor(),
            doc,
            genesis_validators_root,
        )?;
        let touched: Vec<Pubkey> = merged.keys().copied().collect();
        self.validators.extend(merged);
        Ok((summary, touched))
    }
}

impl StateData {
    /// Finalized epoch agreed so far (0 before any evidence).
    pub fn finalized_epoch(&self) -> u64 {
        self.finality.as_ref().map_or(0, |f| f.checkpoint.epoch)
    }

    /// The cluster-wide restore floor, if this cluster was restored from a backup.
    pub fn restore_floor(&self) -> Option<RestoreFloor> {
        self.restore.as_ref().map(|r| r.floor)
    }

    /// The approval rules in force for a command carrying `carried`: the replicated policy
    /// once set, else the carried one (with the carried `slots_per_epoch` either way).
    pub fn effective_policy(&self, carried: &HandoverPolicy) -> HandoverPolicy {
        match self.policy {
            Some(p) => HandoverPolicy {
                approvals_required: p.approvals_required,
                two_person_rule: p.two_person_rule,
                break_glass_approvals: p.break_glass_approvals,
                slots_per_epoch: carried.slots_per_epoch,
                doppelganger_epochs: carried.doppelganger_epochs,
            },
            None => *carried,
        }
    }

    /// The lower bound of a validator seen for the first time: the restore floor, and
    /// [`FRESH_VALIDATOR_MARGIN_EPOCHS`] below the agreed finalized epoch, whichever is higher.
    /// A validator with no history never signs a message older than finality (item 2 of the
    /// hostile-input issue): such a message can no longer be included, and signing it could
    /// only conflict with history this cluster does not know.
    pub fn fresh_floor(&self) -> Option<RestoreFloor> {
        let by_finality = self.finality.as_ref().and_then(|f| {
            let epoch = f
                .checkpoint
                .epoch
                .checked_sub(FRESH_VALIDATOR_MARGIN_EPOCHS)
                .filter(|e| *e > 0)?;
            Some(RestoreFloor::at_epoch(epoch, f.slots_per_epoch))
        });
        match (self.restore_floor(), by_finality) {
            (Some(a), Some(b)) => Some(if a.epoch >= b.epoch { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// The open handover, if any (at most one is open at a time).
    pub fn open_handover(&self) -> Option<&Handover> {
        self.handovers.values().find(|h| h.state.is_open())
    }

    /// Applies one committed command at log `index`. Deterministic.
    pub fn apply(&mut self, index: u64, cmd: &Command, dirty: &mut Dirty) -> Response {
        match cmd {
            Command::RegisterAgent {
                agent,
                region,
                pubkeys,
            } => {
                let info = self.agents.entry(agent.clone()).or_default();
                info.region = region.clone();
                info.pubkeys = pubkeys.iter().copied().collect();
                info.registered_at = index;
                dirty.agents.insert(agent.clone());
                Response::Ok
            }
            Command::RecordBatch {
                agent,
                token,
                items,
            } => self.apply_records(agent, *token, items, dirty),
            Command::RequestHandover {
                to,
                reason,
                operator,
                at_ms,
                policy,
                chain_epoch,
            } => {
                let policy = self.effective_policy(policy);
                let req = Request {
                    to,
                    reason,
                    operator,
                    at_ms: *at_ms,
                    chain_epoch: *chain_epoch,
                };
                self.apply_request(index, &req, &policy, dirty)
            }
            Command::ApproveHandover {
                id,
                operator,
                break_glass,
                at_ms,
                policy,
                acknowledged,
            } => {
                let policy = self.effective_policy(policy);
                let approval = Approval {
                    operator: operator.clone(),
                    log_index: index,
                    at_ms: *at_ms,
                    break_glass: *break_glass,
                    acknowledged: acknowledged.clone(),
                };
                self.apply_approve(index, *id, approval, &policy, dirty)
            }
            Command::InitPolicy {
                policy,
                node,
                at_ms,
            } => {
                if self.policy.is_some() {
                    return Response::Ok;
                }
                let outcome = match policy.check() {
                    Ok(()) => {
                        self.policy = Some(*policy);
                        dirty.policy = true;
                        "accepted".to_string()
                    }
                    Err(e) => format!("refused: {e}"),
                };
                self.audit(
                    dirty,
                    AuditEntry {
                        log_index: index,
                        at_ms: *at_ms,
                        operator: format!("node:{node}"),
                        action: AuditAction::PolicyInit,
                        handover: None,
                        detail: describe_policy(policy),
                        outcome,
                    },
                );
                Response::Ok
            }
            Command::ProposePolicy {
                policy,
                operator,
                at_ms,
            } => self.apply_propose_policy(index, policy, operator, *at_ms, dirty),
            Command::ConfirmPolicy { operator, at_ms } => {
                self.apply_confirm_policy(index, operator, *at_ms, dirty)
            }
            Command::AbortHandover {
                id,
                operator,
                reason,
                at_ms,
            } => self.apply_abort(index, *id, operator, reason, *at_ms, dirty),
            Command::ImportInterchange {
                interchange,
                genesis_validators_root,
                operator,
                at_ms,
                allow_future,
                agent,
                possession,
            } => {
                let result = match agent {
                    Some(a) => unproven_keys(interchange, a, possession),
                    None => Ok(()),
                }
                .and_then(|()| {
                    self.import_interchange(interchange, *genesis_validators_root)
                        .map_err(|e| e.to_string())
                });
                let (outcome, response) = match result {
                    Ok((summary, touched)) => {
                        dirty.validators.extend(touched);
                        let outcome = if summary.slashable == 0 {
                            "accepted".to_string()
                        } else {
                            format!(
                                "accepted with {} slashable record(s) for {} validator(s), kept as refusals",
                                summary.slashable,
                                summary.slashable_validators.len()
                            )
                        };
                        (outcome, Response::Imported { summary })
                    }
                    Err(e) => {
                        let code = if e.contains("does not prove") {
                            Rejection::Forbidden
                        } else {
                            Rejection::BadRequest
                        };
                        (format!("refused: {e}"), rejected(code, e))
                    }
                };
                self.audit(
                    dirty,
                    AuditEntry {
                        log_index: index,
                        at_ms: *at_ms,
                        operator: operator.clone(),
                        action: AuditAction::SlashingImport,
                        handover: None,
                        detail: if *allow_future {
                            format!(
                                "{} validators; FAR-FUTURE OVERRIDE: entries beyond the \
                                 future-epoch bound were allowed by the operator",
                                interchange.data.len()
                            )
                        } else {
                            format!("{} validators", interchange.data.len())
                        },
                        outcome,
                    },
                );
                response
            }
            Command::RecordAudit {
                operator,
                action,
                detail,
                outcome,
                at_ms,
            } => {
                self.audit(
                    dirty,
                    AuditEntry {
                        log_index: index,
                        at_ms: *at_ms,
                        operator: operator.clone(),
                        action: *action,
                        handover: None,
                        detail: detail.clone(),
                        outcome: outcome.clone(),
                    },
                );
                Response::Ok
            }
            Command::Finality {
                checkpoint,
                observations,
                at_ms,
                slots_per_epoch,
            } => self.apply_finality(
                index,
                checkpoint,
                observations,
                *at_ms,
                *slots_per_epoch,
                dirty,
            ),
            Command::Liveness {
                handover,
                epoch,
                current_epoch,
                live,
                answered,
                checked,
                node,
                at_ms,
            } => {
                let ev = LivenessEvidence {
                    epoch: *epoch,
                    current_epoch: *current_epoch,
                    live,
                    answered,
                    checked: *checked,
                    node: *node,
                    at_ms: *at_ms,
                };
                self.apply_liveness(index, *handover, &ev, dirty)
            }
        }
    }

    fn apply_records(
        &mut self,
        agent: &AgentId,
        token: u64,
        items: &[RecordItem],
        dirty: &mut Dirty,
    ) -> Response {
        if self.authority.holder.as_ref() != Some(agent) || self.authority.token != token {
            return Response::NotHolder {
                holder: self.authority.holder.clone(),
                token: self.authority.token,
            };
        }
        let floor = self.fresh_floor();
        let info = self.agents.entry(agent.clone()).or_default();
        let mut verdicts = Vec::with_capacity(items.len());
        for item in items {
            let pk = *item.pubkey();
            // An agent records only for keys it registered (DESIGN.md "Trust boundaries"): a
            // holder cannot write history, and so block signing, for validators it does not
            // hold.
            if !info.holds(&pk) {
                verdicts.push(Verdict::Refused(Refusal::NotRegistered));
                continue;
            }
            let existed = self.validators.contains_key(&pk);
            let history = self
                .validators
                .entry(pk)
                .or_insert_with(|| ValidatorHistory::with_floor(floor));
            let verdict = match item {
                RecordItem::Block {
                    slot, signing_root, ..
                } => {
                    let v = history.check_and_insert_block(*slot, *signing_root);
                    if v.allows_signing() {
                        info.max_block_slot = info.max_block_slot.max(Some(*slot));
                    }
                    v
                }
                RecordItem::Attestation {
                    source_epoch,
                    target_epoch,
                    signing_root,
                    ..
                } => {
                    let v = history.check_and_insert_attestation(
                        *source_epoch,
                        *target_epoch,
                        *signing_root,
                    );
                    if v.allows_signing() {
                        info.max_target_epoch = info.max_target_epoch.max(Some(*target_epoch));
                    }
                    v
                }
            };
            if verdict == Verdict::Valid {
                info.records_accepted = info.records_accepted.saturating_add(1);
                dirty.validators.insert(pk);
            } else if !existed {
                // Nothing recorded: leave no empty history behind, so memory matches disk.
                self.validators.remove(&pk);
            }
            verdicts.push(verdict);
        }
        dirty.agent_counters.insert(agent.clone());
        Response::Records { verdicts }
    }

    fn apply_propose_policy(
        &mut self,
        index: u64,
        policy: &ApprovalPolicy,
        operator: &str,
        at_ms: u64,
        dirty: &mut Dirty,
    ) -> Response {
        let (outcome, response) = match policy.check() {
            Err(e) => (format!("refused: {e}"), rejected(Rejection::BadRequest, e)),
            Ok(()) => {
                self.pending_policy = Some(PendingPolicy {
                    policy: *policy,
                    proposed_by: operator.to_string(),
                    log_index: index,
                });
                dirty.policy = true;
                (
                    "accepted; waits for another operator's confirmation".to_string(),
                    Response::Ok,
                )
            }
        };
        self.audit(
            dirty,
            AuditEntry {
                log_index: index,
                at_ms,
                operator: operator.to_string(),
                action: AuditAction::PolicyPropose,
                handover: None,
                detail: describe_policy(policy),
                outcome,
            },
        );
        response
    }

    fn apply_confirm_policy(
        &mut self,
        index: u64,
        operator: &str,
        at_ms: u64,
        dirty: &mut Dirty,
    ) -> Response {
        let result = match &self.pending_policy {
            None => Err(rejected(Rejection::NotFound, "no policy change is pending")),
            Some(p) if p.proposed_by == operator => Err(rejected(
                Rejection::Forbidden,
                format!(
                    "two-person rule: {operator} proposed this policy change and cannot confirm it"
                ),
            )),
            Some(p) => Ok(p.clone()),
        };
        let (detail, outcome, response) = match result {
            Ok(p) => {
                self.policy = Some(p.policy);
                self.pending_policy = None;
                dirty.policy = true;
                (
                    format!(
                        "{} (proposed by {} at log index {})",
                        describe_policy(&p.policy),
                        p.proposed_by,
                        p.log_index
                    ),
                    "completed".to_string(),
                    Response::Ok,
                )
            }
            Err(r) => {
                let msg = match &r {
                    Response::Rejected { message, .. } => message.clone(),
                    _ => String::new(),
                };
                (String::new(), format!("refused: {msg}"), r)
            }
        };
        self.audit(
            dirty,
            AuditEntry {
                log_index: index,
                at_ms,
                operator: operator.to_string(),
                action: AuditAction::PolicyConfirm,
                handover: None,
                detail,
                outcome,
            },
        );
        response
    }

    fn audit(&mut self, dirty: &mut Dirty, entry: AuditEntry) {
        dirty.audit_from.get_or_insert(self.audit.len());
        self.audit.push(entry);
    }

    fn apply_request(
        &mut self,
        index: u64,
        req: &Request<'_>,
        policy: &HandoverPolicy,
        dirty: &mut Dirty,
    ) -> Response {
        let Request {
            to,
            reason,
            operator,
            at_ms,
            chain_epoch,
        } = *req;
        let refusal = if let Some(open) = self.open_handover() {
            Some(rejected(
                Rejection::Conflict,
                format!(
                    "handover {} to {} is still open; approve or abort it first",
                    open.id, open.to
                ),
            ))
        } else if !self.agents.contains_key(to) {
            Some(rejected(
                Rejection::NotFound,
                format!("agent {to} is not registered with the cluster"),
            ))
        } else if self.authority.holder.as_ref() == Some(to) {
            Some(rejected(
                Rejection::Conflict,
                format!("agent {to} already holds authority"),
            ))
        } else if reason.trim().is_empty() {
            Some(rejected(Rejection::BadRequest, "a handover needs a reason"))
        } else {
            None
        };
        if let Some(r) = refusal {
            let outcome = match &r {
                Response::Rejected { message, .. } => format!("refused: {message}"),
                _ => unreachable!(),
            };
            self.audit(
                dirty,
                AuditEntry {
                    log_index: index,
                    at_ms,
                    operator: operator.to_string(),
                    action: AuditAction::HandoverRequest,
                    handover: None,
                    detail: format!("to {to}: {reason}"),
                    outcome,
                },
            );
            return r;
        }
        // Fence in the same entry: from here on no record of the old holder is accepted.
        let from = self.authority.holder.take();
        dirty.authority = true;
        // required_epoch: the highest epoch the fenced holder ever recorded. With no holder
        // (first grant, or after an abort) it is the highest epoch any agent recorded, so the
        // gate still waits for everything signed so far to be final.
        let required_epoch = match &from {
            Some(a) => self
                .agents
                .get(a)
                .map_or(0, |i| i.max_epoch(policy.slots_per_epoch)),
            None => self
                .agents
                .values()
                .map(|i| i.max_epoch(policy.slots_per_epoch))
                .max()
                .unwrap_or(0),
        };
        // After a restore, agents of the old cluster may have signed up to the floor epoch
        // without this cluster knowing: the first handover waits for that to be final too.
        let required_epoch = required_epoch.max(self.restore_floor().map_or(0, |f| f.epoch.0));
        // The liveness window (DESIGN.md "Liveness gate"): after the fenced holder's last
        // message and the epochs it can still be included in, and after the request's epoch,
        // whose liveness may be the old holder's, or (on a first grant) a signer that was
        // stopped for this migration.
        let liveness = policy.doppelganger_epochs.map(|n| LivenessGate {
            first_epoch: required_epoch
                .saturating_add(1)
                .saturating_add(INCLUSION_EPOCHS)
                .max(chain_epoch.map_or(0, |e| e.saturating_add(1))),
            epochs_required: n.max(1),
            clear_through: None,
            passed_at: None,
            findings: vec![],
        });
        let mut h = Handover {
            id: index,
            from: from.clone(),
            to: to.clone(),
            requested_by: operator.to_string(),
            reason: reason.to_string(),
            state: HandoverState::AwaitingFinality,
            fenced_at: index,
            required_epoch,
            finality_evidence: None,
            approvals: vec![],
            granted_token: None,
            break_glass: false,
            timeline: vec![
                TimelineEvent {
                    event: HandoverEvent::Requested,
                    log_index: index,
                    at_ms,
                },
                TimelineEvent {
                    event: HandoverEvent::Fenced,
                    log_index: index,
                    at_ms,
                },
            ],
            liveness,
        };
        self.check_finality_gate(&mut h, index, at_ms);
        self.handovers.insert(index, h.clone());
        dirty.handovers.insert(index);
        self.audit(
            dirty,
            AuditEntry {
                log_index: index,
                at_ms,
                operator: operator.to_string(),
                action: AuditAction::HandoverRequest,
                handover: Some(index),
                detail: format!(
                    "from {} to {to}: {reason}; required_epoch {required_epoch}",
                    from.as_deref().unwrap_or("(none)")
                ),
                outcome: "accepted".into(),
            },
        );
        Response::Handover {
            handover: Box::new(h),
        }
    }

    /// Moves `h` on from `AwaitingFinality` when the agreed finality covers its required
    /// epoch: to `AwaitingApproval` when its liveness gate passed (or it has none), else to
    /// `AwaitingLiveness`.
    fn check_finality_gate(&self, h: &mut Handover, index: u64, at_ms: u64) {
        if h.state != HandoverState::AwaitingFinality {
            return;
        }
        let finalized = self.finalized_epoch();
        // Epoch 0 is final from genesis: a required_epoch of 0 needs no evidence.
        if h.required_epoch == 0 || finalized >= h.required_epoch {
            let cp = self.finality.as_ref().map_or(
                CheckpointObs {
                    epoch: 0,
                    root: failover_common::types::Root::ZERO,
                },
                |f| f.checkpoint,
            );
            h.finality_evidence = Some((cp, index));
            h.state = if h.liveness.as_ref().is_none_or(LivenessGate::passed) {
                HandoverState::AwaitingApproval
            } else {
                HandoverState::AwaitingLiveness
            };
            h.timeline.push(TimelineEvent {
                event: HandoverEvent::FinalityConfirmed,
                log_index: index,
                at_ms,
            });
        }
    }

    fn apply_approve(
        &mut self,
        index: u64,
        id: u64,
        approval: Approval,
        policy: &HandoverPolicy,
        dirty: &mut Dirty,
    ) -> Response {
        let action = if approval.break_glass {
            AuditAction::HandoverApproveBreakGlass
        } else {
            AuditAction::HandoverApprove
        };
        let operator = approval.operator.clone();
        let at_ms = approval.at_ms;
        let detail = match (approval.break_glass, approval.acknowledged.len()) {
            (false, 0) => String::new(),
            (true, 0) => "BREAK-GLASS: finality gate override requested".into(),
            (glass, n) => format!(
                "{}acknowledges {n} validator(s) seen live outside the cluster: {}",
                if glass {
                    "BREAK-GLASS: finality and liveness gate override requested; "
                } else {
                    ""
                },
                name_some(approval.acknowledged.iter().map(ToString::to_string), 10)
            ),
        };
        let outcome = self.try_approve(index, id, approval, policy, dirty);
        let (audit_outcome, response) = match outcome {
            Ok((completed, h)) => (
                if completed { "completed" } else { "accepted" }.to_string(),
                Response::Handover {
                    handover: Box::new(h),
                },
            ),
            Err(r) => {
                let msg = match &r {
                    Response::Rejected { message, .. } => message.clone(),
                    _ => unreachable!(),
                };
                (format!("refused: {msg}"), r)
            }
        };
        self.audit(
            dirty,
            AuditEntry {
                log_index: index,
                at_ms,
                operator,
                action,
                handover: Some(id),
                detail,
                outcome: audit_outcome,
            },
        );
        response
    }

    fn try_approve(
        &mut self,
        index: u64,
        id: u64,
        approval: Approval,
        policy: &HandoverPolicy,
        dirty: &mut Dirty,
    ) -> Result<(bool, Handover), Response> {
        let operator = approval.operator.as_str();
        let break_glass = approval.break_glass;
        let at_ms = approval.at_ms;
        if approval.acknowledged.len() > MAX_ACKNOWLEDGED_VALIDATORS {
            return Err(rejected(
                Rejection::BadRequest,
                format!(
                    "an approval acknowledges {} validators; at most {MAX_ACKNOWLEDGED_VALIDATORS}",
                    approval.acknowledged.len()
                ),
            ));
        }
        let finalized = self.finalized_epoch();
        let Some(h) = self.handovers.get_mut(&id) else {
            return Err(rejected(Rejection::NotFound, format!("no handover {id}")));
        };
        if !h.state.is_open() {
            return Err(rejected(
                Rejection::Conflict,
                format!("handover {id} is {:?}, not open", h.state),
            ));
        }
        if policy.two_person_rule && h.requested_by == operator {
            return Err(rejected(
                Rejection::Forbidden,
                format!(
                    "two-person rule: {operator} requested handover {id} and cannot approve it"
                ),
            ));
        }
        if h.approvals.iter().any(|a| a.operator == operator) {
            return Err(rejected(
                Rejection::Conflict,
                format!("{operator} already approved handover {id}"),
            ));
        }
        if h.state == HandoverState::AwaitingFinality && !break_glass {
            return Err(rejected(
                Rejection::Conflict,
                format!(
                    "handover {id} waits for finality: required epoch {}, finalized epoch {finalized}; \
                     approval is refused until finality covers the fenced holder's last message",
                    h.required_epoch
                ),
            ));
        }
        if let (HandoverState::AwaitingLiveness, false, Some(g)) =
            (h.state, break_glass, h.liveness.as_ref())
        {
            return Err(rejected(
                Rejection::Conflict,
                format!(
                    "handover {id} waits for the liveness gate: beacon nodes must report no \
                     validator of {} live in epochs {} to {}; {} of {} found clear so far",
                    h.to,
                    g.first_epoch,
                    g.first_epoch
                        .saturating_add(g.epochs_required)
                        .saturating_sub(1),
                    g.clear_epochs(),
                    g.epochs_required
                ),
            ));
        }
        if h.state == HandoverState::DoppelgangerDetected {
            let findings = h.liveness.as_ref().map_or(&[][..], |g| &g.findings[..]);
            let named = name_some(
                findings
                    .iter()
                    .map(|f| format!("{} (index {}, epoch {})", f.pubkey, f.index, f.epoch)),
                10,
            );
            if !break_glass {
                return Err(rejected(
                    Rejection::Conflict,
                    format!(
                        "handover {id} stopped: doppelganger detected, {} validator(s) of {} seen \
                         live outside the cluster: {named}; abort it, or approve with break-glass \
                         naming every one of them (runbooks/doppelganger-detected.md)",
                        findings.len(),
                        h.to
                    ),
                ));
            }
            let missing: Vec<String> = unacknowledged(findings, &approval.acknowledged)
                .map(ToString::to_string)
                .collect();
            if !missing.is_empty() {
                return Err(rejected(
                    Rejection::Forbidden,
                    format!(
                        "a break-glass approval of handover {id} must name every validator seen \
                         live outside the cluster; {} not named: {}",
                        missing.len(),
                        name_some(missing.into_iter(), 10)
                    ),
                ));
            }
        }
        h.approvals.push(approval);
        h.timeline.push(TimelineEvent {
            event: if break_glass {
                HandoverEvent::ApprovedBreakGlass
            } else {
                HandoverEvent::Approved
            },
            log_index: index,
            at_ms,
        });
        let normal_ok = h.state == HandoverState::AwaitingApproval
            && h.approvals.len() as u32 >= policy.approvals_required;
        // A break-glass approval counts only if it names every validator seen live, including
        // those found after it was given.
        let findings = h.liveness.as_ref().map_or(&[][..], |g| &g.findings[..]);
        let glass_count = h
            .approvals
            .iter()
            .filter(|a| a.break_glass && unacknowledged(findings, &a.acknowledged).next().is_none())
            .count() as u32;
        let glass_ok = glass_count >= policy.break_glass_approvals.max(policy.approvals_required);
        let completed = normal_ok || glass_ok;
        if completed {
            h.state = HandoverState::Completed;
            h.granted_token = Some(index);
            h.break_glass = !normal_ok;
            h.timeline.push(TimelineEvent {
                event: HandoverEvent::Completed,
                log_index: index,
                at_ms,
            });
            self.authority = Authority {
                holder: Some(h.to.clone()),
                token: index,
            };
            dirty.authority = true;
        }
        dirty.handovers.insert(id);
        Ok((completed, h.clone()))
    }

    fn apply_abort(
        &mut self,
        index: u64,
        id: u64,
        operator: &str,
        reason: &str,
        at_ms: u64,
        dirty: &mut Dirty,
    ) -> Response {
        let result = match self.handovers.get_mut(&id) {
            None => Err(rejected(Rejection::NotFound, format!("no handover {id}"))),
            Some(h) if !h.state.is_open() => Err(rejected(
                Rejection::Conflict,
                format!("handover {id} is {:?} and cannot be aborted", h.state),
            )),
            Some(h) => {
                h.state = HandoverState::Aborted;
                h.timeline.push(TimelineEvent {
                    event: HandoverEvent::Aborted,
                    log_index: index,
                    at_ms,
                });
                dirty.handovers.insert(id);
                Ok(h.clone())
            }
        };
        let (outcome, response) = match result {
            Ok(h) => (
                "accepted".to_string(),
                Response::Handover {
                    handover: Box::new(h),
                },
            ),
            Err(r) => {
                let msg = match &r {
                    Response::Rejected { message, .. } => message.clone(),
                    _ => unreachable!(),
                };
                (format!("refused: {msg}"), r)
            }
        };
        self.audit(
            dirty,
            AuditEntry {
                log_index: index,
                at_ms,
                operator: operator.to_string(),
                action: AuditAction::HandoverAbort,
                handover: Some(id),
                detail: reason.to_string(),
                outcome,
            },
        );
        response
    }

    fn apply_liveness(
        &mut self,
        index: u64,
        id: u64,
        ev: &LivenessEvidence<'_>,
        dirty: &mut Dirty,
    ) -> Response {
        let epoch = ev.epoch;
        let Some(h) = self.handovers.get_mut(&id) else {
            return rejected(Rejection::NotFound, format!("no handover {id}"));
        };
        if !matches!(
            h.state,
            HandoverState::AwaitingFinality | HandoverState::AwaitingLiveness
        ) {
            return rejected(
                Rejection::Conflict,
                format!(
                    "handover {id} is {}; it needs no liveness evidence",
                    h.state.as_str()
                ),
            );
        }
        let Some(gate) = h.liveness.as_mut() else {
            return rejected(
                Rejection::Conflict,
                format!("handover {id} has no liveness gate"),
            );
        };
        if gate.passed() {
            return rejected(
                Rejection::Conflict,
                format!("handover {id}: liveness gate passed"),
            );
        }
        if epoch != gate.next_epoch() {
            return rejected(
                Rejection::Conflict,
                format!(
                    "liveness evidence for epoch {epoch}, but handover {id} needs epoch {} next",
                    gate.next_epoch()
                ),
            );
        }
        if epoch >= ev.current_epoch {
            return rejected(
                Rejection::BadRequest,
                format!(
                    "epoch {epoch} is not complete (current epoch {})",
                    ev.current_epoch
                ),
            );
        }
        if ev.answered.is_empty() {
            return rejected(Rejection::BadRequest, "no beacon node answered");
        }
        let Some(target) = self.agents.get(&h.to) else {
            return rejected(
                Rejection::NotFound,
                format!("agent {} is not registered", h.to),
            );
        };
        if let Some(x) = ev.live.iter().find(|l| !target.holds(&l.pubkey)) {
            return rejected(
                Rejection::BadRequest,
                format!("{} is not a validator of {}", x.pubkey, h.to),
            );
        }
        dirty.handovers.insert(id);
        if ev.live.is_empty() {
            gate.clear_through = Some(epoch);
            if gate.clear_epochs() >= gate.epochs_required {
                gate.passed_at = Some(index);
                h.timeline.push(TimelineEvent {
                    event: HandoverEvent::LivenessConfirmed,
                    log_index: index,
                    at_ms: ev.at_ms,
                });
                if h.state == HandoverState::AwaitingLiveness {
                    h.state = HandoverState::AwaitingApproval;
                }
            }
            return Response::Handover {
                handover: Box::new(h.clone()),
            };
        }
        let mut seen = BTreeSet::new();
        gate.findings
            .extend(ev.live.iter().filter(|l| seen.insert(l.pubkey)).map(|l| {
                DoppelgangerFinding {
                    pubkey: l.pubkey,
                    index: l.index,
                    epoch,
                    seen_by: l.seen_by.clone(),
                    log_index: index,
                }
            }));
        h.state = HandoverState::DoppelgangerDetected;
        h.timeline.push(TimelineEvent {
            event: HandoverEvent::DoppelgangerDetected,
            log_index: index,
            at_ms: ev.at_ms,
        });
        let h = h.clone();
        let named = name_some(
            ev.live.iter().map(|l| {
                format!(
                    "{} (index {}, seen by {})",
                    l.pubkey,
                    l.index,
                    l.seen_by.join(" ")
                )
            }),
            10,
        );
        self.audit(
            dirty,
            AuditEntry {
                log_index: index,
                at_ms: ev.at_ms,
                operator: format!("node:{}", ev.node),
                action: AuditAction::HandoverDoppelgangerDetected,
                handover: Some(id),
                detail: format!(
                    "{} of {} checked validator(s) of {} seen live in epoch {epoch}, where no agent \
                     of the cluster signs: {named}; answered by {}",
                    seen.len(),
                    ev.checked,
                    h.to,
                    ev.answered.join(" ")
                ),
                outcome: "stopped: abort, or break-glass naming every validator".into(),
            },
        );
        Response::Handover {
            handover: Box::new(h),
        }
    }

    fn apply_finality(
        &mut self,
        index: u64,
        checkpoint: &CheckpointObs,
        observations: &[BeaconObservation],
        at_ms: u64,
        slots_per_epoch: u64,
        dirty: &mut Dirty,
    ) -> Response {
        if checkpoint.epoch <= self.finalized_epoch() && self.finality.is_some() {
            return Response::Ok; // stale or duplicate evidence: finality never moves back
        }
        self.finality = Some(FinalityRecord {
            checkpoint: *checkpoint,
            observations: observations.to_vec(),
            log_index: index,
            at_ms,
            slots_per_epoch,
        });
        dirty.finality = true;
        let ids: Vec<u64> = self
            .handovers
            .values()
            .filter(|h| h.state == HandoverState::AwaitingFinality)
            .map(|h| h.id)
            .collect();
        for id in ids {
            let mut h = self.handovers[&id].clone();
            self.check_finality_gate(&mut h, index, at_ms);
            if h.state != HandoverState::AwaitingFinality {
                self.handovers.insert(id, h);
                dirty.handovers.insert(id);
            }
        }
        // Prune history below the finalized epoch; watermarks keep every refusal (I3).
        let finalized = crate::slashing::Epoch(checkpoint.epoch);
        let min_slot = finalized.first_slot(slots_per_epoch);
        for (pk, h) in self.validators.iter_mut() {
            if h.prune_below(min_slot, finalized) {
                dirty.validators.insert(*pk);
            }
        }
        Response::Ok
    }
}

/// A handover request as [`StateData::apply_request`] reads it.
struct Request<'a> {
    to: &'a AgentId,
    reason: &'a str,
    operator: &'a str,
    at_ms: u64,
    chain_epoch: Option<u64>,
}

/// One epoch of liveness evidence as [`StateData::apply_liveness`] reads it.
struct LivenessEvidence<'a> {
    epoch: u64,
    current_epoch: u64,
    live: &'a [LiveSighting],
    answered: &'a [String],
    checked: u64,
    node: u64,
    at_ms: u64,
}

/// The first `max` of `items`, comma-separated, with "and N more" after them.
fn name_some(items: impl Iterator<Item = String>, max: usize) -> String {
    let all: Vec<String> = items.collect();
    let mut out = all.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if all.len() > max {
        out.push_str(&format!(" and {} more", all.len().saturating_sub(max)));
    }
    out
}

/// Validators of `findings` that `acknowledged` does not name.
fn unacknowledged<'a>(
    findings: &'a [DoppelgangerFinding],
    acknowledged: &[Pubkey],
) -> impl Iterator<Item = &'a Pubkey> + 'a {
    let named: BTreeSet<Pubkey> = acknowledged.iter().copied().collect();
    findings
        .iter()
        .map(|f| &f.pubkey)
        .filter(move |pk| !named.contains(pk))
}
