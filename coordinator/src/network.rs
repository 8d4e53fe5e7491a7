//! Raft RPC between coordinators over HTTP (JSON bodies), authenticated with the cluster
//! token.
//!
//! Paths on every coordinator: `POST /raft/append`, `POST /raft/vote`, `POST /raft/snapshot`.
//! The body is the openraft request; the answer is `Result<response, RaftError>` as JSON.
//! A connection failure is reported to openraft as `Unreachable` (it backs off); any other
//! transport failure as a `NetworkError`. Every call is bounded by openraft's per-RPC
//! deadline (`RPCOption::hard_ttl`).
//!
//! Every call names its target node in the [`TARGET_HEADER`] header; a node refuses an RPC
//! meant for another id (409), so a wrong address never feeds one node's log into another.
//!
//! A peer is dialled at the URL in this node's own configuration (`peers[].url`) when it has
//! one, not at the address replicated in the membership: each node has its own view of the
//! links, so a deployment (or a drill) can route one direction of one link through a proxy.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
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

use crate::{NodeId, TypeConfig};

/// Header naming the node id a Raft RPC is meant for.
pub const TARGET_HEADER: &str = "x-failover-target";

/// Creates per-peer RPC clients sharing one HTTP connection pool.
#[derive(Clone)]
pub struct Network {
    client: reqwest::Client,
    cluster_token: String,
    peer_urls: Arc<HashMap<NodeId, String>>,
}

impl Network {
    /// A factory using `client`, sending `cluster_token` as the bearer token, and dialling
    /// each peer at its URL in `peer_urls` (this node's config), or else at its membership
    /// address.
    pub fn new(
        client: reqwest::Client,
        cluster_token: String,
        peer_urls: HashMap<NodeId, String>,
    ) -> Self {
        Self {
            client,
            cluster_token,
            peer_urls: Arc::new(peer_urls),
        }
    }
}

/// RPC client for one peer.
pub struct PeerClient {
    client: reqwest::Client,
    cluster_token: String,
    target: NodeId,
    url: String,
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
        }
    }
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
        let ttl = option.hard_ttl().max(Duration::from_millis(50));
        let res = self
            .client
            .post(format!("{}/raft/{path}", self.url))
            .bearer_auth(&self.cluster_token)
            .header(TARGET_HEADER, self.target.to_string())
            .timeout(ttl)
            .json(req)
            .send()
            .await;
        let res = match res {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        if !res.status().is_success() {
            let status = res.status();
            let text = res.text().await.unwrap_or_default();
            let e =
                std::io::Error::other(format!("peer {} answered {status}: {text}", self.target));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let body: Result<Resp, E> = res
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        body.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, &option).await
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
