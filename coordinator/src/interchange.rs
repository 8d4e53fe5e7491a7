//! EIP-3076 slashing-protection interchange (format version 5): types and import into the
//! replicated state.
//!
//! Strategy (documented for the conformance suite): the cluster keeps the **complete
//! history** above the low watermarks, so imported records are merged record by record
//! (the `should_succeed_complete` expectations apply). An import is all-or-nothing: it is
//! refused as a whole, changing nothing, when
//! - the format version is not `"5"`, or the genesis validators root differs from the
//!   cluster's (EIP-3076: "MUST refuse");
//! - it is slashable with itself or with the history (EIP-3076 allows refusing such data;
//!   refusing keeps I3 without guessing which message was really signed).
//!
//! Because import is a command in the Raft log, it is ordered with every record batch: a
//! signature recorded before the import is part of the history the import is checked
//! against, and one recorded after sees the imported records. No pause in signing is needed.

use std::collections::BTreeMap;

use failover_common::types::{quoted_u64, Pubkey, Root};
use serde::{Deserialize, Serialize};

use crate::slashing::{ImportConflict, ValidatorHistory};
use crate::state::StateData;

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
    /// Slashable data for a validator.
    #[error("validator {pubkey}: {conflict}")]
    Slashable {
        /// Validator.
        pubkey: Pubkey,
        /// The conflict.
        conflict: Box<ImportConflict>,
    },
}

/// What an import added.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    /// Validators in the file.
    pub validators: usize,
    /// Block records in the file.
    pub blocks: usize,
    /// Attestation records in the file.
    pub attestations: usize,
}

impl StateData {
    /// Exports the history of `pubkeys` (all validators when `None`) as an EIP-3076
    /// interchange for `genesis_validators_root`. Read-only.
    ///
    /// Every stored record is written with its signing root (or none when unknown). Low
    /// watermarks left by pruning are written as one block at the block watermark and one
    /// attestation at the source and target watermarks, without signing roots: importing the
    /// file elsewhere refuses exactly what this state refuses (see `slashing`'s module doc).
    pub fn export_interchange(
        &self,
        genesis_validators_root: Root,
        pubkeys: Option<&[Pubkey]>,
    ) -> Interchange {
        let selected: Vec<(&Pubkey, &ValidatorHistory)> = match pubkeys {
            None => self.validators.iter().collect(),
            Some(list) => list
                .iter()
                .filter_map(|pk| self.validators.get_key_value(pk))
                .collect(),
        };
        let data = selected
            .into_iter()
            .map(|(pk, h)| {
                let mut signed_blocks: Vec<SignedBlock> = Vec::new();
                if let Some(slot) = h.low_slot.filter(|s| !h.blocks.contains_key(s)) {
                    signed_blocks.push(SignedBlock {
                        slot,
                        signing_root: None,
                    });
                }
                signed_blocks.extend(h.blocks.iter().map(|(slot, root)| SignedBlock {
                    slot: *slot,
                    signing_root: *root,
                }));
                let mut signed_attestations: Vec<SignedAttestation> = Vec::new();
                if let (Some(source_epoch), Some(target_epoch)) =
                    (h.low_source_epoch, h.low_target_epoch)
                {
                    if !h.attestations.contains_key(&target_epoch) {
                        signed_attestations.push(SignedAttestation {
                            source_epoch,
                            target_epoch,
                            signing_root: None,
                        });
                    }
                }
                signed_attestations.extend(h.attestations.iter().map(|(target, a)| {
                    SignedAttestation {
                        source_epoch: a.source_epoch,
                        target_epoch: *target,
                        signing_root: a.signing_root,
                    }
                }));
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

    /// Imports an interchange all-or-nothing (see the module doc). Deterministic.
    ///
    /// Errors: [`InterchangeError`]; on error the state is unchanged.
    pub fn import_interchange(
        &mut self,
        doc: &Interchange,
        genesis_validators_root: Root,
    ) -> Result<(ImportSummary, Vec<Pubkey>), InterchangeError> {
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
        for v in &doc.data {
            let h = merged
                .entry(v.pubkey)
                .or_insert_with(|| self.validators.get(&v.pubkey).cloned().unwrap_or_default());
            let err = |conflict| InterchangeError::Slashable {
                pubkey: v.pubkey,
                conflict: Box::new(conflict),
            };
            for b in &v.signed_blocks {
                h.import_block(b.slot, b.signing_root).map_err(err)?;
            }
            for a in &v.signed_attestations {
                h.import_attestation(a.source_epoch, a.target_epoch, a.signing_root)
                    .map_err(err)?;
            }
            summary.blocks += v.signed_blocks.len();
            summary.attestations += v.signed_attestations.len();
        }
        summary.validators = merged.len();
        let touched: Vec<Pubkey> = merged.keys().copied().collect();
        self.validators.extend(merged);
        Ok((summary, touched))
    }
}
