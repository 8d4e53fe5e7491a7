//! The standard interop ("mock start") validator keys used by every consensus client's dev and
//! test networks (Ethereum "eth2.0-pm" interop spec, `interop/mocked_start/keygen`).
//!
//! Validator `i` has the secret key
//! `int.from_bytes(sha256(i.to_bytes(32, "little")), "little") % r`, where `r` is the
//! BLS12-381 curve order, given to blst as 32 big-endian bytes.
//!
//! Invariants:
//! - the keys are public test material: never use them for real funds;
//! - the mapping is deterministic and total: every `u64` index gives a valid non-zero key
//!   (a zero scalar would need a SHA-256 preimage of a multiple of `r`, which is infeasible,
//!   and is still checked).
//!
//! The reduction modulo `r` is done by blst (`blst_scalar_from_le_bytes`), not by hand.

use blst::min_pk::SecretKey;
use sha2::{Digest, Sha256};

use crate::types::Pubkey;

/// The secret key of interop validator `index`.
///
/// Panics only if the reduced scalar were zero, which no SHA-256 output is known to produce.
pub fn secret_key(index: u64) -> SecretKey {
    let mut preimage = [0u8; 32];
    preimage[..8].copy_from_slice(&index.to_le_bytes());
    let digest: [u8; 32] = Sha256::digest(preimage).into();

    let mut scalar = blst::blst_scalar::default();
    // SAFETY: `scalar` is a valid, exclusively borrowed out-parameter and `digest` is a
    // readable buffer of exactly `digest.len()` bytes; blst reads `len` bytes, reduces the
    // little-endian integer modulo r and writes the scalar. It returns false for zero.
    let non_zero =
        unsafe { blst::blst_scalar_from_le_bytes(&mut scalar, digest.as_ptr(), digest.len()) };
    assert!(non_zero, "interop secret key {index} reduced to zero");

    let mut be = [0u8; 32];
    // SAFETY: `be` is a writable 32-byte buffer, the size of a serialized scalar, and
    // `scalar` is an initialized scalar.
    unsafe { blst::blst_bendian_from_scalar(be.as_mut_ptr(), &scalar) };
    let sk = SecretKey::from_bytes(&be).expect("a non-zero scalar below r is a valid secret key");
    zeroize::Zeroize::zeroize(&mut be);
    sk
}

/// The public key of interop validator `index` (48-byte compressed G1).
pub fn pubkey(index: u64) -> Pubkey {
    Pubkey(secret_key(index).sk_to_pk().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published interop keys (Teku `ValidatorLoaderTest`, Nethermind mocked-start tests, and
    /// the Python formula in the module docs, recomputed independently).
    const KNOWN: [(u64, &str, &str); 3] = [
        (
            0,
            "25295f0d1d592a90b333e26e85149708208e9f8e8bc18f6c77bd62f8ad7a6866",
            "a99a76ed7796f7be22d5b7e85deeb7c5677e88e511e0b337618f8c4eb61349b4bf2d153f649f7b53359fe8b94a38e44c",
        ),
        (
            1,
            "51d0b65185db6989ab0b560d6deed19c7ead0e24b9b6372cbecb1f26bdfad000",
            "b89bebc699769726a318c8e9971bd3171297c61aea4a6578a7a4f94b547dcba5bac16a89108b6b6a1fe3695d1a874a0b",
        ),
        (
            2,
            "315ed405fafe339603932eebe8dbfd650ce5dafa561f6928664c75db85f97857",
            "a3a32b0f8b4ddb83f1a0a853d81dd725dfe577d4f4c3db8ece52ce2b026eca84815c1a7e8e92a4de3d755733bf7e4a9b",
        ),
    ];

    #[test]
    fn interop_keys_match_the_published_secret_and_public_keys() {
        for (index, sk_hex, pk_hex) in KNOWN {
            assert_eq!(
                hex::encode(secret_key(index).to_bytes()),
                sk_hex,
                "secret {index}"
            );
            assert_eq!(hex::encode(pubkey(index).0), pk_hex, "pubkey {index}");
        }
    }

    #[test]
    fn interop_keys_are_distinct_for_distinct_indices() {
        let keys: std::collections::HashSet<_> = (0..16).map(pubkey).collect();
        assert_eq!(keys.len(), 16);
    }
}
