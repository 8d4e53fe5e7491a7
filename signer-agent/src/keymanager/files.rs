//! Durable private files of the keymanager: keystores and passwords written with mode 0600,
//! synced, and the directory synced after every create, replace or remove.
//!
//! Invariant: a file is either absent or complete on disk after any crash: writes go to a
//! temporary name, are synced, then renamed; removals sync the directory.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` durably with mode 0600: a temporary file in the same folder,
/// fsynced, renamed over `path` (when `replace`; otherwise created only if absent), and the
/// folder fsynced, so a crash leaves either no file or the whole file.
pub(super) fn write_private(path: &Path, bytes: &[u8], replace: bool) -> std::io::Result<()> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    if !replace {
        let mut f = open.open(path)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        return sync_parent(path);
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = open.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_parent(path)
}

pub(super) fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// Removes `path` and syncs its folder; a file already gone is fine.
pub(super) fn remove_durably(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
