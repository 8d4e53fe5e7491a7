//! What the checker reads: the records a drill or the lab leaves behind, one per sign request
//! ([`DutyRecord`]) and one per `failoverctl` invocation ([`CommandWindow`]). The lab and the
//! drills write them; the checker owns their format, so it depends on nothing it judges.
//!
//! Invariant: every time is taken on the recording machine's clock (Unix µs), never on a
//! coordinator's, so the order of two records is the order the recorder saw.

use failover_common::types::{Pubkey, Root, Signature};
use serde::{Deserialize, Serialize};

/// Slashable message types the simulator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DutyKind {
    /// `BLOCK_V2` with a Deneb block header.
    Block,
    /// `ATTESTATION`.
    Attestation,
}

impl DutyKind {
    /// The Web3Signer `type` of this duty.
    pub fn web3signer_type(self) -> &'static str {
        match self {
            DutyKind::Block => "BLOCK_V2",
            DutyKind::Attestation => "ATTESTATION",
        }
    }
}

/// What happened to one sign request sent to one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DutyRecord {
    /// Agent id the request went to.
    pub agent: String,
    /// Block or attestation.
    pub kind: DutyKind,
    /// Validator index.
    pub validator: u64,
    /// Validator public key.
    pub pubkey: Pubkey,
    /// Slot of the message (slots).
    pub slot: u64,
    /// Attestation source epoch.
    pub source_epoch: Option<u64>,
    /// Attestation target epoch.
    pub target_epoch: Option<u64>,
    /// Signing root the simulator computed.
    pub signing_root: Root,
    /// HTTP status; 0 when no answer arrived (connection error or timeout).
    pub status: u16,
    /// For non-200 answers: the body (shortened) or the transport error.
    pub reason: String,
    /// For 200 answers: the returned signature, if it parsed.
    pub signature: Option<Signature>,
    /// When the request was sent (Unix µs).
    pub sent_us: u64,
    /// When the answer (or the error) arrived (Unix µs).
    pub received_us: u64,
    /// For a conflict probe (not a regular duty): what it tries, e.g. `double vote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// The Web3Signer request body that was sent (with `fork_info` and the message), so the
    /// record can be verified on its own; `null` in recordings made before it was kept.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub request: serde_json::Value,
}

/// One `failoverctl` invocation as the drill machine saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandWindow {
    /// The operator who ran it (`alice`, `bob`).
    pub operator: String,
    /// The arguments after `--output json`, e.g. `["handover", "approve", "3"]`.
    pub args: Vec<String>,
    /// When the process was started (Unix µs, drill machine clock).
    pub start_us: u64,
    /// When it exited or was given up on (Unix µs, drill machine clock).
    pub end_us: u64,
    /// Exit code; `None` when it was killed by a signal or timed out.
    pub exit_code: Option<i32>,
    /// For `handover …` commands: the `id` of the handover in the JSON output, when it printed
    /// one (a request that failed prints none).
    pub handover: Option<u64>,
    /// For `handover …` commands: the `state` in the JSON output, when it printed one.
    pub state: Option<String>,
}

impl CommandWindow {
    /// True when this is `failoverctl handover VERB …`.
    pub fn is_handover(&self, verb: &str) -> bool {
        self.args.first().map(String::as_str) == Some("handover")
            && self.args.get(1).map(String::as_str) == Some(verb)
    }
}
