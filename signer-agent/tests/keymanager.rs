//! The keymanager API (`/eth/v1/keystores`, keymanager-APIs `apis/local_keystores.yaml`) of the
//! agent, against a real single-node coordinator (openraft + RocksDB in this process) or, to
//! control timing and failures, a fake one.
//!
//! Keystores are the ChainSafe EIP-2335 vector `pbkdf2-0` and cheap PBKDF2 keystores of the
//! interop keys; sign requests are the Web3Signer OpenAPI examples.
//!
//! The last section checks honest start-up loading: `/healthcheck` is 503 until every
//! configured key is decrypted and usable, even while a coordinator answers.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use failover_common::keystore::{encrypt, KdfParams};
use failover_common::types::Pubkey;
use failover_common::{interop, vectors};
use failover_protocol::{AuthorityView, RecordBatchRequest, RecordBatchResponse, Verdict};
use serde_json::{json, Value};
use signer_agent::keymanager::{
    DeleteKeysResponse, DeleteStatus, ImportKeystoresResponse, ImportStatus, ListKeysResponse,
};
use signer_agent::{Agent, Config};
use tower::ServiceExt;

const AGENT: &str = "agent-a";
const AGENT_TOKEN: &str = "agent-a-secret";
const ALICE: &str = "alice-secret";
const BOB: &str = "bob-secret";
/// `fork_info.genesis_validators_root` of every Web3Signer example, used as the cluster's.
const GVR: &str = "0x04700007fabc8282644aed6d1c7c9e21d38a03a0c4ba193f3afe428824b3a673";

// ---- a real coordinator ------------------------------------------------------------------

/// One coordinator node serving its HTTP API on an ephemeral port; operators `alice` and
/// `bob`, agent `agent-a`.
struct Coordinator {
    url: String,
    _dir: tempfile::TempDir,
}

impl Coordinator {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("cluster.token");
        failover_common::secret_file::write_private(&token_file, "cluster-secret").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hash = coordinator::config::token_hash;
        let text = format!(
            r#"node_id = 1
listen = "{addr}"
data_dir = {data:?}
insecure_plaintext = true
cluster_token_file = {token:?}
bootstrap = true
[[peers]]
id = 1
url = "{url}"
region = "eu"
[[operators]]
name = "alice"
token_sha256 = "{alice}"
[[operators]]
name = "bob"
token_sha256 = "{bob}"
[[agents]]
id = "{AGENT}"
token_sha256 = "{agent}"
[chain]
genesis_validators_root = "{GVR}"
[handover]
break_glass_approvals = 1
[raft]
heartbeat_ms = 50
election_min_ms = 200
election_max_ms = 400
write_timeout_ms = 4000
"#,
            addr = listener.local_addr().unwrap(),
            data = dir.path().join("data"),
            token = token_file,
            alice = hash(ALICE),
            bob = hash(BOB),
            agent = hash(AGENT_TOKEN),
        );
        let cfg = coordinator::config::Config::from_toml(&text).unwrap();
        cfg.validate().unwrap();
        let node = coordinator::node::Node::start(cfg).await.unwrap();
        let app = coordinator::http::router(node.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let deadline = Instant::now() + Duration::from_secs(20);
        while node.leader().is_none() {
            assert!(
                Instant::now() < deadline,
                "the coordinator elected no leader"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { url, _dir: dir }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Registers the agent and hands authority to it (alice requests, bob approves; a fresh
    /// cluster needs no finality, and since this one has no beacon node for the liveness
    /// gate, bob's approval is break-glass, which `break_glass_approvals = 1` lets one operator
    /// give), then lets the agent observe it.
    async fn grant(&self, agent: &Arc<Agent>) {
        agent.register().await.unwrap();
        let (s, h) = self
            .call(
                reqwest::Method::POST,
                "/v1/handovers",
                ALICE,
                Some(json!({"to": AGENT, "reason": "test"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{h}");
        let path = format!("/v1/handovers/{}/approve", h["id"]);
        let (s, h) = self
            .call(
                reqwest::Method::POST,
                &path,
                BOB,
                Some(json!({"break_glass": true})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{h}");
        assert!(agent.poll_authority().await);
    }
}

// ---- a fake coordinator (timing and failures) ------------------------------------------------

#[derive(Default)]
struct FakeState {
    /// When the records answer was sent.
    records_answered: Mutex<Option<Instant>>,
    batches: Mutex<Vec<RecordBatchRequest>>,
    /// When the export was asked for.
    exported: Mutex<Option<Instant>>,
}

/// Answers every record `Valid` after `delay`; exports an empty history.
async fn fake_coordinator(delay: Duration) -> (String, Arc<FakeState>) {
    let state = Arc::new(FakeState::default());
    async fn authority() -> Json<AuthorityView> {
        Json(AuthorityView {
            holder: Some(AGENT.into()),
            token: 7,
            applied_index: 7,
            waited_ms: 0,
        })
    }
    let records = move |State(s): State<Arc<FakeState>>, Json(req): Json<RecordBatchRequest>| async move {
        let n = req.items.len();
        s.batches.lock().unwrap().push(req);
        tokio::time::sleep(delay).await;
        *s.records_answered.lock().unwrap() = Some(Instant::now());
        Json(RecordBatchResponse {
            verdicts: vec![Verdict::Valid; n],
            log_index: 9,
        })
    };
    async fn export(State(s): State<Arc<FakeState>>) -> Json<Value> {
        *s.exported.lock().unwrap() = Some(Instant::now());
        Json(
            json!({"metadata": {"interchange_format_version": "5", "genesis_validators_root": GVR}, "data": []}),
        )
    }
    let app = Router::new()
        .route("/v1/authority", get(authority))
        .route("/v1/agent/records", post(records))
        .route("/v1/agent/register", post(|| async { Json(json!({})) }))
        .route("/v1/slashing/export", get(export))
        .with_state(state.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, state)
}

/// A URL on which nothing listens.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

// ---- the agent under test -------------------------------------------------------------------

struct Setup {
    dir: tempfile::TempDir,
    agent: Arc<Agent>,
    /// The keymanager bearer token, read from the generated file.
    token: String,
}

impl Setup {
    fn keystores_dir(&self) -> PathBuf {
        self.dir.path().join("keystores")
    }
    fn passwords_dir(&self) -> PathBuf {
        self.dir.path().join("passwords")
    }
}

fn config(dir: &Path, coordinators: Vec<String>) -> Config {
    Config {
        agent_id: AGENT.into(),
        region: "eu".into(),
        coordinators,
        coordinator_token_file: Some("unused-in-these-tests".into()),
        insecure_plaintext_coordinators: true,
        insecure_plaintext_api: true,
        genesis_validators_root: Some(GVR.parse().unwrap()),
        keystores_dir: dir.join("keystores"),
        passwords_dir: dir.join("passwords"),
        keymanager_token_file: Some(dir.join("keymanager.token")),
        record_deadline_ms: 2000,
        ..Config::default()
    }
}

/// An agent with empty key folders, loading complete, its signing state polled once.
async fn setup(coordinators: Vec<String>) -> Setup {
    let s = setup_loading(coordinators).await;
    s.agent.keys.finish();
    s
}

/// Like [`setup`], but the start-up loading is not marked complete.
async fn setup_loading(coordinators: Vec<String>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), coordinators);
    std::fs::create_dir_all(&cfg.keystores_dir).unwrap();
    std::fs::create_dir_all(&cfg.passwords_dir).unwrap();
    cfg.validate().unwrap();
    let agent = Agent::new(cfg, Some(AGENT_TOKEN.into()), None).unwrap();
    agent.poll_authority().await;
    let token = std::fs::read_to_string(dir.path().join("keymanager.token"))
        .unwrap()
        .trim()
        .to_string();
    Setup { dir, agent, token }
}

/// Interop key `i` as a cheap PBKDF2 keystore (JSON text) with derivation path
/// `m/12381/3600/i/0/0`.
fn keystore(i: u64, password: &str) -> String {
    let mut k = encrypt(
        &interop::secret_key(i).to_bytes(),
        password,
        KdfParams::Pbkdf2 { c: 1024 },
        &mut rand::thread_rng(),
    )
    .unwrap();
    k.path = format!("m/12381/3600/{i}/0/0");
    k.to_json()
}

/// The ChainSafe EIP-2335 vector `pbkdf2-0` (keystore text, password, pubkey, path).
fn vector_keystore() -> (String, String, Pubkey, String) {
    let text = vectors::read("bls-keystore/test/vectors/pbkdf2-0.json");
    let v: Value = serde_json::from_str(&text).unwrap();
    let pubkey = format!("0x{}", v["pubkey"].as_str().unwrap())
        .parse()
        .unwrap();
    (
        text,
        v["password"].as_str().unwrap().into(),
        pubkey,
        v["path"].as_str().unwrap().into(),
    )
}

async fn send(agent: &Arc<Agent>, req: Request<Body>) -> (StatusCode, Value) {
    let resp = signer_agent::router(agent.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body)
}

fn km_request(method: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri("/eth/v1/keystores");
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

async fn list(s: &Setup) -> ListKeysResponse {
    let (status, body) = send(&s.agent, km_request("GET", Some(&s.token), None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_schema("get", &body);
    serde_json::from_value(body).unwrap()
}

async fn import(s: &Setup, body: Value) -> ImportKeystoresResponse {
    let (status, body) = send(&s.agent, km_request("POST", Some(&s.token), Some(body))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_schema("post", &body);
    serde_json::from_value(body).unwrap()
}

async fn delete(s: &Setup, pubkeys: &[Pubkey]) -> (Value, DeleteKeysResponse) {
    let (status, body) = send(
        &s.agent,
        km_request(
            "DELETE",
            Some(&s.token),
            Some(json!({ "pubkeys": pubkeys })),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let parsed = serde_json::from_value(body.clone()).unwrap();
    (body, parsed)
}

async fn sign(agent: &Arc<Agent>, pubkey: &Pubkey, body: &Value) -> (StatusCode, Value) {
    let req = Request::post(format!("/api/v1/eth2/sign/{pubkey}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(agent, req).await
}

/// Asserts the Web3Signer answer for a key the agent does not hold: 404 `unknown_key`.
async fn assert_unknown_key(agent: &Arc<Agent>, pubkey: &Pubkey) {
    let (status, body) = sign(agent, pubkey, &vectors::sign_request_example("ATTESTATION")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_key")),
        "{body}"
    );
}

/// An EIP-3076 interchange with one attestation `source → target` for `pubkey`.
fn interchange(gvr: &str, pubkey: &Pubkey, source: u64, target: u64) -> String {
    json!({
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": gvr},
        "data": [{
            "pubkey": pubkey,
            "signed_blocks": [],
            "signed_attestations": [{"source_epoch": source.to_string(), "target_epoch": target.to_string()}],
        }],
    })
    .to_string()
}

// ---- schema check against the spec -------------------------------------------------------------

/// Checks `body` against the 200 response schema of `method` in `apis/local_keystores.yaml`:
/// required fields, no undeclared fields, types, status enums, and the `$ref`ed `Pubkey`
/// pattern and `SlashingProtectionData` string (which must hold an interchange).
fn assert_schema(method: &str, body: &Value) {
    let spec: serde_yaml::Value =
        serde_yaml::from_str(&vectors::read("keymanager-APIs/apis/local_keystores.yaml")).unwrap();
    let schema = &spec[method]["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(!schema.is_null(), "no 200 schema for {method}");
    check(schema, body, method);
}

fn check(schema: &serde_yaml::Value, v: &Value, at: &str) {
    if let Some(r) = schema.get("$ref").and_then(|r| r.as_str()) {
        let s = v
            .as_str()
            .unwrap_or_else(|| panic!("{at}: {v} is not a string ({r})"));
        if r.ends_with("/Pubkey") {
            assert!(
                s.len() == 98
                    && s.starts_with("0x")
                    && s[2..].bytes().all(|b| b.is_ascii_hexdigit()),
                "{at}: {s} does not match ^0x[a-fA-F0-9]{{96}}$"
            );
        } else if r.ends_with("/SlashingProtectionData") {
            let doc: Value =
                serde_json::from_str(s).unwrap_or_else(|e| panic!("{at}: not JSON: {e}"));
            assert_eq!(doc["metadata"]["interchange_format_version"], "5", "{at}");
            assert!(doc["data"].is_array(), "{at}");
        } else {
            panic!("{at}: unexpected $ref {r}");
        }
        return;
    }
    match schema["type"].as_str() {
        Some("object") => {
            let obj = v
                .as_object()
                .unwrap_or_else(|| panic!("{at}: {v} is not an object"));
            let props = schema["properties"].as_mapping().unwrap();
            for req in schema["required"].as_sequence().into_iter().flatten() {
                let name = req.as_str().unwrap();
                assert!(
                    obj.contains_key(name),
                    "{at}: required {name} missing in {v}"
                );
            }
            for (k, val) in obj {
                let sub = props
                    .get(serde_yaml::Value::String(k.clone()))
                    .unwrap_or_else(|| panic!("{at}: field {k} is not in the spec"));
                check(sub, val, &format!("{at}.{k}"));
            }
        }
        Some("array") => {
            for (i, item) in v
                .as_array()
                .unwrap_or_else(|| panic!("{at}: not an array"))
                .iter()
                .enumerate()
            {
                check(&schema["items"], item, &format!("{at}[{i}]"));
            }
        }
        Some("string") => {
            let s = v
                .as_str()
                .unwrap_or_else(|| panic!("{at}: {v} is not a string"));
            if let Some(values) = schema["enum"].as_sequence() {
                assert!(
                    values.iter().any(|e| e.as_str() == Some(s)),
                    "{at}: {s} is not in the enum {values:?}"
                );
            }
        }
        Some("boolean") => assert!(v.is_boolean(), "{at}: {v} is not a boolean"),
        other => panic!("{at}: schema type {other:?} not handled"),
    }
}

fn assert_error_body(body: &Value) {
    let spec: serde_yaml::Value =
        serde_yaml::from_str(&vectors::read("keymanager-APIs/types/error_response.yaml")).unwrap();
    assert_eq!(spec["required"][0].as_str(), Some("message"));
    assert!(body["message"].is_string(), "not an ErrorResponse: {body}");
}

// ---- tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn keymanager_requests_without_the_right_bearer_token_are_refused_with_401_or_403() {
    let s = setup(vec![dead_url()]).await;
    for method in ["GET", "POST", "DELETE"] {
        let body =
            (method != "GET").then(|| json!({"pubkeys": [], "keystores": [], "passwords": []}));
        let (status, err) = send(&s.agent, km_request(method, None, body.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} without a token");
        assert_error_body(&err);
        let (status, err) = send(
            &s.agent,
            km_request(method, Some("api-token-0xwrong"), body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} with a wrong token");
        assert_error_body(&err);
        let (status, body) = send(&s.agent, km_request(method, Some(&s.token), body)).await;
        assert_eq!(status, StatusCode::OK, "{method} with the token: {body}");
    }
}

#[tokio::test]
async fn the_keymanager_api_answers_404_when_no_token_file_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), vec![dead_url()]);
    cfg.keymanager_token_file = None;
    let agent = Agent::new(cfg, Some(AGENT_TOKEN.into()), None).unwrap();
    agent.keys.finish();
    let (status, body) = send(&agent, km_request("GET", Some("anything"), None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_body(&body);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("keymanager_token_file"),
        "{body}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_token_file_is_generated_with_mode_0600_and_reused_across_restarts() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup(vec![dead_url()]).await;
    let path = s.dir.path().join("keymanager.token");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        s.token.starts_with("api-token-0x") && s.token.len() == 12 + 64,
        "{}",
        s.token
    );
    // A second agent on the same file accepts the same token.
    let again = Agent::new(
        config(s.dir.path(), vec![dead_url()]),
        Some(AGENT_TOKEN.into()),
        None,
    )
    .unwrap();
    let (status, _) = send(&again, km_request("GET", Some(&s.token), None)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn imports_lists_and_persists_keystores_reporting_duplicates_and_wrong_passwords() {
    let coord = Coordinator::start().await;
    let s = setup(vec![coord.url.clone()]).await;
    let (vector, vector_password, vector_pubkey, vector_path) = vector_keystore();

    let resp = import(
        &s,
        json!({
            "keystores": [vector, keystore(1, "right"), keystore(1, "right"), "{not a keystore", keystore(2, "right")],
            "passwords": [vector_password, "wrong", "right", "x", "right"],
        }),
    )
    .await;
    let st: Vec<ImportStatus> = resp.data.iter().map(|r| r.status).collect();
    assert_eq!(
        st,
        vec![
            ImportStatus::Imported,
            ImportStatus::Error,
            ImportStatus::Duplicate,
            ImportStatus::Error,
            ImportStatus::Imported
        ]
    );
    assert!(
        resp.data[1]
            .message
            .as_deref()
            .unwrap()
            .contains("wrong keystore password"),
        "{:?}",
        resp.data[1]
    );
    assert!(
        resp.data[3]
            .message
            .as_deref()
            .unwrap()
            .contains("invalid keystore"),
        "{:?}",
        resp.data[3]
    );
    assert!(resp.data[0].message.is_none());

    // Listed with their derivation paths, and usable for signing.
    let listed = list(&s).await;
    let mut expected = vec![
        (vector_pubkey, vector_path),
        (interop::pubkey(2), "m/12381/3600/2/0/0".to_string()),
    ];
    expected.sort();
    let got: Vec<(Pubkey, String)> = listed
        .data
        .iter()
        .map(|k| (k.validating_pubkey, k.derivation_path.clone().unwrap()))
        .collect();
    assert_eq!(got, expected);
    assert!(listed.data.iter().all(|k| !k.readonly));

    // Importing again is a duplicate and changes nothing.
    let again = import(
        &s,
        json!({"keystores": [keystore(2, "other")], "passwords": ["other"]}),
    )
    .await;
    assert_eq!(
        again.data.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![ImportStatus::Duplicate]
    );

    // Persisted: a restart's scan and decryption find both keys; passwords are 0600.
    let files = signer_agent::keys::scan(&s.keystores_dir(), &s.passwords_dir()).unwrap();
    let reloaded = Arc::new(signer_agent::keys::Keys::new());
    signer_agent::keys::decrypt_all(files, reloaded.clone(), 2)
        .await
        .unwrap();
    assert_eq!(reloaded.pubkeys(), s.agent.keys.pubkeys());
    #[cfg(unix)]
    for entry in std::fs::read_dir(s.passwords_dir()).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let mode = entry.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // Registered with the coordinator: the status lists two keys for agent-a.
    let (_, status) = coord
        .call(reqwest::Method::GET, "/v1/status", ALICE, None)
        .await;
    let agent = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == AGENT)
        .unwrap()
        .clone();
    assert_eq!(agent["pubkeys"], 2, "{status}");
}

#[tokio::test]
async fn an_imported_interchange_makes_a_slashable_request_refused_afterwards() {
    let coord = Coordinator::start().await;
    let s = setup(vec![coord.url.clone()]).await;
    coord.grant(&s.agent).await;

    // Key 0 comes with a history (attestation 5 → 6); key 1 without one.
    let resp = import(
        &s,
        json!({
            "keystores": [keystore(0, "p0"), keystore(1, "p1")],
            "passwords": ["p0", "p1"],
            "slashing_protection": interchange(GVR, &interop::pubkey(0), 5, 6),
        }),
    )
    .await;
    assert_eq!(
        resp.data.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![ImportStatus::Imported; 2]
    );

    // The example attestation (source 0, target 0) is below key 0's imported history.
    let attestation = vectors::sign_request_example("ATTESTATION");
    let (status, body) = sign(&s.agent, &interop::pubkey(0), &attestation).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(body["code"], "slashing_protection");
    // Key 1 has no history: the same attestation is signed.
    let (status, body) = sign(&s.agent, &interop::pubkey(1), &attestation).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The audit names the agent as the importer.
    let (_, audit) = coord
        .call(reqwest::Method::GET, "/v1/audit", ALICE, None)
        .await;
    let import = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "slashing.import")
        .unwrap()
        .clone();
    assert_eq!(import["operator"], format!("agent:{AGENT}"), "{import}");
    assert_eq!(import["outcome"], "accepted", "{import}");
}

#[tokio::test]
async fn a_refused_interchange_leaves_every_key_of_the_request_inactive_and_unstored() {
    let coord = Coordinator::start().await;
    let s = setup(vec![coord.url.clone()]).await;
    coord.grant(&s.agent).await;
    let other_chain = "0x0000000000000000000000000000000000000000000000000000000000000001";
    let resp = import(
        &s,
        json!({
            "keystores": [keystore(0, "p0"), keystore(1, "p1"), keystore(2, "p2")],
            "passwords": ["p0", "p1", "wrong"],
            "slashing_protection": interchange(other_chain, &interop::pubkey(0), 5, 6),
        }),
    )
    .await;
    assert_eq!(
        resp.data.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![ImportStatus::Error; 3]
    );
    for r in &resp.data[..2] {
        let m = r.message.as_deref().unwrap();
        assert!(
            m.contains("not activated") && m.contains("genesis_validators_root"),
            "{m}"
        );
    }
    assert!(resp.data[2]
        .message
        .as_deref()
        .unwrap()
        .contains("wrong keystore password"));
    assert!(list(&s).await.data.is_empty());
    assert_eq!(std::fs::read_dir(s.keystores_dir()).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(s.passwords_dir()).unwrap().count(), 0);
    assert_unknown_key(&s.agent, &interop::pubkey(0)).await;

    // An interchange format the coordinators refuse is refused the same way.
    let mut doc: Value =
        serde_json::from_str(&interchange(GVR, &interop::pubkey(0), 5, 6)).unwrap();
    doc["metadata"]["interchange_format_version"] = json!("4");
    let resp = import(&s, json!({"keystores": [keystore(0, "p0")], "passwords": ["p0"], "slashing_protection": doc.to_string()})).await;
    assert_eq!(resp.data[0].status, ImportStatus::Error);
    assert!(
        resp.data[0]
            .message
            .as_deref()
            .unwrap()
            .contains("interchange_format_version"),
        "{:?}",
        resp.data[0]
    );
    assert!(list(&s).await.data.is_empty());
}

#[tokio::test]
async fn keys_sent_with_history_stay_inactive_when_no_coordinator_can_import_it() {
    let s = setup(vec![dead_url()]).await;
    let resp = import(
        &s,
        json!({
            "keystores": [keystore(0, "p0")],
            "passwords": ["p0"],
            "slashing_protection": interchange(GVR, &interop::pubkey(0), 5, 6),
        }),
    )
    .await;
    assert_eq!(resp.data[0].status, ImportStatus::Error);
    let m = resp.data[0].message.as_deref().unwrap();
    assert!(
        m.contains("not activated") && m.contains("no coordinator reachable"),
        "{m}"
    );
    assert!(list(&s).await.data.is_empty());
    assert_eq!(std::fs::read_dir(s.keystores_dir()).unwrap().count(), 0);
}

#[tokio::test]
async fn malformed_import_bodies_are_400_with_a_message() {
    let s = setup(vec![dead_url()]).await;
    for body in [
        json!({"keystores": [keystore(0, "p")], "passwords": []}),
        json!({"keystores": [keystore(0, "p")], "passwords": ["p"], "slashing_protection": "{not json"}),
        json!({"keystores": [keystore(0, "p")], "passwords": ["p"], "slashing_protection": "{\"data\": []}"}),
        json!({"passwords": []}),
    ] {
        let (status, err) = send(
            &s.agent,
            km_request("POST", Some(&s.token), Some(body.clone())),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_error_body(&err);
    }
    let (status, err) = send(
        &s.agent,
        km_request(
            "DELETE",
            Some(&s.token),
            Some(json!({"pubkeys": ["0x1234"]})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_body(&err);
    assert!(list(&s).await.data.is_empty());
}

#[tokio::test]
async fn delete_stops_signing_at_once_removes_the_files_and_returns_the_history() {
    let coord = Coordinator::start().await;
    let s = setup(vec![coord.url.clone()]).await;
    coord.grant(&s.agent).await;
    import(
        &s,
        json!({"keystores": [keystore(0, "p0"), keystore(1, "p1")], "passwords": ["p0", "p1"]}),
    )
    .await;
    let attestation = vectors::sign_request_example("ATTESTATION");
    let (status, body) = sign(&s.agent, &interop::pubkey(0), &attestation).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let never = interop::pubkey(5);
    let (raw, resp) = delete(&s, &[interop::pubkey(0), never, interop::pubkey(1)]).await;
    assert_schema("delete", &raw);
    assert_eq!(
        resp.data.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![
            DeleteStatus::Deleted,
            DeleteStatus::NotFound,
            DeleteStatus::Deleted
        ]
    );
    let doc: Value = serde_json::from_str(resp.slashing_protection.as_deref().unwrap()).unwrap();
    assert_eq!(doc["metadata"]["genesis_validators_root"], GVR);
    let data = doc["data"].as_array().unwrap();
    let returned: HashSet<String> = data
        .iter()
        .map(|e| e["pubkey"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        returned,
        [interop::pubkey(0), interop::pubkey(1)]
            .iter()
            .map(|p| p.to_string())
            .collect()
    );
    let key0 = data
        .iter()
        .find(|e| e["pubkey"] == interop::pubkey(0).to_string())
        .unwrap();
    assert_eq!(
        key0["signed_attestations"][0]["target_epoch"], "0",
        "{key0}"
    );
    assert_eq!(
        key0["signed_attestations"][0]["signing_root"], attestation["signingRoot"],
        "{key0}"
    );

    // The Web3Signer answer for a deleted key is "unknown key", at once.
    assert_unknown_key(&s.agent, &interop::pubkey(0)).await;
    assert!(list(&s).await.data.is_empty());
    assert_eq!(std::fs::read_dir(s.keystores_dir()).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(s.passwords_dir()).unwrap().count(), 0);

    // A second DELETE still gets the history: key 0 is not_active; key 1 never signed, and
    // has no history at the coordinator, so it is not_found.
    let (raw, resp) = delete(&s, &[interop::pubkey(0), interop::pubkey(1)]).await;
    assert_schema("delete", &raw);
    assert_eq!(
        resp.data.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![DeleteStatus::NotActive, DeleteStatus::NotFound]
    );
    let doc: Value = serde_json::from_str(resp.slashing_protection.as_deref().unwrap()).unwrap();
    assert_eq!(doc["data"].as_array().unwrap().len(), 1);
    assert_eq!(doc["data"][0]["pubkey"], interop::pubkey(0).to_string());
}

#[tokio::test]
async fn delete_waits_for_an_in_flight_sign_request_before_exporting() {
    let delay = Duration::from_millis(800);
    let (url, fake) = fake_coordinator(delay).await;
    let s = setup(vec![url]).await;
    s.agent.keys.insert(interop::secret_key(0));

    let agent = s.agent.clone();
    let in_flight = tokio::spawn(async move {
        sign(
            &agent,
            &interop::pubkey(0),
            &vectors::sign_request_example("ATTESTATION"),
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.batches.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the record never reached the coordinator"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let (raw, resp) = delete(&s, &[interop::pubkey(0)]).await;
    assert_schema("delete", &raw);
    assert_eq!(resp.data[0].status, DeleteStatus::Deleted);
    let answered = *fake.records_answered.lock().unwrap();
    let exported = fake.exported.lock().unwrap().expect("history exported");
    assert!(
        answered.is_some_and(|answered| exported > answered),
        "the export ran before the in-flight record committed"
    );
    // The request that held the key before the deletion completed normally.
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_unknown_key(&s.agent, &interop::pubkey(0)).await;
}

#[tokio::test]
async fn delete_says_error_and_returns_no_history_when_the_export_fails() {
    let s = setup(vec![dead_url()]).await;
    s.agent.keys.insert(interop::secret_key(0));
    let (raw, resp) = delete(&s, &[interop::pubkey(0), interop::pubkey(1)]).await;
    assert_eq!(
        resp.data.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![DeleteStatus::Error, DeleteStatus::Error]
    );
    let m = resp.data[0].message.as_deref().unwrap();
    assert!(
        m.contains("can no longer sign") && m.contains("could not be exported"),
        "{m}"
    );
    assert!(
        raw.get("slashing_protection").is_none(),
        "no pretended history: {raw}"
    );
    assert_unknown_key(&s.agent, &interop::pubkey(0)).await;
}

#[tokio::test]
async fn import_and_delete_answer_503_while_start_up_keys_are_loading() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::new(
        config(dir.path(), vec![dead_url()]),
        Some(AGENT_TOKEN.into()),
        None,
    )
    .unwrap();
    agent.keys.expect([interop::pubkey(0)]);
    let token = std::fs::read_to_string(dir.path().join("keymanager.token")).unwrap();
    let (status, body) = send(
        &agent,
        km_request(
            "DELETE",
            Some(token.trim()),
            Some(json!({"pubkeys": [interop::pubkey(0)]})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error_body(&body);
    let (status, _) = send(
        &agent,
        km_request(
            "POST",
            Some(token.trim()),
            Some(json!({"keystores": [], "passwords": []})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

// ---- honest start-up loading ---------------------------------------------------------------------

/// Writes interop keys `indices` into the agent's folders as `validator-i.json` with password
/// file `validator-i.txt` (`password-i`), and scans them as the start-up does.
fn write_keystores(s: &Setup, indices: &[u64]) -> Vec<signer_agent::keys::KeystoreFile> {
    for &i in indices {
        let password = format!("password-{i}");
        std::fs::write(
            s.keystores_dir().join(format!("validator-{i}.json")),
            keystore(i, &password),
        )
        .unwrap();
        failover_common::secret_file::write_private(
            &s.passwords_dir().join(format!("validator-{i}.txt")),
            &password,
        )
        .unwrap();
    }
    signer_agent::keys::scan(&s.keystores_dir(), &s.passwords_dir()).unwrap()
}

/// `(status, keys-check, coordinator-check)` of `GET /healthcheck`.
async fn health(agent: &Arc<Agent>) -> (StatusCode, String, String) {
    let (status, v) = send(
        agent,
        Request::get("/healthcheck").body(Body::empty()).unwrap(),
    )
    .await;
    let check = |id: &str| {
        let checks = v["checks"].as_array().unwrap();
        let c = checks.iter().find(|c| c["id"] == id).unwrap();
        c["status"].as_str().unwrap().to_string()
    };
    (status, check("keys-check"), check("coordinator-check"))
}

#[tokio::test]
async fn healthcheck_is_503_until_every_configured_key_is_loaded_even_with_a_coordinator() {
    let (url, _) = fake_coordinator(Duration::ZERO).await;
    let s = setup_loading(vec![url]).await;
    let files = write_keystores(&s, &[0, 1, 2]);

    // Announced as loading, nothing decrypted yet: DOWN although the coordinator answers.
    s.agent.keys.expect(files.iter().map(|f| f.keystore.pubkey));
    let down = (
        StatusCode::SERVICE_UNAVAILABLE,
        "DOWN".to_string(),
        "UP".to_string(),
    );
    assert_eq!(health(&s.agent).await, down);
    let (status, body) = sign(
        &s.agent,
        &interop::pubkey(0),
        &vectors::sign_request_example("ATTESTATION"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
    );

    signer_agent::keys::decrypt_all(files, s.agent.keys.clone(), 2)
        .await
        .unwrap();
    assert_eq!(
        health(&s.agent).await,
        (StatusCode::OK, "UP".into(), "UP".into())
    );
    assert_eq!(s.agent.keys.count(), 3);
}

#[tokio::test]
async fn healthcheck_stays_503_when_a_configured_keystore_fails_to_load() {
    let (url, _) = fake_coordinator(Duration::ZERO).await;
    let s = setup_loading(vec![url]).await;
    let files = write_keystores(&s, &[0, 1, 2]);
    failover_common::secret_file::write_private(
        &s.passwords_dir().join("validator-1.txt"),
        "wrong",
    )
    .unwrap();
    assert!(
        signer_agent::keys::decrypt_all(files, s.agent.keys.clone(), 1)
            .await
            .is_err()
    );
    assert_eq!(
        health(&s.agent).await,
        (StatusCode::SERVICE_UNAVAILABLE, "DOWN".into(), "UP".into())
    );
}
