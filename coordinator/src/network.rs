//! Raft RPC between coordinators over HTTP, authenticated with the cluster token in plaintext
//! or the node's certificate over TLS.
//!
//! Paths on every coordinator: `POST /raft/append`, `POST /raft/vote`, `POST /raft/snapshot`.
//! The body is the openraft request and the answer is `Result<response, RaftError>`, both in
//! the versioned binary envelope of [`crate::codec`] (`Content-Type`
//! [`crate::codec::MEDIA_TYPE`]); a peer also accepts JSON and answers it in JSON.
//! A connection failure is reported to openraft as `Unreachable` (it backs off); any other
//! transport failure as a `NetworkError`. Every call is bounded by openraft's per-RPC
//! deadline (`RPCOption::hard_ttl`).
//!
//! AppendEntries is bounded in bytes (`raft.max_append_bytes`, see [`PeerClient`]).
//!
//! Every call names its target node in the [`TARGET_HEADER`] header; a node refuses an RPC
//! meant for another id (409), so a wrong address never feeds one node's log into another.
//!
//! A peer is dialled at the URL in this node's own configuration (`peers[].url`) when it has
//! one, not at the address replicated in the membership: each node has its own view of the
//! links, so a deployment (or a drill) can route one direction of one link through a proxy.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{codec, NodeId, TypeConfig};

/// Header naming the node id a Raft RPC is meant for.
pub const TARGET_HEADER: &str = "x-failover-target";

/// Creates per-peer RPC clients sharing one HTTP connection pool.
#[derive(Clone)]
pub struct Network {
    client: reqwest::Client,
    cluster_token: Option<String>,
    peer_urls: Arc<HashMap<NodeId, String>>,
    max_append_bytes: usize,
}

impl Network {
    /// A factory using `client`, sending `cluster_token` as the bearer token in plaintext
    /// (over TLS, `None`: the client's certificate authenticates this node, and every answer
    /// must come from the certificate of the node dialled), and dialling each peer at its URL
    /// in `peer_urls` (this node's config), or else at its membership address.
    /// AppendEntries bodies are kept under `max_append_bytes` (bytes of the encoded body)
    /// whenever they hold more than one entry ([`PeerClient`]).
    pub fn new(
        client: reqwest::Client,
        cluster_token: Option<String>,
        peer_urls: HashMap<NodeId, String>,
        max_append_bytes: usize,
    ) -> Self {
        Self {
            client,
            cluster_token,
            peer_urls: Arc::new(peer_urls),
            max_append_bytes,
        }
    }
}

/// RPC client for one peer.
///
/// AppendEntries is bounded in bytes as openraft's contract intends: a request of more than
/// one entry whose encoded body exceeds `max_append_bytes` is not sent; openraft gets
/// [`RPCError::PayloadTooLarge`] with a hint of how many entries fit and retries at once with
/// fewer. A peer that still answers 413 (a smaller body limit) is treated the same way, halving
/// the entries, so an oversized request is never resent unchanged.
pub struct PeerClient {
    client: reqwest::Client,
    cluster_token: Option<String>,
    target: NodeId,
    url: String,
    max_append_bytes: usize,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            client: self.client.clone(),
            cluster_token: self.cluster_token.clone(),
            target,
            url: self
                .peer_urls
                .get(&target)
                .unwrap_or(&node.addr)
                .trim_end_matches('/')
                .to_string(),
            max_append_bytes: self.max_append_bytes,
        }
    }
}

/// How many of `entries` entries fit in `limit` bytes when they take `size` bytes in all
/// (proportionally, at least 1, fewer than `entries`).
fn entries_that_fit(entries: u64, size: usize, limit: usize) -> u64 {
    let fit = u128::from(entries) * limit as u128 / (size.max(1) as u128);
    u64::try_from(fit)
        .unwrap_or(u64::MAX)
        .clamp(1, entries.saturating_sub(1).max(1))
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let res = self.send(path, body, option).await?;
        self.finish(res).await
    }

    /// Posts `body` to `/raft/{path}` of the peer within openraft's deadline.
    async fn send<E>(
        &self,
        path: &str,
        body: Vec<u8>,
        option: &RPCOption,
    ) -> Result<reqwest::Response, RPCError<NodeId, BasicNode, E>>
    where
        E: std::error::Error,
    {
        let ttl = option.hard_ttl().max(Duration::from_millis(50));
        let mut req = self
            .client
            .post(format!("{}/raft/{path}", self.url))
            .header(TARGET_HEADER, self.target.to_string())
            .header(reqwest::header::CONTENT_TYPE, codec::MEDIA_TYPE)
            .timeout(ttl)
            .body(body);
        if let Some(t) = &self.cluster_token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) if self.cluster_token.is_none() => {
                // Over TLS: the answer counts only from the node dialled.
                let want = failover_common::tls::Identity::Node(self.target);
                match failover_common::tls::peer_identity(&r) {
                    Some(id) if id == want => Ok(r),
                    other => Err(RPCError::Network(NetworkError::new(
                        &openraft::AnyError::error(format!(
                            "{} answers with the certificate of {}, not node {}",
                            self.url,
                            other.map_or_else(|| "no coordinator".to_string(), |i| i.to_string()),
                            self.target
                        )),
                    ))),
                }
            }
            Ok(r) => Ok(r),
            Err(e) if e.is_connect() => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    /// Reads the peer's answer: a non-2xx status is a network error, the body is
    /// `Result<response, error>` in the envelope of [`codec`] (or JSON, from an older peer).
    async fn finish<Resp, E>(
        &self,
        res: reqwest::Response,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if !res.status().is_success() {
            let status = res.status();
            let text = res.text().await.unwrap_or_default();
            let e =
                std::io::Error::other(format!("peer {} answered {status}: {text}", self.target));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let bytes = res
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let body: Result<Resp, E> =
            codec::decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        body.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let entries = rpc.entries.len() as u64;
        let body = codec::encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if entries > 1 && body.len() > self.max_append_bytes {
            let hint = entries_that_fit(entries, body.len(), self.max_append_bytes);
            tracing::debug!(
                target_node = self.target,
                entries,
                bytes = body.len(),
                hint,
                "AppendEntries over raft.max_append_bytes: asking openraft for fewer entries"
            );
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        let body_len = body.len();
        let res = self.send("append", body, &option).await?;
        if res.status() == reqwest::StatusCode::PAYLOAD_TOO_LARGE {
            tracing::warn!(
                target_node = self.target,
                entries,
                bytes = body_len,
                "AppendEntries refused by the peer as too large"
            );
            if entries > 1 {
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(entries / 2),
                ));
            }
        }
        self.finish(res).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::entries_that_fit;

    #[test]
    fn the_entries_hint_is_proportional_and_always_shrinks() {
        assert_eq!(entries_that_fit(300, 30_000_000, 4_000_000), 40);
        assert_eq!(entries_that_fit(2, 10_000_000, 4_000_000), 1);
        assert_eq!(entries_that_fit(300, 4_000_001, 4_000_000), 299);
        assert_eq!(
            entries_that_fit(u64::MAX, usize::MAX, usize::MAX),
            u64::MAX - 1
        );
    }
}
