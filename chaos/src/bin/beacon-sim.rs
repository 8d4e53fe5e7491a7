//! `beacon-sim`: a simulated beacon node for labs and drills (see `chaos::beacon_sim`).
//!
//! Prints exactly one line to stdout, `READY http://<addr>`, once the listener is bound (a lab
//! spawns the process and waits for it); logs go to stderr. Stops gracefully on SIGTERM or
//! Ctrl-C, finishing in-flight requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use chaos::beacon_sim::{self, SimConfig, SimState, SystemClock, DEFAULT_GENESIS_VALIDATORS_ROOT};
use clap::Parser;
use failover_common::types::{Root, Version};
use std::io::Write;

/// A simulated Ethereum beacon node serving the Beacon API subset the coordinator uses, with
/// chaos controls under /sim/.
#[derive(Parser, Debug)]
#[command(name = "beacon-sim", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (the READY line shows the real one).
    #[arg(long, default_value = "127.0.0.1:5052")]
    listen: SocketAddr,
    /// Serve HTTPS with this certificate (PEM; with --tls-key and --tls-ca).
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<std::path::PathBuf>,
    /// Its private key (PEM, mode 0600).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// The CA the certificate chains to (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_ca: Option<std::path::PathBuf>,
    /// Slot duration in seconds; fractional values (e.g. 0.5) are allowed to the millisecond.
    #[arg(long, default_value_t = 12.0)]
    seconds_per_slot: f64,
    /// Slots per epoch (32 mainnet, 8 minimal).
    #[arg(long, default_value_t = 32)]
    slots_per_epoch: u64,
    /// Genesis validators root, 0x + 64 hex digits. Give nodes different roots to simulate a
    /// node on another chain.
    #[arg(long, default_value = DEFAULT_GENESIS_VALIDATORS_ROOT)]
    genesis_validators_root: Root,
    /// Genesis time, Unix seconds (default: the moment the process starts).
    #[arg(long)]
    genesis_time: Option<u64>,
    /// Epochs the finalized checkpoint trails the current epoch (at least 1).
    #[arg(long, default_value_t = 2)]
    finality_lag_epochs: u64,
    /// GENESIS_FORK_VERSION, 0x + 8 hex digits.
    #[arg(long, default_value = "0x00000000")]
    genesis_fork_version: Version,
    /// Fork version in force from --fork-epoch on (default Deneb under mainnet numbering).
    #[arg(long, default_value = "0x04000000")]
    current_fork_version: Version,
    /// Epoch at which --current-fork-version takes effect.
    #[arg(long, default_value_t = 0)]
    fork_epoch: u64,
    /// Validator registry: interop validators 0..N, all active since genesis.
    #[arg(long, default_value_t = 0)]
    validators: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let genesis_time = match args.genesis_time {
        Some(t) => t,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("system clock before 1970")?
            .as_secs(),
    };
    let config = SimConfig {
        genesis_time,
        seconds_per_slot: args.seconds_per_slot,
        slots_per_epoch: args.slots_per_epoch,
        finality_lag_epochs: args.finality_lag_epochs,
        genesis_validators_root: args.genesis_validators_root,
        genesis_fork_version: args.genesis_fork_version,
        current_fork_version: args.current_fork_version,
        fork_epoch: args.fork_epoch,
        validators: args.validators,
    };
    let state = SimState::new(config.clone(), Arc::new(SystemClock)).context("configuration")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    let addr = listener.local_addr()?;
    let tls = match (args.tls_ca, args.tls_cert, args.tls_key) {
        (Some(ca_file), Some(cert_file), Some(key_file)) => Some(
            failover_common::tls::Tls::load(&failover_common::tls::TlsFiles {
                ca_file,
                cert_file,
                key_file,
            })?
            .server_config(failover_common::tls::ClientAuth::Optional),
        ),
        _ => None,
    };
    tracing::info!(?config, %addr, tls = tls.is_some(), "beacon-sim listening");
    {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {scheme}://{addr}")?;
        out.flush()?;
    }
    beacon_sim::serve(listener, state, tls, shutdown_signal()).await?;
    tracing::info!("beacon-sim stopped");
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(%e, "cannot listen for Ctrl-C");
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
                tracing::error!(%e, "cannot listen for SIGTERM");
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
}
