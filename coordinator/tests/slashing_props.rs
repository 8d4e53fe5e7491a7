//! Property tests of slashing protection (STYLE.md 3, DESIGN.md I3).
//!
//! 1. The stored path (commands applied through the RocksDB state machine, with the store
//!    closed and reopened along the way) gives exactly the verdicts of a naive reference
//!    model written directly from the documented rules with linear scans.
//! 2. No two accepted records of a validator are slashable with each other, by the
//!    consensus-spec definitions checked pairwise.
//!
//! The model includes the floor of a validator's first record: nothing at or below the
//! finalized epoch minus one.

mod support;

use coordinator::state::{Command, HandoverPolicy, Response};
use coordinator::store::{open_db, StateMachineStore};
use coordinator::TypeConfig;
use failover_common::beacon::CheckpointObs;
use failover_common::types::{Pubkey, Root};
use failover_protocol::{RecordItem, Verdict};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use proptest::prelude::*;

const SLOTS_PER_EPOCH: u64 = 4;

#[derive(Debug, Clone)]
enum Op {
    Block {
        v: u8,
        slot: u64,
        root: u8,
    },
    Att {
        v: u8,
        source: u64,
        target: u64,
        root: u8,
    },
    Finalize {
        epoch: u64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..2, 0u64..24, 0u8..3).prop_map(|(v, slot, root)| Op::Block { v, slot, root }),
        8 => (0u8..2, 0u64..10, 0u64..10, 0u8..3)
            .prop_map(|(v, source, target, root)| Op::Att { v, source, target, root }),
        1 => (0u64..8).prop_map(|epoch| Op::Finalize { epoch }),
        1 => Just(Op::Reopen),
    ]
}

fn pk(v: u8) -> Pubkey {
    Pubkey([v + 1; 48])
}

fn root(r: u8) -> Root {
    Root([r; 32])
}

/// What a verdict says, without the refusal's details (the model only tracks kinds).
fn kind(v: &Verdict) -> String {
    match v {
        Verdict::Valid => "valid".into(),
        Verdict::SameData => "same_data".into(),
        Verdict::Refused(r) => r.label().into(),
    }
}

/// Naive reference model: accepted records in plain vectors, watermarks as plain maxima.
#[derive(Default, Clone)]
struct Model {
    blocks: Vec<(u64, Root)>,
    atts: Vec<(u64, u64, Root)>,
    low_slot: Option<u64>,
    low_source: Option<u64>,
    low_target: Option<u64>,
}

fn same(a: &Root, b: &Root) -> bool {
    a == b
}

fn opt_max(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    a.into_iter().chain(b).max()
}

fn opt_min(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    a.into_iter().chain(b).min()
}

impl Model {
    fn block(&mut self, slot: u64, r: Root) -> String {
        if let Some((_, prev)) = self.blocks.iter().find(|(s, _)| *s == slot) {
            return if same(prev, &r) {
                "same_data"
            } else {
                "double_block_proposal"
            }
            .into();
        }
        let lb = opt_min(self.low_slot, self.blocks.iter().map(|b| b.0).min());
        if lb.is_some_and(|lb| slot <= lb) {
            return "slot_below_watermark".into();
        }
        self.blocks.push((slot, r));
        "valid".into()
    }

    fn att(&mut self, source: u64, target: u64, r: Root) -> String {
        if source > target {
            return "source_exceeds_target".into();
        }
        if let Some(&(s, _, prev)) = self.atts.iter().find(|a| a.1 == target) {
            return if s == source && same(&prev, &r) {
                "same_data"
            } else {
                "double_vote"
            }
            .into();
        }
        if self.atts.iter().any(|&(s, t, _)| s < source && t > target) {
            return "surrounded_vote".into();
        }
        if self.atts.iter().any(|&(s, t, _)| s > source && t < target) {
            return "surrounding_vote".into();
        }
        let ls = opt_min(self.low_source, self.atts.iter().map(|a| a.0).min());
        if ls.is_some_and(|ls| source < ls) {
            return "source_below_watermark".into();
        }
        let lt = opt_min(self.low_target, self.atts.iter().map(|a| a.1).min());
        if lt.is_some_and(|lt| target <= lt) {
            return "target_below_watermark".into();
        }
        self.atts.push((source, target, r));
        "valid".into()
    }

    fn finalize(&mut self, epoch: u64) {
        let min_slot = epoch * SLOTS_PER_EPOCH;
        let pruned_slots = self
            .blocks
            .iter()
            .filter(|b| b.0 < min_slot)
            .map(|b| b.0)
            .max();
        self.low_slot = opt_max(self.low_slot, pruned_slots);
        self.blocks.retain(|b| b.0 >= min_slot);
        let pruned: Vec<_> = self.atts.iter().filter(|a| a.1 < epoch).copied().collect();
        self.low_source = opt_max(self.low_source, pruned.iter().map(|a| a.0).max());
        self.low_target = opt_max(self.low_target, pruned.iter().map(|a| a.1).max());
        self.atts.retain(|a| a.1 >= epoch);
    }
}

fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(cmd),
    }
}

const POLICY: HandoverPolicy = HandoverPolicy {
    approvals_required: 1,
    two_person_rule: false,
    break_glass_approvals: 1,
    slots_per_epoch: SLOTS_PER_EPOCH,
    doppelganger_epochs: None,
};

fn setup_commands() -> Vec<Command> {
    vec![
        Command::RegisterAgent {
            agent: "a".into(),
            region: "eu".into(),
            pubkeys: vec![pk(0), pk(1)],
        },
        Command::RequestHandover {
            to: "a".into(),
            reason: "test".into(),
            operator: "op".into(),
            at_ms: 0,
            policy: POLICY,
            chain_epoch: None,
        },
        Command::ApproveHandover {
            id: 2,
            operator: "op".into(),
            break_glass: false,
            at_ms: 0,
            policy: POLICY,
            acknowledged: vec![],
        },
    ]
}

/// Runs `ops` through the RocksDB state machine, returning each record's verdict kind and
/// every accepted record (for the pairwise check).
fn run_stored(ops: &[Op]) -> (Vec<String>, Vec<(u8, RecordItem)>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachineStore::load(open_db(dir.path()).unwrap()).unwrap();
        let mut index = 0;
        for cmd in setup_commands() {
            index += 1;
            sm.apply([entry(index, cmd)]).await.unwrap();
        }
        let token = index;
        let mut kinds = vec![];
        let mut accepted = vec![];
        let mut finalized = 0;
        for op in ops {
            let (v, item) = match op {
                Op::Reopen => {
                    drop(sm);
                    sm = StateMachineStore::load(open_db(dir.path()).unwrap()).unwrap();
                    continue;
                }
                Op::Finalize { epoch } => {
                    if *epoch > finalized {
                        finalized = *epoch;
                        index += 1;
                        let cmd = Command::Finality {
                            checkpoint: CheckpointObs {
                                epoch: *epoch,
                                root: Root::ZERO,
                            },
                            observations: vec![],
                            at_ms: 0,
                            slots_per_epoch: SLOTS_PER_EPOCH,
                        };
                        sm.apply([entry(index, cmd)]).await.unwrap();
                    }
                    continue;
                }
                Op::Block { v, slot, root: r } => (
                    *v,
                    RecordItem::Block {
                        pubkey: pk(*v),
                        slot: *slot,
                        signing_root: root(*r),
                    },
                ),
                Op::Att {
                    v,
                    source,
                    target,
                    root: r,
                } => (
                    *v,
                    RecordItem::Attestation {
                        pubkey: pk(*v),
                        source_epoch: *source,
                        target_epoch: *target,
                        signing_root: root(*r),
                    },
                ),
            };
            index += 1;
            let cmd = Command::RecordBatch {
                agent: "a".into(),
                token,
                items: vec![item.clone()],
            };
            let resp = sm.apply([entry(index, cmd)]).await.unwrap();
            let Response::Records { verdicts } = &resp[0] else {
                panic!("unexpected response {resp:?}");
            };
            if verdicts[0] == Verdict::Valid {
                accepted.push((v, item));
            }
            kinds.push(kind(&verdicts[0]));
        }
        (kinds, accepted)
    })
}

impl Model {
    /// A validator with no history yet.
    fn is_fresh(&self) -> bool {
        self.blocks.is_empty()
            && self.atts.is_empty()
            && self.low_slot.is_none()
            && self.low_source.is_none()
            && self.low_target.is_none()
    }

    /// The history a first record starts from once `finalized` is agreed: nothing at or below
    /// `finalized − 1` (the state machine's `FRESH_VALIDATOR_MARGIN_EPOCHS`), written as
    /// watermarks.
    fn floored(finalized: u64) -> Model {
        let f = finalized.saturating_sub(1);
        if f == 0 {
            return Model::default();
        }
        Model {
            low_slot: Some((f + 1) * SLOTS_PER_EPOCH - 1),
            low_source: Some(f),
            low_target: Some(f),
            ..Model::default()
        }
    }

    /// Checks a record with `check`; a fresh validator is checked from its floor, which is
    /// kept only when the record is accepted.
    fn record(&mut self, finalized: u64, check: impl FnOnce(&mut Model) -> String) -> String {
        if !self.is_fresh() {
            return check(self);
        }
        let mut m = Model::floored(finalized);
        let kind = check(&mut m);
        if kind == "valid" {
            *self = m;
        }
        kind
    }
}

fn run_model(ops: &[Op]) -> Vec<String> {
    let mut models = [Model::default(), Model::default()];
    let mut finalized = 0;
    let mut kinds = vec![];
    for op in ops {
        match op {
            Op::Reopen => {}
            Op::Finalize { epoch } => {
                if *epoch > finalized {
                    finalized = *epoch;
                    models.iter_mut().for_each(|m| m.finalize(*epoch));
                }
            }
            Op::Block { v, slot, root: r } => {
                kinds.push(models[*v as usize].record(finalized, |m| m.block(*slot, root(*r))))
            }
            Op::Att {
                v,
                source,
                target,
                root: r,
            } => kinds
                .push(models[*v as usize].record(finalized, |m| m.att(*source, *target, root(*r)))),
        }
    }
    kinds
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn stored_path_agrees_with_reference_model(ops in prop::collection::vec(op(), 1..60)) {
        let (stored, _) = run_stored(&ops);
        let model = run_model(&ops);
        prop_assert_eq!(stored, model);
    }

    #[test]
    fn no_two_accepted_records_are_slashable(ops in prop::collection::vec(op(), 1..60)) {
        let (_, accepted) = run_stored(&ops);
        for (i, (va, a)) in accepted.iter().enumerate() {
            for (vb, b) in &accepted[i + 1..] {
                prop_assert!(!(va == vb && support::slashable(a, b)), "slashable pair accepted: {a:?} / {b:?}");
            }
        }
    }
}
