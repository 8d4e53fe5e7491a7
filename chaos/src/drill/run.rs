//! Runs one scenario on real processes and judges it.
//!
//! Order: the lab starts (fresh directories under `DIR/lab`), authority is granted to the
//! active agent, the workload and the leader sampler start (phase `start`), then concurrently
//! the planned handover runs at its anchor (marking phases `handover.requested`,
//! `handover.awaiting_approval`, `handover.approved`, `handover.completed`) and each fault step
//! fires at its anchor and is reverted after its duration. The drill ends `tail_slots` after
//! the handover (or after the start), every fault still active is reverted, the workload and
//! the sampler stop, and everything is judged and written to `DIR`:
//! `duties.jsonl`, `handovers.json`, `audit.json`, `faults.json` (fault windows, Unix µs),
//! `leaders.json` (every ~250 ms, each node's leader and term), `authority.json`,
//! `commands.json` (every failoverctl invocation), the checker's `report.md`, `report.json`
//! and `timeline.svg` (leaders, authority, signatures per agent per slot, faults shaded),
//! `drill.json` (scenario, seed, schedule, verdict) and `summary.txt`.
//!
//! The verdict combines the lab's [`Summary`] checks, the independent
//! [`crate::checker::check`], and the scenario's criteria. The lab summary's "honest duties"
//! check is replaced by a fault-aware one: a request that got no answer at all (status 0) is
//! expected while a fault is active (plus a grace period), never outside; a 412 is expected
//! only where an adversarial race message of the same validator and slot (or target) was
//! signed first ([`super::workload::race_blocked`]), or where a fault held the duty up until
//! finality had raised the validator's low watermark above it (a `*_below_watermark` refusal
//! of a duty sent during a fault); any other unexpected status is a failure whenever it
//! happens.
//!
//! Invariants:
//! - every process the drill starts is stopped at the end, stopped processes are continued
//!   and partitions healed first, also when a step fails;
//! - a fault that never fired, or whose application failed, fails the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use failover_protocol::StatusView;
use failover_protocol::{AuditEntry, Handover, HandoverState, LivenessGate};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use tokio::sync::{watch, Mutex};

use super::workload::{Workload, WorkloadConfig};
use super::{parse_duration, Anchor, At, FaultAction, PlannedFault, Scenario, Schedule};
use crate::checker::{self, AuthoritySample, FaultWindow, History, LeaderSample};
use crate::lab::ctl::Failoverctl;
use crate::lab::duties::{unix_micros, AgentEndpoint, DutyRecord, SlotClock};
use crate::lab::summary::{Check, Summary, SummaryInput};
use crate::lab::{KdfChoice, Lab, LabConfig, Operator};
use crate::netem::LinkMode;

/// Marker file of a drill directory (wiped only when it carries it).
pub const DRILL_MARKER: &str = ".failover-drill";

/// How long after a fault window a request may still go unanswered (status 0).
pub const NO_ANSWER_GRACE: Duration = Duration::from_secs(8);

/// The outcome of one drill.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Scenario name.
    pub scenario: String,
    /// Seed used.
    pub seed: u64,
    /// Every check passed.
    pub passed: bool,
    /// Failed checks, one line each.
    pub failures: Vec<String>,
    /// Safety violations found by the checker and the lab summary (slashable pairs, bad
    /// signatures, signatures outside authority, handover order).
    pub violations: usize,
    /// Share of honest duties that some agent signed.
    pub signed_share: f64,
    /// Whether the planned handover completed.
    pub handover_completed: Option<bool>,
    /// Wall time of the drill (s).
    pub seconds: f64,
    /// The drill directory.
    pub dir: PathBuf,
}

/// Phase name → time reached (Unix µs).
type Phases = BTreeMap<String, u64>;

struct Shared {
    lab: Mutex<Lab>,
    workload: Workload,
    phases: watch::Sender<Phases>,
    windows: std::sync::Mutex<Vec<FaultWindow>>,
    errors: std::sync::Mutex<Vec<String>>,
    end: watch::Sender<bool>,
    http: reqwest::Client,
    operator: Operator,
    coordinators: Vec<(u64, String, String)>,
    clock: SlotClock,
    active: String,
    standby: Option<String>,
    progress: Box<dyn Fn(&str) + Send + Sync>,
    /// Leader and authority samples of every coordinator, taken by [`sample`].
    samples: Samples,
}

/// Leader and authority samples, shared with the sampling task.
type Samples = Arc<std::sync::Mutex<(Vec<LeaderSample>, Vec<AuthoritySample>)>>;

impl Shared {
    fn say(&self, line: &str) {
        (self.progress)(&format!("slot {:>4}: {line}", self.clock.now_slot()));
    }

    fn error(&self, e: String) {
        self.say(&format!("ERROR {e}"));
        self.errors.lock().expect("errors lock").push(e);
    }

    fn mark(&self, phase: &str) {
        self.say(&format!("phase {phase}"));
        self.phases.send_modify(|p| {
            p.entry(phase.to_string()).or_insert_with(unix_micros);
        });
    }

    async fn status(&self, url: &str, timeout: Duration) -> Result<StatusView> {
        failover_protocol::node_status(&self.http, url, &self.operator.token, timeout)
            .await
            .with_context(|| format!("{url}/v1/status"))
    }

    /// The leader per the answer with the highest term that names one; waits up to 20 s.
    async fn leader(&self) -> Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut best: Option<(u64, u64)> = None;
            for (_, _, url) in &self.coordinators {
                if let Ok(s) = self.status(url, Duration::from_millis(700)).await {
                    if let Some(l) = s.leader_id {
                        if best.is_none_or(|(t, _)| s.term > t) {
                            best = Some((s.term, l));
                        }
                    }
                }
            }
            if let Some((_, l)) = best {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!("no coordinator names a leader");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The current authority holder (falls back to the initial active agent).
    async fn holder(&self) -> String {
        for (_, _, url) in &self.coordinators {
            if let Ok(s) = self.status(url, Duration::from_millis(700)).await {
                if let Some(h) = s.holder {
                    return h;
                }
            }
        }
        self.active.clone()
    }

    fn region_of_node(&self, id: u64) -> String {
        self.coordinators
            .iter()
            .find(|c| c.0 == id)
            .map_or_else(String::new, |c| c.1.clone())
    }

    async fn resolve_region(&self, r: &str) -> Result<String> {
        Ok(match r {
            "leader" => self.region_of_node(self.leader().await?),
            "active_agent" => {
                let h = self.holder().await;
                let lab = self.lab.lock().await;
                lab.agent(&h)
                    .map(|a| a.region.clone())
                    .with_context(|| format!("holder {h} is not a lab agent"))?
            }
            other => other.to_string(),
        })
    }

    /// Coordinator ids for a kill or stop target.
    async fn resolve_nodes(&self, target: &str, pick: u64) -> Result<Vec<u64>> {
        let ids: Vec<u64> = self.coordinators.iter().map(|c| c.0).collect();
        let mut rng = StdRng::seed_from_u64(pick);
        Ok(match target {
            "leader" => vec![self.leader().await?],
            "follower" => {
                let l = self.leader().await?;
                let f: Vec<u64> = ids.iter().copied().filter(|i| *i != l).collect();
                vec![f[(pick % f.len() as u64) as usize]]
            }
            "minority" => {
                let mut s = ids.clone();
                s.shuffle(&mut rng);
                s.truncate((ids.len() - 1) / 2);
                s.sort();
                s
            }
            "all" => ids,
            n => vec![n
                .strip_prefix("node")
                .map(str::trim)
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("target {n}"))?],
        })
    }

    async fn wait_anchor(&self, at: &At) -> Result<(), String> {
        let mut end = self.end.subscribe();
        match &at.anchor {
            Anchor::Start | Anchor::Handover(_) => {
                let name = match &at.anchor {
                    Anchor::Start => "start".to_string(),
                    Anchor::Handover(p) => format!("handover.{p}"),
                    Anchor::Slot(_) => unreachable!("matched above"),
                };
                let mut rx = self.phases.subscribe();
                let reached = tokio::select! {
                    r = rx.wait_for(|p| p.contains_key(&name)) => r.is_ok(),
                    _ = end.wait_for(|e| *e) => false,
                };
                if !reached {
                    return Err(format!("phase {name} was never reached"));
                }
            }
            Anchor::Slot(n) => {
                if self.clock.now_slot() >= *n + 2 {
                    return Err(format!(
                        "slot {n} had already passed when the drill reached it"
                    ));
                }
                tokio::select! {
                    _ = self.clock.sleep_until(*n) => {}
                    _ = end.wait_for(|e| *e) => return Err(format!("the drill ended before slot {n}")),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(at.offset) => Ok(()),
            _ = end.wait_for(|e| *e) => Err("the drill ended during the offset".into()),
        }
    }

    /// Waits for the duration, or for the end of the drill when there is none.
    async fn hold(&self, d: Option<Duration>) {
        let mut end = self.end.subscribe();
        match d {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = end.wait_for(|e| *e).await;
            }
        }
    }
}

/// Runs scenario `s` with `seed` in `dir` (wiped if it is a drill directory). `progress`
/// receives one line per step: the lab starts, the faults and the planned handover run against
/// the workload (`execute`), everything is healed and collected (`collect`), and the
/// independent checker and the scenario's criteria judge the recording (`judge`).
///
/// Errors: only when nothing can be judged (the directory is not ours, the lab does not
/// start, the initial grant fails); every later failure is a failed check in the outcome.
pub async fn run(
    s: &Scenario,
    seed: u64,
    dir: &Path,
    progress: impl Fn(&str) + Send + Sync + 'static,
) -> Result<Outcome> {
    let t0 = Instant::now();
    s.validate()?;
    let schedule = Schedule::new(s, seed)?;
    progress(&format!("scenario {} seed {seed}", s.name));
    progress(&format!("hypothesis: {}", s.hypothesis));
    for line in schedule.describe() {
        progress(&format!("schedule {line}"));
    }
    let dir = prepare(dir)?;
    let shared = Arc::new(start(s, &schedule, &dir, Box::new(progress)).await?);
    let handover_id = execute(&shared, s, &schedule).await;
    let run = collect(shared, handover_id).await?;
    let judged = judge(s, &dir, &run)?;
    let outcome = Outcome {
        scenario: s.name.clone(),
        seed,
        passed: judged.failures.is_empty(),
        failures: judged.failures.clone(),
        violations: judged.violations,
        signed_share: judged.report.liveness.signed_share,
        handover_completed: judged.completed,
        seconds: t0.elapsed().as_secs_f64(),
        dir: dir.clone(),
    };
    write_outcome(s, seed, &schedule, &dir, &outcome, &judged, &run)?;
    run.lab.stop().await;
    Ok(outcome)
}

/// Starts the lab for `s` in `dir`, grants the first holder, and starts the workload.
///
/// Errors: the lab does not start, the initial grant fails, the workload cannot start.
async fn start(
    s: &Scenario,
    schedule: &Schedule,
    dir: &Path,
    progress: Box<dyn Fn(&str) + Send + Sync>,
) -> Result<Shared> {
    let mut cfg = LabConfig::three_regions(dir.join("lab"));
    cfg.validators = s.lab.validators;
    cfg.kdf = KdfChoice::Pbkdf2Cheap;
    cfg.seconds_per_slot = s.lab.seconds_per_slot;
    cfg.slots_per_epoch = s.lab.slots_per_epoch;
    cfg.finality_lag_epochs = s.lab.finality_lag_epochs;
    cfg.record_deadline_ms = s.lab.record_deadline_ms;
    cfg.netem = s.lab.netem;
    cfg.netem_seed = schedule.netem_seed;
    cfg.faketime_node = s.lab.faketime_node;
    cfg.raft_heartbeat_ms = s.lab.heartbeat_ms;
    cfg.tls = s.lab.tls;
    cfg.netns = s.lab.netns;
    cfg.wan = s.lab.wan;
    cfg.raft_election_ms = (s.lab.election_min_ms, s.lab.election_max_ms);
    let say = |l: &str| progress(&format!("[lab] {l}"));
    let lab = Lab::start(cfg, &say).await?;
    lab.write_manifest()?;
    lab.grant_initial().await.context("initial grant")?;
    let active = lab.active_agent().id.clone();
    let standby = lab.standby_agent_id();
    let clock = lab.clock();
    let client_tls = lab.client_tls();
    let workload = Workload::start(WorkloadConfig {
        beacon_url: lab.manifest.beacon_nodes[0].url.clone(),
        genesis_validators_root: lab.manifest.genesis_validators_root,
        agents: lab
            .manifest
            .agents
            .iter()
            .map(|a| AgentEndpoint {
                id: a.id.clone(),
                url: a.url.clone(),
            })
            .collect(),
        validators: lab.manifest.validators.clone(),
        clock,
        tls: lab.client_tls(),
        adversarial_every: s
            .workload
            .adversarial
            .then_some(s.workload.adversarial_every_slots),
    })
    .await?;
    Ok(Shared {
        operator: lab.operator(0).clone(),
        coordinators: lab
            .manifest
            .coordinators
            .iter()
            .map(|c| (c.id, c.region.clone(), c.url.clone()))
            .collect(),
        lab: Mutex::new(lab),
        workload,
        phases: watch::channel(Phases::new()).0,
        windows: Default::default(),
        errors: Default::default(),
        end: watch::channel(false).0,
        http: client_tls
            .builder()
            .build()
            .context("build the drill HTTP client")?,
        clock,
        active,
        standby,
        progress,
        samples: Samples::default(),
    })
}

/// Runs the faults of `schedule` and the planned handover against the running workload, then
/// the tail; reverts what is still active. Returns the planned handover's id, if one was made.
async fn execute(shared: &Arc<Shared>, s: &Scenario, schedule: &Schedule) -> Option<u64> {
    let samples = shared.samples.clone();
    let sampler = tokio::spawn(sample(shared.clone(), samples));
    shared.mark("start");
    let faults: Vec<_> = schedule
        .faults
        .iter()
        .cloned()
        .map(|f| tokio::spawn(fault(shared.clone(), f)))
        .collect();
    let handover_id = match &s.handover {
        Some(h) => {
            let expect = s
                .criteria
                .expect_doppelganger
                .as_deref()
                .map(|l| crate::lab::rogue::parse_indices(l).expect("validated"));
            handover(shared, h, expect).await
        }
        None => None,
    };
    // The tail: keep duties going, then end the drill.
    tokio::time::sleep(Duration::from_secs_f64(
        s.tail_slots as f64 * shared.clock.seconds_per_slot,
    ))
    .await;
    shared.say("drill ends; reverting faults still active");
    shared.end.send_replace(true);
    for f in faults {
        if let Err(e) = f.await {
            shared.error(format!("a fault task panicked: {e}"));
        }
    }
    sampler.abort();
    let _ = sampler.await;
    handover_id
}

/// Everything a finished drill recorded, with the lab still up for the last questions.
struct Recorded {
    lab: Lab,
    records: Vec<DutyRecord>,
    run_errors: Vec<String>,
    windows: Vec<FaultWindow>,
    leaders: Vec<LeaderSample>,
    authority: Vec<AuthoritySample>,
    handovers: Vec<Handover>,
    final_holder: Option<String>,
    audit: Option<Vec<AuditEntry>>,
    planned: Option<Handover>,
}

/// Heals the lab (continues stopped processes, heals the network), stops the workload, and
/// reads what the cluster says at the end.
///
/// Errors: a drill task still holds the drill state, or the workload cannot be stopped.
async fn collect(shared: Arc<Shared>, handover_id: Option<u64>) -> Result<Recorded> {
    let shared = Arc::into_inner(shared).context("drill tasks still hold the drill state")?;
    let Shared {
        lab,
        workload,
        windows,
        errors,
        operator,
        coordinators,
        http,
        samples,
        ..
    } = shared;
    let mut lab = lab.into_inner();
    // Whatever happened: continue stopped processes and heal the network.
    for p in lab.manifest.agents.clone() {
        if let Some(p) = lab.proc_mut(&p.id) {
            p.send(libc::SIGCONT);
        }
    }
    for c in lab.manifest.coordinators.clone() {
        if let Some(p) = lab.proc_mut(&format!("coordinator-{}", c.id)) {
            p.send(libc::SIGCONT);
        }
    }
    if let Some(n) = &lab.netem {
        n.heal_all();
    }
    let mut reconnect_errors = Vec::new();
    for r in lab.manifest.regions.clone() {
        if let Err(e) = lab.set_region_connected(&r.name, true) {
            reconnect_errors.push(format!("reconnect region {}: {e:#}", r.name));
        }
    }
    let records = workload.stop().await?;
    let mut run_errors = errors.into_inner().expect("errors lock");
    run_errors.extend(reconnect_errors);
    let windows = windows.into_inner().expect("windows lock");
    let (leaders, authority) = std::mem::take(&mut *samples.lock().expect("samples lock"));

    // What the cluster says at the end.
    let op = lab.operator(0).clone();
    let status = lab.ctl.status(&op).await;
    let (handovers, final_holder) = match status {
        Ok(st) => (st.handovers, st.holder),
        Err(e) => {
            run_errors.push(format!("failoverctl status at the end: {e:#}"));
            (vec![], None)
        }
    };
    let audit = fetch_audit(&http, &coordinators, &operator).await;
    for gone in lab.exited() {
        run_errors.push(format!("process exited during the drill: {gone}"));
    }
    let planned = handover_id.and_then(|id| handovers.iter().find(|h| h.id == id).cloned());

    Ok(Recorded {
        lab,
        records,
        run_errors,
        windows,
        leaders,
        authority,
        handovers,
        final_holder,
        audit,
        planned,
    })
}

/// The verdicts on one drill.
struct Judged {
    report: checker::CheckReport,
    summary: Summary,
    failures: Vec<String>,
    violations: usize,
    completed: Option<bool>,
}

/// Writes the recording to `dir`, runs the independent checker and the lab's run checks over
/// it, and applies the scenario's criteria.
///
/// Errors: the recording or the checker's reports cannot be written.
fn judge(s: &Scenario, dir: &Path, run: &Recorded) -> Result<Judged> {
    let Recorded {
        lab,
        records,
        run_errors,
        windows,
        leaders,
        authority,
        handovers,
        final_holder,
        audit,
        planned,
    } = run;
    let history = History {
        slots_per_epoch: lab.clock().slots_per_epoch,
        duties: records.clone(),
        handovers: handovers.clone(),
        audit: audit.clone().unwrap_or_default(),
        faults: windows.clone(),
        leaders: leaders.clone(),
        authority: authority.clone(),
        commands: lab.ctl.windows(),
    };
    write_jsonl(&dir.join(checker::FILE_DUTIES), records)?;
    history.save_authority_history(dir)?;
    let report = checker::check(&history);
    checker::write_reports(dir, &history, &report)?;

    let mut summary = Summary::build(SummaryInput {
        validators: lab.manifest.validators.len(),
        kdf: lab.manifest.keystore_kdf.clone(),
        agents: lab.manifest.agent_roles(),
        records: records.clone(),
        probes: vec![],
        handover: planned.clone(),
        final_holder: final_holder.clone(),
        run_errors: run_errors.clone(),
        report: report.clone(),
        duties_sent: true,
        expected_doppelganger: s
            .criteria
            .expect_doppelganger
            .as_deref()
            .map(crate::lab::rogue::parse_indices)
            .transpose()?,
    });
    replace_honest_check(&mut summary, records, windows);
    let mut failures: Vec<String> = summary
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("lab: {}: {}", c.name, c.detail))
        .collect();
    let violations = report
        .checks
        .iter()
        .map(|c| c.violations.len())
        .sum::<usize>();
    if audit.is_none() {
        failures.push("the audit record could not be read from any coordinator".into());
    }
    let signed_share = report.liveness.signed_share;
    if 1.0 - signed_share > s.criteria.max_unsigned_share + 1e-9 {
        failures.push(format!(
            "criteria: {:.1} % of honest duties unsigned, more than the allowed {:.1} %",
            (1.0 - signed_share) * 100.0,
            s.criteria.max_unsigned_share * 100.0
        ));
    }
    let completed = planned
        .as_ref()
        .map(|h| h.state == HandoverState::Completed);
    if s.criteria.handover_must_complete && completed != Some(true) {
        failures.push(format!(
            "criteria: the planned handover did not complete ({})",
            planned
                .as_ref()
                .map_or("never requested".into(), |h| format!("state {:?}", h.state))
        ));
    }
    Ok(Judged {
        report,
        summary,
        failures,
        violations,
        completed,
    })
}

/// Writes `summary.txt` (the lab summary, the checker's lines, the fault windows, the verdict)
/// and `drill.json` (scenario, seed, schedule, outcome, checker report) to `dir`.
///
/// Errors: a file cannot be written.
fn write_outcome(
    s: &Scenario,
    seed: u64,
    schedule: &Schedule,
    dir: &Path,
    outcome: &Outcome,
    judged: &Judged,
    run: &Recorded,
) -> Result<()> {
    let report = &judged.report;
    let mut text = judged.summary.to_string();
    text.push_str("\nINDEPENDENT CHECKER\n");
    for l in report.summary_lines() {
        text.push_str(&format!("  {l}\n"));
    }
    text.push_str("\nFAULT WINDOWS\n");
    for w in &run.windows {
        text.push_str(&format!(
            "  {:<40} {:>8.3} s\n",
            w.name,
            (w.end_us.saturating_sub(w.start_us)) as f64 / 1e6
        ));
    }
    text.push_str(&format!(
        "\nDRILL {} seed {}: {}\n",
        s.name,
        seed,
        if outcome.passed { "PASS" } else { "FAIL" }
    ));
    for f in &outcome.failures {
        text.push_str(&format!("  {f}\n"));
    }
    std::fs::write(dir.join("summary.txt"), &text).context("write summary.txt")?;
    let drill = serde_json::json!({
        "scenario": s,
        "seed": seed,
        "schedule": schedule.describe(),
        "outcome": outcome,
        "checker": report,
    });
    std::fs::write(
        dir.join("drill.json"),
        serde_json::to_string_pretty(&drill).context("serialize drill.json")?,
    )
    .context("write drill.json")
}

/// Makes `dir` a fresh drill directory.
fn prepare(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("list {}", dir.display()))?
            .next()
            .is_none();
        if !empty && !dir.join(DRILL_MARKER).exists() {
            bail!(
                "refusing to wipe {}: not empty and not a drill directory (no {DRILL_MARKER})",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("wipe {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::write(dir.join(DRILL_MARKER), "made by failover-drill\n")?;
    std::fs::canonicalize(dir).with_context(|| format!("resolve {}", dir.display()))
}

fn write_jsonl(path: &Path, records: &[DutyRecord]) -> Result<()> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).context("serialize a duty record")?);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

async fn fetch_audit(
    http: &reqwest::Client,
    coordinators: &[(u64, String, String)],
    op: &Operator,
) -> Option<Vec<AuditEntry>> {
    for (_, _, url) in coordinators {
        let res = http
            .get(format!("{}/v1/audit", url.trim_end_matches('/')))
            .bearer_auth(&op.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(r) = res {
            if r.status().is_success() {
                if let Ok(v) = r.json::<Vec<AuditEntry>>().await {
                    return Some(v);
                }
            }
        }
    }
    None
}

/// Replaces the lab summary's honest-duty check by its fault-aware form (see module docs).
fn replace_honest_check(summary: &mut Summary, records: &[DutyRecord], windows: &[FaultWindow]) {
    let grace = NO_ANSWER_GRACE.as_micros() as u64;
    let in_fault = |t: u64| {
        windows
            .iter()
            .any(|w| t + grace >= w.start_us && t <= w.end_us + grace)
    };
    let honest: Vec<&DutyRecord> = records.iter().filter(|r| r.probe.is_none()).collect();
    let excused = honest
        .iter()
        .filter(|r| r.status == 0 && in_fault(r.sent_us))
        .count();
    let raced = honest
        .iter()
        .filter(|r| super::workload::race_blocked(r, records))
        .count();
    // A duty held up by a fault (a partitioned agent's record batch waits for the cut-off
    // region) may reach the cluster after finality raised the validator's low watermark
    // above it: refusing it (412, `*_below_watermark`) is the safe answer, not a defect.
    let late = |r: &DutyRecord| {
        r.status == 412 && r.reason.contains("below_watermark") && in_fault(r.sent_us)
    };
    let refused_late = honest.iter().filter(|r| late(r)).count();
    let odd: Vec<String> = honest
        .iter()
        .filter(|r| !matches!(r.status, 200 | 403 | 503))
        .filter(|r| !(r.status == 0 && in_fault(r.sent_us)))
        .filter(|r| !super::workload::race_blocked(r, records))
        .filter(|r| !late(r))
        .map(|r| {
            format!(
                "{} {:?} validator {} slot {} → {} {}",
                r.agent,
                r.kind,
                r.validator,
                r.slot,
                r.status,
                crate::lab::summary::reason_label(&r.reason)
            )
        })
        .collect();
    let check = Check {
        name: "honest duties are signed or refused for authority (403/503); no answer only during a fault"
            .into(),
        ok: odd.is_empty(),
        detail: if odd.is_empty() {
            format!(
                "{excused} unanswered during faults, {raced} refused (412) after an adversarial \
                 race won, {refused_late} held up by a fault past the low watermark (412)"
            )
        } else {
            format!(
                "{} duties answered otherwise, e.g. {}",
                odd.len(),
                odd.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            )
        },
    };
    match summary
        .checks
        .iter_mut()
        .find(|c| c.name.starts_with("honest duties"))
    {
        Some(c) => *c = check,
        None => summary.checks.push(check),
    }
}

/// Samples every coordinator's leader, term, holder and token every ~250 ms.
async fn sample(
    sh: Arc<Shared>,
    out: Arc<std::sync::Mutex<(Vec<LeaderSample>, Vec<AuthoritySample>)>>,
) {
    loop {
        let polls = sh.coordinators.iter().map(|(id, region, url)| {
            let sh = sh.clone();
            async move {
                let at_us = unix_micros();
                (
                    *id,
                    region.clone(),
                    at_us,
                    sh.status(url, Duration::from_millis(400)).await,
                )
            }
        });
        for (id, region, at_us, r) in futures::future::join_all(polls).await {
            if let Ok(s) = r {
                let mut o = out.lock().expect("samples lock");
                o.0.push(LeaderSample {
                    at_us,
                    node_id: id,
                    region,
                    leader_id: s.leader_id,
                    term: s.term,
                });
                o.1.push(AuthoritySample {
                    at_us,
                    node_id: id,
                    holder: s.holder,
                    token: s.token,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The planned handover active → standby, marking phases. Returns its id once requested.
async fn handover(
    sh: &Arc<Shared>,
    h: &super::HandoverParams,
    expect_doppelganger: Option<Vec<u64>>,
) -> Option<u64> {
    let at = At::parse(&h.at).expect("validated");
    let wait = parse_duration(&h.wait).expect("validated");
    if let Err(e) = sh.wait_anchor(&at).await {
        sh.error(format!("planned handover: {e}"));
        return None;
    }
    let Some(to) = sh.standby.clone() else {
        sh.error("planned handover: the lab has no standby".into());
        return None;
    };
    let (ctl, alice, bob) = {
        let lab = sh.lab.lock().await;
        (
            lab.ctl.clone(),
            lab.operator(0).clone(),
            lab.operator(1).clone(),
        )
    };
    // A request may hit a cluster that is mid-fault: retry for the wait.
    let deadline = Instant::now() + wait;
    let req = loop {
        match ctl.request(&alice, &to, "drill: planned handover").await {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                sh.say(&format!("handover request failed, retrying: {e:#}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                sh.error(format!("planned handover request: {e:#}"));
                return None;
            }
        }
    };
    sh.mark("handover.requested");
    let id = req.id;
    if let Some(expected) = expect_doppelganger {
        let ops = (ctl, alice, bob);
        if let Err(e) = stopped_by_doppelganger(sh, &ops, id, &expected, wait).await {
            sh.error(format!("handover {id}: {e:#}"));
        }
        return Some(id);
    }
    for (state, phase) in [
        ("awaiting_approval", "handover.awaiting_approval"),
        ("completed", "handover.completed"),
    ] {
        if state == "completed" {
            let deadline = Instant::now() + wait;
            loop {
                match ctl.approve(&bob, id).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() < deadline => {
                        sh.say(&format!("approval failed, retrying: {e:#}"));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        sh.error(format!("approve handover {id}: {e:#}"));
                        return Some(id);
                    }
                }
            }
            sh.mark("handover.approved");
        }
        let deadline = Instant::now() + wait;
        loop {
            match ctl.wait(&alice, id, state, wait).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    sh.say(&format!("wait for {state} failed, retrying: {e:#}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    sh.error(format!("handover {id} never reached {state}: {e:#}"));
                    return Some(id);
                }
            }
        }
        sh.mark(phase);
    }
    Some(id)
}

/// What an operator does when the planned handover meets a signer outside the cluster
/// (`runbooks/doppelganger-detected.md`): wait for `doppelganger_detected`, check that it
/// names exactly `expected` (validator indices) and that the leader's alert series counts
/// them, check that a plain approval is refused, then abort it.
///
/// Errors: the first of these that does not hold.
async fn stopped_by_doppelganger(
    sh: &Arc<Shared>,
    (ctl, alice, bob): &(Failoverctl, Operator, Operator),
    id: u64,
    expected: &[u64],
    wait: Duration,
) -> Result<()> {
    let h = ctl
        .wait(alice, id, "doppelganger_detected", wait)
        .await
        .context("wait for doppelganger_detected")?;
    sh.mark("handover.doppelganger_detected");
    let named = h
        .liveness
        .as_ref()
        .map(LivenessGate::found_indices)
        .unwrap_or_default();
    ensure!(
        named == expected,
        "stopped naming validators {named:?}, the rogue signer signed for {expected:?}"
    );
    sh.say(&format!(
        "handover {id} stopped: doppelganger detected for validators {named:?}"
    ));
    // The alert's series on the leader (refreshed at each scrape).
    let leader = sh.leader().await?;
    let (url, http) = {
        let lab = sh.lab.lock().await;
        let url = lab
            .manifest
            .coordinators
            .iter()
            .find(|c| c.id == leader)
            .map(|c| c.url.clone())
            .context("the leader is not in the manifest")?;
        (url, lab.client_tls().builder().build()?)
    };
    let text = http
        .get(format!("{}/metrics", url.trim_end_matches('/')))
        .send()
        .await?
        .text()
        .await?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("failover_doppelganger_validators "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    ensure!(
        value == Some(expected.len() as f64),
        "the leader's failover_doppelganger_validators is {value:?}, not {} (the \
         DoppelgangerDetected alert would not fire)",
        expected.len()
    );
    sh.say(&format!(
        "alert series on node {leader}: failover_doppelganger_validators {}",
        expected.len()
    ));
    ensure!(
        ctl.approve(bob, id).await.is_err(),
        "a plain approval of a handover stopped by a doppelganger was accepted"
    );
    ctl.abort(bob, id, "drill: signer outside the cluster, see runbook")
        .await
        .context("abort")?;
    ctl.wait(alice, id, "aborted", wait)
        .await
        .context("wait for aborted")?;
    sh.mark("handover.aborted");
    Ok(())
}

/// Runs one fault step: waits for its anchor, applies it, holds, reverts, records the window.
async fn fault(sh: Arc<Shared>, f: PlannedFault) {
    let label = format!("#{} {}", f.index, f.action.describe());
    if let Err(e) = sh.wait_anchor(&f.at).await {
        sh.error(format!("fault {label} never fired: {e}"));
        return;
    }
    let start_us = unix_micros();
    let (name, links) = match apply(&sh, &f).await {
        Ok(applied) => applied,
        Err(e) => {
            sh.error(format!("fault {label} could not be applied: {e:#}"));
            return;
        }
    };
    sh.say(&format!("fault on: {name}"));
    sh.hold(f.duration).await;
    if let Err(e) = revert(&sh, &f, &name, &links).await {
        sh.error(format!("fault {label} could not be reverted: {e:#}"));
    }
    sh.say(&format!("fault off: {name}"));
    sh.windows.lock().expect("windows lock").push(FaultWindow {
        name,
        start_us,
        end_us: unix_micros(),
    });
}

fn node_list(ids: &[u64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Applies the fault; returns the window's name with the resolved targets (what revert uses)
/// and the netem links it changed.
async fn apply(sh: &Arc<Shared>, f: &PlannedFault) -> Result<(String, Vec<String>)> {
    let mut links = Vec::new();
    let name = apply_inner(sh, f, &mut links).await?;
    Ok((name, links))
}

async fn apply_inner(
    sh: &Arc<Shared>,
    f: &PlannedFault,
    touched: &mut Vec<String>,
) -> Result<String> {
    match &f.action {
        FaultAction::Kill { target } => {
            let ids = sh.resolve_nodes(target, f.pick).await?;
            let mut lab = sh.lab.lock().await;
            for id in &ids {
                lab.proc_mut(&format!("coordinator-{id}"))
                    .with_context(|| format!("no coordinator-{id}"))?
                    .kill();
            }
            Ok(format!("kill -9 {target} (nodes {})", node_list(&ids)))
        }
        FaultAction::Stop { target } => {
            let proc = match target.as_str() {
                "active_agent" => sh.holder().await,
                "standby_agent" => sh.standby.clone().context("no standby agent")?,
                t => {
                    let ids = sh.resolve_nodes(t, f.pick).await?;
                    format!("coordinator-{}", ids[0])
                }
            };
            let mut lab = sh.lab.lock().await;
            let p = lab
                .proc_mut(&proc)
                .with_context(|| format!("no process {proc}"))?;
            anyhow::ensure!(p.send(libc::SIGSTOP), "{proc} is not running");
            Ok(format!("SIGSTOP {target} ({proc})"))
        }
        FaultAction::Partition { region } => {
            let r = sh.resolve_region(region).await?;
            let lab = sh.lab.lock().await;
            if lab.has_netns() {
                // A real partition: the region's interface goes down.
                lab.set_region_connected(&r, false)?;
                *touched = vec![format!("netns:{r}")];
                return Ok(format!(
                    "partition {region} (region {r}'s namespace cut off)"
                ));
            }
            let n = lab.netem.as_ref().context("the lab has no netem")?;
            *touched = n.select(|l| l.from_region == r || l.to_region == r);
            let links = n.set_named(touched, LinkMode::Partition);
            anyhow::ensure!(links > 0, "no link touches region {r}");
            Ok(format!("partition {region} (region {r}, {links} links)"))
        }
        FaultAction::Loss { from, to, prob } => {
            let (fr, tr) = (sh.resolve_region(from).await?, sh.resolve_region(to).await?);
            let lab = sh.lab.lock().await;
            let n = lab.netem.as_ref().context("the lab has no netem")?;
            *touched = n.select(|l| l.from_region == fr && l.to_region == tr);
            let links = n.set_named(touched, LinkMode::Drop { prob: *prob });
            anyhow::ensure!(links > 0, "no link from {fr} to {tr}");
            Ok(format!(
                "loss {fr}->{tr} {:.0}% ({links} links)",
                prob * 100.0
            ))
        }
        FaultAction::Latency { min_ms, max_ms } => {
            let lab = sh.lab.lock().await;
            let n = lab.netem.as_ref().context("the lab has no netem")?;
            *touched = n.select(|l| l.from_region != l.to_region);
            let links = n.set_named(
                touched,
                LinkMode::Delay {
                    base_ms: *min_ms,
                    jitter_ms: max_ms - min_ms,
                },
            );
            Ok(format!(
                "latency {min_ms}..{max_ms}ms between regions ({links} links)"
            ))
        }
        FaultAction::DuplicateAgent { copy_of } => {
            let identity = match copy_of.as_str() {
                "active" => sh.holder().await,
                _ => sh.standby.clone().context("no standby agent")?,
            };
            let mut lab = sh.lab.lock().await;
            let region = lab
                .agent(&identity)
                .map(|a| a.region.clone())
                .with_context(|| format!("no agent {identity}"))?;
            let name = format!("{identity}-duplicate");
            let url = lab.start_extra_agent(&name, &identity, &region).await?;
            // Records carry the identity the coordinator knows the duplicate by.
            sh.workload.add_agent(AgentEndpoint {
                id: identity.clone(),
                url: url.clone(),
            });
            Ok(format!("duplicate agent {name} as {identity} at {url}"))
        }
        FaultAction::ClockJump { node, offset_s } => {
            let lab = sh.lab.lock().await;
            lab.set_clock_offset(*node, *offset_s)?;
            Ok(format!("clock jump node {node} {offset_s:+}s"))
        }
        FaultAction::RotateCerts => {
            let n = sh.lab.lock().await.rotate_certificates().await?;
            Ok(format!("rotated the certificates of {n} processes"))
        }
        FaultAction::RogueSigner { validators } => {
            sh.lab
                .lock()
                .await
                .perform(&format!("start-rogue-signer:{validators}"))
                .await?;
            Ok(format!(
                "rogue signer for validators {validators}, outside the cluster"
            ))
        }
        FaultAction::Attack { attack } => {
            let holder = sh.holder().await;
            let manifest = sh.lab.lock().await.manifest.clone();
            let target = super::attacks::Target {
                manifest: &manifest,
                holder: &holder,
                slot: sh.clock.now_slot(),
            };
            let seen = super::attacks::run(attack, &target).await?;
            Ok(format!("attack {attack}: {seen}"))
        }
    }
}

/// Reverts the fault: restarts, continues, sets the links it changed back to pass (only those,
/// so overlapping network faults revert independently; the later one's mode wins while both
/// are active), stops the duplicate, or sets the clock offset back to 0.
async fn revert(sh: &Arc<Shared>, f: &PlannedFault, name: &str, links: &[String]) -> Result<()> {
    match &f.action {
        FaultAction::Kill { .. } => {
            let ids: Vec<u64> = name
                .rsplit_once("(nodes ")
                .and_then(|(_, n)| n.strip_suffix(')'))
                .context("kill window names its nodes")?
                .split(',')
                .map(|n| n.parse().context("node id"))
                .collect::<Result<_>>()?;
            let mut lab = sh.lab.lock().await;
            for id in ids {
                lab.restart_coordinator(id).await?;
            }
        }
        FaultAction::Stop { .. } => {
            let proc = name
                .rsplit_once('(')
                .and_then(|(_, p)| p.strip_suffix(')'))
                .context("stop window names its process")?;
            let mut lab = sh.lab.lock().await;
            if let Some(p) = lab.proc_mut(proc) {
                p.send(libc::SIGCONT);
            }
        }
        FaultAction::Partition { .. } | FaultAction::Loss { .. } | FaultAction::Latency { .. } => {
            let lab = sh.lab.lock().await;
            for region in links.iter().filter_map(|l| l.strip_prefix("netns:")) {
                lab.set_region_connected(region, true)?;
            }
            if let Some(n) = &lab.netem {
                n.set_named(links, LinkMode::Pass);
            }
        }
        FaultAction::DuplicateAgent { .. } => {
            let url = name.rsplit_once(" at ").map(|(_, u)| u.to_string());
            if let Some(url) = &url {
                sh.workload.remove_agent(url);
            }
            let dup = name
                .split_whitespace()
                .nth(2)
                .context("duplicate window names its process")?
                .to_string();
            sh.lab.lock().await.stop_extra(&dup).await;
        }
        FaultAction::ClockJump { node, .. } => {
            if f.duration.is_some() {
                sh.lab.lock().await.set_clock_offset(*node, 0)?;
            }
        }
        FaultAction::RogueSigner { .. } => {
            sh.lab.lock().await.perform("stop-rogue-signer").await?;
        }
        FaultAction::Attack { .. } | FaultAction::RotateCerts => {}
    }
    Ok(())
}
