//! Validator keys of the lab: the standard interop keys `0..n`, written as EIP-2335 keystores
//! with one password file each.
//!
//! Invariants:
//! - validator `i` is always interop key `i`, so every run has the same public keys;
//! - keystore `validator-i.json` decrypts with the password in `validator-i.txt` to exactly
//!   interop secret key `i` (tests check this);
//! - passwords are random per run and per key, and are written only under the lab directory.

use std::path::Path;

use anyhow::{Context, Result};
use failover_common::interop;
use failover_common::keystore::{self, KdfParams};
use failover_common::types::Pubkey;
use serde::{Deserialize, Serialize};

/// One validator of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    /// Validator index (also the interop key index).
    pub index: u64,
    /// Its BLS public key.
    pub pubkey: Pubkey,
}

/// The key-derivation cost of the lab's keystores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfChoice {
    /// EIP-2335's standard PBKDF2-HMAC-SHA256 cost, `c = 2^18`.
    Pbkdf2Standard,
    /// EIP-2335's standard scrypt cost, `n = 2^18, r = 8, p = 1` (256 MiB per decryption).
    ScryptStandard,
    /// PBKDF2 with `c = 2^10`: for the benchmark and tests, which measure signing, not key
    /// loading. Never for real keys.
    Pbkdf2Cheap,
}

impl KdfChoice {
    /// The keystore KDF parameters of this choice.
    pub fn params(self) -> KdfParams {
        match self {
            KdfChoice::Pbkdf2Standard => KdfParams::PBKDF2,
            KdfChoice::ScryptStandard => KdfParams::SCRYPT,
            KdfChoice::Pbkdf2Cheap => KdfParams::Pbkdf2 { c: 1 << 10 },
        }
    }

    /// Human description for summaries, e.g. `pbkdf2-hmac-sha256, c = 262144 (EIP-2335 standard)`.
    pub fn describe(self) -> String {
        match self.params() {
            KdfParams::Pbkdf2 { c } => format!(
                "pbkdf2-hmac-sha256, c = {c}{}",
                if self == KdfChoice::Pbkdf2Standard {
                    " (EIP-2335 standard cost)"
                } else {
                    " (cheap: for the bench and tests, which measure signing, not key loading; never for real keys)"
                }
            ),
            KdfParams::Scrypt { n, r, p } => {
                format!("scrypt, n = {n}, r = {r}, p = {p} (EIP-2335 standard cost)")
            }
        }
    }
}

/// The validators `0..count` with their interop public keys.
pub fn validators(count: u64) -> Vec<Validator> {
    (0..count)
        .map(|index| Validator {
            index,
            pubkey: interop::pubkey(index),
        })
        .collect()
}

/// File stem of validator `index`'s keystore and password file.
pub fn key_name(index: u64) -> String {
    format!("validator-{index}")
}

/// Writes `keystores_dir/validator-i.json` and `passwords_dir/validator-i.txt` for every
/// validator, encrypting on all cores.
///
/// Errors: a directory or file cannot be written, or encryption failed.
pub fn write_keystores(
    validators: &[Validator],
    kdf: KdfChoice,
    keystores_dir: &Path,
    passwords_dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(keystores_dir)
        .with_context(|| format!("create {}", keystores_dir.display()))?;
    std::fs::create_dir_all(passwords_dir)
        .with_context(|| format!("create {}", passwords_dir.display()))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = validators.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = validators
            .chunks(chunk)
            .map(|part| s.spawn(move || write_some(part, kdf, keystores_dir, passwords_dir)))
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("keystore worker panicked"))
    })
}

fn write_some(
    part: &[Validator],
    kdf: KdfChoice,
    keystores_dir: &Path,
    passwords_dir: &Path,
) -> Result<()> {
    let mut rng = rand::rngs::OsRng;
    for v in part {
        let password = hex::encode(rand::Rng::gen::<[u8; 16]>(&mut rng));
        let secret = interop::secret_key(v.index).to_bytes();
        let ks = keystore::encrypt(&secret, &password, kdf.params(), &mut rng)
            .with_context(|| format!("encrypt keystore of validator {}", v.index))?;
        let name = key_name(v.index);
        let ks_path = keystores_dir.join(format!("{name}.json"));
        std::fs::write(&ks_path, ks.to_json())
            .with_context(|| format!("write {}", ks_path.display()))?;
        let pw_path = passwords_dir.join(format!("{name}.txt"));
        write_secret(&pw_path, &password)?;
    }
    Ok(())
}

/// Copies every file of `from` into `to` (created), for giving each agent its own key files.
///
/// Errors: a directory or file cannot be read or written.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("list {}", from.display()))? {
        let entry = entry.with_context(|| format!("list {}", from.display()))?;
        let dest = to.join(entry.file_name());
        std::fs::copy(entry.path(), &dest)
            .with_context(|| format!("copy {} to {}", entry.path().display(), dest.display()))?;
    }
    Ok(())
}

/// Writes a secret (password, token) readable by its owner only (mode 0600), as
/// `failover_common::secret_file::write_private` does.
///
/// Errors: the file cannot be created or written.
pub fn write_secret(path: &Path, secret: &str) -> Result<()> {
    failover_common::secret_file::write_private(path, secret)
        .with_context(|| format!("write {}", path.display()))
}
