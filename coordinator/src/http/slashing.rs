//! EIP-3076 interchange import (operators, and agents with proofs of possession) and export,
//! and the online backup.
//!
//! Invariants: an import is all-or-nothing and far-future entries are refused with a report
//! unless an operator overrides; exports and backups are read linearizably on the leader.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use failover_protocol::{AgentImportRequest, ErrorCode};
use serde::Deserialize;

use crate::access::Principal;
use crate::node::now_ms;
use crate::state::Response;

use super::{linearizable_read, operator_command, parse, ApiError, ApiResult, AppState, Caller};

/// `POST /v1/slashing/import`: an EIP-3076 interchange, all-or-nothing (`interchange`).
/// Operators and agents (an agent importing the history that comes with a keystore through
/// its keymanager API) may call it; the audit records the operator or `agent:<id>`.
///
/// Entries more than `limits.max_future_epochs` ahead of the chain clock are refused with
/// 400 `future_epoch` and a message naming them (up to 10, and the count), unless the
/// operator passes `?allow_future=true`, which the audit records. Operators only: an agent
/// imports through `POST /v1/agent/import`, proving it holds every key.
pub(super) async fn slashing_import(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> ApiResult<Json<failover_protocol::ImportSummary>> {
    let operator = match caller.principal.clone() {
        Principal::Operator(n) => n,
        _ => {
            return Err(ApiError::wrong_principal(
                "this endpoint needs an operator token; an agent imports history through \
                 POST /v1/agent/import, with a proof that it holds each key",
            ))
        }
    };
    let interchange: crate::interchange::Interchange = parse(&body).map_err(|e| {
        ApiError::bad_request(format!("not an EIP-3076 interchange: {}", e.body.message))
    })?;
    if !q.allow_future {
        check_import_future(&s, &interchange)?;
    } else {
        tracing::warn!(%operator, "slashing-protection import with the far-future bound overridden");
    }
    tracing::info!(%operator, validators = interchange.data.len(), "slashing-protection import");
    let cmd = crate::state::Command::ImportInterchange {
        interchange,
        genesis_validators_root: s.node.config.chain.genesis_validators_root,
        operator,
        at_ms: now_ms(),
        allow_future: q.allow_future,
        agent: None,
        possession: vec![],
    };
    operator_command(&s, "slashing_import", cmd, |r| match r {
        Response::Imported { summary } => Ok(Json(summary)),
        other => Err(other),
    })
    .await
}

/// Query of `POST /v1/slashing/import`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportQuery {
    /// Operators only: accept entries beyond the far-future bound (audited).
    #[serde(default)]
    pub allow_future: bool,
}

/// Refuses an import holding entries beyond the far-future bound, naming up to 10 of them
/// (`0x…: block slot S (epoch E)`, `0x…: attestation S→T`) and how many there are in all.
pub(super) fn check_import_future(
    s: &AppState,
    doc: &crate::interchange::Interchange,
) -> ApiResult<()> {
    let spe = s.node.config.chain.slots_per_epoch;
    let mut found: Vec<String> = Vec::new();
    let mut total = 0usize;
    let mut first_err = None;
    for v in &doc.data {
        for b in &v.signed_blocks {
            let epoch = crate::slashing::epoch_of_slot(b.slot, spe);
            if let Err(e) = s.node.check_future([epoch]) {
                total = total.saturating_add(1);
                if found.len() < 10 {
                    found.push(format!(
                        "{}: block slot {} (epoch {epoch})",
                        v.pubkey, b.slot
                    ));
                }
                first_err.get_or_insert(e);
            }
        }
        for a in &v.signed_attestations {
            if let Err(e) = s.node.check_future([a.source_epoch, a.target_epoch]) {
                total = total.saturating_add(1);
                if found.len() < 10 {
                    found.push(format!(
                        "{}: attestation {}→{}",
                        v.pubkey, a.source_epoch, a.target_epoch
                    ));
                }
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        None => Ok(()),
        Some(e) => Err(ApiError::new(
            ErrorCode::FutureEpoch,
            format!(
                "{total} entr{} of the interchange lie more than {} epoch(s) ahead of the chain's \
                 current epoch {}; nothing was imported. An operator who knows the file is \
                 right may import it with ?allow_future=true (audited). Entries: {}",
                if total == 1 { "y" } else { "ies" },
                e.margin,
                e.current,
                found.join("; ")
            ),
        )),
    }
}

/// Query of `GET /v1/slashing/export`.
#[derive(Debug, Deserialize)]
pub(super) struct ExportQuery {
    /// Comma-separated `0x` pubkeys; all validators when absent.
    #[serde(default)]
    pub pubkeys: Option<String>,
}

/// `GET /v1/slashing/export`: an EIP-3076 interchange of the committed history.
///
/// Linearizable: the leader confirms its leadership with a quorum before reading; a follower
/// forwards the request to the leader, so an export never misses a committed record.
/// Operators and agents (keymanager API `DELETE`) may call it.
pub(super) async fn slashing_export(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<ExportQuery>,
) -> ApiResult<HttpResponse> {
    caller.operator_or_agent()?;
    let pubkeys: Option<Vec<failover_common::types::Pubkey>> = q
        .pubkeys
        .as_deref()
        .map(|list| {
            list.split(',')
                .map(|p| {
                    p.trim()
                        .parse()
                        .map_err(|e| ApiError::bad_request(format!("pubkey {p:?}: {e}")))
                })
                .collect::<ApiResult<Vec<_>>>()
        })
        .transpose()?;
    let path = match &q.pubkeys {
        Some(p) => format!("/v1/slashing/export?pubkeys={p}"),
        None => "/v1/slashing/export".to_string(),
    };
    linearizable_read(&s, &caller, &headers, &path, "the committed history", |s| {
        let st = s.node.state.read().expect("state lock");
        let doc = st.data.export_interchange(
            s.node.config.chain.genesis_validators_root,
            pubkeys.as_deref(),
        );
        Json(doc).into_response()
    })
    .await
}

/// `GET /v1/backup` (operator): the committed replicated state as a backup file
/// (`backup` module: format version, genesis validators root, last applied log id, SHA-256
/// trailer), media type `application/vnd.failover.backup`.
///
/// Linearizable like the export (the leader confirms its leadership and applies up to the
/// read index; a follower forwards once): the file holds every write committed before the
/// request. The state and its `last_applied` are copied under one lock, so the file is one
/// consistent state. Errors: 401/403 without an operator token, 503 without a reachable
/// leader.
pub(super) async fn backup(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<HttpResponse> {
    let operator = caller.operator()?;
    linearizable_read(
        &s,
        &caller,
        &headers,
        "/v1/backup",
        "the state for a backup",
        |s| {
            let snapshot = s.node.state.read().expect("state lock").clone();
            let bytes = crate::backup::encode(
                &snapshot,
                s.node.config.chain.genesis_validators_root,
                s.node.id,
                s.node.cluster_credential_sha256(),
                now_ms(),
            );
            tracing::info!(
                %operator,
                last_applied = snapshot.last_applied.map_or(0, |l| l.index),
                bytes = bytes.len(),
                "backup served"
            );
            (
                [
                    (
                        axum::http::header::CONTENT_TYPE,
                        crate::backup::CONTENT_TYPE,
                    ),
                    (
                        axum::http::header::CONTENT_DISPOSITION,
                        "attachment; filename=\"coordinator.backup\"",
                    ),
                ],
                bytes,
            )
                .into_response()
        },
    )
    .await
}

/// `POST /v1/agent/import` (agent, [`AgentImportRequest`]): the EIP-3076 history of keys the
/// agent holds, as its keymanager API imports them. Every validator in the file needs a valid
/// proof of possession by this agent (403 `forbidden` naming the keys otherwise, checked here
/// and again in apply, [`crate::state::unproven_keys`]); more than
/// [`crate::state::MAX_AGENT_IMPORT_KEYS`] validators is a 400; the far-future bound applies
/// with no override. The audit names the
/// actor `agent:<id>`.
pub(super) async fn agent_import(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<failover_protocol::ImportSummary>> {
    let agent = caller.agent()?;
    let req: AgentImportRequest = parse(&body)?;
    if req.agent != agent {
        return Err(ApiError::wrong_principal(format!(
            "token belongs to {agent}, not {}",
            req.agent
        )));
    }
    let interchange: crate::interchange::Interchange = serde_json::from_value(req.interchange)
        .map_err(|e| ApiError::bad_request(format!("not an EIP-3076 interchange: {e}")))?;
    crate::state::unproven_keys(&interchange, &agent, &req.possession).map_err(|e| {
        if e.contains("does not prove") {
            ApiError::forbidden(e)
        } else {
            ApiError::bad_request(e)
        }
    })?;
    check_import_future(&s, &interchange)?;
    tracing::info!(%agent, validators = interchange.data.len(), "slashing-protection import by an agent");
    let cmd = crate::state::Command::ImportInterchange {
        interchange,
        genesis_validators_root: s.node.config.chain.genesis_validators_root,
        operator: format!("agent:{agent}"),
        at_ms: now_ms(),
        allow_future: false,
        agent: Some(agent),
        possession: req.possession,
    };
    operator_command(&s, "agent_import", cmd, |r| match r {
        Response::Imported { summary } => Ok(Json(summary)),
        other => Err(other),
    })
    .await
}
