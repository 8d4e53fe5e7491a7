//! Raft RPC (`/raft/append`, `/raft/vote`, `/raft/snapshot`) and the internal write forwarded
//! by a follower (`/internal/v1/write`), for the other coordinators only.
//!
//! Bodies are read in either format of [`crate::codec`] (the versioned binary envelope, or
//! JSON) and answered in the request's format.
//!
//! Invariants: only another coordinator reaches these handlers (a member's node certificate
//! over TLS, the cluster token in plaintext); over TLS the node an RPC claims to come from
//! (the candidate of a vote, the leader of an append or snapshot) is the certificate's; a
//! node that may have lost acknowledged records grants no vote (`not_joined`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response as HttpResponse};
use failover_protocol::ErrorCode;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use crate::codec::{self, Format};
use crate::{NodeId, TypeConfig};

use super::{ApiError, ApiResult, AppState, Caller};

/// Decodes a request body in either format, and says which one it was.
///
/// Errors: 400 naming what does not decode (empty, unknown envelope or version, malformed).
fn decode<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<(T, Format)> {
    let bad = |e: codec::CodecError| ApiError::bad_request(format!("invalid body: {e}"));
    let format = Format::of(body).map_err(bad)?;
    Ok((codec::decode(body).map_err(bad)?, format))
}

/// `value` as a 200 answer in `format`.
fn answer<T: serde::Serialize>(format: Format, value: &T) -> ApiResult<HttpResponse> {
    let body = format.encode(value).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("cannot encode the answer: {e}"),
        )
    })?;
    Ok(([(CONTENT_TYPE, format.media_type())], body).into_response())
}

pub(super) async fn internal_write(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    s.cluster(&caller, &headers)?;
    let (cmd, format): (crate::state::Command, _) = decode(&body)?;
    // Only what a follower legitimately forwards: the commands its own agent and operator
    // handlers propose. Finality and liveness evidence is proposed by the leader from its own
    // beacon polls and never arrives from outside; accepting it here would let any holder of
    // the cluster token open the finality gate or the liveness gate of a handover.
    if cmd.is_leader_evidence() {
        return Err(ApiError::forbidden(
            "finality and liveness evidence is proposed only by the leader from its own beacon \
             nodes; it is never forwarded",
        ));
    }
    answer(format, &s.node.write_local(cmd).await?)
}

pub(super) async fn raft_append(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    s.cluster(&caller, &headers)?;
    let (req, format): (AppendEntriesRequest<TypeConfig>, _) = decode(&body)?;
    caller.sent_by(req.vote.leader_id().voted_for().unwrap_or_default())?;
    if let Some(c) = req.leader_commit {
        s.node.join.observe_leader_commit(c.index);
    }
    answer(format, &s.node.raft.append_entries(req).await)
}

pub(super) async fn raft_vote(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    s.cluster(&caller, &headers)?;
    let (req, format): (VoteRequest<NodeId>, _) = decode(&body)?;
    caller.sent_by(req.vote.leader_id().voted_for().unwrap_or_default())?;
    // A node that may have lost acknowledged records votes only once it caught up (`join`).
    if !s.node.join.may_vote_for(req.last_log_id.map(|l| l.index)) {
        return Err(ApiError::new(
            ErrorCode::NotJoined,
            format!(
                "node {} started with an empty store and has not caught up with the leader's \
                 log yet; it grants no vote to a candidate with history until it has",
                s.node.id
            ),
        ));
    }
    answer(format, &s.node.raft.vote(req).await)
}

pub(super) async fn raft_snapshot(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    s.cluster(&caller, &headers)?;
    let (req, format): (InstallSnapshotRequest<TypeConfig>, _) = decode(&body)?;
    caller.sent_by(req.vote.leader_id().voted_for().unwrap_or_default())?;
    if let Some(l) = req.meta.last_log_id {
        s.node.join.observe_leader_commit(l.index);
    }
    let last_chunk = req.done;
    let res = s.node.raft.install_snapshot(req).await;
    if last_chunk && res.is_ok() {
        s.node.metrics.snapshot_installs.inc();
    }
    answer(format, &res)
}
