//! Signer-agent configuration: a strict TOML file (unknown keys are errors), then environment
//! variables, then command-line flags; the later source wins for each field.
//!
//! Invariants checked by [`Config::validate`]:
//! - `agent_id`, `region`, at least one coordinator URL, the token file, the genesis validators
//!   root and both key directories are given;
//! - coordinator URLs are distinct, and `https://` with `tls` set, or `http://` with
//!   `insecure_plaintext_coordinators = true`; never neither;
//! - the Web3Signer/keymanager API is TLS with a client allowlist (`api_clients`, which needs
//!   `tls` for the agent's own certificate), or plain HTTP with `insecure_plaintext_api =
//!   true`; never neither;
//! - `record_deadline_ms`, `max_batch`, `max_in_flight_batches`, `slots_per_epoch` and every
//!   interval are positive, and `authority_max_age_ms` is longer than `authority_poll_ms`, so
//!   one late poll does not flip the signing state to `Unknown`;
//! - the network constants are unambiguous: a named `network` takes none of the fork overrides
//!   (`genesis_fork_version`, `capella_fork_version`, `deneb_fork_epoch`), and
//!   `network = "custom"` needs all three ([`Config::chain_spec`]);
//! - `keymanager_token_file`, when set, is a non-empty path (the keymanager API is enabled).
//!
//! An example with every field documented ships as `config/signer-agent.example.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use failover_common::eth::{ChainSpec, Network};
use failover_common::types::{Root, Version};
use serde::{Deserialize, Serialize};

/// Which network's constants the agent signs with (`network` in the config file): one of the
/// public networks with built-in constants ([`Network`]), or `custom` for a devnet whose fork
/// constants are given explicitly.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum NetworkSetting {
    /// Ethereum mainnet ([`ChainSpec::mainnet`]).
    #[default]
    Mainnet,
    /// The Hoodi testnet ([`ChainSpec::hoodi`]).
    Hoodi,
    /// The Holesky testnet ([`ChainSpec::holesky`]).
    Holesky,
    /// The Sepolia testnet ([`ChainSpec::sepolia`]).
    Sepolia,
    /// A devnet: `genesis_fork_version`, `capella_fork_version` and `deneb_fork_epoch` must be
    /// set in the config.
    Custom,
}

impl NetworkSetting {
    /// The named network, or `None` for `custom`.
    pub fn named(self) -> Option<Network> {
        match self {
            NetworkSetting::Mainnet => Some(Network::Mainnet),
            NetworkSetting::Hoodi => Some(Network::Hoodi),
            NetworkSetting::Holesky => Some(Network::Holesky),
            NetworkSetting::Sepolia => Some(Network::Sepolia),
            NetworkSetting::Custom => None,
        }
    }
}

/// The agent's configuration (file `signer-agent.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This agent's id, as configured on the coordinators (e.g. `agent-eu`). Required.
    pub agent_id: String,
    /// Region label reported at registration (e.g. `eu`). Required.
    pub region: String,
    /// Address of the Web3Signer API listener. Default `127.0.0.1:9000`; port 0 picks a free
    /// port (the `READY` line reports the real one).
    pub listen: SocketAddr,
    /// Base URLs of the coordinators, e.g. `["https://10.0.1.5:7100"]`. Any node accepts any
    /// request; the agent moves to the next URL only when a connection cannot be made.
    /// Required.
    pub coordinators: Vec<String>,
    /// File holding this agent's bearer token for the coordinator API (surrounding whitespace
    /// ignored). Required without `tls`; with `tls` the client certificate authenticates the
    /// agent, and a token, if the coordinators configure one for it, comes on top.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordinator_token_file: Option<PathBuf>,
    /// TLS material: the cluster CA (coordinators must present a node certificate of it),
    /// this agent's certificate, which names `agent_id` (`urn:failover:agent:<id>`) and serves
    /// the API too, and its key. Reloaded on SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<failover_common::tls::TlsFiles>,
    /// Dial the coordinators over plain HTTP (`http://` URLs): tokens, authority views and
    /// verdicts then travel in clear, and anyone on the path can forge them. Only for links
    /// protected otherwise; a warning is logged at start.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_plaintext_coordinators: bool,
    /// Which validator clients may call the Web3Signer and keymanager API, served over TLS
    /// with this agent's certificate: client certificates of `client_ca_file`, or listed by
    /// SHA-256 fingerprint in `known_clients_file` (Web3Signer's known-clients format).
    /// Reloaded on SIGHUP. Needs `tls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_clients: Option<failover_common::tls::allowlist::AllowListFiles>,
    /// Serve the Web3Signer and keymanager API over plain HTTP, e.g. on 127.0.0.1 next to the
    /// validator client; a warning is logged at start.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_plaintext_api: bool,
    /// Genesis validators root of the network this agent signs for (`0x`-hex, 32 bytes). Sign
    /// requests whose `fork_info` names another root are refused. Required.
    pub genesis_validators_root: Option<Root>,
    /// The network whose constants sign what a request's `fork_info` cannot describe:
    /// `VOLUNTARY_EXIT` uses its `CAPELLA_FORK_VERSION` from its `DENEB_FORK_EPOCH` on
    /// (EIP-7044) and `VALIDATOR_REGISTRATION` its `GENESIS_FORK_VERSION` (builder-specs).
    /// `mainnet`, `hoodi`, `holesky`, `sepolia`, or `custom` with the three fork settings below.
    /// Must be the network of `genesis_validators_root`. Default `mainnet`.
    pub network: NetworkSetting,
    /// `GENESIS_FORK_VERSION` of a `custom` network (`0x`-hex, 4 bytes). Only with
    /// `network = "custom"`, which requires it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub genesis_fork_version: Option<Version>,
    /// `CAPELLA_FORK_VERSION` of a `custom` network (`0x`-hex, 4 bytes). Only with
    /// `network = "custom"`, which requires it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capella_fork_version: Option<Version>,
    /// `DENEB_FORK_EPOCH` of a `custom` network (epochs; 18446744073709551615 if Deneb is not
    /// scheduled). Only with `network = "custom"`, which requires it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deneb_fork_epoch: Option<u64>,
    /// Folder of EIP-2335 keystores: every `NAME.json` in it is loaded. Required.
    pub keystores_dir: PathBuf,
    /// Folder of keystore passwords: `NAME.txt` unlocks `NAME.json`. Control characters such
    /// as a trailing newline are removed by EIP-2335 password normalization. Required.
    pub passwords_dir: PathBuf,
    /// How long a slashable sign request waits for its committed record verdict (ms). Past it
    /// the answer is 503 and nothing is signed. Default 3000.
    pub record_deadline_ms: u64,
    /// Most records in one `POST /v1/agent/records` batch. Default 1024.
    pub max_batch: usize,
    /// Most record batches in flight to the coordinators at once; further records queue and
    /// are grouped into the next batch. Default 4.
    pub max_in_flight_batches: usize,
    /// Connections the Web3Signer/keymanager API serves at once; further ones are closed as
    /// they are accepted, unanswered (logged at DEBUG). A validator
    /// client that sends a slot's attestations all at once opens one connection per request:
    /// 10,000 validators put about 1,250 attestations in one slot (32-slot epochs ≈ 313).
    /// Keep it below the process's open-file limit (`ulimit -n`). Default 1024.
    pub max_connections: usize,
    /// Whether `VOLUNTARY_EXIT` requests may be signed at all. An exit is irreversible, so it
    /// is off unless an operator turns it on; while off, an exit request is answered 403
    /// `voluntary_exit_disabled` and nothing is signed. Default false.
    pub allow_voluntary_exit: bool,
    /// `SLOTS_PER_EPOCH` of the chain (slots): the epoch of a block or other slot-based
    /// message, which picks the fork version of its signing domain, is `slot /
    /// slots_per_epoch` (consensus specs `compute_epoch_at_slot`). Default 32 (mainnet).
    pub slots_per_epoch: u64,
    /// Interval of `GET /v1/authority` polls that learn the signing state (ms). Default 500.
    pub authority_poll_ms: u64,
    /// How long an observed authority stays valid (ms). An older observation counts as
    /// `Unknown`, so nothing is signed. Must exceed `authority_poll_ms`. Default 3000.
    pub authority_max_age_ms: u64,
    /// Interval of `POST /v1/agent/heartbeat` (ms). Default 2000.
    pub heartbeat_ms: u64,
    /// Bearer-token file of the standard keymanager API (`/eth/v1/keystores`). When the file
    /// does not exist, a random token is written to it (mode 0600) at start-up. Unset (the
    /// default): the keymanager API is disabled and its routes answer 404.
    pub keymanager_token_file: Option<PathBuf>,
    /// Unix time of the chain's genesis (seconds), for the far-future bound. Only with
    /// `network = "custom"` (named networks have theirs built in), together with
    /// `slot_duration_ms`. Unset on a custom network: the agent cannot tell the chain's epoch
    /// and leaves the bound to the coordinators (it logs a warning at start-up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub genesis_time: Option<u64>,
    /// `SECONDS_PER_SLOT` of a `custom` network in milliseconds (≥ 1). Only with
    /// `genesis_time`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot_duration_ms: Option<u64>,
    /// A slashable message (block slot, attestation source or target) more than this many
    /// epochs ahead of the chain's wall-clock epoch is refused with 400 `future_epoch`, and
    /// nothing is recorded or signed: recorded, it would block that validator until the chain
    /// got there (epochs). Default 2.
    pub max_future_epochs: u64,
    /// Base URL of a beacon node of the chain (standard Beacon API). When set, the agent reads
    /// its `GET /eth/v1/config/spec` and `GET /eth/v1/beacon/genesis` at start-up and refuses
    /// to start when the fork versions, `DENEB_FORK_EPOCH`, `SLOTS_PER_EPOCH`, the slot length,
    /// the genesis time or the genesis validators root differ from this configuration, naming
    /// each field (`failover_common::beacon::network_check`). Unset: no check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beacon_node: Option<String>,
    /// CA certificate (PEM) of an `https://` `beacon_node`; unset: the public roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beacon_ca_file: Option<PathBuf>,
    /// How long start-up waits for `beacon_node` to answer before it gives up (ms). Default
    /// 60000.
    pub beacon_check_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            agent_id: String::new(),
            region: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            coordinators: Vec::new(),
            coordinator_token_file: None,
            tls: None,
            insecure_plaintext_coordinators: false,
            api_clients: None,
            insecure_plaintext_api: false,
            genesis_validators_root: None,
            network: NetworkSetting::Mainnet,
            genesis_fork_version: None,
            capella_fork_version: None,
            deneb_fork_epoch: None,
            keystores_dir: PathBuf::new(),
            passwords_dir: PathBuf::new(),
            record_deadline_ms: 3000,
            max_batch: 1024,
            max_in_flight_batches: 4,
            max_connections: 1024,
            allow_voluntary_exit: false,
            slots_per_epoch: 32,
            authority_poll_ms: 500,
            authority_max_age_ms: 3000,
            heartbeat_ms: 2000,
            keymanager_token_file: None,
            genesis_time: None,
            slot_duration_ms: None,
            max_future_epochs: 2,
            beacon_node: None,
            beacon_ca_file: None,
            beacon_check_timeout_ms: 60_000,
        }
    }
}

/// Values from the environment or flags that replace the file's (see `signer-agent run
/// --help`). `None` keeps the file's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Overrides {
    /// This agent's id.
    #[arg(long, env = "SIGNER_AGENT_AGENT_ID")]
    pub agent_id: Option<String>,
    /// Region label.
    #[arg(long, env = "SIGNER_AGENT_REGION")]
    pub region: Option<String>,
    /// Listen address, e.g. 127.0.0.1:9000.
    #[arg(long, env = "SIGNER_AGENT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Coordinator base URLs (repeat the flag, or comma-separate in the variable).
    #[arg(
        long = "coordinator",
        env = "SIGNER_AGENT_COORDINATORS",
        value_delimiter = ','
    )]
    pub coordinators: Option<Vec<String>>,
    /// File with the coordinator bearer token.
    #[arg(long, env = "SIGNER_AGENT_COORDINATOR_TOKEN_FILE")]
    pub coordinator_token_file: Option<PathBuf>,
    /// Genesis validators root (0x-hex).
    #[arg(long, env = "SIGNER_AGENT_GENESIS_VALIDATORS_ROOT")]
    pub genesis_validators_root: Option<Root>,
    /// Network whose constants sign exits and registrations.
    #[arg(long, env = "SIGNER_AGENT_NETWORK", value_enum)]
    pub network: Option<NetworkSetting>,
    /// GENESIS_FORK_VERSION of a custom network (0x-hex, 4 bytes).
    #[arg(long, env = "SIGNER_AGENT_GENESIS_FORK_VERSION")]
    pub genesis_fork_version: Option<Version>,
    /// CAPELLA_FORK_VERSION of a custom network (0x-hex, 4 bytes).
    #[arg(long, env = "SIGNER_AGENT_CAPELLA_FORK_VERSION")]
    pub capella_fork_version: Option<Version>,
    /// DENEB_FORK_EPOCH of a custom network.
    #[arg(long, env = "SIGNER_AGENT_DENEB_FORK_EPOCH")]
    pub deneb_fork_epoch: Option<u64>,
    /// Folder of EIP-2335 keystores (`NAME.json`).
    #[arg(long, env = "SIGNER_AGENT_KEYSTORES_DIR")]
    pub keystores_dir: Option<PathBuf>,
    /// Folder of keystore passwords (`NAME.txt`).
    #[arg(long, env = "SIGNER_AGENT_PASSWORDS_DIR")]
    pub passwords_dir: Option<PathBuf>,
    /// Record verdict deadline (ms).
    #[arg(long, env = "SIGNER_AGENT_RECORD_DEADLINE_MS")]
    pub record_deadline_ms: Option<u64>,
    /// Most records per batch.
    #[arg(long, env = "SIGNER_AGENT_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Most record batches in flight.
    #[arg(long, env = "SIGNER_AGENT_MAX_IN_FLIGHT_BATCHES")]
    pub max_in_flight_batches: Option<usize>,
    /// Connections the API serves at once.
    #[arg(long, env = "SIGNER_AGENT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Allow signing VOLUNTARY_EXIT (true or false).
    #[arg(long, env = "SIGNER_AGENT_ALLOW_VOLUNTARY_EXIT")]
    pub allow_voluntary_exit: Option<bool>,
    /// `SLOTS_PER_EPOCH` of the chain.
    #[arg(long, env = "SIGNER_AGENT_SLOTS_PER_EPOCH")]
    pub slots_per_epoch: Option<u64>,
    /// Authority poll interval (ms).
    #[arg(long, env = "SIGNER_AGENT_AUTHORITY_POLL_MS")]
    pub authority_poll_ms: Option<u64>,
    /// Maximum age of an observed authority (ms).
    #[arg(long, env = "SIGNER_AGENT_AUTHORITY_MAX_AGE_MS")]
    pub authority_max_age_ms: Option<u64>,
    /// Heartbeat interval (ms).
    #[arg(long, env = "SIGNER_AGENT_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Keymanager API bearer-token file (enables `/eth/v1/keystores`).
    #[arg(long, env = "SIGNER_AGENT_KEYMANAGER_TOKEN_FILE")]
    pub keymanager_token_file: Option<PathBuf>,
    /// Genesis time of a custom network (Unix seconds).
    #[arg(long, env = "SIGNER_AGENT_GENESIS_TIME")]
    pub genesis_time: Option<u64>,
    /// Slot duration of a custom network (ms).
    #[arg(long, env = "SIGNER_AGENT_SLOT_DURATION_MS")]
    pub slot_duration_ms: Option<u64>,
    /// Epochs a slashable message may lie ahead of the chain.
    #[arg(long, env = "SIGNER_AGENT_MAX_FUTURE_EPOCHS")]
    pub max_future_epochs: Option<u64>,
    /// Beacon node whose chain configuration is checked at start-up.
    #[arg(long, env = "SIGNER_AGENT_BEACON_NODE")]
    pub beacon_node: Option<String>,
    /// CA certificate (PEM) of an https beacon node.
    #[arg(long, env = "SIGNER_AGENT_BEACON_CA_FILE")]
    pub beacon_ca_file: Option<PathBuf>,
}

impl Config {
    /// Parses TOML text strictly (unknown keys are errors). Does not validate.
    ///
    /// Errors: TOML syntax, unknown keys, or wrongly typed values, with the location.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        toml::from_str(text).context("parse signer-agent config")
    }

    /// Reads the config file at `path` (see [`Config::from_toml`]).
    ///
    /// Errors: the file cannot be read or parsed; the error names the file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read config file {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Builds the effective config: the file (if any, else defaults), then `overrides`
    /// (environment and flags), then [`Config::validate`].
    ///
    /// Errors: the file cannot be read or parsed, or validation fails.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut cfg = match path {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        cfg.apply(overrides);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Replaces every field that `o` sets.
    pub fn apply(&mut self, o: &Overrides) {
        fn set<T: Clone>(field: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *field = v.clone();
            }
        }
        set(&mut self.agent_id, &o.agent_id);
        set(&mut self.region, &o.region);
        set(&mut self.listen, &o.listen);
        set(&mut self.coordinators, &o.coordinators);
        if o.coordinator_token_file.is_some() {
            self.coordinator_token_file = o.coordinator_token_file.clone();
        }
        if o.genesis_validators_root.is_some() {
            self.genesis_validators_root = o.genesis_validators_root;
        }
        set(&mut self.network, &o.network);
        if o.beacon_node.is_some() {
            self.beacon_node = o.beacon_node.clone();
        }
        if o.beacon_ca_file.is_some() {
            self.beacon_ca_file = o.beacon_ca_file.clone();
        }
        if o.genesis_fork_version.is_some() {
            self.genesis_fork_version = o.genesis_fork_version;
        }
        if o.capella_fork_version.is_some() {
            self.capella_fork_version = o.capella_fork_version;
        }
        if o.deneb_fork_epoch.is_some() {
            self.deneb_fork_epoch = o.deneb_fork_epoch;
        }
        set(&mut self.keystores_dir, &o.keystores_dir);
        set(&mut self.passwords_dir, &o.passwords_dir);
        set(&mut self.record_deadline_ms, &o.record_deadline_ms);
        set(&mut self.max_batch, &o.max_batch);
        set(&mut self.max_in_flight_batches, &o.max_in_flight_batches);
        set(&mut self.max_connections, &o.max_connections);
        set(&mut self.allow_voluntary_exit, &o.allow_voluntary_exit);
        set(&mut self.slots_per_epoch, &o.slots_per_epoch);
        set(&mut self.authority_poll_ms, &o.authority_poll_ms);
        set(&mut self.authority_max_age_ms, &o.authority_max_age_ms);
        set(&mut self.heartbeat_ms, &o.heartbeat_ms);
        if o.keymanager_token_file.is_some() {
            self.keymanager_token_file = o.keymanager_token_file.clone();
        }
        if o.genesis_time.is_some() {
            self.genesis_time = o.genesis_time;
        }
        if o.slot_duration_ms.is_some() {
            self.slot_duration_ms = o.slot_duration_ms;
        }
        set(&mut self.max_future_epochs, &o.max_future_epochs);
    }

    /// What is wrong with the TLS and plaintext settings of the coordinator links and of the
    /// API (module invariants), one problem per entry.
    fn link_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match (self.tls.is_some(), self.insecure_plaintext_coordinators) {
            (false, false) => problems.push(
                "no tls: set tls (ca_file, cert_file, key_file) to reach the coordinators over \
                 TLS, or insecure_plaintext_coordinators = true to use plain HTTP on purpose"
                    .into(),
            ),
            (true, true) => problems.push(
                "set either tls or insecure_plaintext_coordinators = true for the coordinator \
                 links, not both"
                    .into(),
            ),
            (tls, _) => {
                let scheme = if tls { "https://" } else { "http://" };
                for u in self.coordinators.iter().filter(|u| !u.starts_with(scheme)) {
                    problems.push(format!(
                        "coordinator URL {u:?} must start with {scheme} ({})",
                        if tls {
                            "tls is set"
                        } else {
                            "insecure_plaintext_coordinators is set"
                        }
                    ));
                }
            }
        }
        match (&self.api_clients, self.insecure_plaintext_api) {
            (None, false) => problems.push(
                "the API needs api_clients (client_ca_file and/or known_clients_file) to serve \
                 TLS, or insecure_plaintext_api = true to serve plain HTTP on purpose"
                    .into(),
            ),
            (Some(_), true) => problems
                .push("set either api_clients or insecure_plaintext_api = true, not both".into()),
            (Some(_), false) if self.tls.is_none() => problems
                .push("api_clients needs tls: the API serves this agent's certificate".into()),
            _ => {}
        }
        problems
    }

    /// Checks the invariants in the module docs.
    ///
    /// Errors: one message listing every problem, each naming its field.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        let mut require = |ok: bool, msg: &str| {
            if !ok {
                problems.push(msg.to_string());
            }
        };
        require(!self.agent_id.trim().is_empty(), "agent_id is required");
        require(!self.region.trim().is_empty(), "region is required");
        require(
            !self.coordinators.is_empty(),
            "coordinators needs at least one URL",
        );
        require(
            self.tls.is_some() || self.coordinator_token_file.is_some(),
            "coordinator_token_file is required without tls",
        );
        require(
            self.genesis_validators_root.is_some(),
            "genesis_validators_root is required (0x-hex, 32 bytes)",
        );
        require(
            !self.keystores_dir.as_os_str().is_empty(),
            "keystores_dir is required",
        );
        require(
            !self.passwords_dir.as_os_str().is_empty(),
            "passwords_dir is required",
        );
        require(
            self.record_deadline_ms > 0,
            "record_deadline_ms must be > 0",
        );
        require(self.max_batch > 0, "max_batch must be > 0");
        require(self.slots_per_epoch > 0, "slots_per_epoch must be > 0");
        require(
            self.max_in_flight_batches > 0,
            "max_in_flight_batches must be > 0",
        );
        require(self.max_connections > 0, "max_connections must be > 0");
        require(self.authority_poll_ms > 0, "authority_poll_ms must be > 0");
        require(self.heartbeat_ms > 0, "heartbeat_ms must be > 0");
        require(
            self.keymanager_token_file
                .as_ref()
                .is_none_or(|p| !p.as_os_str().is_empty()),
            "keymanager_token_file must not be empty when set",
        );
        require(
            self.authority_max_age_ms > self.authority_poll_ms,
            "authority_max_age_ms must be greater than authority_poll_ms",
        );
        problems.extend(self.link_problems());
        if let Err(e) = self.chain_spec() {
            problems.push(e.to_string());
        }
        match (
            self.network.named(),
            self.genesis_time,
            self.slot_duration_ms,
        ) {
            (Some(n), g, d) if g.is_some() || d.is_some() => problems.push(format!(
                "genesis_time and slot_duration_ms may be set only with network = \"custom\"; \
                 network = \"{n}\" has them built in"
            )),
            (None, Some(_), None) | (None, None, Some(_)) => problems
                .push("genesis_time and slot_duration_ms go together: set both or neither".into()),
            (None, _, Some(0)) => problems.push("slot_duration_ms must be > 0".into()),
            _ => {}
        }
        for (i, url) in self.coordinators.iter().enumerate() {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && reqwest::Url::parse(url).is_ok();
            if !ok {
                problems.push(format!(
                    "coordinators[{i}] = {url:?} is not an http:// or https:// URL"
                ));
            }
            if self.coordinators[..i].contains(url) {
                problems.push(format!("coordinators[{i}] = {url:?} is listed twice"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "invalid signer-agent config:\n  - {}",
                problems.join("\n  - ")
            )
        }
    }

    /// The chain's genesis time and slot length: built in for a named network, from
    /// `genesis_time` and `slot_duration_ms` for a custom one; `None` for a custom network
    /// without them (no agent-side far-future bound).
    pub fn timing(&self) -> Option<failover_common::chain_time::ChainTiming> {
        match (
            self.network.named(),
            self.genesis_time,
            self.slot_duration_ms,
        ) {
            (Some(n), _, _) => Some(failover_common::chain_time::ChainTiming::of_network(n)),
            (None, Some(g), Some(d)) => Some(failover_common::chain_time::ChainTiming {
                genesis_ms: g.saturating_mul(1000),
                slot_ms: d.max(1),
            }),
            _ => None,
        }
    }

    /// [`Config::record_deadline_ms`] as a duration.
    pub fn record_deadline(&self) -> Duration {
        Duration::from_millis(self.record_deadline_ms)
    }

    /// The network constants the agent signs with: the named `network`'s built-in ones, or the
    /// three fork settings of a `custom` one; `slots_per_epoch` from this config in both cases.
    ///
    /// Errors: a named network with any fork setting (which would silently override or be
    /// ignored), or a `custom` one missing any of them; the message names every such field.
    pub fn chain_spec(&self) -> anyhow::Result<ChainSpec> {
        let overrides = [
            ("genesis_fork_version", self.genesis_fork_version.is_some()),
            ("capella_fork_version", self.capella_fork_version.is_some()),
            ("deneb_fork_epoch", self.deneb_fork_epoch.is_some()),
        ];
        match self.network.named() {
            Some(network) => {
                let set: Vec<&str> = overrides
                    .iter()
                    .filter(|(_, is_set)| *is_set)
                    .map(|(name, _)| *name)
                    .collect();
                anyhow::ensure!(
                    set.is_empty(),
                    "{} may be set only with network = \"custom\"; network = \"{network}\" \
                     has built-in constants",
                    set.join(", ")
                );
                Ok(ChainSpec {
                    slots_per_epoch: self.slots_per_epoch,
                    ..network.chain_spec()
                })
            }
            None => match (
                self.genesis_fork_version,
                self.capella_fork_version,
                self.deneb_fork_epoch,
            ) {
                (Some(genesis), Some(capella), Some(deneb)) => Ok(ChainSpec {
                    name: "custom",
                    genesis_fork_version: genesis,
                    capella_fork_version: capella,
                    deneb_fork_epoch: deneb,
                    slots_per_epoch: self.slots_per_epoch,
                }),
                _ => {
                    let missing: Vec<&str> = overrides
                        .iter()
                        .filter(|(_, is_set)| !*is_set)
                        .map(|(name, _)| *name)
                        .collect();
                    anyhow::bail!(
                        "network = \"custom\" needs {} (missing: {})",
                        "genesis_fork_version, capella_fork_version and deneb_fork_epoch",
                        missing.join(", ")
                    )
                }
            },
        }
    }

    /// The configured genesis validators root; [`Root::ZERO`] only if unset, which
    /// [`Config::validate`] refuses.
    pub fn gvr(&self) -> Root {
        self.genesis_validators_root.unwrap_or(Root::ZERO)
    }
}
