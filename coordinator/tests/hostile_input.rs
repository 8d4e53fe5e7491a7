//! What one token and one port can do to a coordinator, item by item (the hostile-input
//! issue; DESIGN.md "Trust boundaries"; STYLE.md 14). Each test attacks one limit and checks
//! the documented answer and that nothing else changed.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordinator::config::Config;
use coordinator::node::Node;
use failover_common::types::Pubkey;
use failover_protocol::{Refusal, Verdict};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{
    attestation, block, verdicts, Api, Cluster, FakeBeacon, NodeConfig, AGENT_A, AGENT_B, ALICE,
    BOB, CLUSTER_SECRET, GVR,
};

/// A one-node cluster served in process on a loopback port, polling `beacon` if given, with
/// `extra` appended to its config; returns its URL and the node.
async fn one_node(dir: &Path, beacon: Option<String>, extra: &str) -> (String, Arc<Node>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let url = format!("http://{addr}");
    let token_file = dir.join("cluster.token");
    failover_common::secret_file::write_private(&token_file, CLUSTER_SECRET).unwrap();
    let mut cfg = NodeConfig::new(1, &addr.to_string(), &dir.join("node1"), &token_file);
    cfg.bootstrap = true;
    cfg.peers = vec![(1, url.clone(), "eu".into())];
    cfg.beacon = beacon;
    cfg.extra = extra.to_string();
    let config = Config::from_toml(&cfg.to_toml()).unwrap();
    config.validate().unwrap();
    let node = support::serve(config, l).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.leader().is_none() {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (url, node)
}

/// Registers agent-a with validator 7 and grants it authority; returns the token. With
/// `beacon`, its head moves 3 epochs on for the liveness gate; without one, no liveness
/// evidence can come and the grant is completed with break-glass.
async fn grant_agent_a(api: &Api, url: &str, beacon: Option<&FakeBeacon>) -> u64 {
    let (s, v) = api
        .register(url, AGENT_A, "agent-a", &[Pubkey([7; 48])])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let Some(beacon) = beacon else {
        return api.grant_without_beacon(url, "agent-a").await;
    };
    let (s, h) = api.handover(url, "agent-a", "grant").await;
    assert_eq!(s, StatusCode::OK, "{h}");
    api.clear_and_approve(url, h["id"].as_u64().unwrap(), beacon, 3)
        .await
}

async fn wait_chain_clock(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.chain_clock.is_known() {
        assert!(
            Instant::now() < deadline,
            "the chain clock never became known"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn interchange(pubkey: Pubkey, source: u64, target: u64) -> Value {
    json!({
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": GVR},
        "data": [{
            "pubkey": pubkey,
            "signed_blocks": [],
            "signed_attestations": [{
                "source_epoch": source.to_string(),
                "target_epoch": target.to_string()
            }]
        }]
    })
}

// ---- item 2: far-future messages -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_record_is_refused_alone_and_the_validator_keeps_signing() {
    let tmp = tempfile::tempdir().unwrap();
    // After the grant moves it 3 epochs on, head slot 1000 with 32-slot epochs: the chain is
    // at epoch 31; the margin is 2.
    let fake = FakeBeacon::new(0, 1000 - 3 * 32);
    let beacon = fake.serve().await;
    let (url, node) = one_node(tmp.path(), Some(beacon), "").await;
    let api = Api::strict(Duration::from_secs(10));
    let token = grant_agent_a(&api, &url, Some(&fake)).await;
    wait_chain_clock(&node).await;

    let (s, v) = api
        .records(
            &url,
            AGENT_A,
            "agent-a",
            token,
            vec![
                attestation(7, 30, 31, 1),
                attestation(7, 100_000, 100_001, 1),
                block(7, 34 * 32, 1),
                attestation(7, 31, 32, 1),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let vs = verdicts(&v);
    assert_eq!(vs[0], Verdict::Valid);
    assert_eq!(
        vs[1],
        Verdict::Refused(Refusal::FutureEpoch {
            epoch: 100_001,
            current: 31,
            margin: 2
        })
    );
    assert!(matches!(
        vs[2],
        Verdict::Refused(Refusal::FutureEpoch { epoch: 34, .. })
    ));
    assert_eq!(vs[3], Verdict::Valid);

    // Nothing of the refused items was recorded: the validator attests on as usual.
    let (_, export) = api.get(&url, "/v1/slashing/export", ALICE).await;
    assert_eq!(support::exported_targets(&export), vec![31, 32]);
    let (s, v) = api
        .records(
            &url,
            AGENT_A,
            "agent-a",
            token,
            vec![attestation(7, 32, 33, 1)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        verdicts(&v),
        vec![Verdict::Valid],
        "epoch 33 is within the margin"
    );
    let metrics = api
        .http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("failover_records_total{verdict=\"future_epoch\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_import_is_refused_with_a_report_unless_an_operator_overrides_it() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeBeacon::new(0, 1000 - 3 * 32);
    let beacon = fake.serve().await;
    let (url, node) = one_node(tmp.path(), Some(beacon), "").await;
    let api = Api::strict(Duration::from_secs(10));
    grant_agent_a(&api, &url, Some(&fake)).await;
    wait_chain_clock(&node).await;
    let v9 = Pubkey([9; 48]);
    let doc = interchange(v9, 5, 1_000_000);

    let (s, v) = api
        .post(&url, "/v1/slashing/import", ALICE, doc.clone())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["code"], "future_epoch");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains(&v9.to_string()) && msg.contains("5→1000000"),
        "{msg}"
    );
    // An agent may not override the bound.
    let path = "/v1/slashing/import?allow_future=true";
    let (s, v) = api.post(&url, path, AGENT_A, doc.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (_, export) = api.get(&url, "/v1/slashing/export", ALICE).await;
    assert!(
        support::exported_targets(&export).is_empty(),
        "nothing was imported: {export}"
    );

    // An operator may, and the audit says so.
    let (s, v) = api.post(&url, path, ALICE, doc).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, audit) = api.get(&url, "/v1/audit", ALICE).await;
    let last = audit.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "slashing.import");
    assert_eq!(last["operator"], "alice");
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .contains("FAR-FUTURE OVERRIDE"),
        "{last}"
    );
}

// ---- item 1: the poison pill ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_of_u64_max_epochs_keeps_the_cluster_up_and_signing() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _node) = one_node(tmp.path(), None, "").await;
    let api = Api::strict(Duration::from_secs(10));
    let token = grant_agent_a(&api, &url, None).await;
    // No beacon node: no far-future bound, so the pill reaches apply.
    let pill = json!({
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": GVR},
        "data": [{
            "pubkey": Pubkey([8; 48]),
            "signed_blocks": [{"slot": "18446744073709551615"}],
            "signed_attestations": [
                {"source_epoch": "5", "target_epoch": "18446744073709551615"},
                {"source_epoch": "18446744073709551615", "target_epoch": "18446744073709551615"}
            ]
        }]
    });
    let (s, v) = api.post(&url, "/v1/slashing/import", ALICE, pill).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let res = api.http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (s, v) = api
        .records(
            &url,
            AGENT_A,
            "agent-a",
            token,
            vec![attestation(7, 1, 2, 1)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(verdicts(&v), vec![Verdict::Valid]);
    let (s, st) = api.get(&url, "/v1/status", ALICE).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!st["leader_id"].is_null());
}

// ---- item 3: an agent acts only for itself -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_cannot_record_for_a_validator_it_did_not_register() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _node) = one_node(tmp.path(), None, "").await;
    let api = Api::strict(Duration::from_secs(10));
    let token = grant_agent_a(&api, &url, None).await;
    let (s, v) = api
        .records(
            &url,
            AGENT_A,
            "agent-a",
            token,
            vec![attestation(8, 1, 2, 1), attestation(7, 1, 2, 1)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        verdicts(&v),
        vec![Verdict::Refused(Refusal::NotRegistered), Verdict::Valid]
    );
    let (_, export) = api.get(&url, "/v1/slashing/export", ALICE).await;
    assert_eq!(export["data"].as_array().unwrap().len(), 1, "{export}");
    // And no agent acts under another's name.
    let (s, _) = api
        .records(
            &url,
            AGENT_B,
            "agent-a",
            token,
            vec![attestation(7, 2, 3, 1)],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

// ---- item 7: one approval policy -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_configured_without_the_two_person_rule_cannot_loosen_the_cluster_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(tmp.path(), 3, |i, c| {
        if i == 2 {
            c.extra = "[handover]\ntwo_person_rule = false\nbreak_glass_approvals = 1\n".into();
        }
    });
    cluster.start_all();
    let api = Api::new(Duration::from_secs(10));
    let loose = cluster.urls[2].clone();
    let policy = api
        .wait_answer(
            std::slice::from_ref(&loose),
            "/v1/policy",
            |v| !v["policy"].is_null(),
            "the bootstrap node never set the policy",
        )
        .await;
    assert_eq!(policy["policy"]["two_person_rule"], true, "{policy}");
    assert_eq!(policy["configured"]["two_person_rule"], false, "{policy}");

    let (s, v) = api.register(&loose, AGENT_A, "agent-a", &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, h) = api.handover(&loose, "agent-a", "grant").await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let id = h["id"].as_u64().unwrap();
    // alice requested: through the loosely configured node she still cannot approve.
    let (s, v) = api.approve_as(&loose, id, ALICE).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("two-person rule"),
        "{v}"
    );

    // A policy the four operators can never meet is refused before it is proposed.
    for (approvals, glass) in [(u32::MAX, u32::MAX), (4, 4), (1, 4)] {
        let body = json!({"approvals_required": approvals, "two_person_rule": true,
            "break_glass_approvals": glass});
        let (s, v) = api.post(&loose, "/v1/policy", ALICE, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{approvals}/{glass}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains("can never be met"),
            "{v}"
        );
    }

    // Changing the policy needs two operators.
    let body =
        json!({"approvals_required": 1, "two_person_rule": false, "break_glass_approvals": 1});
    let (s, v) = api.post(&loose, "/v1/policy", ALICE, body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api
        .post(&loose, "/v1/policy/confirm", ALICE, json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = api.post(&loose, "/v1/policy/confirm", BOB, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // This cluster has no beacon node, so the liveness gate cannot pass: the requester's own
    // break-glass approval, which the confirmed policy (no two-person rule, one break-glass
    // approval) now allows, completes it.
    let (s, v) = api
        .post(
            &loose,
            &format!("/v1/handovers/{id}/approve"),
            ALICE,
            json!({"break_glass": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "now the policy allows it: {v}");
    assert_eq!(v["state"], "completed", "{v}");
    let actions: Vec<(String, String)> = api
        .audit(&loose, "action", "operator")
        .await
        .into_iter()
        .filter(|(a, _)| a.starts_with("policy."))
        .collect();
    let expected = [
        ("policy.init", "node:1"),
        ("policy.propose", "alice"),
        ("policy.confirm", "alice"),
        ("policy.confirm", "bob"),
    ]
    .map(|(a, o)| (a.to_string(), o.to_string()));
    assert_eq!(actions, expected, "{actions:?}");
}

// ---- item 9: timeouts, limits --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_do_not_delay_status_and_are_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, node) = one_node(
        tmp.path(),
        None,
        "[limits]\nheader_read_timeout_ms = 1500\n",
    )
    .await;
    let addr = url.trim_start_matches("http://").to_string();
    let mut half_open = Vec::new();
    for _ in 0..300 {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        half_open.push(c);
    }
    let api = Api::strict(Duration::from_secs(5));
    let started = Instant::now();
    let (s, _) = api.get(&url, "/v1/status", ALICE).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Every one is closed by the server within its header-read timeout (1.5 s) plus margin:
    // EOF (possibly after a 408 response) or a reset, never a read timeout.
    let closed = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(6);
        let mut closed = 0;
        for c in &mut half_open {
            let left = deadline.saturating_duration_since(Instant::now());
            c.set_read_timeout(Some(left.max(Duration::from_millis(10))))
                .unwrap();
            let mut buf = [0u8; 512];
            closed += loop {
                match c.read(&mut buf) {
                    Ok(0) => break 1,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break 0,
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break 0,
                    Err(_) => break 1,
                }
            };
        }
        closed
    })
    .await
    .unwrap();
    assert_eq!(closed, 300, "half-open connections the server closed");
    let open = node
        .listener_stats
        .open
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(open < 5, "{open} connections still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_and_unauthenticated_ones_are_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _node) = one_node(tmp.path(), None, "[limits]\nmax_body_bytes = 65536\n").await;
    let api = Api::strict(Duration::from_secs(10));
    let big = format!(
        "{{\"agent\":\"agent-a\",\"token\":1,\"items\":[],\"x\":\"{}\"}}",
        "a".repeat(100_000)
    );
    let (s, _) = api.post_raw(&url, "/v1/agent/records", AGENT_A, &big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, v) = api
        .post_raw(&url, "/v1/agent/records", "nobody", &big)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
}

// ---- item 10: failed authentication is visible and slowed ----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_counted_and_a_flooding_source_is_slowed_down() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _node) = one_node(tmp.path(), None, "[limits]\nauth_failures_per_minute = 5\n").await;
    let api = Api::strict(Duration::from_secs(10));
    let mut statuses = Vec::new();
    for i in 0..8 {
        let (s, _) = api.get(&url, "/v1/status", &format!("wrong-{i}")).await;
        statuses.push(s);
    }
    // Five failures a minute are allowed; the sixth blocks the source.
    assert_eq!(
        &statuses[..6],
        &[StatusCode::UNAUTHORIZED; 6],
        "{statuses:?}"
    );
    assert!(
        statuses[6..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Blocked: even a good token from this source waits for the budget to refill.
    let res = api
        .http
        .get(format!("{url}/v1/status"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=13).contains(&retry), "{retry}");
    // Unauthenticated routes (metrics, health) still answer the blocked source.
    let metrics = api
        .http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("failover_auth_failures_total{listener=\"api\",reason=\"unknown_token\"}")
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(n, 6, "{line}");
}

// ---- item 11: secrets ----------------------------------------------------------------------

#[test]
fn a_cluster_token_readable_by_others_stops_the_node_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(tmp.path(), 1, |_, _| {});
    let token = tmp.path().join("cluster.token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = support::coordinator_cmd()
        .args(["run", "--config"])
        .arg(cluster.config_path(0))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("chmod 600 {}", token.display())),
        "{err}"
    );
    assert!(
        !err.contains(CLUSTER_SECRET),
        "the secret is never printed: {err}"
    );
}

// ---- item 12: the cluster secret never goes to an unverified address -----------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_url_that_cannot_prove_the_cluster_token_receives_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _node) = one_node(tmp.path(), None, "").await;
    // A listener that answers like a fresh node and records every Authorization header.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorder = {
        let seen = seen.clone();
        axum::Router::new().fallback(move |req: axum::extract::Request| {
            let seen = seen.clone();
            async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap_or("?").to_string())
                    .unwrap_or_default();
                seen.lock().unwrap().push(format!("{} {auth}", req.uri()));
                axum::Json(json!({"node_id": 4, "initialized": false, "region": "xx"}))
            }
        })
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, recorder).await.unwrap() });

    let api = Api::strict(Duration::from_secs(10));
    let (s, v) = api
        .post(
            &url,
            "/v1/cluster/learners",
            ALICE,
            json!({"id": 4, "url": trap}),
        )
        .await;
    assert!(s.is_client_error() || s.is_server_error(), "{s} {v}");
    assert!(v["message"].as_str().unwrap().contains("proof"), "{v}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the leader asked the trap who it is");
    for r in &seen {
        assert!(r.ends_with(' '), "a request carried a credential: {r}");
        assert!(!r.contains(CLUSTER_SECRET));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finality_and_liveness_evidence_are_never_accepted_from_another_node() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, node) = one_node(tmp.path(), None, "").await;
    let forged = json!({
        "cmd": "finality",
        "checkpoint": {"epoch": 1000, "root": format!("0x{}", "ab".repeat(32))},
        "observations": [],
        "at_ms": 0,
        "slots_per_epoch": 32
    });
    let api = Api::strict(Duration::from_secs(10));
    let (s, v) = api
        .post(&url, "/internal/v1/write", CLUSTER_SECRET, forged)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(node.state.read().unwrap().data.finalized_epoch(), 0);

    // Nor liveness evidence: forged, it would pass an open handover's liveness gate.
    let (s, v) = api
        .register(&url, AGENT_A, "agent-a", &[Pubkey([7; 48])])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, h) = api.handover(&url, "agent-a", "grant").await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let id = h["id"].as_u64().unwrap();
    for epoch in [2u64, 3] {
        let forged = json!({
            "cmd": "liveness", "handover": id, "epoch": epoch, "current_epoch": 100,
            "live": [], "answered": ["http://forged"], "checked": 1, "node": 1, "at_ms": 0
        });
        let (s, v) = api
            .post(&url, "/internal/v1/write", CLUSTER_SECRET, forged)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    }
    let h = &node.state.read().unwrap().data.handovers[&id];
    assert_eq!(h.state, failover_protocol::HandoverState::AwaitingLiveness);
    assert_eq!(h.liveness.as_ref().unwrap().clear_through, None);
}

// ---- item 8: Raft and internal RPC on their own listener -----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flood_on_the_api_listener_does_not_reach_raft_on_its_own_listener() {
    let tmp = tempfile::tempdir().unwrap();
    let raft_ports: Vec<u16> = (0..3).map(|_| support::free_port()).collect();
    let raft_urls: Vec<String> = raft_ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let mut cluster = Cluster::new(tmp.path(), 3, |i, c| {
        c.raft_listen = Some((format!("127.0.0.1:{}", raft_ports[i]), raft_urls.clone()));
        c.extra = "[limits]\nmax_connections = 16\nheader_read_timeout_ms = 30000\n".into();
    });
    cluster.start_all();
    let api = Api::new(Duration::from_secs(5));
    let urls = cluster.urls.clone();
    let st = api
        .wait_answer(
            &urls,
            "/v1/status",
            |v| !v["leader_id"].is_null(),
            "no leader",
        )
        .await;
    let leader = st["leader_id"].as_u64().unwrap() as usize - 1;
    let follower = urls[(leader + 1) % 3].clone();
    let term = st["term"].as_u64().unwrap();

    // Each listener serves only its own routes.
    let res = api
        .http
        .get(format!("{}/v1/status", raft_urls[leader]))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let (s, _) = api
        .post(&urls[leader], "/raft/vote", CLUSTER_SECRET, json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Fill the leader's API listener with connections that never finish their headers.
    let addr = urls[leader].trim_start_matches("http://").to_string();
    let mut flood = Vec::new();
    for _ in 0..40 {
        if let Ok(mut c) = TcpStream::connect(&addr) {
            let _ = c.write_all(b"GET /v1/status HTTP/1.1\r\n");
            flood.push(c);
        }
    }
    // A new client (no pooled connection) gets nothing from the leader's API now.
    let fresh = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let res = fresh
        .get(format!("{}/v1/status", urls[leader]))
        .bearer_auth(ALICE)
        .send()
        .await;
    assert!(res.is_err(), "the leader's API listener is full: {res:?}");

    // The cluster still elects nothing new and commits: writes through a follower reach the
    // leader over the Raft listener.
    let token = grant_agent_a(&api, &follower, None).await;
    let (s, v) = api
        .records(
            &follower,
            AGENT_A,
            "agent-a",
            token,
            vec![attestation(7, 1, 2, 1)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(verdicts(&v), vec![Verdict::Valid]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (s, st) = api.get(&follower, "/v1/status", ALICE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        st["term"].as_u64(),
        Some(term),
        "no election while the API was flooded"
    );
    assert_eq!(st["leader_id"].as_u64(), Some(leader as u64 + 1));
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_imports_history_only_for_keys_it_proves_it_holds() {
    use failover_common::{eth, interop};
    let tmp = tempfile::tempdir().unwrap();
    let (url, _node) = one_node(tmp.path(), None, "").await;
    let api = Api::strict(Duration::from_secs(10));
    let held_pk = interop::pubkey(0);
    let foreign_pk = interop::pubkey(1);
    // A proof naming `pk`, signed with interop key `key` for `agent`.
    let proof = |pk: Pubkey, key: u64, agent: &str| json!({"pubkey": pk, "signature": eth::sign_possession(&interop::secret_key(key), agent)});

    // The operator route is for operators only.
    let (s, v) = api
        .post(
            &url,
            "/v1/slashing/import",
            AGENT_A,
            interchange(held_pk, 1, 2),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    // A key it holds, proved: imported.
    let body = json!({"agent": "agent-a", "interchange": interchange(held_pk, 1, 2),
        "possession": [proof(held_pk, 0, "agent-a")]});
    let (s, v) = api.post(&url, "/v1/agent/import", AGENT_A, body).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // A key it does not hold: no proof, a proof by another key, or agent-b's proof replayed.
    let attempts = [
        json!([]),
        json!([proof(foreign_pk, 0, "agent-a")]),
        json!([proof(foreign_pk, 1, "agent-b")]),
    ];
    for possession in attempts {
        let body = json!({"agent": "agent-a", "interchange": interchange(foreign_pk, 1, 2),
            "possession": possession});
        let (s, v) = api.post(&url, "/v1/agent/import", AGENT_A, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains(&foreign_pk.to_string()),
            "{v}"
        );
    }
    let (_, export) = api.get(&url, "/v1/slashing/export", ALICE).await;
    let keys: Vec<&str> = export["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["pubkey"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec![held_pk.to_string()]);
    let actions = api.audit(&url, "action", "operator").await;
    assert!(actions.contains(&("slashing.import".into(), "agent:agent-a".into())));

    // Each key costs a BLS verification: an import naming too many is refused before any.
    let many: Vec<Value> = (0..4097u32)
        .map(|i| {
            let mut pk = [0u8; 48];
            pk[..4].copy_from_slice(&i.to_be_bytes());
            json!({"pubkey": Pubkey(pk), "signed_blocks": [], "signed_attestations": []})
        })
        .collect();
    let doc = json!({
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": GVR},
        "data": many
    });
    let body = json!({"agent": "agent-a", "interchange": doc, "possession": []});
    let (s, v) = api.post(&url, "/v1/agent/import", AGENT_A, body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("at most 4096"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failoverctl_takes_its_token_from_a_private_file_and_never_from_the_command_line() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (url, _node) = one_node(tmp.path(), None, "").await;
    let token = tmp.path().join("alice.token");
    failover_common::secret_file::write_private(&token, ALICE).unwrap();
    let ctl = |args: &[&str]| {
        let mut c = std::process::Command::new(support::failoverctl_bin());
        c.env_remove("FAILOVER_TOKEN")
            .env_remove("FAILOVER_TOKEN_FILE")
            .args(["--coordinator", &url])
            .args(args);
        c
    };
    // (failoverctl blocks this worker thread; the node runs on the other.)
    let out = ctl(&["--token-file", token.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("holder"));

    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ctl(&["--token-file", token.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");

    let out = ctl(&["--token", ALICE, "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "there is no --token flag");
}
