//! `failoverctl`: the operator CLI of the failover coordinator.
//!
//! Talks to any coordinator over the operator HTTP API (`--coordinator`, several allowed,
//! tried in order on connection failure). Output is a human table by default and one JSON
//! document per command with `--output json`.
//!
//! Exit codes: 0 success; 1 refused by the coordinator (4xx: conflict, not found, two-person
//! rule…); 2 usage error; 3 unavailable (no quorum, timeout, unreachable); 4 `wait` timed out,
//! or `cluster add-learner`'s learner did not catch up in time (it stays a learner).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use failover_protocol::{
    AbortBody, AddLearnerBody, ApprovalPolicy, ApproveBody, AuditEntry, CallError, ChangeOutcome,
    ChangeVotersBody, CoordinatorClient, ErrorCode, Handover, HandoverRequestBody, HandoverState,
    MemberRole, MembersView, Method, Retry, StatusView,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// `println!` for a command-line tool in a pipe: a closed stdout (`failoverctl audit | head`)
/// ends the process quietly with status 0 instead of panicking; any other write error panics
/// as `println!` does.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("failed printing to stdout: {e}");
        }
    }};
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(Parser)]
#[command(
    name = "failoverctl",
    version,
    about = "Operate the validator failover coordinator"
)]
struct Cli {
    /// Coordinator base URL(s), comma-separated; any node works.
    #[arg(
        long,
        env = "FAILOVER_COORDINATOR",
        value_delimiter = ',',
        global = true
    )]
    coordinator: Vec<String>,
    /// File holding the operator bearer token (mode 0600; refused when others can read it).
    /// Without it the token comes from the `FAILOVER_TOKEN` environment variable. There is
    /// no flag for the token itself: a command line shows in `ps` to every user.
    #[arg(long, env = "FAILOVER_TOKEN_FILE", global = true)]
    token_file: Option<std::path::PathBuf>,
    /// PEM file of the cluster CA: coordinators at `https://` URLs must present a node
    /// certificate of it.
    #[arg(long, env = "FAILOVER_CA_FILE", global = true)]
    ca_file: Option<std::path::PathBuf>,
    /// PEM file of an operator client certificate (`coordinator certs issue --operator`);
    /// with it no token is needed.
    #[arg(long, env = "FAILOVER_CERT_FILE", global = true, requires = "key_file")]
    cert_file: Option<std::path::PathBuf>,
    /// Its private key (mode 0600).
    #[arg(long, env = "FAILOVER_KEY_FILE", global = true, requires = "cert_file")]
    key_file: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table", global = true)]
    output: Output,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10, global = true)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Cluster status: leader, authority holder and token, finality, agents, handovers.
    Status,
    /// Handovers of signing authority.
    #[command(subcommand)]
    Handover(HandoverCmd),
    /// EIP-3076 slashing-protection interchange.
    #[command(subcommand)]
    Slashing(SlashingCmd),
    /// The audit record of operator actions.
    Audit {
        /// Only entries at or after this log index.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Raft membership: list members, add a learner, promote it to voter, remove a node.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The cluster's replicated approval policy: show it, propose a change, confirm another
    /// operator's proposal (a change needs two operators).
    #[command(subcommand)]
    Policy(PolicyCmd),
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// The policy in force, a pending change, and the answering node's configuration.
    Show,
    /// Propose a new policy; it applies once another operator confirms it.
    Propose {
        /// Distinct approvals to complete a handover (≥ 1).
        #[arg(long)]
        approvals: u32,
        /// Whether the requester's own approval does not count.
        #[arg(long, action = clap::ArgAction::Set)]
        two_person_rule: bool,
        /// Distinct break-glass approvals (≥ --approvals).
        #[arg(long)]
        break_glass: u32,
    },
    /// Confirm the pending change (not as the operator who proposed it).
    Confirm,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Voters and learners, with each one's matched log index and lag as the leader sees it.
    Members,
    /// Add node ID, running at URL with an empty store and `bootstrap = false`, as a learner;
    /// returns once it has caught up with the leader's log (exit code 4 if it has not in time).
    AddLearner {
        /// Raft id of the new node (its config's `node_id`).
        #[arg(long)]
        id: u64,
        /// URL at which the other coordinators reach it, e.g. http://10.0.4.7:7101.
        #[arg(long)]
        url: String,
        /// Seconds to wait for the learner to catch up.
        #[arg(long = "wait-timeout", default_value_t = 60)]
        wait_timeout: u64,
    },
    /// Promote caught-up learner(s) to voter.
    Promote {
        /// Learner id(s), comma-separated or repeated.
        #[arg(long, value_delimiter = ',', required = true)]
        id: Vec<u64>,
    },
    /// Remove node(s) from the membership: voters and learners leave it completely.
    Remove {
        /// Member id(s), comma-separated or repeated.
        #[arg(long, value_delimiter = ',', required = true)]
        id: Vec<u64>,
        /// Keep removed voters as learners (they keep receiving the log) instead.
        #[arg(long)]
        keep_learner: bool,
    },
}

#[derive(Subcommand)]
enum SlashingCmd {
    /// Import an EIP-3076 interchange file (all-or-nothing; refused if it holds slashable
    /// data or another genesis validators root).
    Import {
        /// Interchange JSON file.
        file: std::path::PathBuf,
        /// Accept entries more than the coordinators' `limits.max_future_epochs` ahead of the
        /// chain (they would block those validators until then); recorded in the audit.
        #[arg(long)]
        allow_future: bool,
    },
    /// Export the committed history as an EIP-3076 interchange (format version 5).
    Export {
        /// Only these validators (0x pubkeys, comma-separated); all when absent.
        #[arg(long, value_delimiter = ',')]
        pubkeys: Vec<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum HandoverCmd {
    /// Request a handover to AGENT; fences the current holder at once.
    Request {
        /// Target agent id.
        #[arg(long)]
        to: String,
        /// Why (kept in the audit record).
        #[arg(long)]
        reason: String,
        /// Print only the new handover's id (for `ID=$(failoverctl handover request …)`).
        #[arg(long)]
        id_only: bool,
    },
    /// Approve handover ID (refused before finality covers the fenced holder's last message).
    Approve {
        /// Handover id.
        id: u64,
        /// Break-glass: approve without finality or liveness evidence (needs more approvals;
        /// audited loudly).
        #[arg(long)]
        break_glass: bool,
        /// A validator (0x-prefixed BLS pubkey) seen live outside the cluster that this
        /// approval acknowledges; repeat it for each. A handover stopped in
        /// `doppelganger_detected` completes only through break-glass approvals naming every
        /// validator it found (runbooks/doppelganger-detected.md).
        #[arg(long = "acknowledge-validator", value_name = "PUBKEY")]
        acknowledge_validator: Vec<failover_common::types::Pubkey>,
    },
    /// Abort handover ID; the old holder stays fenced.
    Abort {
        /// Handover id.
        id: u64,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List handovers.
    List {
        /// Only open handovers (fenced, awaiting finality or approval). At most one is open at
        /// a time.
        #[arg(long)]
        open: bool,
        /// Print only the ids, one per line (for `ID=$(failoverctl handover list --open
        /// --id-only)`).
        #[arg(long)]
        id_only: bool,
    },
    /// Show one handover.
    Show {
        /// Handover id.
        id: u64,
    },
    /// Wait until handover ID reaches STATE (awaiting_approval, completed, aborted).
    Wait {
        /// Handover id.
        id: u64,
        /// State to wait for.
        #[arg(long)]
        state: String,
        /// Give up after this many seconds (exit code 4).
        #[arg(long = "wait-timeout", default_value_t = 300)]
        wait_timeout: u64,
    },
}

enum Failure {
    Refused(String),
    Usage(String),
    Unavailable(String),
    Timeout(String),
}

impl Failure {
    fn exit(&self) -> ExitCode {
        let (code, msg) = match self {
            Failure::Refused(m) => (1, m),
            Failure::Usage(m) => (2, m),
            Failure::Unavailable(m) => (3, m),
            Failure::Timeout(m) => (4, m),
        };
        eprintln!("failoverctl: {msg}");
        ExitCode::from(code)
    }
}

/// The protocol's coordinator client, driven from this synchronous CLI. Every call may move to
/// the next `--coordinator` URL only when no connection was made ([`Retry::ConnectOnly`]): an
/// operator command that reached a node has an outcome there, and repeating it elsewhere could
/// act twice.
struct Client {
    api: CoordinatorClient,
    rt: tokio::runtime::Runtime,
    timeout: Duration,
}

impl Client {
    fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, Failure> {
        self.call_within(method, path, body, None)
    }

    /// Like [`Client::call`], with a per-request `timeout` instead of `--timeout` when given.
    fn call_within<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<T, Failure> {
        let deadline = tokio::time::Instant::now() + timeout.unwrap_or(self.timeout);
        self.rt
            .block_on(
                self.api
                    .call(method, path, body, deadline, Retry::ConnectOnly),
            )
            .map_err(Failure::from)
    }
}

impl From<CallError> for Failure {
    /// Exit codes: a refusal (4xx) is 1, `catch_up_timeout` is 4, anything else (5xx, no
    /// answer, an unreadable answer) is 3.
    fn from(e: CallError) -> Self {
        match e {
            CallError::Status {
                status,
                code,
                message,
                ..
            } => {
                let msg = format!("{status} ({code}): {message}");
                if code == ErrorCode::CatchUpTimeout {
                    Failure::Timeout(msg)
                } else if status >= 500 {
                    Failure::Unavailable(msg)
                } else {
                    Failure::Refused(msg)
                }
            }
            other => Failure::Unavailable(other.to_string()),
        }
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn print_members(v: &MembersView) {
    println!(
        "leader      {}",
        v.leader_id.map_or("none".into(), |l| l.to_string())
    );
    println!("term        {}", v.term);
    println!(
        "log         last {} commit {} applied {} (node {})",
        opt(v.last_log_index),
        opt(v.commit_index),
        opt(v.applied_index),
        v.answered_by
    );
    println!("membership  log index {}", opt(v.membership_log_index));
    if v.joint {
        println!(
            "JOINT       configurations {:?}: a change stopped half way; re-run it",
            v.configs
        );
    }
    if !v.replication_known {
        println!("(no leader answered: matched index and lag unknown)");
    }
    println!(
        "\n{:<5} {:<8} {:<6} {:<7} {:>9} {:>7}  URL",
        "ID", "ROLE", "LEADER", "REGION", "MATCHED", "LAG"
    );
    for m in v.voters.iter().chain(&v.learners) {
        let role = match m.role {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
        };
        println!(
            "{:<5} {:<8} {:<6} {:<7} {:>9} {:>7}  {}",
            m.id,
            role,
            if m.leader { "*" } else { "" },
            m.region.as_deref().unwrap_or("?"),
            opt(m.matched_index),
            opt(m.lag),
            m.url
        );
    }
}

fn print_change(json: bool, o: &ChangeOutcome) {
    if json {
        return print_json(o);
    }
    if o.changed {
        println!("{}: committed at log index {}", o.action, opt(o.log_index));
    } else {
        println!("{}: nothing to change", o.action);
    }
    for w in &o.warnings {
        eprintln!("WARNING: {w}");
    }
    println!();
    print_members(&o.members);
}

fn print_json<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serialize"));
}

fn fmt_state(h: &Handover) -> String {
    serde_json::to_value(h.state)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn print_handovers(hs: &[Handover]) {
    println!(
        "{:<6} {:<12} {:<12} {:<22} {:>8} {:>9} {:<12} REASON",
        "ID", "FROM", "TO", "STATE", "REQ_EP", "APPROVALS", "REQUESTED_BY"
    );
    for h in hs {
        println!(
            "{:<6} {:<12} {:<12} {:<22} {:>8} {:>9} {:<12} {}",
            h.id,
            h.from.as_deref().unwrap_or("-"),
            h.to,
            fmt_state(h),
            h.required_epoch,
            h.approvals.len(),
            h.requested_by,
            h.reason
        );
    }
}

/// Prints one handover as JSON or as a table with its timeline.
fn show(json: bool, h: &Handover) {
    if json {
        print_json(h)
    } else {
        print_handover(h)
    }
}

fn print_handover(h: &Handover) {
    print_handovers(std::slice::from_ref(h));
    if let Some(g) = &h.liveness {
        let last = g
            .first_epoch
            .saturating_add(g.epochs_required)
            .saturating_sub(1);
        let verdict = if !g.findings.is_empty() {
            format!("DOPPELGANGER: {} validator(s) seen live", g.findings.len())
        } else if g.passed() {
            "passed".to_string()
        } else {
            format!("{} of {} epochs clear", g.clear_epochs(), g.epochs_required)
        };
        println!(
            "  liveness gate: epochs {} to {last}: {verdict}",
            g.first_epoch
        );
        for f in &g.findings {
            println!(
                "    live: {} (index {}) in epoch {}, seen by {}",
                f.pubkey,
                f.index,
                f.epoch,
                f.seen_by.join(", ")
            );
        }
    }
    for e in &h.timeline {
        println!(
            "  {:<22} log index {:<8} at {} ms",
            e.event, e.log_index, e.at_ms
        );
    }
}

/// The operator token: from `--token-file` (checked like every secret file), else from the
/// `FAILOVER_TOKEN` environment variable; none is needed with an operator certificate
/// (`has_cert`).
fn operator_token(
    file: Option<&std::path::Path>,
    has_cert: bool,
) -> Result<Option<String>, Failure> {
    if let Some(f) = file {
        return failover_common::secret_file::read_secret(f)
            .map(|t| Some(t.to_string()))
            .map_err(|e| Failure::Usage(format!("operator token: {e}")));
    }
    match std::env::var("FAILOVER_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
        _ if has_cert => Ok(None),
        _ => Err(Failure::Usage(
            "no credentials: pass --token-file FILE (mode 0600), set FAILOVER_TOKEN, or give an \
             operator certificate (--cert-file, --key-file, --ca-file)"
                .into(),
        )),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let token = operator_token(cli.token_file.as_deref(), cli.cert_file.is_some())?;
    if cli.coordinator.is_empty() {
        return Err(Failure::Usage(
            "no coordinator: pass --coordinator URL or set FAILOVER_COORDINATOR".into(),
        ));
    }
    let timeout = Duration::from_secs(cli.timeout);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the I/O runtime: {e}")))?;
    let cert = cli.cert_file.as_deref().zip(cli.key_file.as_deref());
    let http = failover_common::tls::tool_client(
        cli.ca_file.as_deref(),
        cert,
        failover_common::tls::PeerRole::Node,
    )
    .map_err(|e| Failure::Usage(format!("TLS: {e}")))?;
    let api = CoordinatorClient::new(cli.coordinator.clone(), token, http, timeout)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let c = Client { api, rt, timeout };
    let json = cli.output == Output::Json;
    let none: Option<&()> = None;
    match cli.cmd {
        Cmd::Status => {
            let s: StatusView = c.call(Method::GET, "/v1/status", none)?;
            if json {
                print_json(&s);
            } else {
                println!("node        {} ({})", s.node_id, s.region);
                println!(
                    "leader      {}",
                    s.leader_id.map_or("none".into(), |l| format!(
                        "{l} {}",
                        s.leader_url.clone().unwrap_or_default()
                    ))
                );
                println!("term        {}", s.term);
                println!(
                    "log         last {} applied {}",
                    s.last_log_index.unwrap_or(0),
                    s.applied_index.unwrap_or(0)
                );
                println!(
                    "holder      {}",
                    s.holder.as_deref().unwrap_or("none (fenced)")
                );
                println!("token       {}", s.token);
                println!(
                    "finalized   {}",
                    s.finality.as_ref().map_or("none".into(), |f| format!(
                        "epoch {} root {}",
                        f.checkpoint.epoch, f.checkpoint.root
                    ))
                );
                println!("validators  {}", s.validators);
                println!("\nMEMBERS");
                for m in &s.members {
                    println!(
                        "  {:<4} {:<6} {}",
                        m.id,
                        m.region.as_deref().unwrap_or("?"),
                        m.url
                    );
                }
                println!("\nAGENTS");
                for a in &s.agents {
                    println!(
                        "  {:<12} {:<6} keys {:<6} records {:<8} heartbeat {}",
                        a.id,
                        a.region,
                        a.pubkeys,
                        a.records_accepted,
                        a.heartbeat_age_seconds
                            .map_or("never".into(), |s| format!("{s:.1}s ago"))
                    );
                }
                println!("\nHANDOVERS");
                print_handovers(&s.handovers);
            }
        }
        Cmd::Slashing(SlashingCmd::Import { file, allow_future }) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Failure::Usage(format!("read {}: {e}", file.display())))?;
            let doc: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Failure::Usage(format!("{} is not JSON: {e}", file.display())))?;
            let path = if allow_future {
                "/v1/slashing/import?allow_future=true"
            } else {
                "/v1/slashing/import"
            };
            let summary: failover_protocol::ImportSummary =
                c.call(Method::POST, path, Some(&doc))?;
            if json {
                print_json(&summary);
            } else {
                println!(
                    "imported {}: {} validators, {} blocks, {} attestations ({} new, {} already known, {} below the low watermarks)",
                    file.display(),
                    summary.validators,
                    summary.blocks,
                    summary.attestations,
                    summary.added,
                    summary.known,
                    summary.below_watermark
                );
                if summary.slashable > 0 {
                    eprintln!(
                        "WARNING: {} record(s) in the file are slashable with each other or with the existing history. \
                         They were kept as refusals, so nothing slashable with them will be signed, but these \
                         validators may already be slashable from their past signatures:",
                        summary.slashable
                    );
                    for pk in &summary.slashable_validators {
                        eprintln!("  {pk}");
                    }
                }
            }
        }
        Cmd::Slashing(SlashingCmd::Export { pubkeys, out }) => {
            let path = if pubkeys.is_empty() {
                "/v1/slashing/export".to_string()
            } else {
                format!("/v1/slashing/export?pubkeys={}", pubkeys.join(","))
            };
            let doc: serde_json::Value = c.call(Method::GET, &path, none)?;
            let text = serde_json::to_string_pretty(&doc).expect("serialize");
            match out {
                Some(f) => {
                    std::fs::write(&f, text + "\n")
                        .map_err(|e| Failure::Usage(format!("write {}: {e}", f.display())))?;
                    let n = doc["data"].as_array().map_or(0, |d| d.len());
                    eprintln!("exported {n} validators to {}", f.display());
                }
                None => println!("{text}"),
            }
        }
        Cmd::Policy(cmd) => match cmd {
            PolicyCmd::Show => {
                let v: failover_protocol::PolicyView = c.call(Method::GET, "/v1/policy", none)?;
                if json {
                    print_json(&v);
                } else {
                    let show = |p: &ApprovalPolicy| {
                        format!(
                            "approvals {}, two-person rule {}, break-glass {}",
                            p.approvals_required, p.two_person_rule, p.break_glass_approvals
                        )
                    };
                    println!(
                        "in force    {}",
                        v.policy
                            .as_ref()
                            .map_or("not set yet (each node's own config applies)".into(), show)
                    );
                    match &v.pending {
                        Some(p) => println!(
                            "pending     {} (proposed by {} at log index {}; another operator must confirm)",
                            show(&p.policy),
                            p.proposed_by,
                            p.log_index
                        ),
                        None => println!("pending     none"),
                    }
                    println!(
                        "configured  {} (this node's [handover])",
                        show(&v.configured)
                    );
                }
            }
            PolicyCmd::Propose {
                approvals,
                two_person_rule,
                break_glass,
            } => {
                let body = ApprovalPolicy {
                    approvals_required: approvals,
                    two_person_rule,
                    break_glass_approvals: break_glass,
                };
                let v: serde_json::Value = c.call(Method::POST, "/v1/policy", Some(&body))?;
                if json {
                    print_json(&v);
                } else {
                    println!(
                        "proposed; another operator confirms with: failoverctl policy confirm"
                    );
                }
            }
            PolicyCmd::Confirm => {
                let v: serde_json::Value = c.call(Method::POST, "/v1/policy/confirm", none)?;
                if json {
                    print_json(&v);
                } else {
                    println!("confirmed: the new policy is in force");
                }
            }
        },
        Cmd::Cluster(cmd) => {
            // A joint membership change commits two entries: give it more than one write.
            let change_timeout = Some(Duration::from_secs(cli.timeout.max(30)));
            match cmd {
                ClusterCmd::Members => {
                    let v: MembersView = c.call(Method::GET, "/v1/cluster/members", none)?;
                    if json {
                        print_json(&v)
                    } else {
                        print_members(&v)
                    }
                }
                ClusterCmd::AddLearner {
                    id,
                    url,
                    wait_timeout,
                } => {
                    let body = AddLearnerBody {
                        id,
                        url,
                        catch_up_timeout_ms: Some(wait_timeout.saturating_mul(1000)),
                    };
                    let o: ChangeOutcome = c.call_within(
                        Method::POST,
                        "/v1/cluster/learners",
                        Some(&body),
                        Some(Duration::from_secs(wait_timeout + cli.timeout.max(30))),
                    )?;
                    print_change(json, &o)
                }
                ClusterCmd::Promote { id } => {
                    let body = ChangeVotersBody {
                        promote: id,
                        ..Default::default()
                    };
                    change_voters(&c, &body, change_timeout, json)?
                }
                ClusterCmd::Remove { id, keep_learner } => {
                    let body = ChangeVotersBody {
                        remove: id,
                        keep_learner,
                        ..Default::default()
                    };
                    change_voters(&c, &body, change_timeout, json)?
                }
            }
        }
        Cmd::Audit { since } => {
            let a: Vec<AuditEntry> =
                c.call(Method::GET, &format!("/v1/audit?since={since}"), none)?;
            if json {
                print_json(&a);
            } else {
                println!(
                    "{:<8} {:<14} {:<10} {:<28} {:<6} OUTCOME / DETAIL",
                    "INDEX", "AT_MS", "OPERATOR", "ACTION", "HO"
                );
                for e in &a {
                    println!(
                        "{:<8} {:<14} {:<10} {:<28} {:<6} {} {}",
                        e.log_index,
                        e.at_ms,
                        e.operator,
                        e.action,
                        e.handover.map_or("-".into(), |h| h.to_string()),
                        e.outcome,
                        e.detail
                    );
                }
            }
        }
        Cmd::Handover(h) => match h {
            HandoverCmd::Request {
                to,
                reason,
                id_only,
            } => {
                let body = HandoverRequestBody { to, reason };
                let h: Handover = c.call(Method::POST, "/v1/handovers", Some(&body))?;
                if id_only {
                    println!("{}", h.id);
                } else {
                    show(json, &h)
                }
            }
            HandoverCmd::Approve {
                id,
                break_glass,
                acknowledge_validator,
            } => {
                let body = ApproveBody {
                    break_glass,
                    acknowledge_validators: acknowledge_validator,
                };
                let h: Handover = c.call(
                    Method::POST,
                    &format!("/v1/handovers/{id}/approve"),
                    Some(&body),
                )?;
                show(json, &h)
            }
            HandoverCmd::Abort { id, reason } => {
                let body = AbortBody { reason };
                let h: Handover = c.call(
                    Method::POST,
                    &format!("/v1/handovers/{id}/abort"),
                    Some(&body),
                )?;
                show(json, &h)
            }
            HandoverCmd::List { open, id_only } => {
                let mut hs: Vec<Handover> = c.call(Method::GET, "/v1/handovers", none)?;
                if open {
                    hs.retain(|h| h.state.is_open());
                }
                if id_only {
                    for h in &hs {
                        println!("{}", h.id);
                    }
                } else if json {
                    print_json(&hs)
                } else {
                    print_handovers(&hs)
                }
            }
            HandoverCmd::Show { id } => {
                let h: Handover = c.call(Method::GET, &format!("/v1/handovers/{id}"), none)?;
                show(json, &h)
            }
            HandoverCmd::Wait {
                id,
                state,
                wait_timeout,
            } => {
                let deadline = Instant::now() + Duration::from_secs(wait_timeout);
                loop {
                    match c.call::<(), Handover>(Method::GET, &format!("/v1/handovers/{id}"), none)
                    {
                        Ok(h) if fmt_state(&h) == state => {
                            if json {
                                print_json(&h)
                            } else {
                                print_handover(&h)
                            }
                            return Ok(());
                        }
                        Ok(h) if h.state == HandoverState::DoppelgangerDetected => {
                            print_handover(&h);
                            return Err(Failure::Refused(format!(
                                "handover {id} stopped in doppelganger_detected before reaching \
                                 {state}: validators of {} were seen live outside the cluster; \
                                 see runbooks/doppelganger-detected.md",
                                h.to
                            )));
                        }
                        Ok(h) if !h.state.is_open() => {
                            return Err(Failure::Refused(format!(
                                "handover {id} ended as {} before reaching {state}",
                                fmt_state(&h)
                            )))
                        }
                        Ok(_) | Err(Failure::Unavailable(_)) => {}
                        Err(e) => return Err(e),
                    }
                    if Instant::now() > deadline {
                        return Err(Failure::Timeout(format!(
                            "handover {id} did not reach {state} in {wait_timeout}s"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        },
    }
    Ok(())
}

/// `POST /v1/cluster/voters` (promote or remove) and prints the outcome.
fn change_voters(
    c: &Client,
    body: &ChangeVotersBody,
    timeout: Option<Duration>,
    json: bool,
) -> Result<(), Failure> {
    let o: ChangeOutcome =
        c.call_within(Method::POST, "/v1/cluster/voters", Some(body), timeout)?;
    print_change(json, &o);
    Ok(())
}

fn main() -> ExitCode {
    // SIGPIPE stays ignored (Rust's default). With its default action, a coordinator killed
    // mid-request (its socket reset while the request is written) killed failoverctl by signal
    // instead of letting it try the next coordinator: seen in the netns-wan-kill-leader drill.
    // A closed stdout (`failoverctl audit | head`) ends the process quietly through `println!`
    // below instead.
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.exit(),
    }
}
