//! Drills and lab tooling for the failover coordinator: the beacon-node simulator that stands
//! in for real beacon nodes in a local lab and in tests.
//!
//! - [`beacon_sim`]: a Beacon API server with a controllable chain (finality stalls, syncing,
//!   optimistic mode) driven by an injectable clock.
//! - [`lab`]: the local multi-region lab (real processes), the duty simulator, the drill
//!   summary with its independent checks, and the signing benchmark.

#![deny(missing_docs)]

pub mod beacon_sim;
pub mod lab;
