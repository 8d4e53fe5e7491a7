//! HTTP client of the coordinator's agent API (`failover_common::api`, version `v1`).
//!
//! Invariants:
//! - every call carries `Authorization: Bearer <agent token>` and ends by a deadline;
//! - a call moves to the next coordinator URL only when the connection could not be made, so
//!   the request cannot have reached a node; any later failure (timeout, reset, unreadable
//!   answer) is reported as such and never retried, because its outcome is unknown;
//! - the URL that last answered is tried first next time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use failover_common::api::{
    AgentId, ApiErrorBody, AuthorityView, HeartbeatRequest, RecordBatchRequest,
    RecordBatchResponse, RegisterAgentRequest, Verdict,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

/// Why a coordinator call gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No coordinator URL accepted a connection before the deadline.
    #[error("no coordinator reachable: {0}")]
    Unreachable(String),
    /// The deadline passed after the request may have been sent: the outcome is unknown.
    #[error("coordinator call timed out")]
    Timeout,
    /// The connection failed after the request may have been sent: the outcome is unknown.
    #[error("coordinator transport error: {0}")]
    Transport(String),
    /// The coordinator answered with an error status.
    #[error("coordinator answered {status}: {code}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// `ApiErrorBody.code`, or `unknown` when the body was not an error body.
        code: String,
        /// `ApiErrorBody.message` (coordinator text; never contains secrets).
        message: String,
        /// `ApiErrorBody.holder` for `not_holder`.
        holder: Option<AgentId>,
        /// `ApiErrorBody.token` for `not_holder`.
        token: Option<u64>,
    },
    /// A 2xx answer whose body could not be decoded.
    #[error("unreadable coordinator answer: {0}")]
    Decode(String),
}

/// What became of one record batch (`POST /v1/agent/records`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Committed and applied: one verdict per item, in order.
    Verdicts(Vec<Verdict>),
    /// Refused as a whole: this agent does not hold authority with that token (DESIGN.md I2).
    NotHolder {
        /// Current holder, if any.
        holder: Option<AgentId>,
        /// Current token, if given.
        token: Option<u64>,
    },
    /// No committed verdict: the coordinator said `unavailable`, the call timed out or failed
    /// after sending, or the answer was unreadable. Nothing may be signed (DESIGN.md I7).
    Unavailable(String),
    /// The coordinator refused the request itself (400, 401, …): a configuration problem.
    Rejected(String),
}

/// Client for the coordinator agent API with URL failover on connection errors.
#[derive(Debug)]
pub struct CoordinatorClient {
    urls: Vec<String>,
    token: String,
    http: reqwest::Client,
    preferred: AtomicUsize,
}

impl CoordinatorClient {
    /// A client for `urls` (base URLs, tried in order) sending `token` as bearer token.
    /// `connect_timeout` bounds each connection attempt, so several URLs fit in one deadline.
    ///
    /// Errors: the TLS backend cannot be initialized.
    pub fn new(
        urls: Vec<String>,
        token: String,
        connect_timeout: Duration,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(!urls.is_empty(), "no coordinator URL configured");
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            token,
            http,
            preferred: AtomicUsize::new(0),
        })
    }

    /// `POST /v1/agent/records`, answered by `deadline`.
    pub async fn post_records(&self, req: &RecordBatchRequest, deadline: Instant) -> BatchOutcome {
        match self
            .call::<_, RecordBatchResponse>(Method::POST, "/v1/agent/records", Some(req), deadline)
            .await
        {
            Ok(resp) if resp.verdicts.len() == req.items.len() => {
                BatchOutcome::Verdicts(resp.verdicts)
            }
            Ok(resp) => BatchOutcome::Unavailable(format!(
                "coordinator returned {} verdicts for {} records",
                resp.verdicts.len(),
                req.items.len()
            )),
            Err(CallError::Status {
                status: 403,
                code,
                holder,
                token,
                ..
            }) if code == "not_holder" => BatchOutcome::NotHolder { holder, token },
            Err(e @ CallError::Status { status: 503, .. }) => {
                BatchOutcome::Unavailable(e.to_string())
            }
            Err(e @ CallError::Status { .. }) => BatchOutcome::Rejected(e.to_string()),
            Err(e) => BatchOutcome::Unavailable(e.to_string()),
        }
    }

    /// `GET /v1/authority`.
    ///
    /// Errors: [`CallError`].
    pub async fn authority(&self, timeout: Duration) -> Result<AuthorityView, CallError> {
        self.call::<(), AuthorityView>(Method::GET, "/v1/authority", None, Instant::now() + timeout)
            .await
    }

    /// `POST /v1/agent/register`.
    ///
    /// Errors: [`CallError`].
    pub async fn register(
        &self,
        req: &RegisterAgentRequest,
        timeout: Duration,
    ) -> Result<(), CallError> {
        self.call::<_, serde::de::IgnoredAny>(
            Method::POST,
            "/v1/agent/register",
            Some(req),
            Instant::now() + timeout,
        )
        .await
        .map(|_| ())
    }

    /// `POST /v1/agent/heartbeat`.
    ///
    /// Errors: [`CallError`].
    pub async fn heartbeat(
        &self,
        req: &HeartbeatRequest,
        timeout: Duration,
    ) -> Result<(), CallError> {
        self.call::<_, serde::de::IgnoredAny>(
            Method::POST,
            "/v1/agent/heartbeat",
            Some(req),
            Instant::now() + timeout,
        )
        .await
        .map(|_| ())
    }

    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        deadline: Instant,
    ) -> Result<R, CallError> {
        let n = self.urls.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let mut last_connect_error = String::from("deadline passed before any attempt");
        for k in 0..n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let i = (start + k) % n;
            let mut rb = self
                .http
                .request(method.clone(), format!("{}{path}", self.urls[i]))
                .bearer_auth(&self.token)
                .timeout(deadline - now);
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let resp = match rb.send().await {
                Ok(resp) => resp,
                // The connection was never established: the request cannot have arrived, so
                // another node may be asked.
                Err(e) if e.is_connect() => {
                    tracing::debug!(url = %self.urls[i], error = %e, "coordinator connect failed");
                    last_connect_error = format!("{}: {e}", self.urls[i]);
                    continue;
                }
                Err(e) if e.is_timeout() => return Err(CallError::Timeout),
                Err(e) => return Err(CallError::Transport(e.to_string())),
            };
            self.preferred.store(i, Ordering::Relaxed);
            return read_answer(resp).await;
        }
        Err(CallError::Unreachable(last_connect_error))
    }
}

async fn read_answer<R: DeserializeOwned>(resp: reqwest::Response) -> Result<R, CallError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| {
        if e.is_timeout() {
            CallError::Timeout
        } else {
            CallError::Transport(e.to_string())
        }
    })?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| CallError::Decode(e.to_string()));
    }
    let body: Option<ApiErrorBody> = serde_json::from_slice(&bytes).ok();
    Err(match body {
        Some(b) => CallError::Status {
            status: status.as_u16(),
            code: b.code,
            message: b.message,
            holder: b.holder,
            token: b.token,
        },
        None => CallError::Status {
            status: status.as_u16(),
            code: "unknown".into(),
            message: status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .into(),
            holder: None,
            token: None,
        },
    })
}

impl CallError {
    /// True for an answer that says the coordinator is reachable (any HTTP status).
    pub fn reached_coordinator(&self) -> bool {
        matches!(self, CallError::Status { .. } | CallError::Decode(_))
    }

    /// The HTTP status, when the coordinator answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            CallError::Status { status, .. } => StatusCode::from_u16(*status).ok(),
            _ => None,
        }
    }
}
