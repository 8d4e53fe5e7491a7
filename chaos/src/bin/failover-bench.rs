//! `failover-bench`: end-to-end signing throughput and latency (one signer agent, three
//! coordinators, one beacon simulator, 1,000 validators by default) against raw blst signing
//! on this machine, then how long signing stops when authority moves (planned handovers and
//! leader kills). With `--steady-epochs N` it measures the steady state instead: every
//! validator attesting once per epoch for N epochs with finality and pruning. Prints tables;
//! exits non-zero when no signature came back, one failed to verify, or a failover run did
//! not complete. Timing numbers are reported, never asserted.

use std::path::PathBuf;
use std::process::ExitCode;

use chaos::lab::bench::{self, BenchOptions};
use chaos::lab::steady::{self, SteadyOptions};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "failover-bench",
    version,
    about = "Measure end-to-end signing throughput and latency against raw blst"
)]
struct Cli {
    /// Lab directory; wiped and recreated.
    #[arg(long, default_value = "./bench-data")]
    dir: PathBuf,
    /// Validators, and concurrent requests per round.
    #[arg(long, default_value_t = 1_000)]
    validators: u64,
    /// Timed rounds (one warm-up round runs first).
    #[arg(long, default_value_t = 5)]
    rounds: u64,
    /// Signatures per thread in the raw blst measurement.
    #[arg(long, default_value_t = 4_000)]
    raw_signatures: u64,
    /// Requests sent one at a time after the rounds (single-request latency on an idle
    /// cluster).
    #[arg(long, default_value_t = 1_000)]
    sequential: u64,
    /// Plain HTTP on every link instead of TLS.
    #[arg(long, conflicts_with = "compare_plaintext")]
    plaintext: bool,
    /// Run the bench over TLS, then again over plain HTTP, and print what TLS costs.
    #[arg(long)]
    compare_plaintext: bool,
    /// WAN round trips between the regions (eu-us 80 ms, us-ap 150 ms, eu-ap 200 ms) through
    /// the lab's per-link proxies.
    #[arg(long)]
    wan: bool,
    /// Planned handovers, then leader kills, each timed to the first signature afterwards;
    /// 0 skips them.
    #[arg(long, default_value_t = 20)]
    failover_runs: u64,
    /// Raft election timeout range `MIN,MAX` in ms for every coordinator (default: the lab's,
    /// 1000,2000; with --wan 3000,6000). A follower starts an election only after openraft's
    /// leader lease (MAX) plus a random timeout in the range, so this bounds leader kill →
    /// first signature.
    #[arg(long, value_parser = parse_range)]
    raft_election_ms: Option<(u64, u64)>,
    /// Measure the steady state instead: every validator attests once per epoch, plus one
    /// proposal per slot, for this many epochs (try `--validators 10000 --steady-epochs 100`).
    #[arg(long, default_value_t = 0, conflicts_with = "compare_plaintext")]
    steady_epochs: u64,
    /// Slot length in seconds for the steady state (8-slot epochs).
    #[arg(long, default_value_t = 1.0)]
    seconds_per_slot: f64,
    /// Raft log entries between snapshots in the steady state (default: the coordinator's,
    /// 20000); the log is purged only up to a snapshot.
    #[arg(long)]
    snapshot_every: Option<u64>,
}

/// `MIN,MAX` with `0 < MIN <= MAX`.
fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("expected MIN,MAX in ms, got {s:?}"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|e| format!("{v:?} is not a number of ms: {e}"))
    };
    let (min, max) = (parse(a)?, parse(b)?);
    if min == 0 || min > max {
        return Err(format!("expected 0 < MIN <= MAX, got {min},{max}"));
    }
    Ok((min, max))
}

fn steady_state(cli: &Cli) -> ExitCode {
    let opts = SteadyOptions {
        dir: cli.dir.clone(),
        validators: cli.validators,
        epochs: cli.steady_epochs,
        seconds_per_slot: cli.seconds_per_slot,
        slots_per_epoch: 8,
        plaintext: cli.plaintext,
        snapshot_every: cli.snapshot_every,
    };
    let progress = |line: &str| eprintln!("[bench] {line}");
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(steady::run(&opts, &progress)));
    match result {
        Ok(report) => {
            println!("{report}");
            if report.healthy() {
                ExitCode::SUCCESS
            } else {
                eprintln!("failover-bench: an epoch signed nothing, or a signature did not verify");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("failover-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    chaos::init_logging();
    let cli = Cli::parse();
    if cli.steady_epochs > 0 {
        return steady_state(&cli);
    }
    let opts = BenchOptions {
        dir: cli.dir,
        validators: cli.validators,
        rounds: cli.rounds,
        raw_signatures: cli.raw_signatures,
        sequential: cli.sequential,
        plaintext: cli.plaintext,
        wan: cli.wan,
        failover_runs: cli.failover_runs,
        raft_election_ms: cli.raft_election_ms,
    };
    let progress = |line: &str| eprintln!("[bench] {line}");
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                let first = bench::run(&opts, &progress).await?;
                if !cli.compare_plaintext {
                    return Ok(vec![first]);
                }
                let plain = BenchOptions {
                    plaintext: true,
                    ..opts.clone()
                };
                let second = bench::run(&plain, &progress).await?;
                Ok(vec![first, second])
            })
        });
    match result {
        Ok(reports) => {
            for r in &reports {
                println!("{r}");
            }
            if let [tls, plain] = &reports[..] {
                println!("what TLS costs (same machine, TLS run first, then plain HTTP):");
                println!("{}", bench::tls_ratios(tls, plain));
            }
            if reports.iter().all(|r| r.healthy()) {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "failover-bench: no signature came back, one did not verify, or a failover \
                     run did not complete"
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("failover-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
