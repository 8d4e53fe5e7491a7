//! Membership routes (see [`crate::membership`]):
//! - `GET /v1/cluster/members` (operator): the leader's view, forwarded once from a follower;
//!   the local view (`replication_known = false`) when no leader answers;
//! - `POST /v1/cluster/learners` (operator) `{"id", "url", "catch_up_timeout_ms"?}`;
//! - `POST /v1/cluster/voters` (operator) `{"promote": [ids]}` or
//!   `{"remove": [ids], "keep_learner"?}`;
//! - `GET /internal/v1/identity` (cluster token): this node's id, for the leader's checks.
//!
//! Writes run on the leader: a follower forwards the request once (caller's `Authorization`,
//! `x-failover-forwarded`) and passes the leader's answer through; without a reachable leader
//! the answer is 503 `unavailable` with the leader's URL when known.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;

use serde::Deserialize;

use super::{forward_to_leader, parse, ApiError, ApiResult, AppState, Caller, FORWARDED};
use crate::identity::NodeIdentity;
use crate::membership::{Membership, MembershipError};
use failover_protocol::{AddLearnerBody, ChangeOutcome, ChangeVotersBody, ErrorCode};

impl From<MembershipError> for ApiError {
    fn from(e: MembershipError) -> Self {
        let mut err = ApiError::new(e.code(), e.to_string());
        err.body.leader_hint = e.leader_hint();
        err
    }
}

/// Counts the action in `failover_operator_actions_total` and maps the outcome.
fn answer(
    s: &AppState,
    action: &str,
    r: Result<ChangeOutcome, MembershipError>,
) -> ApiResult<HttpResponse> {
    let result = match &r {
        Ok(_) => "ok",
        Err(MembershipError::Unavailable { .. }) => "unavailable",
        Err(_) => "rejected",
    };
    s.node
        .metrics
        .operator_actions
        .with_label_values(&[action, result])
        .inc();
    Ok(Json(r?).into_response())
}

fn write_timeout(s: &AppState) -> Duration {
    Duration::from_millis(s.node.config.raft.write_timeout_ms)
}

/// `GET /v1/cluster/members` (operator): a [`failover_protocol::MembersView`].
pub(super) async fn members(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<HttpResponse> {
    caller.operator()?;
    if !s.node.is_leader() && !headers.contains_key(FORWARDED) && s.node.leader().is_some() {
        match forward_to_leader(
            &s,
            &caller,
            &headers,
            reqwest::Method::GET,
            "/v1/cluster/members",
            None,
            write_timeout(&s),
            "the membership view",
        )
        .await
        {
            Ok(r) if r.status().is_success() => return Ok(r),
            Ok(r) => tracing::debug!(status = %r.status(), "leader refused members; local view"),
            Err(e) => tracing::debug!(?e, "leader unreachable; local members view"),
        }
    }
    Ok(Json(Membership::new(s.node.clone()).members_view()).into_response())
}

/// `POST /v1/cluster/learners` (operator): a [`ChangeOutcome`] once the learner caught up.
pub(super) async fn add_learner(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    let operator = caller.operator()?;
    let req: AddLearnerBody = parse(&body)?;
    req.validate().map_err(ApiError::bad_request)?;
    if !s.node.is_leader() {
        let timeout = req.catch_up_timeout() + write_timeout(&s) * 3;
        return forward_to_leader(
            &s,
            &caller,
            &headers,
            reqwest::Method::POST,
            "/v1/cluster/learners",
            Some(body),
            timeout,
            "a membership change",
        )
        .await;
    }
    tracing::info!(%operator, id = req.id, url = %req.url, "membership: add learner");
    let r = Membership::new(s.node.clone())
        .add_learner(req, operator)
        .await;
    answer(&s, "cluster_add_learner", r)
}

/// `POST /v1/cluster/voters` (operator): promote learners or remove members; a
/// [`ChangeOutcome`].
pub(super) async fn change_voters(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    let operator = caller.operator()?;
    let req: ChangeVotersBody = parse(&body)?;
    req.validate().map_err(ApiError::bad_request)?;
    if !s.node.is_leader() {
        return forward_to_leader(
            &s,
            &caller,
            &headers,
            reqwest::Method::POST,
            "/v1/cluster/voters",
            Some(body),
            write_timeout(&s) * 5,
            "a membership change",
        )
        .await;
    }
    let action = if req.promote.is_empty() {
        "cluster_remove"
    } else {
        "cluster_promote"
    };
    tracing::info!(%operator, promote = ?req.promote, remove = ?req.remove, "membership: change voters");
    let r = Membership::new(s.node.clone())
        .change_voters(req, operator)
        .await;
    answer(&s, action, r)
}

/// `GET /internal/v1/identity` (no credentials): a [`NodeIdentity`], with a proof of the
/// cluster token for a challenge in plaintext.
pub(super) async fn identity(
    State(s): State<AppState>,
    Query(q): Query<IdentityQuery>,
) -> ApiResult<Json<NodeIdentity>> {
    let valid = |c: &str| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit());
    if q.challenge.as_deref().is_some_and(|c| !valid(c)) {
        return Err(ApiError::bad_request("challenge must be 64 hex digits"));
    }
    let initialized = s
        .node
        .raft
        .is_initialized()
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, format!("raft stopped: {e}")))?;
    Ok(Json(NodeIdentity {
        node_id: s.node.id,
        initialized,
        region: s.node.config.me().region.clone(),
        // Over TLS the certificate is the proof; a challenge is answered only in plaintext.
        proof: q.challenge.and_then(|c| {
            s.node
                .cluster_token
                .as_deref()
                .map(|t| crate::identity::identity_proof(t, s.node.id, &c))
        }),
    }))
}

/// Query of `GET /internal/v1/identity`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdentityQuery {
    /// 64 hex digits chosen at random by the asking node.
    #[serde(default)]
    challenge: Option<String>,
}
