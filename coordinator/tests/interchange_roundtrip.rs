//! EIP-3076 round trip: export the history of a state (pruned by finality included), import it
//! into a fresh state, and every probe is refused or allowed exactly as in the original.

use coordinator::state::{Authority, Command, Dirty, Response, StateData};
use failover_common::api::RecordItem;
use failover_common::beacon::CheckpointObs;
use failover_common::types::{Pubkey, Root};
use proptest::prelude::*;

const GVR: Root = Root([9; 32]);

fn fresh() -> StateData {
    StateData {
        authority: Authority {
            holder: Some("a".into()),
            token: 1,
        },
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn export_then_import_refuses_exactly_what_the_original_refused(
        history in prop::collection::vec((0u8..2, op()), 0..40),
        finalized in prop::option::of(1u64..10),
        probes in prop::collection::vec((0u8..2, op()), 1..40),
    ) {
        let mut original = fresh();
        for (i, (v, o)) in history.iter().enumerate() {
            let cmd = Command::RecordBatch { agent: "a".into(), token: 1, items: vec![item(*v, o)] };
            original.apply(i as u64 + 2, &cmd, &mut Dirty::default());
        }
        if let Some(epoch) = finalized {
            let cmd = Command::Finality {
                checkpoint: CheckpointObs { epoch, root: Root::ZERO },
                observations: vec![],
                at_ms: 0,
                slots_per_epoch: 3,
            };
            original.apply(1000, &cmd, &mut Dirty::default());
        }
        let doc = original.export_interchange(GVR, None);
        // The document survives JSON, as a file would.
        let json = serde_json::to_string(&doc).unwrap();
        let doc = serde_json::from_str(&json).unwrap();
        let mut imported = fresh();
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
fn import_is_all_or_nothing() {
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
    assert!(
        state.import_interchange(&doc, GVR).is_err(),
        "surround inside the file"
    );
    assert!(
        state.validators.is_empty(),
        "nothing imported from a refused file"
    );
}
