//! Host-level operations on a running lab, named as the runbook test names them: what an
//! operator does with `systemctl` on a real host (stop, start, reload a service, bring up a
//! new coordinator host) done to the lab's processes.
//!
//! Actions ([`Lab::perform`]), `NODE` being a coordinator id or `leader` (the node that the
//! cluster currently names as leader):
//! - `kill-coordinator:NODE`: SIGKILL, as a lost host;
//! - `start-coordinator:N`: start it again with the same config, data and port;
//!   `start-coordinator:down` starts every coordinator that is not running;
//! - `reload-coordinators`: SIGHUP to every coordinator (configuration reload);
//! - `reload-agents`: SIGHUP to every signer agent (TLS material and allowlist reload);
//! - `rotate-certs`: every coordinator and agent gets a new certificate and key from the lab
//!   CA, written over its files, then SIGHUP; returns once each serves its new certificate
//!   ([`Lab::rotate_certificates`]);
//! - `kill-agent:ID` / `start-agent:ID`: SIGKILL / start again a signer agent;
//! - `freeze-agent:ID` / `thaw-agent:ID`: SIGSTOP / SIGCONT, a hung host;
//! - `new-coordinator:N:REGION`: a new coordinator host, empty data directory, not
//!   bootstrapping, configured like node 1 plus itself as peer `N`
//!   ([`Lab::start_new_coordinator`]);
//! - `stop-coordinator:N`: SIGTERM and forget it (a decommissioned host);
//! - `stall-finality` / `resume-finality`: every beacon simulator stops / resumes finalizing
//!   (a chain that does not finalize);
//! - `stall-liveness` / `resume-liveness`: every beacon simulator's liveness endpoint answers
//!   503 / answers again (beacon nodes that cannot say who was live);
//! - `write-interchange:FILE`: writes `DIR/FILE`, an EIP-3076 interchange (format 5) for the
//!   lab's validators with one old block (slot 1) and one old attestation (0 → 1) each, as an
//!   old signer's export would be;
//! - `double-vote:AGENT`: AGENT signs validator 0's attestation at the current slot, then is
//!   asked for a second attestation with the same target and another head block root (a
//!   double vote), which must be refused (412), as a second validator client would cause;
//! - `open-handover:AGENT`: the first operator requests a handover to AGENT (it stays open);
//! - `remove-operator:NAME`: deletes operator NAME from every coordinator's config file (what
//!   an operator does with an editor; the reload is a separate action);
//! - `stop-old-cluster`: SIGTERM every coordinator and agent for good (a cluster being
//!   replaced by a restore);
//! - `prepare-restore-host`: a new host for a restore: `DIR/restore/coordinator.toml` (node
//!   11, alone in its `peers`, a free port, an empty `DIR/restore/db`, a new cluster token,
//!   otherwise node 1's config) and `DIR/restore/url`;
//! - `start-restored`: starts the coordinator of `DIR/restore/coordinator.toml`;
//! - `absent:WHAT`: the lab has no WHAT (an old Web3Signer, say); nothing to do;
//! - `sign-now:AGENT`: AGENT signs one honest attestation per validator at the current slot
//!   (each must answer 200), so its last recorded epoch is the current one;
//! - `start-rogue-signer:LIST` / `stop-rogue-signer`: a signer outside the cluster signs and
//!   publishes, to every beacon simulator, one attestation per epoch for each validator of
//!   LIST (`2,5`, `2-4`), as a validator client someone started by hand with the same keys
//!   would ([`super::rogue`]); stopping it is what the operator does to that box.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use coordinator::config::{Config, Peer};

use super::duties::{
    attestation_data, attestation_duty, attestation_duty_from, send_duty, AgentEndpoint, DutySim,
};
use super::procs::{free_port, Proc};
use super::{CoordinatorInfo, Lab};
use failover_common::eth::ForkInfo;
use failover_common::types::Root;

impl Lab {
    /// Performs one named host action (see the module docs).
    ///
    /// Errors: an unknown action, an unknown process, or the process did not come back.
    pub async fn perform(&mut self, action: &str) -> Result<()> {
        let mut parts = action.split(':');
        let verb = parts.next().unwrap_or_default();
        let arg = parts.next();
        let arg2 = parts.next();
        match (verb, arg) {
            ("kill-coordinator", Some(node)) => {
                let id = self.resolve_node(node).await?;
                let name = format!("coordinator-{id}");
                let p = self.proc_mut(&name).with_context(|| format!("no {name}"))?;
                p.kill();
                Ok(())
            }
            ("start-coordinator", Some("down")) => {
                for c in self.manifest.coordinators.clone() {
                    let name = format!("coordinator-{}", c.id);
                    let down = self
                        .proc_mut(&name)
                        .is_some_and(|p| p.try_exited().is_some());
                    if down {
                        self.restart_coordinator(c.id).await?;
                    }
                }
                Ok(())
            }
            ("start-coordinator", Some(n)) => {
                let id: u64 = n.parse().context("coordinator id")?;
                self.restart_coordinator(id).await
            }
            ("stop-coordinator", Some(n)) => {
                let id: u64 = n.parse().context("coordinator id")?;
                self.stop_extra(&format!("coordinator-{id}")).await;
                self.manifest.coordinators.retain(|c| c.id != id);
                self.write_manifest()?;
                Ok(())
            }
            ("reload-coordinators", None) => {
                for c in self.manifest.coordinators.clone() {
                    let name = format!("coordinator-{}", c.id);
                    if let Some(p) = self.proc_mut(&name) {
                        ensure!(p.send(libc::SIGHUP), "{name} is not running");
                    }
                }
                // The reload is asynchronous in each node; give it a moment.
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(())
            }
            ("reload-agents", None) => {
                for a in self.manifest.agents.clone() {
                    if let Some(p) = self.proc_mut(&a.id) {
                        ensure!(p.send(libc::SIGHUP), "{} is not running", a.id);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(())
            }
            ("rotate-certs", None) => self.rotate_certificates().await.map(|_| ()),
            ("kill-agent", Some(id)) => {
                self.proc_mut(id)
                    .with_context(|| format!("no {id}"))?
                    .kill();
                Ok(())
            }
            ("start-agent", Some(id)) => {
                let p = self.proc_mut(id).with_context(|| format!("no {id}"))?;
                p.restart()?;
                let url = p.wait_ready(Duration::from_secs(60)).await?;
                let pid = p.pid();
                // The agent may listen on a new port after a restart.
                if let Some(a) = self.manifest.agents.iter_mut().find(|a| a.id == id) {
                    a.url = url;
                    a.pid = pid;
                }
                self.write_manifest()?;
                Ok(())
            }
            ("freeze-agent", Some(id)) => {
                let p = self.proc_mut(id).with_context(|| format!("no {id}"))?;
                ensure!(p.send(libc::SIGSTOP), "{id} is not running");
                Ok(())
            }
            ("thaw-agent", Some(id)) => {
                let p = self.proc_mut(id).with_context(|| format!("no {id}"))?;
                ensure!(p.send(libc::SIGCONT), "{id} is not running");
                Ok(())
            }
            ("new-coordinator", Some(n)) => {
                let id: u64 = n.parse().context("coordinator id")?;
                let region = arg2.unwrap_or("eu");
                self.start_new_coordinator(id, region).await.map(|_| ())
            }
            ("stall-finality", None) => self.set_finality_stalled(true).await,
            ("resume-finality", None) => self.set_finality_stalled(false).await,
            ("stall-liveness", None) => self.set_liveness_available(false).await,
            ("resume-liveness", None) => self.set_liveness_available(true).await,
            ("sign-now", Some(agent)) => self.sign_now(agent).await,
            ("start-rogue-signer", Some(list)) => {
                ensure!(self.rogue.is_none(), "a rogue signer is already running");
                let indices = super::rogue::parse_indices(list)?;
                let beacons = self
                    .manifest
                    .beacon_nodes
                    .iter()
                    .map(|b| b.url.clone())
                    .collect();
                let rogue = super::rogue::RogueSigner::connect(
                    beacons,
                    &indices,
                    self.clock(),
                    self.client_tls(),
                )
                .await?;
                self.rogue = Some(rogue.start());
                Ok(())
            }
            ("stop-rogue-signer", None) => {
                if let Some(r) = self.rogue.take() {
                    let n = r.stop().await;
                    tracing::info!(publications = n, "rogue signer stopped");
                }
                Ok(())
            }
            ("absent", Some(_)) => Ok(()),
            ("remove-operator", Some(name)) => {
                for c in &self.manifest.coordinators {
                    let text = std::fs::read_to_string(&c.config)
                        .with_context(|| format!("read {}", c.config.display()))?;
                    let mut cfg: Config = toml::from_str(&text).context("parse config")?;
                    cfg.operators.retain(|o| o.name != name);
                    std::fs::write(&c.config, toml::to_string(&cfg).context("serialize")?)
                        .with_context(|| format!("write {}", c.config.display()))?;
                }
                Ok(())
            }
            ("stop-old-cluster", None) => {
                let names: Vec<String> = self
                    .manifest
                    .coordinators
                    .iter()
                    .map(|c| format!("coordinator-{}", c.id))
                    .chain(self.manifest.agents.iter().map(|a| a.id.clone()))
                    .collect();
                for n in names {
                    if let Some(p) = self.proc_mut(&n) {
                        p.stop(Duration::from_secs(5)).await;
                    }
                }
                Ok(())
            }
            ("prepare-restore-host", None) => self.prepare_restore_host().map(|_| ()),
            ("start-restored", None) => {
                let dir = self.manifest.dir.join("restore");
                let cfg_path = dir.join("coordinator.toml");
                let log = self
                    .manifest
                    .dir
                    .join("logs")
                    .join("coordinator-restored.log");
                let args = vec![
                    "run".to_string(),
                    "--config".to_string(),
                    cfg_path.display().to_string(),
                ];
                let mut p = Proc::spawn(
                    "coordinator-restored",
                    &self.manifest.binaries.coordinator,
                    &args,
                    &log,
                )?;
                p.wait_ready(Duration::from_secs(30)).await?;
                self.procs.push(p);
                Ok(())
            }
            ("open-handover", Some(agent)) => {
                let op = self.operator(0).clone();
                self.ctl
                    .request(&op, agent, "runbook test: an open handover")
                    .await
                    .map(|_| ())
            }
            ("double-vote", Some(agent)) => self.double_vote(agent).await,
            ("write-interchange", Some(file)) => {
                let data: Vec<serde_json::Value> = self
                    .manifest
                    .validators
                    .iter()
                    .map(|v| {
                        serde_json::json!({
                            "pubkey": v.pubkey,
                            "signed_blocks": [{ "slot": "1" }],
                            "signed_attestations": [{ "source_epoch": "0", "target_epoch": "1" }],
                        })
                    })
                    .collect();
                let doc = serde_json::json!({
                    "metadata": {
                        "interchange_format_version": "5",
                        "genesis_validators_root": self.manifest.genesis_validators_root,
                    },
                    "data": data,
                });
                let path = self.manifest.dir.join(file);
                std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)
                    .with_context(|| format!("write {}", path.display()))
            }
            _ => bail!("unknown lab action `{action}`"),
        }
    }

    /// `POST /sim/finality {"stalled": stalled}` to every beacon simulator.
    async fn set_finality_stalled(&self, stalled: bool) -> Result<()> {
        self.sim_control("finality", serde_json::json!({ "stalled": stalled }))
            .await
    }

    /// `POST /sim/liveness {"available": available}` to every beacon simulator.
    async fn set_liveness_available(&self, available: bool) -> Result<()> {
        self.sim_control("liveness", serde_json::json!({ "available": available }))
            .await
    }

    /// `POST /sim/{control}` with `body` to every beacon simulator.
    async fn sim_control(&self, control: &str, body: serde_json::Value) -> Result<()> {
        for b in &self.manifest.beacon_nodes {
            let url = format!("{}/sim/{control}", b.url.trim_end_matches('/'));
            let res = self
                .http
                .post(&url)
                .json(&body)
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            ensure!(res.status().is_success(), "POST {url}: {}", res.status());
        }
        Ok(())
    }

    /// Validator 0 signs at the current slot, then a double vote is asked for and must be
    /// refused with 412.
    async fn double_vote(&self, agent: &str) -> Result<()> {
        let (endpoint, fork_info) = self.duty_target(agent).await?;
        let clock = self.clock();
        let slot = clock.now_slot();
        let v = self
            .manifest
            .validators
            .first()
            .context("the lab has no validator")?;
        let honest = attestation_duty(v, slot, &fork_info, clock.slots_per_epoch);
        let rec = send_duty(&self.http, &endpoint, &honest).await;
        ensure!(
            rec.status == 200,
            "honest vote: {} {}",
            rec.status,
            rec.reason
        );
        let mut data = attestation_data(slot, clock.slots_per_epoch);
        data.beacon_block_root = Root([0xdd; 32]);
        let conflicting = attestation_duty_from(v, data, &fork_info);
        let rec = send_duty(&self.http, &endpoint, &conflicting).await;
        ensure!(
            rec.status == 412,
            "a double vote must be refused with 412, got {} {}",
            rec.status,
            rec.reason
        );
        Ok(())
    }

    /// The agent's endpoint and the `fork_info` its requests carry now.
    async fn duty_target(&self, agent: &str) -> Result<(AgentEndpoint, ForkInfo)> {
        let info = self
            .agent(agent)
            .with_context(|| format!("no lab agent {agent}"))?;
        let endpoint = AgentEndpoint {
            id: info.id.clone(),
            url: info.url.clone(),
        };
        let beacon = self
            .manifest
            .beacon_nodes
            .first()
            .context("the lab has no beacon node")?;
        let sim = DutySim::connect(
            &beacon.url,
            vec![endpoint.clone()],
            self.manifest.validators.clone(),
            self.clock(),
            self.client_tls(),
        )
        .await?;
        Ok((endpoint, sim.fork_info()))
    }

    /// One honest attestation per validator at the current slot, signed by `agent`.
    async fn sign_now(&self, agent: &str) -> Result<()> {
        let (endpoint, fork_info) = self.duty_target(agent).await?;
        let clock = self.clock();
        let slot = clock.now_slot();
        for v in &self.manifest.validators {
            let duty = attestation_duty(v, slot, &fork_info, clock.slots_per_epoch);
            let mut rec = send_duty(&self.http, &endpoint, &duty).await;
            // 503 is the agent failing closed for a moment (its authority view just changed);
            // the same request is safe to repeat.
            for _ in 0..20 {
                if rec.status != 503 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                rec = send_duty(&self.http, &endpoint, &duty).await;
            }
            ensure!(
                rec.status == 200,
                "{agent} did not sign validator {}'s attestation at slot {slot}: {} {}",
                v.index,
                rec.status,
                rec.reason
            );
        }
        Ok(())
    }

    /// Writes the restore host's config (see the module docs); returns its URL.
    fn prepare_restore_host(&self) -> Result<String> {
        let first = self
            .manifest
            .coordinators
            .first()
            .context("the lab has no coordinator")?;
        let text = std::fs::read_to_string(&first.config)
            .with_context(|| format!("read {}", first.config.display()))?;
        let mut cfg: Config = toml::from_str(&text).context("parse node 1's config")?;
        let dir = self.manifest.dir.join("restore");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let port = free_port()?;
        let url = format!("{}://127.0.0.1:{port}", self.scheme());
        cfg.node_id = 11;
        cfg.listen = format!("127.0.0.1:{port}");
        cfg.data_dir = dir.join("db");
        cfg.bootstrap = false;
        // A new cluster: a new token in plaintext; over TLS the lab's CA with a node id the
        // old cluster never had (the restore checks both).
        cfg.tls = self.node_tls(11)?;
        cfg.cluster_token_file = None;
        if cfg.tls.is_none() {
            let token_file = dir.join("cluster.token");
            super::keys::write_secret(&token_file, &super::random_token())?;
            cfg.cluster_token_file = Some(token_file);
        }
        cfg.peers = vec![Peer {
            id: 11,
            url: url.clone(),
            region: "eu".into(),
            raft_url: None,
        }];
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("restore host config: {e}"))?;
        std::fs::write(
            dir.join("coordinator.toml"),
            toml::to_string(&cfg).context("serialize config")?,
        )
        .context("write the restore host's config")?;
        std::fs::write(dir.join("url"), &url).context("write restore/url")?;
        Ok(url)
    }

    /// Certificate rotation on a running TLS lab, as an operator does it before expiry: every
    /// coordinator's and agent's certificate and key are issued again and written over the old
    /// files, each process gets SIGHUP, and the rotation is done when every one of them serves
    /// its new certificate (read from a fresh TLS connection), within 10 s. Returns how many
    /// processes rotated.
    ///
    /// Errors: a plaintext lab, a certificate that cannot be issued, a process not running,
    /// or one still serving its old certificate after 10 s.
    pub async fn rotate_certificates(&mut self) -> Result<usize> {
        let pki = self
            .pki
            .as_ref()
            .context("a plaintext lab has no certificates")?;
        let mut expected = Vec::new();
        for c in &self.manifest.coordinators {
            let kind = failover_common::tls::issue::LeafKind::Node(c.id);
            let hosts = self.cert_hosts(&c.region);
            let files = super::pki::reissue(pki, &format!("node-{}", c.id), kind, &hosts)?;
            expected.push((format!("coordinator-{}", c.id), c.url.clone(), files));
        }
        for a in &self.manifest.agents {
            let kind = failover_common::tls::issue::LeafKind::Agent(a.id.clone());
            let hosts = self.cert_hosts(&a.region);
            let files = super::pki::reissue(pki, &format!("agent-{}", a.id), kind, &hosts)?;
            expected.push((a.id.clone(), a.url.clone(), files));
        }
        for (name, _, _) in &expected {
            let p = self
                .proc_mut(name)
                .with_context(|| format!("no process {name}"))?;
            ensure!(p.send(libc::SIGHUP), "{name} is not running");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for (name, url, files) in &expected {
            let want = failover_common::tls::read_certs(&files.cert_file)?;
            let want = failover_common::tls::CertInfo::parse(&want[0])
                .map_err(anyhow::Error::msg)?
                .fingerprint;
            loop {
                // A new client each time, without session resumption: a pooled connection or
                // a resumed session would show the old handshake's certificate.
                let http = self
                    .client_tls()
                    .full_handshake_builder()
                    .timeout(Duration::from_secs(2))
                    .build()?;
                let served = http
                    .get(format!("{url}/upcheck"))
                    .send()
                    .await
                    .ok()
                    .and_then(|r| {
                        let der = r
                            .extensions()
                            .get::<reqwest::tls::TlsInfo>()?
                            .peer_certificate()?
                            .to_vec();
                        failover_common::tls::CertInfo::parse(&der).ok()
                    })
                    .map(|i| i.fingerprint);
                if served == Some(want) {
                    break;
                }
                ensure!(
                    tokio::time::Instant::now() < deadline,
                    "{name} still serves its old certificate 10 s after SIGHUP"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(expected.len())
    }

    /// On a TLS lab, a certificate for coordinator `id` from the lab CA (issued once, reused
    /// by a host started again); `None` on a plaintext lab.
    ///
    /// Errors: the certificate cannot be issued.
    fn node_tls(&self, id: u64) -> Result<Option<failover_common::tls::TlsFiles>> {
        let Some(pki) = &self.pki else {
            return Ok(None);
        };
        let kind = failover_common::tls::issue::LeafKind::Node(id);
        super::pki::existing_or_issue(pki, &format!("node-{id}"), kind, &[]).map(Some)
    }

    /// `leader` → the node id the cluster names as leader; a number → itself.
    async fn resolve_node(&self, node: &str) -> Result<u64> {
        if node != "leader" {
            return node.parse().context("coordinator id");
        }
        let leader = std::sync::Mutex::new(None);
        self.wait_status("a leader", Duration::from_secs(20), |s| {
            *leader.lock().expect("lock") = s.leader_id;
            s.leader_id.is_some()
        })
        .await?;
        let id = leader.lock().expect("lock").context("no leader")?;
        Ok(id)
    }

    /// Starts a new coordinator host `id` in `region`: node 1's configuration with this id, a
    /// free loopback port, an empty data directory `DIR/coordinator-<id>/db`, `bootstrap =
    /// false`, and itself added to `peers`. It joins nothing by itself: an operator adds it as
    /// a learner. Records it in the manifest (and `lab.json`).
    ///
    /// Errors: node 1's config cannot be read, the new config is invalid, or the process does
    /// not print `READY` within 30 s.
    pub async fn start_new_coordinator(
        &mut self,
        id: u64,
        region: &str,
    ) -> Result<CoordinatorInfo> {
        let first = self
            .manifest
            .coordinators
            .first()
            .cloned()
            .context("the lab has no coordinator")?;
        let text = std::fs::read_to_string(&first.config)
            .with_context(|| format!("read {}", first.config.display()))?;
        let mut cfg: Config = toml::from_str(&text).context("parse node 1's config")?;
        let port = free_port()?;
        let url = format!("{}://127.0.0.1:{port}", self.scheme());
        let node_dir = self.manifest.dir.join(format!("coordinator-{id}"));
        std::fs::create_dir_all(&node_dir)
            .with_context(|| format!("create {}", node_dir.display()))?;
        if self.pki.is_some() {
            cfg.tls = self.node_tls(id)?;
        }
        cfg.node_id = id;
        cfg.listen = format!("127.0.0.1:{port}");
        cfg.data_dir = node_dir.join("db");
        cfg.bootstrap = false;
        cfg.peers.retain(|p| p.id != id);
        cfg.peers.push(Peer {
            id,
            url: url.clone(),
            region: region.to_string(),
            raft_url: None,
        });
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("new coordinator config: {e}"))?;
        let cfg_path = node_dir.join("coordinator.toml");
        std::fs::write(
            &cfg_path,
            toml::to_string(&cfg).context("serialize config")?,
        )
        .with_context(|| format!("write {}", cfg_path.display()))?;
        let name = format!("coordinator-{id}");
        let log = self.manifest.dir.join("logs").join(format!("{name}.log"));
        let args = vec![
            "run".to_string(),
            "--config".to_string(),
            cfg_path.display().to_string(),
        ];
        let mut p = Proc::spawn(&name, &self.manifest.binaries.coordinator, &args, &log)?;
        let ready = p.wait_ready(Duration::from_secs(30)).await?;
        let info = CoordinatorInfo {
            id,
            region: region.to_string(),
            url: ready,
            pid: p.pid(),
            data_dir: cfg.data_dir.clone(),
            config: cfg_path,
            log,
        };
        self.procs.push(p);
        self.manifest.coordinators.push(info.clone());
        self.write_manifest()?;
        Ok(info)
    }
}
