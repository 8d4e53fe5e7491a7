//! Three real `coordinator` processes with real RocksDB directories (DESIGN.md I1, I2, I5, I6).
//!
//! Scenario: grant authority to agent-a; agent-a records; hand over to agent-b; approval is
//! refused before finality; the fenced agent's records are refused; finality arrives; the
//! approval completes the handover with a larger token; kill -9 the leader and restart it
//! without losing a committed record; kill -9 the whole cluster and restart it with the
//! authority and the history intact.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use failover_common::api::{RecordBatchResponse, RecordItem, Verdict};
use failover_common::types::{Pubkey, Root};
use reqwest::StatusCode;
use serde_json::{json, Value};

const GVR: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
const ALICE: &str = "alice-token";
const BOB: &str = "bob-token";
const AGENT_A: &str = "agent-a-token";
const AGENT_B: &str = "agent-b-token";

fn hash(t: &str) -> String {
    coordinator::config::token_hash(t)
}

/// A fake beacon node whose finalized epoch the test controls.
async fn fake_beacon(finalized: Arc<AtomicU64>) -> String {
    async fn genesis() -> Json<Value> {
        Json(
            json!({"data": {"genesis_time": "1606824023", "genesis_validators_root": GVR,
            "genesis_fork_version": "0x00000000"}}),
        )
    }
    async fn syncing() -> Json<Value> {
        Json(
            json!({"data": {"head_slot": "1000", "sync_distance": "0", "is_syncing": false,
            "is_optimistic": false, "el_offline": false}}),
        )
    }
    async fn finality(State(f): State<Arc<AtomicU64>>) -> Json<Value> {
        let e = f.load(Ordering::SeqCst);
        let cp = json!({"epoch": e.to_string(), "root": format!("0x{:064x}", e + 7)});
        Json(json!({"execution_optimistic": false, "finalized": false,
            "data": {"previous_justified": cp, "current_justified": cp, "finalized": cp}}))
    }
    let app = Router::new()
        .route("/eth/v1/beacon/genesis", get(genesis))
        .route("/eth/v1/node/syncing", get(syncing))
        .route(
            "/eth/v1/beacon/states/{state}/finality_checkpoints",
            get(finality),
        )
        .with_state(finalized);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    dir: PathBuf,
    urls: Vec<String>,
    procs: Vec<Option<Child>>,
}

impl Cluster {
    fn new(dir: &Path, beacon: &str) -> Self {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let urls: Vec<String> = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        std::fs::write(dir.join("cluster.token"), "cluster-secret").unwrap();
        for (i, port) in ports.iter().enumerate() {
            let peers: String = (0..3)
                .map(|j| {
                    format!(
                        "[[peers]]\nid = {}\nurl = \"{}\"\nregion = \"{}\"\n",
                        j + 1,
                        urls[j],
                        ["eu", "us", "ap"][j]
                    )
                })
                .collect();
            let cfg = format!(
                r#"node_id = {id}
listen = "127.0.0.1:{port}"
data_dir = "{data}"
cluster_token_file = "{tok}"
bootstrap = {boot}
{peers}
[[operators]]
name = "alice"
token_sha256 = "{alice}"
[[operators]]
name = "bob"
token_sha256 = "{bob}"
[[agents]]
id = "agent-a"
token_sha256 = "{a}"
[[agents]]
id = "agent-b"
token_sha256 = "{b}"
[chain]
genesis_validators_root = "{GVR}"
slots_per_epoch = 32
[beacon]
urls = ["{beacon}"]
poll_interval_ms = 200
timeout_ms = 1000
[raft]
heartbeat_ms = 100
election_min_ms = 800
election_max_ms = 1600
write_timeout_ms = 4000
snapshot_every = 8
keep_logs = 0
"#,
                id = i + 1,
                port = port,
                data = dir.join(format!("node{}", i + 1)).display(),
                tok = dir.join("cluster.token").display(),
                boot = i == 0,
                alice = hash(ALICE),
                bob = hash(BOB),
                a = hash(AGENT_A),
                b = hash(AGENT_B),
            );
            std::fs::write(dir.join(format!("node{}.toml", i + 1)), cfg).unwrap();
        }
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            urls,
            procs: vec![None, None, None],
        };
        for i in 0..3 {
            c.start(i);
        }
        c
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{}.log", i + 1)))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
            .args(["run", "--config"])
            .arg(self.dir.join(format!("node{}.toml", i + 1)))
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

    /// kill -9: no shutdown path runs.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }
}

struct Api {
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, url: &str, path: &str, token: &str) -> (StatusCode, Value) {
        match self
            .http
            .get(format!("{url}{path}"))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(r) => (r.status(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Value::Null),
        }
    }
    async fn post(&self, url: &str, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        match self
            .http
            .post(format!("{url}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
        {
            Ok(r) => (r.status(), r.json().await.unwrap_or(Value::Null)),
            Err(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            ),
        }
    }
    /// Waits until `url` reports a leader, returning the status.
    async fn wait_leader(&self, urls: &[String]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for u in urls {
                let (s, v) = self.get(u, "/v1/status", ALICE).await;
                if s == StatusCode::OK && !v["leader_id"].is_null() {
                    return v;
                }
            }
            assert!(Instant::now() < deadline, "no leader elected in 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    async fn records(
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
}

fn att(source: u64, target: u64, r: u8) -> RecordItem {
    RecordItem::Attestation {
        pubkey: Pubkey([7; 48]),
        source_epoch: source,
        target_epoch: target,
        signing_root: Root([r; 32]),
    }
}

fn verdicts(v: &Value) -> Vec<Verdict> {
    serde_json::from_value::<RecordBatchResponse>(v.clone())
        .expect("record response")
        .verdicts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_fencing_and_crash_recovery_on_three_real_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let finalized = Arc::new(AtomicU64::new(0));
    let beacon = fake_beacon(finalized.clone()).await;
    let mut cluster = Cluster::new(tmp.path(), &beacon);
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    };
    api.wait_leader(&cluster.urls).await;
    // Any node accepts any request: use node 3 (likely a follower) for writes.
    let any = cluster.urls[2].clone();

    for (agent, tok) in [("agent-a", AGENT_A), ("agent-b", AGENT_B)] {
        let (s, v) = api
            .post(
                &any,
                "/v1/agent/register",
                tok,
                json!({"agent": agent, "region": "eu", "pubkeys": []}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    // An agent cannot register as another agent.
    let (s, _) = api
        .post(
            &any,
            "/v1/agent/register",
            AGENT_A,
            json!({"agent": "agent-b", "region": "eu", "pubkeys": []}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // First grant: nothing recorded yet, so required_epoch is 0 and finality is not needed.
    let (s, h) = api
        .post(
            &any,
            "/v1/handovers",
            ALICE,
            json!({"to": "agent-a", "reason": "initial grant"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let id1 = h["id"].as_u64().unwrap();
    assert_eq!(h["state"], "awaiting_approval");
    // Two-person rule: the requester cannot approve.
    let (s, v) = api
        .post(
            &any,
            &format!("/v1/handovers/{id1}/approve"),
            ALICE,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, h) = api
        .post(
            &any,
            &format!("/v1/handovers/{id1}/approve"),
            BOB,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["state"], "completed");
    let token_a = h["granted_token"].as_u64().unwrap();

    // agent-a records; a double vote is refused.
    let (s, v) = api
        .records(
            &any,
            AGENT_A,
            "agent-a",
            token_a,
            vec![att(1, 2, 1), att(2, 3, 2), att(2, 3, 9)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let vs = verdicts(&v);
    assert_eq!(vs[0], Verdict::Valid);
    assert_eq!(vs[1], Verdict::Valid);
    assert!(matches!(vs[2], Verdict::Refused(_)), "{vs:?}");
    // agent-b holds no authority.
    let (s, v) = api
        .records(&any, AGENT_B, "agent-b", token_a, vec![att(3, 4, 3)])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "not_holder");
    assert_eq!(v["holder"], "agent-a");

    // Handover to agent-b: fences agent-a at once and waits for finality of epoch 3.
    let (s, h) = api
        .post(
            &any,
            "/v1/handovers",
            ALICE,
            json!({"to": "agent-b", "reason": "planned maintenance"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let id2 = h["id"].as_u64().unwrap();
    assert_eq!(h["state"], "awaiting_finality");
    assert_eq!(h["required_epoch"], 3);
    let (s, v) = api
        .records(&any, AGENT_A, "agent-a", token_a, vec![att(3, 4, 4)])
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "fenced agent must be refused: {v}"
    );
    assert!(v["holder"].is_null());
    // Approval before finality is refused.
    let (s, v) = api
        .post(
            &any,
            &format!("/v1/handovers/{id2}/approve"),
            BOB,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // Finality of epoch 2 is not enough; epoch 3 is.
    finalized.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, h) = api.get(&any, &format!("/v1/handovers/{id2}"), ALICE).await;
    assert_eq!(h["state"], "awaiting_finality", "{h}");
    finalized.store(3, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, h) = api.get(&any, &format!("/v1/handovers/{id2}"), ALICE).await;
        if h["state"] == "awaiting_approval" {
            break;
        }
        assert!(Instant::now() < deadline, "finality never confirmed: {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, h) = api
        .post(
            &any,
            &format!("/v1/handovers/{id2}/approve"),
            BOB,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["state"], "completed");
    let token_b = h["granted_token"].as_u64().unwrap();
    assert!(
        token_b > token_a,
        "tokens must grow: {token_b} <= {token_a}"
    );
    let events: Vec<&str> = h["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "requested",
            "fenced",
            "finality_confirmed",
            "approved",
            "completed"
        ]
    );

    // agent-b cannot double-vote against agent-a's history; a fresh vote is fine.
    let (s, v) = api
        .records(
            &any,
            AGENT_B,
            "agent-b",
            token_b,
            vec![att(2, 3, 5), att(3, 4, 6)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let vs = verdicts(&v);
    assert!(matches!(vs[0], Verdict::Refused(_)), "{vs:?}");
    assert_eq!(vs[1], Verdict::Valid);
    // The old token is dead for the old holder.
    let (s, _) = api
        .records(&any, AGENT_A, "agent-a", token_a, vec![att(4, 5, 7)])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // kill -9 the leader; the committed record survives and the cluster goes on.
    let st = api.wait_leader(&cluster.urls).await;
    let leader = st["leader_id"].as_u64().unwrap() as usize - 1;
    cluster.kill(leader);
    let others: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| cluster.urls[i].clone())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let vs = loop {
        let (s, v) = api
            .records(
                &others[0],
                AGENT_B,
                "agent-b",
                token_b,
                vec![att(3, 4, 6), att(4, 5, 8)],
            )
            .await;
        if s == StatusCode::OK {
            break verdicts(&v);
        }
        assert!(
            Instant::now() < deadline,
            "no write accepted after leader kill: {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(vs, vec![Verdict::SameData, Verdict::Valid]);
    // More entries while the node is down: with snapshots every 8 entries and no logs kept,
    // the restarted node must catch up by installing a snapshot.
    for e in 5..25u64 {
        let (s, v) = api
            .records(
                &others[0],
                AGENT_B,
                "agent-b",
                token_b,
                vec![att(e, e + 1, 10)],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(verdicts(&v), vec![Verdict::Valid]);
    }
    cluster.start(leader);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = api.get(&cluster.urls[leader], "/v1/status", ALICE).await;
        if s == StatusCode::OK && v["holder"] == "agent-b" && v["validators"] == 1 {
            let (_, lv) = api.get(&others[0], "/v1/status", ALICE).await;
            if v["applied_index"].as_u64() >= lv["applied_index"].as_u64() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "restarted node did not catch up: {v}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // kill -9 everything, restart: authority and history are intact.
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.start(i);
    }
    let st = api.wait_leader(&cluster.urls).await;
    assert_eq!(st["holder"], "agent-b");
    assert_eq!(st["token"].as_u64().unwrap(), token_b);
    let deadline = Instant::now() + Duration::from_secs(30);
    let vs = loop {
        let (s, v) = api
            .records(
                &cluster.urls[1],
                AGENT_B,
                "agent-b",
                token_b,
                vec![att(24, 25, 10), att(24, 25, 9)],
            )
            .await;
        if s == StatusCode::OK {
            break verdicts(&v);
        }
        assert!(
            Instant::now() < deadline,
            "no write after full restart: {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(vs[0], Verdict::SameData);
    assert!(matches!(vs[1], Verdict::Refused(_)));
    // EIP-3076 export from every node (followers forward to the leader: linearizable).
    for url in &cluster.urls {
        let (s, doc) = api.get(url, "/v1/slashing/export", ALICE).await;
        assert_eq!(s, StatusCode::OK, "{doc}");
        assert_eq!(doc["metadata"]["genesis_validators_root"], GVR);
        let atts = doc["data"][0]["signed_attestations"].as_array().unwrap();
        assert!(
            atts.iter()
                .any(|a| a["target_epoch"] == "25" && a["source_epoch"] == "24"),
            "export from {url} misses a committed record: {doc}"
        );
    }
    // Import: another chain is refused; a new validator's history is merged and enforced.
    let other = json!({"metadata": {"interchange_format_version": "5",
        "genesis_validators_root": format!("0x{}", "22".repeat(32))}, "data": []});
    let (s, v) = api
        .post(&cluster.urls[2], "/v1/slashing/import", ALICE, other)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let pk8 = Pubkey([8; 48]);
    let doc = json!({"metadata": {"interchange_format_version": "5", "genesis_validators_root": GVR},
        "data": [{"pubkey": pk8, "signed_blocks": [{"slot": "100"}], "signed_attestations": []}]});
    let (s, v) = api
        .post(&cluster.urls[2], "/v1/slashing/import", ALICE, doc)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["blocks"], 1);
    let block = RecordItem::Block {
        pubkey: pk8,
        slot: 100,
        signing_root: Root([3; 32]),
    };
    let (s, v) = api
        .records(&cluster.urls[2], AGENT_B, "agent-b", token_b, vec![block])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        matches!(verdicts(&v)[0], Verdict::Refused(_)),
        "imported block must be enforced"
    );

    let (s, audit) = api.get(&cluster.urls[0], "/v1/audit", ALICE).await;
    assert_eq!(s, StatusCode::OK);
    let actions: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["operator"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("bob".into(), "handover.approve".into())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("alice".into(), "handover.request".into())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("alice".into(), "slashing.import".into())),
        "{actions:?}"
    );
}

#[test]
fn openapi_document_describes_every_operator_and_agent_route() {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(coordinator::http::OPENAPI_YAML).expect("valid YAML");
    let paths = doc["paths"].as_mapping().expect("paths");
    for p in [
        "/v1/status",
        "/v1/authority",
        "/v1/handovers",
        "/v1/handovers/{id}",
        "/v1/handovers/{id}/approve",
        "/v1/handovers/{id}/abort",
        "/v1/audit",
        "/v1/agent/register",
        "/v1/agent/heartbeat",
        "/v1/agent/records",
        "/v1/slashing/import",
        "/v1/slashing/export",
        "/metrics",
        "/health",
    ] {
        assert!(paths.contains_key(p), "OpenAPI document lacks {p}");
    }
}
