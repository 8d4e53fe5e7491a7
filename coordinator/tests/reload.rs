//! Operator onboarding, offboarding and token rotation without an outage (`access` module):
//! a real `coordinator run` process reloads `[[operators]]` and `[[agents]]` on SIGHUP. A new
//! operator can act at once, a removed one gets 401, a removed agent too, and a bad file
//! keeps the list in force (and says why in the log). Also `coordinator reload`,
//! `hash-token` and `gen-token`.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use coordinator::config::token_hash;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{coordinator_cmd as coordinator, Cluster, NodeConfig};

/// `cfg` with the given operators and agents, as (name, clear token), one approval, no
/// two-person rule and fast elections.
fn with_access(
    cfg: &NodeConfig,
    operators: &[(&'static str, &'static str)],
    agents: &[(&'static str, &'static str)],
) -> NodeConfig {
    NodeConfig {
        operators: operators.to_vec(),
        agents: agents.to_vec(),
        raft: "heartbeat_ms = 50\nelection_min_ms = 300\nelection_max_ms = 600\n".to_string(),
        extra: "[handover]\napprovals_required = 1\ntwo_person_rule = false\nbreak_glass_approvals = 1\n"
            .to_string(),
        ..cfg.clone()
    }
}

async fn call(url: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> StatusCode {
    let c = reqwest::Client::new();
    let mut rb = match method {
        "GET" => c.get(format!("{url}{path}")),
        _ => c.post(format!("{url}{path}")),
    }
    .bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    rb.send().await.unwrap().status()
}

/// Registers `agent` (region eu, no pubkeys) with bearer `token`.
async fn register(url: &str, token: &str, agent: &str) -> StatusCode {
    let body = json!({"agent": agent, "region": "eu", "pubkeys": []});
    call(url, "POST", "/v1/agent/register", token, Some(body)).await
}

async fn status_of(url: &str, token: &str) -> StatusCode {
    call(url, "GET", "/v1/status", token, None).await
}

/// Waits until `token` gets `want` on `/v1/status`.
async fn wait_for(url: &str, token: &str, want: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if status_of(url, token).await == want {
            return;
        }
        assert!(Instant::now() < deadline, "{token} never got {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn wait_log(log: &Path, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "log never said {needle:?} {count} time(s):\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `coordinator reload --config cfg`, signalling process `pid` if given.
fn reload(cfg: &Path, pid: Option<u32>) -> Output {
    let mut c = coordinator();
    c.args(["reload", "--config"]).arg(cfg);
    if let Some(pid) = pid {
        c.args(["--pid", &pid.to_string()]);
    }
    c.output().unwrap()
}

/// Sends SIGHUP to process `pid`.
fn sighup(pid: u32) {
    // SAFETY: kill(2) on our own child with a valid signal number.
    let rc = unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    assert_eq!(rc, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_operators_and_agents_and_a_bad_file_keeps_the_old_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Cluster::new(tmp.path(), 1, |_, c| {
        *c = with_access(
            c,
            &[("alice", "alice-t"), ("bob", "bob-t")],
            &[("agent-a", "agent-a-t"), ("agent-b", "agent-b-t")],
        );
    });
    node.start(0);
    let url = node.urls[0].clone();
    let cfg = node.config_path(0);
    let log = node.log_path(0);
    let write_cfg = |c: &NodeConfig| std::fs::write(&cfg, c.to_toml()).unwrap();
    wait_for(&url, "alice-t", StatusCode::OK).await;
    assert_eq!(status_of(&url, "carol-t").await, StatusCode::UNAUTHORIZED);
    assert_eq!(register(&url, "agent-b-t", "agent-b").await, StatusCode::OK);

    // Onboard carol, offboard bob, remove agent-b, rotate agent-a's token.
    write_cfg(&with_access(
        &node.configs[0],
        &[("alice", "alice-t"), ("carol", "carol-t")],
        &[("agent-a", "agent-a-new")],
    ));
    // `coordinator reload` checks the file and sends the signal.
    let out = reload(&cfg, Some(node.pid(0)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("carol"));
    wait_for(&url, "carol-t", StatusCode::OK).await;
    wait_log(&log, "access reloaded", 1);
    assert_eq!(status_of(&url, "bob-t").await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&url, "alice-t").await, StatusCode::OK);
    // carol can act: she requests a handover (audited under her name).
    assert_eq!(
        call(
            &url,
            "POST",
            "/v1/handovers",
            "carol-t",
            Some(json!({"to": "agent-b", "reason": "onboarding test"}))
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        register(&url, "agent-b-t", "agent-b").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        register(&url, "agent-a-t", "agent-a").await,
        StatusCode::UNAUTHORIZED,
        "a rotated token's old value is refused"
    );
    assert_eq!(
        register(&url, "agent-a-new", "agent-a").await,
        StatusCode::OK
    );
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log_text.contains(&token_hash("carol-t")) && !log_text.contains("carol-t\""),
        "tokens must not be logged"
    );

    // A bad file: dave would act under alice's token.
    write_cfg(&with_access(
        &node.configs[0],
        &[("alice", "alice-t"), ("dave", "alice-t")],
        &[("agent-a", "agent-a-new")],
    ));
    let out = reload(&cfg, None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("same token"), "{err}");
    sighup(node.pid(0));
    wait_log(&log, "access reload refused", 1);
    assert_eq!(
        status_of(&url, "carol-t").await,
        StatusCode::OK,
        "old list kept"
    );
    assert_eq!(status_of(&url, "alice-t").await, StatusCode::OK);
    // A file that does not even parse.
    std::fs::write(&cfg, "node_id = 1\n[[operators]]\nname = \"eve\"\n").unwrap();
    sighup(node.pid(0));
    wait_log(&log, "access reload refused", 2);
    assert_eq!(status_of(&url, "carol-t").await, StatusCode::OK);
    assert_eq!(status_of(&url, "bob-t").await, StatusCode::UNAUTHORIZED);
    // A file for another node is refused too.
    let mut other = with_access(&node.configs[0], &[("zed", "zed-t")], &[]);
    other.id = 2;
    other.peers[0].0 = 2;
    write_cfg(&other);
    sighup(node.pid(0));
    wait_log(&log, "access reload refused", 3);
    assert_eq!(status_of(&url, "zed-t").await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&url, "carol-t").await, StatusCode::OK);
    drop(node);
}

#[test]
fn hash_token_and_gen_token() {
    let mut c = coordinator()
        .arg("hash-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        token_hash("s3cret")
    );

    let out = coordinator().arg("gen-token").output().unwrap();
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&token_hash(&token)), "{err}");
    let again = coordinator().arg("gen-token").output().unwrap();
    assert_ne!(String::from_utf8_lossy(&again.stdout).trim(), token);
}
