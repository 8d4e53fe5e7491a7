//! EIP-2335 BLS12-381 keystores (version 4): strict parsing, decryption and encryption.
//!
//! A keystore holds one 32-byte BLS secret key encrypted under a password. Decryption has three
//! steps (EIP-2335 "Specification"):
//!
//! 1. the password is NFKD-normalized, the C0 (`0x00–0x1F`), C1 (`0x80–0x9F`) and `DEL`
//!    (`0x7F`) control codes are removed, and the rest is UTF-8 encoded;
//! 2. a 32-byte decryption key `dk` is derived with the keystore's KDF (scrypt, RFC 7914, or
//!    PBKDF2-HMAC-SHA256, RFC 2898);
//! 3. the password is checked with `sha256(dk[16..32] ‖ cipher.message) == checksum.message`,
//!    and only then is the secret decrypted with AES-128-CTR under `dk[0..16]` and `cipher.iv`.
//!
//! Invariants:
//! - a [`Keystore`] value is always a *supported* keystore: version 4, KDF `scrypt` or `pbkdf2`
//!   with `prf = hmac-sha256`, `dklen = 32`, checksum `sha256`, cipher `aes-128-ctr` with a
//!   16-byte IV, a 32-byte checksum and a 32-byte cipher message. Everything else is refused
//!   when the JSON is parsed, never later;
//! - a wrong password is always [`KeystoreError::WrongPassword`] and nothing is decrypted;
//! - the decrypted secret exists only inside [`SecretBytes`] (or a `blst` `SecretKey`), both of
//!   which zero their memory on drop and never print it.
//!
//! Departures from the letter of EIP-2335:
//! - `pubkey` is required (EIP-2335 requires it when the secret is a private key, which is the
//!   only use here), and [`Keystore::decrypt_secret_key`] checks it against the decrypted key;
//! - the secret must be exactly 32 bytes (a BLS12-381 secret key), not arbitrary length;
//! - scrypt parameters that need more than [`MAX_SCRYPT_MEMORY`] bytes are refused, so a
//!   corrupt file cannot make the process allocate without bound;
//! - hex fields may carry an optional `0x` prefix on input; output never has one.
//!
//! Unknown top-level fields (for example `name`, or the `password`/`secret` fields in some test
//! vectors) are ignored, as Web3Signer and the reference implementations do.

use std::fmt;

use aes::cipher::{KeyIvInit, StreamCipher};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use zeroize::{Zeroize, Zeroizing};

use crate::types::Pubkey;

/// The only keystore version this module reads and writes (EIP-2335 "Version").
pub const VERSION: u32 = 4;

/// Length in bytes of the derived decryption key (`dklen`); the only value accepted.
pub const DKLEN: u32 = 32;

/// Largest scrypt working memory (`128 · n · r` bytes) accepted when parsing: 1 GiB.
/// Standard keystores (`n = 2^18`, `r = 8`) need 256 MiB.
pub const MAX_SCRYPT_MEMORY: u64 = 1 << 30;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Why a keystore could not be parsed, decrypted or produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeystoreError {
    /// The JSON is malformed or lacks a required field (`crypto`, `version`, `path`, `uuid`,
    /// `pubkey`, a module's `function`/`params`/`message`, or a KDF parameter).
    #[error("invalid keystore JSON: {0}")]
    Json(String),
    /// `version` is not 4.
    #[error("keystore version not supported: {0} (only version 4, EIP-2335)")]
    UnsupportedVersion(u64),
    /// `crypto.kdf.function` is neither `scrypt` nor `pbkdf2`.
    #[error("kdf function {0:?} is not supported (scrypt or pbkdf2)")]
    UnsupportedKdf(String),
    /// `crypto.kdf.params.prf` of a PBKDF2 keystore is not `hmac-sha256`.
    #[error("pbkdf2 prf {0:?} is not supported (hmac-sha256)")]
    UnsupportedPrf(String),
    /// `crypto.checksum.function` is not `sha256`.
    #[error("checksum function {0:?} is not supported (sha256)")]
    UnsupportedChecksum(String),
    /// `crypto.cipher.function` is not `aes-128-ctr`.
    #[error("cipher function {0:?} is not supported (aes-128-ctr)")]
    UnsupportedCipher(String),
    /// A parameter has an invalid value (`dklen` ≠ 32, bad hex, wrong IV length, scrypt
    /// parameters out of range, …). The string names the field.
    #[error("invalid keystore parameter: {0}")]
    InvalidParam(String),
    /// The password does not match the checksum (EIP-2335 "Password verification").
    #[error("wrong keystore password")]
    WrongPassword,
    /// The (decrypted or supplied) secret is not a valid BLS12-381 secret key.
    #[error("secret is not a valid BLS12-381 secret key")]
    InvalidSecret,
    /// The decrypted secret key does not belong to the keystore's `pubkey`.
    #[error("keystore pubkey {expected} does not match its secret key (derives {derived})")]
    PubkeyMismatch {
        /// The `pubkey` field of the keystore.
        expected: Pubkey,
        /// The public key of the decrypted secret.
        derived: Pubkey,
    },
}

/// A decrypted 32-byte secret. Zeroed on drop; `Debug` never prints it.
pub struct SecretBytes([u8; 32]);

impl SecretBytes {
    /// Wraps 32 secret bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secret bytes (big-endian BLS scalar for a BLS keystore).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// Key-derivation function and its cost parameters (EIP-2335 "Decryption key"); `dklen` is
/// always 32 and the salt lives in [`Kdf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfParams {
    /// scrypt (RFC 7914): `n` (a power of two > 1), `r`, `p`.
    Scrypt {
        /// CPU/memory cost; a power of two greater than 1.
        n: u32,
        /// Block size.
        r: u32,
        /// Parallelism.
        p: u32,
    },
    /// PBKDF2 with HMAC-SHA256 (RFC 2898): `c` iterations.
    Pbkdf2 {
        /// Iteration count, at least 1.
        c: u32,
    },
}

impl KdfParams {
    /// The production scrypt cost used by the EIP-2335 test vectors and staking-deposit-cli:
    /// `n = 2^18, r = 8, p = 1` (256 MiB, about a second on one core).
    pub const SCRYPT: KdfParams = KdfParams::Scrypt {
        n: 1 << 18,
        r: 8,
        p: 1,
    };
    /// The production PBKDF2 cost used by the EIP-2335 test vectors: `c = 2^18`.
    pub const PBKDF2: KdfParams = KdfParams::Pbkdf2 { c: 1 << 18 };

    fn validate(&self) -> Result<(), KeystoreError> {
        match *self {
            KdfParams::Scrypt { n, r, p } => {
                scrypt_params(n, r, p)?;
                Ok(())
            }
            KdfParams::Pbkdf2 { c } => {
                if c == 0 {
                    return Err(KeystoreError::InvalidParam(
                        "kdf.params.c must be at least 1".into(),
                    ));
                }
                Ok(())
            }
        }
    }
}

fn scrypt_params(n: u32, r: u32, p: u32) -> Result<scrypt::Params, KeystoreError> {
    if n < 2 || !n.is_power_of_two() {
        return Err(KeystoreError::InvalidParam(format!(
            "kdf.params.n must be a power of two greater than 1, got {n}"
        )));
    }
    let memory = 128u64 * u64::from(n) * u64::from(r);
    if memory > MAX_SCRYPT_MEMORY {
        return Err(KeystoreError::InvalidParam(format!(
            "scrypt n={n} r={r} needs {memory} bytes, more than the {MAX_SCRYPT_MEMORY} allowed"
        )));
    }
    // `n` is a power of two below 2^32, so its log fits in a u8.
    let log_n = n.trailing_zeros() as u8;
    scrypt::Params::new(log_n, r, p, DKLEN as usize).map_err(|_| {
        KeystoreError::InvalidParam(format!("scrypt parameters n={n} r={r} p={p} are invalid"))
    })
}

/// The `crypto.kdf` module: function, cost and salt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kdf {
    /// Function and cost.
    pub params: KdfParams,
    /// Salt (non-empty; 32 random bytes when this module encrypts).
    pub salt: Vec<u8>,
}

/// The `crypto.cipher` module: AES-128-CTR, the only supported cipher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cipher {
    /// Initial counter block (`cipher.params.iv`), 16 bytes.
    pub iv: [u8; 16],
    /// The encrypted 32-byte secret (`cipher.message`).
    pub message: [u8; 32],
}

/// The `crypto` object of a keystore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    /// Key derivation.
    pub kdf: Kdf,
    /// `sha256(dk[16..32] ‖ cipher.message)` (`checksum.message`).
    pub checksum: [u8; 32],
    /// Encrypted secret.
    pub cipher: Cipher,
}

/// A parsed, supported EIP-2335 version-4 keystore (see the module invariants).
///
/// Serde: deserializing runs the same strict checks as [`Keystore::from_json`]; serializing
/// writes the standard EIP-2335 JSON (hex without `0x`, `version: 4`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawKeystore", into = "RawKeystore")]
pub struct Keystore {
    /// Encryption modules and ciphertext.
    pub crypto: Crypto,
    /// Optional free text (EIP-2335 "Description"), not necessarily unique.
    pub description: Option<String>,
    /// The public key of the secret (48-byte compressed G1).
    pub pubkey: Pubkey,
    /// EIP-2334 derivation path, or `""` when unknown.
    pub path: String,
    /// Random identifier of the keystore (RFC 4122).
    pub uuid: uuid::Uuid,
}

impl Keystore {
    /// Parses and validates keystore JSON.
    ///
    /// Errors: [`KeystoreError::Json`] for malformed JSON or a missing field, and the
    /// `Unsupported*` / [`KeystoreError::InvalidParam`] variants for anything outside the
    /// supported set (module docs).
    pub fn from_json(json: &str) -> Result<Self, KeystoreError> {
        let raw: RawKeystore =
            serde_json::from_str(json).map_err(|e| KeystoreError::Json(e.to_string()))?;
        Keystore::try_from(raw)
    }

    /// The standard EIP-2335 JSON text of this keystore (pretty-printed).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("keystore JSON serialization cannot fail")
    }

    /// Decrypts the secret with `password` (EIP-2335 decryption, module docs).
    ///
    /// Errors: [`KeystoreError::WrongPassword`] when the checksum does not match.
    /// Cost: one KDF run; with production parameters and optimized crypto crates, about 1 s
    /// for scrypt (256 MiB) and under 0.1 s for PBKDF2 on a CPU with SHA extensions.
    pub fn decrypt(&self, password: &str) -> Result<SecretBytes, KeystoreError> {
        let password = normalize_password(password);
        let dk = derive_key(&self.crypto.kdf, password.as_bytes())?;
        if checksum(&dk, &self.crypto.cipher.message) != self.crypto.checksum {
            return Err(KeystoreError::WrongPassword);
        }
        let mut secret = SecretBytes::new(self.crypto.cipher.message);
        apply_aes_128_ctr(&dk, &self.crypto.cipher.iv, &mut secret.0);
        Ok(secret)
    }

    /// Decrypts the secret and checks that it is a BLS secret key whose public key is this
    /// keystore's `pubkey`.
    ///
    /// Errors: those of [`Keystore::decrypt`], [`KeystoreError::InvalidSecret`] for a zero or
    /// out-of-range scalar, and [`KeystoreError::PubkeyMismatch`].
    pub fn decrypt_secret_key(
        &self,
        password: &str,
    ) -> Result<blst::min_pk::SecretKey, KeystoreError> {
        let secret = self.decrypt(password)?;
        let sk = blst::min_pk::SecretKey::from_bytes(secret.expose())
            .map_err(|_| KeystoreError::InvalidSecret)?;
        let derived = Pubkey(sk.sk_to_pk().to_bytes());
        if derived != self.pubkey {
            return Err(KeystoreError::PubkeyMismatch {
                expected: self.pubkey,
                derived,
            });
        }
        Ok(sk)
    }
}

/// Encrypts a 32-byte BLS secret key into a new standard keystore.
///
/// The salt (32 bytes), the IV (16 bytes) and the version-4 UUID come from `rng`. The result
/// has `path = ""`, an empty `description` and the secret's `pubkey`; it round-trips through
/// JSON and [`Keystore::decrypt`] with the same `password`.
///
/// Errors: [`KeystoreError::InvalidSecret`] when `secret` is not a valid BLS secret key (zero
/// or not below the curve order), [`KeystoreError::InvalidParam`] for bad KDF parameters.
pub fn encrypt<R: RngCore + CryptoRng>(
    secret: &[u8; 32],
    password: &str,
    kdf: KdfParams,
    rng: &mut R,
) -> Result<Keystore, KeystoreError> {
    kdf.validate()?;
    let sk =
        blst::min_pk::SecretKey::from_bytes(secret).map_err(|_| KeystoreError::InvalidSecret)?;
    let pubkey = Pubkey(sk.sk_to_pk().to_bytes());

    let mut salt = vec![0u8; 32];
    rng.fill_bytes(&mut salt);
    let mut iv = [0u8; 16];
    rng.fill_bytes(&mut iv);
    let mut uuid_bytes = [0u8; 16];
    rng.fill_bytes(&mut uuid_bytes);
    let uuid = uuid::Builder::from_random_bytes(uuid_bytes).into_uuid();

    let kdf = Kdf { params: kdf, salt };
    let password = normalize_password(password);
    let dk = derive_key(&kdf, password.as_bytes())?;
    let mut message = *secret;
    apply_aes_128_ctr(&dk, &iv, &mut message);
    let checksum = checksum(&dk, &message);

    Ok(Keystore {
        crypto: Crypto {
            kdf,
            checksum,
            cipher: Cipher { iv, message },
        },
        description: Some(String::new()),
        pubkey,
        path: String::new(),
        uuid,
    })
}

/// The EIP-2335 password encoding: NFKD normalization, then removal of the C0 (`U+0000–U+001F`),
/// `DEL` (`U+007F`) and C1 (`U+0080–U+009F`) control codes. Space is kept. The UTF-8 bytes of
/// the result are the KDF input.
pub fn normalize_password(password: &str) -> Zeroizing<String> {
    Zeroizing::new(
        password
            .nfkd()
            .filter(|c| !matches!(*c as u32, 0x00..=0x1F | 0x7F | 0x80..=0x9F))
            .collect(),
    )
}

fn derive_key(kdf: &Kdf, password: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let mut dk = Zeroizing::new([0u8; 32]);
    match kdf.params {
        KdfParams::Scrypt { n, r, p } => {
            let params = scrypt_params(n, r, p)?;
            scrypt::scrypt(password, &kdf.salt, &params, dk.as_mut_slice())
                .map_err(|_| KeystoreError::InvalidParam("scrypt output length".into()))?;
        }
        KdfParams::Pbkdf2 { c } => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password, &kdf.salt, c, dk.as_mut_slice());
        }
    }
    Ok(dk)
}

fn checksum(dk: &[u8; 32], cipher_message: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&dk[16..32]);
    h.update(cipher_message);
    h.finalize().into()
}

fn apply_aes_128_ctr(dk: &[u8; 32], iv: &[u8; 16], data: &mut [u8]) {
    let key: &[u8; 16] = dk[..16].try_into().expect("16-byte slice");
    let mut cipher = Aes128Ctr::new(key.into(), iv.into());
    cipher.apply_keystream(data);
}

// ---- wire form -------------------------------------------------------------------------

/// One EIP-2335 module as it appears in JSON: `{function, params, message}`, all required.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawModule {
    function: String,
    params: serde_json::Map<String, serde_json::Value>,
    message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawCrypto {
    kdf: RawModule,
    checksum: RawModule,
    cipher: RawModule,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawKeystore {
    crypto: RawCrypto,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    pubkey: String,
    path: String,
    uuid: uuid::Uuid,
    version: u64,
}

#[derive(Deserialize)]
struct RawScryptParams {
    dklen: u32,
    n: u32,
    r: u32,
    p: u32,
    salt: String,
}

#[derive(Deserialize)]
struct RawPbkdf2Params {
    dklen: u32,
    c: u32,
    prf: String,
    salt: String,
}

#[derive(Deserialize)]
struct RawCipherParams {
    iv: String,
}

fn params_as<T: serde::de::DeserializeOwned>(
    module: &str,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<T, KeystoreError> {
    serde_json::from_value(serde_json::Value::Object(params.clone()))
        .map_err(|e| KeystoreError::Json(format!("crypto.{module}.params: {e}")))
}

fn hex_field(field: &str, s: &str) -> Result<Vec<u8>, KeystoreError> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    hex::decode(digits).map_err(|e| KeystoreError::InvalidParam(format!("{field}: {e}")))
}

fn hex_fixed<const N: usize>(field: &str, s: &str) -> Result<[u8; N], KeystoreError> {
    let bytes = hex_field(field, s)?;
    let got = bytes.len();
    bytes
        .try_into()
        .map_err(|_| KeystoreError::InvalidParam(format!("{field}: expected {N} bytes, got {got}")))
}

fn check_dklen(dklen: u32) -> Result<(), KeystoreError> {
    if dklen != DKLEN {
        return Err(KeystoreError::InvalidParam(format!(
            "crypto.kdf.params.dklen must be {DKLEN}, got {dklen}"
        )));
    }
    Ok(())
}

impl TryFrom<RawKeystore> for Keystore {
    type Error = KeystoreError;

    fn try_from(raw: RawKeystore) -> Result<Self, KeystoreError> {
        if raw.version != u64::from(VERSION) {
            return Err(KeystoreError::UnsupportedVersion(raw.version));
        }
        let RawCrypto {
            kdf,
            checksum,
            cipher,
        } = raw.crypto;

        let kdf = match kdf.function.as_str() {
            "scrypt" => {
                let p: RawScryptParams = params_as("kdf", &kdf.params)?;
                check_dklen(p.dklen)?;
                Kdf {
                    params: KdfParams::Scrypt {
                        n: p.n,
                        r: p.r,
                        p: p.p,
                    },
                    salt: hex_field("crypto.kdf.params.salt", &p.salt)?,
                }
            }
            "pbkdf2" => {
                let p: RawPbkdf2Params = params_as("kdf", &kdf.params)?;
                check_dklen(p.dklen)?;
                if p.prf != "hmac-sha256" {
                    return Err(KeystoreError::UnsupportedPrf(p.prf));
                }
                Kdf {
                    params: KdfParams::Pbkdf2 { c: p.c },
                    salt: hex_field("crypto.kdf.params.salt", &p.salt)?,
                }
            }
            other => return Err(KeystoreError::UnsupportedKdf(other.to_string())),
        };
        kdf.params.validate()?;
        if kdf.salt.is_empty() {
            return Err(KeystoreError::InvalidParam(
                "crypto.kdf.params.salt must not be empty".into(),
            ));
        }

        if checksum.function != "sha256" {
            return Err(KeystoreError::UnsupportedChecksum(checksum.function));
        }
        let checksum = hex_fixed::<32>("crypto.checksum.message", &checksum.message)?;

        if cipher.function != "aes-128-ctr" {
            return Err(KeystoreError::UnsupportedCipher(cipher.function));
        }
        let cipher_params: RawCipherParams = params_as("cipher", &cipher.params)?;
        let cipher = Cipher {
            iv: hex_fixed::<16>("crypto.cipher.params.iv", &cipher_params.iv)?,
            message: hex_fixed::<32>("crypto.cipher.message", &cipher.message)?,
        };

        let pubkey = Pubkey(hex_fixed::<48>("pubkey", &raw.pubkey)?);

        Ok(Keystore {
            crypto: Crypto {
                kdf,
                checksum,
                cipher,
            },
            description: raw.description,
            pubkey,
            path: raw.path,
            uuid: raw.uuid,
        })
    }
}

impl From<Keystore> for RawKeystore {
    fn from(ks: Keystore) -> Self {
        let salt = hex::encode(&ks.crypto.kdf.salt);
        let kdf_params = match ks.crypto.kdf.params {
            KdfParams::Scrypt { n, r, p } => serde_json::json!({
                "dklen": DKLEN, "n": n, "r": r, "p": p, "salt": salt,
            }),
            KdfParams::Pbkdf2 { c } => serde_json::json!({
                "dklen": DKLEN, "c": c, "prf": "hmac-sha256", "salt": salt,
            }),
        };
        let kdf_function = match ks.crypto.kdf.params {
            KdfParams::Scrypt { .. } => "scrypt",
            KdfParams::Pbkdf2 { .. } => "pbkdf2",
        };
        let object = |v: serde_json::Value| match v {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("json! object literal"),
        };
        RawKeystore {
            crypto: RawCrypto {
                kdf: RawModule {
                    function: kdf_function.into(),
                    params: object(kdf_params),
                    message: String::new(),
                },
                checksum: RawModule {
                    function: "sha256".into(),
                    params: serde_json::Map::new(),
                    message: hex::encode(ks.crypto.checksum),
                },
                cipher: RawModule {
                    function: "aes-128-ctr".into(),
                    params: object(serde_json::json!({ "iv": hex::encode(ks.crypto.cipher.iv) })),
                    message: hex::encode(ks.crypto.cipher.message),
                },
            },
            description: ks.description,
            pubkey: hex::encode(ks.pubkey.0),
            path: ks.path,
            uuid: ks.uuid,
            version: u64::from(VERSION),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_normalization_strips_c0_c1_and_del_but_keeps_space() {
        let got = normalize_password("\u{0}\u{1f}\u{80}\u{9f}test \n\u{c}\tpass\u{7f}word\n");
        assert_eq!(got.as_str(), "test password");
    }

    #[test]
    fn scrypt_parameters_that_are_not_a_power_of_two_are_refused() {
        assert!(matches!(
            scrypt_params(1000, 8, 1),
            Err(KeystoreError::InvalidParam(_))
        ));
        assert!(matches!(
            scrypt_params(1 << 24, 8, 1),
            Err(KeystoreError::InvalidParam(_))
        ));
        assert!(scrypt_params(1 << 18, 8, 1).is_ok());
    }

    #[test]
    fn secret_bytes_debug_does_not_print_the_secret() {
        let s = SecretBytes::new([0xab; 32]);
        assert!(!format!("{s:?}").contains("ab"));
    }
}
