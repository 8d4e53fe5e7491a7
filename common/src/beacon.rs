//! Beacon API client for the handover finality gate (DESIGN.md "Handover", step 2).
//!
//! Two layers:
//! - serde types for the standard Beacon API responses the system reads or serves
//!   (`ethereum/beacon-APIs`, see `shared/vectors/README.md` §5): finality checkpoints, syncing
//!   status, genesis, fork, chain spec, block header, node version, and the error body;
//! - [`BeaconClient`], which asks every configured beacon node for its syncing status, its
//!   genesis and its head finality checkpoints, and turns each answer into a
//!   [`BeaconObservation`]; and [`agree`], which reduces a set of observations to the finalized
//!   checkpoint that enough nodes vouch for.
//!
//! Invariants:
//! - every Beacon API integer (`uint64`) is a decimal string on the wire, in both directions
//!   (via [`quoted_u64`]); roots and versions are `0x`-hex of exactly 32 and 4 bytes;
//! - a [`BeaconObservation`] is plain data (no clock, no handle): the leader proposes it into the
//!   Raft log as finality evidence and every replica applies the same bytes;
//! - only [`ObservationStatus::Usable`] observations count towards [`agree`]. A node that is
//!   syncing, optimistic, on another chain (different genesis validators root) or that failed
//!   to answer in time never counts (DESIGN.md, Handover step 2);
//! - [`agree`] depends only on the multiset of its inputs, never on their order, and fails
//!   closed: too few usable nodes gives `None`.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::{quoted_u64, Root, Signature, Version};

/// Path of the head finality checkpoints query (Beacon API `getStateFinalityCheckpoints`).
pub const PATH_FINALITY_CHECKPOINTS_HEAD: &str = "/eth/v1/beacon/states/head/finality_checkpoints";
/// Path of the syncing status query (Beacon API `getSyncingStatus`).
pub const PATH_SYNCING: &str = "/eth/v1/node/syncing";
/// Path of the genesis query (Beacon API `getGenesis`).
pub const PATH_GENESIS: &str = "/eth/v1/beacon/genesis";
/// Path of the chain spec query (Beacon API `getSpec`).
pub const PATH_SPEC: &str = "/eth/v1/config/spec";

// ---------------------------------------------------------------------------------------------
// Envelopes and error body
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// State and block identifiers
// ---------------------------------------------------------------------------------------------

/// Error parsing a `state_id` or `block_id` path parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not one of the forms the spec allows; the message follows the spec's 400 example.
    #[error("Invalid state ID: {0}")]
    InvalidState(String),
    /// Not one of the forms the spec allows; the message follows the spec's 400 example.
    #[error("Invalid block ID: {0}")]
    InvalidBlock(String),
}

/// The `state_id` path parameter: `head`, `genesis`, `finalized`, `justified`, a decimal slot,
/// or a `0x` state root (Beacon API `StateId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateId {
    /// The canonical head in the node's view.
    Head,
    /// The genesis state.
    Genesis,
    /// The state at the finalized checkpoint.
    Finalized,
    /// The state at the current justified checkpoint.
    Justified,
    /// The state at a slot (slots).
    Slot(u64),
    /// The state with this state root.
    Root(Root),
}

impl FromStr for StateId {
    type Err = IdError;

    /// Errors: [`IdError::InvalidState`] for anything else (e.g. `current`, `-1`, `0x12`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "head" => Ok(Self::Head),
            "genesis" => Ok(Self::Genesis),
            "finalized" => Ok(Self::Finalized),
            "justified" => Ok(Self::Justified),
            _ => parse_slot_or_root(s)
                .map(|id| match id {
                    SlotOrRoot::Slot(n) => Self::Slot(n),
                    SlotOrRoot::Root(r) => Self::Root(r),
                })
                .ok_or_else(|| IdError::InvalidState(s.to_string())),
        }
    }
}

impl fmt::Display for StateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Head => f.write_str("head"),
            Self::Genesis => f.write_str("genesis"),
            Self::Finalized => f.write_str("finalized"),
            Self::Justified => f.write_str("justified"),
            Self::Slot(n) => write!(f, "{n}"),
            Self::Root(r) => write!(f, "{r}"),
        }
    }
}

/// The `block_id` path parameter: `head`, `genesis`, `finalized`, a decimal slot, or a `0x`
/// block root (Beacon API `BlockId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockId {
    /// The canonical head in the node's view.
    Head,
    /// The genesis block.
    Genesis,
    /// The block at the finalized checkpoint.
    Finalized,
    /// The canonical block at a slot (slots).
    Slot(u64),
    /// The block with this root.
    Root(Root),
}

impl FromStr for BlockId {
    type Err = IdError;

    /// Errors: [`IdError::InvalidBlock`] for anything else (e.g. `current`, `justified`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "head" => Ok(Self::Head),
            "genesis" => Ok(Self::Genesis),
            "finalized" => Ok(Self::Finalized),
            _ => parse_slot_or_root(s)
                .map(|id| match id {
                    SlotOrRoot::Slot(n) => Self::Slot(n),
                    SlotOrRoot::Root(r) => Self::Root(r),
                })
                .ok_or_else(|| IdError::InvalidBlock(s.to_string())),
        }
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Head => f.write_str("head"),
            Self::Genesis => f.write_str("genesis"),
            Self::Finalized => f.write_str("finalized"),
            Self::Slot(n) => write!(f, "{n}"),
            Self::Root(r) => write!(f, "{r}"),
        }
    }
}

enum SlotOrRoot {
    Slot(u64),
    Root(Root),
}

fn parse_slot_or_root(s: &str) -> Option<SlotOrRoot> {
    if s.starts_with("0x") {
        return s.parse().ok().map(SlotOrRoot::Root);
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().map(SlotOrRoot::Slot)
}

// ---------------------------------------------------------------------------------------------
// Observations (Raft-log evidence) and agreement
// ---------------------------------------------------------------------------------------------

/// A finalized checkpoint as recorded in finality evidence.
///
/// Unlike the wire [`Checkpoint`], `epoch` is a plain integer: this is our own log format.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointObs {
    /// Finalized epoch (epochs).
    pub epoch: u64,
    /// Block root of the finalized checkpoint (all zero before any finality).
    pub root: Root,
}

impl From<Checkpoint> for CheckpointObs {
    fn from(c: Checkpoint) -> Self {
        Self {
            epoch: c.epoch,
            root: c.root,
        }
    }
}

/// What one beacon node looked like when polled, and whether it may vouch for finality.
///
/// Serialized as `{"kind": "usable"}`, `{"kind": "syncing", "sync_distance": 5}`, … (the same
/// tagging as the wire types in the `failover-protocol` crate).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ObservationStatus {
    /// Synced, not optimistic, on the expected chain, answered every query: it counts.
    Usable,
    /// `is_syncing` was true; `sync_distance` is in slots. Does not count (DESIGN.md).
    Syncing {
        /// Slots behind the wall-clock head, as the node reported.
        sync_distance: u64,
    },
    /// The node, or its finality answer, is execution-optimistic. Does not count: optimistic
    /// data may still be invalidated.
    Optimistic,
    /// The node's genesis validators root is not the cluster's: another chain. Does not count
    /// (DESIGN.md).
    WrongGenesis {
        /// The root the node reported.
        got: Root,
    },
    /// A query failed, timed out, or returned something malformed. Does not count.
    Error {
        /// What went wrong, prefixed with the query (`genesis:`, `syncing:`, `finality:`).
        message: String,
    },
}

/// One beacon node's answer to a finality poll: the evidence unit proposed into the Raft log.
///
/// `finalized` is the head state's finalized checkpoint whenever the node returned one, whatever
/// the status; only observations whose status is [`ObservationStatus::Usable`] count in
/// [`agree`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BeaconObservation {
    /// The node's base URL, as configured.
    pub url: String,
    /// Whether the node may vouch for finality, and if not, why.
    pub status: ObservationStatus,
    /// The finalized checkpoint of the node's head state, if it answered that query.
    pub finalized: Option<CheckpointObs>,
}

impl BeaconObservation {
    /// True when this observation counts towards [`agree`].
    pub fn is_usable(&self) -> bool {
        self.status == ObservationStatus::Usable && self.finalized.is_some()
    }
}

/// The finalized checkpoint at least `min_agreeing` usable nodes vouch for.
///
/// Among the usable observations, this is the highest epoch `E` such that at least
/// `min_agreeing` of them report `finalized.epoch ≥ E`: sorting the usable checkpoints by epoch,
/// highest first, it is the one at rank `min_agreeing` (1-based). The result depends only on
/// the set of inputs, not their order.
///
/// Returns `None` (fail closed) when fewer than `min_agreeing` observations are usable, when
/// `min_agreeing` is 0 (a gate nobody has to pass is no gate), or when two usable nodes report
/// the same finalized epoch with different roots: finality is unique per epoch on one chain, so
/// that means the nodes follow different chains and none of them can vouch (see
/// [`conflicting_finality`]). Syncing, optimistic, wrong-genesis and errored nodes never count
/// (DESIGN.md, Handover step 2).
pub fn agree(observations: &[BeaconObservation], min_agreeing: usize) -> Option<CheckpointObs> {
    if min_agreeing == 0 {
        return None;
    }
    let mut usable: Vec<CheckpointObs> = observations
        .iter()
        .filter(|o| o.is_usable())
        .filter_map(|o| o.finalized)
        .collect();
    if usable.len() < min_agreeing || conflicting_finality(observations).is_some() {
        return None;
    }
    usable.sort_by(|a, b| b.epoch.cmp(&a.epoch).then(a.root.cmp(&b.root)));
    Some(usable[min_agreeing - 1])
}

/// Two usable observations that finalized the same epoch with different roots, if any: the
/// nodes are on different chains (or one is faulty), so no finality evidence is proposed.
pub fn conflicting_finality(
    observations: &[BeaconObservation],
) -> Option<(&BeaconObservation, &BeaconObservation)> {
    let usable: Vec<&BeaconObservation> = observations.iter().filter(|o| o.is_usable()).collect();
    for (i, a) in usable.iter().enumerate() {
        for b in &usable[i + 1..] {
            if let (Some(x), Some(y)) = (a.finalized, b.finalized) {
                if x.epoch == y.epoch && x.root != y.root {
                    return Some((a, b));
                }
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Error from one Beacon API query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeaconError {
    /// No complete answer within the client's timeout.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// Connection refused, reset, DNS failure, bad URL…
    #[error("transport error: {0}")]
    Transport(String),
    /// A non-2xx status; `message` is the spec error body's message, or the raw body.
    #[error("HTTP {status}: {message}")]
    Status {
        /// HTTP status code (e.g. 404 for genesis not yet known).
        status: u16,
        /// The error message the node gave.
        message: String,
    },
    /// A 2xx answer that does not have the spec shape.
    #[error("malformed response: {0}")]
    Decode(String),
}

impl BeaconError {
    /// A short stable label for metrics: `timeout`, `transport`, `http_status` or `malformed`.
    pub fn kind(&self) -> &'static str {
        match self {
            BeaconError::Timeout(_) => "timeout",
            BeaconError::Transport(_) => "transport",
            BeaconError::Status { .. } => "http_status",
            BeaconError::Decode(_) => "malformed",
        }
    }
}

/// One node's answer to a finality poll with monitoring details that are not evidence (they
/// never enter the Raft log): the node's sync status and the kind of problem that kept it from
/// counting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeaconPoll {
    /// The evidence unit, exactly as [`BeaconClient::observe`] returns it.
    pub observation: BeaconObservation,
    /// The node's `GET /eth/v1/node/syncing` answer (head slot and sync distance, in slots),
    /// when it gave one in time.
    pub syncing: Option<SyncingStatus>,
    /// `None` when the observation is usable; otherwise why not, as a stable metrics label:
    /// `syncing`, `optimistic`, `wrong_genesis`, a failed query's [`BeaconError::kind`]
    /// (`timeout`, `transport`, `http_status`, `malformed`), `invalid_checkpoint` (a non-zero
    /// epoch finalized with the zero root) or `internal` (the poll task failed).
    pub problem: Option<&'static str>,
}

/// A Beacon API client over a fixed set of beacon nodes, for the finality gate.
///
/// Every query is bounded by the timeout given to [`BeaconClient::new`]; a node that does not
/// answer in time is reported as [`ObservationStatus::Error`], never waited for.
#[derive(Debug, Clone)]
pub struct BeaconClient {
    http: reqwest::Client,
    urls: Vec<String>,
    timeout: Duration,
    expected_genesis_validators_root: Root,
}

impl BeaconClient {
    /// A client for the beacon nodes at `urls` (base URLs such as `http://127.0.0.1:5052`; a
    /// trailing `/` is ignored), each query bounded by `timeout`, accepting only nodes whose
    /// genesis validators root is `expected_genesis_validators_root`.
    ///
    /// Panics if the TLS backend cannot be initialised, as `reqwest::Client::new` does.
    pub fn new(
        urls: Vec<String>,
        timeout: Duration,
        expected_genesis_validators_root: Root,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .expect("reqwest client with rustls builds");
        Self {
            http,
            urls,
            timeout,
            expected_genesis_validators_root,
        }
    }

    /// The configured base URLs, in order.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The per-node timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The genesis validators root a node must report to count.
    pub fn expected_genesis_validators_root(&self) -> Root {
        self.expected_genesis_validators_root
    }

    /// Polls every node concurrently and returns one observation per configured URL, in the
    /// order of [`BeaconClient::urls`]. Completes within about the timeout even when nodes
    /// hang.
    pub async fn observe_all(&self) -> Vec<BeaconObservation> {
        self.poll_all()
            .await
            .into_iter()
            .map(|p| p.observation)
            .collect()
    }

    /// As [`BeaconClient::observe_all`], with each node's monitoring details
    /// ([`BeaconPoll`]): its sync status and what kind of problem, if any, kept it from
    /// counting.
    pub async fn poll_all(&self) -> Vec<BeaconPoll> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, url) in self.urls.iter().enumerate() {
            let this = self.clone();
            let url = url.clone();
            tasks.spawn(async move { (i, this.poll(&url).await) });
        }
        let mut out: Vec<Option<BeaconPoll>> = vec![None; self.urls.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, poll)) = joined {
                out[i] = Some(poll);
            }
        }
        out.into_iter()
            .zip(&self.urls)
            .map(|(poll, url)| {
                poll.unwrap_or_else(|| BeaconPoll {
                    observation: BeaconObservation {
                        url: url.clone(),
                        status: ObservationStatus::Error {
                            message: "observer task failed".to_string(),
                        },
                        finalized: None,
                    },
                    syncing: None,
                    problem: Some("internal"),
                })
            })
            .collect()
    }

    /// Polls one node: genesis, syncing status and head finality checkpoints, concurrently,
    /// all within the timeout, and classifies the answers (see [`ObservationStatus`]).
    ///
    /// Precedence when several things are wrong: wrong genesis, then syncing, then optimistic
    /// (from `/node/syncing`), then the first failed query, then an optimistic finality answer
    /// or a malformed checkpoint.
    pub async fn observe(&self, url: &str) -> BeaconObservation {
        self.poll(url).await.observation
    }

    /// As [`BeaconClient::observe`], with the monitoring details ([`BeaconPoll`]).
    pub async fn poll(&self, url: &str) -> BeaconPoll {
        let work = async {
            let (genesis, syncing, finality) = tokio::join!(
                self.genesis(url),
                self.syncing(url),
                self.finality_checkpoints(url, StateId::Head)
            );
            let first_error = [
                genesis.as_ref().err(),
                syncing.as_ref().err(),
                finality.as_ref().err(),
            ]
            .into_iter()
            .flatten()
            .next()
            .map(BeaconError::kind);
            let sync_status = syncing.as_ref().ok().cloned();
            let observation = classify(
                url,
                self.expected_genesis_validators_root,
                genesis,
                syncing,
                finality,
            );
            let problem = match &observation.status {
                ObservationStatus::Usable => None,
                ObservationStatus::Syncing { .. } => Some("syncing"),
                ObservationStatus::Optimistic => Some("optimistic"),
                ObservationStatus::WrongGenesis { .. } => Some("wrong_genesis"),
                ObservationStatus::Error { .. } => {
                    Some(first_error.unwrap_or("invalid_checkpoint"))
                }
            };
            BeaconPoll {
                observation,
                syncing: sync_status,
                problem,
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(poll) => poll,
            Err(_) => BeaconPoll {
                observation: BeaconObservation {
                    url: url.to_string(),
                    status: ObservationStatus::Error {
                        message: BeaconError::Timeout(self.timeout).to_string(),
                    },
                    finalized: None,
                },
                syncing: None,
                problem: Some("timeout"),
            },
        }
    }

    /// `GET /eth/v1/beacon/genesis` on the node at `url`.
    ///
    /// Errors: [`BeaconError`]; a node before genesis answers [`BeaconError::Status`] 404.
    pub async fn genesis(&self, url: &str) -> Result<Genesis, BeaconError> {
        let r: GenesisResponse = self.get_json(url, PATH_GENESIS).await?;
        Ok(r.data)
    }

    /// `GET /eth/v1/node/syncing` on the node at `url`.
    ///
    /// Errors: [`BeaconError`].
    pub async fn syncing(&self, url: &str) -> Result<SyncingStatus, BeaconError> {
        let r: SyncingResponse = self.get_json(url, PATH_SYNCING).await?;
        Ok(r.data)
    }

    /// `GET /eth/v1/beacon/states/{state_id}/finality_checkpoints` on the node at `url`.
    ///
    /// Errors: [`BeaconError`]; an unknown state is [`BeaconError::Status`] 404.
    pub async fn finality_checkpoints(
        &self,
        url: &str,
        state_id: StateId,
    ) -> Result<FinalityCheckpointsResponse, BeaconError> {
        self.get_json(
            url,
            &format!("/eth/v1/beacon/states/{state_id}/finality_checkpoints"),
        )
        .await
    }

    /// `GET /eth/v1/beacon/states/{state_id}/fork` on the node at `url`.
    ///
    /// Errors: [`BeaconError`].
    pub async fn fork(&self, url: &str, state_id: StateId) -> Result<ForkResponse, BeaconError> {
        self.get_json(url, &format!("/eth/v1/beacon/states/{state_id}/fork"))
            .await
    }

    /// `GET /eth/v1/config/spec` on the node at `url`.
    ///
    /// Errors: [`BeaconError`].
    pub async fn spec(&self, url: &str) -> Result<SpecConstants, BeaconError> {
        let r: SpecResponse = self.get_json(url, PATH_SPEC).await?;
        Ok(r.data)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
    ) -> Result<T, BeaconError> {
        let url = format!("{}{}", base.trim_end_matches('/'), path);
        let resp = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            let message = match serde_json::from_slice::<ErrorMessage>(&body) {
                Ok(e) => e.message,
                Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            };
            return Err(BeaconError::Status {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| BeaconError::Decode(e.to_string()))
    }

    fn transport(&self, e: reqwest::Error) -> BeaconError {
        if e.is_timeout() {
            BeaconError::Timeout(self.timeout)
        } else {
            // The Display of a reqwest error omits its cause ("error sending request");
            // walk the chain so the evidence says what actually happened.
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            BeaconError::Transport(msg)
        }
    }
}

/// Turns one node's three answers into an observation (see [`BeaconClient::observe`]).
fn classify(
    url: &str,
    expected_root: Root,
    genesis: Result<Genesis, BeaconError>,
    syncing: Result<SyncingStatus, BeaconError>,
    finality: Result<FinalityCheckpointsResponse, BeaconError>,
) -> BeaconObservation {
    let finalized = finality
        .as_ref()
        .ok()
        .map(|r| CheckpointObs::from(r.data.finalized));
    let status = classify_status(expected_root, &genesis, &syncing, &finality);
    BeaconObservation {
        url: url.to_string(),
        status,
        finalized,
    }
}

fn classify_status(
    expected_root: Root,
    genesis: &Result<Genesis, BeaconError>,
    syncing: &Result<SyncingStatus, BeaconError>,
    finality: &Result<FinalityCheckpointsResponse, BeaconError>,
) -> ObservationStatus {
    if let Ok(g) = genesis {
        if g.genesis_validators_root != expected_root {
            return ObservationStatus::WrongGenesis {
                got: g.genesis_validators_root,
            };
        }
    }
    if let Ok(s) = syncing {
        if s.is_syncing {
            return ObservationStatus::Syncing {
                sync_distance: s.sync_distance,
            };
        }
        if s.is_optimistic {
            return ObservationStatus::Optimistic;
        }
    }
    let error = |what: &str, e: &BeaconError| ObservationStatus::Error {
        message: format!("{what}: {e}"),
    };
    let finality = match (genesis, syncing, finality) {
        (Err(e), _, _) => return error("genesis", e),
        (_, Err(e), _) => return error("syncing", e),
        (_, _, Err(e)) => return error("finality", e),
        (Ok(_), Ok(_), Ok(f)) => f,
    };
    if finality.execution_optimistic {
        return ObservationStatus::Optimistic;
    }
    let fin = finality.data.finalized;
    if fin.epoch > 0 && fin.root.is_zero() {
        return ObservationStatus::Error {
            message: format!(
                "finality: finalized epoch {} with the zero root (only epoch 0 may have it)",
                fin.epoch
            ),
        };
    }
    ObservationStatus::Usable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(b: u8) -> Root {
        Root([b; 32])
    }

    fn obs(url: &str, status: ObservationStatus, epoch: u64) -> BeaconObservation {
        BeaconObservation {
            url: url.to_string(),
            status,
            finalized: Some(CheckpointObs {
                epoch,
                root: root(epoch as u8 + 1),
            }),
        }
    }

    fn usable(url: &str, epoch: u64) -> BeaconObservation {
        obs(url, ObservationStatus::Usable, epoch)
    }

    #[test]
    fn two_of_three_agree_on_lower_epoch() {
        let o = [usable("a", 10), usable("b", 8), usable("c", 5)];
        assert_eq!(agree(&o, 2), o[1].finalized);
        assert_eq!(agree(&o, 1), o[0].finalized);
        assert_eq!(agree(&o, 3), o[2].finalized);
    }

    #[test]
    fn nodes_finalizing_different_roots_for_one_epoch_block_agreement() {
        let mut forked = usable("b", 10);
        forked.finalized = Some(CheckpointObs {
            epoch: 10,
            root: root(99),
        });
        let o = [usable("a", 10), forked, usable("c", 12)];
        assert!(conflicting_finality(&o).is_some());
        assert_eq!(
            agree(&o, 1),
            None,
            "a fork between beacon nodes must fail closed"
        );
        assert_eq!(agree(&o, 2), None);
        // the same epoch and root from two nodes is agreement, not a conflict
        let o = [usable("a", 10), usable("b", 10)];
        assert!(conflicting_finality(&o).is_none());
        assert_eq!(agree(&o, 2), o[0].finalized);
    }

    #[test]
    fn syncing_node_does_not_count() {
        let o = [
            usable("a", 10),
            obs("b", ObservationStatus::Syncing { sync_distance: 3 }, 12),
        ];
        assert_eq!(agree(&o, 2), None);
        assert_eq!(agree(&o, 1), o[0].finalized);
    }

    #[test]
    fn wrong_genesis_node_does_not_count() {
        let o = [
            usable("a", 10),
            obs("b", ObservationStatus::WrongGenesis { got: root(9) }, 50),
        ];
        assert_eq!(agree(&o, 2), None);
        assert_eq!(agree(&o, 1), o[0].finalized);
    }

    #[test]
    fn optimistic_node_does_not_count() {
        let o = [usable("a", 10), obs("b", ObservationStatus::Optimistic, 50)];
        assert_eq!(agree(&o, 2), None);
        assert_eq!(agree(&o, 1), o[0].finalized);
    }

    #[test]
    fn errored_node_does_not_count() {
        let mut failed = obs(
            "b",
            ObservationStatus::Error {
                message: "syncing: HTTP 500: boom".into(),
            },
            50,
        );
        let o = [usable("a", 10), failed.clone()];
        assert_eq!(agree(&o, 2), None);
        failed.finalized = None;
        assert_eq!(
            agree(&[usable("a", 10), failed], 1),
            Some(o[0].finalized.unwrap())
        );
    }

    #[test]
    fn fewer_usable_nodes_than_required_gives_none() {
        assert_eq!(agree(&[], 1), None);
        assert_eq!(agree(&[usable("a", 3), usable("b", 4)], 3), None);
    }

    #[test]
    fn zero_required_agreement_gives_none() {
        assert_eq!(agree(&[usable("a", 3)], 0), None);
    }

    #[test]
    fn result_does_not_depend_on_observation_order() {
        let o = vec![
            usable("a", 7),
            usable("b", 9),
            obs("x", ObservationStatus::Syncing { sync_distance: 1 }, 100),
            usable("c", 4),
            usable("d", 9),
        ];
        let expected: Vec<_> = (1..=4).map(|k| agree(&o, k)).collect();
        let mut rev = o.clone();
        rev.reverse();
        let mut rot = o.clone();
        rot.rotate_left(2);
        for perm in [rev, rot] {
            let got: Vec<_> = (1..=4).map(|k| agree(&perm, k)).collect();
            assert_eq!(got, expected);
        }
        assert_eq!(expected[1].map(|c| c.epoch), Some(9), "two nodes at 9");
        assert_eq!(expected[2].map(|c| c.epoch), Some(7));
    }

    fn genesis(r: Root) -> Result<Genesis, BeaconError> {
        Ok(Genesis {
            genesis_time: 1_600_000_000,
            genesis_validators_root: r,
            genesis_fork_version: Version([0; 4]),
        })
    }

    fn synced() -> Result<SyncingStatus, BeaconError> {
        Ok(SyncingStatus {
            head_slot: 100,
            sync_distance: 0,
            is_syncing: false,
            is_optimistic: false,
            el_offline: false,
        })
    }

    fn finality(
        epoch: u64,
        r: Root,
        optimistic: bool,
    ) -> Result<FinalityCheckpointsResponse, BeaconError> {
        let cp = Checkpoint { epoch, root: r };
        Ok(StateResponse {
            execution_optimistic: optimistic,
            finalized: false,
            data: FinalityCheckpoints {
                previous_justified: cp,
                current_justified: cp,
                finalized: cp,
            },
        })
    }

    #[test]
    fn classify_accepts_a_synced_node_on_the_expected_chain() {
        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            synced(),
            finality(3, root(7), false),
        );
        assert_eq!(o.status, ObservationStatus::Usable);
        assert_eq!(
            o.finalized,
            Some(CheckpointObs {
                epoch: 3,
                root: root(7)
            })
        );
    }

    #[test]
    fn classify_flags_wrong_genesis_before_anything_else() {
        let o = classify(
            "u",
            root(1),
            genesis(root(2)),
            Err(BeaconError::Transport("reset".into())),
            finality(3, root(7), true),
        );
        assert_eq!(o.status, ObservationStatus::WrongGenesis { got: root(2) });
    }

    #[test]
    fn classify_reports_syncing_distance_and_optimism() {
        let mut s = synced().unwrap();
        s.is_syncing = true;
        s.sync_distance = 42;
        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            Ok(s),
            finality(3, root(7), false),
        );
        assert_eq!(o.status, ObservationStatus::Syncing { sync_distance: 42 });

        s.is_syncing = false;
        s.is_optimistic = true;
        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            Ok(s),
            finality(3, root(7), false),
        );
        assert_eq!(o.status, ObservationStatus::Optimistic);

        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            synced(),
            finality(3, root(7), true),
        );
        assert_eq!(o.status, ObservationStatus::Optimistic);
    }

    #[test]
    fn classify_names_the_failed_query() {
        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            synced(),
            Err(BeaconError::Status {
                status: 404,
                message: "State not found".into(),
            }),
        );
        assert_eq!(
            o.status,
            ObservationStatus::Error {
                message: "finality: HTTP 404: State not found".into()
            }
        );
        assert_eq!(o.finalized, None);

        let o = classify(
            "u",
            root(1),
            Err(BeaconError::Timeout(Duration::from_millis(250))),
            synced(),
            finality(3, root(7), false),
        );
        assert_eq!(
            o.status,
            ObservationStatus::Error {
                message: "genesis: no answer within 250 ms".into()
            }
        );
    }

    #[test]
    fn classify_rejects_a_finalized_epoch_with_the_zero_root() {
        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            synced(),
            finality(4, Root::ZERO, false),
        );
        assert!(matches!(o.status, ObservationStatus::Error { .. }));
        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            synced(),
            finality(0, Root::ZERO, false),
        );
        assert_eq!(o.status, ObservationStatus::Usable);
    }

    #[test]
    fn observation_serializes_as_tagged_plain_data() {
        let o = obs(
            "http://n1",
            ObservationStatus::Syncing { sync_distance: 5 },
            2,
        );
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(
            json["status"],
            serde_json::json!({"kind": "syncing", "sync_distance": 5})
        );
        assert_eq!(json["finalized"]["epoch"], 2);
        let back: BeaconObservation = serde_json::from_value(json).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn state_and_block_ids_parse_as_the_spec_lists_them() {
        for s in ["head", "genesis", "finalized", "justified", "0", "12345"] {
            assert_eq!(s.parse::<StateId>().unwrap().to_string(), s);
        }
        let r = format!("0x{}", "ab".repeat(32));
        assert_eq!(r.parse::<StateId>(), Ok(StateId::Root(Root([0xab; 32]))));
        assert_eq!(r.parse::<BlockId>(), Ok(BlockId::Root(Root([0xab; 32]))));
        for bad in ["current", "", "-1", "1.5", "0x12", "Head"] {
            assert_eq!(
                bad.parse::<StateId>(),
                Err(IdError::InvalidState(bad.to_string()))
            );
        }
        assert_eq!(
            "justified".parse::<BlockId>(),
            Err(IdError::InvalidBlock("justified".into()))
        );
        assert_eq!(
            IdError::InvalidState("current".into()).to_string(),
            "Invalid state ID: current"
        );
    }

    #[test]
    fn chain_spec_getters_check_shapes() {
        let spec: SpecConstants = serde_json::from_value(serde_json::json!({
            "SLOTS_PER_EPOCH": "32",
            "DOMAIN_BEACON_ATTESTER": "0x01000000",
            "BLOB_SCHEDULE": [{"EPOCH": "1", "MAX_BLOBS_PER_BLOCK": "6"}],
            "BAD": "0x10"
        }))
        .unwrap();
        assert_eq!(spec.get_u64("SLOTS_PER_EPOCH"), Ok(32));
        assert_eq!(
            spec.get_version("DOMAIN_BEACON_ATTESTER"),
            Ok(Version([1, 0, 0, 0]))
        );
        assert_eq!(
            spec.get_u64("MISSING"),
            Err(SpecError::Missing("MISSING".into()))
        );
        assert!(matches!(
            spec.get_u64("BLOB_SCHEDULE"),
            Err(SpecError::Invalid { .. })
        ));
        assert!(matches!(
            spec.get_u64("BAD"),
            Err(SpecError::Invalid { .. })
        ));
        assert!(matches!(
            spec.get_version("BAD"),
            Err(SpecError::Invalid { .. })
        ));
    }
}
