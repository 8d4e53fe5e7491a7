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
}

fn main() -> ExitCode {
    chaos::init_logging();
    let cli = Cli::parse();
    let opts = BenchOptions {
        dir: cli.dir,
        validators: cli.validators,
        rounds: cli.rounds,
        raw_signatures: cli.raw_signatures,
        sequential: cli.sequential,
        plaintext: cli.plaintext,
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
