//! A beacon-node simulator that looks like a real beacon node to the coordinator.
//!
//! It serves the standard Beacon API shapes (the types of [`failover_common::beacon`]) for:
//! `GET /eth/v1/beacon/genesis`, `/eth/v1/beacon/states/{state_id}/fork`,
//! `/eth/v1/beacon/states/{state_id}/finality_checkpoints`, `/eth/v1/beacon/headers/{block_id}`,
//! `/eth/v1/node/syncing`, `/eth/v1/node/version`, `/eth/v1/node/health` and
//! `/eth/v1/config/spec`. Errors carry the spec's `{code, message}` body (400 for a malformed
//! id, 404 for an unknown state or block or route).
//!
//! Liveness comes from what validator clients publish, as on a real node: `POST
//! /eth/v2/beacon/pool/attestations` (Electra `SingleAttestation`s, which name their
//! `attester_index`) and `POST /eth/v1/beacon/blocks` / `POST /eth/v2/beacon/blocks` (a
//! `SignedBeaconBlock`; the `message`'s `slot` and `proposer_index` are read) mark the
//! validator live in the epoch of the message's slot, and `POST
//! /eth/v1/validator/liveness/{epoch}` answers from that record for the last
//! [`LIVENESS_EPOCHS`] epochs up to the current one (an epoch outside that window is a 400,
//! never "not live"). `POST /eth/v1/beacon/states/{state_id}/validators` maps pubkeys to
//! indices over a registry of interop validators ([`SimConfig::validators`]).
//!
//! Chaos controls live under `/sim/`, apart from the Beacon API: `POST /sim/finality
//! {"stalled": bool}`, `POST /sim/syncing {"syncing": bool}`, `POST /sim/optimistic
//! {"optimistic": bool}`, `POST /sim/liveness {"available": bool}` and `GET /sim/state` (a
//! [`SimStateView`]).
//!
//! # Chain model
//!
//! - Time comes from a [`Clock`] (injectable, so tests drive it). The wall-clock slot is
//!   `(now − genesis_time) / seconds_per_slot`, 0 before genesis; epoch = slot /
//!   `slots_per_epoch`. Every slot has a block.
//! - A healthy chain at epoch `e` has `finalized = e − finality_lag_epochs`,
//!   `current_justified = e − 1`, `previous_justified = e − 2` (all saturating at 0, and the
//!   justified ones never below `finalized`). Checkpoint roots are the block root of the epoch's
//!   first slot; epoch 0 uses the zero root, as the spec says for "no finality yet".
//! - Roots are deterministic: `sha256(tag ‖ genesis_validators_root ‖ slot as u64 LE)`, so two
//!   simulators with the same configuration agree on every root and chains with different
//!   genesis validators roots never share one.
//! - **Finality stall** (`/sim/finality`) is a property of the chain: from the slot where it
//!   starts until it ends, every state carries the checkpoints frozen at the start (as when
//!   participation drops below 2/3, justification stops too). After it ends, checkpoints follow
//!   the healthy formula again, which is never lower than the frozen ones.
//! - **Syncing** (`/sim/syncing`) is a property of this node: its head stays at the slot where
//!   syncing began, `sync_distance` grows with the wall clock, and `head` queries answer from
//!   that stale state. Turning it off catches up at once.
//! - **Optimistic** (`/sim/optimistic`) sets `is_optimistic` and `execution_optimistic` on
//!   non-finalized answers.
//! - **Liveness unavailable** (`/sim/liveness`) makes `POST /eth/v1/validator/liveness/{epoch}`
//!   answer 503, as a node that does not track liveness (or cannot now) does; what is
//!   published is still recorded.
//! - Forks: two versions only. Before `fork_epoch` the state's fork is
//!   `{genesis, genesis, 0}`, from it `{genesis, current, fork_epoch}`. The spec lists the named
//!   forks ALTAIR…FULU with the mainnet numbering convention `version[0] = genesis[0] + n`; those
//!   up to the current one are scheduled at `fork_epoch`, later ones at `FAR_FUTURE_EPOCH`. The
//!   default devnet is phase0 `0x00000000` at genesis and Deneb `0x04000000` from epoch 0.
//!
//! Invariants: with a clock that never goes backwards, the head slot and the finalized epoch
//! this node reports never decrease; `finalized.epoch ≤ previous_justified.epoch ≤
//! current_justified.epoch ≤ head epoch`; identical configuration and time give identical
//! answers.
//!
//! Not simulated (documented so nobody relies on it): lookup of states and blocks by root is
//! limited to the head, finalized and justified ones (others are 404); header signatures are the
//! BLS point at infinity, not real signatures; there are no reorgs or missed slots; the
//! signatures of published attestations and blocks are not verified (the node has no
//! validator registry), so liveness records whoever publishes in a validator's name.

#![warn(missing_docs)]

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use failover_common::beacon::{
    BeaconBlockHeader, BlockHeaderData, BlockId, Checkpoint, DataResponse, ErrorMessage,
    FinalityCheckpoints, Fork, Genesis, NodeVersion, SignedBeaconBlockHeader, SpecConstants,
    StateId, StateResponse, SyncingStatus,
};
use failover_common::types::{Root, Signature, Version};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Default genesis validators root: `sha256("failover-coordinator beacon-sim")`. Fixed and
/// nonzero so that a lab's nodes agree on the chain unless told otherwise.
pub const DEFAULT_GENESIS_VALIDATORS_ROOT: &str =
    "0xcc87973c220c17def00807a26feb4fc1254f443a4640e3749ebe92056f77c97b";

pub use failover_common::eth::FAR_FUTURE_EPOCH;

/// Epochs of liveness a node remembers: the current one and the `LIVENESS_EPOCHS - 1` before.
pub const LIVENESS_EPOCHS: u64 = 64;

/// Proposer indices cycle over this many validators (`proposer_index = slot mod N`).
pub const SIM_VALIDATOR_COUNT: u64 = 64;

/// The named forks after phase0, in order; fork `n` (1-based) has version
/// `[genesis[0] + n, genesis[1], genesis[2], genesis[3]]` (the mainnet convention).
pub const FORK_NAMES: [&str; 6] = ["ALTAIR", "BELLATRIX", "CAPELLA", "DENEB", "ELECTRA", "FULU"];

/// The phase0–capella `DOMAIN_*` constants of the consensus specs (name, value).
pub const DOMAINS: [(&str, [u8; 4]); 12] = [
    ("DOMAIN_BEACON_PROPOSER", [0x00, 0, 0, 0]),
    ("DOMAIN_BEACON_ATTESTER", [0x01, 0, 0, 0]),
    ("DOMAIN_RANDAO", [0x02, 0, 0, 0]),
    ("DOMAIN_DEPOSIT", [0x03, 0, 0, 0]),
    ("DOMAIN_VOLUNTARY_EXIT", [0x04, 0, 0, 0]),
    ("DOMAIN_SELECTION_PROOF", [0x05, 0, 0, 0]),
    ("DOMAIN_AGGREGATE_AND_PROOF", [0x06, 0, 0, 0]),
    ("DOMAIN_SYNC_COMMITTEE", [0x07, 0, 0, 0]),
    ("DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF", [0x08, 0, 0, 0]),
    ("DOMAIN_CONTRIBUTION_AND_PROOF", [0x09, 0, 0, 0]),
    ("DOMAIN_BLS_TO_EXECUTION_CHANGE", [0x0a, 0, 0, 0]),
    ("DOMAIN_APPLICATION_MASK", [0x00, 0, 0, 0x01]),
];

// ---------------------------------------------------------------------------------------------
// Clock
// ---------------------------------------------------------------------------------------------

/// Source of the current time, as a duration since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Time since 1970-01-01T00:00:00Z.
    fn now(&self) -> Duration;
}

/// The system wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Duration>,
}

impl ManualClock {
    /// A clock reading `now` (since the Unix epoch).
    pub fn new(now: Duration) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }

    /// Sets the clock to `now`.
    pub fn set(&self, now: Duration) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Why a [`SimConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimConfigError {
    /// `seconds_per_slot` must be positive, finite and a whole number of milliseconds.
    #[error("seconds_per_slot must be a positive whole number of milliseconds, got {0}")]
    SecondsPerSlot(f64),
    /// `slots_per_epoch` must be at least 1.
    #[error("slots_per_epoch must be at least 1")]
    SlotsPerEpoch,
    /// `finality_lag_epochs` must be at least 1 (finality trails justification).
    #[error("finality_lag_epochs must be at least 1")]
    FinalityLag,
    /// A real chain never has the zero genesis validators root.
    #[error("genesis_validators_root must not be zero")]
    ZeroGenesisValidatorsRoot,
    /// The current fork version is neither the genesis version nor a named fork's version
    /// under the numbering convention (see [`FORK_NAMES`]).
    #[error(
        "current fork version {current} is not genesis {genesis} nor genesis with first byte + 1..={max}"
    )]
    ForkVersion {
        /// Configured genesis fork version.
        genesis: Version,
        /// Configured current fork version.
        current: Version,
        /// Number of named forks.
        max: usize,
    },
}

/// Configuration of one simulated beacon node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Unix time of genesis (seconds).
    pub genesis_time: u64,
    /// Slot duration (seconds); may be fractional, e.g. 0.5 in a lab, to the millisecond.
    pub seconds_per_slot: f64,
    /// Slots per epoch (32 on mainnet, 8 on the minimal preset).
    pub slots_per_epoch: u64,
    /// How many epochs the finalized checkpoint trails the current epoch (2 when healthy).
    pub finality_lag_epochs: u64,
    /// The chain's genesis validators root.
    pub genesis_validators_root: Root,
    /// `GENESIS_FORK_VERSION`.
    pub genesis_fork_version: Version,
    /// The fork version in force from `fork_epoch` on.
    pub current_fork_version: Version,
    /// Epoch of the fork to `current_fork_version` (epochs).
    pub fork_epoch: u64,
    /// The validator registry: interop validators `0..validators` (their pubkeys from
    /// `failover_common::interop`), all active since genesis, served by `POST
    /// /eth/v1/beacon/states/{state_id}/validators`. 0: an empty registry.
    #[serde(default)]
    pub validators: u64,
}

impl SimConfig {
    /// The default devnet with genesis at `genesis_time` (Unix seconds): 12-second slots,
    /// 32-slot epochs, finality 2 epochs behind, [`DEFAULT_GENESIS_VALIDATORS_ROOT`], phase0
    /// `0x00000000` at genesis and Deneb `0x04000000` from epoch 0.
    pub fn devnet(genesis_time: u64) -> Self {
        Self {
            genesis_time,
            seconds_per_slot: 12.0,
            slots_per_epoch: 32,
            finality_lag_epochs: 2,
            genesis_validators_root: DEFAULT_GENESIS_VALIDATORS_ROOT
                .parse()
                .expect("valid constant"),
            genesis_fork_version: Version([0, 0, 0, 0]),
            current_fork_version: Version([4, 0, 0, 0]),
            fork_epoch: 0,
            validators: 0,
        }
    }

    /// Checks the configuration.
    ///
    /// Errors: [`SimConfigError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        self.slot_millis()?;
        if self.slots_per_epoch == 0 {
            return Err(SimConfigError::SlotsPerEpoch);
        }
        if self.finality_lag_epochs == 0 {
            return Err(SimConfigError::FinalityLag);
        }
        if self.genesis_validators_root.is_zero() {
            return Err(SimConfigError::ZeroGenesisValidatorsRoot);
        }
        self.current_fork_index()?;
        Ok(())
    }

    /// Slot duration in whole milliseconds.
    fn slot_millis(&self) -> Result<u64, SimConfigError> {
        let ms = self.seconds_per_slot * 1000.0;
        if !ms.is_finite() || ms < 1.0 || ms > u64::MAX as f64 || (ms - ms.round()).abs() > 1e-6 {
            return Err(SimConfigError::SecondsPerSlot(self.seconds_per_slot));
        }
        Ok(ms.round() as u64)
    }

    /// 0 when the current version is the genesis version, else the 1-based named fork index.
    fn current_fork_index(&self) -> Result<usize, SimConfigError> {
        (0..=FORK_NAMES.len())
            .find(|&n| self.fork_version(n) == Some(self.current_fork_version))
            .ok_or(SimConfigError::ForkVersion {
                genesis: self.genesis_fork_version,
                current: self.current_fork_version,
                max: FORK_NAMES.len(),
            })
    }

    /// Version of fork `n` (0 = genesis) under the numbering convention, if it fits in a byte.
    fn fork_version(&self, n: usize) -> Option<Version> {
        let g = self.genesis_fork_version.0;
        let first = g[0].checked_add(u8::try_from(n).ok()?)?;
        Some(Version([first, g[1], g[2], g[3]]))
    }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// A finality stall over wall-clock slots `[from, until)`; `until = None` while ongoing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stall {
    /// First slot of the stall.
    pub from: u64,
    /// Slot where finality resumed, if it has.
    pub until: Option<u64>,
}

#[derive(Debug, Default)]
struct Control {
    stalls: Vec<Stall>,
    syncing_since: Option<u64>,
    optimistic: bool,
    liveness_unavailable: bool,
}

struct Inner {
    config: SimConfig,
    slot_ms: u64,
    clock: Arc<dyn Clock>,
    control: Mutex<Control>,
    /// Validators seen live, by epoch (the last [`LIVENESS_EPOCHS`] epochs).
    live: Mutex<std::collections::BTreeMap<u64, std::collections::BTreeSet<u64>>>,
    /// Pubkey → index of the registry ([`SimConfig::validators`]).
    registry: std::collections::HashMap<failover_common::types::Pubkey, u64>,
}

/// Shared state of one simulated node: configuration, clock and chaos switches.
/// Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct SimState {
    inner: Arc<Inner>,
}

/// What `GET /sim/state` returns: the configuration, the switches and the node's current view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimStateView {
    /// The configuration.
    pub config: SimConfig,
    /// The clock reading (milliseconds since the Unix epoch).
    pub now_unix_ms: u64,
    /// The wall-clock slot (slots).
    pub wall_slot: u64,
    /// The node's head slot: the wall slot, or where syncing began (slots).
    pub head_slot: u64,
    /// Epoch of the head slot (epochs).
    pub head_epoch: u64,
    /// `wall_slot − head_slot` (slots).
    pub sync_distance: u64,
    /// Whether the node reports `is_syncing`.
    pub syncing: bool,
    /// Whether the node reports `is_optimistic`.
    pub optimistic: bool,
    /// Whether finality is stalled now.
    pub finality_stalled: bool,
    /// Whether the liveness endpoint answers (false: 503, `/sim/liveness`).
    #[serde(default = "yes")]
    pub liveness_available: bool,
    /// Stall history (wall-clock slots).
    pub stalls: Vec<Stall>,
    /// Checkpoints of the head state.
    pub checkpoints: FinalityCheckpoints,
}

impl SimState {
    /// State for `config` reading time from `clock`; all switches off.
    ///
    /// Errors: [`SimConfigError`] when the configuration is invalid.
    pub fn new(config: SimConfig, clock: Arc<dyn Clock>) -> Result<Self, SimConfigError> {
        config.validate()?;
        let slot_ms = config.slot_millis()?;
        let registry = (0..config.validators)
            .map(|i| (failover_common::interop::pubkey(i), i))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                slot_ms,
                clock,
                control: Mutex::new(Control::default()),
                live: Mutex::new(std::collections::BTreeMap::new()),
                registry,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.inner.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.clock.now().as_millis()).unwrap_or(u64::MAX)
    }

    /// The wall-clock slot now (0 before genesis).
    pub fn wall_slot(&self) -> u64 {
        let genesis_ms = self.inner.config.genesis_time.saturating_mul(1000);
        self.now_ms().saturating_sub(genesis_ms) / self.inner.slot_ms
    }

    fn epoch_of(&self, slot: u64) -> u64 {
        slot / self.inner.config.slots_per_epoch
    }

    fn start_slot(&self, epoch: u64) -> u64 {
        epoch.saturating_mul(self.inner.config.slots_per_epoch)
    }

    fn head_slot(&self, c: &Control, wall: u64) -> u64 {
        c.syncing_since.map_or(wall, |s| s.min(wall))
    }

    /// Stalls finality (`true`) from the current wall slot, or resumes it (`false`).
    /// Idempotent: stalling a stalled chain or resuming a healthy one changes nothing.
    pub fn set_finality_stalled(&self, stalled: bool) {
        let wall = self.wall_slot();
        let mut c = self.control();
        let ongoing = c.stalls.last().is_some_and(|s| s.until.is_none());
        match (stalled, ongoing) {
            (true, false) => c.stalls.push(Stall {
                from: wall,
                until: None,
            }),
            (false, true) => {
                if let Some(last) = c.stalls.last_mut() {
                    last.until = Some(wall.max(last.from));
                }
            }
            _ => {}
        }
    }

    /// Starts (`true`) or ends (`false`) syncing: while syncing the head stays at the slot where
    /// it began. Idempotent.
    pub fn set_syncing(&self, syncing: bool) {
        let wall = self.wall_slot();
        let mut c = self.control();
        match (syncing, c.syncing_since) {
            (true, None) => c.syncing_since = Some(wall),
            (false, Some(_)) => c.syncing_since = None,
            _ => {}
        }
    }

    /// Sets whether the node is optimistic.
    pub fn set_optimistic(&self, optimistic: bool) {
        self.control().optimistic = optimistic;
    }

    /// Makes the liveness endpoint answer 503 (`available = false`) or answer again.
    pub fn set_liveness_available(&self, available: bool) {
        self.control().liveness_unavailable = !available;
    }

    /// Checkpoints of a healthy chain at `epoch`.
    fn healthy_checkpoints(&self, epoch: u64) -> FinalityCheckpoints {
        let finalized = epoch.saturating_sub(self.inner.config.finality_lag_epochs);
        let current = epoch.saturating_sub(1).max(finalized);
        let previous = epoch.saturating_sub(2).max(finalized);
        FinalityCheckpoints {
            previous_justified: self.checkpoint(previous),
            current_justified: self.checkpoint(current),
            finalized: self.checkpoint(finalized),
        }
    }

    /// Checkpoints of the canonical state at `slot`, stalls included.
    fn checkpoints_at(&self, c: &Control, slot: u64) -> FinalityCheckpoints {
        let frozen_from = c
            .stalls
            .iter()
            .find(|s| s.from <= slot && s.until.is_none_or(|u| slot < u))
            .map(|s| s.from);
        self.healthy_checkpoints(self.epoch_of(frozen_from.unwrap_or(slot)))
    }

    /// The checkpoint of `epoch`: the block root at its first slot, zero for epoch 0.
    fn checkpoint(&self, epoch: u64) -> Checkpoint {
        let root = if epoch == 0 {
            Root::ZERO
        } else {
            self.block_root(self.start_slot(epoch))
        };
        Checkpoint { epoch, root }
    }

    fn hash(&self, tag: &[u8], slot: u64) -> Root {
        let mut h = Sha256::new();
        h.update(b"beacon-sim/");
        h.update(tag);
        h.update(self.inner.config.genesis_validators_root.0);
        h.update(slot.to_le_bytes());
        Root(h.finalize().into())
    }

    fn block_root(&self, slot: u64) -> Root {
        self.hash(b"block", slot)
    }

    fn state_root(&self, slot: u64) -> Root {
        self.hash(b"state", slot)
    }

    fn header(&self, slot: u64) -> BlockHeaderData {
        let mut signature = [0u8; 96];
        signature[0] = 0xc0; // compressed G2 point at infinity
        BlockHeaderData {
            root: self.block_root(slot),
            canonical: true,
            header: SignedBeaconBlockHeader {
                message: BeaconBlockHeader {
                    slot,
                    proposer_index: slot % SIM_VALIDATOR_COUNT,
                    parent_root: match slot {
                        0 => Root::ZERO,
                        s => self.block_root(s - 1),
                    },
                    state_root: self.state_root(slot),
                    body_root: self.hash(b"body", slot),
                },
                signature: Signature(signature),
            },
        }
    }

    /// The state's fork at `epoch`.
    fn fork_at(&self, epoch: u64) -> Fork {
        let cfg = &self.inner.config;
        if epoch < cfg.fork_epoch {
            Fork {
                previous_version: cfg.genesis_fork_version,
                current_version: cfg.genesis_fork_version,
                epoch: 0,
            }
        } else {
            Fork {
                previous_version: cfg.genesis_fork_version,
                current_version: cfg.current_fork_version,
                epoch: cfg.fork_epoch,
            }
        }
    }

    /// A snapshot of the node's view now.
    pub fn view(&self) -> SimStateView {
        let now_unix_ms = self.now_ms();
        let wall = self.wall_slot();
        let c = self.control();
        let head = self.head_slot(&c, wall);
        SimStateView {
            config: self.inner.config.clone(),
            now_unix_ms,
            wall_slot: wall,
            head_slot: head,
            head_epoch: self.epoch_of(head),
            sync_distance: wall - head,
            syncing: c.syncing_since.is_some(),
            optimistic: c.optimistic,
            finality_stalled: c.stalls.last().is_some_and(|s| s.until.is_none()),
            liveness_available: !c.liveness_unavailable,
            stalls: c.stalls.clone(),
            checkpoints: self.checkpoints_at(&c, head),
        }
    }

    /// The slot of the state `id` names in this node's view, or `None` when unknown (404).
    fn resolve_state(&self, c: &Control, head: u64, id: StateId) -> Option<u64> {
        let head_cps = self.checkpoints_at(c, head);
        let fin = self.start_slot(head_cps.finalized.epoch);
        let just = self.start_slot(head_cps.current_justified.epoch);
        match id {
            StateId::Head => Some(head),
            StateId::Genesis => Some(0),
            StateId::Finalized => Some(fin),
            StateId::Justified => Some(just),
            StateId::Slot(s) => (s <= head).then_some(s),
            StateId::Root(r) => [head, fin, just, 0]
                .into_iter()
                .find(|&s| self.state_root(s) == r),
        }
    }

    /// The slot of the block `id` names in this node's view, or `None` when unknown (404).
    fn resolve_block(&self, c: &Control, head: u64, id: BlockId) -> Option<u64> {
        let fin = self.start_slot(self.checkpoints_at(c, head).finalized.epoch);
        match id {
            BlockId::Head => Some(head),
            BlockId::Genesis => Some(0),
            BlockId::Finalized => Some(fin),
            BlockId::Slot(s) => (s <= head).then_some(s),
            BlockId::Root(r) => [head, fin, 0]
                .into_iter()
                .find(|&s| self.block_root(s) == r),
        }
    }

    /// The `(execution_optimistic, finalized)` flags of an answer about `slot`.
    fn flags(&self, c: &Control, head: u64, slot: u64) -> (bool, bool) {
        let fin_slot = self.start_slot(self.checkpoints_at(c, head).finalized.epoch);
        let finalized = slot <= fin_slot;
        (c.optimistic && !finalized, finalized)
    }

    /// Records that `validator` published a message of `slot` (slots); forgets epochs older
    /// than [`LIVENESS_EPOCHS`] before the current one. A message more than one epoch ahead
    /// of the wall clock is not recorded (no node accepts it).
    ///
    /// Errors: the slot's epoch is more than one epoch in the future.
    pub fn record_live(&self, validator: u64, slot: u64) -> Result<(), String> {
        let epoch = self.epoch_of(slot);
        let current = self.epoch_of(self.wall_slot());
        if epoch > current.saturating_add(1) {
            return Err(format!(
                "slot {slot} (epoch {epoch}) is in the future: the current epoch is {current}"
            ));
        }
        let mut live = self.inner.live.lock().expect("liveness lock");
        live.entry(epoch).or_default().insert(validator);
        let oldest = current.saturating_sub(LIVENESS_EPOCHS - 1);
        live.retain(|e, _| *e >= oldest);
        Ok(())
    }

    /// Whether each of `validators` was seen live in `epoch`.
    ///
    /// Errors: `epoch` is after the current epoch, or older than the [`LIVENESS_EPOCHS`] this
    /// node remembers: it cannot say, which is not "not live".
    pub fn liveness(&self, epoch: u64, validators: &[u64]) -> Result<Vec<bool>, String> {
        let current = self.epoch_of(self.wall_slot());
        if epoch > current {
            return Err(format!(
                "epoch {epoch} is after the current epoch {current}"
            ));
        }
        if epoch < current.saturating_sub(LIVENESS_EPOCHS - 1) {
            return Err(format!(
                "epoch {epoch} is older than the {LIVENESS_EPOCHS} epochs this node remembers \
                 (current epoch {current})"
            ));
        }
        let live = self.inner.live.lock().expect("liveness lock");
        let seen = live.get(&epoch);
        Ok(validators
            .iter()
            .map(|v| seen.is_some_and(|s| s.contains(v)))
            .collect())
    }

    /// The chain spec map (`GET /eth/v1/config/spec`).
    pub fn spec(&self) -> SpecConstants {
        let cfg = &self.inner.config;
        let mut m = std::collections::BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), serde_json::Value::String(v));
        };
        put("CONFIG_NAME", "beacon-sim".into());
        put(
            "PRESET_BASE",
            match cfg.slots_per_epoch {
                32 => "mainnet",
                8 => "minimal",
                _ => "custom",
            }
            .into(),
        );
        // A fractional slot time cannot be a quoted integer; it is written as a decimal
        // ("0.5") and SLOT_DURATION_MS carries the exact value.
        put("SECONDS_PER_SLOT", format_seconds(self.inner.slot_ms));
        put("SLOT_DURATION_MS", self.inner.slot_ms.to_string());
        put("SLOTS_PER_EPOCH", cfg.slots_per_epoch.to_string());
        put("MIN_GENESIS_TIME", cfg.genesis_time.to_string());
        put("GENESIS_DELAY", "0".into());
        put("GENESIS_FORK_VERSION", cfg.genesis_fork_version.to_string());
        let current = cfg.current_fork_index().unwrap_or(0);
        for (i, name) in FORK_NAMES.iter().enumerate() {
            let n = i + 1;
            if let Some(v) = cfg.fork_version(n) {
                put(&format!("{name}_FORK_VERSION"), v.to_string());
                let epoch = if n <= current {
                    cfg.fork_epoch
                } else {
                    FAR_FUTURE_EPOCH
                };
                put(&format!("{name}_FORK_EPOCH"), epoch.to_string());
            }
        }
        for (name, value) in DOMAINS {
            put(name, Version(value).to_string());
        }
        SpecConstants(m)
    }
}

fn format_seconds(ms: u64) -> String {
    let (whole, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// A Beacon API error response: the status and the spec's `{code, message}` body.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorMessage {
            code: self.0.as_u16(),
            message: self.1,
            stacktraces: None,
        };
        (self.0, Json(body)).into_response()
    }
}

fn bad_request(e: impl ToString) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, e.to_string())
}

/// The simulator's HTTP routes: the Beacon API subset and the `/sim/` controls.
pub fn router(state: SimState) -> Router {
    Router::new()
        .route("/eth/v1/beacon/genesis", get(genesis))
        .route("/eth/v1/beacon/states/{state_id}/fork", get(fork))
        .route(
            "/eth/v1/beacon/states/{state_id}/finality_checkpoints",
            get(finality_checkpoints),
        )
        .route("/eth/v1/beacon/headers/{block_id}", get(header))
        .route("/eth/v1/node/syncing", get(syncing))
        .route("/eth/v1/node/version", get(version))
        .route("/eth/v1/node/health", get(health))
        .route("/eth/v1/config/spec", get(spec))
        .route(
            "/eth/v2/beacon/pool/attestations",
            post(publish_attestations),
        )
        .route("/eth/v1/beacon/blocks", post(publish_block))
        .route("/eth/v2/beacon/blocks", post(publish_block))
        .route("/eth/v1/validator/liveness/{epoch}", post(liveness))
        .route(
            "/eth/v1/beacon/states/{state_id}/validators",
            post(validators),
        )
        .route("/sim/state", get(sim_state))
        .route("/sim/finality", post(sim_finality))
        .route("/sim/syncing", post(sim_syncing))
        .route("/sim/optimistic", post(sim_optimistic))
        .route("/sim/liveness", post(sim_liveness))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "Route not found".into()) })
        .with_state(state)
}

/// Serves [`router`] on `listener` (TLS with `tls`, else plain HTTP) until `shutdown`
/// completes, then finishes in-flight requests and returns, with the listener limits of
/// [`failover_common::serve`].
///
/// Errors: none; a failing connection only ends that connection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: SimState,
    tls: Option<std::sync::Arc<failover_common::tls::rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    failover_common::serve::serve(
        listener,
        router(state),
        failover_common::serve::ListenerLimits::default(),
        std::sync::Arc::default(),
        tls,
        shutdown,
    )
    .await;
    Ok(())
}

async fn genesis(State(s): State<SimState>) -> Json<DataResponse<Genesis>> {
    let cfg = s.config();
    Json(DataResponse {
        data: Genesis {
            genesis_time: cfg.genesis_time,
            genesis_validators_root: cfg.genesis_validators_root,
            genesis_fork_version: cfg.genesis_fork_version,
        },
    })
}

/// Resolves `id` and builds the answer about that state under one lock, so the data and the
/// flags describe the same moment.
fn state_query<T>(
    s: &SimState,
    id: &str,
    data: impl FnOnce(&Control, u64) -> T,
) -> Result<Json<StateResponse<T>>, ApiError> {
    let id: StateId = id.parse().map_err(bad_request)?;
    let wall = s.wall_slot();
    let c = s.control();
    let head = s.head_slot(&c, wall);
    let slot = s
        .resolve_state(&c, head, id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "State not found".into()))?;
    let (execution_optimistic, finalized) = s.flags(&c, head, slot);
    Ok(Json(StateResponse {
        execution_optimistic,
        finalized,
        data: data(&c, slot),
    }))
}

async fn fork(
    State(s): State<SimState>,
    Path(id): Path<String>,
) -> Result<Json<StateResponse<Fork>>, ApiError> {
    state_query(&s, &id, |_, slot| s.fork_at(s.epoch_of(slot)))
}

async fn finality_checkpoints(
    State(s): State<SimState>,
    Path(id): Path<String>,
) -> Result<Json<StateResponse<FinalityCheckpoints>>, ApiError> {
    state_query(&s, &id, |c, slot| s.checkpoints_at(c, slot))
}

async fn header(
    State(s): State<SimState>,
    Path(id): Path<String>,
) -> Result<Json<StateResponse<BlockHeaderData>>, ApiError> {
    let id: BlockId = id.parse().map_err(bad_request)?;
    let wall = s.wall_slot();
    let c = s.control();
    let head = s.head_slot(&c, wall);
    let slot = s
        .resolve_block(&c, head, id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "Block not found".into()))?;
    let (execution_optimistic, finalized) = s.flags(&c, head, slot);
    Ok(Json(StateResponse {
        execution_optimistic,
        finalized,
        data: s.header(slot),
    }))
}

async fn syncing(State(s): State<SimState>) -> Json<DataResponse<SyncingStatus>> {
    let v = s.view();
    Json(DataResponse {
        data: SyncingStatus {
            head_slot: v.head_slot,
            sync_distance: v.sync_distance,
            is_syncing: v.syncing,
            is_optimistic: v.optimistic,
            el_offline: false,
        },
    })
}

async fn version() -> Json<DataResponse<NodeVersion>> {
    Json(DataResponse {
        data: NodeVersion {
            version: format!(
                "beacon-sim/v{} ({} {})",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
        },
    })
}

/// Query of `GET /eth/v1/node/health`.
#[derive(Deserialize)]
struct HealthQuery {
    syncing_status: Option<u16>,
}

/// 200 when ready; 206 (or `syncing_status`, 100–599) while syncing or optimistic; 400 for a
/// `syncing_status` out of range (Beacon API `getHealth`).
async fn health(
    State(s): State<SimState>,
    Query(q): Query<HealthQuery>,
) -> Result<StatusCode, ApiError> {
    let not_ready = match q.syncing_status {
        None => StatusCode::PARTIAL_CONTENT,
        Some(code) => (100..=599)
            .contains(&code)
            .then(|| StatusCode::from_u16(code).ok())
            .flatten()
            .ok_or_else(|| bad_request(format!("Invalid syncing status code: {code}")))?,
    };
    let v = s.view();
    Ok(if v.syncing || v.optimistic {
        not_ready
    } else {
        StatusCode::OK
    })
}

async fn spec(State(s): State<SimState>) -> Json<DataResponse<SpecConstants>> {
    Json(DataResponse { data: s.spec() })
}

/// A uint64 as the Beacon API writes it: a quoted decimal.
#[derive(Debug, Clone, Copy, Deserialize)]
struct Quoted(#[serde(with = "failover_common::types::quoted_u64")] u64);

/// The part of an Electra `SingleAttestation` the node reads.
#[derive(Debug, Deserialize)]
struct PublishedAttestation {
    attester_index: Quoted,
    data: failover_common::eth::AttestationData,
    #[allow(dead_code)]
    signature: Signature,
}

/// The part of a `SignedBeaconBlock` the node reads.
#[derive(Debug, Deserialize)]
struct PublishedBlock {
    message: PublishedBlockMessage,
    #[allow(dead_code)]
    signature: Signature,
}

#[derive(Debug, Deserialize)]
struct PublishedBlockMessage {
    slot: Quoted,
    proposer_index: Quoted,
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid request body: {e}")))
}

/// `POST /eth/v2/beacon/pool/attestations`: marks each attester live in its attestation's
/// epoch. 400 names the first attestation that is malformed or from the future; nothing of
/// that body is recorded then.
async fn publish_attestations(
    State(s): State<SimState>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let atts: Vec<PublishedAttestation> = parse_json(&body)?;
    let current = s.epoch_of(s.wall_slot());
    if let Some((i, a)) = atts
        .iter()
        .enumerate()
        .find(|(_, a)| s.epoch_of(a.data.slot) > current.saturating_add(1))
    {
        return Err(bad_request(format!(
            "attestation {i}: slot {} is in the future (current epoch {current})",
            a.data.slot
        )));
    }
    for a in &atts {
        s.record_live(a.attester_index.0, a.data.slot)
            .map_err(bad_request)?;
    }
    Ok(StatusCode::OK)
}

/// `POST /eth/v1/beacon/blocks` and `/eth/v2/beacon/blocks`: marks the proposer live in the
/// block's epoch.
async fn publish_block(
    State(s): State<SimState>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let b: PublishedBlock = parse_json(&body)?;
    s.record_live(b.message.proposer_index.0, b.message.slot.0)
        .map_err(bad_request)?;
    Ok(StatusCode::OK)
}

/// One entry of the `POST /eth/v1/validator/liveness/{epoch}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    /// Validator index (quoted decimal).
    #[serde(with = "failover_common::types::quoted_u64")]
    pub index: u64,
    /// Whether a message of the validator's was seen in the epoch.
    pub is_live: bool,
}

/// `POST /eth/v1/validator/liveness/{epoch}` with a body of quoted validator indices.
async fn liveness(
    State(s): State<SimState>,
    Path(epoch): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<DataResponse<Vec<Liveness>>>, ApiError> {
    let epoch: u64 = epoch
        .parse()
        .map_err(|_| bad_request(format!("invalid epoch {epoch:?}")))?;
    let indices: Vec<Quoted> = parse_json(&body)?;
    let indices: Vec<u64> = indices.into_iter().map(|q| q.0).collect();
    if s.control().liveness_unavailable {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "liveness tracking is unavailable on this node".into(),
        ));
    }
    let live = s.liveness(epoch, &indices).map_err(bad_request)?;
    Ok(Json(DataResponse {
        data: indices
            .into_iter()
            .zip(live)
            .map(|(index, is_live)| Liveness { index, is_live })
            .collect(),
    }))
}

/// Body of `POST /eth/v1/beacon/states/{state_id}/validators`.
#[derive(Debug, Deserialize)]
struct ValidatorsQuery {
    /// Pubkeys (`0x`…) or indices (decimal); absent: every validator.
    #[serde(default)]
    ids: Option<Vec<String>>,
}

/// `POST /eth/v1/beacon/states/{state_id}/validators`: the registry entries named by `ids`
/// (pubkeys or indices; unknown ones are left out, as the Beacon API says), every one active
/// since genesis with 32 ETH. The state id must resolve like any other state query.
async fn validators(
    State(s): State<SimState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<StateResponse<Vec<serde_json::Value>>>, ApiError> {
    let q: ValidatorsQuery = if body.is_empty() {
        ValidatorsQuery { ids: None }
    } else {
        parse_json(&body)?
    };
    let count = s.config().validators;
    let mut indices: Vec<u64> = match q.ids {
        None => (0..count).collect(),
        Some(ids) => {
            let mut out = Vec::new();
            for id in ids {
                if id.starts_with("0x") {
                    let pk: failover_common::types::Pubkey = id
                        .parse()
                        .map_err(|e| bad_request(format!("{id:?}: {e}")))?;
                    out.extend(s.inner.registry.get(&pk).copied());
                } else {
                    let i: u64 = id
                        .parse()
                        .map_err(|_| bad_request(format!("invalid validator id {id:?}")))?;
                    if i < count {
                        out.push(i);
                    }
                }
            }
            out
        }
    };
    indices.sort_unstable();
    indices.dedup();
    let far = FAR_FUTURE_EPOCH.to_string();
    state_query(&s, &id, |_, _| {
        indices
            .iter()
            .map(|i| {
                serde_json::json!({
                    "index": i.to_string(),
                    "balance": "32000000000",
                    "status": "active_ongoing",
                    "validator": {
                        "pubkey": failover_common::interop::pubkey(*i),
                        "withdrawal_credentials": Root::ZERO,
                        "effective_balance": "32000000000",
                        "slashed": false,
                        "activation_eligibility_epoch": "0",
                        "activation_epoch": "0",
                        "exit_epoch": far,
                        "withdrawable_epoch": far,
                    }
                })
            })
            .collect()
    })
}

async fn sim_state(State(s): State<SimState>) -> Json<SimStateView> {
    Json(s.view())
}

/// Body of `POST /sim/finality`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalityControl {
    /// True freezes the finality checkpoints; false lets them follow the clock again.
    pub stalled: bool,
}

/// Body of `POST /sim/syncing`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncingControl {
    /// True makes the node report `is_syncing` with a head stuck where it began.
    pub syncing: bool,
}

/// Body of `POST /sim/liveness`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LivenessControl {
    /// False makes `POST /eth/v1/validator/liveness/{epoch}` answer 503.
    pub available: bool,
}

fn yes() -> bool {
    true
}

async fn sim_liveness(
    State(s): State<SimState>,
    Json(b): Json<LivenessControl>,
) -> Json<SimStateView> {
    s.set_liveness_available(b.available);
    Json(s.view())
}

/// Body of `POST /sim/optimistic`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimisticControl {
    /// True makes the node report `is_optimistic` and `execution_optimistic`.
    pub optimistic: bool,
}

async fn sim_finality(
    State(s): State<SimState>,
    Json(b): Json<FinalityControl>,
) -> Json<SimStateView> {
    s.set_finality_stalled(b.stalled);
    Json(s.view())
}

async fn sim_syncing(
    State(s): State<SimState>,
    Json(b): Json<SyncingControl>,
) -> Json<SimStateView> {
    s.set_syncing(b.syncing);
    Json(s.view())
}

async fn sim_optimistic(
    State(s): State<SimState>,
    Json(b): Json<OptimisticControl>,
) -> Json<SimStateView> {
    s.set_optimistic(b.optimistic);
    Json(s.view())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use failover_common::beacon::{FinalityCheckpointsResponse, SyncingResponse};
    use serde::de::DeserializeOwned;
    use tower::ServiceExt;

    const GENESIS: u64 = 1_700_000_000;

    /// A sim with 0.5 s slots and 8-slot epochs (4 s epochs) and its clock at genesis.
    fn lab() -> (SimState, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Duration::from_secs(GENESIS)));
        let mut cfg = SimConfig::devnet(GENESIS);
        cfg.seconds_per_slot = 0.5;
        cfg.slots_per_epoch = 8;
        (SimState::new(cfg, clock.clone()).unwrap(), clock)
    }

    fn epochs(n: u64) -> Duration {
        Duration::from_secs(4 * n)
    }

    async fn call(
        s: &SimState,
        method: &str,
        uri: &str,
        body: Option<&str>,
    ) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let resp = router(s.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    async fn get_json<T: DeserializeOwned>(s: &SimState, uri: &str) -> T {
        let (status, body) = call(s, "GET", uri, None).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    async fn head_finality(s: &SimState) -> FinalityCheckpointsResponse {
        get_json(s, "/eth/v1/beacon/states/head/finality_checkpoints").await
    }

    fn attestation(attester: u64, slot: u64) -> serde_json::Value {
        let root = format!("0x{}", "ab".repeat(32));
        let epoch = slot / 8;
        serde_json::json!({
            "committee_index": "0",
            "attester_index": attester.to_string(),
            "data": {
                "slot": slot.to_string(),
                "index": "0",
                "beacon_block_root": root,
                "source": {"epoch": epoch.saturating_sub(1).to_string(), "root": root},
                "target": {"epoch": epoch.to_string(), "root": root},
            },
            "signature": format!("0x{}", "11".repeat(96)),
        })
    }

    async fn live(s: &SimState, epoch: u64, indices: &[u64]) -> (StatusCode, Vec<(u64, bool)>) {
        let body =
            serde_json::to_string(&indices.iter().map(|i| i.to_string()).collect::<Vec<_>>())
                .unwrap();
        let (status, bytes) = call(
            s,
            "POST",
            &format!("/eth/v1/validator/liveness/{epoch}"),
            Some(&body),
        )
        .await;
        if status != StatusCode::OK {
            return (status, vec![]);
        }
        let r: DataResponse<Vec<Liveness>> = serde_json::from_slice(&bytes).unwrap();
        (
            status,
            r.data.into_iter().map(|l| (l.index, l.is_live)).collect(),
        )
    }

    #[tokio::test]
    async fn liveness_is_what_validators_published_in_that_epoch() {
        let (s, clock) = lab();
        clock.advance(epochs(2) + Duration::from_millis(600));
        // Validator 5 attests at slot 17 (epoch 2); validator 9 proposes slot 16.
        let body = serde_json::to_string(&vec![attestation(5, 17)]).unwrap();
        let (status, _) = call(&s, "POST", "/eth/v2/beacon/pool/attestations", Some(&body)).await;
        assert_eq!(status, StatusCode::OK);
        let block = serde_json::json!({
            "message": {"slot": "16", "proposer_index": "9", "parent_root": "0x00", "body": {}},
            "signature": format!("0x{}", "22".repeat(96)),
        });
        let (status, _) = call(
            &s,
            "POST",
            "/eth/v2/beacon/blocks",
            Some(&block.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::OK);

        assert_eq!(
            live(&s, 2, &[5, 6, 9]).await,
            (StatusCode::OK, vec![(5, true), (6, false), (9, true)])
        );
        assert_eq!(live(&s, 1, &[5]).await, (StatusCode::OK, vec![(5, false)]));
        // A node that cannot tell says so (503), never "not live".
        call(&s, "POST", "/sim/liveness", Some(r#"{"available":false}"#)).await;
        assert_eq!(live(&s, 2, &[5]).await.0, StatusCode::SERVICE_UNAVAILABLE);
        let view: SimStateView = get_json(&s, "/sim/state").await;
        assert!(!view.liveness_available);
        call(&s, "POST", "/sim/liveness", Some(r#"{"available":true}"#)).await;
        assert_eq!(live(&s, 2, &[5]).await.0, StatusCode::OK);
        // The node cannot say about the future, nor about what it forgot.
        assert_eq!(live(&s, 3, &[5]).await.0, StatusCode::BAD_REQUEST);
        clock.advance(epochs(LIVENESS_EPOCHS));
        assert_eq!(live(&s, 2, &[5]).await.0, StatusCode::BAD_REQUEST);
        assert_eq!(live(&s, u64::MAX, &[5]).await.0, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn what_the_duty_simulator_publishes_makes_its_validators_live() {
        use crate::lab::duties::{attestation_duty, block_duty, publication};
        let (s, clock) = lab();
        clock.advance(epochs(3));
        let fork_info = failover_common::eth::ForkInfo {
            fork: failover_common::eth::Fork {
                previous_version: Version([0, 0, 0, 0]),
                current_version: Version([4, 0, 0, 0]),
                epoch: 0,
            },
            genesis_validators_root: s.config().genesis_validators_root,
        };
        let v = |index| crate::lab::Validator {
            index,
            pubkey: failover_common::interop::pubkey(index),
        };
        let sig = Signature([0x33; 96]);
        for duty in [
            attestation_duty(&v(3), 3 * 8 + 3, &fork_info, 8),
            block_duty(&v(7), 3 * 8 + 1, &fork_info, 8),
        ] {
            let (path, body) = publication(&duty, &sig);
            let (status, answer) = call(&s, "POST", path, Some(&body.to_string())).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&answer)
            );
        }
        assert_eq!(
            live(&s, 3, &[3, 7, 4]).await,
            (StatusCode::OK, vec![(3, true), (7, true), (4, false)])
        );
    }

    #[tokio::test]
    async fn malformed_or_future_publications_are_refused_and_record_nothing() {
        let (s, clock) = lab();
        clock.advance(epochs(1));
        for body in [
            "not json".to_string(),
            "[{}]".to_string(),
            serde_json::to_string(&vec![attestation(5, 8), attestation(6, 8 * 40)]).unwrap(),
        ] {
            let (status, _) =
                call(&s, "POST", "/eth/v2/beacon/pool/attestations", Some(&body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        }
        assert_eq!(
            live(&s, 1, &[5, 6]).await,
            (StatusCode::OK, vec![(5, false), (6, false)])
        );
        let (status, _) = call(&s, "POST", "/eth/v1/validator/liveness/x", Some("[]")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = call(&s, "POST", "/eth/v1/validator/liveness/1", Some("[\"-1\"]")).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "indices are uint64 decimals"
        );
    }

    #[test]
    fn default_genesis_validators_root_is_the_documented_hash() {
        let expected: [u8; 32] = Sha256::digest(b"failover-coordinator beacon-sim").into();
        let root: Root = DEFAULT_GENESIS_VALIDATORS_ROOT.parse().unwrap();
        assert_eq!(root, Root(expected));
    }

    #[tokio::test]
    async fn finality_advances_as_time_passes() {
        let (s, clock) = lab();
        let at_genesis = head_finality(&s).await;
        assert_eq!(
            at_genesis.data.finalized,
            Checkpoint {
                epoch: 0,
                root: Root::ZERO
            }
        );

        let mut last = 0;
        for e in 1..=6u64 {
            clock.set(Duration::from_secs(GENESIS) + epochs(e));
            let r = head_finality(&s).await;
            let expected = e.saturating_sub(2);
            assert_eq!(r.data.finalized.epoch, expected, "at epoch {e}");
            assert_eq!(r.data.current_justified.epoch, e - 1);
            assert!(r.data.finalized.epoch >= last);
            assert!(r.data.finalized.epoch <= r.data.previous_justified.epoch);
            assert!(!r.execution_optimistic && !r.finalized);
            if expected > 0 {
                // The checkpoint root is the block root of the epoch's first slot.
                let h: StateResponse<BlockHeaderData> =
                    get_json(&s, &format!("/eth/v1/beacon/headers/{}", expected * 8)).await;
                assert_eq!(r.data.finalized.root, h.data.root);
            }
            last = r.data.finalized.epoch;
        }
        // Mid-epoch: half an epoch later nothing changes yet.
        clock.advance(Duration::from_secs(2));
        assert_eq!(head_finality(&s).await.data.finalized.epoch, 4);
    }

    #[tokio::test]
    async fn stalled_finality_freezes_and_resumes() {
        let (s, clock) = lab();
        clock.advance(epochs(5));
        let (status, _) = call(&s, "POST", "/sim/finality", Some(r#"{"stalled":true}"#)).await;
        assert_eq!(status, StatusCode::OK);
        let frozen = head_finality(&s).await.data;
        assert_eq!(frozen.finalized.epoch, 3);

        clock.advance(epochs(10));
        let during = head_finality(&s).await.data;
        assert_eq!(during, frozen, "checkpoints frozen while stalled");
        let syncing: SyncingResponse = get_json(&s, "/eth/v1/node/syncing").await;
        assert_eq!(syncing.data.head_slot, 15 * 8, "the head still advances");
        let view: SimStateView = get_json(&s, "/sim/state").await;
        assert!(view.finality_stalled);

        // A state from inside the stall keeps the frozen checkpoints after recovery.
        let (status, _) = call(&s, "POST", "/sim/finality", Some(r#"{"stalled":false}"#)).await;
        assert_eq!(status, StatusCode::OK);
        let after = head_finality(&s).await.data;
        assert_eq!(after.finalized.epoch, 13);
        let inside: FinalityCheckpointsResponse = get_json(
            &s,
            &format!("/eth/v1/beacon/states/{}/finality_checkpoints", 10 * 8),
        )
        .await;
        assert_eq!(inside.data, frozen);
    }

    #[tokio::test]
    async fn syncing_node_reports_distance_and_a_stale_head() {
        let (s, clock) = lab();
        clock.advance(epochs(4));
        let (status, _) = call(&s, "POST", "/sim/syncing", Some(r#"{"syncing":true}"#)).await;
        assert_eq!(status, StatusCode::OK);
        clock.advance(Duration::from_secs(5)); // 10 slots
        let r: SyncingResponse = get_json(&s, "/eth/v1/node/syncing").await;
        assert_eq!(r.data.head_slot, 32);
        assert_eq!(r.data.sync_distance, 10);
        assert!(r.data.is_syncing);
        assert_eq!(head_finality(&s).await.data.finalized.epoch, 2);
        let (status, _) = call(&s, "GET", "/eth/v1/node/health", None).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        let (status, _) = call(&s, "GET", "/eth/v1/node/health?syncing_status=503", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, _) = call(&s, "GET", "/eth/v1/node/health?syncing_status=99", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        call(&s, "POST", "/sim/syncing", Some(r#"{"syncing":false}"#)).await;
        let r: SyncingResponse = get_json(&s, "/eth/v1/node/syncing").await;
        assert_eq!(
            (r.data.head_slot, r.data.sync_distance, r.data.is_syncing),
            (42, 0, false)
        );
        let (status, _) = call(&s, "GET", "/eth/v1/node/health", None).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn optimistic_flag_marks_unfinalized_answers_only() {
        let (s, clock) = lab();
        clock.advance(epochs(6));
        call(
            &s,
            "POST",
            "/sim/optimistic",
            Some(r#"{"optimistic":true}"#),
        )
        .await;
        let head = head_finality(&s).await;
        assert!(head.execution_optimistic && !head.finalized);
        let fin: FinalityCheckpointsResponse =
            get_json(&s, "/eth/v1/beacon/states/finalized/finality_checkpoints").await;
        assert!(!fin.execution_optimistic && fin.finalized);
        let sync: SyncingResponse = get_json(&s, "/eth/v1/node/syncing").await;
        assert!(sync.data.is_optimistic && !sync.data.is_syncing);
    }

    #[tokio::test]
    async fn genesis_fork_and_spec_describe_the_configured_chain() {
        let (s, clock) = lab();
        clock.advance(epochs(1));
        let g: DataResponse<Genesis> = get_json(&s, "/eth/v1/beacon/genesis").await;
        assert_eq!(g.data.genesis_time, GENESIS);
        assert_eq!(
            g.data.genesis_validators_root,
            s.config().genesis_validators_root
        );
        assert_eq!(g.data.genesis_fork_version, Version([0; 4]));

        let f: StateResponse<Fork> = get_json(&s, "/eth/v1/beacon/states/head/fork").await;
        assert_eq!(
            f.data,
            Fork {
                previous_version: Version([0; 4]),
                current_version: Version([4, 0, 0, 0]),
                epoch: 0
            }
        );

        let spec: DataResponse<SpecConstants> = get_json(&s, "/eth/v1/config/spec").await;
        let spec = spec.data;
        assert_eq!(spec.get_u64("SLOTS_PER_EPOCH"), Ok(8));
        assert_eq!(spec.get_str("SECONDS_PER_SLOT"), Ok("0.5"));
        assert_eq!(spec.get_u64("SLOT_DURATION_MS"), Ok(500));
        assert_eq!(
            spec.get_version("DENEB_FORK_VERSION"),
            Ok(Version([4, 0, 0, 0]))
        );
        assert_eq!(spec.get_u64("DENEB_FORK_EPOCH"), Ok(0));
        assert_eq!(spec.get_u64("ELECTRA_FORK_EPOCH"), Ok(FAR_FUTURE_EPOCH));
        assert_eq!(
            spec.get_version("DOMAIN_AGGREGATE_AND_PROOF"),
            Ok(Version([6, 0, 0, 0]))
        );
        assert_eq!(spec.get_str("PRESET_BASE"), Ok("minimal"));

        let v: DataResponse<NodeVersion> = get_json(&s, "/eth/v1/node/version").await;
        assert!(v.data.version.starts_with("beacon-sim/v"));
    }

    #[tokio::test]
    async fn fork_before_the_fork_epoch_is_the_genesis_version() {
        let clock = Arc::new(ManualClock::new(Duration::from_secs(GENESIS)));
        let mut cfg = SimConfig::devnet(GENESIS);
        cfg.fork_epoch = 2;
        cfg.current_fork_version = Version([3, 0, 0, 0]);
        let s = SimState::new(cfg, clock.clone()).unwrap();
        clock.advance(Duration::from_secs(12 * 32 * 3));
        let before: StateResponse<Fork> = get_json(&s, "/eth/v1/beacon/states/genesis/fork").await;
        assert_eq!(before.data.current_version, Version([0; 4]));
        let after: StateResponse<Fork> = get_json(&s, "/eth/v1/beacon/states/head/fork").await;
        assert_eq!(after.data.current_version, Version([3, 0, 0, 0]));
        assert_eq!(after.data.epoch, 2);
        let spec = s.spec();
        assert_eq!(spec.get_u64("CAPELLA_FORK_EPOCH"), Ok(2));
        assert_eq!(spec.get_u64("DENEB_FORK_EPOCH"), Ok(FAR_FUTURE_EPOCH));
        assert_eq!(spec.get_u64("SECONDS_PER_SLOT"), Ok(12));
    }

    #[tokio::test]
    async fn headers_chain_to_their_parents() {
        let (s, clock) = lab();
        clock.advance(Duration::from_millis(500 * 20));
        let head: StateResponse<BlockHeaderData> =
            get_json(&s, "/eth/v1/beacon/headers/head").await;
        assert_eq!(head.data.header.message.slot, 20);
        let parent: StateResponse<BlockHeaderData> =
            get_json(&s, "/eth/v1/beacon/headers/19").await;
        assert_eq!(head.data.header.message.parent_root, parent.data.root);
        let by_root: StateResponse<BlockHeaderData> =
            get_json(&s, &format!("/eth/v1/beacon/headers/{}", head.data.root)).await;
        assert_eq!(by_root.data, head.data);
        let genesis: StateResponse<BlockHeaderData> =
            get_json(&s, "/eth/v1/beacon/headers/genesis").await;
        assert_eq!(genesis.data.header.message.parent_root, Root::ZERO);
        assert!(genesis.finalized);
    }

    #[tokio::test]
    async fn malformed_and_unknown_ids_get_spec_errors() {
        let (s, _clock) = lab();
        let (status, body) = call(
            &s,
            "GET",
            "/eth/v1/beacon/states/current/finality_checkpoints",
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let e: ErrorMessage = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "Invalid state ID: current")
        );

        let (status, body) = call(&s, "GET", "/eth/v1/beacon/states/999/fork", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let e: ErrorMessage = serde_json::from_slice(&body).unwrap();
        assert_eq!((e.code, e.message.as_str()), (404, "State not found"));

        let (status, _) = call(&s, "GET", "/eth/v1/beacon/headers/justified", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = call(&s, "GET", "/eth/v1/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = call(&s, "POST", "/sim/finality", Some(r#"{"stall":true}"#)).await;
        assert!(
            status.is_client_error(),
            "a misspelt control is refused, got {status}"
        );
        let view: SimStateView = get_json(&s, "/sim/state").await;
        assert!(!view.finality_stalled);
    }

    #[test]
    fn invalid_configurations_are_refused() {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let base = SimConfig::devnet(GENESIS);
        type Breaker = fn(&mut SimConfig);
        let cases: [(Breaker, SimConfigError); 5] = [
            (
                |c| c.seconds_per_slot = 0.0,
                SimConfigError::SecondsPerSlot(0.0),
            ),
            (
                |c| c.seconds_per_slot = 0.0005,
                SimConfigError::SecondsPerSlot(0.0005),
            ),
            (|c| c.slots_per_epoch = 0, SimConfigError::SlotsPerEpoch),
            (|c| c.finality_lag_epochs = 0, SimConfigError::FinalityLag),
            (
                |c| c.genesis_validators_root = Root::ZERO,
                SimConfigError::ZeroGenesisValidatorsRoot,
            ),
        ];
        for (break_it, expected) in cases {
            let mut cfg = base.clone();
            break_it(&mut cfg);
            assert_eq!(SimState::new(cfg, clock.clone()).err(), Some(expected));
        }
        let mut cfg = base.clone();
        cfg.current_fork_version = Version([0x42, 0, 0, 0]);
        assert!(matches!(
            SimState::new(cfg, clock).err(),
            Some(SimConfigError::ForkVersion { .. })
        ));
    }

    #[test]
    fn fractional_slot_times_format_exactly() {
        assert_eq!(format_seconds(500), "0.5");
        assert_eq!(format_seconds(12_000), "12");
        assert_eq!(format_seconds(1_250), "1.25");
    }
}
