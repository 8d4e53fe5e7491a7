//! `failover-lab`: the local three-region lab.
//!
//! `failover-lab [--dir DIR] [--keep-running] [--no-duties] [--no-handover] …` wipes DIR
//! (default `./lab-data`), starts three beacon simulators, three coordinators and two signer
//! agents from the binaries next to this one, grants authority to `agent-eu`, runs the duty
//! simulator and a planned handover `agent-eu → agent-us` through `failoverctl`, prints a
//! summary with its checks, and stops everything. The exit code is 0 only when every check
//! passed.
//!
//! With `--keep-running` the processes stay up after the drill (use `--no-duties
//! --no-handover` for a freshly granted lab) until `failover-lab down --dir DIR`; `DIR/lab.json`
//! says where everything is, with the operator tokens.
//!
//! With `--prometheus` a real Prometheus (from `PATH`) scrapes every coordinator and agent with
//! the rules of `grafana/prometheus/` (every `for:` shortened to `--prometheus-rule-for`), its
//! data in `DIR/prometheus/`, on `127.0.0.1:--prometheus-port` (default 9090); it stops with
//! the lab. See `grafana/README.md` for pointing a Grafana at it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chaos::lab::procs::{alive, runs_executable, signal};
use chaos::lab::prometheus::PrometheusOptions;
use chaos::lab::scenario::{self, ScenarioOptions};
use chaos::lab::{KdfChoice, Lab, LabConfig, Manifest, MANIFEST};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "failover-lab",
    version,
    about = "Run the local three-region failover lab and its planned-handover drill",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Stop a lab started with --keep-running.
    Down {
        /// The lab directory.
        #[arg(long, default_value = "./lab-data")]
        dir: PathBuf,
    },
    /// Sign with some of a running lab's keys outside the cluster, as a validator client
    /// started by hand on a standby box would: one attestation per epoch for each validator,
    /// published to every beacon simulator. A handover requested meanwhile stops in
    /// `doppelganger_detected` (runbooks/doppelganger-detected.md). Runs until Ctrl-C.
    RogueSigner {
        /// The lab directory.
        #[arg(long, default_value = "./lab-data")]
        dir: PathBuf,
        /// Validator indices, e.g. `2,5` or `2-4`.
        #[arg(long)]
        validators: String,
        /// Stop after this many epochs (default: until Ctrl-C or SIGTERM).
        #[arg(long)]
        epochs: Option<u64>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kdf {
    /// PBKDF2-HMAC-SHA256, c = 2^18 (EIP-2335 standard).
    Pbkdf2,
    /// scrypt n = 2^18, r = 8, p = 1 (EIP-2335 standard; slow to start).
    Scrypt,
    /// PBKDF2 c = 2^10 (fast start; not for real keys).
    Cheap,
}

#[derive(Args)]
struct RunArgs {
    /// Lab directory; wiped and recreated at start.
    #[arg(long, default_value = "./lab-data")]
    dir: PathBuf,
    /// Keep every process running after the drill, until `failover-lab down --dir DIR`.
    #[arg(long)]
    keep_running: bool,
    /// Do not run the duty simulator.
    #[arg(long)]
    no_duties: bool,
    /// Do not run the planned handover (agent-eu keeps authority).
    #[arg(long)]
    no_handover: bool,
    /// Plain HTTP on every link (`insecure_plaintext` everywhere) instead of TLS with a CA
    /// made for the lab in DIR/pki; for comparing the two.
    #[arg(long)]
    plaintext: bool,
    /// Each region in a Linux network namespace of its own, its processes bound to the
    /// region's address only (needs root; says so where namespaces are not allowed).
    #[arg(long)]
    netns: bool,
    /// WAN latency between regions: eu–us 80 ms, us–ap 150 ms, eu–ap 200 ms round trip
    /// (tc netem with --netns where the kernel has it, else the lab's per-link proxies), with
    /// Raft timing for it (500 ms heartbeats, 3–6 s elections).
    #[arg(long)]
    wan: bool,
    /// Number of interop validators.
    #[arg(long, default_value_t = 64)]
    validators: u64,
    /// Slot length in seconds.
    #[arg(long, default_value_t = 0.5)]
    seconds_per_slot: f64,
    /// Slots per epoch.
    #[arg(long, default_value_t = 8)]
    slots_per_epoch: u64,
    /// Epochs by which the simulated finality trails the head.
    #[arg(long, default_value_t = 2)]
    finality_lag_epochs: u64,
    /// Epoch of the simulated chain's fork to Deneb (0 = Deneb from genesis); a later epoch
    /// makes the duties cross a fork transition.
    #[arg(long, default_value_t = 0)]
    fork_epoch: u64,
    /// Epochs of duties before the handover is requested.
    #[arg(long, default_value_t = 2)]
    epochs_before_handover: u64,
    /// Epochs of duties after the handover completed.
    #[arg(long, default_value_t = 3)]
    epochs_after_handover: u64,
    /// Keystore key-derivation function and cost.
    #[arg(long, value_enum, default_value = "pbkdf2")]
    kdf: Kdf,
    /// Start a Prometheus (from PATH) scraping the lab with grafana/prometheus/'s scrape
    /// configuration and alert rules; it stops with the lab.
    #[arg(long)]
    prometheus: bool,
    /// Loopback port of the lab's Prometheus.
    #[arg(long, default_value_t = 9090, requires = "prometheus")]
    prometheus_port: u16,
    /// The `for:` duration of every alert rule in the lab (Prometheus duration).
    #[arg(long, default_value = "2s", requires = "prometheus")]
    prometheus_rule_for: String,
}

fn main() -> ExitCode {
    chaos::init_logging();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failover-lab: start tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.cmd {
        Some(Cmd::Down { dir }) => rt.block_on(down(&dir)).map(|()| true),
        Some(Cmd::RogueSigner {
            dir,
            validators,
            epochs,
        }) => rt
            .block_on(rogue_signer(&dir, &validators, epochs))
            .map(|()| true),
        None => rt.block_on(run(cli.run)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("failover-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn progress(line: &str) {
    eprintln!("[lab] {line}");
}

/// Runs the lab; returns whether every check passed.
async fn run(args: RunArgs) -> Result<bool> {
    let t0 = Instant::now();
    let mut stop = stop_requests();
    let mut cfg = LabConfig::three_regions(args.dir.clone());
    cfg.validators = args.validators;
    cfg.seconds_per_slot = args.seconds_per_slot;
    cfg.slots_per_epoch = args.slots_per_epoch;
    cfg.finality_lag_epochs = args.finality_lag_epochs;
    cfg.fork_epoch = args.fork_epoch;
    cfg.tls = !args.plaintext;
    cfg.netns = args.netns;
    cfg.wan = args.wan;
    if args.wan {
        cfg.raft_heartbeat_ms = 500;
        cfg.raft_election_ms = (3_000, 6_000);
    }
    cfg.kdf = match args.kdf {
        Kdf::Pbkdf2 => KdfChoice::Pbkdf2Standard,
        Kdf::Scrypt => KdfChoice::ScryptStandard,
        Kdf::Cheap => KdfChoice::Pbkdf2Cheap,
    };
    let mut lab = tokio::select! {
        lab = Lab::start(cfg, &progress) => lab?,
        _ = stopped(&mut stop) => anyhow::bail!("interrupted during start-up"),
    };
    if args.prometheus {
        let opts = PrometheusOptions {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], args.prometheus_port)),
            rule_for: args.prometheus_rule_for.clone(),
        };
        let url = lab.start_prometheus(&opts).await?;
        progress(&format!(
            "Prometheus at {url} (alerts: {url}/alerts, targets: {url}/targets); data in {}",
            lab.manifest.dir.join("prometheus").display()
        ));
        println!("PROMETHEUS {url}");
    }
    let manifest = lab.write_manifest()?;
    progress(&format!(
        "lab ready in {:.1} s; {} written",
        t0.elapsed().as_secs_f64(),
        manifest.display()
    ));

    let opts = ScenarioOptions {
        duties: !args.no_duties,
        handover: !args.no_handover,
        epochs_before_handover: args.epochs_before_handover,
        epochs_after_handover: args.epochs_after_handover,
        ..ScenarioOptions::default()
    };
    let outcome = tokio::select! {
        r = scenario::run(&mut lab, &opts, &progress) => Some(r),
        _ = stopped(&mut stop) => None,
    };
    let passed = match outcome {
        None => {
            progress("interrupted; stopping the lab");
            lab.stop().await;
            return Ok(false);
        }
        Some(Err(e)) => {
            eprintln!("failover-lab: the drill could not run: {e:#}");
            false
        }
        Some(Ok(summary)) => {
            let text = summary.to_string();
            println!("\n{text}");
            let path = lab.manifest.dir.join("summary.txt");
            std::fs::write(&path, &text).with_context(|| format!("write {}", path.display()))?;
            summary.passed()
        }
    };
    progress(&format!(
        "drill finished in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    follow_holder(&mut lab, &progress).await;

    if args.keep_running {
        let dir = lab.manifest.dir.display().to_string();
        progress(&format!(
            "lab keeps running; see {dir}/{MANIFEST}; stop it with `failover-lab down --dir {dir}`"
        ));
        let mut reported = 0;
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    let gone = lab.exited();
                    for g in gone.iter().skip(reported) {
                        progress(&format!("process exited: {g}"));
                    }
                    reported = gone.len();
                    follow_holder(&mut lab, &progress).await;
                }
            }
        }
    }
    progress("stopping the lab");
    lab.stop().await;
    Ok(passed)
}

/// Keeps `lab.json`'s agent roles on the current authority holder: `active` is the agent that
/// holds authority now. A coordinator that does not answer leaves the file as it is.
async fn follow_holder(lab: &mut Lab, progress: &dyn Fn(&str)) {
    let Ok(holder) = lab.current_holder().await else {
        return;
    };
    match lab.record_holder(holder.as_deref()) {
        Ok(true) => progress(&format!(
            "lab.json: authority holder now {}",
            holder.as_deref().unwrap_or("nobody")
        )),
        Ok(false) => {}
        Err(e) => progress(&format!("cannot update lab.json: {e:#}")),
    }
}

/// A flag that turns true on the first SIGTERM or SIGINT (kept for the whole run, so no signal
/// is lost between phases).
fn stop_requests() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    });
    rx
}

/// Resolves once a stop was requested.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal as unix_signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        unix_signal(SignalKind::terminate()),
        unix_signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the lab can only be stopped by killing it.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// `failover-lab down`: asks the lab process to stop its children, then makes sure none is
/// left (processes are only signalled if they still run the binary the manifest names).
/// `failover-lab rogue-signer`: see [`Cmd::RogueSigner`].
async fn rogue_signer(dir: &Path, validators: &str, epochs: Option<u64>) -> Result<()> {
    let m = Manifest::read(dir)?;
    let indices = chaos::lab::rogue::parse_indices(validators)?;
    let clock = chaos::lab::duties::SlotClock {
        genesis_time: m.genesis_time,
        seconds_per_slot: m.seconds_per_slot,
        slots_per_epoch: m.slots_per_epoch,
    };
    let beacons: Vec<String> = m.beacon_nodes.iter().map(|b| b.url.clone()).collect();
    let rogue =
        chaos::lab::rogue::RogueSigner::connect(beacons.clone(), &indices, clock, m.client_tls()?)
            .await?;
    let running = rogue.start();
    println!(
        "rogue signer: signing for validator(s) {validators} outside the cluster, publishing to {}",
        beacons.join(", ")
    );
    let mut stop = stop_requests();
    match epochs {
        Some(n) => {
            tokio::select! {
                // Saturates: `--epochs 18446744073709551615` runs until Ctrl-C.
                _ = tokio::time::sleep(
                    clock
                        .epoch_duration()
                        .saturating_mul(u32::try_from(n).unwrap_or(u32::MAX)),
                ) => {}
                _ = stop.changed() => {}
            }
        }
        None => {
            let _ = stop.changed().await;
        }
    }
    let n = running.stop().await;
    println!("rogue signer stopped: {n} publication(s) accepted");
    Ok(())
}

async fn down(dir: &Path) -> Result<()> {
    let m = Manifest::read(dir)?;
    if alive(m.lab_pid) && runs_executable(m.lab_pid, "failover-lab") {
        signal(m.lab_pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        while alive(m.lab_pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("lab process {} stopped", m.lab_pid);
    }
    for (name, pid, bin) in m.child_pids() {
        let name_of_bin = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !alive(pid) || !runs_executable(pid, &name_of_bin) {
            continue;
        }
        signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if alive(pid) {
            signal(pid, libc::SIGKILL);
        }
        println!("stopped leftover {name} (pid {pid})");
    }
    println!("lab in {} is down", dir.display());
    Ok(())
}
