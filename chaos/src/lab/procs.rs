//! Real processes: finding the workspace binaries, spawning them with their output in a log
//! file, waiting for their `READY <url>` line, and stopping them.
//!
//! Invariants:
//! - a binary is only ever taken from the directory of the running executable (or its parent,
//!   when the executable is a test under `target/*/deps`); nothing is built here;
//! - a [`Proc`] that was not stopped explicitly is killed (SIGKILL) when dropped, so an error
//!   anywhere in the lab never leaves processes behind;
//! - [`Proc::stop`] asks politely first (SIGTERM) and kills only after the grace period.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Paths of the workspace binaries the lab runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binaries {
    /// `coordinator` (crate `coordinator`).
    pub coordinator: PathBuf,
    /// `failoverctl` (crate `failoverctl`, in `coordinator/failoverctl`).
    pub failoverctl: PathBuf,
    /// `signer-agent` (crate `signer-agent`).
    pub signer_agent: PathBuf,
    /// `beacon-sim` (crate `chaos`).
    pub beacon_sim: PathBuf,
}

impl Binaries {
    /// Finds every binary next to the running executable (or in its parent directory when it
    /// runs from `target/<profile>/deps`, as tests do).
    ///
    /// Errors: names every missing binary and the directory searched, with the hint to run
    /// `cargo build --workspace`.
    pub fn locate() -> Result<Self> {
        let exe = std::env::current_exe().context("locate the running executable")?;
        let dir = exe
            .parent()
            .context("the running executable has no parent directory")?
            .to_path_buf();
        let mut dirs = vec![dir.clone()];
        if dir.file_name().is_some_and(|n| n == "deps") {
            if let Some(parent) = dir.parent() {
                dirs.push(parent.to_path_buf());
            }
        }
        Self::locate_in(&dirs)
    }

    /// Finds every binary in the first of `dirs` that has it.
    ///
    /// Errors: as [`Binaries::locate`].
    pub fn locate_in(dirs: &[PathBuf]) -> Result<Self> {
        let mut missing = Vec::new();
        let mut find = |name: &str| -> PathBuf {
            for d in dirs {
                let p = d.join(name);
                if p.is_file() {
                    return p;
                }
            }
            missing.push(name.to_string());
            PathBuf::new()
        };
        let bins = Self {
            coordinator: find("coordinator"),
            failoverctl: find("failoverctl"),
            signer_agent: find("signer-agent"),
            beacon_sim: find("beacon-sim"),
        };
        if !missing.is_empty() {
            let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            bail!(
                "missing binaries {} in {}; build them first with `cargo build --workspace` \
                 (add --release if this lab binary is a release build)",
                missing.join(", "),
                searched.join(" or ")
            );
        }
        Ok(bins)
    }
}

/// A free TCP port on 127.0.0.1 at the time of the call (bound, read, released).
///
/// There is a small window in which another process could take it; the lab only uses this
/// for coordinators, whose URLs must be known before any of them starts.
///
/// Errors: the OS refused to bind an ephemeral port.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind an ephemeral port on 127.0.0.1")?;
    Ok(l.local_addr().context("read the ephemeral port")?.port())
}

/// One child process whose stdout and stderr both go to `log`.
#[derive(Debug)]
pub struct Proc {
    /// Short name, e.g. `coordinator-1`, `agent-eu`, `beacon-us`.
    pub name: String,
    /// The log file (stdout and stderr, interleaved).
    pub log: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    starts: u32,
    child: Child,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `program args…` with stdin closed and stdout and stderr written to `log` (created
    /// or truncated).
    ///
    /// Errors: the log file cannot be created or the program cannot be started.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Self> {
        Self::spawn_with_env(name, program, args, &[], log)
    }

    /// As [`Proc::spawn`], with extra environment variables.
    ///
    /// Errors: as [`Proc::spawn`].
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Self> {
        let child = start_child(name, program, args, env, log)?;
        Ok(Self {
            name: name.to_string(),
            log: log.to_path_buf(),
            program: program.to_path_buf(),
            args: args.to_vec(),
            env: env.to_vec(),
            starts: 1,
            child,
            exited: None,
        })
    }

    /// Kills the process if it still runs (SIGKILL) and starts the same program with the same
    /// arguments and environment again. The new run logs to `<log stem>.run<N>.log` next to
    /// the first log (so [`Proc::wait_ready`] sees only the new run's `READY` line).
    ///
    /// Errors: the program cannot be started again.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.starts += 1;
        let first = self.log.clone();
        let stem = first
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.name.clone());
        let stem = stem.split(".run").next().unwrap_or(&stem).to_string();
        let log = first.with_file_name(format!("{stem}.run{}.log", self.starts));
        self.child = start_child(&self.name, &self.program, &self.args, &self.env, &log)?;
        self.log = log;
        self.exited = None;
        Ok(())
    }

    /// Sends `sig` to the process unless it has exited; returns whether it was delivered.
    pub fn send(&mut self, sig: libc::c_int) -> bool {
        self.try_exited().is_none() && signal(self.pid(), sig)
    }

    /// OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended (reaps it), else `None`.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits until the log holds a line `READY <url>` and returns the URL.
    ///
    /// Errors: the process exited first, or `timeout` passed; both include the log's tail.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(url) = text.lines().find_map(|l| l.strip_prefix("READY ")) {
                return Ok(url.trim().to_string());
            }
            if let Some(status) = self.try_exited() {
                bail!(
                    "{} exited ({status}) before printing READY; last lines of {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&text, 15)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} printed no READY line within {:?}; last lines of {}:\n{}",
                    self.name,
                    timeout,
                    self.log.display(),
                    tail(&text, 15)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM, waits up to `grace` for the exit, then sends SIGKILL. Idempotent.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.try_exited().is_some() {
            return self.exited;
        }
        signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.try_exited().is_some() {
                return self.exited;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.kill()
    }

    /// Sends SIGKILL and reaps the process. Idempotent.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.try_exited().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
        self.exited
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start_child(
    name: &str,
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
) -> Result<Child> {
    let out = File::create(log).with_context(|| format!("create log {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("duplicate log handle {}", log.display()))?;
    Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("start {name}: {} {}", program.display(), args.join(" ")))
}

/// Sends `sig` to process `pid`; returns false when no such process exists (or it is not ours).
pub fn signal(pid: u32, sig: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) takes plain integers and has no memory effects; a positive pid names
    // exactly one process, never a group.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// True when a process with this id exists and has not stopped: the signal 0 probe answers,
/// and `/proc/<pid>/stat` does not show it as a zombie (`Z`, exited but not yet reaped by its
/// parent) or dead (`X`). A zombie answers signal 0 but runs nothing: `failover-lab down`
/// would otherwise wait its whole timeout for a lab that another program started and has not
/// reaped yet. Where `/proc` cannot be read, the probe alone decides.
pub fn alive(pid: u32) -> bool {
    signal(pid, 0) && !matches!(process_state(pid), Some('Z' | 'X'))
}

/// The state letter of `pid` from `/proc/<pid>/stat` (`R`, `S`, `Z`, …), or `None`.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: the state follows the last ')'.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// True when process `pid` runs an executable whose file name is `name` (so a recycled pid
/// is never mistaken for a lab process). A rebuilt binary shows as `name (deleted)`, which
/// still counts.
pub fn runs_executable(pid: u32, name: &str) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n == name || n.starts_with(&format!("{name} ")))
}

/// The last `n` lines of `text`, for error messages.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_alive_and_a_running_process_is() {
        assert!(alive(std::process::id()));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // Not reaped: once it exits it stays a zombie until `wait`.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while process_state(pid) != Some('Z') {
            assert!(
                std::time::Instant::now() < deadline,
                "`true` did not exit within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(signal(pid, 0), "a zombie still answers signal 0");
        assert!(!alive(pid), "but it has stopped");
        child.wait().expect("reap");
    }
}
