//! Failed authentication made visible, and slowed down (DESIGN.md "Trust boundaries and
//! hostile input").
//!
//! Every request refused with 401 (no bearer token, or one nobody holds) or with 403 because
//! the token belongs to the wrong kind of principal (an agent token on an operator route, a
//! token naming another agent) is an authentication failure:
//! - it is counted in `failover_auth_failures_total{listener,reason}` (`reason`: `missing`,
//!   `unknown_token`, `wrong_principal`; `listener`: `api` for operators and agents,
//!   `internal` for Raft and forwarding);
//! - it is logged at WARN, at most one line per listener and reason every
//!   [`LOG_EVERY`], with the number of failures and the sources seen since the last line. The
//!   token itself is never logged;
//! - a source address with more than `limits.auth_failures_per_minute` failures in a minute
//!   is refused with 429 `too_many_auth_failures` and a `Retry-After` on every request that
//!   carries a bearer token, without the token being looked at, until its budget refills (a
//!   keyed GCRA limiter from the `governor` crate). Requests that authenticate never use the
//!   budget; requests without a token (`/health`, `/metrics`) are never held back.
//!
//! Invariants:
//! - handlers decide what is a failure, by marking their error response with an
//!   [`AuthFailure`] extension; the layer here only counts, logs and limits, so no route can
//!   forget to be counted;
//! - memory is bounded: the limiter forgets sources whose budget is full again, and at most
//!   [`MAX_TRACKED_SOURCES`] blocked sources are remembered.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use failover_protocol::{ApiErrorBody, ErrorCode};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus::IntCounterVec;

/// At most one log line per listener and reason in this period.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Blocked sources remembered at once; beyond it the oldest entries are dropped.
pub const MAX_TRACKED_SOURCES: usize = 10_000;

/// Why a request failed to authenticate; set as a response extension by the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer token no principal holds.
    UnknownToken,
    /// A valid token of the wrong kind of principal for the route, or one naming someone
    /// else (an agent acting for another agent).
    WrongPrincipal,
}

impl AuthFailure {
    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::UnknownToken => "unknown_token",
            Self::WrongPrincipal => "wrong_principal",
        }
    }

    /// Every `reason` label, for series created at zero.
    pub const ALL: [AuthFailure; 3] = [Self::Missing, Self::UnknownToken, Self::WrongPrincipal];
}

#[derive(Default)]
struct LogState {
    last: Option<Instant>,
    count: u64,
    sources: BTreeSet<IpAddr>,
}

/// The accounting shared by every request of one node.
pub struct AuthGuard {
    counter: IntCounterVec,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    logs: Mutex<HashMap<(&'static str, &'static str), LogState>>,
}

impl AuthGuard {
    /// A guard counting into `counter` (labels `listener`, `reason`) and allowing each source
    /// `per_minute` failures a minute (at least 1).
    pub fn new(counter: IntCounterVec, per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        for listener in ["api", "internal"] {
            for r in AuthFailure::ALL {
                counter.with_label_values(&[listener, r.label()]);
            }
        }
        Self {
            counter,
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
            blocked: Mutex::new(HashMap::new()),
            logs: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` must still wait before its token is looked at again, if it is blocked.
    fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let mut blocked = self.blocked.lock().expect("auth guard lock");
        let until = *blocked.get(&ip)?;
        let now = Instant::now();
        if until > now {
            Some(until - now)
        } else {
            blocked.remove(&ip);
            None
        }
    }

    /// Counts, logs and charges one failure of `ip` on `listener`.
    fn failed(&self, listener: &'static str, reason: AuthFailure, ip: IpAddr) {
        self.counter
            .with_label_values(&[listener, reason.label()])
            .inc();
        if let Err(not_until) = self.limiter.check_key(&ip) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut blocked = self.blocked.lock().expect("auth guard lock");
            if blocked.len() >= MAX_TRACKED_SOURCES {
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
                if blocked.len() >= MAX_TRACKED_SOURCES {
                    blocked.clear();
                }
            }
            blocked.insert(ip, Instant::now() + wait);
            self.limiter.retain_recent();
        }
        let mut logs = self.logs.lock().expect("auth guard lock");
        let st = logs.entry((listener, reason.label())).or_default();
        st.count = st.count.saturating_add(1);
        if st.sources.len() < 16 {
            st.sources.insert(ip);
        }
        if st.last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                listener,
                reason = reason.label(),
                failures = st.count,
                sources = ?st.sources,
                "authentication failures (counted in failover_auth_failures_total; tokens are \
                 never logged)"
            );
            st.last = Some(Instant::now());
            st.count = 0;
            st.sources.clear();
        }
    }
}

/// Which listener a path belongs to, for the `listener` label.
fn listener_of(path: &str) -> &'static str {
    if path.starts_with("/raft/") || path.starts_with("/internal/") {
        "internal"
    } else {
        "api"
    }
}

/// Middleware: refuses blocked sources with 429, and accounts every response its handler
/// marked with [`AuthFailure`]. The source is the peer address from axum's `ConnectInfo`
/// (`0.0.0.0` when the server runs without it, as in `oneshot` tests).
pub async fn layer(
    axum::extract::State(guard): axum::extract::State<Arc<AuthGuard>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let listener = listener_of(req.uri().path());
    // Only attempts to authenticate are held back: `/health`, `/metrics` and the identity
    // probe carry no token and keep answering a blocked source.
    let authenticating = req
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION);
    if let Some(wait) = guard.blocked_for(ip).filter(|_| authenticating) {
        let secs = wait.as_secs().saturating_add(1);
        let body = ApiErrorBody::new(
            ErrorCode::TooManyAuthFailures,
            format!("too many failed authentications from {ip}; try again in {secs} s"),
        );
        let mut res = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        return res;
    }
    let res = next.run(req).await;
    if let Some(reason) = res.extensions().get::<AuthFailure>().copied() {
        guard.failed(listener, reason, ip);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(per_minute: u32) -> AuthGuard {
        let c = IntCounterVec::new(
            prometheus::Opts::new("t_auth_failures_total", "t"),
            &["listener", "reason"],
        )
        .unwrap();
        AuthGuard::new(c, per_minute)
    }

    #[test]
    fn a_source_over_its_budget_is_blocked_and_others_are_not() {
        let g = guard(3);
        let bad: IpAddr = "192.0.2.7".parse().unwrap();
        let good: IpAddr = "192.0.2.8".parse().unwrap();
        for _ in 0..3 {
            g.failed("api", AuthFailure::UnknownToken, bad);
            assert!(g.blocked_for(bad).is_none());
        }
        g.failed("api", AuthFailure::UnknownToken, bad);
        let wait = g
            .blocked_for(bad)
            .expect("the fourth failure in a minute blocks");
        assert!(wait <= Duration::from_secs(21), "{wait:?}");
        assert!(g.blocked_for(good).is_none());
        assert_eq!(
            g.counter.with_label_values(&["api", "unknown_token"]).get(),
            4
        );
        assert_eq!(g.counter.with_label_values(&["api", "missing"]).get(), 0);
    }

    #[test]
    fn raft_and_forwarding_paths_count_as_the_internal_listener() {
        assert_eq!(listener_of("/raft/append"), "internal");
        assert_eq!(listener_of("/internal/v1/write"), "internal");
        assert_eq!(listener_of("/v1/status"), "api");
    }
}
