//! The coordinator's wire contract, API version `v1`: every type an agent, an operator, a
//! drill or another coordinator's operator API sees, and the one client that speaks it.
//!
//! - [`agent`]: register, record batches and verdicts, authority, heartbeats, agent imports;
//! - [`operator`]: handovers, audit, finality, policy, status, membership;
//! - [`error`]: the error body and its typed [`ErrorCode`];
//! - [`client`]: [`CoordinatorClient`], with explicit retry rules and coordinator failover.
//!
//! Depends on `failover-common` only (no openraft, no RocksDB), so `failoverctl` and the
//! independent checker build without the coordinator. Everything is re-exported at the crate
//! root.
//!
//! Invariants: JSON field and variant names are the wire format; renaming one is a breaking
//! change of `v1`. Request bodies refuse unknown fields; answers may gain fields.

#![deny(missing_docs)]

pub mod agent;
pub mod client;
pub mod error;
pub mod operator;

pub use agent::*;
pub use client::{describe, node_status, BatchOutcome, CallError, CoordinatorClient, Retry};

/// Response header on every coordinator API answer: the id of the node that answered
/// (decimal Raft node id, ≥ 1).
pub const NODE_HEADER: &str = "x-failover-node";
/// Response header: the Raft leader's node id as the answering node sees it (absent while it
/// knows no leader). Clients use it to send the next request to the leader directly instead
/// of through a forwarding follower.
pub const LEADER_HEADER: &str = "x-failover-leader";
/// Response header: the leader's API base URL from the answering node's `[[peers]]` (absent
/// when the leader is the answering node, or is not in its config).
pub const LEADER_URL_HEADER: &str = "x-failover-leader-url";
pub use error::{ApiErrorBody, ErrorCode};
pub use operator::*;
/// HTTP method of a [`CoordinatorClient::call`] (re-exported from `reqwest`).
pub use reqwest::Method;
