//! The liveness gate (doppelganger check) of the replicated state machine as scenarios
//! (DESIGN.md "Liveness gate", issue 16 item 1), applied to `StateData` as the log would, and
//! the leader's evidence builder fed with answers from beacon nodes that disagree or fail.

use coordinator::liveness::{evidence, next_task, LivenessTask};
use coordinator::state::{
    Command, Dirty, HandoverPolicy, LiveSighting, Rejection, Response, StateData,
};
use failover_common::beacon::{BeaconError, CheckpointObs};
use failover_common::types::{Pubkey, Root};
use failover_protocol::{AuditAction, Handover, HandoverEvent, HandoverState, RecordItem};

const POLICY: HandoverPolicy = HandoverPolicy {
    approvals_required: 1,
    two_person_rule: true,
    break_glass_approvals: 2,
    slots_per_epoch: 32,
    doppelganger_epochs: Some(2),
};

const K1: Pubkey = Pubkey([1; 48]);
const K2: Pubkey = Pubkey([2; 48]);
const K3: Pubkey = Pubkey([3; 48]);

struct Log {
    state: StateData,
    index: u64,
}

impl Log {
    /// Two agents holding K1, K2, K3; agent-eu holds authority and signed up to epoch 10.
    fn with_holder_at_epoch_10() -> Self {
        let mut l = Log {
            state: StateData::default(),
            index: 0,
        };
        for a in ["agent-eu", "agent-us"] {
            l.apply(Command::RegisterAgent {
                agent: a.into(),
                region: "r".into(),
                pubkeys: vec![K1, K2, K3],
            });
        }
        // The first grant: its own window starts after the request's epoch 3.
        let id = l.request("agent-eu", Some(3));
        l.liveness(id, 4, 9, &[]);
        l.liveness(id, 5, 9, &[]);
        let h = handover(l.approve(id, "bob", false, &[]));
        assert_eq!(h.state, HandoverState::Completed, "{h:?}");
        let token = l.state.authority.token;
        let r = l.apply(Command::RecordBatch {
            agent: "agent-eu".into(),
            token,
            items: vec![RecordItem::Attestation {
                pubkey: K1,
                source_epoch: 9,
                target_epoch: 10,
                signing_root: Root([10; 32]),
            }],
        });
        assert!(matches!(r, Response::Records { .. }), "{r:?}");
        l
    }
    fn apply(&mut self, cmd: Command) -> Response {
        self.index += 1;
        self.state.apply(self.index, &cmd, &mut Dirty::default())
    }
    fn request(&mut self, to: &str, chain_epoch: Option<u64>) -> u64 {
        handover(self.apply(Command::RequestHandover {
            to: to.into(),
            reason: "drill".into(),
            operator: "alice".into(),
            at_ms: 1,
            policy: POLICY,
            chain_epoch,
        }))
        .id
    }
    fn approve(&mut self, id: u64, by: &str, break_glass: bool, ack: &[Pubkey]) -> Response {
        self.apply(Command::ApproveHandover {
            id,
            operator: by.into(),
            break_glass,
            at_ms: 2,
            policy: POLICY,
            acknowledged: ack.to_vec(),
        })
    }
    fn finality(&mut self, epoch: u64) -> Response {
        self.apply(Command::Finality {
            checkpoint: CheckpointObs {
                epoch,
                root: Root([epoch as u8; 32]),
            },
            observations: vec![],
            at_ms: 3,
            slots_per_epoch: 32,
        })
    }
    fn liveness(&mut self, id: u64, epoch: u64, current: u64, live: &[(Pubkey, u64)]) -> Response {
        self.apply(Command::Liveness {
            handover: id,
            epoch,
            current_epoch: current,
            live: live
                .iter()
                .map(|(pk, index)| LiveSighting {
                    pubkey: *pk,
                    index: *index,
                    seen_by: vec!["http://beacon-eu".into()],
                })
                .collect(),
            answered: vec!["http://beacon-eu".into(), "http://beacon-us".into()],
            checked: 3,
            node: 1,
            at_ms: 4,
        })
    }
    fn handover(&self, id: u64) -> &Handover {
        &self.state.handovers[&id]
    }
}

fn handover(r: Response) -> Handover {
    match r {
        Response::Handover { handover } => *handover,
        other => panic!("expected a handover, got {other:?}"),
    }
}

fn rejected(r: Response) -> (Rejection, String) {
    match r {
        Response::Rejected { code, message } => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_window_starts_after_the_holders_last_message_and_its_inclusion_epoch() {
    let mut l = Log::with_holder_at_epoch_10();
    // The old holder signed target 10; it can be seen in 10 and 11 (inclusion). Requested in
    // epoch 10: the window starts at 12.
    let id = l.request("agent-us", Some(10));
    let g = l.handover(id).liveness.clone().unwrap();
    assert_eq!((g.first_epoch, g.epochs_required), (12, 2));
    // Requested much later (epoch 30): epochs before the request are not asked about.
    l.apply(Command::AbortHandover {
        id,
        operator: "alice".into(),
        reason: "again".into(),
        at_ms: 5,
    });
    let id = l.request("agent-us", Some(30));
    assert_eq!(l.handover(id).liveness.as_ref().unwrap().first_epoch, 31);
}

#[test]
fn live_only_before_the_fence_is_allowed() {
    let mut l = Log::with_holder_at_epoch_10();
    let id = l.request("agent-us", Some(10));
    // Beacon nodes saw the validators live in 10 and 11: the old holder's own messages. The
    // leader never asks about those epochs, and the state machine refuses evidence for them.
    let (code, msg) = rejected(l.liveness(id, 11, 14, &[(K1, 0)]));
    assert_eq!(code, Rejection::Conflict);
    assert!(msg.contains("needs epoch 12 next"), "{msg}");
    assert_eq!(l.handover(id).state, HandoverState::AwaitingFinality);
    l.finality(10);
    assert_eq!(l.handover(id).state, HandoverState::AwaitingLiveness);
    let (code, msg) = rejected(l.approve(id, "bob", false, &[]));
    assert_eq!(code, Rejection::Conflict);
    assert!(msg.contains("waits for the liveness gate"), "{msg}");
    assert!(msg.contains("epochs 12 to 13; 0 of 2"), "{msg}");
    l.liveness(id, 12, 14, &[]);
    assert_eq!(l.handover(id).state, HandoverState::AwaitingLiveness);
    let h = handover(l.liveness(id, 13, 14, &[]));
    assert_eq!(h.state, HandoverState::AwaitingApproval);
    assert!(h.liveness.as_ref().unwrap().passed());
    assert!(h
        .timeline
        .iter()
        .any(|e| e.event == HandoverEvent::LivenessConfirmed));
    let h = handover(l.approve(id, "bob", false, &[]));
    assert_eq!(h.state, HandoverState::Completed);
    assert_eq!(l.state.authority.holder.as_deref(), Some("agent-us"));
}

#[test]
fn liveness_passing_before_finality_waits_for_finality_then_needs_approval() {
    let mut l = Log::with_holder_at_epoch_10();
    let id = l.request("agent-us", Some(10));
    l.liveness(id, 12, 14, &[]);
    l.liveness(id, 13, 14, &[]);
    assert_eq!(l.handover(id).state, HandoverState::AwaitingFinality);
    l.finality(10);
    assert_eq!(l.handover(id).state, HandoverState::AwaitingApproval);
}

#[test]
fn live_in_the_window_stops_the_handover_and_names_the_validators() {
    let mut l = Log::with_holder_at_epoch_10();
    let id = l.request("agent-us", Some(10));
    l.finality(10);
    l.liveness(id, 12, 14, &[]);
    let h = handover(l.liveness(id, 13, 15, &[(K2, 7), (K3, 8)]));
    assert_eq!(h.state, HandoverState::DoppelgangerDetected);
    let g = h.liveness.unwrap();
    let named: Vec<(Pubkey, u64, u64)> = g
        .findings
        .iter()
        .map(|f| (f.pubkey, f.index, f.epoch))
        .collect();
    assert_eq!(named, vec![(K2, 7, 13), (K3, 8, 13)]);
    assert!(!g.passed());
    assert_eq!(l.state.authority.holder, None, "nobody is granted");
    // The audit says so, naming the validators and the beacon node.
    let a = l.state.audit.last().unwrap();
    assert_eq!(a.action, AuditAction::HandoverDoppelgangerDetected);
    assert_eq!(a.operator, "node:1");
    assert!(a.detail.contains(&K2.to_string()), "{}", a.detail);
    assert!(a.detail.contains("epoch 13"), "{}", a.detail);
    assert!(a.detail.contains("http://beacon-eu"), "{}", a.detail);
    // No more evidence moves it.
    let (code, _) = rejected(l.liveness(id, 14, 16, &[]));
    assert_eq!(code, Rejection::Conflict);
    // A plain approval is refused and says what to do.
    let (code, msg) = rejected(l.approve(id, "bob", false, &[]));
    assert_eq!(code, Rejection::Conflict);
    assert!(msg.contains("doppelganger detected"), "{msg}");
    assert!(msg.contains("break-glass"), "{msg}");
    // Abort ends it; the old holder stays fenced.
    let h = handover(l.apply(Command::AbortHandover {
        id,
        operator: "bob".into(),
        reason: "rogue signer on the standby box".into(),
        at_ms: 6,
    }));
    assert_eq!(h.state, HandoverState::Aborted);
    assert_eq!(l.state.authority.holder, None);
}

#[test]
fn break_glass_must_name_every_validator_seen_live() {
    let mut l = Log::with_holder_at_epoch_10();
    let id = l.request("agent-us", Some(10));
    l.liveness(id, 12, 14, &[(K2, 7), (K3, 8)]);
    // Naming only one of the two is refused, and the refusal names the other.
    let (code, msg) = rejected(l.approve(id, "bob", true, &[K2]));
    assert_eq!(code, Rejection::Forbidden);
    assert!(msg.contains(&K3.to_string()), "{msg}");
    assert!(!msg.contains(&K2.to_string()), "{msg}");
    // Two break-glass approvals naming both complete it.
    let h = handover(l.approve(id, "bob", true, &[K3, K2]));
    assert_eq!(h.state, HandoverState::DoppelgangerDetected);
    let h = handover(l.approve(id, "carol", true, &[K2, K3, K1]));
    assert_eq!(h.state, HandoverState::Completed);
    assert!(h.break_glass);
    assert_eq!(l.state.authority.holder.as_deref(), Some("agent-us"));
    let a = l.state.audit.last().unwrap();
    assert_eq!(a.action, AuditAction::HandoverApproveBreakGlass);
    assert!(
        a.detail.contains("acknowledges 3 validator(s)"),
        "{}",
        a.detail
    );
}

#[test]
fn a_break_glass_approval_given_before_the_finding_does_not_count_after_it() {
    let mut l = Log::with_holder_at_epoch_10();
    let id = l.request("agent-us", Some(10));
    // bob breaks glass while the gate is still pending (beacon nodes down, say).
    let h = handover(l.approve(id, "bob", true, &[]));
    assert_eq!(h.state, HandoverState::AwaitingFinality);
    // Then a doppelganger is found: bob's approval named nobody, so carol's alone is one
    // of the two needed.
    l.liveness(id, 12, 14, &[(K1, 0)]);
    let h = handover(l.approve(id, "carol", true, &[K1]));
    assert_eq!(h.state, HandoverState::DoppelgangerDetected);
    let h = handover(l.approve(id, "dave", true, &[K1]));
    assert_eq!(h.state, HandoverState::Completed);
}

#[test]
fn break_glass_still_passes_a_pending_gate_when_beacon_nodes_are_down() {
    let mut l = Log::with_holder_at_epoch_10();
    let id = l.request("agent-us", Some(10));
    handover(l.approve(id, "bob", true, &[]));
    let h = handover(l.approve(id, "carol", true, &[]));
    assert_eq!(h.state, HandoverState::Completed);
    assert!(h.break_glass);
}

#[test]
fn evidence_that_does_not_fit_the_gate_is_refused_and_changes_nothing() {
    let mut l = Log::with_holder_at_epoch_10();
    let id = l.request("agent-us", Some(10));
    let before = l.state.clone();
    // An epoch that is not complete.
    let (code, msg) = rejected(l.liveness(id, 12, 12, &[]));
    assert_eq!(code, Rejection::BadRequest);
    assert!(msg.contains("not complete"), "{msg}");
    // Skipping an epoch.
    let (code, _) = rejected(l.liveness(id, 13, 20, &[]));
    assert_eq!(code, Rejection::Conflict);
    // A validator the target does not hold.
    let (code, msg) = rejected(l.liveness(id, 12, 20, &[(Pubkey([9; 48]), 5)]));
    assert_eq!(code, Rejection::BadRequest);
    assert!(msg.contains("not a validator of agent-us"), "{msg}");
    // No node answered.
    let (code, _) = rejected(l.apply(Command::Liveness {
        handover: id,
        epoch: 12,
        current_epoch: 20,
        live: vec![],
        answered: vec![],
        checked: 0,
        node: 1,
        at_ms: 0,
    }));
    assert_eq!(code, Rejection::BadRequest);
    // An unknown handover, u64::MAX everywhere.
    let (code, _) = rejected(l.liveness(u64::MAX, u64::MAX, u64::MAX, &[]));
    assert_eq!(code, Rejection::NotFound);
    let mut after = l.state.clone();
    after.audit.truncate(before.audit.len());
    assert_eq!(after, before);
}

#[test]
fn a_window_at_the_end_of_u64_never_passes_nor_panics() {
    let mut l = Log::with_holder_at_epoch_10();
    let id = l.request("agent-us", Some(u64::MAX));
    let g = l.handover(id).liveness.clone().unwrap();
    assert_eq!(g.first_epoch, u64::MAX);
    // No epoch is below u64::MAX's "current" and at u64::MAX at once.
    let (code, _) = rejected(l.liveness(id, u64::MAX, u64::MAX, &[]));
    assert_eq!(code, Rejection::BadRequest);
    assert_eq!(l.handover(id).state, HandoverState::AwaitingFinality);
}

#[test]
fn handovers_written_before_the_gate_replay_without_it() {
    let mut l = Log::with_holder_at_epoch_10();
    let legacy = HandoverPolicy {
        doppelganger_epochs: None,
        ..POLICY
    };
    let h = handover(l.apply(Command::RequestHandover {
        to: "agent-us".into(),
        reason: "old entry".into(),
        operator: "alice".into(),
        at_ms: 1,
        policy: legacy,
        chain_epoch: None,
    }));
    assert!(h.liveness.is_none());
    l.finality(10);
    assert_eq!(l.handover(h.id).state, HandoverState::AwaitingApproval);
}

fn task() -> LivenessTask {
    LivenessTask {
        handover: 9,
        to: "agent-us".into(),
        epoch: 12,
        current_epoch: 14,
        pubkeys: vec![K1, K2],
    }
}

fn clear() -> Result<Vec<(Pubkey, u64, bool)>, BeaconError> {
    Ok(vec![(K1, 0, false), (K2, 1, false)])
}

#[test]
fn beacon_nodes_that_disagree_stop_the_handover() {
    // beacon-eu saw K2 live, beacon-us did not: the gate does not average them.
    let cmd = evidence(
        vec![
            (
                "http://beacon-eu".into(),
                Ok(vec![(K1, 0, false), (K2, 1, true)]),
            ),
            ("http://beacon-us".into(), clear()),
        ],
        2,
        &task(),
        1,
        0,
    )
    .unwrap();
    let mut l = Log::with_holder_at_epoch_10();
    let id = l.request("agent-us", Some(10));
    let cmd = match cmd {
        Command::Liveness {
            epoch,
            live,
            answered,
            checked,
            ..
        } => Command::Liveness {
            handover: id,
            epoch,
            current_epoch: 14,
            live,
            answered,
            checked,
            node: 1,
            at_ms: 0,
        },
        other => panic!("{other:?}"),
    };
    let h = handover(l.apply(cmd));
    assert_eq!(h.state, HandoverState::DoppelgangerDetected);
    assert_eq!(
        h.liveness.unwrap().findings[0].seen_by,
        vec!["http://beacon-eu".to_string()]
    );
}

#[test]
fn beacon_nodes_that_are_unavailable_keep_the_gate_shut() {
    let down = || Err(BeaconError::Decode("connection refused".into()));
    let err = evidence(
        vec![
            ("http://beacon-eu".into(), clear()),
            ("http://beacon-us".into(), down()),
            ("http://beacon-ap".into(), down()),
        ],
        2,
        &task(),
        1,
        0,
    )
    .unwrap_err();
    assert!(
        err.contains("1 of 3 beacon node(s) answered, 2 needed"),
        "{err}"
    );
    // With no evidence, the handover cannot be approved normally, however long it waits.
    let mut l = Log::with_holder_at_epoch_10();
    let id = l.request("agent-us", Some(10));
    l.finality(100);
    assert_eq!(l.handover(id).state, HandoverState::AwaitingLiveness);
    let (code, _) = rejected(l.approve(id, "bob", false, &[]));
    assert_eq!(code, Rejection::Conflict);
}

#[test]
fn the_leader_asks_only_about_complete_epochs_in_order() {
    let mut l = Log::with_holder_at_epoch_10();
    let id = l.request("agent-us", Some(10));
    assert_eq!(next_task(&l.state, 12), None, "epoch 12 is not complete");
    let t = next_task(&l.state, 13).unwrap();
    assert_eq!((t.handover, t.epoch, t.to.as_str()), (id, 12, "agent-us"));
    assert_eq!(t.pubkeys, vec![K1, K2, K3]);
    l.liveness(id, 12, 13, &[]);
    assert_eq!(next_task(&l.state, 13), None);
    assert_eq!(next_task(&l.state, 20).unwrap().epoch, 13);
    l.liveness(id, 13, 20, &[]);
    assert_eq!(next_task(&l.state, 20), None, "the gate passed");
}
