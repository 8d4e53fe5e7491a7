//! Secret files (bearer tokens, keystore passwords): written readable by their owner only,
//! and refused when anyone else can read them (STYLE.md 14, after OpenSSH's `StrictModes`).
//!
//! Invariants:
//! - [`read_secret`] never returns the contents of a file that the group or others may read,
//!   write or execute (any bit of `0o077`); the error names the file, its mode and the
//!   `chmod 600` that fixes it, so an operator at 3 AM knows what to type;
//! - the contents come back as [`Zeroizing`], wiped from memory when dropped; errors never
//!   contain them.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

/// Why a secret file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The group or others have some access to the file.
    #[error(
        "{path} holds a secret but its mode is {mode:04o}, so other users can read it; fix it \
         with: chmod 600 {path}"
    )]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is empty (after trimming whitespace).
    #[error("{path} is empty")]
    Empty {
        /// The file.
        path: String,
    },
}

/// Checks that only the owner has access to `path` (no bit of `0o077` set).
///
/// Errors: [`SecretFileError::TooOpen`], or [`SecretFileError::Io`] when it cannot be
/// examined.
pub fn check_private(path: &Path) -> Result<(), SecretFileError> {
    let meta = std::fs::metadata(path).map_err(|source| SecretFileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Reads a secret from `path`: checks its mode ([`check_private`]), reads it and trims
/// surrounding whitespace (a trailing newline from `echo` is not part of a token).
///
/// Errors: [`SecretFileError`]; an empty file is refused.
pub fn read_secret(path: &Path) -> Result<Zeroizing<String>, SecretFileError> {
    check_private(path)?;
    let text =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| SecretFileError::Io {
                path: path.display().to_string(),
                source,
            })?,
        );
    let trimmed = Zeroizing::new(text.trim().to_string());
    if trimmed.is_empty() {
        return Err(SecretFileError::Empty {
            path: path.display().to_string(),
        });
    }
    Ok(trimmed)
}

/// Writes `secret` to `path`, created (or truncated) with mode 0600. An existing file keeps
/// its mode, so it is set to 0600 explicitly as well.
///
/// Errors: the file cannot be created, written or have its mode set.
pub fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_readable_by_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        write_private(&p, "s3cret\n").unwrap();
        assert_eq!(read_secret(&p).unwrap().as_str(), "s3cret");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret(&p).unwrap_err().to_string();
        assert!(err.contains("0644"), "{err}");
        assert!(err.contains(&format!("chmod 600 {}", p.display())), "{err}");
        assert!(!err.contains("s3cret"), "the secret must not appear: {err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_secret(&p).is_err(), "group-readable is refused too");
        write_private(&p, "   ").unwrap();
        assert!(matches!(
            read_secret(&p),
            Err(SecretFileError::Empty { .. })
        ));
    }
}
