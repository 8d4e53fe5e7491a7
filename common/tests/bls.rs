//! BLS signing and verification against the ethereum/bls12-381-tests v0.1.1 vectors (the copy
//! committed in mratsim/constantine), read in place through `failover_common::vectors`.
//!
//! Ciphersuite `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`, min-pk (keys in G1, signatures in
//! G2). In the files, `output: null` means "must fail". Every message in `sign` and `verify` is
//! 32 bytes, so these vectors exercise [`sign`] and [`verify`] on signing roots directly.

use std::path::PathBuf;

use blst::min_pk;
use failover_common::eth::{
    pubkey_of, public_key, secret_key, sign, signature, verify, BlsError, BLS_DST,
};
use failover_common::types::{Pubkey, Root, Signature};
use failover_common::vectors;
use serde_json::Value;

const SUITE: &str = "constantine/tests/protocol_blssig_pop_on_bls12381_g2_test_vectors_v0.1.1";

/// Every vector file of one handler, sorted by name, as (file name, JSON).
fn cases(handler: &str) -> Vec<(String, Value)> {
    let dir: PathBuf = vectors::path(&format!("{SUITE}/{handler}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read vector");
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, serde_json::from_str(&text).expect("vector JSON"))
        })
        .collect()
}

/// Decodes hex with or without `0x` (v0.1.1 deserialization files have none).
fn bytes(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    hex::decode(s.strip_prefix("0x").unwrap_or(s)).expect("hex")
}

fn fixed<const N: usize>(v: &Value) -> [u8; N] {
    bytes(v).try_into().expect("length")
}

#[test]
fn dst_is_the_proof_of_possession_ciphersuite() {
    assert_eq!(BLS_DST, b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_");
}

#[test]
fn sign_vectors_reproduce_the_expected_signatures() {
    let cases = cases("sign");
    let (mut signed, mut refused) = (0, 0);
    for (name, case) in &cases {
        let sk_bytes: [u8; 32] = fixed(&case["input"]["privkey"]);
        let message = Root(fixed(&case["input"]["message"]));
        let output = &case["output"];
        match secret_key(&sk_bytes) {
            Ok(sk) => {
                let expected = Signature(fixed(output));
                let sig = sign(&sk, &message);
                assert_eq!(sig, expected, "{name}");
                assert!(verify(&pubkey_of(&sk), &message, &sig), "{name}");
                signed += 1;
            }
            Err(e) => {
                assert!(
                    output.is_null(),
                    "{name}: key refused ({e}) but a signature is expected"
                );
                assert!(matches!(e, BlsError::SecretKey(_)), "{name}");
                refused += 1;
            }
        }
    }
    assert_eq!(
        (signed, refused),
        (9, 1),
        "sign vectors: signed / zero-key refusals"
    );
}

#[test]
fn verify_vectors_agree_with_our_verify() {
    let cases = cases("verify");
    let (mut valid, mut invalid) = (0, 0);
    for (name, case) in &cases {
        let input = &case["input"];
        let pk = Pubkey(fixed(&input["pubkey"]));
        let message = Root(fixed(&input["message"]));
        let sig = Signature(fixed(&input["signature"]));
        let expected = case["output"].as_bool().expect("bool output");
        assert_eq!(verify(&pk, &message, &sig), expected, "{name}");
        if expected {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    assert_eq!((valid, invalid), (10, 19), "verify vectors: true / false");
}

#[test]
fn infinity_public_key_and_signature_are_refused() {
    let (_, case) = cases("verify")
        .into_iter()
        .find(|(n, _)| n == "verify_infinity_pubkey_and_infinity_signature.json")
        .expect("infinity vector present");
    let pk = Pubkey(fixed(&case["input"]["pubkey"]));
    let sig = Signature(fixed(&case["input"]["signature"]));
    assert_eq!(
        public_key(&pk).unwrap_err(),
        BlsError::PublicKey(blst::BLST_ERROR::BLST_PK_IS_INFINITY)
    );
    assert_eq!(
        signature(&sig).unwrap_err(),
        BlsError::Signature(blst::BLST_ERROR::BLST_PK_IS_INFINITY)
    );
    assert!(!verify(&pk, &Root(fixed(&case["input"]["message"])), &sig));
}

/// Deserialization as the vectors define it: a canonical compressed encoding of a point in the
/// subgroup, where the point at infinity is a valid encoding.
fn decodes_g1(b: &[u8]) -> bool {
    match min_pk::PublicKey::uncompress(b) {
        Ok(pk) => matches!(
            pk.validate(),
            Ok(()) | Err(blst::BLST_ERROR::BLST_PK_IS_INFINITY)
        ),
        Err(_) => false,
    }
}

fn decodes_g2(b: &[u8]) -> bool {
    match min_pk::Signature::uncompress(b) {
        Ok(sig) => sig.validate(false).is_ok(),
        Err(_) => false,
    }
}

#[test]
fn deserialization_g1_vectors_agree_with_blst_and_our_key_check() {
    let cases = cases("deserialization_G1");
    assert_eq!(cases.len(), 13);
    let mut accepted = 0;
    for (name, case) in &cases {
        let b = bytes(&case["input"]["pubkey"]);
        let expected = case["output"].as_bool().expect("bool output");
        assert_eq!(decodes_g1(&b), expected, "{name}");
        // Our check accepts exactly the valid encodings that are not infinity.
        let ours = <[u8; 48]>::try_from(b.as_slice())
            .map(|a| public_key(&Pubkey(a)).is_ok())
            .unwrap_or(false);
        assert_eq!(ours, expected && !name.contains("infinity"), "{name}");
        accepted += usize::from(ours);
    }
    assert_eq!(accepted, 1);
}

#[test]
fn deserialization_g2_vectors_agree_with_blst_and_our_signature_check() {
    let cases = cases("deserialization_G2");
    assert_eq!(cases.len(), 15);
    let mut accepted = 0;
    for (name, case) in &cases {
        let b = bytes(&case["input"]["signature"]);
        let expected = case["output"].as_bool().expect("bool output");
        assert_eq!(decodes_g2(&b), expected, "{name}");
        let ours = <[u8; 96]>::try_from(b.as_slice())
            .map(|a| signature(&Signature(a)).is_ok())
            .unwrap_or(false);
        assert_eq!(ours, expected && !name.contains("infinity"), "{name}");
        accepted += usize::from(ours);
    }
    assert_eq!(accepted, 1);
}

#[test]
fn a_signature_verifies_only_for_its_own_root_and_key() {
    let sk = secret_key(&[7u8; 32]).unwrap();
    let other = secret_key(&[8u8; 32]).unwrap();
    let root = Root([0x42; 32]);
    let sig = sign(&sk, &root);
    assert!(verify(&pubkey_of(&sk), &root, &sig));
    assert!(!verify(&pubkey_of(&other), &root, &sig));
    for i in 0..32 {
        let mut r = root;
        r.0[i] ^= 1;
        assert!(!verify(&pubkey_of(&sk), &r, &sig), "byte {i}");
    }
    let mut bad = sig;
    bad.0[95] ^= 1;
    assert!(!verify(&pubkey_of(&sk), &root, &bad));
}
