//! The restore floor: the chain's wall-clock head as the beacon nodes report it, the highest
//! epoch a backup records, and the floor epoch chosen from both (the safety argument is in the
//! module docs of `backup`).
//!
//! Invariant: the floor is never below the highest recorded epoch nor below the observed head.

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::slashing::RestoreFloor;
use crate::state::StateData;
use failover_common::chain_time::now_ms;

/// The chain's current position as the configured beacon nodes report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Highest wall-clock slot reported (slots).
    pub slot: u64,
    /// `slot / SLOTS_PER_EPOCH` (epochs).
    pub epoch: u64,
    /// Beacon nodes that answered, with the slot each reported.
    pub nodes: Vec<(String, u64)>,
}

/// Asks every configured beacon node (bounded by `beacon.timeout_ms` each, concurrently) for
/// the chain's wall-clock slot: `head_slot + sync_distance` from `/eth/v1/node/syncing`, or the
/// slot from `genesis_time` and the node's `SECONDS_PER_SLOT` and this machine's clock when
/// larger. Nodes on another chain (genesis validators root) are ignored. Taking the maximum
/// is conservative: a higher floor only delays signing.
///
/// Errors: no beacon URL configured, or no node on this chain answered (each node's reason).
pub async fn observe_chain_head(config: &Config) -> Result<ChainHead, String> {
    if config.beacon.urls.is_empty() {
        return Err("no beacon nodes are configured ([beacon] urls)".into());
    }
    let spe = config.chain.slots_per_epoch.max(1);
    let client = config.beacon_client().map_err(|e| e.to_string())?;
    let asks = config.beacon.urls.iter().map(|url| {
        let client = client.clone();
        async move {
            let view = crate::chain_clock::observe_node(&client, url).await?;
            // The head is required: a node that cannot say how far it is does not count.
            view.head.clone()?;
            let slot = view.slot_at(now_ms()).unwrap_or(0);
            Ok::<_, String>((url.clone(), slot))
        }
    });
    let mut nodes = Vec::new();
    let mut errors = Vec::new();
    for r in futures::future::join_all(asks).await {
        match r {
            Ok(n) => nodes.push(n),
            Err(e) => errors.push(e),
        }
    }
    let Some(slot) = nodes.iter().map(|(_, s)| *s).max() else {
        return Err(format!(
            "no beacon node on this chain answered: {}",
            errors.join("; ")
        ));
    };
    Ok(ChainHead {
        slot,
        epoch: slot / spe,
        nodes,
    })
}

/// The highest epoch anything in `state` refers to: every validator's records and
/// watermarks, every agent's largest recorded slot and target, the agreed finality and an
/// earlier restore floor (epochs; 0 for an empty state).
pub fn max_recorded_epoch(state: &StateData, slots_per_epoch: u64) -> u64 {
    let validators = state
        .validators
        .values()
        .filter_map(|h| h.max_epoch(slots_per_epoch))
        .max()
        .map(|e| e.0);
    let agents = state
        .agents
        .values()
        .map(|a| a.max_epoch(slots_per_epoch))
        .max();
    [
        validators,
        agents,
        state.finality.as_ref().map(|f| f.checkpoint.epoch),
        state.restore_floor().map(|f| f.epoch.0),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0)
}

/// Chooses the restore floor epoch (module docs) from an operator's `--floor-epoch`
/// (`given`), the chain head the beacon nodes reported (`head`), `margin_epochs` and the
/// backup's [`max_recorded_epoch`] (`recorded`). Returns the floor and a sentence saying
/// where it came from (for the audit entry).
///
/// Errors: `given` is below `head.epoch` (unsafe), or there is neither a `given` floor nor a
/// head.
pub fn choose_floor(
    given: Option<u64>,
    head: &Result<ChainHead, String>,
    margin_epochs: u64,
    recorded: u64,
    slots_per_epoch: u64,
) -> Result<(RestoreFloor, String), String> {
    let (epoch, mut source) = match (given, head) {
        (Some(e), Ok(h)) if e < h.epoch => {
            return Err(format!(
                "--floor-epoch {e} is below the chain's current epoch {} (beacon nodes: {}); \
                 a floor below the head would let new signatures conflict with messages the \
                 old agents signed after the backup. Pass --floor-epoch {} or more",
                h.epoch,
                h.nodes
                    .iter()
                    .map(|(u, s)| format!("{u} at slot {s}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                h.epoch
            ))
        }
        (Some(e), Ok(h)) => (
            e,
            format!(
                "--floor-epoch {e} (beacon wall-clock epoch {}, slot {})",
                h.epoch, h.slot
            ),
        ),
        (Some(e), Err(why)) => (
            e,
            format!("--floor-epoch {e} (beacon nodes not consulted: {why})"),
        ),
        (None, Ok(h)) => (
            h.epoch.saturating_add(margin_epochs),
            format!(
                "beacon wall-clock epoch {} (slot {}) + margin {margin_epochs}",
                h.epoch, h.slot
            ),
        ),
        (None, Err(why)) => {
            return Err(format!(
                "cannot choose a restore floor: no --floor-epoch given and {why}. Pass \
                 --floor-epoch E with E at or above the chain's current epoch"
            ))
        }
    };
    let epoch = if recorded > epoch {
        source.push_str(&format!(
            "; raised to the backup's highest recorded epoch {recorded}"
        ));
        recorded
    } else {
        epoch
    };
    Ok((RestoreFloor::at_epoch(epoch, slots_per_epoch), source))
}
