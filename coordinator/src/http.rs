//! The coordinator's HTTP API (axum): agent API, operator API, Raft RPC, internal
//! forwarding, `/metrics` and `/health`.
//!
//! This module holds what every route shares: the router and its layers, authentication
//! ([`AppState`]'s principal checks), [`ApiError`] (the only place an HTTP status is chosen,
//! from the protocol's `ErrorCode`), the one helper that forwards a request to the leader, and
//! linearizable reads. The handlers are in `agent` (agent API), `operator` (status, handovers,
//! policy, audit), `slashing` (EIP-3076 import and export, backup), `membership` (Raft
//! membership) and `raft` (Raft RPC and forwarded writes).
//!
//! Invariants:
//! - every `/v1` and `/raft` route is authenticated before its body is read (`Caller`): by
//!   bearer token (compared by SHA-256 hash with the configured hashes; never logged), by
//!   client certificate over TLS, or both, which must then name the same principal
//!   ([`crate::access::AccessList::authenticate`]);
//! - Raft RPC over TLS comes only from a member's node certificate, and the node id in the
//!   RPC must be the certificate's;
//! - an agent can only act as itself (the body's `agent` must match its credentials);
//! - every error is an [`ApiErrorBody`] with a stable `code`; internal details never leak;
//! - a write with no committed answer is a 503 `unavailable` (fail closed).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use failover_protocol::{AgentId, ApiErrorBody, ErrorCode};
use serde::de::DeserializeOwned;
use tower_http::trace::TraceLayer;

use crate::access::Principal;
use crate::guard::AuthFailure;
use crate::node::{ForwardFailure, Node, WriteError, FORWARDED_HEADER as FORWARDED};
use crate::state::{Rejection, Response};

/// The one error type of the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ApiErrorBody,
    /// Set when the request failed to authenticate; counted by [`crate::guard`].
    auth_failure: Option<AuthFailure>,
}

impl ApiError {
    /// An error answered with `code`'s status ([`ErrorCode::status`]).
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(code.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: ApiErrorBody::new(code, message),
            auth_failure: None,
        }
    }
    fn bad_request(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, m)
    }
    fn unauthorized(why: AuthFailure) -> Self {
        let message = match why {
            AuthFailure::UnknownToken => "unknown bearer token",
            _ => "no credentials: send a bearer token, or a client certificate over TLS",
        };
        let mut e = Self::new(ErrorCode::Unauthorized, message);
        e.auth_failure = Some(why);
        e
    }
    fn forbidden(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, m)
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
        let mut err = Self::new(ErrorCode::Unavailable, message);
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

mod agent;
mod membership;
mod operator;
mod raft;
mod slashing;

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

    /// Authenticates a request from its headers and, over TLS, its connection's client
    /// certificate ([`crate::access::AccessList::authenticate`]).
    ///
    /// Errors: 401 without credentials or with an unknown token; 403 when the credentials
    /// name different principals.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        extensions: &axum::http::Extensions,
    ) -> ApiResult<Caller> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let token = header(axum::http::header::AUTHORIZATION.as_str())
            .and_then(|v| v.strip_prefix("Bearer "));
        let tls = extensions.get::<failover_common::tls::TlsConnection>();
        let cert = tls.and_then(|t| t.identity());
        let creds = crate::access::Credentials {
            token,
            tls: tls.is_some(),
            cert,
            on_behalf: header(crate::access::ON_BEHALF_HEADER),
        };
        let principal = self
            .node
            .access
            .current()
            .authenticate(&creds, |n| self.node.knows_node(n))
            .map_err(|e| match e {
                crate::access::AuthError::Missing => ApiError::unauthorized(AuthFailure::Missing),
                crate::access::AuthError::UnknownToken => {
                    ApiError::unauthorized(AuthFailure::UnknownToken)
                }
                crate::access::AuthError::Conflict(m) => ApiError::wrong_principal(m),
            })?;
        Ok(Caller {
            principal,
            node_cert: match cert {
                Some(failover_common::tls::Identity::Node(n)) => Some(*n),
                _ => None,
            },
        })
    }

    /// Checks that `caller` is another coordinator and, when the request names its target
    /// node (the Raft network sends `x-failover-target`), that it is this node: a Raft RPC
    /// meant for another node (a wrong membership address) is refused with 409 `wrong_node`
    /// instead of being applied here.
    fn cluster(&self, caller: &Caller, headers: &HeaderMap) -> ApiResult<()> {
        if caller.principal != Principal::Cluster {
            return Err(ApiError::wrong_principal(
                "this endpoint is for coordinators only (a node certificate, or the cluster \
                 token without TLS)",
            ));
        }
        let target = headers
            .get(crate::network::TARGET_HEADER)
            .and_then(|v| v.to_str().ok());
        match target {
            Some(t) if t != self.node.id.to_string() => Err(ApiError::new(
                ErrorCode::WrongNode,
                format!("this is node {}, not node {t}", self.node.id),
            )),
            _ => Ok(()),
        }
    }
}

/// Who is calling: authenticated once per request, before its body is read (the
/// `require_token` layer), and handed to handlers as an extractor.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    principal: Principal,
    /// The node id of the caller's node certificate (TLS), if it sent one.
    node_cert: Option<crate::NodeId>,
}

impl Caller {
    fn operator(&self) -> ApiResult<String> {
        match &self.principal {
            Principal::Operator(n) => Ok(n.clone()),
            _ => Err(ApiError::wrong_principal(
                "this endpoint needs an operator token or certificate",
            )),
        }
    }

    fn agent(&self) -> ApiResult<AgentId> {
        match &self.principal {
            Principal::Agent(a) => Ok(a.clone()),
            _ => Err(ApiError::wrong_principal(
                "this endpoint needs an agent's credentials",
            )),
        }
    }

    /// The actor of an EIP-3076 import or export: an operator's name, or `agent:<id>` for an
    /// agent, which imports and exports the history of its own keys for the keymanager API
    /// (`/eth/v1/keystores`). Recorded in the audit trail.
    fn operator_or_agent(&self) -> ApiResult<String> {
        match &self.principal {
            Principal::Operator(n) => Ok(n.clone()),
            Principal::Agent(a) => Ok(format!("agent:{a}")),
            Principal::Cluster => Err(ApiError::wrong_principal(
                "this endpoint needs an operator's or an agent's credentials",
            )),
        }
    }

    /// Over TLS, checks that the node id an RPC says it comes from (`claimed`: the
    /// candidate of a vote, the leader of an append or snapshot) is the one its certificate
    /// names. Without TLS there is no certificate to compare with.
    ///
    /// Errors: 403 naming both ids.
    fn sent_by(&self, claimed: crate::NodeId) -> ApiResult<()> {
        match self.node_cert {
            Some(n) if n != claimed => Err(ApiError::wrong_principal(format!(
                "this RPC claims to come from node {claimed} but the certificate is node {n}'s"
            ))),
            _ => Ok(()),
        }
    }
}

impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Caller>() {
            Some(c) => Ok(c.clone()),
            None => s.authenticate(&parts.headers, &parts.extensions),
        }
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The API's answer to a deterministic refusal of the state machine.
fn rejected_to_error(code: Rejection, message: String) -> ApiError {
    let code = match code {
        Rejection::BadRequest => ErrorCode::BadRequest,
        Rejection::NotFound => ErrorCode::NotFound,
        Rejection::Conflict => ErrorCode::Conflict,
        Rejection::Forbidden => ErrorCode::Forbidden,
    };
    ApiError::new(code, message)
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
        .route("/v1/status", get(operator::status))
        .route("/v1/authority", get(agent::authority))
        .route(
            "/v1/handovers",
            get(operator::list_handovers).post(operator::request_handover),
        )
        .route("/v1/handovers/{id}", get(operator::get_handover))
        .route(
            "/v1/handovers/{id}/approve",
            post(operator::approve_handover),
        )
        .route("/v1/handovers/{id}/abort", post(operator::abort_handover))
        .route("/v1/audit", get(operator::audit))
        .route(
            "/v1/policy",
            get(operator::get_policy).post(operator::propose_policy),
        )
        .route("/v1/policy/confirm", post(operator::confirm_policy))
        .route(
            "/v1/slashing/import",
            post(slashing::slashing_import).layer(large()),
        )
        .route("/v1/slashing/export", get(slashing::slashing_export))
        .route("/v1/backup", get(slashing::backup))
        .route("/v1/agent/register", post(agent::register_agent))
        .route("/v1/agent/records", post(agent::record_batch))
        .route("/v1/agent/heartbeat", post(agent::heartbeat))
        .route(
            "/v1/agent/import",
            post(slashing::agent_import).layer(large()),
        )
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
        .route("/raft/append", post(raft::raft_append).layer(large()))
        .route("/raft/vote", post(raft::raft_vote))
        .route("/raft/snapshot", post(raft::raft_snapshot).layer(large()))
        .route(
            "/internal/v1/write",
            post(raft::internal_write).layer(large()),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
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
                ("rejected", Err(rejected_to_error(code, message)))
            }
            Err(other) => (
                "rejected",
                Err(ApiError::new(
                    ErrorCode::Internal,
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
            state.node.clone(),
            leader_headers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.node.auth_guard.clone(),
            crate::guard::layer,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state.clone())
}

/// Authenticates a request before its body is read (401 without usable credentials, 403
/// for conflicting ones) and hands the [`Caller`] to the handler, which then checks that the
/// principal may use the route.
async fn require_token(
    State(s): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> HttpResponse {
    match s.authenticate(req.headers(), req.extensions()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Names this node and the leader it knows on every answer ([`failover_protocol::NODE_HEADER`],
/// [`failover_protocol::LEADER_HEADER`], [`failover_protocol::LEADER_URL_HEADER`]), so agents
/// send their next request to the leader directly (issue 15 item 5). Read from openraft's
/// metrics after the handler ran: the freshest view this node has.
async fn leader_headers(
    State(node): State<Arc<Node>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> HttpResponse {
    use axum::http::HeaderValue;
    let mut resp = next.run(req).await;
    let leader = node.raft.metrics().borrow().current_leader;
    let headers = resp.headers_mut();
    headers.insert(failover_protocol::NODE_HEADER, HeaderValue::from(node.id));
    if let Some(leader) = leader {
        headers.insert(failover_protocol::LEADER_HEADER, HeaderValue::from(leader));
        let url = node
            .config
            .peers
            .iter()
            .find(|p| p.id == leader && leader != node.id)
            .and_then(|p| HeaderValue::from_str(&p.url).ok());
        if let Some(url) = url {
            headers.insert(failover_protocol::LEADER_URL_HEADER, url);
        }
    }
    resp
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
    s.node
        .metrics
        .refresh_tls(s.node.tls.as_deref(), s.node.tls_handshake_failures());
    s.node.metrics.render()
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
    caller: &Caller,
    headers: &HeaderMap,
    path: &str,
    what: &str,
    read: impl FnOnce(&AppState) -> HttpResponse,
) -> ApiResult<HttpResponse> {
    if s.node.raft.ensure_linearizable().await.is_ok() {
        return Ok(read(s));
    }
    let timeout = std::time::Duration::from_millis(s.node.config.raft.write_timeout_ms);
    forward_to_leader(
        s,
        caller,
        headers,
        reqwest::Method::GET,
        path,
        None,
        timeout,
        what,
    )
    .await
}

/// The one way a request reaches the leader from another node: forwarded once (`path` with
/// its query, the `x-failover-forwarded` header, the JSON `body`, and the caller's
/// credentials: over TLS this node's certificate with [`crate::access::ON_BEHALF_HEADER`]
/// naming the caller, in plaintext the caller's `Authorization`), answered within `timeout`,
/// and the leader's status, media type (JSON when it names none) and body passed through
/// unchanged. `what` names the request in error messages.
///
/// Errors: 503 `unavailable` when this request was already forwarded (one hop at most), no
/// other node is known as leader, or the leader gave no answer in time (then the outcome of a
/// write is unknown, and the message says whether it was sent at all); 401 without an
/// `Authorization` header to pass on.
#[allow(clippy::too_many_arguments)]
async fn forward_to_leader(
    s: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    method: reqwest::Method,
    path: &str,
    body: Option<Bytes>,
    timeout: std::time::Duration,
    what: &str,
) -> ApiResult<HttpResponse> {
    let unavailable = |message: String, leader_hint: Option<String>| {
        ApiError::from(WriteError::Unavailable {
            message,
            leader_hint,
        })
    };
    // One hop at most: never forward a forwarded request, nor to ourselves.
    let leader = s.node.leader().filter(|(id, _)| *id != s.node.id);
    let (Some((leader_id, leader_url)), false) = (leader, headers.contains_key(FORWARDED)) else {
        return Err(unavailable(
            format!(
                "node {} is not the leader and reaches no other leader: cannot serve {what}",
                s.node.id
            ),
            None,
        ));
    };
    let credential = if s.node.tls.is_some() {
        let who = caller.principal.on_behalf().ok_or_else(|| {
            ApiError::wrong_principal("a coordinator's own request is never forwarded")
        })?;
        (crate::access::ON_BEHALF_HEADER, who)
    } else {
        let auth = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized(AuthFailure::Missing))?;
        (axum::http::header::AUTHORIZATION.as_str(), auth.to_string())
    };
    let answer = s
        .node
        .send_to_leader(
            &leader_url,
            method,
            path,
            Some(credential),
            body.map(|b| b.to_vec()),
            Some(timeout),
        )
        .await
        .map_err(|f| {
            let (outcome, e) = match f {
                ForwardFailure::NotSent(e) => ("not sent", e),
                ForwardFailure::NoAnswer(e) => ("outcome unknown", e),
            };
            unavailable(
                format!(
                    "forwarding {what} to leader {leader_id} at {leader_url} failed ({outcome}): {e}"
                ),
                Some(leader_url.clone()),
            )
        })?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer
        .content_type
        .unwrap_or_else(|| "application/json".to_string());
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        answer.body,
    )
        .into_response())
}
