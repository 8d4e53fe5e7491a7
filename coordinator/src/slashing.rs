//! Slashing protection: the pure rules, per validator.
//!
//! This module decides whether a block or attestation may be signed given everything this
//! cluster has recorded for the validator. It is plain data in, verdict out: no I/O, no clock.
//! The replicated state machine calls [`ValidatorHistory::check_and_insert_block`] and
//! [`ValidatorHistory::check_and_insert_attestation`], the only ways to record a signature.
//!
//! Rules (consensus specs `is_slashable_attestation_data`, `process_proposer_slashing`;
//! EIP-3076 conditions; the "complete" strategy of the interchange tests):
//! - **Blocks.** A block at a slot that already has a record is allowed only if it is the
//!   identical message (same non-zero signing root: [`Verdict::SameData`]), otherwise it is a
//!   double proposal. A slot at or below the block lower bound is refused.
//! - **Attestations.** `source > target` is refused. A second attestation for a target is
//!   allowed only if identical (same non-zero signing root), otherwise it is a double vote. An
//!   attestation that surrounds, or is surrounded by, any recorded one is refused. A source
//!   below the source lower bound, or a target at or below the target lower bound, is refused.
//! - **Lower bounds.** History below the oldest record is unknown, so nothing older may be
//!   signed (as Lighthouse does). Once pruning has set a low watermark, the watermark is the
//!   lower bound, a hard floor: imported records older than it never lower it.
//! - **Pruning.** [`ValidatorHistory::prune_below`] drops records older than finality and
//!   sets the watermarks to the largest value dropped, so every refusal the dropped records
//!   would have caused is still caused by a watermark (I3 across pruning): a surround of a
//!   dropped attestation needs a source below the source watermark, a double vote or a
//!   surrounded vote needs a target at or below the target watermark. This holds whatever the
//!   kept records are, even when imported history holds slashable pairs.
//! - **Imported history** (EIP-3076, "complete" strategy): every imported record is kept, and
//!   imported data only ever adds refusals. Slashable data in a file is merged, not refused:
//!   two blocks at one slot keep the slot with an unknown root (nothing more is signed
//!   there), two attestations for one target keep the target with an unknown root and the
//!   smallest and largest source ([`AttestationRecord::max_source_epoch`]), and a surround
//!   pair or `source > target` record is stored as it is, so it refuses everything it is
//!   slashable with. An unknown root is never filled in later. Records at or below a low
//!   watermark on every axis add nothing (the watermark already refuses what they would) and
//!   are dropped, so the watermark stays exact in an export.
//! - **Export.** Because the watermark acts as a record, an EIP-3076 export writes it as one
//!   (without a signing root) and a fresh cluster importing the file refuses exactly what this
//!   one refuses.
//! - **Restore floor.** A cluster restored from a backup carries a [`RestoreFloor`] at or
//!   above the chain head at restore time; [`ValidatorHistory::raise_floor`] makes it a
//!   watermark of every validator and [`ValidatorHistory::with_floor`] of every validator
//!   first seen later, so nothing an agent of the old cluster may have signed after the backup
//!   can be double-voted or surrounded (proof in the `backup` module docs).
//!
//! - **Cost.** The surround check is O(log n) in the records of the validator: a derived
//!   index (two staircases over targets, `SurroundIndex`) says whether a surround exists, and
//!   only when one does is the history scanned, to name the same record a full scan names.
//!   The index is rebuilt from the records after imports, pruning and deserialization, and is
//!   no part of the stored form or of equality.
//!
//! Invariant (DESIGN.md I3): after any sequence of `check_and_insert_*` and `prune_below`
//! calls, no two records that were accepted (`Valid`) are slashable with each other. A zero
//! signing root never counts as "the same message" (EIP-3076).
//!
//! Hostile input (STYLE.md 14): every epoch, slot and index here may be anything from 0 to
//! `u64::MAX`, committed by the log before anyone looked at it, so nothing in this module may
//! panic on it. Epochs and slots are the newtypes [`Epoch`] and [`Slot`], which have no `+`,
//! only checked and saturating methods; any other arithmetic is checked or saturating too,
//! enforced by `clippy::arithmetic_side_effects`, which CI runs with `-D warnings`.

#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;
use std::ops::Bound;

pub use failover_common::chain_time::{epoch_of_slot, Epoch, Slot};
use failover_common::types::Root;
use failover_protocol::{Refusal, Verdict};
use serde::{Deserialize, Serialize};

/// The recorded attestation(s) for one target epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationRecord {
    /// `data.source.epoch` (epochs); the smallest one when imported history holds several
    /// attestations for this target.
    pub source_epoch: Epoch,
    /// Signing root; `None` when imported without one, or when imported history holds
    /// different attestations for this target (then it never matches).
    pub signing_root: Option<Root>,
    /// The largest source epoch (epochs) when imported history holds attestations with
    /// different sources for this target (a double vote in the file); `None` otherwise.
    /// Surround checks use `source_epoch` for "surrounded by" and this for "surrounding".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_source_epoch: Option<Epoch>,
}

impl AttestationRecord {
    /// The largest source epoch recorded for this target (epochs).
    pub fn max_source(&self) -> Epoch {
        self.max_source_epoch.unwrap_or(self.source_epoch)
    }
}

/// Everything recorded for one validator above its low watermarks.
///
/// Serialized as its records and watermarks only; the surround index is derived from them
/// (rebuilt on deserialization) and takes no part in equality.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "StoredHistory")]
pub struct ValidatorHistory {
    /// Signed blocks: slot → signing root (`None` when imported without one).
    blocks: BTreeMap<Slot, Option<Root>>,
    /// Signed attestations: target epoch → (source epoch, signing root).
    attestations: BTreeMap<Epoch, AttestationRecord>,
    /// Block low watermark: no block at a slot ≤ this may be signed.
    low_slot: Option<Slot>,
    /// Source low watermark: no attestation with a source < this may be signed.
    low_source_epoch: Option<Epoch>,
    /// Target low watermark: no attestation with a target ≤ this may be signed.
    low_target_epoch: Option<Epoch>,
    /// Derived from `attestations`: answers "is there a surround?" in O(log n).
    #[serde(skip)]
    index: SurroundIndex,
}

/// The serialized form of [`ValidatorHistory`] (the wire and disk format of the state).
#[derive(Deserialize)]
struct StoredHistory {
    blocks: BTreeMap<Slot, Option<Root>>,
    attestations: BTreeMap<Epoch, AttestationRecord>,
    low_slot: Option<Slot>,
    low_source_epoch: Option<Epoch>,
    low_target_epoch: Option<Epoch>,
}

impl From<StoredHistory> for ValidatorHistory {
    fn from(s: StoredHistory) -> Self {
        let index = SurroundIndex::build(&s.attestations);
        Self {
            blocks: s.blocks,
            attestations: s.attestations,
            low_slot: s.low_slot,
            low_source_epoch: s.low_source_epoch,
            low_target_epoch: s.low_target_epoch,
            index,
        }
    }
}

impl PartialEq for ValidatorHistory {
    fn eq(&self, other: &Self) -> bool {
        self.blocks == other.blocks
            && self.attestations == other.attestations
            && self.low_slot == other.low_slot
            && self.low_source_epoch == other.low_source_epoch
            && self.low_target_epoch == other.low_target_epoch
    }
}

impl Eq for ValidatorHistory {}

/// Two staircases over the recorded attestations that tell in O(log n) whether a new
/// attestation `(s, t)` surrounds or is surrounded by any of them (issue 15 item 4):
/// - `suffix_min`: target → source for every record whose source is smaller than the source
///   of every record with a larger target. Its values grow with the key, and the first entry
///   above `t` holds the smallest source of all targets above `t`: the new attestation is
///   surrounded iff that is `< s`.
/// - `prefix_max`: target → largest source ([`AttestationRecord::max_source`]) for every
///   record whose largest source is larger than that of every record with a smaller target.
///   The last entry below `t` holds the largest source of all targets below `t`: the new
///   attestation surrounds one iff that is `> s`.
///
/// Both are a function of the records alone (the canonical staircases): the incremental
/// insert of [`SurroundIndex::insert`] yields the same maps as [`SurroundIndex::build`], and
/// everything else (imports, pruning, floors) rebuilds them. The index only says whether a
/// conflict exists; which record is named in the refusal is found by the same scan as without
/// it, so verdicts and refusals do not depend on the index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SurroundIndex {
    suffix_min: BTreeMap<Epoch, Epoch>,
    prefix_max: BTreeMap<Epoch, Epoch>,
}

impl SurroundIndex {
    /// The staircases of `attestations`, in O(n).
    fn build(attestations: &BTreeMap<Epoch, AttestationRecord>) -> Self {
        let mut suffix_min = BTreeMap::new();
        let mut min_above: Option<Epoch> = None;
        for (&t, a) in attestations.iter().rev() {
            if min_above.is_none_or(|m| a.source_epoch < m) {
                suffix_min.insert(t, a.source_epoch);
                min_above = Some(a.source_epoch);
            }
        }
        let mut prefix_max = BTreeMap::new();
        let mut max_below: Option<Epoch> = None;
        for (&t, a) in attestations {
            if max_below.is_none_or(|m| a.max_source() > m) {
                prefix_max.insert(t, a.max_source());
                max_below = Some(a.max_source());
            }
        }
        Self {
            suffix_min,
            prefix_max,
        }
    }

    /// Adds a record at a target that had none, in O(log n) amortised.
    fn insert(&mut self, target: Epoch, source: Epoch, max_source: Epoch) {
        let above = (Bound::Excluded(target), Bound::Unbounded);
        if self
            .suffix_min
            .range(above)
            .next()
            .is_none_or(|(_, &m)| source < m)
        {
            // Entries below with a source ≥ this one are no longer below every later source;
            // values grow with the key, so they are the ones just below `target`.
            let stale: Vec<Epoch> = self
                .suffix_min
                .range(..target)
                .rev()
                .take_while(|(_, &m)| m >= source)
                .map(|(&t, _)| t)
                .collect();
            for t in stale {
                self.suffix_min.remove(&t);
            }
            self.suffix_min.insert(target, source);
        }
        if self
            .prefix_max
            .range(..target)
            .next_back()
            .is_none_or(|(_, &m)| max_source > m)
        {
            let stale: Vec<Epoch> = self
                .prefix_max
                .range(above)
                .take_while(|(_, &m)| m <= max_source)
                .map(|(&t, _)| t)
                .collect();
            for t in stale {
                self.prefix_max.remove(&t);
            }
            self.prefix_max.insert(target, max_source);
        }
    }

    /// True when some record has a target above `target` and a source below `source`.
    fn surrounded(&self, source: Epoch, target: Epoch) -> bool {
        self.suffix_min
            .range((Bound::Excluded(target), Bound::Unbounded))
            .next()
            .is_some_and(|(_, &m)| m < source)
    }

    /// True when some record has a target below `target` and a largest source above `source`.
    fn surrounding(&self, source: Epoch, target: Epoch) -> bool {
        self.prefix_max
            .range(..target)
            .next_back()
            .is_some_and(|(_, &m)| m > source)
    }
}

/// Same message: both signing roots known and equal. An unknown root (imported without
/// one) never matches, so such a slot or target can never be signed again (EIP-3076).
fn same_message(known: &Option<Root>, new: &Root) -> bool {
    known.as_ref() == Some(new)
}

fn max_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The three low watermarks of a history, as the storage layer stores them apart from the
/// records (slots and epochs; `None` until pruning, an import or a floor sets them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks {
    /// Block low watermark (slots).
    pub low_slot: Option<Slot>,
    /// Source low watermark (epochs).
    pub low_source_epoch: Option<Epoch>,
    /// Target low watermark (epochs).
    pub low_target_epoch: Option<Epoch>,
}

impl ValidatorHistory {
    /// The low watermarks.
    pub fn watermarks(&self) -> Watermarks {
        Watermarks {
            low_slot: self.low_slot,
            low_source_epoch: self.low_source_epoch,
            low_target_epoch: self.low_target_epoch,
        }
    }

    /// Reassembles a history that was stored record by record (the storage layer's per-record
    /// keys): exactly the history whose [`ValidatorHistory::blocks`],
    /// [`ValidatorHistory::attestations`] and [`ValidatorHistory::watermarks`] these were. Like
    /// deserialization, it takes stored data as it is; it is not a way to record anything.
    pub fn from_stored(
        blocks: BTreeMap<Slot, Option<Root>>,
        attestations: BTreeMap<Epoch, AttestationRecord>,
        w: Watermarks,
    ) -> Self {
        StoredHistory {
            blocks,
            attestations,
            low_slot: w.low_slot,
            low_source_epoch: w.low_source_epoch,
            low_target_epoch: w.low_target_epoch,
        }
        .into()
    }
}

/// Read access. The fields are private: a history changes only through the checked inserts
/// ([`ValidatorHistory::check_and_insert_block`], [`ValidatorHistory::check_and_insert_attestation`]),
/// the EIP-3076 merges (`import_*`), pruning and the restore floor, so every rule of this
/// module holds for every history the state machine keeps.
impl ValidatorHistory {
    /// Signed blocks: slot → signing root (`None` when imported without one).
    pub fn blocks(&self) -> &BTreeMap<Slot, Option<Root>> {
        &self.blocks
    }

    /// Signed attestations: target epoch → source epoch and signing root.
    pub fn attestations(&self) -> &BTreeMap<Epoch, AttestationRecord> {
        &self.attestations
    }

    /// Block low watermark (slots): no block at a slot ≤ this may be signed.
    pub fn low_slot(&self) -> Option<Slot> {
        self.low_slot
    }

    /// Source low watermark (epochs): no attestation with a source < this may be signed.
    pub fn low_source_epoch(&self) -> Option<Epoch> {
        self.low_source_epoch
    }

    /// Target low watermark (epochs): no attestation with a target ≤ this may be signed.
    pub fn low_target_epoch(&self) -> Option<Epoch> {
        self.low_target_epoch
    }
}

impl ValidatorHistory {
    /// Block lower bound (slots): the watermark once set, else the oldest recorded slot.
    pub fn block_lower_bound(&self) -> Option<Slot> {
        self.low_slot.or_else(|| self.blocks.keys().next().copied())
    }

    /// Source lower bound (epochs): the watermark once set, else the smallest recorded source
    /// (read from the surround index in O(log n): its first staircase entry holds the
    /// smallest source of all records).
    pub fn source_lower_bound(&self) -> Option<Epoch> {
        self.low_source_epoch
            .or_else(|| self.index.suffix_min.values().next().copied())
    }

    /// Target lower bound (epochs): the watermark once set, else the oldest recorded target.
    pub fn target_lower_bound(&self) -> Option<Epoch> {
        self.low_target_epoch
            .or_else(|| self.attestations.keys().next().copied())
    }

    /// Decides whether a block proposal at `slot` (slots) with `signing_root` may be signed.
    /// Pure: does not record anything.
    ///
    /// Returns `Ok(Verdict::Valid | Verdict::SameData)` or the [`Refusal`].
    pub fn check_block(
        &self,
        slot: impl Into<Slot>,
        signing_root: &Root,
    ) -> Result<Verdict, Refusal> {
        let slot = slot.into();
        if let Some(prev) = self.blocks.get(&slot) {
            return if same_message(prev, signing_root) {
                Ok(Verdict::SameData)
            } else {
                Err(Refusal::DoubleBlockProposal {
                    slot: slot.0,
                    prev_signing_root: *prev,
                })
            };
        }
        if let Some(watermark) = self.block_lower_bound() {
            if slot <= watermark {
                return Err(Refusal::SlotBelowWatermark {
                    slot: slot.0,
                    watermark: watermark.0,
                });
            }
        }
        Ok(Verdict::Valid)
    }

    /// Decides whether an attestation `source_epoch → target_epoch` (epochs) may be signed.
    /// Pure: does not record anything.
    ///
    /// Returns `Ok(Verdict::Valid | Verdict::SameData)` or the [`Refusal`].
    pub fn check_attestation(
        &self,
        source_epoch: impl Into<Epoch>,
        target_epoch: impl Into<Epoch>,
        signing_root: &Root,
    ) -> Result<Verdict, Refusal> {
        let (source_epoch, target_epoch) = (source_epoch.into(), target_epoch.into());
        if let Some(v) =
            self.check_attestation_conflicts(source_epoch, target_epoch, Some(signing_root))?
        {
            return Ok(v);
        }
        if let Some(watermark) = self.source_lower_bound() {
            if source_epoch < watermark {
                return Err(Refusal::SourceBelowWatermark {
                    source_epoch: source_epoch.0,
                    watermark: watermark.0,
                });
            }
        }
        if let Some(watermark) = self.target_lower_bound() {
            if target_epoch <= watermark {
                return Err(Refusal::TargetBelowWatermark {
                    target_epoch: target_epoch.0,
                    watermark: watermark.0,
                });
            }
        }
        Ok(Verdict::Valid)
    }

    /// The slashing conditions alone, without lower bounds: `source > target`, double vote,
    /// surround either way. `Ok(Some(SameData))` for an identical message, `Ok(None)` when
    /// nothing conflicts. A `None` root (unknown) never matches an existing record.
    fn check_attestation_conflicts(
        &self,
        source_epoch: Epoch,
        target_epoch: Epoch,
        signing_root: Option<&Root>,
    ) -> Result<Option<Verdict>, Refusal> {
        if source_epoch > target_epoch {
            return Err(Refusal::SourceExceedsTarget {
                source_epoch: source_epoch.0,
                target_epoch: target_epoch.0,
            });
        }
        if let Some(prev) = self.attestations.get(&target_epoch) {
            let same = signing_root.is_some_and(|r| same_message(&prev.signing_root, r));
            return if prev.source_epoch == source_epoch && same {
                Ok(Some(Verdict::SameData))
            } else {
                Err(Refusal::DoubleVote {
                    target_epoch: target_epoch.0,
                    prev_source_epoch: prev.source_epoch.0,
                    prev_signing_root: prev.signing_root,
                })
            };
        }
        // A recorded attestation with a larger target and smaller source surrounds the new
        // one; one with a smaller target and larger source is surrounded by it.
        // `(target, ∞)` without `target + 1`: a target of `u64::MAX` must not overflow.
        // The index says in O(log n) whether a surround exists; the scans below run only then,
        // to name the same record as always.
        debug_assert_eq!(self.index, SurroundIndex::build(&self.attestations));
        if !self.index.surrounded(source_epoch, target_epoch)
            && !self.index.surrounding(source_epoch, target_epoch)
        {
            return Ok(None);
        }
        let above = (Bound::Excluded(target_epoch), Bound::Unbounded);
        for (&prev_target, prev) in self.attestations.range(above) {
            if prev.source_epoch < source_epoch {
                return Err(Refusal::SurroundedVote {
                    prev_source_epoch: prev.source_epoch.0,
                    prev_target_epoch: prev_target.0,
                });
            }
        }
        for (&prev_target, prev) in self.attestations.range(..target_epoch) {
            if prev.max_source() > source_epoch {
                return Err(Refusal::SurroundingVote {
                    prev_source_epoch: prev.max_source().0,
                    prev_target_epoch: prev_target.0,
                });
            }
        }
        Ok(None)
    }

    /// Checks a block and, when `Valid`, records it: the one safe entry point for blocks.
    ///
    /// Returns the verdict (`Refused` carries the reason); only `Valid` changes the history.
    pub fn check_and_insert_block(&mut self, slot: impl Into<Slot>, signing_root: Root) -> Verdict {
        let slot = slot.into();
        match self.check_block(slot, &signing_root) {
            Ok(Verdict::Valid) => {
                self.blocks.insert(slot, Some(signing_root));
                Verdict::Valid
            }
            Ok(v) => v,
            Err(r) => Verdict::Refused(r),
        }
    }

    /// Checks an attestation and, when `Valid`, records it: the one safe entry point for
    /// attestations.
    ///
    /// Returns the verdict (`Refused` carries the reason); only `Valid` changes the history.
    pub fn check_and_insert_attestation(
        &mut self,
        source_epoch: impl Into<Epoch>,
        target_epoch: impl Into<Epoch>,
        signing_root: Root,
    ) -> Verdict {
        let (source_epoch, target_epoch) = (source_epoch.into(), target_epoch.into());
        match self.check_attestation(source_epoch, target_epoch, &signing_root) {
            Ok(Verdict::Valid) => {
                self.attestations.insert(
                    target_epoch,
                    AttestationRecord {
                        source_epoch,
                        signing_root: Some(signing_root),
                        max_source_epoch: None,
                    },
                );
                // Valid means no record at this target: the incremental insert applies.
                self.index.insert(target_epoch, source_epoch, source_epoch);
                Verdict::Valid
            }
            Ok(v) => v,
            Err(r) => Verdict::Refused(r),
        }
    }

    /// Drops blocks with `slot < min_slot` and attestations with `target < min_target_epoch`,
    /// raising the low watermarks to the largest dropped slot, source and target.
    ///
    /// Keeps the refusals of the dropped records: any attestation that would have been a
    /// double vote or surround against a dropped one now has a target ≤ or a source < a
    /// watermark. Returns true when anything was dropped.
    pub fn prune_below(&mut self, min_slot: Slot, min_target_epoch: Epoch) -> bool {
        let kept_blocks = self.blocks.split_off(&min_slot);
        let dropped_blocks = std::mem::replace(&mut self.blocks, kept_blocks);
        let kept_atts = self.attestations.split_off(&min_target_epoch);
        let dropped_atts = std::mem::replace(&mut self.attestations, kept_atts);
        if !dropped_atts.is_empty() {
            self.index = SurroundIndex::build(&self.attestations);
        }
        if let Some(&max_slot) = dropped_blocks.keys().next_back() {
            self.low_slot = max_opt(self.low_slot, Some(max_slot));
        }
        if let Some(&max_target) = dropped_atts.keys().next_back() {
            self.low_target_epoch = max_opt(self.low_target_epoch, Some(max_target));
        }
        if let Some(max_source) = dropped_atts
            .values()
            .map(AttestationRecord::max_source)
            .max()
        {
            self.low_source_epoch = max_opt(self.low_source_epoch, Some(max_source));
        }
        !dropped_blocks.is_empty() || !dropped_atts.is_empty()
    }

    /// Highest epoch recorded: the largest attestation target and the epoch of the largest
    /// block slot (`slot / slots_per_epoch`), watermarks included. `None` if nothing recorded.
    pub fn max_epoch(&self, slots_per_epoch: u64) -> Option<Epoch> {
        let block_epoch = max_opt(self.blocks.keys().next_back().copied(), self.low_slot)
            .map(|s| s.epoch(slots_per_epoch));
        let target = max_opt(
            self.attestations.keys().next_back().copied(),
            self.low_target_epoch,
        );
        max_opt(block_epoch, target)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn root(b: u8) -> Root {
        Root([b; 32])
    }

    fn refused(v: Verdict) -> Refusal {
        match v {
            Verdict::Refused(r) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn accepts_first_block_and_identical_resign() {
        let mut h = ValidatorHistory::default();
        assert_eq!(h.check_and_insert_block(10, root(1)), Verdict::Valid);
        assert_eq!(h.check_and_insert_block(10, root(1)), Verdict::SameData);
    }

    #[test]
    fn refuses_double_block_proposal() {
        let mut h = ValidatorHistory::default();
        h.check_and_insert_block(10, root(1));
        assert_eq!(
            refused(h.check_and_insert_block(10, root(2))),
            Refusal::DoubleBlockProposal {
                slot: 10,
                prev_signing_root: Some(root(1))
            }
        );
    }

    #[test]
    fn imported_record_without_signing_root_never_counts_as_same_message() {
        let mut h = ValidatorHistory::default();
        assert_eq!(h.import_block(10, None), Merge::Added);
        assert!(matches!(
            refused(h.check_and_insert_block(10, Root::ZERO)),
            Refusal::DoubleBlockProposal { .. }
        ));
        assert_eq!(h.import_attestation(1, 2, None), Merge::Added);
        assert!(matches!(
            refused(h.check_and_insert_attestation(1, 2, Root::ZERO)),
            Refusal::DoubleVote { .. }
        ));
    }

    #[test]
    fn import_merges_slashable_data_into_refusals_and_never_fills_an_unknown_root() {
        let mut h = ValidatorHistory::default();
        assert_eq!(h.import_block(10, None), Merge::Added);
        assert_eq!(h.import_block(10, Some(root(1))), Merge::Known);
        assert_eq!(h.blocks[&Slot(10)], None, "an unknown root stays unknown");
        assert_eq!(h.import_block(11, Some(root(1))), Merge::Added);
        assert_eq!(h.import_block(11, Some(root(2))), Merge::Slashable);
        assert!(matches!(
            refused(h.check_and_insert_block(11, root(1))),
            Refusal::DoubleBlockProposal { .. }
        ));

        assert_eq!(h.import_attestation(3, 4, Some(root(1))), Merge::Added);
        assert_eq!(h.import_attestation(2, 5, None), Merge::Slashable);
        // lower bounds do not apply to imported history
        assert_eq!(h.import_attestation(0, 1, None), Merge::Added);
        // a double vote with another source keeps both sources
        assert_eq!(h.import_attestation(6, 8, Some(root(1))), Merge::Added);
        assert_eq!(h.import_attestation(7, 8, Some(root(2))), Merge::Slashable);
        assert_eq!(
            h.attestations[&Epoch(8)],
            AttestationRecord {
                source_epoch: Epoch(6),
                signing_root: None,
                max_source_epoch: Some(Epoch(7))
            }
        );
        // 5 → 9 surrounds the 7 → 8 vote (only the larger source shows it) …
        assert!(matches!(
            refused(h.check_and_insert_attestation(5, 9, root(3))),
            Refusal::SurroundingVote {
                prev_source_epoch: 7,
                ..
            }
        ));
        // … and 7 → 9 is surrounded by nothing and surrounds nothing.
        assert_eq!(
            h.check_and_insert_attestation(7, 9, root(3)),
            Verdict::Valid
        );
    }

    #[test]
    fn the_watermark_is_a_floor_that_older_imported_records_do_not_lower() {
        let mut h = ValidatorHistory::default();
        h.check_and_insert_block(20, root(1));
        h.check_and_insert_attestation(4, 5, root(1));
        h.prune_below(Slot(21), Epoch(6));
        assert_eq!(h.import_block(3, None), Merge::BelowWatermark);
        assert_eq!(h.import_attestation(1, 2, None), Merge::BelowWatermark);
        // older on one axis only: kept, but the floor stays
        assert_eq!(h.import_attestation(5, 5, None), Merge::Added);
        assert_eq!(h.block_lower_bound(), Some(Slot(20)));
        assert_eq!(h.source_lower_bound(), Some(Epoch(4)));
        assert_eq!(h.target_lower_bound(), Some(Epoch(5)));
        assert!(matches!(
            refused(h.check_and_insert_block(15, root(2))),
            Refusal::SlotBelowWatermark { watermark: 20, .. }
        ));
    }

    #[test]
    fn refuses_block_below_lowest_recorded_slot() {
        let mut h = ValidatorHistory::default();
        h.check_and_insert_block(10, root(1));
        assert_eq!(
            refused(h.check_and_insert_block(9, root(2))),
            Refusal::SlotBelowWatermark {
                slot: 9,
                watermark: 10
            }
        );
        assert_eq!(h.check_and_insert_block(11, root(3)), Verdict::Valid);
    }

    #[test]
    fn refuses_double_vote() {
        let mut h = ValidatorHistory::default();
        h.check_and_insert_attestation(5, 6, root(1));
        assert_eq!(
            refused(h.check_and_insert_attestation(5, 6, root(2))),
            Refusal::DoubleVote {
                target_epoch: 6,
                prev_source_epoch: 5,
                prev_signing_root: Some(root(1))
            }
        );
        assert_eq!(
            h.check_and_insert_attestation(5, 6, root(1)),
            Verdict::SameData
        );
    }

    #[test]
    fn refuses_surrounding_vote() {
        let mut h = ValidatorHistory::default();
        h.check_and_insert_attestation(3, 4, root(1));
        assert_eq!(
            refused(h.check_and_insert_attestation(2, 5, root(2))),
            // 2 ≥ lower bound? no: source 2 < lowest source 3 would also refuse, but the
            // surround is found first and is the precise reason.
            Refusal::SurroundingVote {
                prev_source_epoch: 3,
                prev_target_epoch: 4
            }
        );
    }

    #[test]
    fn refuses_surrounded_vote() {
        let mut h = ValidatorHistory::default();
        h.check_and_insert_attestation(1, 10, root(1));
        assert_eq!(
            refused(h.check_and_insert_attestation(2, 9, root(2))),
            Refusal::SurroundedVote {
                prev_source_epoch: 1,
                prev_target_epoch: 10
            }
        );
    }

    #[test]
    fn refuses_source_greater_than_target() {
        let h = ValidatorHistory::default();
        assert_eq!(
            h.check_attestation(6, 5, &root(1)),
            Err(Refusal::SourceExceedsTarget {
                source_epoch: 6,
                target_epoch: 5
            })
        );
    }

    #[test]
    fn refuses_target_at_or_below_lowest_recorded_target() {
        let mut h = ValidatorHistory::default();
        h.check_and_insert_attestation(5, 6, root(1));
        assert_eq!(
            refused(h.check_and_insert_attestation(5, 5, root(2))),
            Refusal::TargetBelowWatermark {
                target_epoch: 5,
                watermark: 6
            }
        );
    }

    #[test]
    fn pruning_keeps_refusing_what_pruned_records_refused() {
        let mut h = ValidatorHistory::default();
        h.check_and_insert_attestation(1, 2, root(1));
        h.check_and_insert_attestation(2, 3, root(2));
        h.check_and_insert_block(20, root(3));
        assert!(h.prune_below(Slot(32), Epoch(10)));
        assert!(h.blocks.is_empty() && h.attestations.is_empty());
        assert_eq!(h.low_slot, Some(Slot(20)));
        assert_eq!(h.low_target_epoch, Some(Epoch(3)));
        assert_eq!(h.low_source_epoch, Some(Epoch(2)));
        // the double vote for target 3 is still refused, by the watermark
        assert!(matches!(
            refused(h.check_and_insert_attestation(2, 3, root(9))),
            Refusal::TargetBelowWatermark { .. }
        ));
        // surrounding (1 → 4) the pruned 2 → 3 is refused by the source watermark
        assert!(matches!(
            refused(h.check_and_insert_attestation(1, 4, root(9))),
            Refusal::SourceBelowWatermark { .. }
        ));
        assert!(matches!(
            refused(h.check_and_insert_block(20, root(9))),
            Refusal::SlotBelowWatermark { .. }
        ));
        assert_eq!(
            h.check_and_insert_attestation(3, 4, root(4)),
            Verdict::Valid
        );
    }

    /// The naive surround test the index replaces: every record, both directions.
    fn naive_surround(h: &ValidatorHistory, source: u64, target: u64) -> bool {
        h.attestations().iter().any(|(&t, a)| {
            (t.0 > target && a.source_epoch.0 < source)
                || (t.0 < target && a.max_source().0 > source)
        })
    }

    proptest::proptest! {
        /// The surround index equals the one built from scratch after every kind of change,
        /// and answers exactly what scanning every record answers.
        #[test]
        fn the_surround_index_matches_a_rebuild_and_the_naive_scan(
            ops in proptest::collection::vec((0u8..4, 0u64..40, 0u64..40, 0u8..3), 1..80)
        ) {
            let mut h = ValidatorHistory::default();
            for (op, a, b, r) in ops {
                match op {
                    0 => { h.check_and_insert_attestation(a.min(b), a.max(b), root(r + 1)); }
                    1 => { h.import_attestation(a, b, (r > 0).then(|| root(r))); }
                    2 => { h.prune_below(Slot(0), Epoch(a / 4)); }
                    _ => h.raise_floor(RestoreFloor::at_epoch(a / 8, 32)),
                }
                proptest::prop_assert_eq!(&h.index, &SurroundIndex::build(&h.attestations));
                proptest::prop_assert_eq!(
                    h.source_lower_bound(),
                    h.low_source_epoch
                        .or_else(|| h.attestations.values().map(|a| a.source_epoch).min())
                );
                for (s, t) in [(a.min(b), a.max(b)), (b, a), (a, a)] {
                    let (s, t) = (Epoch(s), Epoch(t));
                    proptest::prop_assert_eq!(
                        h.index.surrounded(s, t) || h.index.surrounding(s, t),
                        naive_surround(&h, s.0, t.0),
                        "source {} target {}", s.0, t.0
                    );
                }
            }
        }
    }

    #[test]
    fn max_epoch_covers_blocks_and_attestations() {
        let mut h = ValidatorHistory::default();
        assert_eq!(h.max_epoch(32), None);
        h.check_and_insert_block(65, root(1));
        assert_eq!(h.max_epoch(32), Some(Epoch(2)));
        h.check_and_insert_attestation(2, 3, root(2));
        assert_eq!(h.max_epoch(32), Some(Epoch(3)));
    }
}

/// What merging one imported record did to a validator's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// A new record was stored.
    Added,
    /// The record was already known (same message), or has no root where one is known:
    /// nothing changed.
    Known,
    /// The record is slashable with the history or the file (double proposal, double vote,
    /// surround, `source > target`): it was stored so that it refuses what it conflicts with.
    Slashable,
    /// At or below the low watermarks: the watermarks already refuse everything it would.
    BelowWatermark,
}

impl ValidatorHistory {
    /// Merges one imported block (EIP-3076 `signed_blocks` item; `signing_root` optional).
    /// Never fails and never removes a refusal (module docs, "Imported history").
    ///
    /// Returns [`Merge::Slashable`] when the slot already holds another block (the slot keeps
    /// an unknown root), [`Merge::Known`] for the same block or a rootless record at a known
    /// slot, [`Merge::BelowWatermark`] for `slot ≤ low_slot`.
    pub fn import_block(&mut self, slot: impl Into<Slot>, signing_root: Option<Root>) -> Merge {
        let slot = slot.into();
        if self.low_slot.is_some_and(|low| slot <= low) {
            return Merge::BelowWatermark;
        }
        match (self.blocks.get(&slot).copied(), signing_root) {
            (None, r) => {
                self.blocks.insert(slot, r);
                Merge::Added
            }
            (Some(None), _) | (Some(Some(_)), None) => Merge::Known,
            (Some(Some(existing)), Some(r)) if existing == r => Merge::Known,
            (Some(Some(_)), Some(_)) => {
                self.blocks.insert(slot, None);
                Merge::Slashable
            }
        }
    }

    /// Merges one imported attestation (EIP-3076 `signed_attestations` item). Never fails and
    /// never removes a refusal (module docs, "Imported history").
    ///
    /// Returns [`Merge::Known`] for the same message (or a rootless copy of a known one),
    /// [`Merge::Slashable`] when it is a double vote, a surround or `source > target` with the
    /// history (it is stored all the same), [`Merge::BelowWatermark`] when `source ≤
    /// low_source_epoch` and `target ≤ low_target_epoch`, else [`Merge::Added`].
    pub fn import_attestation(
        &mut self,
        source_epoch: impl Into<Epoch>,
        target_epoch: impl Into<Epoch>,
        signing_root: Option<Root>,
    ) -> Merge {
        let (source_epoch, target_epoch) = (source_epoch.into(), target_epoch.into());
        let below = |low: Option<Epoch>, v: Epoch| low.is_some_and(|low| v <= low);
        if below(self.low_source_epoch, source_epoch) && below(self.low_target_epoch, target_epoch)
        {
            return Merge::BelowWatermark;
        }
        if let Some(prev) = self.attestations.get_mut(&target_epoch) {
            let same_source = prev.source_epoch == source_epoch && prev.max_source_epoch.is_none();
            let same_or_unknown = signing_root.is_none()
                || prev.signing_root.is_none()
                || prev.signing_root == signing_root;
            if same_source && same_or_unknown {
                return Merge::Known;
            }
            // A double vote in the imported history: nothing more is signed for this target,
            // and both sources keep refusing surrounds.
            let lo = prev.source_epoch.min(source_epoch);
            let hi = prev.max_source().max(source_epoch);
            *prev = AttestationRecord {
                source_epoch: lo,
                signing_root: None,
                max_source_epoch: (hi != lo).then_some(hi),
            };
            self.index = SurroundIndex::build(&self.attestations);
            return Merge::Slashable;
        }
        let slashable = self
            .check_attestation_conflicts(source_epoch, target_epoch, signing_root.as_ref())
            .is_err();
        self.attestations.insert(
            target_epoch,
            AttestationRecord {
                source_epoch,
                signing_root,
                max_source_epoch: None,
            },
        );
        self.index.insert(target_epoch, source_epoch, source_epoch);
        if slashable {
            Merge::Slashable
        } else {
            Merge::Added
        }
    }
}

/// A cluster-wide lower bound set when a cluster is restored from a backup (see the
/// `backup` module for the safety argument): nothing at or below it is ever signed again, for
/// any validator, known at restore time or not.
///
/// `slot` is the last slot of `epoch`, so a block is allowed only in a later epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreFloor {
    /// Floor epoch `F` (epochs): new attestations need `target > F` and `source ≥ F`.
    pub epoch: Epoch,
    /// Block floor (slots): the last slot of epoch `F`, `(F + 1) × SLOTS_PER_EPOCH − 1`; new
    /// blocks need `slot > slot_floor`.
    pub slot: Slot,
}

impl RestoreFloor {
    /// The floor for epoch `epoch` (epochs) on a chain with `slots_per_epoch` slots per epoch
    /// (`0` is treated as 1). Saturates at `u64::MAX`.
    pub fn at_epoch(epoch: impl Into<Epoch>, slots_per_epoch: u64) -> Self {
        let epoch = epoch.into();
        Self {
            epoch,
            slot: epoch.last_slot(slots_per_epoch),
        }
    }
}

impl ValidatorHistory {
    /// An empty history whose low watermarks are `floor` (a validator first seen after a
    /// restore), or the plain empty history when there is no floor.
    pub fn with_floor(floor: Option<RestoreFloor>) -> Self {
        let mut h = Self::default();
        if let Some(f) = floor {
            h.raise_floor(f);
        }
        h
    }

    /// Applies a restore floor: drops every record at or below it (blocks with
    /// `slot ≤ floor.slot`, attestations with `target ≤ floor.epoch`) and raises the low
    /// watermarks to at least `low_slot = floor.slot`, `low_source_epoch = floor.epoch`,
    /// `low_target_epoch = floor.epoch`. Watermarks never go down.
    ///
    /// Afterwards every block at `slot ≤ floor.slot` and every attestation with
    /// `target ≤ floor.epoch` or `source < floor.epoch` is refused, and the dropped records
    /// refuse nothing more than the floor does: a dropped attestation `(s, t)` has
    /// `s ≤ t ≤ F`, so a new one slashable with it would need `t' ≤ F` (double vote or
    /// surrounded) or `s' < s ≤ F` (surrounding), both refused. Records above the floor are
    /// kept (a restore puts the floor at or above every recorded epoch, so there are none
    /// then). Dropping the rest keeps an EIP-3076 export exact: the floor is written as the
    /// oldest record, so a complete-history importer refuses what this history refuses.
    pub fn raise_floor(&mut self, floor: RestoreFloor) {
        // prune_below drops `< min`; the floor drops `≤ floor`, hence the +1.
        self.prune_below(floor.slot.saturating_add(1), floor.epoch.saturating_add(1));
        self.low_slot = max_opt(self.low_slot, Some(floor.slot));
        self.low_source_epoch = max_opt(self.low_source_epoch, Some(floor.epoch));
        self.low_target_epoch = max_opt(self.low_target_epoch, Some(floor.epoch));
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod floor_tests {
    use super::*;

    fn root(b: u8) -> Root {
        Root([b; 32])
    }

    #[test]
    fn the_restore_floor_refuses_everything_at_or_below_it_and_nothing_above() {
        let mut h = ValidatorHistory::default();
        h.check_and_insert_attestation(3, 4, root(1));
        h.check_and_insert_attestation(4, 12, root(1));
        h.check_and_insert_block(100, root(1));
        let floor = RestoreFloor::at_epoch(10, 32);
        assert_eq!(floor.slot, Slot(351));
        h.raise_floor(floor);
        // the record above the floor (target 12) stays, the others are gone
        assert_eq!(
            h.attestations.keys().copied().collect::<Vec<_>>(),
            vec![Epoch(12)]
        );
        assert!(h.blocks.is_empty());
        assert_eq!(
            (h.low_slot, h.low_source_epoch, h.low_target_epoch),
            (Some(Slot(351)), Some(Epoch(10)), Some(Epoch(10)))
        );
        // safe before the restore, refused after it
        assert!(h.check_attestation(9, 10, &root(2)).is_err());
        assert!(matches!(
            h.check_attestation(9, 13, &root(2)),
            Err(Refusal::SourceBelowWatermark { .. })
        ));
        assert!(matches!(
            h.check_block(351, &root(2)),
            Err(Refusal::SlotBelowWatermark { .. })
        ));
        // above the floor: fine
        assert_eq!(h.check_attestation(12, 13, &root(2)), Ok(Verdict::Valid));
        assert_eq!(h.check_block(352, &root(2)), Ok(Verdict::Valid));
        // a new validator starts at the floor
        let fresh = ValidatorHistory::with_floor(Some(floor));
        assert!(matches!(
            fresh.check_attestation(10, 10, &root(2)),
            Err(Refusal::TargetBelowWatermark { .. })
        ));
        assert!(matches!(
            fresh.check_attestation(9, 11, &root(2)),
            Err(Refusal::SourceBelowWatermark { .. })
        ));
        assert_eq!(
            fresh.check_attestation(10, 11, &root(2)),
            Ok(Verdict::Valid)
        );
        // watermarks never go down
        let mut higher = ValidatorHistory::with_floor(Some(RestoreFloor::at_epoch(20, 32)));
        higher.raise_floor(floor);
        assert_eq!(higher.low_target_epoch, Some(Epoch(20)));
    }
}
