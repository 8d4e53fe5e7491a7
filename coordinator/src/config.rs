//! Coordinator configuration: a strict TOML file (unknown keys are errors), then environment
//! overrides, then command-line flags (see the `coordinator` binary).
//!
//! Invariants checked by [`Config::validate`]:
//! - this node appears in `peers` exactly once, peer ids and URLs are unique;
//! - every link is TLS (`[tls]`) unless the file says `insecure_plaintext = true`, and never
//!   both: with TLS every peer URL is `https://`, coordinators authenticate each other by
//!   certificate (no cluster token), and agents by certificate; in plaintext every peer URL is
//!   `http://` and a cluster token file is required;
//! - every token is given as a SHA-256 hash (64 hex digits), never in clear, except the
//!   cluster token (plaintext only) which each node must send to its peers and so reads from
//!   a file; with TLS an operator or agent may have no token and use its certificate alone;
//! - `approvals_required ≥ 1`, `break_glass_approvals ≥ approvals_required`, and both can be
//!   met by the configured operators (under the two-person rule, not counting the
//!   requester);
//! - election timeouts are larger than the heartbeat interval.

use std::path::PathBuf;

use failover_common::types::Root;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::HandoverPolicy;
use crate::NodeId;

/// A Raft peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Raft node id (unique, ≥ 1).
    pub id: NodeId,
    /// Base URL at which this node reaches the peer, e.g. `http://10.0.1.5:7100`. The
    /// bootstrap node's values become the membership addresses; every node dials its peers at
    /// the URLs in its own config, so one direction of a link can go through a proxy.
    pub url: String,
    /// Region label, e.g. `eu`.
    pub region: String,
    /// Base URL of the peer's Raft/internal listener (its `raft_listen`), e.g.
    /// `http://10.0.1.5:7200`. When set, Raft RPC and forwarded writes go there and `url` is
    /// only its operator/agent API; it is also the peer's membership address. Unset: one
    /// listener serves both. Set for every peer or for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_url: Option<String>,
}

impl Peer {
    /// Where Raft RPC and internal calls reach this peer: `raft_url`, else `url`.
    pub fn rpc_url(&self) -> &str {
        self.raft_url.as_deref().unwrap_or(&self.url)
    }
}

/// An operator allowed to use the operator API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorCfg {
    /// Name recorded in the audit trail; an operator client certificate names it
    /// (`urn:failover:operator:<name>`).
    pub name: String,
    /// SHA-256 of the operator's bearer token, 64 lowercase hex digits. Optional with `[tls]`
    /// (the operator then uses a client certificate); required in plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

/// A signer agent allowed to use the agent API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentCfg {
    /// Agent id; with `[tls]` the agent's client certificate must name it
    /// (`urn:failover:agent:<id>`).
    pub id: String,
    /// SHA-256 of the agent's bearer token, 64 lowercase hex digits. Optional with `[tls]`
    /// (the certificate authenticates the agent; a token, if configured, must come with it);
    /// required in plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

/// Raft timing (milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftCfg {
    /// Leader heartbeat interval (ms). About 3 × the cross-region RTT.
    pub heartbeat_ms: u64,
    /// Minimum election timeout (ms). About 10 × the heartbeat.
    pub election_min_ms: u64,
    /// Maximum election timeout (ms).
    pub election_max_ms: u64,
    /// Build a snapshot after this many applied entries.
    pub snapshot_every: u64,
    /// Entries kept in the log after a snapshot, for lagging followers.
    pub keep_logs: u64,
    /// Deadline for one client write, including forwarding (ms). Past it the outcome is
    /// unknown and the caller answers 503.
    pub write_timeout_ms: u64,
    /// Largest AppendEntries body sent to a peer when it holds more than one entry (bytes of
    /// the encoded body, `codec`); openraft then sends fewer entries per request. Must stay below every peer's
    /// `limits.max_import_bytes`, the body limit of `/raft/append`.
    pub max_append_bytes: usize,
}

impl Default for RaftCfg {
    fn default() -> Self {
        Self {
            heartbeat_ms: 150,
            election_min_ms: 1500,
            election_max_ms: 3000,
            snapshot_every: 20_000,
            keep_logs: 5_000,
            write_timeout_ms: 5_000,
            max_append_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Handover policy (DESIGN.md "Handover").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandoverCfg {
    /// Distinct operator approvals needed.
    pub approvals_required: u32,
    /// The requester's own approval does not count.
    pub two_person_rule: bool,
    /// Distinct break-glass approvals needed to skip the finality gate.
    pub break_glass_approvals: u32,
    /// Complete epochs in which beacon nodes must report none of the target's validators
    /// live before a grant (the liveness gate, DESIGN.md; default 2 as Lighthouse and Teku
    /// wait at start-up). 1 to [`MAX_DOPPELGANGER_EPOCHS`].
    pub doppelganger_epochs: u64,
}

/// Most epochs `handover.doppelganger_epochs` may ask for: beacon nodes remember liveness
/// for a few epochs only, and a longer gate holds authority back for over 7 hours on mainnet.
pub const MAX_DOPPELGANGER_EPOCHS: u64 = 64;

impl Default for HandoverCfg {
    fn default() -> Self {
        Self {
            approvals_required: 1,
            two_person_rule: true,
            break_glass_approvals: 3,
            doppelganger_epochs: 2,
        }
    }
}

/// The chain this cluster protects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainCfg {
    /// Genesis validators root; beacon nodes reporting another one are ignored.
    pub genesis_validators_root: Root,
    /// `SLOTS_PER_EPOCH` (32 on mainnet).
    #[serde(default = "default_slots_per_epoch")]
    pub slots_per_epoch: u64,
}

fn default_slots_per_epoch() -> u64 {
    32
}

/// Beacon nodes polled for finality.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BeaconCfg {
    /// Beacon API base URLs.
    pub urls: Vec<String>,
    /// Poll interval (ms).
    pub poll_interval_ms: u64,
    /// Per-request timeout (ms).
    pub timeout_ms: u64,
    /// Usable nodes that must agree; 0 means a majority of `urls`.
    pub min_agreeing: usize,
    /// PEM file of the CA that signed the beacon nodes' certificates, for `https://` URLs of
    /// a private PKI; unset: the public web roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl Default for BeaconCfg {
    fn default() -> Self {
        Self {
            urls: vec![],
            poll_interval_ms: 2_000,
            timeout_ms: 2_000,
            min_agreeing: 0,
            ca_file: None,
        }
    }
}

/// Limits on what clients may send (DESIGN.md "Trust boundaries and hostile input").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsCfg {
    /// Records and EIP-3076 import entries more than this many epochs ahead of the chain's
    /// current epoch (`chain_clock` module) are refused with 400 `future_epoch` (epochs).
    /// An operator import may override it with `?allow_future=true`, which is audited.
    pub max_future_epochs: u64,
    /// Failed authentications one source address may have per minute; past it the source
    /// gets 429 `too_many_auth_failures` until its budget refills (`guard` module).
    pub auth_failures_per_minute: u32,
    /// Time a client has to send complete request headers; also the longest a keep-alive
    /// connection may stay idle (ms).
    pub header_read_timeout_ms: u64,
    /// Time a request has from its headers to its answer, body included; past it the answer
    /// is 408 (ms). Also bounds how long `POST /v1/cluster/learners` waits for catch-up.
    pub request_timeout_ms: u64,
    /// Connections served at once; further ones are closed on accept.
    pub max_connections: usize,
    /// Largest request body on every route but the EIP-3076 import (bytes).
    pub max_body_bytes: usize,
    /// Largest EIP-3076 interchange accepted by `POST /v1/slashing/import` (bytes).
    pub max_import_bytes: usize,
}

impl Default for LimitsCfg {
    fn default() -> Self {
        Self {
            max_future_epochs: 2,
            auth_failures_per_minute: 30,
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_connections: 1024,
            max_body_bytes: 2 * 1024 * 1024,
            max_import_bytes: 64 * 1024 * 1024,
        }
    }
}

impl LimitsCfg {
    /// The listener limits these settings give ([`failover_common::serve`]).
    pub fn listener(&self) -> failover_common::serve::ListenerLimits {
        failover_common::serve::ListenerLimits {
            header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
            request_timeout: std::time::Duration::from_millis(self.request_timeout_ms),
            max_connections: self.max_connections,
        }
    }
}

/// The whole coordinator configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's Raft id; must appear in `peers`.
    pub node_id: NodeId,
    /// Address of the operator and agent API listener, e.g. `0.0.0.0:7100`.
    pub listen: String,
    /// Address of a separate listener for Raft RPC and internal calls between coordinators,
    /// e.g. `0.0.0.0:7200`, so that a flood of clients on `listen` cannot starve elections and
    /// a firewall can open each port to whom it belongs. Needs `raft_url` on every peer.
    /// Unset: `listen` serves everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_listen: Option<String>,
    /// Directory of the RocksDB database.
    pub data_dir: PathBuf,
    /// TLS on every listener and every link to a peer: the cluster CA, this node's
    /// certificate (naming `urn:failover:node:<node_id>`) and key. Reloaded on SIGHUP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<failover_common::tls::TlsFiles>,
    /// Serve and dial plain HTTP. Only for a deployment whose links are protected otherwise;
    /// the node logs a warning at start. Exactly one of `tls` and this must be set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_plaintext: bool,
    /// File holding the shared cluster token used between coordinators (Raft RPC,
    /// forwarding). Plaintext only: with `[tls]` coordinators authenticate by certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_token_file: Option<PathBuf>,
    /// Initialise the cluster from `peers` if this node's store is empty. Set on exactly one
    /// node; a node with data never initialises again.
    #[serde(default)]
    pub bootstrap: bool,
    /// All voting members.
    pub peers: Vec<Peer>,
    /// Operators.
    #[serde(default)]
    pub operators: Vec<OperatorCfg>,
    /// Agents.
    #[serde(default)]
    pub agents: Vec<AgentCfg>,
    /// Chain parameters.
    pub chain: ChainCfg,
    /// Beacon nodes.
    #[serde(default)]
    pub beacon: BeaconCfg,
    /// Handover policy.
    #[serde(default)]
    pub handover: HandoverCfg,
    /// Raft timing.
    #[serde(default)]
    pub raft: RaftCfg,
    /// Maximum records in one agent batch.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Limits on client input.
    #[serde(default)]
    pub limits: LimitsCfg,
}

fn default_max_batch() -> usize {
    4096
}

/// Why `policy` can never be met by `operators` configured operators: under the two-person
/// rule the requester's approval never counts, so at most `operators − 1` distinct approvals
/// can ever be given, normal or break-glass. Empty when it can be met. Used at start-up
/// ([`Config::validate`]) and for a proposed policy change (`POST /v1/policy`).
pub fn unreachable_approvals(
    policy: &failover_protocol::ApprovalPolicy,
    operators: usize,
) -> Vec<String> {
    let approvers = if policy.two_person_rule {
        operators.saturating_sub(1)
    } else {
        operators
    };
    let rule = if policy.two_person_rule {
        " (the requester cannot approve under the two-person rule)"
    } else {
        ""
    };
    let mut errs = Vec::new();
    if policy.approvals_required as usize > approvers {
        errs.push(format!(
            "approvals_required = {} can never be met: {operators} operator(s) are \
             configured, so at most {approvers} can approve{rule}",
            policy.approvals_required
        ));
    }
    if policy.break_glass_approvals as usize > approvers {
        errs.push(format!(
            "break_glass_approvals = {} can never be met: at most {approvers} operator(s) can \
             approve{rule}",
            policy.break_glass_approvals
        ));
    }
    errs
}

/// SHA-256 of a token as 64 lowercase hex digits (how tokens are stored in the config).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Config {
    /// Parses TOML. Errors name the offending key (unknown keys are refused).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| format!("invalid coordinator config: {e}"))
    }

    /// Checks the invariants in the module doc; returns every problem found, one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        if self.peers.iter().filter(|p| p.id == self.node_id).count() != 1 {
            errs.push(format!(
                "node_id {} must appear exactly once in peers",
                self.node_id
            ));
        }
        let mut ids: Vec<_> = self.peers.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.peers.len() {
            errs.push("peer ids must be unique".into());
        }
        if self.peers.iter().any(|p| p.id == 0) {
            errs.push("peer ids must be ≥ 1".into());
        }
        let scheme = match (&self.tls, self.insecure_plaintext) {
            (Some(_), false) => "https://",
            (None, true) => "http://",
            (Some(_), true) => {
                errs.push("set either [tls] or insecure_plaintext = true, not both".into());
                "https://"
            }
            (None, false) => {
                errs.push(
                    "no [tls] section: every link needs TLS (ca_file, cert_file, key_file; `coordinator certs` makes them), or insecure_plaintext = true to serve and dial plain HTTP on purpose"
                        .into(),
                );
                "https://"
            }
        };
        for p in &self.peers {
            for u in std::iter::once(&p.url).chain(&p.raft_url) {
                if !u.starts_with(scheme) {
                    errs.push(format!(
                        "peer {} url {u:?} must start with {scheme} ({})",
                        p.id,
                        if self.tls.is_some() {
                            "[tls] is set"
                        } else {
                            "insecure_plaintext is set"
                        }
                    ));
                }
            }
        }
        match (&self.tls, &self.cluster_token_file) {
            (Some(_), Some(_)) => errs.push(
                "cluster_token_file is for insecure_plaintext only: with [tls] coordinators authenticate each other by certificate; remove it"
                    .into(),
            ),
            (None, None) if self.insecure_plaintext => errs.push(
                "insecure_plaintext needs cluster_token_file (the secret coordinators send each other)"
                    .into(),
            ),
            _ => {}
        }
        let with_raft_url = self.peers.iter().filter(|p| p.raft_url.is_some()).count();
        if with_raft_url != 0 && with_raft_url != self.peers.len() {
            errs.push("raft_url must be set for every peer or for none".into());
        }
        if self.raft_listen.is_some() != (with_raft_url != 0) {
            errs.push(
                "raft_listen and the peers' raft_url go together: set both (a separate Raft \
                 listener) or neither"
                    .into(),
            );
        }
        let principals = self
            .operators
            .iter()
            .map(|o| ("operator", &o.name, &o.token_sha256))
            .chain(
                self.agents
                    .iter()
                    .map(|a| ("agent", &a.id, &a.token_sha256)),
            );
        for (kind, name, hash) in principals {
            match hash {
                Some(h) if !is_hash(h) => {
                    errs.push(format!("{kind} {name}: token_sha256 must be 64 hex digits"))
                }
                None if self.tls.is_none() => errs.push(format!(
                    "{kind} {name}: token_sha256 is required without [tls] (a certificate can stand in for the token only over TLS)"
                )),
                _ => {}
            }
            let id = match kind {
                "operator" => failover_common::tls::Identity::Operator(name.clone()),
                _ => failover_common::tls::Identity::Agent(name.clone()),
            };
            if self.tls.is_some() {
                if let Err(e) = id.validate() {
                    errs.push(format!(
                        "{kind} {name}: cannot be named by a certificate: {e}"
                    ));
                }
            }
        }
        let h = &self.handover;
        if h.approvals_required == 0 {
            errs.push("handover.approvals_required must be ≥ 1".into());
        }
        if !(1..=MAX_DOPPELGANGER_EPOCHS).contains(&h.doppelganger_epochs) {
            errs.push(format!(
                "handover.doppelganger_epochs must be 1 to {MAX_DOPPELGANGER_EPOCHS}"
            ));
        }
        if h.break_glass_approvals < h.approvals_required {
            errs.push("handover.break_glass_approvals must be ≥ approvals_required".into());
        }
        let rules = self.policy().approval();
        errs.extend(
            unreachable_approvals(&rules, self.operators.len())
                .into_iter()
                .map(|e| format!("handover.{e}")),
        );
        let r = &self.raft;
        if r.election_min_ms <= r.heartbeat_ms * 2 || r.election_max_ms <= r.election_min_ms {
            errs.push("raft: need heartbeat_ms * 2 < election_min_ms < election_max_ms".into());
        }
        if self.chain.slots_per_epoch == 0 {
            errs.push("chain.slots_per_epoch must be ≥ 1".into());
        }
        if self.beacon.min_agreeing > self.beacon.urls.len() {
            errs.push("beacon.min_agreeing exceeds the number of beacon urls".into());
        }
        if self.max_batch == 0 {
            errs.push("max_batch must be ≥ 1".into());
        }
        let l = &self.limits;
        if l.header_read_timeout_ms == 0 || l.request_timeout_ms < 1_000 {
            errs.push(
                "limits: header_read_timeout_ms must be ≥ 1 and request_timeout_ms ≥ 1000".into(),
            );
        }
        if l.max_connections == 0 || l.max_body_bytes < 1024 || l.max_import_bytes < 1024 {
            errs.push(
                "limits: max_connections must be ≥ 1, max_body_bytes and max_import_bytes ≥ 1024"
                    .into(),
            );
        }
        if self.raft.max_append_bytes == 0 || self.raft.max_append_bytes > l.max_import_bytes {
            errs.push(format!(
                "raft.max_append_bytes ({}) must be between 1 and limits.max_import_bytes ({}), \
                 the body limit of /raft/append",
                self.raft.max_append_bytes, l.max_import_bytes
            ));
        }
        if l.request_timeout_ms <= self.raft.write_timeout_ms {
            errs.push(format!(
                "limits.request_timeout_ms ({}) must exceed raft.write_timeout_ms ({}), or a write \
                 would be cut before its committed answer",
                l.request_timeout_ms, self.raft.write_timeout_ms
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("\n"))
        }
    }

    /// This node's peer entry (validated to exist).
    pub fn me(&self) -> &Peer {
        self.peers
            .iter()
            .find(|p| p.id == self.node_id)
            .expect("validated")
    }

    /// The handover policy as carried in operator commands.
    pub fn policy(&self) -> HandoverPolicy {
        HandoverPolicy {
            approvals_required: self.handover.approvals_required,
            two_person_rule: self.handover.two_person_rule,
            break_glass_approvals: self.handover.break_glass_approvals,
            slots_per_epoch: self.chain.slots_per_epoch,
            doppelganger_epochs: Some(self.handover.doppelganger_epochs),
        }
    }

    /// The client of the configured beacon nodes (`[beacon]`: URLs, per-request timeout,
    /// `ca_file`), expecting this chain's genesis validators root.
    ///
    /// Errors: `ca_file` does not load.
    pub fn beacon_client(
        &self,
    ) -> Result<failover_common::beacon::BeaconClient, failover_common::tls::TlsError> {
        let b = &self.beacon;
        let timeout = std::time::Duration::from_millis(b.timeout_ms);
        let gvr = self.chain.genesis_validators_root;
        match &b.ca_file {
            Some(ca) => failover_common::beacon::BeaconClient::with_ca_file(
                b.urls.clone(),
                timeout,
                gvr,
                ca,
            ),
            None => Ok(failover_common::beacon::BeaconClient::new(
                b.urls.clone(),
                timeout,
                gvr,
            )),
        }
    }

    /// Beacon nodes that must agree (`min_agreeing`, or a majority when 0).
    pub fn beacon_quorum(&self) -> usize {
        if self.beacon.min_agreeing > 0 {
            self.beacon.min_agreeing
        } else {
            self.beacon.urls.len() / 2 + 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/coordinator.example.toml");

    #[test]
    fn example_config_parses_and_validates() {
        let c = Config::from_toml(EXAMPLE).unwrap();
        c.validate().unwrap();
        assert_eq!(c.me().region, "eu");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let bad = format!("{EXAMPLE}\nsurprise = 1\n");
        let err = Config::from_toml(&bad).unwrap_err();
        assert!(err.contains("surprise"), "{err}");
    }

    #[test]
    fn a_policy_that_can_never_be_met_is_refused_at_start_up() {
        let mut c = Config::from_toml(EXAMPLE).unwrap();
        c.operators.truncate(2);
        c.handover.approvals_required = 2;
        c.handover.two_person_rule = true;
        c.handover.break_glass_approvals = 2;
        let err = c.validate().unwrap_err();
        assert!(
            err.contains("approvals_required = 2 can never be met"),
            "{err}"
        );
        assert!(
            err.contains("break_glass_approvals = 2 can never be met"),
            "{err}"
        );
        c.handover.two_person_rule = false;
        c.validate().unwrap();
        c.handover.two_person_rule = true;
        c.handover.approvals_required = 1;
        c.handover.break_glass_approvals = 1;
        c.validate().unwrap();
    }

    #[test]
    fn a_separate_raft_listener_needs_a_raft_url_on_every_peer() {
        let mut c = Config::from_toml(EXAMPLE).unwrap();
        c.raft_listen = Some("127.0.0.1:7201".into());
        let err = c.validate().unwrap_err();
        assert!(
            err.contains("raft_listen and the peers' raft_url go together"),
            "{err}"
        );
        c.peers[0].raft_url = Some("https://127.0.0.1:7201".into());
        let err = c.validate().unwrap_err();
        assert!(err.contains("every peer or for none"), "{err}");
        for (i, p) in c.peers.iter_mut().enumerate() {
            p.raft_url = Some(format!("https://127.0.0.1:720{}", i + 1));
        }
        c.validate().unwrap();
        assert_eq!(c.me().rpc_url(), "https://127.0.0.1:7201");
    }

    #[test]
    fn clear_text_tokens_are_refused() {
        let mut c = Config::from_toml(EXAMPLE).unwrap();
        c.operators[0].token_sha256 = Some("hunter2".into());
        assert!(c.validate().unwrap_err().contains("64 hex digits"));
    }

    #[test]
    fn links_are_tls_unless_plaintext_is_said_on_purpose() {
        let tls = Config::from_toml(EXAMPLE).unwrap();
        tls.validate().unwrap();
        // Neither: refused, saying what to do.
        let mut c = tls.clone();
        c.tls = None;
        let err = c.validate().unwrap_err();
        assert!(err.contains("insecure_plaintext = true"), "{err}");
        // Plaintext on purpose: http:// URLs and a cluster token.
        c.insecure_plaintext = true;
        let err = c.validate().unwrap_err();
        assert!(err.contains("must start with http://"), "{err}");
        assert!(err.contains("needs cluster_token_file"), "{err}");
        for p in &mut c.peers {
            p.url = p.url.replace("https://", "http://");
        }
        c.cluster_token_file = Some("/etc/failover/cluster.token".into());
        c.validate().unwrap();
        // Plaintext needs every token; TLS lets a certificate stand in.
        c.operators[0].token_sha256 = None;
        assert!(c
            .validate()
            .unwrap_err()
            .contains("token_sha256 is required without [tls]"));
        let mut t = tls.clone();
        t.operators[0].token_sha256 = None;
        t.agents[0].token_sha256 = None;
        t.validate().unwrap();
        // Both, or a cluster token over TLS: refused.
        let mut both = tls.clone();
        both.insecure_plaintext = true;
        assert!(both.validate().unwrap_err().contains("not both"));
        let mut token = tls;
        token.cluster_token_file = Some("/x".into());
        assert!(token
            .validate()
            .unwrap_err()
            .contains("cluster_token_file is for insecure_plaintext only"));
    }
}
