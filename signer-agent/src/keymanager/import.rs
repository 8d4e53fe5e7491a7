//! `POST /eth/v1/keystores`: decrypt, import the EIP-3076 history through the coordinators with
//! proofs of possession, then store the files and activate the keys (the module invariants of
//! `keymanager`: history before use; a wrong password changes nothing).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use failover_common::keystore::Keystore;
use failover_common::types::Pubkey;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::keys::{self, KeyFiles, KeyInfo, KeystoreWithPassword};
use crate::Agent;
use failover_protocol::CallError;

use super::files::{remove_durably, write_private};
use super::wire::{
    import_error, ImportKeystoresRequest, ImportKeystoresResponse, ImportResult, ImportStatus,
};
use super::{Keymanager, KeymanagerError, IMPORT_TIMEOUT};

// ---- EIP-3076 documents -----------------------------------------------------------------

/// Checks that `text` is JSON with a `metadata` object and a `data` list (EIP-3076); the
/// coordinators check the rest (format version, genesis validators root, slashability).
pub(super) fn parse_interchange(text: &str) -> Result<Value, KeymanagerError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        KeymanagerError::BadRequest(format!("slashing_protection is not JSON: {e}"))
    })?;
    let shaped = doc.get("metadata").is_some_and(Value::is_object)
        && doc.get("data").is_some_and(Value::is_array);
    if !shaped {
        return Err(KeymanagerError::BadRequest(
            "slashing_protection is not an EIP-3076 interchange: it needs a metadata object and a data list"
                .into(),
        ));
    }
    Ok(doc)
}

pub(super) fn entry_pubkey(entry: &Value) -> Option<Pubkey> {
    entry.get("pubkey")?.as_str()?.parse().ok()
}

/// Keeps only the `data` entries of `keep` in an interchange.
pub(super) fn retain_pubkeys(doc: &mut Value, keep: &HashSet<Pubkey>) {
    if let Some(data) = doc.get_mut("data").and_then(Value::as_array_mut) {
        data.retain(|e| entry_pubkey(e).is_some_and(|p| keep.contains(&p)));
    }
}

pub(super) fn describe_call_error(e: &CallError) -> String {
    match e {
        CallError::Timeout | CallError::Transport(_) => {
            format!("{e} (the outcome at the coordinators is unknown)")
        }
        other => other.to_string(),
    }
}

// ---- import -----------------------------------------------------------------------------

pub(super) struct Decrypted {
    index: usize,
    job: KeystoreWithPassword,
    text: String,
    sk: blst::min_pk::SecretKey,
}

/// Imports keystores (keymanager API `importKeystores`); see the module invariants.
///
/// Errors: [`KeymanagerError::BadRequest`] for lists of different lengths or a malformed
/// interchange, [`KeymanagerError::Loading`] during start-up, [`KeymanagerError::Internal`] when
/// a decryption task panicked. Per-keystore failures are statuses, not errors.
pub async fn import(
    agent: &Arc<Agent>,
    km: &Keymanager,
    req: ImportKeystoresRequest,
) -> Result<ImportKeystoresResponse, KeymanagerError> {
    if req.keystores.len() != req.passwords.len() {
        return Err(KeymanagerError::BadRequest(format!(
            "{} keystores but {} passwords: passwords[i] must unlock keystores[i]",
            req.keystores.len(),
            req.passwords.len()
        )));
    }
    let interchange = req
        .slashing_protection
        .as_deref()
        .map(parse_interchange)
        .transpose()?;
    let _one_at_a_time = km.ops.lock().await;
    if !agent.keys.is_complete() {
        return Err(KeymanagerError::Loading);
    }

    let n = req.keystores.len();
    let mut results: Vec<Option<ImportResult>> = vec![None; n];
    let mut jobs = Vec::new();
    let mut texts = Vec::new();
    let mut positions = Vec::new();
    let mut seen = HashSet::new();
    for (i, (text, password)) in req.keystores.into_iter().zip(req.passwords).enumerate() {
        let password = Zeroizing::new(password);
        match Keystore::from_json(&text) {
            Err(e) => results[i] = Some(import_error(format!("invalid keystore: {e}"))),
            Ok(ks) if agent.keys.contains(&ks.pubkey) || !seen.insert(ks.pubkey) => {
                results[i] = Some(ImportResult {
                    status: ImportStatus::Duplicate,
                    message: None,
                })
            }
            Ok(keystore) => {
                jobs.push(KeystoreWithPassword { keystore, password });
                texts.push(text);
                positions.push(i);
            }
        }
    }

    // Decrypt in parallel; a wrong password is that keystore's error and nothing else.
    let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut texts: Vec<Option<String>> = texts.into_iter().map(Some).collect();
    let mut decrypted: Vec<Decrypted> = Vec::new();
    keys::decrypt_parallel(jobs, parallelism, |j, job, result| {
        match result {
            Ok(sk) => decrypted.push(Decrypted {
                index: positions[j],
                job,
                text: texts[j].take().expect("each job finishes once"),
                sk,
            }),
            Err(e) => {
                results[positions[j]] = Some(import_error(format!("cannot decrypt: {e:#}")));
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "keymanager import: decryption failed");
        KeymanagerError::Internal
    })?;
    decrypted.sort_by_key(|d| d.index);

    // The history first: nothing is activated unless the coordinators committed it.
    if let (Some(mut doc), false) = (interchange, decrypted.is_empty()) {
        let activating: HashSet<Pubkey> = decrypted.iter().map(|d| d.job.keystore.pubkey).collect();
        retain_pubkeys(&mut doc, &activating);
        let possession: Vec<failover_protocol::KeyPossession> = decrypted
            .iter()
            .map(|d| failover_protocol::KeyPossession {
                pubkey: d.job.keystore.pubkey,
                signature: failover_common::eth::sign_possession(&d.sk, &agent.config.agent_id),
            })
            .collect();
        if let Err(e) = agent
            .client
            .slashing_import(&agent.config.agent_id, &doc, possession, IMPORT_TIMEOUT)
            .await
        {
            let why = describe_call_error(&e);
            tracing::warn!(agent = %agent.config.agent_id, error = %why, keys = decrypted.len(), "keymanager import: slashing protection not imported; keys not activated");
            let message = format!(
                "slashing protection was not imported, so the key was not activated: {why}"
            );
            for d in &decrypted {
                results[d.index] = Some(import_error(message.clone()));
            }
            return Ok(finish_import(results));
        }
    }

    // Store, then activate.
    let dirs = (
        agent.config.keystores_dir.clone(),
        agent.config.passwords_dir.clone(),
    );
    let to_store: Vec<(Pubkey, String, Zeroizing<String>)> = decrypted
        .iter_mut()
        .map(|d| {
            (
                d.job.keystore.pubkey,
                std::mem::take(&mut d.text),
                std::mem::take(&mut d.job.password),
            )
        })
        .collect();
    let stored = tokio::task::spawn_blocking(move || {
        to_store
            .into_iter()
            .map(|(pk, text, password)| store_key_files(&dirs.0, &dirs.1, &pk, &text, &password))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "keymanager import: storing task failed");
        KeymanagerError::Internal
    })?;
    let mut imported = Vec::new();
    for (d, files) in decrypted.into_iter().zip(stored) {
        match files {
            Ok(files) => {
                let pk = agent.keys.insert_with(
                    d.sk,
                    KeyInfo {
                        derivation_path: d.job.keystore.path.clone(),
                        files: Some(files),
                    },
                );
                imported.push(pk);
                results[d.index] = Some(ImportResult {
                    status: ImportStatus::Imported,
                    message: None,
                });
            }
            Err(e) => {
                tracing::error!(agent = %agent.config.agent_id, pubkey = %d.job.keystore.pubkey, error = %format!("{e:#}"), "keymanager import: cannot store the keystore");
                results[d.index] = Some(import_error(format!(
                    "cannot store the keystore: {e:#}; the key was not activated"
                )));
            }
        }
    }
    if !imported.is_empty() {
        tracing::info!(agent = %agent.config.agent_id, keys = ?imported, "keymanager: keys imported");
        agent.metrics.keys_loaded.set(agent.keys.count() as i64);
        agent.metrics.keys_configured.add(imported.len() as i64);
        agent.register_soon().await;
    }
    Ok(finish_import(results))
}

pub(super) fn finish_import(results: Vec<Option<ImportResult>>) -> ImportKeystoresResponse {
    ImportKeystoresResponse {
        data: results
            .into_iter()
            .map(|r| r.expect("every keystore has a status"))
            .collect(),
    }
}

/// Writes `passwords_dir/<pubkey>.txt` (mode 0600), then `keystores_dir/<pubkey>.json`, each
/// durably, so a restart never finds a keystore without its password. Removes both on failure.
pub(super) fn store_key_files(
    keystores_dir: &Path,
    passwords_dir: &Path,
    pubkey: &Pubkey,
    keystore_json: &str,
    password: &str,
) -> anyhow::Result<KeyFiles> {
    let files = KeyFiles {
        keystore: keystores_dir.join(format!("{pubkey}.json")),
        password: passwords_dir.join(format!("{pubkey}.txt")),
    };
    let written = write_private(&files.password, password.as_bytes(), true)
        .with_context(|| format!("write {}", files.password.display()))
        .and_then(|()| {
            write_private(&files.keystore, keystore_json.as_bytes(), true)
                .with_context(|| format!("write {}", files.keystore.display()))
        });
    if let Err(e) = written {
        let _ = remove_durably(&files.keystore);
        let _ = remove_durably(&files.password);
        return Err(e);
    }
    Ok(files)
}
