//! The backup file format, version 1 (see the module docs of `backup`): encoding, and a
//! decoding that refuses a truncated, corrupt, foreign or newer file before it parses the state.

use failover_common::types::Root;
use openraft::LogId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::StateData;
use crate::store::SmSnapshotData;
use crate::NodeId;

use super::{FORMAT_VERSION, MAGIC};

/// The second line of a backup file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// Format version, equal to the one in the first line ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The chain of the backed-up cluster (its configured genesis validators root).
    pub genesis_validators_root: Root,
    /// Last applied log id of the state (`None` for a never-used cluster).
    pub last_applied: Option<LogId<NodeId>>,
    /// When the backup was taken: the serving node's wall clock, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Node that served the backup (the leader, for an online backup).
    pub source_node_id: NodeId,
    /// SHA-256 (hex) of the backed-up cluster's credential: its token in plaintext, its CA
    /// certificate (DER) over TLS ([`super::cluster_credential_sha256`]); a restore refuses
    /// the same token, and with the same CA restores only to a new node id.
    pub source_cluster_token_sha256: String,
    /// Validators with slashing-protection history in the state.
    pub validators: usize,
    /// Length of the state line in bytes, without its `\n`.
    pub state_bytes: u64,
}

/// A decoded, verified backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The header.
    pub header: BackupHeader,
    /// The replicated state at `header.last_applied`.
    pub state: StateData,
}

/// Why a file is not a usable backup. Nothing is restored from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    /// The first line is not `failover-coordinator-backup <version>`.
    #[error("not a coordinator backup file (it does not start with {MAGIC:?})")]
    NotABackup,
    /// Another format version.
    #[error(
        "unsupported backup format version {0:?}; this coordinator reads version {FORMAT_VERSION}"
    )]
    UnsupportedVersion(String),
    /// The file ends before its checksum line.
    #[error("backup is truncated: {0}")]
    Truncated(String),
    /// The checksum line does not match the content.
    #[error("backup is corrupt: SHA-256 of the content is {actual}, the file says {expected}")]
    ChecksumMismatch {
        /// Digest in the file.
        expected: String,
        /// Digest of the content.
        actual: String,
    },
    /// Checksum fine but the content does not decode (written by a broken tool?).
    #[error("backup is malformed: {0}")]
    Malformed(String),
}

/// Encodes `snapshot` (state and `last_applied`) as a backup file of the chain
/// `genesis_validators_root`, served by `source_node_id` at `created_at_ms` (ms since the
/// Unix epoch) in the cluster whose token hashes to `cluster_token_sha256`.
pub fn encode(
    snapshot: &SmSnapshotData,
    genesis_validators_root: Root,
    source_node_id: NodeId,
    cluster_token_sha256: String,
    created_at_ms: u64,
) -> Vec<u8> {
    let state = serde_json::to_vec(&snapshot.data).expect("state serializes");
    let header = BackupHeader {
        format_version: FORMAT_VERSION,
        genesis_validators_root,
        last_applied: snapshot.last_applied,
        created_at_ms,
        source_node_id,
        source_cluster_token_sha256: cluster_token_sha256,
        validators: snapshot.data.validators.len(),
        state_bytes: state.len() as u64,
    };
    let mut out = format!("{MAGIC} {FORMAT_VERSION}\n").into_bytes();
    out.extend(serde_json::to_vec(&header).expect("header serializes"));
    out.push(b'\n');
    out.extend(state);
    out.push(b'\n');
    let digest = hex::encode(Sha256::digest(&out));
    out.extend(format!("sha256 {digest}\n").into_bytes());
    out
}

/// Decodes and verifies a backup file (format in the module docs).
///
/// Errors: [`BackupError`] — not a backup, unsupported version, truncated (no complete
/// checksum line), corrupt (digest mismatch), malformed (decodes badly despite the digest).
pub fn decode(bytes: &[u8]) -> Result<Backup, BackupError> {
    let magic = format!("{MAGIC} ");
    if !bytes.starts_with(magic.as_bytes()) {
        return Err(
            if magic.as_bytes().starts_with(bytes) && !bytes.is_empty() {
                BackupError::Truncated("the file ends inside its first line".into())
            } else {
                BackupError::NotABackup
            },
        );
    }
    let Some(nl) = bytes.iter().position(|b| *b == b'\n') else {
        return Err(BackupError::Truncated(
            "the file ends inside its first line".into(),
        ));
    };
    let version = String::from_utf8_lossy(&bytes[magic.len()..nl]).to_string();
    if version != FORMAT_VERSION.to_string() {
        return Err(BackupError::UnsupportedVersion(version));
    }
    let no_trailer = || {
        BackupError::Truncated(
            "the last line is not the `sha256 <digest>` checksum line; the file was cut short"
                .into(),
        )
    };
    if !bytes.ends_with(b"\n") {
        return Err(no_trailer());
    }
    let body_end = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let trailer = &bytes[body_end..bytes.len() - 1];
    let expected = trailer
        .strip_prefix(b"sha256 ")
        .filter(|d| d.len() == 64 && d.iter().all(u8::is_ascii_hexdigit))
        .ok_or_else(no_trailer)?;
    let expected = String::from_utf8_lossy(expected).to_ascii_lowercase();
    let body = &bytes[..body_end];
    let actual = hex::encode(Sha256::digest(body));
    if actual != expected {
        return Err(BackupError::ChecksumMismatch { expected, actual });
    }
    let mut lines = body[nl + 1..].split(|b| *b == b'\n');
    let (Some(header), Some(state), Some(rest)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(BackupError::Malformed(
            "expected a header line and a state line".into(),
        ));
    };
    if !rest.is_empty() || lines.next().is_some() {
        return Err(BackupError::Malformed(
            "extra lines between the state and the checksum".into(),
        ));
    }
    let header: BackupHeader = serde_json::from_slice(header)
        .map_err(|e| BackupError::Malformed(format!("header: {e}")))?;
    if header.format_version != FORMAT_VERSION {
        return Err(BackupError::UnsupportedVersion(
            header.format_version.to_string(),
        ));
    }
    if header.state_bytes != state.len() as u64 {
        return Err(BackupError::Malformed(format!(
            "the header announces {} state bytes, the file holds {}",
            header.state_bytes,
            state.len()
        )));
    }
    let state: StateData =
        serde_json::from_slice(state).map_err(|e| BackupError::Malformed(format!("state: {e}")))?;
    Ok(Backup { header, state })
}
