//! The planned-handover drill run by `failover-lab`:
//!
//! 1. initial grant to the active agent (operator 0 requests, operator 1 approves);
//! 2. the duty simulator starts and signs through both agents;
//! 3. after `epochs_before_handover` epochs, a planned handover active → standby through
//!    `failoverctl`: request, `wait --state awaiting_approval` (finality has caught up with the
//!    fenced holder's last message), approve by the other operator, wait for `completed`;
//! 4. once the new holder signs, conflict probes against the old holder's last messages go to
//!    the new holder ([`super::probes`]);
//! 5. duties continue for `epochs_after_handover` epochs; conflict probes against the holder's
//!    own last messages go to it; duties stop;
//! 6. the [`Summary`] judges the recorded history, probes included;
//! 7. the independent [`crate::checker`] judges it again from the files it leaves in the lab
//!    directory (`duties.jsonl` with request bodies, `handovers.json`, `audit.json`,
//!    `leaders.json`, `authority.json`, sampled every 500 ms from every coordinator), writes
//!    `report.md`, `report.json` and `timeline.svg`, and its checks join the summary's.
//!
//! Invariants:
//! - duties never pause for the handover: the drill shows what a validator client sees;
//! - a failed step does not hide the evidence: it is recorded as a failed check, duties are
//!   still stopped and judged, and the summary is still printed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use failover_protocol::{AuditEntry, Handover};

use crate::checker::{self, AuthoritySample, History, LeaderSample};

use super::duties::{send_duty, AgentEndpoint, DutyRecord, DutySim};
use super::probes::{conflict_probes, Probe};
use super::summary::{Check, ProbeOutcome, Summary, SummaryInput};
use super::Lab;

/// Knobs of the drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioOptions {
    /// Run the duty simulator.
    pub duties: bool,
    /// Run the planned handover.
    pub handover: bool,
    /// Epochs of duties before the handover is requested.
    pub epochs_before_handover: u64,
    /// Epochs of duties after the handover completed.
    pub epochs_after_handover: u64,
    /// Longest wait for each handover state (finality, completion).
    pub handover_wait: Duration,
}

impl Default for ScenarioOptions {
    fn default() -> Self {
        Self {
            duties: true,
            handover: true,
            epochs_before_handover: 2,
            epochs_after_handover: 3,
            handover_wait: Duration::from_secs(120),
        }
    }
}

/// Runs the drill on a started lab (the initial grant must not have happened yet) and returns
/// the summary. `progress` receives one line per step.
///
/// Errors: only when the initial grant fails or the duty simulator cannot reach its beacon
/// node (nothing can be judged then); later failures become failed checks in the summary.
pub async fn run(
    lab: &mut Lab,
    opts: &ScenarioOptions,
    progress: &dyn Fn(&str),
) -> Result<Summary> {
    let started = Instant::now();
    let sampler = StatusSampler::start(lab);
    let grant = lab.grant_initial().await?;
    let active = lab.active_agent().id.clone();
    progress(&format!(
        "initial grant: handover {grant} to {active} requested by {}, approved by {}",
        lab.operator(0).name,
        lab.operator(1).name
    ));
    let standby = lab.standby_agent_id();
    let endpoints: Vec<AgentEndpoint> = lab
        .manifest
        .agents
        .iter()
        .map(|a| AgentEndpoint {
            id: a.id.clone(),
            url: a.url.clone(),
        })
        .collect();
    let endpoint = |id: &str| endpoints.iter().find(|e| e.id == id).cloned();

    let clock = lab.clock();
    let mut run_errors = Vec::new();
    let mut probes = Vec::new();
    let duties = if opts.duties {
        let sim = DutySim::connect(
            &lab.manifest.beacon_nodes[0].url,
            endpoints.clone(),
            lab.manifest.validators.clone(),
            clock,
            lab.client_tls(),
        )
        .await
        .context("connect the duty simulator")?
        .publishing_to(
            lab.manifest
                .beacon_nodes
                .iter()
                .map(|b| b.url.clone())
                .collect(),
        );
        progress(&format!(
            "duty simulator started at slot {} (epoch {}), signing through {} agents",
            clock.now_slot() + 1,
            clock.epoch_of(clock.now_slot() + 1),
            lab.manifest.agents.len()
        ));
        Some(sim.start())
    } else {
        None
    };

    let mut handover_id = None;
    let mut holder = active.clone();
    if let (true, Some(to)) = (opts.handover, standby) {
        if duties.is_some() {
            tokio::time::sleep(clock.epoch_duration() * opts.epochs_before_handover as u32).await;
        }
        progress(&format!(
            "slot {}: {} requests a planned handover {active} -> {to}",
            clock.now_slot(),
            lab.operator(0).name
        ));
        let t = Instant::now();
        match planned_handover(lab, &to, opts.handover_wait, progress).await {
            Ok(id) => {
                handover_id = Some(id);
                holder = to.clone();
                progress(&format!(
                    "slot {}: handover {id} completed in {:.1} s",
                    clock.now_slot(),
                    t.elapsed().as_secs_f64()
                ));
            }
            Err(e) => {
                progress(&format!("handover failed: {e:#}"));
                run_errors.push(format!("planned handover: {e:#}"));
            }
        }
        if let (Some(running), Some(id)) = (&duties, handover_id) {
            // The old holder's history must bind the new holder.
            let new_holder = lab
                .agent(&to)
                .context("the handover target is a lab agent")?;
            match lab
                .wait_signing_enabled(new_holder, Duration::from_secs(20))
                .await
            {
                Ok(()) => {
                    let set = conflict_probes(
                        &running.snapshot(),
                        &active,
                        &lab.manifest.validators,
                        &running.fork_info(),
                        clock.slots_per_epoch,
                    );
                    let target = endpoint(&to).expect("every lab agent has an endpoint");
                    probes.extend(send_probes(&target, set, &lab.client_tls(), progress).await?);
                }
                Err(e) => run_errors.push(format!("after handover {id}: {e:#}")),
            }
        }
        if duties.is_some() {
            tokio::time::sleep(clock.epoch_duration() * opts.epochs_after_handover as u32).await;
        }
    }

    let records: Vec<DutyRecord> = match duties {
        Some(running) => {
            // The holder's own recent history must bind it too (above finality).
            let set = conflict_probes(
                &running.snapshot(),
                &holder,
                &lab.manifest.validators,
                &running.fork_info(),
                clock.slots_per_epoch,
            );
            let target = endpoint(&holder).expect("every lab agent has an endpoint");
            probes.extend(send_probes(&target, set, &lab.client_tls(), progress).await?);
            let mut records = running.stop().await?;
            records.extend(probes.iter().map(|(_, rec)| rec.clone()));
            let path = lab.manifest.dir.join("duties.jsonl");
            let lines: Vec<String> = records
                .iter()
                .map(|r| serde_json::to_string(r).expect("duty records serialize"))
                .collect();
            std::fs::write(&path, lines.join("\n") + "\n")
                .with_context(|| format!("write {}", path.display()))?;
            progress(&format!(
                "duties stopped: {} requests recorded in {} ({:.0} s since start of drill)",
                records.len(),
                path.display(),
                started.elapsed().as_secs_f64()
            ));
            records
        }
        None => vec![],
    };

    let op = lab.operator(0);
    let mut handover = None;
    let shown = match handover_id {
        Some(id) => Some(id),
        None => last_requested(lab).await,
    };
    if let Some(id) = shown {
        match lab.ctl.show(op, id).await {
            Ok(h) => handover = Some(h),
            Err(e) => run_errors.push(format!("failoverctl handover show {id}: {e:#}")),
        }
    }
    let mut all_handovers: Vec<Handover> = vec![];
    let final_holder = match lab.ctl.status(op).await {
        Ok(s) => {
            all_handovers = s.handovers;
            s.holder
        }
        Err(e) => {
            run_errors.push(format!("failoverctl status: {e:#}"));
            None
        }
    };
    let audit: Vec<AuditEntry> = match lab.ctl.run(op, &["audit"], Duration::from_secs(30)).await {
        Ok(a) => a,
        Err(e) => {
            run_errors.push(format!("failoverctl audit: {e:#}"));
            vec![]
        }
    };
    let (leaders, authority) = sampler.stop().await;
    let history = History {
        slots_per_epoch: clock.slots_per_epoch,
        duties: records.clone(),
        handovers: all_handovers,
        audit,
        faults: vec![],
        leaders,
        authority,
        commands: lab.ctl.windows(),
    };
    for gone in lab.exited() {
        run_errors.push(format!("process exited during the drill: {gone}"));
    }
    let report = checker::check(&history);
    for line in report.summary_lines() {
        progress(&format!("checker: {line}"));
    }
    let mut summary = Summary::build(SummaryInput {
        validators: lab.manifest.validators.len(),
        kdf: lab.manifest.keystore_kdf.clone(),
        agents: lab.manifest.agent_roles(),
        records,
        probes: probes
            .into_iter()
            .map(|(verdict, rec)| ProbeOutcome {
                verdict,
                record: rec,
            })
            .collect(),
        handover,
        final_holder,
        run_errors,
        report: report.clone(),
        duties_sent: opts.duties,
        expected_doppelganger: None,
    });
    summary.checks.extend(write_checker_reports(
        &lab.manifest.dir,
        &history,
        &report,
        progress,
    ));
    Ok(summary)
}

/// Saves the authority history and the checker's reports in `dir`; a failure to write is a
/// failed check.
fn write_checker_reports(
    dir: &std::path::Path,
    history: &History,
    report: &checker::CheckReport,
    progress: &dyn Fn(&str),
) -> Vec<Check> {
    let mut checks = Vec::new();
    let written = history
        .save_authority_history(dir)
        .and_then(|()| checker::write_reports(dir, history, report));
    match written {
        Ok(()) => progress(&format!(
            "checker reports: {}/{{{},{},{}}}",
            dir.display(),
            checker::report::FILE_MD,
            checker::report::FILE_JSON,
            checker::report::FILE_SVG
        )),
        Err(e) => checks.push(Check {
            name: "the checker's reports were written".into(),
            ok: false,
            detail: format!("{e:#}"),
        }),
    }
    checks
}

/// Polls `GET /v1/status` of every coordinator every 500 ms (as the first operator) and keeps
/// who each one considers leader and holder, for the timeline.
struct StatusSampler {
    samples: Arc<Mutex<(Vec<LeaderSample>, Vec<AuthoritySample>)>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl StatusSampler {
    fn start(lab: &Lab) -> Self {
        let samples = Arc::new(Mutex::new((vec![], vec![])));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let nodes: Vec<(u64, String, String)> = lab
            .manifest
            .coordinators
            .iter()
            .map(|c| (c.id, c.region.clone(), c.url.clone()))
            .collect();
        let token = lab.operator(0).token.clone();
        let out = samples.clone();
        let tls = lab.client_tls();
        let task = tokio::spawn(async move {
            let Ok(http) = tls.builder().timeout(Duration::from_millis(800)).build() else {
                return;
            };
            loop {
                for (id, region, url) in &nodes {
                    let at_us = super::duties::unix_micros();
                    let got = failover_protocol::node_status(
                        &http,
                        url,
                        &token,
                        Duration::from_millis(800),
                    )
                    .await;
                    let mut o = out.lock().expect("sample lock");
                    match got {
                        Ok(s) => {
                            o.0.push(LeaderSample {
                                at_us,
                                node_id: *id,
                                region: region.clone(),
                                leader_id: s.leader_id,
                                term: s.term,
                            });
                            o.1.push(AuthoritySample {
                                at_us,
                                node_id: *id,
                                holder: s.holder,
                                token: s.token,
                            });
                        }
                        Err(_) => o.0.push(LeaderSample {
                            at_us,
                            node_id: *id,
                            region: region.clone(),
                            leader_id: None,
                            term: 0,
                        }),
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        Self {
            samples,
            stop,
            task,
        }
    }

    async fn stop(mut self) -> (Vec<LeaderSample>, Vec<AuthoritySample>) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
        std::mem::take(&mut *self.samples.lock().expect("sample lock"))
    }
}

impl Drop for StatusSampler {
    /// A drill that ends early (`?`) must not leave the poller running.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends each probe to `agent`, one after the other, and judges the answers.
///
/// Errors: never for a bad answer (that is a verdict); only if the HTTP client cannot be built.
async fn send_probes(
    agent: &AgentEndpoint,
    probes: Vec<Probe>,
    tls: &super::pki::ClientTls,
    progress: &dyn Fn(&str),
) -> Result<Vec<(Result<(), String>, DutyRecord)>> {
    let http = tls
        .builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("build the probe HTTP client")?;
    let mut out = Vec::new();
    for p in probes {
        let mut rec = send_duty(&http, agent, &p.duty).await;
        rec.probe = Some(p.name.clone());
        let verdict = p.judge(&rec);
        progress(&format!(
            "probe to {}: {} -> {} {}",
            agent.id,
            p.name,
            rec.status,
            match &verdict {
                Ok(()) => "(as expected)".to_string(),
                Err(e) => format!("(WRONG: {e})"),
            }
        ));
        out.push((verdict, rec));
    }
    Ok(out)
}

/// The operator procedure: operator 0 requests, waits for approval to be possible, operator 1
/// approves, operator 0 waits for completion. Each step is a `failoverctl` process.
async fn planned_handover(
    lab: &Lab,
    to: &str,
    wait: Duration,
    progress: &dyn Fn(&str),
) -> Result<u64> {
    let (alice, bob) = (lab.operator(0), lab.operator(1));
    let clock = lab.clock();
    let h = lab
        .ctl
        .request(alice, to, "planned maintenance of the active region")
        .await
        .with_context(|| format!("{} requests the handover", alice.name))?;
    progress(&format!(
        "slot {}: handover {} requested, {} fenced, required epoch {}",
        clock.now_slot(),
        h.id,
        h.from.as_deref().unwrap_or("nobody"),
        h.required_epoch
    ));
    lab.ctl
        .wait(alice, h.id, "awaiting_approval", wait)
        .await
        .context("wait for finality (awaiting_approval)")?;
    progress(&format!(
        "slot {}: finality covers epoch {}; {} approves",
        clock.now_slot(),
        h.required_epoch,
        bob.name
    ));
    lab.ctl
        .approve(bob, h.id)
        .await
        .with_context(|| format!("{} approves", bob.name))?;
    lab.ctl
        .wait(alice, h.id, "completed", wait)
        .await
        .context("wait for completion")?;
    Ok(h.id)
}

/// The id of the newest handover, so a failed drill still shows how far it got.
async fn last_requested(lab: &Lab) -> Option<u64> {
    let s = lab.ctl.status(lab.operator(0)).await.ok()?;
    let last = s.handovers.iter().map(|h| h.id).max()?;
    // The initial grant alone is not the planned handover.
    (s.handovers.len() > 1).then_some(last)
}
