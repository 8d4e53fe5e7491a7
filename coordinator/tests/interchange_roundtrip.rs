//! EIP-3076 import and round trip:
//! - export the history of a state (pruned by finality, and with imported slashable data,
//!   included), import it into a fresh state, and every probe is refused or allowed exactly as
//!   in the original;
//! - after importing any file, slashable or not, nothing allowed is slashable with any record
//!   of the file or with any message the state accepted before (checked against a naive
//!   pairwise definition written here).

use coordinator::interchange::{
    Interchange, Metadata, SignedAttestation, SignedBlock, ValidatorData,
};
use coordinator::state::{AgentInfo, Authority, Command, Dirty, Response, StateData};
use failover_common::beacon::CheckpointObs;
use failover_common::types::{Pubkey, Root};
use failover_protocol::{RecordItem, Verdict};
use proptest::prelude::*;

const GVR: Root = Root([9; 32]);

fn fresh() -> StateData {
    let mut agents = std::collections::BTreeMap::new();
    agents.insert(
        "a".to_string(),
        AgentInfo {
            // every validator `item` can name is registered by the holder
            pubkeys: (0..=254u8).map(|v| Pubkey([v + 1; 48])).collect(),
            ..Default::default()
        },
    );
    StateData {
        authority: Authority {
            holder: Some("a".into()),
            token: 1,
        },
        agents,
        ..Default::default()
    }
}

fn item(v: u8, op: &(bool, u64, u64, u8)) -> RecordItem {
    let (is_block, x, y, r) = *op;
    let pubkey = Pubkey([v + 1; 48]);
    let signing_root = Root([r; 32]);
    if is_block {
        RecordItem::Block {
            pubkey,
            slot: x * 3 + y,
            signing_root,
        }
    } else {
        RecordItem::Attestation {
            pubkey,
            source_epoch: x,
            target_epoch: y,
            signing_root,
        }
    }
}

/// Whether `item` may be signed in `state`, without changing it.
fn allowed(state: &StateData, item: &RecordItem) -> bool {
    let mut probe = state.clone();
    let cmd = Command::RecordBatch {
        agent: "a".into(),
        token: 1,
        items: vec![item.clone()],
    };
    match probe.apply(1_000_000, &cmd, &mut Dirty::default()) {
        Response::Records { verdicts } => verdicts[0].allows_signing(),
        other => panic!("{other:?}"),
    }
}

type Op = (bool, u64, u64, u8);

fn op() -> impl Strategy<Value = Op> {
    (any::<bool>(), 0u64..12, 0u64..12, 1u8..3)
}

/// An interchange of arbitrary (often slashable) records for validators 0 and 1; a root byte
/// of 0 means "no signing root".
fn file(records: &[(u8, Op)]) -> Interchange {
    let mut data: Vec<ValidatorData> = Vec::new();
    for (v, o) in records {
        let pubkey = Pubkey([v + 1; 48]);
        let root = (o.3 != 0).then_some(Root([o.3; 32]));
        let i = match data.iter().position(|d| d.pubkey == pubkey) {
            Some(i) => i,
            None => {
                data.push(ValidatorData {
                    pubkey,
                    signed_blocks: vec![],
                    signed_attestations: vec![],
                });
                data.len() - 1
            }
        };
        if o.0 {
            data[i].signed_blocks.push(SignedBlock {
                slot: o.1 * 3 + o.2,
                signing_root: root,
            });
        } else {
            data[i].signed_attestations.push(SignedAttestation {
                source_epoch: o.1,
                target_epoch: o.2,
                signing_root: root,
            });
        }
    }
    Interchange {
        metadata: Metadata {
            interchange_format_version: "5".into(),
            genesis_validators_root: GVR,
        },
        data,
    }
}

/// The naive definition: would signing `it` make a slashable pair with the file's record
/// `(v, o)`? Identical messages (same known root) are not a pair.
fn slashable_with(it: &RecordItem, v: u8, o: &Op) -> bool {
    let root = (o.3 != 0).then_some(Root([o.3; 32]));
    match *it {
        RecordItem::Block {
            pubkey,
            slot,
            signing_root,
        } => {
            pubkey == Pubkey([v + 1; 48])
                && o.0
                && slot == o.1 * 3 + o.2
                && root != Some(signing_root)
        }
        RecordItem::Attestation {
            pubkey,
            source_epoch: s,
            target_epoch: t,
            signing_root,
        } => {
            if pubkey != Pubkey([v + 1; 48]) || o.0 {
                return false;
            }
            let (s2, t2) = (o.1, o.2);
            let double = t == t2 && (s != s2 || root != Some(signing_root));
            let surround = (s < s2 && t2 < t) || (s2 < s && t < t2);
            double || surround
        }
    }
}

fn op_or_rootless() -> impl Strategy<Value = Op> {
    (any::<bool>(), 0u64..12, 0u64..12, 0u8..3)
}

/// Records every op in turn; returns those accepted as new messages (`Valid`).
fn record_all(state: &mut StateData, history: &[(u8, Op)], first_index: u64) -> Vec<(u8, Op)> {
    let mut accepted = Vec::new();
    for (i, (v, o)) in history.iter().enumerate() {
        let cmd = Command::RecordBatch {
            agent: "a".into(),
            token: 1,
            items: vec![item(*v, o)],
        };
        match state.apply(first_index + i as u64, &cmd, &mut Dirty::default()) {
            Response::Records { verdicts } if verdicts[0] == Verdict::Valid => {
                accepted.push((*v, *o))
            }
            Response::Records { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    accepted
}

fn finalize(state: &mut StateData, epoch: u64) {
    let cmd = Command::Finality {
        checkpoint: CheckpointObs {
            epoch,
            root: Root::ZERO,
        },
        observations: vec![],
        at_ms: 0,
        slots_per_epoch: 3,
    };
    state.apply(1000, &cmd, &mut Dirty::default());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn after_an_import_nothing_allowed_is_slashable_with_the_file_or_the_history(
        history in prop::collection::vec((0u8..2, op()), 0..30),
        finalized in prop::option::of(1u64..10),
        records in prop::collection::vec((0u8..2, op_or_rootless()), 0..30),
        probes in prop::collection::vec((0u8..2, op()), 1..40),
    ) {
        let mut state = fresh();
        let accepted = record_all(&mut state, &history, 2);
        if let Some(epoch) = finalized {
            finalize(&mut state, epoch);
        }
        state.import_interchange(&file(&records), GVR).expect("a well-formed file imports");
        for (v, o) in &probes {
            let it = item(*v, o);
            // Signing a message that was signed already (same known root) is no new evidence:
            // it is allowed whatever else it conflicts with (identical re-sign).
            let resign = records
                .iter()
                .chain(&accepted)
                .any(|(rv, ro)| ro.3 != 0 && item(*rv, ro) == it);
            if allowed(&state, &it) && !resign {
                for (rv, ro) in records.iter().chain(&accepted) {
                    prop_assert!(!slashable_with(&it, *rv, ro), "{:?} allowed but slashable with {:?}", it, (rv, ro));
                }
            }
        }
    }

    #[test]
    fn a_history_with_imported_slashable_data_round_trips(
        records in prop::collection::vec((0u8..2, op_or_rootless()), 0..30),
        history in prop::collection::vec((0u8..2, op()), 0..30),
        finalized in prop::option::of(1u64..10),
        import_after_pruning in any::<bool>(),
        probes in prop::collection::vec((0u8..2, op()), 1..40),
    ) {
        let mut original = fresh();
        if !import_after_pruning {
            original.import_interchange(&file(&records), GVR).expect("a well-formed file imports");
        }
        record_all(&mut original, &history, 2);
        if let Some(epoch) = finalized {
            finalize(&mut original, epoch);
        }
        if import_after_pruning {
            original.import_interchange(&file(&records), GVR).expect("a well-formed file imports");
        }
        let json = serde_json::to_string(&original.export_interchange(GVR, None)).unwrap();
        // The importing cluster follows the same chain: it knows the same finality, which
        // also bounds validators it has no history for.
        let mut imported = fresh();
        if let Some(epoch) = finalized {
            finalize(&mut imported, epoch);
        }
        imported.import_interchange(&serde_json::from_str(&json).unwrap(), GVR).expect("an export always imports");
        for (v, o) in &probes {
            let it = item(*v, o);
            prop_assert_eq!(allowed(&original, &it), allowed(&imported, &it), "probe {:?}", it);
        }
    }

    #[test]
    fn export_then_import_refuses_exactly_what_the_original_refused(
        history in prop::collection::vec((0u8..2, op()), 0..40),
        finalized in prop::option::of(1u64..10),
        probes in prop::collection::vec((0u8..2, op()), 1..40),
    ) {
        let mut original = fresh();
        record_all(&mut original, &history, 2);
        if let Some(epoch) = finalized {
            finalize(&mut original, epoch);
        }
        let doc = original.export_interchange(GVR, None);
        // The document survives JSON, as a file would.
        let json = serde_json::to_string(&doc).unwrap();
        let doc = serde_json::from_str(&json).unwrap();
        // The importing cluster follows the same chain: it knows the same finality, which
        // also bounds validators it has no history for.
        let mut imported = fresh();
        if let Some(epoch) = finalized {
            finalize(&mut imported, epoch);
        }
        imported.import_interchange(&doc, GVR).expect("an export always imports");
        for (v, o) in &probes {
            let it = item(*v, o);
            prop_assert_eq!(allowed(&original, &it), allowed(&imported, &it), "probe {:?}", it);
        }
    }
}

#[test]
fn import_refuses_another_genesis_validators_root() {
    let doc = fresh().export_interchange(Root([1; 32]), None);
    let err = fresh().import_interchange(&doc, GVR).unwrap_err();
    assert!(err.to_string().contains("genesis_validators_root"), "{err}");
}

#[test]
fn a_refused_file_changes_nothing() {
    let mut doc = file(&[(0, (true, 1, 2, 1)), (1, (false, 1, 2, 1))]);
    doc.metadata.interchange_format_version = "4".into();
    let mut state = fresh();
    let err = state.import_interchange(&doc, GVR).unwrap_err();
    assert!(
        err.to_string().contains("interchange_format_version"),
        "{err}"
    );
    assert!(state.validators.is_empty());
}

#[test]
fn slashable_data_is_imported_as_refusals_and_reported() {
    let json = serde_json::json!({
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": GVR},
        "data": [
            {"pubkey": Pubkey([1; 48]), "signed_blocks": [{"slot": "5"}], "signed_attestations": []},
            {"pubkey": Pubkey([2; 48]), "signed_blocks": [],
             "signed_attestations": [
                {"source_epoch": "1", "target_epoch": "10"},
                {"source_epoch": "2", "target_epoch": "9"}]}
        ]
    });
    let doc = serde_json::from_value(json).unwrap();
    let mut state = fresh();
    let (summary, touched) = state.import_interchange(&doc, GVR).unwrap();
    assert_eq!(
        (summary.validators, summary.blocks, summary.attestations),
        (2, 1, 2)
    );
    assert_eq!((summary.added, summary.slashable), (2, 1), "{summary:?}");
    assert_eq!(summary.slashable_validators, vec![Pubkey([2; 48])]);
    assert_eq!(touched.len(), 2);
    let att = |s, t| RecordItem::Attestation {
        pubkey: Pubkey([2; 48]),
        source_epoch: s,
        target_epoch: t,
        signing_root: Root([7; 32]),
    };
    assert!(
        !allowed(&state, &att(1, 10)),
        "a rootless record never matches"
    );
    assert!(!allowed(&state, &att(3, 8)), "surrounded by 2 → 9");
    assert!(!allowed(&state, &att(0, 11)), "surrounds both");
    assert!(allowed(&state, &att(2, 11)), "no conflict with either");
}
