//! The duty simulator: a validator client that sends real Web3Signer sign requests to every
//! signer agent of the lab, slot by slot, and records every answer.
//!
//! Each slot `s` (of epoch `e = s / SLOTS_PER_EPOCH`):
//! - validator `s mod n` proposes: a `BLOCK_V2` request with a Deneb `block_header`;
//! - every validator `v` with `v mod SLOTS_PER_EPOCH == s mod SLOTS_PER_EPOCH` attests once in
//!   the epoch: an `ATTESTATION` with `source = checkpoint(e - 1)` and `target =
//!   checkpoint(e)` (`source = target = checkpoint(0)` in epoch 0).
//!
//! Block and checkpoint roots are synthetic but deterministic (`sha256` of a label and the
//! slot), so the same duty is the same message whichever agent it goes to, and in any run.
//! `fork_info` comes from the beacon simulator (`/eth/v1/beacon/genesis` and
//! `/eth/v1/beacon/states/head/fork`), read when the simulator connects and again at the start
//! of every epoch, so the drill follows a fork transition as a validator client would.
//!
//! Invariants:
//! - every duty goes to every agent, active and standby alike, as one validator client with
//!   two remote signers would do it; only the coordinator decides who may sign;
//! - the signing root of every duty is computed here from the message the simulator sent (and
//!   sent along as `signingRoot`), never read from an agent's answer;
//! - every request is recorded exactly once, whatever its outcome (status 0 means no HTTP
//!   answer: connection error or timeout);
//! - messages of one validator are never slashable with each other by construction: one
//!   block per slot, and attestations with `source = target - 1` and strictly increasing
//!   targets. Any slashable pair in the record is therefore a bug in the system under test.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use failover_common::beacon::{ForkResponse, GenesisResponse};
use failover_common::eth::{
    compute_signing_root, AttestationData, BeaconBlockHeader, Checkpoint, Fork, ForkInfo,
    DOMAIN_BEACON_ATTESTER, DOMAIN_BEACON_PROPOSER,
};
use failover_common::types::{Root, Signature};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::keys::Validator;
pub use crate::checker::record::{DutyKind, DutyRecord};

/// The chain's clock: genesis time and slot length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotClock {
    /// Unix time of genesis (seconds).
    pub genesis_time: u64,
    /// Slot length (seconds).
    pub seconds_per_slot: f64,
    /// `SLOTS_PER_EPOCH`.
    pub slots_per_epoch: u64,
}

impl SlotClock {
    /// The current slot (0 before genesis).
    pub fn now_slot(&self) -> u64 {
        let since = unix_secs_f64() - self.genesis_time as f64;
        if since <= 0.0 {
            0
        } else {
            (since / self.seconds_per_slot).floor() as u64
        }
    }

    /// Unix time (seconds) at which `slot` starts.
    pub fn slot_start(&self, slot: u64) -> f64 {
        self.genesis_time as f64 + slot as f64 * self.seconds_per_slot
    }

    /// The epoch of `slot`.
    pub fn epoch_of(&self, slot: u64) -> u64 {
        slot / self.slots_per_epoch
    }

    /// Sleeps until `slot` starts (returns at once if it already has).
    pub async fn sleep_until(&self, slot: u64) {
        let wait = self.slot_start(slot) - unix_secs_f64();
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }

    /// Duration of one epoch.
    pub fn epoch_duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds_per_slot * self.slots_per_epoch as f64)
    }
}

/// Unix time now, in seconds with a fraction.
pub fn unix_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Unix time now, in microseconds.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One sign request the simulator sends: the message, its signing root and the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Duty {
    /// Block or attestation.
    pub kind: DutyKind,
    /// The validator that must sign.
    pub validator: Validator,
    /// Slot of the block or attestation (slots).
    pub slot: u64,
    /// Attestation source epoch; `None` for blocks.
    pub source_epoch: Option<u64>,
    /// Attestation target epoch; `None` for blocks.
    pub target_epoch: Option<u64>,
    /// Signing root computed by the simulator from the message, `fork_info` and the domain.
    pub signing_root: Root,
    /// The Web3Signer request body (includes `signingRoot`).
    pub body: serde_json::Value,
}

/// Synthetic, deterministic root of the block at `slot` (`sha256("lab block" ‖ slot_le)`).
pub fn block_root(slot: u64) -> Root {
    labelled_root("lab block", slot)
}

/// A synthetic root: `sha256(label ‖ n_le)`.
pub fn labelled_root(label: &str, n: u64) -> Root {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update(n.to_le_bytes());
    Root(h.finalize().into())
}

/// The checkpoint of `epoch`: the epoch and the root of its first block.
pub fn checkpoint(epoch: u64, slots_per_epoch: u64) -> Checkpoint {
    Checkpoint {
        epoch,
        root: block_root(epoch * slots_per_epoch),
    }
}

/// The honest block header of `proposer` at `slot`: synthetic, deterministic roots.
pub fn block_header(proposer: &Validator, slot: u64) -> BeaconBlockHeader {
    BeaconBlockHeader {
        slot,
        proposer_index: proposer.index,
        parent_root: block_root(slot.saturating_sub(1)),
        state_root: labelled_root("lab state", slot),
        body_root: labelled_root("lab body", slot),
    }
}

/// The `BLOCK_V2` duty of `proposer` at `slot`.
pub fn block_duty(proposer: &Validator, slot: u64, fork_info: &ForkInfo, spe: u64) -> Duty {
    block_duty_from(proposer, block_header(proposer, slot), fork_info, spe)
}

/// A `BLOCK_V2` request (Deneb `block_header`) for any header, honest or not.
pub fn block_duty_from(
    proposer: &Validator,
    header: BeaconBlockHeader,
    fork_info: &ForkInfo,
    spe: u64,
) -> Duty {
    let domain = fork_info.domain(DOMAIN_BEACON_PROPOSER, header.slot / spe);
    let signing_root = compute_signing_root(&header, domain);
    let body = json!({
        "type": "BLOCK_V2",
        "fork_info": fork_info,
        "signingRoot": signing_root,
        "beacon_block": { "version": "DENEB", "block_header": header },
    });
    Duty {
        kind: DutyKind::Block,
        validator: proposer.clone(),
        slot: header.slot,
        source_epoch: None,
        target_epoch: None,
        signing_root,
        body,
    }
}

/// The honest attestation data of `slot`: source = previous epoch's checkpoint, target = this
/// epoch's.
pub fn attestation_data(slot: u64, spe: u64) -> AttestationData {
    let epoch = slot / spe;
    AttestationData {
        slot,
        index: 0,
        beacon_block_root: block_root(slot),
        source: checkpoint(epoch.saturating_sub(1), spe),
        target: checkpoint(epoch, spe),
    }
}

/// The `ATTESTATION` duty of `attester` at `slot` ([`attestation_data`]).
pub fn attestation_duty(attester: &Validator, slot: u64, fork_info: &ForkInfo, spe: u64) -> Duty {
    attestation_duty_from(attester, attestation_data(slot, spe), fork_info)
}

/// An `ATTESTATION` request for any attestation data, honest or not.
pub fn attestation_duty_from(
    attester: &Validator,
    data: AttestationData,
    fork_info: &ForkInfo,
) -> Duty {
    let domain = fork_info.domain(DOMAIN_BEACON_ATTESTER, data.target.epoch);
    let signing_root = compute_signing_root(&data, domain);
    let body = json!({
        "type": "ATTESTATION",
        "fork_info": fork_info,
        "signingRoot": signing_root,
        "attestation": data,
    });
    Duty {
        kind: DutyKind::Attestation,
        validator: attester.clone(),
        slot: data.slot,
        source_epoch: Some(data.source.epoch),
        target_epoch: Some(data.target.epoch),
        signing_root,
        body,
    }
}

/// Every duty of `slot`: one proposal and the attestations of this slot's share of validators.
pub fn duties_for_slot(
    validators: &[Validator],
    slot: u64,
    fork_info: &ForkInfo,
    spe: u64,
) -> Vec<Duty> {
    if validators.is_empty() {
        return vec![];
    }
    let proposer = &validators[(slot % validators.len() as u64) as usize];
    let mut out = vec![block_duty(proposer, slot, fork_info, spe)];
    out.extend(
        validators
            .iter()
            .filter(|v| v.index % spe == slot % spe)
            .map(|v| attestation_duty(v, slot, fork_info, spe)),
    );
    out
}

/// A signer agent as the simulator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEndpoint {
    /// Agent id.
    pub id: String,
    /// Base URL of its Web3Signer API.
    pub url: String,
}

/// Sends one sign request and records the outcome.
pub async fn send_duty(http: &reqwest::Client, agent: &AgentEndpoint, duty: &Duty) -> DutyRecord {
    let url = format!(
        "{}/api/v1/eth2/sign/{}",
        agent.url.trim_end_matches('/'),
        duty.validator.pubkey
    );
    let sent_us = unix_micros();
    let result = http
        .post(&url)
        .header(reqwest::header::ACCEPT, "application/json")
        .json(&duty.body)
        .send()
        .await;
    let (status, text) = match result {
        Ok(res) => {
            let status = res.status().as_u16();
            match res.text().await {
                Ok(t) => (status, t),
                Err(e) => (0, format!("reading the answer failed: {e}")),
            }
        }
        Err(e) => (0, format!("no answer: {e}")),
    };
    let received_us = unix_micros();
    let (signature, reason) = if status == 200 {
        match parse_signature(&text) {
            Some(sig) => (Some(sig), String::new()),
            None => (
                None,
                format!("200 without a readable signature: {}", shorten(&text)),
            ),
        }
    } else {
        (None, shorten(&text))
    };
    DutyRecord {
        agent: agent.id.clone(),
        kind: duty.kind,
        validator: duty.validator.index,
        pubkey: duty.validator.pubkey,
        slot: duty.slot,
        source_epoch: duty.source_epoch,
        target_epoch: duty.target_epoch,
        signing_root: duty.signing_root,
        status,
        reason,
        signature,
        sent_us,
        received_us,
        probe: None,
        request: duty.body.clone(),
    }
}

/// Reads a Web3Signer signature answer: `{"signature": "0x…"}` or the bare `0x…` text form.
pub fn parse_signature(text: &str) -> Option<Signature> {
    #[derive(Deserialize)]
    struct Body {
        signature: Signature,
    }
    if let Ok(b) = serde_json::from_str::<Body>(text) {
        return Some(b.signature);
    }
    text.trim().trim_matches('"').parse().ok()
}

fn shorten(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

/// The duty simulator, connected to a beacon node and to the agents.
#[derive(Debug, Clone)]
pub struct DutySim {
    http: reqwest::Client,
    beacon_url: String,
    agents: Vec<AgentEndpoint>,
    validators: Vec<Validator>,
    fork_info: Arc<Mutex<ForkInfo>>,
    clock: SlotClock,
    /// Beacon nodes every signed message is published to ([`DutySim::publishing_to`]).
    publish_to: Vec<String>,
    /// Requests in flight at most ([`DutySim::with_max_in_flight`]); `None`: no limit.
    in_flight_limit: Option<Arc<tokio::sync::Semaphore>>,
}

impl DutySim {
    /// Reads genesis and the head fork from `beacon_url` and prepares to sign for
    /// `validators` through `agents`.
    ///
    /// Errors: the beacon node does not answer, or its genesis time differs from `clock`'s.
    pub async fn connect(
        beacon_url: &str,
        agents: Vec<AgentEndpoint>,
        validators: Vec<Validator>,
        clock: SlotClock,
        tls: super::pki::ClientTls,
    ) -> Result<Self> {
        let http = tls
            .builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .context("build the duty HTTP client")?;
        let base = beacon_url.trim_end_matches('/').to_string();
        let genesis: GenesisResponse = get_json(&http, &format!("{base}/eth/v1/beacon/genesis"))
            .await
            .context("read genesis from the beacon node")?;
        ensure!(
            genesis.data.genesis_time == clock.genesis_time,
            "beacon node {beacon_url} reports genesis time {}, the lab set {}",
            genesis.data.genesis_time,
            clock.genesis_time
        );
        let fork = fetch_fork(&http, &base)
            .await
            .context("read the head fork from the beacon node")?;
        Ok(Self {
            http,
            beacon_url: base,
            agents,
            validators,
            fork_info: Arc::new(Mutex::new(ForkInfo {
                fork,
                genesis_validators_root: genesis.data.genesis_validators_root,
            })),
            clock,
            publish_to: Vec::new(),
            in_flight_limit: None,
        })
    }

    /// Keeps at most `n` sign requests in flight, as a validator client's HTTP connection
    /// pool does; the others wait in the simulator (their latency counts from their send).
    /// Without it every duty of a slot is sent at once, each on a connection of its own.
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.in_flight_limit = Some(Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        self
    }

    /// Publishes every signed message to the beacon nodes at `urls`, as a validator client
    /// publishes what it signed (and as gossip would carry it to every node): an attestation
    /// as an Electra `SingleAttestation` (`POST /eth/v2/beacon/pool/attestations`), a block
    /// as `{message, signature}` with the signed header's fields (`POST
    /// /eth/v2/beacon/blocks`). The beacon simulators derive validator liveness from them. A
    /// failed publication is logged and changes no record.
    pub fn publishing_to(mut self, urls: Vec<String>) -> Self {
        self.publish_to = urls;
        self
    }

    /// Publishes the signed `duty` (`signature`) to every node of [`DutySim::publishing_to`].
    async fn publish(&self, duty: &Duty, signature: &failover_common::types::Signature) {
        let (path, body) = publication(duty, signature);
        for base in &self.publish_to {
            let url = format!("{}{path}", base.trim_end_matches('/'));
            match self.http.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(%url, status = %r.status(), "publishing a signed message was refused")
                }
                Err(e) => tracing::warn!(%url, error = %e, "publishing a signed message failed"),
            }
        }
    }

    /// The `fork_info` sent with requests now (refreshed at every epoch start).
    pub fn fork_info(&self) -> ForkInfo {
        *self.fork_info.lock().expect("fork info lock")
    }

    /// Starts sending duties from the next slot on, in a background task.
    pub fn start(self) -> RunningDuties {
        let records = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let fork_info = self.fork_info.clone();
        let task = tokio::spawn(self.run(records.clone(), stop_rx));
        RunningDuties {
            records,
            fork_info,
            stop_tx,
            task,
        }
    }

    async fn run(self, records: Arc<Mutex<Vec<DutyRecord>>>, mut stop: watch::Receiver<bool>) {
        let me = Arc::new(self);
        let spe = me.clock.slots_per_epoch;
        let mut in_flight = JoinSet::new();
        let mut slot = me.clock.now_slot() + 1;
        loop {
            tokio::select! {
                _ = me.clock.sleep_until(slot) => {}
                _ = stop.changed() => break,
            }
            if slot.is_multiple_of(spe) {
                // As a validator client does: follow the fork schedule through the head state.
                match fetch_fork(&me.http, &me.beacon_url).await {
                    Ok(fork) => me.fork_info.lock().expect("fork info lock").fork = fork,
                    Err(e) => tracing::warn!("keeping the previous fork at slot {slot}: {e:#}"),
                }
            }
            let fork_info = me.fork_info();
            for duty in duties_for_slot(&me.validators, slot, &fork_info, spe) {
                let duty = Arc::new(duty);
                for agent in me.agents.clone() {
                    let (me, duty, records) = (me.clone(), duty.clone(), records.clone());
                    in_flight.spawn(async move {
                        let _permit = match &me.in_flight_limit {
                            Some(limit) => Some(
                                limit
                                    .clone()
                                    .acquire_owned()
                                    .await
                                    .expect("the limit is never closed"),
                            ),
                            None => None,
                        };
                        let rec = send_duty(&me.http, &agent, &duty).await;
                        if let (200, Some(sig)) = (rec.status, rec.signature.as_ref()) {
                            me.publish(&duty, sig).await;
                        }
                        records.lock().expect("duty records lock").push(rec);
                    });
                }
            }
            while in_flight.try_join_next().is_some() {}
            slot += 1;
        }
        while in_flight.join_next().await.is_some() {}
    }
}

/// How a validator client publishes the signed `duty`: the Beacon API path and JSON body (an
/// Electra `SingleAttestation` list, or a block as `{message, signature}` carrying the signed
/// header's fields, which is what the beacon simulator reads of a `SignedBeaconBlock`).
pub fn publication(
    duty: &Duty,
    signature: &failover_common::types::Signature,
) -> (&'static str, serde_json::Value) {
    match duty.kind {
        DutyKind::Attestation => (
            "/eth/v2/beacon/pool/attestations",
            json!([{
                "committee_index": "0",
                "attester_index": duty.validator.index.to_string(),
                "data": duty.body["attestation"],
                "signature": signature,
            }]),
        ),
        DutyKind::Block => (
            "/eth/v2/beacon/blocks",
            json!({
                "message": duty.body["beacon_block"]["block_header"],
                "signature": signature,
            }),
        ),
    }
}

/// The `fork_info` of the beacon node at `base` now: its head fork and genesis validators
/// root (`GET /eth/v1/beacon/states/head/fork`, `GET /eth/v1/beacon/genesis`).
///
/// Errors: the node does not answer, or answers something malformed.
pub(super) async fn read_fork_info(http: &reqwest::Client, base: &str) -> Result<ForkInfo> {
    let genesis: GenesisResponse = get_json(http, &format!("{base}/eth/v1/beacon/genesis")).await?;
    Ok(ForkInfo {
        fork: fetch_fork(http, base).await?,
        genesis_validators_root: genesis.data.genesis_validators_root,
    })
}

/// `GET /eth/v1/beacon/states/head/fork` of the beacon node at `base`.
async fn fetch_fork(http: &reqwest::Client, base: &str) -> Result<Fork> {
    let fork: ForkResponse =
        get_json(http, &format!("{base}/eth/v1/beacon/states/head/fork")).await?;
    Ok(Fork {
        previous_version: fork.data.previous_version,
        current_version: fork.data.current_version,
        epoch: fork.data.epoch,
    })
}

async fn get_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> Result<T> {
    let res = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = res.status();
    let text = res.text().await.with_context(|| format!("read {url}"))?;
    ensure!(status.is_success(), "GET {url}: {status}: {text}");
    serde_json::from_str(&text).with_context(|| format!("parse the answer of {url}: {text}"))
}

/// Duties being sent in the background.
#[derive(Debug)]
pub struct RunningDuties {
    records: Arc<Mutex<Vec<DutyRecord>>>,
    fork_info: Arc<Mutex<ForkInfo>>,
    stop_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningDuties {
    /// A copy of every record so far, in arrival order.
    pub fn snapshot(&self) -> Vec<DutyRecord> {
        self.records.lock().expect("duty records lock").clone()
    }

    /// The `fork_info` the simulator sends with requests now.
    pub fn fork_info(&self) -> ForkInfo {
        *self.fork_info.lock().expect("fork info lock")
    }

    /// Takes every record so far, in arrival order, and keeps none (for long runs that
    /// consume the records as they go).
    pub fn drain(&self) -> Vec<DutyRecord> {
        std::mem::take(&mut *self.records.lock().expect("duty records lock"))
    }

    /// Stops sending, waits for the requests in flight, and returns every record ordered by
    /// send time.
    ///
    /// Errors: the simulator task panicked.
    pub async fn stop(self) -> Result<Vec<DutyRecord>> {
        let _ = self.stop_tx.send(true);
        self.task.await.context("the duty simulator task failed")?;
        let mut records = std::mem::take(&mut *self.records.lock().expect("duty records lock"));
        records.sort_by_key(|r| (r.sent_us, r.agent.clone()));
        Ok(records)
    }
}
