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
pub use error::{ApiErrorBody, ErrorCode};
pub use operator::*;
/// HTTP method of a [`CoordinatorClient::call`] (re-exported from `reqwest`).
pub use reqwest::Method;
