//! The agent API: `POST /v1/agent/register`, `/v1/agent/heartbeat`, `/v1/agent/records`
//! and `GET /v1/authority` (agent imports are in `slashing`).
//!
//! Invariants: an agent acts only as itself (the body's `agent` matches its token); a record
//! batch is answered only with committed verdicts, one per item, or not at all (503, fail
//! closed); a far-future item is refused at the edge and never proposed.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use failover_protocol::{
    AuthorityView, ErrorCode, HeartbeatRequest, RecordBatchRequest, RecordBatchResponse,
    RegisterAgentRequest, Verdict,
};

use serde::Deserialize;

use crate::state::Response;

use super::{linearizable_read, parse, rejected_to_error, ApiError, ApiResult, AppState, Caller};

/// Longest wait of one `GET /v1/authority?wait_ms=…` (ms), whatever the query asks.
pub const MAX_AUTHORITY_WAIT_MS: u64 = 25_000;

/// Query of `GET /v1/authority`: empty for an immediate answer, or all three fields for a
/// long poll by an agent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthorityQuery {
    /// Hold the request up to this long (ms; capped at [`MAX_AUTHORITY_WAIT_MS`] and below the
    /// server's request timeout) while the authority is as the caller last saw it.
    wait_ms: Option<u64>,
    /// The fencing token the caller last saw.
    token: Option<u64>,
    /// Whether the caller last saw itself as the holder.
    holding: Option<bool>,
}

/// `GET /v1/authority`: the holder and fencing token, read linearizably (the leader confirms
/// its leadership with a quorum; a follower forwards once to the leader; 503 without a
/// reachable leader). Agents measure their short lease for non-slashable types from the moment
/// they sent this request, so a view must never be older than the request: a follower cut off
/// from the leader must not answer from its stale state (DESIGN.md, "short lease").
///
/// Long poll (issue 15 item 6): `?wait_ms=W&token=T&holding=B`, from an agent only. While this
/// node's applied authority still has token `T` and the caller's holding is `B`, the request
/// waits (at most `W` ms, capped); on a change, or at the end of the wait, the view is read
/// linearizably as above. The answer's `waited_ms` says how long it waited before that read
/// began, so the agent can date the view at its request time plus `waited_ms`.
///
/// Errors: 400 for a malformed or partial query, or a long poll by an operator; 503 as above.
pub(super) async fn authority(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<AuthorityQuery>, QueryRejection>,
) -> ApiResult<HttpResponse> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let waited_ms = match (q.wait_ms, q.token, q.holding) {
        (None, None, None) => 0,
        (Some(wait_ms), Some(token), Some(holding)) => {
            let agent = caller.agent().map_err(|_| {
                ApiError::bad_request("wait_ms is for agents: an operator reads /v1/authority")
            })?;
            wait_for_authority_change(&s, &agent, token, holding, wait_ms).await
        }
        _ => {
            return Err(ApiError::bad_request(
                "a long poll needs wait_ms, token and holding together",
            ))
        }
    };
    linearizable_read(
        &s,
        &caller,
        &headers,
        "/v1/authority",
        "the signing authority",
        |s| {
            let st = s.node.state.read().expect("state lock");
            Json(AuthorityView {
                holder: st.data.authority.holder.clone(),
                token: st.data.authority.token,
                applied_index: st.last_applied.map_or(0, |l| l.index),
                waited_ms,
            })
            .into_response()
        },
    )
    .await
}

/// Waits until this node's applied authority differs from what `agent` last saw (`token`,
/// and whether it held authority), or `wait_ms` passes (capped at [`MAX_AUTHORITY_WAIT_MS`]
/// and at the request timeout less the write timeout, so the read after it still fits).
/// Returns how long it waited (ms). Woken by every change of openraft's metrics, which
/// include the last applied index.
async fn wait_for_authority_change(
    s: &AppState,
    agent: &str,
    token: u64,
    holding: bool,
    wait_ms: u64,
) -> u64 {
    let limits = &s.node.config.limits;
    let cap = limits
        .request_timeout_ms
        .saturating_sub(s.node.config.raft.write_timeout_ms)
        .saturating_sub(500)
        .min(MAX_AUTHORITY_WAIT_MS);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms.min(cap));
    let mut metrics = s.node.raft.metrics();
    loop {
        let changed = {
            let st = s.node.state.read().expect("state lock");
            let a = &st.data.authority;
            a.token != token || (a.holder.as_deref() == Some(agent)) != holding
        };
        if changed {
            break;
        }
        match tokio::time::timeout_at(deadline, metrics.changed()).await {
            Ok(Ok(())) => continue,
            // The wait is over, or the node is shutting down.
            _ => break,
        }
    }
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

pub(super) async fn register_agent(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let agent = caller.agent()?;
    let req: RegisterAgentRequest = parse(&body)?;
    if req.agent != agent {
        return Err(ApiError::wrong_principal(format!(
            "token belongs to {agent}, not {}",
            req.agent
        )));
    }
    s.node
        .write(crate::state::Command::RegisterAgent {
            agent: req.agent,
            region: req.region,
            pubkeys: req.pubkeys,
        })
        .await?;
    Ok(Json(serde_json::json!({})))
}

pub(super) async fn heartbeat(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let agent = caller.agent()?;
    let req: HeartbeatRequest = parse(&body)?;
    if req.agent != agent {
        return Err(ApiError::wrong_principal(format!(
            "token belongs to {agent}, not {}",
            req.agent
        )));
    }
    s.node.heartbeats.lock().expect("heartbeats lock").insert(
        agent,
        crate::node::Heartbeat {
            at: Instant::now(),
            keys_loaded: req.keys_loaded,
        },
    );
    Ok(Json(serde_json::json!({})))
}

pub(super) async fn record_batch(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<RecordBatchResponse>> {
    let started = Instant::now();
    let agent = caller.agent()?;
    let req: RecordBatchRequest = parse(&body)?;
    if req.agent != agent {
        return Err(ApiError::wrong_principal(format!(
            "token belongs to {agent}, not {}",
            req.agent
        )));
    }
    if req.items.is_empty() || req.items.len() > s.node.config.max_batch {
        return Err(ApiError::bad_request(format!(
            "a batch holds 1 to {} items, got {}",
            s.node.config.max_batch,
            req.items.len()
        )));
    }
    let n = req.items.len();
    s.node.metrics.batch_size.observe(n as f64);
    let early = future_verdicts(&s, &req.items);
    let items: Vec<_> = req
        .items
        .into_iter()
        .zip(&early)
        .filter(|(_, v)| v.is_none())
        .map(|(i, _)| i)
        .collect();
    let out = if items.is_empty() {
        // Everything refused at the edge: nothing to propose, nothing recorded.
        Ok(crate::node::WriteOutcome {
            response: Response::Records { verdicts: vec![] },
            log_index: 0,
        })
    } else {
        s.node
            .write(crate::state::Command::RecordBatch {
                agent: req.agent,
                token: req.token,
                items,
            })
            .await
    };
    s.node
        .metrics
        .batch_latency
        .observe(started.elapsed().as_secs_f64());
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            s.node
                .metrics
                .records
                .with_label_values(&["unavailable"])
                .inc_by(n as u64);
            return Err(e.into());
        }
    };
    match out.response {
        Response::Records { verdicts } => {
            // Put the edge refusals back in request order.
            let mut committed = verdicts.into_iter();
            let verdicts: Vec<Verdict> = early
                .into_iter()
                .map(|e| e.or_else(|| committed.next()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::Internal,
                        "the state machine answered fewer verdicts than items",
                    )
                })?;
            for v in &verdicts {
                let label = match v {
                    Verdict::Valid => "valid",
                    Verdict::SameData => "same_data",
                    Verdict::Refused(r) => r.label(),
                };
                s.node.metrics.records.with_label_values(&[label]).inc();
            }
            Ok(Json(RecordBatchResponse {
                verdicts,
                log_index: out.log_index,
            }))
        }
        Response::NotHolder { holder, token } => {
            s.node
                .metrics
                .records
                .with_label_values(&["not_holder"])
                .inc_by(n as u64);
            let mut e = ApiError::new(
                ErrorCode::NotHolder,
                format!(
                    "agent {agent} does not hold signing authority; holder is {}",
                    holder.as_deref().unwrap_or("nobody (fenced)")
                ),
            );
            e.body.holder = holder;
            e.body.token = Some(token);
            Err(e)
        }
        Response::Rejected { code, message } => Err(rejected_to_error(code, message)),
        other => Err(ApiError::new(
            ErrorCode::Internal,
            format!("unexpected state machine answer {other:?}"),
        )),
    }
}

/// The far-future bound on a record batch, at the edge (apply reads no clock): the verdict
/// [`Refusal::FutureEpoch`](failover_protocol::Refusal::FutureEpoch) for every item whose
/// epoch (a block's `slot / SLOTS_PER_EPOCH`, an attestation's larger of source and target)
/// lies more than `limits.max_future_epochs` ahead of the chain clock, `None` for the others.
/// Refused items are never proposed, so one far-future request cannot fail the other items of
/// its batch.
pub(super) fn future_verdicts(
    s: &AppState,
    items: &[failover_protocol::RecordItem],
) -> Vec<Option<Verdict>> {
    use failover_protocol::{RecordItem, Refusal};
    let spe = s.node.config.chain.slots_per_epoch;
    items
        .iter()
        .map(|i| {
            let epoch = match i {
                RecordItem::Block { slot, .. } => crate::slashing::epoch_of_slot(*slot, spe),
                RecordItem::Attestation {
                    source_epoch,
                    target_epoch,
                    ..
                } => (*source_epoch).max(*target_epoch),
            };
            s.node.check_future([epoch]).err().map(|e| {
                Verdict::Refused(Refusal::FutureEpoch {
                    epoch: e.epoch,
                    current: e.current,
                    margin: e.margin,
                })
            })
        })
        .collect()
}
