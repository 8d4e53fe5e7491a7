//! Replacing a coordinator node on real `coordinator` processes (runbooks/replace-node.md):
//! three nodes with state, a fourth started with an empty store and `bootstrap = false`,
//! added as a learner, promoted, the bootstrap node removed and stopped, then the leader
//! removed and stopped; the cluster keeps committing, the new node holds the replicated state,
//! `members` reflects each step, and the refusals are clear.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use failover_common::types::Pubkey;
use failover_protocol::{RecordItem, Verdict};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{
    assert_openapi_paths, attestation, free_port, verdicts, Api, Cluster, AGENT_A, ALICE,
    CLUSTER_SECRET,
};

/// Four nodes, 1–3 running. Nodes 1–3 form the cluster (node 1 bootstraps it, their configs
/// list three peers); node 4's config lists all four peers, `bootstrap = false`, and its store
/// starts empty. Only agent-a is configured.
fn four_nodes_three_running(dir: &std::path::Path) -> Cluster {
    let mut cluster = Cluster::new(dir, 4, |i, c| {
        if i < 3 {
            c.peers.truncate(3);
        }
        c.agents.truncate(1);
    });
    for i in 0..3 {
        cluster.start(i);
    }
    cluster
}

impl Api {
    /// The leader's members view, asked of `urls` in turn until one answers with a leader.
    async fn members(&self, urls: &[String]) -> Value {
        let known = |v: &Value| v["replication_known"] == true;
        let failure = format!("no leader among {urls:?} in 30 s");
        self.wait_answer(urls, "/v1/cluster/members", known, &failure)
            .await
    }

    /// Records one attestation through `url`, retrying through elections, and returns its
    /// verdict.
    async fn record(&self, url: &str, token: u64, item: RecordItem) -> Verdict {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (s, v) = self
                .records(url, AGENT_A, "agent-a", token, vec![item.clone()])
                .await;
            if s == StatusCode::OK {
                return verdicts(&v)[0].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no write committed through {url} in 30 s: {s} {v}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Asserts that alice's POST of `body` to `path` on `url` is refused with `status` and
    /// error `code`.
    async fn assert_refused(
        &self,
        url: &str,
        path: &str,
        body: Value,
        status: StatusCode,
        code: &str,
    ) {
        let (s, v) = self.post(url, path, ALICE, body).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{v}");
    }
}

/// Validator 7's attestation from `source` to `target`, with signing root `[target; 32]`.
fn att(source: u64, target: u64) -> RecordItem {
    attestation(7, source, target, target as u8)
}

/// [`four_nodes_three_running`] in `dir`, its URLs, and a client with a 90 s timeout.
fn setup(dir: &std::path::Path) -> (Cluster, Vec<String>, Api) {
    let cluster = four_nodes_three_running(dir);
    let urls = cluster.urls.clone();
    (cluster, urls, Api::new(Duration::from_secs(90)))
}

fn ids(members: &Value, role: &str) -> Vec<u64> {
    members[role]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

/// Runs `failoverctl` against `urls`; returns its exit code and standard output.
async fn failoverctl(urls: &[String], args: &[&str]) -> (i32, String) {
    let coordinators = urls.join(",");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(support::failoverctl_bin())
            .args(&args)
            .env("FAILOVER_COORDINATOR", coordinators)
            .env("FAILOVER_TOKEN", ALICE)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_a_node_add_learner_promote_remove_and_remove_the_leader() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut cluster, urls, api) = setup(tmp.path());
    let first = api.members(&urls[..3]).await;
    assert_eq!(ids(&first, "voters"), [1, 2, 3], "{first}");
    assert!(ids(&first, "learners").is_empty());
    assert!(first["commit_index"].as_u64().is_some(), "{first}");

    // State to replicate: an agent, a grant and a record.
    let (s, v) = api
        .register(&urls[0], AGENT_A, "agent-a", &[Pubkey([7; 48])])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = api.grant_without_beacon(&urls[1], "agent-a").await;
    assert_eq!(api.record(&urls[0], token, att(1, 2)).await, Verdict::Valid);

    // Node 4 starts with an empty store and bootstrap = false: it founds no cluster, elects
    // nothing, and waits to be contacted.
    cluster.start(3);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (s, v) = api.get(&urls[3], "/v1/cluster/members", ALICE).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v["leader_id"].is_null(),
        "node 4 must not elect itself: {v}"
    );
    assert!(ids(&v, "voters").is_empty(), "{v}");
    assert_eq!(v["replication_known"], false);

    let leader_url = |m: &Value| urls[m["leader_id"].as_u64().unwrap() as usize - 1].clone();
    let m = api.members(&urls[..3]).await;
    let follower = (1..=3u64)
        .find(|i| Some(*i) != m["leader_id"].as_u64())
        .map(|i| urls[i as usize - 1].clone())
        .unwrap();
    let voters = "/v1/cluster/voters";
    let learners = "/v1/cluster/learners";
    // Add node 4 as a learner through a follower (forwarded to the leader).
    let (s, out) = api
        .post(&follower, learners, ALICE, json!({"id": 4, "url": urls[3]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["action"], "add_learner");
    assert_eq!(out["changed"], true);
    assert_eq!(ids(&out["members"], "voters"), [1, 2, 3], "{out}");
    assert_eq!(ids(&out["members"], "learners"), [4], "{out}");
    let l4 = &out["members"]["learners"][0];
    assert_eq!(l4["url"], urls[3].as_str());
    assert!(l4["lag"].as_u64().unwrap() <= 100, "{out}");
    // Adding it again at the same URL only waits for it: nothing to change.
    let (s, again) = api
        .post(&urls[2], learners, ALICE, json!({"id": 4, "url": urls[3]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["changed"], false);
    // Node 4 holds the replicated state (its own local view).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, st) = api.get(&urls[3], "/v1/status", ALICE).await;
        if s == StatusCode::OK && st["holder"] == "agent-a" && st["validators"] == 1 {
            assert_eq!(st["token"].as_u64(), Some(token));
            break;
        }
        assert!(Instant::now() < deadline, "node 4 did not catch up: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Promote it: four voters, with a warning about the even count.
    let (s, out) = api
        .post(&urls[3], voters, ALICE, json!({"promote": [4]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["changed"], true);
    assert_eq!(ids(&out["members"], "voters"), [1, 2, 3, 4], "{out}");
    assert!(ids(&out["members"], "learners").is_empty());
    assert!(
        out["warnings"][0].as_str().unwrap().contains("4 voters"),
        "{out}"
    );
    let (s, again) = api
        .post(&urls[1], voters, ALICE, json!({"promote": [4]}))
        .await;
    assert_eq!(
        (s, &again["changed"]),
        (StatusCode::OK, &json!(false)),
        "{again}"
    );
    // Nodes whose config does not list node 4 still serve status and metrics.
    let (s, st) = api.get(&urls[1], "/v1/status", ALICE).await;
    assert_eq!(s, StatusCode::OK, "{st}");
    let m4 = st["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == 4)
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(m4["url"], urls[3].as_str(), "{st}");
    assert!(m4["region"].is_null(), "{st}");
    let metrics = reqwest::get(format!("{}/metrics", urls[1])).await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);

    // Remove node 1 (the bootstrap node) completely, then stop it.
    let (code, text) = failoverctl(&urls, &["cluster", "remove", "--id", "1"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("remove: committed at log index"), "{text}");
    cluster.kill(0);
    let live: Vec<String> = urls[1..].to_vec();
    let m = api.members(&live).await;
    assert_eq!(ids(&m, "voters"), [2, 3, 4], "{m}");
    assert!(
        ids(&m, "learners").is_empty(),
        "node 1 must leave completely: {m}"
    );
    assert_eq!(api.record(&urls[3], token, att(2, 3)).await, Verdict::Valid);

    // Remove the leader itself: it steps down after the change; the remaining two elect a new
    // leader and go on committing.
    let m = api.members(&live).await;
    let old_leader = m["leader_id"].as_u64().unwrap();
    let (s, out) = api
        .post(
            &leader_url(&m),
            voters,
            ALICE,
            json!({"remove": [old_leader]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let remaining: Vec<u64> = [2, 3, 4].into_iter().filter(|i| *i != old_leader).collect();
    assert_eq!(ids(&out["members"], "voters"), remaining, "{out}");
    let warnings = out["warnings"].to_string();
    assert!(warnings.contains("was the leader"), "{out}");
    assert!(warnings.contains("tolerates no voter failure"), "{out}");
    cluster.kill(old_leader as usize - 1);
    let live: Vec<String> = remaining
        .iter()
        .map(|i| urls[*i as usize - 1].clone())
        .collect();
    assert_eq!(api.record(&live[0], token, att(3, 4)).await, Verdict::Valid);
    assert_eq!(
        api.record(&live[1], token, att(3, 4)).await,
        Verdict::SameData
    );
    let m = api.members(&live).await;
    assert_eq!(ids(&m, "voters"), remaining, "{m}");
    assert!(remaining.contains(&m["leader_id"].as_u64().unwrap()));
    assert!(m["voters"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["lag"].as_u64().is_some_and(|l| l <= 100)));

    // The CLI agrees, in JSON and as a table; an unknown id is a refusal (exit code 1).
    let (code, text) = failoverctl(&live, &["cluster", "members", "--output", "json"]).await;
    assert_eq!(code, 0, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ids(&v, "voters"), remaining);
    let (code, text) = failoverctl(&live, &["cluster", "members"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("voter"), "{text}");
    let (code, _) = failoverctl(&live, &["cluster", "promote", "--id", "9"]).await;
    assert_eq!(code, 1);

    // Every change is in the audit trail, by operator.
    let actions = api.audit(&live[0], "action", "outcome").await;
    // Node 1 may have been the leader when it was removed: both removals may be `proposed`.
    assert!(
        actions
            .iter()
            .filter(|(a, _)| a == "cluster.remove")
            .count()
            >= 2
    );
    for (action, outcome) in [
        ("cluster.add_learner", "completed"),
        ("cluster.promote", "completed"),
        ("cluster.remove", "proposed: removes the current leader"),
        ("cluster.promote", "refused: unknown_node"),
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, o)| a == action && o.starts_with(outcome)),
            "no {action} {outcome} in {actions:?}"
        );
    }
}

/// A node whose config was copied from the bootstrap node (`bootstrap = true`) finds that its
/// peers already hold a cluster and does not found a second one; it can then be added as a
/// learner like any new node. Removing a learner takes it out completely; `keep_learner`
/// turns a removed voter into a learner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_requests_are_refused_with_clear_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let (_cluster, urls, api) = setup(tmp.path());
    let m = api.members(&urls[..3]).await;
    // Through a follower, so the refusals come back through the forwarding too.
    let follower = (1..=3u64)
        .find(|i| Some(*i) != m["leader_id"].as_u64())
        .map(|i| urls[i as usize - 1].clone())
        .unwrap();
    let voters = "/v1/cluster/voters";
    let learners = "/v1/cluster/learners";
    let (s, v) = api
        .post(&follower, voters, ALICE, json!({"promote": [9]}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["code"], "unknown_node");
    assert!(v["message"].as_str().unwrap().contains("node 9"), "{v}");
    for body in [json!({"promote": [4]}), json!({"remove": [9]})] {
        api.assert_refused(
            &follower,
            voters,
            body,
            StatusCode::NOT_FOUND,
            "unknown_node",
        )
        .await;
    }
    let bad_bodies = [
        format!(r#"{{"id": 4, "url": "{}", "region": "sa"}}"#, urls[3]),
        r#"{"id": 4}"#.to_string(),
        r#"{"id": 4, "url": "ftp://host"}"#.to_string(),
        format!(r#"{{"id": 0, "url": "{}"}}"#, urls[3]),
        "not json".to_string(),
    ];
    for body in &bad_bodies {
        let (s, v) = api.post_raw(&follower, learners, ALICE, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["code"], "bad_request", "{body}: {v}");
    }
    for body in [
        json!({}),
        json!({"promote": [4], "remove": [1]}),
        json!({"promote": [4], "force": true}),
    ] {
        let (s, v) = api.post(&follower, voters, ALICE, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
    let (s, _) = api
        .post(
            &follower,
            learners,
            AGENT_A,
            json!({"id": 4, "url": urls[3]}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api
        .post(
            &follower,
            learners,
            "nobody",
            json!({"id": 4, "url": urls[3]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Nothing answers at a closed port.
    let closed = format!("http://127.0.0.1:{}", free_port());
    for (body, code) in [
        // Node 2's URL does not answer as node 4: the leader never streams its log there.
        (json!({"id": 4, "url": urls[1]}), "wrong_node"),
        (json!({"id": 5, "url": closed}), "node_unreachable"),
        (json!({"id": 2, "url": urls[1]}), "already_member"),
    ] {
        api.assert_refused(&follower, learners, body, StatusCode::CONFLICT, code)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_bootstrap_flag_founds_no_second_cluster_and_learners_can_be_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut cluster, urls, api) = setup(tmp.path());
    api.members(&urls[..3]).await;
    // A Raft RPC names its target: node 2 refuses one meant for node 3.
    let res = api
        .http
        .post(format!("{}/raft/vote", urls[1]))
        .bearer_auth(CLUSTER_SECRET)
        .header(coordinator::network::TARGET_HEADER, "3")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["code"], "wrong_node", "{v}");
    let cfg4 = tmp.path().join("node4.toml");
    let text = std::fs::read_to_string(&cfg4).unwrap();
    std::fs::write(&cfg4, text.replace("bootstrap = false", "bootstrap = true")).unwrap();
    cluster.start(3);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (s, v) = api.get(&urls[3], "/v1/cluster/members", ALICE).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        ids(&v, "voters").is_empty(),
        "node 4 founded a cluster: {v}"
    );
    assert!(v["leader_id"].is_null(), "{v}");

    let (s, out) = api
        .post(
            &urls[0],
            "/v1/cluster/learners",
            ALICE,
            json!({"id": 4, "url": urls[3], "catch_up_timeout_ms": 20000}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(ids(&out["members"], "learners"), [4]);
    let (s, out) = api
        .post(
            &urls[1],
            "/v1/cluster/voters",
            ALICE,
            json!({"remove": [4]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert!(ids(&out["members"], "learners").is_empty(), "{out}");
    assert_eq!(ids(&out["members"], "voters"), [1, 2, 3]);

    let (s, out) = api
        .post(
            &urls[1],
            "/v1/cluster/voters",
            ALICE,
            json!({"remove": [3], "keep_learner": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(ids(&out["members"], "voters"), [1, 2], "{out}");
    assert_eq!(ids(&out["members"], "learners"), [3], "{out}");
}

#[test]
fn openapi_document_describes_the_membership_routes() {
    assert_openapi_paths(&[
        "/v1/cluster/members",
        "/v1/cluster/learners",
        "/v1/cluster/voters",
    ]);
}
