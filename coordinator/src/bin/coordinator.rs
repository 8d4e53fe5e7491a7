//! `coordinator`: one node of the failover coordinator cluster.
//!
//! `coordinator run --config FILE` starts the node (config from the file, then `FAILOVER_*`
//! environment variables, then flags). `coordinator hash-token` reads a token on standard
//! input and prints the SHA-256 to put in a config file.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use coordinator::config::{token_hash, Config};
use coordinator::http::router;
use coordinator::node::Node;

#[derive(Parser)]
#[command(
    name = "coordinator",
    version,
    about = "Failover coordinator node (Raft + RocksDB)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node.
    Run {
        /// Config file (TOML; see config/coordinator.example.toml).
        #[arg(long, env = "FAILOVER_CONFIG")]
        config: PathBuf,
        /// Override `listen`.
        #[arg(long, env = "FAILOVER_LISTEN")]
        listen: Option<String>,
        /// Override `data_dir`.
        #[arg(long, env = "FAILOVER_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Print the SHA-256 of a token read from standard input (for `token_sha256` fields).
    HashToken,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::HashToken => {
            let mut t = String::new();
            std::io::stdin()
                .read_line(&mut t)
                .context("read token from stdin")?;
            println!("{}", token_hash(&t));
            Ok(())
        }
        Cmd::Run {
            config,
            listen,
            data_dir,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,openraft=warn".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("read config {}", config.display()))?;
            let mut cfg = Config::from_toml(&text).map_err(anyhow::Error::msg)?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            cfg.validate()
                .map_err(|e| anyhow::anyhow!("invalid config {}:\n{e}", config.display()))?;
            tokio::runtime::Runtime::new()
                .context("start tokio runtime")?
                .block_on(run(cfg))
        }
    }
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let listen = cfg.listen.clone();
    let node = Node::start(cfg).await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(node.clone().run_finality_poller());
    tracing::info!(node = node.id, %url, "coordinator listening");
    println!("READY {url}");
    let app = router(node.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serve HTTP")?;
    tracing::info!(node = node.id, "shutting down");
    node.raft.shutdown().await.ok();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
