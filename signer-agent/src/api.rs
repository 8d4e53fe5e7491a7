//! The Web3Signer eth2 HTTP API of the agent (Web3Signer OpenAPI `openapi-specs/eth2`).
//!
//! - `POST /api/v1/eth2/sign/{identifier}`: 200 with the signature, as `{"signature":"0x…"}`
//!   (`application/json`) when `Accept` names `application/json` or `*/*`, and as the bare
//!   `0x…` hex (`text/plain`) otherwise, an absent `Accept` included (Web3Signer's rule,
//!   [`wants_json`]); 400 bad request, unknown or unsupported type, signingRoot mismatch, or
//!   wrong genesis validators root; 403 not the authority holder (names the holder) or
//!   voluntary exits disabled by configuration; 404 unknown key; 412 refused by slashing
//!   protection (names the reason); 503 no committed verdict in time, authority unknown, or
//!   keys still loading. Error bodies are always JSON ([`ErrorBody`]);
//! - `GET /api/v1/eth2/publicKeys`: `["0x…"]`;
//! - `GET /upcheck`: `OK` (text), or `{"status":"OK"}` to a client that accepts only JSON
//!   (Lodestar);
//! - `GET /healthcheck`: `{status, checks:[{id,status}], outcome}`, 503 unless every key is
//!   loaded and a coordinator answered recently;
//! - `GET /metrics`: Prometheus text;
//! - `GET`/`POST`/`DELETE /eth/v1/keystores`: the keymanager API ([`crate::keymanager`]).
//!
//! Invariants of the sign path (DESIGN.md I4, I7):
//! - the signing root is computed by `failover_common::eth` from the message; a client
//!   `signingRoot` is only compared with it;
//! - only [`SigningState::Enabled`] signs, for every type (the non-slashable ones such as
//!   `VOLUNTARY_EXIT` and `VALIDATOR_REGISTRATION` included), and a slashable type is signed
//!   only after the coordinator returned a committed `Valid` or `SameData` verdict for exactly
//!   this record;
//! - `VOLUNTARY_EXIT` is signed only with `allow_voluntary_exit = true`;
//!   every other outcome (refusal, not holder, deadline, transport error, unknown) answers
//!   without a signature;
//! - error bodies are [`ErrorBody`] and never carry internal details (transport errors,
//!   coordinator messages, key material); those are logged instead.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use failover_common::eth::{self, SignRequestError, SlashableMessage, WEB3SIGNER_TYPES};
use failover_common::types::{Pubkey, Root, Signature};
use failover_protocol::{AgentId, RecordItem, Refusal, Verdict};
use serde::Serialize;
use tokio::time::Instant;
use tower_http::trace::TraceLayer;

use crate::authority::SigningState;
use crate::batcher::RecordOutcome;
use crate::keys::KeyLookup;
use crate::Agent;

/// Builds the HTTP service of `agent`, with a trace span per request.
pub fn router(agent: Arc<Agent>) -> Router {
    let agent_id = agent.config.agent_id.clone();
    Router::new()
        .route("/api/v1/eth2/sign/{identifier}", post(sign))
        .route("/api/v1/eth2/publicKeys", get(public_keys))
        .route("/upcheck", get(upcheck))
        .route("/healthcheck", get(healthcheck))
        .route("/metrics", get(metrics))
        .merge(crate::keymanager::routes())
        .layer(
            TraceLayer::new_for_http().make_span_with(move |req: &Request<_>| {
                tracing::info_span!(
                    "http",
                    agent = %agent_id,
                    method = %req.method(),
                    path = %req.uri().path(),
                )
            }),
        )
        .with_state(agent)
}

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// Stable code: `bad_request`, `unsupported_type`, `wrong_genesis`, `future_epoch`, `unknown_key`,
    /// `not_holder`, `voluntary_exit_disabled`, `slashing_protection`, `unavailable`,
    /// `internal`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// For `not_holder`: the agent holding authority, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<AgentId>,
    /// For `slashing_protection`: why the record was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
}

/// Every way a request fails; the one place that decides status codes and bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Malformed identifier or body, unknown type, or signingRoot mismatch (400).
    #[error("{0}")]
    BadRequest(String),
    /// A Web3Signer type this agent does not sign yet (400).
    #[error("type {0} is not supported yet")]
    UnsupportedType(String),
    /// `fork_info.genesis_validators_root` names another network (400).
    #[error("wrong genesis/fork: the request's genesis_validators_root {got} is not this network's {expected}")]
    WrongGenesis {
        /// The configured root.
        expected: Root,
        /// The request's root.
        got: Root,
    },
    /// No key for this pubkey (404).
    #[error("no key loaded for {0}")]
    UnknownKey(Pubkey),
    /// This agent does not hold signing authority (403).
    #[error("{}", not_holder_message(.holder))]
    NotHolder {
        /// The holder, if any.
        holder: Option<AgentId>,
    },
    /// `VOLUNTARY_EXIT` while `allow_voluntary_exit = false` (403). 403 rather than 400: the
    /// request is valid and understood, and the agent refuses it by policy (RFC 9110 §15.5.4);
    /// a client must not retry it unchanged. Checked before authority, so nothing is recorded
    /// or signed.
    #[error("voluntary exits are disabled by configuration (allow_voluntary_exit = false)")]
    VoluntaryExitDisabled,
    /// A slashable message more than `max_future_epochs` ahead of the chain's wall-clock
    /// epoch (400): recorded, it would block the validator until then. Nothing is recorded
    /// or signed.
    #[error("{0}")]
    FutureEpoch(failover_common::chain_time::FutureEpoch),
    /// Slashing protection refused the record (412).
    #[error("refused by slashing protection: {}", .0.label())]
    SlashingRefused(Refusal),
    /// No committed verdict or no known authority: nothing signed (503).
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside the agent; details are logged, not returned (500).
    #[error("internal error")]
    Internal,
}

fn not_holder_message(holder: &Option<AgentId>) -> String {
    match holder {
        Some(h) => format!("this agent does not hold signing authority; the holder is {h}"),
        None => "no agent holds signing authority (fenced, e.g. during a handover)".into(),
    }
}

impl ApiError {
    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_)
            | ApiError::UnsupportedType(_)
            | ApiError::WrongGenesis { .. }
            | ApiError::FutureEpoch(_) => StatusCode::BAD_REQUEST,
            ApiError::UnknownKey(_) => StatusCode::NOT_FOUND,
            ApiError::NotHolder { .. } | ApiError::VoluntaryExitDisabled => StatusCode::FORBIDDEN,
            ApiError::SlashingRefused(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable code for the body, also the metric `outcome` label family.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::UnsupportedType(_) => "unsupported_type",
            ApiError::WrongGenesis { .. } => "wrong_genesis",
            ApiError::FutureEpoch(_) => "future_epoch",
            ApiError::UnknownKey(_) => "unknown_key",
            ApiError::NotHolder { .. } => "not_holder",
            ApiError::VoluntaryExitDisabled => "voluntary_exit_disabled",
            ApiError::SlashingRefused(_) => "slashing_protection",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal => "internal",
        }
    }
}

impl From<SignRequestError> for ApiError {
    fn from(e: SignRequestError) -> Self {
        match e {
            SignRequestError::UnsupportedType(t) => ApiError::UnsupportedType(t),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code().into(),
            message: self.to_string(),
            holder: match &self {
                ApiError::NotHolder { holder } => holder.clone(),
                _ => None,
            },
            refusal: match &self {
                ApiError::SlashingRefused(r) => Some(r.clone()),
                _ => None,
            },
        };
        (self.status(), Json(body)).into_response()
    }
}

#[derive(Serialize)]
struct SignatureBody {
    signature: Signature,
}

/// Whether a signature answer is JSON (`{"signature": …}`) rather than the bare hex text.
///
/// Web3Signer's rule (`Eth2SignForIdentifierHandler.getAcceptableContentType`): JSON when any
/// media range of any `Accept` header is `application/json` or `*/*` (case-insensitive,
/// parameters such as `q` ignored); `text/plain` otherwise, including when `Accept` is absent
/// or unreadable. The OpenAPI (`signing/paths/sign.yaml`) offers both media types for 200 and
/// names no default, so its implementation decides.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|range| range.split(';').next().unwrap_or("").trim())
        .any(|media| {
            media.eq_ignore_ascii_case("application/json") || media.eq_ignore_ascii_case("*/*")
        })
}

async fn sign(
    State(agent): State<Arc<Agent>>,
    Path(identifier): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let mut kind: &'static str = "unknown";
    let result = sign_request(&agent, &identifier, &body, started, &mut kind).await;
    let outcome = match &result {
        Ok(_) => "signed",
        Err(e) => e.code(),
    };
    agent
        .metrics
        .sign_requests
        .with_label_values(&[kind, outcome])
        .inc();
    agent
        .metrics
        .sign_duration
        .with_label_values(&[kind])
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(sig) if wants_json(&headers) => Json(SignatureBody { signature: sig }).into_response(),
        Ok(sig) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            sig.to_string(),
        )
            .into_response(),
        Err(e) => {
            tracing::debug!(code = e.code(), error = %e, "sign request refused");
            e.into_response()
        }
    }
}

/// The sign path; `kind` receives the request type as soon as it is known (metrics label).
async fn sign_request(
    agent: &Agent,
    identifier: &str,
    body: &[u8],
    started: Instant,
    kind: &mut &'static str,
) -> Result<Signature, ApiError> {
    let pubkey: Pubkey = identifier.parse().map_err(|_| {
        ApiError::BadRequest("identifier must be a 0x-prefixed 48-byte BLS public key".into())
    })?;
    let sk = match agent.keys.get(&pubkey) {
        KeyLookup::Ready(sk) => sk,
        KeyLookup::Loading => {
            return Err(ApiError::Unavailable(
                "keys are still being decrypted; retry shortly".into(),
            ))
        }
        KeyLookup::Unknown => return Err(ApiError::UnknownKey(pubkey)),
    };

    let task =
        eth::signing_task_from_json_for_chain::<eth::Mainnet>(body, &agent.chain).map_err(|e| {
            if let SignRequestError::UnsupportedType(t) = &e {
                // Label only with a value from the fixed list, never with client text.
                if let Some(k) = WEB3SIGNER_TYPES.iter().copied().find(|k| *k == t.as_str()) {
                    *kind = k;
                }
            }
            ApiError::from(e)
        })?;
    *kind = task.kind;

    if let Some(got) = task.genesis_validators_root {
        let expected = agent.config.gvr();
        if got != expected {
            return Err(ApiError::WrongGenesis { expected, got });
        }
    }
    if let (Some(message), Some(timing)) = (&task.slashable, agent.config.timing()) {
        let spe = agent.config.slots_per_epoch;
        let epoch = match *message {
            SlashableMessage::Block { slot } => {
                failover_common::chain_time::epoch_of_slot(slot, spe)
            }
            SlashableMessage::Attestation {
                source_epoch,
                target_epoch,
            } => source_epoch.max(target_epoch),
        };
        let current = timing.epoch_at(failover_common::chain_time::now_ms(), spe);
        failover_common::chain_time::check_future(epoch, current, agent.config.max_future_epochs)
            .map_err(ApiError::FutureEpoch)?;
    }
    if task.kind == "VOLUNTARY_EXIT" && !agent.config.allow_voluntary_exit {
        return Err(ApiError::VoluntaryExitDisabled);
    }

    let token = match agent.authority.current() {
        SigningState::Enabled { token } => token,
        SigningState::Fenced { holder } => return Err(ApiError::NotHolder { holder }),
        SigningState::Unknown => {
            let why = agent
                .last_poll_error()
                .map(|e| format!("; last authority poll: {e}"))
                .unwrap_or_default();
            return Err(ApiError::Unavailable(format!(
                "signing authority unknown: no recent answer from the coordinators{why}"
            )));
        }
    };

    // Start the signature now, on the pool, while the record commits; it is released below
    // only on a committed Valid/SameData verdict, and dropped unreleased on every early
    // return (I4: computing early is allowed, releasing early is not).
    let pending = agent.sign_pool.submit(
        sk.secret(),
        task.signing_root,
        agent.metrics.signatures_discarded.clone(),
    );

    if let Some(message) = task.slashable {
        let item = match message {
            SlashableMessage::Block { slot } => RecordItem::Block {
                pubkey,
                slot,
                signing_root: task.signing_root,
            },
            SlashableMessage::Attestation {
                source_epoch,
                target_epoch,
            } => RecordItem::Attestation {
                pubkey,
                source_epoch,
                target_epoch,
                signing_root: task.signing_root,
            },
        };
        let deadline = started + agent.config.record_deadline();
        let recorded_from = Instant::now();
        let outcome = agent.batcher.record(item, token, deadline).await;
        if let RecordOutcome::Verdict(_) = &outcome {
            // Any committed verdict passed the coordinator's holder-and-token check after this
            // record was queued: the same evidence as an authority view read then.
            agent.authority.confirm_by_verdict(token, recorded_from);
        }
        match outcome {
            RecordOutcome::Verdict(Verdict::Valid | Verdict::SameData) => {}
            RecordOutcome::Verdict(Verdict::Refused(Refusal::FutureEpoch {
                epoch,
                current,
                margin,
            })) => {
                return Err(ApiError::FutureEpoch(
                    failover_common::chain_time::FutureEpoch {
                        epoch,
                        current,
                        margin,
                    },
                ))
            }
            RecordOutcome::Verdict(Verdict::Refused(Refusal::NotRegistered)) => {
                return Err(ApiError::Unavailable(
                    "this key is not registered with the coordinators yet; retry shortly".into(),
                ))
            }
            RecordOutcome::Verdict(Verdict::Refused(refusal)) => {
                return Err(ApiError::SlashingRefused(refusal))
            }
            RecordOutcome::NotHolder { holder, token: t } => {
                return Err(
                    match agent.authority.observe_not_holder(holder.clone(), t, token) {
                        // Re-granted to us with a newer token: this record was not accepted,
                        // but a retry will be.
                        SigningState::Enabled { .. } => ApiError::Unavailable(
                            "the fencing token changed while recording; retry".into(),
                        ),
                        _ => ApiError::NotHolder { holder },
                    },
                );
            }
            RecordOutcome::Unavailable => {
                return Err(ApiError::Unavailable(format!(
                    "no committed slashing-protection verdict within {} ms; nothing was signed",
                    agent.config.record_deadline_ms
                )))
            }
        }
    }

    let sig = pending.release().await.map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        ApiError::Internal
    })?;
    // The key's in-use guard is held until the signature exists (keymanager DELETE waits).
    drop(sk);
    agent.metrics.signatures.inc();
    Ok(sig)
}

async fn public_keys(State(agent): State<Arc<Agent>>) -> Json<Vec<Pubkey>> {
    Json(agent.keys.pubkeys())
}

/// Whether the client of `GET /upcheck` accepts only JSON: some media range of its `Accept`
/// headers is `application/json` and none admits `text/plain` (`text/plain`, `text/*`,
/// `*/*`; case-insensitive, parameters ignored). Lodestar's external-signer client (1.5 to
/// 1.22 at least) sends `Accept: application/json` and reads `{"status":"OK"}`; Web3Signer
/// answers the text `OK`, which every other client reads.
pub fn upcheck_wants_json(headers: &HeaderMap) -> bool {
    let ranges: Vec<String> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|range| {
            range
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    ranges.iter().any(|m| m == "application/json")
        && !ranges
            .iter()
            .any(|m| m == "text/plain" || m == "text/*" || m == "*/*")
}

/// `GET /upcheck`: `{"status":"OK"}` (`application/json`) to a client that accepts only JSON
/// ([`upcheck_wants_json`]), the text `OK` (`text/plain`) otherwise, as Web3Signer does.
async fn upcheck(headers: HeaderMap) -> Response {
    if upcheck_wants_json(&headers) {
        return Json(serde_json::json!({ "status": "OK" })).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        "OK",
    )
        .into_response()
}

/// One entry of the Web3Signer `HealthCheck.checks` list.
#[derive(Debug, Serialize)]
struct Check {
    id: &'static str,
    status: &'static str,
}

/// Web3Signer `HealthCheck` body.
#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    checks: Vec<Check>,
    outcome: &'static str,
}

fn up(ok: bool) -> &'static str {
    if ok {
        "UP"
    } else {
        "DOWN"
    }
}

async fn healthcheck(State(agent): State<Arc<Agent>>) -> impl IntoResponse {
    let keys_ok = agent.keys.is_complete();
    let coordinator_ok = agent.authority.coordinator_reachable();
    let all = keys_ok && coordinator_ok;
    let body = Health {
        status: up(all),
        checks: vec![
            Check {
                id: "keys-check",
                status: up(keys_ok),
            },
            Check {
                id: "coordinator-check",
                status: up(coordinator_ok),
            },
        ],
        outcome: up(all),
    };
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

async fn metrics(State(agent): State<Arc<Agent>>) -> impl IntoResponse {
    agent.metrics.keys_loaded.set(agent.keys.count() as i64);
    agent.authority.refresh_metric();
    if let Some(tls) = &agent.tls {
        agent.metrics.refresh_tls(tls);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        agent.metrics.render(),
    )
}
