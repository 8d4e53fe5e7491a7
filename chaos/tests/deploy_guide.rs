//! `docs/deploy.md`, run: three empty "hosts" (the regions eu, us and ap as Linux network
//! namespaces, each with its own address and its own directories), a beacon node simulator in
//! each, and every `sh` block of the guide in order, exactly as written (`chaos::runbook`
//! directives): a `hosts=` block runs once in each named host's namespace with its
//! directories, a `lab=start-coordinators` / `lab=start-agents` block (the `systemctl` steps)
//! starts the same binary with the configuration the guide wrote, in that host's namespace.
//! It ends with a completed first grant.
//!
//! It needs root (network namespaces) and every workspace binary next to the test executable's
//! directory (`cargo test --workspace` builds them). Where namespaces are not allowed it fails
//! and says so; it is never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use chaos::lab::netns::Regions;
use chaos::lab::{Binaries, Proc};
use chaos::runbook::{self, Step};

/// The chain of the example configurations (mainnet's genesis validators root).
const GVR: &str = "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95";
/// Per-block deadline (seconds); the longest waits for finality.
const STEP_TIMEOUT_S: u64 = 180;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One emulated host: its namespace region and directories.
struct Host {
    region: String,
    dir: PathBuf,
}

impl Host {
    fn env(&self, n: usize) -> Vec<(String, String)> {
        let d = |s: &str| self.dir.join(s).display().to_string();
        vec![
            ("REGION".into(), self.region.clone()),
            ("N".into(), n.to_string()),
            ("ETC".into(), d("etc/failover")),
            ("STATE".into(), d("var/lib/failover-coordinator")),
            ("AGENT_ETC".into(), d("etc/signer-agent")),
        ]
    }
}

struct Guide {
    regions: Regions,
    hosts: Vec<Host>,
    bins: Binaries,
    state: PathBuf,
    base_env: Vec<(String, String)>,
    procs: Vec<Proc>,
    logs: PathBuf,
}

impl Guide {
    /// Runs `step` (in `host`'s namespace with its environment, when given).
    fn run(&self, step: &Step, host: Option<(&Host, usize)>) -> Result<()> {
        let script = runbook::wrap(step, &self.state);
        let mut cmd = Command::new("timeout");
        cmd.args(["--signal=KILL", &STEP_TIMEOUT_S.to_string()]);
        if let Some((h, _)) = host {
            let ns = &self
                .regions
                .region(&h.region)
                .context("no such host")?
                .netns;
            cmd.args(["ip", "netns", "exec", ns]);
        }
        cmd.args(["bash", "-c", &script])
            .current_dir(repo())
            .envs(self.base_env.iter().cloned())
            .envs(step.env.iter().cloned())
            .stdin(std::process::Stdio::null());
        if let Some((h, n)) = host {
            cmd.envs(h.env(n));
        }
        let out = cmd.output().context("run bash")?;
        let code = out.status.code().unwrap_or(-1);
        ensure!(
            code == step.expect_exit,
            "deploy.md:{}{} exited {code} (expected {}):\n--- block ---\n{}--- output ---\n{}{}",
            step.line,
            host.map(|(h, _)| format!(" on host {}", h.region))
                .unwrap_or_default(),
            step.expect_exit,
            step.script,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// The `systemctl` steps: start `program run --config CONFIG` in each host's namespace,
    /// where CONFIG is the file the guide wrote there, and wait for its `READY` line.
    async fn start(&mut self, which: &str) -> Result<()> {
        let (program, hosts, config) = match which {
            "start-coordinators" => (
                self.bins.coordinator.clone(),
                vec!["eu", "us", "ap"],
                "etc/failover/coordinator.toml",
            ),
            "start-agents" => (
                self.bins.signer_agent.clone(),
                vec!["eu", "us"],
                "etc/signer-agent/signer-agent.toml",
            ),
            other => anyhow::bail!("unknown action lab={other}"),
        };
        let mut started = Vec::new();
        for name in hosts {
            let host = self
                .hosts
                .iter()
                .find(|h| h.region == name)
                .context("no such host")?;
            let config = host.dir.join(config).display().to_string();
            let args = vec!["run".to_string(), "--config".to_string(), config];
            let (p, a) = self.regions.command(name, &program, &args)?;
            let label = format!("{which}-{name}");
            let log = self.logs.join(format!("{label}.log"));
            started.push(Proc::spawn(&label, &p, &a, &log)?);
        }
        for mut p in started {
            p.wait_ready(Duration::from_secs(60)).await?;
            self.procs.push(p);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deployment_guide_takes_three_empty_hosts_to_a_first_grant() {
    let work = tempfile::tempdir().unwrap();
    let names: Vec<String> = ["eu", "us", "ap"].iter().map(|s| s.to_string()).collect();
    let regions = Regions::create(&names, std::process::id() + 5_000).unwrap_or_else(|e| {
        panic!("the deployment guide test needs network namespaces (root): {e:#}")
    });
    let bins = Binaries::locate().unwrap();
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    // The beacon nodes of each region: 0.1 s slots, finality one epoch behind the head.
    let genesis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut beacons = Vec::new();
    for r in &regions.regions {
        let args: Vec<String> = [
            "--listen".to_string(),
            format!("{}:5052", r.ip),
            "--seconds-per-slot".into(),
            "0.1".into(),
            "--slots-per-epoch".into(),
            "32".into(),
            "--genesis-validators-root".into(),
            GVR.into(),
            "--genesis-time".into(),
            genesis.to_string(),
            "--finality-lag-epochs".into(),
            "1".into(),
            "--fork-epoch".into(),
            "0".into(),
        ]
        .to_vec();
        let (p, a) = regions.command(&r.name, &bins.beacon_sim, &args).unwrap();
        let log = logs.join(format!("beacon-{}.log", r.name));
        let mut proc = Proc::spawn(&format!("beacon-{}", r.name), &p, &a, &log).unwrap();
        proc.wait_ready(Duration::from_secs(20)).await.unwrap();
        beacons.push(proc);
    }

    let ip = |n: &str| regions.region(n).unwrap().ip.to_string();
    let bin_dir = bins.coordinator.parent().unwrap().display().to_string();
    let admin = work.path().join("admin");
    std::fs::create_dir_all(&admin).unwrap();
    let base_env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default()),
        ),
        ("HOME".into(), admin.display().to_string()),
        ("PKI".into(), admin.join("pki").display().to_string()),
        ("EU_IP".into(), ip("eu")),
        ("US_IP".into(), ip("us")),
        ("AP_IP".into(), ip("ap")),
        // The agents run on the eu and us coordinator hosts here.
        ("EU_AGENT_IP".into(), ip("eu")),
        ("US_AGENT_IP".into(), ip("us")),
        ("EU_BEACON".into(), format!("{}:5052", ip("eu"))),
        ("US_BEACON".into(), format!("{}:5052", ip("us"))),
        ("AP_BEACON".into(), format!("{}:5052", ip("ap"))),
    ];
    let hosts = names
        .iter()
        .map(|n| Host {
            region: n.clone(),
            dir: work.path().join(format!("host-{n}")),
        })
        .collect();
    let mut guide = Guide {
        regions,
        hosts,
        bins,
        state: work.path().join("state"),
        base_env,
        procs: Vec::new(),
        logs,
    };

    let text = std::fs::read_to_string(repo().join("docs/deploy.md")).unwrap();
    let book = runbook::parse("deploy.md", &text).unwrap();
    assert!(book.setup.is_empty(), "the guide starts from empty hosts");
    for step in &book.steps {
        let result = match (&step.lab_action, step.hosts.is_empty()) {
            (Some(action), _) => guide.start(action).await,
            (None, true) => guide.run(step, None),
            (None, false) => step.hosts.iter().enumerate().try_for_each(|(i, name)| {
                let host = guide
                    .hosts
                    .iter()
                    .find(|h| &h.region == name)
                    .with_context(|| format!("deploy.md:{}: no host {name}", step.line))?;
                guide.run(step, Some((host, i + 1)))
            }),
        };
        if let Err(e) = result {
            let mut tails = String::new();
            for p in guide.procs.iter().chain(&beacons) {
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                tails.push_str(&format!("--- {} ---\n{}\n", p.name, tail.join("\n")));
            }
            panic!("{e:#}\n{tails}");
        }
    }
}

#[test]
fn the_per_region_example_configurations_are_valid() {
    let dir = repo().join("config/deploy");
    for region in ["eu", "us", "ap"] {
        let text = std::fs::read_to_string(dir.join(region).join("coordinator.toml")).unwrap();
        let cfg = coordinator::config::Config::from_toml(&text).unwrap();
        cfg.validate()
            .unwrap_or_else(|e| panic!("{region}/coordinator.toml: {e}"));
        assert_eq!(cfg.me().region, region);
        assert!(
            cfg.tls.is_some() && !cfg.insecure_plaintext,
            "{region}: TLS"
        );
    }
    for region in ["eu", "us"] {
        let text = std::fs::read_to_string(dir.join(region).join("signer-agent.toml")).unwrap();
        let cfg = signer_agent::Config::from_toml(&text).unwrap();
        cfg.validate()
            .unwrap_or_else(|e| panic!("{region}/signer-agent.toml: {e:#}"));
        assert_eq!(cfg.region, region);
    }
}

/// `systemd-analyze verify` accepts both units (their `ExecStart` pointed at the built
/// binaries), and `systemd-analyze security` rates their exposure 2.0 or better ("OK"; `--threshold` counts tenths).
#[test]
fn the_systemd_units_verify_and_are_hardened() {
    let bins = Binaries::locate().unwrap();
    let bin_dir = bins.coordinator.parent().unwrap().display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    for unit in ["coordinator.service", "signer-agent.service"] {
        let text =
            std::fs::read_to_string(repo().join("config/deploy/systemd").join(unit)).unwrap();
        let path = tmp.path().join(unit);
        std::fs::write(
            &path,
            text.replace("/usr/local/bin/", &format!("{bin_dir}/")),
        )
        .unwrap();
        let verify = Command::new("systemd-analyze")
            .args(["verify"])
            .arg(&path)
            .env("SYSTEMD_LOG_LEVEL", "warning")
            .output()
            .expect("systemd-analyze (Debian package systemd; .ci/setup installs it)");
        assert!(
            verify.status.success() && verify.stderr.is_empty(),
            "{unit}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
        let security = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20"])
            .arg(&path)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&security.stdout);
        assert!(
            security.status.success(),
            "{unit}: exposure above 2.0:\n{}",
            out.lines().last().unwrap_or_default()
        );
    }
}
