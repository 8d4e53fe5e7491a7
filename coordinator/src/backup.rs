//! Backup of a coordinator cluster's replicated state, and a safe restore of it into a NEW
//! single-node cluster.
//!
//! # Taking a backup
//!
//! - **Online** (the normal case): `GET /v1/backup` on any node, with an operator token
//!   (`coordinator backup --url URL --out FILE`). The read is linearizable like the EIP-3076
//!   export: the leader confirms its leadership with a quorum and applies up to the read index
//!   before reading; a follower forwards the request once to the leader. The state machine and
//!   its `last_applied` are read under one lock, so the file is one consistent committed state
//!   at exactly `last_applied`. Signing never pauses.
//! - **Offline**: `coordinator backup --config FILE --out FILE` opens a node's data directory
//!   read-only (no lock, no write) and writes that node's applied state, which on a follower
//!   may lag the leader. Meant for a stopped node.
//!
//! # File format (version 1)
//!
//! Four `\n`-terminated lines, UTF-8:
//!
//! ```text
//! failover-coordinator-backup 1
//! {"format_version":1,"genesis_validators_root":"0x…","last_applied":{…},…}   (BackupHeader)
//! {"authority":{…},"validators":{…},…}                                          (StateData)
//! sha256 <64 lowercase hex digits>
//! ```
//!
//! The last line is the SHA-256 of every byte before it (`head -n 3 FILE | sha256sum`). A file
//! without that line is reported as truncated, a file whose digest differs as corrupt, another
//! first line as not a backup or as an unsupported version; nothing is restored from it. The
//! header carries the format version, the genesis validators root, the last applied log id,
//! when and where the backup was taken, the SHA-256 of the source cluster's token and the
//! length of the state line.
//!
//! # Restoring (`coordinator restore --backup FILE --config FILE`)
//!
//! Into a fresh node only: the configured data directory must not exist or be empty. The
//! restored state differs from the backup in exactly these ways ([`restored_state`]):
//!
//! 1. **Fenced.** `authority.holder = None` (the token value is kept) and every open handover
//!    is aborted. The only way back to signing is a new handover: finality, approvals, a new
//!    grant.
//! 2. **Restore floor.** A floor epoch `F` ([`choose_floor`]) becomes a low watermark of every
//!    validator (`low_slot = last slot of F`, `low_source_epoch = low_target_epoch = F`,
//!    records at or below it dropped: `ValidatorHistory::raise_floor`) and a cluster-wide floor
//!    for validators first seen later (`StateData::restore`). Every handover's
//!    `required_epoch` is at least `F`.
//! 3. **New log position.** The state becomes a snapshot at log index
//!    `last_applied + RESTORE_INDEX_GAP` of a new single-node cluster (below).
//! 4. An audit entry `cluster.restore` records the backup, the floor and where it came from.
//!
//! ## Why the floor makes an old backup safe
//!
//! The hazard: the old holder may have signed messages after the backup was taken, and they
//! are not in it. Assume, as the procedure requires, that the old cluster is stopped before
//! the restore, and that an agent signs only for the current wall-clock epoch or earlier (a
//! validator client attests for the current epoch and proposes in the current slot). Then every
//! message the old agents ever signed has an epoch `≤ H`, the wall-clock epoch at restore
//! time, and every message recorded in the backup has an epoch `≤ R`, its highest recorded
//! epoch. The floor is chosen with `F ≥ max(H, R)`. Take any old attestation `(s, t)` and any
//! attestation `(s', t')` the restored cluster accepts. The old one has `s ≤ t ≤ F`; the new
//! one passed the watermarks: `t' > F` and `s' ≥ F`.
//!
//! - **No double vote:** `t' > F ≥ t`, so `t' ≠ t`.
//! - **New does not surround old** (would need `s' < s` and `t' > t`): `s' ≥ F ≥ t ≥ s`.
//! - **Old does not surround new** (would need `s < s'` and `t > t'`): `t' > F ≥ t`.
//! - **No double proposal:** a new block has `slot > (F + 1) × SLOTS_PER_EPOCH − 1`, i.e. an
//!   epoch `> F`, while every old block is in an epoch `≤ F`.
//!
//! This holds for validators missing from the backup too (keys added after it), through the
//! cluster-wide floor. It needs no knowledge of what was signed after the backup, only the
//! bound `H`. The floor costs liveness, not safety: with the default margin of one epoch,
//! attestations resume once the justified epoch reaches `F` (about two epochs), and the first
//! handover additionally waits for finality of `F` (I5: everything the old holder could have
//! signed is final before the new holder signs).
//!
//! The floor epoch is `--floor-epoch E` or, without it, `H + margin` (`--floor-margin-epochs`,
//! default [`DEFAULT_FLOOR_MARGIN_EPOCHS`], for clock skew at an epoch boundary), where `H` is
//! the highest wall-clock epoch any configured beacon node on this chain reports
//! (`head_slot + sync_distance`, or the slot computed from `genesis_time` and
//! `SECONDS_PER_SLOT` when the node serves its spec). An explicit `E` below `H` is refused.
//! With neither an `E` nor a beacon node that answers, the restore is refused. The floor is
//! never below `R`.
//!
//! Limits of the argument (the runbook states them): a message an old agent signed for a
//! future epoch (a client with a wrong clock) beyond `F` is not covered; pass a larger
//! `--floor-epoch` when that is possible. An old agent that can still reach a live old
//! cluster can still sign; stop the old cluster first.
//!
//! ## Why a restore creates a new cluster
//!
//! A backup is an old committed state, not a Raft member's log and vote. Restoring it into a
//! node that rejoins the old cluster would present a rolled-back log and a forgotten vote:
//! the node could vote twice in a term, or be elected with a log missing committed entries,
//! and Raft's guarantees (I6) would be gone. So a restore never resumes the old cluster:
//!
//! - the store is seeded as if the node had installed a snapshot at index
//!   `N = last_applied + RESTORE_INDEX_GAP` whose membership is this node alone, with a vote for
//!   itself in term 1 (`store::seed_snapshot`); it elects itself and serves as a one-node
//!   cluster, and more nodes join it with membership changes (they receive the snapshot first,
//!   since the log begins after it);
//! - the config's cluster token must differ from the backed-up cluster's (the header carries
//!   its SHA-256), so no node of the old cluster can ever exchange Raft RPC with the new one;
//! - the index gap keeps fencing tokens and applied indexes above anything the old cluster
//!   reached after the backup (I1 across the restore, and running agents, which ignore views
//!   older than one they saw, accept the new cluster's views without a restart).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use failover_common::beacon::BeaconClient;
use failover_common::types::Root;
use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, StoredMembership, Vote};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{token_hash, Config};
use crate::slashing::RestoreFloor;
use crate::state::{RestoreInfo, StateData};
use crate::store::SmSnapshotData;
use crate::NodeId;
use failover_protocol::{AuditEntry, HandoverState, TimelineEvent};

/// First word of a backup file.
pub const MAGIC: &str = "failover-coordinator-backup";
/// The backup format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Media type of `GET /v1/backup`.
pub const CONTENT_TYPE: &str = "application/vnd.failover.backup";
/// Log indexes skipped by a restore: the restored cluster's log begins after
/// `last_applied + RESTORE_INDEX_GAP`, above any index the old cluster can have reached after
/// the backup (10⁹ entries is centuries of group-committed batches).
pub const RESTORE_INDEX_GAP: u64 = 1_000_000_000;
/// Epochs added to the chain's wall-clock epoch when the floor comes from beacon nodes.
pub const DEFAULT_FLOOR_MARGIN_EPOCHS: u64 = 1;

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
    /// SHA-256 (hex) of the backed-up cluster's token; a restore refuses the same token.
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

/// Reads and verifies the backup file at `path`.
///
/// Errors: unreadable file, or a [`BackupError`] naming the file.
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

use failover_common::chain_time::now_ms;

fn read_cluster_token(config: &Config) -> anyhow::Result<String> {
    Ok(
        failover_common::secret_file::read_secret(&config.cluster_token_file)
            .context("read the cluster token")?
            .to_string(),
    )
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
    let token = read_cluster_token(config)?;
    let db = crate::store::open_db_read_only(&config.data_dir)
        .with_context(|| format!("open {} read-only", config.data_dir.display()))?;
    let sm = crate::store::StateMachineStore::load(db).context("load the state machine")?;
    let snapshot = sm.shared().read().expect("state lock").clone();
    Ok(encode(
        &snapshot,
        config.chain.genesis_validators_root,
        config.node_id,
        token_hash(&token),
        now_ms(),
    ))
}

/// The chain's current position as the configured beacon nodes report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Highest wall-clock slot reported (slots).
    pub slot: u64,
    /// `slot / SLOTS_PER_EPOCH` (epochs).
    pub epoch: u64,
    /// Beacon nodes that answered, with the slot each reported.
    pub nodes: Vec<(String, u64)>,
}

/// Asks every configured beacon node (bounded by `beacon.timeout_ms` each, concurrently) for
/// the chain's wall-clock slot: `head_slot + sync_distance` from `/eth/v1/node/syncing`, or the
/// slot from `genesis_time` and the node's `SECONDS_PER_SLOT` and this machine's clock when
/// larger. Nodes on another chain (genesis validators root) are ignored. Taking the maximum
/// is conservative: a higher floor only delays signing.
///
/// Errors: no beacon URL configured, or no node on this chain answered (each node's reason).
pub async fn observe_chain_head(config: &Config) -> Result<ChainHead, String> {
    if config.beacon.urls.is_empty() {
        return Err("no beacon nodes are configured ([beacon] urls)".into());
    }
    let gvr = config.chain.genesis_validators_root;
    let spe = config.chain.slots_per_epoch.max(1);
    let client = BeaconClient::new(
        config.beacon.urls.clone(),
        Duration::from_millis(config.beacon.timeout_ms),
        gvr,
    );
    let asks = config.beacon.urls.iter().map(|url| {
        let client = client.clone();
        async move {
            let view = crate::chain_clock::observe_node(&client, url).await?;
            // The head is required: a node that cannot say how far it is does not count.
            view.head.clone()?;
            let slot = view.slot_at(now_ms()).unwrap_or(0);
            Ok::<_, String>((url.clone(), slot))
        }
    });
    let mut nodes = Vec::new();
    let mut errors = Vec::new();
    for r in futures::future::join_all(asks).await {
        match r {
            Ok(n) => nodes.push(n),
            Err(e) => errors.push(e),
        }
    }
    let Some(slot) = nodes.iter().map(|(_, s)| *s).max() else {
        return Err(format!(
            "no beacon node on this chain answered: {}",
            errors.join("; ")
        ));
    };
    Ok(ChainHead {
        slot,
        epoch: slot / spe,
        nodes,
    })
}

/// The highest epoch anything in `state` refers to: every validator's records and
/// watermarks, every agent's largest recorded slot and target, the agreed finality and an
/// earlier restore floor (epochs; 0 for an empty state).
pub fn max_recorded_epoch(state: &StateData, slots_per_epoch: u64) -> u64 {
    let validators = state
        .validators
        .values()
        .filter_map(|h| h.max_epoch(slots_per_epoch))
        .max()
        .map(|e| e.0);
    let agents = state
        .agents
        .values()
        .map(|a| a.max_epoch(slots_per_epoch))
        .max();
    [
        validators,
        agents,
        state.finality.as_ref().map(|f| f.checkpoint.epoch),
        state.restore_floor().map(|f| f.epoch.0),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0)
}

/// Chooses the restore floor epoch (module docs) from an operator's `--floor-epoch`
/// (`given`), the chain head the beacon nodes reported (`head`), `margin_epochs` and the
/// backup's [`max_recorded_epoch`] (`recorded`). Returns the floor and a sentence saying
/// where it came from (for the audit entry).
///
/// Errors: `given` is below `head.epoch` (unsafe), or there is neither a `given` floor nor a
/// head.
pub fn choose_floor(
    given: Option<u64>,
    head: &Result<ChainHead, String>,
    margin_epochs: u64,
    recorded: u64,
    slots_per_epoch: u64,
) -> Result<(RestoreFloor, String), String> {
    let (epoch, mut source) = match (given, head) {
        (Some(e), Ok(h)) if e < h.epoch => {
            return Err(format!(
                "--floor-epoch {e} is below the chain's current epoch {} (beacon nodes: {}); \
                 a floor below the head would let new signatures conflict with messages the \
                 old agents signed after the backup. Pass --floor-epoch {} or more",
                h.epoch,
                h.nodes
                    .iter()
                    .map(|(u, s)| format!("{u} at slot {s}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                h.epoch
            ))
        }
        (Some(e), Ok(h)) => (
            e,
            format!(
                "--floor-epoch {e} (beacon wall-clock epoch {}, slot {})",
                h.epoch, h.slot
            ),
        ),
        (Some(e), Err(why)) => (
            e,
            format!("--floor-epoch {e} (beacon nodes not consulted: {why})"),
        ),
        (None, Ok(h)) => (
            h.epoch.saturating_add(margin_epochs),
            format!(
                "beacon wall-clock epoch {} (slot {}) + margin {margin_epochs}",
                h.epoch, h.slot
            ),
        ),
        (None, Err(why)) => {
            return Err(format!(
                "cannot choose a restore floor: no --floor-epoch given and {why}. Pass \
                 --floor-epoch E with E at or above the chain's current epoch"
            ))
        }
    };
    let epoch = if recorded > epoch {
        source.push_str(&format!(
            "; raised to the backup's highest recorded epoch {recorded}"
        ));
        recorded
    } else {
        epoch
    };
    Ok((RestoreFloor::at_epoch(epoch, slots_per_epoch), source))
}

/// Who ran a restore and when, for the audit entry.
#[derive(Debug, Clone)]
pub struct RestoreStamp {
    /// Operator name recorded in the audit trail.
    pub operator: String,
    /// Wall clock of the restoring machine (ms since the Unix epoch).
    pub at_ms: u64,
}

/// The state a restored node starts from (module docs, steps 1–4): `backup`'s state fenced,
/// its open handovers aborted, `floor` applied to every validator and recorded cluster-wide,
/// an audit entry appended, as a snapshot at index `last_applied + RESTORE_INDEX_GAP` of a
/// one-node membership (`node_id` at `node_url`). Pure.
pub fn restored_state(
    backup: &Backup,
    floor: RestoreFloor,
    floor_source: String,
    node_id: NodeId,
    node_url: &str,
    stamp: &RestoreStamp,
) -> SmSnapshotData {
    let backup_index = backup.header.last_applied.map(|l| l.index);
    let index = backup_index.unwrap_or(0).saturating_add(RESTORE_INDEX_GAP);
    let mut data = backup.state.clone();
    let old_holder = data.authority.holder.take();
    let mut aborted = Vec::new();
    for h in data.handovers.values_mut().filter(|h| h.state.is_open()) {
        h.state = HandoverState::Aborted;
        h.timeline.push(TimelineEvent {
            event: failover_protocol::HandoverEvent::Aborted,
            log_index: index,
            at_ms: stamp.at_ms,
        });
        aborted.push(h.id);
    }
    for h in data.validators.values_mut() {
        h.raise_floor(floor);
    }
    data.restore = Some(RestoreInfo {
        floor,
        floor_source: floor_source.clone(),
        backup_last_applied_index: backup_index,
        backup_source_node: backup.header.source_node_id,
        backup_created_at_ms: backup.header.created_at_ms,
        log_index: index,
        at_ms: stamp.at_ms,
    });
    data.audit.push(AuditEntry {
        log_index: index,
        at_ms: stamp.at_ms,
        operator: stamp.operator.clone(),
        action: failover_protocol::AuditAction::ClusterRestore,
        handover: None,
        detail: format!(
            "restored from a backup of node {} at log index {} taken at {} ms; new single-node \
             cluster (node {node_id}); authority fenced (holder was {}); open handovers aborted: \
             {aborted:?}; restore floor epoch {} (slot {}): {floor_source}",
            backup.header.source_node_id,
            backup_index.map_or("none".into(), |i| i.to_string()),
            backup.header.created_at_ms,
            old_holder.as_deref().unwrap_or("nobody"),
            floor.epoch,
            floor.slot,
        ),
        outcome: "completed".into(),
    });
    let log_id = LogId::new(CommittedLeaderId::new(1, node_id), index);
    let membership = Membership::new(
        vec![BTreeSet::from([node_id])],
        BTreeMap::from([(
            node_id,
            BasicNode {
                addr: node_url.to_string(),
            },
        )]),
    );
    SmSnapshotData {
        last_applied: Some(log_id),
        membership: StoredMembership::new(Some(log_id), membership),
        data,
    }
}

/// Options of [`restore`].
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// `--floor-epoch`: the floor epoch, instead of the beacon nodes' head + margin.
    pub floor_epoch: Option<u64>,
    /// `--floor-margin-epochs`: added to the beacon wall-clock epoch.
    pub floor_margin_epochs: u64,
    /// Operator name for the audit entry.
    pub operator: String,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Data directory seeded.
    pub data_dir: std::path::PathBuf,
    /// This node's id; the only member of the new cluster.
    pub node_id: NodeId,
    /// The restore floor.
    pub floor: RestoreFloor,
    /// Where the floor came from.
    pub floor_source: String,
    /// Last applied log index of the backup.
    pub backup_last_applied_index: Option<u64>,
    /// Index of the seeded snapshot; the new log begins after it.
    pub log_index: u64,
    /// Validators with history.
    pub validators: usize,
    /// Handovers that were open in the backup and are now aborted.
    pub aborted_handovers: Vec<u64>,
}

/// Restores `backup` into the fresh node configured by `config` (module docs): checks the
/// chain, the empty data directory and a new cluster token, chooses the floor (asking the
/// beacon nodes), and seeds the store. Start the node afterwards with `coordinator run`.
///
/// Errors (nothing is written): another genesis validators root, a non-empty data directory,
/// the backed-up cluster's token, no usable floor ([`choose_floor`]), or I/O and RocksDB
/// errors (a data directory this call created is removed again).
pub async fn restore(
    config: &Config,
    backup: &Backup,
    opts: &RestoreOptions,
) -> anyhow::Result<RestoreReport> {
    anyhow::ensure!(
        backup.header.genesis_validators_root == config.chain.genesis_validators_root,
        "the backup is of chain {} but this node is configured for {}; refusing to mix chains",
        backup.header.genesis_validators_root,
        config.chain.genesis_validators_root
    );
    let dir = &config.data_dir;
    let existed = dir.exists();
    if existed {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("{} is not a readable directory", dir.display()))?;
        anyhow::ensure!(
            entries.next().is_none(),
            "refusing to restore into {}: it is not empty. A restore creates a new cluster on a \
             fresh node; restoring over a node's data would roll back its Raft log and vote. \
             Use an empty directory",
            dir.display()
        );
    }
    let token = read_cluster_token(config)?;
    anyhow::ensure!(
        token_hash(&token) != backup.header.source_cluster_token_sha256,
        "the config's cluster token ({}) is the backed-up cluster's: the restored node would \
         accept Raft RPC from nodes of the old cluster. Give the new cluster a new token \
         (coordinator gen-token)",
        config.cluster_token_file.display()
    );
    let spe = config.chain.slots_per_epoch;
    let head = if opts.floor_epoch.is_some() && config.beacon.urls.is_empty() {
        Err("no beacon nodes are configured".to_string())
    } else {
        observe_chain_head(config).await
    };
    let (floor, floor_source) = choose_floor(
        opts.floor_epoch,
        &head,
        opts.floor_margin_epochs,
        max_recorded_epoch(&backup.state, spe),
        spe,
    )
    .map_err(anyhow::Error::msg)?;
    let stamp = RestoreStamp {
        operator: opts.operator.clone(),
        at_ms: now_ms(),
    };
    let snapshot = restored_state(
        backup,
        floor,
        floor_source.clone(),
        config.node_id,
        &config.me().url,
        &stamp,
    );
    let seeded = (|| -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let db = crate::store::open_db(dir).context("create the RocksDB store")?;
        crate::store::seed_snapshot(db, &snapshot, Vote::new(1, config.node_id))
    })();
    if let Err(e) = seeded {
        // Leave no half-made store behind: it would make the directory non-empty.
        let cleanup = if existed {
            std::fs::read_dir(dir).and_then(|es| {
                es.flatten().try_for_each(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        std::fs::remove_dir_all(p)
                    } else {
                        std::fs::remove_file(p)
                    }
                })
            })
        } else {
            std::fs::remove_dir_all(dir)
        };
        if let Err(c) = cleanup {
            tracing::error!(dir = %dir.display(), error = %c, "could not clean up after a failed restore");
        }
        return Err(e);
    }
    Ok(RestoreReport {
        data_dir: dir.clone(),
        node_id: config.node_id,
        floor,
        floor_source,
        backup_last_applied_index: backup.header.last_applied.map(|l| l.index),
        log_index: snapshot.last_applied.map_or(0, |l| l.index),
        validators: snapshot.data.validators.len(),
        aborted_handovers: backup
            .state
            .handovers
            .values()
            .filter(|h| h.state.is_open())
            .map(|h| h.id)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slashing::{Epoch, ValidatorHistory};
    use failover_common::types::Pubkey;

    fn sample() -> SmSnapshotData {
        let mut data = StateData::default();
        let mut h = ValidatorHistory::default();
        h.check_and_insert_attestation(3, 4, Root([1; 32]));
        h.check_and_insert_block(130, Root([2; 32]));
        data.validators.insert(Pubkey([7; 48]), h);
        data.authority.holder = Some("agent-a".into());
        data.authority.token = 9;
        SmSnapshotData {
            last_applied: Some(LogId::new(CommittedLeaderId::new(3, 1), 42)),
            membership: StoredMembership::default(),
            data,
        }
    }

    #[test]
    fn round_trips_and_refuses_truncated_or_corrupt_files() {
        let s = sample();
        let bytes = encode(&s, Root([5; 32]), 1, token_hash("t"), 1000);
        let b = decode(&bytes).unwrap();
        assert_eq!(b.state, s.data);
        assert_eq!(b.header.last_applied, s.last_applied);
        assert_eq!(b.header.genesis_validators_root, Root([5; 32]));
        let no_trailer = bytes.len() - 72;
        for cut in [
            1,
            10,
            40,
            bytes.len() / 2,
            no_trailer,
            bytes.len() - 70,
            bytes.len() - 1,
        ] {
            let e = decode(&bytes[..cut]).unwrap_err();
            assert!(matches!(e, BackupError::Truncated(_)), "cut at {cut}: {e}");
        }
        let mut bad = bytes.clone();
        let i = bad.len() / 2;
        bad[i] ^= 0x01;
        assert!(matches!(
            decode(&bad).unwrap_err(),
            BackupError::ChecksumMismatch { .. }
        ));
        assert_eq!(
            decode(b"{\"json\": 1}").unwrap_err(),
            BackupError::NotABackup
        );
        let v2 = String::from_utf8(bytes.clone()).unwrap().replacen(
            &format!("{MAGIC} 1"),
            &format!("{MAGIC} 2"),
            1,
        );
        assert!(matches!(
            decode(v2.as_bytes()).unwrap_err(),
            BackupError::UnsupportedVersion(_)
        ));
    }

    #[test]
    fn the_floor_comes_from_the_head_or_the_operator_and_never_below_either() {
        let head = Ok(ChainHead {
            slot: 1000,
            epoch: 31,
            nodes: vec![("b".into(), 1000)],
        });
        let (f, _) = choose_floor(None, &head, 1, 5, 32).unwrap();
        assert_eq!(f, RestoreFloor::at_epoch(32, 32));
        assert!(choose_floor(Some(30), &head, 1, 5, 32).is_err());
        assert_eq!(
            choose_floor(Some(40), &head, 1, 5, 32).unwrap().0.epoch,
            Epoch(40)
        );
        let none: Result<ChainHead, String> = Err("down".into());
        assert!(choose_floor(None, &none, 1, 5, 32).is_err());
        let (f, why) = choose_floor(Some(3), &none, 1, 5, 32).unwrap();
        assert_eq!(f.epoch, Epoch(5), "{why}");
    }

    #[test]
    fn the_restored_state_is_fenced_floored_and_a_new_one_node_cluster() {
        let s = sample();
        let b = decode(&encode(&s, Root([5; 32]), 1, token_hash("t"), 1000)).unwrap();
        let floor = RestoreFloor::at_epoch(31, 32);
        let stamp = RestoreStamp {
            operator: "alice".into(),
            at_ms: 7,
        };
        let r = restored_state(&b, floor, "test".into(), 4, "http://n4", &stamp);
        assert_eq!(r.data.authority.holder, None);
        assert_eq!(r.data.authority.token, 9);
        assert_eq!(r.last_applied.unwrap().index, 42 + RESTORE_INDEX_GAP);
        let voters: Vec<_> = r.membership.membership().voter_ids().collect();
        assert_eq!(voters, vec![4]);
        let h = &r.data.validators[&Pubkey([7; 48])];
        assert_eq!(h.low_target_epoch(), Some(Epoch(31)));
        assert!(h.attestations().is_empty() && h.blocks().is_empty());
        assert_eq!(r.data.restore.as_ref().unwrap().floor, floor);
        assert_eq!(
            r.data.audit.last().unwrap().action,
            failover_protocol::AuditAction::ClusterRestore
        );
    }
}
