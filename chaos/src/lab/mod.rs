//! The local lab: real beacon-sim, coordinator and signer-agent processes on loopback, operated
//! through `failoverctl` and driven by a simulated validator client.
//!
//! [`Lab::start`] brings up, in order and each waited for (`READY <url>` lines, health
//! endpoints, a Raft leader, agent registration):
//! 1. one `beacon-sim` per beacon region, all with the same genesis time and genesis
//!    validators root, so they agree on slots and finality;
//! 2. one `coordinator` per region (node 1 bootstraps the cluster), with the operators (random
//!    tokens, stored hashed), the agents, one approval under the two-person rule, and every
//!    beacon node as a finality source;
//! 3. the signer agents, each with its own copy of the same EIP-2335 keystores of the interop
//!    validators `0..n`.
//!
//! [`scenario`] then runs the planned-handover drill and [`summary`] judges it. What a lab is
//! asked to be is [`config`]; what a started lab is, written as `lab.json`, is [`manifest`].
//!
//! Invariants:
//! - the lab builds nothing: it runs the binaries next to its own executable ([`Binaries`]);
//! - every process the lab starts is stopped by [`Lab::stop`], or killed when the [`Lab`] is
//!   dropped (an error half-way through start leaves nothing running);
//! - the lab directory is wiped at start, and only if it is empty or was made by the lab
//!   (it holds the marker file `.failover-lab`) and no lab is running in it;
//! - secrets (operator, agent and cluster tokens, keystore passwords) are written only inside
//!   the lab directory, mode 0600; coordinators only see token hashes.
//!
//! For drills ([`crate::drill`]) the lab can also route every link through
//! [`crate::netem`] proxies ([`LabConfig::netem`]: node i's config names, for peer j, the
//! proxy of link i→j; each agent's `coordinators` are its own proxies, tagged with its region),
//! run one coordinator under libfaketime ([`LabConfig::faketime_node`]), restart a coordinator
//! in place ([`Lab::restart_coordinator`]: same config, data directory and port), and start
//! a duplicate signer agent with an existing agent's identity ([`Lab::start_extra_agent`]).
//! Operators and the lab's own status polls always reach the coordinators directly. With
//! `netem` off the lab is exactly the default lab.

pub mod bench;
pub mod config;
pub mod ctl;
pub mod duties;
pub mod failover_times;
pub mod keys;
pub mod manifest;
pub mod netns;
pub mod ops;
pub mod pki;
pub mod probes;
pub mod procs;
pub mod prometheus;
pub mod rogue;
pub mod scenario;
pub mod steady;
pub mod summary;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use coordinator::config::{
    token_hash, AgentCfg, BeaconCfg, ChainCfg, Config as CoordinatorConfig, HandoverCfg,
    OperatorCfg, Peer, RaftCfg,
};
use failover_protocol::StatusView;

pub use config::{AgentSpec, LabConfig, Role};
pub use ctl::{CommandWindow, Failoverctl, Operator};
pub use duties::{DutySim, SlotClock};
pub use keys::{KdfChoice, Validator};
pub use manifest::{
    lab_genesis_validators_root, random_token, AgentInfo, BeaconInfo, CoordinatorInfo, Manifest,
};
pub use procs::{Binaries, Proc};
pub use summary::Summary;

/// Name of the marker file that makes a directory wipeable by the lab.
pub const MARKER: &str = ".failover-lab";

/// The manifest file of a running lab, inside the lab directory.
pub const MANIFEST: &str = "lab.json";

/// Deadline of one `GET /v1/status` of a coordinator while the lab waits for a state.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// A running lab.
#[derive(Debug)]
pub struct Lab {
    /// What was started.
    pub config: LabConfig,
    /// Where everything is.
    pub manifest: Manifest,
    /// The operator CLI, pointed at every coordinator.
    pub ctl: Failoverctl,
    /// The network proxies, when [`LabConfig::netem`] is on.
    pub netem: Option<crate::netem::Netem>,
    procs: Vec<Proc>,
    http: reqwest::Client,
    /// The lab's CA while it runs (TLS labs), for rotation drills.
    pki: Option<pki::LabPki>,
    /// How the lab's tools dial.
    client_tls: pki::ClientTls,
    /// The regions' network namespaces (`--netns`); removed when the lab is dropped.
    regions: Option<netns::Regions>,
    /// How WAN latency between regions is applied (`--wan`), if it is.
    latency_by: Option<netns::LatencyBy>,
    /// The chain's fork constants as the lab's first beacon simulator serves them
    /// (`GET /eth/v1/config/spec`), read once it is up; the agents sign with them.
    chain: Option<LabChain>,
    /// A signer outside the cluster, started by the `start-rogue-signer` action
    /// ([`rogue::RogueSigner`]).
    rogue: Option<rogue::RunningRogue>,
}

/// The fork constants of the lab's chain that a signer agent needs (`network = "custom"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LabChain {
    genesis_fork_version: failover_common::types::Version,
    capella_fork_version: failover_common::types::Version,
    deneb_fork_epoch: u64,
}

impl Lab {
    /// Wipes `config.dir`, writes keys and configs, starts every process and waits until the
    /// cluster has a leader and every agent is healthy and registered. `progress` receives one
    /// line per step.
    ///
    /// Errors: a binary is missing, the directory is not safe to wipe, or a process failed to
    /// start or to become ready (the error carries the tail of its log). Processes already
    /// started are killed.
    pub async fn start(config: LabConfig, progress: &dyn Fn(&str)) -> Result<Lab> {
        config.validate()?;
        let binaries = Binaries::locate()?;
        let dir = prepare_dir(&config.dir)?;
        let logs = dir.join("logs");
        let secrets = dir.join("secrets");
        for d in [&logs, &secrets] {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
        }
        let gvr = lab_genesis_validators_root();
        let genesis_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("read the clock")?
            .as_secs();
        let (lab_pki, lab_tls) = if config.tls {
            let p = pki::create(&dir.join("pki"))?;
            let op = config
                .operators
                .first()
                .context("the lab needs an operator")?;
            let op_files = pki::issue(
                &p,
                &format!("operator-{op}"),
                failover_common::tls::issue::LeafKind::Operator(op.clone()),
                &[],
            )?;
            let vc = pki::issue(
                &p,
                "validator-client",
                failover_common::tls::issue::LeafKind::Client,
                &[],
            )?;
            let t = pki::LabTls {
                ca_file: p.ca_file(),
                operator: op.clone(),
                operator_cert_file: op_files.cert_file,
                operator_key_file: op_files.key_file,
                client_cert_file: vc.cert_file,
                client_key_file: vc.key_file,
            };
            (Some(p), Some(t))
        } else {
            (None, None)
        };
        let client_tls = pki::ClientTls::of(lab_tls.as_ref())?;
        let regions = if config.netns {
            let mut names: Vec<String> = Vec::new();
            let agent_regions = config.agents.iter().map(|a| &a.region);
            for r in config
                .coordinator_regions
                .iter()
                .chain(&config.beacon_regions)
                .chain(agent_regions)
            {
                if !names.contains(r) {
                    names.push(r.clone());
                }
            }
            let r = netns::Regions::create(&names, std::process::id())?;
            progress(&format!(
                "regions in network namespaces: {} (the lab's tools at {})",
                r.regions
                    .iter()
                    .map(|x| format!("{} {} {}", x.name, x.netns, x.ip))
                    .collect::<Vec<_>>()
                    .join(", "),
                r.host_ip
            ));
            Some(r)
        } else {
            None
        };
        let latency_by = match (config.wan, &regions) {
            (false, _) => None,
            (true, Some(r)) => match r.add_wan_latency() {
                Ok(()) => Some(netns::LatencyBy::TcNetem),
                Err(e) => {
                    progress(&format!(
                        "tc netem is not available on this machine ({e:#}); WAN latency goes \
                         through the lab's per-link proxies instead"
                    ));
                    Some(netns::LatencyBy::Proxies)
                }
            },
            (true, None) => Some(netns::LatencyBy::Proxies),
        };
        let proxies = config.netem || latency_by == Some(netns::LatencyBy::Proxies);
        let proxy_ip = regions
            .as_ref()
            .map_or(std::net::Ipv4Addr::LOCALHOST, |r| r.host_ip);
        let http = client_tls
            .builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("build the lab HTTP client")?;

        // Validator keys, written once and copied to every agent.
        let validators = keys::validators(config.validators);
        let t = Instant::now();
        let master = dir.join("keys");
        keys::write_keystores(
            &validators,
            config.kdf,
            &master.join("keystores"),
            &master.join("passwords"),
        )?;
        progress(&format!(
            "wrote {} keystores ({}) in {:.1} s",
            validators.len(),
            config.kdf.describe(),
            t.elapsed().as_secs_f64()
        ));

        let operators: Vec<Operator> = config
            .operators
            .iter()
            .map(|name| Operator {
                name: name.clone(),
                token: random_token(),
            })
            .collect();
        let mut lab = Lab {
            manifest: Manifest {
                lab_pid: std::process::id(),
                dir: dir.clone(),
                genesis_time,
                genesis_validators_root: gvr,
                seconds_per_slot: config.seconds_per_slot,
                slots_per_epoch: config.slots_per_epoch,
                keystore_kdf: config.kdf.describe(),
                coordinators: vec![],
                agents: vec![],
                beacon_nodes: vec![],
                operators,
                validators,
                binaries: binaries.clone(),
                prometheus: None,
                tls: lab_tls,
                regions: regions
                    .iter()
                    .flat_map(|r| &r.regions)
                    .map(|r| manifest::RegionInfo {
                        name: r.name.clone(),
                        netns: r.netns.clone(),
                        ip: r.ip,
                    })
                    .collect(),
                wan_latency: latency_by,
            },
            ctl: Failoverctl::new(&binaries.failoverctl, vec![], &dir.join("failoverctl.log")),
            netem: proxies
                .then(|| crate::netem::Netem::bound_to(config.netem_seed, proxy_ip.into())),
            config,
            procs: vec![],
            http,
            pki: lab_pki,
            client_tls,
            regions,
            latency_by,
            chain: None,
            rogue: None,
        };
        lab.start_beacons(&logs).await?;
        progress(&format!(
            "{} beacon simulators ready",
            lab.manifest.beacon_nodes.len()
        ));
        lab.start_coordinators(&logs, &secrets).await?;
        progress(&format!(
            "{} coordinators ready, leader elected",
            lab.manifest.coordinators.len()
        ));
        let urls = lab.coordinator_urls();
        lab.ctl = Failoverctl::new(&binaries.failoverctl, urls, &dir.join("failoverctl.log"))
            .with_ca(lab.manifest.tls.as_ref().map(|t| t.ca_file.clone()));
        let t = Instant::now();
        lab.start_agents(&logs, &secrets, &master).await?;
        lab.apply_wan_proxies();
        progress(&format!(
            "{} signer agents healthy and registered ({:.1} s, keystores decrypted)",
            lab.manifest.agents.len(),
            t.elapsed().as_secs_f64()
        ));
        Ok(lab)
    }

    async fn start_beacons(&mut self, logs: &Path) -> Result<()> {
        let c = &self.config;
        for region in &c.beacon_regions {
            let name = format!("beacon-{region}");
            let listen = format!("{}:{}", self.bind_ip(region), self.port(5052)?);
            let mut args = vec![
                "--listen".into(),
                listen,
                "--seconds-per-slot".into(),
                c.seconds_per_slot.to_string(),
                "--slots-per-epoch".into(),
                c.slots_per_epoch.to_string(),
                "--genesis-validators-root".into(),
                self.manifest.genesis_validators_root.to_string(),
                "--genesis-time".into(),
                self.manifest.genesis_time.to_string(),
                "--finality-lag-epochs".into(),
                c.finality_lag_epochs.to_string(),
                "--fork-epoch".into(),
                c.fork_epoch.to_string(),
                "--validators".into(),
                c.validators.to_string(),
            ];
            if let Some(p) = &self.pki {
                let kind = failover_common::tls::issue::LeafKind::Server;
                let files = pki::issue(p, &name, kind, &self.cert_hosts(region))?;
                for (flag, path) in [
                    ("--tls-ca", &files.ca_file),
                    ("--tls-cert", &files.cert_file),
                    ("--tls-key", &files.key_file),
                ] {
                    args.push(flag.into());
                    args.push(path.display().to_string());
                }
            }
            let log = logs.join(format!("{name}.log"));
            let (program, args) =
                self.command_in(region, &self.manifest.binaries.beacon_sim, args)?;
            self.procs.push(Proc::spawn(&name, &program, &args, &log)?);
        }
        let n = c.beacon_regions.len();
        let start = self.procs.len() - n;
        for (i, region) in self.config.beacon_regions.clone().iter().enumerate() {
            let p = &mut self.procs[start + i];
            let url = p.wait_ready(Duration::from_secs(20)).await?;
            self.manifest.beacon_nodes.push(BeaconInfo {
                region: region.clone(),
                url,
                pid: p.pid(),
                log: p.log.clone(),
            });
        }
        if let Some(b) = self.manifest.beacon_nodes.first() {
            self.chain = Some(self.read_chain(&b.url).await?);
        }
        Ok(())
    }

    /// The fork constants the beacon simulator at `url` serves.
    ///
    /// Errors: it does not answer, or a constant is missing or malformed.
    async fn read_chain(&self, url: &str) -> Result<LabChain> {
        let spec_url = format!(
            "{}{}",
            url.trim_end_matches('/'),
            failover_common::beacon::PATH_SPEC
        );
        let spec: failover_common::beacon::SpecResponse = self
            .http
            .get(&spec_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("GET {spec_url}"))?
            .json()
            .await
            .with_context(|| format!("parse {spec_url}"))?;
        let d = &spec.data;
        Ok(LabChain {
            genesis_fork_version: d.get_version("GENESIS_FORK_VERSION")?,
            capella_fork_version: d.get_version("CAPELLA_FORK_VERSION")?,
            deneb_fork_epoch: d.get_u64("DENEB_FORK_EPOCH")?,
        })
    }

    /// The beacon simulator an agent in `region` checks its chain against: its region's, or
    /// the first.
    fn beacon_for(&self, region: &str) -> Option<&BeaconInfo> {
        self.manifest
            .beacon_nodes
            .iter()
            .find(|b| b.region == region)
            .or(self.manifest.beacon_nodes.first())
    }

    async fn start_coordinators(&mut self, logs: &Path, secrets: &Path) -> Result<()> {
        let dir = self.manifest.dir.clone();
        // Plaintext labs authenticate coordinators with a shared token; TLS labs by their
        // node certificates.
        let cluster_token_file = if self.pki.is_none() {
            let f = secrets.join("cluster.token");
            keys::write_secret(&f, &random_token())?;
            Some(f)
        } else {
            None
        };
        let scheme = self.scheme();
        let peers: Vec<Peer> = self
            .config
            .coordinator_regions
            .iter()
            .enumerate()
            .map(|(i, region)| {
                Ok(Peer {
                    id: i as u64 + 1,
                    url: format!("{scheme}://{}:{}", self.bind_ip(region), self.port(7101)?),
                    region: region.clone(),
                    raft_url: None,
                })
            })
            .collect::<Result<_>>()?;
        let agent_tokens = self.agent_tokens(secrets)?;
        let faketime_env = match self.config.faketime_node {
            Some(id) => Some((id, faketime_env(&dir, id)?)),
            None => None,
        };
        let mut started = Vec::new();
        for peer in &peers {
            // Node `peer` dials node j at its own `peers[j].url`: through the proxy of link
            // peer→j when netem is on.
            let mut own_peers = peers.clone();
            if let Some(netem) = self.netem.as_mut() {
                for p in own_peers.iter_mut().filter(|p| p.id != peer.id) {
                    p.url = netem
                        .add_link(
                            &format!("raft {}->{}", peer.id, p.id),
                            crate::netem::LinkKind::Raft,
                            &peer.region,
                            &p.region,
                            &p.url,
                        )
                        .await?;
                }
            }
            let node_dir = dir.join(format!("coordinator-{}", peer.id));
            std::fs::create_dir_all(&node_dir)
                .with_context(|| format!("create {}", node_dir.display()))?;
            let tls = match &self.pki {
                Some(p) => Some(pki::issue(
                    p,
                    &format!("node-{}", peer.id),
                    failover_common::tls::issue::LeafKind::Node(peer.id),
                    &self.cert_hosts(&peer.region),
                )?),
                None => None,
            };
            let cfg = CoordinatorConfig {
                node_id: peer.id,
                listen: crate::netem::split_url(&peer.url)?.1.to_string(),
                raft_listen: None,
                data_dir: node_dir.join("db"),
                insecure_plaintext: tls.is_none(),
                tls,
                cluster_token_file: cluster_token_file.clone(),
                bootstrap: peer.id == 1,
                peers: own_peers,
                operators: self
                    .manifest
                    .operators
                    .iter()
                    .map(|o| OperatorCfg {
                        name: o.name.clone(),
                        token_sha256: Some(token_hash(&o.token)),
                    })
                    .collect(),
                agents: agent_tokens
                    .iter()
                    .map(|(id, token)| AgentCfg {
                        id: id.clone(),
                        token_sha256: Some(token_hash(token)),
                    })
                    .collect(),
                chain: ChainCfg {
                    genesis_validators_root: self.manifest.genesis_validators_root,
                    slots_per_epoch: self.config.slots_per_epoch,
                },
                beacon: BeaconCfg {
                    urls: self
                        .manifest
                        .beacon_nodes
                        .iter()
                        .map(|b| b.url.clone())
                        .collect(),
                    poll_interval_ms: 500,
                    timeout_ms: 1_000,
                    min_agreeing: 0,
                    ca_file: self.manifest.tls.as_ref().map(|t| t.ca_file.clone()),
                },
                handover: HandoverCfg {
                    approvals_required: 1,
                    two_person_rule: true,
                    // The production default (3) once the lab has enough operators besides a
                    // requester; never fewer than 2.
                    break_glass_approvals: (self.config.operators.len() as u32)
                        .saturating_sub(1)
                        .clamp(2, 3),
                    // The production default: every lab handover passes the liveness gate.
                    doppelganger_epochs: HandoverCfg::default().doppelganger_epochs,
                },
                raft: {
                    let d = RaftCfg::default();
                    let snapshot_every =
                        self.config.raft_snapshot_every.unwrap_or(d.snapshot_every);
                    RaftCfg {
                        heartbeat_ms: self.config.raft_heartbeat_ms,
                        election_min_ms: self.config.raft_election_ms.0,
                        election_max_ms: self.config.raft_election_ms.1,
                        snapshot_every,
                        keep_logs: d.keep_logs.min(snapshot_every / 4).max(1),
                        ..d
                    }
                },
                max_batch: 4096,
                limits: Default::default(),
            };
            cfg.validate().map_err(|e| {
                anyhow::anyhow!("the lab built an invalid coordinator config:\n{e}")
            })?;
            let cfg_path = node_dir.join("coordinator.toml");
            let text = toml::to_string(&cfg).context("serialize a coordinator config")?;
            std::fs::write(&cfg_path, text)
                .with_context(|| format!("write {}", cfg_path.display()))?;
            let name = format!("coordinator-{}", peer.id);
            let args = vec![
                "run".into(),
                "--config".into(),
                cfg_path.display().to_string(),
            ];
            let log = logs.join(format!("{name}.log"));
            let env = match &faketime_env {
                Some((id, env)) if *id == peer.id => env.clone(),
                _ => vec![],
            };
            let (program, args) =
                self.command_in(&peer.region, &self.manifest.binaries.coordinator, args)?;
            self.procs
                .push(Proc::spawn_with_env(&name, &program, &args, &env, &log)?);
            started.push((
                peer.clone(),
                cfg_path,
                node_dir.join("db"),
                self.procs.len() - 1,
            ));
        }
        for (peer, config, data_dir, idx) in started {
            let p = &mut self.procs[idx];
            let url = p.wait_ready(Duration::from_secs(30)).await?;
            self.manifest.coordinators.push(CoordinatorInfo {
                id: peer.id,
                region: peer.region,
                url,
                pid: p.pid(),
                data_dir,
                config,
                log: p.log.clone(),
            });
        }
        self.wait_status("a Raft leader", Duration::from_secs(30), |s| {
            s.leader_id.is_some()
        })
        .await
    }

    /// Tokens of every agent, generated once and kept in `secrets/<agent>.token`.
    fn agent_tokens(&self, secrets: &Path) -> Result<Vec<(String, String)>> {
        self.config
            .agents
            .iter()
            .map(|a| {
                let path = secrets.join(format!("{}.token", a.id));
                if let Ok(t) = std::fs::read_to_string(&path) {
                    return Ok((a.id.clone(), t));
                }
                let t = random_token();
                keys::write_secret(&path, &t)?;
                Ok((a.id.clone(), t))
            })
            .collect()
    }

    async fn start_agents(&mut self, logs: &Path, secrets: &Path, master: &Path) -> Result<()> {
        let mut started = Vec::new();
        for spec in self.config.agents.clone() {
            let agent_dir = self.manifest.dir.join(&spec.id);
            let keystores = agent_dir.join("keystores");
            let passwords = agent_dir.join("passwords");
            keys::copy_dir(&master.join("keystores"), &keystores)?;
            keys::copy_dir(&master.join("passwords"), &passwords)?;
            let cfg_path = agent_dir.join("signer-agent.toml");
            let coordinators = self.agent_coordinator_urls(&spec.id, &spec.region).await?;
            let text = self.agent_config(
                &spec,
                coordinators,
                &secrets.join(format!("{}.token", spec.id)),
                &keystores,
                &passwords,
            )?;
            std::fs::write(&cfg_path, text)
                .with_context(|| format!("write {}", cfg_path.display()))?;
            let args = vec![
                "run".into(),
                "--config".into(),
                cfg_path.display().to_string(),
            ];
            let log = logs.join(format!("{}.log", spec.id));
            let (program, args) =
                self.command_in(&spec.region, &self.manifest.binaries.signer_agent, args)?;
            self.procs
                .push(Proc::spawn(&spec.id, &program, &args, &log)?);
            started.push((spec, cfg_path, self.procs.len() - 1));
        }
        // Keystore decryption dominates agent start-up: allow for the chosen KDF's cost (every
        // agent decrypts every key, and they share the cores).
        let per_key_ms = match self.config.kdf {
            KdfChoice::ScryptStandard => 4_000,
            KdfChoice::Pbkdf2Standard => 500,
            KdfChoice::Pbkdf2Cheap => 10,
        };
        let ready_timeout = Duration::from_secs(60)
            + Duration::from_millis(
                per_key_ms * self.config.validators * self.config.agents.len() as u64,
            );
        for (spec, config, idx) in started {
            let p = &mut self.procs[idx];
            let url = p.wait_ready(ready_timeout).await?;
            self.manifest.agents.push(AgentInfo {
                id: spec.id,
                region: spec.region,
                url,
                pid: p.pid(),
                role: spec.role,
                initial_role: spec.role,
                config,
                log: p.log.clone(),
            });
        }
        for a in self.manifest.agents.clone() {
            self.wait_healthy(&a, Duration::from_secs(30)).await?;
        }
        let ids: Vec<String> = self.manifest.agents.iter().map(|a| a.id.clone()).collect();
        self.wait_status("every agent registered", Duration::from_secs(30), |s| {
            ids.iter().all(|id| s.agents.iter().any(|a| &a.id == id))
        })
        .await
    }

    /// The signer-agent config file of `spec`.
    fn agent_config(
        &self,
        spec: &AgentSpec,
        coordinators: Vec<String>,
        token_file: &Path,
        keystores: &Path,
        passwords: &Path,
    ) -> Result<String> {
        let (tls, api_clients) = match (&self.pki, &self.manifest.tls) {
            (Some(p), Some(lab_tls)) => {
                // A second agent with the same identity (the duplicate-agent drills) uses the
                // same certificate, as a copied configuration directory would.
                let files = pki::existing_or_issue(
                    p,
                    &format!("agent-{}", spec.id),
                    failover_common::tls::issue::LeafKind::Agent(spec.id.clone()),
                    &self.cert_hosts(&spec.region),
                )?;
                // The agent's Web3Signer API admits the lab's validator client by fingerprint,
                // as Web3Signer's known-clients file does.
                let known = files
                    .cert_file
                    .with_file_name(format!("agent-{}-known-clients.txt", spec.id));
                let vc = failover_common::tls::read_certs(&lab_tls.client_cert_file)?;
                let fp = failover_common::tls::CertInfo::parse(&vc[0])
                    .map_err(anyhow::Error::msg)?
                    .fingerprint_hex();
                std::fs::write(&known, format!("lab-validator-client {fp}\n"))
                    .with_context(|| format!("write {}", known.display()))?;
                let clients = failover_common::tls::allowlist::AllowListFiles {
                    client_ca_file: None,
                    known_clients_file: Some(known),
                };
                (Some(files), Some(clients))
            }
            _ => (None, None),
        };
        let cfg = signer_agent::Config {
            agent_id: spec.id.clone(),
            region: spec.region.clone(),
            // Port 0 picks a free port; in a region's namespace the ports are its own, and
            // each agent gets one of 9000 and up.
            listen: format!(
                "{}:{}",
                self.bind_ip(&spec.region),
                self.port(9000 + self.procs.len() as u16)?
            )
            .parse()
            .context("an agent listen address")?,
            coordinators,
            coordinator_token_file: Some(token_file.to_path_buf()),
            insecure_plaintext_coordinators: tls.is_none(),
            insecure_plaintext_api: api_clients.is_none(),
            tls,
            api_clients,
            genesis_validators_root: Some(self.manifest.genesis_validators_root),
            keystores_dir: keystores.to_path_buf(),
            passwords_dir: passwords.to_path_buf(),
            record_deadline_ms: self.config.record_deadline_ms,
            allow_voluntary_exit: self.config.allow_voluntary_exit,
            max_batch: 4096,
            slots_per_epoch: self.config.slots_per_epoch,
            ..signer_agent::Config::default()
        };
        // The lab's own chain, not mainnet's: its fork versions and Deneb epoch sign exits and
        // registrations, its genesis time and slot length bound far-future messages, and the
        // agent checks them against its region's beacon simulator at start-up.
        let cfg = match self.chain {
            Some(chain) => signer_agent::Config {
                network: signer_agent::config::NetworkSetting::Custom,
                genesis_fork_version: Some(chain.genesis_fork_version),
                capella_fork_version: Some(chain.capella_fork_version),
                deneb_fork_epoch: Some(chain.deneb_fork_epoch),
                genesis_time: Some(self.manifest.genesis_time),
                slot_duration_ms: Some((self.config.seconds_per_slot * 1000.0).round() as u64),
                beacon_node: self.beacon_for(&spec.region).map(|b| b.url.clone()),
                beacon_ca_file: self.manifest.tls.as_ref().map(|t| t.ca_file.clone()),
                ..cfg
            },
            None => cfg,
        };
        cfg.validate()
            .context("the lab built an invalid signer-agent config")?;
        toml::to_string(&cfg).context("serialize a signer-agent config")
    }

    async fn wait_healthy(&self, agent: &AgentInfo, timeout: Duration) -> Result<()> {
        let url = format!("{}/healthcheck", agent.url.trim_end_matches('/'));
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.http.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "{} is not healthy after {timeout:?}: GET {url} answered {last}; see {}",
            agent.id,
            agent.log.display()
        )
    }

    /// Polls `GET /v1/status` on every coordinator (as the first operator) until one answer
    /// satisfies `done`.
    ///
    /// Errors: `timeout` passed; the error names `what` and the last answer.
    pub async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&StatusView) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            for c in &self.manifest.coordinators {
                match self.status_of(&c.url).await {
                    Ok(s) if done(&s) => return Ok(()),
                    Ok(s) => {
                        last = format!(
                            "node {} leader {:?} holder {:?} agents {:?}",
                            s.node_id,
                            s.leader_id,
                            s.holder,
                            s.agents.iter().map(|a| a.id.as_str()).collect::<Vec<_>>()
                        )
                    }
                    Err(e) => last = format!("{e:#}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("waited {timeout:?} for {what}; last status: {last}")
    }

    async fn status_of(&self, url: &str) -> Result<StatusView> {
        let op = &self.manifest.operators[0];
        failover_protocol::node_status(&self.http, url, &op.token, STATUS_TIMEOUT)
            .await
            .with_context(|| format!("GET {url}/v1/status"))
    }

    /// The coordinator URLs an agent named `link_name` in `region` is configured with: the
    /// coordinators' own URLs, or with netem one new proxy link per coordinator.
    async fn agent_coordinator_urls(
        &mut self,
        link_name: &str,
        region: &str,
    ) -> Result<Vec<String>> {
        let coordinators = self.manifest.coordinators.clone();
        let Some(netem) = self.netem.as_mut() else {
            return Ok(coordinators.iter().map(|c| c.url.clone()).collect());
        };
        let mut out = Vec::new();
        for c in &coordinators {
            out.push(
                netem
                    .add_link(
                        &format!("{link_name}->{}", c.id),
                        crate::netem::LinkKind::Agent,
                        region,
                        &c.region,
                        &c.url,
                    )
                    .await?,
            );
        }
        Ok(out)
    }

    /// The address processes of `region` bind to: the region's own on a netns lab, else
    /// 127.0.0.1.
    fn bind_ip(&self, region: &str) -> String {
        self.regions
            .as_ref()
            .and_then(|r| r.region(region))
            .map_or_else(|| "127.0.0.1".to_string(), |r| r.ip.to_string())
    }

    /// A port for a listener: `fixed` inside a region's namespace (each has its own ports),
    /// else a free port on the loopback (0 for an agent, 9000 to 9099, which reports the one
    /// it got).
    fn port(&self, fixed: u16) -> Result<u16> {
        match (&self.regions, fixed) {
            (Some(_), p) => Ok(p),
            (None, 9000..=9099) => Ok(0),
            (None, _) => procs::free_port(),
        }
    }

    /// The hosts a certificate of a process in `region` names besides 127.0.0.1 and
    /// localhost: on a netns lab the region's address, and the bridge address where the
    /// per-link proxies stand for it.
    fn cert_hosts(&self, region: &str) -> Vec<String> {
        let Some(r) = &self.regions else {
            return vec![];
        };
        let mut hosts = vec![r.host_ip.to_string()];
        hosts.extend(r.region(region).map(|x| x.ip.to_string()));
        hosts
    }

    /// `program args` as started in `region`'s namespace on a netns lab
    /// (`ip netns exec NS program args`), else as they are.
    ///
    /// Errors: a netns lab without that region.
    fn command_in(
        &self,
        region: &str,
        program: &Path,
        args: Vec<String>,
    ) -> Result<(std::path::PathBuf, Vec<String>)> {
        match &self.regions {
            Some(r) => r.command(region, program, &args),
            None => Ok((program.to_path_buf(), args)),
        }
    }

    /// On a `--wan` lab whose latency goes through the proxies: each link between two
    /// regions holds every chunk half the regions' round trip, each way.
    fn apply_wan_proxies(&self) {
        if self.latency_by != Some(netns::LatencyBy::Proxies) {
            return;
        }
        let Some(n) = &self.netem else {
            return;
        };
        for l in n.links() {
            let rtt = netns::wan_rtt_ms(&l.from_region, &l.to_region);
            if rtt > 0 {
                n.set_named(
                    std::slice::from_ref(&l.name),
                    crate::netem::LinkMode::Delay {
                        base_ms: rtt / 2,
                        jitter_ms: 0,
                    },
                );
            }
        }
    }

    /// Cuts region `region` off the others and the lab's tools (netns labs), or brings it
    /// back.
    ///
    /// Errors: not a netns lab, or `ip` failed.
    pub fn set_region_connected(&self, region: &str, connected: bool) -> Result<()> {
        self.regions
            .as_ref()
            .context("not a netns lab")?
            .set_connected(region, connected)
    }

    /// Whether the regions are network namespaces.
    pub fn has_netns(&self) -> bool {
        self.regions.is_some()
    }

    /// `https` for a TLS lab, else `http`.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.pki.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// How the lab's tools dial its processes (the lab CA and the validator-client
    /// certificate on a TLS lab).
    pub fn client_tls(&self) -> pki::ClientTls {
        self.client_tls.clone()
    }

    /// The lab's CA, on a TLS lab: issues further certificates (rotation drills).
    pub fn pki(&self) -> Option<&pki::LabPki> {
        self.pki.as_ref()
    }

    /// The running process named `name` (`coordinator-2`, `agent-eu`, `beacon-us`, or an
    /// extra agent's name).
    pub fn proc_mut(&mut self, name: &str) -> Option<&mut Proc> {
        self.procs.iter_mut().find(|p| p.name == name)
    }

    /// Kills (SIGKILL) coordinator `id` and starts it again with the same config, data
    /// directory and port; waits for its `READY` line and updates the manifest's pid.
    ///
    /// Errors: no such coordinator, or it does not come back within 30 s.
    pub async fn restart_coordinator(&mut self, id: u64) -> Result<()> {
        let name = format!("coordinator-{id}");
        let p = self
            .procs
            .iter_mut()
            .find(|p| p.name == name)
            .with_context(|| format!("no process {name}"))?;
        p.restart()?;
        p.wait_ready(Duration::from_secs(30)).await?;
        let pid = p.pid();
        if let Some(c) = self.manifest.coordinators.iter_mut().find(|c| c.id == id) {
            c.pid = pid;
        }
        Ok(())
    }

    /// Starts one more signer agent with the keys of the lab, under the identity (agent id and
    /// coordinator token) of the lab agent `identity_of`, in `region`. `name` names the
    /// process, its directory and its netem links. Returns its Web3Signer URL once healthy.
    ///
    /// This is the 3 AM mistake: a second signer with the same keys, as the standby or as a
    /// copy of the active.
    ///
    /// Errors: unknown identity, or the agent does not start.
    pub async fn start_extra_agent(
        &mut self,
        name: &str,
        identity_of: &str,
        region: &str,
    ) -> Result<String> {
        let spec = self
            .config
            .agents
            .iter()
            .find(|a| a.id == identity_of)
            .cloned()
            .with_context(|| format!("no lab agent {identity_of}"))?;
        let dir = self.manifest.dir.clone();
        let agent_dir = dir.join(name);
        let master = dir.join("keys");
        let keystores = agent_dir.join("keystores");
        let passwords = agent_dir.join("passwords");
        keys::copy_dir(&master.join("keystores"), &keystores)?;
        keys::copy_dir(&master.join("passwords"), &passwords)?;
        let coordinators = self.agent_coordinator_urls(name, region).await?;
        let spec = AgentSpec {
            region: region.to_string(),
            ..spec
        };
        let text = self.agent_config(
            &spec,
            coordinators,
            &dir.join("secrets").join(format!("{identity_of}.token")),
            &keystores,
            &passwords,
        )?;
        let cfg_path = agent_dir.join("signer-agent.toml");
        std::fs::write(&cfg_path, text).with_context(|| format!("write {}", cfg_path.display()))?;
        let args = vec![
            "run".into(),
            "--config".into(),
            cfg_path.display().to_string(),
        ];
        let log = dir.join("logs").join(format!("{name}.log"));
        let (program, args) =
            self.command_in(region, &self.manifest.binaries.signer_agent, args)?;
        let mut p = Proc::spawn(name, &program, &args, &log)?;
        let url = p.wait_ready(Duration::from_secs(60)).await?;
        self.procs.push(p);
        let info = AgentInfo {
            id: name.to_string(),
            region: region.to_string(),
            url: url.clone(),
            pid: self.procs.last().map_or(0, |p| p.pid()),
            role: spec.role,
            initial_role: spec.role,
            config: cfg_path,
            log,
        };
        self.wait_healthy(&info, Duration::from_secs(30)).await?;
        Ok(url)
    }

    /// Stops (SIGTERM, then SIGKILL) and forgets the extra process `name`.
    pub async fn stop_extra(&mut self, name: &str) {
        if let Some(i) = self.procs.iter().position(|p| p.name == name) {
            let mut p = self.procs.remove(i);
            p.stop(Duration::from_secs(5)).await;
        }
    }

    /// Sets the wall-clock offset (seconds, may be negative) of the coordinator that runs
    /// under libfaketime ([`LabConfig::faketime_node`]); it applies within about a second.
    ///
    /// Errors: no coordinator runs under faketime, or the offset file cannot be written.
    pub fn set_clock_offset(&self, node: u64, offset_s: i64) -> Result<()> {
        ensure!(
            self.config.faketime_node == Some(node),
            "coordinator {node} does not run under faketime (lab faketime_node = {:?})",
            self.config.faketime_node
        );
        let path = self.manifest.dir.join(format!("faketime-{node}"));
        std::fs::write(&path, format!("{offset_s:+}\n"))
            .with_context(|| format!("write {}", path.display()))
    }

    /// Base URLs of the coordinators, node 1 first.
    pub fn coordinator_urls(&self) -> Vec<String> {
        self.manifest
            .coordinators
            .iter()
            .map(|c| c.url.clone())
            .collect()
    }

    /// The chain clock shared by every beacon simulator.
    pub fn clock(&self) -> SlotClock {
        SlotClock {
            genesis_time: self.manifest.genesis_time,
            seconds_per_slot: self.config.seconds_per_slot,
            slots_per_epoch: self.config.slots_per_epoch,
        }
    }

    /// Operator `i` (0 = the requester, 1 = the approver).
    pub fn operator(&self, i: usize) -> &Operator {
        &self.manifest.operators[i]
    }

    /// The agent named `id`, if the lab has it.
    pub fn agent(&self, id: &str) -> Option<&AgentInfo> {
        self.manifest.agents.iter().find(|a| a.id == id)
    }

    /// The authority holder named by the first coordinator that answers `GET /v1/status`.
    ///
    /// Errors: no coordinator answered.
    pub async fn current_holder(&self) -> Result<Option<String>> {
        let mut last = None;
        for c in &self.manifest.coordinators {
            match self.status_of(&c.url).await {
                Ok(s) => return Ok(s.holder),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("the lab has no coordinator")))
    }

    /// Records `holder` as the one `active` agent in `lab.json` ([`manifest::mark_holder`])
    /// and rewrites the file when a role changed. Returns whether one did.
    ///
    /// Errors: `lab.json` cannot be written.
    pub fn record_holder(&mut self, holder: Option<&str>) -> Result<bool> {
        let changed = manifest::mark_holder(&mut self.manifest.agents, holder);
        if changed {
            self.write_manifest()?;
        }
        Ok(changed)
    }

    /// The agent that starts as active.
    pub fn active_agent(&self) -> &AgentInfo {
        self.manifest
            .agents
            .iter()
            .find(|a| a.initial_role == Role::Active)
            .expect("validated: exactly one active agent")
    }

    /// The standby agent's id, if the lab has one.
    pub fn standby_agent_id(&self) -> Option<String> {
        self.manifest
            .agents
            .iter()
            .find(|a| a.initial_role == Role::Standby)
            .map(|a| a.id.clone())
    }

    /// Grants authority to the active agent through `failoverctl`, as the operators would:
    /// the first operator requests, the second approves (there is no holder yet, so the
    /// finality gate is epoch 0). Returns the handover id once the cluster names the agent as
    /// holder.
    ///
    /// Errors: a failoverctl step failed or the grant did not show up in the status.
    pub async fn grant_initial(&self) -> Result<u64> {
        let active = self.active_agent().id.clone();
        let id = self
            .ctl
            .handover(
                self.operator(0),
                self.operator(1),
                &active,
                "lab start: initial grant",
                Duration::from_secs(60),
            )
            .await
            .context("initial grant")?;
        self.wait_status(
            &format!("{active} to hold authority"),
            Duration::from_secs(20),
            |s| s.holder.as_deref() == Some(active.as_str()),
        )
        .await?;
        self.wait_signing_enabled(self.active_agent(), Duration::from_secs(20))
            .await?;
        Ok(id)
    }

    /// Waits until `agent` itself reports the `enabled` signing state in its Prometheus
    /// metrics (`signer_agent_signing_state{state="enabled"} 1`): it has learned its grant.
    ///
    /// Errors: `timeout` passed; the error names the last answer.
    pub async fn wait_signing_enabled(&self, agent: &AgentInfo, timeout: Duration) -> Result<()> {
        let url = format!("{}/metrics", agent.url.trim_end_matches('/'));
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match self.http.get(&url).send().await {
                Ok(r) => {
                    let text = r.text().await.unwrap_or_default();
                    let state: Vec<&str> = text
                        .lines()
                        .filter(|l| {
                            l.starts_with("signer_agent_signing_state{") && l.ends_with(" 1")
                        })
                        .collect();
                    if state.iter().any(|l| l.contains("state=\"enabled\"")) {
                        return Ok(());
                    }
                    last = state.join(", ");
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "{} did not report signing enabled within {timeout:?}; last: {last}",
            agent.id
        )
    }

    /// Writes `DIR/lab.json` and returns its path.
    ///
    /// Errors: the file cannot be written.
    pub fn write_manifest(&self) -> Result<PathBuf> {
        let path = self.manifest.dir.join(MANIFEST);
        let text = serde_json::to_string_pretty(&self.manifest).context("serialize lab.json")?;
        keys::write_secret(&path, &text)?;
        Ok(path)
    }

    /// Names and exit statuses of lab processes that have exited on their own.
    pub fn exited(&mut self) -> Vec<String> {
        self.procs
            .iter_mut()
            .filter_map(|p| {
                p.try_exited()
                    .map(|s| format!("{} ({s}; log {})", p.name, p.log.display()))
            })
            .collect()
    }

    /// Stops every process: agents first, then coordinators, then beacon simulators, each
    /// with SIGTERM and a 5 s grace period before SIGKILL.
    pub async fn stop(mut self) {
        let mut procs = std::mem::take(&mut self.procs);
        procs.reverse();
        for p in procs.iter_mut() {
            p.stop(Duration::from_secs(5)).await;
        }
    }
}

/// Where libfaketime's preload library may be (Debian and Ubuntu package `faketime`).
const LIBFAKETIME: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

/// The environment that runs a coordinator under libfaketime with its offset read (uncached)
/// from `dir/faketime-<id>`, starting at `+0`. Only the wall clock is faked.
///
/// Errors: libfaketime is not installed (with the install hint), or the file cannot be written.
fn faketime_env(dir: &Path, id: u64) -> Result<Vec<(String, String)>> {
    let lib = LIBFAKETIME
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "libfaketime is not installed (looked for {}); install the Debian package \
                 `faketime` (`sudo apt-get install faketime`, or run .ci/setup)",
                LIBFAKETIME.join(", ")
            )
        })?;
    let file = dir.join(format!("faketime-{id}"));
    std::fs::write(&file, "+0\n").with_context(|| format!("write {}", file.display()))?;
    Ok(vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ])
}

/// Makes `dir` an empty lab directory and returns its absolute path.
///
/// Errors: `dir` holds files but no lab marker (it is not ours to wipe), a lab process is
/// still running there, or the directory cannot be (re)created.
fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        let has_marker = dir.join(MARKER).exists();
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("list {}", dir.display()))?
            .next()
            .is_none();
        if !has_marker && !empty {
            bail!(
                "refusing to wipe {}: it is not empty and was not made by failover-lab (no {MARKER} file)",
                dir.display()
            );
        }
        if let Ok(m) = Manifest::read(dir) {
            if m.lab_pid != std::process::id()
                && procs::alive(m.lab_pid)
                && procs::runs_executable(m.lab_pid, "failover-lab")
            {
                bail!(
                    "a lab (pid {}) is still running in {}; stop it with `failover-lab down --dir {}`",
                    m.lab_pid,
                    dir.display(),
                    dir.display()
                );
            }
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("wipe {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by failover-lab; wiped at every start\n",
    )
    .with_context(|| format!("write the marker in {}", dir.display()))?;
    std::fs::canonicalize(dir).with_context(|| format!("resolve {}", dir.display()))
}
