//! Backup and restore (`coordinator::backup`), end to end.
//!
//! A live 3-node cluster in this process (openraft + RocksDB, HTTP on ephemeral ports) gets
//! records and a completed handover; it is backed up online (from a follower: forwarded to the
//! leader, linearizable) and offline; corrupt and truncated backups are refused; the backup is
//! restored with the real `coordinator restore` into a fresh node, which starts as a NEW
//! one-node cluster: fenced, with the slashing history raised to the restore floor (a message
//! that was safe before the restore but is at or below the floor is refused, including for a
//! validator the backup never saw), and signing again only after a new handover, above the
//! floor. Restoring into a non-empty directory, with the old cluster's token, without a usable
//! floor, or with a floor below the chain head is refused.
//!
//! Three scenarios, each on its own live cluster ([`live_cluster`]) so that one failure does
//! not hide the others: taking backups, the refused restores, and a restore with the new
//! cluster it founds.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coordinator::backup::{self, RESTORE_INDEX_GAP};
use coordinator::config::{token_hash, Config};
use coordinator::interchange::Interchange;
use coordinator::slashing::RestoreFloor;
use coordinator::state::StateData;
use failover_common::types::{Pubkey, Root};
use failover_protocol::{RecordItem, Verdict};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{
    attestation as att, block, coordinator_cmd, openapi, serve, verdicts, Api, FakeBeacon,
    NodeConfig, AGENT_A, AGENT_B, ALICE, BOB, GVR,
};

/// The fake chain's wall-clock slot: epoch 31 with 32 slots per epoch.
const HEAD_SLOT: u64 = 1000;
/// Validators imported in bulk before the backup.
const MANY: usize = 6000;

/// A node config: `peers` are (id, url), in region `r<id>`; `token_file` the cluster token.
fn config_text(
    id: u64,
    listen: &str,
    data: &Path,
    token_file: &Path,
    bootstrap: bool,
    peers: &[(u64, String)],
    beacon: &str,
) -> String {
    NodeConfig {
        bootstrap,
        peers: peers
            .iter()
            .map(|(j, u)| (*j, u.clone(), format!("r{j}")))
            .collect(),
        beacon: Some(beacon.to_string()),
        ..NodeConfig::new(id, listen, data, token_file)
    }
    .to_toml()
}

impl Api {
    /// The records' verdicts; the request must succeed.
    async fn verdicts(
        &self,
        url: &str,
        token: &str,
        agent: &str,
        tok: u64,
        items: Vec<RecordItem>,
    ) -> Vec<Verdict> {
        let (s, v) = self.records(url, token, agent, tok, items).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        verdicts(&v)
    }
    /// Requests a handover to `to` (alice) and returns its id.
    async fn request(&self, url: &str, to: &str) -> (u64, Value) {
        let (s, h) = self.handover(url, to, "test").await;
        assert_eq!(s, StatusCode::OK, "{h}");
        (h["id"].as_u64().unwrap(), h)
    }
    /// GET `/v1/backup` on `url` with bearer `token`: the raw response.
    async fn backup(&self, url: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{url}/v1/backup"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

fn pk(b: u8) -> Pubkey {
    Pubkey([b; 48])
}

fn refused(v: &Verdict) -> bool {
    matches!(v, Verdict::Refused(_))
}

/// Runs the `coordinator` binary; returns (success, stdout, stderr).
fn cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = coordinator_cmd();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A live three-node cluster (in-process nodes over real listeners and RocksDB, polling one
/// fake beacon node) holding: two agents with validators 7 and 8, a completed handover to
/// agent-a and one to agent-b with records of both, [`MANY`] imported validators, and an open
/// handover back to agent-a that fences agent-b; with what the tests compare against.
struct Live {
    beacon: FakeBeacon,
    beacon_url: String,
    api: Api,
    old_token: PathBuf,
    urls: Vec<String>,
    nodes: Vec<(usize, std::sync::Arc<coordinator::node::Node>)>,
    cfg_files: Vec<(usize, PathBuf)>,
    leader_id: u64,
    follower: String,
    token_b: u64,
    id3: u64,
    last_write: u64,
    original_export: Value,
}

async fn live_cluster(dir: &Path) -> Live {
    // Six epochs before HEAD_SLOT: each of the two grants below moves the head 3 epochs on
    // for its liveness gate, so the chain is at HEAD_SLOT when the backup is taken.
    let beacon = FakeBeacon::new(0, HEAD_SLOT - 6 * 32);
    let beacon_url = beacon.serve().await;
    let api = Api::strict(Duration::from_secs(15));

    // ---- a live 3-node cluster ---------------------------------------------------------
    let old_token = dir.join("old-cluster.token");
    failover_common::secret_file::write_private(&old_token, "old-cluster-secret").unwrap();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let urls: Vec<String> = listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().unwrap()))
        .collect();
    let peers: Vec<(u64, String)> = (0..3).map(|i| (i as u64 + 1, urls[i].clone())).collect();
    let mut cfg_files = Vec::new();
    let mut nodes = Vec::new();
    // Followers first, so the bootstrap node finds no initialised peer and founds the cluster.
    let mut ordered: Vec<(usize, tokio::net::TcpListener)> =
        listeners.into_iter().enumerate().collect();
    ordered.rotate_left(1);
    for (i, l) in ordered {
        let text = config_text(
            i as u64 + 1,
            &l.local_addr().unwrap().to_string(),
            &dir.join(format!("node{}", i + 1)),
            &old_token,
            i == 0,
            &peers,
            &beacon_url,
        );
        let path = dir.join(format!("node{}.toml", i + 1));
        std::fs::write(&path, &text).unwrap();
        cfg_files.push((i, path));
        let cfg = Config::from_toml(&text).unwrap();
        cfg.validate().unwrap();
        nodes.push((i, serve(cfg, l).await));
    }
    nodes.sort_by_key(|(i, _)| *i);
    cfg_files.sort_by_key(|(i, _)| *i);
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes.iter().any(|(_, n)| n.leader().is_none()) {
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader_id = nodes[0].1.leader().unwrap().0;
    let follower = urls[(0..3).find(|i| *i as u64 + 1 != leader_id).unwrap()].clone();

    // ---- records and a completed handover ----------------------------------------------
    for (agent, tok) in [("agent-a", AGENT_A), ("agent-b", AGENT_B)] {
        let (st, v) = api.register(&follower, tok, agent, &[pk(7), pk(8)]).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (id1, _) = api.request(&follower, "agent-a").await;
    let token_a = api.clear_and_approve(&follower, id1, &beacon, 3).await;
    let vs = api
        .verdicts(
            &follower,
            AGENT_A,
            "agent-a",
            token_a,
            vec![att(7, 1, 2, 1), att(7, 2, 3, 2), block(7, 70, 3)],
        )
        .await;
    assert_eq!(vs, vec![Verdict::Valid; 3]);
    let (id2, h) = api.request(&follower, "agent-b").await;
    assert_eq!(h["required_epoch"], 3);
    beacon.finalize(3);
    let token_b = api.clear_and_approve(&follower, id2, &beacon, 3).await;
    assert_eq!(
        beacon.head_slot.load(std::sync::atomic::Ordering::SeqCst),
        HEAD_SLOT
    );
    assert!(token_b > token_a);
    let (st, v) = api
        .records(
            &follower,
            AGENT_B,
            "agent-b",
            token_b,
            vec![att(7, 3, 4, 4), att(7, 4, 5, 5), block(7, 170, 6)],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let last_write = v["log_index"].as_u64().unwrap();
    // Many validators (imported history), so that the state, and the snapshot a node joining
    // the restored cluster receives, is well over a megabyte.
    let many: Vec<Value> = (0..MANY)
        .map(|i| {
            let mut k = [0u8; 48];
            k[..4].copy_from_slice(&(i as u32 + 1000).to_be_bytes());
            json!({"pubkey": Pubkey(k), "signed_blocks": [{"slot": "10"}],
                "signed_attestations": [{"source_epoch": "1", "target_epoch": "2"}]})
        })
        .collect();
    let doc = json!({"metadata": {"interchange_format_version": "5", "genesis_validators_root": GVR},
        "data": many});
    let (st, v) = api.post(&follower, "/v1/slashing/import", ALICE, doc).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // An open handover at backup time: the restore must abort it.
    let (id3, _) = api.request(&follower, "agent-a").await;
    let (_, original_export) = api.get(&follower, "/v1/slashing/export", ALICE).await;
    Live {
        beacon,
        beacon_url,
        api,
        old_token,
        urls,
        nodes,
        cfg_files,
        leader_id,
        follower,
        token_b,
        id3,
        last_write,
        original_export,
    }
}

/// Takes a backup online with the CLI through `follower`, into `DIR/cluster.backup`.
fn cli_backup(dir: &Path, follower: &str) -> PathBuf {
    let file = dir.join("cluster.backup");
    let (ok, out, err) = cli(
        &["backup", "--url", follower, "--out", s(&file)],
        &[("FAILOVER_TOKEN", ALICE)],
    );
    assert!(ok, "{out}{err}");
    file
}

/// Node 4 of a new cluster to restore into: its listener, URL, data directory and the new
/// cluster's token file (another secret than the old cluster's).
struct RestoreTarget {
    dir: PathBuf,
    listener: tokio::net::TcpListener,
    url: String,
    data: PathBuf,
    new_token: PathBuf,
}

impl RestoreTarget {
    async fn new(dir: &Path) -> Self {
        let new_token = dir.join("new-cluster.token");
        failover_common::secret_file::write_private(&new_token, "new-cluster-secret").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Self {
            dir: dir.to_path_buf(),
            listener,
            url,
            data: dir.join("node4"),
            new_token,
        }
    }

    /// Writes `DIR/name`: node 4's bootstrap configuration with `data`, `token` and `beacon`.
    fn config(&self, name: &str, data: &Path, token: &Path, beacon: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(
            &p,
            config_text(
                4,
                &self.url["http://".len()..],
                data,
                token,
                true,
                &[(4, self.url.clone())],
                beacon,
            ),
        )
        .unwrap();
        p
    }
}

/// A truncated and a corrupted copy of the backup `file`, next to it.
fn damaged_copies(dir: &Path, file: &Path) -> (PathBuf, PathBuf) {
    let good = std::fs::read(file).unwrap();
    let truncated = dir.join("truncated.backup");
    std::fs::write(&truncated, &good[..good.len() * 2 / 3]).unwrap();
    let corrupt = dir.join("corrupt.backup");
    let mut c = good.clone();
    let i = c.len() / 2;
    c[i] = if c[i] == b'1' { b'2' } else { b'1' };
    std::fs::write(&corrupt, &c).unwrap();
    (truncated, corrupt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_through_a_follower_the_cli_or_offline_is_consistent_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Live {
        beacon: _beacon,
        beacon_url: _beacon_url,
        api,
        old_token: _old_token,
        urls: _urls,
        nodes: _nodes,
        cfg_files,
        leader_id,
        follower,
        token_b,
        id3,
        last_write,
        original_export: _original_export,
    } = live_cluster(dir).await;
    // ---- online backup through a follower (forwarded to the leader) -------------------
    let r = api.backup(&follower, ALICE).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        backup::CONTENT_TYPE
    );
    let bytes = r.bytes().await.unwrap();
    let b = backup::decode(&bytes).unwrap();
    assert_eq!(b.header.genesis_validators_root.to_string(), GVR);
    assert_eq!(b.header.format_version, backup::FORMAT_VERSION);
    assert_eq!(b.header.source_node_id, leader_id, "served by the leader");
    assert_eq!(
        b.header.source_cluster_token_sha256,
        token_hash("old-cluster-secret")
    );
    let last_applied = b.header.last_applied.unwrap().index;
    assert!(
        last_applied > last_write,
        "the backup misses committed writes: {last_applied} <= {last_write}"
    );
    // The open handover fenced agent-b in the old cluster.
    assert_eq!(b.state.authority.holder, None);
    assert_eq!(b.state.authority.token, token_b);
    assert!(b.state.handovers[&id3].state.is_open());
    assert_eq!(b.state.handovers[&id3].from.as_deref(), Some("agent-b"));
    // Agents cannot take backups.
    let r = api.backup(&follower, AGENT_A).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The CLI, online, through the follower.
    let file = dir.join("cluster.backup");
    let (ok, out, err) = cli(
        &["backup", "--url", &follower, "--out", s(&file)],
        &[("FAILOVER_TOKEN", ALICE)],
    );
    assert!(ok, "{out}{err}");
    let from_cli = backup::read_file(&file).unwrap();
    assert!(from_cli.header.last_applied >= b.header.last_applied);
    assert_eq!(from_cli.state.validators, b.state.validators);
    // An existing file is not overwritten.
    let (ok, _, err) = cli(
        &["backup", "--url", &follower, "--out", s(&file)],
        &[("FAILOVER_TOKEN", ALICE)],
    );
    assert!(!ok && err.contains("exists"), "{err}");
    // Offline, from a node's data directory (opened read-only).
    let offline = dir.join("offline.backup");
    let (ok, out, err) = cli(
        &[
            "backup",
            "--config",
            s(&cfg_files[2].1),
            "--out",
            s(&offline),
        ],
        &[],
    );
    assert!(ok, "{out}{err}");
    let off = backup::read_file(&offline).unwrap();
    assert_eq!(off.header.source_node_id, 3);
    assert_eq!(off.state.validators.len(), 1 + MANY);
    let (ok, out, err) = cli(&["verify-backup", "--backup", s(&file)], &[]);
    assert!(ok && out.contains("\"valid\": true"), "{out}{err}");

    // ---- corrupt and truncated backups are refused ------------------------------------
    let (truncated, corrupt) = damaged_copies(dir, &file);
    for (f, what) in [(&truncated, "truncated"), (&corrupt, "corrupt")] {
        let (ok, _, err) = cli(&["verify-backup", "--backup", s(f)], &[]);
        assert!(!ok && err.contains(what), "{what}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_refuses_damaged_backups_the_old_token_no_floor_and_a_busy_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Live {
        beacon: _beacon,
        beacon_url,
        api: _api,
        old_token,
        urls: _urls,
        nodes: _nodes,
        cfg_files: _cfg_files,
        leader_id: _leader_id,
        follower,
        token_b: _token_b,
        id3: _id3,
        last_write: _last_write,
        original_export: _original_export,
    } = live_cluster(dir).await;
    let file = cli_backup(dir, &follower);
    let (truncated, corrupt) = damaged_copies(dir, &file);

    // ---- restore into a fresh node ------------------------------------------------------
    let target = RestoreTarget::new(dir).await;
    let (new_token, data4) = (target.new_token.clone(), target.data.clone());
    let write_cfg = |name: &str, data: &Path, token: &Path, beacon: &str| {
        target.config(name, data, token, beacon)
    };
    let cfg4 = write_cfg("node4.toml", &data4, &new_token, &beacon_url);

    // Refusals first; none of them writes anything.
    for (f, what) in [(&truncated, "truncated"), (&corrupt, "corrupt")] {
        let (ok, _, err) = cli(&["restore", "--backup", s(f), "--config", s(&cfg4)], &[]);
        assert!(!ok && err.contains(what), "{what}: {err}");
    }
    let same_token = write_cfg("same-token.toml", &data4, &old_token, &beacon_url);
    let (ok, _, err) = cli(
        &["restore", "--backup", s(&file), "--config", s(&same_token)],
        &[],
    );
    assert!(!ok && err.contains("cluster token"), "{err}");
    let dead_beacon = write_cfg("dead-beacon.toml", &data4, &new_token, "http://127.0.0.1:9");
    let (ok, _, err) = cli(
        &["restore", "--backup", s(&file), "--config", s(&dead_beacon)],
        &[],
    );
    assert!(
        !ok && err.contains("cannot choose a restore floor"),
        "{err}"
    );
    let (ok, _, err) = cli(
        &[
            "restore",
            "--backup",
            s(&file),
            "--config",
            s(&cfg4),
            "--floor-epoch",
            "20",
        ],
        &[],
    );
    assert!(
        !ok && err.contains("below the chain's current epoch 31"),
        "{err}"
    );
    assert!(
        !data4.exists(),
        "a refused restore wrote {}",
        data4.display()
    );
    let busy = dir.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("something"), "x").unwrap();
    let busy_cfg = write_cfg("busy.toml", &busy, &new_token, &beacon_url);
    let (ok, _, err) = cli(
        &["restore", "--backup", s(&file), "--config", s(&busy_cfg)],
        &[],
    );
    assert!(!ok && err.contains("not empty"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_makes_a_fenced_floored_new_cluster_that_grows_by_membership() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Live {
        beacon,
        beacon_url,
        api,
        old_token: _old_token,
        urls,
        nodes,
        cfg_files: _cfg_files,
        leader_id: _leader_id,
        follower,
        token_b,
        id3,
        last_write: _last_write,
        original_export,
    } = live_cluster(dir).await;
    let file = cli_backup(dir, &follower);
    let from_cli = backup::read_file(&file).unwrap();

    // ---- restore into a fresh node ------------------------------------------------------
    let target = RestoreTarget::new(dir).await;
    let (new_token, url4, data4) = (
        target.new_token.clone(),
        target.url.clone(),
        target.data.clone(),
    );
    let write_cfg = |name: &str, data: &Path, token: &Path, beacon: &str| {
        target.config(name, data, token, beacon)
    };
    let cfg4 = write_cfg("node4.toml", &data4, &new_token, &beacon_url);

    // The restore: floor = beacon wall-clock epoch 31 + margin 1.
    let (ok, out, err) = cli(
        &[
            "restore",
            "--backup",
            s(&file),
            "--config",
            s(&cfg4),
            "--operator",
            "carol",
        ],
        &[],
    );
    assert!(ok, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let floor = RestoreFloor::at_epoch(32, 32);
    assert_eq!(report["floor"]["epoch"], 32, "{report}");
    assert_eq!(report["floor"]["slot"], floor.slot.0);
    assert_eq!(report["aborted_handovers"], json!([id3]));
    let base = from_cli.header.last_applied.unwrap().index + RESTORE_INDEX_GAP;
    assert_eq!(report["log_index"], base);
    // Restoring again into the now non-empty directory is refused.
    let (ok, _, err) = cli(
        &["restore", "--backup", s(&file), "--config", s(&cfg4)],
        &[],
    );
    assert!(!ok && err.contains("not empty"), "{err}");

    // ---- the restored node: a new one-node cluster -------------------------------------
    let text = std::fs::read_to_string(&cfg4).unwrap();
    let node4 = serve(Config::from_toml(&text).unwrap(), target.listener).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while node4.leader().is_none() {
        assert!(
            Instant::now() < deadline,
            "the restored node elected no leader"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, status) = api.get(&url4, "/v1/status", ALICE).await;
    assert_eq!(st, StatusCode::OK, "{status}");
    assert!(
        status["holder"].is_null(),
        "authority must be fenced: {status}"
    );
    assert_eq!(status["token"], token_b, "the token value is kept");
    assert!(status["applied_index"].as_u64().unwrap() >= base);
    let members: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(members, vec![4], "a new one-node cluster");
    let hs = status["handovers"].as_array().unwrap();
    assert!(
        hs.iter()
            .all(|h| h["state"] == "completed" || h["state"] == "aborted"),
        "{status}"
    );
    let (_, audit) = api.get(&url4, "/v1/audit", ALICE).await;
    let restore_entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "cluster.restore")
        .expect("audit entry cluster.restore");
    assert_eq!(restore_entry["operator"], "carol");

    // The same slashing-protection export, apart from the raised floor: exactly the backup's
    // histories with the floor applied …
    let (st, export) = api.get(&url4, "/v1/slashing/export", ALICE).await;
    assert_eq!(st, StatusCode::OK, "{export}");
    let mut expected = StateData {
        validators: from_cli.state.validators.clone(),
        ..Default::default()
    };
    for h in expected.validators.values_mut() {
        h.raise_floor(floor);
    }
    let gvr: Root = GVR.parse().unwrap();
    assert_eq!(
        export,
        serde_json::to_value(expected.export_interchange(gvr, None)).unwrap()
    );
    // … which refuses, as a new signature with another signing root, every message the
    // original export holds (and everything else at or below the floor).
    let original: Interchange = serde_json::from_value(original_export).unwrap();
    let other = Root([0xee; 32]);
    let mut checked = 0;
    for v in &original.data {
        let h = &expected.validators[&v.pubkey];
        for b in &v.signed_blocks {
            assert!(h.check_block(b.slot, &other).is_err(), "block {}", b.slot);
            checked += 1;
        }
        for a in &v.signed_attestations {
            let r = h.check_attestation(a.source_epoch, a.target_epoch, &other);
            assert!(r.is_err(), "{a:?}");
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked}");

    // Fenced: the old holder's token is refused.
    let (st, v) = api
        .records(&url4, AGENT_B, "agent-b", token_b, vec![att(7, 5, 6, 9)])
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "not_holder");
    assert!(v["holder"].is_null());

    // A new grant is a normal handover; it waits for finality of the floor epoch.
    let (id4, h) = api.request(&url4, "agent-b").await;
    assert_eq!(h["required_epoch"], 32, "{h}");
    assert_eq!(h["state"], "awaiting_finality");
    let (st, _) = api.approve_as(&url4, id4, BOB).await;
    assert_eq!(st, StatusCode::CONFLICT);
    beacon.finalize(32);
    // Its liveness window starts after the old holder's floor epoch 32 + 1: epochs 34 and 35,
    // complete once the head is at 36.
    let token_new = api.clear_and_approve(&url4, id4, &beacon, 5).await;
    assert!(
        token_new > base && token_new > token_b,
        "tokens keep growing across the restore: {token_new}"
    );

    // Safe before the restore, at or below the floor now: refused. The validator the backup
    // never saw (8) is held to the floor too.
    let vs = api
        .verdicts(
            &url4,
            AGENT_B,
            "agent-b",
            token_new,
            vec![
                att(7, 5, 6, 9),
                att(7, 31, 32, 9),
                att(7, 20, 33, 9),
                block(7, 171, 9),
                block(7, floor.slot.0, 9),
                att(8, 20, 21, 9),
                block(8, 900, 9),
            ],
        )
        .await;
    assert!(vs.iter().all(refused), "{vs:?}");
    // Above the floor: accepted.
    let vs = api
        .verdicts(
            &url4,
            AGENT_B,
            "agent-b",
            token_new,
            vec![
                att(7, 32, 33, 9),
                block(7, floor.slot.0 + 1, 9),
                att(8, 32, 33, 9),
            ],
        )
        .await;
    assert_eq!(vs, vec![Verdict::Valid; 3]);

    // The new cluster grows by membership change: node 5 (empty store) joins as a learner,
    // receives the seeded snapshot (the log begins after it) and becomes a voter.
    let l5 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url5 = format!("http://{}", l5.local_addr().unwrap());
    let text5 = config_text(
        5,
        &url5["http://".len()..],
        &dir.join("node5"),
        &new_token,
        false,
        &[(4, url4.clone()), (5, url5.clone())],
        &beacon_url,
    );
    let node5 = serve(Config::from_toml(&text5).unwrap(), l5).await;
    let (st, v) = api
        .post(
            &url4,
            "/v1/cluster/learners",
            ALICE,
            json!({"id": 5, "url": url5, "catch_up_timeout_ms": 20000}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = api
        .post(&url4, "/v1/cluster/voters", ALICE, json!({"promote": [5]}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (a4, d4) = {
            let s4 = node4.state.read().unwrap();
            (s4.last_applied, s4.data.clone())
        };
        let (a5, d5) = {
            let s5 = node5.state.read().unwrap();
            (s5.last_applied, s5.data.clone())
        };
        if a5 == a4 && d5 == d4 {
            assert_eq!(d5.restore.as_ref().unwrap().floor, floor);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 5 never caught up: {a5:?} vs {a4:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The chain is at epoch 34 or later (records more than two epochs ahead are refused).
    beacon
        .head_slot
        .fetch_max(34 * 32, std::sync::atomic::Ordering::SeqCst);
    while node5.chain_clock.current_epoch(32) < Some(34) {
        assert!(
            Instant::now() < deadline,
            "node 5 never saw the chain move on"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let vs = api
        .verdicts(
            &url5,
            AGENT_B,
            "agent-b",
            token_new,
            vec![att(7, 33, 34, 9), att(8, 31, 32, 9)],
        )
        .await;
    assert_eq!(vs[0], Verdict::Valid);
    assert!(refused(&vs[1]));

    // The old cluster is untouched by all this.
    let (_, st_old) = api.get(&urls[0], "/v1/status", ALICE).await;
    assert_eq!(
        st_old["holder"],
        Value::Null,
        "handover {id3} fenced agent-b there"
    );
    for (_, n) in &nodes {
        n.raft.shutdown().await.ok();
    }
    node5.raft.shutdown().await.ok();
    node4.raft.shutdown().await.ok();
}

#[test]
fn openapi_document_describes_the_backup_route() {
    let doc = openapi();
    let route = &doc["paths"]["/v1/backup"]["get"];
    assert!(route.is_mapping(), "OpenAPI document lacks GET /v1/backup");
    assert!(route["responses"]["200"]["content"]
        .as_mapping()
        .unwrap()
        .contains_key(backup::CONTENT_TYPE));
}
