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
//! Layout: this module holds the API token, the routes and the error type; [`wire`] the JSON
//! types, `files` the durable private files, `import` the `POST` flow, `delete` the `DELETE`
//! flow.
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
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Agent;

mod delete;
mod files;
mod import;
pub mod wire;

pub use delete::delete;
pub use import::import;
pub use wire::*;

use files::write_private;

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
