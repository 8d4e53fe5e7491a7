//! Who answers at a coordinator URL: `GET /internal/v1/identity`, served without any secret,
//! and the proof that the answering node belongs to this cluster: over TLS its certificate
//! (from the cluster CA, naming the node id it claims); in plaintext a challenge-response
//! over the cluster token.
//!
//! Invariants:
//! - nothing secret is ever sent to a URL before it proved its identity: the request carries
//!   only a fresh random challenge, the answer an HMAC over the node id and that challenge
//!   (plaintext), or the TLS handshake proves the certificate before any request is sent;
//! - a proof for one node id never answers for another, and an old proof never answers a new
//!   challenge.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::NodeId;

/// `GET /internal/v1/identity[?challenge=HEX]`: who answers at a URL. Served without any
/// secret, so that a node can be asked before anything secret is sent to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The answering node's Raft id (its config's `node_id`).
    pub node_id: NodeId,
    /// Whether its store holds a cluster (it was initialised or has received a membership).
    pub initialized: bool,
    /// Its region (from its own config).
    pub region: String,
    /// When the request carried a `challenge`: [`identity_proof`] of this node for it, hex.
    /// Proves that the node holds this cluster's token without revealing the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

/// The proof a node gives of holding the cluster token: HMAC-SHA256 keyed with the token over
/// `"failover-coordinator identity v1\n{node_id}\n{challenge}"`, as 64 hex digits. Binding the
/// node id keeps a proof for one node from answering for another; a fresh random challenge
/// per probe keeps an old proof from being replayed.
pub fn identity_proof(cluster_token: &str, node_id: NodeId, challenge: &str) -> String {
    hex::encode(
        identity_mac(cluster_token, node_id, challenge)
            .finalize()
            .into_bytes(),
    )
}

fn identity_mac(cluster_token: &str, node_id: NodeId, challenge: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(cluster_token.trim().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("failover-coordinator identity v1\n{node_id}\n{challenge}").as_bytes());
    mac
}

/// Asks the coordinator at `url` who it is, within `timeout`, sending no secret, and checks
/// the answer. Over TLS (`cluster_token` is `None`; `http` checks servers against the cluster
/// CA) the answering certificate must name the node id the answer claims. In plaintext the
/// request carries a fresh random challenge, and the answer must carry [`identity_proof`] for
/// the node id it claims, checked in constant time against `cluster_token`.
///
/// Errors: a one-line description when the node is unreachable (over TLS: also when its
/// certificate is not from the cluster CA), answers non-2xx, answers something unreadable,
/// or cannot prove the node id it claims (a listener that is not a coordinator of this
/// cluster: nothing secret was sent to it).
pub async fn probe_identity(
    http: &reqwest::Client,
    cluster_token: Option<&str>,
    url: &str,
    timeout: Duration,
) -> Result<NodeIdentity, String> {
    let Some(cluster_token) = cluster_token else {
        let (ident, cert) = ask(http, url, None, timeout).await?;
        let want = failover_common::tls::Identity::Node(ident.node_id);
        return match cert {
            Some(c) if c == want => Ok(ident),
            other => Err(format!(
                "answers as node {} but its certificate names {}; nothing secret was sent to it",
                ident.node_id,
                other.map_or_else(|| "no coordinator".to_string(), |i| i.to_string())
            )),
        };
    };
    let challenge = hex::encode(rand::random::<[u8; 32]>());
    let ident = ask_identity(http, url, Some(&challenge), timeout).await?;
    let proof = ident
        .proof
        .as_deref()
        .and_then(|p| hex::decode(p).ok())
        .ok_or_else(|| {
            format!(
                "answers as node {} but gives no proof of holding this cluster's token (not a \
                 coordinator of this cluster, or an older version); nothing secret was sent to it",
                ident.node_id
            )
        })?;
    identity_mac(cluster_token, ident.node_id, &challenge)
        .verify_slice(&proof)
        .map_err(|_| {
            format!(
                "answers as node {} but its proof does not match this cluster's token (another \
                 cluster, or not a coordinator); nothing secret was sent to it",
                ident.node_id
            )
        })?;
    Ok(ident)
}

/// Asks the coordinator at `url` who it claims to be, sending no secret and checking no
/// proof (only for decisions where a false claim errs on the safe side, like not founding a
/// cluster). `challenge`, when given, is passed on.
///
/// Errors: unreachable, non-2xx, or unreadable answers, as one line.
pub async fn ask_identity(
    http: &reqwest::Client,
    url: &str,
    challenge: Option<&str>,
    timeout: Duration,
) -> Result<NodeIdentity, String> {
    ask(http, url, challenge, timeout).await.map(|(i, _)| i)
}

/// [`ask_identity`], with the failover identity of the answering certificate (TLS).
async fn ask(
    http: &reqwest::Client,
    url: &str,
    challenge: Option<&str>,
    timeout: Duration,
) -> Result<(NodeIdentity, Option<failover_common::tls::Identity>), String> {
    let mut req = http
        .get(format!(
            "{}/internal/v1/identity",
            url.trim_end_matches('/')
        ))
        .timeout(timeout);
    if let Some(c) = challenge {
        req = req.query(&[("challenge", c)]);
    }
    let res = req
        .send()
        .await
        .map_err(|e| format!("unreachable: {}", failover_protocol::describe(&e)))?;
    let status = res.status();
    let cert = failover_common::tls::peer_identity(&res);
    if !status.is_success() {
        let text = res.text().await.unwrap_or_default();
        return Err(format!("answered {status}: {text}"));
    }
    let ident = res
        .json::<NodeIdentity>()
        .await
        .map_err(|e| format!("unreadable identity: {e}"))?;
    Ok((ident, cert))
}
