//! The signer agent: a Web3Signer-compatible remote signer that asks the coordinators to
//! record every slashable message before it signs it (DESIGN.md "signer-agent").
//!
//! Protocol, per sign request (DESIGN.md "One attestation, end to end"):
//! 1. parse the body and compute the signing root ourselves (`failover_common::eth`, with the
//!    configured network's constants for `VOLUNTARY_EXIT` and `VALIDATOR_REGISTRATION`);
//! 2. check the network (`fork_info.genesis_validators_root`), refuse `VOLUNTARY_EXIT` unless
//!    `allow_voluntary_exit`, and check the signing state ([`authority::SigningState`], learned
//!    by polling `GET /v1/authority`);
//! 3. for `ATTESTATION`, `BLOCK` and `BLOCK_V2`, hand the record to the group-commit
//!    [`batcher`], which sends it with the agent's fencing token in one
//!    `POST /v1/agent/records` shared with concurrent requests;
//! 4. compute the signature on the [`sign_pool`] (one thread per core, FIFO) while the record
//!    commits, and release it only on a committed `Valid` or `SameData` verdict; on any other
//!    outcome it is dropped unreleased.
//!
//! Invariants:
//! - **I4**: no signature of a slashable type leaves the agent before its record committed and
//!   was accepted (it may be *computed* earlier; it is *released* only then);
//! - **I7**: no verdict by `record_deadline_ms`, a transport error, or any unknown outcome
//!   gives 503 and no signature;
//! - only `Enabled` signs, for every type; `Fenced` answers 403 naming the holder, `Unknown`
//!   answers 503;
//! - keys live in memory only ([`keys`]).
//!
//! Departure from Web3Signer: there is no local slashing database; the replicated one in the
//! coordinators is the only one, and `GET /api/v1/eth2/highWatermark` and `/reload` are not
//! served yet. The standard keymanager API (`/eth/v1/keystores`) imports a key's EIP-3076
//! history into the coordinators before the key can sign ([`keymanager`]).
//!
//! Modules: [`config`], [`keys`], [`authority`] (signing
//! state), [`batcher`] (group commit), [`api`] (HTTP routes and errors), [`keymanager`]
//! (keymanager API), [`metrics`]. The coordinator client is `failover_protocol::CoordinatorClient`.

#![deny(missing_docs)]

pub mod api;
pub mod authority;
pub mod batcher;
pub mod config;
pub mod keymanager;
pub mod keys;
pub mod metrics;
pub mod sign_pool;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use failover_common::eth::ChainSpec;
use failover_protocol::{HeartbeatRequest, RegisterAgentRequest};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

pub use api::{router, ApiError, ErrorBody};
pub use authority::{Authority, SigningState};
pub use config::{Config, NetworkSetting, Overrides};

use batcher::{BatchLimits, Batcher};
use failover_protocol::CoordinatorClient;
use keys::Keys;
use metrics::Metrics;

/// Everything a running agent shares between its handlers and background tasks.
pub struct Agent {
    /// The validated configuration.
    pub config: Config,
    /// The network constants of [`Config::chain_spec`], resolved once at start.
    pub chain: ChainSpec,
    /// The validator keys.
    pub keys: Arc<Keys>,
    /// The signing state.
    pub authority: Authority,
    /// Metrics registry.
    pub metrics: Metrics,
    /// The keymanager API state; `None` when `keymanager_token_file` is not configured.
    pub keymanager: Option<keymanager::Keymanager>,
    client: Arc<CoordinatorClient>,
    /// This agent's TLS material (`tls`), reloaded on SIGHUP; `None` in plaintext.
    pub tls: Option<Arc<failover_common::tls::Tls>>,
    /// Orders registrations, so the last one sent carries the latest key set.
    register_lock: tokio::sync::Mutex<()>,
    batcher: Batcher,
    /// The signing threads, one per core ([`sign_pool`]).
    pub sign_pool: sign_pool::SignPool,
    /// Wakes the authority poll at once (a long poll saw a change).
    poll_now: Arc<tokio::sync::Notify>,
    poll_failures: AtomicU64,
    /// Why the last authority poll failed (`None` once one succeeded): what a refused sign
    /// request reports, e.g. a coordinator certificate from another CA.
    last_poll_error: std::sync::Mutex<Option<String>>,
}

impl Agent {
    /// Builds an agent from a validated `config`, its coordinator bearer token (if any) and
    /// its TLS material (if any: coordinators are then dialled over TLS, must present a node
    /// certificate of the cluster CA, and see this agent's certificate), with an empty key set
    /// and the signing state `Unknown`. Starts the batching task, so it must be
    /// called inside a Tokio runtime; start the polls with [`Agent::spawn_background`].
    ///
    /// When `keymanager_token_file` is set, reads the keymanager API token from it, or
    /// generates one into it ([`keymanager::Keymanager::open`]).
    ///
    /// Errors: the network settings are inconsistent ([`Config::chain_spec`]); the HTTP client
    /// cannot be built; the keymanager token file cannot be read or created.
    pub fn new(
        config: Config,
        coordinator_token: Option<String>,
        tls: Option<Arc<failover_common::tls::Tls>>,
    ) -> anyhow::Result<Arc<Self>> {
        let chain = config
            .chain_spec()
            .context("resolve the network constants")?;
        let keymanager = config
            .keymanager_token_file
            .as_deref()
            .map(keymanager::Keymanager::open)
            .transpose()?;
        let metrics = Metrics::new();
        let http = match &tls {
            Some(t) => t.reqwest_builder(failover_common::tls::PeerRole::Node),
            None => reqwest::Client::builder(),
        };
        let client = Arc::new(CoordinatorClient::new(
            config.coordinators.clone(),
            coordinator_token,
            http,
            batcher::connect_timeout_for(config.record_deadline()),
        )?);
        let batcher = Batcher::spawn(
            config.agent_id.clone(),
            client.clone(),
            BatchLimits {
                max_batch: config.max_batch,
                max_in_flight: config.max_in_flight_batches,
            },
            metrics.clone(),
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let sign_pool = sign_pool::SignPool::new(cores).context("start the signing threads")?;
        let authority = Authority::new(
            config.agent_id.clone(),
            Duration::from_millis(config.authority_max_age_ms),
            metrics.clone(),
        );
        Ok(Arc::new(Self {
            config,
            chain,
            keys: Arc::new(Keys::new()),
            authority,
            metrics,
            keymanager,
            client,
            tls,
            register_lock: tokio::sync::Mutex::new(()),
            batcher,
            sign_pool,
            poll_now: Arc::new(tokio::sync::Notify::new()),
            poll_failures: AtomicU64::new(0),
            last_poll_error: std::sync::Mutex::new(None),
        }))
    }

    /// Polls `GET /v1/authority` once and updates the signing state. Returns true when a
    /// view was received.
    pub async fn poll_authority(&self) -> bool {
        let timeout = Duration::from_millis(self.config.authority_max_age_ms / 2);
        let requested_at = tokio::time::Instant::now();
        match self.client.authority(timeout).await {
            Ok(view) => {
                self.authority.observe_view(&view, requested_at);
                *self.last_poll_error.lock().expect("poll error lock") = None;
                if self.poll_failures.swap(0, Ordering::Relaxed) > 0 {
                    tracing::info!(agent = %self.config.agent_id, "coordinator reachable again");
                }
                true
            }
            Err(e) => {
                if e.reached_coordinator() {
                    self.authority.contact();
                }
                *self.last_poll_error.lock().expect("poll error lock") = Some(e.to_string());
                let n = self.poll_failures.fetch_add(1, Ordering::Relaxed);
                // Log the 1st, 2nd, 4th, 8th, … consecutive failure.
                if (n + 1).is_power_of_two() {
                    tracing::warn!(agent = %self.config.agent_id, error = %e, failures = n + 1, "authority poll failed");
                }
                false
            }
        }
    }

    /// Why the last authority poll failed, if it did (cleared by the next success).
    pub fn last_poll_error(&self) -> Option<String> {
        self.last_poll_error
            .lock()
            .expect("poll error lock")
            .clone()
    }

    /// Registers with the coordinators once (`POST /v1/agent/register`) with the keys usable
    /// at the time of the call. Registrations are sent one at a time, each reading the key set
    /// when its turn comes, so the last one sent carries the latest set.
    ///
    /// Errors: the call failed.
    pub async fn register(&self) -> Result<(), failover_protocol::CallError> {
        let _in_order = self.register_lock.lock().await;
        let req = RegisterAgentRequest {
            agent: self.config.agent_id.clone(),
            region: self.config.region.clone(),
            pubkeys: self.keys.pubkeys(),
        };
        self.client.register(&req, Duration::from_secs(5)).await
    }

    /// Starts the background tasks: the authority poll (every `authority_poll_ms`), the
    /// registration (once every key is loaded, retried until it succeeds) and the heartbeat
    /// (every `heartbeat_ms`). They stop when the returned guard or the agent is dropped.
    pub fn spawn_background(self: &Arc<Self>) -> Background {
        let poll = {
            let weak = Arc::downgrade(self);
            let every = Duration::from_millis(self.config.authority_poll_ms);
            let poll_now = self.poll_now.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    // Waits without holding the agent, so dropping it ends the task.
                    let woken = tokio::select! {
                        _ = tick.tick() => false,
                        _ = poll_now.notified() => true,
                    };
                    let Some(agent) = weak.upgrade() else { return };
                    if woken {
                        tick.reset();
                    }
                    agent.poll_authority().await;
                    agent.authority.refresh_metric();
                }
            })
        };
        let watch = authority_watch_task(Arc::downgrade(self));
        let heartbeat = {
            let weak = Arc::downgrade(self);
            let every = Duration::from_millis(self.config.heartbeat_ms);
            every_tick(weak, every, |agent| async move {
                let req = HeartbeatRequest {
                    agent: agent.config.agent_id.clone(),
                    keys_loaded: agent.keys.count() as u64,
                };
                if let Err(e) = agent.client.heartbeat(&req, Duration::from_secs(2)).await {
                    tracing::debug!(error = %e, "heartbeat failed");
                }
            })
        };
        let register = registration_task(Arc::downgrade(self));
        Background {
            handles: vec![poll, watch, heartbeat, register],
        }
    }

    /// Registers the current key set after a keymanager change: once now, and if that fails,
    /// again in the background until it succeeds (registration gates no signature).
    pub(crate) async fn register_soon(self: &Arc<Self>) {
        match self.register().await {
            Ok(()) => {
                tracing::info!(agent = %self.config.agent_id, keys = self.keys.count(), "registered the new key set with the coordinators");
            }
            Err(e) => {
                tracing::warn!(agent = %self.config.agent_id, error = %e, "registering the new key set failed; retrying in the background");
                // Detached: it ends on success or when the agent is dropped.
                drop(registration_task(Arc::downgrade(self)));
            }
        }
    }
}

/// Registers once every key is loaded, retrying with backoff (250 ms doubling to 10 s) until
/// it succeeds or the agent is dropped.
fn registration_task(weak: Weak<Agent>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        loop {
            let Some(agent) = weak.upgrade() else { return };
            if agent.keys.is_complete() {
                match agent.register().await {
                    Ok(()) => {
                        tracing::info!(agent = %agent.config.agent_id, keys = agent.keys.count(), "registered with the coordinators");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(agent = %agent.config.agent_id, error = %e, retry_in = ?backoff, "registration failed");
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
            drop(agent);
            tokio::time::sleep(backoff).await;
        }
    })
}

/// How long one long poll of `GET /v1/authority` may wait at the coordinator.
const AUTHORITY_WATCH_WAIT: Duration = Duration::from_secs(20);

/// The long poll (issue 15 item 6): asks the coordinators to answer as soon as the authority
/// differs from what this agent last saw, observes the answer (dated at its request time plus
/// the coordinator's `waited_ms`, module `authority`), and on a change wakes the lease poll
/// too, so a fresh view follows at once. A grant therefore reaches the agent about one round
/// trip after it is applied, not at the next 500 ms poll. The lease poll keeps running: the
/// long poll only makes changes arrive sooner. Backs off for one poll interval after a
/// failed call.
fn authority_watch_task(weak: Weak<Agent>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Some(agent) = weak.upgrade() else { return };
            let Some((token, holding)) = agent.authority.last_seen() else {
                // Nothing seen yet: the lease poll learns the first view.
                let every = Duration::from_millis(agent.config.authority_poll_ms);
                drop(agent);
                tokio::time::sleep(every).await;
                continue;
            };
            let timeout = Duration::from_millis(agent.config.authority_max_age_ms);
            let requested_at = tokio::time::Instant::now();
            match agent
                .client
                .authority_watch(token, holding, AUTHORITY_WATCH_WAIT, timeout)
                .await
            {
                Ok(view) => {
                    let changed = view.token != token
                        || (view.holder.as_deref() == Some(agent.config.agent_id.as_str()))
                            != holding;
                    let read_at = long_poll_read_time(requested_at, view.waited_ms);
                    agent.authority.observe_view(&view, read_at);
                    if changed {
                        agent.poll_now.notify_one();
                    } else if requested_at.elapsed() < AUTHORITY_WATCH_WAIT / 2 {
                        // Answered early without a change: a coordinator that does not hold
                        // long polls (or shortened the wait). Do not ask again at once.
                        let every = Duration::from_millis(agent.config.authority_poll_ms);
                        drop(agent);
                        tokio::time::sleep(every).await;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "authority long poll failed");
                    let every = Duration::from_millis(agent.config.authority_poll_ms);
                    drop(agent);
                    tokio::time::sleep(every).await;
                }
            }
        }
    })
}

/// When the view of a long poll sent at `requested_at` was read at the earliest: `waited_ms`
/// after the request (the coordinator held it that long before its linearizable read), or
/// `requested_at` itself when `waited_ms` is more than has passed since (an answer that cannot
/// be right is dated as a plain poll would be, never later; no overflow whatever its value).
fn long_poll_read_time(requested_at: tokio::time::Instant, waited_ms: u64) -> tokio::time::Instant {
    let waited = Duration::from_millis(waited_ms);
    if waited <= requested_at.elapsed() {
        requested_at + waited
    } else {
        requested_at
    }
}

fn every_tick<F, Fut>(weak: Weak<Agent>, every: Duration, f: F) -> JoinHandle<()>
where
    F: Fn(Arc<Agent>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(agent) = weak.upgrade() else { return };
            f(agent).await;
        }
    })
}

/// Guard of the background tasks; dropping it stops them.
pub struct Background {
    handles: Vec<JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// Sends `tracing` logs to stderr, filtered by `RUST_LOG` (default `info`), coloured only on a
/// terminal. For binaries; call once.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// On every SIGHUP: reloads the TLS material and the API client allowlist from their files;
/// what fails to load keeps the old material in force and is logged at ERROR.
async fn reload_on_sighup(
    tls: Option<Arc<failover_common::tls::Tls>>,
    allowlist: Option<Arc<failover_common::tls::allowlist::AllowList>>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP: TLS reload disabled");
        return;
    };
    while hup.recv().await.is_some() {
        if let Some(t) = &tls {
            match t.reload() {
                Ok(leaf) => {
                    tracing::info!(fingerprint = %leaf.fingerprint_hex(), not_after = leaf.not_after, "TLS certificate reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload refused: the certificate in force stays")
                }
            }
        }
        if let Some(l) = &allowlist {
            match l.reload() {
                Ok(()) => {
                    tracing::info!(known_clients = ?l.known_clients(), "API client allowlist reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "allowlist reload refused: the list in force stays")
                }
            }
        }
    }
}

/// Reads the coordinator bearer token from `path` (surrounding whitespace removed).
///
/// Errors: the file cannot be read, is empty, or other users may read it (the message gives
/// the `chmod` that fixes it).
pub fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    Ok(failover_common::secret_file::read_secret(path)
        .context("read the coordinator token")?
        .to_string())
}

/// Default limits of the agent's listener ([`failover_common::serve`]): request headers
/// within 10 s (also the idle keep-alive limit), at most 1,024 connections (`max_connections`
/// replaces it, [`listener_limits`]), and 10 minutes per request: sign requests end within
/// `record_deadline_ms` on their own, while a keymanager import of many scrypt keystores
/// legitimately takes minutes.
pub const LISTENER_LIMITS: failover_common::serve::ListenerLimits =
    failover_common::serve::ListenerLimits {
        header_read_timeout: std::time::Duration::from_secs(10),
        request_timeout: std::time::Duration::from_secs(600),
        max_connections: 1024,
    };

/// The listener limits of an agent configured with `config`: [`LISTENER_LIMITS`] with its
/// `max_connections`.
pub fn listener_limits(config: &Config) -> failover_common::serve::ListenerLimits {
    failover_common::serve::ListenerLimits {
        max_connections: config.max_connections,
        ..LISTENER_LIMITS
    }
}

/// Checks that `config.beacon_node`, when set, serves the chain this agent is configured for
/// (`failover_common::beacon::network_check::compare`: fork versions, `DENEB_FORK_EPOCH`,
/// `SLOTS_PER_EPOCH`, slot length, genesis time, genesis validators root). A node that does
/// not answer is asked again every 2 s for `beacon_check_timeout_ms`.
///
/// Errors: a field differs (every differing field is named, with both values), or the node
/// did not answer in time, or its CA file does not load. The agent then does not start, so it
/// never signs with the constants of another chain.
pub async fn check_chain_with_beacon_node(config: &Config) -> anyhow::Result<()> {
    use failover_common::beacon::network_check::{compare, ExpectedChain};
    use failover_common::beacon::BeaconClient;
    let Some(url) = &config.beacon_node else {
        return Ok(());
    };
    let expected = ExpectedChain {
        spec: config
            .chain_spec()
            .context("resolve the network constants")?,
        genesis_validators_root: config.gvr(),
        timing: config.timing(),
    };
    let per_call = Duration::from_secs(5);
    let client = match &config.beacon_ca_file {
        Some(ca) => BeaconClient::with_ca_file(vec![url.clone()], per_call, config.gvr(), ca)
            .with_context(|| format!("load beacon_ca_file {}", ca.display()))?,
        None => BeaconClient::new(vec![url.clone()], per_call, config.gvr()),
    };
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(config.beacon_check_timeout_ms);
    loop {
        let answer = async {
            let spec = client.spec(url).await?;
            let genesis = client.genesis(url).await?;
            Ok::<_, failover_common::beacon::BeaconError>((spec, genesis))
        }
        .await;
        match answer {
            Ok((spec, genesis)) => {
                let found = compare(&expected, &spec, &genesis);
                if found.is_empty() {
                    tracing::info!(beacon_node = %url, network = expected.spec.name, "the beacon node serves the configured chain");
                    return Ok(());
                }
                let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
                anyhow::bail!(
                    "the beacon node at {url} serves another chain than this agent is configured \
                     for (network = {}); refusing to start, so nothing is signed over the wrong \
                     domain:\n  {}",
                    expected.spec.name,
                    lines.join("\n  ")
                );
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(beacon_node = %url, error = %e, "cannot read the chain configuration yet; retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => anyhow::bail!(
                "the beacon node at {url} did not give its chain configuration within {} ms \
                 (beacon_check_timeout_ms): {e}; the agent does not start unchecked while \
                 beacon_node is set",
                config.beacon_check_timeout_ms
            ),
        }
    }
}

/// Runs an agent until `shutdown` completes: reads the token and the TLS material, parses the
/// keystores, binds the listener, serves (TLS with the client allowlist, or plain HTTP when
/// configured so), decrypts the keys in parallel, then prints `READY https://<addr>` (or
/// `http://`) on stdout, and finally shuts down gracefully. SIGHUP reloads the TLS material
/// and the client allowlist.
///
/// Errors: the token, the TLS material, a keystore or a password cannot be read or
/// decrypted, the certificate does not name this agent, or the listener cannot be bound;
/// each names what failed.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    check_chain_with_beacon_node(&config).await?;
    let token = config
        .coordinator_token_file
        .as_deref()
        .map(read_token)
        .transpose()?;
    let tls = match &config.tls {
        Some(files) => {
            let tls = failover_common::tls::Tls::load(files).context("load tls")?;
            tls.expect_identity(
                &failover_common::tls::Identity::Agent(config.agent_id.clone()),
                &format!("coordinator certs issue --agent {}", config.agent_id),
            )?;
            Some(tls)
        }
        None => None,
    };
    if config.insecure_plaintext_coordinators {
        tracing::warn!("insecure_plaintext_coordinators: the coordinator links are plain HTTP; anyone on the path can forge authority views and verdicts");
    }
    let allowlist = match &config.api_clients {
        Some(files) => Some(
            failover_common::tls::allowlist::AllowList::load(files).context("load api_clients")?,
        ),
        None => {
            tracing::warn!(listen = %config.listen, "insecure_plaintext_api: the Web3Signer and keymanager API is plain HTTP; keep it on a link nobody else can reach");
            None
        }
    };
    let api_tls = match (&tls, &allowlist) {
        (Some(t), Some(list)) => {
            Some(t.server_config(failover_common::tls::ClientAuth::Verifier(list.clone())))
        }
        _ => None,
    };
    let files = keys::scan(&config.keystores_dir, &config.passwords_dir)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("bind the API listener on {}", config.listen))?;
    let addr = listener.local_addr().context("read the bound address")?;

    let limits = listener_limits(&config);
    let agent = Agent::new(config, token, tls.clone())?;
    tokio::spawn(reload_on_sighup(tls, allowlist));
    if let Some(km) = &agent.keymanager {
        tracing::info!(token_file = %km.token_file().display(), "keymanager API enabled at {}", keymanager::PATH);
    }
    let _background = agent.spawn_background();
    let mut server = tokio::spawn(failover_common::serve::serve(
        listener,
        router(agent.clone()),
        limits,
        Arc::default(),
        api_tls.clone(),
        shutdown,
    ));

    let count = files.len();
    agent.metrics.keys_configured.set(count as i64);
    if count == 0 {
        tracing::warn!(dir = %agent.config.keystores_dir.display(), "no keystores found; this agent has no keys to sign with");
    }
    let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = std::time::Instant::now();
    tracing::info!(agent = %agent.config.agent_id, keystores = count, parallelism, "decrypting keystores");
    tokio::select! {
        loaded = keys::decrypt_all(files, agent.keys.clone(), parallelism) => loaded?,
        served = &mut server => {
            served.context("API server task")?;
            return Ok(());
        }
    }
    agent.metrics.keys_loaded.set(agent.keys.count() as i64);
    tracing::info!(agent = %agent.config.agent_id, keys = count, elapsed = ?started.elapsed(), "keys loaded");

    let host = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let scheme = if api_tls.is_some() { "https" } else { "http" };
        writeln!(out, "READY {scheme}://{host}").context("write READY line")?;
        out.flush().context("flush stdout")?;
    }

    server.await.context("API server task")?;
    tracing::info!(agent = %agent.config.agent_id, "shut down");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_long_poll_view_is_dated_at_most_its_wait_after_the_request() {
        let sent = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(long_poll_read_time(sent, 0), sent);
        assert_eq!(
            long_poll_read_time(sent, 20),
            sent + Duration::from_millis(20)
        );
        // More than has passed since the request cannot be right: dated at the request.
        assert_eq!(long_poll_read_time(sent, 60_000), sent);
        assert_eq!(long_poll_read_time(sent, u64::MAX), sent);
    }
}
