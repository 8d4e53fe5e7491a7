//! `DELETE /eth/v1/keystores`: stop the keys, remove their files, then export their history
//! (the module invariants of `keymanager`: stop, then export; never an empty history by
//! mistake).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use failover_common::types::Pubkey;
use serde_json::Value;

use crate::keys::{self, KeyFiles};
use crate::Agent;

use super::files::remove_durably;
use super::import::{describe_call_error, entry_pubkey, retain_pubkeys};
use super::wire::{
    delete_error, DeleteKeysRequest, DeleteKeysResponse, DeleteResult, DeleteStatus,
};
use super::{Keymanager, KeymanagerError, EXPORT_TIMEOUT};

/// Deletes keys (keymanager API `deleteKeys`); see the module invariants.
///
/// Errors: [`KeymanagerError::BadRequest`] for a malformed pubkey, [`KeymanagerError::Loading`]
/// during start-up, [`KeymanagerError::Internal`] when a file task panicked. Never a 404.
pub async fn delete(
    agent: &Arc<Agent>,
    km: &Keymanager,
    req: DeleteKeysRequest,
) -> Result<DeleteKeysResponse, KeymanagerError> {
    let pubkeys: Vec<Pubkey> = req
        .pubkeys
        .iter()
        .map(|p| {
            p.parse().map_err(|e| {
                KeymanagerError::BadRequest(format!(
                    "pubkey {p:?} is not a 0x-prefixed 48-byte BLS public key: {e}"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let _one_at_a_time = km.ops.lock().await;
    if !agent.keys.is_complete() {
        return Err(KeymanagerError::Loading);
    }
    let mut unique: Vec<Pubkey> = Vec::new();
    for pk in &pubkeys {
        if !unique.contains(pk) {
            unique.push(*pk);
        }
    }

    // 1. Stop: out of the key set, then wait for the requests still holding the key.
    let removed: Vec<keys::RemovedKey> = unique
        .iter()
        .filter_map(|pk| agent.keys.remove(pk))
        .collect();
    let mut failed: std::collections::HashMap<Pubkey, String> = Default::default();
    let drain = agent.config.record_deadline() * 2 + Duration::from_secs(5);
    for key in &removed {
        if !key.wait_idle(drain).await {
            failed.insert(
                key.pubkey,
                format!(
                    "the key accepts no new requests, but a sign request that started before the deletion \
                     did not finish within {drain:?} and may still produce a signature; do not activate \
                     the key elsewhere before checking"
                ),
            );
        }
    }
    if !removed.is_empty() {
        tracing::info!(agent = %agent.config.agent_id, keys = ?removed.iter().map(|k| k.pubkey).collect::<Vec<_>>(), "keymanager: keys removed from the key set");
        agent.metrics.keys_loaded.set(agent.keys.count() as i64);
        agent.metrics.keys_configured.sub(removed.len() as i64);
    }

    // 2. Remove the files, so a restart does not load the keys again.
    let to_remove: Vec<(Pubkey, KeyFiles)> = removed
        .iter()
        .filter_map(|k| k.info.files.clone().map(|f| (k.pubkey, f)))
        .collect();
    let removals = tokio::task::spawn_blocking(move || {
        to_remove
            .into_iter()
            .map(|(pk, f)| {
                let r = remove_durably(&f.keystore)
                    .with_context(|| format!("remove {}", f.keystore.display()))
                    .and_then(|()| {
                        remove_durably(&f.password)
                            .with_context(|| format!("remove {}", f.password.display()))
                    });
                (pk, r)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "keymanager delete: file task failed");
        KeymanagerError::Internal
    })?;
    for (pk, r) in removals {
        if let Err(e) = r {
            tracing::error!(agent = %agent.config.agent_id, pubkey = %pk, error = %format!("{e:#}"), "keymanager delete: cannot remove the keystore files");
            failed.entry(pk).or_insert(format!(
                "the key can no longer sign, but its files could not be removed ({e:#}); remove them by \
                 hand, or a restart will load the key again"
            ));
        }
    }
    if !removed.is_empty() {
        agent.register_soon().await;
    }

    // 3. The history, read linearizably after the last record of these keys committed.
    let active: HashSet<Pubkey> = removed.iter().map(|k| k.pubkey).collect();
    let exported = if unique.is_empty() {
        Ok(serde_json::json!({
            "metadata": {
                "interchange_format_version": "5",
                "genesis_validators_root": agent.config.gvr(),
            },
            "data": [],
        }))
    } else {
        agent.client.slashing_export(&unique, EXPORT_TIMEOUT).await
    };
    let mut doc = match exported {
        Ok(doc) => doc,
        Err(e) => {
            let why = describe_call_error(&e);
            tracing::error!(agent = %agent.config.agent_id, error = %why, "keymanager delete: slashing protection export failed");
            let data = pubkeys
                .iter()
                .map(|pk| {
                    delete_error(match failed.get(pk) {
                        Some(m) => format!("{m}; moreover its slashing protection could not be exported: {why}"),
                        None if active.contains(pk) => format!(
                            "the key was removed and can no longer sign, but its slashing protection could not be \
                             exported ({why}); retry the DELETE to fetch it"
                        ),
                        None => format!("its slashing protection could not be checked: {why}"),
                    })
                })
                .collect();
            return Ok(DeleteKeysResponse {
                data,
                slashing_protection: None,
            });
        }
    };
    let with_history: HashSet<Pubkey> = doc
        .get("data")
        .and_then(Value::as_array)
        .map(|d| d.iter().filter_map(entry_pubkey).collect())
        .unwrap_or_default();

    let status_of = |pk: &Pubkey| -> DeleteResult {
        if let Some(m) = failed.get(pk) {
            delete_error(m.clone())
        } else if active.contains(pk) {
            DeleteResult {
                status: DeleteStatus::Deleted,
                message: None,
            }
        } else if with_history.contains(pk) {
            DeleteResult {
                status: DeleteStatus::NotActive,
                message: None,
            }
        } else {
            DeleteResult {
                status: DeleteStatus::NotFound,
                message: None,
            }
        }
    };
    let data: Vec<DeleteResult> = pubkeys.iter().map(status_of).collect();

    // Only `deleted` and `not_active` keys; a deleted key without history gets an empty entry.
    let returned: HashSet<Pubkey> = unique
        .iter()
        .filter(|pk| {
            matches!(
                status_of(pk).status,
                DeleteStatus::Deleted | DeleteStatus::NotActive
            )
        })
        .copied()
        .collect();
    retain_pubkeys(&mut doc, &returned);
    if let Some(list) = doc.get_mut("data").and_then(Value::as_array_mut) {
        for pk in unique
            .iter()
            .filter(|pk| returned.contains(pk) && !with_history.contains(pk))
        {
            list.push(serde_json::json!({
                "pubkey": pk,
                "signed_blocks": [],
                "signed_attestations": [],
            }));
        }
    }
    Ok(DeleteKeysResponse {
        data,
        slashing_protection: Some(doc.to_string()),
    })
}
