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
//!
//! # Layout
//!
//! `format` (the file format: encode, decode), `file` (files on disk and the offline backup),
//! `floor` (the chain head from the beacon nodes and the floor choice), `restore` (the restored
//! state and the seeding of a new node).

mod file;
mod floor;
mod format;
mod restore;

pub use file::{cluster_credential_sha256, offline_backup, read_file, write_file};
pub use floor::{choose_floor, max_recorded_epoch, observe_chain_head, ChainHead};
pub use format::{decode, encode, Backup, BackupError, BackupHeader};
pub use restore::{restore, restored_state, RestoreOptions, RestoreReport, RestoreStamp};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::token_hash;
    use crate::slashing::{Epoch, RestoreFloor, ValidatorHistory};
    use crate::state::StateData;
    use crate::store::SmSnapshotData;
    use failover_common::types::{Pubkey, Root};
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

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
