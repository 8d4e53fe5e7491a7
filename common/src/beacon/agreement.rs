//! Finality evidence: what one beacon node said ([`BeaconObservation`]) and the checkpoint
//! enough of them agree on ([`agree`]).
//!
//! Invariants: an observation is plain data (no clock, no handle), so every replica applies the
//! same bytes; only usable observations count; [`agree`] depends only on the multiset of its
//! inputs and fails closed.

use serde::{Deserialize, Serialize};

use crate::types::Root;

use super::types::Checkpoint;

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
