//! The `state_id` and `block_id` path parameters of the Beacon API, parsed and printed.

use std::fmt;
use std::str::FromStr;

use crate::types::Root;

/// Error parsing a `state_id` or `block_id` path parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not one of the forms the spec allows; the message follows the spec's 400 example.
    #[error("Invalid state ID: {0}")]
    InvalidState(String),
    /// Not one of the forms the spec allows; the message follows the spec's 400 example.
    #[error("Invalid block ID: {0}")]
    InvalidBlock(String),
}

/// The `state_id` path parameter: `head`, `genesis`, `finalized`, `justified`, a decimal slot,
/// or a `0x` state root (Beacon API `StateId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateId {
    /// The canonical head in the node's view.
    Head,
    /// The genesis state.
    Genesis,
    /// The state at the finalized checkpoint.
    Finalized,
    /// The state at the current justified checkpoint.
    Justified,
    /// The state at a slot (slots).
    Slot(u64),
    /// The state with this state root.
    Root(Root),
}

impl FromStr for StateId {
    type Err = IdError;

    /// Errors: [`IdError::InvalidState`] for anything else (e.g. `current`, `-1`, `0x12`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "head" => Ok(Self::Head),
            "genesis" => Ok(Self::Genesis),
            "finalized" => Ok(Self::Finalized),
            "justified" => Ok(Self::Justified),
            _ => parse_slot_or_root(s)
                .map(|id| match id {
                    SlotOrRoot::Slot(n) => Self::Slot(n),
                    SlotOrRoot::Root(r) => Self::Root(r),
                })
                .ok_or_else(|| IdError::InvalidState(s.to_string())),
        }
    }
}

impl fmt::Display for StateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Head => f.write_str("head"),
            Self::Genesis => f.write_str("genesis"),
            Self::Finalized => f.write_str("finalized"),
            Self::Justified => f.write_str("justified"),
            Self::Slot(n) => write!(f, "{n}"),
            Self::Root(r) => write!(f, "{r}"),
        }
    }
}

/// The `block_id` path parameter: `head`, `genesis`, `finalized`, a decimal slot, or a `0x`
/// block root (Beacon API `BlockId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockId {
    /// The canonical head in the node's view.
    Head,
    /// The genesis block.
    Genesis,
    /// The block at the finalized checkpoint.
    Finalized,
    /// The canonical block at a slot (slots).
    Slot(u64),
    /// The block with this root.
    Root(Root),
}

impl FromStr for BlockId {
    type Err = IdError;

    /// Errors: [`IdError::InvalidBlock`] for anything else (e.g. `current`, `justified`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "head" => Ok(Self::Head),
            "genesis" => Ok(Self::Genesis),
            "finalized" => Ok(Self::Finalized),
            _ => parse_slot_or_root(s)
                .map(|id| match id {
                    SlotOrRoot::Slot(n) => Self::Slot(n),
                    SlotOrRoot::Root(r) => Self::Root(r),
                })
                .ok_or_else(|| IdError::InvalidBlock(s.to_string())),
        }
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Head => f.write_str("head"),
            Self::Genesis => f.write_str("genesis"),
            Self::Finalized => f.write_str("finalized"),
            Self::Slot(n) => write!(f, "{n}"),
            Self::Root(r) => write!(f, "{r}"),
        }
    }
}

enum SlotOrRoot {
    Slot(u64),
    Root(Root),
}

fn parse_slot_or_root(s: &str) -> Option<SlotOrRoot> {
    if s.starts_with("0x") {
        return s.parse().ok().map(SlotOrRoot::Root);
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().map(SlotOrRoot::Slot)
}
