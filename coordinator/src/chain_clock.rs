//! The chain's wall-clock slot as this coordinator knows it, and the far-future bound that
//! keeps one message from bricking a validator (DESIGN.md "Trust boundaries and hostile
//! input").
//!
//! A record or an EIP-3076 import entry whose epoch lies far ahead of the chain would be
//! accepted by the slashing rules, and from then on every ordinary message of that validator
//! would be a surrounded vote or below the target watermark: the validator could never sign
//! again, and every handover's `required_epoch` would wait for an epoch that never finalizes.
//! So the API edge refuses anything more than `limits.max_future_epochs` ahead of the chain.
//!
//! Where "now" comes from:
//! - `genesis_time` (seconds) and `SECONDS_PER_SLOT` (a decimal number of seconds, such as
//!   `12` or the lab's `0.5`) are learned once from any configured beacon node whose
//!   genesis validators root is the cluster's (`GET /eth/v1/beacon/genesis`,
//!   `GET /eth/v1/config/spec`); from then on this machine's clock gives the wall-clock slot
//!   (consensus specs `compute_slot_at_timestamp`);
//! - every poll also asks `GET /eth/v1/node/syncing` and keeps the largest `head_slot +
//!   sync_distance` seen, so a coordinator whose clock runs slow still accepts what the chain
//!   has reached.
//!
//! Invariants:
//! - the bound is an edge check only: apply never reads a clock (DESIGN.md), so the same
//!   committed entry gets the same verdict on every replica whatever their clocks say;
//! - without any beacon node configured, or before the first answer, the clock is unknown and
//!   the bound is not applied; the log says so once and `failover_chain_clock_known` is 0, so
//!   an operator can see that only the agents' own bound is in force;
//! - no arithmetic here can overflow: slots and epochs saturate.

#![deny(clippy::arithmetic_side_effects)]

use std::sync::{Arc, RwLock};
use std::time::Duration;

use failover_common::beacon::BeaconClient;
use failover_common::chain_time::{check_future, now_ms, parse_seconds_per_slot};
pub use failover_common::chain_time::{ChainTiming, FutureEpoch};

#[derive(Debug, Default)]
struct Known {
    timing: Option<ChainTiming>,
    head_slot: Option<u64>,
}

/// What one beacon node on this cluster's chain says about the chain's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Genesis time and slot length, when the node serves `SECONDS_PER_SLOT` in its spec.
    pub timing: Option<ChainTiming>,
    /// `head_slot + sync_distance` from `/eth/v1/node/syncing` (slots), or why it is unknown.
    pub head: Result<u64, String>,
}

impl NodeView {
    /// The chain's slot by this node at Unix time `now_ms`: the larger of its head and the
    /// wall-clock slot from its timing; `None` when it gave neither.
    pub fn slot_at(&self, now_ms: u64) -> Option<u64> {
        let wall = self.timing.map(|t| t.slot_at(now_ms));
        match (self.head.as_ref().ok().copied(), wall) {
            (Some(h), Some(w)) => Some(h.max(w)),
            (h, w) => h.or(w),
        }
    }
}

/// Asks the beacon node at `url` for its genesis, sync status and spec at once (each bounded
/// by `client`'s timeout).
///
/// Errors: the genesis query failed, or the node follows another chain (genesis validators
/// root); each message names the node.
pub async fn observe_node(client: &BeaconClient, url: &str) -> Result<NodeView, String> {
    let (genesis, syncing, spec) =
        tokio::join!(client.genesis(url), client.syncing(url), client.spec(url));
    let genesis = genesis.map_err(|e| format!("{url}: genesis: {e}"))?;
    if genesis.genesis_validators_root != client.expected_genesis_validators_root() {
        return Err(format!(
            "{url}: another chain (genesis validators root {})",
            genesis.genesis_validators_root
        ));
    }
    let timing = spec
        .ok()
        .and_then(|s| s.get_str("SECONDS_PER_SLOT").ok().map(str::to_owned))
        .and_then(|s| parse_seconds_per_slot(&s).ok())
        .map(|slot_ms| ChainTiming {
            genesis_ms: genesis.genesis_time.saturating_mul(1000),
            slot_ms,
        });
    let head = syncing
        .map(|s| s.head_slot.saturating_add(s.sync_distance))
        .map_err(|e| format!("{url}: syncing: {e}"));
    Ok(NodeView { timing, head })
}

/// This node's view of the chain's current slot; cheap to clone and to read.
#[derive(Debug, Clone, Default)]
pub struct ChainClock {
    inner: Arc<RwLock<Known>>,
}

impl ChainClock {
    /// A clock that already knows `timing` (tests, and nodes told the timing in advance).
    pub fn with_timing(timing: ChainTiming) -> Self {
        let c = Self::default();
        c.inner.write().expect("chain clock lock").timing = Some(timing);
        c
    }

    /// The chain's current slot (slots): the larger of the wall-clock slot and the largest
    /// head a beacon node reported; `None` while neither is known.
    pub fn current_slot(&self) -> Option<u64> {
        let k = self.inner.read().expect("chain clock lock");
        let wall = k.timing.map(|t| t.slot_at(now_ms()));
        match (wall, k.head_slot) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The chain's current epoch (epochs) for `slots_per_epoch`, `None` while unknown.
    pub fn current_epoch(&self, slots_per_epoch: u64) -> Option<u64> {
        self.current_slot()
            .map(|s| failover_common::chain_time::epoch_of_slot(s, slots_per_epoch))
    }

    /// True once the chain's slot is known.
    pub fn is_known(&self) -> bool {
        self.current_slot().is_some()
    }

    /// Checks that `epoch` (epochs) is at most `margin` epochs ahead of the current epoch.
    /// Passes while the clock is unknown (module docs).
    ///
    /// Errors: [`FutureEpoch`] naming the epoch, the current epoch and the margin.
    pub fn check_epoch(
        &self,
        epoch: u64,
        margin: u64,
        slots_per_epoch: u64,
    ) -> Result<(), FutureEpoch> {
        match self.current_epoch(slots_per_epoch) {
            Some(current) => check_future(epoch, current, margin),
            None => Ok(()),
        }
    }

    fn learn(&self, timing: Option<ChainTiming>, head_slot: Option<u64>) {
        let mut k = self.inner.write().expect("chain clock lock");
        if k.timing.is_none() {
            k.timing = timing;
        }
        if let Some(h) = head_slot {
            k.head_slot = Some(k.head_slot.map_or(h, |old| old.max(h)));
        }
    }

    /// Asks every beacon node of `client` once (concurrently, each bounded by the client's
    /// timeout) and learns what they answer ([`observe_node`]). Nodes on another chain are
    /// ignored. Returns the problems seen, one per node that could not be used.
    pub async fn poll_once(&self, client: &BeaconClient) -> Vec<String> {
        let asks = client.urls().iter().map(|url| observe_node(client, url));
        let mut problems = Vec::new();
        for r in futures::future::join_all(asks).await {
            match r {
                Ok(view) => self.learn(view.timing, view.head.ok()),
                Err(e) => problems.push(e),
            }
        }
        problems
    }

    /// Polls the beacon nodes every `interval` for as long as the process runs, logging once
    /// when the clock becomes known and once (at WARN) while it is not.
    pub async fn run(self, client: BeaconClient, interval: Duration) {
        let mut warned = false;
        let mut announced = false;
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            let problems = self.poll_once(&client).await;
            let known = self
                .inner
                .read()
                .expect("chain clock lock")
                .timing
                .is_some();
            if known && !announced {
                announced = true;
                tracing::info!(
                    slot = self.current_slot(),
                    "chain clock known: records and imports more than limits.max_future_epochs \
                     ahead are refused"
                );
            } else if !known && !warned {
                warned = true;
                tracing::warn!(
                    problems = %problems.join("; "),
                    "chain clock unknown (no beacon node answered genesis and spec yet): the \
                     far-future bound is not applied until one does"
                );
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_refuses_only_what_lies_beyond_the_margin() {
        let c = ChainClock::default();
        // unknown: nothing refused
        assert!(c.check_epoch(u64::MAX, 2, 32).is_ok());
        let genesis_ms = now_ms().saturating_sub(100 * 32 * 12_000);
        let c = ChainClock::with_timing(ChainTiming {
            genesis_ms,
            slot_ms: 12_000,
        });
        let now = c.current_epoch(32).unwrap();
        assert!((100..=101).contains(&now), "{now}");
        assert!(c.check_epoch(now + 2, 2, 32).is_ok());
        let err = c.check_epoch(now + 3, 2, 32).unwrap_err();
        assert_eq!((err.epoch, err.margin), (now + 3, 2));
        assert!(c.check_epoch(u64::MAX, u64::MAX, 32).is_ok());
        assert!(c.check_epoch(u64::MAX, 2, 32).is_err());
    }

    #[test]
    fn a_reported_head_ahead_of_the_wall_clock_counts() {
        let c = ChainClock::default();
        c.learn(None, Some(320));
        assert_eq!(c.current_epoch(32), Some(10));
        c.learn(None, Some(64));
        assert_eq!(c.current_epoch(32), Some(10), "the head never moves back");
    }
}
