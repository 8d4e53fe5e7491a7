//! Three real `coordinator` processes with real RocksDB directories (DESIGN.md I1, I2, I5, I6).
//!
//! Three scenarios, each on its own cluster so that one failure does not hide the others:
//! - a handover: grant authority to agent-a; agent-a records; hand over to agent-b; approval is
//!   refused before finality; the fenced agent's records are refused; finality arrives; the
//!   approval completes the handover with a larger token;
//! - crash recovery: kill -9 the leader and restart it (it catches up by snapshot) without
//!   losing a committed record; kill -9 the whole cluster and restart it with the authority and
//!   the history intact, and every node exports it;
//! - an EIP-3076 import through a follower is enforced and audited.

mod support;

use std::time::{Duration, Instant};

use failover_common::types::{Pubkey, Root};
use failover_protocol::{RecordItem, Verdict};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{
    assert_openapi_paths, attestation, verdicts, Api, Cluster, FakeBeacon, AGENT_A, AGENT_B, ALICE,
    BOB, GVR,
};

/// Three nodes polling `beacon`, snapshotting every 8 entries and keeping no log after a
/// snapshot (a restarted node catches up by installing one); all started.
fn three_nodes(dir: &std::path::Path, beacon: &str) -> Cluster {
    let mut cluster = Cluster::new(dir, 3, |_, c| {
        c.beacon = Some(beacon.to_string());
        c.raft.push_str("snapshot_every = 8\nkeep_logs = 0\n");
    });
    cluster.start_all();
    cluster
}

impl Api {
    /// Waits until one of `urls` reports a leader, returning its status.
    async fn wait_leader(&self, urls: &[String]) -> Value {
        let has_leader = |v: &Value| !v["leader_id"].is_null();
        self.wait_answer(urls, "/v1/status", has_leader, "no leader elected in 30 s")
            .await
    }
}

/// Validator 7's attestation from `source` to `target` with signing root `[r; 32]`.
fn att(source: u64, target: u64, r: u8) -> RecordItem {
    attestation(7, source, target, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_over_three_real_nodes_fences_waits_for_finality_and_grows_the_token() {
    let Registered {
        _tmp,
        beacon,
        cluster,
        api,
    } = registered().await;
    // Any node accepts any request: use node 3 (likely a follower) for writes.
    let any = cluster.urls[2].clone();
    // An agent cannot register as another agent.
    let (s, _) = api.register(&any, AGENT_A, "agent-b", &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // First grant: nothing recorded yet, so required_epoch is 0 and finality is not needed.
    let (s, h) = api.handover(&any, "agent-a", "initial grant").await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let id1 = h["id"].as_u64().unwrap();
    // The liveness gate: the two epochs after the request's must be complete and clear.
    assert_eq!(h["state"], "awaiting_liveness");
    let (s, v) = api.approve_as(&any, id1, BOB).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("liveness gate"),
        "{v}"
    );
    // Two-person rule: the requester cannot approve.
    let (s, v) = api.approve_as(&any, id1, ALICE).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let token_a = api.clear_and_approve(&any, id1, &beacon, 3).await;

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
    let (s, h) = api.handover(&any, "agent-b", "planned maintenance").await;
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
    let (s, v) = api.approve_as(&any, id2, BOB).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // Finality of epoch 2 is not enough; epoch 3 is.
    beacon.finalize(2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, h) = api.get(&any, &format!("/v1/handovers/{id2}"), ALICE).await;
    assert_eq!(h["state"], "awaiting_finality", "{h}");
    beacon.finalize(3);
    beacon.advance_epochs(3);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, h) = api.get(&any, &format!("/v1/handovers/{id2}"), ALICE).await;
        if h["state"] == "awaiting_approval" {
            break;
        }
        assert!(Instant::now() < deadline, "finality never confirmed: {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, h) = api.approve_as(&any, id2, BOB).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["state"], "completed");
    let token_b = h["granted_token"].as_u64().unwrap();
    assert!(
        token_b > token_a,
        "tokens must grow: {token_b} <= {token_a}"
    );
    let mut events: Vec<&str> = h["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    // The two gates are independent: finality and liveness may be confirmed in either order.
    events[2..4].sort_unstable();
    assert_eq!(
        events,
        [
            "requested",
            "fenced",
            "finality_confirmed",
            "liveness_confirmed",
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
}

/// A started three-node cluster in which agent-a and agent-b registered validator 7, agent-a
/// holds authority (first grant, approved by bob) and recorded `att(1, 2, 1)`; with the beacon
/// node, the API client and agent-a's token.
struct Granted {
    _tmp: tempfile::TempDir,
    _beacon: FakeBeacon,
    cluster: Cluster,
    api: Api,
    token: u64,
}

/// A started three-node cluster with a leader, polling `beacon`, in which agent-a and agent-b
/// registered validator 7 (through node 3).
struct Registered {
    _tmp: tempfile::TempDir,
    beacon: FakeBeacon,
    cluster: Cluster,
    api: Api,
}

async fn registered() -> Registered {
    let tmp = tempfile::tempdir().unwrap();
    let beacon = FakeBeacon::new(0, 1000);
    let beacon_url = beacon.serve().await;
    let cluster = three_nodes(tmp.path(), &beacon_url);
    let api = Api::new(Duration::from_secs(10));
    api.wait_leader(&cluster.urls).await;
    for (agent, tok) in [("agent-a", AGENT_A), ("agent-b", AGENT_B)] {
        let (s, v) = api
            .register(&cluster.urls[2], tok, agent, &[Pubkey([7; 48])])
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    Registered {
        _tmp: tmp,
        beacon,
        cluster,
        api,
    }
}

async fn granted() -> Granted {
    let Registered {
        _tmp: tmp,
        beacon,
        cluster,
        api,
    } = registered().await;
    let any = cluster.urls[2].clone();
    let (s, h) = api.handover(&any, "agent-a", "initial grant").await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let token = api
        .clear_and_approve(&any, h["id"].as_u64().unwrap(), &beacon, 3)
        .await;
    let (s, v) = api
        .records(&any, AGENT_A, "agent-a", token, vec![att(1, 2, 1)])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(verdicts(&v), vec![Verdict::Valid]);
    Granted {
        _tmp: tmp,
        _beacon: beacon,
        cluster,
        api,
        token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_and_a_full_restart_lose_no_committed_record() {
    // Bind every field: an unbound one would be dropped here, the temporary directory with it.
    let Granted {
        _tmp,
        _beacon,
        mut cluster,
        api,
        token,
    } = granted().await;
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
                AGENT_A,
                "agent-a",
                token,
                vec![att(1, 2, 1), att(2, 3, 8)],
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
    for e in 3..25u64 {
        let (s, v) = api
            .records(
                &others[0],
                AGENT_A,
                "agent-a",
                token,
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
        if s == StatusCode::OK && v["holder"] == "agent-a" && v["validators"] == 1 {
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
    cluster.kill_all();
    cluster.start_all();
    let st = api.wait_leader(&cluster.urls).await;
    assert_eq!(st["holder"], "agent-a");
    assert_eq!(st["token"].as_u64().unwrap(), token);
    let deadline = Instant::now() + Duration::from_secs(30);
    let vs = loop {
        let (s, v) = api
            .records(
                &cluster.urls[1],
                AGENT_A,
                "agent-a",
                token,
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interchange_import_through_a_follower_is_enforced_and_audited() {
    let Granted {
        _tmp,
        _beacon,
        cluster,
        api,
        token,
    } = granted().await;
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
        .records(&cluster.urls[2], AGENT_A, "agent-a", token, vec![block])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        matches!(verdicts(&v)[0], Verdict::Refused(_)),
        "imported block must be enforced"
    );

    let actions = api.audit(&cluster.urls[0], "operator", "action").await;
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
    assert_openapi_paths(&[
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
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_moves_to_the_leader_named_in_a_followers_answer() {
    // Issue 15 item 5: every answer names the leader, so the agent's next request skips the
    // forwarding hop.
    let Granted {
        _tmp,
        _beacon,
        cluster,
        api,
        token,
    } = granted().await;
    let leader_id = api.wait_leader(&cluster.urls).await["leader_id"]
        .as_u64()
        .unwrap();
    let leader_url = cluster.urls[leader_id as usize - 1].clone();
    // The followers first, so the agent starts at one.
    let mut urls: Vec<String> = cluster
        .urls
        .iter()
        .filter(|u| **u != leader_url)
        .cloned()
        .collect();
    urls.push(leader_url);
    let client = failover_protocol::CoordinatorClient::new(
        urls.clone(),
        Some(AGENT_A.to_string()),
        reqwest::Client::builder(),
        Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(client.preferred_index(), 0);

    let view = client.authority(Duration::from_secs(5)).await.unwrap();
    assert_eq!(view.token, token);
    assert_eq!(
        client.preferred_index(),
        2,
        "the follower's answer named the leader's URL; the next call starts there"
    );

    let req = failover_protocol::RecordBatchRequest {
        agent: "agent-a".into(),
        token,
        items: vec![att(2, 3, 2)],
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    assert_eq!(
        client.post_records(&req, deadline).await,
        failover_protocol::BatchOutcome::Verdicts(vec![Verdict::Valid])
    );
    assert_eq!(client.preferred_index(), 2, "the leader answered itself");

    // The leader URL fails: the client moves on and does not go back to it on a hint
    // until the cooldown has passed.
    let leader_idx = leader_id as usize - 1;
    let mut cluster = cluster;
    cluster.kill(leader_idx);
    let started = Instant::now();
    loop {
        match client.authority(Duration::from_secs(2)).await {
            Ok(_) => break,
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                tracing::debug!(error = %e, "no answer yet; a new leader is being elected");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no authority answer 30 s after the leader was killed: {e}"),
        }
    }
    assert_ne!(
        client.preferred_index(),
        2,
        "a failed leader is not preferred"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_of_authority_answers_when_the_holder_is_fenced_and_waits_otherwise() {
    // Issue 15 item 6: a change reaches the agent about one round trip after it applied.
    let Granted {
        _tmp,
        _beacon,
        cluster,
        api,
        token,
    } = granted().await;
    let url = cluster.urls[0].clone();
    let poll_path = |wait_ms: u64, holding: bool| {
        format!("/v1/authority?wait_ms={wait_ms}&token={token}&holding={holding}")
    };

    // No change: held for the wait, then the same view, saying how long it waited.
    let started = Instant::now();
    let (s, v) = api.get(&url, &poll_path(400, true), AGENT_A).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(v["holder"], "agent-a");
    assert!(v["waited_ms"].as_u64().unwrap() >= 400, "{v}");

    // Already different from what the caller saw: answered at once.
    let (s, v) = api.get(&url, &poll_path(20_000, false), AGENT_A).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["waited_ms"].as_u64().unwrap() < 1000, "{v}");

    // Held, then woken by the fence of a handover request.
    let poll = {
        let api = Api::new(Duration::from_secs(30));
        let (url, path) = (url.clone(), poll_path(20_000, true));
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = api.get(&url, &path, AGENT_A).await;
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, h) = api.handover(&cluster.urls[1], "agent-b", "drill").await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let ((s, v), elapsed) = poll.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["holder"].is_null(), "agent-a is fenced: {v}");
    assert!(
        elapsed < Duration::from_secs(10),
        "answered {elapsed:?} after it was sent, not at the end of its 20 s wait"
    );

    // Malformed or misplaced long polls are refused with a reason.
    for (path, token) in [
        ("/v1/authority?wait_ms=100", AGENT_A),
        ("/v1/authority?wait_ms=100&token=1&holding=maybe", AGENT_A),
        (
            "/v1/authority?wait_ms=100&token=1&holding=true&extra=1",
            AGENT_A,
        ),
        ("/v1/authority?wait_ms=100&token=1&holding=true", ALICE),
    ] {
        let (s, v) = api.get(&url, path, token).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["code"], "bad_request", "{path}: {v}");
    }
    // u64::MAX as a wait is capped, not an overflow: answered at once because it differs.
    let (s, v) = api
        .get(
            &url,
            &format!("/v1/authority?wait_ms={}&token=0&holding=true", u64::MAX),
            AGENT_A,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
