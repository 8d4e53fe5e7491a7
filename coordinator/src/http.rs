//! The coordinator's HTTP API (axum): agent API, operator API, Raft RPC, internal
//! forwarding, `/metrics` and `/health`.
//!
//! Invariants:
//! - every `/v1` and `/raft` route is authenticated by a bearer token compared by SHA-256 hash
//!   with the configured hashes; tokens are never logged;
//! - an agent can only act as itself (the body's `agent` must match its token);
//! - every error is an [`ApiErrorBody`] with a stable `code`; internal details never leak;
//! - a write with no committed answer is a 503 `unavailable` (fail closed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use failover_common::api::{
    AbortBody, AgentId, AgentImportRequest, ApiErrorBody, ApproveBody, AuthorityView,
    HandoverRequestBody, HeartbeatRequest, RecordBatchRequest, RecordBatchResponse,
    RegisterAgentRequest, Verdict,
};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tower_http::trace::TraceLayer;

use crate::access::Principal;
use crate::guard::AuthFailure;
use crate::node::{now_ms, Node, WriteError, WriteOutcome};
use crate::state::{AuditEntry, FinalityRecord, Handover, Response};
use crate::{NodeId, TypeConfig};

/// The one error type of the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ApiErrorBody,
    /// Set when the request failed to authenticate; counted by [`crate::guard`].
    auth_failure: Option<AuthFailure>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ApiErrorBody {
                code: code.into(),
                message: message.into(),
                holder: None,
                token: None,
                leader_hint: None,
            },
            auth_failure: None,
        }
    }
    fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", m)
    }
    fn unauthorized(why: AuthFailure) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown bearer token",
        );
        e.auth_failure = Some(why);
        e
    }
    fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    /// 403 for a valid token used where its principal may not act: the wrong kind of
    /// principal for the route, or an agent naming another agent. Counted as an
    /// authentication failure.
    fn wrong_principal(m: impl Into<String>) -> Self {
        let mut e = Self::forbidden(m);
        e.auth_failure = Some(AuthFailure::WrongPrincipal);
        e
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        let WriteError::Unavailable {
            message,
            leader_hint,
        } = e;
        let mut err = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        err.body.leader_hint = leader_hint;
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        let mut res = (self.status, Json(self.body)).into_response();
        if let Some(f) = self.auth_failure {
            res.extensions_mut().insert(f);
        }
        res
    }
}

type ApiResult<T> = Result<T, ApiError>;

mod membership;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    node: Arc<Node>,
}

impl AppState {
    /// The handler state of `node`; tokens are looked up in the node's table in force
    /// ([`Node::access`], reloadable).
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn principal(&self, headers: &HeaderMap) -> ApiResult<Principal> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized(AuthFailure::Missing))?;
        self.node
            .access
            .current()
            .principal(value)
            .ok_or_else(|| ApiError::unauthorized(AuthFailure::UnknownToken))
    }

    fn operator(&self, headers: &HeaderMap) -> ApiResult<String> {
        match self.principal(headers)? {
            Principal::Operator(n) => Ok(n),
            _ => Err(ApiError::wrong_principal(
                "this endpoint needs an operator token",
            )),
        }
    }

    fn agent(&self, headers: &HeaderMap) -> ApiResult<AgentId> {
        match self.principal(headers)? {
            Principal::Agent(a) => Ok(a),
            _ => Err(ApiError::wrong_principal(
                "this endpoint needs an agent token",
            )),
        }
    }

    /// The actor of an EIP-3076 import or export: an operator's name, or `agent:<id>` for an
    /// agent, which imports and exports the history of its own keys for the keymanager API
    /// (`/eth/v1/keystores`). Recorded in the audit trail.
    fn operator_or_agent(&self, headers: &HeaderMap) -> ApiResult<String> {
        match self.principal(headers)? {
            Principal::Operator(n) => Ok(n),
            Principal::Agent(a) => Ok(format!("agent:{a}")),
            Principal::Cluster => Err(ApiError::wrong_principal(
                "this endpoint needs an operator or agent token",
            )),
        }
    }

    /// The cluster token, and, when the request names its target node (the Raft network sends
    /// `x-failover-target`), this node: a Raft RPC meant for another node (a wrong membership
    /// address) is refused with 409 `wrong_node` instead of being applied here.
    fn cluster(&self, headers: &HeaderMap) -> ApiResult<()> {
        match self.principal(headers)? {
            Principal::Cluster => {}
            _ => {
                return Err(ApiError::wrong_principal(
                    "this endpoint needs the cluster token",
                ))
            }
        }
        let target = headers
            .get(crate::network::TARGET_HEADER)
            .and_then(|v| v.to_str().ok());
        match target {
            Some(t) if t != self.node.id.to_string() => Err(ApiError::new(
                StatusCode::CONFLICT,
                "wrong_node",
                format!("this is node {}, not node {t}", self.node.id),
            )),
            _ => Ok(()),
        }
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn rejected_to_error(code: &str, message: String) -> ApiError {
    let status = match code {
        "not_found" => StatusCode::NOT_FOUND,
        "forbidden" => StatusCode::FORBIDDEN,
        "bad_request" | "future_epoch" => StatusCode::BAD_REQUEST,
        _ => StatusCode::CONFLICT,
    };
    ApiError::new(status, code, message)
}

/// Builds the router with every route, for a node whose one listener serves both operators
/// and agents and the other coordinators ([`api_router`] merged with [`internal_router`]).
/// Separate from `main` so tests can drive it.
///
/// Limits (DESIGN.md "Trust boundaries and hostile input"): every route but `/health`,
/// `/metrics`, `/v1/openapi.yaml` and `/internal/v1/identity` needs a known bearer token,
/// checked before the body is read (`require_token`), so an unauthenticated client cannot
/// make the node buffer a body; bodies are capped at `limits.max_body_bytes`, the EIP-3076
/// import and the Raft routes at `limits.max_import_bytes`. Timeouts and the connection cap
/// belong to the listener ([`failover_common::serve`]).
pub fn router(node: Arc<Node>) -> Router {
    let state = AppState::new(node);
    layered(api_routes(&state).merge(internal_routes(&state)), &state)
}

/// The operator and agent API alone (`listen` when `raft_listen` is set): status, handovers,
/// audit, policy, slashing import/export, backup, membership, agent routes, with `/health`,
/// `/metrics`, the OpenAPI document and the identity probe.
pub fn api_router(node: Arc<Node>) -> Router {
    let state = AppState::new(node);
    layered(api_routes(&state), &state)
}

/// Raft RPC and the internal calls between coordinators alone (`raft_listen`): `/raft/*`,
/// `/internal/v1/write`, with `/health`, `/metrics` and the identity probe.
pub fn internal_router(node: Arc<Node>) -> Router {
    let state = AppState::new(node);
    layered(internal_routes(&state), &state)
}

fn api_routes(state: &AppState) -> Router<AppState> {
    let large = || DefaultBodyLimit::max(state.node.config.limits.max_import_bytes);
    let authenticated = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/authority", get(authority))
        .route("/v1/handovers", get(list_handovers).post(request_handover))
        .route("/v1/handovers/{id}", get(get_handover))
        .route("/v1/handovers/{id}/approve", post(approve_handover))
        .route("/v1/handovers/{id}/abort", post(abort_handover))
        .route("/v1/audit", get(audit))
        .route("/v1/policy", get(get_policy).post(propose_policy))
        .route("/v1/policy/confirm", post(confirm_policy))
        .route("/v1/slashing/import", post(slashing_import).layer(large()))
        .route("/v1/slashing/export", get(slashing_export))
        .route("/v1/backup", get(backup))
        .route("/v1/agent/register", post(register_agent))
        .route("/v1/agent/records", post(record_batch))
        .route("/v1/agent/heartbeat", post(heartbeat))
        .route("/v1/agent/import", post(agent_import).layer(large()))
        .route("/v1/cluster/members", get(membership::members))
        .route("/v1/cluster/learners", post(membership::add_learner))
        .route("/v1/cluster/voters", post(membership::change_voters))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/v1/openapi.yaml", get(openapi))
        .merge(authenticated)
}

fn internal_routes(state: &AppState) -> Router<AppState> {
    let large = || DefaultBodyLimit::max(state.node.config.limits.max_import_bytes);
    Router::new()
        .route("/raft/append", post(raft_append).layer(large()))
        .route("/raft/vote", post(raft_vote))
        .route("/raft/snapshot", post(raft_snapshot).layer(large()))
        .route("/internal/v1/write", post(internal_write).layer(large()))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
}

/// The routes every listener serves, and the layers every listener has.
fn layered(routes: Router<AppState>, state: &AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/internal/v1/identity", get(membership::identity))
        .merge(routes)
        .layer(DefaultBodyLimit::max(
            state.node.config.limits.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.node.metrics.clone(),
            count_unavailable,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.node.auth_guard.clone(),
            crate::guard::layer,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state.clone())
}

/// Refuses a request without a known bearer token (401) before its body is read; the handler
/// then checks that the principal may use the route.
async fn require_token(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> HttpResponse {
    match s.principal(req.headers()) {
        Ok(_) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Counts every 503 answer in `failover_unavailable_total{endpoint}`, labelled with the
/// matched route (`unmatched` for none): each one is a request this node failed closed on.
async fn count_unavailable(
    State(metrics): State<Arc<crate::metrics::Metrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> HttpResponse {
    let endpoint = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let res = next.run(req).await;
    if res.status() == StatusCode::SERVICE_UNAVAILABLE {
        metrics.unavailable.with_label_values(&[&endpoint]).inc();
    }
    res
}

/// `GET /health`: 200 `OK` while Raft runs; 503 once it stopped on a fatal error (a storage
/// failure stops the node rather than let it diverge; an operator must act).
async fn health(State(s): State<AppState>) -> HttpResponse {
    match &s.node.raft.metrics().borrow().running_state {
        Ok(()) => "OK".into_response(),
        Err(fatal) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("stopped: {fatal}")).into_response()
        }
    }
}

/// The OpenAPI document of this API (`docs/coordinator-openapi.yaml`), served unauthenticated.
pub const OPENAPI_YAML: &str = include_str!("../../docs/coordinator-openapi.yaml");

async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/yaml")],
        OPENAPI_YAML,
    )
}

async fn metrics(State(s): State<AppState>) -> String {
    let m = s.node.raft.metrics().borrow().clone();
    let heartbeats = s.node.heartbeats.lock().expect("heartbeats lock").clone();
    {
        let st = s.node.state.read().expect("state lock");
        s.node.metrics.refresh(&m, s.node.id, &st.data, &heartbeats);
    }
    s.node.metrics.render()
}

/// One agent as shown in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Agent id.
    pub id: AgentId,
    /// Region.
    pub region: String,
    /// Keys it announced.
    pub pubkeys: usize,
    /// Accepted records in total.
    pub records_accepted: u64,
    /// Seconds since its last heartbeat seen by this node, if any.
    pub heartbeat_age_seconds: Option<f64>,
}

/// One voter as shown in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// URL.
    pub url: String,
    /// Region from this node's config, if known.
    pub region: Option<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// Node answering.
    pub node_id: NodeId,
    /// Its region.
    pub region: String,
    /// Leader id known to this node.
    pub leader_id: Option<NodeId>,
    /// Leader URL.
    pub leader_url: Option<String>,
    /// Current term.
    pub term: u64,
    /// Last log index.
    pub last_log_index: Option<u64>,
    /// Last applied index.
    pub applied_index: Option<u64>,
    /// Voters.
    pub members: Vec<MemberStatus>,
    /// Authority holder.
    pub holder: Option<AgentId>,
    /// Fencing token.
    pub token: u64,
    /// Agreed finality.
    pub finality: Option<FinalityRecord>,
    /// Registered agents.
    pub agents: Vec<AgentStatus>,
    /// Validators with slashing-protection history.
    pub validators: usize,
    /// All handovers, oldest first.
    pub handovers: Vec<Handover>,
}

async fn status(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Json<StatusView>> {
    s.operator(&headers)?;
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

/// `GET /v1/authority`: the holder and fencing token, read linearizably (the leader confirms
/// its leadership with a quorum; a follower forwards once to the leader; 503 without a
/// reachable leader). Agents measure their short lease for non-slashable types from the moment
/// they sent this request, so a view must never be older than the request: a follower cut off
/// from the leader must not answer from its stale state (DESIGN.md, "short lease").
async fn authority(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<HttpResponse> {
    s.principal(&headers)?;
    linearizable_read(
        &s,
        &headers,
        "/v1/authority",
        "the signing authority",
        |s| {
            let st = s.node.state.read().expect("state lock");
            Json(AuthorityView {
                holder: st.data.authority.holder.clone(),
                token: st.data.authority.token,
                applied_index: st.last_applied.map_or(0, |l| l.index),
            })
            .into_response()
        },
    )
    .await
}

async fn list_handovers(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<Handover>>> {
    s.operator(&headers)?;
    let st = s.node.state.read().expect("state lock");
    Ok(Json(st.data.handovers.values().cloned().collect()))
}

async fn get_handover(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> ApiResult<Json<Handover>> {
    s.operator(&headers)?;
    let st = s.node.state.read().expect("state lock");
    st.data
        .handovers
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no handover {id}"),
            )
        })
}

/// Proposes an operator command, counts it in `failover_operator_actions_total` (`ok`,
/// `rejected`, `unavailable`), and maps the committed answer: `pick` returns the expected
/// response's value, a deterministic `Rejected` becomes its HTTP error.
async fn operator_command<T>(
    s: &AppState,
    action: &str,
    cmd: crate::state::Command,
    pick: fn(Response) -> Result<T, Response>,
) -> ApiResult<T> {
    let (result, answer) = match s.node.write(cmd).await {
        Err(e) => ("unavailable", Err(ApiError::from(e))),
        Ok(out) => match pick(out.response) {
            Ok(v) => ("ok", Ok(v)),
            Err(Response::Rejected { code, message }) => {
                ("rejected", Err(rejected_to_error(&code, message)))
            }
            Err(other) => (
                "rejected",
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("unexpected state machine answer {other:?}"),
                )),
            ),
        },
    };
    s.node
        .metrics
        .operator_actions
        .with_label_values(&[action, result])
        .inc();
    answer
}

async fn operator_write(
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

async fn request_handover(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Handover>> {
    let operator = s.operator(&headers)?;
    let req: HandoverRequestBody = parse(&body)?;
    tracing::info!(%operator, to = %req.to, "handover requested");
    let cmd = crate::state::Command::RequestHandover {
        to: req.to,
        reason: req.reason,
        operator,
        at_ms: now_ms(),
        policy: s.node.config.policy(),
    };
    operator_write(&s, "request", cmd).await
}

async fn approve_handover(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: Bytes,
) -> ApiResult<Json<Handover>> {
    let operator = s.operator(&headers)?;
    let req: ApproveBody = if body.is_empty() {
        ApproveBody::default()
    } else {
        parse(&body)?
    };
    if req.break_glass {
        tracing::warn!(%operator, handover = id, "BREAK-GLASS approval submitted");
    }
    let cmd = crate::state::Command::ApproveHandover {
        id,
        operator,
        break_glass: req.break_glass,
        at_ms: now_ms(),
        policy: s.node.config.policy(),
    };
    operator_write(&s, "approve", cmd).await
}

async fn abort_handover(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: Bytes,
) -> ApiResult<Json<Handover>> {
    let operator = s.operator(&headers)?;
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

/// `GET /v1/policy`: the approval policy in force, a pending change, and this node's own
/// `[handover]` configuration (which applies only while no policy is replicated).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyView {
    /// The replicated policy; `None` until the bootstrap node set it.
    pub policy: Option<crate::state::ApprovalPolicy>,
    /// A proposed change waiting for a second operator.
    pub pending: Option<crate::state::PendingPolicy>,
    /// The answering node's configured `[handover]` rules.
    pub configured: crate::state::ApprovalPolicy,
}

async fn get_policy(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Json<PolicyView>> {
    s.operator(&headers)?;
    let st = s.node.state.read().expect("state lock");
    Ok(Json(PolicyView {
        policy: st.data.policy,
        pending: st.data.pending_policy.clone(),
        configured: crate::state::ApprovalPolicy::of(&s.node.config.policy()),
    }))
}

/// `POST /v1/policy` (operator): proposes a new approval policy (body: `approvals_required`,
/// `two_person_rule`, `break_glass_approvals`; unknown fields refused). It applies only once
/// another operator confirms it (`POST /v1/policy/confirm`). Errors: 400 for an unusable
/// policy or one the operators configured on this node can never meet (`u32::MAX` approvals
/// would stop every handover), 503 without a committed answer.
async fn propose_policy(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let operator = s.operator(&headers)?;
    let policy: crate::state::ApprovalPolicy = parse(&body)?;
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
async fn confirm_policy(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let operator = s.operator(&headers)?;
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
pub struct AuditQuery {
    /// Only entries at or after this log index.
    #[serde(default)]
    pub since: u64,
}

async fn audit(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    s.operator(&headers)?;
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

async fn register_agent(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let agent = s.agent(&headers)?;
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

async fn heartbeat(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let agent = s.agent(&headers)?;
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

async fn record_batch(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<RecordBatchResponse>> {
    let started = Instant::now();
    let agent = s.agent(&headers)?;
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
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
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
                StatusCode::FORBIDDEN,
                "not_holder",
                format!(
                    "agent {agent} does not hold signing authority; holder is {}",
                    holder.as_deref().unwrap_or("nobody (fenced)")
                ),
            );
            e.body.holder = holder;
            e.body.token = Some(token);
            Err(e)
        }
        Response::Rejected { code, message } => Err(rejected_to_error(&code, message)),
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected state machine answer {other:?}"),
        )),
    }
}

/// The far-future bound on a record batch, at the edge (apply reads no clock): the verdict
/// [`Refusal::FutureEpoch`](failover_common::api::Refusal::FutureEpoch) for every item whose
/// epoch (a block's `slot / SLOTS_PER_EPOCH`, an attestation's larger of source and target)
/// lies more than `limits.max_future_epochs` ahead of the chain clock, `None` for the others.
/// Refused items are never proposed, so one far-future request cannot fail the other items of
/// its batch.
fn future_verdicts(
    s: &AppState,
    items: &[failover_common::api::RecordItem],
) -> Vec<Option<Verdict>> {
    use failover_common::api::{RecordItem, Refusal};
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

async fn internal_write(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WriteOutcome>> {
    s.cluster(&headers)?;
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

async fn raft_append(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    s.cluster(&headers)?;
    let req: AppendEntriesRequest<TypeConfig> = parse(&body)?;
    if let Some(c) = req.leader_commit {
        s.node.join.observe_leader_commit(c.index);
    }
    Ok(Json(s.node.raft.append_entries(req).await).into_response())
}

async fn raft_vote(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    s.cluster(&headers)?;
    let req: VoteRequest<NodeId> = parse(&body)?;
    // A node that may have lost acknowledged records votes only once it caught up (`join`).
    if !s.node.join.may_vote_for(req.last_log_id.map(|l| l.index)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_joined",
            format!(
                "node {} started with an empty store and has not caught up with the leader's \
                 log yet; it grants no vote to a candidate with history until it has",
                s.node.id
            ),
        ));
    }
    Ok(Json(s.node.raft.vote(req).await).into_response())
}

async fn raft_snapshot(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    s.cluster(&headers)?;
    let req: InstallSnapshotRequest<TypeConfig> = parse(&body)?;
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

/// `POST /v1/slashing/import`: an EIP-3076 interchange, all-or-nothing (`interchange`).
/// Operators and agents (an agent importing the history that comes with a keystore through
/// its keymanager API) may call it; the audit records the operator or `agent:<id>`.
///
/// Entries more than `limits.max_future_epochs` ahead of the chain clock are refused with
/// 400 `future_epoch` and a message naming them (up to 10, and the count), unless the
/// operator passes `?allow_future=true`, which the audit records. Operators only: an agent
/// imports through `POST /v1/agent/import`, proving it holds every key.
async fn slashing_import(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> ApiResult<Json<crate::interchange::ImportSummary>> {
    let operator = match s.principal(&headers)? {
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
pub struct ImportQuery {
    /// Operators only: accept entries beyond the far-future bound (audited).
    #[serde(default)]
    pub allow_future: bool,
}

/// Refuses an import holding entries beyond the far-future bound, naming up to 10 of them
/// (`0x…: block slot S (epoch E)`, `0x…: attestation S→T`) and how many there are in all.
fn check_import_future(s: &AppState, doc: &crate::interchange::Interchange) -> ApiResult<()> {
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
            StatusCode::BAD_REQUEST,
            "future_epoch",
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

/// `POST /v1/agent/import` (agent, [`AgentImportRequest`]): the EIP-3076 history of keys the
/// agent holds, as its keymanager API imports them. Every validator in the file needs a valid
/// proof of possession by this agent (403 `forbidden` naming the keys otherwise, checked here
/// and again in apply, [`crate::state::unproven_keys`]); more than
/// [`crate::state::MAX_AGENT_IMPORT_KEYS`] validators is a 400; the far-future bound applies
/// with no override. The audit names the
/// actor `agent:<id>`.
async fn agent_import(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<crate::interchange::ImportSummary>> {
    let agent = s.agent(&headers)?;
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

/// Header marking a request already forwarded once by a coordinator.
const FORWARDED: &str = "x-failover-forwarded";

/// Query of `GET /v1/slashing/export`.
#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    /// Comma-separated `0x` pubkeys; all validators when absent.
    #[serde(default)]
    pub pubkeys: Option<String>,
}

/// `GET /v1/slashing/export`: an EIP-3076 interchange of the committed history.
///
/// Linearizable: the leader confirms its leadership with a quorum before reading; a follower
/// forwards the request to the leader, so an export never misses a committed record.
/// Operators and agents (keymanager API `DELETE`) may call it.
async fn slashing_export(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ExportQuery>,
) -> ApiResult<HttpResponse> {
    s.operator_or_agent(&headers)?;
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
    linearizable_read(&s, &headers, &path, "the committed history", |s| {
        let st = s.node.state.read().expect("state lock");
        let doc = st.data.export_interchange(
            s.node.config.chain.genesis_validators_root,
            pubkeys.as_deref(),
        );
        Json(doc).into_response()
    })
    .await
}

/// Answers a read of the committed state linearizably: on the leader, after confirming its
/// leadership with a quorum and applying up to the read index (openraft
/// `ensure_linearizable`), `read` builds the answer from local state; on any other node the
/// request is forwarded once to the leader (`path` with its query, the caller's
/// `Authorization`, and the `x-failover-forwarded` header), and the leader's answer is passed
/// through.
///
/// Errors: 503 `unavailable` when there is no reachable leader, the request was already
/// forwarded once, or forwarding failed (`what` names the data in the message).
async fn linearizable_read(
    s: &AppState,
    headers: &HeaderMap,
    path: &str,
    what: &str,
    read: impl FnOnce(&AppState) -> HttpResponse,
) -> ApiResult<HttpResponse> {
    if s.node.raft.ensure_linearizable().await.is_ok() {
        return Ok(read(s));
    }
    // One hop at most: never forward a forwarded request, nor to ourselves.
    let leader = s.node.leader().filter(|(id, _)| *id != s.node.id);
    let (Some((_, leader_url)), false) = (leader, headers.contains_key(FORWARDED)) else {
        return Err(WriteError::Unavailable {
            message: format!("no reachable leader: cannot read {what} linearizably"),
            leader_hint: None,
        }
        .into());
    };
    let url = format!("{}{path}", leader_url.trim_end_matches('/'));
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .cloned()
        .ok_or_else(|| ApiError::unauthorized(AuthFailure::Missing))?;
    let unavailable = |message: String| {
        ApiError::from(WriteError::Unavailable {
            message,
            leader_hint: Some(leader_url.clone()),
        })
    };
    let res = s
        .node
        .http
        .get(url)
        .header(axum::http::header::AUTHORIZATION, auth)
        .header(FORWARDED, "1")
        .timeout(std::time::Duration::from_millis(
            s.node.config.raft.write_timeout_ms,
        ))
        .send()
        .await
        .map_err(|e| {
            unavailable(format!(
                "forwarding the read of {what} to the leader failed: {e}"
            ))
        })?;
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    // The leader's media type (JSON, or a backup file), JSON when it names none.
    let content_type = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let bytes = res.bytes().await.map_err(|e| {
        unavailable(format!(
            "reading the leader's answer about {what} failed: {e}"
        ))
    })?;
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        bytes,
    )
        .into_response())
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
async fn backup(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<HttpResponse> {
    let operator = s.operator(&headers)?;
    linearizable_read(&s, &headers, "/v1/backup", "the state for a backup", |s| {
        let snapshot = s.node.state.read().expect("state lock").clone();
        let bytes = crate::backup::encode(
            &snapshot,
            s.node.config.chain.genesis_validators_root,
            s.node.id,
            crate::config::token_hash(&s.node.cluster_token),
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
    })
    .await
}
