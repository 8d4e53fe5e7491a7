//! The checker's own signing-root and BLS verification.
//!
//! Hand-written on purpose: the checker must not trust the code under test, so it does not use
//! `failover_common::eth` (the project's SSZ containers, `compute_domain` and
//! `compute_signing_root`) nor the coordinator's slashing module. The five fixed-size
//! containers a slashable signature needs are small enough to merkleize by hand with `sha2`:
//!
//! - `Checkpoint { epoch: uint64, root: Bytes32 }` — 2 leaves;
//! - `AttestationData { slot, index, beacon_block_root, source: Checkpoint, target: Checkpoint }`
//!   — 5 leaves, padded to 8;
//! - `BeaconBlockHeader { slot, proposer_index, parent_root, state_root, body_root }` — 5
//!   leaves, padded to 8;
//! - `ForkData { current_version: Bytes4, genesis_validators_root: Bytes32 }` — 2 leaves;
//! - `SigningData { object_root: Bytes32, domain: Bytes32 }` — 2 leaves.
//!
//! A `uint64` leaf is its little-endian bytes padded with zeros to 32; a `Bytes4` leaf is the
//! four bytes padded to 32. `domain = domain_type ‖ fork_data_root[..28]`, with the fork
//! version `previous_version` if the signing epoch is before `fork.epoch`, else
//! `current_version`. The signing epoch is the target epoch for attestations and
//! `slot / slots_per_epoch` for blocks. Signatures are checked with `blst::min_pk` and the
//! Ethereum proof-of-possession ciphersuite.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The BLS ciphersuite Ethereum signs with.
pub const DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
/// `DOMAIN_BEACON_PROPOSER` (blocks).
pub const DOMAIN_PROPOSER: [u8; 4] = [0, 0, 0, 0];
/// `DOMAIN_BEACON_ATTESTER` (attestations).
pub const DOMAIN_ATTESTER: [u8; 4] = [1, 0, 0, 0];

/// What a slashable request signs, read from its Web3Signer body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A block header (`BLOCK_V2` with `block_header`).
    Block {
        /// Slot (slots).
        slot: u64,
        /// `hash_tree_root(BeaconBlockHeader)`.
        object_root: [u8; 32],
    },
    /// Attestation data (`ATTESTATION`).
    Attestation {
        /// Slot (slots).
        slot: u64,
        /// Source checkpoint epoch (epochs).
        source: u64,
        /// Target checkpoint epoch (epochs).
        target: u64,
        /// `hash_tree_root(AttestationData)`.
        object_root: [u8; 32],
    },
}

/// A request body read and re-hashed by the checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recomputed {
    /// The message.
    pub message: Message,
    /// The signing root recomputed from the message and `fork_info`.
    pub signing_root: [u8; 32],
    /// The `signingRoot` the body carried, if any.
    pub claimed_root: Option<[u8; 32]>,
}

fn sha(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

/// Merkle root of `leaves`, padded with zero chunks to the next power of two.
fn merkleize(leaves: &[[u8; 32]]) -> [u8; 32] {
    let mut layer: Vec<[u8; 32]> = leaves.to_vec();
    let width = layer.len().next_power_of_two().max(1);
    layer.resize(width, [0; 32]);
    while layer.len() > 1 {
        layer = layer.chunks(2).map(|p| sha(&p[0], &p[1])).collect();
    }
    layer[0]
}

fn u64_leaf(v: u64) -> [u8; 32] {
    let mut l = [0; 32];
    l[..8].copy_from_slice(&v.to_le_bytes());
    l
}

/// `hash_tree_root(Checkpoint)`.
pub fn checkpoint_root(epoch: u64, root: [u8; 32]) -> [u8; 32] {
    merkleize(&[u64_leaf(epoch), root])
}

/// `compute_domain(domain_type, version, genesis_validators_root)`.
pub fn domain(domain_type: [u8; 4], version: [u8; 4], gvr: [u8; 32]) -> [u8; 32] {
    let mut v = [0; 32];
    v[..4].copy_from_slice(&version);
    let fork_data_root = merkleize(&[v, gvr]);
    let mut d = [0; 32];
    d[..4].copy_from_slice(&domain_type);
    d[4..].copy_from_slice(&fork_data_root[..28]);
    d
}

/// `hash_tree_root(SigningData { object_root, domain })`.
pub fn signing_root(object_root: [u8; 32], domain: [u8; 32]) -> [u8; 32] {
    merkleize(&[object_root, domain])
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, String> {
    v.get(name).ok_or_else(|| format!("missing field `{name}`"))
}

fn read_u64(v: &Value, name: &str) -> Result<u64, String> {
    let f = field(v, name)?;
    match f {
        Value::String(s) => s.parse().map_err(|e| format!("`{name}`: {e}")),
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("`{name}` is not a u64")),
        _ => Err(format!("`{name}` is not a number")),
    }
}

fn read_hex<const N: usize>(v: &Value, name: &str) -> Result<[u8; N], String> {
    let s = field(v, name)?
        .as_str()
        .ok_or_else(|| format!("`{name}` is not a string"))?;
    let bytes = hex::decode(s.trim_start_matches("0x")).map_err(|e| format!("`{name}`: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| format!("`{name}` is not {N} bytes"))
}

/// Parses a Web3Signer `BLOCK_V2` (`block_header`) or `ATTESTATION` body and recomputes its
/// signing root. `slots_per_epoch` gives a block's epoch (slots per epoch).
///
/// Errors: another request type, or a field is missing or malformed.
pub fn recompute(body: &Value, slots_per_epoch: u64) -> Result<Recomputed, String> {
    let kind = field(body, "type")?.as_str().unwrap_or_default();
    let fork_info = field(body, "fork_info")?;
    let fork = field(fork_info, "fork")?;
    let previous: [u8; 4] = read_hex(fork, "previous_version")?;
    let current: [u8; 4] = read_hex(fork, "current_version")?;
    let fork_epoch = read_u64(fork, "epoch")?;
    let gvr: [u8; 32] = read_hex(fork_info, "genesis_validators_root")?;
    let version_at = |epoch: u64| {
        if epoch < fork_epoch {
            previous
        } else {
            current
        }
    };
    let (message, dom) = match kind {
        "ATTESTATION" => {
            let a = field(body, "attestation")?;
            let src = field(a, "source")?;
            let tgt = field(a, "target")?;
            let (slot, source, target) = (
                read_u64(a, "slot")?,
                read_u64(src, "epoch")?,
                read_u64(tgt, "epoch")?,
            );
            let object_root = merkleize(&[
                u64_leaf(slot),
                u64_leaf(read_u64(a, "index")?),
                read_hex(a, "beacon_block_root")?,
                checkpoint_root(source, read_hex(src, "root")?),
                checkpoint_root(target, read_hex(tgt, "root")?),
            ]);
            (
                Message::Attestation {
                    slot,
                    source,
                    target,
                    object_root,
                },
                domain(DOMAIN_ATTESTER, version_at(target), gvr),
            )
        }
        "BLOCK_V2" => {
            let b = field(body, "beacon_block")?;
            let h = field(b, "block_header")?;
            let slot = read_u64(h, "slot")?;
            let object_root = merkleize(&[
                u64_leaf(slot),
                u64_leaf(read_u64(h, "proposer_index")?),
                read_hex(h, "parent_root")?,
                read_hex(h, "state_root")?,
                read_hex(h, "body_root")?,
            ]);
            let epoch = slot / slots_per_epoch.max(1);
            (
                Message::Block { slot, object_root },
                domain(DOMAIN_PROPOSER, version_at(epoch), gvr),
            )
        }
        other => return Err(format!("unsupported request type `{other}`")),
    };
    let claimed_root = match body.get("signingRoot") {
        Some(_) => Some(read_hex(body, "signingRoot")?),
        None => None,
    };
    Ok(Recomputed {
        signing_root: signing_root(message_root(&message), dom),
        message,
        claimed_root,
    })
}

fn message_root(m: &Message) -> [u8; 32] {
    match m {
        Message::Block { object_root, .. } | Message::Attestation { object_root, .. } => {
            *object_root
        }
    }
}

/// Verifies a compressed BLS signature (96 bytes) by a compressed public key (48 bytes) over
/// `root`, with subgroup checks on both.
///
/// Errors: a key or signature does not decode, or the signature is wrong.
pub fn verify_bls(pubkey: &[u8], signature: &[u8], root: &[u8; 32]) -> Result<(), String> {
    use blst::min_pk::{PublicKey, Signature};
    let pk = PublicKey::key_validate(pubkey).map_err(|e| format!("bad public key: {e:?}"))?;
    let sig = Signature::from_bytes(signature).map_err(|e| format!("bad signature: {e:?}"))?;
    match sig.verify(true, root, DST, &[], &pk, true) {
        blst::BLST_ERROR::BLST_SUCCESS => Ok(()),
        e => Err(format!("signature does not verify: {e:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merkleize_pads_to_a_power_of_two() {
        let a = [1u8; 32];
        assert_eq!(merkleize(&[a]), a);
        let three = merkleize(&[a, a, a]);
        assert_eq!(three, sha(&sha(&a, &a), &sha(&a, &[0; 32])));
    }
}
