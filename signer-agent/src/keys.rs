//! The agent's validator keys: EIP-2335 keystores decrypted at start-up or imported through
//! the keymanager API ([`crate::keymanager`]), kept in memory only.
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
//!   256 MiB and a full core for about a second; [`decrypt_parallel`] is the one place that
//!   does it, for the start-up ([`decrypt_all`]) and for keymanager imports alike;
//! - every signature is made under a [`SigningKey`] guard taken when the key is looked up and
//!   held until the signature exists. [`Keys::remove`] takes the key out of the set first, so
//!   no new request can find it, and [`RemovedKey::wait_idle`] then waits for the guards still
//!   held: once it returns true, the key signs nothing more (keymanager API `DELETE`: "guarantee
//!   that key(s) can not produce any more signature").

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use blst::min_pk::SecretKey;
use failover_common::keystore::Keystore;
use failover_common::types::Pubkey;
use tokio::sync::OwnedRwLockReadGuard;
use zeroize::Zeroizing;

/// Result of looking a pubkey up.
pub enum KeyLookup {
    /// The key is decrypted and usable; the guard keeps a concurrent deletion waiting until
    /// it is dropped.
    Ready(SigningKey),
    /// A keystore for this pubkey exists but is still being decrypted.
    Loading,
    /// No keystore holds this pubkey.
    Unknown,
}

/// A usable secret key together with its in-use guard. Hold it from the lookup until the
/// signature exists (and drop it after); it dereferences to the `blst` secret key.
pub struct SigningKey {
    sk: Arc<SecretKey>,
    _in_use: OwnedRwLockReadGuard<()>,
}

impl SigningKey {
    /// A shared handle on the secret key, for the signing pool ([`crate::sign_pool`]). Keep
    /// this `SigningKey` (its in-use guard) alive until the signature has been computed.
    pub fn secret(&self) -> Arc<SecretKey> {
        self.sk.clone()
    }
}

impl Deref for SigningKey {
    type Target = SecretKey;

    fn deref(&self) -> &SecretKey {
        &self.sk
    }
}

/// Where a key's keystore and password files are, for a key that has files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    /// `keystores_dir/NAME.json`.
    pub keystore: PathBuf,
    /// `passwords_dir/NAME.txt`.
    pub password: PathBuf,
}

/// What the agent knows about a loaded key besides its secret (keymanager API `GET`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyInfo {
    /// The EIP-2334 derivation path from the keystore's `path` field; empty when unknown.
    pub derivation_path: String,
    /// Its files, or `None` for a key inserted without files (tests).
    pub files: Option<KeyFiles>,
}

struct Slot {
    sk: Arc<SecretKey>,
    in_use: Arc<tokio::sync::RwLock<()>>,
    info: KeyInfo,
}

/// A key taken out of the set by [`Keys::remove`]: no new request finds it, but requests
/// that looked it up before may still be signing until [`RemovedKey::wait_idle`] says so.
pub struct RemovedKey {
    /// Its public key.
    pub pubkey: Pubkey,
    /// Its derivation path and files.
    pub info: KeyInfo,
    in_use: Arc<tokio::sync::RwLock<()>>,
}

impl RemovedKey {
    /// Waits at most `timeout` until no request holds a [`SigningKey`] of this key. Returns
    /// true when none does, after which the key can produce no signature; false on timeout.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.in_use.write())
            .await
            .is_ok()
    }
}

#[derive(Default)]
struct Inner {
    ready: HashMap<Pubkey, Slot>,
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

    /// Looks `pubkey` up. A `Ready` answer carries the guard that a deletion waits for.
    pub fn get(&self, pubkey: &Pubkey) -> KeyLookup {
        let inner = self.inner.read().expect("keys lock");
        match inner.ready.get(pubkey) {
            // The write side is only taken after the slot left the map (under the map's write
            // lock), so `try_read` cannot fail for a slot still in it.
            Some(slot) => match slot.in_use.clone().try_read_owned() {
                Ok(guard) => KeyLookup::Ready(SigningKey {
                    sk: slot.sk.clone(),
                    _in_use: guard,
                }),
                Err(_) => KeyLookup::Unknown,
            },
            None if !inner.complete && inner.expected.contains(pubkey) => KeyLookup::Loading,
            None => KeyLookup::Unknown,
        }
    }

    /// True when `pubkey` is usable.
    pub fn contains(&self, pubkey: &Pubkey) -> bool {
        self.inner
            .read()
            .expect("keys lock")
            .ready
            .contains_key(pubkey)
    }

    /// The usable pubkeys, sorted.
    pub fn pubkeys(&self) -> Vec<Pubkey> {
        let inner = self.inner.read().expect("keys lock");
        let mut v: Vec<Pubkey> = inner.ready.keys().copied().collect();
        v.sort();
        v
    }

    /// The usable keys with their [`KeyInfo`], sorted by pubkey.
    pub fn list(&self) -> Vec<(Pubkey, KeyInfo)> {
        let inner = self.inner.read().expect("keys lock");
        let mut v: Vec<(Pubkey, KeyInfo)> = inner
            .ready
            .iter()
            .map(|(pk, slot)| (*pk, slot.info.clone()))
            .collect();
        v.sort_by_key(|a| a.0);
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

    /// Adds a usable key without files and returns its pubkey.
    pub fn insert(&self, sk: SecretKey) -> Pubkey {
        self.insert_with(sk, KeyInfo::default())
    }

    /// Adds a usable key with its derivation path and files and returns its pubkey. A key
    /// already present is replaced.
    pub fn insert_with(&self, sk: SecretKey, info: KeyInfo) -> Pubkey {
        let pk = Pubkey(sk.sk_to_pk().to_bytes());
        let slot = Slot {
            sk: Arc::new(sk),
            in_use: Arc::new(tokio::sync::RwLock::new(())),
            info,
        };
        self.inner
            .write()
            .expect("keys lock")
            .ready
            .insert(pk, slot);
        pk
    }

    /// Takes `pubkey` out of the set: from now on lookups answer `Unknown`. Returns `None`
    /// when it was not usable. Wait with [`RemovedKey::wait_idle`] for the requests that
    /// already hold it.
    pub fn remove(&self, pubkey: &Pubkey) -> Option<RemovedKey> {
        let slot = self
            .inner
            .write()
            .expect("keys lock")
            .ready
            .remove(pubkey)?;
        Some(RemovedKey {
            pubkey: *pubkey,
            info: slot.info,
            in_use: slot.in_use,
        })
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

/// One keystore to decrypt on a blocking thread by [`decrypt_parallel`].
pub trait DecryptJob: Send + 'static {
    /// Decrypts the secret key (one KDF run: about a second and 256 MiB for production
    /// scrypt) and checks it against the keystore's `pubkey` (EIP-2335).
    ///
    /// Errors: the password cannot be read (or other users may read it: the message gives
    /// the `chmod`), is wrong, or the secret does not match the `pubkey`; the message names
    /// the keystore when it has a file.
    fn decrypt(&self) -> anyhow::Result<SecretKey>;
}

impl DecryptJob for KeystoreFile {
    fn decrypt(&self) -> anyhow::Result<SecretKey> {
        failover_common::secret_file::check_private(&self.password_path)?;
        let password = Zeroizing::new(
            std::fs::read_to_string(&self.password_path)
                .with_context(|| format!("read password file {}", self.password_path.display()))?,
        );
        self.keystore
            .decrypt_secret_key(&password)
            .with_context(|| format!("decrypt keystore {}", self.path.display()))
    }
}

/// A keystore with its password in memory (keymanager API `POST`: `passwords[i]` unlocks
/// `keystores[i]`). The password is zeroed on drop.
pub struct KeystoreWithPassword {
    /// The parsed keystore.
    pub keystore: Keystore,
    /// Its password, as given (EIP-2335 normalization happens when decrypting).
    pub password: Zeroizing<String>,
}

impl DecryptJob for KeystoreWithPassword {
    fn decrypt(&self) -> anyhow::Result<SecretKey> {
        Ok(self.keystore.decrypt_secret_key(&self.password)?)
    }
}

/// Decrypts every job on blocking threads, at most `parallelism` at once, and hands each
/// result to `on_result(index, job, result)` on the calling task as soon as it is ready (in
/// completion order; `index` is the job's position in `jobs`). An `Err` from `on_result`
/// stops the run: jobs not yet started are dropped and that error is returned.
///
/// Errors: the first error of `on_result`, or a decryption task that panicked.
pub async fn decrypt_parallel<J, F>(
    jobs: Vec<J>,
    parallelism: usize,
    mut on_result: F,
) -> anyhow::Result<()>
where
    J: DecryptJob,
    F: FnMut(usize, J, anyhow::Result<SecretKey>) -> anyhow::Result<()>,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(parallelism.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, job) in jobs.into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await?;
        tasks.spawn_blocking(move || {
            let _permit = permit;
            let result = job.decrypt();
            (index, job, result)
        });
        // Hand results over (and surface failures) while the rest is still running.
        while let Some(done) = tasks.try_join_next() {
            let (index, job, result) = done.context("keystore decryption task")?;
            on_result(index, job, result)?;
        }
    }
    while let Some(done) = tasks.join_next().await {
        let (index, job, result) = done.context("keystore decryption task")?;
        on_result(index, job, result)?;
    }
    Ok(())
}

/// Progress log of a long decryption run: an INFO line at every 10 % step and at least every
/// [`Progress::EVERY`], with `loaded/total`, the percentage and the rate in keys per second.
pub struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    last_log: Instant,
    last_decile: usize,
}

impl Progress {
    /// Longest silence between two progress lines.
    pub const EVERY: Duration = Duration::from_secs(5);

    /// Starts counting towards `total` keys.
    pub fn new(total: usize) -> Self {
        let now = Instant::now();
        Self {
            total,
            done: 0,
            started: now,
            last_log: now,
            last_decile: 0,
        }
    }

    /// Counts one more key and logs when a 10 % step was crossed or [`Progress::EVERY`]
    /// passed since the last line.
    pub fn advance(&mut self) {
        self.done += 1;
        let decile = self.done * 10 / self.total.max(1);
        let now = Instant::now();
        if decile > self.last_decile || now - self.last_log >= Self::EVERY {
            self.last_decile = decile;
            self.last_log = now;
            let secs = (now - self.started).as_secs_f64();
            tracing::info!(
                loaded = self.done,
                total = self.total,
                percent = (self.done * 100 / self.total.max(1)) as u64,
                keys_per_second = format_args!("{:.2}", self.done as f64 / secs.max(1e-9)),
                elapsed_s = format_args!("{secs:.1}"),
                "decrypting keystores: {}/{}",
                self.done,
                self.total,
            );
        }
    }
}

/// Decrypts every file with [`decrypt_parallel`] and inserts each key into `keys` (with its
/// derivation path and files) as soon as it is ready, logging [`Progress`]; then marks
/// `keys` complete.
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
    let mut progress = Progress::new(files.len());
    decrypt_parallel(files, parallelism, |_, file, result| {
        let sk = result?;
        keys.insert_with(
            sk,
            KeyInfo {
                derivation_path: file.keystore.path.clone(),
                files: Some(KeyFiles {
                    keystore: file.path,
                    password: file.password_path,
                }),
            },
        );
        progress.advance();
        Ok(())
    })
    .await?;
    keys.finish();
    Ok(())
}
