//! Consensus-spec SSZ containers that sign requests carry, with the Web3Signer / Beacon API JSON
//! shape (`uint64` as decimal strings, byte strings as `0x`-hex, bitfields as SSZ `0x`-hex).
//!
//! Every container derives `tree_hash::TreeHash`; its root is the consensus `hash_tree_root`.
//! Field order is the spec's field order, because SSZ merkleization depends on it. JSON field
//! names are the spec's snake_case names and unknown fields are rejected.
//!
//! List limits that differ between the mainnet and minimal presets are taken from a [`Preset`]
//! type parameter ([`Mainnet`] or [`Minimal`]); limits that are equal in both presets are fixed
//! type aliases (see [`limits`]). Sources: `consensus-specs/presets/{mainnet,minimal}/*.yaml`.

use std::fmt::Debug;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ssz_types::typenum::{self, Unsigned};
use ssz_types::{BitList, BitVector, FixedVector, VariableList};
use tree_hash::{Hash256, PackedEncoding, TreeHash, TreeHashType};
use tree_hash_derive::TreeHash;

use super::chain::ChainSpec;
use crate::types::{decode_fixed, encode_hex, quoted_u64, Pubkey, Root, Signature, Version};

/// A consensus `Bytes32` that is not a tree root (graffiti, withdrawal credentials, block hash).
pub type Bytes32 = Root;

macro_rules! tree_hash_as_byte_vector {
    ($($t:ty),*) => {$(
        /// SSZ `Vector[byte, N]`: the root of the fixed-size byte string.
        impl TreeHash for $t {
            fn tree_hash_type() -> TreeHashType {
                TreeHashType::Vector
            }

            fn tree_hash_packed_encoding(&self) -> PackedEncoding {
                unreachable!("a byte vector is never packed")
            }

            fn tree_hash_packing_factor() -> usize {
                unreachable!("a byte vector is never packed")
            }

            fn tree_hash_root(&self) -> Hash256 {
                self.0.tree_hash_root()
            }
        }
    )*};
}

tree_hash_as_byte_vector!(Root, Pubkey, Signature, Version, ExecutionAddress);

/// A 20-byte execution-layer address (`ExecutionAddress` / `Bytes20`), `0x`-hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ExecutionAddress(pub [u8; 20]);

impl Serialize for ExecutionAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode_hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for ExecutionAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        decode_fixed::<20>(&s)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// Preset-dependent sizes (consensus-specs `presets/<name>/*.yaml`).
///
/// Only the values that change a signing root or an epoch are here. Implemented by [`Mainnet`]
/// and [`Minimal`].
pub trait Preset: Copy + Clone + Debug + Default + PartialEq + Eq + Send + Sync + 'static {
    /// Name of the preset, as in `PRESET_BASE`.
    const NAME: &'static str;
    /// `SLOTS_PER_EPOCH` (slots).
    const SLOTS_PER_EPOCH: u64;
    /// `SYNC_COMMITTEE_SIZE` (validators): length of `SyncAggregate.sync_committee_bits`.
    type SyncCommitteeSize: Unsigned + Clone + Debug + PartialEq + Eq + Send + Sync + 'static;
    /// `SYNC_COMMITTEE_SIZE // SYNC_COMMITTEE_SUBNET_COUNT`: length of
    /// `SyncCommitteeContribution.aggregation_bits`.
    type SyncSubcommitteeSize: Unsigned + Clone + Debug + PartialEq + Eq + Send + Sync + 'static;
    /// `MAX_COMMITTEES_PER_SLOT`: length of Electra `Attestation.committee_bits`.
    type MaxCommitteesPerSlot: Unsigned + Clone + Debug + PartialEq + Eq + Send + Sync + 'static;
    /// `MAX_VALIDATORS_PER_COMMITTEE * MAX_COMMITTEES_PER_SLOT`: limit of Electra
    /// `Attestation.aggregation_bits`.
    type MaxValidatorsPerSlot: Unsigned + Clone + Debug + PartialEq + Eq + Send + Sync + 'static;

    /// `compute_epoch_at_slot(slot)`: `slot // SLOTS_PER_EPOCH`.
    fn epoch_at_slot(slot: u64) -> u64 {
        slot / Self::SLOTS_PER_EPOCH
    }

    /// The network config that goes with this preset in the consensus specs
    /// (`configs/<preset>.yaml`): [`ChainSpec::mainnet`] for [`Mainnet`], [`ChainSpec::minimal`]
    /// for [`Minimal`]. Its `slots_per_epoch` is the preset's `SLOTS_PER_EPOCH`.
    fn reference_chain() -> ChainSpec;
}

/// The mainnet preset: what every public network (mainnet, Holesky, Hoodi, Sepolia) uses.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Mainnet;

impl Preset for Mainnet {
    const NAME: &'static str = "mainnet";
    const SLOTS_PER_EPOCH: u64 = 32;
    type SyncCommitteeSize = typenum::U512;
    type SyncSubcommitteeSize = typenum::U128;
    type MaxCommitteesPerSlot = typenum::U64;
    type MaxValidatorsPerSlot = typenum::U131072;

    fn reference_chain() -> ChainSpec {
        ChainSpec::mainnet()
    }
}

/// The minimal preset used by spec tests and some local devnets (and by Web3Signer's own
/// OpenAPI examples for full Altair blocks and sync-committee contributions).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Minimal;

impl Preset for Minimal {
    const NAME: &'static str = "minimal";
    const SLOTS_PER_EPOCH: u64 = 8;
    type SyncCommitteeSize = typenum::U32;
    type SyncSubcommitteeSize = typenum::U8;
    type MaxCommitteesPerSlot = typenum::U4;
    type MaxValidatorsPerSlot = typenum::U8192;

    fn reference_chain() -> ChainSpec {
        ChainSpec::minimal()
    }
}

/// List limits that are the same in the mainnet and minimal presets (phase0 preset).
pub mod limits {
    use ssz_types::typenum;

    /// `MAX_VALIDATORS_PER_COMMITTEE` = 2048.
    pub type MaxValidatorsPerCommittee = typenum::U2048;
    /// `MAX_PROPOSER_SLASHINGS` = 16.
    pub type MaxProposerSlashings = typenum::U16;
    /// `MAX_ATTESTER_SLASHINGS` = 2 (phase0 to Deneb).
    pub type MaxAttesterSlashings = typenum::U2;
    /// `MAX_ATTESTATIONS` = 128 (phase0 to Deneb).
    pub type MaxAttestations = typenum::U128;
    /// `MAX_DEPOSITS` = 16.
    pub type MaxDeposits = typenum::U16;
    /// `MAX_VOLUNTARY_EXITS` = 16.
    pub type MaxVoluntaryExits = typenum::U16;
    /// `DEPOSIT_CONTRACT_TREE_DEPTH + 1` = 33: length of `Deposit.proof`.
    pub type DepositProofLength = typenum::U33;
}

/// Serde helper for `List[uint64, N]` as a JSON array of decimal strings, with the same number
/// rules as [`quoted_u64`].
mod quoted_u64_list {
    use super::*;

    #[derive(Serialize, Deserialize)]
    #[serde(transparent)]
    struct Quoted(#[serde(with = "quoted_u64")] u64);

    pub fn serialize<S: Serializer, N: Unsigned>(
        v: &VariableList<u64, N>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| Quoted(*x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, N: Unsigned>(
        d: D,
    ) -> Result<VariableList<u64, N>, D::Error> {
        let v: Vec<Quoted> = Vec::deserialize(d)?;
        let len = v.len();
        VariableList::new(v.into_iter().map(|q| q.0).collect()).map_err(|_| {
            serde::de::Error::custom(format!(
                "list of {len} items exceeds the limit of {}",
                N::to_usize()
            ))
        })
    }
}

/// `Fork`: the fork versions around the most recent fork and its activation epoch.
///
/// Domain selection (phase0 `get_domain`): `previous_version` for messages of an epoch before
/// `epoch`, `current_version` otherwise; see [`Fork::version_at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct Fork {
    /// Fork version before `epoch`. `previousVersion` is accepted too: Web3Signer's own
    /// examples and some clients spell the fork fields in camelCase.
    #[serde(alias = "previousVersion")]
    pub previous_version: Version,
    /// Fork version from `epoch` on (`currentVersion` accepted too).
    #[serde(alias = "currentVersion")]
    pub current_version: Version,
    /// Activation epoch of `current_version` (epochs).
    #[serde(with = "quoted_u64")]
    pub epoch: u64,
}

impl Fork {
    /// The fork version that signs a message of `epoch`:
    /// `previous_version if epoch < self.epoch else current_version`.
    pub fn version_at(&self, epoch: u64) -> Version {
        if epoch < self.epoch {
            self.previous_version
        } else {
            self.current_version
        }
    }
}

/// Web3Signer `fork_info`: the fork and the chain's genesis validators root. Not an SSZ type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForkInfo {
    /// The fork at the time of signing.
    pub fork: Fork,
    /// The chain's genesis validators root (`genesisValidatorsRoot` accepted too).
    #[serde(alias = "genesisValidatorsRoot")]
    pub genesis_validators_root: Root,
}

/// `ForkData` (phase0): hashed into fork digests and domains by `compute_fork_data_root`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct ForkData {
    /// The fork version.
    pub current_version: Version,
    /// The chain's genesis validators root.
    pub genesis_validators_root: Root,
}

/// `SigningData` (phase0): what a BLS signature signs, `htr(SigningData{htr(obj), domain})`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, TreeHash)]
pub struct SigningData {
    /// `hash_tree_root` of the signed object.
    pub object_root: Root,
    /// The 32-byte domain from `compute_domain`.
    pub domain: [u8; 32],
}

/// `Checkpoint` (phase0): an epoch and the block root at its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Epoch number (epochs).
    #[serde(with = "quoted_u64")]
    pub epoch: u64,
    /// Block root.
    pub root: Root,
}

/// `AttestationData` (phase0): what an attester votes for. Signed with
/// `DOMAIN_BEACON_ATTESTER` at `target.epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct AttestationData {
    /// Slot of the attestation (slots).
    #[serde(with = "quoted_u64")]
    pub slot: u64,
    /// Committee index (0 from Electra on).
    #[serde(with = "quoted_u64")]
    pub index: u64,
    /// LMD GHOST vote: the head block root.
    pub beacon_block_root: Root,
    /// FFG source checkpoint.
    pub source: Checkpoint,
    /// FFG target checkpoint.
    pub target: Checkpoint,
}

/// `BeaconBlockHeader` (phase0): a block with its body replaced by the body root.
///
/// `htr(BeaconBlockHeader)` equals `htr(BeaconBlock)` of the block it summarizes, so it is
/// what a proposer signs from Bellatrix on (Web3Signer `BLOCK_V2` `block_header`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct BeaconBlockHeader {
    /// Slot of the block (slots).
    #[serde(with = "quoted_u64")]
    pub slot: u64,
    /// Validator index of the proposer.
    #[serde(with = "quoted_u64")]
    pub proposer_index: u64,
    /// Root of the parent block.
    pub parent_root: Root,
    /// Post-state root.
    pub state_root: Root,
    /// `hash_tree_root` of the block body.
    pub body_root: Root,
}

/// `SignedBeaconBlockHeader` (phase0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct SignedBeaconBlockHeader {
    /// The header.
    pub message: BeaconBlockHeader,
    /// The proposer's signature.
    pub signature: Signature,
}

/// `ProposerSlashing` (phase0): two conflicting signed headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct ProposerSlashing {
    /// First header.
    pub signed_header_1: SignedBeaconBlockHeader,
    /// Second header.
    pub signed_header_2: SignedBeaconBlockHeader,
}

/// `IndexedAttestation` (phase0 limits, `MAX_VALIDATORS_PER_COMMITTEE` indices).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct IndexedAttestation {
    /// Sorted validator indices, decimal strings in JSON.
    #[serde(with = "quoted_u64_list")]
    pub attesting_indices: VariableList<u64, limits::MaxValidatorsPerCommittee>,
    /// The attested data.
    pub data: AttestationData,
    /// Aggregate signature.
    pub signature: Signature,
}

/// `AttesterSlashing` (phase0).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct AttesterSlashing {
    /// First attestation.
    pub attestation_1: IndexedAttestation,
    /// Second attestation.
    pub attestation_2: IndexedAttestation,
}

/// `Attestation` (phase0 to Deneb): aggregation bits are an SSZ bitlist, `0x`-hex in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// Which committee members signed (SSZ `Bitlist[MAX_VALIDATORS_PER_COMMITTEE]`).
    pub aggregation_bits: BitList<limits::MaxValidatorsPerCommittee>,
    /// The attested data.
    pub data: AttestationData,
    /// Aggregate signature.
    pub signature: Signature,
}

/// `Attestation` (Electra on): aggregation bits span every committee of the slot and
/// `committee_bits` says which committees take part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields, bound = "")]
pub struct AttestationElectra<P: Preset> {
    /// SSZ `Bitlist[MAX_VALIDATORS_PER_COMMITTEE * MAX_COMMITTEES_PER_SLOT]`.
    pub aggregation_bits: BitList<P::MaxValidatorsPerSlot>,
    /// The attested data.
    pub data: AttestationData,
    /// Aggregate signature.
    pub signature: Signature,
    /// SSZ `Bitvector[MAX_COMMITTEES_PER_SLOT]`.
    pub committee_bits: BitVector<P::MaxCommitteesPerSlot>,
}

/// `Eth1Data` (phase0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct Eth1Data {
    /// Deposit tree root.
    pub deposit_root: Root,
    /// Number of deposits.
    #[serde(with = "quoted_u64")]
    pub deposit_count: u64,
    /// Execution block hash.
    pub block_hash: Bytes32,
}

/// `DepositMessage` (phase0): what a deposit signs, with `DOMAIN_DEPOSIT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct DepositMessage {
    /// Validator public key.
    pub pubkey: Pubkey,
    /// Withdrawal credentials.
    pub withdrawal_credentials: Bytes32,
    /// Amount (Gwei).
    #[serde(with = "quoted_u64")]
    pub amount: u64,
}

/// `DepositData` (phase0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct DepositData {
    /// Validator public key.
    pub pubkey: Pubkey,
    /// Withdrawal credentials.
    pub withdrawal_credentials: Bytes32,
    /// Amount (Gwei).
    #[serde(with = "quoted_u64")]
    pub amount: u64,
    /// Signature over the `DepositMessage`.
    pub signature: Signature,
}

/// `Deposit` (phase0): deposit data with its Merkle proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct Deposit {
    /// Merkle branch, exactly `DEPOSIT_CONTRACT_TREE_DEPTH + 1` roots.
    pub proof: FixedVector<Bytes32, limits::DepositProofLength>,
    /// The deposit.
    pub data: DepositData,
}

/// `VoluntaryExit` (phase0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct VoluntaryExit {
    /// Earliest epoch the exit is valid (epochs).
    #[serde(with = "quoted_u64")]
    pub epoch: u64,
    /// Exiting validator's index.
    #[serde(with = "quoted_u64")]
    pub validator_index: u64,
}

/// `SignedVoluntaryExit` (phase0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct SignedVoluntaryExit {
    /// The exit.
    pub message: VoluntaryExit,
    /// The validator's signature.
    pub signature: Signature,
}

/// `BeaconBlockBody` (phase0).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct BeaconBlockBody {
    /// RANDAO reveal: the proposer's signature over the epoch.
    pub randao_reveal: Signature,
    /// Eth1 vote.
    pub eth1_data: Eth1Data,
    /// Arbitrary 32 bytes.
    pub graffiti: Bytes32,
    /// At most `MAX_PROPOSER_SLASHINGS`.
    pub proposer_slashings: VariableList<ProposerSlashing, limits::MaxProposerSlashings>,
    /// At most `MAX_ATTESTER_SLASHINGS`.
    pub attester_slashings: VariableList<AttesterSlashing, limits::MaxAttesterSlashings>,
    /// At most `MAX_ATTESTATIONS`.
    pub attestations: VariableList<Attestation, limits::MaxAttestations>,
    /// At most `MAX_DEPOSITS`.
    pub deposits: VariableList<Deposit, limits::MaxDeposits>,
    /// At most `MAX_VOLUNTARY_EXITS`.
    pub voluntary_exits: VariableList<SignedVoluntaryExit, limits::MaxVoluntaryExits>,
}

/// `BeaconBlock` (phase0). Signed with `DOMAIN_BEACON_PROPOSER` at the block's epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct BeaconBlock {
    /// Slot (slots).
    #[serde(with = "quoted_u64")]
    pub slot: u64,
    /// Proposer's validator index.
    #[serde(with = "quoted_u64")]
    pub proposer_index: u64,
    /// Parent block root.
    pub parent_root: Root,
    /// Post-state root.
    pub state_root: Root,
    /// The body.
    pub body: BeaconBlockBody,
}

impl BeaconBlock {
    /// The header of this block (`body_root = htr(body)`); it has the same root as the block.
    pub fn header(&self) -> BeaconBlockHeader {
        BeaconBlockHeader {
            slot: self.slot,
            proposer_index: self.proposer_index,
            parent_root: self.parent_root,
            state_root: self.state_root,
            body_root: Root(self.body.tree_hash_root().0),
        }
    }
}

/// `SyncAggregate` (Altair).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields, bound = "")]
pub struct SyncAggregate<P: Preset> {
    /// SSZ `Bitvector[SYNC_COMMITTEE_SIZE]`, `0x`-hex in JSON.
    pub sync_committee_bits: BitVector<P::SyncCommitteeSize>,
    /// Aggregate signature of the participants.
    pub sync_committee_signature: Signature,
}

/// `BeaconBlockBody` (Altair): the phase0 body plus a sync aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields, bound = "")]
pub struct BeaconBlockBodyAltair<P: Preset> {
    /// RANDAO reveal.
    pub randao_reveal: Signature,
    /// Eth1 vote.
    pub eth1_data: Eth1Data,
    /// Arbitrary 32 bytes.
    pub graffiti: Bytes32,
    /// At most `MAX_PROPOSER_SLASHINGS`.
    pub proposer_slashings: VariableList<ProposerSlashing, limits::MaxProposerSlashings>,
    /// At most `MAX_ATTESTER_SLASHINGS`.
    pub attester_slashings: VariableList<AttesterSlashing, limits::MaxAttesterSlashings>,
    /// At most `MAX_ATTESTATIONS`.
    pub attestations: VariableList<Attestation, limits::MaxAttestations>,
    /// At most `MAX_DEPOSITS`.
    pub deposits: VariableList<Deposit, limits::MaxDeposits>,
    /// At most `MAX_VOLUNTARY_EXITS`.
    pub voluntary_exits: VariableList<SignedVoluntaryExit, limits::MaxVoluntaryExits>,
    /// Sync committee participation for the previous slot.
    pub sync_aggregate: SyncAggregate<P>,
}

/// `BeaconBlock` (Altair). Signed with `DOMAIN_BEACON_PROPOSER` at the block's epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields, bound = "")]
pub struct BeaconBlockAltair<P: Preset> {
    /// Slot (slots).
    #[serde(with = "quoted_u64")]
    pub slot: u64,
    /// Proposer's validator index.
    #[serde(with = "quoted_u64")]
    pub proposer_index: u64,
    /// Parent block root.
    pub parent_root: Root,
    /// Post-state root.
    pub state_root: Root,
    /// The body.
    pub body: BeaconBlockBodyAltair<P>,
}

impl<P: Preset> BeaconBlockAltair<P> {
    /// The header of this block (`body_root = htr(body)`); it has the same root as the block.
    pub fn header(&self) -> BeaconBlockHeader {
        BeaconBlockHeader {
            slot: self.slot,
            proposer_index: self.proposer_index,
            parent_root: self.parent_root,
            state_root: self.state_root,
            body_root: Root(self.body.tree_hash_root().0),
        }
    }
}

/// `AggregateAndProof` (phase0 to Deneb). Signed with `DOMAIN_AGGREGATE_AND_PROOF` at the epoch
/// of `aggregate.data.slot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct AggregateAndProof {
    /// Aggregator's validator index.
    #[serde(with = "quoted_u64")]
    pub aggregator_index: u64,
    /// The aggregate attestation.
    pub aggregate: Attestation,
    /// The aggregator's selection proof (signature over the slot).
    pub selection_proof: Signature,
}

/// `AggregateAndProof` (Electra on): the aggregate is an Electra attestation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields, bound = "")]
pub struct AggregateAndProofElectra<P: Preset> {
    /// Aggregator's validator index.
    #[serde(with = "quoted_u64")]
    pub aggregator_index: u64,
    /// The aggregate attestation.
    pub aggregate: AttestationElectra<P>,
    /// The aggregator's selection proof (signature over the slot).
    pub selection_proof: Signature,
}

/// `SyncAggregatorSelectionData` (Altair). Signed with
/// `DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF` at the epoch of `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct SyncAggregatorSelectionData {
    /// Slot (slots).
    #[serde(with = "quoted_u64")]
    pub slot: u64,
    /// Sync subcommittee index.
    #[serde(with = "quoted_u64")]
    pub subcommittee_index: u64,
}

/// `SyncCommitteeContribution` (Altair).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields, bound = "")]
pub struct SyncCommitteeContribution<P: Preset> {
    /// Slot (slots).
    #[serde(with = "quoted_u64")]
    pub slot: u64,
    /// Block root the contribution is for.
    pub beacon_block_root: Root,
    /// Sync subcommittee index.
    #[serde(with = "quoted_u64")]
    pub subcommittee_index: u64,
    /// SSZ `Bitvector[SYNC_COMMITTEE_SIZE // SYNC_COMMITTEE_SUBNET_COUNT]`.
    pub aggregation_bits: BitVector<P::SyncSubcommitteeSize>,
    /// Aggregate signature.
    pub signature: Signature,
}

/// `ContributionAndProof` (Altair). Signed with `DOMAIN_CONTRIBUTION_AND_PROOF` at the epoch of
/// `contribution.slot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields, bound = "")]
pub struct ContributionAndProof<P: Preset> {
    /// Aggregator's validator index.
    #[serde(with = "quoted_u64")]
    pub aggregator_index: u64,
    /// The contribution.
    pub contribution: SyncCommitteeContribution<P>,
    /// The aggregator's selection proof.
    pub selection_proof: Signature,
}

/// `BLSToExecutionChange` (Capella). Signed with `DOMAIN_BLS_TO_EXECUTION_CHANGE`, the
/// network's `GENESIS_FORK_VERSION` and its genesis validators root. Not a Web3Signer type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct BlsToExecutionChange {
    /// Validator index.
    #[serde(with = "quoted_u64")]
    pub validator_index: u64,
    /// The BLS withdrawal key being replaced.
    pub from_bls_pubkey: Pubkey,
    /// The new execution withdrawal address.
    pub to_execution_address: ExecutionAddress,
}

/// `ValidatorRegistrationV1` (builder-specs). Signed with `DOMAIN_APPLICATION_BUILDER`, the
/// network's `GENESIS_FORK_VERSION` and a zero genesis validators root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TreeHash)]
#[serde(deny_unknown_fields)]
pub struct ValidatorRegistration {
    /// Fee recipient address.
    pub fee_recipient: ExecutionAddress,
    /// Preferred gas limit (gas).
    #[serde(with = "quoted_u64")]
    pub gas_limit: u64,
    /// Registration time (Unix seconds).
    #[serde(with = "quoted_u64")]
    pub timestamp: u64,
    /// Validator public key.
    pub pubkey: Pubkey,
}
