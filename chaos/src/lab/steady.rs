//! The steady state (issue 15 item 7), for `failover-bench --steady-epochs N`: many
//! validators attesting once per epoch, spread over the slots, plus one proposal per slot,
//! for many epochs with finality and pruning, and whether latency, storage and memory stay
//! flat.
//!
//! The lab runs three coordinators and a beacon simulator per region (finality comes from
//! them, and with it pruning) and one agent holding every validator. The duty simulator
//! ([`super::duties::DutySim`]) sends each slot's duties as a validator client would: the
//! proposal of the slot and the attestations of the validators whose index falls in it
//! (`index % SLOTS_PER_EPOCH`), at most [`MAX_IN_FLIGHT`] at a time, as a validator client's
//! connection pool would. At every epoch boundary the bench takes the answers of the
//! epoch that ended and samples, per process, resident memory (`VmRSS` in
//! `/proc/<pid>/status`) and each coordinator's data directory size on disk (bytes, RocksDB
//! with its WAL).
//!
//! Invariants:
//! - every epoch row counts the answers that arrived during that epoch (wall clock, by the
//!   lab's slot clock), so the rows add up to every request sent;
//! - a sample of signatures per epoch ([`VERIFY_PER_EPOCH`]) is verified with blst; the
//!   bench does not verify all of them, because verifying costs more CPU than signing and
//!   would compete with the agent on the same cores.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use failover_common::eth;

use super::bench::{load_average, percentile};
use super::duties::{AgentEndpoint, DutySim};
use super::summary::reason_label;
use super::{AgentSpec, KdfChoice, Lab, LabConfig, Role};

/// Sign requests the steady state keeps in flight at most (a validator client's pool).
pub const MAX_IN_FLIGHT: usize = 512;

/// Signatures verified with blst per epoch row.
pub const VERIFY_PER_EPOCH: usize = 50;

/// Steady-state parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SteadyOptions {
    /// Lab directory (wiped).
    pub dir: std::path::PathBuf,
    /// Validators, each attesting once per epoch.
    pub validators: u64,
    /// Epochs measured (after one epoch to settle).
    pub epochs: u64,
    /// Slot length (seconds).
    pub seconds_per_slot: f64,
    /// `SLOTS_PER_EPOCH`.
    pub slots_per_epoch: u64,
    /// Plain HTTP instead of TLS.
    pub plaintext: bool,
    /// Raft log entries between snapshots (the log is purged only up to a snapshot);
    /// `None`: the coordinator's default (20,000).
    pub snapshot_every: Option<u64>,
}

/// One epoch of the steady state.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRow {
    /// Epoch of the lab's chain whose wall time the row covers.
    pub epoch: u64,
    /// Answers that arrived in the epoch.
    pub answered: usize,
    /// 200 answers among them.
    pub signed: usize,
    /// The others, as `status reason ×count`.
    pub refused: Vec<String>,
    /// Latencies of the signed answers, sorted.
    pub latencies: Vec<Duration>,
    /// Agreed finalized epoch at the end of the row, as a coordinator reports it.
    pub finalized: Option<u64>,
    /// Data directory size of each coordinator (bytes), by node id.
    pub db_bytes: Vec<(u64, u64)>,
    /// Resident memory (bytes) of each coordinator, by node id.
    pub coordinator_rss: Vec<(u64, u64)>,
    /// Resident memory (bytes) of the agent.
    pub agent_rss: u64,
    /// Sampled signatures verified, and how many failed.
    pub verified: (usize, usize),
}

/// The steady-state result.
#[derive(Debug, Clone)]
pub struct SteadyReport {
    /// The parameters.
    pub options: SteadyOptions,
    /// Keystore KDF, described.
    pub kdf: String,
    /// One row per epoch.
    pub rows: Vec<EpochRow>,
    /// `/proc/loadavg` at the start.
    pub load: String,
}

/// Resident set size of `pid` in bytes (`VmRSS`), or 0 when it cannot be read.
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Bytes of every file under `dir`, recursively; 0 for a missing directory.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Starts the steady-state lab, runs `epochs` epochs of duties after one epoch to settle,
/// and stops the lab.
///
/// Errors: the lab does not start, the grant fails, or the duty simulator cannot reach the
/// beacon node; refused requests are counted in the rows instead.
pub async fn run(opts: &SteadyOptions, progress: &dyn Fn(&str)) -> Result<SteadyReport> {
    let mut cfg = LabConfig::three_regions(opts.dir.clone());
    cfg.validators = opts.validators;
    cfg.kdf = KdfChoice::Pbkdf2Cheap;
    cfg.tls = !opts.plaintext;
    cfg.seconds_per_slot = opts.seconds_per_slot;
    cfg.slots_per_epoch = opts.slots_per_epoch;
    cfg.raft_snapshot_every = opts.snapshot_every;
    cfg.agents = vec![AgentSpec {
        id: "agent-eu".into(),
        region: "eu".into(),
        role: Role::Active,
    }];
    let load = load_average();
    let lab = Lab::start(cfg, progress).await?;
    let kdf = lab.manifest.keystore_kdf.clone();
    let result = measure(&lab, opts, progress).await;
    lab.stop().await;
    Ok(SteadyReport {
        options: opts.clone(),
        kdf,
        rows: result?,
        load,
    })
}

async fn measure(
    lab: &Lab,
    opts: &SteadyOptions,
    progress: &dyn Fn(&str),
) -> Result<Vec<EpochRow>> {
    lab.grant_initial().await?;
    let agent = AgentEndpoint {
        id: lab.manifest.agents[0].id.clone(),
        url: lab.manifest.agents[0].url.clone(),
    };
    let clock = lab.clock();
    let spe = opts.slots_per_epoch.max(1);
    let sim = DutySim::connect(
        &lab.manifest.beacon_nodes[0].url,
        vec![agent],
        lab.manifest.validators.clone(),
        clock,
        lab.client_tls(),
    )
    .await?
    // A validator client's connection pool: the agent serves at most 1,024 connections
    // (`max_connections`, default 1,024), and 10,000 validators put 1,250 attestations in one
    // slot; sent all at once, the ones over the cap are closed unanswered.
    .with_max_in_flight(MAX_IN_FLIGHT);
    let running = sim.start();
    // Settle: the first epoch (connections, the first finality) is not measured.
    let mut epoch = clock.now_slot() / spe + 2;
    clock.sleep_until(epoch * spe).await;
    running.drain();
    let mut rows = Vec::with_capacity(opts.epochs as usize);
    for _ in 0..opts.epochs {
        clock.sleep_until((epoch + 1) * spe).await;
        let records = running.drain();
        let mut latencies = Vec::with_capacity(records.len());
        let mut refused = std::collections::BTreeMap::<String, usize>::new();
        let mut verified = (0, 0);
        for r in &records {
            if r.status == 200 {
                latencies.push(Duration::from_micros(
                    r.received_us.saturating_sub(r.sent_us),
                ));
            } else {
                *refused
                    .entry(format!("{} {}", r.status, reason_label(&r.reason)))
                    .or_default() += 1;
            }
        }
        let step = (records.len() / VERIFY_PER_EPOCH).max(1);
        for r in records.iter().filter(|r| r.status == 200).step_by(step) {
            let ok = r
                .signature
                .as_ref()
                .is_some_and(|s| eth::verify(&r.pubkey, &r.signing_root, s));
            if ok {
                verified.0 += 1;
            } else {
                verified.1 += 1;
            }
        }
        latencies.sort();
        let finalized = lab
            .ctl
            .status(lab.operator(0))
            .await
            .ok()
            .and_then(|s| s.finality.map(|f| f.checkpoint.epoch));
        let row = EpochRow {
            epoch,
            answered: records.len(),
            signed: latencies.len(),
            refused: refused
                .into_iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect(),
            latencies,
            finalized,
            db_bytes: lab
                .manifest
                .coordinators
                .iter()
                .map(|c| (c.id, dir_bytes(&c.data_dir)))
                .collect(),
            coordinator_rss: lab
                .manifest
                .coordinators
                .iter()
                .map(|c| (c.id, rss_bytes(c.pid)))
                .collect(),
            agent_rss: rss_bytes(lab.manifest.agents[0].pid),
            verified,
        };
        progress(&row.line(opts.validators));
        rows.push(row);
        epoch += 1;
    }
    running.stop().await.context("stop the duty simulator")?;
    Ok(rows)
}

const MB: f64 = 1024.0 * 1024.0;

impl EpochRow {
    fn max_db(&self) -> u64 {
        self.db_bytes.iter().map(|(_, b)| *b).max().unwrap_or(0)
    }

    fn max_rss(&self) -> u64 {
        self.coordinator_rss
            .iter()
            .map(|(_, b)| *b)
            .max()
            .unwrap_or(0)
    }

    /// The row as one line of the table.
    fn line(&self, validators: u64) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "{:>6} {:>9} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>9} {:>9.1} {:>10.0} {:>10.1} {:>9.1}{}",
            self.epoch,
            self.answered,
            self.signed,
            ms(percentile(&self.latencies, 0.5)),
            ms(percentile(&self.latencies, 0.99)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            self.finalized
                .map_or_else(|| "-".to_string(), |e| e.to_string()),
            self.max_db() as f64 / MB,
            self.max_db() as f64 / validators.max(1) as f64,
            self.max_rss() as f64 / MB,
            self.agent_rss as f64 / MB,
            if self.refused.is_empty() {
                String::new()
            } else {
                format!("  refused: {}", self.refused.join(", "))
            }
        )
    }
}

/// Mean of `f` over `rows`; 0 when empty.
fn mean(rows: &[EpochRow], f: impl Fn(&EpochRow) -> f64) -> f64 {
    if rows.is_empty() {
        return 0.0;
    }
    rows.iter().map(f).sum::<f64>() / rows.len() as f64
}

impl SteadyReport {
    /// True when every epoch signed something and no sampled signature failed.
    pub fn healthy(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.signed > 0 && r.verified.1 == 0)
    }
}

impl std::fmt::Display for SteadyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "failover-bench steady state: {} validators attesting once per epoch plus one \
             proposal per slot, {} epochs of {} slots x {} s, 3 coordinators, 1 agent, \
             {}, at most {MAX_IN_FLIGHT} requests in flight",
            o.validators,
            o.epochs,
            o.slots_per_epoch,
            o.seconds_per_slot,
            if o.plaintext { "plain HTTP" } else { "TLS" }
        )?;
        writeln!(
            f,
            "raft: a snapshot every {} log entries (the log is purged up to a snapshot)",
            o.snapshot_every
                .map_or_else(|| "20000 (default)".to_string(), |n| n.to_string())
        )?;
        writeln!(
            f,
            "keystores: {}; load average at start: {}",
            self.kdf, self.load
        )?;
        writeln!(
            f,
            "{:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10} {:>10} {:>9}",
            "EPOCH",
            "ANSWERED",
            "SIGNED",
            "P50_MS",
            "P99_MS",
            "MAX_MS",
            "FINALIZED",
            "DB_MB",
            "DB_B/VAL",
            "COORD_RSS",
            "AGENT_RSS"
        )?;
        for r in &self.rows {
            writeln!(f, "{}", r.line(o.validators))?;
        }
        // Flatness: the first tenth after settling against the last tenth.
        let n = (self.rows.len() / 10).max(1);
        let (early, late) = (
            &self.rows[..n.min(self.rows.len())],
            &self.rows[self.rows.len().saturating_sub(n)..],
        );
        let p99 = |r: &EpochRow| percentile(&r.latencies, 0.99).as_secs_f64() * 1e3;
        writeln!(
            f,
            "\nflat? mean of the first {n} epochs against the last {n} (DB and coordinator RSS: \
             the largest of the three nodes)"
        )?;
        writeln!(
            f,
            "  {:<28} {:>10} {:>10} {:>8}",
            "FIGURE", "FIRST", "LAST", "LAST/FIRST"
        )?;
        for (name, a, b) in [
            ("p99 latency (ms)", mean(early, p99), mean(late, p99)),
            (
                "data directory (MB)",
                mean(early, |r| r.max_db() as f64 / MB),
                mean(late, |r| r.max_db() as f64 / MB),
            ),
            (
                "coordinator RSS (MB)",
                mean(early, |r| r.max_rss() as f64 / MB),
                mean(late, |r| r.max_rss() as f64 / MB),
            ),
            (
                "agent RSS (MB)",
                mean(early, |r| r.agent_rss as f64 / MB),
                mean(late, |r| r.agent_rss as f64 / MB),
            ),
        ] {
            writeln!(
                f,
                "  {name:<28} {a:>10.1} {b:>10.1} {:>8.2}",
                b / a.max(1e-9)
            )?;
        }
        let last = self.rows.last();
        writeln!(
            f,
            "  bytes per validator at the end: {:.0} on disk, {:.0} of coordinator memory",
            last.map_or(0.0, |r| r.max_db() as f64 / o.validators.max(1) as f64),
            last.map_or(0.0, |r| r.max_rss() as f64 / o.validators.max(1) as f64),
        )?;
        let (ok, bad) = self
            .rows
            .iter()
            .fold((0, 0), |(a, b), r| (a + r.verified.0, b + r.verified.1));
        writeln!(
            f,
            "  sampled signatures verified with blst: {ok} ok, {bad} failed"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_and_directory_sizes_read_real_values_and_zero_for_missing() {
        assert!(rss_bytes(std::process::id()) > 1024 * 1024);
        assert_eq!(rss_bytes(u32::MAX), 0);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 23]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 123);
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
    }
}
