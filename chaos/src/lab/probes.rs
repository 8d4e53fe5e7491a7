//! Conflict probes: messages that contradict what an agent already signed, sent the way a
//! misconfigured or restarted validator client would send them.
//!
//! Without probes the duty simulator only ever asks for honest, non-conflicting messages, and
//! "nothing slashable was signed" would hold trivially. The drill sends two sets:
//! - right after the handover, to the new holder, against the **old holder's** last signed
//!   attestation and block: the slashing history must have crossed the handover;
//! - at the end, to the holder, against **its own** last signed attestation and block.
//!
//! For each chosen message there are up to four probes:
//! - the identical message again: EIP-3076 allows re-signing it, and BLS signatures are
//!   deterministic, so the answer must be 200 with the very same signature; a 412 is also safe
//!   (a coordinator whose low watermark has already passed the message cannot tell it is
//!   identical);
//! - a double vote (same source and target, another head root): must be 412;
//! - a surrounding vote (source one lower, target one higher): must be 412;
//! - a double proposal (same slot, another body root): must be 412.
//!
//! Invariants: probes are built only from messages the agent actually signed (as recorded);
//! every probe is recorded with its name, and judged only against its own expectation.

use failover_common::eth::{AttestationData, ForkInfo};
use failover_common::types::Signature;

use super::duties::{
    attestation_data, attestation_duty_from, block_duty_from, block_header, block_root, checkpoint,
    labelled_root, Duty, DutyKind, DutyRecord,
};
use super::keys::Validator;

/// What a probe must get back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// The identical message: 200 with exactly this signature, or 412.
    SameSignatureOrRefused(Signature),
    /// A conflicting message: 412.
    Refused,
}

/// One probe: a request and its expectation.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// What it tries, e.g. `double vote 3→4 vs agent-eu's history`.
    pub name: String,
    /// The request.
    pub duty: Duty,
    /// What must come back.
    pub expect: Expectation,
}

impl Probe {
    /// Whether `rec` (the answer to this probe) meets the expectation; `Err` says how not.
    pub fn judge(&self, rec: &DutyRecord) -> Result<(), String> {
        match (&self.expect, rec.status) {
            (Expectation::Refused, 412) => Ok(()),
            (Expectation::SameSignatureOrRefused(_), 412) => Ok(()),
            (Expectation::SameSignatureOrRefused(sig), 200) if rec.signature == Some(*sig) => {
                Ok(())
            }
            (Expectation::SameSignatureOrRefused(_), 200) => {
                Err("signed the identical message with a different signature".into())
            }
            (Expectation::Refused, 200) => Err("SIGNED a conflicting message".into()),
            (_, status) => Err(format!("answered {status} instead of 412")),
        }
    }
}

/// Probes against the latest attestation and the latest block that `signer` signed in
/// `records` (regular duties only). Empty when it signed neither.
pub fn conflict_probes(
    records: &[DutyRecord],
    signer: &str,
    validators: &[Validator],
    fork_info: &ForkInfo,
    spe: u64,
) -> Vec<Probe> {
    let signed = |kind: DutyKind| {
        records
            .iter()
            .filter(move |r| {
                r.agent == signer && r.status == 200 && r.kind == kind && r.probe.is_none()
            })
            .max_by_key(|r| (r.target_epoch, r.slot))
    };
    let validator = |index: u64| validators.iter().find(|v| v.index == index);
    let mut out = Vec::new();

    if let Some((att, v)) =
        signed(DutyKind::Attestation).and_then(|r| Some((r, validator(r.validator)?)))
    {
        let honest = attestation_data(att.slot, spe);
        let (s, t) = (honest.source.epoch, honest.target.epoch);
        if let Some(sig) = att.signature {
            out.push(Probe {
                name: format!("identical attestation {s}→{t} again, vs {signer}'s history"),
                duty: attestation_duty_from(v, honest, fork_info),
                expect: Expectation::SameSignatureOrRefused(sig),
            });
        }
        let double = AttestationData {
            beacon_block_root: labelled_root("lab conflicting head", att.slot),
            ..honest
        };
        out.push(Probe {
            name: format!("double vote {s}→{t}, vs {signer}'s history"),
            duty: attestation_duty_from(v, double, fork_info),
            expect: Expectation::Refused,
        });
        if s >= 1 {
            let slot = (t + 1) * spe + v.index % spe;
            let surrounding = AttestationData {
                slot,
                index: 0,
                beacon_block_root: block_root(slot),
                source: checkpoint(s - 1, spe),
                target: checkpoint(t + 1, spe),
            };
            out.push(Probe {
                name: format!(
                    "surrounding vote {}→{} around {s}→{t}, vs {signer}'s history",
                    s - 1,
                    t + 1
                ),
                duty: attestation_duty_from(v, surrounding, fork_info),
                expect: Expectation::Refused,
            });
        }
    }

    if let Some((blk, v)) = signed(DutyKind::Block).and_then(|r| Some((r, validator(r.validator)?)))
    {
        let honest = block_header(v, blk.slot);
        if let Some(sig) = blk.signature {
            out.push(Probe {
                name: format!(
                    "identical block at slot {} again, vs {signer}'s history",
                    blk.slot
                ),
                duty: block_duty_from(v, honest, fork_info, spe),
                expect: Expectation::SameSignatureOrRefused(sig),
            });
        }
        let other = failover_common::eth::BeaconBlockHeader {
            body_root: labelled_root("lab conflicting body", blk.slot),
            ..honest
        };
        out.push(Probe {
            name: format!(
                "double proposal at slot {}, vs {signer}'s history",
                blk.slot
            ),
            duty: block_duty_from(v, other, fork_info, spe),
            expect: Expectation::Refused,
        });
    }
    out
}
