//! The operator API: status, handovers (request, approve, abort), the approval policy and the
//! audit record.
//!
//! Invariants: only operator tokens reach these handlers; the operator named in a command is
//! the authenticated one, never a field of the body; every write is counted in
//! `failover_operator_actions_total`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::Json;
use failover_protocol::{
    AbortBody, AgentStatus, ApproveBody, AuditEntry, ErrorCode, Handover, HandoverRequestBody,
    MemberStatus, PolicyView, StatusView,
};
use serde::Deserialize;

use crate::node::now_ms;
use crate::state::Response;
use crate::NodeId;

use super::{operator_command, parse, ApiError, ApiResult, AppState, Caller};

pub(super) async fn status(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<StatusView>> {
    caller.operator()?;
    let m = s.node.raft.metrics().borrow().clone();
    let leader = s.node.leader();
    let regions: HashMap<NodeId, String> = s
        .node
        .config
        .peers
        .iter()
        .map(|p| (p.id, p.region.clone()))
        .collect();
    let members = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, n)| MemberStatus {
            id: *id,
            url: n.addr.clone(),
            region: regions.get(id).cloned(),
        })
        .collect();
    let hb = s.node.heartbeats.lock().expect("heartbeats lock").clone();
    let st = s.node.state.read().expect("state lock");
    let agents = st
        .data
        .agents
        .iter()
        .map(|(id, a)| AgentStatus {
            id: id.clone(),
            region: a.region.clone(),
            pubkeys: a.pubkeys.len(),
            records_accepted: a.records_accepted,
            heartbeat_age_seconds: hb.get(id).map(|h| h.at.elapsed().as_secs_f64()),
        })
        .collect();
    Ok(Json(StatusView {
        node_id: s.node.id,
        region: s.node.config.me().region.clone(),
        leader_id: leader.as_ref().map(|l| l.0),
        leader_url: leader.map(|l| l.1),
        term: m.current_term,
        last_log_index: m.last_log_index,
        applied_index: m.last_applied.map(|l| l.index),
        members,
        holder: st.data.authority.holder.clone(),
        token: st.data.authority.token,
        finality: st.data.finality.clone(),
        agents,
        validators: st.data.validators.len(),
        handovers: st.data.handovers.values().cloned().collect(),
    }))
}

pub(super) async fn list_handovers(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Handover>>> {
    caller.operator()?;
    let st = s.node.state.read().expect("state lock");
    Ok(Json(st.data.handovers.values().cloned().collect()))
}

pub(super) async fn get_handover(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<Json<Handover>> {
    caller.operator()?;
    let st = s.node.state.read().expect("state lock");
    st.data
        .handovers
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no handover {id}")))
}

pub(super) async fn operator_write(
    s: &AppState,
    action: &str,
    cmd: crate::state::Command,
) -> ApiResult<Json<Handover>> {
    operator_command(s, action, cmd, |r| match r {
        Response::Handover { handover } => Ok(Json(*handover)),
        other => Err(other),
    })
    .await
}

pub(super) async fn request_handover(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<Handover>> {
    let operator = caller.operator()?;
    let req: HandoverRequestBody = parse(&body)?;
    tracing::info!(%operator, to = %req.to, "handover requested");
    // The liveness window starts after the current epoch, so a coordinator with beacon nodes
    // must know it: otherwise the window would start at the old holder's last message, which
    // may be older than any beacon node remembers liveness for.
    let chain_epoch = s
        .node
        .chain_clock
        .current_epoch(s.node.config.chain.slots_per_epoch);
    if chain_epoch.is_none() && !s.node.config.beacon.urls.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "this coordinator does not know the chain's current epoch yet (no beacon node has \
             answered); the liveness gate's window starts there, so retry once a beacon node \
             answers",
        ));
    }
    let cmd = crate::state::Command::RequestHandover {
        to: req.to,
        reason: req.reason,
        operator,
        at_ms: now_ms(),
        policy: s.node.config.policy(),
        chain_epoch,
    };
    operator_write(&s, "request", cmd).await
}

pub(super) async fn approve_handover(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
    body: Bytes,
) -> ApiResult<Json<Handover>> {
    let operator = caller.operator()?;
    let req: ApproveBody = if body.is_empty() {
        ApproveBody::default()
    } else {
        parse(&body)?
    };
    if req.acknowledge_validators.len() > failover_protocol::MAX_ACKNOWLEDGED_VALIDATORS {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "acknowledge_validators names {} validators; at most {}",
                req.acknowledge_validators.len(),
                failover_protocol::MAX_ACKNOWLEDGED_VALIDATORS
            ),
        ));
    }
    if req.break_glass {
        tracing::warn!(
            %operator,
            handover = id,
            acknowledged = req.acknowledge_validators.len(),
            "BREAK-GLASS approval submitted"
        );
    }
    let cmd = crate::state::Command::ApproveHandover {
        id,
        operator,
        break_glass: req.break_glass,
        at_ms: now_ms(),
        policy: s.node.config.policy(),
        acknowledged: req.acknowledge_validators,
    };
    operator_write(&s, "approve", cmd).await
}

pub(super) async fn abort_handover(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
    body: Bytes,
) -> ApiResult<Json<Handover>> {
    let operator = caller.operator()?;
    let req: AbortBody = if body.is_empty() {
        AbortBody::default()
    } else {
        parse(&body)?
    };
    let cmd = crate::state::Command::AbortHandover {
        id,
        operator,
        reason: req.reason,
        at_ms: now_ms(),
    };
    operator_write(&s, "abort", cmd).await
}

pub(super) async fn get_policy(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<PolicyView>> {
    caller.operator()?;
    let st = s.node.state.read().expect("state lock");
    Ok(Json(PolicyView {
        policy: st.data.policy,
        pending: st.data.pending_policy.clone(),
        configured: s.node.config.policy().approval(),
    }))
}

/// `POST /v1/policy` (operator): proposes a new approval policy (body: `approvals_required`,
/// `two_person_rule`, `break_glass_approvals`; unknown fields refused). It applies only once
/// another operator confirms it (`POST /v1/policy/confirm`). Errors: 400 for an unusable
/// policy or one the operators configured on this node can never meet (`u32::MAX` approvals
/// would stop every handover), 503 without a committed answer.
pub(super) async fn propose_policy(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let operator = caller.operator()?;
    let policy: failover_protocol::ApprovalPolicy = parse(&body)?;
    policy.check().map_err(ApiError::bad_request)?;
    // A policy no set of operators can meet would stop every future handover.
    let unmet =
        crate::config::unreachable_approvals(&policy, s.node.access.current().operators().len());
    if !unmet.is_empty() {
        return Err(ApiError::bad_request(unmet.join("; ")));
    }
    tracing::warn!(%operator, ?policy, "approval policy change proposed");
    let cmd = crate::state::Command::ProposePolicy {
        policy,
        operator,
        at_ms: now_ms(),
    };
    operator_command(&s, "policy_propose", cmd, |r| match r {
        Response::Ok => Ok(()),
        other => Err(other),
    })
    .await?;
    Ok(Json(serde_json::json!({ "pending": policy })))
}

/// `POST /v1/policy/confirm` (operator): confirms the pending policy change, which then
/// applies. Errors: 403 when the confirming operator proposed it (two-person rule), 404 when
/// nothing is pending, 503 without a committed answer.
pub(super) async fn confirm_policy(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    let operator = caller.operator()?;
    let cmd = crate::state::Command::ConfirmPolicy {
        operator,
        at_ms: now_ms(),
    };
    operator_command(&s, "policy_confirm", cmd, |r| match r {
        Response::Ok => Ok(Json(serde_json::json!({ "confirmed": true }))),
        other => Err(other),
    })
    .await
}

/// Query of `GET /v1/audit`.
#[derive(Debug, Deserialize)]
pub(super) struct AuditQuery {
    /// Only entries at or after this log index.
    #[serde(default)]
    pub since: u64,
}

pub(super) async fn audit(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    caller.operator()?;
    let st = s.node.state.read().expect("state lock");
    Ok(Json(
        st.data
            .audit
            .iter()
            .filter(|e| e.log_index >= q.since)
            .cloned()
            .collect(),
    ))
}
