//! The failover coordinator: an openraft node whose log and state machine live in RocksDB,
//! replicating a slashing-protection log and a signing-authority token (DESIGN.md).
//!
//! Modules:
//! - [`slashing`]: the pure slashing rules (I3);
//! - [`state`]: the replicated state machine and the handover flow (I1, I2, I5);
//! - [`store`]: RocksDB log and state-machine storage (I6);
//! - [`network`]: Raft RPC over HTTP;
//! - [`node`]: a running node: Raft, writes with leader forwarding, finality polling;
//! - [`membership`]: Raft membership changes (replacing a coordinator node);
//! - [`http`]: the agent, operator and Raft HTTP API;
//! - [`config`]: the strict TOML configuration;
//! - [`access`]: the bearer-token table, reloadable on SIGHUP;
//! - [`backup`]: online backup and safe restore into a new cluster (restore floor);
//! - [`metrics`]: Prometheus metrics.

#![deny(missing_docs)]

use std::io::Cursor;

pub mod access;
pub mod backup;
pub mod chain_clock;
pub mod config;
pub mod guard;
pub mod http;
pub mod interchange;
pub mod join;
pub mod membership;
pub mod metrics;
pub mod network;
pub mod node;
pub mod slashing;
pub mod state;
pub mod store;

/// Raft node id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft type configuration of the coordinator.
    pub TypeConfig:
        D = state::Command,
        R = state::Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle type of the coordinator.
pub type Raft = openraft::Raft<TypeConfig>;
