//! The sign path against a fake coordinator (an axum server on an ephemeral port): signing only
//! on committed verdicts, 412/403/503 answers, request validation, and group commit.
//!
//! Sign requests are the Web3Signer OpenAPI examples (`web3signer/_extracted/
//! sign_request_examples.json`), whose signing roots were verified independently, signed with
//! the interop key 0.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use failover_common::types::{Pubkey, Root, Signature};
use failover_common::{eth, interop, vectors};
use failover_protocol::{
    ApiErrorBody, AuthorityView, HeartbeatRequest, RecordBatchRequest, RecordBatchResponse,
    RecordItem, Refusal, RegisterAgentRequest, Verdict,
};
use serde_json::Value;
use signer_agent::{Agent, Config, ErrorBody, NetworkSetting};
use tower::ServiceExt;

const TOKEN: &str = "agent-a-secret";
const AGENT: &str = "agent-a";
const GRANT_TOKEN: u64 = 7;
/// `fork_info.genesis_validators_root` of every Web3Signer example.
const EXAMPLE_GVR: &str = "0x04700007fabc8282644aed6d1c7c9e21d38a03a0c4ba193f3afe428824b3a673";

// ---- fake coordinator ---------------------------------------------------------------------

/// How the fake answers `POST /v1/agent/records`.
#[derive(Clone)]
enum Records {
    /// Every item gets this verdict, after `delay`.
    Answer { verdict: Verdict, delay: Duration },
    /// 403 not_holder naming `holder`.
    NotHolder { holder: String, token: u64 },
    /// Never answers (longer than any deadline in these tests).
    Hang,
    /// 503 unavailable.
    Unavailable,
}

struct FakeState {
    records: Mutex<Records>,
    authority: Mutex<AuthorityView>,
    batches: Mutex<Vec<RecordBatchRequest>>,
    registrations: Mutex<Vec<RegisterAgentRequest>>,
    heartbeats: AtomicUsize,
}

#[derive(Clone)]
struct Fake {
    url: String,
    state: Arc<FakeState>,
}

fn unauthorized(headers: &HeaderMap) -> Option<Response> {
    let ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    (!ok).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(ApiErrorBody {
                code: failover_protocol::ErrorCode::Unauthorized,
                message: "bad token".into(),
                holder: None,
                token: None,
                leader_hint: None,
            }),
        )
            .into_response()
    })
}

async fn fake_records(
    State(s): State<Arc<FakeState>>,
    headers: HeaderMap,
    Json(req): Json<RecordBatchRequest>,
) -> Response {
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    let n = req.items.len();
    s.batches.lock().unwrap().push(req);
    let behaviour = s.records.lock().unwrap().clone();
    match behaviour {
        Records::Answer { verdict, delay } => {
            tokio::time::sleep(delay).await;
            Json(RecordBatchResponse {
                verdicts: vec![verdict; n],
                log_index: 100,
            })
            .into_response()
        }
        Records::NotHolder { holder, token } => (
            StatusCode::FORBIDDEN,
            Json(ApiErrorBody {
                code: failover_protocol::ErrorCode::NotHolder,
                message: "not the holder".into(),
                holder: Some(holder),
                token: Some(token),
                leader_hint: None,
            }),
        )
            .into_response(),
        Records::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Records::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ApiErrorBody {
                code: failover_protocol::ErrorCode::Unavailable,
                message: "no quorum".into(),
                holder: None,
                token: None,
                leader_hint: None,
            }),
        )
            .into_response(),
    }
}

async fn fake_authority(State(s): State<Arc<FakeState>>, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    Json(s.authority.lock().unwrap().clone()).into_response()
}

async fn fake_register(
    State(s): State<Arc<FakeState>>,
    headers: HeaderMap,
    Json(req): Json<RegisterAgentRequest>,
) -> Response {
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    s.registrations.lock().unwrap().push(req);
    Json(serde_json::json!({})).into_response()
}

async fn fake_heartbeat(
    State(s): State<Arc<FakeState>>,
    headers: HeaderMap,
    Json(_req): Json<HeartbeatRequest>,
) -> Response {
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    s.heartbeats.fetch_add(1, Ordering::SeqCst);
    Json(serde_json::json!({})).into_response()
}

impl Fake {
    /// Starts a fake coordinator where `agent-a` holds authority with token 7 and every record
    /// is `Valid`.
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// [`Fake::start`], serving TLS with `tls` when given (`https://` URL).
    async fn start_with(tls: Option<Arc<failover_common::tls::rustls::ServerConfig>>) -> Self {
        let state = Arc::new(FakeState {
            records: Mutex::new(Records::Answer {
                verdict: Verdict::Valid,
                delay: Duration::ZERO,
            }),
            authority: Mutex::new(AuthorityView {
                holder: Some(AGENT.into()),
                token: GRANT_TOKEN,
                applied_index: GRANT_TOKEN,
                waited_ms: 0,
            }),
            batches: Mutex::new(Vec::new()),
            registrations: Mutex::new(Vec::new()),
            heartbeats: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/v1/agent/records", post(fake_records))
            .route("/v1/authority", get(fake_authority))
            .route("/v1/agent/register", post(fake_register))
            .route("/v1/agent/heartbeat", post(fake_heartbeat))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        tokio::spawn(failover_common::serve::serve(
            listener,
            app,
            Default::default(),
            Arc::default(),
            tls,
            std::future::pending(),
        ));
        Self { url, state }
    }

    fn answer(&self, records: Records) {
        *self.state.records.lock().unwrap() = records;
    }

    fn batches(&self) -> Vec<RecordBatchRequest> {
        self.state.batches.lock().unwrap().clone()
    }
}

/// A URL on which nothing listens (a port bound and released).
async fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

/// A URL that accepts connections and never answers, like a coordinator behind a partition
/// that a proxy still connects to.
async fn black_hole_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = l.accept().await {
            held.push(conn);
        }
    });
    url
}

// ---- agent under test ----------------------------------------------------------------------

fn config(coordinators: Vec<String>) -> Config {
    Config {
        agent_id: AGENT.into(),
        region: "eu".into(),
        coordinators,
        coordinator_token_file: Some("unused-in-these-tests".into()),
        insecure_plaintext_coordinators: true,
        insecure_plaintext_api: true,
        genesis_validators_root: Some(EXAMPLE_GVR.parse().unwrap()),
        keystores_dir: "unused".into(),
        passwords_dir: "unused".into(),
        record_deadline_ms: 1000,
        ..Config::default()
    }
}

/// An agent holding interop key 0, with its signing state polled once from the coordinators.
async fn agent(cfg: Config) -> Arc<Agent> {
    cfg.validate().unwrap();
    let agent = Agent::new(cfg, Some(TOKEN.into()), None).unwrap();
    agent.keys.insert(interop::secret_key(0));
    agent.keys.finish();
    agent.poll_authority().await;
    agent
}

fn example(name: &str) -> Value {
    vectors::sign_request_example(name)
}

fn example_root(body: &Value) -> Root {
    body["signingRoot"].as_str().unwrap().parse().unwrap()
}

fn sign_request(pubkey: &Pubkey, body: impl Into<Body>, accept: Option<&str>) -> Request<Body> {
    let mut b = Request::post(format!("/api/v1/eth2/sign/{pubkey}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(a) = accept {
        b = b.header(header::ACCEPT, a);
    }
    b.body(body.into()).unwrap()
}

async fn send(agent: &Arc<Agent>, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = signer_agent::router(agent.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.to_vec())
}

/// Sends a sign request with `Accept: application/json`, as Lighthouse's validator client does.
async fn sign_json(agent: &Arc<Agent>, body: &Value) -> (StatusCode, Vec<u8>) {
    send(
        agent,
        sign_request(
            &interop::pubkey(0),
            body.to_string(),
            Some("application/json"),
        ),
    )
    .await
}

fn error_body(bytes: &[u8]) -> ErrorBody {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "not an error body ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// Asserts a 200 answer whose signature verifies for interop key 0 over `root`, and returns
/// the signature.
fn assert_signed_over(status: StatusCode, bytes: &[u8], root: &Root) -> Signature {
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(bytes));
    let sig = signature_of(bytes);
    assert!(
        eth::verify(&interop::pubkey(0), root, &sig),
        "the signature verifies"
    );
    sig
}

fn signature_of(bytes: &[u8]) -> Signature {
    let v: Value = serde_json::from_slice(bytes).unwrap();
    v["signature"].as_str().unwrap().parse().unwrap()
}

// ---- tests ---------------------------------------------------------------------------------

#[tokio::test]
async fn signs_an_attestation_after_a_valid_verdict_and_the_signature_verifies() {
    let fake = Fake::start().await;
    let agent = agent(config(vec![fake.url.clone()])).await;
    let body = example("ATTESTATION");

    let (status, bytes) = sign_json(&agent, &body).await;
    assert_signed_over(status, &bytes, &example_root(&body));

    let batches = fake.batches();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].agent, AGENT);
    assert_eq!(batches[0].token, GRANT_TOKEN);
    assert_eq!(
        batches[0].items,
        vec![RecordItem::Attestation {
            pubkey: interop::pubkey(0),
            source_epoch: 0,
            target_epoch: 0,
            signing_root: example_root(&body),
        }]
    );
}

#[tokio::test]
async fn signs_a_block_on_same_data_and_answers_text_when_asked() {
    let fake = Fake::start().await;
    fake.answer(Records::Answer {
        verdict: Verdict::SameData,
        delay: Duration::ZERO,
    });
    let agent = agent(config(vec![fake.url.clone()])).await;
    let body = example("BLOCK_V2 (DENEB)");

    let (status, bytes) = send(
        &agent,
        sign_request(&interop::pubkey(0), body.to_string(), Some("text/plain")),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let sig: Signature = String::from_utf8(bytes).unwrap().parse().unwrap();
    assert!(eth::verify(&interop::pubkey(0), &example_root(&body), &sig));
    assert_eq!(
        fake.batches()[0].items,
        vec![RecordItem::Block {
            pubkey: interop::pubkey(0),
            slot: 0,
            signing_root: example_root(&body),
        }]
    );
}

#[tokio::test]
async fn answers_412_naming_the_reason_when_slashing_protection_refuses() {
    let fake = Fake::start().await;
    let refusal = Refusal::DoubleVote {
        target_epoch: 0,
        prev_source_epoch: 0,
        prev_signing_root: Some(Root([9; 32])),
    };
    fake.answer(Records::Answer {
        verdict: Verdict::Refused(refusal.clone()),
        delay: Duration::ZERO,
    });
    let agent = agent(config(vec![fake.url.clone()])).await;

    let (status, bytes) = sign_json(&agent, &example("ATTESTATION")).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let err = error_body(&bytes);
    assert_eq!(err.code, "slashing_protection");
    assert!(err.message.contains("double_vote"), "{}", err.message);
    assert_eq!(err.refusal, Some(refusal));
    assert_eq!(agent.metrics.signatures.get(), 0);
    // The signature was started while the record committed, and dropped unreleased.
    assert_eq!(agent.metrics.signatures_discarded.get(), 1);
}

#[tokio::test]
async fn answers_403_naming_the_holder_when_the_coordinator_says_not_holder() {
    let fake = Fake::start().await;
    fake.answer(Records::NotHolder {
        holder: "agent-b".into(),
        token: 9,
    });
    let agent = agent(config(vec![fake.url.clone()])).await;

    let (status, bytes) = sign_json(&agent, &example("ATTESTATION")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let err = error_body(&bytes);
    assert_eq!(err.code, "not_holder");
    assert_eq!(err.holder.as_deref(), Some("agent-b"));
    assert!(err.message.contains("agent-b"), "{}", err.message);
    assert_eq!(agent.metrics.signatures.get(), 0);
    assert_eq!(agent.metrics.signatures_discarded.get(), 1);

    // The agent is now fenced: the next request is refused without asking the coordinator,
    // non-slashable types included.
    let (status, bytes) = sign_json(&agent, &example("RANDAO_REVEAL")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_body(&bytes).holder.as_deref(), Some("agent-b"));
    assert_eq!(fake.batches().len(), 1);
}

#[tokio::test]
async fn answers_503_and_signs_nothing_when_the_coordinator_hangs_past_the_deadline() {
    let fake = Fake::start().await;
    fake.answer(Records::Hang);
    let mut cfg = config(vec![fake.url.clone()]);
    cfg.record_deadline_ms = 300;
    let agent = agent(cfg).await;

    let started = std::time::Instant::now();
    let (status, bytes) = sign_json(&agent, &example("ATTESTATION")).await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "answered after {elapsed:?}"
    );
    let err = error_body(&bytes);
    assert_eq!(err.code, "unavailable");
    assert!(!String::from_utf8_lossy(&bytes).contains("signature"));
    assert_eq!(agent.metrics.signatures.get(), 0);
    assert_eq!(fake.batches().len(), 1, "the record was sent");
    assert_eq!(agent.metrics.signatures_discarded.get(), 1);
}

#[tokio::test]
async fn answers_503_and_signs_nothing_when_the_coordinator_is_unavailable() {
    let fake = Fake::start().await;
    fake.answer(Records::Unavailable);
    let agent = agent(config(vec![fake.url.clone()])).await;
    let (status, _) = sign_json(&agent, &example("ATTESTATION")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(agent.metrics.signatures.get(), 0);
}

#[tokio::test]
async fn moves_to_the_next_coordinator_when_a_connection_fails() {
    let fake = Fake::start().await;
    let agent = agent(config(vec![dead_url().await, fake.url.clone()])).await;
    let (status, bytes) = sign_json(&agent, &example("ATTESTATION")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(fake.batches().len(), 1);
}

#[tokio::test]
async fn polls_authority_from_the_next_coordinator_when_one_never_answers() {
    let fake = Fake::start().await;
    let cfg = config(vec![black_hole_url().await, fake.url.clone()]);
    let max_age = Duration::from_millis(cfg.authority_max_age_ms);
    let agent = agent(cfg).await;
    let started = std::time::Instant::now();
    assert!(
        agent.poll_authority().await,
        "the second coordinator answers"
    );
    assert!(
        started.elapsed() < max_age,
        "the poll must finish within the authority max age ({max_age:?}), took {:?}",
        started.elapsed()
    );
    // The first poll (inside `agent`) already moved past the black hole; signing works.
    let (status, bytes) = sign_json(&agent, &example("ATTESTATION")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
}

#[tokio::test]
async fn moves_a_record_batch_to_the_next_coordinator_after_a_503_but_not_after_a_timeout() {
    let down = Fake::start().await;
    down.answer(Records::Unavailable);
    let up = Fake::start().await;
    let first = agent(config(vec![down.url.clone(), up.url.clone()])).await;
    let (status, bytes) = sign_json(&first, &example("ATTESTATION")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(
        up.batches().len(),
        1,
        "the batch was committed by the second"
    );

    // A coordinator that times out is not retried: the outcome is unknown, the deadline used.
    let hung = Fake::start().await;
    hung.answer(Records::Hang);
    let spare = Fake::start().await;
    let second = agent(config(vec![hung.url.clone(), spare.url.clone()])).await;
    let (status, _) = sign_json(&second, &example("ATTESTATION")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(hung.batches().len(), 1);
    assert_eq!(
        spare.batches().len(),
        0,
        "a timed-out batch is not sent again"
    );
}

#[tokio::test]
async fn answers_503_when_no_coordinator_ever_answered() {
    let agent = agent(config(vec![dead_url().await])).await;
    for name in ["ATTESTATION", "RANDAO_REVEAL"] {
        let (status, bytes) = sign_json(&agent, &example(name)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{name}");
        assert_eq!(error_body(&bytes).code, "unavailable");
    }
    assert_eq!(agent.metrics.signatures.get(), 0);
}

#[tokio::test]
async fn refuses_a_mismatched_signing_root_with_400_and_records_nothing() {
    let fake = Fake::start().await;
    let agent = agent(config(vec![fake.url.clone()])).await;
    let mut body = example("ATTESTATION");
    body["signingRoot"] = Value::String(Root([1; 32]).to_string());

    let (status, bytes) = sign_json(&agent, &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err = error_body(&bytes);
    assert_eq!(err.code, "bad_request");
    assert!(err.message.contains("signingRoot"), "{}", err.message);
    assert!(fake.batches().is_empty());
}

#[tokio::test]
async fn refuses_an_attestation_far_ahead_of_the_chain_with_400_and_records_nothing() {
    let fake = Fake::start().await;
    // mainnet: the wall-clock epoch is in the hundreds of thousands, far below 10^8
    let agent = agent(config(vec![fake.url.clone()])).await;
    for (field, epoch) in [("target", "100000000"), ("source", "18446744073709551615")] {
        let mut body = example("ATTESTATION");
        body.as_object_mut().unwrap().remove("signingRoot");
        body["attestation"][field]["epoch"] = Value::String(epoch.into());
        let (status, bytes) = sign_json(&agent, &body).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        let err = error_body(&bytes);
        assert_eq!(err.code, "future_epoch");
        assert!(err.message.contains(epoch), "{}", err.message);
    }
    assert!(fake.batches().is_empty(), "nothing was recorded");
}

#[tokio::test]
async fn a_future_epoch_refusal_from_the_coordinator_is_a_400_and_nothing_is_signed() {
    let fake = Fake::start().await;
    fake.answer(Records::Answer {
        verdict: Verdict::Refused(Refusal::FutureEpoch {
            epoch: 9,
            current: 3,
            margin: 2,
        }),
        delay: Duration::ZERO,
    });
    let agent = agent(config(vec![fake.url.clone()])).await;
    let (status, bytes) = sign_json(&agent, &example("ATTESTATION")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_body(&bytes).code, "future_epoch");
}

#[tokio::test]
async fn refuses_malformed_json_with_400() {
    let fake = Fake::start().await;
    let agent = agent(config(vec![fake.url.clone()])).await;
    for body in [
        "{not json".to_string(),
        r#"{"type":"ATTESTATION"}"#.to_string(),
        r#"{"type":"NO_SUCH_TYPE"}"#.to_string(),
    ] {
        let (status, bytes) = send(
            &agent,
            sign_request(&interop::pubkey(0), body.clone(), None),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_body(&bytes).code, "bad_request", "{body}");
    }
    assert!(fake.batches().is_empty());
}

#[tokio::test]
async fn refuses_a_request_for_another_network_with_400() {
    let fake = Fake::start().await;
    let agent = agent(config(vec![fake.url.clone()])).await;
    let mut body = example("ATTESTATION");
    body["fork_info"]["genesis_validators_root"] = Value::String(Root([2; 32]).to_string());
    body.as_object_mut().unwrap().remove("signingRoot");

    let (status, bytes) = sign_json(&agent, &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err = error_body(&bytes);
    assert_eq!(err.code, "wrong_genesis");
    assert!(
        err.message.contains("wrong genesis/fork"),
        "{}",
        err.message
    );
    assert!(fake.batches().is_empty());
}

#[tokio::test]
async fn answers_404_for_an_unknown_key_and_400_for_a_malformed_identifier() {
    let fake = Fake::start().await;
    let agent = agent(config(vec![fake.url.clone()])).await;
    let body = example("ATTESTATION").to_string();

    let (status, bytes) = send(
        &agent,
        sign_request(&interop::pubkey(1), body.clone(), None),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_body(&bytes).code, "unknown_key");

    let req = Request::post("/api/v1/eth2/sign/0x1234")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let (status, _) = send(&agent, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(fake.batches().is_empty());
}

/// The network of the Web3Signer examples: the consensus-specs minimal config's fork
/// versions (genesis `0x00000001`), with Deneb not scheduled, as a `custom` network.
fn example_network(mut cfg: Config) -> Config {
    cfg.network = NetworkSetting::Custom;
    cfg.genesis_fork_version = Some("0x00000001".parse().unwrap());
    cfg.capella_fork_version = Some("0x03000001".parse().unwrap());
    cfg.deneb_fork_epoch = Some(u64::MAX);
    cfg
}

#[tokio::test]
async fn refuses_a_voluntary_exit_with_403_while_exits_are_disabled() {
    let fake = Fake::start().await;
    let cfg = config(vec![fake.url.clone()]);
    assert!(!cfg.allow_voluntary_exit, "disabled by default");
    let agent = agent(cfg).await;
    let (status, bytes) = sign_json(&agent, &example("VOLUNTARY_EXIT")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let err = error_body(&bytes);
    assert_eq!(err.code, "voluntary_exit_disabled");
    assert!(
        err.message.contains("allow_voluntary_exit = false"),
        "{}",
        err.message
    );
    assert_eq!(err.holder, None);
    assert!(!String::from_utf8_lossy(&bytes).contains("signature"));
    assert_eq!(agent.metrics.signatures.get(), 0);
    assert!(fake.batches().is_empty());
}

#[tokio::test]
async fn signs_a_voluntary_exit_when_allowed_without_recording_it() {
    let fake = Fake::start().await;
    let mut cfg = config(vec![fake.url.clone()]);
    cfg.allow_voluntary_exit = true;
    let agent = agent(cfg).await;
    // Exit epoch 119 is before mainnet's Deneb epoch: fork_info decides, as in the example.
    let body = example("VOLUNTARY_EXIT");
    let (status, bytes) = sign_json(&agent, &body).await;
    assert_signed_over(status, &bytes, &example_root(&body));
    assert!(fake.batches().is_empty(), "exits are not slashable");
    assert_eq!(agent.metrics.signatures.get(), 1);
}

#[tokio::test]
async fn signs_a_validator_registration_with_the_configured_networks_genesis_fork_version() {
    let fake = Fake::start().await;
    let body = example("VALIDATOR_REGISTRATION");

    // On the examples' network the example's signingRoot is the computed one.
    let agent_on_examples = agent(example_network(config(vec![fake.url.clone()]))).await;
    assert_eq!(agent_on_examples.chain.name, "custom");
    let (status, bytes) = sign_json(&agent_on_examples, &body).await;
    assert_signed_over(status, &bytes, &example_root(&body));
    assert!(fake.batches().is_empty(), "registrations are not slashable");

    // On mainnet (genesis fork version 0x00000000) the same message has another root: the
    // example's is refused, and without it the mainnet root is signed.
    let mainnet = agent(config(vec![fake.url.clone()])).await;
    assert_eq!(mainnet.chain, eth::ChainSpec::mainnet());
    let (status, bytes) = sign_json(&mainnet, &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_body(&bytes).message.contains("signingRoot"));
    let mut without = body.clone();
    without.as_object_mut().unwrap().remove("signingRoot");
    let (status, bytes) = sign_json(&mainnet, &without).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let reg: eth::ValidatorRegistration =
        serde_json::from_value(body["validator_registration"].clone()).unwrap();
    let mainnet_root = eth::compute_signing_root(&reg, eth::ChainSpec::mainnet().builder_domain());
    assert!(eth::verify(
        &interop::pubkey(0),
        &mainnet_root,
        &signature_of(&bytes)
    ));
}

#[tokio::test]
async fn a_fenced_agent_refuses_exits_and_registrations_with_403_naming_the_holder() {
    let fake = Fake::start().await;
    *fake.state.authority.lock().unwrap() = AuthorityView {
        holder: Some("agent-b".into()),
        token: 11,
        applied_index: 11,
        waited_ms: 0,
    };
    let mut cfg = example_network(config(vec![fake.url.clone()]));
    cfg.allow_voluntary_exit = true;
    let agent = agent(cfg).await;
    for name in ["VOLUNTARY_EXIT", "VALIDATOR_REGISTRATION"] {
        let (status, bytes) = sign_json(&agent, &example(name)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}");
        let err = error_body(&bytes);
        assert_eq!(err.code, "not_holder", "{name}");
        assert_eq!(err.holder.as_deref(), Some("agent-b"), "{name}");
    }
    assert_eq!(agent.metrics.signatures.get(), 0);
    assert!(fake.batches().is_empty());
}

#[tokio::test]
async fn exits_and_registrations_answer_503_while_authority_is_unknown() {
    let mut cfg = example_network(config(vec![dead_url().await]));
    cfg.allow_voluntary_exit = true;
    let agent = agent(cfg).await;
    for name in ["VOLUNTARY_EXIT", "VALIDATOR_REGISTRATION"] {
        let (status, bytes) = sign_json(&agent, &example(name)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{name}");
        assert_eq!(error_body(&bytes).code, "unavailable", "{name}");
    }
    assert_eq!(agent.metrics.signatures.get(), 0);
}

#[tokio::test]
async fn answers_json_or_bare_hex_by_the_accept_header_as_web3signer_does() {
    let fake = Fake::start().await;
    let agent = agent(config(vec![fake.url.clone()])).await;
    let body = example("RANDAO_REVEAL");
    let want_root = example_root(&body);
    // (Accept, JSON expected): JSON for application/json or */* anywhere in the list, the
    // bare hex otherwise, an absent Accept included.
    let cases = [
        (None, false),
        (Some("text/plain"), false),
        (Some("TEXT/PLAIN; charset=utf-8"), false),
        (Some("application/*"), false),
        (Some("application/json"), true),
        (Some("Application/JSON"), true),
        (Some("*/*"), true),
        (Some("text/plain, application/json;q=0.5"), true),
        (Some("text/plain;q=1.0, */*;q=0.1"), true),
    ];
    for (accept, json) in cases {
        let req = sign_request(&interop::pubkey(0), body.to_string(), accept);
        let resp = signer_agent::router(agent.clone())
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{accept:?}");
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let sig: Signature = if json {
            assert!(
                content_type.starts_with("application/json"),
                "{accept:?}: {content_type}"
            );
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v.as_object().unwrap().len(), 1, "only `signature`: {v}");
            signature_of(&bytes)
        } else {
            assert!(
                content_type.starts_with("text/plain"),
                "{accept:?}: {content_type}"
            );
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            assert!(
                text.starts_with("0x") && text.len() == 2 + 192,
                "{accept:?}: {text}"
            );
            text.parse().unwrap()
        };
        assert!(
            eth::verify(&interop::pubkey(0), &want_root, &sig),
            "{accept:?}"
        );
    }
    // Errors are JSON whatever Accept says.
    let (status, bytes) = send(
        &agent,
        sign_request(&interop::pubkey(1), body.to_string(), Some("text/plain")),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_body(&bytes).code, "unknown_key");
}

#[tokio::test]
async fn signs_a_randao_reveal_without_recording_it_while_enabled() {
    let fake = Fake::start().await;
    let agent = agent(config(vec![fake.url.clone()])).await;
    let body = example("RANDAO_REVEAL");
    let (status, bytes) = sign_json(&agent, &body).await;
    assert_signed_over(status, &bytes, &example_root(&body));
    assert!(fake.batches().is_empty());
}

#[tokio::test]
async fn a_fenced_agent_answers_403_naming_the_holder_without_recording() {
    let fake = Fake::start().await;
    *fake.state.authority.lock().unwrap() = AuthorityView {
        holder: Some("agent-b".into()),
        token: 11,
        applied_index: 11,
        waited_ms: 0,
    };
    let agent = agent(config(vec![fake.url.clone()])).await;
    let (status, bytes) = sign_json(&agent, &example("ATTESTATION")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_body(&bytes).holder.as_deref(), Some("agent-b"));
    assert!(fake.batches().is_empty());
}

#[tokio::test]
async fn groups_concurrent_requests_into_fewer_batches_than_requests() {
    let fake = Fake::start().await;
    fake.answer(Records::Answer {
        verdict: Verdict::Valid,
        delay: Duration::from_millis(100),
    });
    let mut cfg = config(vec![fake.url.clone()]);
    cfg.max_in_flight_batches = 1;
    cfg.max_batch = 8;
    cfg.record_deadline_ms = 5000;
    let agent = agent(cfg).await;
    let body = example("ATTESTATION");

    const REQUESTS: usize = 24;
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let agent = agent.clone();
            let body = body.clone();
            tokio::spawn(async move { sign_json(&agent, &body).await })
        })
        .collect();
    for t in tasks {
        let (status, bytes) = t.await.unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }

    let batches = fake.batches();
    let sizes: Vec<usize> = batches.iter().map(|b| b.items.len()).collect();
    assert_eq!(
        sizes.iter().sum::<usize>(),
        REQUESTS,
        "every record sent once"
    );
    assert!(batches.len() < REQUESTS, "batch sizes {sizes:?}");
    assert!(
        sizes.iter().all(|n| *n <= 8),
        "max_batch respected: {sizes:?}"
    );
    assert_eq!(agent.metrics.signatures.get(), REQUESTS as u64);
}

#[tokio::test]
async fn health_public_keys_upcheck_and_metrics_answer() {
    let fake = Fake::start().await;
    let agent = agent(config(vec![fake.url.clone()])).await;

    let (status, bytes) = send(
        &agent,
        Request::get("/upcheck").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, b"OK".as_slice())
    );
    // Lodestar's external-signer client accepts only JSON and reads `status`; a client that
    // also accepts text (or anything) gets Web3Signer's text.
    for (accept, want) in [
        ("application/json", &br#"{"status":"OK"}"#[..]),
        ("Application/JSON; q=1", &br#"{"status":"OK"}"#[..]),
        ("application/json, text/plain", b"OK"),
        ("application/json, */*;q=0.8", b"OK"),
        ("text/plain", b"OK"),
        ("*/*", b"OK"),
    ] {
        let (status, bytes) = send(
            &agent,
            Request::get("/upcheck")
                .header("accept", accept)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, bytes.as_slice()),
            (StatusCode::OK, want),
            "Accept: {accept}"
        );
    }

    let (status, bytes) = send(
        &agent,
        Request::get("/api/v1/eth2/publicKeys")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let keys: Vec<Pubkey> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(keys, vec![interop::pubkey(0)]);

    let (status, bytes) = send(
        &agent,
        Request::get("/healthcheck").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let health: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(health["status"], "UP");
    assert_eq!(health["outcome"], "UP");
    assert_eq!(health["checks"].as_array().unwrap().len(), 2);

    sign_json(&agent, &example("ATTESTATION")).await;
    let (status, bytes) = send(
        &agent,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(bytes).unwrap();
    for needle in [
        r#"signer_agent_sign_requests_total{outcome="signed",type="ATTESTATION"} 1"#,
        "signer_agent_sign_duration_seconds_bucket",
        "signer_agent_record_batch_size_bucket",
        "signer_agent_keys_loaded 1",
        r#"signer_agent_signing_state{state="enabled"} 1"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn healthcheck_is_503_until_keys_are_loaded_and_a_coordinator_answered() {
    let agent = Agent::new(config(vec![dead_url().await]), Some(TOKEN.into()), None).unwrap();
    let (status, bytes) = send(
        &agent,
        Request::get("/healthcheck").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let health: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(health["outcome"], "DOWN");
    assert!(health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["status"] == "DOWN"));
}

#[tokio::test]
async fn registers_its_keys_and_sends_heartbeats_in_the_background() {
    let fake = Fake::start().await;
    let mut cfg = config(vec![fake.url.clone()]);
    cfg.heartbeat_ms = 50;
    cfg.authority_poll_ms = 50;
    let agent = agent(cfg).await;
    let _bg = agent.spawn_background();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let registered = fake.state.registrations.lock().unwrap().clone();
        if !registered.is_empty() && fake.state.heartbeats.load(Ordering::SeqCst) >= 2 {
            assert_eq!(registered[0].agent, AGENT);
            assert_eq!(registered[0].region, "eu");
            assert_eq!(registered[0].pubkeys, vec![interop::pubkey(0)]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no registration/heartbeats"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- a forged coordinator (man in the middle) ------------------------------------------------

/// A CA with certificates for 127.0.0.1, written under a temporary directory.
struct TestCa {
    _dir: tempfile::TempDir,
    ca: failover_common::tls::issue::DirCa,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = failover_common::tls::issue::DirCa::create(dir.path(), name, 1).unwrap();
        Self { _dir: dir, ca }
    }

    fn tls(
        &self,
        stem: &str,
        kind: failover_common::tls::issue::LeafKind,
    ) -> Arc<failover_common::tls::Tls> {
        failover_common::tls::Tls::load(&self.ca.issue_local(stem, kind, 1).unwrap()).unwrap()
    }
}

/// An agent of the cluster CA `ca` dialling `url` over TLS, with interop key 0, polled once.
async fn tls_agent(ca: &TestCa, url: &str) -> Arc<Agent> {
    use failover_common::tls::issue::LeafKind;
    static AGENTS: AtomicUsize = AtomicUsize::new(0);
    let n = AGENTS.fetch_add(1, Ordering::SeqCst);
    let tls = ca.tls(&format!("agent-{n}"), LeafKind::Agent(AGENT.into()));
    let mut cfg = config(vec![url.to_string()]);
    cfg.insecure_plaintext_coordinators = false;
    cfg.tls = Some(tls.files().clone());
    cfg.validate().unwrap();
    let agent = Agent::new(cfg, Some(TOKEN.into()), Some(tls)).unwrap();
    agent.keys.insert(interop::secret_key(0));
    agent.keys.finish();
    agent.poll_authority().await;
    agent
}

#[tokio::test]
async fn a_forged_coordinator_that_says_you_hold_authority_gets_no_signature() {
    use failover_common::tls::issue::LeafKind;
    use failover_common::tls::ClientAuth;
    let cluster = TestCa::new("cluster CA");
    let body = example("ATTESTATION");

    // A man in the middle with a node certificate of its own CA answers "agent-a holds
    // authority" and `valid` for every record: the agent refuses to sign and says why.
    let mitm_ca = TestCa::new("mitm CA");
    let mitm = mitm_ca.tls("node-1", LeafKind::Node(1));
    let fake = Fake::start_with(Some(mitm.server_config(ClientAuth::Optional))).await;
    let agent = tls_agent(&cluster, &fake.url).await;
    let (status, bytes) = sign_json(&agent, &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let e = error_body(&bytes);
    assert!(
        e.message.contains("signing authority unknown"),
        "{}",
        e.message
    );
    assert!(e.message.contains("UnknownIssuer"), "{}", e.message);
    assert!(fake.batches().is_empty(), "no record reached the forger");

    // A certificate of the cluster CA that is not a coordinator's (another agent's): refused
    // as a coordinator, nothing signed.
    let other = cluster.tls("agent-b", LeafKind::Agent("agent-b".into()));
    let fake = Fake::start_with(Some(other.server_config(ClientAuth::Optional))).await;
    let agent = tls_agent(&cluster, &fake.url).await;
    let (status, bytes) = sign_json(&agent, &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let e = error_body(&bytes);
    assert!(e.message.contains("is not a coordinator"), "{}", e.message);

    // Control: the same fake with a node certificate of the cluster CA is believed, so the
    // refusals above come from the certificates and nothing else.
    let node = cluster.tls("node-2", LeafKind::Node(2));
    let fake = Fake::start_with(Some(node.server_config(ClientAuth::Optional))).await;
    let agent = tls_agent(&cluster, &fake.url).await;
    let (status, bytes) = sign_json(&agent, &body).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(fake.batches().len(), 1);
}
