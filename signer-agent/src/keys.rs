//! The agent's validator keys: EIP-2335 keystores decrypted at start-up, kept in memory only.
//!
//! Layout: every `NAME.json` in `keystores_dir` is a keystore, unlocked by the password in
//! `passwords_dir/NAME.txt`. Other files are ignored.
//!
//! Invariants:
//! - secret keys never leave memory: they are not written, logged or returned by any API, and
//!   `blst` zeroes them on drop;
//! - a keystore that cannot be parsed or decrypted, a missing password file, a keystore whose
//!   `pubkey` does not match its secret, or two keystores with one pubkey stop the start-up
//!   with an error naming the file: an agent never runs with a silently missing key;
//! - decryption runs on blocking threads, at most one per core, because each scrypt run needs
//!   256 MiB and a full core for about a second.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use blst::min_pk::SecretKey;
use failover_common::keystore::Keystore;
use failover_common::types::Pubkey;
use zeroize::Zeroizing;

/// Result of looking a pubkey up.
pub enum KeyLookup {
    /// The key is decrypted and usable.
    Ready(Arc<SecretKey>),
    /// A keystore for this pubkey exists but is still being decrypted.
    Loading,
    /// No keystore holds this pubkey.
    Unknown,
}

#[derive(Default)]
struct Inner {
    ready: HashMap<Pubkey, Arc<SecretKey>>,
    expected: Vec<Pubkey>,
    complete: bool,
}

/// The in-memory key set, shared by the request handlers.
#[derive(Default)]
pub struct Keys {
    inner: RwLock<Inner>,
}

impl Keys {
    /// An empty, not yet complete key set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks `pubkey` up.
    pub fn get(&self, pubkey: &Pubkey) -> KeyLookup {
        let inner = self.inner.read().expect("keys lock");
        match inner.ready.get(pubkey) {
            Some(sk) => KeyLookup::Ready(sk.clone()),
            None if !inner.complete && inner.expected.contains(pubkey) => KeyLookup::Loading,
            None => KeyLookup::Unknown,
        }
    }

    /// The usable pubkeys, sorted.
    pub fn pubkeys(&self) -> Vec<Pubkey> {
        let inner = self.inner.read().expect("keys lock");
        let mut v: Vec<Pubkey> = inner.ready.keys().copied().collect();
        v.sort();
        v
    }

    /// Number of usable keys.
    pub fn count(&self) -> usize {
        self.inner.read().expect("keys lock").ready.len()
    }

    /// True once every expected key is usable ([`Keys::finish`] was called).
    pub fn is_complete(&self) -> bool {
        self.inner.read().expect("keys lock").complete
    }

    /// Announces the pubkeys being decrypted, so requests for them get "loading" rather
    /// than "unknown key".
    pub fn expect(&self, pubkeys: impl IntoIterator<Item = Pubkey>) {
        self.inner
            .write()
            .expect("keys lock")
            .expected
            .extend(pubkeys);
    }

    /// Adds a usable key and returns its pubkey.
    pub fn insert(&self, sk: SecretKey) -> Pubkey {
        let pk = Pubkey(sk.sk_to_pk().to_bytes());
        self.inner
            .write()
            .expect("keys lock")
            .ready
            .insert(pk, Arc::new(sk));
        pk
    }

    /// Marks loading as complete.
    pub fn finish(&self) {
        let mut inner = self.inner.write().expect("keys lock");
        inner.complete = true;
        inner.expected.clear();
    }
}

/// A parsed keystore file and where its password lives.
pub struct KeystoreFile {
    /// Path of `NAME.json`.
    pub path: PathBuf,
    /// Path of `NAME.txt` in the passwords folder.
    pub password_path: PathBuf,
    /// The parsed keystore.
    pub keystore: Keystore,
}

/// Lists and parses every `*.json` keystore in `keystores_dir` (sorted by name), pairing each
/// with `passwords_dir/NAME.txt`. Cheap: nothing is decrypted.
///
/// Errors: a folder cannot be read, a keystore is invalid, a password file is missing, or two
/// keystores hold the same pubkey; each names the file.
pub fn scan(keystores_dir: &Path, passwords_dir: &Path) -> anyhow::Result<Vec<KeystoreFile>> {
    let entries = std::fs::read_dir(keystores_dir)
        .with_context(|| format!("list keystores folder {}", keystores_dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry =
            entry.with_context(|| format!("list keystores folder {}", keystores_dir.display()))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();

    let mut by_pubkey: BTreeMap<Pubkey, PathBuf> = BTreeMap::new();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("read keystore {}", path.display()))?;
        let keystore = Keystore::from_json(&text)
            .with_context(|| format!("parse keystore {}", path.display()))?;
        let stem = path
            .file_stem()
            .expect("a .json file has a stem")
            .to_os_string();
        let mut password_name = stem;
        password_name.push(".txt");
        let password_path = passwords_dir.join(password_name);
        anyhow::ensure!(
            password_path.is_file(),
            "keystore {} has no password file {}",
            path.display(),
            password_path.display()
        );
        if let Some(other) = by_pubkey.insert(keystore.pubkey, path.clone()) {
            anyhow::bail!(
                "keystores {} and {} hold the same pubkey {}",
                other.display(),
                path.display(),
                keystore.pubkey
            );
        }
        files.push(KeystoreFile {
            path,
            password_path,
            keystore,
        });
    }
    Ok(files)
}

/// Decrypts every file on blocking threads (at most `parallelism` at once) and inserts each
/// key into `keys` as soon as it is ready; then marks `keys` complete.
///
/// Errors: the first file that cannot be decrypted (wrong password, unreadable password file,
/// pubkey mismatch), named; keys decrypted before it stay in `keys`, which is not marked
/// complete.
pub async fn decrypt_all(
    files: Vec<KeystoreFile>,
    keys: Arc<Keys>,
    parallelism: usize,
) -> anyhow::Result<()> {
    keys.expect(files.iter().map(|f| f.keystore.pubkey));
    let permits = Arc::new(tokio::sync::Semaphore::new(parallelism.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for file in files {
        let permit = permits.clone().acquire_owned().await?;
        let keys = keys.clone();
        tasks.spawn_blocking(move || {
            let _permit = permit;
            let password =
                Zeroizing::new(std::fs::read_to_string(&file.password_path).with_context(
                    || format!("read password file {}", file.password_path.display()),
                )?);
            let sk = file
                .keystore
                .decrypt_secret_key(&password)
                .with_context(|| format!("decrypt keystore {}", file.path.display()))?;
            keys.insert(sk);
            anyhow::Ok(())
        });
        // Surface failures early instead of decrypting everything first.
        while let Some(done) = tasks.try_join_next() {
            done.context("keystore decryption task")??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.context("keystore decryption task")??;
    }
    keys.finish();
    Ok(())
}
