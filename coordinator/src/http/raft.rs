//! Raft RPC (`/raft/append`, `/raft/vote`, `/raft/snapshot`) and the internal write forwarded
//! by a follower (`/internal/v1/write`), for the other coordinators only.
//!
//! Invariants: only another coordinator reaches these handlers (a member's node certificate
//! over TLS, the cluster token in plaintext); over TLS the node an RPC claims to come from
//! (the candidate of a vote, the leader of an append or snapshot) is the certificate's; a
//! node that may have lost acknowledged records grants no vote (`not_joined`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use failover_protocol::ErrorCode;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use crate::node::WriteOutcome;
use crate::{NodeId, TypeConfig};

use super::{parse, ApiError, ApiResult, AppState, Caller};

pub(super) async fn internal_write(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WriteOutcome>> {
    s.cluster(&caller, &headers)?;
    let cmd: crate::state::Command = parse(&body)?;
    // Only what a follower legitimately forwards: the commands its own agent and operator
    // handlers propose. Finality evidence is proposed by the leader from its own beacon polls
    // and never arrives from outside; accepting it here would let any holder of the cluster
    // token open the finality gate of a handover.
    if matches!(cmd, crate::state::Command::Finality { .. }) {
        return Err(ApiError::forbidden(
            "finality evidence is proposed only by the leader from its own beacon nodes; it is \
             never forwarded",
        ));
    }
    Ok(Json(s.node.write_local(cmd).await?))
}

pub(super) async fn raft_append(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    s.cluster(&caller, &headers)?;
    let req: AppendEntriesRequest<TypeConfig> = parse(&body)?;
    caller.sent_by(req.vote.leader_id().voted_for().unwrap_or_default())?;
    if let Some(c) = req.leader_commit {
        s.node.join.observe_leader_commit(c.index);
    }
    Ok(Json(s.node.raft.append_entries(req).await).into_response())
}

pub(super) async fn raft_vote(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    s.cluster(&caller, &headers)?;
    let req: VoteRequest<NodeId> = parse(&body)?;
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
    Ok(Json(s.node.raft.vote(req).await).into_response())
}

pub(super) async fn raft_snapshot(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    s.cluster(&caller, &headers)?;
    let req: InstallSnapshotRequest<TypeConfig> = parse(&body)?;
    caller.sent_by(req.vote.leader_id().voted_for().unwrap_or_default())?;
    if let Some(l) = req.meta.last_log_id {
        s.node.join.observe_leader_commit(l.index);
    }
    let last_chunk = req.done;
    let res = s.node.raft.install_snapshot(req).await;
    if last_chunk && res.is_ok() {
        s.node.metrics.snapshot_installs.inc();
    }
    Ok(Json(res).into_response())
}
