//! A TLS cluster of real `coordinator` processes: who gets in with which certificate, and that
//! a certificate of another CA, or of another node id, can neither vote, append nor join.

mod support;

use std::time::Duration;

use failover_common::tls::issue::{DirCa, LeafKind};
use failover_common::tls::{tool_client, PeerRole, TlsFiles};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A client presenting `cert` (none: the CA only) to servers of `ca`.
fn client(ca: &DirCa, cert: Option<&TlsFiles>, expect: PeerRole) -> reqwest::Client {
    let pair = cert.map(|c| (c.cert_file.as_path(), c.key_file.as_path()));
    tool_client(Some(&ca.ca_file()), pair, expect)
        .unwrap()
        .timeout(TIMEOUT)
        .build()
        .unwrap()
}

/// Sends `req` and returns the status and JSON body; `Err` with the whole error chain when no
/// answer came (a refused handshake).
async fn answer(req: reqwest::RequestBuilder) -> Result<(StatusCode, Value), String> {
    match req.send().await {
        Ok(r) => Ok((r.status(), r.json().await.unwrap_or(Value::Null))),
        Err(e) => Err(failover_protocol::describe(&e)),
    }
}

fn message(v: &Value) -> &str {
    v["message"].as_str().unwrap_or_default()
}

/// Starts a three-node TLS cluster in `dir` with its CA in `dir/pki`, and waits for a leader.
async fn tls_cluster(dir: &std::path::Path) -> (DirCa, Cluster) {
    let ca = DirCa::create(&dir.join("pki"), "test cluster CA", 1).unwrap();
    let mut cluster = Cluster::with_tls(dir, 3, &ca, |_, _| {});
    cluster.start_all();
    let http = client(&ca, None, PeerRole::Node);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = answer(
            http.get(format!("{}/v1/status", cluster.urls[0]))
                .bearer_auth(ALICE),
        )
        .await;
        if let Ok((StatusCode::OK, v)) = &r {
            if !v["leader_id"].is_null() {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no leader: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (ca, cluster)
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tls_every_credential_must_name_the_same_principal_and_followers_forward() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _cluster) = tls_cluster(dir.path()).await;
    let urls = _cluster.urls.clone();
    let alice_cert = ca
        .issue_local("operator-alice", LeafKind::Operator("alice".into()), 1)
        .unwrap();
    let agent_a_cert = ca
        .issue_local("agent-a", LeafKind::Agent("agent-a".into()), 1)
        .unwrap();
    let anonymous = client(&ca, None, PeerRole::Node);
    let alice = client(&ca, Some(&alice_cert), PeerRole::Node);
    let agent_a = client(&ca, Some(&agent_a_cert), PeerRole::Node);

    // Operators: a certificate alone, a token alone, both when they agree; every node
    // answers, followers forwarding the linearizable read on the operator's behalf.
    for url in &urls {
        let (s, v) = answer(alice.get(format!("{url}/v1/audit"))).await.unwrap();
        assert_eq!(s, StatusCode::OK, "{url}: {v}");
    }
    let (s, _) = answer(
        anonymous
            .get(format!("{}/v1/audit", urls[1]))
            .bearer_auth(BOB),
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::OK);
    let (s, v) = answer(alice.get(format!("{}/v1/audit", urls[0])).bearer_auth(BOB))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        message(&v).contains("names operator alice but the token is operator bob's"),
        "{v}"
    );
    let (s, _) = answer(anonymous.get(format!("{}/v1/audit", urls[0])))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Agents: the token needs the agent's certificate.
    let (s, v) = answer(
        anonymous
            .get(format!("{}/v1/authority", urls[0]))
            .bearer_auth(AGENT_A),
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        message(&v).contains("must present its client certificate"),
        "{v}"
    );
    let (s, v) = answer(
        agent_a
            .get(format!("{}/v1/authority", urls[0]))
            .bearer_auth(AGENT_B),
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        message(&v).contains("names agent agent-a but the token is agent agent-b's"),
        "{v}"
    );
    // With both, on every node (a follower forwards the write on the agent's behalf) …
    for url in &urls {
        let (s, v) = answer(
            agent_a
                .post(format!("{url}/v1/agent/register"))
                .bearer_auth(AGENT_A)
                .json(&json!({"agent": "agent-a", "region": "eu", "pubkeys": []})),
        )
        .await
        .unwrap();
        assert_eq!(s, StatusCode::OK, "{url}: {v}");
    }
    // … but never as another agent.
    let (s, v) = answer(
        agent_a
            .post(format!("{}/v1/agent/records", urls[0]))
            .bearer_auth(AGENT_A)
            .json(&json!({"agent": "agent-b", "token": 1, "items": []})),
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    // Plain HTTP on a TLS port gets no answer; the forwarding header from a non-coordinator
    // is refused.
    let plain = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap();
    let http_url = urls[0].replace("https://", "http://");
    assert!(answer(plain.get(format!("{http_url}/health")))
        .await
        .is_err());
    let (s, v) = answer(
        alice
            .get(format!("{}/v1/audit", urls[0]))
            .header("x-failover-on-behalf-of", "operator:bob"),
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("only from a coordinator"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_or_mislabelled_node_certificate_cannot_vote_append_or_join() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cluster) = tls_cluster(dir.path()).await;
    let node1 = cluster.urls[0].clone();
    let rogue = DirCa::create(&dir.path().join("rogue"), "rogue CA", 1).unwrap();
    let vote = |candidate: u64| {
        json!({"vote": {"leader_id": {"term": 1000, "node_id": candidate}, "committed": false},
               "last_log_id": null})
    };
    let append = |leader: u64| {
        json!({"vote": {"leader_id": {"term": 1000, "node_id": leader}, "committed": true},
               "prev_log_id": null, "entries": [], "leader_commit": null})
    };

    // Another CA's node certificate: the handshake fails, nothing reaches the handler. (The
    // client trusts both CAs, so only the server's check of its certificate can fail.)
    let foreign = rogue.issue_local("node-2", LeafKind::Node(2), 1).unwrap();
    let both = dir.path().join("both-cas.pem");
    let pem = |f: std::path::PathBuf| std::fs::read_to_string(f).unwrap();
    std::fs::write(&both, pem(ca.ca_file()) + &pem(rogue.ca_file())).unwrap();
    let foreign = TlsFiles {
        ca_file: both.clone(),
        ..foreign
    };
    let pair = (foreign.cert_file.as_path(), foreign.key_file.as_path());
    let foreign = tool_client(Some(&both), Some(pair), PeerRole::Node)
        .unwrap()
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    let e = answer(foreign.post(format!("{node1}/raft/vote")).json(&vote(2)))
        .await
        .unwrap_err();
    assert!(e.contains("UnknownCA"), "{e}");

    // A node certificate of the CA for a node that is no member.
    let stranger = ca.issue_local("node-9", LeafKind::Node(9), 1).unwrap();
    let stranger = client(&ca, Some(&stranger), PeerRole::Node);
    let (s, v) = answer(stranger.post(format!("{node1}/raft/vote")).json(&vote(9)))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("node 9 is not a member"), "{v}");

    // A member's certificate claiming to be another member, as candidate and as leader.
    let node2 = client(&ca, cluster.configs[1].tls.as_ref(), PeerRole::Node);
    for (path, body) in [("vote", vote(3)), ("append", append(3))] {
        let (s, v) = answer(node2.post(format!("{node1}/raft/{path}")).json(&body))
            .await
            .unwrap();
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {v}");
        assert!(
            message(&v).contains("claims to come from node 3 but the certificate is node 2's"),
            "{path}: {v}"
        );
    }
    // An operator's certificate is no coordinator's.
    let alice = ca
        .issue_local("operator-alice", LeafKind::Operator("alice".into()), 1)
        .unwrap();
    let alice = client(&ca, Some(&alice), PeerRole::Node);
    let (s, v) = answer(alice.post(format!("{node1}/raft/vote")).json(&vote(1)))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    // None of it moved the cluster to term 1000.
    let (_, status) = answer(alice.get(format!("{node1}/v1/status")))
        .await
        .unwrap();
    assert!(status["term"].as_u64().unwrap() < 1000, "{status}");

    // Joining: the leader checks the new node's certificate before anything is sent to it.
    let leader = status["leader_id"].as_u64().unwrap() as usize - 1;
    let leader_url = cluster.urls[leader].clone();
    let listener = |files: TlsFiles, claims: u64| async move {
        let app = axum::Router::new().fallback(move || async move {
            axum::Json(json!({"node_id": claims, "initialized": false, "region": "sa"}))
        });
        let tls = failover_common::tls::Tls::load(&files).unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", l.local_addr().unwrap());
        tokio::spawn(failover_common::serve::serve(
            l,
            app,
            Default::default(),
            Default::default(),
            Some(tls.server_config(failover_common::tls::ClientAuth::Optional)),
            std::future::pending(),
        ));
        url
    };
    let foreign4 = rogue.issue_local("node-4", LeafKind::Node(4), 1).unwrap();
    let mislabelled = ca.issue_local("node-5", LeafKind::Node(5), 1).unwrap();
    for (files, why) in [
        (foreign4, "UnknownIssuer"),
        (mislabelled, "its certificate names node 5"),
    ] {
        let url = listener(files, 4).await;
        let (s, v) = answer(
            alice
                .post(format!("{leader_url}/v1/cluster/learners"))
                .json(&json!({"id": 4, "url": url})),
        )
        .await
        .unwrap();
        assert!(s.is_client_error() || s.is_server_error(), "{s} {v}");
        assert!(message(&v).contains(why), "{why}: {v}");
    }
    let (s, v) = answer(
        alice
            .post(format!("{leader_url}/v1/cluster/learners"))
            .json(&json!({"id": 4, "url": "http://127.0.0.1:9"})),
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).contains("must be https://"), "{v}");
}
