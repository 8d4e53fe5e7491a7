//! `signer-agent`: the Web3Signer-compatible signer that records through the coordinators.
//!
//! ```text
//! signer-agent run --config signer-agent.toml [--listen 127.0.0.1:9000 …]
//! signer-agent check-config --config signer-agent.toml
//! ```
//!
//! Config values come from the file, then `SIGNER_AGENT_*` environment variables, then flags.
//! Logs go to stderr (filter with `RUST_LOG`); stdout carries only the `READY <url>` line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use signer_agent::{Config, Overrides};

/// Web3Signer-compatible remote signer that records every slashable message through the
/// failover coordinators before signing it.
#[derive(Debug, Parser)]
#[command(name = "signer-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the agent; prints `READY <url>` once listening with every key loaded.
    Run(ConfigArgs),
    /// Validate the configuration and print the effective values as TOML.
    CheckConfig(ConfigArgs),
}

#[derive(Debug, clap::Args)]
struct ConfigArgs {
    /// TOML config file (see config/signer-agent.example.toml).
    #[arg(long, short = 'c', env = "SIGNER_AGENT_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

impl ConfigArgs {
    fn load(&self) -> anyhow::Result<Config> {
        Config::load(self.config.as_deref(), &self.overrides)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig(args) => {
            let cfg = args.load()?;
            print!(
                "{}",
                toml::to_string(&cfg).context("print the effective config")?
            );
            Ok(())
        }
        Command::Run(args) => {
            let cfg = args.load()?;
            signer_agent::init_logging();
            let runtime = tokio::runtime::Runtime::new().context("start the Tokio runtime")?;
            // A failure is reported once, by `main`'s error exit.
            let result = runtime.block_on(signer_agent::run(cfg, shutdown_signal()));
            // Do not wait long for a keystore decryption still running on a blocking thread.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            result
        }
    }
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining requests");
}
