//! Raft traffic survives large batches and a lagging follower (hostile-input issue, item 6).
//!
//! A follower is stopped (SIGSTOP) while 20,480 records commit in batches of 1,024, then
//! resumed. The leader's catch-up AppendEntries would be about 5 MB of JSON: more than axum's
//! default body limit that `/raft/append` had (every attempt failed with 413 and was resent
//! unchanged, for ever), and more than this test's `raft.max_append_bytes` of 1 MiB, so the
//! leader must split it (openraft's `PayloadTooLarge` with an entries hint). The follower must
//! catch up with the leader's log.

mod support;

use std::time::{Duration, Instant};

use failover_common::types::{Pubkey, Root};
use failover_protocol::{RecordItem, Verdict};
use reqwest::StatusCode;
use support::{verdicts, Api, Cluster, AGENT_A, ALICE};

fn pubkey(i: u32) -> Pubkey {
    let mut b = [0u8; 48];
    b[..4].copy_from_slice(&i.to_be_bytes());
    b[47] = 1;
    Pubkey(b)
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on our own child process with a valid signal number.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stopped_during_20000_records_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(tmp.path(), 3, |_, c| {
        c.raft.push_str("max_append_bytes = 1048576\n");
    });
    cluster.start_all();
    let api = Api::new(Duration::from_secs(30));
    let urls = cluster.urls.clone();
    let status = api
        .wait_answer(
            &urls,
            "/v1/status",
            |v| !v["leader_id"].is_null(),
            "no leader",
        )
        .await;
    let leader = status["leader_id"].as_u64().unwrap() as usize - 1;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let lurl = urls[leader].clone();

    let keys: Vec<Pubkey> = (0..1024).map(pubkey).collect();
    let (s, v) = api.register(&lurl, AGENT_A, "agent-a", &keys).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = api.grant_without_beacon(&lurl, "agent-a").await;

    signal(cluster.pid(follower), libc::SIGSTOP);
    for target in 1..=20u64 {
        let items: Vec<RecordItem> = keys
            .iter()
            .map(|pk| RecordItem::Attestation {
                pubkey: *pk,
                source_epoch: target - 1,
                target_epoch: target,
                signing_root: Root([target as u8; 32]),
            })
            .collect();
        let (s, v) = api.records(&lurl, AGENT_A, "agent-a", token, items).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(verdicts(&v).iter().all(|v| *v == Verdict::Valid));
    }
    let (_, st) = api.get(&lurl, "/v1/status", ALICE).await;
    let last = st["last_log_index"].as_u64().unwrap();
    signal(cluster.pid(follower), libc::SIGCONT);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, st) = api.get(&urls[follower], "/v1/status", ALICE).await;
        let applied = st["applied_index"].as_u64().unwrap_or(0);
        if s == StatusCode::OK && applied >= last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower is stuck at applied index {applied} of {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(cluster.log_path(leader)).unwrap();
    // (Searching for "413" alone matched random ports and timestamps.)
    assert!(
        !log.contains("AppendEntries refused by the peer as too large"),
        "no AppendEntries was refused as too large"
    );
}
