//! Shared library of the failover coordinator and signer agent.
//!
//! - [`types`]: fixed-size byte types with `0x`-hex encoding.
//! - [`eth`]: consensus-spec containers, domains and signing roots for Web3Signer requests.
//! - [`keystore`]: EIP-2335 keystores.
//! - [`interop`]: the standard interop (mock-start) validator keys.
//! - [`beacon`]: a Beacon API client for finality, syncing and genesis.
//! - [`serve`]: serving a router with the listener limits, plain or TLS.
//! - [`tls`]: TLS and mutual TLS material, certificate identities, a small CA.

#![deny(missing_docs)]

pub mod beacon;
pub mod chain_time;
pub mod eth;
pub mod interop;
pub mod keystore;
pub mod secret_file;
pub mod serve;
pub mod tls;
pub mod types;
pub mod vectors;
