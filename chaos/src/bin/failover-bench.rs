//! `failover-bench`: end-to-end signing throughput and latency (one signer agent, three
//! coordinators, one beacon simulator, 1,000 validators by default) against raw blst signing
//! on this machine. Prints a table; exits non-zero when no signature came back or one failed
//! to verify. Timing numbers are reported, never asserted.

use std::path::PathBuf;
use std::process::ExitCode;

use chaos::lab::bench::{self, BenchOptions};
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
}

fn main() -> ExitCode {
    chaos::init_logging();
    let cli = Cli::parse();
    let opts = BenchOptions {
        dir: cli.dir,
        validators: cli.validators,
        rounds: cli.rounds,
        raw_signatures: cli.raw_signatures,
    };
    let progress = |line: &str| eprintln!("[bench] {line}");
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(bench::run(&opts, &progress)));
    match result {
        Ok(report) => {
            println!("{report}");
            if report.healthy() {
                ExitCode::SUCCESS
            } else {
                eprintln!("failover-bench: no signature came back, or one did not verify");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("failover-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
