//! BLS signatures over signing roots, with the proof-of-possession ciphersuite
//! `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_` (public keys in G1, signatures in G2) that the
//! consensus specs use, through `blst::min_pk`.
//!
//! Invariants:
//! - every signature is over a 32-byte signing root computed by this crate, never over raw
//!   client bytes;
//! - a public key or signature is used only after it decoded from its compressed form and passed
//!   the subgroup check, and neither may be the point at infinity (an infinity key would verify
//!   the infinity signature for any message).

use blst::min_pk;
use blst::BLST_ERROR;

use crate::types::{Pubkey, Root, Signature};

/// Domain separation tag of the Ethereum consensus BLS ciphersuite (proof-of-possession scheme).
pub const BLS_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// Why bytes are not a usable BLS key or signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlsError {
    /// The secret key is zero or not below the group order.
    #[error("invalid BLS secret key: {0:?}")]
    SecretKey(BLST_ERROR),
    /// The public key is not a compressed G1 point in the subgroup, or is infinity.
    #[error("invalid BLS public key: {0:?}")]
    PublicKey(BLST_ERROR),
    /// The signature is not a compressed G2 point in the subgroup, or is infinity.
    #[error("invalid BLS signature: {0:?}")]
    Signature(BLST_ERROR),
}

/// Parses a 32-byte big-endian secret key.
///
/// Errors: [`BlsError::SecretKey`] for zero or a value not below the curve order.
pub fn secret_key(bytes: &[u8; 32]) -> Result<min_pk::SecretKey, BlsError> {
    min_pk::SecretKey::from_bytes(bytes).map_err(BlsError::SecretKey)
}

/// The compressed public key of `sk`.
pub fn pubkey_of(sk: &min_pk::SecretKey) -> Pubkey {
    Pubkey(sk.sk_to_pk().to_bytes())
}

/// Decodes and validates a compressed public key: on the curve, in the G1 subgroup, not infinity.
///
/// Errors: [`BlsError::PublicKey`] with blst's reason.
pub fn public_key(pk: &Pubkey) -> Result<min_pk::PublicKey, BlsError> {
    let key = min_pk::PublicKey::uncompress(&pk.0).map_err(BlsError::PublicKey)?;
    key.validate().map_err(BlsError::PublicKey)?;
    Ok(key)
}

/// Decodes and validates a compressed signature: on the curve, in the G2 subgroup, not infinity.
///
/// Errors: [`BlsError::Signature`] with blst's reason.
pub fn signature(sig: &Signature) -> Result<min_pk::Signature, BlsError> {
    let s = min_pk::Signature::uncompress(&sig.0).map_err(BlsError::Signature)?;
    s.validate(true).map_err(BlsError::Signature)?;
    Ok(s)
}

/// Signs a signing root (`Sign(SK, signing_root)` of the consensus specs) and returns the
/// compressed 96-byte signature.
pub fn sign(sk: &min_pk::SecretKey, signing_root: &Root) -> Signature {
    Signature(sk.sign(&signing_root.0, BLS_DST, &[]).to_bytes())
}

/// Verifies `sig` by `pk` over `signing_root` (`Verify` of the consensus specs).
///
/// Returns false for an invalid or infinity public key, an invalid or infinity signature, or a
/// signature that does not match.
pub fn verify(pk: &Pubkey, signing_root: &Root, sig: &Signature) -> bool {
    let (Ok(pk), Ok(sig)) = (public_key(pk), signature(sig)) else {
        return false;
    };
    // Both points were validated above, so blst need not repeat the group checks.
    sig.verify(false, &signing_root.0, BLS_DST, &[], &pk, false) == BLST_ERROR::BLST_SUCCESS
}

/// The DST of key-possession proofs: the IETF BLS `POP` ciphersuite's proof-of-possession tag,
/// different from [`BLS_DST`], so a possession proof is never a valid consensus signature.
pub const POSSESSION_DST: &[u8] = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// The message an agent signs to prove it holds the secret key of `pubkey`:
/// `SHA-256("failover-coordinator key possession v1" ‖ 0x00 ‖ agent id ‖ 0x00 ‖ pubkey)`.
/// Binding the agent id keeps one agent's proof from serving another.
pub fn possession_message(agent: &str, pubkey: &Pubkey) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"failover-coordinator key possession v1\0");
    h.update(agent.as_bytes());
    h.update([0u8]);
    h.update(pubkey.0);
    h.finalize().into()
}

/// A proof that `agent` holds `sk`: its signature over [`possession_message`] with
/// [`POSSESSION_DST`].
pub fn sign_possession(sk: &min_pk::SecretKey, agent: &str) -> Signature {
    let msg = possession_message(agent, &pubkey_of(sk));
    Signature(sk.sign(&msg, POSSESSION_DST, &[]).to_bytes())
}

/// Whether `sig` proves that `agent` holds the secret key of `pk` ([`sign_possession`]).
/// False for invalid points or a signature over anything else.
pub fn verify_possession(pk: &Pubkey, agent: &str, sig: &Signature) -> bool {
    let (Ok(key), Ok(sig)) = (public_key(pk), signature(sig)) else {
        return false;
    };
    let msg = possession_message(agent, pk);
    sig.verify(false, &msg, POSSESSION_DST, &[], &key, false) == BLST_ERROR::BLST_SUCCESS
}
