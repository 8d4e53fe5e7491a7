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
//!   empty, so a restarted node always rejoins from its own data.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use failover_common::api::AgentId;
use failover_common::beacon::{agree, conflicting_finality, BeaconClient};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::network::Network;
use crate::state::{Command, Response};
use crate::store::{open_db, LogStore, SharedState, StateMachineStore};
use crate::{NodeId, Raft};

/// Milliseconds since the Unix epoch on this node's clock (audit stamps only).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

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

/// Last heartbeat of an agent, as seen by this node.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    /// When it arrived.
    pub at: Instant,
    /// Keys the agent reported loaded.
    pub keys_loaded: u64,
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
    /// Shared cluster token (Raft RPC, forwarding).
    pub cluster_token: String,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Agent heartbeats received by this node.
    pub heartbeats: Mutex<BTreeMap<AgentId, Heartbeat>>,
    peer_urls: HashMap<NodeId, String>,
}

impl Node {
    /// Opens the store, starts Raft, and initialises the cluster if this is the bootstrap node
    /// with an empty store.
    ///
    /// Errors: unreadable cluster token, RocksDB open/load failures, invalid Raft timing.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Node>> {
        let config = Arc::new(config);
        let cluster_token = std::fs::read_to_string(&config.cluster_token_file)
            .with_context(|| format!("read cluster token {}", config.cluster_token_file.display()))?
            .trim()
            .to_string();
        anyhow::ensure!(!cluster_token.is_empty(), "cluster token file is empty");
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
        let db = open_db(&config.data_dir).context("open RocksDB store")?;
        let log_store = LogStore::new(db.clone());
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
            ..Default::default()
        }
        .validate()
        .context("raft timing")?;
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .context("build HTTP client")?;
        let peer_urls: HashMap<NodeId, String> =
            config.peers.iter().map(|p| (p.id, p.url.clone())).collect();
        let network = Network::new(http.clone(), cluster_token.clone(), peer_urls.clone());
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            network,
            log_store,
            sm,
        )
        .await
        .context("start raft")?;
        let node = Arc::new(Node {
            id: config.node_id,
            config: config.clone(),
            raft,
            state,
            http,
            cluster_token,
            metrics: Arc::new(Metrics::new()),
            heartbeats: Mutex::new(BTreeMap::new()),
            peer_urls,
        });
        if config.bootstrap {
            let initialized = node
                .raft
                .is_initialized()
                .await
                .context("read raft state")?;
            if !initialized {
                let members: BTreeMap<NodeId, BasicNode> = config
                    .peers
                    .iter()
                    .map(|p| {
                        (
                            p.id,
                            BasicNode {
                                addr: p.url.clone(),
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
            }
        }
        Ok(node)
    }

    /// The current leader's id and URL, as this node knows it.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        // This node's own view of the peer first (it may route through a proxy).
        let url = self.peer_urls.get(&id).cloned().or_else(|| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        })?;
        Some((id, url))
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

    async fn forward(&self, leader_url: &str, cmd: &Command) -> Result<WriteOutcome, ForwardError> {
        let res = self
            .http
            .post(format!(
                "{}/internal/v1/write",
                leader_url.trim_end_matches('/')
            ))
            .bearer_auth(&self.cluster_token)
            .json(cmd)
            .send()
            .await;
        let res = match res {
            Ok(r) => r,
            // Not sent: safe to retry.
            Err(e) if e.is_connect() => {
                return Err(ForwardError::Retry(format!("leader unreachable: {e}")))
            }
            // Sent but no answer: the outcome is unknown; never retry blindly.
            Err(e) => {
                return Err(ForwardError::Definite(WriteError::Unavailable {
                    message: format!("forwarded write to leader, no answer: {e}"),
                    leader_hint: Some(leader_url.to_string()),
                }))
            }
        };
        if res.status().is_success() {
            return res.json::<WriteOutcome>().await.map_err(|e| {
                ForwardError::Definite(WriteError::Unavailable {
                    message: format!("leader answer unreadable: {e}"),
                    leader_hint: Some(leader_url.to_string()),
                })
            });
        }
        // The leader refused before proposing (it is no longer leader): retry with fresh metrics.
        let text = res.text().await.unwrap_or_default();
        Err(ForwardError::Retry(format!(
            "leader refused forwarded write: {text}"
        )))
    }

    /// Runs the finality poller forever: on the leader, every `beacon.poll_interval_ms`,
    /// observe all beacon nodes and propose the agreed checkpoint when it advances.
    pub async fn run_finality_poller(self: Arc<Self>) {
        if self.config.beacon.urls.is_empty() {
            tracing::warn!("no beacon nodes configured: handovers will wait for finality forever");
            return;
        }
        let client = BeaconClient::new(
            self.config.beacon.urls.clone(),
            Duration::from_millis(self.config.beacon.timeout_ms),
            self.config.chain.genesis_validators_root,
        );
        let quorum = self.config.beacon_quorum();
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.config.beacon.poll_interval_ms));
        loop {
            tick.tick().await;
            if self.raft.metrics().borrow().current_leader != Some(self.id) {
                continue;
            }
            let observations = client.observe_all().await;
            self.metrics.observe_beacons(&observations);
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
}

enum ForwardError {
    Retry(String),
    Definite(WriteError),
}
