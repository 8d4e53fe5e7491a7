//! [`BeaconClient`]: asks every configured beacon node, with per-request deadlines, and turns
//! each answer into an observation or a typed error.

use std::time::Duration;

use crate::types::Root;

use super::agreement::{BeaconObservation, CheckpointObs, ObservationStatus};
use super::ids::StateId;
use super::types::{
    DataResponse, ErrorMessage, FinalityCheckpointsResponse, ForkResponse, Genesis,
    GenesisResponse, SpecConstants, SpecResponse, SyncingResponse, SyncingStatus,
};
use super::{PATH_GENESIS, PATH_SPEC, PATH_SYNCING};

/// Error from one Beacon API query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeaconError {
    /// No complete answer within the client's timeout.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// Connection refused, reset, DNS failure, bad URL…
    #[error("transport error: {0}")]
    Transport(String),
    /// A non-2xx status; `message` is the spec error body's message, or the raw body.
    #[error("HTTP {status}: {message}")]
    Status {
        /// HTTP status code (e.g. 404 for genesis not yet known).
        status: u16,
        /// The error message the node gave.
        message: String,
    },
    /// A 2xx answer that does not have the spec shape.
    #[error("malformed response: {0}")]
    Decode(String),
}

impl BeaconError {
    /// A short stable label for metrics: `timeout`, `transport`, `http_status` or `malformed`.
    pub fn kind(&self) -> &'static str {
        match self {
            BeaconError::Timeout(_) => "timeout",
            BeaconError::Transport(_) => "transport",
            BeaconError::Status { .. } => "http_status",
            BeaconError::Decode(_) => "malformed",
        }
    }
}

/// One node's answer to a finality poll with monitoring details that are not evidence (they
/// never enter the Raft log): the node's sync status and the kind of problem that kept it from
/// counting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeaconPoll {
    /// The evidence unit, exactly as [`BeaconClient::observe`] returns it.
    pub observation: BeaconObservation,
    /// The node's `GET /eth/v1/node/syncing` answer (head slot and sync distance, in slots),
    /// when it gave one in time.
    pub syncing: Option<SyncingStatus>,
    /// `None` when the observation is usable; otherwise why not, as a stable metrics label:
    /// `syncing`, `optimistic`, `wrong_genesis`, a failed query's [`BeaconError::kind`]
    /// (`timeout`, `transport`, `http_status`, `malformed`), `invalid_checkpoint` (a non-zero
    /// epoch finalized with the zero root) or `internal` (the poll task failed).
    pub problem: Option<&'static str>,
}

/// A Beacon API client over a fixed set of beacon nodes, for the finality gate.
///
/// Every query is bounded by the timeout given to [`BeaconClient::new`]; a node that does not
/// answer in time is reported as [`ObservationStatus::Error`], never waited for.
#[derive(Debug, Clone)]
pub struct BeaconClient {
    http: reqwest::Client,
    urls: Vec<String>,
    timeout: Duration,
    expected_genesis_validators_root: Root,
}

impl BeaconClient {
    /// A client for the beacon nodes at `urls` (base URLs such as `http://127.0.0.1:5052`; a
    /// trailing `/` is ignored), each query bounded by `timeout`, accepting only nodes whose
    /// genesis validators root is `expected_genesis_validators_root`.
    ///
    /// Panics if the TLS backend cannot be initialised, as `reqwest::Client::new` does.
    pub fn new(
        urls: Vec<String>,
        timeout: Duration,
        expected_genesis_validators_root: Root,
    ) -> Self {
        Self::over(
            reqwest::Client::builder(),
            urls,
            timeout,
            expected_genesis_validators_root,
        )
    }

    /// [`BeaconClient::new`] for beacon nodes serving `https://` with certificates of the CA
    /// in `ca_file` (instead of the public roots).
    ///
    /// Errors: the CA file does not load ([`crate::tls::read_roots`]).
    pub fn with_ca_file(
        urls: Vec<String>,
        timeout: Duration,
        expected_genesis_validators_root: Root,
        ca_file: &std::path::Path,
    ) -> Result<Self, crate::tls::TlsError> {
        let http = crate::tls::tool_client(Some(ca_file), None, crate::tls::PeerRole::Any)?;
        Ok(Self::over(
            http,
            urls,
            timeout,
            expected_genesis_validators_root,
        ))
    }

    fn over(
        http: reqwest::ClientBuilder,
        urls: Vec<String>,
        timeout: Duration,
        expected_genesis_validators_root: Root,
    ) -> Self {
        let http = http
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .expect("reqwest client with rustls builds");
        Self {
            http,
            urls,
            timeout,
            expected_genesis_validators_root,
        }
    }

    /// The configured base URLs, in order.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The per-node timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The genesis validators root a node must report to count.
    pub fn expected_genesis_validators_root(&self) -> Root {
        self.expected_genesis_validators_root
    }

    /// Polls every node concurrently and returns one observation per configured URL, in the
    /// order of [`BeaconClient::urls`]. Completes within about the timeout even when nodes
    /// hang.
    pub async fn observe_all(&self) -> Vec<BeaconObservation> {
        self.poll_all()
            .await
            .into_iter()
            .map(|p| p.observation)
            .collect()
    }

    /// As [`BeaconClient::observe_all`], with each node's monitoring details
    /// ([`BeaconPoll`]): its sync status and what kind of problem, if any, kept it from
    /// counting.
    pub async fn poll_all(&self) -> Vec<BeaconPoll> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, url) in self.urls.iter().enumerate() {
            let this = self.clone();
            let url = url.clone();
            tasks.spawn(async move { (i, this.poll(&url).await) });
        }
        let mut out: Vec<Option<BeaconPoll>> = vec![None; self.urls.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, poll)) = joined {
                out[i] = Some(poll);
            }
        }
        out.into_iter()
            .zip(&self.urls)
            .map(|(poll, url)| {
                poll.unwrap_or_else(|| BeaconPoll {
                    observation: BeaconObservation {
                        url: url.clone(),
                        status: ObservationStatus::Error {
                            message: "observer task failed".to_string(),
                        },
                        finalized: None,
                    },
                    syncing: None,
                    problem: Some("internal"),
                })
            })
            .collect()
    }

    /// Polls one node: genesis, syncing status and head finality checkpoints, concurrently,
    /// all within the timeout, and classifies the answers (see [`ObservationStatus`]).
    ///
    /// Precedence when several things are wrong: wrong genesis, then syncing, then optimistic
    /// (from `/node/syncing`), then the first failed query, then an optimistic finality answer
    /// or a malformed checkpoint.
    pub async fn observe(&self, url: &str) -> BeaconObservation {
        self.poll(url).await.observation
    }

    /// As [`BeaconClient::observe`], with the monitoring details ([`BeaconPoll`]).
    pub async fn poll(&self, url: &str) -> BeaconPoll {
        let work = async {
            let (genesis, syncing, finality) = tokio::join!(
                self.genesis(url),
                self.syncing(url),
                self.finality_checkpoints(url, StateId::Head)
            );
            let first_error = [
                genesis.as_ref().err(),
                syncing.as_ref().err(),
                finality.as_ref().err(),
            ]
            .into_iter()
            .flatten()
            .next()
            .map(BeaconError::kind);
            let sync_status = syncing.as_ref().ok().cloned();
            let observation = classify(
                url,
                self.expected_genesis_validators_root,
                genesis,
                syncing,
                finality,
            );
            let problem = match &observation.status {
                ObservationStatus::Usable => None,
                ObservationStatus::Syncing { .. } => Some("syncing"),
                ObservationStatus::Optimistic => Some("optimistic"),
                ObservationStatus::WrongGenesis { .. } => Some("wrong_genesis"),
                ObservationStatus::Error { .. } => {
                    Some(first_error.unwrap_or("invalid_checkpoint"))
                }
            };
            BeaconPoll {
                observation,
                syncing: sync_status,
                problem,
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(poll) => poll,
            Err(_) => BeaconPoll {
                observation: BeaconObservation {
                    url: url.to_string(),
                    status: ObservationStatus::Error {
                        message: BeaconError::Timeout(self.timeout).to_string(),
                    },
                    finalized: None,
                },
                syncing: None,
                problem: Some("timeout"),
            },
        }
    }

    /// `GET /eth/v1/beacon/genesis` on the node at `url`.
    ///
    /// Errors: [`BeaconError`]; a node before genesis answers [`BeaconError::Status`] 404.
    pub async fn genesis(&self, url: &str) -> Result<Genesis, BeaconError> {
        let r: GenesisResponse = self.get_json(url, PATH_GENESIS).await?;
        Ok(r.data)
    }

    /// `GET /eth/v1/node/syncing` on the node at `url`.
    ///
    /// Errors: [`BeaconError`].
    pub async fn syncing(&self, url: &str) -> Result<SyncingStatus, BeaconError> {
        let r: SyncingResponse = self.get_json(url, PATH_SYNCING).await?;
        Ok(r.data)
    }

    /// `GET /eth/v1/beacon/states/{state_id}/finality_checkpoints` on the node at `url`.
    ///
    /// Errors: [`BeaconError`]; an unknown state is [`BeaconError::Status`] 404.
    pub async fn finality_checkpoints(
        &self,
        url: &str,
        state_id: StateId,
    ) -> Result<FinalityCheckpointsResponse, BeaconError> {
        self.get_json(
            url,
            &format!("/eth/v1/beacon/states/{state_id}/finality_checkpoints"),
        )
        .await
    }

    /// `GET /eth/v1/beacon/states/{state_id}/fork` on the node at `url`.
    ///
    /// Errors: [`BeaconError`].
    pub async fn fork(&self, url: &str, state_id: StateId) -> Result<ForkResponse, BeaconError> {
        self.get_json(url, &format!("/eth/v1/beacon/states/{state_id}/fork"))
            .await
    }

    /// `GET /eth/v1/config/spec` on the node at `url`.
    ///
    /// Errors: [`BeaconError`].
    pub async fn spec(&self, url: &str) -> Result<SpecConstants, BeaconError> {
        let r: SpecResponse = self.get_json(url, PATH_SPEC).await?;
        Ok(r.data)
    }

    /// `POST /eth/v1/validator/liveness/{epoch}` on the node at `url`: whether each of
    /// `indices` (validator indices) was seen live in `epoch` (epochs), in the order asked.
    ///
    /// Errors: [`BeaconError`]; an answer that leaves out an index asked for, or names one
    /// that was not, is [`BeaconError::Decode`] (it cannot count as "not live").
    pub async fn liveness(
        &self,
        url: &str,
        epoch: u64,
        indices: &[u64],
    ) -> Result<Vec<(u64, bool)>, BeaconError> {
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(with = "crate::types::quoted_u64")]
            index: u64,
            is_live: bool,
        }
        let body: Vec<String> = indices.iter().map(u64::to_string).collect();
        let r: DataResponse<Vec<Entry>> = self
            .send_json(
                reqwest::Method::POST,
                url,
                &format!("/eth/v1/validator/liveness/{epoch}"),
                Some(serde_json::json!(body)),
            )
            .await?;
        let answered: std::collections::BTreeMap<u64, bool> =
            r.data.iter().map(|e| (e.index, e.is_live)).collect();
        if answered.len() != r.data.len() || r.data.iter().any(|e| !indices.contains(&e.index)) {
            return Err(BeaconError::Decode(
                "liveness answer names a validator twice, or one that was not asked".into(),
            ));
        }
        indices
            .iter()
            .map(|i| {
                answered.get(i).map(|live| (*i, *live)).ok_or_else(|| {
                    BeaconError::Decode(format!("liveness answer leaves out validator {i}"))
                })
            })
            .collect()
    }

    /// `POST /eth/v1/beacon/states/head/validators` on the node at `url` with `pubkeys` as
    /// `ids`: the validator index of each pubkey the chain knows. A pubkey missing from the
    /// map is not a validator of this chain (yet).
    ///
    /// Errors: [`BeaconError`]; an answer naming a pubkey that was not asked is
    /// [`BeaconError::Decode`].
    pub async fn validator_indices(
        &self,
        url: &str,
        pubkeys: &[crate::types::Pubkey],
    ) -> Result<std::collections::BTreeMap<crate::types::Pubkey, u64>, BeaconError> {
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(with = "crate::types::quoted_u64")]
            index: u64,
            validator: Inner,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            pubkey: crate::types::Pubkey,
        }
        let ids: Vec<String> = pubkeys.iter().map(ToString::to_string).collect();
        let r: DataResponse<Vec<Entry>> = self
            .send_json(
                reqwest::Method::POST,
                url,
                "/eth/v1/beacon/states/head/validators",
                Some(serde_json::json!({ "ids": ids })),
            )
            .await?;
        let mut out = std::collections::BTreeMap::new();
        for e in r.data {
            if !pubkeys.contains(&e.validator.pubkey) {
                return Err(BeaconError::Decode(format!(
                    "validators answer names {} which was not asked",
                    e.validator.pubkey
                )));
            }
            out.insert(e.validator.pubkey, e.index);
        }
        Ok(out)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
    ) -> Result<T, BeaconError> {
        self.send_json(reqwest::Method::GET, base, path, None).await
    }

    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        base: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, BeaconError> {
        let url = format!("{}{}", base.trim_end_matches('/'), path);
        let mut req = self
            .http
            .request(method, &url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            let message = match serde_json::from_slice::<ErrorMessage>(&body) {
                Ok(e) => e.message,
                Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            };
            return Err(BeaconError::Status {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| BeaconError::Decode(e.to_string()))
    }

    fn transport(&self, e: reqwest::Error) -> BeaconError {
        if e.is_timeout() {
            BeaconError::Timeout(self.timeout)
        } else {
            // The Display of a reqwest error omits its cause ("error sending request");
            // walk the chain so the evidence says what actually happened.
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            BeaconError::Transport(msg)
        }
    }
}

/// Turns one node's three answers into an observation (see [`BeaconClient::observe`]).
pub(super) fn classify(
    url: &str,
    expected_root: Root,
    genesis: Result<Genesis, BeaconError>,
    syncing: Result<SyncingStatus, BeaconError>,
    finality: Result<FinalityCheckpointsResponse, BeaconError>,
) -> BeaconObservation {
    let finalized = finality
        .as_ref()
        .ok()
        .map(|r| CheckpointObs::from(r.data.finalized));
    let status = classify_status(expected_root, &genesis, &syncing, &finality);
    BeaconObservation {
        url: url.to_string(),
        status,
        finalized,
    }
}

fn classify_status(
    expected_root: Root,
    genesis: &Result<Genesis, BeaconError>,
    syncing: &Result<SyncingStatus, BeaconError>,
    finality: &Result<FinalityCheckpointsResponse, BeaconError>,
) -> ObservationStatus {
    if let Ok(g) = genesis {
        if g.genesis_validators_root != expected_root {
            return ObservationStatus::WrongGenesis {
                got: g.genesis_validators_root,
            };
        }
    }
    if let Ok(s) = syncing {
        if s.is_syncing {
            return ObservationStatus::Syncing {
                sync_distance: s.sync_distance,
            };
        }
        if s.is_optimistic {
            return ObservationStatus::Optimistic;
        }
    }
    let error = |what: &str, e: &BeaconError| ObservationStatus::Error {
        message: format!("{what}: {e}"),
    };
    let finality = match (genesis, syncing, finality) {
        (Err(e), _, _) => return error("genesis", e),
        (_, Err(e), _) => return error("syncing", e),
        (_, _, Err(e)) => return error("finality", e),
        (Ok(_), Ok(_), Ok(f)) => f,
    };
    if finality.execution_optimistic {
        return ObservationStatus::Optimistic;
    }
    let fin = finality.data.finalized;
    if fin.epoch > 0 && fin.root.is_zero() {
        return ObservationStatus::Error {
            message: format!(
                "finality: finalized epoch {} with the zero root (only epoch 0 may have it)",
                fin.epoch
            ),
        };
    }
    ObservationStatus::Usable
}
