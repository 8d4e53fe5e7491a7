//! Backup files on disk, and the offline backup of a stopped node's data directory.
//!
//! Invariant: a backup file is written whole (temporary name, synced, renamed) and never
//! replaces an existing file unless asked.

use std::path::Path;

use anyhow::Context;

use sha2::Digest;

use crate::config::{token_hash, Config};
use failover_common::chain_time::now_ms;

use super::format::{decode, encode, Backup};

/// Reads and verifies the backup file at `path`.
///
/// Errors: unreadable file, or a [`super::BackupError`] naming the file.
pub fn read_file(path: &Path) -> anyhow::Result<Backup> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    decode(&bytes).with_context(|| format!("refusing {}", path.display()))
}

/// Writes `bytes` to `path` durably: a temporary file in the same directory, fsync, rename,
/// fsync of the directory. An existing `path` is refused unless `overwrite`.
///
/// Errors: `path` exists (without `overwrite`), or I/O errors.
pub fn write_file(path: &Path, bytes: &[u8], overwrite: bool) -> anyhow::Result<()> {
    use std::io::Write;
    anyhow::ensure!(
        overwrite || !path.exists(),
        "{} exists; refusing to overwrite a backup (pass --force)",
        path.display()
    );
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("backup"),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("sync {}", dir.display()))?;
    Ok(())
}

/// SHA-256 (hex) of the credential that admits a node to the cluster configured by
/// `config`: the cluster token in plaintext, the first CA certificate (DER) of `[tls]`
/// `ca_file` over TLS. Recorded in a backup's header; a restore compares it.
///
/// Errors: the token or CA file cannot be read.
pub fn cluster_credential_sha256(config: &Config) -> anyhow::Result<String> {
    match (&config.tls, &config.cluster_token_file) {
        (Some(tls), _) => {
            let certs = failover_common::tls::read_certs(&tls.ca_file)?;
            Ok(hex::encode(sha2::Sha256::digest(&certs[0])))
        }
        (None, Some(file)) => Ok(token_hash(
            &failover_common::secret_file::read_secret(file).context("read the cluster token")?,
        )),
        (None, None) => anyhow::bail!("the config has neither [tls] nor cluster_token_file"),
    }
}

/// An offline backup of the node configured by `config`: its data directory opened
/// read-only, encoded with [`encode`]. The state is that node's applied state.
///
/// Errors: no database in `data_dir`, unreadable cluster token, RocksDB errors.
pub fn offline_backup(config: &Config) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        config.data_dir.join("CURRENT").exists(),
        "no coordinator database in {}",
        config.data_dir.display()
    );
    let credential = cluster_credential_sha256(config)?;
    let db = crate::store::open_db_read_only(&config.data_dir)
        .with_context(|| format!("open {} read-only", config.data_dir.display()))?;
    let sm = crate::store::StateMachineStore::load(db).context("load the state machine")?;
    let snapshot = sm.shared().read().expect("state lock").clone();
    Ok(encode(
        &snapshot,
        config.chain.genesis_validators_root,
        config.node_id,
        credential,
        now_ms(),
    ))
}
