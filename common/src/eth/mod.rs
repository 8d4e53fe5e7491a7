//! Consensus-spec signing for Web3Signer eth2 sign requests: containers, domains, signing
//! roots, and BLS signing.
//!
//! A validator client sends `POST /api/v1/eth2/sign/{identifier}` with a JSON body that names a
//! message `type`, the message itself and (for most types) `fork_info`. This module turns that
//! body into a [`SigningTask`]: the signing root that the agent will sign, and for slashable
//! types the data slashing protection must record first. The rules come from the consensus
//! specs (phase0 `compute_fork_data_root`, `compute_domain`, `get_domain`,
//! `compute_signing_root`) and from the Web3Signer OpenAPI (`openapi-specs/eth2/signing`).
//!
//! Invariants:
//! - the signing root is always computed here from the message, the domain and `fork_info`;
//!   a client-supplied `signingRoot` is only compared with it, and a difference is an error
//!   ([`SignRequestError::SigningRootMismatch`]), never a value that gets signed;
//! - a request is accepted only in the exact spec JSON shape: snake_case field names, unknown
//!   or duplicate fields rejected, `uint64` as decimal strings (bare JSON integers are also
//!   accepted, as [`crate::types::quoted_u64`] documents), byte strings as `0x`-hex of exact
//!   length, lists within their preset limits;
//! - every slashable type ([`SLASHABLE_TYPES`]) yields a [`SlashableMessage`]; every other
//!   supported type yields `slashable: None`;
//! - the fork version of a domain is `fork.previous_version` for a message epoch before
//!   `fork.epoch` and `fork.current_version` otherwise (phase0 `get_domain`), with three
//!   exceptions whose fork version is pinned by the network rather than by `fork_info`:
//!   - `DEPOSIT`: the request's `genesis_fork_version` and a zero genesis validators root
//!     (phase0 `process_deposit`);
//!   - `VOLUNTARY_EXIT` of an epoch at or after the network's `DENEB_FORK_EPOCH`: the
//!     network's `CAPELLA_FORK_VERSION` and `fork_info.genesis_validators_root` (EIP-7044,
//!     [`ChainSpec::voluntary_exit_domain`]);
//!   - `VALIDATOR_REGISTRATION`: `DOMAIN_APPLICATION_BUILDER` with the network's
//!     `GENESIS_FORK_VERSION` and a zero genesis validators root (builder-specs,
//!     [`ChainSpec::builder_domain`]).
//! - the network constants come from a [`ChainSpec`] the caller passes
//!   ([`signing_task_from_json_for_chain`]); [`signing_task_from_json`] uses mainnet's.
//!
//! Departures from Web3Signer:
//! - Web3Signer takes the network constants from its own `--network` setting; here the caller
//!   supplies a [`ChainSpec`] (the signer agent's `network` setting). The two agree when both
//!   name the same network.
//! - `AGGREGATE_AND_PROOF_V2` picks the attestation container (phase0 or Electra) from the
//!   request's `aggregate_and_proof.version`. Web3Signer ignores that field and takes the
//!   schema of its network's fork at `aggregate.data.slot` (`AggregateAndProof
//!   .asInternalAggregateAndProof(spec.atSlot(slot))`), silently dropping `committee_bits`
//!   before Electra. For a client on the configured network the two coincide; a request whose
//!   version and shape disagree is an error here rather than a root of another shape.
//! - Web3Signer's OpenAPI example for `BLOCK` spells message fields in camelCase
//!   (`proposerIndex`, `parentRoot`), against its own schema and its Java deserializers; those
//!   spellings are rejected here, as real clients send snake_case. Only the camelCase
//!   `fork_info` fields (`previousVersion`, `currentVersion`, `genesisValidatorsRoot`, and
//!   `forkInfo` itself) are accepted, as aliases.
//! - Its `AGGREGATE_AND_PROOF_V2` examples for `ELECTRA` and `FULU` state a `signingRoot` that
//!   no container shape reproduces; this crate computes the consensus-spec root instead (see
//!   the `signing_root` tests for the evidence).

mod bls;
mod chain;
mod containers;
mod request;

pub use bls::{
    possession_message, pubkey_of, public_key, secret_key, sign, sign_possession, signature,
    verify, verify_possession, BlsError, BLS_DST, POSSESSION_DST,
};
pub use chain::{ChainSpec, Network, UnknownNetwork, FAR_FUTURE_EPOCH};
pub use containers::*;
pub use request::{
    attestation_request_json, block_v2_header_request_json, signing_task_from_json,
    signing_task_from_json_for_chain, signing_task_from_json_with_preset, SignRequestError,
    SigningTask, SlashableMessage, SLASHABLE_TYPES, SUPPORTED_TYPES, WEB3SIGNER_TYPES,
};

use tree_hash::TreeHash;

use crate::types::{Root, Version};

/// A 4-byte domain type (`DomainType`).
pub type DomainType = [u8; 4];

/// A 32-byte signature domain (`Domain`): domain type ‖ first 28 bytes of the fork data root.
pub type Domain = [u8; 32];

/// `DOMAIN_BEACON_PROPOSER` (phase0): blocks.
pub const DOMAIN_BEACON_PROPOSER: DomainType = [0x00, 0x00, 0x00, 0x00];
/// `DOMAIN_BEACON_ATTESTER` (phase0): attestations.
pub const DOMAIN_BEACON_ATTESTER: DomainType = [0x01, 0x00, 0x00, 0x00];
/// `DOMAIN_RANDAO` (phase0): RANDAO reveals.
pub const DOMAIN_RANDAO: DomainType = [0x02, 0x00, 0x00, 0x00];
/// `DOMAIN_DEPOSIT` (phase0): deposits (genesis fork version, zero genesis validators root).
pub const DOMAIN_DEPOSIT: DomainType = [0x03, 0x00, 0x00, 0x00];
/// `DOMAIN_VOLUNTARY_EXIT` (phase0): voluntary exits (Capella fork version from Deneb on).
pub const DOMAIN_VOLUNTARY_EXIT: DomainType = [0x04, 0x00, 0x00, 0x00];
/// `DOMAIN_SELECTION_PROOF` (phase0): aggregator selection proofs (`AGGREGATION_SLOT`).
pub const DOMAIN_SELECTION_PROOF: DomainType = [0x05, 0x00, 0x00, 0x00];
/// `DOMAIN_AGGREGATE_AND_PROOF` (phase0): aggregates.
pub const DOMAIN_AGGREGATE_AND_PROOF: DomainType = [0x06, 0x00, 0x00, 0x00];
/// `DOMAIN_SYNC_COMMITTEE` (Altair): sync committee messages.
pub const DOMAIN_SYNC_COMMITTEE: DomainType = [0x07, 0x00, 0x00, 0x00];
/// `DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF` (Altair).
pub const DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF: DomainType = [0x08, 0x00, 0x00, 0x00];
/// `DOMAIN_CONTRIBUTION_AND_PROOF` (Altair).
pub const DOMAIN_CONTRIBUTION_AND_PROOF: DomainType = [0x09, 0x00, 0x00, 0x00];
/// `DOMAIN_BLS_TO_EXECUTION_CHANGE` (Capella; genesis fork version, real genesis validators
/// root).
pub const DOMAIN_BLS_TO_EXECUTION_CHANGE: DomainType = [0x0a, 0x00, 0x00, 0x00];
/// `DOMAIN_APPLICATION_BUILDER` (builder-specs): validator registrations.
pub const DOMAIN_APPLICATION_BUILDER: DomainType = [0x00, 0x00, 0x00, 0x01];

/// `compute_fork_data_root` (phase0): `hash_tree_root(ForkData{current_version,
/// genesis_validators_root})`. Its first 4 bytes are the fork digest.
pub fn compute_fork_data_root(current_version: Version, genesis_validators_root: Root) -> Root {
    let data = ForkData {
        current_version,
        genesis_validators_root,
    };
    Root(data.tree_hash_root().0)
}

/// `compute_domain` (phase0): `domain_type ‖ compute_fork_data_root(fork_version,
/// genesis_validators_root)[:28]`.
pub fn compute_domain(
    domain_type: DomainType,
    fork_version: Version,
    genesis_validators_root: Root,
) -> Domain {
    let fork_data_root = compute_fork_data_root(fork_version, genesis_validators_root);
    let mut domain = [0u8; 32];
    domain[..4].copy_from_slice(&domain_type);
    domain[4..].copy_from_slice(&fork_data_root.0[..28]);
    domain
}

/// `compute_signing_root` (phase0): `hash_tree_root(SigningData{object_root:
/// hash_tree_root(obj), domain})`.
pub fn compute_signing_root<T: TreeHash>(obj: &T, domain: Domain) -> Root {
    let data = SigningData {
        object_root: Root(obj.tree_hash_root().0),
        domain,
    };
    Root(data.tree_hash_root().0)
}

impl ForkInfo {
    /// `get_domain` (phase0) for a message of `epoch`: the domain of `domain_type` with
    /// [`Fork::version_at`]`(epoch)` and this chain's genesis validators root.
    pub fn domain(&self, domain_type: DomainType, epoch: u64) -> Domain {
        compute_domain(
            domain_type,
            self.fork.version_at(epoch),
            self.genesis_validators_root,
        )
    }
}
