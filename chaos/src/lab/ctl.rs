//! The operator's side of the lab: every handover action runs the real `failoverctl` binary as
//! a separate process, exactly as an operator would type it, with `--output json`.
//!
//! Invariants:
//! - the operator token is passed through the `FAILOVER_TOKEN` environment variable, never on
//!   the command line (where `ps` would show it);
//! - every invocation, its exit code and its output are appended to the transcript file, so a
//!   run can be replayed by hand;
//! - a non-zero exit is an error carrying failoverctl's own message;
//! - every invocation is also kept as a [`CommandWindow`] on the drill machine's clock (start
//!   and end in Unix µs), so the independent checker can bound when a handover was fenced and
//!   completed without trusting any coordinator's wall clock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::checker::record::CommandWindow;
use anyhow::{bail, Context, Result};
use failover_protocol::Handover;
use failover_protocol::StatusView;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// An operator identity of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Name recorded in the audit trail (`alice`, `bob`).
    pub name: String,
    /// Bearer token in clear (the coordinators only know its SHA-256).
    pub token: String,
}

/// Runs `failoverctl` against the lab's coordinators.
#[derive(Debug, Clone)]
pub struct Failoverctl {
    bin: PathBuf,
    coordinators: Vec<String>,
    transcript: PathBuf,
    windows: Arc<Mutex<Vec<CommandWindow>>>,
    ca_file: Option<PathBuf>,
}

impl Failoverctl {
    /// `bin` is the failoverctl binary, `coordinators` the URLs passed to `--coordinator`, and
    /// `transcript` the file every invocation is appended to.
    pub fn new(bin: &Path, coordinators: Vec<String>, transcript: &Path) -> Self {
        Self {
            bin: bin.to_path_buf(),
            coordinators,
            transcript: transcript.to_path_buf(),
            windows: Arc::default(),
            ca_file: None,
        }
    }

    /// Passes `ca_file` as `FAILOVER_CA_FILE` (the coordinators of a TLS lab are checked
    /// against it).
    pub fn with_ca(mut self, ca_file: Option<PathBuf>) -> Self {
        self.ca_file = ca_file;
        self
    }

    /// Every invocation so far, in start order (shared by clones of this value).
    pub fn windows(&self) -> Vec<CommandWindow> {
        self.windows.lock().expect("windows lock").clone()
    }

    /// Runs `failoverctl --output json ARGS…` as `op` and parses its JSON output as `T`.
    ///
    /// Errors: failoverctl could not start, exited non-zero (its stderr is in the error), did
    /// not finish within `timeout`, or printed something that is not a `T`.
    pub async fn run<T: DeserializeOwned>(
        &self,
        op: &Operator,
        args: &[&str],
        timeout: Duration,
    ) -> Result<T> {
        let mut cmd = tokio::process::Command::new(&self.bin);
        if let Some(ca) = &self.ca_file {
            cmd.env("FAILOVER_CA_FILE", ca);
        }
        cmd.arg("--coordinator")
            .arg(self.coordinators.join(","))
            .arg("--output")
            .arg("json")
            .args(args)
            .env("FAILOVER_TOKEN", &op.token)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let shown = format!(
            "FAILOVER_TOKEN=<{}> failoverctl --coordinator {} --output json {}",
            op.name,
            self.coordinators.join(","),
            args.join(" ")
        );
        let start_us = crate::lab::duties::unix_micros();
        let result = tokio::time::timeout(timeout, cmd.output()).await;
        let mut window = CommandWindow {
            operator: op.name.clone(),
            args: args.iter().map(|a| a.to_string()).collect(),
            start_us,
            end_us: crate::lab::duties::unix_micros(),
            exit_code: None,
            handover: None,
            state: None,
        };
        let out = match result {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                self.record(window);
                return Err(e).with_context(|| format!("start `{shown}`"));
            }
            Err(_) => {
                self.record(window);
                bail!("`{shown}` did not finish within {timeout:?}");
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        window.exit_code = out.status.code();
        if window.args.first().map(String::as_str) == Some("handover") {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&stdout) {
                window.handover = v.get("id").and_then(serde_json::Value::as_u64);
                window.state = v
                    .get("state")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string);
            }
        }
        self.record(window);
        self.append_transcript(&shown, out.status.code(), &stdout, &stderr);
        if !out.status.success() {
            bail!(
                "`{shown}` failed ({}): {}",
                out.status,
                stderr.trim().lines().last().unwrap_or("no message")
            );
        }
        serde_json::from_str(&stdout)
            .with_context(|| format!("parse the JSON output of `{shown}`: {stdout}"))
    }

    fn record(&self, window: CommandWindow) {
        self.windows.lock().expect("windows lock").push(window);
    }

    fn append_transcript(&self, shown: &str, code: Option<i32>, stdout: &str, stderr: &str) {
        use std::io::Write;
        let entry = format!(
            "$ {shown}\n{stdout}{stderr}[exit {}]\n\n",
            code.map_or("signal".into(), |c| c.to_string())
        );
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.transcript)
            .and_then(|mut f| f.write_all(entry.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(path = %self.transcript.display(), "cannot append to the failoverctl transcript: {e}");
        }
    }

    /// `failoverctl handover request --to TO --reason REASON` as `op`.
    ///
    /// Errors: as [`Failoverctl::run`] (for example the target is not registered).
    pub async fn request(&self, op: &Operator, to: &str, reason: &str) -> Result<Handover> {
        self.run(
            op,
            &["handover", "request", "--to", to, "--reason", reason],
            Duration::from_secs(30),
        )
        .await
    }

    /// `failoverctl handover wait ID --state STATE --wait-timeout S` as `op`.
    ///
    /// Errors: as [`Failoverctl::run`]; a handover that ends in another state or does not get
    /// there within `wait` is an error.
    pub async fn wait(
        &self,
        op: &Operator,
        id: u64,
        state: &str,
        wait: Duration,
    ) -> Result<Handover> {
        let id = id.to_string();
        let secs = wait.as_secs().max(1).to_string();
        self.run(
            op,
            &[
                "handover",
                "wait",
                &id,
                "--state",
                state,
                "--wait-timeout",
                &secs,
            ],
            wait + Duration::from_secs(30),
        )
        .await
    }

    /// `failoverctl handover approve ID` as `op`.
    ///
    /// Errors: as [`Failoverctl::run`] (for example the two-person rule refused it).
    pub async fn approve(&self, op: &Operator, id: u64) -> Result<Handover> {
        self.run(
            op,
            &["handover", "approve", &id.to_string()],
            Duration::from_secs(30),
        )
        .await
    }

    /// `failoverctl handover abort ID --reason REASON` as `op`.
    ///
    /// Errors: as [`Failoverctl::run`] (for example the handover already ended).
    pub async fn abort(&self, op: &Operator, id: u64, reason: &str) -> Result<Handover> {
        self.run(
            op,
            &["handover", "abort", &id.to_string(), "--reason", reason],
            Duration::from_secs(30),
        )
        .await
    }

    /// `failoverctl handover show ID` as `op`.
    ///
    /// Errors: as [`Failoverctl::run`].
    pub async fn show(&self, op: &Operator, id: u64) -> Result<Handover> {
        self.run(
            op,
            &["handover", "show", &id.to_string()],
            Duration::from_secs(30),
        )
        .await
    }

    /// `failoverctl status` as `op`.
    ///
    /// Errors: as [`Failoverctl::run`].
    pub async fn status(&self, op: &Operator) -> Result<StatusView> {
        self.run(op, &["status"], Duration::from_secs(30)).await
    }

    /// Runs the full operator procedure of a handover to `to`: `requester` requests it, waits
    /// for `awaiting_approval` (finality covers the fenced holder's last message), `approver`
    /// approves, and the lab waits for `completed`. Returns the handover id.
    ///
    /// Errors: any step failing, with the step named.
    pub async fn handover(
        &self,
        requester: &Operator,
        approver: &Operator,
        to: &str,
        reason: &str,
        wait: Duration,
    ) -> Result<u64> {
        let h = self
            .request(requester, to, reason)
            .await
            .with_context(|| format!("{} requests a handover to {to}", requester.name))?;
        self.wait(requester, h.id, "awaiting_approval", wait)
            .await
            .with_context(|| format!("wait for handover {} to await approval", h.id))?;
        self.approve(approver, h.id)
            .await
            .with_context(|| format!("{} approves handover {}", approver.name, h.id))?;
        self.wait(requester, h.id, "completed", wait)
            .await
            .with_context(|| format!("wait for handover {} to complete", h.id))?;
        Ok(h.id)
    }
}
