//! The failover coordinator: an openraft node whose log and state machine live in RocksDB,
//! replicating a slashing-protection log and a signing-authority token (DESIGN.md).
//!
//! Modules, in three layers whose arrows point down only (`.ci/module-cycles` checks that no
//! two modules import each other):
//!
//! - the state machine, deterministic and free of I/O and HTTP:
//!   [`slashing`] (the pure slashing rules, I3), [`interchange`] (EIP-3076 format and merge),
//!   [`state`] (the replicated state and the handover flow, I1, I2, I5; refusals are a typed
//!   [`state::Rejection`]), [`chain_clock`] (the far-future bound);
//! - [`config`]: the strict TOML configuration (it builds the [`state::HandoverPolicy`] a
//!   proposing node carries);
//! - Raft and the node: [`store`] (RocksDB log and state-machine storage, I6), [`network`]
//!   (Raft RPC over HTTP), [`identity`] (who answers at a URL), [`access`] (the bearer-token
//!   table), [`guard`] (the authentication-failure budget), [`join`], [`metrics`], [`node`]
//!   (a running node: Raft, writes with leader forwarding, finality polling), [`membership`]
//!   (replacing a coordinator node), [`backup`] (online backup and safe restore);
//! - the API: [`http`] (router, authentication, handlers; the only place an HTTP status is
//!   chosen, from the protocol's `ErrorCode`, and the one helper that forwards a request to
//!   the leader).
//!
//! The wire types are not here: they are the `failover-protocol` crate, shared with the agent,
//! `failoverctl` and the drills.

#![deny(missing_docs)]

use std::io::Cursor;

pub mod access;
pub mod backup;
pub mod chain_clock;
pub mod codec;
pub mod config;
pub mod guard;
pub mod http;
pub mod identity;
pub mod interchange;
pub mod join;
pub mod liveness;
pub mod membership;
pub mod metrics;
pub mod network;
pub mod node;
pub mod slashing;
pub mod state;
pub mod store;

/// Raft node id (the protocol's [`failover_protocol::NodeId`]).
pub use failover_protocol::NodeId;

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
