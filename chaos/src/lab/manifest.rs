//! What a started lab is ([`Manifest`], written as `lab.json`): every process with its URL,
//! token files and log, the validators, and the lab chain's genesis validators root. Tools
//! that drive a lab read it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use failover_common::types::Root;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::Role;
use super::ctl::Operator;
use super::keys::Validator;
use super::procs::Binaries;
use super::prometheus;
use super::MANIFEST;

/// A coordinator of a running lab (in `lab.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorInfo {
    /// Raft node id.
    pub id: u64,
    /// Region.
    pub region: String,
    /// Base URL.
    pub url: String,
    /// OS process id.
    pub pid: u32,
    /// RocksDB directory.
    pub data_dir: PathBuf,
    /// Config file.
    pub config: PathBuf,
    /// Log file (stdout and stderr).
    pub log: PathBuf,
}

/// A signer agent of a running lab (in `lab.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent id.
    pub id: String,
    /// Region.
    pub region: String,
    /// Base URL of its Web3Signer API.
    pub url: String,
    /// OS process id.
    pub pid: u32,
    /// Whether this agent holds signing authority now (`active`) or not (`standby`), as the
    /// lab last saw it: after its own grant and handovers, and every second while
    /// `failover-lab --keep-running` runs ([`mark_holder`]). `failoverctl status` is the
    /// authority; this is for tools that follow `lab.json`.
    pub role: Role,
    /// The role the agent started with (`active`: it received the initial grant). Absent in
    /// a `lab.json` written before it existed, where `role` was the initial role.
    #[serde(default)]
    pub initial_role: Role,
    /// Config file.
    pub config: PathBuf,
    /// Log file (stdout and stderr).
    pub log: PathBuf,
}

/// A beacon simulator of a running lab (in `lab.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeaconInfo {
    /// Region.
    pub region: String,
    /// Base URL of its Beacon API.
    pub url: String,
    /// OS process id.
    pub pid: u32,
    /// Log file (stdout and stderr).
    pub log: PathBuf,
}

/// Everything needed to use a running lab: `DIR/lab.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Process id of the `failover-lab` process that owns the lab; `failover-lab down`
    /// signals it.
    pub lab_pid: u32,
    /// The lab directory.
    pub dir: PathBuf,
    /// Unix time of genesis (seconds).
    pub genesis_time: u64,
    /// Genesis validators root of the simulated chain.
    pub genesis_validators_root: Root,
    /// Slot length (seconds).
    pub seconds_per_slot: f64,
    /// `SLOTS_PER_EPOCH`.
    pub slots_per_epoch: u64,
    /// Keystore KDF, described.
    pub keystore_kdf: String,
    /// Coordinators, node 1 first.
    pub coordinators: Vec<CoordinatorInfo>,
    /// Signer agents.
    pub agents: Vec<AgentInfo>,
    /// Beacon simulators.
    pub beacon_nodes: Vec<BeaconInfo>,
    /// Operators with their clear-text tokens.
    pub operators: Vec<Operator>,
    /// Validators.
    pub validators: Vec<Validator>,
    /// Binaries used.
    pub binaries: Binaries,
    /// The lab's Prometheus, when started ([`super::Lab::start_prometheus`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<prometheus::PrometheusInfo>,
    /// The certificate files of a TLS lab (the default): the CA, an operator's client
    /// certificate, and the validator-client certificate the agents accept. `None`: every URL
    /// is plain `http://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<super::pki::LabTls>,
    /// On a netns lab (`--netns`): each region's namespace and address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionInfo>,
    /// On a `--wan` lab: how the latency between regions is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wan_latency: Option<super::netns::LatencyBy>,
}

/// A region of a netns lab (in `lab.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionInfo {
    /// Region name.
    pub name: String,
    /// Its network namespace (`ip netns exec NAME …` runs a command there).
    pub netns: String,
    /// Its address; its processes bind to it only.
    pub ip: std::net::Ipv4Addr,
}

impl Manifest {
    /// `(agent id, initial role)` of every agent, as the summary lists them.
    pub fn agent_roles(&self) -> Vec<(String, String)> {
        self.agents
            .iter()
            .map(|a| (a.id.clone(), a.initial_role.as_str().to_string()))
            .collect()
    }

    /// How tools dial this lab ([`super::pki::ClientTls`]).
    ///
    /// Errors: the lab's certificate files do not load.
    pub fn client_tls(&self) -> Result<super::pki::ClientTls> {
        super::pki::ClientTls::of(self.tls.as_ref())
    }

    /// Reads `dir/lab.json`.
    ///
    /// Errors: missing or unreadable file.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("read {} (is a lab running there?)", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }

    /// Every child process id with its binary: Prometheus (if any), then agents (they stop
    /// cleanly before the coordinators they talk to), then coordinators, then beacon nodes.
    pub fn child_pids(&self) -> Vec<(String, u32, PathBuf)> {
        let mut out = Vec::new();
        if let Some(p) = &self.prometheus {
            out.push(("prometheus".to_string(), p.pid, p.binary.clone()));
        }
        for a in &self.agents {
            out.push((a.id.clone(), a.pid, self.binaries.signer_agent.clone()));
        }
        for c in &self.coordinators {
            out.push((
                format!("coordinator-{}", c.id),
                c.pid,
                self.binaries.coordinator.clone(),
            ));
        }
        for b in &self.beacon_nodes {
            out.push((
                format!("beacon-{}", b.region),
                b.pid,
                self.binaries.beacon_sim.clone(),
            ));
        }
        out
    }
}

/// The genesis validators root of the lab chain: `sha256("failover-lab genesis")`.
pub fn lab_genesis_validators_root() -> Root {
    Root(Sha256::digest(b"failover-lab genesis").into())
}

/// A random 32-byte token as 64 hex digits.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Marks `holder` as the one `active` agent of `agents` and every other one `standby` (all of
/// them when nobody holds authority). Returns true when a role changed.
pub fn mark_holder(agents: &mut [AgentInfo], holder: Option<&str>) -> bool {
    let mut changed = false;
    for a in agents {
        let role = if Some(a.id.as_str()) == holder {
            Role::Active
        } else {
            Role::Standby
        };
        changed |= a.role != role;
        a.role = role;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, role: Role) -> AgentInfo {
        AgentInfo {
            id: id.into(),
            region: "eu".into(),
            url: "https://127.0.0.1:1".into(),
            pid: 1,
            role,
            initial_role: role,
            config: PathBuf::from("c.toml"),
            log: PathBuf::from("a.log"),
        }
    }

    #[test]
    fn the_role_follows_the_holder_and_the_initial_role_stays() {
        let mut agents = vec![
            agent("agent-eu", Role::Active),
            agent("agent-us", Role::Standby),
        ];
        assert!(!mark_holder(&mut agents, Some("agent-eu")));
        assert!(mark_holder(&mut agents, Some("agent-us")));
        assert_eq!(
            agents
                .iter()
                .map(|a| (a.role, a.initial_role))
                .collect::<Vec<_>>(),
            vec![(Role::Standby, Role::Active), (Role::Active, Role::Standby)]
        );
        let json = serde_json::to_value(&agents[1]).unwrap();
        assert_eq!(json["role"], "active");
        assert_eq!(json["initial_role"], "standby");
        // Nobody holds authority (a handover in progress): nobody is active.
        assert!(mark_holder(&mut agents, None));
        assert!(agents.iter().all(|a| a.role == Role::Standby));
    }

    #[test]
    fn an_older_lab_json_without_initial_role_still_reads() {
        let mut json = serde_json::to_value(agent("agent-eu", Role::Active)).unwrap();
        json.as_object_mut().unwrap().remove("initial_role");
        let a: AgentInfo = serde_json::from_value(json).unwrap();
        assert_eq!((a.role, a.initial_role), (Role::Active, Role::Standby));
    }
}
