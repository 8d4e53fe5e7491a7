//! Apply never panics on a committed entry, whatever numbers it holds (issue "hostile input",
//! item 1; STYLE.md 14).
//!
//! Arbitrary sequences of every command, with epochs, slots, tokens, ids and policy values
//! drawn from the edges (`0`, `1`, `u64::MAX − 1`, `u64::MAX`) as often as from small values,
//! are applied to two RocksDB-backed replicas, one of which closes and reopens its store along
//! the way. The properties:
//! - no command panics (a panic fails the case);
//! - both replicas end with the same state;
//! - I1: authority changes only to a new holder with a token larger than every earlier one;
//! - I2: a record batch gets verdicts only when `(agent, token)` was the current holder;
//! - I3: no two records accepted for one validator are slashable with each other;
//! - replay: a replica that lost every state write after entry `k` and re-applies the rest
//!   from the log answers exactly what was released and ends in the same state (why state
//!   writes need no fsync, DESIGN.md "Durability and fsyncs").
//!
//! One case replays the poison pill of the issue exactly: an import with
//! `"target_epoch": "18446744073709551615"` followed by records.

mod support;

use coordinator::interchange::{
    Interchange, Metadata, SignedAttestation, SignedBlock, ValidatorData,
};
use coordinator::state::{Command, HandoverPolicy, LiveSighting, Response, StateData};
use coordinator::store::{open_db, StateMachineStore};
use coordinator::TypeConfig;
use failover_common::beacon::CheckpointObs;
use failover_common::types::{Pubkey, Root};
use failover_protocol::{RecordItem, Verdict};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use proptest::prelude::*;

const GVR: Root = Root([7; 32]);

/// A u64 from the edges as often as from the small values.
fn num() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..12,
        1 => Just(0u64),
        1 => Just(1u64),
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - 1),
        1 => any::<u64>(),
    ]
}

fn small_u32() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 0u32..4, 1 => Just(u32::MAX)]
}

fn agent() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("z".to_string())
    ]
}

fn pk(v: u8) -> Pubkey {
    Pubkey([v.wrapping_add(1); 48])
}

fn root_of(r: u8) -> Root {
    Root([r; 32])
}

fn policy() -> impl Strategy<Value = HandoverPolicy> {
    (
        small_u32(),
        any::<bool>(),
        small_u32(),
        num(),
        prop::option::of(num()),
    )
        .prop_map(|(a, t, b, spe, dg)| HandoverPolicy {
            approvals_required: a,
            two_person_rule: t,
            break_glass_approvals: b,
            slots_per_epoch: spe,
            doppelganger_epochs: dg,
        })
}

fn item() -> impl Strategy<Value = RecordItem> {
    prop_oneof![
        (0u8..3, num(), 0u8..3).prop_map(|(v, slot, r)| RecordItem::Block {
            pubkey: pk(v),
            slot,
            signing_root: root_of(r),
        }),
        (0u8..3, num(), num(), 0u8..3).prop_map(|(v, s, t, r)| RecordItem::Attestation {
            pubkey: pk(v),
            source_epoch: s,
            target_epoch: t,
            signing_root: root_of(r),
        }),
    ]
}

fn interchange() -> impl Strategy<Value = Interchange> {
    let block = (num(), prop::option::of(0u8..3)).prop_map(|(slot, r)| SignedBlock {
        slot,
        signing_root: r.map(root_of),
    });
    let att = (num(), num(), prop::option::of(0u8..3)).prop_map(|(s, t, r)| SignedAttestation {
        source_epoch: s,
        target_epoch: t,
        signing_root: r.map(root_of),
    });
    let validator = (
        0u8..3,
        prop::collection::vec(block, 0..3),
        prop::collection::vec(att, 0..3),
    )
        .prop_map(|(v, signed_blocks, signed_attestations)| ValidatorData {
            pubkey: pk(v),
            signed_blocks,
            signed_attestations,
        });
    (prop::collection::vec(validator, 0..3), any::<bool>()).prop_map(|(data, right_chain)| {
        Interchange {
            metadata: Metadata {
                interchange_format_version: "5".into(),
                genesis_validators_root: if right_chain { GVR } else { Root([8; 32]) },
            },
            data,
        }
    })
}

/// Any command, with hostile numbers. `token` picks either an arbitrary number or "the
/// current token" (resolved when the command is built against the state), so that record
/// batches are often accepted.
#[derive(Debug, Clone)]
enum Op {
    Cmd(Command),
    RecordAsHolder(Vec<RecordItem>),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let register = (agent(), prop::collection::vec(0u8..3, 0..4)).prop_map(|(a, keys)| {
        Op::Cmd(Command::RegisterAgent {
            agent: a,
            region: "eu".into(),
            pubkeys: keys.into_iter().map(pk).collect(),
        })
    });
    let records =
        (agent(), num(), prop::collection::vec(item(), 0..4)).prop_map(|(a, t, items)| {
            Op::Cmd(Command::RecordBatch {
                agent: a,
                token: t,
                items,
            })
        });
    let as_holder = prop::collection::vec(item(), 1..5).prop_map(Op::RecordAsHolder);
    let request = (
        agent(),
        prop_oneof![Just(""), Just("r")],
        prop_oneof![Just("op1"), Just("op2")],
        num(),
        policy(),
        prop::option::of(num()),
    )
        .prop_map(|(to, reason, operator, at_ms, policy, chain_epoch)| {
            Op::Cmd(Command::RequestHandover {
                to,
                reason: reason.into(),
                operator: operator.into(),
                at_ms,
                policy,
                chain_epoch,
            })
        });
    let approve = (
        num(),
        prop_oneof![Just("op1"), Just("op2"), Just("op3")],
        any::<bool>(),
        num(),
        policy(),
        prop::collection::vec(0u8..3, 0..3),
    )
        .prop_map(|(id, operator, break_glass, at_ms, policy, ack)| {
            Op::Cmd(Command::ApproveHandover {
                id,
                operator: operator.into(),
                break_glass,
                at_ms,
                policy,
                acknowledged: ack.into_iter().map(pk).collect(),
            })
        });
    // Liveness evidence for any handover and epoch, naming any validator (also ones the
    // target does not hold), from no node or some.
    let liveness = (
        num(),
        num(),
        num(),
        prop::collection::vec((0u8..3, num()), 0..3),
        any::<bool>(),
        num(),
    )
        .prop_map(
            |(handover, epoch, current_epoch, live, answered, checked)| {
                Op::Cmd(Command::Liveness {
                    handover,
                    epoch,
                    current_epoch,
                    live: live
                        .into_iter()
                        .map(|(v, index)| LiveSighting {
                            pubkey: pk(v),
                            index,
                            seen_by: vec!["http://b1".into()],
                        })
                        .collect(),
                    answered: if answered {
                        vec!["http://b1".into()]
                    } else {
                        vec![]
                    },
                    checked,
                    node: 1,
                    at_ms: 0,
                })
            },
        );
    let abort = (num(), num()).prop_map(|(id, at_ms)| {
        Op::Cmd(Command::AbortHandover {
            id,
            operator: "op1".into(),
            reason: "x".into(),
            at_ms,
        })
    });
    // Half of them as an agent without proofs of possession: refused, the same everywhere.
    let import = (interchange(), num(), any::<bool>(), any::<bool>()).prop_map(
        |(interchange, at_ms, allow_future, by_agent)| {
            Op::Cmd(Command::ImportInterchange {
                interchange,
                genesis_validators_root: GVR,
                operator: "op1".into(),
                at_ms,
                allow_future,
                agent: by_agent.then(|| "a".to_string()),
                possession: vec![],
            })
        },
    );
    let finality = (num(), num(), num()).prop_map(|(epoch, at_ms, spe)| {
        Op::Cmd(Command::Finality {
            checkpoint: CheckpointObs {
                epoch,
                root: Root::ZERO,
            },
            observations: vec![],
            at_ms,
            slots_per_epoch: spe,
        })
    });
    let audit = num().prop_map(|at_ms| {
        Op::Cmd(Command::RecordAudit {
            operator: "op1".into(),
            action: failover_protocol::AuditAction::ClusterPromote,
            detail: String::new(),
            outcome: "completed".into(),
            at_ms,
        })
    });
    prop_oneof![
        2 => register,
        3 => records,
        6 => as_holder,
        2 => request,
        3 => approve,
        1 => abort,
        2 => import,
        2 => finality,
        3 => liveness,
        1 => audit,
        1 => Just(Op::Reopen),
    ]
}

fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn state_of(sm: &StateMachineStore) -> StateData {
    sm.shared().read().unwrap().data.clone()
}

/// Runs `ops` on two replicas; returns a description of the first broken property, if any.
fn run(ops: &[Op]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut a = StateMachineStore::load(open_db(da.path()).unwrap()).unwrap();
        let mut b = StateMachineStore::load(open_db(db.path()).unwrap()).unwrap();
        let mut accepted: Vec<RecordItem> = Vec::new();
        let mut max_token = 0u64;
        let mut index = 0u64;
        // Every applied command and the responses replica `a` released, for the replay check.
        let mut applied: Vec<(Command, Vec<Response>)> = Vec::new();
        for op in ops {
            let cmd = match op {
                Op::Reopen => {
                    drop(b);
                    b = StateMachineStore::load(open_db(db.path()).unwrap()).unwrap();
                    continue;
                }
                Op::Cmd(c) => c.clone(),
                Op::RecordAsHolder(items) => {
                    let st = state_of(&a);
                    Command::RecordBatch {
                        agent: st.authority.holder.clone().unwrap_or_else(|| "a".into()),
                        token: st.authority.token,
                        items: items.clone(),
                    }
                }
            };
            index += 1;
            let before = state_of(&a).authority;
            let ra = a
                .apply([entry(index, cmd.clone())])
                .await
                .map_err(|e| e.to_string())?;
            let rb = b
                .apply([entry(index, cmd.clone())])
                .await
                .map_err(|e| e.to_string())?;
            if ra != rb {
                return Err(format!(
                    "replicas answered differently at {index}: {ra:?} / {rb:?}"
                ));
            }
            applied.push((cmd.clone(), ra.clone()));
            let after = state_of(&a).authority;
            // I1
            if after.holder.is_some() && after != before {
                if after.token <= max_token {
                    return Err(format!("token did not grow: {before:?} → {after:?}"));
                }
                max_token = after.token;
            }
            // I2 and I3
            if let (
                Command::RecordBatch {
                    agent,
                    token,
                    items,
                },
                Response::Records { verdicts },
            ) = (&cmd, &ra[0])
            {
                if before.holder.as_ref() != Some(agent) || before.token != *token {
                    return Err(format!("verdicts for a non-holder batch at {index}"));
                }
                for (item, v) in items.iter().zip(verdicts) {
                    if *v == Verdict::Valid {
                        if let Some(prev) = accepted
                            .iter()
                            .find(|p| p.pubkey() == item.pubkey() && support::slashable(p, item))
                        {
                            return Err(format!("slashable pair accepted: {prev:?} / {item:?}"));
                        }
                        accepted.push(item.clone());
                    }
                }
            }
        }
        drop(b);
        let b = StateMachineStore::load(open_db(db.path()).unwrap()).unwrap();
        if state_of(&a) != state_of(&b) {
            return Err("the replicas' states differ".into());
        }
        replay_after_lost_state_writes(&a, &applied).await
    })
}

/// State writes are not fsynced (store module docs, DESIGN.md "Durability and fsyncs"): a
/// crash may lose every state write after some entry `k`, and openraft then re-applies
/// `k+1..` from the durable log. That is safe only if the replay answers exactly what was
/// released the first time and ends in the same state: checked here for every `k` of a
/// sample (the first, the middle, the last).
async fn replay_after_lost_state_writes(
    a: &StateMachineStore,
    applied: &[(Command, Vec<Response>)],
) -> Result<(), String> {
    let n = applied.len();
    let mut ks = vec![0, n / 2, n.saturating_sub(1)];
    ks.dedup();
    for k in ks {
        let dir = tempfile::tempdir().unwrap();
        let mut c = StateMachineStore::load(open_db(dir.path()).unwrap()).unwrap();
        for (i, (cmd, _)) in applied.iter().take(k).enumerate() {
            c.apply([entry(i as u64 + 1, cmd.clone())])
                .await
                .map_err(|e| e.to_string())?;
        }
        // The crash: only the state up to entry k survived; restart and replay the rest.
        drop(c);
        let mut c = StateMachineStore::load(open_db(dir.path()).unwrap()).unwrap();
        for (i, (cmd, released)) in applied.iter().enumerate().skip(k) {
            let again = c
                .apply([entry(i as u64 + 1, cmd.clone())])
                .await
                .map_err(|e| e.to_string())?;
            if &again != released {
                return Err(format!(
                    "replay from {k} answered entry {} differently: {again:?}, released {released:?}",
                    i + 1
                ));
            }
        }
        if state_of(&c) != state_of(a) {
            return Err(format!("replay from {k} ended in another state"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_commands_never_panic_and_replicas_agree(ops in prop::collection::vec(op(), 1..50)) {
        if let Err(e) = run(&ops) {
            prop_assert!(false, "{}", e);
        }
    }
}

#[test]
fn the_poison_pill_import_of_u64_max_is_applied_without_a_panic() {
    let poison = Interchange {
        metadata: Metadata {
            interchange_format_version: "5".into(),
            genesis_validators_root: GVR,
        },
        data: vec![ValidatorData {
            pubkey: pk(0),
            signed_blocks: vec![SignedBlock {
                slot: u64::MAX,
                signing_root: None,
            }],
            signed_attestations: vec![SignedAttestation {
                source_epoch: 5,
                target_epoch: u64::MAX,
                signing_root: None,
            }],
        }],
    };
    let policy = HandoverPolicy {
        approvals_required: 1,
        two_person_rule: false,
        break_glass_approvals: 1,
        slots_per_epoch: 32,
        doppelganger_epochs: None,
    };
    let ops = vec![
        Op::Cmd(Command::RegisterAgent {
            agent: "a".into(),
            region: "eu".into(),
            pubkeys: vec![pk(0)],
        }),
        Op::Cmd(Command::RequestHandover {
            to: "a".into(),
            reason: "r".into(),
            operator: "op1".into(),
            at_ms: 0,
            policy,
            chain_epoch: None,
        }),
        Op::Cmd(Command::ApproveHandover {
            id: 2,
            operator: "op1".into(),
            break_glass: false,
            at_ms: 0,
            policy,
            acknowledged: vec![],
        }),
        Op::Cmd(Command::ImportInterchange {
            interchange: poison,
            genesis_validators_root: GVR,
            operator: "op1".into(),
            at_ms: 0,
            allow_future: false,
            agent: None,
            possession: vec![],
        }),
        Op::RecordAsHolder(vec![
            RecordItem::Attestation {
                pubkey: pk(0),
                source_epoch: 6,
                target_epoch: 7,
                signing_root: root_of(1),
            },
            RecordItem::Attestation {
                pubkey: pk(0),
                source_epoch: u64::MAX,
                target_epoch: u64::MAX,
                signing_root: root_of(1),
            },
            RecordItem::Block {
                pubkey: pk(0),
                slot: u64::MAX,
                signing_root: root_of(1),
            },
        ]),
        Op::Cmd(Command::Finality {
            checkpoint: CheckpointObs {
                epoch: u64::MAX,
                root: Root::ZERO,
            },
            observations: vec![],
            at_ms: u64::MAX,
            slots_per_epoch: u64::MAX,
        }),
        Op::Reopen,
    ];
    run(&ops).unwrap();
}
