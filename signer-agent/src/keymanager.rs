//! The standard keymanager API, local keystores (`keymanager-APIs`, `apis/local_keystores.yaml`):
//! `GET`, `POST` and `DELETE /eth/v1/keystores`.
//!
//! - `GET`: `{"data":[{"validating_pubkey","derivation_path"?,"readonly"}]}`, the decrypted
//!   keys, sorted by pubkey; `derivation_path` is the keystore's `path` and absent when empty;
//!   `readonly` is always false (every key lives in `keystores_dir`, which this API manages).
//! - `POST {keystores, passwords, slashing_protection?}`: one `{status, message?}` per keystore,
//!   in request order; `status` is `imported`, `duplicate` or `error` (with `message`).
//! - `DELETE {pubkeys}`: one `{status, message?}` per pubkey, in request order (`deleted`,
//!   `not_active`, `not_found`, `error`), and `slashing_protection`, an EIP-3076 interchange as a
//!   JSON string holding exactly the `deleted` and `not_active` keys.
//! - Errors: `{"message": …}` with 400 (malformed body, `keystores`/`passwords` of different
//!   lengths, a malformed pubkey or interchange), 401 (no bearer token), 403 (wrong token), 404
//!   (the API is disabled: no `keymanager_token_file`), 503 (keys still loading at start-up;
//!   `POST` and `DELETE` only), 500 (a failure inside the agent).
//!
//! Authentication: the bearer token in `keymanager_token_file`, generated (32 random bytes,
//! mode 0600) when the file is absent, as Lighthouse and Teku do. Tokens are compared by
//! SHA-256 digest in constant time and never logged.
//!
//! Invariants:
//! - **history before use**: an imported key becomes usable only after the coordinators
//!   committed the request's `slashing_protection` for it (`POST /v1/agent/import` with a
//!   proof of possession of each key, a Raft command ordered with every record batch,
//!   DESIGN.md I3) and its files were stored. If the
//!   import is refused or its outcome is unknown, no key of the request is activated, each says
//!   why (`error`), and nothing is written;
//! - **a wrong password changes nothing**: that keystore is `error`, the others proceed;
//! - **stop, then export**: `DELETE` takes each key out of the key set first (no new sign
//!   request finds it: the Web3Signer answer is 404 `unknown_key`), then waits until the sign
//!   requests that already held it have finished, so every record behind a signature of the
//!   key has committed before the export reads the history (a request its client abandoned may
//!   still commit a record later, but it signs nothing); then it removes the files and reads
//!   the history with the linearizable `GET /v1/slashing/export`. A key that could not be stopped in time or whose files could not
//!   be removed is `error`;
//! - **never an empty history by mistake**: when the export fails, every key is `error`, saying
//!   so, and `slashing_protection` is left out (the spec marks it required; any value would
//!   claim a history this agent does not know, and a strict client failing to parse the answer
//!   is the safe outcome). A retried `DELETE` answers `not_active` with the history, or
//!   `not_found` when the coordinators hold none;
//! - one `POST` or `DELETE` at a time (a mutex), so a duplicate check, an import and a deletion
//!   never interleave; `GET` does not wait for them;
//! - `POST` and `DELETE` answer 503 until the start-up decryption has finished, so a key that is
//!   still loading is never reported `not_found` or imported twice.
//!
//! Departures from the letter of the spec, all on the safe side: the 404 of a disabled API and
//! the 503 during start-up are not in the spec's list of answers; the interchange sent with
//! `POST` is filtered to the keys the request activates (history of other keys is not this
//! request's to change); a pubkey repeated within one `POST` is `duplicate` after its first
//! occurrence; keys are registered with the coordinators after every change
//! (`POST /v1/agent/register`, retried in the background if it fails: registration is
//! informational and gates no signature).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use failover_common::keystore::Keystore;
use failover_common::types::Pubkey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::coordinator::CallError;
use crate::keys::{self, KeyFiles, KeyInfo, KeystoreWithPassword};
use crate::Agent;

/// The path of the local-keystores endpoints (keymanager API).
pub const PATH: &str = "/eth/v1/keystores";

/// Largest accepted request body (bytes): keystores are about 1 KB each, but an EIP-3076
/// interchange of a long history can be several MB.
pub const MAX_BODY: usize = 64 << 20;

/// How long an import of slashing-protection data may take at the coordinators (a Raft write,
/// possibly forwarded to the leader).
pub const IMPORT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long each export request may take (a linearizable read, possibly forwarded).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(15);

/// The keymanager API state of an agent: the token digest and the mutation lock.
pub struct Keymanager {
    token_sha256: [u8; 32],
    token_file: PathBuf,
    ops: tokio::sync::Mutex<()>,
}

impl Keymanager {
    /// Reads the bearer token from `path` (surrounding whitespace ignored), or, when the file
    /// does not exist, writes a new random token `api-token-0x<64 hex digits>` to it with mode
    /// 0600.
    ///
    /// Errors: the file cannot be read, is empty, other users may read it (the message gives
    /// the `chmod`), or it cannot be created (missing folder).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let token = match std::fs::read_to_string(path) {
            Ok(text) => {
                let token = text.trim().to_string();
                anyhow::ensure!(
                    !token.is_empty(),
                    "keymanager token file {} is empty",
                    path.display()
                );
                failover_common::secret_file::check_private(path)?;
                Zeroizing::new(token)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = new_token();
                write_private(path, token.as_bytes(), false)
                    .with_context(|| format!("create keymanager token file {}", path.display()))?;
                tracing::info!(file = %path.display(), "generated a keymanager API token");
                token
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("read keymanager token file {}", path.display()))
            }
        };
        Ok(Self {
            token_sha256: Sha256::digest(token.as_bytes()).into(),
            token_file: path.to_path_buf(),
            ops: tokio::sync::Mutex::new(()),
        })
    }

    /// The token file this API authenticates against.
    pub fn token_file(&self) -> &Path {
        &self.token_file
    }

    /// Checks `Authorization: Bearer <token>` (keymanager API `bearerAuth`).
    ///
    /// Errors: [`KeymanagerError::MissingToken`] (401) without a bearer token,
    /// [`KeymanagerError::WrongToken`] (403) for another token.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), KeymanagerError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(KeymanagerError::MissingToken)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if constant_time_eq(&digest, &self.token_sha256) {
            Ok(())
        } else {
            Err(KeymanagerError::WrongToken)
        }
    }
}

fn new_token() -> Zeroizing<String> {
    use rand::RngCore;
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(format!("api-token-0x{}", hex::encode(bytes.as_ref())))
}

/// Equality of two digests in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Writes `bytes` to `path` durably with mode 0600: a temporary file in the same folder,
/// fsynced, renamed over `path` (when `replace`; otherwise created only if absent), and the
/// folder fsynced, so a crash leaves either no file or the whole file.
fn write_private(path: &Path, bytes: &[u8], replace: bool) -> std::io::Result<()> {
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

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// Removes `path` and syncs its folder; a file already gone is fine.
fn remove_durably(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

// ---- wire types (keymanager API, apis/local_keystores.yaml) -----------------------------

/// The keymanager API error body (`types/error_response.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// Detailed error message.
    pub message: String,
}

/// One key of `ListKeysResponse.data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedKey {
    /// The validator's BLS public key (`0x` + 96 hex digits).
    pub validating_pubkey: Pubkey,
    /// EIP-2334 derivation path from the keystore, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivation_path: Option<String>,
    /// True when the key cannot be deleted through the API (never, here).
    pub readonly: bool,
}

/// `GET /eth/v1/keystores` answer (`ListKeysResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListKeysResponse {
    /// The decrypted keys, sorted by pubkey.
    pub data: Vec<ListedKey>,
}

/// `POST /eth/v1/keystores` body. Deliberately without `Debug`: it holds passwords.
#[derive(Deserialize)]
pub struct ImportKeystoresRequest {
    /// EIP-2335 keystores, each as a JSON string.
    pub keystores: Vec<String>,
    /// `passwords[i]` unlocks `keystores[i]`.
    pub passwords: Vec<String>,
    /// An EIP-3076 interchange (format version 5) as a JSON string, optional.
    #[serde(default)]
    pub slashing_protection: Option<String>,
}

/// Per-keystore status of an import (keymanager API enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// Decrypted, its history imported, stored in `keystores_dir`, and usable.
    Imported,
    /// Its pubkey is already loaded (or earlier in the same request); nothing changed.
    Duplicate,
    /// Not imported; `message` says why.
    Error,
}

/// One entry of a per-key status list: `{status, message?}` (keymanager API, the `data` items
/// of `ImportKeystoresResponse` and `DeleteKeysResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatus<S> {
    /// The outcome.
    pub status: S,
    /// Why, for `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One entry of `ImportKeystoresResponse.data`.
pub type ImportResult = KeyStatus<ImportStatus>;

/// `POST /eth/v1/keystores` answer (`ImportKeystoresResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportKeystoresResponse {
    /// One result per `request.keystores`, same order.
    pub data: Vec<ImportResult>,
}

/// `DELETE /eth/v1/keystores` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteKeysRequest {
    /// Public keys to delete (`0x` + 96 hex digits).
    pub pubkeys: Vec<String>,
}

/// Per-pubkey status of a deletion (keymanager API enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteStatus {
    /// The key was active; it can sign no more, its files are gone, and its history is in
    /// `slashing_protection`.
    Deleted,
    /// Not active here, but the coordinators hold a history for it, returned in
    /// `slashing_protection`.
    NotActive,
    /// Not active here and no history: nothing returned.
    NotFound,
    /// Something failed; `message` says what, and whether the key can still sign.
    Error,
}

/// One entry of `DeleteKeysResponse.data`.
pub type DeleteResult = KeyStatus<DeleteStatus>;

/// `DELETE /eth/v1/keystores` answer (`DeleteKeysResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteKeysResponse {
    /// One result per `request.pubkeys`, same order.
    pub data: Vec<DeleteResult>,
    /// EIP-3076 interchange (JSON string) of the `deleted` and `not_active` keys; absent only
    /// when the history could not be exported (every status is then `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slashing_protection: Option<String>,
}

fn import_error(message: impl Into<String>) -> ImportResult {
    ImportResult {
        status: ImportStatus::Error,
        message: Some(message.into()),
    }
}

fn delete_error(message: impl Into<String>) -> DeleteResult {
    DeleteResult {
        status: DeleteStatus::Error,
        message: Some(message.into()),
    }
}

// ---- errors ---------------------------------------------------------------------------

/// Why a keymanager request failed as a whole; the body is always [`ErrorResponse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeymanagerError {
    /// No `keymanager_token_file` is configured (404).
    #[error("the keymanager API is disabled on this agent (set keymanager_token_file)")]
    Disabled,
    /// No bearer token in the request (401, keymanager API `Unauthorized`).
    #[error("missing bearer token")]
    MissingToken,
    /// A bearer token that is not this agent's (403, keymanager API `Forbidden`).
    #[error("invalid bearer token")]
    WrongToken,
    /// The body is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The start-up decryption has not finished (503).
    #[error("keystores are still being decrypted at start-up; retry shortly")]
    Loading,
    /// A failure inside the agent (500); details are logged.
    #[error("internal error")]
    Internal,
}

impl KeymanagerError {
    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            KeymanagerError::Disabled => StatusCode::NOT_FOUND,
            KeymanagerError::MissingToken => StatusCode::UNAUTHORIZED,
            KeymanagerError::WrongToken => StatusCode::FORBIDDEN,
            KeymanagerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            KeymanagerError::Loading => StatusCode::SERVICE_UNAVAILABLE,
            KeymanagerError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for KeymanagerError {
    fn into_response(self) -> Response {
        (
            self.status(),
            Json(ErrorResponse {
                message: self.to_string(),
            }),
        )
            .into_response()
    }
}

// ---- routes ---------------------------------------------------------------------------

/// The keymanager routes, to merge into the agent's router (`api::router`). They are always
/// mounted; with no `keymanager_token_file` they answer 404 with an [`ErrorResponse`].
pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route(
            PATH,
            get(list_keys).post(import_keystores).delete(delete_keys),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

fn authorized<'a>(
    agent: &'a Agent,
    headers: &HeaderMap,
) -> Result<&'a Keymanager, KeymanagerError> {
    let km = agent.keymanager.as_ref().ok_or(KeymanagerError::Disabled)?;
    km.authorize(headers)?;
    Ok(km)
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, KeymanagerError> {
    // The serde message names the position (and quotes only a value of the wrong JSON type).
    serde_json::from_slice(body)
        .map_err(|e| KeymanagerError::BadRequest(format!("invalid JSON body: {e}")))
}

async fn list_keys(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
) -> Result<Json<ListKeysResponse>, KeymanagerError> {
    authorized(&agent, &headers)?;
    let data = agent
        .keys
        .list()
        .into_iter()
        .map(|(pubkey, info)| ListedKey {
            validating_pubkey: pubkey,
            derivation_path: Some(info.derivation_path).filter(|p| !p.is_empty()),
            readonly: false,
        })
        .collect();
    Ok(Json(ListKeysResponse { data }))
}

async fn import_keystores(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ImportKeystoresResponse>, KeymanagerError> {
    let km = authorized(&agent, &headers)?;
    let req: ImportKeystoresRequest = parse_body(&body)?;
    drop(body);
    Ok(Json(import(&agent, km, req).await?))
}

async fn delete_keys(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DeleteKeysResponse>, KeymanagerError> {
    let km = authorized(&agent, &headers)?;
    let req: DeleteKeysRequest = parse_body(&body)?;
    Ok(Json(delete(&agent, km, req).await?))
}

// ---- EIP-3076 documents -----------------------------------------------------------------

/// Checks that `text` is JSON with a `metadata` object and a `data` list (EIP-3076); the
/// coordinators check the rest (format version, genesis validators root, slashability).
fn parse_interchange(text: &str) -> Result<Value, KeymanagerError> {
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

fn entry_pubkey(entry: &Value) -> Option<Pubkey> {
    entry.get("pubkey")?.as_str()?.parse().ok()
}

/// Keeps only the `data` entries of `keep` in an interchange.
fn retain_pubkeys(doc: &mut Value, keep: &HashSet<Pubkey>) {
    if let Some(data) = doc.get_mut("data").and_then(Value::as_array_mut) {
        data.retain(|e| entry_pubkey(e).is_some_and(|p| keep.contains(&p)));
    }
}

fn describe_call_error(e: &CallError) -> String {
    match e {
        CallError::Timeout | CallError::Transport(_) => {
            format!("{e} (the outcome at the coordinators is unknown)")
        }
        other => other.to_string(),
    }
}

// ---- import -----------------------------------------------------------------------------

struct Decrypted {
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
        let possession: Vec<failover_common::api::KeyPossession> = decrypted
            .iter()
            .map(|d| failover_common::api::KeyPossession {
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

fn finish_import(results: Vec<Option<ImportResult>>) -> ImportKeystoresResponse {
    ImportKeystoresResponse {
        data: results
            .into_iter()
            .map(|r| r.expect("every keystore has a status"))
            .collect(),
    }
}

/// Writes `passwords_dir/<pubkey>.txt` (mode 0600), then `keystores_dir/<pubkey>.json`, each
/// durably, so a restart never finds a keystore without its password. Removes both on failure.
fn store_key_files(
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

// ---- delete -----------------------------------------------------------------------------

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
