//! `failover-bench`: end-to-end signing throughput and latency of one signer agent in front of
//! a three-node coordinator cluster, against raw blst signing on the same machine.
//!
//! The bench starts a lab ([`super::Lab`]) with three coordinators, one beacon simulator and
//! one agent holding `n` interop validators (cheap-KDF keystores: this measures signing, not
//! key loading), grants it authority through `failoverctl`, then sends rounds of `n`
//! concurrent `ATTESTATION` requests, one per validator, each round with a new target epoch
//! (`source = target - 1`). A first warm-up round opens the connections and is not counted.
//!
//! Invariants:
//! - every request of a round is in flight before the round's clock can stop, and the round's
//!   wall time runs from the first send to the last answer;
//! - every signature counted is verified with blst afterwards (outside the timed part);
//! - raw signing is measured with the same blst and the same kind of 32-byte signing roots,
//!   on one thread and on every core, after the rounds, while the cluster idles.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use failover_common::eth;
use failover_common::interop;
use failover_common::types::Root;
use tokio::task::JoinSet;

use super::duties::{attestation_duty, send_duty, AgentEndpoint, DutyRecord, DutySim};
use super::summary::reason_label;
use super::{KdfChoice, Lab, LabConfig};

/// Bench parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Lab directory (wiped).
    pub dir: PathBuf,
    /// Validators, and requests per round.
    pub validators: u64,
    /// Timed rounds (plus one warm-up round).
    pub rounds: u64,
    /// Signatures per thread for the raw blst measurement.
    pub raw_signatures: u64,
    /// Requests sent one at a time after the rounds (single-request latency).
    pub sequential: u64,
    /// Plain HTTP on every link instead of TLS.
    pub plaintext: bool,
    /// WAN round trips between regions through the lab's per-link proxies
    /// ([`super::netns::WAN_RTT_MS`]), with the Raft timing the lab uses for them.
    pub wan: bool,
    /// Planned handovers, then leader kills, timed after the throughput figures
    /// ([`super::failover_times`]); 0 skips both.
    pub failover_runs: u64,
    /// Raft election timeout range (ms) instead of the lab's; `None` keeps it.
    pub raft_election_ms: Option<(u64, u64)>,
}

/// Mean time per request of each phase of the sign path during the sequential (idle) phase,
/// from the histograms the agent and the coordinators export (`_sum` / `_count` deltas over
/// the phase), in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PhaseBreakdown {
    /// Requests the agent answered in the phase (`signer_agent_sign_duration_seconds_count`).
    pub requests: f64,
    /// The agent's own time, arrival to answer (`signer_agent_sign_duration_seconds`).
    pub agent: f64,
    /// The agent's record batch round trip to a committed answer
    /// (`signer_agent_record_batch_duration_seconds`).
    pub batch_round_trip: f64,
    /// Record batches per request in the phase.
    pub batches_per_request: f64,
    /// A coordinator's time from receiving a batch to its committed answer, Raft append,
    /// replication, commit and apply (`failover_record_batch_seconds`, every coordinator; a
    /// forwarded batch counts at the follower and at the leader).
    pub coordinator: f64,
    /// Batches the coordinators handled per agent batch (2 when every batch is forwarded).
    pub coordinator_batches_per_batch: f64,
}

/// CPU time (user + system, seconds) of a process from `/proc/<pid>/stat`; `None` when it
/// cannot be read (not Linux, or the process is gone).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: fields count from after it.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name and state.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the running system; no memory is touched.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) / ticks as f64)
}

/// Where the machine's CPU went during the timed burst rounds: CPU seconds per process of
/// the lab (and of the bench itself, which plays the validator client), next to the wall
/// time and the core count.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CpuBreakdown {
    /// `(process, CPU seconds)` over the timed rounds.
    pub processes: Vec<(String, f64)>,
    /// Wall time of the timed rounds (seconds).
    pub wall: f64,
}

fn cpu_snapshot(lab: &Lab) -> Vec<(String, Option<f64>)> {
    let mut out = vec![(
        "failover-bench (validator client)".to_string(),
        cpu_seconds(std::process::id()),
    )];
    for a in &lab.manifest.agents {
        out.push((format!("signer-agent {}", a.id), cpu_seconds(a.pid)));
    }
    for c in &lab.manifest.coordinators {
        out.push((
            format!("coordinator {} ({})", c.id, c.region),
            cpu_seconds(c.pid),
        ));
    }
    for b in &lab.manifest.beacon_nodes {
        out.push((format!("beacon-sim {}", b.region), cpu_seconds(b.pid)));
    }
    out
}

/// `(sum, count)` of the Prometheus histogram `name` in `text`, over every label set.
pub fn histogram_sum_count(text: &str, name: &str) -> (f64, f64) {
    let value_of = |suffix: &str| -> f64 {
        let series = format!("{name}{suffix}");
        text.lines()
            .filter(|l| {
                l.strip_prefix(series.as_str())
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (value_of("_sum"), value_of("_count"))
}

/// The Prometheus text of the agent and of every coordinator, concatenated (a scrape that
/// fails adds nothing; the breakdown then shows fewer requests).
async fn scrape(http: &reqwest::Client, lab: &Lab) -> (String, String) {
    async fn get(http: &reqwest::Client, base: &str) -> String {
        let url = format!("{}/metrics", base.trim_end_matches('/'));
        match http.get(url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
    let agent = get(http, &lab.manifest.agents[0].url).await;
    let mut coordinators = String::new();
    for c in &lab.manifest.coordinators {
        coordinators.push_str(&get(http, &c.url).await);
        coordinators.push('\n');
    }
    (agent, coordinators)
}

impl PhaseBreakdown {
    fn between(before: &(String, String), after: &(String, String)) -> Self {
        let delta = |b: &str, a: &str, name: &str| {
            let (s0, c0) = histogram_sum_count(b, name);
            let (s1, c1) = histogram_sum_count(a, name);
            (s1 - s0, c1 - c0)
        };
        let per = |(sum, count): (f64, f64)| if count > 0.0 { sum / count } else { 0.0 };
        let sign = delta(&before.0, &after.0, "signer_agent_sign_duration_seconds");
        let batch = delta(
            &before.0,
            &after.0,
            "signer_agent_record_batch_duration_seconds",
        );
        let coord = delta(&before.1, &after.1, "failover_record_batch_seconds");
        Self {
            requests: sign.1,
            agent: per(sign),
            batch_round_trip: per(batch),
            batches_per_request: if sign.1 > 0.0 { batch.1 / sign.1 } else { 0.0 },
            coordinator: per(coord),
            coordinator_batches_per_batch: if batch.1 > 0.0 {
                coord.1 / batch.1
            } else {
                0.0
            },
        }
    }
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./bench-data"),
            validators: 1_000,
            rounds: 5,
            raw_signatures: 4_000,
            sequential: 1_000,
            plaintext: false,
            wan: false,
            failover_runs: 20,
            raft_election_ms: None,
        }
    }
}

/// Outcome of one round.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundStats {
    /// `warm-up` or the round number.
    pub label: String,
    /// Target epoch of the round's attestations.
    pub target_epoch: u64,
    /// Requests sent.
    pub requests: usize,
    /// 200 answers.
    pub signed: usize,
    /// Other answers, as `status label × count`.
    pub failures: Vec<String>,
    /// First send to last answer.
    pub wall: Duration,
    /// Latency of each request (send to answer), sorted.
    pub latencies: Vec<Duration>,
}

impl RoundStats {
    /// Signatures per second over the round's wall time.
    pub fn throughput(&self) -> f64 {
        self.signed as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// The `q`-quantile (0 ≤ q ≤ 1) of sorted latencies; zero when empty.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Raw blst signing throughput.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawSigning {
    /// Signatures per second on one thread.
    pub single: f64,
    /// Signatures per second on `threads` threads.
    pub all: f64,
    /// Threads used for `all` (available parallelism).
    pub threads: usize,
}

/// Measures raw blst signing: `per_thread` signatures on one thread, then on every core.
pub fn raw_signing(per_thread: u64) -> RawSigning {
    let sign_n = |seed: u64| {
        let sk = interop::secret_key(seed);
        for i in 0..per_thread {
            let mut root = [0u8; 32];
            root[..8].copy_from_slice(&i.to_le_bytes());
            root[8..16].copy_from_slice(&seed.to_le_bytes());
            std::hint::black_box(eth::sign(&sk, &Root(root)));
        }
    };
    let t = Instant::now();
    sign_n(0);
    let single = per_thread as f64 / t.elapsed().as_secs_f64();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            s.spawn(move || sign_n(k as u64 + 1));
        }
    });
    let all = (per_thread * threads as u64) as f64 / t.elapsed().as_secs_f64();
    RawSigning {
        single,
        all,
        threads,
    }
}

/// The whole bench result.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Validators (requests per round).
    pub validators: u64,
    /// Keystore KDF, described.
    pub kdf: String,
    /// Warm-up round first, then the timed rounds.
    pub rounds: Vec<RoundStats>,
    /// Signatures checked with blst after the rounds, and how many failed.
    pub verified: (usize, usize),
    /// Raw blst signing.
    pub raw: RawSigning,
    /// Latencies of the requests sent one at a time after the rounds, sorted.
    pub sequential: Vec<Duration>,
    /// Where the time of a sequential request goes.
    pub phases: PhaseBreakdown,
    /// Where the CPU went during the timed burst rounds.
    pub cpu: CpuBreakdown,
    /// Whether every link was TLS.
    pub tls: bool,
    /// Whether the regions were WAN round trips apart.
    pub wan: bool,
    /// Raft heartbeat and election timeout range of the coordinators (ms).
    pub raft_timing: (u64, u64, u64),
    /// Approval → first signature and leader kill → first signature, when measured.
    pub failover: Option<super::failover_times::FailoverTimes>,
    /// `/proc/loadavg` (1, 5, 15 min) when the bench started and before the raw measurement:
    /// the machine is shared, so the numbers are only as good as it was idle.
    pub load: (String, String),
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg`, or `unknown`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// Starts the bench lab, runs the rounds, the sequential requests and the raw measurement,
/// then the failover runs ([`BenchOptions::failover_runs`]), and stops the lab.
///
/// The lab has `agent-eu` (active; every request of the rounds goes to it) and `agent-us`
/// (standby, idle until the failover runs hand authority to it).
///
/// Errors: the lab did not start or the grant failed, or the cluster could not be restored
/// after a leader kill; failures of single requests and single failover runs are counted in
/// the report instead.
pub async fn run(opts: &BenchOptions, progress: &dyn Fn(&str)) -> Result<BenchReport> {
    let mut cfg = LabConfig::three_regions(opts.dir.clone());
    cfg.validators = opts.validators;
    cfg.kdf = KdfChoice::Pbkdf2Cheap;
    cfg.tls = !opts.plaintext;
    // The three-region lab's agents: agent-eu active, agent-us standby.
    cfg.beacon_regions = vec!["eu".into()];
    cfg.wan = opts.wan;
    if opts.wan {
        // As `failover-lab --wan`: heartbeats and RPC deadlines above the 200 ms round trip.
        cfg.raft_heartbeat_ms = 500;
        cfg.raft_election_ms = (3_000, 6_000);
    }
    if let Some(range) = opts.raft_election_ms {
        cfg.raft_election_ms = range;
    }
    let election = cfg.raft_election_ms;
    let heartbeat = cfg.raft_heartbeat_ms;
    let load_before = load_average();
    let mut lab = Lab::start(cfg, progress).await?;
    let result = async {
        let mut report = measure(&lab, opts, progress).await?;
        report.load.0 = load_before;
        report.raft_timing = (heartbeat, election.0, election.1);
        if opts.failover_runs > 0 {
            progress(&format!(
                "failover runs: {} handovers, then {} leader kills",
                opts.failover_runs, opts.failover_runs
            ));
            let http = lab
                .client_tls()
                .builder()
                .timeout(Duration::from_secs(30))
                .build()
                .context("build the failover probe's HTTP client")?;
            let fork_info = report_fork_info(&lab).await?;
            report.failover = Some(
                super::failover_times::measure(
                    &mut lab,
                    &http,
                    fork_info,
                    opts.failover_runs,
                    progress,
                )
                .await?,
            );
        }
        Ok(report)
    }
    .await;
    lab.stop().await;
    result
}

/// The chain's fork info as the lab's beacon simulator serves it.
async fn report_fork_info(lab: &Lab) -> Result<failover_common::eth::ForkInfo> {
    let sim = DutySim::connect(
        &lab.manifest.beacon_nodes[0].url,
        Vec::new(),
        lab.manifest.validators.clone(),
        lab.clock(),
        lab.client_tls(),
    )
    .await?;
    Ok(sim.fork_info())
}

async fn measure(lab: &Lab, opts: &BenchOptions, progress: &dyn Fn(&str)) -> Result<BenchReport> {
    lab.grant_initial().await?;
    progress("authority granted to agent-eu");
    let agent = AgentEndpoint {
        id: lab.manifest.agents[0].id.clone(),
        url: lab.manifest.agents[0].url.clone(),
    };
    let sim = DutySim::connect(
        &lab.manifest.beacon_nodes[0].url,
        vec![agent.clone()],
        lab.manifest.validators.clone(),
        lab.clock(),
        lab.client_tls(),
    )
    .await?;
    let fork_info = sim.fork_info();
    let spe = lab.config.slots_per_epoch;
    let http = lab
        .client_tls()
        .builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(opts.validators as usize)
        .build()
        .context("build the bench HTTP client")?;

    let mut rounds = Vec::new();
    let mut all_records: Vec<DutyRecord> = Vec::new();
    let clock = lab.clock();
    // CPU seconds per process, summed over the timed rounds only (not the waits between).
    let mut cpu_used: Vec<(String, f64)> = Vec::new();
    let mut timed_wall = Duration::ZERO;
    for r in 0..=opts.rounds {
        let target_epoch = r + 1;
        until_recordable(&clock, spe, target_epoch).await;
        let duties: Vec<_> = lab
            .manifest
            .validators
            .iter()
            .map(|v| {
                let slot = target_epoch * spe + v.index % spe;
                Arc::new(attestation_duty(v, slot, &fork_info, spe))
            })
            .collect();
        let mut set = JoinSet::new();
        let cpu_before = cpu_snapshot(lab);
        let t = Instant::now();
        for d in duties {
            let (http, agent) = (http.clone(), agent.clone());
            set.spawn(async move { send_duty(&http, &agent, &d).await });
        }
        let mut records = Vec::with_capacity(opts.validators as usize);
        while let Some(rec) = set.join_next().await {
            records.push(rec.context("a bench request task failed")?);
        }
        let wall = t.elapsed();
        if r > 0 {
            timed_wall += wall;
            let used = cpu_before
                .into_iter()
                .zip(cpu_snapshot(lab))
                .filter_map(|((name, b), (_, a))| Some((name, a? - b?)));
            for (name, secs) in used {
                match cpu_used.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, total)) => *total += secs,
                    None => cpu_used.push((name, secs)),
                }
            }
        }
        let mut latencies: Vec<Duration> = records
            .iter()
            .map(|r| Duration::from_micros(r.received_us.saturating_sub(r.sent_us)))
            .collect();
        latencies.sort();
        let mut failures = std::collections::BTreeMap::<String, usize>::new();
        for rec in records.iter().filter(|r| r.status != 200) {
            *failures
                .entry(format!("{} {}", rec.status, reason_label(&rec.reason)))
                .or_default() += 1;
        }
        let stats = RoundStats {
            label: if r == 0 {
                "warm-up".into()
            } else {
                r.to_string()
            },
            target_epoch,
            requests: records.len(),
            signed: records.iter().filter(|r| r.status == 200).count(),
            failures: failures
                .into_iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect(),
            wall,
            latencies,
        };
        progress(&format!(
            "round {}: {} of {} signed in {:.3} s",
            stats.label,
            stats.signed,
            stats.requests,
            wall.as_secs_f64()
        ));
        rounds.push(stats);
        all_records.extend(records);
    }
    let cpu = CpuBreakdown {
        processes: cpu_used,
        wall: timed_wall.as_secs_f64(),
    };
    // Single-request latency: one request at a time, each a new target epoch after the rounds
    // (so every one is recorded, none is a re-sign).
    let mut sequential = Vec::with_capacity(opts.sequential as usize);
    let first_epoch = opts.rounds + 2;
    let metrics_before = scrape(&http, lab).await;
    for i in 0..opts.sequential {
        let v = &lab.manifest.validators[(i % opts.validators.max(1)) as usize];
        let target_epoch = first_epoch + i / opts.validators.max(1);
        until_recordable(&clock, spe, target_epoch).await;
        let slot = target_epoch * spe + v.index % spe;
        let duty = attestation_duty(v, slot, &fork_info, spe);
        let rec = send_duty(&http, &agent, &duty).await;
        if rec.status == 200 {
            sequential.push(Duration::from_micros(
                rec.received_us.saturating_sub(rec.sent_us),
            ));
        }
        all_records.push(rec);
    }
    sequential.sort();
    let phases = PhaseBreakdown::between(&metrics_before, &scrape(&http, lab).await);
    progress(&format!(
        "{} of {} sequential requests signed",
        sequential.len(),
        opts.sequential
    ));
    let sigs = crate::checker::signatures_valid(&all_records, spe);
    let (ok, failed) = (
        sigs.examined.saturating_sub(sigs.violations.len()),
        sigs.violations,
    );
    progress("measuring raw blst signing");
    let load_raw = load_average();
    let raw = tokio::task::spawn_blocking({
        let n = opts.raw_signatures;
        move || raw_signing(n)
    })
    .await
    .context("raw signing measurement")?;
    Ok(BenchReport {
        validators: opts.validators,
        kdf: lab.manifest.keystore_kdf.clone(),
        rounds,
        verified: (ok, failed.len()),
        raw,
        load: (String::new(), load_raw),
        sequential,
        phases,
        cpu,
        tls: !opts.plaintext,
        wan: opts.wan,
        raft_timing: (0, 0, 0),
        failover: None,
    })
}

/// Waits until attestations with target `target_epoch` are within the coordinators'
/// far-future bound (`limits.max_future_epochs`, 2 epochs ahead of the chain's current
/// epoch): the rounds use a new target epoch each and would otherwise outrun the chain.
async fn until_recordable(clock: &super::SlotClock, spe: u64, target_epoch: u64) {
    const MAX_FUTURE_EPOCHS: u64 = 2;
    while clock.now_slot() / spe.max(1) + MAX_FUTURE_EPOCHS < target_epoch {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl BenchReport {
    /// End-to-end signatures per second over the timed rounds.
    pub fn burst_throughput(&self) -> f64 {
        let timed = self.rounds.iter().skip(1);
        let (signed, wall) = timed.fold((0usize, 0f64), |(n, w), r| {
            (n + r.signed, w + r.wall.as_secs_f64())
        });
        signed as f64 / wall.max(1e-9)
    }

    /// Latencies of every request of the timed rounds, sorted.
    pub fn burst_latencies(&self) -> Vec<Duration> {
        let mut lat: Vec<Duration> = self
            .rounds
            .iter()
            .skip(1)
            .flat_map(|r| r.latencies.clone())
            .collect();
        lat.sort();
        lat
    }

    /// True when the timed rounds produced signatures, every signature verified, and every
    /// failover run completed.
    pub fn healthy(&self) -> bool {
        self.verified.1 == 0
            && self.rounds.iter().skip(1).any(|r| r.signed > 0)
            && self
                .failover
                .as_ref()
                .is_none_or(|f| f.failed_runs.is_empty())
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "failover-bench: 1 signer agent (and 1 idle standby), 3 coordinators (Raft, fsynced \
             RocksDB), {} validators",
            self.validators
        )?;
        writeln!(f, "keystores: {}", self.kdf)?;
        writeln!(
            f,
            "links: {}",
            if self.tls {
                "TLS (rustls) with client certificates"
            } else {
                "plain HTTP"
            }
        )?;
        writeln!(
            f,
            "raft: {} ms heartbeats, elections {}-{} ms",
            self.raft_timing.0, self.raft_timing.1, self.raft_timing.2
        )?;
        if self.wan {
            writeln!(
                f,
                "regions: WAN round trips through per-link proxies (eu-us 80 ms, us-ap 150 ms, \
                 eu-ap 200 ms)"
            )?;
        }
        writeln!(
            f,
            "each round: {} concurrent ATTESTATION requests, one per validator, new target epoch\n",
            self.validators
        )?;
        writeln!(
            f,
            "{:<8} {:>6} {:>8} {:>7} {:>8} {:>9} {:>8} {:>8} {:>8}",
            "ROUND",
            "TARGET",
            "REQUESTS",
            "SIGNED",
            "WALL_S",
            "SIG/S",
            "P50_MS",
            "P99_MS",
            "MAX_MS"
        )?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        for r in &self.rounds {
            writeln!(
                f,
                "{:<8} {:>6} {:>8} {:>7} {:>8.3} {:>9.0} {:>8.1} {:>8.1} {:>8.1}{}",
                r.label,
                r.target_epoch,
                r.requests,
                r.signed,
                r.wall.as_secs_f64(),
                r.throughput(),
                ms(percentile(&r.latencies, 0.5)),
                ms(percentile(&r.latencies, 0.99)),
                ms(r.latencies.last().copied().unwrap_or_default()),
                if r.failures.is_empty() {
                    String::new()
                } else {
                    format!("  refused: {}", r.failures.join(", "))
                }
            )?;
        }
        let timed: Vec<&RoundStats> = self.rounds.iter().skip(1).collect();
        let signed: usize = timed.iter().map(|r| r.signed).sum();
        let wall: f64 = timed.iter().map(|r| r.wall.as_secs_f64()).sum();
        let mut lat: Vec<Duration> = timed.iter().flat_map(|r| r.latencies.clone()).collect();
        lat.sort();
        let e2e = signed as f64 / wall.max(1e-9);
        writeln!(
            f,
            "{:<8} {:>6} {:>8} {:>7} {:>8.3} {:>9.0} {:>8.1} {:>8.1} {:>8.1}",
            "timed",
            "",
            timed.iter().map(|r| r.requests).sum::<usize>(),
            signed,
            wall,
            e2e,
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(lat.last().copied().unwrap_or_default())
        )?;
        writeln!(
            f,
            "\nsequential: {} requests one at a time: p50 {:.2} ms, p99 {:.2} ms \
             (raw blst sign on 1 thread: {:.2} ms)",
            self.sequential.len(),
            ms(percentile(&self.sequential, 0.5)),
            ms(percentile(&self.sequential, 0.99)),
            1e3 / self.raw.single.max(1e-9)
        )?;
        let p = &self.phases;
        let mean = if self.sequential.is_empty() {
            0.0
        } else {
            self.sequential.iter().map(|d| d.as_secs_f64()).sum::<f64>()
                / self.sequential.len() as f64
        };
        writeln!(
            f,
            "\nwhere a sequential request's time goes (means over {:.0} requests, from the \
             agent's and coordinators' histograms):",
            p.requests
        )?;
        let rows = [
            ("client round trip (bench)", mean),
            ("  in the agent (parse, root, record, sign)", p.agent),
            ("    record batch round trip", p.batch_round_trip),
            (
                "      in the coordinator (Raft append, commit, apply)",
                p.coordinator,
            ),
            (
                "      network + HTTP to the coordinator",
                (p.batch_round_trip - p.coordinator).max(0.0),
            ),
            (
                "    agent outside the batch (parse, root, sign wait)",
                (p.agent - p.batch_round_trip * p.batches_per_request).max(0.0),
            ),
            ("  HTTP + TLS client <-> agent", (mean - p.agent).max(0.0)),
        ];
        for (name, secs) in rows {
            writeln!(f, "  {name:<56} {:>7.3} ms", secs * 1e3)?;
        }
        writeln!(
            f,
            "  ({:.2} record batches per request; {:.2} coordinator batch answers per agent \
             batch: 1 = sent to the leader, 2 = forwarded by a follower)",
            p.batches_per_request, p.coordinator_batches_per_batch
        )?;
        writeln!(
            f,
            "\nsignatures verified with blst afterwards: {} ok, {} failed",
            self.verified.0, self.verified.1
        )?;
        writeln!(
            f,
            "\nraw blst signing on this machine ({} cores)",
            self.raw.threads
        )?;
        writeln!(f, "  {:<13} {:>8.0} sig/s", "1 thread", self.raw.single)?;
        writeln!(
            f,
            "  {:<13} {:>8.0} sig/s",
            format!("{} threads", self.raw.threads),
            self.raw.all
        )?;
        writeln!(
            f,
            "\nend-to-end / raw: {:.2} of one thread, {:.2} of all {} threads",
            e2e / self.raw.single,
            e2e / self.raw.all,
            self.raw.threads
        )?;
        let signed: usize = self.rounds.iter().skip(1).map(|r| r.signed).sum();
        let cores = self.raw.threads as f64;
        let available = self.cpu.wall * cores;
        writeln!(
            f,
            "\nwhere the CPU went during the timed bursts ({:.3} s wall x {} cores = {:.3} CPU-s):",
            self.cpu.wall, self.raw.threads, available
        )?;
        let mut total = 0.0;
        for (name, secs) in &self.cpu.processes {
            total += secs;
            writeln!(
                f,
                "  {name:<40} {secs:>7.3} CPU-s {:>5.1} %",
                100.0 * secs / available.max(1e-9)
            )?;
        }
        let signing = signed as f64 / self.raw.single.max(1e-9);
        writeln!(
            f,
            "  {:<40} {total:>7.3} CPU-s {:>5.1} %",
            "all of the above",
            100.0 * total / available.max(1e-9)
        )?;
        writeln!(
            f,
            "  of which BLS signing ({signed} x {:.3} ms, raw 1-thread cost)   {signing:>7.3} CPU-s {:>5.1} %",
            1e3 / self.raw.single.max(1e-9),
            100.0 * signing / available.max(1e-9)
        )?;
        writeln!(
            f,
            "targets (issue 15): burst end-to-end / raw on all threads {:.2} (target >= 0.90), \
             sequential p50 {:.2} ms (target <= 2 ms)",
            e2e / self.raw.all,
            ms(percentile(&self.sequential, 0.5))
        )?;
        if let Some(fo) = &self.failover {
            write!(f, "{fo}")?;
            let (_, min, max) = self.raft_timing;
            writeln!(
                f,
                "  after a leader kill, openraft 0.9 starts an election only after its leader \
                 lease (= the election maximum, {max} ms) plus a random election timeout \
                 ({min}-{max} ms): {}-{} ms without a leader before any vote",
                max + min,
                2 * max
            )?;
        }
        writeln!(
            f,
            "load average (1/5/15 min): {} at start, {} before the raw measurement",
            self.load.0, self.load.1
        )
    }
}

/// The same bench over TLS and over plain HTTP, run one after the other on this machine, and
/// what TLS costs: each figure of the TLS run divided by the plain one.
pub fn tls_ratios(tls: &BenchReport, plain: &BenchReport) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rows = [
        (
            "burst sig/s",
            tls.burst_throughput(),
            plain.burst_throughput(),
        ),
        (
            "burst p50 ms",
            ms(percentile(&tls.burst_latencies(), 0.5)),
            ms(percentile(&plain.burst_latencies(), 0.5)),
        ),
        (
            "burst p99 ms",
            ms(percentile(&tls.burst_latencies(), 0.99)),
            ms(percentile(&plain.burst_latencies(), 0.99)),
        ),
        (
            "sequential p50 ms",
            ms(percentile(&tls.sequential, 0.5)),
            ms(percentile(&plain.sequential, 0.5)),
        ),
        (
            "sequential p99 ms",
            ms(percentile(&tls.sequential, 0.99)),
            ms(percentile(&plain.sequential, 0.99)),
        ),
    ];
    let mut out = format!(
        "{:<18} {:>10} {:>10} {:>10} {:>10}\n",
        "FIGURE", "TLS", "PLAIN", "TLS-PLAIN", "TLS/PLAIN"
    );
    for (name, t, p) in rows {
        out.push_str(&format!(
            "{name:<18} {t:>10.2} {p:>10.2} {:>10.2} {:>10.2}\n",
            t - p,
            t / p.max(1e-9)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_reads_this_process_and_nothing_for_a_missing_one() {
        let own = cpu_seconds(std::process::id()).expect("own /proc stat");
        assert!(own >= 0.0 && own.is_finite(), "{own}");
        assert_eq!(cpu_seconds(u32::MAX), None);
    }

    #[test]
    fn histogram_sum_and_count_add_up_every_label_set_and_nothing_else() {
        let text = "\
# TYPE signer_agent_sign_duration_seconds histogram
signer_agent_sign_duration_seconds_bucket{type=\"ATTESTATION\",le=\"0.005\"} 3
signer_agent_sign_duration_seconds_sum{type=\"ATTESTATION\"} 0.012
signer_agent_sign_duration_seconds_count{type=\"ATTESTATION\"} 4
signer_agent_sign_duration_seconds_sum{type=\"BLOCK_V2\"} 0.008
signer_agent_sign_duration_seconds_count{type=\"BLOCK_V2\"} 1
signer_agent_sign_duration_seconds_total_sum 99
failover_record_batch_seconds_sum 0.5
failover_record_batch_seconds_count 10
";
        let (sum, count) = histogram_sum_count(text, "signer_agent_sign_duration_seconds");
        assert!((sum - 0.020).abs() < 1e-12, "{sum}");
        assert_eq!(count, 5.0);
        assert_eq!(
            histogram_sum_count(text, "failover_record_batch_seconds"),
            (0.5, 10.0)
        );
        assert_eq!(histogram_sum_count(text, "absent"), (0.0, 0.0));
    }
}
