//! Network constants that a sign request does not carry: the fork versions and epochs that
//! `VOLUNTARY_EXIT` (EIP-7044) and `VALIDATOR_REGISTRATION` (builder-specs) domains need, and
//! the chain's `SLOTS_PER_EPOCH`.
//!
//! Every other Web3Signer type takes its fork version from the request's `fork_info`; these two
//! cannot, because their domains are pinned to a fork of the *network*, not to the fork at the
//! time of signing. Web3Signer reads them from its `--network` configuration (a Teku `Spec`);
//! here the caller passes a [`ChainSpec`].
//!
//! Sources of the built-in values (the consensus-spec config file of each network):
//! - mainnet: `consensus-specs/configs/mainnet.yaml` and `eth-clients/mainnet`
//!   `metadata/config.yaml` (checked against both by the `signing_root` tests);
//! - minimal: `consensus-specs/configs/minimal.yaml` (checked by the same tests);
//! - hoodi: `eth-clients/hoodi` `metadata/config.yaml` at `a5b27098`;
//! - holesky: `eth-clients/holesky` `metadata/config.yaml` at `2ceaac3b`;
//! - sepolia: `eth-clients/sepolia` `metadata/config.yaml` at `00d17b43`.
//!
//! The testnet files are not part of the conformance vectors, so only mainnet and minimal are
//! checked by tests; the testnet values are transcribed from the commits above.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{compute_domain, Domain, ForkInfo, DOMAIN_APPLICATION_BUILDER, DOMAIN_VOLUNTARY_EXIT};
use crate::types::{Root, Version};

/// `FAR_FUTURE_EPOCH` (phase0): the epoch of a fork that is not scheduled (epochs).
pub const FAR_FUTURE_EPOCH: u64 = u64::MAX;

/// The network constants a signer needs beyond a request's `fork_info`.
///
/// Build one with a named constructor ([`ChainSpec::mainnet`], [`ChainSpec::hoodi`], …), from a
/// [`Network`], or field by field for a devnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChainSpec {
    /// `CONFIG_NAME` of the network (`"mainnet"`, `"hoodi"`, …; `"custom"` for a devnet).
    pub name: &'static str,
    /// `GENESIS_FORK_VERSION`: the fork version of deposits and validator registrations.
    pub genesis_fork_version: Version,
    /// `CAPELLA_FORK_VERSION`: the fork version of every voluntary exit from Deneb on
    /// (EIP-7044).
    pub capella_fork_version: Version,
    /// `DENEB_FORK_EPOCH` (epochs): exits of this epoch or later use the Capella fork version.
    /// [`FAR_FUTURE_EPOCH`] when Deneb is not scheduled.
    pub deneb_fork_epoch: u64,
    /// `SLOTS_PER_EPOCH` (slots): the epoch of a slot-based message is `slot /
    /// slots_per_epoch` (`compute_epoch_at_slot`). A preset value (32 mainnet, 8 minimal) that
    /// some chains change (Gnosis: 16).
    pub slots_per_epoch: u64,
}

impl ChainSpec {
    /// Ethereum mainnet (`consensus-specs/configs/mainnet.yaml`).
    pub const fn mainnet() -> Self {
        Self {
            name: "mainnet",
            genesis_fork_version: Version([0x00, 0x00, 0x00, 0x00]),
            capella_fork_version: Version([0x03, 0x00, 0x00, 0x00]),
            deneb_fork_epoch: 269_568,
            slots_per_epoch: 32,
        }
    }

    /// The Hoodi testnet (`eth-clients/hoodi` `metadata/config.yaml`; Deneb from genesis).
    pub const fn hoodi() -> Self {
        Self {
            name: "hoodi",
            genesis_fork_version: Version([0x10, 0x00, 0x09, 0x10]),
            capella_fork_version: Version([0x40, 0x00, 0x09, 0x10]),
            deneb_fork_epoch: 0,
            slots_per_epoch: 32,
        }
    }

    /// The Holesky testnet (`eth-clients/holesky` `metadata/config.yaml`).
    pub const fn holesky() -> Self {
        Self {
            name: "holesky",
            genesis_fork_version: Version([0x01, 0x01, 0x70, 0x00]),
            capella_fork_version: Version([0x04, 0x01, 0x70, 0x00]),
            deneb_fork_epoch: 29_696,
            slots_per_epoch: 32,
        }
    }

    /// The Sepolia testnet (`eth-clients/sepolia` `metadata/config.yaml`).
    pub const fn sepolia() -> Self {
        Self {
            name: "sepolia",
            genesis_fork_version: Version([0x90, 0x00, 0x00, 0x69]),
            capella_fork_version: Version([0x90, 0x00, 0x00, 0x72]),
            deneb_fork_epoch: 132_608,
            slots_per_epoch: 32,
        }
    }

    /// The consensus-specs minimal config (`configs/minimal.yaml`, minimal preset): spec tests,
    /// local devnets, and the Teku test specs that produced Web3Signer's OpenAPI examples. No
    /// fork after phase0 is scheduled.
    pub const fn minimal() -> Self {
        Self {
            name: "minimal",
            genesis_fork_version: Version([0x00, 0x00, 0x00, 0x01]),
            capella_fork_version: Version([0x03, 0x00, 0x00, 0x01]),
            deneb_fork_epoch: FAR_FUTURE_EPOCH,
            slots_per_epoch: 8,
        }
    }

    /// `compute_epoch_at_slot(slot)` (phase0): `slot / slots_per_epoch` (epochs).
    ///
    /// Panics if `slots_per_epoch` is zero; the parsing entry points refuse such a spec first.
    pub fn epoch_at_slot(&self, slot: u64) -> u64 {
        slot / self.slots_per_epoch
    }

    /// The domain of a `VoluntaryExit` of `exit_epoch` (epochs).
    ///
    /// - `exit_epoch >= deneb_fork_epoch`: EIP-7044 (Deneb `process_voluntary_exit`),
    ///   `compute_domain(DOMAIN_VOLUNTARY_EXIT, CAPELLA_FORK_VERSION,
    ///   fork_info.genesis_validators_root)`; `fork_info.fork` is ignored;
    /// - otherwise phase0 `get_domain(state, DOMAIN_VOLUNTARY_EXIT, exit_epoch)`, with the fork
    ///   version of `fork_info.fork` for that epoch ([`ForkInfo::domain`]).
    ///
    /// Which rule applies is decided by the exit's own epoch against this network's Deneb
    /// epoch, as both remote-signing ends do: Web3Signer signs through Teku's
    /// `SigningRootUtil.signingRootForSignVoluntaryExit`, which takes the domain from
    /// `spec.atEpoch(voluntaryExit.epoch)` (`BeaconStateAccessorsDeneb.getVoluntaryExitDomain`
    /// pins Capella), and Lighthouse's validator client (`validator_store` `signing_context`,
    /// `VoluntaryExit::get_domain`) pins Capella when `fork_name_at_epoch(exit.epoch)` is Deneb
    /// or later. A client therefore sends, and expects us to compute, the same root.
    ///
    /// Caveat (from the specs, not a choice here): a beacon state at Deneb or later verifies
    /// *every* exit with the Capella version, so an exit whose epoch lies before Deneb but is
    /// signed for inclusion after it must carry `fork_info` whose version at that epoch is
    /// already the Capella version, or the chain will reject it.
    pub fn voluntary_exit_domain(&self, exit_epoch: u64, fork_info: &ForkInfo) -> Domain {
        if exit_epoch >= self.deneb_fork_epoch {
            compute_domain(
                DOMAIN_VOLUNTARY_EXIT,
                self.capella_fork_version,
                fork_info.genesis_validators_root,
            )
        } else {
            fork_info.domain(DOMAIN_VOLUNTARY_EXIT, exit_epoch)
        }
    }

    /// The domain of a `ValidatorRegistrationV1`: builder-specs `specs/bellatrix/builder.md`
    /// "Signing" and `verify_registration_signature` use `compute_domain(
    /// DOMAIN_APPLICATION_BUILDER)`, whose phase0 defaults are `fork_version =
    /// GENESIS_FORK_VERSION` and `genesis_validators_root = Root()` (zero). Lighthouse's
    /// `ChainSpec::get_builder_domain` and Teku's `SigningRootUtil
    /// .signingRootForValidatorRegistration` compute the same. No fork or genesis validators
    /// root of the chain enters it, so a request needs no `fork_info`.
    pub fn builder_domain(&self) -> Domain {
        compute_domain(
            DOMAIN_APPLICATION_BUILDER,
            self.genesis_fork_version,
            Root::ZERO,
        )
    }
}

impl Default for ChainSpec {
    /// [`ChainSpec::mainnet`].
    fn default() -> Self {
        Self::mainnet()
    }
}

/// The public networks with built-in constants ([`ChainSpec`]); spelled in lowercase in JSON,
/// TOML and on the command line (`mainnet`, `hoodi`, `holesky`, `sepolia`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Ethereum mainnet.
    #[default]
    Mainnet,
    /// The Hoodi testnet.
    Hoodi,
    /// The Holesky testnet.
    Holesky,
    /// The Sepolia testnet.
    Sepolia,
}

impl Network {
    /// Every named network, in a stable order.
    pub const ALL: [Network; 4] = [
        Network::Mainnet,
        Network::Hoodi,
        Network::Holesky,
        Network::Sepolia,
    ];

    /// The lowercase name (`CONFIG_NAME` of the network's config).
    pub fn name(self) -> &'static str {
        self.chain_spec().name
    }

    /// The built-in constants of this network.
    pub fn chain_spec(self) -> ChainSpec {
        match self {
            Network::Mainnet => ChainSpec::mainnet(),
            Network::Hoodi => ChainSpec::hoodi(),
            Network::Holesky => ChainSpec::holesky(),
            Network::Sepolia => ChainSpec::sepolia(),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Network::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network {0:?}; expected one of mainnet, hoodi, holesky, sepolia")]
pub struct UnknownNetwork(pub String);

impl FromStr for Network {
    type Err = UnknownNetwork;

    /// Parses the lowercase name exactly (`"mainnet"`, not `"Mainnet"`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Network::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| UnknownNetwork(s.to_string()))
    }
}
