//! Signing roots of Web3Signer sign requests and the consensus-spec domain functions, checked
//! against external vectors read in place (`failover_common::vectors`):
//! - `web3signer/_extracted/sign_request_examples.json`: the 25 request examples of Web3Signer's
//!   OpenAPI (`signing/paths/sign.yaml`), each with its `signingRoot`;
//! - `consensus-specs/_extracted/signing_constants_and_vectors.json`: mainnet fork digests and a
//!   real BLSToExecutionChange signed by staking-deposit-cli;
//! - `web3signer/acceptance-tests/.../deposit_data-*.json`: real staking-deposit-cli deposits;
//! - `consensus-specs/configs/*.yaml`, `consensus-specs/presets/*/phase0.yaml` and
//!   `eth-clients-mainnet/metadata/config.yaml`: the network constants of [`ChainSpec`].

use std::collections::BTreeMap;

use failover_common::eth::*;
use failover_common::types::{Pubkey, Root, Signature, Version};
use failover_common::vectors;
use proptest::prelude::*;
use serde_json::{json, Value};
use tree_hash::TreeHash;

const EXAMPLES: &str = "web3signer/_extracted/sign_request_examples.json";
const CONSENSUS: &str = "consensus-specs/_extracted/signing_constants_and_vectors.json";

/// The network of Web3Signer's OpenAPI examples: they were produced by Teku test specs built
/// on the consensus-specs minimal config (`TestSpecFactory.createMinimal*` in Web3Signer's
/// `Eth2RequestUtils`), whose `GENESIS_FORK_VERSION` is `0x00000001`, as every example's
/// `fork_info` and `DEPOSIT` show. `VALIDATOR_REGISTRATION` matches only with that genesis
/// fork version; the other examples do not depend on the network constants.
const EXAMPLE_CHAIN: ChainSpec = ChainSpec::minimal();

/// How each Web3Signer OpenAPI example must behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Parsed verbatim with the mainnet preset (and [`EXAMPLE_CHAIN`]), computes the
    /// example's `signingRoot`.
    Match,
    /// Built with the minimal preset (4-byte `sync_committee_bits`, 1-byte contribution
    /// `aggregation_bits`): matches with [`Minimal`], and mainnet rejects the bitvector length.
    MatchMinimal(&'static str),
    /// Spells message fields in camelCase, against the schema and Web3Signer's own
    /// deserializers: verbatim it is rejected as an unknown camelCase field; with snake_case
    /// keys it matches. (camelCase `fork_info` fields alone are accepted as aliases.)
    MatchAfterSnakeCase,
    /// The example's `signingRoot` is inconsistent with its own body: this value is the
    /// consensus-spec root of the body, computed by us and independently (see
    /// [`ELECTRA_AGGREGATE_SPEC_ROOT`]).
    StaleRoot(&'static str),
}

/// Signing root of the Web3Signer `AGGREGATE_AND_PROOF_V2` ELECTRA and FULU examples (one body
/// in both) under the consensus-spec Electra containers, mainnet preset: `Attestation
/// {aggregation_bits: Bitlist[MAX_VALIDATORS_PER_COMMITTEE * MAX_COMMITTEES_PER_SLOT = 131072],
/// data, signature, committee_bits: Bitvector[MAX_COMMITTEES_PER_SLOT = 64]}`, domain
/// `DOMAIN_AGGREGATE_AND_PROOF` with fork version `0x00000001`.
///
/// Why the examples' own `signingRoot` (`0x2475…c9e0`) is treated as wrong, not ours:
/// - two independent Python SSZ implementations give this value for the spec shape:
///   remerkleable 0.1.28 (an earlier check) and a from-scratch merkleizer written for this
///   one, which also reproduces the DENEB example's stated root `0x8d77…b4f8` exactly;
/// - the same field order is in Web3Signer's own `schemas.yaml` (`AttestationElectra`) and in
///   Teku's `AttestationElectraSchema`, which Web3Signer signs with;
/// - no variant reproduces `0x2475…` (about 9,000 container variants, each under up to 90
///   domains): bitlist limits from 512 to 131072; `committee_bits` as 4, 8, 16 or 64 bits,
///   with every value of the one-byte forms, in any position, or absent (the phase0 shape,
///   which Web3Signer hashes when its network is still before Electra at the aggregate's slot,
///   since it picks the schema by slot and drops `committee_bits`); aggregator index 0 or 1;
///   the Deneb example's 4-byte `aggregation_bits`; ten fork versions of the mainnet and
///   minimal families; domain types 0x06, 0x05 and 0x01; the example's, the zero and the
///   mainnet genesis validators root; the `Attestation` or a signed wrapper as the object;
/// - the body mixes presets: its 8-byte `committee_bits` is valid only with the mainnet
///   preset (`MAX_COMMITTEES_PER_SLOT = 64`), while every other example comes from Teku's
///   minimal test specs, under which Web3Signer rejects it (`Bitvector[4]` is one byte);
/// - the two examples first appear when the OpenAPI moved to the repository root
///   (Consensys/web3signer `37776b79`, 2025-12-01) and the body occurs nowhere else in that
///   repository: the acceptance tests build their Electra aggregates from random data.
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
        // Exit epoch 119 is before Deneb on the example chain: `fork_info` decides.
        ("VOLUNTARY_EXIT", Match),
        ("SYNC_COMMITTEE_MESSAGE", Match),
        ("SYNC_COMMITTEE_SELECTION_PROOF", Match),
        (
            "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF",
            MatchMinimal("contribution_and_proof.contribution.aggregation_bits"),
        ),
        // Builder domain with the example chain's genesis fork version 0x00000001.
        ("VALIDATOR_REGISTRATION", Match),
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

/// Signs `signing_root` with interop key 0 (the examples carry no key of their own) and checks
/// with blst that the signature verifies for exactly that root.
fn assert_signature_verifies(name: &str, signing_root: Root) {
    let sk = failover_common::interop::secret_key(0);
    let pk = pubkey_of(&sk);
    let sig = sign(&sk, &signing_root);
    assert!(
        verify(&pk, &signing_root, &sig),
        "{name}: signature must verify"
    );
    let mut other = signing_root;
    other.0[0] ^= 1;
    assert!(!verify(&pk, &other, &sig), "{name}: verifies another root");
}

fn parse_example<P: Preset>(req: &Value) -> Result<SigningTask, SignRequestError> {
    signing_task_from_json_for_chain::<P>(&body(req), &EXAMPLE_CHAIN)
}

#[test]
fn every_web3signer_example_is_accounted_for_and_matches_its_signing_root_or_is_stale() {
    let expect = expectations();
    let examples = examples();
    let names: Vec<&str> = examples.iter().map(|(n, _)| n.as_str()).collect();
    let expected_names: Vec<&str> = expect.keys().copied().collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected_names, "examples added or removed upstream");

    // Every Web3Signer type is supported, and every type has an example here.
    assert_eq!(SUPPORTED_TYPES, WEB3SIGNER_TYPES);
    for t in WEB3SIGNER_TYPES {
        assert!(
            examples.iter().any(|(_, r)| r["type"] == *t),
            "no example of {t}"
        );
    }

    let mut matched = 0;
    let mut stale = 0;
    for (name, req) in &examples {
        let kind = req["type"].as_str().expect("type");
        let want = root(req["signingRoot"].as_str().expect("signingRoot"));
        match expect[name.as_str()] {
            Expect::Match => {
                let task = parse_example::<Mainnet>(req).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(task.signing_root, want, "{name}");
                assert_eq!(task.kind, kind, "{name}");
                assert_eq!(
                    task.slashable.is_some(),
                    SLASHABLE_TYPES.contains(&kind),
                    "{name}"
                );
                assert_signature_verifies(name, task.signing_root);
                matched += 1;
            }
            Expect::MatchMinimal(field) => {
                let msg = malformed(parse_example::<Mainnet>(req));
                assert!(msg.starts_with(field), "{name}: {msg}");
                let task = parse_example::<Minimal>(req).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(task.signing_root, want, "{name}");
                assert_signature_verifies(name, task.signing_root);
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
                    parse_example::<Mainnet>(&fixed).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(task.signing_root, want, "{name}");
                assert_signature_verifies(name, task.signing_root);
                matched += 1;
            }
            Expect::StaleRoot(spec_root) => {
                // The evidence is on ELECTRA_AGGREGATE_SPEC_ROOT; we keep computing the spec root
                // and refuse the example's stated one as a mismatch.
                match parse_example::<Mainnet>(req) {
                    Err(SignRequestError::SigningRootMismatch { computed, provided }) => {
                        assert_eq!(computed, root(spec_root), "{name}");
                        assert_eq!(provided, want, "{name}");
                    }
                    other => panic!("{name}: expected a mismatch, got {other:?}"),
                }
                let mut without = req.clone();
                without.as_object_mut().unwrap().remove("signingRoot");
                let task = parse_example::<Mainnet>(&without).expect(name);
                assert_eq!(task.signing_root, root(spec_root), "{name}");
                stale += 1;
            }
        }
    }
    assert_eq!(
        (matched, stale),
        (23, 2),
        "examples matching Web3Signer's signingRoot / with a stale signingRoot"
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
    // ours is the phase0 container root of the same JSON, which is what Web3Signer computes
    // when its network is still before Electra at the aggregate's slot (it picks the schema by
    // slot and drops `committee_bits`). That root was recomputed with the independent Python
    // merkleizer described on ELECTRA_AGGREGATE_SPEC_ROOT.
    let req = example("AGGREGATE_AND_PROOF_V2 (ELECTRA)");
    let mut as_deneb = req.clone();
    as_deneb["aggregate_and_proof"]["version"] = json!("DENEB");
    as_deneb["aggregate_and_proof"]["data"]["aggregate"]
        .as_object_mut()
        .unwrap()
        .remove("committee_bits");
    as_deneb.as_object_mut().unwrap().remove("signingRoot");
    let phase0 = signing_task_from_json(&body(&as_deneb)).unwrap();
    assert_eq!(
        phase0.signing_root,
        root("0x31242163ebaf3578b523e9cfd256c7965b73ad0da9ab00b3c8ae02ff722d6a26")
    );
    assert_ne!(phase0.signing_root, root(ELECTRA_AGGREGATE_SPEC_ROOT));
    assert_ne!(
        phase0.signing_root,
        root(req["signingRoot"].as_str().unwrap())
    );
}

#[test]
fn stale_electra_aggregate_body_is_not_a_minimal_preset_aggregate() {
    // Every other example comes from Teku's minimal specs; under the minimal preset the 8-byte
    // `committee_bits` of the ELECTRA/FULU body is not a Bitvector[4] at all.
    for name in [
        "AGGREGATE_AND_PROOF_V2 (ELECTRA)",
        "AGGREGATE_AND_PROOF_V2 (FULU)",
    ] {
        let msg = malformed(signing_task_from_json_with_preset::<Minimal>(&body(
            &example(name),
        )));
        assert!(
            msg.starts_with("aggregate_and_proof.data.aggregate.committee_bits"),
            "{name}: {msg}"
        );
    }
}

/// A voluntary-exit request body without `signingRoot`.
fn exit_request(fork_info: &ForkInfo, exit: &VoluntaryExit) -> Value {
    json!({ "type": "VOLUNTARY_EXIT", "fork_info": fork_info, "voluntary_exit": exit })
}

#[test]
fn voluntary_exit_example_uses_the_fork_info_domain_before_deneb_and_capella_from_deneb_on() {
    let req = example("VOLUNTARY_EXIT");
    let want = root(req["signingRoot"].as_str().unwrap());
    let fork_info: ForkInfo = serde_json::from_value(req["fork_info"].clone()).unwrap();
    let exit: VoluntaryExit = serde_json::from_value(req["voluntary_exit"].clone()).unwrap();
    assert_eq!(exit.epoch, 119);

    // Epoch 119 is before Deneb on the example chain and on mainnet: get_domain with
    // fork_info (every version 0x00000001), so both give the example's root.
    for chain in [ChainSpec::minimal(), ChainSpec::mainnet()] {
        let task = signing_task_from_json_for_chain::<Mainnet>(&body(&req), &chain).unwrap();
        assert_eq!(task.signing_root, want, "{}", chain.name);
        assert_eq!(task.kind, "VOLUNTARY_EXIT");
        assert_eq!(task.slashable, None, "exits are not slashable");
        assert_eq!(task.epoch, Some(119));
        assert_eq!(
            task.genesis_validators_root,
            Some(fork_info.genesis_validators_root)
        );
    }

    // On a chain where Deneb came at or before epoch 119 (Hoodi: Deneb at genesis), the
    // Capella fork version decides and fork_info's versions do not: the example's root is
    // refused as a mismatch, and the computed root is the EIP-7044 one.
    let hoodi = ChainSpec::hoodi();
    match signing_task_from_json_for_chain::<Mainnet>(&body(&req), &hoodi) {
        Err(SignRequestError::SigningRootMismatch { computed, provided }) => {
            assert_eq!(provided, want);
            let capella = compute_domain(
                DOMAIN_VOLUNTARY_EXIT,
                Version([0x40, 0x00, 0x09, 0x10]),
                fork_info.genesis_validators_root,
            );
            assert_eq!(computed, compute_signing_root(&exit, capella));
        }
        other => panic!("expected a mismatch on hoodi, got {other:?}"),
    }
}

#[test]
fn voluntary_exit_domain_switches_to_capella_at_the_networks_deneb_epoch() {
    let mainnet = ChainSpec::mainnet();
    let gvr = root("0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95");
    // The fork at signing time is Electra: previous Deneb, current Electra from 364032.
    let electra = ForkInfo {
        fork: Fork {
            previous_version: Version([4, 0, 0, 0]),
            current_version: Version([5, 0, 0, 0]),
            epoch: 364_032,
        },
        genesis_validators_root: gvr,
    };
    let capella_domain = compute_domain(DOMAIN_VOLUNTARY_EXIT, Version([3, 0, 0, 0]), gvr);
    let root_of = |epoch: u64, fi: &ForkInfo| {
        let exit = VoluntaryExit {
            epoch,
            validator_index: 42,
        };
        let task =
            signing_task_from_json_for_chain::<Mainnet>(&body(&exit_request(fi, &exit)), &mainnet)
                .unwrap();
        (exit, task.signing_root)
    };
    // From DENEB_FORK_EPOCH on, the Capella version whatever fork_info says, including an
    // exit far in the future and an exit of Electra epochs.
    for epoch in [269_568, 269_569, 364_032, 400_000, u64::MAX] {
        let (exit, got) = root_of(epoch, &electra);
        assert_eq!(
            got,
            compute_signing_root(&exit, capella_domain),
            "epoch {epoch}"
        );
        // The fork_info Lighthouse sends for such an exit ({capella, capella, epoch}) gives the
        // same root, as does any other fork_info.
        let lighthouse = ForkInfo {
            fork: Fork {
                previous_version: Version([3, 0, 0, 0]),
                current_version: Version([3, 0, 0, 0]),
                epoch,
            },
            genesis_validators_root: gvr,
        };
        assert_eq!(root_of(epoch, &lighthouse).1, got, "epoch {epoch}");
    }
    // Before it, phase0 get_domain with fork_info: this fork_info's previous version (Deneb,
    // 0x04000000) for epochs before its fork epoch.
    let (exit, got) = root_of(269_567, &electra);
    let deneb_domain = compute_domain(DOMAIN_VOLUNTARY_EXIT, Version([4, 0, 0, 0]), gvr);
    assert_eq!(got, compute_signing_root(&exit, deneb_domain));
    assert_ne!(got, compute_signing_root(&exit, capella_domain));

    // Every named network switches at its own Deneb epoch.
    for network in Network::ALL {
        let chain = network.chain_spec();
        let at = |epoch| {
            let exit = VoluntaryExit {
                epoch,
                validator_index: 1,
            };
            signing_task_from_json_for_chain::<Mainnet>(
                &body(&exit_request(&electra, &exit)),
                &chain,
            )
            .unwrap()
            .signing_root
                == compute_signing_root(
                    &exit,
                    compute_domain(DOMAIN_VOLUNTARY_EXIT, chain.capella_fork_version, gvr),
                )
        };
        assert!(at(chain.deneb_fork_epoch), "{network}");
        if chain.deneb_fork_epoch > 0 {
            assert!(!at(chain.deneb_fork_epoch - 1), "{network}");
        }
    }
}

#[test]
fn voluntary_exit_requires_fork_info_and_rejects_unknown_fields() {
    let mut req = example("VOLUNTARY_EXIT");
    req.as_object_mut().unwrap().remove("fork_info");
    let msg = malformed(signing_task_from_json(&body(&req)));
    assert!(msg.contains("missing field `fork_info`"), "{msg}");

    let mut req = example("VOLUNTARY_EXIT");
    req["voluntary_exit"]["validator"] = json!("1");
    let msg = malformed(signing_task_from_json(&body(&req)));
    assert!(
        msg.starts_with("voluntary_exit.validator: unknown field"),
        "{msg}"
    );
}

#[test]
fn validator_registration_uses_the_networks_genesis_fork_version_and_no_fork_info() {
    let req = example("VALIDATOR_REGISTRATION");
    let want = root(req["signingRoot"].as_str().unwrap());
    let reg: ValidatorRegistration =
        serde_json::from_value(req["validator_registration"].clone()).unwrap();
    assert_eq!(reg.gas_limit, 4_658_411_424_342_975_020);
    assert_eq!(reg.timestamp, 4_663_368_873_993_027_404);

    // The example chain (genesis fork version 0x00000001) reproduces the example.
    let task = signing_task_from_json_for_chain::<Mainnet>(&body(&req), &EXAMPLE_CHAIN).unwrap();
    assert_eq!(task.signing_root, want);
    assert_eq!(
        (
            task.kind,
            task.slashable,
            task.epoch,
            task.genesis_validators_root
        ),
        ("VALIDATOR_REGISTRATION", None, None, None)
    );

    // Each network signs with its own genesis fork version and a zero genesis validators root,
    // so the example's root is a mismatch elsewhere.
    let mut without = req.clone();
    without.as_object_mut().unwrap().remove("signingRoot");
    for network in Network::ALL {
        let chain = network.chain_spec();
        let task = signing_task_from_json_for_chain::<Mainnet>(&body(&without), &chain).unwrap();
        let domain = compute_domain(
            DOMAIN_APPLICATION_BUILDER,
            chain.genesis_fork_version,
            Root::ZERO,
        );
        assert_eq!(
            task.signing_root,
            compute_signing_root(&reg, domain),
            "{network}"
        );
        assert_ne!(task.signing_root, want, "{network}");
        assert!(matches!(
            signing_task_from_json_for_chain::<Mainnet>(&body(&req), &chain),
            Err(SignRequestError::SigningRootMismatch { .. })
        ));
    }
    // The default entry point is mainnet's.
    assert_eq!(
        signing_task_from_json(&body(&without))
            .unwrap()
            .signing_root,
        compute_signing_root(&reg, ChainSpec::mainnet().builder_domain())
    );

    // A `fork_info` a client sends anyway does not change the root; its root is reported for the
    // network check.
    let mut with_fork_info = req.clone();
    with_fork_info["fork_info"] = example("ATTESTATION")["fork_info"].clone();
    let task = signing_task_from_json_for_chain::<Mainnet>(&body(&with_fork_info), &EXAMPLE_CHAIN)
        .unwrap();
    assert_eq!(task.signing_root, want);
    assert_eq!(
        task.genesis_validators_root,
        Some(root(
            "0x04700007fabc8282644aed6d1c7c9e21d38a03a0c4ba193f3afe428824b3a673"
        ))
    );

    // Field names are the OpenAPI's (`fee_recipient`, `gas_limit`, `timestamp`, `pubkey`);
    // the builder API's camelCase is not accepted, nor a short fee recipient.
    let mut camel = without.clone();
    let v = camel["validator_registration"].as_object_mut().unwrap();
    let fee = v.remove("fee_recipient").unwrap();
    v.insert("feeRecipient".into(), fee);
    let msg = malformed(signing_task_from_json(&body(&camel)));
    assert!(msg.contains("feeRecipient"), "{msg}");
    let mut short = without.clone();
    short["validator_registration"]["fee_recipient"] = json!("0x6fdfab408c56b6105a76");
    let msg = malformed(signing_task_from_json(&body(&short)));
    assert!(
        msg.starts_with("validator_registration.fee_recipient: "),
        "{msg}"
    );
}

#[test]
fn mainnet_builder_domain_carries_the_pre_genesis_fork_digest() {
    // compute_domain(DOMAIN_APPLICATION_BUILDER, GENESIS_FORK_VERSION, ZERO) is the domain type
    // followed by compute_fork_data_root(genesis version, zero root), whose first 4 bytes are
    // eth-clients/mainnet's pre-genesis fork digest.
    let v = consensus_vectors();
    let digest = v["mainnet_genesis"]["pre_genesis_fork_digest"]
        .as_str()
        .unwrap();
    let domain = ChainSpec::mainnet().builder_domain();
    assert_eq!(format!("0x{}", hex::encode(&domain[..4])), "0x00000001");
    assert_eq!(format!("0x{}", hex::encode(&domain[4..8])), digest);
}

/// `KEY: value` lines of a consensus-spec YAML config, values without trailing comments.
fn config_values(rel: &str) -> BTreeMap<String, String> {
    vectors::read(rel)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with(' ') && !l.starts_with('-'))
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let v = v.split('#').next().unwrap_or("").trim().trim_matches('\'');
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

fn check_chain_against_config(chain: &ChainSpec, config: &str, preset: &str) {
    let c = config_values(config);
    let p = config_values(preset);
    assert_eq!(c["CONFIG_NAME"], chain.name, "{config}");
    assert_eq!(
        c["GENESIS_FORK_VERSION"],
        chain.genesis_fork_version.to_string(),
        "{config}"
    );
    assert_eq!(
        c["CAPELLA_FORK_VERSION"],
        chain.capella_fork_version.to_string(),
        "{config}"
    );
    assert_eq!(
        c["DENEB_FORK_EPOCH"].parse::<u64>().unwrap(),
        chain.deneb_fork_epoch,
        "{config}"
    );
    assert_eq!(
        p["SLOTS_PER_EPOCH"].parse::<u64>().unwrap(),
        chain.slots_per_epoch,
        "{preset}"
    );
}

#[test]
fn built_in_mainnet_and_minimal_constants_match_the_consensus_spec_configs() {
    let mainnet = ChainSpec::mainnet();
    assert_eq!(
        (
            mainnet.genesis_fork_version,
            mainnet.capella_fork_version,
            mainnet.deneb_fork_epoch
        ),
        (Version([0, 0, 0, 0]), Version([3, 0, 0, 0]), 269_568)
    );
    for config in [
        "consensus-specs/configs/mainnet.yaml",
        "eth-clients-mainnet/metadata/config.yaml",
    ] {
        check_chain_against_config(
            &mainnet,
            config,
            "consensus-specs/presets/mainnet/phase0.yaml",
        );
    }
    check_chain_against_config(
        &ChainSpec::minimal(),
        "consensus-specs/configs/minimal.yaml",
        "consensus-specs/presets/minimal/phase0.yaml",
    );
    assert_eq!(Mainnet::reference_chain(), mainnet);
    assert_eq!(Minimal::reference_chain(), ChainSpec::minimal());
    assert_eq!(ChainSpec::default(), mainnet);
}

#[test]
fn named_networks_parse_print_and_serialize_in_lowercase() {
    let names: Vec<String> = Network::ALL.iter().map(|n| n.to_string()).collect();
    assert_eq!(names, ["mainnet", "hoodi", "holesky", "sepolia"]);
    for n in Network::ALL {
        assert_eq!(n.to_string().parse::<Network>(), Ok(n));
        assert_eq!(serde_json::to_value(n).unwrap(), json!(n.to_string()));
        assert_eq!(n.chain_spec().name, n.name());
        assert_eq!(n.chain_spec().slots_per_epoch, 32, "{n}: mainnet preset");
    }
    assert_eq!(Network::default(), Network::Mainnet);
    let err = "Mainnet".parse::<Network>().unwrap_err();
    assert_eq!(err, UnknownNetwork("Mainnet".into()));
    assert!(err.to_string().contains("hoodi"), "{err}");
    assert!("goerli".parse::<Network>().is_err());
    // Distinct networks never share a genesis fork version (it is what separates their
    // registrations and deposits).
    let mut versions: Vec<Version> = Network::ALL
        .iter()
        .map(|n| n.chain_spec().genesis_fork_version)
        .collect();
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), Network::ALL.len());
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
    let chain = |slots_per_epoch| ChainSpec {
        slots_per_epoch,
        ..ChainSpec::mainnet()
    };
    let task = signing_task_from_json_for_chain::<Mainnet>(&bytes, &chain(8)).unwrap();
    let new_fork = compute_domain(DOMAIN_BEACON_PROPOSER, Version([4, 0, 0, 0]), gvr);
    assert_eq!(task.signing_root, compute_signing_root(&header, new_fork));
    assert_eq!(task.epoch, Some(4));
    let mainnet = signing_task_from_json_for_chain::<Mainnet>(&bytes, &chain(32)).unwrap();
    assert_ne!(
        mainnet.signing_root, task.signing_root,
        "epoch 1 < fork epoch: old fork version"
    );
    assert_eq!(mainnet.epoch, Some(1));
    assert!(matches!(
        signing_task_from_json_for_chain::<Mainnet>(&bytes, &chain(0)),
        Err(SignRequestError::Malformed(m)) if m.contains("slots_per_epoch")
    ));
}
