//! Signing roots of Web3Signer sign requests and the consensus-spec domain functions, checked
//! against external vectors read in place (`failover_common::vectors`):
//! - `web3signer/_extracted/sign_request_examples.json`: the 25 request examples of Web3Signer's
//!   OpenAPI (`signing/paths/sign.yaml`), each with its `signingRoot`;
//! - `consensus-specs/_extracted/signing_constants_and_vectors.json`: mainnet fork digests and a
//!   real BLSToExecutionChange signed by staking-deposit-cli;
//! - `web3signer/acceptance-tests/.../deposit_data-*.json`: real staking-deposit-cli deposits.

use std::collections::BTreeMap;

use failover_common::eth::*;
use failover_common::types::{Pubkey, Root, Signature, Version};
use failover_common::vectors;
use proptest::prelude::*;
use serde_json::{json, Value};
use tree_hash::TreeHash;

const EXAMPLES: &str = "web3signer/_extracted/sign_request_examples.json";
const CONSENSUS: &str = "consensus-specs/_extracted/signing_constants_and_vectors.json";

/// How each Web3Signer OpenAPI example must behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Parsed verbatim with the mainnet preset, computes the example's `signingRoot`.
    Match,
    /// Built with the minimal preset (4-byte `sync_committee_bits`, 1-byte contribution
    /// `aggregation_bits`): matches with [`Minimal`], and mainnet rejects the bitvector length.
    MatchMinimal(&'static str),
    /// Spells message fields in camelCase, against the schema and Web3Signer's own
    /// deserializers: verbatim it is rejected as an unknown camelCase field; with snake_case
    /// keys it matches. (camelCase `fork_info` fields alone are accepted as aliases.)
    MatchAfterSnakeCase,
    /// The example's `signingRoot` is stale: the spec container root, recomputed independently
    /// with remerkleable 0.1.28 (Python) from the same JSON, is this value, and ours agrees.
    StaleRoot(&'static str),
    /// A Web3Signer type this build refuses as unsupported.
    Unsupported,
}

/// Electra `AggregateAndProof` root of the Web3Signer ELECTRA/FULU aggregate examples (domain
/// `0x06000000`, fork version `0x00000001`), recomputed with remerkleable.
const ELECTRA_AGGREGATE_SPEC_ROOT: &str =
    "0x1180bcb41bda522b3420274c6e4931c37ecf4eef99a57e4d04fc81e82b2ced40";

fn expectations() -> BTreeMap<&'static str, Expect> {
    use Expect::*;
    BTreeMap::from([
        ("BLOCK_V2 (FULU)", Match),
        ("BLOCK_V2 (ELECTRA)", Match),
        ("BLOCK_V2 (DENEB)", Match),
        ("BLOCK_V2 (CAPELLA)", Match),
        ("BLOCK_V2 (BELLATRIX)", Match),
        (
            "BLOCK_V2 (ALTAIR)",
            MatchMinimal("beacon_block.block.body.sync_aggregate.sync_committee_bits"),
        ),
        ("BLOCK_V2 (PHASE 0)", Match),
        ("BLOCK (DEPRECATED)", MatchAfterSnakeCase),
        ("ATTESTATION", Match),
        // camelCase fork fields (`previousVersion`, `currentVersion`) are accepted as aliases.
        ("AGGREGATION_SLOT", Match),
        (
            "AGGREGATE_AND_PROOF_V2 (FULU)",
            StaleRoot(ELECTRA_AGGREGATE_SPEC_ROOT),
        ),
        (
            "AGGREGATE_AND_PROOF_V2 (ELECTRA)",
            StaleRoot(ELECTRA_AGGREGATE_SPEC_ROOT),
        ),
        ("AGGREGATE_AND_PROOF_V2 (DENEB)", Match),
        ("AGGREGATE_AND_PROOF_V2 (CAPELLA)", Match),
        ("AGGREGATE_AND_PROOF_V2 (BELLATRIX)", Match),
        ("AGGREGATE_AND_PROOF_V2 (ALTAIR)", Match),
        ("AGGREGATE_AND_PROOF_V2 (PHASE 0)", Match),
        ("AGGREGATE_AND_PROOF (DEPRECATED)", Match),
        ("RANDAO_REVEAL", Match),
        ("VOLUNTARY_EXIT", Unsupported),
        ("SYNC_COMMITTEE_MESSAGE", Match),
        ("SYNC_COMMITTEE_SELECTION_PROOF", Match),
        (
            "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF",
            MatchMinimal("contribution_and_proof.contribution.aggregation_bits"),
        ),
        ("VALIDATOR_REGISTRATION", Unsupported),
        ("DEPOSIT", Match),
    ])
}

/// The examples as (name, request) pairs, in file order.
fn examples() -> Vec<(String, Value)> {
    let file: Value = serde_json::from_str(&vectors::read(EXAMPLES)).expect("examples JSON");
    file["examples"]
        .as_array()
        .expect("`examples` array")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("example name").to_string();
            (name, e["request"].clone())
        })
        .collect()
}

fn example(name: &str) -> Value {
    examples()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("example {name:?} missing from {EXAMPLES}"))
        .1
}

fn root(s: &str) -> Root {
    s.parse().expect("0x root")
}

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialize JSON")
}

/// Renames every camelCase key (except the top-level `signingRoot`, which is camelCase in the
/// spec) to snake_case, leaving values alone.
fn snake_case_keys(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = if k == "signingRoot" {
                        k.clone()
                    } else {
                        k.chars().fold(String::new(), |mut s, c| {
                            if c.is_ascii_uppercase() {
                                s.push('_');
                                s.push(c.to_ascii_lowercase());
                            } else {
                                s.push(c);
                            }
                            s
                        })
                    };
                    (key, snake_case_keys(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(snake_case_keys).collect()),
        other => other.clone(),
    }
}

fn malformed(result: Result<SigningTask, SignRequestError>) -> String {
    match result {
        Err(SignRequestError::Malformed(msg)) => msg,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn every_web3signer_example_is_accounted_for_and_supported_ones_match_their_signing_root() {
    let expect = expectations();
    let examples = examples();
    let names: Vec<&str> = examples.iter().map(|(n, _)| n.as_str()).collect();
    let expected_names: Vec<&str> = expect.keys().copied().collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected_names, "examples added or removed upstream");

    let mut matched = 0;
    let mut stale = 0;
    let mut unsupported = 0;
    for (name, req) in &examples {
        let kind = req["type"].as_str().expect("type");
        let want = root(req["signingRoot"].as_str().expect("signingRoot"));
        let rule = expect[name.as_str()];
        assert_eq!(
            SUPPORTED_TYPES.contains(&kind),
            rule != Expect::Unsupported,
            "{name}: supported types and expectations disagree"
        );
        match rule {
            Expect::Match => {
                let task =
                    signing_task_from_json(&body(req)).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(task.signing_root, want, "{name}");
                assert_eq!(task.kind, kind, "{name}");
                assert_eq!(
                    task.slashable.is_some(),
                    SLASHABLE_TYPES.contains(&kind),
                    "{name}"
                );
                matched += 1;
            }
            Expect::MatchMinimal(field) => {
                let msg = malformed(signing_task_from_json(&body(req)));
                assert!(msg.starts_with(field), "{name}: {msg}");
                let task = signing_task_from_json_with_preset::<Minimal>(&body(req))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(task.signing_root, want, "{name}");
                matched += 1;
            }
            Expect::MatchAfterSnakeCase => {
                let msg = malformed(signing_task_from_json(&body(req)));
                let unknown = msg
                    .split_once("unknown field `")
                    .and_then(|(_, rest)| rest.split_once('`'))
                    .map(|(field, _)| field)
                    .unwrap_or_else(|| panic!("{name}: {msg}"));
                assert!(
                    unknown.chars().any(|c| c.is_ascii_uppercase()),
                    "{name}: {msg}"
                );
                let fixed = snake_case_keys(req);
                let task =
                    signing_task_from_json(&body(&fixed)).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(task.signing_root, want, "{name}");
                matched += 1;
            }
            Expect::StaleRoot(spec_root) => {
                match signing_task_from_json(&body(req)) {
                    Err(SignRequestError::SigningRootMismatch { computed, provided }) => {
                        assert_eq!(computed, root(spec_root), "{name}");
                        assert_eq!(provided, want, "{name}");
                    }
                    other => panic!("{name}: expected a mismatch, got {other:?}"),
                }
                let mut without = req.clone();
                without.as_object_mut().unwrap().remove("signingRoot");
                let task = signing_task_from_json(&body(&without)).expect(name);
                assert_eq!(task.signing_root, root(spec_root), "{name}");
                stale += 1;
            }
            Expect::Unsupported => {
                match signing_task_from_json(&body(req)) {
                    Err(e @ SignRequestError::UnsupportedType(_)) => {
                        assert_eq!(e.to_string(), format!("type {kind} is not supported yet"));
                    }
                    other => panic!("{name}: expected UnsupportedType, got {other:?}"),
                }
                unsupported += 1;
            }
        }
    }
    assert_eq!(
        (matched, stale, unsupported),
        (21, 2, 2),
        "examples checked against Web3Signer's signingRoot / stale / unsupported"
    );
}

#[test]
fn attestation_example_matches_web3signer_signing_root() {
    let task = signing_task_from_json(&body(&example("ATTESTATION"))).unwrap();
    assert_eq!(
        task,
        SigningTask {
            kind: "ATTESTATION",
            signing_root: root(
                "0x548c9a015f4c96cb8b1ddbbdfca85846f85bf9f344a434c140f378cdfb5341f0"
            ),
            slashable: Some(SlashableMessage::Attestation {
                source_epoch: 0,
                target_epoch: 0
            }),
            genesis_validators_root: Some(root(
                "0x04700007fabc8282644aed6d1c7c9e21d38a03a0c4ba193f3afe428824b3a673"
            )),
            epoch: Some(0),
        }
    );
}

#[test]
fn block_v2_examples_record_the_block_slot_for_every_version() {
    for version in [
        "PHASE 0",
        "ALTAIR",
        "BELLATRIX",
        "CAPELLA",
        "DENEB",
        "ELECTRA",
        "FULU",
    ] {
        let req = example(&format!("BLOCK_V2 ({version})"));
        let task = signing_task_from_json_with_preset::<Minimal>(&body(&req)).unwrap();
        assert_eq!(task.kind, "BLOCK_V2");
        assert_eq!(task.slashable, Some(SlashableMessage::Block { slot: 0 }));
        assert_eq!(task.epoch, Some(0));
    }
}

#[test]
fn full_block_root_equals_the_root_of_its_header() {
    let req = example("BLOCK_V2 (PHASE 0)");
    let block: BeaconBlock = serde_json::from_value(req["beacon_block"]["block"].clone()).unwrap();
    let header = block.header();
    assert_eq!(header.tree_hash_root(), block.tree_hash_root());

    // The same block sent as a header (the Bellatrix-on shape) signs the same root.
    let as_header = json!({
        "type": "BLOCK_V2",
        "fork_info": req["fork_info"],
        "beacon_block": { "version": "BELLATRIX", "block_header": header },
    });
    let from_header = signing_task_from_json(&body(&as_header)).unwrap();
    let from_block = signing_task_from_json(&body(&req)).unwrap();
    assert_eq!(from_header.signing_root, from_block.signing_root);
}

#[test]
fn stale_web3signer_electra_root_differs_from_the_phase0_layout_of_the_same_aggregate() {
    // Guards the reason the ELECTRA/FULU examples are treated as stale: neither their root nor
    // ours is the phase0 container root of the same JSON (which a signer that ignored
    // `committee_bits` would compute).
    let req = example("AGGREGATE_AND_PROOF_V2 (ELECTRA)");
    let mut as_deneb = req.clone();
    as_deneb["aggregate_and_proof"]["version"] = json!("DENEB");
    as_deneb["aggregate_and_proof"]["data"]["aggregate"]
        .as_object_mut()
        .unwrap()
        .remove("committee_bits");
    as_deneb.as_object_mut().unwrap().remove("signingRoot");
    let phase0 = signing_task_from_json(&body(&as_deneb)).unwrap();
    assert_ne!(phase0.signing_root, root(ELECTRA_AGGREGATE_SPEC_ROOT));
    assert_ne!(
        phase0.signing_root,
        root(req["signingRoot"].as_str().unwrap())
    );
}

#[test]
fn unsupported_examples_match_their_roots_with_the_network_domains() {
    // VOLUNTARY_EXIT: before Deneb, get_domain at the exit epoch (all versions are 0x00000001).
    let req = example("VOLUNTARY_EXIT");
    let fork_info: ForkInfo = serde_json::from_value(req["fork_info"].clone()).unwrap();
    let exit: VoluntaryExit = serde_json::from_value(req["voluntary_exit"].clone()).unwrap();
    let domain = fork_info.domain(DOMAIN_VOLUNTARY_EXIT, exit.epoch);
    assert_eq!(
        compute_signing_root(&exit, domain),
        root(req["signingRoot"].as_str().unwrap())
    );

    // VALIDATOR_REGISTRATION: builder domain, genesis fork version 0x00000001, zero GVR.
    let req = example("VALIDATOR_REGISTRATION");
    let reg: ValidatorRegistration =
        serde_json::from_value(req["validator_registration"].clone()).unwrap();
    let domain = compute_domain(
        DOMAIN_APPLICATION_BUILDER,
        Version([0, 0, 0, 1]),
        Root::ZERO,
    );
    assert_eq!(
        compute_signing_root(&reg, domain),
        root(req["signingRoot"].as_str().unwrap())
    );
}

fn consensus_vectors() -> Value {
    serde_json::from_str(&vectors::read(CONSENSUS)).expect("consensus vectors JSON")
}

#[test]
fn mainnet_fork_digests_match_eth_clients_mainnet() {
    let v = consensus_vectors();
    let g = &v["mainnet_genesis"];
    let gvr = root(g["genesis_validators_root"].as_str().unwrap());
    let version: Version = g["genesis_fork_version"].as_str().unwrap().parse().unwrap();
    let digest = |r: Root| format!("0x{}", hex::encode(&r.0[..4]));
    assert_eq!(
        digest(compute_fork_data_root(version, gvr)),
        g["genesis_fork_digest"].as_str().unwrap()
    );
    assert_eq!(
        digest(compute_fork_data_root(version, Root::ZERO)),
        g["pre_genesis_fork_digest"].as_str().unwrap()
    );
}

#[test]
fn domain_constants_match_the_consensus_specs() {
    let v = consensus_vectors();
    let ours = [
        ("DOMAIN_BEACON_PROPOSER", DOMAIN_BEACON_PROPOSER),
        ("DOMAIN_BEACON_ATTESTER", DOMAIN_BEACON_ATTESTER),
        ("DOMAIN_RANDAO", DOMAIN_RANDAO),
        ("DOMAIN_DEPOSIT", DOMAIN_DEPOSIT),
        ("DOMAIN_VOLUNTARY_EXIT", DOMAIN_VOLUNTARY_EXIT),
        ("DOMAIN_SELECTION_PROOF", DOMAIN_SELECTION_PROOF),
        ("DOMAIN_AGGREGATE_AND_PROOF", DOMAIN_AGGREGATE_AND_PROOF),
        ("DOMAIN_SYNC_COMMITTEE", DOMAIN_SYNC_COMMITTEE),
        (
            "DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF",
            DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF,
        ),
        (
            "DOMAIN_CONTRIBUTION_AND_PROOF",
            DOMAIN_CONTRIBUTION_AND_PROOF,
        ),
        (
            "DOMAIN_BLS_TO_EXECUTION_CHANGE",
            DOMAIN_BLS_TO_EXECUTION_CHANGE,
        ),
        // The spec's APPLICATION_MASK is the builder domain (builder-specs).
        ("DOMAIN_APPLICATION_MASK", DOMAIN_APPLICATION_BUILDER),
    ];
    for (name, value) in ours {
        let spec = v["domain_types"][name]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} missing from {CONSENSUS}"));
        assert_eq!(format!("0x{}", hex::encode(value)), spec, "{name}");
    }
}

#[test]
fn bls_to_execution_change_vector_has_the_spec_domain_root_and_a_valid_signature() {
    let v = consensus_vectors();
    let vectors = v["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 1);
    let t = &vectors[0];
    let change: BlsToExecutionChange = serde_json::from_value(t["message"].clone()).unwrap();
    let domain_type: [u8; 4] = hex::decode(&t["domain_type"].as_str().unwrap()[2..])
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(domain_type, DOMAIN_BLS_TO_EXECUTION_CHANGE);
    let domain = compute_domain(
        domain_type,
        t["fork_version"].as_str().unwrap().parse().unwrap(),
        root(t["genesis_validators_root"].as_str().unwrap()),
    );
    let computed = &t["research_helper_computed"];
    assert_eq!(
        format!("0x{}", hex::encode(domain)),
        computed["domain"].as_str().unwrap()
    );
    let signing_root = compute_signing_root(&change, domain);
    assert_eq!(
        signing_root,
        root(computed["signing_root"].as_str().unwrap())
    );
    let sig: Signature = t["signature"].as_str().unwrap().parse().unwrap();
    assert!(verify(&change.from_bls_pubkey, &signing_root, &sig));
    let mut other = signing_root;
    other.0[31] ^= 1;
    assert!(!verify(&change.from_bls_pubkey, &other, &sig));
}

#[test]
fn real_deposits_sign_over_the_deposit_request_root() {
    let mut checked = 0;
    for network in ["pyrmont", "medalla"] {
        let rel = format!(
            "web3signer/acceptance-tests/src/test/resources/eth2/deposit_data-{network}.json"
        );
        let deposits: Vec<Value> = serde_json::from_str(&vectors::read(&rel)).unwrap();
        for d in deposits {
            let hex0x = |k: &str| format!("0x{}", d[k].as_str().unwrap());
            let amount = d["amount"].as_u64().unwrap();
            let req = json!({
                "type": "DEPOSIT",
                "deposit": {
                    "pubkey": hex0x("pubkey"),
                    "withdrawal_credentials": hex0x("withdrawal_credentials"),
                    "amount": amount.to_string(),
                    "genesis_fork_version": hex0x("fork_version"),
                },
            });
            let task = signing_task_from_json(&body(&req)).unwrap();
            assert_eq!(task.kind, "DEPOSIT");
            assert_eq!((task.slashable, task.epoch), (None, None));

            let pubkey: Pubkey = hex0x("pubkey").parse().unwrap();
            let signature: Signature = hex0x("signature").parse().unwrap();
            assert!(verify(&pubkey, &task.signing_root, &signature), "{rel}");

            let message = DepositMessage {
                pubkey,
                withdrawal_credentials: hex0x("withdrawal_credentials").parse().unwrap(),
                amount,
            };
            assert_eq!(
                Root(message.tree_hash_root().0),
                root(&hex0x("deposit_message_root"))
            );
            let data = DepositData {
                pubkey,
                withdrawal_credentials: message.withdrawal_credentials,
                amount,
                signature,
            };
            assert_eq!(
                Root(data.tree_hash_root().0),
                root(&hex0x("deposit_data_root"))
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}

#[test]
fn preset_limits_match_the_consensus_spec_presets() {
    use ssz_types::typenum::Unsigned;
    fn preset(name: &str, fork: &str) -> BTreeMap<String, u64> {
        vectors::read(&format!("consensus-specs/presets/{name}/{fork}.yaml"))
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }
    for name in ["mainnet", "minimal"] {
        let p0 = preset(name, "phase0");
        assert_eq!(p0["MAX_VALIDATORS_PER_COMMITTEE"], 2048);
        assert_eq!(
            p0["MAX_VALIDATORS_PER_COMMITTEE"] as usize,
            limits::MaxValidatorsPerCommittee::USIZE
        );
        assert_eq!(
            p0["MAX_PROPOSER_SLASHINGS"] as usize,
            limits::MaxProposerSlashings::USIZE
        );
        assert_eq!(
            p0["MAX_ATTESTER_SLASHINGS"] as usize,
            limits::MaxAttesterSlashings::USIZE
        );
        assert_eq!(
            p0["MAX_ATTESTATIONS"] as usize,
            limits::MaxAttestations::USIZE
        );
        assert_eq!(p0["MAX_DEPOSITS"] as usize, limits::MaxDeposits::USIZE);
        assert_eq!(
            p0["MAX_VOLUNTARY_EXITS"] as usize,
            limits::MaxVoluntaryExits::USIZE
        );
    }
    fn check<P: Preset>() {
        let p0 = preset(P::NAME, "phase0");
        let altair = preset(P::NAME, "altair");
        assert_eq!(p0["SLOTS_PER_EPOCH"], P::SLOTS_PER_EPOCH);
        assert_eq!(
            p0["MAX_COMMITTEES_PER_SLOT"] as usize,
            P::MaxCommitteesPerSlot::USIZE
        );
        assert_eq!(
            (p0["MAX_COMMITTEES_PER_SLOT"] * p0["MAX_VALIDATORS_PER_COMMITTEE"]) as usize,
            P::MaxValidatorsPerSlot::USIZE
        );
        assert_eq!(
            altair["SYNC_COMMITTEE_SIZE"] as usize,
            P::SyncCommitteeSize::USIZE
        );
        // SYNC_COMMITTEE_SUBNET_COUNT = 4 is a networking constant, not a preset value.
        assert_eq!(
            altair["SYNC_COMMITTEE_SIZE"] as usize / 4,
            P::SyncSubcommitteeSize::USIZE
        );
    }
    check::<Mainnet>();
    check::<Minimal>();
}

fn fork_info(previous: u8, current: u8, epoch: u64) -> ForkInfo {
    ForkInfo {
        fork: Fork {
            previous_version: Version([previous, 0, 0, 0]),
            current_version: Version([current, 0, 0, 0]),
            epoch,
        },
        genesis_validators_root: root(
            "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95",
        ),
    }
}

fn checkpoint(epoch: u64, byte: u8) -> Checkpoint {
    Checkpoint {
        epoch,
        root: Root([byte; 32]),
    }
}

#[test]
fn domain_switches_to_the_current_version_at_the_fork_epoch() {
    let fi = fork_info(3, 4, 100);
    for (target, version) in [(99, 3u8), (100, 4), (101, 4)] {
        let data = AttestationData {
            slot: target * 32,
            index: 0,
            beacon_block_root: Root([9; 32]),
            source: checkpoint(target - 1, 1),
            target: checkpoint(target, 2),
        };
        let task = signing_task_from_json(&body(&json!({
            "type": "ATTESTATION", "fork_info": fi, "attestation": data,
        })))
        .unwrap();
        let domain = compute_domain(
            DOMAIN_BEACON_ATTESTER,
            Version([version, 0, 0, 0]),
            fi.genesis_validators_root,
        );
        assert_eq!(task.signing_root, compute_signing_root(&data, domain));
        assert_eq!(task.epoch, Some(target));
    }
    // Blocks use the epoch of their slot: 32 slots per epoch on mainnet, 8 on minimal.
    let header = |slot| BeaconBlockHeader {
        slot,
        proposer_index: 7,
        parent_root: Root([1; 32]),
        state_root: Root([2; 32]),
        body_root: Root([3; 32]),
    };
    let block_root = |slot: u64, version: u8, minimal: bool| {
        let req = json!({
            "type": "BLOCK_V2", "fork_info": fi,
            "beacon_block": { "version": "DENEB", "block_header": header(slot) },
        });
        let task = if minimal {
            signing_task_from_json_with_preset::<Minimal>(&body(&req)).unwrap()
        } else {
            signing_task_from_json(&body(&req)).unwrap()
        };
        let domain = compute_domain(
            DOMAIN_BEACON_PROPOSER,
            Version([version, 0, 0, 0]),
            fi.genesis_validators_root,
        );
        assert_eq!(
            task.signing_root,
            compute_signing_root(&header(slot), domain),
            "slot {slot}, minimal {minimal}"
        );
        task.epoch
    };
    assert_eq!(block_root(3199, 3, false), Some(99));
    assert_eq!(block_root(3200, 4, false), Some(100));
    assert_eq!(block_root(799, 3, true), Some(99));
    assert_eq!(block_root(800, 4, true), Some(100));
}

fn attestation_body() -> Value {
    example("ATTESTATION")
}

#[test]
fn tampered_signing_root_is_a_mismatch() {
    let mut req = attestation_body();
    let good = root(req["signingRoot"].as_str().unwrap());
    let mut bad = good;
    bad.0[0] ^= 0x80;
    req["signingRoot"] = json!(bad);
    match signing_task_from_json(&body(&req)) {
        Err(SignRequestError::SigningRootMismatch { computed, provided }) => {
            assert_eq!((computed, provided), (good, bad));
        }
        other => panic!("expected SigningRootMismatch, got {other:?}"),
    }
}

#[test]
fn absent_signing_root_is_computed_not_required() {
    let mut req = attestation_body();
    let want = root(req["signingRoot"].as_str().unwrap());
    req.as_object_mut().unwrap().remove("signingRoot");
    assert_eq!(
        signing_task_from_json(&body(&req)).unwrap().signing_root,
        want
    );
}

#[test]
fn malformed_numbers_are_rejected_naming_the_field() {
    for bad in [
        json!("-1"),
        json!("1.5"),
        json!("0x10"),
        json!(""),
        json!("18446744073709551616"),
        json!(-1),
        json!(null),
    ] {
        let mut req = attestation_body();
        req["attestation"]["source"]["epoch"] = bad.clone();
        let msg = malformed(signing_task_from_json(&body(&req)));
        assert!(
            msg.starts_with("attestation.source.epoch: "),
            "{bad}: {msg}"
        );
    }
    let mut req = attestation_body();
    req["fork_info"]["fork"]["epoch"] = json!("one");
    let msg = malformed(signing_task_from_json(&body(&req)));
    assert!(msg.starts_with("fork_info.fork.epoch: "), "{msg}");
}

#[test]
fn malformed_hex_is_rejected_naming_the_field() {
    for (bad, why) in [
        ("0x1234", "expected 32 bytes"),
        (
            "b2eedb01adbd02c828d5eec09b4c70cbba12ffffba525ebf48aca33028e8ad89",
            "0x-prefixed",
        ),
        ("0xzz", "invalid hex"),
    ] {
        let mut req = attestation_body();
        req["attestation"]["beacon_block_root"] = json!(bad);
        let msg = malformed(signing_task_from_json(&body(&req)));
        assert!(msg.starts_with("attestation.beacon_block_root: "), "{msg}");
        assert!(msg.contains(why), "{msg}");
    }
}

#[test]
fn unknown_type_is_rejected() {
    let mut req = attestation_body();
    req["type"] = json!("ATTESTATION_V9");
    assert!(matches!(
        signing_task_from_json(&body(&req)),
        Err(SignRequestError::UnknownType(t)) if t == "ATTESTATION_V9"
    ));
    // Types are case-sensitive, as in Web3Signer's enum.
    req["type"] = json!("attestation");
    assert!(matches!(
        signing_task_from_json(&body(&req)),
        Err(SignRequestError::UnknownType(_))
    ));
}

#[test]
fn unknown_missing_and_duplicate_fields_are_rejected() {
    // Both spellings of one field at once are a duplicate, not a second value.
    let mut req = attestation_body();
    req["forkInfo"] = req["fork_info"].clone();
    let msg = malformed(signing_task_from_json(&body(&req)));
    assert!(msg.contains("duplicate field `fork_info`"), "{msg}");
    // camelCase fork fields alone (as some clients and Web3Signer's examples send) are accepted
    // and give the same signing root.
    let snake = signing_task_from_json(&body(&attestation_body())).unwrap();
    let mut camel = attestation_body();
    let fi = camel.as_object_mut().unwrap().remove("fork_info").unwrap();
    camel["forkInfo"] = json!({
        "fork": {
            "previousVersion": fi["fork"]["previous_version"],
            "currentVersion": fi["fork"]["current_version"],
            "epoch": fi["fork"]["epoch"],
        },
        "genesisValidatorsRoot": fi["genesis_validators_root"],
    });
    let task = signing_task_from_json(&body(&camel)).unwrap();
    assert_eq!(task.signing_root, snake.signing_root);

    let mut req = attestation_body();
    req["attestation"]["source"]["slot"] = json!("1");
    let msg = malformed(signing_task_from_json(&body(&req)));
    assert!(
        msg.starts_with("attestation.source.slot: unknown field"),
        "{msg}"
    );

    let mut req = attestation_body();
    req.as_object_mut().unwrap().remove("fork_info");
    let msg = malformed(signing_task_from_json(&body(&req)));
    assert!(msg.contains("missing field `fork_info`"), "{msg}");

    let mut req = attestation_body();
    req.as_object_mut().unwrap().remove("type");
    let msg = malformed(signing_task_from_json(&body(&req)));
    assert!(msg.contains("missing field `type`"), "{msg}");

    let text = String::from_utf8(body(&attestation_body())).unwrap();
    let twice = format!("{},\"attestation\":{{}}}}", text.strip_suffix('}').unwrap());
    let msg = malformed(signing_task_from_json(twice.as_bytes()));
    assert!(msg.contains("duplicate field `attestation`"), "{msg}");
}

#[test]
fn non_json_and_trailing_data_are_malformed() {
    for bad in [&b""[..], b"not json", b"[]", b"{\"type\": 5}"] {
        malformed(signing_task_from_json(bad));
    }
    let mut text = body(&attestation_body());
    text.extend_from_slice(b" {}");
    let msg = malformed(signing_task_from_json(&text));
    assert!(msg.contains("trailing"), "{msg}");
}

#[test]
fn block_v2_versions_must_carry_their_own_shape() {
    let header_req = example("BLOCK_V2 (DENEB)");
    let block_req = example("BLOCK_V2 (PHASE 0)");

    let mut req = header_req.clone();
    req["beacon_block"]["version"] = json!("GLOAS");
    let msg = malformed(signing_task_from_json(&body(&req)));
    assert!(msg.starts_with("beacon_block.version: "), "{msg}");

    let mut req = header_req.clone();
    req["beacon_block"]["version"] = json!("deneb");
    malformed(signing_task_from_json(&body(&req)));

    let mut req = header_req.clone();
    req["beacon_block"]["version"] = json!("PHASE0");
    let msg = malformed(signing_task_from_json(&body(&req)));
    assert!(msg.starts_with("beacon_block.block_header: "), "{msg}");

    let mut req = block_req.clone();
    req["beacon_block"]["version"] = json!("CAPELLA");
    let msg = malformed(signing_task_from_json(&body(&req)));
    assert!(msg.starts_with("beacon_block.block: "), "{msg}");

    let mut req = block_req.clone();
    req["beacon_block"]["block"]["body"]["graffiti"] = json!("0x00");
    let msg = malformed(signing_task_from_json(&body(&req)));
    assert!(
        msg.starts_with("beacon_block.block.body.graffiti: "),
        "{msg}"
    );
}

#[test]
fn lists_over_their_preset_limit_are_rejected() {
    let mut req = example("BLOCK_V2 (PHASE 0)");
    let exit = req["beacon_block"]["block"]["body"]["voluntary_exits"][0].clone();
    req["beacon_block"]["block"]["body"]["voluntary_exits"] = json!(vec![exit; 17]);
    let msg = malformed(signing_task_from_json(&body(&req)));
    assert!(
        msg.starts_with("beacon_block.block.body.voluntary_exits: "),
        "{msg}"
    );
}

#[test]
fn voluntary_exit_and_validator_registration_are_refused_as_unsupported() {
    for (kind, name) in [
        ("VOLUNTARY_EXIT", "VOLUNTARY_EXIT"),
        ("VALIDATOR_REGISTRATION", "VALIDATOR_REGISTRATION"),
    ] {
        let err = signing_task_from_json(&body(&example(name))).unwrap_err();
        assert_eq!(err, SignRequestError::UnsupportedType(kind.to_string()));
        assert_eq!(err.to_string(), format!("type {kind} is not supported yet"));
    }
}

#[test]
fn containers_round_trip_through_the_web3signer_json_shape() {
    let req = example("ATTESTATION");
    let data: AttestationData = serde_json::from_value(req["attestation"].clone()).unwrap();
    assert_eq!(serde_json::to_value(data).unwrap(), req["attestation"]);
    let fi: ForkInfo = serde_json::from_value(req["fork_info"].clone()).unwrap();
    assert_eq!(serde_json::to_value(fi).unwrap(), req["fork_info"]);

    let req = example("BLOCK_V2 (FULU)");
    let header: BeaconBlockHeader =
        serde_json::from_value(req["beacon_block"]["block_header"].clone()).unwrap();
    assert_eq!(
        serde_json::to_value(header).unwrap(),
        req["beacon_block"]["block_header"]
    );

    let req = example("BLOCK_V2 (PHASE 0)");
    let block: BeaconBlock = serde_json::from_value(req["beacon_block"]["block"].clone()).unwrap();
    assert_eq!(
        serde_json::to_value(&block).unwrap(),
        req["beacon_block"]["block"]
    );

    // The request builders produce exactly the example bodies.
    assert_eq!(attestation_request_json(&fi, &data), example("ATTESTATION"));
    assert_eq!(
        block_v2_header_request_json(&fi, "FULU", &header),
        example("BLOCK_V2 (FULU)")
    );
}

fn arb_root() -> impl Strategy<Value = Root> {
    any::<[u8; 32]>().prop_map(Root)
}

prop_compose! {
    fn arb_attestation()(
        slot in any::<u64>(), index in any::<u64>(), head in arb_root(),
        source in any::<u64>(), target in any::<u64>(), sr in arb_root(), tr in arb_root(),
    ) -> AttestationData {
        AttestationData {
            slot, index, beacon_block_root: head,
            source: Checkpoint { epoch: source, root: sr },
            target: Checkpoint { epoch: target, root: tr },
        }
    }
}

prop_compose! {
    fn arb_fork_info()(prev in any::<[u8; 4]>(), cur in any::<[u8; 4]>(), epoch in any::<u64>(), gvr in arb_root()) -> ForkInfo {
        ForkInfo {
            fork: Fork { previous_version: Version(prev), current_version: Version(cur), epoch },
            genesis_validators_root: gvr,
        }
    }
}

proptest! {
    #[test]
    fn built_attestation_requests_parse_back_to_their_signing_root(
        data in arb_attestation(), fi in arb_fork_info(), flip in 0usize..256,
    ) {
        let req = attestation_request_json(&fi, &data);
        let task = signing_task_from_json(&body(&req)).unwrap();
        let version = if data.target.epoch < fi.fork.epoch {
            fi.fork.previous_version
        } else {
            fi.fork.current_version
        };
        let domain = compute_domain(DOMAIN_BEACON_ATTESTER, version, fi.genesis_validators_root);
        prop_assert_eq!(task.signing_root, compute_signing_root(&data, domain));
        prop_assert_eq!(task.slashable, Some(SlashableMessage::Attestation {
            source_epoch: data.source.epoch,
            target_epoch: data.target.epoch,
        }));
        prop_assert_eq!(task.genesis_validators_root, Some(fi.genesis_validators_root));

        // Any single-bit change of the client's signingRoot is refused.
        let mut bad = task.signing_root;
        bad.0[flip / 8] ^= 1 << (flip % 8);
        let mut tampered = req.clone();
        tampered["signingRoot"] = json!(bad);
        let is_mismatch = matches!(
            signing_task_from_json(&body(&tampered)),
            Err(SignRequestError::SigningRootMismatch { .. })
        );
        prop_assert!(is_mismatch);
    }

    #[test]
    fn built_block_requests_parse_back_with_their_slot(
        slot in any::<u64>(), proposer in any::<u64>(), parent in arb_root(), state in arb_root(),
        body_root in arb_root(), fi in arb_fork_info(),
    ) {
        let header = BeaconBlockHeader { slot, proposer_index: proposer, parent_root: parent, state_root: state, body_root };
        let req = block_v2_header_request_json(&fi, "ELECTRA", &header);
        let task = signing_task_from_json(&body(&req)).unwrap();
        prop_assert_eq!(task.slashable, Some(SlashableMessage::Block { slot }));
        prop_assert_eq!(task.epoch, Some(slot / 32));
        let parsed: BeaconBlockHeader = serde_json::from_value(req["beacon_block"]["block_header"].clone()).unwrap();
        prop_assert_eq!(parsed, header);
    }
}

/// A chain with 8 slots per epoch and a fork at epoch 4: slot 32 is already in the new fork,
/// although `32 / 32 = 1` would put it in the old one under the mainnet preset's epoch length.
#[test]
fn block_domain_uses_the_chains_slots_per_epoch() {
    use failover_common::eth::{
        block_v2_header_request_json, compute_domain, compute_signing_root,
        signing_task_from_json_for_chain, BeaconBlockHeader, Fork, ForkInfo, Mainnet,
        DOMAIN_BEACON_PROPOSER,
    };
    use failover_common::types::{Root, Version};
    let gvr = Root([3; 32]);
    let fork_info = ForkInfo {
        fork: Fork {
            previous_version: Version([0, 0, 0, 0]),
            current_version: Version([4, 0, 0, 0]),
            epoch: 4,
        },
        genesis_validators_root: gvr,
    };
    let header = BeaconBlockHeader {
        slot: 32,
        proposer_index: 1,
        parent_root: Root([1; 32]),
        state_root: Root([2; 32]),
        body_root: Root([5; 32]),
    };
    let mut body = block_v2_header_request_json(&fork_info, "DENEB", &header);
    body.as_object_mut().unwrap().remove("signingRoot");
    let bytes = serde_json::to_vec(&body).unwrap();
    let task = signing_task_from_json_for_chain::<Mainnet>(&bytes, 8).unwrap();
    let new_fork = compute_domain(DOMAIN_BEACON_PROPOSER, Version([4, 0, 0, 0]), gvr);
    assert_eq!(task.signing_root, compute_signing_root(&header, new_fork));
    assert_eq!(task.epoch, Some(4));
    let mainnet = signing_task_from_json_for_chain::<Mainnet>(&bytes, 32).unwrap();
    assert_ne!(
        mainnet.signing_root, task.signing_root,
        "epoch 1 < fork epoch: old fork version"
    );
    assert!(signing_task_from_json_for_chain::<Mainnet>(&bytes, 0).is_err());
}
