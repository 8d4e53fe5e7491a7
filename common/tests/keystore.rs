//! EIP-2335 keystore conformance: the ERC-2335 test vectors, ChainSafe's bls-keystore vectors,
//! Web3Signer's positive and negative keystores and its password-normalization cases, read in
//! place from the shared vectors folder (`failover_common::vectors`).

use std::collections::BTreeSet;

use failover_common::keystore::{encrypt, normalize_password, KdfParams, Keystore, KeystoreError};
use failover_common::types::{decode_var, Pubkey};
use failover_common::vectors;
use serde_json::Value;

const WEB3SIGNER_KEYSTORE_DIR: &str =
    "web3signer/bls-keystore/src/test/resources/tech/pegasys/web3signer/bls/keystore";
const WEB3SIGNER_MANIFEST: &str = "web3signer/_extracted/keystore_and_misc_cases.json";

fn json(rel: &str) -> Value {
    serde_json::from_str(&vectors::read(rel)).unwrap_or_else(|e| panic!("parse {rel}: {e}"))
}

fn hex_bytes(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    let s = if s.starts_with("0x") {
        s.to_string()
    } else {
        format!("0x{s}")
    };
    decode_var(&s).expect("valid hex")
}

/// Decrypts, checks the secret, checks that the secret derives the keystore's pubkey, and checks
/// that a wrong password is refused as such.
fn assert_decrypts(keystore: &Keystore, password: &str, secret: &[u8], label: &str) {
    let got = keystore
        .decrypt(password)
        .unwrap_or_else(|e| panic!("{label}: decrypt failed: {e}"));
    assert_eq!(got.expose().as_slice(), secret, "{label}: secret");
    let sk = keystore
        .decrypt_secret_key(password)
        .unwrap_or_else(|e| panic!("{label}: secret key: {e}"));
    assert_eq!(
        Pubkey(sk.sk_to_pk().to_bytes()),
        keystore.pubkey,
        "{label}: pubkey"
    );
    assert_eq!(
        keystore.decrypt(&format!("{password}x")).unwrap_err(),
        KeystoreError::WrongPassword,
        "{label}: wrong password"
    );
}

#[test]
fn erc_2335_scrypt_and_pbkdf2_vectors_decrypt_to_the_documented_secret() {
    for name in ["scrypt", "pbkdf2"] {
        let v = json(&format!("ERCs/ERCS/erc-2335/{name}.json"));
        let password = v["password"].as_str().unwrap();
        assert_eq!(
            normalize_password(password).as_bytes(),
            hex_bytes(&v["password_nfkd_stripped_utf8_hex"]).as_slice(),
            "{name}: encoded password"
        );
        let keystore: Keystore = serde_json::from_value(v["keystore"].clone())
            .unwrap_or_else(|e| panic!("{name}: parse: {e}"));
        let expected_kdf = match name {
            "scrypt" => KdfParams::SCRYPT,
            _ => KdfParams::PBKDF2,
        };
        assert_eq!(keystore.crypto.kdf.params, expected_kdf, "{name}: kdf");
        assert_decrypts(&keystore, password, &hex_bytes(&v["secret"]), name);
    }
}

#[test]
fn chainsafe_bls_keystore_vectors_decrypt_despite_their_extra_fields() {
    for name in ["pbkdf2-0", "pbkdf2-1", "scrypt-0", "scrypt-1"] {
        let rel = format!("bls-keystore/test/vectors/{name}.json");
        let text = vectors::read(&rel);
        let v: Value = serde_json::from_str(&text).unwrap();
        let keystore = Keystore::from_json(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_decrypts(
            &keystore,
            v["password"].as_str().unwrap(),
            &hex_bytes(&v["secret"]),
            name,
        );
    }
}

#[test]
fn web3signer_positive_keystores_decrypt_to_the_manifest_secret() {
    let manifest = json(WEB3SIGNER_MANIFEST);
    let cases = manifest["decrypt_ok"].as_array().unwrap();
    assert_eq!(cases.len(), 5, "manifest lists five positive keystores");
    for case in cases {
        let file = case["file"].as_str().unwrap();
        let keystore = Keystore::from_json(&vectors::read(&format!("web3signer/{file}")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        if let Some(pk) = case.get("pubkey") {
            assert_eq!(keystore.pubkey.to_string(), pk.as_str().unwrap(), "{file}");
        }
        assert_decrypts(
            &keystore,
            case["password"].as_str().unwrap(),
            &hex_bytes(&case["secret"]),
            file,
        );
    }
}

/// The error each Web3Signer negative keystore must produce (KeyStoreTest.java's cases).
fn expected_refusal(file_name: &str) -> fn(&KeystoreError) -> bool {
    match file_name {
        "missingKdfSectionTestVector.json" | "missingCrypto.json" | "missingVersion.json" => {
            |e| matches!(e, KeystoreError::Json(_))
        }
        "v3TestVector.json" => |e| *e == KeystoreError::UnsupportedVersion(3),
        "unsupportedChecksumFunction.json" => {
            |e| *e == KeystoreError::UnsupportedChecksum("sha128".into())
        }
        "unsupportedCipherFunction.json" => {
            |e| *e == KeystoreError::UnsupportedCipher("aes-256-ctr".into())
        }
        "unsupportedKdfFunction.json" => |e| *e == KeystoreError::UnsupportedKdf("pbkdf3".into()),
        "unsupportedPBKDF2Prf.json" => {
            |e| *e == KeystoreError::UnsupportedPrf("hmac-sha512".into())
        }
        "unsupportedDkLen.json" => {
            |e| matches!(e, KeystoreError::InvalidParam(m) if m.contains("dklen"))
        }
        other => panic!("no expected outcome for negative keystore {other}"),
    }
}

#[test]
fn every_web3signer_negative_keystore_is_refused_when_loaded() {
    let manifest = json(WEB3SIGNER_MANIFEST);
    let negatives = manifest["load_must_fail"].as_array().unwrap();
    let positives = manifest["decrypt_ok"].as_array().unwrap();

    // The manifest must account for every keystore file in Web3Signer's test folder.
    let on_disk: BTreeSet<String> = std::fs::read_dir(vectors::path(WEB3SIGNER_KEYSTORE_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = negatives
        .iter()
        .chain(positives)
        .map(|c| c["file"].as_str().unwrap())
        .filter(|f| f.starts_with("bls-keystore/"))
        .map(|f| f.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(on_disk, listed, "manifest and folder disagree");
    assert_eq!(negatives.len(), 9);

    for case in negatives {
        let file = case["file"].as_str().unwrap();
        let name = file.rsplit('/').next().unwrap();
        let err = Keystore::from_json(&vectors::read(&format!("web3signer/{file}")))
            .expect_err(&format!("{file} must be refused"));
        assert!(
            expected_refusal(name)(&err),
            "{name}: unexpected error {err:?} (Web3Signer says {})",
            case["web3signer_error"]
        );
    }
}

#[test]
fn web3signer_password_normalization_vectors_encode_as_documented() {
    let manifest = json(WEB3SIGNER_MANIFEST);
    let cases = manifest["password_normalization"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let input = case["input"].as_str().unwrap();
        let normalized = normalize_password(input);
        assert_eq!(
            normalized.as_bytes(),
            hex_bytes(&case["utf8_hex"]).as_slice(),
            "{input:?}"
        );
        if let Some(expected) = case.get("expected") {
            assert_eq!(normalized.as_str(), expected.as_str().unwrap(), "{input:?}");
        }
    }
    // PasswordUtilsTest.java's fuller case (README §3), with C1 and DEL codes as well.
    assert_eq!(
        normalize_password("\u{0}\u{1f}\u{80}\u{9f}test \n\u{c}\tpass\u{7f}word\n").as_str(),
        "test password"
    );
}

#[test]
fn a_wrong_password_is_refused_as_wrong_password_and_decrypts_nothing() {
    let v = json("ERCs/ERCS/erc-2335/pbkdf2.json");
    let keystore: Keystore = serde_json::from_value(v["keystore"].clone()).unwrap();
    for wrong in ["", "testpassword", "𝔱𝔢𝔰𝔱𝔭𝔞𝔰𝔰𝔴𝔬𝔯𝔡"] {
        assert_eq!(
            keystore.decrypt(wrong).unwrap_err(),
            KeystoreError::WrongPassword,
            "{wrong:?}"
        );
    }
}

#[test]
fn a_tampered_ciphertext_fails_the_checksum() {
    let v = json("ERCs/ERCS/erc-2335/pbkdf2.json");
    let mut keystore: Keystore = serde_json::from_value(v["keystore"].clone()).unwrap();
    keystore.crypto.cipher.message[0] ^= 1;
    assert_eq!(
        keystore
            .decrypt(v["password"].as_str().unwrap())
            .unwrap_err(),
        KeystoreError::WrongPassword
    );
}

#[test]
fn encrypted_keystores_round_trip_through_json_and_decrypt() {
    let secret = hex_bytes(&json("ERCs/ERCS/erc-2335/scrypt.json")["secret"]);
    let secret: [u8; 32] = secret.try_into().unwrap();
    let mut rng = rand::thread_rng();
    for kdf in [
        KdfParams::Scrypt {
            n: 1 << 10,
            r: 8,
            p: 1,
        },
        KdfParams::Pbkdf2 { c: 1000 },
    ] {
        let keystore = encrypt(&secret, "correct horse\u{7f}", kdf, &mut rng).unwrap();
        let text = keystore.to_json();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 4);
        assert_eq!(v["path"], "");
        assert_eq!(v["crypto"]["kdf"]["params"]["dklen"], 32);
        assert_eq!(
            v["pubkey"].as_str().unwrap(),
            "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07"
        );
        assert_eq!(v["uuid"].as_str().unwrap().as_bytes()[14], b'4', "UUID v4");

        let back = Keystore::from_json(&text).unwrap();
        assert_eq!(back, keystore);
        // DEL is stripped, so both spellings are the same password.
        assert_eq!(back.decrypt("correct horse").unwrap().expose(), &secret);
        assert_decrypts(&back, "correct horse\u{7f}", &secret, "round trip");
    }
}

#[test]
fn encrypt_refuses_a_secret_that_is_not_a_bls_secret_key() {
    let mut rng = rand::thread_rng();
    for bad in [[0u8; 32], [0xff; 32]] {
        assert_eq!(
            encrypt(&bad, "pw", KdfParams::Pbkdf2 { c: 1 }, &mut rng).unwrap_err(),
            KeystoreError::InvalidSecret
        );
    }
}

#[test]
fn keystores_with_bad_field_values_are_refused_at_parse_time() {
    let v = json("ERCs/ERCS/erc-2335/scrypt.json");
    let base = v["keystore"].clone();
    type Mutation = fn(&mut Value);
    let cases: [(&str, Mutation); 6] = [
        ("scrypt n not a power of two", |k| {
            k["crypto"]["kdf"]["params"]["n"] = 1000.into()
        }),
        ("short iv", |k| {
            k["crypto"]["cipher"]["params"]["iv"] = "00".into()
        }),
        ("short pubkey", |k| k["pubkey"] = "00".into()),
        ("non-hex checksum", |k| {
            k["crypto"]["checksum"]["message"] = "zz".into()
        }),
        ("missing path", |k| {
            k.as_object_mut().unwrap().remove("path");
        }),
        ("missing cipher message", |k| {
            k["crypto"]["cipher"]
                .as_object_mut()
                .unwrap()
                .remove("message");
        }),
    ];
    for (label, mutate) in cases {
        let mut k = base.clone();
        mutate(&mut k);
        assert!(
            Keystore::from_json(&k.to_string()).is_err(),
            "{label} must be refused"
        );
    }
}
