//! EIP-3076 slashing-protection interchange (format version 5): types and import into the
//! replicated state.
//!
//! Strategy (documented for the conformance suite): the cluster keeps the **complete
//! history** above the low watermarks, so imported records are merged record by record and
//! the `should_succeed_complete` expectations apply; all 38 files of the EIP-3076 suite pass,
//! every step and every check.
//!
//! - An import is refused as a whole, changing nothing, when the document does not parse
//!   (unknown fields included), the format version is not `"5"`, or the genesis validators
//!   root differs from the cluster's (EIP-3076: "MUST refuse").
//! - Slashable data (a double proposal, double vote, surround or `source > target` in the
//!   file or against the history) is imported, not refused: the records were signed already,
//!   and keeping them only adds refusals (`slashing` module docs, "Imported history"). The
//!   [`ImportSummary`] counts them, and the audit record says so, so an operator sees that
//!   the imported validator may already be slashable.
//! - Import never removes a refusal: every record in the cluster refuses afterwards at least
//!   what it refused before.
//!
//! Concurrent signing (EIP-3076 advises stopping the validator during an import): not
//! needed here, the replicated ordering makes it safe. An import is one command in the Raft
//! log, ordered with every record batch: a signature recorded before the import is part of
//! the history the import merges into, and one recorded after is checked against the
//! imported records. Since import only adds refusals, no signature allowed after it can be
//! slashable with anything in the file.
//!
//! Hostile input (STYLE.md 14): every epoch, slot and index here may be anything from 0 to
//! `u64::MAX`, committed by the log before anyone looked at it, so nothing in this module may
//! panic on it: arithmetic is checked or saturating, enforced by
//! `clippy::arithmetic_side_effects`, which CI runs with `-D warnings`.

#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use failover_common::types::{quoted_u64, Pubkey, Root};
use failover_protocol::ImportSummary;
use serde::{Deserialize, Serialize};

use crate::slashing::{Merge, RestoreFloor, ValidatorHistory};

/// `metadata` of an interchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Must be `"5"`.
    pub interchange_format_version: String,
    /// Chain the history belongs to.
    pub genesis_validators_root: Root,
}

/// One signed block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBlock {
    /// Slot (decimal string).
    #[serde(with = "quoted_u64")]
    pub slot: u64,
    /// Signing root, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_root: Option<Root>,
}

/// One signed attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAttestation {
    /// Source epoch (decimal string).
    #[serde(with = "quoted_u64")]
    pub source_epoch: u64,
    /// Target epoch (decimal string).
    #[serde(with = "quoted_u64")]
    pub target_epoch: u64,
    /// Signing root, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_root: Option<Root>,
}

/// History of one validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorData {
    /// Validator public key.
    pub pubkey: Pubkey,
    /// Signed blocks.
    #[serde(default)]
    pub signed_blocks: Vec<SignedBlock>,
    /// Signed attestations.
    #[serde(default)]
    pub signed_attestations: Vec<SignedAttestation>,
}

/// An EIP-3076 interchange document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interchange {
    /// Metadata.
    pub metadata: Metadata,
    /// Per-validator data.
    pub data: Vec<ValidatorData>,
}

/// Why an import was refused (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterchangeError {
    /// Not format version 5.
    #[error("unsupported interchange_format_version {0:?} (only \"5\" is supported)")]
    Version(String),
    /// Another chain.
    #[error("genesis_validators_root {got} differs from the cluster's {expected}")]
    WrongGenesis {
        /// The cluster's root.
        expected: Root,
        /// The file's root.
        got: Root,
    },
}

/// Counts one merged record in `summary`.
fn count(summary: &mut ImportSummary, m: Merge) {
    match m {
        Merge::Added => summary.added = summary.added.saturating_add(1),
        Merge::Known => summary.known = summary.known.saturating_add(1),
        Merge::Slashable => summary.slashable = summary.slashable.saturating_add(1),
        Merge::BelowWatermark => {
            summary.below_watermark = summary.below_watermark.saturating_add(1)
        }
    }
}

/// Exports the history of `pubkeys` (all of `validators` when `None`) as an EIP-3076
/// interchange for `genesis_validators_root`. Read-only.
///
///
/// Every stored record is written with its signing root (or none when unknown); a target that
/// holds a double vote from imported history is written as two rootless attestations (its
/// smallest and largest source). Low watermarks left by pruning are written as one block at the
/// block watermark and one attestation at the source and target watermarks, without signing
/// roots: importing the file elsewhere refuses exactly what this state refuses (see
/// `slashing`'s module doc).
pub fn export(
    validators: &BTreeMap<Pubkey, ValidatorHistory>,
    genesis_validators_root: Root,
    pubkeys: Option<&[Pubkey]>,
) -> Interchange {
    let selected: Vec<(&Pubkey, &ValidatorHistory)> = match pubkeys {
        None => validators.iter().collect(),
        Some(list) => list
            .iter()
            .filter_map(|pk| validators.get_key_value(pk))
            .collect(),
    };
    let data = selected
        .into_iter()
        .map(|(pk, h)| {
            let mut signed_blocks: Vec<SignedBlock> = Vec::new();
            if let Some(slot) = h.low_slot().filter(|s| !h.blocks().contains_key(s)) {
                signed_blocks.push(SignedBlock {
                    slot: slot.0,
                    signing_root: None,
                });
            }
            signed_blocks.extend(h.blocks().iter().map(|(slot, root)| SignedBlock {
                slot: slot.0,
                signing_root: *root,
            }));
            let mut signed_attestations: Vec<SignedAttestation> = Vec::new();
            if let (Some(source_epoch), Some(target_epoch)) =
                (h.low_source_epoch(), h.low_target_epoch())
            {
                if !h.attestations().contains_key(&target_epoch) {
                    signed_attestations.push(SignedAttestation {
                        source_epoch: source_epoch.0,
                        target_epoch: target_epoch.0,
                        signing_root: None,
                    });
                }
            }
            for (target, a) in h.attestations() {
                // A double vote kept from imported history is written as both votes, so
                // the importer keeps refusing what either source refuses.
                let sources = std::iter::once(a.source_epoch).chain(a.max_source_epoch);
                signed_attestations.extend(sources.map(|source_epoch| SignedAttestation {
                    source_epoch: source_epoch.0,
                    target_epoch: target.0,
                    signing_root: a.signing_root,
                }));
            }
            ValidatorData {
                pubkey: *pk,
                signed_blocks,
                signed_attestations,
            }
        })
        .collect();
    Interchange {
        metadata: Metadata {
            interchange_format_version: "5".into(),
            genesis_validators_root,
        },
        data,
    }
}

/// Merges an interchange into copies of the histories it names (see the module doc): returns
/// what the import did and the merged histories, which replace those in `validators` as a
/// whole (all-or-nothing). A validator new here starts at the restore `floor`. Deterministic;
/// `validators` is not changed.
///
/// Errors: [`InterchangeError`] (another format version or genesis validators root).
pub fn merge(
    validators: &BTreeMap<Pubkey, ValidatorHistory>,
    floor: Option<RestoreFloor>,
    doc: &Interchange,
    genesis_validators_root: Root,
) -> Result<(ImportSummary, BTreeMap<Pubkey, ValidatorHistory>), InterchangeError> {
    if doc.metadata.interchange_format_version != "5" {
        return Err(InterchangeError::Version(
            doc.metadata.interchange_format_version.clone(),
        ));
    }
    if doc.metadata.genesis_validators_root != genesis_validators_root {
        return Err(InterchangeError::WrongGenesis {
            expected: genesis_validators_root,
            got: doc.metadata.genesis_validators_root,
        });
    }
    let mut merged: BTreeMap<Pubkey, ValidatorHistory> = BTreeMap::new();
    let mut summary = ImportSummary::default();
    // A validator new to a restored cluster starts at the restore floor.
    for v in &doc.data {
        let h = merged.entry(v.pubkey).or_insert_with(|| {
            validators
                .get(&v.pubkey)
                .cloned()
                .unwrap_or_else(|| ValidatorHistory::with_floor(floor))
        });
        let before = summary.slashable;
        for b in &v.signed_blocks {
            count(&mut summary, h.import_block(b.slot, b.signing_root));
        }
        for a in &v.signed_attestations {
            count(
                &mut summary,
                h.import_attestation(a.source_epoch, a.target_epoch, a.signing_root),
            );
        }
        if summary.slashable > before && !summary.slashable_validators.contains(&v.pubkey) {
            summary.slashable_validators.push(v.pubkey);
        }
        summary.blocks = summary.blocks.saturating_add(v.signed_blocks.len());
        summary.attestations = summary
            .attestations
            .saturating_add(v.signed_attestations.len());
    }
    summary.validators = merged.len();
    Ok((summary, merged))
}
