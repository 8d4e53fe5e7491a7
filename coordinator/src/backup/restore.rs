//! Restoring a backup into a fresh node of a new one-node cluster: the restored state (fenced,
//! floored, at a new log position, audited) and the seeding of the store.
//!
//! Invariant: nothing is written unless every check passed; a non-empty data directory is
//! refused.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, StoredMembership, Vote};
use serde::{Deserialize, Serialize};

use super::file::cluster_credential_sha256;
use super::floor::{choose_floor, max_recorded_epoch, observe_chain_head};
use super::format::Backup;
use super::RESTORE_INDEX_GAP;
use crate::config::Config;
use crate::slashing::RestoreFloor;
use crate::state::RestoreInfo;
use crate::store::SmSnapshotData;
use crate::NodeId;
use failover_common::chain_time::now_ms;
use failover_protocol::{AuditEntry, HandoverState, TimelineEvent};

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
    let same_credential =
        cluster_credential_sha256(config)? == backup.header.source_cluster_token_sha256;
    match (&config.tls, &config.cluster_token_file) {
        (None, Some(file)) => anyhow::ensure!(
            !same_credential,
            "the config's cluster token ({}) is the backed-up cluster's: the restored node \
             would accept Raft RPC from nodes of the old cluster. Give the new cluster a new \
             token (coordinator gen-token)",
            file.display()
        ),
        (Some(tls), _) if same_credential => {
            // Same CA: old nodes hold valid node certificates. The restored node accepts
            // Raft RPC only from its peers and members (`Node::knows_node`), so it must list
            // no old node and not reuse the id of the node the backup came from.
            let others: Vec<_> = config
                .peers
                .iter()
                .filter(|p| p.id != config.node_id)
                .map(|p| p.id)
                .collect();
            anyhow::ensure!(
                others.is_empty() && config.node_id != backup.header.source_node_id,
                "the config's CA ({}) is the backed-up cluster's, so nodes of the old cluster \
                 hold valid certificates: the restored node must list only itself in [[peers]] \
                 (it lists {others:?}) and use a node id other than {} (the backup's source); \
                 or give the new cluster a new CA (coordinator certs ca)",
                tls.ca_file.display(),
                backup.header.source_node_id
            )
        }
        _ => {}
    }
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
