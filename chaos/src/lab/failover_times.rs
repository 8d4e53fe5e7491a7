//! How long signing stops when authority moves (issue 15 item 7), as operators feel it, over
//! repeated runs in one lab with two agents (`failover-bench --failover-runs N`):
//!
//! - **approval → first signature**: an operator requests a handover to the agent that does
//!   not hold authority and waits for `awaiting_approval` (finality covers the fenced holder's
//!   last message); a probe then sends the target agent a fresh attestation every
//!   [`PROBE_INTERVAL`]; the clock starts when the approving operator runs `failoverctl
//!   handover approve` and stops at the first signature the new holder returns. The next run
//!   hands authority back.
//! - **leader kill → first signature**: the holder signs one attestation (the cluster is
//!   healthy), the Raft leader is killed with SIGKILL, and the clock runs from the kill to the
//!   first signature of a fresh attestation sent to the holder; the killed node is restarted
//!   and caught up before the next run.
//!
//! After the first signature of every run the probe sends what a validator client sends next:
//! a double vote of the attestation just signed (which must be refused with 412, never a 503
//! or a signature), then [`AFTER_RESUME`] fresh attestations one at a time, whose answers are
//! counted by status. Every 503 there is a request signing refused after it had resumed.
//!
//! Invariants:
//! - every attestation the probe sends is new (a validator and target epoch nothing has
//!   signed), except the deliberate double vote, so a refusal is never a slashing rule doing
//!   its job on the probe's own history;
//! - every signature returned is verified with blst against the validator's key before it
//!   counts.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use failover_common::eth::{self, AttestationData, ForkInfo};

use super::duties::{
    attestation_data, attestation_duty_from, labelled_root, send_duty, AgentEndpoint, Duty,
    SlotClock,
};
use super::keys::Validator;
use super::summary::reason_label;
use super::Lab;

/// Pause between two probe requests while signing has not resumed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Fresh attestations sent one at a time after the first signature of a run.
pub const AFTER_RESUME: usize = 20;

/// How long one run may wait for the first signature before it counts as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The outcome of the failover runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailoverTimes {
    /// Approval → first signature by the new holder, one per completed run, sorted.
    pub approval: Vec<Duration>,
    /// Leader kill → first signature, one per completed run, sorted.
    pub leader_kill: Vec<Duration>,
    /// Answers to the double vote sent right after each first signature, by
    /// `status reason` (both kinds of run).
    pub double_vote: BTreeMap<String, usize>,
    /// Answers to the [`AFTER_RESUME`] fresh attestations of each run, by `status reason`
    /// (both kinds of run).
    pub after_resume: BTreeMap<String, usize>,
    /// Runs that did not complete, with the reason.
    pub failed_runs: Vec<String>,
}

/// Hands out attestations nothing has signed: validator by validator within the current
/// epoch of the lab's chain, never the same (validator, target epoch) twice.
struct FreshAttestations {
    validators: Vec<Validator>,
    clock: SlotClock,
    spe: u64,
    used: HashSet<(u64, u64)>,
}

impl FreshAttestations {
    /// The next unsigned attestation of the current epoch, or of the next epoch when this
    /// one's validators are used up.
    fn next(&mut self, fork_info: &ForkInfo) -> Duty {
        let mut epoch = self.clock.now_slot() / self.spe;
        loop {
            if let Some(v) = self
                .validators
                .iter()
                .find(|v| !self.used.contains(&(v.index, epoch)))
            {
                self.used.insert((v.index, epoch));
                let slot = epoch * self.spe + v.index % self.spe;
                let data = attestation_data(slot, self.spe);
                return attestation_duty_from(v, data, fork_info);
            }
            epoch += 1;
        }
    }
}

/// The same validator, slot and target as `signed`, another block root: a double vote.
fn double_vote_of(signed: &Duty, spe: u64, fork_info: &ForkInfo) -> Duty {
    let mut data: AttestationData = attestation_data(signed.slot, spe);
    data.beacon_block_root = labelled_root("bench double vote", signed.slot);
    attestation_duty_from(&signed.validator, data, fork_info)
}

/// One probe: sends fresh attestations to `agent` until one is signed (and its signature
/// verifies) and returns when that answer arrived, with the duty signed.
///
/// Errors: no signature within [`RUN_TIMEOUT`] (the error names the last answer), or a
/// signature that does not verify.
async fn until_signed(
    http: &reqwest::Client,
    agent: &AgentEndpoint,
    fresh: &mut FreshAttestations,
    fork_info: &ForkInfo,
) -> Result<(Instant, Duty)> {
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut last = String::from("nothing sent");
    while Instant::now() < deadline {
        let duty = fresh.next(fork_info);
        let rec = send_duty(http, agent, &duty).await;
        let at = Instant::now();
        if rec.status == 200 {
            verify(&duty, rec.signature.as_ref())?;
            return Ok((at, duty));
        }
        last = format!("{} {}", rec.status, rec.reason);
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    bail!(
        "{} returned no signature within {RUN_TIMEOUT:?}; last answer: {last}",
        agent.id
    )
}

fn verify(duty: &Duty, signature: Option<&failover_common::types::Signature>) -> Result<()> {
    let sig = signature.context("a 200 answer without a signature")?;
    ensure!(
        eth::verify(&duty.validator.pubkey, &duty.signing_root, sig),
        "the signature for validator {} does not verify",
        duty.validator.index
    );
    Ok(())
}

/// What follows a first signature: the double vote, then [`AFTER_RESUME`] fresh
/// attestations, tallied into `times`.
async fn after_resume(
    http: &reqwest::Client,
    agent: &AgentEndpoint,
    fresh: &mut FreshAttestations,
    fork_info: &ForkInfo,
    signed: &Duty,
    times: &mut FailoverTimes,
) -> Result<()> {
    let double = double_vote_of(signed, fresh.spe, fork_info);
    let rec = send_duty(http, agent, &double).await;
    ensure!(
        rec.status != 200,
        "{} signed a double vote of validator {} (slot {})",
        agent.id,
        signed.validator.index,
        signed.slot
    );
    *times
        .double_vote
        .entry(format!("{} {}", rec.status, reason_label(&rec.reason)))
        .or_default() += 1;
    let mut told = false;
    for _ in 0..AFTER_RESUME {
        let duty = fresh.next(fork_info);
        let rec = send_duty(http, agent, &duty).await;
        if rec.status == 200 {
            verify(&duty, rec.signature.as_ref())?;
        } else if !told {
            told = true;
            tracing::warn!(agent = %agent.id, status = rec.status, reason = %rec.reason, "refused after signing had resumed");
        }
        *times
            .after_resume
            .entry(format!("{} {}", rec.status, reason_label(&rec.reason)))
            .or_default() += 1;
    }
    Ok(())
}

/// Runs `runs` planned handovers and `runs` leader kills in `lab` (which must have two
/// agents, the first holding authority), and returns the times.
///
/// Errors: the lab has fewer than two agents or no fork info; a run that fails is recorded
/// in [`FailoverTimes::failed_runs`] instead, unless the cluster cannot be restored after it.
pub async fn measure(
    lab: &mut Lab,
    http: &reqwest::Client,
    fork_info: ForkInfo,
    runs: u64,
    progress: &dyn Fn(&str),
) -> Result<FailoverTimes> {
    ensure!(
        lab.manifest.agents.len() >= 2,
        "the failover runs need two agents"
    );
    let endpoint = |lab: &Lab, i: usize| AgentEndpoint {
        id: lab.manifest.agents[i].id.clone(),
        url: lab.manifest.agents[i].url.clone(),
    };
    let mut fresh = FreshAttestations {
        validators: lab.manifest.validators.clone(),
        clock: lab.clock(),
        spe: lab.config.slots_per_epoch,
        used: HashSet::new(),
    };
    let mut times = FailoverTimes::default();
    let mut holder = 0usize;

    for run in 1..=runs {
        let target = 1 - holder;
        let to = endpoint(lab, target);
        let outcome: Result<Duration> = async {
            let h = lab
                .ctl
                .request(
                    lab.operator(0),
                    &to.id,
                    "failover-bench: approval → first signature",
                )
                .await?;
            lab.ctl
                .wait(
                    lab.operator(0),
                    h.id,
                    "awaiting_approval",
                    Duration::from_secs(60),
                )
                .await?;
            let t0 = Instant::now();
            let (first, duty) = tokio::join!(
                until_signed(http, &to, &mut fresh, &fork_info),
                lab.ctl.approve(lab.operator(1), h.id)
            );
            duty?;
            let (at, signed) = first?;
            after_resume(http, &to, &mut fresh, &fork_info, &signed, &mut times).await?;
            Ok(at - t0)
        }
        .await;
        match outcome {
            Ok(d) => {
                holder = target;
                progress(&format!(
                    "handover {run}/{runs}: approval → first signature by {} in {:.0} ms",
                    to.id,
                    d.as_secs_f64() * 1e3
                ));
                times.approval.push(d);
            }
            Err(e) => {
                progress(&format!("handover {run}/{runs} failed: {e:#}"));
                times.failed_runs.push(format!("handover {run}: {e:#}"));
                // Authority may have moved anyway; follow the cluster's word.
                let st = lab.ctl.status(lab.operator(0)).await?;
                if st.holder.as_deref() == Some(lab.manifest.agents[1].id.as_str()) {
                    holder = 1;
                } else if st.holder.as_deref() == Some(lab.manifest.agents[0].id.as_str()) {
                    holder = 0;
                }
            }
        }
    }

    for run in 1..=runs {
        let agent = endpoint(lab, holder);
        // The cluster is healthy: the holder signs.
        until_signed(http, &agent, &mut fresh, &fork_info)
            .await
            .context("the holder does not sign before the kill")?;
        let outcome: Result<Duration> = async {
            // The node that says it is leader, not a follower's possibly stale word.
            let leader = self_declared_leader(lab).await?;
            let t0 = Instant::now();
            lab.perform(&format!("kill-coordinator:{leader}")).await?;
            let (at, signed) = until_signed(http, &agent, &mut fresh, &fork_info).await?;
            after_resume(http, &agent, &mut fresh, &fork_info, &signed, &mut times).await?;
            Ok(at - t0)
        }
        .await;
        match outcome {
            Ok(d) => {
                progress(&format!(
                    "leader kill {run}/{runs}: first signature in {:.0} ms",
                    d.as_secs_f64() * 1e3
                ));
                times.leader_kill.push(d);
            }
            Err(e) => {
                progress(&format!("leader kill {run}/{runs} failed: {e:#}"));
                times.failed_runs.push(format!("leader kill {run}: {e:#}"));
            }
        }
        restore_cluster(lab)
            .await
            .context("restart the killed coordinator")?;
    }
    times.approval.sort();
    times.leader_kill.sort();
    Ok(times)
}

/// The id of the Raft leader as the cluster sees it: a node that names itself leader and that
/// another node names as leader in the same term. A node's own word alone is not enough: a
/// coordinator restarted with a committed vote for itself can briefly report itself leader of
/// a term that has since moved on (the bench once "killed the leader" that way and saw the
/// next signature 6 ms later).
///
/// Errors: no such node within 30 s.
async fn self_declared_leader(lab: &Lab) -> Result<u64> {
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u64, (Option<u64>, u64)>::new());
    let agreed = std::sync::Mutex::new(None::<u64>);
    lab.wait_status(
        "a leader two nodes agree on",
        Duration::from_secs(30),
        |s| {
            let mut seen = seen.lock().expect("lock");
            seen.insert(s.node_id, (s.leader_id, s.term));
            let leader = seen
                .iter()
                .filter(|(id, (leader, _))| *leader == Some(**id))
                .filter(|(id, (_, term))| {
                    seen.iter()
                        .any(|(other, (l, t))| other != *id && *l == Some(**id) && t == term)
                })
                .max_by_key(|(_, (_, term))| *term)
                .map(|(id, _)| *id);
            *agreed.lock().expect("lock") = leader;
            leader.is_some()
        },
    )
    .await?;
    let id = agreed.lock().expect("lock").context("no leader")?;
    Ok(id)
}

/// Restarts every stopped coordinator and waits until each has applied what the leader had
/// applied when it came back, so the next kill leaves a working majority.
async fn restore_cluster(lab: &mut Lab) -> Result<()> {
    lab.perform("start-coordinator:down").await?;
    let leader = self_declared_leader(lab).await?;
    let target = std::sync::Mutex::new(None::<u64>);
    lab.wait_status("the leader's applied index", Duration::from_secs(30), |s| {
        if s.node_id == leader {
            *target.lock().expect("lock") = s.applied_index;
            true
        } else {
            false
        }
    })
    .await?;
    let target = target.lock().expect("lock").unwrap_or(0);
    let ids: Vec<u64> = lab.manifest.coordinators.iter().map(|c| c.id).collect();
    for id in ids {
        lab.wait_status(
            &format!("node {id} to apply index {target}"),
            Duration::from_secs(60),
            |s| s.node_id == id && s.applied_index.unwrap_or(0) >= target,
        )
        .await?;
    }
    Ok(())
}

impl std::fmt::Display for FailoverTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        writeln!(
            f,
            "\nwhen authority moves (probe: a fresh attestation every {} ms until one is \
             signed):",
            PROBE_INTERVAL.as_millis()
        )?;
        writeln!(
            f,
            "  {:<44} {:>5} {:>9} {:>9} {:>9}  TARGET",
            "", "RUNS", "P50_MS", "P99_MS", "MAX_MS"
        )?;
        for (name, times, target) in [
            (
                "approval → first signature by the new holder",
                &self.approval,
                "<= 1000 ms",
            ),
            (
                "leader kill → first signature",
                &self.leader_kill,
                "<= 3000 ms",
            ),
        ] {
            writeln!(
                f,
                "  {name:<44} {:>5} {:>9.0} {:>9.0} {:>9.0}  {target}",
                times.len(),
                ms(super::bench::percentile(times, 0.5)),
                ms(super::bench::percentile(times, 0.99)),
                ms(times.last().copied().unwrap_or_default()),
            )?;
        }
        let tally = |m: &BTreeMap<String, usize>| {
            if m.is_empty() {
                "none sent".to_string()
            } else {
                m.iter()
                    .map(|(k, n)| format!("{k} ×{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        writeln!(
            f,
            "  the double vote sent right after each first signature: {}",
            tally(&self.double_vote)
        )?;
        writeln!(
            f,
            "  the {AFTER_RESUME} fresh attestations after each first signature: {}",
            tally(&self.after_resume)
        )?;
        for e in &self.failed_runs {
            writeln!(f, "  FAILED {e}")?;
        }
        Ok(())
    }
}
