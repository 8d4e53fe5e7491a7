//! Serde types of the standard Beacon API responses the system reads or serves: envelopes,
//! the error body, and the payloads (finality checkpoints, syncing, genesis, fork, spec
//! constants, block header, node version).
//!
//! Invariant: every Beacon API integer (`uint64`) is a decimal string on the wire, in both
//! directions; roots and versions are `0x`-hex of exactly 32 and 4 bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{quoted_u64, Root, Signature, Version};

/// The `{"data": …}` envelope of node-level responses (syncing, genesis, spec, version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataResponse<T> {
    /// The payload.
    pub data: T,
}

/// The `{"execution_optimistic", "finalized", "data"}` envelope of state and block queries.
///
/// The spec marks both flags required but also says "if the field is not present, assume the
/// False value", so a missing flag reads as `false`. Both are always written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateResponse<T> {
    /// True when the answer rests on an execution payload the node has not verified yet.
    #[serde(default)]
    pub execution_optimistic: bool,
    /// True when the answer references finalized history (fork choice's view).
    #[serde(default)]
    pub finalized: bool,
    /// The payload.
    pub data: T,
}

/// The error body every Beacon API error status carries:
/// `{"code": number, "message": string, "stacktraces"?: [string]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// The HTTP status or a more specific error code.
    pub code: u16,
    /// Human-readable description.
    pub message: String,
    /// Stack traces, sent by some nodes in debug mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacktraces: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------------------------

/// A consensus-spec `Checkpoint`: an epoch and the block root at its start.
///
/// Before any finality a node reports epoch 0 with the all-zero root (Beacon API spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Epoch (epochs since genesis), a decimal string on the wire.
    #[serde(with = "quoted_u64")]
    pub epoch: u64,
    /// Block root of the epoch's checkpoint block.
    pub root: Root,
}

/// `data` of `GET /eth/v1/beacon/states/{state_id}/finality_checkpoints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalityCheckpoints {
    /// The state's `previous_justified_checkpoint`.
    pub previous_justified: Checkpoint,
    /// The state's `current_justified_checkpoint`.
    pub current_justified: Checkpoint,
    /// The state's `finalized_checkpoint`.
    pub finalized: Checkpoint,
}

/// Response of `GET /eth/v1/beacon/states/{state_id}/finality_checkpoints`.
pub type FinalityCheckpointsResponse = StateResponse<FinalityCheckpoints>;

/// `data` of `GET /eth/v1/node/syncing`. All five fields are required by the spec, and a node
/// that leaves one out is treated as malformed rather than guessed about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncingStatus {
    /// The node's head slot (slots).
    #[serde(with = "quoted_u64")]
    pub head_slot: u64,
    /// How many slots the node is behind the wall-clock slot; 0 when synced (slots).
    #[serde(with = "quoted_u64")]
    pub sync_distance: u64,
    /// True while the node is syncing.
    pub is_syncing: bool,
    /// True while the node is optimistically tracking the head (payloads unverified).
    pub is_optimistic: bool,
    /// True when the node's execution client is offline.
    pub el_offline: bool,
}

/// Response of `GET /eth/v1/node/syncing`.
pub type SyncingResponse = DataResponse<SyncingStatus>;

/// `data` of `GET /eth/v1/beacon/genesis`: what identifies a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Unix time of genesis (seconds).
    #[serde(with = "quoted_u64")]
    pub genesis_time: u64,
    /// Hash tree root of the genesis validator set; differs between chains.
    pub genesis_validators_root: Root,
    /// `GENESIS_FORK_VERSION` of the chain.
    pub genesis_fork_version: Version,
}

/// Response of `GET /eth/v1/beacon/genesis` (the node answers 404 before genesis is known).
pub type GenesisResponse = DataResponse<Genesis>;

/// A consensus-spec `Fork`: the versions around the state's latest fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fork {
    /// Fork version before `epoch`.
    pub previous_version: Version,
    /// Fork version from `epoch` on.
    pub current_version: Version,
    /// Epoch of the latest fork (epochs).
    #[serde(with = "quoted_u64")]
    pub epoch: u64,
}

/// Response of `GET /eth/v1/beacon/states/{state_id}/fork`.
pub type ForkResponse = StateResponse<Fork>;

/// A consensus-spec `BeaconBlockHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeaconBlockHeader {
    /// Slot of the block (slots).
    #[serde(with = "quoted_u64")]
    pub slot: u64,
    /// Validator index of the proposer.
    #[serde(with = "quoted_u64")]
    pub proposer_index: u64,
    /// Root of the parent block.
    pub parent_root: Root,
    /// Root of the post-state.
    pub state_root: Root,
    /// Root of the block body.
    pub body_root: Root,
}

/// A consensus-spec `SignedBeaconBlockHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBeaconBlockHeader {
    /// The header.
    pub message: BeaconBlockHeader,
    /// The proposer's signature over it.
    pub signature: Signature,
}

/// `data` of `GET /eth/v1/beacon/headers/{block_id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeaderData {
    /// Block root.
    pub root: Root,
    /// True when the block is on the canonical chain.
    pub canonical: bool,
    /// The signed header.
    pub header: SignedBeaconBlockHeader,
}

/// Response of `GET /eth/v1/beacon/headers/{block_id}`.
pub type BlockHeaderResponse = StateResponse<BlockHeaderData>;

/// `data` of `GET /eth/v1/node/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeVersion {
    /// User-agent-like client identification, e.g. `Lighthouse/v0.1.5 (Linux x86_64)`.
    pub version: String,
}

/// Response of `GET /eth/v1/node/version`.
pub type VersionResponse = DataResponse<NodeVersion>;

/// `data` of `GET /eth/v1/config/spec`: a flat map from constant name to value, as a beacon
/// node reports it (the typed network configuration is [`crate::eth::ChainSpec`]).
///
/// Per the spec, hex values are `0x` strings, numbers are quoted decimals and arrays (such as
/// `BLOB_SCHEDULE`) are JSON arrays, so values are kept as JSON and read through the typed
/// getters. Keys are sorted, so serialization is deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpecConstants(pub BTreeMap<String, serde_json::Value>);

/// Response of `GET /eth/v1/config/spec`.
pub type SpecResponse = DataResponse<SpecConstants>;

/// Error reading a constant from a [`SpecConstants`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The node does not report the constant.
    #[error("spec constant {0} is missing")]
    Missing(String),
    /// The constant has the wrong shape (not a string, not a decimal, wrong hex length).
    #[error("spec constant {key} has an unexpected value {value}")]
    Invalid {
        /// Constant name.
        key: String,
        /// The value as JSON.
        value: String,
    },
}

impl SpecConstants {
    /// The raw string value of `key`.
    ///
    /// Errors: [`SpecError::Missing`], or [`SpecError::Invalid`] when the value is not a string.
    pub fn get_str(&self, key: &str) -> Result<&str, SpecError> {
        match self.0.get(key) {
            None => Err(SpecError::Missing(key.to_string())),
            Some(serde_json::Value::String(s)) => Ok(s),
            Some(other) => Err(self.invalid(key, other)),
        }
    }

    /// `key` as a quoted decimal `uint64` (e.g. `SLOTS_PER_EPOCH`).
    ///
    /// Errors: [`SpecError::Missing`], or [`SpecError::Invalid`] for anything but a decimal
    /// string that fits in 64 bits.
    pub fn get_u64(&self, key: &str) -> Result<u64, SpecError> {
        let s = self.get_str(key)?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.invalid(key, &self.0[key]));
        }
        s.parse().map_err(|_| self.invalid(key, &self.0[key]))
    }

    /// `key` as a 4-byte `0x` value (fork versions, `DOMAIN_*` constants).
    ///
    /// Errors: [`SpecError::Missing`], or [`SpecError::Invalid`] for anything but `0x` + 8 hex
    /// digits.
    pub fn get_version(&self, key: &str) -> Result<Version, SpecError> {
        self.get_str(key)?
            .parse()
            .map_err(|_| self.invalid(key, &self.0[key]))
    }

    fn invalid(&self, key: &str, value: &serde_json::Value) -> SpecError {
        SpecError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
        }
    }
}
