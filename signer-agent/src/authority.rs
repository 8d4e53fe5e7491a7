//! The agent's signing switch: whether this agent currently holds signing authority, learned
//! from the coordinators (STYLE.md 13: explicit states, not booleans).
//!
//! ```text
//!            view: holder = me, token t                 view: holder ≠ me, or not_holder
//! Unknown ─────────────────────────────> Enabled{t} ─────────────────────────────> Fenced{h}
//!    ^                                      │  ^                                      │
//!    └────── no fresh observation ──────────┘  └──── view: holder = me, token t ──────┘
//! ```
//!
//! Invariants:
//! - only [`SigningState::Enabled`] signs anything, and its token is the one sent with record
//!   batches; the coordinator still checks that token for every slashable record (DESIGN.md
//!   I2), so a stale `Enabled` can never get a slashable message signed;
//! - an observation older than `authority_max_age` counts as [`SigningState::Unknown`]: a
//!   partitioned agent stops signing even non-slashable messages on its own (the DESIGN.md
//!   "short lease"); grants need finality and an operator, which take far longer. The age of
//!   a view is counted from the moment its request was sent, not from its arrival, and the
//!   coordinator answers `GET /v1/authority` linearizably (its leader confirms leadership with
//!   a quorum), so the holder named by a view held authority at some instant after the
//!   request left: a fenced agent stops signing non-slashable messages at most
//!   `authority_max_age` after the fence committed, whatever the network delayed;
//! - tokens only grow (DESIGN.md I1) and so do applied indexes, so an observation with a
//!   smaller token, or a view read at a smaller applied index, than one already seen (a lagging
//!   follower's view) is ignored. A lagging view can still be the first one seen after a
//!   restart; it cannot get a slashable message signed, because the coordinator checks the
//!   token of every record.

use std::sync::Mutex;
use std::time::Duration;

use failover_protocol::{AgentId, AuthorityView};
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Whether this agent may sign, as last learned from the coordinators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningState {
    /// This agent holds authority with fencing `token`; it may sign, sending `token` with
    /// every record batch.
    Enabled {
        /// The fencing token (log index of the grant).
        token: u64,
    },
    /// Another agent, or nobody (`None`, e.g. during a handover), holds authority.
    Fenced {
        /// The current holder, if any.
        holder: Option<AgentId>,
    },
    /// No fresh observation: nothing is signed.
    Unknown,
}

impl SigningState {
    /// Metric label: `enabled`, `fenced` or `unknown`.
    pub fn label(&self) -> &'static str {
        match self {
            SigningState::Enabled { .. } => "enabled",
            SigningState::Fenced { .. } => "fenced",
            SigningState::Unknown => "unknown",
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: SigningState,
    observed_at: Option<Instant>,
    max_token: u64,
    max_applied: u64,
    last_contact: Option<Instant>,
}

/// Tracks [`SigningState`] from authority polls and record answers.
#[derive(Debug)]
pub struct Authority {
    agent_id: AgentId,
    max_age: Duration,
    metrics: Metrics,
    inner: Mutex<Inner>,
}

impl Authority {
    /// Starts in [`SigningState::Unknown`]. Observations older than `max_age` expire.
    pub fn new(agent_id: AgentId, max_age: Duration, metrics: Metrics) -> Self {
        Self {
            agent_id,
            max_age,
            metrics,
            inner: Mutex::new(Inner {
                state: SigningState::Unknown,
                observed_at: None,
                max_token: 0,
                max_applied: 0,
                last_contact: None,
            }),
        }
    }

    /// The current state; an observation older than `max_age` is [`SigningState::Unknown`].
    pub fn current(&self) -> SigningState {
        let inner = self.inner.lock().expect("authority lock");
        match inner.observed_at {
            Some(at) if at.elapsed() <= self.max_age => inner.state.clone(),
            _ => SigningState::Unknown,
        }
    }

    /// True when a coordinator answered (with anything) within `max_age`.
    pub fn coordinator_reachable(&self) -> bool {
        let inner = self.inner.lock().expect("authority lock");
        inner
            .last_contact
            .is_some_and(|at| at.elapsed() <= self.max_age)
    }

    /// Records that a coordinator answered a call.
    pub fn contact(&self) {
        self.inner.lock().expect("authority lock").last_contact = Some(Instant::now());
    }

    /// Applies a `GET /v1/authority` view whose request was sent at `requested_at`; its age
    /// counts from then (module invariants).
    pub fn observe_view(&self, view: &AuthorityView, requested_at: Instant) {
        let state = match &view.holder {
            Some(h) if *h == self.agent_id => SigningState::Enabled { token: view.token },
            other => SigningState::Fenced {
                holder: other.clone(),
            },
        };
        self.observe(state, view.token, Some(view.applied_index), requested_at);
    }

    /// Extends the lease of an `Enabled { token }` state with a committed record verdict for
    /// a record queued at `queued_at` with `token`. The coordinator applies a record batch only
    /// while this agent holds authority with exactly that token (`RecordBatch` apply answers
    /// `not_holder` otherwise), so a verdict proves what a view read at `queued_at` would:
    /// authority held at some instant after it. Continuous signing traffic then keeps the
    /// lease alive through a failed authority poll (a leader election, say).
    ///
    /// Changes nothing else: a verdict never turns `Fenced` into `Enabled` (an old batch
    /// answered after a fence must not re-enable the agent), and a verdict for another token
    /// is ignored.
    pub fn confirm_by_verdict(&self, token: u64, queued_at: Instant) {
        let mut inner = self.inner.lock().expect("authority lock");
        inner.last_contact = Some(Instant::now());
        if inner.state == (SigningState::Enabled { token }) && inner.max_token == token {
            inner.observed_at = inner.observed_at.map(|prev| prev.max(queued_at));
        }
    }

    /// Applies a `not_holder` answer to a record batch sent with `sent_token`; the answer is
    /// the leader's committed state, dated at its arrival.
    ///
    /// Returns the new state. When the answer names this agent as holder with a newer token
    /// (a re-grant), the state becomes `Enabled` with that token.
    pub fn observe_not_holder(
        &self,
        holder: Option<AgentId>,
        token: Option<u64>,
        sent_token: u64,
    ) -> SigningState {
        match (holder, token) {
            (Some(h), Some(t)) if h == self.agent_id && t > sent_token => {
                self.observe(SigningState::Enabled { token: t }, t, None, Instant::now())
            }
            // The coordinator says the sent token is not current for us: we are fenced, even
            // if it names us (our token is stale and no newer one was given).
            (Some(h), t) if h == self.agent_id => self.observe(
                SigningState::Fenced { holder: None },
                t.unwrap_or(sent_token),
                None,
                Instant::now(),
            ),
            (holder, t) => self.observe(
                SigningState::Fenced { holder },
                t.unwrap_or(sent_token),
                None,
                Instant::now(),
            ),
        }
        self.current()
    }

    /// Applies an observation of `token`, read at `applied` (views only; record answers come
    /// from the leader and have none), valid from `at` on.
    fn observe(&self, state: SigningState, token: u64, applied: Option<u64>, at: Instant) {
        let mut inner = self.inner.lock().expect("authority lock");
        inner.last_contact = Some(Instant::now());
        if token < inner.max_token || applied.is_some_and(|a| a < inner.max_applied) {
            // A lagging view from before a newer grant or revoke we already saw.
            return;
        }
        inner.max_token = token;
        if let Some(a) = applied {
            inner.max_applied = a;
        }
        if inner.state != state {
            tracing::info!(agent = %self.agent_id, from = ?inner.state, to = ?state, token, "signing state changed");
        }
        self.metrics.set_signing_state(state.label());
        self.metrics.authority_token.set(token as i64);
        // Two polls run at once (the lease poll and the long poll): an answer dated earlier
        // than one already seen for the same state must not shorten its lease.
        inner.observed_at = match inner.observed_at {
            Some(prev) if inner.state == state => Some(prev.max(at)),
            _ => Some(at),
        };
        inner.state = state;
    }

    /// What this agent last saw, for a long poll: the largest token and whether it was the
    /// holder then (`None` before any observation). Ignores the age of the observation.
    pub fn last_seen(&self) -> Option<(u64, bool)> {
        let inner = self.inner.lock().expect("authority lock");
        match &inner.state {
            SigningState::Unknown => None,
            SigningState::Enabled { .. } => Some((inner.max_token, true)),
            SigningState::Fenced { .. } => Some((inner.max_token, false)),
        }
    }

    /// Refreshes the metric when the state expired to `Unknown` without a new observation.
    pub fn refresh_metric(&self) {
        self.metrics.set_signing_state(self.current().label());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(holder: Option<&str>, token: u64) -> AuthorityView {
        AuthorityView {
            holder: holder.map(str::to_string),
            token,
            applied_index: token,
            waited_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_view_naming_this_agent_enables_signing_with_its_token() {
        let a = Authority::new("a".into(), Duration::from_secs(5), Metrics::new());
        assert_eq!(a.current(), SigningState::Unknown);
        a.observe_view(&view(Some("a"), 7), Instant::now());
        assert_eq!(a.current(), SigningState::Enabled { token: 7 });
        a.observe_view(&view(Some("b"), 9), Instant::now());
        assert_eq!(
            a.current(),
            SigningState::Fenced {
                holder: Some("b".into())
            }
        );
    }

    #[tokio::test]
    async fn a_lagging_view_with_a_smaller_token_is_ignored() {
        let a = Authority::new("a".into(), Duration::from_secs(5), Metrics::new());
        a.observe_view(&view(Some("b"), 9), Instant::now());
        a.observe_view(&view(Some("a"), 7), Instant::now());
        assert_eq!(
            a.current(),
            SigningState::Fenced {
                holder: Some("b".into())
            }
        );
    }

    #[tokio::test]
    async fn a_lagging_view_from_before_a_revoke_does_not_re_enable() {
        let a = Authority::new("a".into(), Duration::from_secs(5), Metrics::new());
        a.observe_view(
            &AuthorityView {
                holder: None,
                token: 7,
                applied_index: 20,
                waited_ms: 0,
            },
            Instant::now(),
        );
        a.observe_view(
            &AuthorityView {
                holder: Some("a".into()),
                token: 7,
                applied_index: 15,
                waited_ms: 0,
            },
            Instant::now(),
        );
        assert_eq!(a.current(), SigningState::Fenced { holder: None });
    }

    #[tokio::test]
    async fn an_old_observation_expires_to_unknown() {
        let a = Authority::new("a".into(), Duration::from_millis(50), Metrics::new());
        a.observe_view(&view(Some("a"), 7), Instant::now());
        assert_eq!(a.current(), SigningState::Enabled { token: 7 });
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(a.current(), SigningState::Unknown);
        assert!(!a.coordinator_reachable());
    }

    #[tokio::test]
    async fn a_views_age_counts_from_its_request_not_its_arrival() {
        let a = Authority::new("a".into(), Duration::from_millis(400), Metrics::new());
        let sent = Instant::now();
        // The answer took 200 ms to arrive: 200 ms of lease are left, not 400.
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.observe_view(&view(Some("a"), 7), sent);
        assert_eq!(a.current(), SigningState::Enabled { token: 7 });
        // 250 ms after arrival: within 400 ms of the arrival, past 400 ms of the request.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(a.current(), SigningState::Unknown);
        assert!(a.coordinator_reachable(), "the coordinator did answer");
    }

    #[tokio::test]
    async fn a_committed_verdict_extends_an_enabled_lease_and_nothing_else() {
        let a = Authority::new("a".into(), Duration::from_millis(1000), Metrics::new());
        // Before any view: a verdict does not enable.
        a.confirm_by_verdict(7, Instant::now());
        assert_eq!(a.current(), SigningState::Unknown);

        a.observe_view(&view(Some("a"), 7), Instant::now());
        tokio::time::sleep(Duration::from_millis(600)).await;
        // A record queued now, committed a little later: the lease counts from its queueing.
        let queued = Instant::now();
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.confirm_by_verdict(7, queued);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            a.current(),
            SigningState::Enabled { token: 7 },
            "1.3 s after the view, 0.7 s after the record was queued"
        );
        // A verdict for an older or newer token changes nothing.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(a.current(), SigningState::Unknown);
        a.confirm_by_verdict(6, Instant::now());
        a.confirm_by_verdict(8, Instant::now());
        assert_eq!(a.current(), SigningState::Unknown);

        // Fenced: an old batch answered after the fence does not re-enable.
        a.observe_view(&view(None, 7), Instant::now());
        a.confirm_by_verdict(7, Instant::now());
        assert_eq!(a.current(), SigningState::Fenced { holder: None });
    }

    #[tokio::test]
    async fn an_earlier_dated_answer_for_the_same_state_does_not_shorten_the_lease() {
        let a = Authority::new("a".into(), Duration::from_millis(300), Metrics::new());
        let early = Instant::now();
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.observe_view(&view(Some("a"), 7), Instant::now());
        // A slower poll sent before the first answers the same state afterwards.
        a.observe_view(&view(Some("a"), 7), early);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(a.current(), SigningState::Enabled { token: 7 });
        assert_eq!(a.last_seen(), Some((7, true)));
    }

    #[tokio::test]
    async fn not_holder_naming_this_agent_with_a_newer_token_re_enables() {
        let a = Authority::new("a".into(), Duration::from_secs(5), Metrics::new());
        a.observe_view(&view(Some("a"), 7), Instant::now());
        assert_eq!(
            a.observe_not_holder(Some("a".into()), Some(12), 7),
            SigningState::Enabled { token: 12 }
        );
        assert_eq!(
            a.observe_not_holder(Some("c".into()), Some(15), 12),
            SigningState::Fenced {
                holder: Some("c".into())
            }
        );
    }
}
