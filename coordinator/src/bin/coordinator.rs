//! `coordinator`: one node of the failover coordinator cluster, and its offline tools.
//!
//! - `coordinator run --config FILE` starts the node (config from the file, then `FAILOVER_*`
//!   environment variables, then flags). SIGHUP re-reads the file and replaces the
//!   `[[operators]]` and `[[agents]]` in force when the whole file is valid (`access` module),
//!   and reloads the TLS certificate, key and CA from their files (`[tls]`); a bad file keeps
//!   the old ones and logs the problems at ERROR.
//! - `coordinator certs ca|issue|show`: a small CA for a lab or a small deployment
//!   (`failover_common::tls::issue`; docs/tls.md for an existing PKI).
//! - `coordinator reload --config FILE [--pid PID]` checks a file as SIGHUP would and, with
//!   `--pid`, sends SIGHUP to the running node.
//! - `coordinator hash-token` reads a token on standard input and prints its SHA-256 for a
//!   `token_sha256` field; `coordinator gen-token` prints a new random token (and its hash on
//!   standard error).
//! - `coordinator backup --url URL --out FILE` (online, operator token in `FAILOVER_TOKEN` or
//!   `--token-file`) or `coordinator backup --config FILE --out FILE` (offline, a stopped
//!   node's data directory); `coordinator verify-backup --backup FILE`;
//!   `coordinator restore --backup FILE --config FILE [--floor-epoch E]` seeds a fresh node as a
//!   new one-node cluster (`backup` module).
//!
//! Exit status: 0 on success, 1 on any error (the message is printed on standard error).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use coordinator::access::AccessList;
use coordinator::backup::{self, RestoreOptions, DEFAULT_FLOOR_MARGIN_EPOCHS};
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

/// Overrides of the file's values, applied at start and at every reload.
#[derive(clap::Args, Clone, Debug, Default)]
struct Overrides {
    /// Override `listen`.
    #[arg(long, env = "FAILOVER_LISTEN")]
    listen: Option<String>,
    /// Override `data_dir`.
    #[arg(long, env = "FAILOVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node. SIGHUP reloads [[operators]] and [[agents]] from the config file.
    Run {
        /// Config file (TOML; see config/coordinator.example.toml).
        #[arg(long, env = "FAILOVER_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Check a config file as a reload would; with --pid, then send SIGHUP to the node.
    Reload {
        /// Config file the running node was started with.
        #[arg(long, env = "FAILOVER_CONFIG")]
        config: PathBuf,
        /// Process id of the running node (e.g. `systemctl show -p MainPID --value coordinator`).
        #[arg(long)]
        pid: Option<i32>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Create a cluster CA, issue node, agent and operator certificates, or show one.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Print the SHA-256 of a token read from standard input (for `token_sha256` fields).
    /// Surrounding whitespace and the newline are ignored, as the server ignores them.
    HashToken,
    /// Print a new random token (256 bits, hex) on standard output and the config line with
    /// its hash on standard error.
    GenToken,
    /// Write a backup of the cluster's committed state.
    Backup {
        /// Backup file to write (refused if it exists, unless --force).
        #[arg(long)]
        out: PathBuf,
        /// Online: any coordinator's base URL, e.g. http://10.0.1.5:7101 (a linearizable read
        /// served by the leader).
        #[arg(long, conflicts_with = "config", required_unless_present = "config")]
        url: Option<String>,
        /// Online: file holding the operator token (else FAILOVER_TOKEN; not needed with an
        /// operator certificate).
        #[arg(long, requires = "url")]
        token_file: Option<PathBuf>,
        #[command(flatten)]
        tls: ClientTlsArgs,
        /// Offline: the config of a STOPPED node; its data directory is read read-only.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overwrite an existing --out file.
        #[arg(long)]
        force: bool,
        /// Online: request timeout in seconds.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
    /// Verify a backup file (checksum, format) and print its header.
    VerifyBackup {
        /// Backup file.
        #[arg(long)]
        backup: PathBuf,
    },
    /// Restore a backup into a FRESH node (empty data_dir) as a new one-node cluster, fenced,
    /// with the restore floor raised to the chain head.
    Restore {
        /// Backup file (written by `coordinator backup`).
        #[arg(long)]
        backup: PathBuf,
        /// Config of the new node: a new cluster token, an empty data_dir, the same chain.
        #[arg(long, env = "FAILOVER_CONFIG")]
        config: PathBuf,
        /// Restore floor epoch; must be at or above the chain's current epoch. Without it, the
        /// floor is the beacon nodes' wall-clock epoch + --floor-margin-epochs.
        #[arg(long)]
        floor_epoch: Option<u64>,
        /// Epochs added to the beacon nodes' wall-clock epoch.
        #[arg(long, default_value_t = DEFAULT_FLOOR_MARGIN_EPOCHS)]
        floor_margin_epochs: u64,
        /// Operator name for the audit entry (default: $USER).
        #[arg(long, env = "USER", default_value = "unknown")]
        operator: String,
        /// Override `data_dir`.
        #[arg(long, env = "FAILOVER_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// TLS options of a tool that calls a coordinator over `https://`.
#[derive(clap::Args, Clone, Debug, Default)]
struct ClientTlsArgs {
    /// PEM file of the cluster CA, to check the coordinator's certificate.
    #[arg(long, env = "FAILOVER_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// PEM file of an operator client certificate (`coordinator certs issue --operator`).
    #[arg(long, env = "FAILOVER_CERT_FILE", requires_all = ["key_file", "ca_file"])]
    cert_file: Option<PathBuf>,
    /// Its private key (mode 0600).
    #[arg(long, env = "FAILOVER_KEY_FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// A reqwest builder checking coordinators against the CA, presenting the certificate
    /// when one is given; a plain builder without `--ca-file`.
    fn builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        let cert = self.cert_file.as_deref().zip(self.key_file.as_deref());
        Ok(failover_common::tls::tool_client(
            self.ca_file.as_deref(),
            cert,
            failover_common::tls::PeerRole::Node,
        )?)
    }
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Create a cluster CA: DIR/ca.pem and DIR/ca-key.pem (0600; keep it offline).
    Ca {
        /// Directory to write into; an existing ca-key.pem is never overwritten.
        #[arg(long)]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "failover cluster CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a certificate signed by DIR/ca.pem and DIR/ca-key.pem, written as
    /// OUT/<stem>.pem and OUT/<stem>-key.pem.
    Issue {
        /// Directory holding ca.pem and ca-key.pem.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Directory to write into (default: --ca-dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A coordinator's certificate, naming its node id (serverAuth and clientAuth).
        #[arg(long, group = "kind")]
        node: Option<u64>,
        /// A signer agent's certificate, naming its agent id (serverAuth and clientAuth).
        #[arg(long, group = "kind")]
        agent: Option<String>,
        /// An operator's client certificate, naming the operator (clientAuth).
        #[arg(long, group = "kind")]
        operator: Option<String>,
        /// A client certificate without a failover identity, e.g. for a validator client
        /// of an agent's Web3Signer API (clientAuth).
        #[arg(long, group = "kind")]
        client: Option<String>,
        /// A server certificate without a failover identity, e.g. for a beacon node behind the
        /// cluster CA (`[beacon] ca_file`); needs --host.
        #[arg(long, group = "kind")]
        server: Option<String>,
        /// DNS name or IP address the holder is reached at (repeat; servers need one for
        /// every name clients dial).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Print what a certificate says: identity, validity, SHA-256 fingerprint (for a
    /// known-clients file).
    Show {
        /// PEM certificate file.
        #[arg(long)]
        cert: PathBuf,
    },
}

fn certs(cmd: CertsCmd) -> anyhow::Result<()> {
    use failover_common::tls::issue::{issue, new_ca, write_pair, LeafKind, LeafSpec};
    let show = |info: &failover_common::tls::CertInfo, files: Option<(&Path, &Path)>| {
        let mut v = serde_json::json!({
            "subject": info.subject,
            "identity": info.identity.as_ref().map(|i| i.uri()),
            "not_before": info.not_before,
            "not_after": info.not_after,
            "sha256_fingerprint": info.fingerprint_hex(),
        });
        if let Some((cert, key)) = files {
            v["cert_file"] = cert.display().to_string().into();
            v["key_file"] = key.display().to_string().into();
        }
        print_json(&v)
    };
    match cmd {
        CertsCmd::Ca { dir, name, days } => {
            let ca = new_ca(&name, days).map_err(anyhow::Error::msg)?;
            let w = write_pair(&dir, "ca", &ca).map_err(anyhow::Error::msg)?;
            show(&ca.info, Some((&w.cert, &w.key)))
        }
        CertsCmd::Issue {
            ca_dir,
            out,
            node,
            agent,
            operator,
            client,
            server,
            hosts,
            days,
        } => {
            let (kind, stem) = match (node, agent, operator, client, server) {
                (Some(n), ..) => (LeafKind::Node(n), format!("node-{n}")),
                (_, Some(a), ..) => (LeafKind::Agent(a.clone()), format!("agent-{a}")),
                (_, _, Some(o), ..) => (LeafKind::Operator(o.clone()), format!("operator-{o}")),
                (_, _, _, Some(c), _) => (LeafKind::Client, format!("client-{c}")),
                (_, _, _, _, Some(n)) => (LeafKind::Server, format!("server-{n}")),
                _ => anyhow::bail!(
                    "name what to issue: --node, --agent, --operator, --client or --server"
                ),
            };
            let serves = matches!(
                kind,
                LeafKind::Node(_) | LeafKind::Agent(_) | LeafKind::Server
            );
            if serves && hosts.is_empty() {
                anyhow::bail!(
                    "a node, agent or server certificate needs --host for every name or address it is dialled at (e.g. --host 10.0.1.5 --host coord-eu.example.net)"
                );
            }
            let ca_cert = std::fs::read_to_string(ca_dir.join("ca.pem"))
                .with_context(|| format!("read {}", ca_dir.join("ca.pem").display()))?;
            let ca_key = failover_common::secret_file::read_secret(&ca_dir.join("ca-key.pem"))?;
            let leaf = issue(&ca_cert, &ca_key, &LeafSpec::for_days(kind, hosts, days))
                .map_err(anyhow::Error::msg)?;
            let out = out.unwrap_or(ca_dir);
            let w = write_pair(&out, &stem, &leaf).map_err(anyhow::Error::msg)?;
            show(&leaf.info, Some((&w.cert, &w.key)))
        }
        CertsCmd::Show { cert } => {
            let der = failover_common::tls::read_certs(&cert)?;
            let info =
                failover_common::tls::CertInfo::parse(&der[0]).map_err(anyhow::Error::msg)?;
            show(&info, None)
        }
    }
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("start tokio runtime")
}

/// Reads, overrides and validates the config file (every problem in the error).
fn load_config(path: &Path, o: &Overrides) -> anyhow::Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("read config {}", path.display()))?;
    let mut cfg = Config::from_toml(&text).map_err(anyhow::Error::msg)?;
    if let Some(l) = &o.listen {
        cfg.listen = l.clone();
    }
    if let Some(d) = &o.data_dir {
        cfg.data_dir = d.clone();
    }
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("invalid config {}:\n{e}", path.display()))?;
    Ok(cfg)
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::HashToken => {
            let mut t = String::new();
            std::io::stdin()
                .read_line(&mut t)
                .context("read token from stdin")?;
            anyhow::ensure!(!t.trim().is_empty(), "no token on standard input");
            println!("{}", token_hash(&t));
            Ok(())
        }
        Cmd::Certs(cmd) => certs(cmd),
        Cmd::GenToken => {
            use rand::RngCore;
            let mut b = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut b);
            let token = hex::encode(b);
            println!("{token}");
            eprintln!("token_sha256 = \"{}\"", token_hash(&token));
            Ok(())
        }
        Cmd::Run { config, overrides } => {
            init_logs();
            let cfg = load_config(&config, &overrides)?;
            runtime()?.block_on(run(cfg, config, overrides))
        }
        Cmd::Reload {
            config,
            pid,
            overrides,
        } => {
            let cfg = load_config(&config, &overrides)?;
            let token = match &cfg.cluster_token_file {
                Some(f) => Some(
                    failover_common::secret_file::read_secret(f)
                        .context("read the cluster token")?,
                ),
                None => None,
            };
            let list = AccessList::new(
                &cfg.operators,
                &cfg.agents,
                token.as_deref().map(|t| t.as_str()),
            )
            .map_err(|e| anyhow::anyhow!("invalid [[operators]] / [[agents]]:\n{e}"))?;
            let tls = match &cfg.tls {
                Some(files) => Some(
                    failover_common::tls::Tls::load(files)
                        .context("[tls]")?
                        .leaf(),
                ),
                None => None,
            };
            print_json(&serde_json::json!({
                "config": config,
                "valid": true,
                "operators": list.operators(),
                "agents": list.agents(),
                "tls_cert": tls.as_ref().map(|l| serde_json::json!({
                    "identity": l.identity.as_ref().map(|i| i.uri()),
                    "not_after": l.not_after,
                    "sha256_fingerprint": l.fingerprint_hex(),
                })),
            }))?;
            if let Some(pid) = pid {
                anyhow::ensure!(pid > 0, "--pid must be a process id");
                // SAFETY: kill(2) with a positive pid and a valid signal number has no memory
                // effects in this process.
                let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
                anyhow::ensure!(
                    rc == 0,
                    "send SIGHUP to {pid}: {}",
                    std::io::Error::last_os_error()
                );
                eprintln!("sent SIGHUP to {pid}; the node logs \"access reloaded\" or the reason it kept the old list");
            }
            Ok(())
        }
        Cmd::Backup {
            out,
            url,
            token_file,
            tls,
            config,
            force,
            timeout_secs,
        } => {
            let bytes = match (url, config) {
                (Some(url), _) => {
                    let token = match token_file {
                        Some(f) => Some(
                            failover_common::secret_file::read_secret(&f)
                                .context("read the operator token")?
                                .to_string(),
                        ),
                        None => std::env::var("FAILOVER_TOKEN").ok(),
                    };
                    anyhow::ensure!(
                        token.is_some() || tls.cert_file.is_some(),
                        "no operator credentials: pass --token-file, set FAILOVER_TOKEN, or give \
                         an operator certificate (--cert-file, --key-file)"
                    );
                    let client = tls.builder()?;
                    runtime()?.block_on(fetch_backup(
                        client,
                        &url,
                        token.as_deref().map(str::trim),
                        Duration::from_secs(timeout_secs),
                    ))?
                }
                (None, Some(config)) => {
                    let cfg = load_config(&config, &Overrides::default())?;
                    eprintln!(
                        "offline backup of node {} ({}): this node's applied state; for a running \
                         cluster prefer --url (the leader's committed state)",
                        cfg.node_id,
                        cfg.data_dir.display()
                    );
                    backup::offline_backup(&cfg)?
                }
                (None, None) => anyhow::bail!("pass --url URL (online) or --config FILE (offline)"),
            };
            // Never write what we could not read back.
            let b = backup::decode(&bytes).context("the backup received does not verify")?;
            backup::write_file(&out, &bytes, force)?;
            print_json(&serde_json::json!({
                "out": out,
                "bytes": bytes.len(),
                "header": b.header,
            }))
        }
        Cmd::VerifyBackup { backup: path } => {
            let b = backup::read_file(&path)?;
            print_json(&serde_json::json!({
                "backup": path,
                "valid": true,
                "header": b.header,
                "holder": b.state.authority.holder,
                "token": b.state.authority.token,
                "handovers": b.state.handovers.len(),
                "agents": b.state.agents.keys().collect::<Vec<_>>(),
                "finalized_epoch": b.state.finalized_epoch(),
            }))
        }
        Cmd::Restore {
            backup: path,
            config,
            floor_epoch,
            floor_margin_epochs,
            operator,
            data_dir,
        } => {
            let cfg = load_config(
                &config,
                &Overrides {
                    listen: None,
                    data_dir,
                },
            )?;
            let b = backup::read_file(&path)?;
            let opts = RestoreOptions {
                floor_epoch,
                floor_margin_epochs,
                operator,
            };
            let report = runtime()?.block_on(backup::restore(&cfg, &b, &opts))?;
            print_json(&report)?;
            eprintln!(
                "restored: start the node with `coordinator run --config {}`; authority is fenced \
                 (grant it with a handover once finality reaches epoch {}), and add nodes with \
                 membership changes",
                config.display(),
                report.floor.epoch
            );
            Ok(())
        }
    }
}

/// `GET {url}/v1/backup` with the operator `token` (or the client certificate of `client`
/// alone), bounded by `timeout`.
async fn fetch_backup(
    client: reqwest::ClientBuilder,
    url: &str,
    token: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    let mut req = client
        .timeout(timeout)
        .build()?
        .get(format!("{}/v1/backup", url.trim_end_matches('/')));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req
        .send()
        .await
        .with_context(|| format!("GET {url}/v1/backup"))?;
    let status = res.status();
    let bytes = res.bytes().await.context("read the backup")?;
    anyhow::ensure!(
        status.is_success(),
        "GET {url}/v1/backup answered {status}: {}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
    );
    Ok(bytes.to_vec())
}

async fn run(cfg: Config, config_path: PathBuf, overrides: Overrides) -> anyhow::Result<()> {
    let listen = cfg.listen.clone();
    let node = Node::start(cfg).await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let scheme = if node.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", listener.local_addr()?);
    // Operators may come with a token alone, so the API listener asks for a client certificate
    // without requiring one; the Raft listener serves coordinators only and requires one.
    let api_tls = node
        .tls
        .as_ref()
        .map(|t| t.server_config(failover_common::tls::ClientAuth::Optional));
    let raft_tls = node
        .tls
        .as_ref()
        .map(|t| t.server_config(failover_common::tls::ClientAuth::Required));
    let raft_listener = match &node.config.raft_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("bind the Raft listener {addr}"))?;
            tracing::info!(node = node.id, raft = %l.local_addr()?, "Raft and internal RPC on their own listener");
            Some(l)
        }
        None => None,
    };
    tokio::spawn(node.clone().run_finality_poller());
    tokio::spawn(node.clone().run_liveness_poller());
    tokio::spawn(reload_on_sighup(node.clone(), config_path, overrides));
    tracing::info!(node = node.id, %url, "coordinator listening");
    println!("READY {url}");
    let limits = node.config.limits.listener();
    match raft_listener {
        None => {
            failover_common::serve::serve(
                listener,
                router(node.clone()),
                limits,
                node.listener_stats.clone(),
                api_tls,
                shutdown_signal(),
            )
            .await
        }
        Some(raft_listener) => {
            // Both listeners stop on the one signal.
            let (tx, rx) = tokio::sync::watch::channel(false);
            let stop = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            let internal = tokio::spawn(failover_common::serve::serve(
                raft_listener,
                coordinator::http::internal_router(node.clone()),
                limits,
                node.raft_listener_stats.clone(),
                raft_tls,
                stop(rx.clone()),
            ));
            let api = tokio::spawn(failover_common::serve::serve(
                listener,
                coordinator::http::api_router(node.clone()),
                limits,
                node.listener_stats.clone(),
                api_tls,
                stop(rx),
            ));
            shutdown_signal().await;
            let _ = tx.send(true);
            let _ = tokio::join!(internal, api);
        }
    }
    tracing::info!(node = node.id, "shutting down");
    node.raft.shutdown().await.ok();
    Ok(())
}

/// On every SIGHUP: reload the TLS material from its files (`[tls]`; the old material stays
/// on any error), then re-read the config file and put its `[[operators]]` and `[[agents]]`
/// in force if the whole file is valid; otherwise keep the old ones and log why at ERROR.
async fn reload_on_sighup(node: Arc<Node>, path: PathBuf, overrides: Overrides) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP: access reload disabled");
            return;
        }
    };
    while hup.recv().await.is_some() {
        if let Some(tls) = &node.tls {
            match tls.reload() {
                Ok(leaf) => {
                    node.metrics.tls_reloads.with_label_values(&["ok"]).inc();
                    tracing::info!(
                        fingerprint = %leaf.fingerprint_hex(),
                        not_after = leaf.not_after,
                        "TLS certificate reloaded; new connections use it"
                    );
                }
                Err(e) => {
                    node.metrics.tls_reloads.with_label_values(&["error"]).inc();
                    tracing::error!(error = %e, "TLS reload refused: the certificate in force stays");
                }
            }
        }
        let result = load_config(&path, &overrides)
            .map_err(|e| format!("{e:#}"))
            .and_then(|cfg| node.reload_access(&cfg));
        match result {
            Ok(summary) => {
                tracing::info!(
                    config = %path.display(),
                    summary = %serde_json::to_string(&summary).unwrap_or_default(),
                    "access reloaded"
                );
                if !summary.restart_needed.is_empty() {
                    tracing::warn!(
                        keys = ?summary.restart_needed,
                        "these config keys changed but only take effect at the next restart"
                    );
                }
            }
            Err(e) => tracing::error!(
                config = %path.display(),
                error = %e,
                "access reload refused: the operators and agents in force are unchanged"
            ),
        }
    }
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
