//! Parsing Web3Signer `POST /api/v1/eth2/sign/{identifier}` bodies into [`SigningTask`]s.
//!
//! Parsing happens in two steps: the `type` field picks the request shape, then the whole body
//! is parsed strictly (unknown fields rejected) into that shape, so every error names the JSON
//! path of the offending field.

use std::marker::PhantomData;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use tree_hash::TreeHash;

use super::chain::ChainSpec;
use super::containers::*;
use super::*;
use crate::types::{quoted_u64, Pubkey, Root, Version};

/// Every `type` in the Web3Signer eth2 OpenAPI (`signing/paths/sign.yaml` discriminator).
pub const WEB3SIGNER_TYPES: &[&str] = &[
    "AGGREGATION_SLOT",
    "AGGREGATE_AND_PROOF",
    "AGGREGATE_AND_PROOF_V2",
    "ATTESTATION",
    "BLOCK",
    "BLOCK_V2",
    "DEPOSIT",
    "RANDAO_REVEAL",
    "VOLUNTARY_EXIT",
    "SYNC_COMMITTEE_MESSAGE",
    "SYNC_COMMITTEE_SELECTION_PROOF",
    "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF",
    "VALIDATOR_REGISTRATION",
];

/// The Web3Signer types this build computes signing roots for: all of [`WEB3SIGNER_TYPES`].
/// `VOLUNTARY_EXIT` and `VALIDATOR_REGISTRATION` need the network constants of a
/// [`ChainSpec`], which [`signing_task_from_json_for_chain`] takes.
pub const SUPPORTED_TYPES: &[&str] = WEB3SIGNER_TYPES;

/// The types whose signatures can get a validator slashed; each yields a [`SlashableMessage`].
pub const SLASHABLE_TYPES: &[&str] = &["ATTESTATION", "BLOCK", "BLOCK_V2"];

/// `beacon_block.version` values of `BLOCK_V2` that carry a full `block`.
const FULL_BLOCK_VERSIONS: &[&str] = &["PHASE0", "ALTAIR"];
/// `beacon_block.version` values of `BLOCK_V2` that carry a `block_header`.
const HEADER_VERSIONS: &[&str] = &["BELLATRIX", "CAPELLA", "DENEB", "ELECTRA", "FULU"];
/// `aggregate_and_proof.version` values of `AGGREGATE_AND_PROOF_V2` with a phase0 attestation.
const PHASE0_AGGREGATE_VERSIONS: &[&str] = &["PHASE0", "ALTAIR", "BELLATRIX", "CAPELLA", "DENEB"];
/// `aggregate_and_proof.version` values of `AGGREGATE_AND_PROOF_V2` with an Electra attestation.
const ELECTRA_AGGREGATE_VERSIONS: &[&str] = &["ELECTRA", "FULU"];

/// A message whose double signing is slashable, as slashing protection records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlashableMessage {
    /// A block proposal.
    Block {
        /// Slot of the block (slots).
        slot: u64,
    },
    /// An attestation (FFG vote).
    Attestation {
        /// `data.source.epoch` (epochs).
        source_epoch: u64,
        /// `data.target.epoch` (epochs).
        target_epoch: u64,
    },
}

/// A parsed sign request: what to sign and what slashing protection must record first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningTask {
    /// The Web3Signer `type`, e.g. `"ATTESTATION"`, `"BLOCK_V2"` (one of [`SUPPORTED_TYPES`]).
    pub kind: &'static str,
    /// The signing root computed here from the message, domain and `fork_info`; never taken
    /// from the client.
    pub signing_root: Root,
    /// For slashable types ([`SLASHABLE_TYPES`]) the record to check and store; else `None`.
    pub slashable: Option<SlashableMessage>,
    /// `fork_info.genesis_validators_root`, when the request has `fork_info`.
    pub genesis_validators_root: Option<Root>,
    /// Epoch of the message, when defined (epochs): `slot // SLOTS_PER_EPOCH` for blocks,
    /// selection proofs, aggregates and sync-committee messages, `target.epoch` for
    /// attestations, the epoch itself for RANDAO reveals and voluntary exits; `None` for
    /// deposits and validator registrations, which belong to no epoch.
    pub epoch: Option<u64>,
}

/// Why a sign request body cannot be signed. All are client errors (HTTP 400), and none is
/// retryable with the same body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignRequestError {
    /// Bad JSON, a missing, unknown or duplicate field, or a bad number, hex string or list
    /// length; the message names the JSON path of the field (e.g. `attestation.source.epoch`).
    #[error("malformed sign request: {0}")]
    Malformed(String),
    /// A valid Web3Signer type (holds the type) that this build does not sign yet. Every type
    /// in [`WEB3SIGNER_TYPES`] is supported now ([`SUPPORTED_TYPES`]); the variant stays for
    /// types Web3Signer adds before this crate does.
    #[error("type {0} is not supported yet")]
    UnsupportedType(String),
    /// Not a Web3Signer type at all (holds the type as sent).
    #[error("unknown sign request type {0:?}")]
    UnknownType(String),
    /// The client's `signingRoot` differs from the one computed from the message.
    #[error("signingRoot {provided} differs from the computed signing root {computed}")]
    SigningRootMismatch {
        /// The signing root computed from the message.
        computed: Root,
        /// The client-supplied `signingRoot`.
        provided: Root,
    },
}

/// Parses a Web3Signer `POST /api/v1/eth2/sign/{identifier}` JSON body and computes its signing
/// root, for Ethereum mainnet: the mainnet preset and [`ChainSpec::mainnet`].
///
/// Errors: see [`SignRequestError`]; a `signingRoot` that is present and differs from the
/// computed one is [`SignRequestError::SigningRootMismatch`].
pub fn signing_task_from_json(body: &[u8]) -> Result<SigningTask, SignRequestError> {
    parse_task::<Mainnet>(body, &ChainSpec::mainnet())
}

/// [`signing_task_from_json`] for the network `chain` (a testnet, or a devnet with its own fork
/// versions and `SLOTS_PER_EPOCH`), with container sizes from the preset `P`.
///
/// `chain` supplies what the request does not carry:
/// - `slots_per_epoch` (slots): the epoch of a slot-based message, which picks the fork version
///   of its domain, is `slot / slots_per_epoch` (consensus specs `compute_epoch_at_slot`);
/// - `capella_fork_version` and `deneb_fork_epoch` for `VOLUNTARY_EXIT`
///   ([`ChainSpec::voluntary_exit_domain`], EIP-7044);
/// - `genesis_fork_version` for `VALIDATOR_REGISTRATION` ([`ChainSpec::builder_domain`]).
///
/// Errors: as [`signing_task_from_json`]; `chain.slots_per_epoch == 0` is `Malformed`.
pub fn signing_task_from_json_for_chain<P: Preset>(
    body: &[u8],
    chain: &ChainSpec,
) -> Result<SigningTask, SignRequestError> {
    if chain.slots_per_epoch == 0 {
        return Err(SignRequestError::Malformed(
            "slots_per_epoch must be at least 1".into(),
        ));
    }
    parse_task::<P>(body, chain)
}

/// [`signing_task_from_json`] for a chosen preset (e.g. [`Minimal`] for spec-test devnets) and
/// that preset's reference network ([`Preset::reference_chain`]: mainnet for [`Mainnet`], the
/// consensus-specs minimal config for [`Minimal`]). The preset sets `SLOTS_PER_EPOCH` and the
/// sync-committee and Electra attestation sizes.
///
/// Errors: as [`signing_task_from_json`].
pub fn signing_task_from_json_with_preset<P: Preset>(
    body: &[u8],
) -> Result<SigningTask, SignRequestError> {
    parse_task::<P>(body, &P::reference_chain())
}

/// `chain.slots_per_epoch` must be at least 1 (checked by the public entry points).
fn parse_task<P: Preset>(body: &[u8], chain: &ChainSpec) -> Result<SigningTask, SignRequestError> {
    let slots_per_epoch = chain.slots_per_epoch;
    #[derive(Deserialize)]
    #[serde(rename = "sign request")]
    struct Head {
        #[serde(rename = "type")]
        kind: String,
    }
    let head: Head = from_json(body)?;
    let Some(kind) = WEB3SIGNER_TYPES.iter().copied().find(|t| *t == head.kind) else {
        return Err(SignRequestError::UnknownType(head.kind));
    };
    match kind {
        "ATTESTATION" => attestation::<P>(kind, body),
        "BLOCK" => block::<P>(kind, body, slots_per_epoch),
        "BLOCK_V2" => block_v2::<P>(kind, body, slots_per_epoch),
        "AGGREGATION_SLOT" => aggregation_slot::<P>(kind, body, slots_per_epoch),
        "AGGREGATE_AND_PROOF" => aggregate_and_proof::<P>(kind, body, slots_per_epoch),
        "AGGREGATE_AND_PROOF_V2" => aggregate_and_proof_v2::<P>(kind, body, slots_per_epoch),
        "RANDAO_REVEAL" => randao_reveal::<P>(kind, body),
        "SYNC_COMMITTEE_MESSAGE" => sync_committee_message::<P>(kind, body, slots_per_epoch),
        "SYNC_COMMITTEE_SELECTION_PROOF" => {
            sync_committee_selection_proof::<P>(kind, body, slots_per_epoch)
        }
        "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF" => {
            contribution_and_proof::<P>(kind, body, slots_per_epoch)
        }
        "DEPOSIT" => deposit(kind, body),
        "VOLUNTARY_EXIT" => voluntary_exit::<P>(kind, body, chain),
        "VALIDATOR_REGISTRATION" => validator_registration(kind, body, chain),
        _ => Err(SignRequestError::UnsupportedType(kind.to_string())),
    }
}

/// Deserializes the whole body strictly, reporting the JSON path of the first bad field.
fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, SignRequestError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| malformed("", &e))?;
    de.end()
        .map_err(|e| SignRequestError::Malformed(format!("trailing data after the body: {e}")))?;
    Ok(value)
}

/// Deserializes a nested JSON value that was kept raw until its version was known.
fn from_value<T: DeserializeOwned>(
    prefix: &str,
    value: &serde_json::Value,
) -> Result<T, SignRequestError> {
    serde_path_to_error::deserialize(value).map_err(|e| malformed(prefix, &e))
}

fn malformed<E: std::fmt::Display>(
    prefix: &str,
    e: &serde_path_to_error::Error<E>,
) -> SignRequestError {
    let path = e.path().to_string();
    let path = match (prefix, path.as_str()) {
        ("", ".") => String::new(),
        ("", p) => p.to_string(),
        (pre, ".") => pre.to_string(),
        (pre, p) => format!("{pre}.{p}"),
    };
    if path.is_empty() {
        SignRequestError::Malformed(e.inner().to_string())
    } else {
        SignRequestError::Malformed(format!("{path}: {}", e.inner()))
    }
}

/// Builds the task, refusing a client `signingRoot` that differs from the computed one.
fn finish(
    kind: &'static str,
    signing_root: Root,
    provided: Option<Root>,
    slashable: Option<SlashableMessage>,
    genesis_validators_root: Option<Root>,
    epoch: Option<u64>,
) -> Result<SigningTask, SignRequestError> {
    if let Some(provided) = provided {
        if provided != signing_root {
            return Err(SignRequestError::SigningRootMismatch {
                computed: signing_root,
                provided,
            });
        }
    }
    Ok(SigningTask {
        kind,
        signing_root,
        slashable,
        genesis_validators_root,
        epoch,
    })
}

/// Declares the strict body shape of a type with `fork_info` and one payload field.
macro_rules! request_shape {
    ($(#[$doc:meta])* $name:ident { $field:ident : $ty:ty }) => {
        $(#[$doc])*
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, bound = "")]
        struct $name<P: Preset> {
            #[serde(rename = "type")]
            _type: IgnoredAny,
            #[serde(rename = "signingRoot", default)]
            signing_root: Option<Root>,
            #[serde(alias = "forkInfo")]
            fork_info: ForkInfo,
            $field: $ty,
            #[serde(skip)]
            _preset: PhantomData<P>,
        }
    };
}

request_shape!(
    /// `ATTESTATION`.
    AttestationShape { attestation: AttestationData }
);
request_shape!(
    /// `BLOCK` (deprecated): a phase0 block.
    BlockShape { block: BeaconBlock }
);
request_shape!(
    /// `BLOCK_V2`.
    BlockV2Shape { beacon_block: VersionedBlock }
);
request_shape!(
    /// `AGGREGATION_SLOT`.
    AggregationSlotShape { aggregation_slot: SlotJson }
);
request_shape!(
    /// `AGGREGATE_AND_PROOF` (deprecated): a phase0 aggregate.
    AggregateAndProofShape { aggregate_and_proof: AggregateAndProof }
);
request_shape!(
    /// `AGGREGATE_AND_PROOF_V2`.
    AggregateAndProofV2Shape { aggregate_and_proof: VersionedData }
);
request_shape!(
    /// `RANDAO_REVEAL`.
    RandaoRevealShape { randao_reveal: EpochJson }
);
request_shape!(
    /// `SYNC_COMMITTEE_MESSAGE`.
    SyncCommitteeMessageShape { sync_committee_message: SyncCommitteeMessageJson }
);
request_shape!(
    /// `SYNC_COMMITTEE_SELECTION_PROOF`.
    SyncSelectionShape { sync_aggregator_selection_data: SyncAggregatorSelectionData }
);
request_shape!(
    /// `SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF`.
    ContributionShape { contribution_and_proof: ContributionAndProof<P> }
);
request_shape!(
    /// `VOLUNTARY_EXIT` (Web3Signer `VoluntaryExitSigning`: `fork_info` required).
    VoluntaryExitShape { voluntary_exit: VoluntaryExit }
);

/// `BLOCK_V2` `beacon_block`: the version decides which of `block` / `block_header` is there.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionedBlock {
    version: String,
    #[serde(default)]
    block: Option<serde_json::Value>,
    #[serde(default)]
    block_header: Option<BeaconBlockHeader>,
}

/// `AGGREGATE_AND_PROOF_V2` `aggregate_and_proof`: `data`'s shape depends on `version`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionedData {
    version: String,
    data: serde_json::Value,
}

/// `{"slot": "…"}` (`aggregation_slot`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotJson {
    #[serde(with = "quoted_u64")]
    slot: u64,
}

/// `{"epoch": "…"}` (`randao_reveal`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EpochJson {
    #[serde(with = "quoted_u64")]
    epoch: u64,
}

/// `sync_committee_message`: the signed object is `beacon_block_root` alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncCommitteeMessageJson {
    beacon_block_root: Root,
    #[serde(with = "quoted_u64")]
    slot: u64,
}

/// `DEPOSIT`: no `fork_info` is required; the domain comes from `genesis_fork_version`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DepositShape {
    #[serde(rename = "type")]
    _type: IgnoredAny,
    #[serde(rename = "signingRoot", default)]
    signing_root: Option<Root>,
    #[serde(default, alias = "forkInfo")]
    fork_info: Option<ForkInfo>,
    deposit: DepositJson,
}

/// `VALIDATOR_REGISTRATION` (Web3Signer `ValidatorRegistrationSigning`): no `fork_info` in the
/// schema, as the builder domain uses none; one that a client sends anyway is accepted (as
/// Web3Signer's deserializer does) and only its genesis validators root is reported.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidatorRegistrationShape {
    #[serde(rename = "type")]
    _type: IgnoredAny,
    #[serde(rename = "signingRoot", default)]
    signing_root: Option<Root>,
    #[serde(default, alias = "forkInfo")]
    fork_info: Option<ForkInfo>,
    validator_registration: ValidatorRegistration,
}

/// `deposit`: a `DepositMessage` plus the network's genesis fork version.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DepositJson {
    pubkey: Pubkey,
    withdrawal_credentials: Bytes32,
    #[serde(with = "quoted_u64")]
    amount: u64,
    genesis_fork_version: Version,
}

fn attestation<P: Preset>(
    kind: &'static str,
    body: &[u8],
) -> Result<SigningTask, SignRequestError> {
    let req: AttestationShape<P> = from_json(body)?;
    let data = req.attestation;
    let epoch = data.target.epoch;
    let domain = req.fork_info.domain(DOMAIN_BEACON_ATTESTER, epoch);
    finish(
        kind,
        compute_signing_root(&data, domain),
        req.signing_root,
        Some(SlashableMessage::Attestation {
            source_epoch: data.source.epoch,
            target_epoch: data.target.epoch,
        }),
        Some(req.fork_info.genesis_validators_root),
        Some(epoch),
    )
}

/// Finishes a block request from the block's slot and `hash_tree_root`.
fn block_task(
    kind: &'static str,
    fork_info: &ForkInfo,
    provided: Option<Root>,
    slot: u64,
    block_root: Root,
    slots_per_epoch: u64,
) -> Result<SigningTask, SignRequestError> {
    let epoch = (slot) / slots_per_epoch;
    let domain = fork_info.domain(DOMAIN_BEACON_PROPOSER, epoch);
    finish(
        kind,
        compute_signing_root(&block_root, domain),
        provided,
        Some(SlashableMessage::Block { slot }),
        Some(fork_info.genesis_validators_root),
        Some(epoch),
    )
}

fn block<P: Preset>(
    kind: &'static str,
    body: &[u8],
    slots_per_epoch: u64,
) -> Result<SigningTask, SignRequestError> {
    let req: BlockShape<P> = from_json(body)?;
    let root = Root(req.block.tree_hash_root().0);
    block_task(
        kind,
        &req.fork_info,
        req.signing_root,
        req.block.slot,
        root,
        slots_per_epoch,
    )
}

fn block_v2<P: Preset>(
    kind: &'static str,
    body: &[u8],
    slots_per_epoch: u64,
) -> Result<SigningTask, SignRequestError> {
    let req: BlockV2Shape<P> = from_json(body)?;
    let VersionedBlock {
        version,
        block,
        block_header,
    } = req.beacon_block;
    let v = version.as_str();
    let (slot, root) = if FULL_BLOCK_VERSIONS.contains(&v) {
        if block_header.is_some() {
            return Err(SignRequestError::Malformed(format!(
                "beacon_block.block_header: not allowed for version {v}, which carries a full `block`"
            )));
        }
        let Some(block) = block else {
            return Err(SignRequestError::Malformed(format!(
                "beacon_block.block: missing, version {v} carries a full block"
            )));
        };
        if v == "PHASE0" {
            let b: BeaconBlock = from_value("beacon_block.block", &block)?;
            (b.slot, Root(b.tree_hash_root().0))
        } else {
            let b: BeaconBlockAltair<P> = from_value("beacon_block.block", &block)?;
            (b.slot, Root(b.tree_hash_root().0))
        }
    } else if HEADER_VERSIONS.contains(&v) {
        if block.is_some() {
            return Err(SignRequestError::Malformed(format!(
                "beacon_block.block: not allowed for version {v}, which carries a `block_header`"
            )));
        }
        let Some(header) = block_header else {
            return Err(SignRequestError::Malformed(format!(
                "beacon_block.block_header: missing, version {v} carries a block header"
            )));
        };
        (header.slot, Root(header.tree_hash_root().0))
    } else {
        return Err(SignRequestError::Malformed(format!(
            "beacon_block.version: unknown version {v:?}, expected one of {}",
            [FULL_BLOCK_VERSIONS, HEADER_VERSIONS].concat().join(", ")
        )));
    };
    block_task(
        kind,
        &req.fork_info,
        req.signing_root,
        slot,
        root,
        slots_per_epoch,
    )
}

/// Finishes a non-slashable request signed with `domain_type` at `epoch`.
fn plain_task<T: TreeHash>(
    kind: &'static str,
    fork_info: &ForkInfo,
    provided: Option<Root>,
    domain_type: DomainType,
    epoch: u64,
    object: &T,
) -> Result<SigningTask, SignRequestError> {
    let domain = fork_info.domain(domain_type, epoch);
    finish(
        kind,
        compute_signing_root(object, domain),
        provided,
        None,
        Some(fork_info.genesis_validators_root),
        Some(epoch),
    )
}

fn aggregation_slot<P: Preset>(
    kind: &'static str,
    body: &[u8],
    slots_per_epoch: u64,
) -> Result<SigningTask, SignRequestError> {
    let req: AggregationSlotShape<P> = from_json(body)?;
    let slot = req.aggregation_slot.slot;
    let epoch = (slot) / slots_per_epoch;
    plain_task(
        kind,
        &req.fork_info,
        req.signing_root,
        DOMAIN_SELECTION_PROOF,
        epoch,
        &slot,
    )
}

fn aggregate_and_proof<P: Preset>(
    kind: &'static str,
    body: &[u8],
    slots_per_epoch: u64,
) -> Result<SigningTask, SignRequestError> {
    let req: AggregateAndProofShape<P> = from_json(body)?;
    let agg = &req.aggregate_and_proof;
    let epoch = (agg.aggregate.data.slot) / slots_per_epoch;
    plain_task(
        kind,
        &req.fork_info,
        req.signing_root,
        DOMAIN_AGGREGATE_AND_PROOF,
        epoch,
        agg,
    )
}

fn aggregate_and_proof_v2<P: Preset>(
    kind: &'static str,
    body: &[u8],
    slots_per_epoch: u64,
) -> Result<SigningTask, SignRequestError> {
    let req: AggregateAndProofV2Shape<P> = from_json(body)?;
    let VersionedData { version, data } = &req.aggregate_and_proof;
    let v = version.as_str();
    let prefix = "aggregate_and_proof.data";
    let (slot, root) = if PHASE0_AGGREGATE_VERSIONS.contains(&v) {
        let agg: AggregateAndProof = from_value(prefix, data)?;
        (agg.aggregate.data.slot, agg.tree_hash_root())
    } else if ELECTRA_AGGREGATE_VERSIONS.contains(&v) {
        let agg: AggregateAndProofElectra<P> = from_value(prefix, data)?;
        (agg.aggregate.data.slot, agg.tree_hash_root())
    } else {
        return Err(SignRequestError::Malformed(format!(
            "aggregate_and_proof.version: unknown version {v:?}, expected one of {}",
            [PHASE0_AGGREGATE_VERSIONS, ELECTRA_AGGREGATE_VERSIONS]
                .concat()
                .join(", ")
        )));
    };
    plain_task(
        kind,
        &req.fork_info,
        req.signing_root,
        DOMAIN_AGGREGATE_AND_PROOF,
        (slot) / slots_per_epoch,
        &Root(root.0),
    )
}

fn randao_reveal<P: Preset>(
    kind: &'static str,
    body: &[u8],
) -> Result<SigningTask, SignRequestError> {
    let req: RandaoRevealShape<P> = from_json(body)?;
    let epoch = req.randao_reveal.epoch;
    plain_task(
        kind,
        &req.fork_info,
        req.signing_root,
        DOMAIN_RANDAO,
        epoch,
        &epoch,
    )
}

fn sync_committee_message<P: Preset>(
    kind: &'static str,
    body: &[u8],
    slots_per_epoch: u64,
) -> Result<SigningTask, SignRequestError> {
    let req: SyncCommitteeMessageShape<P> = from_json(body)?;
    let msg = &req.sync_committee_message;
    plain_task(
        kind,
        &req.fork_info,
        req.signing_root,
        DOMAIN_SYNC_COMMITTEE,
        (msg.slot) / slots_per_epoch,
        &msg.beacon_block_root,
    )
}

fn sync_committee_selection_proof<P: Preset>(
    kind: &'static str,
    body: &[u8],
    slots_per_epoch: u64,
) -> Result<SigningTask, SignRequestError> {
    let req: SyncSelectionShape<P> = from_json(body)?;
    let data = &req.sync_aggregator_selection_data;
    plain_task(
        kind,
        &req.fork_info,
        req.signing_root,
        DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF,
        (data.slot) / slots_per_epoch,
        data,
    )
}

fn contribution_and_proof<P: Preset>(
    kind: &'static str,
    body: &[u8],
    slots_per_epoch: u64,
) -> Result<SigningTask, SignRequestError> {
    let req: ContributionShape<P> = from_json(body)?;
    let cap = &req.contribution_and_proof;
    plain_task(
        kind,
        &req.fork_info,
        req.signing_root,
        DOMAIN_CONTRIBUTION_AND_PROOF,
        (cap.contribution.slot) / slots_per_epoch,
        cap,
    )
}

fn deposit(kind: &'static str, body: &[u8]) -> Result<SigningTask, SignRequestError> {
    let req: DepositShape = from_json(body)?;
    let d = req.deposit;
    let message = DepositMessage {
        pubkey: d.pubkey,
        withdrawal_credentials: d.withdrawal_credentials,
        amount: d.amount,
    };
    // phase0 `process_deposit`: deposits are valid across forks, so the domain uses the
    // genesis fork version and no genesis validators root.
    let domain = compute_domain(DOMAIN_DEPOSIT, d.genesis_fork_version, Root::ZERO);
    finish(
        kind,
        compute_signing_root(&message, domain),
        req.signing_root,
        None,
        req.fork_info.map(|f| f.genesis_validators_root),
        None,
    )
}

/// `VOLUNTARY_EXIT`: the domain follows EIP-7044 from the network's Deneb epoch on, see
/// [`ChainSpec::voluntary_exit_domain`]. Not slashable.
fn voluntary_exit<P: Preset>(
    kind: &'static str,
    body: &[u8],
    chain: &ChainSpec,
) -> Result<SigningTask, SignRequestError> {
    let req: VoluntaryExitShape<P> = from_json(body)?;
    let exit = req.voluntary_exit;
    let domain = chain.voluntary_exit_domain(exit.epoch, &req.fork_info);
    finish(
        kind,
        compute_signing_root(&exit, domain),
        req.signing_root,
        None,
        Some(req.fork_info.genesis_validators_root),
        Some(exit.epoch),
    )
}

/// `VALIDATOR_REGISTRATION`: builder-specs `ValidatorRegistrationV1` with
/// [`ChainSpec::builder_domain`]. Not slashable.
fn validator_registration(
    kind: &'static str,
    body: &[u8],
    chain: &ChainSpec,
) -> Result<SigningTask, SignRequestError> {
    let req: ValidatorRegistrationShape = from_json(body)?;
    finish(
        kind,
        compute_signing_root(&req.validator_registration, chain.builder_domain()),
        req.signing_root,
        None,
        req.fork_info.map(|f| f.genesis_validators_root),
        None,
    )
}

/// Builds the JSON body of an `ATTESTATION` sign request in the Web3Signer shape, including
/// the `signingRoot` a real client sends (mainnet preset). For duty simulators and tests.
pub fn attestation_request_json(fork_info: &ForkInfo, data: &AttestationData) -> serde_json::Value {
    let root = compute_signing_root(
        data,
        fork_info.domain(DOMAIN_BEACON_ATTESTER, data.target.epoch),
    );
    serde_json::json!({
        "type": "ATTESTATION",
        "fork_info": fork_info,
        "signingRoot": root,
        "attestation": data,
    })
}

/// Builds the JSON body of a `BLOCK_V2` sign request carrying a block header, in the Web3Signer
/// shape with its `signingRoot` (mainnet preset). `version` is the block's fork, one of
/// `BELLATRIX`, `CAPELLA`, `DENEB`, `ELECTRA`, `FULU`; other values give a body that
/// [`signing_task_from_json`] rejects.
pub fn block_v2_header_request_json(
    fork_info: &ForkInfo,
    version: &str,
    header: &BeaconBlockHeader,
) -> serde_json::Value {
    let domain = fork_info.domain(DOMAIN_BEACON_PROPOSER, Mainnet::epoch_at_slot(header.slot));
    serde_json::json!({
        "type": "BLOCK_V2",
        "fork_info": fork_info,
        "signingRoot": compute_signing_root(header, domain),
        "beacon_block": { "version": version, "block_header": header },
    })
}
