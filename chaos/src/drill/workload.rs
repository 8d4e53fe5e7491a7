//! The drill workload: the lab's honest duties, slot by slot, to every agent, including agents
//! that join during the drill (a duplicate signer), and optionally adversarial rounds.
//!
//! The honest duties are exactly those of [`crate::lab::duties`] ([`duties_for_slot`], sent
//! with [`send_duty`]). An adversarial round takes the latest attestation and block the current
//! signer (the agent with the newest signature) signed and builds the lab's conflict probes
//! against them ([`conflict_probes`]: identical re-sign, double vote, surround vote, double
//! proposal); each probe goes to every agent at the same instant, so two signers with the same
//! keys receive conflicting requests concurrently. Each round also sends two **races**, fresh
//! conflicting pairs of which neither was signed before, both to every agent at once:
//! - a double-vote race for the next epoch: the honest attestation of validator `v` for epoch
//!   `e + 1` (early) against the same source and target with another head root;
//! - a double-proposal race two slots ahead: the honest block of that slot's proposer against
//!   one with another body root.
//!
//! The attestation race picks the validator that attested in the previous slot, so its honest
//! vote of this epoch is normally recorded already. At most one message of each race may be
//! signed. A signed race (or probe) message can make a later honest duty of the same
//! validator get a legitimate, conservative 412 (same slot or target with another root, or
//! below the watermarks it raised): [`race_blocked`] says which honest refusals an earlier
//! adversarial signature explains.
//!
//! Invariants:
//! - every request is recorded exactly once with its send and answer times, whatever the
//!   outcome; adversarial requests carry `probe = "adversarial: …"`, honest ones none;
//! - the workload never decides who may sign: every agent gets every request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use failover_common::beacon::ForkResponse;
use failover_common::eth::{Fork, ForkInfo};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::lab::duties::{
    attestation_data, attestation_duty_from, block_duty_from, block_header, duties_for_slot,
    labelled_root, send_duty, AgentEndpoint, Duty, DutyKind, DutyRecord, SlotClock,
};
use crate::lab::probes::conflict_probes;
use crate::lab::Validator;

/// A running workload.
#[derive(Debug)]
pub struct Workload {
    endpoints: Arc<Mutex<Vec<AgentEndpoint>>>,
    records: Arc<Mutex<Vec<DutyRecord>>>,
    stop_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// What the workload needs.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Beacon node to read the fork from.
    pub beacon_url: String,
    /// Genesis validators root of the chain.
    pub genesis_validators_root: failover_common::types::Root,
    /// How to dial the agents (the lab's client TLS).
    pub tls: crate::lab::pki::ClientTls,
    /// The agents at start.
    pub agents: Vec<AgentEndpoint>,
    /// Validators.
    pub validators: Vec<Validator>,
    /// Chain clock.
    pub clock: SlotClock,
    /// Adversarial round every this many slots; `None`: honest only.
    pub adversarial_every: Option<u64>,
}

impl Workload {
    /// Reads the fork and starts sending from the next slot on.
    ///
    /// Errors: the beacon node does not answer.
    pub async fn start(cfg: WorkloadConfig) -> Result<Self> {
        let http = cfg
            .tls
            .builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .context("build the workload HTTP client")?;
        let fork = fetch_fork(&http, &cfg.beacon_url).await?;
        let endpoints = Arc::new(Mutex::new(cfg.agents.clone()));
        let records = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let fork_info = ForkInfo {
            fork,
            genesis_validators_root: cfg.genesis_validators_root,
        };
        let task = tokio::spawn(run(
            http,
            cfg,
            fork_info,
            endpoints.clone(),
            records.clone(),
            stop_rx,
        ));
        Ok(Self {
            endpoints,
            records,
            stop_tx,
            task,
        })
    }

    /// Adds an agent; it gets every request from the next slot on.
    pub fn add_agent(&self, e: AgentEndpoint) {
        self.endpoints.lock().expect("endpoints lock").push(e);
    }

    /// Removes the agent at `url`.
    pub fn remove_agent(&self, url: &str) {
        self.endpoints
            .lock()
            .expect("endpoints lock")
            .retain(|e| e.url != url);
    }

    /// A copy of the records so far.
    pub fn snapshot(&self) -> Vec<DutyRecord> {
        self.records.lock().expect("records lock").clone()
    }

    /// Stops, waits for requests in flight, returns every record ordered by send time.
    ///
    /// Errors: the workload task panicked.
    pub async fn stop(self) -> Result<Vec<DutyRecord>> {
        let _ = self.stop_tx.send(true);
        self.task.await.context("the workload task failed")?;
        let mut r = std::mem::take(&mut *self.records.lock().expect("records lock"));
        r.sort_by_key(|r| (r.sent_us, r.agent.clone()));
        Ok(r)
    }
}

async fn run(
    http: reqwest::Client,
    cfg: WorkloadConfig,
    mut fork_info: ForkInfo,
    endpoints: Arc<Mutex<Vec<AgentEndpoint>>>,
    records: Arc<Mutex<Vec<DutyRecord>>>,
    mut stop: watch::Receiver<bool>,
) {
    let spe = cfg.clock.slots_per_epoch;
    let mut in_flight = JoinSet::new();
    let mut slot = cfg.clock.now_slot() + 1;
    loop {
        tokio::select! {
            _ = cfg.clock.sleep_until(slot) => {}
            _ = stop.changed() => break,
        }
        if slot.is_multiple_of(spe) {
            match fetch_fork(&http, &cfg.beacon_url).await {
                Ok(f) => fork_info.fork = f,
                Err(e) => tracing::warn!("keeping the previous fork at slot {slot}: {e:#}"),
            }
        }
        let agents = endpoints.lock().expect("endpoints lock").clone();
        for duty in duties_for_slot(&cfg.validators, slot, &fork_info, spe) {
            let duty = Arc::new(duty);
            for agent in &agents {
                let (http, duty, records, agent) =
                    (http.clone(), duty.clone(), records.clone(), agent.clone());
                in_flight.spawn(async move {
                    let rec = send_duty(&http, &agent, &duty).await;
                    records.lock().expect("records lock").push(rec);
                });
            }
        }
        if let Some(every) = cfg.adversarial_every {
            if slot.is_multiple_of(every.max(1)) {
                let snapshot = records.lock().expect("records lock").clone();
                let signer = snapshot
                    .iter()
                    .filter(|r| r.status == 200 && r.probe.is_none())
                    .max_by_key(|r| r.received_us)
                    .map(|r| r.agent.clone());
                let mut sends: Vec<(String, Duty)> = races(&cfg.validators, slot, &fork_info, spe);
                if let Some(signer) = signer {
                    sends.extend(
                        conflict_probes(&snapshot, &signer, &cfg.validators, &fork_info, spe)
                            .into_iter()
                            .map(|p| (p.name, p.duty)),
                    );
                }
                {
                    for (pname, duty) in sends {
                        let duty = Arc::new(duty);
                        let name = format!("adversarial: {pname}");
                        for agent in &agents {
                            let (http, duty, records, agent, name) = (
                                http.clone(),
                                duty.clone(),
                                records.clone(),
                                agent.clone(),
                                name.clone(),
                            );
                            in_flight.spawn(async move {
                                let mut rec = send_duty(&http, &agent, &duty).await;
                                rec.probe = Some(name);
                                records.lock().expect("records lock").push(rec);
                            });
                        }
                    }
                }
            }
        }
        while in_flight.try_join_next().is_some() {}
        slot += 1;
    }
    while in_flight.join_next().await.is_some() {}
}

/// The two race pairs of the adversarial round at `slot` (see the module docs).
pub fn races(
    validators: &[Validator],
    slot: u64,
    fork_info: &ForkInfo,
    spe: u64,
) -> Vec<(String, Duty)> {
    if validators.is_empty() {
        return vec![];
    }
    let n = validators.len() as u64;
    let mut out = Vec::new();
    // Double-vote race for the next epoch, by the validator that attested in the previous
    // slot (none at the first slot of an epoch).
    let attested = (!slot.is_multiple_of(spe)).then(|| {
        validators
            .iter()
            .find(|v| v.index % spe == (slot - 1) % spe)
    });
    if let Some(Some(v)) = attested {
        races_vote(&mut out, v, slot, fork_info, spe);
    }
    // Double-proposal race two slots ahead.
    let bslot = slot + 2;
    let p = &validators[(bslot % n) as usize];
    let honest = block_header(p, bslot);
    let dishonest = failover_common::eth::BeaconBlockHeader {
        body_root: labelled_root("lab race body", bslot),
        ..honest
    };
    out.push((
        format!("race honest block slot {bslot} of v{}", p.index),
        block_duty_from(p, honest, fork_info, spe),
    ));
    out.push((
        format!("race double proposal slot {bslot} of v{}", p.index),
        block_duty_from(p, dishonest, fork_info, spe),
    ));
    out
}

fn races_vote(
    out: &mut Vec<(String, Duty)>,
    v: &Validator,
    slot: u64,
    fork_info: &ForkInfo,
    spe: u64,
) {
    let epoch = slot / spe + 1;
    let vslot = epoch * spe + v.index % spe;
    let honest = attestation_data(vslot, spe);
    let dishonest = failover_common::eth::AttestationData {
        beacon_block_root: labelled_root("lab race head", vslot),
        ..honest
    };
    let (s, t) = (honest.source.epoch, honest.target.epoch);
    out.push((
        format!("race honest attestation {s}→{t} of v{}", v.index),
        attestation_duty_from(v, honest, fork_info),
    ));
    out.push((
        format!("race double vote {s}→{t} of v{}", v.index),
        attestation_duty_from(v, dishonest, fork_info),
    ));
}

/// Whether the 412 refusal `honest` (a regular duty) is explained by an adversarial message
/// in `records` that was signed first for the same validator with another signing root: a
/// block of the same or a later slot, or an attestation of the same or a later target or of a
/// later source (each of which a conservative slashing protection may refuse after it).
///
/// An adversarial message answered 503 counts too: 503 means the outcome is unknown, and its
/// record may still have committed after the agent's deadline (during a frozen or partitioned
/// leader, the honest and the adversarial record of a race can commit in either order).
pub fn race_blocked(honest: &DutyRecord, records: &[DutyRecord]) -> bool {
    honest.probe.is_none()
        && honest.status == 412
        && records.iter().any(|r| {
            r.probe.is_some()
                && matches!(r.status, 200 | 503)
                && r.validator == honest.validator
                && r.kind == honest.kind
                && r.signing_root != honest.signing_root
                && r.received_us <= honest.received_us
                && match r.kind {
                    DutyKind::Block => r.slot >= honest.slot,
                    DutyKind::Attestation => {
                        r.target_epoch >= honest.target_epoch
                            || r.source_epoch > honest.source_epoch
                    }
                }
        })
}

pub(crate) async fn fetch_fork(http: &reqwest::Client, base: &str) -> Result<Fork> {
    let url = format!(
        "{}/eth/v1/beacon/states/head/fork",
        base.trim_end_matches('/')
    );
    let res = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let text = res.text().await.with_context(|| format!("read {url}"))?;
    let fork: ForkResponse =
        serde_json::from_str(&text).with_context(|| format!("parse {url}: {text}"))?;
    Ok(Fork {
        previous_version: fork.data.previous_version,
        current_version: fork.data.current_version,
        epoch: fork.data.epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_common::types::{Pubkey, Root};

    fn block(probe: Option<&str>, root: u8, status: u16, sent: u64, received: u64) -> DutyRecord {
        DutyRecord {
            agent: "agent-eu".into(),
            kind: DutyKind::Block,
            validator: 2,
            pubkey: Pubkey([2; 48]),
            slot: 26,
            source_epoch: None,
            target_epoch: None,
            signing_root: Root([root; 32]),
            status,
            reason: String::new(),
            signature: None,
            sent_us: sent,
            received_us: received,
            probe: probe.map(str::to_string),
            request: serde_json::Value::Null,
        }
    }

    #[test]
    fn an_honest_refusal_after_a_race_of_unknown_outcome_is_explained() {
        let honest = block(None, 1, 412, 500, 2_300);
        for status in [200, 503] {
            let race = block(Some("race double proposal"), 9, status, 0, 2_000);
            assert!(
                race_blocked(&honest, &[race.clone(), honest.clone()]),
                "{status}"
            );
        }
        // A race that was refused (412) or answered after the honest duty explains nothing.
        let refused = block(Some("race double proposal"), 9, 412, 0, 2_000);
        assert!(!race_blocked(&honest, &[refused]));
        let later = block(Some("race double proposal"), 9, 503, 0, 3_000);
        assert!(!race_blocked(&honest, &[later]));
    }
}
