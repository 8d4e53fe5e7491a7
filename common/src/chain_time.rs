//! The chain's wall clock: which slot and epoch it is now (consensus specs
//! `compute_slot_at_timestamp`, `compute_epoch_at_slot`), and the far-future bound built on
//! it (DESIGN.md "Trust boundaries and hostile input").
//!
//! A slashable message far ahead of the chain is harmless to sign in itself, but once
//! recorded it makes every ordinary message of that validator a surrounded vote or a target
//! below the watermark until the chain reaches it: one request can stop a validator for
//! years. So both the signer agent and the coordinator refuse slashable messages more than a
//! configured number of epochs ahead of the wall-clock epoch ([`check_future`]).
//!
//! Invariants: no input overflows (slots and epochs saturate); before genesis the slot is 0.

#![deny(clippy::arithmetic_side_effects)]

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::eth::Network;

/// An epoch number (consensus specs `Epoch`, a `uint64`). Arithmetic exists only as checked
/// or saturating methods, so no epoch overflows silently (STYLE.md 14); there is no `+`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

/// A slot number (consensus specs `Slot`, a `uint64`), with the same arithmetic rules as
/// [`Epoch`].
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Slot(pub u64);

impl Epoch {
    /// The epoch `n` later, or `None` past `u64::MAX`.
    pub fn checked_add(self, n: u64) -> Option<Epoch> {
        self.0.checked_add(n).map(Epoch)
    }

    /// The epoch `n` later, `u64::MAX` at most.
    pub fn saturating_add(self, n: u64) -> Epoch {
        Epoch(self.0.saturating_add(n))
    }

    /// The epoch `n` earlier, 0 at least.
    pub fn saturating_sub(self, n: u64) -> Epoch {
        Epoch(self.0.saturating_sub(n))
    }

    /// The first slot of this epoch, `epoch × slots_per_epoch` (saturating; 0 slots per epoch
    /// treated as 1).
    pub fn first_slot(self, slots_per_epoch: u64) -> Slot {
        Slot(self.0.saturating_mul(slots_per_epoch.max(1)))
    }

    /// The last slot of this epoch, `(epoch + 1) × slots_per_epoch − 1` (saturating).
    pub fn last_slot(self, slots_per_epoch: u64) -> Slot {
        Slot(
            self.0
                .saturating_add(1)
                .saturating_mul(slots_per_epoch.max(1))
                .saturating_sub(1),
        )
    }
}

impl Slot {
    /// The slot `n` later, or `None` past `u64::MAX`.
    pub fn checked_add(self, n: u64) -> Option<Slot> {
        self.0.checked_add(n).map(Slot)
    }

    /// The slot `n` later, `u64::MAX` at most.
    pub fn saturating_add(self, n: u64) -> Slot {
        Slot(self.0.saturating_add(n))
    }

    /// The epoch of this slot (`compute_epoch_at_slot`; 0 slots per epoch treated as 1).
    pub fn epoch(self, slots_per_epoch: u64) -> Epoch {
        Epoch(epoch_of_slot(self.0, slots_per_epoch))
    }
}

impl From<u64> for Epoch {
    fn from(e: u64) -> Self {
        Epoch(e)
    }
}

impl From<u64> for Slot {
    fn from(s: u64) -> Self {
        Slot(s)
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Genesis time and slot length of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainTiming {
    /// Unix time of genesis (milliseconds).
    pub genesis_ms: u64,
    /// `SECONDS_PER_SLOT` in milliseconds (≥ 1).
    pub slot_ms: u64,
}

impl ChainTiming {
    /// The timing of a named network: its beacon chain `genesis_time` (the value
    /// `GET /eth/v1/beacon/genesis` serves) and 12-second slots. Mainnet 1606824023, Sepolia
    /// 1655733600, Holesky 1695902400, Hoodi 1742213400 (from each network's
    /// `eth-clients/<network>` metadata, the same commits as [`crate::eth::ChainSpec`]).
    pub const fn of_network(network: Network) -> Self {
        let genesis_time: u64 = match network {
            Network::Mainnet => 1_606_824_023,
            Network::Sepolia => 1_655_733_600,
            Network::Holesky => 1_695_902_400,
            Network::Hoodi => 1_742_213_400,
        };
        Self {
            genesis_ms: genesis_time.saturating_mul(1000),
            slot_ms: 12_000,
        }
    }

    /// The wall-clock slot at Unix time `now_ms` (milliseconds): 0 before genesis, else
    /// `(now − genesis) / slot length`.
    pub fn slot_at(&self, now_ms: u64) -> u64 {
        now_ms
            .saturating_sub(self.genesis_ms)
            .checked_div(self.slot_ms.max(1))
            .unwrap_or(0)
    }

    /// The wall-clock epoch at `now_ms` for `slots_per_epoch` (0 treated as 1).
    pub fn epoch_at(&self, now_ms: u64, slots_per_epoch: u64) -> u64 {
        epoch_of_slot(self.slot_at(now_ms), slots_per_epoch)
    }
}

/// `compute_epoch_at_slot`: `slot / slots_per_epoch` (epochs), a `slots_per_epoch` of 0
/// treated as 1 so that no input divides by zero.
pub fn epoch_of_slot(slot: u64, slots_per_epoch: u64) -> u64 {
    slot.checked_div(slots_per_epoch.max(1)).unwrap_or(slot)
}

/// Milliseconds since the Unix epoch on this machine's clock (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Parses `SECONDS_PER_SLOT` as the Beacon API serves it (`"12"`, or `"0.5"` on fast
/// devnets) into whole milliseconds.
///
/// Errors: anything but digits with at most one `.` and at most three decimals, or zero.
pub fn parse_seconds_per_slot(s: &str) -> Result<u64, String> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 3 {
        return Err(format!(
            "SECONDS_PER_SLOT {s:?} is not a decimal number of seconds"
        ));
    }
    let whole: u64 = whole
        .parse()
        .map_err(|_| format!("SECONDS_PER_SLOT {s:?} is too large"))?;
    let frac_ms: u64 = format!("{frac:0<3}").parse().unwrap_or(0);
    let ms = whole
        .checked_mul(1000)
        .and_then(|w| w.checked_add(frac_ms))
        .ok_or_else(|| format!("SECONDS_PER_SLOT {s:?} is too large"))?;
    if ms == 0 {
        return Err("SECONDS_PER_SLOT must be positive".into());
    }
    Ok(ms)
}

/// A slashable message too far ahead of the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "epoch {epoch} is more than {margin} epoch(s) ahead of the chain's current epoch \
     {current}: refused so that one message cannot block this validator until then"
)]
pub struct FutureEpoch {
    /// The epoch asked for (epochs).
    pub epoch: u64,
    /// The chain's current epoch (epochs).
    pub current: u64,
    /// The allowed margin (epochs).
    pub margin: u64,
}

/// Checks that `epoch` (epochs) is at most `margin` epochs ahead of `current` (epochs).
///
/// Errors: [`FutureEpoch`].
pub fn check_future(epoch: u64, current: u64, margin: u64) -> Result<(), FutureEpoch> {
    if epoch > current.saturating_add(margin) {
        Err(FutureEpoch {
            epoch,
            current,
            margin,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn seconds_per_slot_parses_whole_and_fractional_seconds() {
        assert_eq!(parse_seconds_per_slot("12"), Ok(12_000));
        assert_eq!(parse_seconds_per_slot("0.5"), Ok(500));
        assert_eq!(parse_seconds_per_slot("0.25"), Ok(250));
        for bad in [
            "",
            "0",
            "0.0",
            "-1",
            "1.2345",
            "1e3",
            "12s",
            "18446744073709551615",
        ] {
            assert!(
                parse_seconds_per_slot(bad).is_err(),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn slot_at_saturates_before_genesis_and_at_the_end_of_time() {
        let t = ChainTiming {
            genesis_ms: 1_000_000,
            slot_ms: 12_000,
        };
        assert_eq!(t.slot_at(0), 0);
        assert_eq!(t.slot_at(1_000_000 + 24_000), 2);
        assert_eq!(t.slot_at(u64::MAX), (u64::MAX - 1_000_000) / 12_000);
        assert_eq!(epoch_of_slot(u64::MAX, 0), u64::MAX);
    }

    #[test]
    fn mainnet_epoch_one_starts_six_minutes_twenty_four_after_genesis() {
        let t = ChainTiming::of_network(Network::Mainnet);
        let genesis = 1_606_824_023_000;
        assert_eq!(t.epoch_at(genesis + 32 * 12_000 - 1, 32), 0);
        assert_eq!(t.epoch_at(genesis + 32 * 12_000, 32), 1);
    }

    #[test]
    fn epoch_and_slot_arithmetic_saturates_or_says_so() {
        assert_eq!(Epoch(u64::MAX).checked_add(1), None);
        assert_eq!(Epoch(u64::MAX).saturating_add(1), Epoch(u64::MAX));
        assert_eq!(Epoch(0).saturating_sub(1), Epoch(0));
        assert_eq!(Epoch(10).last_slot(32), Slot(351));
        assert_eq!(Epoch(u64::MAX).last_slot(32), Slot(u64::MAX - 1));
        assert_eq!(Epoch(u64::MAX).first_slot(32), Slot(u64::MAX));
        assert_eq!(Slot(351).epoch(32), Epoch(10));
        assert_eq!(Slot(u64::MAX).checked_add(1), None);
        assert_eq!(serde_json::to_string(&Epoch(7)).unwrap(), "7");
    }

    #[test]
    fn the_bound_refuses_only_what_lies_beyond_the_margin() {
        assert!(check_future(12, 10, 2).is_ok());
        assert_eq!(
            check_future(13, 10, 2),
            Err(FutureEpoch {
                epoch: 13,
                current: 10,
                margin: 2
            })
        );
        assert!(check_future(u64::MAX, u64::MAX, 2).is_ok());
        assert!(check_future(u64::MAX, 10, u64::MAX).is_ok());
        assert!(check_future(u64::MAX, 10, 2).is_err());
    }
}
