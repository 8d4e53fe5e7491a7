//! The agent API (`v1`): what a signer agent sends the coordinator and what it gets back.
//!
//! Paths (all under the coordinator's HTTP listener, bearer-token authenticated):
//! `POST /v1/agent/register` ([`RegisterAgentRequest`]),
//! `POST /v1/agent/records` ([`RecordBatchRequest`] → [`RecordBatchResponse`]),
//! `GET /v1/authority` ([`AuthorityView`]), `POST /v1/agent/heartbeat` ([`HeartbeatRequest`]),
//! `POST /v1/agent/import` ([`AgentImportRequest`]).
//!
//! Invariants the types encode:
//! - a record batch carries the fencing token the agent believes current; the coordinator
//!   refuses the whole batch unless `(agent, token)` is exactly the current holder and token
//!   (DESIGN.md I2);
//! - the response holds one [`Verdict`] per item, in request order;
//! - every error body is an [`crate::ApiErrorBody`] with a stable machine-readable code.

use serde::{Deserialize, Serialize};

use failover_common::types::{Pubkey, Root};

/// Agent identifier, as configured on the coordinator (for example `"agent-eu"`).
pub type AgentId = String;

/// One slashable message an agent asks to record before it signs it.
///
/// The signing root is the one the agent computed itself (never the client's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RecordItem {
    /// A block proposal at `slot` (slots).
    Block {
        /// Validator public key.
        pubkey: Pubkey,
        /// Block slot (slots since genesis).
        slot: u64,
        /// Signing root of the block (consensus specs `compute_signing_root`).
        signing_root: Root,
    },
    /// An attestation from `source_epoch` to `target_epoch` (epochs).
    Attestation {
        /// Validator public key.
        pubkey: Pubkey,
        /// `data.source.epoch`.
        source_epoch: u64,
        /// `data.target.epoch`.
        target_epoch: u64,
        /// Signing root of the attestation data.
        signing_root: Root,
    },
}

impl RecordItem {
    /// The validator this record belongs to.
    pub fn pubkey(&self) -> &Pubkey {
        match self {
            RecordItem::Block { pubkey, .. } | RecordItem::Attestation { pubkey, .. } => pubkey,
        }
    }
}

/// `POST /v1/agent/records`: a group-committed batch of records from one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordBatchRequest {
    /// The agent sending the batch; must match the bearer token's agent.
    pub agent: AgentId,
    /// The fencing token the agent holds (the log index of its grant).
    pub token: u64,
    /// The records, at most `max_batch` (coordinator config) of them.
    pub items: Vec<RecordItem>,
}

/// A proof that an agent holds a validator's secret key (`eth::sign_possession`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPossession {
    /// The validator.
    pub pubkey: Pubkey,
    /// BLS signature over `eth::possession_message(agent, pubkey)` with `eth::POSSESSION_DST`.
    pub signature: failover_common::types::Signature,
}

/// `POST /v1/agent/import`: an agent imports the EIP-3076 history of keys it holds (the
/// keymanager API's `slashing_protection`), proving possession of every key in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentImportRequest {
    /// The importing agent; must match the bearer token's agent.
    pub agent: AgentId,
    /// The EIP-3076 interchange (format version 5).
    pub interchange: serde_json::Value,
    /// One proof per validator in the interchange.
    pub possession: Vec<KeyPossession>,
}

/// Why slashing protection refused a record (EIP-3076 and consensus-spec slashing rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// A different block was already recorded at this slot (proposer slashing).
    DoubleBlockProposal {
        /// The slot (slots).
        slot: u64,
        /// Signing root recorded earlier; `None` when imported without one.
        prev_signing_root: Option<Root>,
    },
    /// The slot is at or below the validator's block low watermark (EIP-3076 condition 2).
    SlotBelowWatermark {
        /// The slot asked for.
        slot: u64,
        /// The watermark: nothing at or below it may be signed.
        watermark: u64,
    },
    /// `source_epoch > target_epoch`: never valid.
    SourceExceedsTarget {
        /// Source epoch asked for.
        source_epoch: u64,
        /// Target epoch asked for.
        target_epoch: u64,
    },
    /// A different attestation was already recorded for this target (double vote).
    DoubleVote {
        /// The target epoch.
        target_epoch: u64,
        /// Source epoch of the earlier attestation.
        prev_source_epoch: u64,
        /// Signing root of the earlier attestation; `None` when imported without one.
        prev_signing_root: Option<Root>,
    },
    /// The new attestation surrounds an earlier one (`source < prev_source`, `target > prev_target`).
    SurroundingVote {
        /// Earlier source epoch.
        prev_source_epoch: u64,
        /// Earlier target epoch.
        prev_target_epoch: u64,
    },
    /// The new attestation is surrounded by an earlier one (`source > prev_source`, `target < prev_target`).
    SurroundedVote {
        /// Earlier source epoch.
        prev_source_epoch: u64,
        /// Earlier target epoch.
        prev_target_epoch: u64,
    },
    /// Source epoch below the validator's source low watermark (EIP-3076 condition 4).
    SourceBelowWatermark {
        /// Source epoch asked for.
        source_epoch: u64,
        /// Lowest allowed source epoch.
        watermark: u64,
    },
    /// Target epoch at or below the validator's target low watermark (EIP-3076 condition 5).
    TargetBelowWatermark {
        /// Target epoch asked for.
        target_epoch: u64,
        /// Nothing at or below this target may be signed.
        watermark: u64,
    },
    /// The recording agent has not registered this validator with the cluster: an agent
    /// records only for its own keys (DESIGN.md "Trust boundaries"). Nothing recorded; the
    /// agent answers 503 until its registration commits.
    NotRegistered,
    /// The message lies more than `margin` epochs ahead of the chain's current epoch as the
    /// coordinator sees it; recorded, it would block the validator until then. Nothing
    /// recorded; the agent answers 400 `future_epoch`.
    FutureEpoch {
        /// The message's largest epoch (a block's slot's epoch, an attestation's source or
        /// target).
        epoch: u64,
        /// The chain's current epoch at the coordinator.
        current: u64,
        /// `limits.max_future_epochs` of the coordinator.
        margin: u64,
    },
}

impl Refusal {
    /// Short stable label for metrics and summaries (`double_vote`, `surrounding_vote`, …).
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::DoubleBlockProposal { .. } => "double_block_proposal",
            Refusal::SlotBelowWatermark { .. } => "slot_below_watermark",
            Refusal::SourceExceedsTarget { .. } => "source_exceeds_target",
            Refusal::DoubleVote { .. } => "double_vote",
            Refusal::SurroundingVote { .. } => "surrounding_vote",
            Refusal::SurroundedVote { .. } => "surrounded_vote",
            Refusal::SourceBelowWatermark { .. } => "source_below_watermark",
            Refusal::TargetBelowWatermark { .. } => "target_below_watermark",
            Refusal::NotRegistered => "not_registered",
            Refusal::FutureEpoch { .. } => "future_epoch",
        }
    }
}

/// The committed verdict for one record item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// New record accepted and stored; the agent may sign.
    Valid,
    /// Identical message (same non-zero signing root) already recorded; re-signing is
    /// allowed (EIP-3076). Nothing new is stored.
    SameData,
    /// Refused by slashing protection; the agent must answer 412 and not sign.
    Refused(Refusal),
}

impl Verdict {
    /// True when the agent may sign (`Valid` or `SameData`).
    pub fn allows_signing(&self) -> bool {
        matches!(self, Verdict::Valid | Verdict::SameData)
    }
}

/// Response to a record batch whose `(agent, token)` matched the current authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBatchResponse {
    /// One verdict per request item, in order.
    pub verdicts: Vec<Verdict>,
    /// Raft log index at which the batch was committed and applied.
    pub log_index: u64,
}

/// `GET /v1/authority`: who may sign right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityView {
    /// The agent holding signing authority; `None` while fenced or before the first grant.
    pub holder: Option<AgentId>,
    /// Fencing token: log index of the entry that made the latest grant (0 before any).
    pub token: u64,
    /// Log index this view was read at (the node's last applied index).
    pub applied_index: u64,
    /// How long the answering node held a long poll (`?wait_ms=…`) before it began the
    /// linearizable read of this view (ms; 0 for an immediate answer, or when the view came
    /// from the leader through a forwarding follower). The view is at least this much newer
    /// than the request.
    #[serde(default)]
    pub waited_ms: u64,
}

/// `POST /v1/agent/register`: an agent announces its region and the keys it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgentRequest {
    /// Agent id; must match the bearer token's agent.
    pub agent: AgentId,
    /// Region label, for example `eu`.
    pub region: String,
    /// Validator public keys the agent has loaded.
    pub pubkeys: Vec<Pubkey>,
}

/// `POST /v1/agent/heartbeat`: liveness of an agent, kept in the leader's memory only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// Agent id; must match the bearer token's agent.
    pub agent: AgentId,
    /// Keys loaded and usable.
    pub keys_loaded: u64,
}
