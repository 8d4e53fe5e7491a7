//! What a lab is asked to be ([`LabConfig`]): regions, agents and their roles, validators,
//! timing of the simulated chain, Raft timers, and the faults it may be given.

use std::path::PathBuf;

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

use super::keys::KdfChoice;

/// Role of a signer agent at the start of the lab.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Receives the initial grant of signing authority (in `lab.json`: holds it now).
    Active,
    /// Holds the same keys but no authority.
    #[default]
    Standby,
}

impl Role {
    /// `active` or `standby`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby => "standby",
        }
    }
}

/// One signer agent to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    /// Agent id, e.g. `agent-eu`.
    pub id: String,
    /// Region label.
    pub region: String,
    /// Initial role; exactly one agent of a lab is active.
    pub role: Role,
}

/// What to start.
#[derive(Debug, Clone, PartialEq)]
pub struct LabConfig {
    /// Lab directory (wiped and recreated).
    pub dir: PathBuf,
    /// Number of interop validators `0..validators`.
    pub validators: u64,
    /// Keystore KDF cost.
    pub kdf: KdfChoice,
    /// Slot length (seconds).
    pub seconds_per_slot: f64,
    /// `SLOTS_PER_EPOCH`.
    pub slots_per_epoch: u64,
    /// Epochs by which the beacon simulators' finality trails the head.
    pub finality_lag_epochs: u64,
    /// Epoch at which the simulated chain forks from its genesis version to Deneb (0: Deneb from
    /// genesis). A later epoch makes the drill cross a fork transition.
    pub fork_epoch: u64,
    /// One coordinator per region, node ids 1, 2, 3… in this order; node 1 bootstraps.
    pub coordinator_regions: Vec<String>,
    /// One beacon simulator per region.
    pub beacon_regions: Vec<String>,
    /// The signer agents.
    pub agents: Vec<AgentSpec>,
    /// Operator names; the first requests handovers, the second approves.
    pub operators: Vec<String>,
    /// Agent record deadline (ms): past it an unanswered record is a 503.
    pub record_deadline_ms: u64,
    /// The agents sign `VOLUNTARY_EXIT` (`allow_voluntary_exit`); off by default, as in
    /// production.
    pub allow_voluntary_exit: bool,
    /// Route every coordinator → coordinator link (each direction separately) and every
    /// agent → coordinator link through an in-process [`crate::netem`] proxy, so drills can
    /// partition regions, lose or delay traffic. Off: processes dial each other directly.
    pub netem: bool,
    /// TLS on every link of the lab (the default): a CA made for the lab, certificates for
    /// every process, `https://` URLs ([`super::pki`]). Off: plain HTTP, configured as
    /// `insecure_plaintext` everywhere.
    pub tls: bool,
    /// Every region in a network namespace of its own, its processes bound to its address
    /// ([`super::netns`]). Needs root; refused with a clear error where namespaces are not
    /// allowed.
    pub netns: bool,
    /// WAN latency between regions ([`super::netns::WAN_RTT_MS`]): `tc netem` in the
    /// namespaces where the kernel has it, else the lab's per-link proxies (turned on).
    pub wan: bool,
    /// Seed of the proxies' loss and delay decisions.
    pub netem_seed: u64,
    /// Run this coordinator (node id) under libfaketime, its wall clock offset by the
    /// seconds written in `DIR/faketime-<id>` (see [`super::Lab::set_clock_offset`]). The monotonic
    /// clock is left alone.
    pub faketime_node: Option<u64>,
    /// Raft heartbeat interval (ms); also the Raft RPC deadline, so it must exceed the
    /// cross-region round trip (DESIGN.md: about 3 × RTT).
    pub raft_heartbeat_ms: u64,
    /// Raft election timeout range (ms), about 10 × the heartbeat.
    pub raft_election_ms: (u64, u64),
    /// Log entries between snapshots (`raft.snapshot_every`; the log is purged up to a
    /// snapshot, keeping a quarter of this, at most the default `keep_logs`). `None`: the
    /// coordinator's default.
    pub raft_snapshot_every: Option<u64>,
}

impl LabConfig {
    /// The three-region lab: beacon nodes and coordinators in eu, us and ap, `agent-eu`
    /// active and `agent-us` standby, operators alice, bob and carol (two break-glass
    /// approvals besides the requester), 64 validators, 0.5 s slots,
    /// 8-slot epochs, finality two epochs behind the head, Deneb from genesis, standard PBKDF2
    /// keystores.
    pub fn three_regions(dir: PathBuf) -> Self {
        let regions: Vec<String> = ["eu", "us", "ap"].iter().map(|s| s.to_string()).collect();
        Self {
            dir,
            validators: 64,
            kdf: KdfChoice::Pbkdf2Standard,
            seconds_per_slot: 0.5,
            slots_per_epoch: 8,
            finality_lag_epochs: 2,
            fork_epoch: 0,
            coordinator_regions: regions.clone(),
            beacon_regions: regions,
            agents: vec![
                AgentSpec {
                    id: "agent-eu".into(),
                    region: "eu".into(),
                    role: Role::Active,
                },
                AgentSpec {
                    id: "agent-us".into(),
                    region: "us".into(),
                    role: Role::Standby,
                },
            ],
            operators: vec!["alice".into(), "bob".into(), "carol".into()],
            record_deadline_ms: 2_000,
            allow_voluntary_exit: false,
            netem: false,
            tls: true,
            netns: false,
            wan: false,
            netem_seed: 0,
            faketime_node: None,
            raft_heartbeat_ms: 100,
            raft_election_ms: (1_000, 2_000),
            raft_snapshot_every: None,
        }
    }

    /// The three-region lab made small and fast for tests: `validators` keys in cheap-KDF
    /// keystores (never for real keys), 0.25 s slots, finality one epoch behind the head.
    pub fn fast_test(dir: PathBuf, validators: u64) -> Self {
        Self {
            validators,
            kdf: KdfChoice::Pbkdf2Cheap,
            seconds_per_slot: 0.25,
            finality_lag_epochs: 1,
            ..Self::three_regions(dir)
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        ensure!(self.validators > 0, "need at least one validator");
        ensure!(
            self.seconds_per_slot > 0.0,
            "seconds per slot must be positive"
        );
        ensure!(self.slots_per_epoch > 0, "slots per epoch must be positive");
        ensure!(
            !self.coordinator_regions.is_empty(),
            "need at least one coordinator"
        );
        ensure!(
            !self.beacon_regions.is_empty(),
            "need at least one beacon node"
        );
        ensure!(
            self.agents
                .iter()
                .filter(|a| a.role == Role::Active)
                .count()
                == 1,
            "exactly one agent must be active"
        );
        ensure!(
            self.operators.len() >= 2,
            "need two operators (two-person rule)"
        );
        Ok(())
    }
}
