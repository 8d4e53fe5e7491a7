//! A voter that lost its disk cannot help elect a leader that lacks committed records
//! (hostile-input issue, item 5; DESIGN.md I6; the `join` module).
//!
//! Three real nodes. A record is committed by nodes 1 and 2 while node 3 is down. Node 2's
//! data directory is wiped and node 2 restarts empty; node 1 (the other holder of the record)
//! is killed; node 3, which never saw the record, comes back. Nodes 2 and 3 form a majority,
//! but node 2 must not vote for node 3: no leader may be elected without the record. When
//! node 1 returns, a leader is elected, the record is there, node 2 catches up and votes
//! again.

mod support;

use std::time::{Duration, Instant};

use failover_common::types::Pubkey;
use reqwest::StatusCode;
use support::{attestation, verdicts, Api, Cluster, AGENT_A, ALICE};

async fn leader_among(api: &Api, urls: &[&String]) -> Option<u64> {
    for url in urls {
        let (s, v) = api.get(url, "/v1/status", ALICE).await;
        if s == StatusCode::OK {
            if let Some(l) = v["leader_id"].as_u64() {
                return Some(l);
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_voter_does_not_elect_a_leader_that_lost_a_committed_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(tmp.path(), 3, |_, _| {});
    cluster.start_all();
    let api = Api::new(Duration::from_secs(5));
    let urls = cluster.urls.clone();
    let wait = |what: &'static str| {
        let api = &api;
        let urls = &urls;
        async move {
            api.wait_answer(urls, "/v1/status", |v| !v["leader_id"].is_null(), what)
                .await
        }
    };
    wait("no leader at start").await;

    let v7 = Pubkey([7; 48]);
    let (s, v) = api.register(&urls[0], AGENT_A, "agent-a", &[v7]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = api.grant_without_beacon(&urls[0], "agent-a").await;

    // Node 3 misses the record.
    cluster.kill(2);
    let (s, v) = api
        .records(
            &urls[0],
            AGENT_A,
            "agent-a",
            token,
            vec![attestation(7, 4, 5, 1)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(verdicts(&v)[0].allows_signing());

    // Node 2 loses its disk; node 1 goes away; node 2 comes back empty, and node 3 too.
    cluster.kill(1);
    std::fs::remove_dir_all(tmp.path().join("node2")).unwrap();
    cluster.kill(0);
    cluster.start(1);
    cluster.start(2);

    // Nodes 2 and 3 are a majority, but node 3 lacks the record and node 2 must not vote
    // for it: no leader for well over a few election timeouts.
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        let leader = leader_among(&api, &[&urls[1], &urls[2]]).await;
        assert!(
            leader.is_none() || leader == Some(1),
            "node {leader:?} was elected by the wiped node without the committed record"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let log = std::fs::read_to_string(cluster.log_path(1)).unwrap();
    assert!(
        log.contains("grants no vote"),
        "the wiped node says why it does not vote:\n{log}"
    );

    // Node 1 returns: a leader with the record, and the wiped node catches up.
    cluster.start(0);
    wait("no leader after node 1 returned").await;
    let exported = api
        .wait_answer(
            &urls,
            "/v1/slashing/export",
            |v| support::exported_targets(v).contains(&5),
            "the committed record is not in the export",
        )
        .await;
    assert!(support::exported_targets(&exported).contains(&5));
    let identity = tmp.path().join("node2").join(coordinator::join::FILE_NAME);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&identity).unwrap_or_default();
        if text.starts_with("joined") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 never caught up: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
