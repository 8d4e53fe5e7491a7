//! The one HTTP client of the coordinator API (`v1`), used by signer agents, `failoverctl` and
//! the chaos tools. Every call names its retry rule ([`Retry`]); the rules decide when the
//! next coordinator URL may be asked.
//!
//! Invariants:
//! - every call carries the caller's credentials (`Authorization: Bearer <token>` of an agent
//!   or an operator, the client certificate of the HTTP client over TLS, or both) and ends by
//!   a deadline;
//! - a registration moves to the next coordinator URL only when the connection could not be
//!   made, so the request cannot have reached a node; any later failure (timeout, reset,
//!   unreadable answer) is reported as such, because its outcome is unknown;
//! - a record batch also moves on after an explicit 503 (the node has no leader or lost it):
//!   the outcome may be unknown, but a record batch is idempotent: an identical record is
//!   `SameData` (DESIGN.md, "re-signing identical data"), and the batch carries the fencing
//!   token, so committing it twice lets the agent sign nothing it could not sign after the
//!   first commit. Timeouts are not retried: they have used the deadline;
//! - a read or a write whose repetition is harmless (the authority poll, heartbeats) also
//!   moves on after a timeout, a transport error or a 503, with the deadline shared among the
//!   URLs still untried: a coordinator cut off behind a partition
//!   (the connection opens, nothing answers) must not blind the agent while others answer;
//! - the URL that last answered is tried first next time, and a URL that failed an idempotent
//!   call is tried last next time;
//! - except that every answer names the Raft leader ([`crate::LEADER_HEADER`], and the node
//!   that answered, [`crate::NODE_HEADER`]): when one of the configured URLs is known to be
//!   the leader (it answered with that node id, or the answer's [`crate::LEADER_URL_HEADER`]
//!   is that URL), the next call starts there, so writes skip the forwarding hop. A URL that
//!   failed within the last [`LEADER_HINT_COOLDOWN`] is not taken from a hint: a leader the
//!   agent cannot reach is asked last, as before, until it answers again.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::agent::{
    AgentId, AgentImportRequest, AuthorityView, HeartbeatRequest, KeyPossession,
    RecordBatchRequest, RecordBatchResponse, RegisterAgentRequest, Verdict,
};
use crate::error::{ApiErrorBody, ErrorCode};
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
        /// `ApiErrorBody.code`, or [`ErrorCode::Unknown`] when the body was not an error body.
        code: ErrorCode,
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

/// When [`CoordinatorClient`] may ask the next coordinator URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Only when no connection was made: the request cannot have arrived anywhere.
    ConnectOnly,
    /// Also after a 503 answer: the call is idempotent, but a timeout has used the deadline.
    OnUnavailable,
    /// Also after a timeout, a transport error or a 503: repeating the call is harmless.
    Idempotent,
}

/// How long a URL that failed a call is not chosen because an answer named it the leader.
pub const LEADER_HINT_COOLDOWN: Duration = Duration::from_secs(5);

/// Client for the coordinator agent API with URL failover on connection errors.
#[derive(Debug)]
pub struct CoordinatorClient {
    urls: Vec<String>,
    token: Option<String>,
    http: reqwest::Client,
    preferred: AtomicUsize,
    /// The node id each URL answered with (`0`: not known yet).
    node_ids: Vec<AtomicU64>,
    /// When each URL last failed a call, in ms since `created` plus one (`0`: never).
    failed_at: Vec<AtomicU64>,
    created: std::time::Instant,
}

impl CoordinatorClient {
    /// A client for `urls` (base URLs, tried in order) sending `token`, when given, as bearer
    /// token, over `http` (a builder carrying the TLS config: the cluster CA and a client
    /// certificate, [`failover_common::tls::Tls::reqwest_builder`]; a plain builder for
    /// `http://`). `connect_timeout` bounds each connection attempt (TLS handshake included),
    /// so several URLs fit in one deadline.
    ///
    /// Errors: no URL, or the HTTP client cannot be built.
    pub fn new(
        urls: Vec<String>,
        token: Option<String>,
        http: reqwest::ClientBuilder,
        connect_timeout: Duration,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(!urls.is_empty(), "no coordinator URL configured");
        let http = http
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        let n = urls.len();
        Ok(Self {
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            token,
            http,
            preferred: AtomicUsize::new(0),
            node_ids: (0..n).map(|_| AtomicU64::new(0)).collect(),
            failed_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
            created: std::time::Instant::now(),
        })
    }

    /// The index of the URL the next call starts with (0-based, in configured order): the
    /// leader's when known and not recently failed, else the last one that answered.
    pub fn preferred_index(&self) -> usize {
        self.preferred.load(Ordering::Relaxed) % self.urls.len()
    }

    fn since_created_ms(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn note_failure(&self, i: usize) {
        self.failed_at[i].store(self.since_created_ms().saturating_add(1), Ordering::Relaxed);
    }

    fn recently_failed(&self, i: usize) -> bool {
        match self.failed_at[i].load(Ordering::Relaxed) {
            0 => false,
            at => {
                let cooldown = u64::try_from(LEADER_HINT_COOLDOWN.as_millis()).unwrap_or(0);
                self.since_created_ms() < at.saturating_add(cooldown)
            }
        }
    }

    /// Learns from an answer of URL `i`: which node it is, and which URL (if any) is the
    /// leader. Returns the URL index to prefer next: the leader's when one is known and did
    /// not fail recently, else `i`.
    fn learn(&self, i: usize, headers: &reqwest::header::HeaderMap) -> usize {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|id| *id > 0)
        };
        let answered_by = number(crate::NODE_HEADER);
        if let Some(id) = answered_by {
            self.node_ids[i].store(id, Ordering::Relaxed);
        }
        self.failed_at[i].store(0, Ordering::Relaxed);
        let Some(leader) = number(crate::LEADER_HEADER) else {
            return i;
        };
        if answered_by == Some(leader) {
            return i;
        }
        let by_id = self
            .node_ids
            .iter()
            .position(|n| n.load(Ordering::Relaxed) == leader);
        let by_url = || {
            let url = headers.get(crate::LEADER_URL_HEADER)?.to_str().ok()?;
            let url = url.trim_end_matches('/');
            self.urls.iter().position(|u| u == url)
        };
        match by_id.or_else(by_url) {
            Some(j) if !self.recently_failed(j) => j,
            _ => i,
        }
    }

    /// `POST /v1/agent/records`, answered by `deadline`.
    pub async fn post_records(&self, req: &RecordBatchRequest, deadline: Instant) -> BatchOutcome {
        match self
            .call::<_, RecordBatchResponse>(
                Method::POST,
                "/v1/agent/records",
                Some(req),
                deadline,
                Retry::OnUnavailable,
            )
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
                code: ErrorCode::NotHolder,
                holder,
                token,
                ..
            }) => BatchOutcome::NotHolder { holder, token },
            Err(e @ CallError::Status { status: 503, .. }) => {
                BatchOutcome::Unavailable(e.to_string())
            }
            Err(e @ CallError::Status { .. }) => BatchOutcome::Rejected(e.to_string()),
            Err(e) => BatchOutcome::Unavailable(e.to_string()),
        }
    }

    /// `GET /v1/authority`, asking the next coordinator after a timeout or a 503 (a read).
    ///
    /// Errors: [`CallError`] of the last coordinator tried.
    pub async fn authority(&self, timeout: Duration) -> Result<AuthorityView, CallError> {
        self.call::<(), AuthorityView>(
            Method::GET,
            "/v1/authority",
            None,
            Instant::now() + timeout,
            Retry::Idempotent,
        )
        .await
    }

    /// `GET /v1/authority?wait_ms=…&token=…&holding=…`: a long poll that the coordinator
    /// answers as soon as the authority differs from what the agent last saw (`token`, and
    /// whether it was the `holding` agent), or after `wait` (capped by the coordinator at
    /// 25 s). `timeout` is added to `wait` for the answer to arrive. Asks the next coordinator
    /// only when none could be connected to or one answered 503.
    ///
    /// Errors: [`CallError`] of the last coordinator tried.
    pub async fn authority_watch(
        &self,
        token: u64,
        holding: bool,
        wait: Duration,
        timeout: Duration,
    ) -> Result<AuthorityView, CallError> {
        let path = format!(
            "/v1/authority?wait_ms={}&token={token}&holding={holding}",
            wait.as_millis()
        );
        self.call::<(), AuthorityView>(
            Method::GET,
            &path,
            None,
            Instant::now() + wait + timeout,
            Retry::OnUnavailable,
        )
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
            Retry::ConnectOnly,
        )
        .await
        .map(|_| ())
    }

    /// `POST /v1/agent/heartbeat`, asking the next coordinator after a timeout or a 503 (a
    /// repeated heartbeat is harmless).
    ///
    /// Errors: [`CallError`] of the last coordinator tried.
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
            Retry::Idempotent,
        )
        .await
        .map(|_| ())
    }

    /// One call of `method path` with an optional JSON `body`, answered by `deadline`, asking
    /// the coordinator URLs in turn as `retry` allows (the module's invariants). A 2xx answer is
    /// decoded as `R` (use [`serde::de::IgnoredAny`] to ignore it).
    ///
    /// Errors: [`CallError`] of the last coordinator tried.
    pub async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        deadline: Instant,
        retry: Retry,
    ) -> Result<R, CallError> {
        let n = self.urls.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let mut last_error = CallError::Unreachable("deadline passed before any attempt".into());
        for k in 0..n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let i = (start + k) % n;
            // An idempotent call leaves time for the URLs after this one.
            let attempt_deadline = match retry {
                Retry::ConnectOnly | Retry::OnUnavailable => deadline,
                Retry::Idempotent => now + (deadline - now) / (n - k) as u32,
            };
            let mut rb = self
                .http
                .request(method.clone(), format!("{}{path}", self.urls[i]))
                .timeout(attempt_deadline - now);
            if let Some(t) = &self.token {
                rb = rb.bearer_auth(t);
            }
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let mut next_preferred = i;
            let answer = match rb.send().await {
                Ok(resp) => {
                    next_preferred = self.learn(i, resp.headers());
                    read_answer(resp).await
                }
                // The connection was never established: the request cannot have arrived, so
                // another node may be asked.
                Err(e) if e.is_connect() => {
                    self.note_failure(i);
                    let why = describe(&e);
                    tracing::debug!(url = %self.urls[i], error = %why, "coordinator connect failed");
                    last_error = CallError::Unreachable(format!("{}: {why}", self.urls[i]));
                    continue;
                }
                Err(e) if e.is_timeout() => Err(CallError::Timeout),
                Err(e) => Err(CallError::Transport(describe(&e))),
            };
            let try_next = matches!(
                (retry, &answer),
                (
                    Retry::Idempotent,
                    Err(CallError::Timeout | CallError::Transport(_))
                ) | (
                    Retry::Idempotent | Retry::OnUnavailable,
                    Err(CallError::Status { status: 503, .. })
                )
            );
            if !try_next {
                if answer.is_ok() || answer.as_ref().is_err_and(CallError::reached_coordinator) {
                    self.preferred.store(next_preferred, Ordering::Relaxed);
                } else {
                    self.note_failure(i);
                }
                return answer;
            }
            tracing::debug!(url = %self.urls[i], path, "coordinator gave no answer; asking the next one");
            self.note_failure(i);
            // Start after this URL next time (unless a later one answers).
            self.preferred.store((i + 1) % n, Ordering::Relaxed);
            last_error = answer.err().expect("try_next implies an error");
        }
        Err(last_error)
    }
}

/// `GET /v1/status` of the one coordinator at `url`, with the operator `token`, answered within
/// `timeout`. No failover: pollers and drills ask a given node what it sees. Decoded like every
/// other answer of this client.
///
/// Errors: [`CallError`] (unreachable, timed out, a non-2xx answer, an unreadable body).
pub async fn node_status(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    timeout: Duration,
) -> Result<crate::StatusView, CallError> {
    let url = url.trim_end_matches('/');
    let sent = http
        .get(format!("{url}/v1/status"))
        .bearer_auth(token)
        .timeout(timeout)
        .send()
        .await;
    match sent {
        Ok(resp) => read_answer(resp).await,
        Err(e) if e.is_connect() => Err(CallError::Unreachable(format!("{url}: {}", describe(&e)))),
        Err(e) if e.is_timeout() => Err(CallError::Timeout),
        Err(e) => Err(CallError::Transport(describe(&e))),
    }
}

/// A reqwest error with its causes, e.g. `error sending request …: invalid peer certificate:
/// UnknownIssuer`: reqwest's own message omits them, and a refused certificate is exactly
/// what an operator needs to read.
pub fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
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
        // Not an error body (a proxy, or a limit answered before the API): its text, cut to
        // 200 characters, or the status's reason.
        None => {
            let text = String::from_utf8_lossy(&bytes);
            let text = text.trim();
            let message = match text.char_indices().nth(200) {
                _ if text.is_empty() => status
                    .canonical_reason()
                    .unwrap_or("unexpected status")
                    .to_string(),
                Some((i, _)) => format!("{}…", &text[..i]),
                None => text.to_string(),
            };
            CallError::Status {
                status: status.as_u16(),
                code: ErrorCode::Unknown,
                message,
                holder: None,
                token: None,
            }
        }
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

/// EIP-3076 import and export for an agent's keymanager API. The documents are passed through
/// as JSON: the coordinator owns the interchange rules.
impl CoordinatorClient {
    /// Most pubkeys named in one export request, so the query string stays short (about
    /// 6.4 KB).
    pub const EXPORT_CHUNK: usize = 64;

    /// `POST /v1/agent/import` with an EIP-3076 interchange (format version 5) and one proof
    /// of possession per validator in it (`eth::sign_possession`): an agent imports history
    /// only for keys it holds. The import is all-or-nothing; a refusal (another genesis
    /// validators root or format version, a missing proof, entries far in the future) is a
    /// [`CallError::Status`] naming the reason. Never retried on another URL once sent: an
    /// import repeated after an unknown outcome could refuse records it just added.
    ///
    /// Errors: [`CallError`]; a timeout means the import may or may not have committed.
    pub async fn slashing_import(
        &self,
        agent: &str,
        interchange: &serde_json::Value,
        possession: Vec<KeyPossession>,
        timeout: Duration,
    ) -> Result<serde_json::Value, CallError> {
        let body = AgentImportRequest {
            agent: agent.to_string(),
            interchange: interchange.clone(),
            possession,
        };
        self.call(
            Method::POST,
            "/v1/agent/import",
            Some(&body),
            Instant::now() + timeout,
            Retry::ConnectOnly,
        )
        .await
    }

    /// `GET /v1/slashing/export?pubkeys=…`: the committed history of `pubkeys` as one EIP-3076
    /// interchange, read linearizably by the leader, in requests of at most
    /// [`Self::EXPORT_CHUNK`] pubkeys whose `data` lists are concatenated. Validators without
    /// history are absent from `data`. Each request ends within `timeout`.
    ///
    /// Errors: [`CallError`] of the first request that failed, or [`CallError::Decode`] when an
    /// answer is not an interchange object with a `data` list.
    pub async fn slashing_export(
        &self,
        pubkeys: &[failover_common::types::Pubkey],
        timeout: Duration,
    ) -> Result<serde_json::Value, CallError> {
        let mut merged: Option<serde_json::Value> = None;
        for chunk in pubkeys.chunks(Self::EXPORT_CHUNK) {
            let list: Vec<String> = chunk.iter().map(|p| p.to_string()).collect();
            let path = format!("/v1/slashing/export?pubkeys={}", list.join(","));
            let mut doc: serde_json::Value = self
                .call::<(), _>(
                    Method::GET,
                    &path,
                    None,
                    Instant::now() + timeout,
                    Retry::Idempotent,
                )
                .await?;
            let Some(data) = doc.get_mut("data").and_then(|d| d.as_array_mut()) else {
                return Err(CallError::Decode(
                    "the export is not an EIP-3076 interchange (no data list)".into(),
                ));
            };
            match merged.as_mut() {
                None => merged = Some(doc),
                Some(m) => {
                    let more = std::mem::take(data);
                    m["data"]
                        .as_array_mut()
                        .expect("checked when stored")
                        .extend(more);
                }
            }
        }
        merged.ok_or_else(|| CallError::Decode("no pubkeys to export".into()))
    }
}
