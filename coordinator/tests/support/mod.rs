//! Test-cluster scaffolding shared by the integration tests (`mod support;` in each file):
//! node config files, `coordinator run` processes and in-process nodes on loopback ports, a
//! fake beacon node, the operator and agent tokens, and HTTP helpers.
//!
//! Each test file is its own crate and uses only part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use coordinator::config::{token_hash, Config};
use coordinator::node::Node;
use failover_common::types::{Pubkey, Root};
use failover_protocol::{RecordBatchResponse, RecordItem, Verdict};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The genesis validators root of the chain every test config and the fake beacon node use.
pub const GVR: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
/// Operator `alice`'s bearer token (in clear).
pub const ALICE: &str = "alice-token";
/// Operator `bob`'s bearer token (in clear).
pub const BOB: &str = "bob-token";
/// Operator `carol`'s bearer token (in clear).
pub const CAROL: &str = "carol-token";
/// Operator `dave`'s bearer token (in clear).
pub const DAVE: &str = "dave-token";
/// Agent `agent-a`'s bearer token (in clear).
pub const AGENT_A: &str = "agent-a-token";
/// Agent `agent-b`'s bearer token (in clear).
pub const AGENT_B: &str = "agent-b-token";
/// The contents of the cluster token file [`Cluster::new`] writes.
pub const CLUSTER_SECRET: &str = "cluster-secret";
/// Region labels of the peers [`Cluster::new`] lists, by node index.
pub const REGIONS: [&str; 4] = ["eu", "us", "ap", "sa"];
/// The `[raft]` keys of a test node unless it says otherwise: 100 ms heartbeats, elections
/// within 0.8–1.6 s, 4 s per write.
pub const RAFT: &str = "heartbeat_ms = 100
election_min_ms = 800
election_max_ms = 1600
write_timeout_ms = 4000
";

/// A free TCP port on 127.0.0.1 (bound once, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One node's config file, rendered as TOML by [`NodeConfig::to_toml`]. Tokens are given in
/// clear and written as their hashes.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `node_id`.
    pub id: u64,
    /// `listen`, e.g. `127.0.0.1:7100`.
    pub listen: String,
    /// `data_dir`.
    pub data_dir: PathBuf,
    /// `cluster_token_file`.
    pub token_file: PathBuf,
    /// `bootstrap`.
    pub bootstrap: bool,
    /// `[[peers]]` as (id, url, region).
    pub peers: Vec<(u64, String, String)>,
    /// `[[operators]]` as (name, clear token).
    pub operators: Vec<(&'static str, &'static str)>,
    /// `[[agents]]` as (id, clear token).
    pub agents: Vec<(&'static str, &'static str)>,
    /// The one URL of `[beacon]` (polled every 200 ms, 1 s timeout); no section if `None`.
    pub beacon: Option<String>,
    /// The lines of the `[raft]` table.
    pub raft: String,
    /// Further tables, appended as they are (e.g. `[handover]`).
    pub extra: String,
    /// `raft_listen`, and each peer's `raft_url` by index (a separate Raft listener), if any.
    pub raft_listen: Option<(String, Vec<String>)>,
    /// `[tls]`; `None` writes `insecure_plaintext = true` and the cluster token file.
    pub tls: Option<failover_common::tls::TlsFiles>,
}

impl NodeConfig {
    /// A node that does not bootstrap, knows no peers and no beacon node, with operators
    /// alice ([`ALICE`]), bob ([`BOB`]), carol ([`CAROL`]) and dave ([`DAVE`]) (the default
    /// three break-glass approvals need three operators besides the requester), agents agent-a ([`AGENT_A`]) and agent-b
    /// ([`AGENT_B`]), and the [`RAFT`] timing.
    pub fn new(id: u64, listen: &str, data_dir: &Path, token_file: &Path) -> Self {
        Self {
            id,
            listen: listen.to_string(),
            data_dir: data_dir.to_path_buf(),
            token_file: token_file.to_path_buf(),
            bootstrap: false,
            peers: Vec::new(),
            operators: vec![
                ("alice", ALICE),
                ("bob", BOB),
                ("carol", CAROL),
                ("dave", DAVE),
            ],
            agents: vec![("agent-a", AGENT_A), ("agent-b", AGENT_B)],
            beacon: None,
            raft: RAFT.to_string(),
            extra: String::new(),
            raft_listen: None,
            tls: None,
        }
    }

    /// The config file's text.
    pub fn to_toml(&self) -> String {
        let peers: String = self
            .peers
            .iter()
            .enumerate()
            .map(|(i, (j, u, r))| {
                let raft_url = match &self.raft_listen {
                    Some((_, urls)) => format!("raft_url = \"{}\"\n", urls[i]),
                    None => String::new(),
                };
                format!("[[peers]]\nid = {j}\nurl = \"{u}\"\nregion = \"{r}\"\n{raft_url}")
            })
            .collect();
        let raft_listen = match &self.raft_listen {
            Some((l, _)) => format!("raft_listen = \"{l}\"\n"),
            None => String::new(),
        };
        let operators = principals("operators", "name", &self.operators);
        let agents = principals("agents", "id", &self.agents);
        let beacon = match &self.beacon {
            Some(url) => {
                format!("[beacon]\nurls = [\"{url}\"]\npoll_interval_ms = 200\ntimeout_ms = 1000\n")
            }
            None => String::new(),
        };
        format!(
            r#"node_id = {id}
listen = "{listen}"
data_dir = {data:?}
{link}
bootstrap = {boot}
{raft_listen}{peers}
{operators}{agents}
[chain]
genesis_validators_root = "{GVR}"
slots_per_epoch = 32
{beacon}[raft]
{raft}{extra}"#,
            id = self.id,
            listen = self.listen,
            data = self.data_dir,
            link = match &self.tls {
                None => format!(
                    "insecure_plaintext = true\ncluster_token_file = {:?}",
                    self.token_file
                ),
                Some(t) => format!(
                    "tls = {{ ca_file = {:?}, cert_file = {:?}, key_file = {:?} }}",
                    t.ca_file, t.cert_file, t.key_file
                ),
            },
            boot = self.bootstrap,
            raft = self.raft,
            extra = self.extra,
        )
    }
}

/// The `[[table]]` entries of `list`, as (`key`, clear token), with the tokens hashed.
fn principals(table: &str, key: &str, list: &[(&str, &str)]) -> String {
    list.iter()
        .map(|(n, t)| {
            format!(
                "[[{table}]]\n{key} = \"{n}\"\ntoken_sha256 = \"{}\"\n",
                token_hash(t)
            )
        })
        .collect()
}

/// `coordinator run` processes on loopback ports, all in one directory: `cluster.token`, and
/// per node (1-based) `nodeN.toml`, `nodeN.log` (stderr) and the data directory `nodeN`.
/// Dropping it kills every node still running.
pub struct Cluster {
    /// The directory of the token, the configs, the logs and the data.
    pub dir: PathBuf,
    /// Each node's base URL, `http://127.0.0.1:port`, by index.
    pub urls: Vec<String>,
    /// The config each node's file holds, by index.
    pub configs: Vec<NodeConfig>,
    procs: Vec<Option<Child>>,
}

impl Cluster {
    /// Writes the configs of `nodes` nodes on free ports and starts none of them. Node 1
    /// bootstraps; every node lists all of them as peers (regions from [`REGIONS`]);
    /// `customize` then amends node `i`'s [`NodeConfig::new`] defaults.
    pub fn new(dir: &Path, nodes: usize, customize: impl FnMut(usize, &mut NodeConfig)) -> Self {
        Self::build(dir, nodes, None, customize)
    }

    /// [`Cluster::new`] over TLS: `https://` URLs and, for every node, a node certificate of
    /// `ca` for 127.0.0.1 (`node-N.pem`) in its `[tls]`.
    pub fn with_tls(
        dir: &Path,
        nodes: usize,
        ca: &failover_common::tls::issue::DirCa,
        customize: impl FnMut(usize, &mut NodeConfig),
    ) -> Self {
        Self::build(dir, nodes, Some(ca), customize)
    }

    fn build(
        dir: &Path,
        nodes: usize,
        ca: Option<&failover_common::tls::issue::DirCa>,
        mut customize: impl FnMut(usize, &mut NodeConfig),
    ) -> Self {
        let ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let scheme = if ca.is_some() { "https" } else { "http" };
        let urls: Vec<String> = ports
            .iter()
            .map(|p| format!("{scheme}://127.0.0.1:{p}"))
            .collect();
        let token_file = dir.join("cluster.token");
        failover_common::secret_file::write_private(&token_file, CLUSTER_SECRET).unwrap();
        let mut configs = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let mut cfg = NodeConfig::new(
                i as u64 + 1,
                &format!("127.0.0.1:{port}"),
                &dir.join(format!("node{}", i + 1)),
                &token_file,
            );
            cfg.bootstrap = i == 0;
            cfg.tls = ca.map(|ca| {
                let id = i as u64 + 1;
                let kind = failover_common::tls::issue::LeafKind::Node(id);
                ca.issue_local(&format!("node-{id}"), kind, 1).unwrap()
            });
            cfg.peers = (0..nodes)
                .map(|j| (j as u64 + 1, urls[j].clone(), REGIONS[j].to_string()))
                .collect();
            customize(i, &mut cfg);
            std::fs::write(dir.join(format!("node{}.toml", i + 1)), cfg.to_toml()).unwrap();
            configs.push(cfg);
        }
        Cluster {
            dir: dir.to_path_buf(),
            urls,
            configs,
            procs: (0..nodes).map(|_| None).collect(),
        }
    }

    /// Node `i`'s config file.
    pub fn config_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{}.toml", i + 1))
    }

    /// Node `i`'s log file (its stderr, appended to across restarts).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{}.log", i + 1))
    }

    /// Starts node `i` from its config file and waits for its `READY` line.
    pub fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
            .args(["run", "--config"])
            .arg(self.config_path(i))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("READY "),
            "node {} did not start: {line:?}",
            i + 1
        );
        self.procs[i] = Some(child);
    }

    /// Starts every node, in index order.
    pub fn start_all(&mut self) {
        for i in 0..self.procs.len() {
            self.start(i);
        }
    }

    /// kill -9 of node `i` if it runs: no shutdown path runs.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// kill -9 of every running node.
    pub fn kill_all(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }

    /// The process id of node `i`, which must be running.
    pub fn pid(&self, i: usize) -> u32 {
        self.procs[i].as_ref().expect("node running").id()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Starts an in-process node from `cfg`, with its chain clock, finality and liveness pollers,
/// serving the HTTP router on
/// `listener`.
pub async fn serve(cfg: Config, listener: tokio::net::TcpListener) -> Arc<Node> {
    let node = Node::start(cfg).await.unwrap();
    tokio::spawn(node.clone().run_chain_clock());
    tokio::spawn(node.clone().run_finality_poller());
    tokio::spawn(node.clone().run_liveness_poller());
    let app = coordinator::http::router(node.clone());
    let (limits, stats) = (node.config.limits.listener(), node.listener_stats.clone());
    tokio::spawn(failover_common::serve::serve(
        listener,
        app,
        limits,
        stats,
        None,
        std::future::pending(),
    ));
    node
}

/// A fake beacon node on the [`GVR`] chain whose finalized epoch and head slot the test sets.
#[derive(Clone)]
pub struct FakeBeacon {
    /// The epoch of every checkpoint `finality_checkpoints` reports.
    pub finalized: Arc<AtomicU64>,
    /// The head slot `syncing` reports.
    pub head_slot: Arc<AtomicU64>,
}

impl FakeBeacon {
    /// A beacon node at head slot `head_slot` with `finalized` as the finalized epoch.
    pub fn new(finalized: u64, head_slot: u64) -> Self {
        Self {
            finalized: Arc::new(AtomicU64::new(finalized)),
            head_slot: Arc::new(AtomicU64::new(head_slot)),
        }
    }

    /// Reports `epoch` as finalized from now on.
    pub fn finalize(&self, epoch: u64) {
        self.finalized.store(epoch, Ordering::SeqCst);
    }

    /// Moves the head `n` epochs (of 32 slots) forward: the coordinators' chain clock follows
    /// it, so the epochs of a liveness gate's window become complete.
    pub fn advance_epochs(&self, n: u64) {
        self.head_slot.fetch_add(n * 32, Ordering::SeqCst);
    }

    /// Serves the beacon API on a loopback port; returns its base URL.
    pub async fn serve(&self) -> String {
        async fn genesis() -> Json<Value> {
            Json(
                json!({"data": {"genesis_time": "1606824023", "genesis_validators_root": GVR,
                "genesis_fork_version": "0x00000000"}}),
            )
        }
        async fn syncing(State(b): State<FakeBeacon>) -> Json<Value> {
            let head = b.head_slot.load(Ordering::SeqCst);
            Json(
                json!({"data": {"head_slot": head.to_string(), "sync_distance": "0",
                "is_syncing": false, "is_optimistic": false, "el_offline": false}}),
            )
        }
        async fn finality(State(b): State<FakeBeacon>) -> Json<Value> {
            let e = b.finalized.load(Ordering::SeqCst);
            let cp = json!({"epoch": e.to_string(), "root": format!("0x{:064x}", e + 7)});
            Json(json!({"execution_optimistic": false, "finalized": false,
                "data": {"previous_justified": cp, "current_justified": cp, "finalized": cp}}))
        }
        // The liveness gate's queries: no test validator is on this chain (the registry answer
        // is empty), so every epoch is clear.
        async fn validators() -> Json<Value> {
            Json(json!({"execution_optimistic": false, "finalized": false, "data": []}))
        }
        async fn liveness() -> Json<Value> {
            Json(json!({"data": []}))
        }
        let app = Router::new()
            .route(
                "/eth/v1/beacon/states/{state}/validators",
                axum::routing::post(validators),
            )
            .route(
                "/eth/v1/validator/liveness/{epoch}",
                axum::routing::post(liveness),
            )
            .route("/eth/v1/beacon/genesis", get(genesis))
            .route("/eth/v1/node/syncing", get(syncing))
            .route(
                "/eth/v1/beacon/states/{state}/finality_checkpoints",
                get(finality),
            )
            .with_state(self.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        url
    }
}

/// An HTTP client for the operator and agent APIs: each call returns the status and the JSON
/// body (`null` if the body is not JSON).
pub struct Api {
    /// The client, for requests the helpers do not cover.
    pub http: reqwest::Client,
    /// A request that gets no HTTP answer panics (else it reads as 503).
    strict: bool,
}

impl Api {
    /// For clusters whose nodes are killed or re-elect: a request that gets no answer within
    /// `timeout` reads as 503 (with `null`, or `{"error": …}` for a POST).
    pub fn new(timeout: Duration) -> Self {
        Self::with(timeout, false)
    }

    /// For nodes that must always answer: a request that gets no answer within `timeout`
    /// panics.
    pub fn strict(timeout: Duration) -> Self {
        Self::with(timeout, true)
    }

    fn with(timeout: Duration, strict: bool) -> Self {
        Self::over(reqwest::Client::builder(), timeout).strictly(strict)
    }

    /// Requests through `client` (e.g. a TLS client with a certificate), answered within
    /// `timeout` or read as 503.
    pub fn over(client: reqwest::ClientBuilder, timeout: Duration) -> Self {
        Self {
            http: client.timeout(timeout).build().unwrap(),
            strict: false,
        }
    }

    fn strictly(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let r = match request.send().await {
            Ok(r) => r,
            Err(e) if self.strict => panic!("request got no answer: {e}"),
            Err(e) => return Err(e),
        };
        Ok((r.status(), r.json().await.unwrap_or(Value::Null)))
    }

    /// GET `path` on `url` with bearer `token`.
    pub async fn get(&self, url: &str, path: &str, token: &str) -> (StatusCode, Value) {
        let request = self.http.get(format!("{url}{path}")).bearer_auth(token);
        self.send(request)
            .await
            .unwrap_or((StatusCode::SERVICE_UNAVAILABLE, Value::Null))
    }

    /// POST the JSON `body` to `path` on `url` with bearer `token`.
    pub async fn post(
        &self,
        url: &str,
        path: &str,
        token: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let request = self
            .http
            .post(format!("{url}{path}"))
            .bearer_auth(token)
            .json(&body);
        self.send(request).await.unwrap_or_else(unanswered)
    }

    /// POST `body` as it is (JSON or not), labelled `application/json`.
    pub async fn post_raw(
        &self,
        url: &str,
        path: &str,
        token: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let request = self
            .http
            .post(format!("{url}{path}"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string());
        self.send(request).await.unwrap_or_else(unanswered)
    }

    /// POST `/v1/agent/records`: `agent` (bearer `token`) records `items` under the authority
    /// token `tok`.
    pub async fn records(
        &self,
        url: &str,
        token: &str,
        agent: &str,
        tok: u64,
        items: Vec<RecordItem>,
    ) -> (StatusCode, Value) {
        self.post(
            url,
            "/v1/agent/records",
            token,
            json!({"agent": agent, "token": tok, "items": items}),
        )
        .await
    }

    /// POST `/v1/agent/register`: `agent` (bearer `token`) registers in region eu with
    /// `pubkeys`.
    pub async fn register(
        &self,
        url: &str,
        token: &str,
        agent: &str,
        pubkeys: &[Pubkey],
    ) -> (StatusCode, Value) {
        self.post(
            url,
            "/v1/agent/register",
            token,
            json!({"agent": agent, "region": "eu", "pubkeys": pubkeys}),
        )
        .await
    }

    /// POST `/v1/handovers`: alice requests a handover to `to` for `reason`.
    ///
    /// A coordinator with beacon nodes refuses a request (503) until its chain clock knows the
    /// current epoch, where the liveness window starts; that answer is retried for 10 s.
    pub async fn handover(&self, url: &str, to: &str, reason: &str) -> (StatusCode, Value) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (s, v) = self
                .post(
                    url,
                    "/v1/handovers",
                    ALICE,
                    json!({"to": to, "reason": reason}),
                )
                .await;
            let clock_unknown = s == StatusCode::SERVICE_UNAVAILABLE
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("current epoch"));
            if !clock_unknown || std::time::Instant::now() > deadline {
                return (s, v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls handover `id` on `url` (as alice) until it is in `state` (20 s at most).
    pub async fn wait_handover_state(&self, url: &str, id: u64, state: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, h) = self.get(url, &format!("/v1/handovers/{id}"), ALICE).await;
            if h["state"] == state {
                return h;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "handover {id} never became {state}: {h}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Lets handover `id`'s liveness gate pass by moving `beacon`'s head `epochs` epochs on
    /// (3 when the request came at the head's epoch `R` and the old holder's last message is
    /// older: the window is `R + 1` and `R + 2`, complete at `R + 3`), waits for
    /// `awaiting_approval`, and has bob approve; returns the granted token.
    pub async fn clear_and_approve(
        &self,
        url: &str,
        id: u64,
        beacon: &FakeBeacon,
        epochs: u64,
    ) -> u64 {
        beacon.advance_epochs(epochs);
        self.wait_handover_state(url, id, "awaiting_approval").await;
        let (s, h) = self.approve_as(url, id, BOB).await;
        assert_eq!(s, StatusCode::OK, "{h}");
        assert_eq!(h["state"], "completed", "{h}");
        h["granted_token"].as_u64().unwrap()
    }

    /// Grants `to` authority on a cluster without beacon nodes: alice requests, and since no
    /// liveness evidence can ever come, bob, carol and dave complete it with break-glass (the
    /// default three); returns the granted token.
    pub async fn grant_without_beacon(&self, url: &str, to: &str) -> u64 {
        let (s, h) = self.handover(url, to, "grant").await;
        assert_eq!(s, StatusCode::OK, "{h}");
        assert_eq!(h["state"], "awaiting_liveness", "{h}");
        let id = h["id"].as_u64().unwrap();
        let mut last = Value::Null;
        for op in [BOB, CAROL, DAVE] {
            let (s, h) = self
                .post(
                    url,
                    &format!("/v1/handovers/{id}/approve"),
                    op,
                    json!({"break_glass": true}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{h}");
            last = h;
        }
        assert_eq!(last["state"], "completed", "{last}");
        last["granted_token"].as_u64().unwrap()
    }

    /// POST `/v1/handovers/{id}/approve` with bearer `token`.
    pub async fn approve_as(&self, url: &str, id: u64, token: &str) -> (StatusCode, Value) {
        let path = format!("/v1/handovers/{id}/approve");
        self.post(url, &path, token, json!({})).await
    }

    /// Asks `urls` in turn for `path` (as alice), every 200 ms, until one answers 200 with a
    /// body that `accept`s; returns that body. Panics with `failure` after 30 s.
    pub async fn wait_answer(
        &self,
        urls: &[String],
        path: &str,
        accept: impl Fn(&Value) -> bool,
        failure: &str,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for u in urls {
                let (s, v) = self.get(u, path, ALICE).await;
                if s == StatusCode::OK && accept(&v) {
                    return v;
                }
            }
            assert!(Instant::now() < deadline, "{failure}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The audit trail of `url` (asked as alice, which must succeed): the `first` and `second`
    /// fields of each entry.
    pub async fn audit(&self, url: &str, first: &str, second: &str) -> Vec<(String, String)> {
        let (s, audit) = self.get(url, "/v1/audit", ALICE).await;
        assert_eq!(s, StatusCode::OK);
        audit
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e[first].as_str().unwrap().to_string(),
                    e[second].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// How a POST that got no answer reads.
fn unanswered(e: reqwest::Error) -> (StatusCode, Value) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": e.to_string()}),
    )
}

/// The verdicts of a `/v1/agent/records` response.
pub fn verdicts(v: &Value) -> Vec<Verdict> {
    serde_json::from_value::<RecordBatchResponse>(v.clone())
        .expect("record response")
        .verdicts
}

/// An attestation by validator `[v; 48]` from `source` to `target` with signing root `[r; 32]`.
pub fn attestation(v: u8, source: u64, target: u64, r: u8) -> RecordItem {
    RecordItem::Attestation {
        pubkey: Pubkey([v; 48]),
        source_epoch: source,
        target_epoch: target,
        signing_root: Root([r; 32]),
    }
}

/// A block by validator `[v; 48]` at `slot` with signing root `[r; 32]`.
pub fn block(v: u8, slot: u64, r: u8) -> RecordItem {
    RecordItem::Block {
        pubkey: Pubkey([v; 48]),
        slot,
        signing_root: Root([r; 32]),
    }
}

/// The `failoverctl` binary of this build, next to the coordinator's. It is its own package
/// (no openraft, no RocksDB in its build), so `cargo test --workspace` builds it; a test run of
/// this package alone needs `cargo build -p failoverctl` first, and this says so.
pub fn failoverctl_bin() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_coordinator"))
        .parent()
        .expect("the coordinator binary has a directory")
        .to_path_buf();
    let bin = dir.join("failoverctl");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p failoverctl` (`cargo test --workspace` \
         builds it)",
        bin.display()
    );
    bin
}

/// The `coordinator` binary, to be given arguments.
pub fn coordinator_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coordinator"))
}

/// The served OpenAPI document.
pub fn openapi() -> serde_yaml::Value {
    serde_yaml::from_str(coordinator::http::OPENAPI_YAML).expect("valid YAML")
}

/// Asserts that the OpenAPI document describes each of `paths`.
pub fn assert_openapi_paths(paths: &[&str]) {
    let doc = openapi();
    let described = doc["paths"].as_mapping().expect("paths");
    for p in paths {
        assert!(described.contains_key(*p), "OpenAPI document lacks {p}");
    }
}

/// Consensus-spec slashability of two records of one validator: two different blocks at one
/// slot (double proposal), two different attestations for one target (double vote), or one
/// attestation surrounding the other.
pub fn slashable(a: &RecordItem, b: &RecordItem) -> bool {
    match (a, b) {
        (
            RecordItem::Block {
                slot: s1,
                signing_root: r1,
                ..
            },
            RecordItem::Block {
                slot: s2,
                signing_root: r2,
                ..
            },
        ) => s1 == s2 && r1 != r2,
        (
            RecordItem::Attestation {
                source_epoch: s1,
                target_epoch: t1,
                signing_root: r1,
                ..
            },
            RecordItem::Attestation {
                source_epoch: s2,
                target_epoch: t2,
                signing_root: r2,
                ..
            },
        ) => {
            let double = t1 == t2 && (s1 != s2 || r1 != r2);
            let surround = (s1 < s2 && t2 < t1) || (s2 < s1 && t1 < t2);
            double || surround
        }
        _ => false,
    }
}

/// The target epochs of every attestation in an EIP-3076 export, in document order.
pub fn exported_targets(export: &Value) -> Vec<u64> {
    export["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|v| {
            v["signed_attestations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a["target_epoch"].as_str().and_then(|t| t.parse().ok()))
        .collect()
}
