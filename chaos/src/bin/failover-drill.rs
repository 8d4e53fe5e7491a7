//! `failover-drill`: chaos drills on the real binaries.
//!
//! - `failover-drill run FILE [--seed N] [--dir DIR]` runs one scenario file; the seed (the
//!   file's default unless given) is printed first and replays the same fault schedule.
//! - `failover-drill suite --ci` runs every scenario marked `ci = true` once, with its seed;
//!   `failover-drill suite --soak --seeds N` runs every scenario with N seeds (the file's seed,
//!   then the next N-1).
//!
//! Each run writes its history and verdict into its directory (default
//! `./drill-data/<scenario>-seed<N>`). The binaries it starts are taken from the directory of
//! this executable. The exit code is 0 only when every run passed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use chaos::drill::run::{run, Outcome};
use chaos::drill::{default_scenario_dir, load_dir, Scenario};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "failover-drill",
    version,
    about = "Run chaos drills on the real binaries"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario file.
    Run {
        /// The scenario file (TOML).
        file: PathBuf,
        /// Seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Drill directory (wiped if it is one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run a suite of scenarios.
    Suite {
        /// The CI suite: scenarios with `ci = true`, each once with its own seed.
        #[arg(long, conflicts_with = "soak")]
        ci: bool,
        /// Soak: every scenario with `--seeds` seeds.
        #[arg(long)]
        soak: bool,
        /// Seeds per scenario in a soak run.
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Scenario directory.
        #[arg(long)]
        scenarios: Option<PathBuf>,
        /// Parent of the drill directories.
        #[arg(long, default_value = "./drill-data")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    chaos::init_logging();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failover-drill: start tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_async(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("failover-drill: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn main_async(cli: Cli) -> Result<bool> {
    match cli.cmd {
        Cmd::Run { file, seed, dir } => {
            let s = Scenario::load(&file)?;
            let seed = seed.unwrap_or(s.seed);
            let dir = dir.unwrap_or_else(|| default_dir(Path::new("./drill-data"), &s, seed));
            let o = one(&s, seed, &dir).await;
            table(std::slice::from_ref(&o));
            Ok(o.passed)
        }
        Cmd::Suite {
            ci,
            soak,
            seeds,
            scenarios,
            dir,
        } => {
            if !ci && !soak {
                bail!("say --ci or --soak");
            }
            let all = load_dir(&scenarios.unwrap_or_else(default_scenario_dir))?;
            let mut runs = Vec::new();
            for (_, s) in all {
                if ci && !s.ci {
                    continue;
                }
                let n = if soak { seeds.max(1) } else { 1 };
                for k in 0..n {
                    runs.push((s.clone(), s.seed + k));
                }
            }
            eprintln!("failover-drill: {} runs", runs.len());
            let mut outcomes = Vec::new();
            for (s, seed) in runs {
                outcomes.push(one(&s, seed, &default_dir(&dir, &s, seed)).await);
            }
            table(&outcomes);
            Ok(outcomes.iter().all(|o| o.passed))
        }
    }
}

fn default_dir(parent: &Path, s: &Scenario, seed: u64) -> PathBuf {
    parent.join(format!("{}-seed{seed}", s.name))
}

/// Runs one drill; an error becomes a failed outcome.
async fn one(s: &Scenario, seed: u64, dir: &Path) -> Outcome {
    println!("== {} seed {seed}", s.name);
    let name = s.name.clone();
    let started = std::time::Instant::now();
    match run(s, seed, dir, move |l| eprintln!("[{name}] {l}")).await {
        Ok(o) => {
            println!(
                "== {} seed {seed}: {}{}",
                s.name,
                if o.passed { "PASS" } else { "FAIL" },
                o.failures
                    .iter()
                    .map(|f| format!("\n   {f}"))
                    .collect::<String>()
            );
            o
        }
        Err(e) => {
            println!("== {} seed {seed}: FAIL (could not run: {e:#})", s.name);
            Outcome {
                scenario: s.name.clone(),
                seed,
                passed: false,
                failures: vec![format!("could not run: {e:#}")],
                violations: 0,
                signed_share: 0.0,
                handover_completed: None,
                seconds: started.elapsed().as_secs_f64(),
                dir: dir.to_path_buf(),
            }
        }
    }
}

fn table(outcomes: &[Outcome]) {
    println!(
        "\n{:<34} {:>6} {:>6} {:>10} {:>9} {:>8}  DIR",
        "SCENARIO", "SEED", "RESULT", "VIOLATIONS", "SIGNED %", "HANDOVER"
    );
    for o in outcomes {
        println!(
            "{:<34} {:>6} {:>6} {:>10} {:>9.1} {:>8}  {}",
            o.scenario,
            o.seed,
            if o.passed { "PASS" } else { "FAIL" },
            o.violations,
            o.signed_share * 100.0,
            match o.handover_completed {
                Some(true) => "done",
                Some(false) => "stuck",
                None => "-",
            },
            o.dir.display()
        );
    }
    let total: f64 = outcomes.iter().map(|o| o.seconds).sum();
    let passed = outcomes.iter().filter(|o| o.passed).count();
    println!("{} of {} passed in {:.0} s", passed, outcomes.len(), total);
    // The plain closing line CI reads: "drills: N passed, N failed".
    println!(
        "drills: {} passed, {} failed",
        passed,
        outcomes.len() - passed
    );
}
