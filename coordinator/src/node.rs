//! A running coordinator node: the openraft instance over the RocksDB store, client writes
//! with typed leader forwarding, and the leader's finality poller.
//!
//! Invariants:
//! - a write returns a committed, applied [`Response`] or an error; on a deadline or an
//!   unknown outcome it returns [`WriteError::Unavailable`] and the caller must fail closed
//!   (DESIGN.md I7);
//! - a write reaching a follower is forwarded to the leader at most once per attempt, and
//!   attempts are bounded by `raft.write_timeout_ms` (STYLE.md 10);
//! - only the leader proposes finality evidence, and only when the agreed epoch advances;
//! - the cluster is initialised only by the `bootstrap` node and only when its store is
//!   empty and no configured peer reports an initialised store, so a restarted node always
//!   rejoins from its own data and a node added later (config copied from the bootstrap node
//!   by mistake) never founds a second cluster; any other node with an empty store waits to be
//!   added with `failoverctl cluster add-learner` (see [`crate::membership`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use failover_common::beacon::{agree, conflicting_finality, BeaconClient};
use failover_protocol::AgentId;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::network::Network;
use crate::state::{Command, Response};
use crate::store::{open_db, LogStore, SharedState, StateMachineStore};
use crate::{NodeId, Raft};

/// Bytes of snapshot data per `/raft/snapshot` request (see [`Node::start`]): at most
/// ~1 MiB of JSON, under the HTTP server's 2 MB body limit.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 256 * 1024;

/// Milliseconds since the Unix epoch on this node's clock (audit stamps only).
pub use crate::metrics::Heartbeat;
pub use failover_common::chain_time::now_ms;

/// Why a write has no committed answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// No quorum, no leader, a deadline passed, or the outcome is unknown. Fail closed.
    #[error("unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// The leader's URL, when known.
        leader_hint: Option<String>,
    },
}

/// A committed answer to a write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// The state machine's response.
    pub response: Response,
    /// Log index of the entry.
    pub log_index: u64,
}

/// A running coordinator node.
pub struct Node {
    /// This node's id.
    pub id: NodeId,
    /// Validated configuration.
    pub config: Arc<Config>,
    /// openraft handle.
    pub raft: Raft,
    /// Applied state, for reads.
    pub state: SharedState,
    /// HTTP client for forwarding and beacon polling.
    pub http: reqwest::Client,
    /// Shared cluster token (Raft RPC, forwarding), plaintext only; `None` over TLS, where
    /// coordinators authenticate by certificate.
    pub cluster_token: Option<String>,
    /// This node's TLS material (`[tls]`), reloaded on SIGHUP; `None` with
    /// `insecure_plaintext`.
    pub tls: Option<Arc<failover_common::tls::Tls>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Agent heartbeats received by this node.
    pub heartbeats: Mutex<BTreeMap<AgentId, Heartbeat>>,
    /// Bearer tokens in force: `[[operators]]` and `[[agents]]` of the configuration, and the
    /// cluster token; replaced by [`Node::reload_access`] (SIGHUP).
    pub access: crate::access::SharedAccess,
    /// Whether this node may vote ([`crate::join`]).
    pub join: Arc<crate::join::JoinState>,
    /// The client of the configured beacon nodes (`[beacon]`, with its `ca_file`).
    pub beacon: BeaconClient,
    /// Connections of this node's listener ([`failover_common::serve`]).
    pub listener_stats: Arc<failover_common::serve::ListenerStats>,
    /// Connections of its separate Raft listener (`raft_listen`), when it has one.
    pub raft_listener_stats: Arc<failover_common::serve::ListenerStats>,
    /// Failed-authentication accounting and per-source slow-down ([`crate::guard`]).
    pub auth_guard: Arc<crate::guard::AuthGuard>,
    /// The chain's current slot as this node sees it, for the far-future bound
    /// ([`crate::chain_clock`]); fed by [`Node::run_chain_clock`].
    pub chain_clock: crate::chain_clock::ChainClock,
    /// Held while this node (as leader) runs a membership change: one at a time.
    pub(crate) membership_change: tokio::sync::Mutex<()>,
    peer_urls: HashMap<NodeId, String>,
}

impl Node {
    /// True when this node is the leader, as its metrics say.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Opens the store, starts Raft, and initialises the cluster if this is the bootstrap node
    /// with an empty store.
    ///
    /// Errors: unreadable or empty cluster token, or one that other users may read (the
    /// error gives the `chmod`); TLS material that does not load or whose certificate does
    /// not name this node; RocksDB open/load failures, invalid Raft timing.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Node>> {
        let config = Arc::new(config);
        let cluster_token = match &config.cluster_token_file {
            Some(f) => Some(
                failover_common::secret_file::read_secret(f)
                    .context("read the cluster token")?
                    .to_string(),
            ),
            None => None,
        };
        let tls = match &config.tls {
            Some(files) => {
                let tls = failover_common::tls::Tls::load(files).context("load [tls]")?;
                tls.expect_identity(
                    &failover_common::tls::Identity::Node(config.node_id),
                    &format!("coordinator certs issue --node {}", config.node_id),
                )?;
                Some(tls)
            }
            None => {
                tracing::warn!(
                    node = config.node_id,
                    "insecure_plaintext: every link of this node is plain HTTP; tokens and \
                     verdicts travel in clear"
                );
                None
            }
        };
        let beacon = config.beacon_client().context("[beacon] ca_file")?;
        let access = crate::access::AccessList::new(
            &config.operators,
            &config.agents,
            cluster_token.as_deref(),
        )
        .map_err(|e| anyhow::anyhow!("invalid [[operators]] / [[agents]]:\n{e}"))?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
        let db = open_db(&config.data_dir).context("open RocksDB store")?;
        let log_store = LogStore::new(db.clone()).context("start the raft log flusher")?;
        let sm = StateMachineStore::load(db).context("load state machine")?;
        let state = sm.shared();
        let r = &config.raft;
        let raft_config = openraft::Config {
            cluster_name: "failover".into(),
            heartbeat_interval: r.heartbeat_ms,
            election_timeout_min: r.election_min_ms,
            election_timeout_max: r.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_every),
            max_in_snapshot_log_to_keep: r.keep_logs,
            // A chunk travels as an array of numbers (openraft's `Vec<u8>`: up to 2 bytes per
            // byte in the binary envelope of `codec`, 4 in JSON) in one `/raft/snapshot` body,
            // which the HTTP server caps at 2 MB: openraft's 3 MiB default made every snapshot
            // above ~0.5 MB fail to install (a lagging follower, or a node joining a restored
            // cluster, never caught up).
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            ..Default::default()
        }
        .validate()
        .context("raft timing")?;
        let http = match &tls {
            Some(t) => t.reqwest_builder(failover_common::tls::PeerRole::Node),
            None => reqwest::Client::builder(),
        };
        let http = http
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .context("build HTTP client")?;
        let peer_urls: HashMap<NodeId, String> =
            config.peers.iter().map(|p| (p.id, p.url.clone())).collect();
        let rpc_urls: HashMap<NodeId, String> = config
            .peers
            .iter()
            .map(|p| (p.id, p.rpc_url().to_string()))
            .collect();
        let network = Network::new(
            http.clone(),
            cluster_token.clone(),
            rpc_urls,
            config.raft.max_append_bytes,
        );
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            network,
            log_store,
            sm,
        )
        .await
        .context("start raft")?;
        let had_data = raft.is_initialized().await.context("read raft state")?;
        let join = Arc::new(
            crate::join::JoinState::open(&config.data_dir, config.node_id, had_data)
                .with_context(|| format!("read or write {}", crate::join::FILE_NAME))?,
        );
        let metrics = Arc::new(Metrics::with_approvals_required(
            config.handover.approvals_required,
        ));
        let auth_guard = Arc::new(crate::guard::AuthGuard::new(
            metrics.auth_failures.clone(),
            config.limits.auth_failures_per_minute,
        ));
        let node = Arc::new(Node {
            id: config.node_id,
            config: config.clone(),
            raft,
            state,
            http,
            cluster_token,
            tls,
            metrics,
            auth_guard,
            listener_stats: Arc::default(),
            raft_listener_stats: Arc::default(),
            beacon,
            join: join.clone(),
            heartbeats: Mutex::new(BTreeMap::new()),
            access: crate::access::SharedAccess::new(access),
            chain_clock: crate::chain_clock::ChainClock::default(),
            membership_change: tokio::sync::Mutex::new(()),
            peer_urls,
        });
        tokio::spawn(node.clone().run_chain_clock());
        tokio::spawn(node.join.clone().watch(node.raft.clone()));
        tokio::spawn(node.clone().keep_policy());
        tokio::spawn(count_raft_changes(
            node.raft.metrics(),
            Arc::downgrade(&node.metrics),
        ));
        let initialized = node
            .raft
            .is_initialized()
            .await
            .context("read raft state")?;
        if !initialized && !config.bootstrap {
            tracing::info!(
                node = node.id,
                "empty store and bootstrap = false: waiting to be added to the cluster \
                 (failoverctl cluster add-learner --id {} --url URL)",
                node.id
            );
        }
        if config.bootstrap && !initialized {
            let founded = node.initialised_peers().await;
            if !founded.is_empty() {
                tracing::error!(
                    node = node.id,
                    peers = ?founded,
                    "bootstrap = true but peers already hold an initialised cluster: NOT \
                     initialising a second one; waiting to be added with failoverctl cluster \
                     add-learner (set bootstrap = false in this node's config)"
                );
            } else {
                let members: BTreeMap<NodeId, BasicNode> = config
                    .peers
                    .iter()
                    .map(|p| {
                        (
                            p.id,
                            BasicNode {
                                addr: p.rpc_url().to_string(),
                            },
                        )
                    })
                    .collect();
                tracing::info!(
                    node = node.id,
                    members = members.len(),
                    "initialising cluster"
                );
                node.raft
                    .initialize(members)
                    .await
                    .context("initialise cluster")?;
                // The founder holds the whole (initial) log.
                node.join
                    .mark_joined(0)
                    .with_context(|| format!("write {}", crate::join::FILE_NAME))?;
            }
        }
        Ok(node)
    }

    /// Ids of configured peers (other than this node) whose store already holds a cluster,
    /// asked through `GET /internal/v1/identity` with a 1 s deadline each, all at once.
    /// Unreachable peers and peers of an older version count as not initialised.
    async fn initialised_peers(&self) -> Vec<NodeId> {
        let probes = self
            .config
            .peers
            .iter()
            .filter(|p| p.id != self.id)
            .map(|p| async move {
                // An unproven claim is enough here: believing a peer initialised only keeps
                // this node from founding a cluster, which is the safe side.
                match crate::identity::ask_identity(
                    &self.http,
                    p.rpc_url(),
                    None,
                    Duration::from_secs(1),
                )
                .await
                {
                    Ok(ident) if ident.initialized => Some(p.id),
                    _ => None,
                }
            });
        futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The URL at which this node reaches node `id`'s operator/agent API: its `peers[].url` in
    /// this node's config (it may route through a proxy), else its address in the current
    /// membership (a node added after this node's config was written; with separate Raft
    /// listeners that is its Raft URL, so list every node in every config). `None` if neither
    /// knows it.
    pub fn peer_url(&self, id: NodeId) -> Option<String> {
        self.peer_url_inner(id)
    }

    /// TLS handshakes refused on this node's listeners since it started.
    pub fn tls_handshake_failures(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        self.listener_stats.tls_handshake_failures.load(Relaxed)
            + self
                .raft_listener_stats
                .tls_handshake_failures
                .load(Relaxed)
    }

    /// SHA-256 (hex) of the credential admitting a node to this cluster: the cluster token
    /// in plaintext, the first CA certificate in force over TLS (as
    /// [`crate::backup::cluster_credential_sha256`] reads it from the files).
    pub fn cluster_credential_sha256(&self) -> String {
        match (&self.tls, &self.cluster_token) {
            (Some(tls), _) => tls
                .ca()
                .first()
                .map(|c| c.fingerprint_hex())
                .unwrap_or_default(),
            (None, Some(t)) => crate::config::token_hash(t),
            (None, None) => String::new(),
        }
    }

    /// Whether node `id` is a coordinator of this cluster, for accepting its certificate:
    /// listed in this node's `peers`, or in the membership this node knows. A node that knows
    /// no membership yet (a fresh node waiting to be added) accepts any node of the CA, as it
    /// must hear from a leader it was not configured with.
    pub fn knows_node(&self, id: NodeId) -> bool {
        if self.config.peers.iter().any(|p| p.id == id) {
            return true;
        }
        let m = self.raft.metrics().borrow().membership_config.clone();
        let mut nodes = m.membership().nodes().map(|(n, _)| *n).peekable();
        nodes.peek().is_none() || m.membership().nodes().any(|(n, _)| *n == id)
    }

    fn peer_url_inner(&self, id: NodeId) -> Option<String> {
        self.peer_urls.get(&id).cloned().or_else(|| {
            self.raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        })
    }

    /// Replaces the operators and agents allowed to call the API with those of `new`, a
    /// freshly read configuration of this node (operator onboarding, offboarding, token
    /// rotation; `access` module). Requests already authenticated finish under the old table.
    ///
    /// Errors (the old table stays in force): `new` is invalid as a whole, is for another
    /// node, or its `[[operators]]` / `[[agents]]` are unusable (every problem, one per line).
    /// Keys other than those two that differ are listed in
    /// [`crate::access::ReloadSummary::restart_needed`] and ignored until a restart.
    pub fn reload_access(&self, new: &Config) -> Result<crate::access::ReloadSummary, String> {
        let current = self.access.current();
        let (list, summary) = crate::access::prepare_reload(
            &self.config,
            &current,
            new,
            self.cluster_token.as_deref(),
        )?;
        self.access.replace(list);
        Ok(summary)
    }

    /// The current leader's id and URL, as this node knows it (URL as in [`Node::peer_url`]).
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let id = self.raft.metrics().borrow().current_leader?;
        Some((id, self.peer_url(id)?))
    }

    /// Proposes `cmd` and waits for its committed answer, forwarding to the leader if this
    /// node is a follower. Bounded by `raft.write_timeout_ms`.
    ///
    /// Errors: [`WriteError::Unavailable`] when no committed answer arrives in time.
    pub async fn write(&self, cmd: Command) -> Result<WriteOutcome, WriteError> {
        let deadline = Instant::now() + Duration::from_millis(self.config.raft.write_timeout_ms);
        match tokio::time::timeout_at(deadline.into(), self.write_inner(cmd, true, deadline)).await
        {
            Ok(r) => r,
            Err(_) => Err(WriteError::Unavailable {
                message: "no committed answer before the write deadline; outcome unknown".into(),
                leader_hint: self.leader().map(|l| l.1),
            }),
        }
    }

    /// Like [`Node::write`] but never forwards: used for writes forwarded to this node.
    pub async fn write_local(&self, cmd: Command) -> Result<WriteOutcome, WriteError> {
        let deadline = Instant::now() + Duration::from_millis(self.config.raft.write_timeout_ms);
        match tokio::time::timeout_at(deadline.into(), self.write_inner(cmd, false, deadline)).await
        {
            Ok(r) => r,
            Err(_) => Err(WriteError::Unavailable {
                message: "no committed answer before the write deadline; outcome unknown".into(),
                leader_hint: None,
            }),
        }
    }

    async fn write_inner(
        &self,
        cmd: Command,
        may_forward: bool,
        deadline: Instant,
    ) -> Result<WriteOutcome, WriteError> {
        let mut last_err = String::from("no leader known");
        while Instant::now() < deadline {
            match self.raft.client_write(cmd.clone()).await {
                Ok(r) => {
                    return Ok(WriteOutcome {
                        response: r.data,
                        log_index: r.log_id.index,
                    })
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    let hint = f.leader_node.as_ref().map(|n| n.addr.clone());
                    if !may_forward {
                        return Err(WriteError::Unavailable {
                            message: "this node is no longer the leader".into(),
                            leader_hint: hint,
                        });
                    }
                    match hint {
                        Some(url) => match self.forward(&url, &cmd).await {
                            Ok(o) => return Ok(o),
                            Err(ForwardError::Definite(e)) => return Err(e),
                            Err(ForwardError::Retry(e)) => last_err = e,
                        },
                        None => last_err = "no leader elected".into(),
                    }
                }
                Err(RaftError::APIError(e)) => last_err = e.to_string(),
                Err(RaftError::Fatal(e)) => {
                    return Err(WriteError::Unavailable {
                        message: format!("raft stopped: {e}"),
                        leader_hint: None,
                    })
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(WriteError::Unavailable {
            message: last_err,
            leader_hint: self.leader().map(|l| l.1),
        })
    }

    /// The one way a request reaches the leader from this node: `method` on `leader_url` +
    /// `path`, sent once with `credential` (a header name and value: the caller's
    /// `Authorization` or the cluster token in plaintext, [`crate::access::ON_BEHALF_HEADER`]
    /// over TLS, where this node's certificate authenticates it), the one-hop header
    /// [`FORWARDED_HEADER`] and, when given, a `body` (JSON, or a [`crate::codec`] envelope,
    /// labelled by its first byte); bounded by `timeout` when given.
    /// The leader's answer comes back as it was (status, media type, body). Used for writes
    /// forwarded by [`Node::write`] and for API requests a follower passes on to the leader.
    ///
    /// Errors: [`ForwardFailure::NotSent`] when no connection was made (nothing can have
    /// arrived: safe to retry), [`ForwardFailure::NoAnswer`] when the request may have arrived
    /// but no complete answer came back (the outcome is unknown).
    pub async fn send_to_leader(
        &self,
        leader_url: &str,
        method: reqwest::Method,
        path: &str,
        credential: Option<(&str, String)>,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<LeaderAnswer, ForwardFailure> {
        let mut req = self
            .http
            .request(
                method,
                format!("{}{path}", leader_url.trim_end_matches('/')),
            )
            .header(FORWARDED_HEADER, "1");
        if let Some((name, value)) = credential {
            req = req.header(name, value);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(b) = body {
            let media_type = crate::codec::Format::of(&b)
                .map_or("application/json", crate::codec::Format::media_type);
            req = req
                .header(reqwest::header::CONTENT_TYPE, media_type)
                .body(b);
        }
        let res = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Err(ForwardFailure::NotSent(failover_protocol::describe(&e)))
            }
            Err(e) => return Err(ForwardFailure::NoAnswer(failover_protocol::describe(&e))),
        };
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = res
            .bytes()
            .await
            .map_err(|e| ForwardFailure::NoAnswer(format!("reading the answer: {e}")))?;
        Ok(LeaderAnswer {
            status,
            content_type,
            body: body.to_vec(),
        })
    }

    /// Forwards `cmd` to the leader's internal write route ([`Node::send_to_leader`] with the
    /// cluster token in plaintext, this node's certificate over TLS) and decodes its committed
    /// answer.
    async fn forward(&self, leader_url: &str, cmd: &Command) -> Result<WriteOutcome, ForwardError> {
        let body = crate::codec::encode(cmd).map_err(|e| {
            ForwardError::Definite(WriteError::Unavailable {
                message: format!("cannot encode the command: {e}"),
                leader_hint: None,
            })
        })?;
        let answer = self
            .send_to_leader(
                leader_url,
                reqwest::Method::POST,
                "/internal/v1/write",
                self.cluster_token
                    .as_ref()
                    .map(|t| ("authorization", format!("Bearer {t}"))),
                Some(body),
                None,
            )
            .await;
        let answer = match answer {
            Ok(a) => a,
            // Not sent: safe to retry.
            Err(ForwardFailure::NotSent(e)) => {
                return Err(ForwardError::Retry(format!("leader unreachable: {e}")))
            }
            // Sent but no answer: the outcome is unknown; never retry blindly.
            Err(ForwardFailure::NoAnswer(e)) => {
                return Err(ForwardError::Definite(WriteError::Unavailable {
                    message: format!("forwarded write to leader, no answer: {e}"),
                    leader_hint: Some(leader_url.to_string()),
                }))
            }
        };
        if (200..300).contains(&answer.status) {
            return crate::codec::decode::<WriteOutcome>(&answer.body).map_err(|e| {
                ForwardError::Definite(WriteError::Unavailable {
                    message: format!("leader answer unreadable: {e}"),
                    leader_hint: Some(leader_url.to_string()),
                })
            });
        }
        // The leader refused before proposing (it is no longer leader): retry with fresh metrics.
        Err(ForwardError::Retry(format!(
            "leader refused forwarded write: {}",
            String::from_utf8_lossy(&answer.body)
        )))
    }

    /// Sees to the replicated approval policy ([`failover_protocol::ApprovalPolicy`]): the
    /// bootstrap node proposes its `[handover]` rules as the cluster's policy until one is set
    /// (every second; the command is a no-op once a policy exists); every node then logs once,
    /// at WARN, when its own `[handover]` differs from the policy in force, which is the one
    /// that applies.
    pub async fn keep_policy(self: Arc<Self>) {
        let mine = self.config.policy().approval();
        loop {
            let current = self.state.read().expect("state lock").data.policy;
            match current {
                Some(p) => {
                    if p != mine {
                        tracing::warn!(
                            replicated = ?p,
                            configured = ?mine,
                            "this node's [handover] differs from the cluster's replicated \
                             approval policy; the replicated one applies (change it with \
                             failoverctl policy propose / confirm)"
                        );
                    }
                    return;
                }
                None if self.config.bootstrap
                    && self.raft.is_initialized().await.unwrap_or(false) =>
                {
                    let cmd = Command::InitPolicy {
                        policy: mine,
                        node: self.id,
                        at_ms: now_ms(),
                    };
                    if let Err(e) = self.write(cmd).await {
                        tracing::debug!(error = %e, "approval policy not set yet; retrying");
                    }
                }
                None => {}
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Keeps [`Node::chain_clock`] fed from the configured beacon nodes, on every node (leader
    /// or not: each one checks the records it receives), every `beacon.poll_interval_ms`.
    /// Returns at once when no beacon node is configured (the bound is then not applied, and
    /// the log says so).
    pub async fn run_chain_clock(self: Arc<Self>) {
        if self.config.beacon.urls.is_empty() {
            tracing::warn!(
                "no beacon nodes configured: the coordinator cannot tell the chain's current \
                 epoch, so records and imports far in the future are not refused here"
            );
            return;
        }
        let client = self.beacon.clone();
        self.chain_clock
            .clone()
            .run(
                client,
                Duration::from_millis(self.config.beacon.poll_interval_ms),
            )
            .await
    }

    /// Checks `epochs` (epochs of records or import entries) against the far-future bound
    /// (`limits.max_future_epochs` ahead of the chain clock).
    ///
    /// Errors: the first epoch beyond the bound, as [`crate::chain_clock::FutureEpoch`].
    pub fn check_future(
        &self,
        epochs: impl IntoIterator<Item = u64>,
    ) -> Result<(), crate::chain_clock::FutureEpoch> {
        let margin = self.config.limits.max_future_epochs;
        let spe = self.config.chain.slots_per_epoch;
        epochs
            .into_iter()
            .try_for_each(|e| self.chain_clock.check_epoch(e, margin, spe))
    }

    /// Runs the finality poller forever: on the leader, every `beacon.poll_interval_ms`,
    /// observe all beacon nodes and propose the agreed checkpoint when it advances.
    pub async fn run_finality_poller(self: Arc<Self>) {
        if self.config.beacon.urls.is_empty() {
            tracing::warn!("no beacon nodes configured: handovers will wait for finality forever");
            return;
        }
        let client = self.beacon.clone();
        let quorum = self.config.beacon_quorum();
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.config.beacon.poll_interval_ms));
        loop {
            tick.tick().await;
            if self.raft.metrics().borrow().current_leader != Some(self.id) {
                self.metrics.clear_beacons();
                continue;
            }
            let polls = client.poll_all().await;
            self.metrics
                .observe_beacons(&polls, self.config.chain.slots_per_epoch);
            let observations: Vec<_> = polls.into_iter().map(|p| p.observation).collect();
            let Some(cp) = agree(&observations, quorum) else {
                if let Some((a, b)) = conflicting_finality(&observations) {
                    tracing::error!(
                        node_a = %a.url,
                        node_b = %b.url,
                        epoch = a.finalized.map_or(0, |c| c.epoch),
                        "beacon nodes finalized different roots for one epoch: they follow different \
                         chains; no finality evidence is proposed until an operator resolves it"
                    );
                } else {
                    tracing::debug!("beacon nodes do not agree on finality yet");
                }
                continue;
            };
            let current = self
                .state
                .read()
                .expect("state lock")
                .data
                .finalized_epoch();
            if cp.epoch <= current {
                continue;
            }
            let cmd = Command::Finality {
                checkpoint: cp,
                observations,
                at_ms: now_ms(),
                slots_per_epoch: self.config.chain.slots_per_epoch,
            };
            match self.write_local(cmd).await {
                Ok(_) => tracing::info!(epoch = cp.epoch, "finality evidence committed"),
                Err(e) => tracing::warn!(error = %e, "could not commit finality evidence"),
            }
        }
    }

    /// Runs the liveness gate's evidence collector forever (DESIGN.md "Liveness gate"): on
    /// the leader, every `beacon.poll_interval_ms`, when an open handover's gate needs an
    /// epoch that is complete by the chain clock, ask every beacon node
    /// ([`crate::liveness::gather`]) and propose the answer. When fewer than the beacon quorum
    /// answer, nothing is proposed (the gate stays shut), the log says why and
    /// `failover_liveness_checks_total{result="unavailable"}` counts it.
    pub async fn run_liveness_poller(self: Arc<Self>) {
        if self.config.beacon.urls.is_empty() {
            tracing::warn!(
                "no beacon nodes configured: the liveness gate cannot pass, so every handover \
                 needs break-glass approvals"
            );
            return;
        }
        let spe = self.config.chain.slots_per_epoch;
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.config.beacon.poll_interval_ms));
        let mut last_warning: Option<String> = None;
        loop {
            tick.tick().await;
            if !self.is_leader() {
                continue;
            }
            let Some(current) = self.chain_clock.current_epoch(spe) else {
                continue;
            };
            let task = {
                let st = self.state.read().expect("state lock");
                crate::liveness::next_task(&st.data, current)
            };
            let Some(task) = task else {
                continue;
            };
            let cmd = match crate::liveness::gather(
                &self.beacon,
                self.config.beacon_quorum(),
                &task,
                self.id,
                now_ms(),
            )
            .await
            {
                Ok(cmd) => cmd,
                Err(why) => {
                    self.metrics
                        .liveness_checks
                        .with_label_values(&["unavailable"])
                        .inc();
                    if last_warning.as_deref() != Some(why.as_str()) {
                        tracing::warn!(handover = task.handover, "{why}; the gate stays shut");
                        last_warning = Some(why);
                    }
                    continue;
                }
            };
            last_warning = None;
            let live = match &cmd {
                Command::Liveness { live, .. } => live.len(),
                _ => 0,
            };
            let out = match self.write_local(cmd).await {
                Ok(out) => out,
                Err(e) => {
                    tracing::warn!(error = %e, "could not commit liveness evidence");
                    continue;
                }
            };
            // Evidence the state machine refused (the gate moved on meanwhile) checked nothing.
            if let Response::Rejected { message, .. } = out.response {
                tracing::debug!(
                    handover = task.handover,
                    "liveness evidence refused: {message}"
                );
                continue;
            }
            let result = if live == 0 { "clear" } else { "live" };
            self.metrics
                .liveness_checks
                .with_label_values(&[result])
                .inc();
            if live > 0 {
                tracing::error!(
                    handover = task.handover,
                    epoch = task.epoch,
                    validators = live,
                    "DOPPELGANGER: validators of {} seen live outside the cluster; the handover \
                     is stopped (runbooks/doppelganger-detected.md)",
                    task.to
                );
            } else {
                tracing::info!(
                    handover = task.handover,
                    epoch = task.epoch,
                    "liveness evidence committed: no validator of {} live",
                    task.to
                );
            }
        }
    }
}

/// Counts elections and leader changes ([`Metrics::observe_raft`]) on every change of
/// openraft's metrics, so none is missed between two scrapes. Ends when Raft shuts down or
/// the metrics are dropped.
async fn count_raft_changes(
    mut rx: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>>,
    metrics: std::sync::Weak<Metrics>,
) {
    loop {
        let (term, leader) = {
            let m = rx.borrow_and_update();
            (m.current_term, m.current_leader)
        };
        let Some(metrics) = metrics.upgrade() else {
            return;
        };
        metrics.observe_raft(term, leader);
        drop(metrics);
        if rx.changed().await.is_err() {
            return;
        }
    }
}

enum ForwardError {
    Retry(String),
    Definite(WriteError),
}

/// Header marking a request already forwarded once by a coordinator: a node never forwards it
/// again (one hop at most).
pub const FORWARDED_HEADER: &str = "x-failover-forwarded";

/// The leader's answer to a request forwarded by [`Node::send_to_leader`], as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAnswer {
    /// HTTP status.
    pub status: u16,
    /// Its media type, when it named one.
    pub content_type: Option<String>,
    /// The body, bytes.
    pub body: Vec<u8>,
}

/// Why a request forwarded by [`Node::send_to_leader`] has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardFailure {
    /// No connection was made: nothing can have arrived, so retrying is safe.
    NotSent(String),
    /// The request may have arrived but no complete answer came back: the outcome is unknown.
    NoAnswer(String),
}
