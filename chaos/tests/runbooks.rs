//! Every runbook in `runbooks/` runs against a real lab: its `sh` blocks in order, exactly as
//! written, with the lab's coordinators in `FAILOVER_COORDINATOR` and an operator's token in
//! `FAILOVER_TOKEN` (see `chaos::runbook` for the directives). A runbook whose commands went
//! stale fails here.
//!
//! The runbooks share one lab, in the order of [`ORDER`]; after each one every lost process is
//! brought back and the cluster must have a leader again, and the runbook's own end state is
//! checked ([`check_after`]). A runbook file not listed in [`ORDER`] fails the test.
//!
//! `RUNBOOKS=replace-node.md,backup-restore.md cargo test -p chaos --test runbooks` runs only
//! the runbooks named.
//!
//! It needs every workspace binary (coordinator, signer-agent, failoverctl, beacon-sim) next to
//! the test executable's directory; `cargo test --workspace` builds them first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chaos::lab::{Lab, LabConfig};
use chaos::runbook::{self, Runbook, Step};

/// The runbooks in the order they run against the one lab. Every `*.md` of `runbooks/` except
/// the README must be here.
const ORDER: &[&str] = &[
    "planned-handover.md",
    "region-loss.md",
    "leader-loss.md",
    "quorum-loss.md",
    "break-glass.md",
    "migrate-from-web3signer.md",
    "failover-target-down.md",
    "failover-no-leader.md",
    "failover-quorum-lost.md",
    "failover-follower-behind.md",
    "failover-authority-holder-silent.md",
    "failover-handover-awaiting-approval.md",
    // Starts a signer outside the cluster; the runbook stops it (heal stops it too).
    "doppelganger-detected.md",
    "failover-handover-awaiting-liveness.md",
    "failover-handover-awaiting-finality.md",
    "failover-finality-stalled.md",
    "failover-finality-evidence-behind.md",
    "failover-beacon-node-unusable.md",
    "failover-slashing-refusal.md",
    "failover-coordinator-fail-closed.md",
    "failover-signer-fail-closed.md",
    "failover-keys-not-loaded.md",
    "failover-auth-failures.md",
    // Rotates every coordinator's and the active agent's certificate.
    "failover-tls-cert-expiring-soon.md",
    "operator-onboarding.md",
    // Changes membership for good (node 1 leaves).
    "replace-node.md",
    // Stops the whole lab cluster and restores into a new one: last.
    "backup-restore.md",
];

/// Per-step deadline (seconds); the longest step waits for a handover's finality.
const STEP_TIMEOUT_S: u64 = 180;

fn runbooks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("runbooks")
}

#[test]
fn every_runbook_parses_and_is_scheduled() {
    let books = runbook::load_dir(&runbooks_dir()).unwrap();
    let mut names: Vec<&str> = books.iter().map(|b| b.name.as_str()).collect();
    names.sort();
    let mut order: Vec<&str> = ORDER.to_vec();
    order.sort();
    assert_eq!(
        names, order,
        "runbooks/ and ORDER in chaos/tests/runbooks.rs must list the same files"
    );
    for b in &books {
        assert!(!b.steps.is_empty(), "{} has no `sh` block to run", b.name);
        for st in &b.steps {
            assert!(
                st.hosts.is_empty(),
                "{}:{}: hosts= is for the deployment guide; runbooks run against the lab",
                b.name,
                st.line
            );
        }
    }
}

/// Runs one step: a lab action, or the block in bash with the lab's environment.
async fn run_step(lab: &mut Lab, book: &Runbook, step: &Step, state: &Path) -> Result<String> {
    if let Some(action) = &step.lab_action {
        lab.perform(action)
            .await
            .with_context(|| format!("lab action {action}"))?;
        return Ok(format!("(lab: {action})\n"));
    }
    if step.each_coordinator {
        let mut out = String::new();
        for c in lab.manifest.coordinators.clone() {
            let mut one = step.clone();
            one.each_coordinator = false;
            one.env
                .push(("CONFIG".into(), c.config.display().to_string()));
            out.push_str(&Box::pin(run_step(lab, book, &one, state)).await?);
        }
        return Ok(out);
    }
    let bin_dir = lab
        .manifest
        .binaries
        .failoverctl
        .parent()
        .context("failoverctl has no directory")?
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let op = lab.operator(step.operator).clone();
    // coreutils `timeout` bounds the block (exit 137 after SIGKILL at the deadline).
    let mut cmd = Command::new("timeout");
    cmd.args(["--signal=KILL", &STEP_TIMEOUT_S.to_string(), "bash", "-c"])
        .arg(runbook::wrap(step, state))
        .env("PATH", path)
        .env("FAILOVER_COORDINATOR", lab.coordinator_urls().join(","))
        .env("FAILOVER_TOKEN", &op.token)
        .env(
            "FAILOVER_CA_FILE",
            lab.manifest
                .tls
                .as_ref()
                .map(|t| t.ca_file.clone())
                .unwrap_or_default(),
        )
        .env(
            "CURL_TLS",
            lab.manifest
                .tls
                .as_ref()
                .map(|t| {
                    format!(
                        "--cacert {} --cert {} --key {}",
                        t.ca_file.display(),
                        t.client_cert_file.display(),
                        t.client_key_file.display()
                    )
                })
                .unwrap_or_default(),
        )
        .env("LAB_DIR", &lab.manifest.dir)
        .current_dir(&lab.manifest.dir)
        .stdin(std::process::Stdio::null());
    for c in &lab.manifest.coordinators {
        cmd.env(format!("LAB_COORDINATOR_{}_URL", c.id), &c.url);
        cmd.env(format!("LAB_COORDINATOR_{}_CONFIG", c.id), &c.config);
    }
    for (k, v) in extra_env(lab, &book.name) {
        cmd.env(k, v);
    }
    for (k, v) in &step.env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code().unwrap_or(-1);
    ensure!(
        code == step.expect_exit,
        "{}:{} exited {code} after {:.1} s (expected {}):\n--- block ---\n{}--- output ---\n{text}",
        book.name,
        step.line,
        started.elapsed().as_secs_f64(),
        step.expect_exit,
        step.script
    );
    Ok(text)
}

/// What a runbook tells the operator to fill in for their own deployment, filled in for the
/// lab (the runbook's first block checks it is set).
fn extra_env(lab: &Lab, name: &str) -> Vec<(String, String)> {
    let mut env = vec![("AGENT_URL".to_string(), lab.active_agent().url.clone())];
    if let Some(standby) = lab.standby_agent_id().and_then(|id| lab.agent(&id)) {
        env.push(("STANDBY_URL".to_string(), standby.url.clone()));
    }
    if let Some(b) = lab.manifest.beacon_nodes.first() {
        env.push(("BEACON_URL".to_string(), b.url.clone()));
    }
    env.extend(match name {
        "replace-node.md" => lab
            .manifest
            .coordinators
            .iter()
            .find(|c| c.id == 4)
            .map(|c| vec![("NEW_URL".to_string(), c.url.clone())])
            .unwrap_or_default(),
        "backup-restore.md" => {
            let dir = lab.manifest.dir.join("restore");
            let mut v = vec![(
                "RESTORE_CONFIG".to_string(),
                dir.join("coordinator.toml").display().to_string(),
            )];
            if let Ok(url) = std::fs::read_to_string(dir.join("url")) {
                v.push(("RESTORE_URL".to_string(), url));
            }
            v
        }
        "failover-tls-cert-expiring-soon.md" => vec![(
            "AGENT_CONFIG".to_string(),
            lab.active_agent().config.display().to_string(),
        )],
        _ => Vec::new(),
    });
    env
}

/// Brings back every coordinator and agent a runbook's setup took away, and waits for a leader.
async fn heal(lab: &mut Lab) -> Result<()> {
    lab.perform("resume-finality").await?;
    lab.perform("stop-rogue-signer").await?;
    lab.perform("resume-liveness").await?;
    lab.perform("start-coordinator:down").await?;
    for a in lab.manifest.agents.clone() {
        if let Some(p) = lab.proc_mut(&a.id) {
            p.send(libc::SIGCONT);
            if p.try_exited().is_some() {
                lab.perform(&format!("start-agent:{}", a.id)).await?;
            }
        }
    }
    lab.wait_status("a leader after the runbook", Duration::from_secs(30), |s| {
        s.leader_id.is_some()
    })
    .await
}

/// Hands authority back to `agent-eu` (through the lab's own failoverctl wrapper, outside any
/// runbook) when a runbook moved it, so every runbook starts from the same roles.
async fn reset_roles(lab: &Lab) -> Result<()> {
    let active = lab.active_agent().id.clone();
    let holder = std::sync::Mutex::new(None);
    lab.wait_status("a status", Duration::from_secs(20), |s| {
        *holder.lock().expect("lock") = s.holder.clone();
        s.leader_id.is_some()
    })
    .await?;
    let holder = holder.into_inner().expect("lock");
    if holder.as_deref() != Some(active.as_str()) {
        lab.ctl
            .handover(
                lab.operator(0),
                lab.operator(1),
                &active,
                "runbook test: reset roles",
                Duration::from_secs(60),
            )
            .await?;
        lab.wait_signing_enabled(lab.active_agent(), Duration::from_secs(20))
            .await?;
    }
    Ok(())
}

/// The end state each runbook promises, checked from outside the runbook.
async fn check_after(lab: &Lab, name: &str) -> Result<()> {
    match name {
        "planned-handover.md"
        | "region-loss.md"
        | "break-glass.md"
        | "failover-handover-awaiting-approval.md"
        | "doppelganger-detected.md"
        | "failover-handover-awaiting-liveness.md" => {
            lab.wait_status("agent-us to hold authority", Duration::from_secs(20), |s| {
                s.holder.as_deref() == Some("agent-us")
            })
            .await
        }
        "migrate-from-web3signer.md" => {
            let export = std::fs::read_to_string(lab.manifest.dir.join("after-import.json"))?;
            for v in &lab.manifest.validators {
                ensure!(
                    export.contains(&v.pubkey.to_string()),
                    "validator {} missing from the export after the import",
                    v.index
                );
            }
            Ok(())
        }
        "backup-restore.md" => {
            let url = std::fs::read_to_string(lab.manifest.dir.join("restore").join("url"))?;
            let token = &lab.operator(0).token;
            let http = lab.client_tls().builder().build()?;
            let status_of = || async {
                let v: serde_json::Value = http
                    .get(format!("{url}/v1/status"))
                    .bearer_auth(token)
                    .send()
                    .await?
                    .json()
                    .await?;
                anyhow::Ok(v)
            };
            // A one-node cluster elects itself within an election timeout.
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut status = status_of().await?;
            while status["leader_id"] != 11 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                status = status_of().await?;
            }
            ensure!(
                status["leader_id"] == 11,
                "the restored node leads its own cluster: {status}"
            );
            ensure!(
                status["holder"].is_null(),
                "a restored cluster must be fenced: {status}"
            );
            Ok(())
        }
        "replace-node.md" => {
            lab.wait_status(
                "node 4 a voter, node 1 gone",
                Duration::from_secs(20),
                |s| {
                    let ids: Vec<u64> = s.members.iter().map(|m| m.id).collect();
                    ids.contains(&4) && !ids.contains(&1) && s.leader_id.is_some_and(|l| l != 1)
                },
            )
            .await
        }
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runbooks_run_against_the_lab() {
    let books = runbook::load_dir(&runbooks_dir()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LabConfig::fast_test(dir.path().join("lab"), 4);
    // break-glass.md needs a requester and three other approvers.
    cfg.operators = ["alice", "bob", "carol", "dave"].map(String::from).to_vec();
    let progress = |line: &str| eprintln!("[lab] {line}");
    let mut lab = Lab::start(cfg, &progress).await.unwrap();
    let result = run_all(&mut lab, &books).await;
    lab.stop().await;
    if let Err(e) = result {
        // Keep the lab directory (configs, logs) for the post-mortem.
        let kept = dir.keep();
        panic!("{e:#}\n(lab directory kept: {})", kept.display());
    }
}

async fn run_all(lab: &mut Lab, books: &[Runbook]) -> Result<()> {
    lab.grant_initial().await.context("initial grant")?;
    // `RUNBOOKS=a.md,b.md` runs only those (in ORDER's order), to work on one runbook.
    let only: Option<Vec<String>> = std::env::var("RUNBOOKS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    for name in ORDER {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        let book = books
            .iter()
            .find(|b| b.name == *name)
            .with_context(|| format!("runbooks/{name} is missing"))?;
        eprintln!("[runbook] {name}: {} steps", book.steps.len());
        for action in &book.setup {
            lab.perform(action)
                .await
                .with_context(|| format!("{name}: setup {action}"))?;
        }
        let state = lab.manifest.dir.join(format!("{name}.vars"));
        for step in &book.steps {
            let out = run_step(lab, book, step, &state).await?;
            eprintln!("[runbook] {name}:{} ok\n{out}", step.line);
        }
        if *name == "backup-restore.md" {
            // The old cluster was stopped on purpose; only the restored node is checked.
            check_after(lab, name)
                .await
                .with_context(|| format!("{name}: end state"))?;
            continue;
        }
        heal(lab)
            .await
            .with_context(|| format!("{name}: the lab did not recover after it"))?;
        check_after(lab, name)
            .await
            .with_context(|| format!("{name}: end state"))?;
        reset_roles(lab)
            .await
            .with_context(|| format!("{name}: reset roles after it"))?;
    }
    if ORDER.is_empty() {
        bail!("no runbook ran");
    }
    Ok(())
}
