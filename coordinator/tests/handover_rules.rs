//! The handover flow of the replicated state machine as scenarios (DESIGN.md "Handover",
//! I1, I2, I5), applied directly to `StateData` as the log would.

use coordinator::state::{Command, Dirty, HandoverPolicy, Rejection, Response, StateData};
use failover_common::beacon::CheckpointObs;
use failover_common::types::{Pubkey, Root};
use failover_protocol::HandoverState;
use failover_protocol::{RecordItem, Verdict};

const POLICY: HandoverPolicy = HandoverPolicy {
    approvals_required: 2,
    two_person_rule: true,
    break_glass_approvals: 3,
    slots_per_epoch: 32,
    doppelganger_epochs: None,
};

/// A state machine driven entry by entry, with log indexes as Raft would assign them.
struct Log {
    state: StateData,
    index: u64,
}

impl Log {
    fn new() -> Self {
        let mut l = Log {
            state: StateData::default(),
            index: 0,
        };
        for a in ["agent-eu", "agent-us"] {
            l.apply(Command::RegisterAgent {
                agent: a.into(),
                region: "r".into(),
                pubkeys: vec![Pubkey([1; 48])],
            });
        }
        l
    }
    fn apply(&mut self, cmd: Command) -> Response {
        self.index += 1;
        self.state.apply(self.index, &cmd, &mut Dirty::default())
    }
    fn request(&mut self, to: &str, by: &str) -> Response {
        self.apply(Command::RequestHandover {
            to: to.into(),
            reason: "test".into(),
            operator: by.into(),
            at_ms: self.index * 1000,
            policy: POLICY,
            chain_epoch: None,
        })
    }
    fn approve(&mut self, id: u64, by: &str, break_glass: bool) -> Response {
        self.apply(Command::ApproveHandover {
            id,
            operator: by.into(),
            break_glass,
            at_ms: self.index * 1000,
            policy: POLICY,
            acknowledged: vec![],
        })
    }
    fn finality(&mut self, epoch: u64) -> Response {
        self.apply(Command::Finality {
            checkpoint: CheckpointObs {
                epoch,
                root: Root([epoch as u8; 32]),
            },
            observations: vec![],
            at_ms: 0,
            slots_per_epoch: 32,
        })
    }
    fn record(&mut self, agent: &str, token: u64, source: u64, target: u64) -> Response {
        self.apply(Command::RecordBatch {
            agent: agent.into(),
            token,
            items: vec![RecordItem::Attestation {
                pubkey: Pubkey([1; 48]),
                source_epoch: source,
                target_epoch: target,
                signing_root: Root([target as u8; 32]),
            }],
        })
    }
    /// Grants `agent` authority through a full handover; returns the token.
    fn grant(&mut self, agent: &str) -> u64 {
        let id = handover_id(&self.request(agent, "alice"));
        self.approve(id, "bob", false);
        handover(self.approve(id, "carol", false))
            .granted_token
            .unwrap()
    }
}

fn handover(r: Response) -> failover_protocol::Handover {
    match r {
        Response::Handover { handover } => *handover,
        other => panic!("expected a handover, got {other:?}"),
    }
}

fn handover_id(r: &Response) -> u64 {
    match r {
        Response::Handover { handover } => handover.id,
        other => panic!("expected a handover, got {other:?}"),
    }
}

fn rejected(r: Response) -> (Rejection, String) {
    match r {
        Response::Rejected { code, message } => (code, message),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn first_grant_needs_no_finality_but_needs_distinct_approvals() {
    let mut l = Log::new();
    let h = handover(l.request("agent-eu", "alice"));
    assert_eq!(h.state, HandoverState::AwaitingApproval);
    assert_eq!(h.required_epoch, 0);
    let (code, _) = rejected(l.approve(h.id, "alice", false));
    assert_eq!(code, Rejection::Forbidden, "two-person rule");
    assert_eq!(
        handover(l.approve(h.id, "bob", false)).state,
        HandoverState::AwaitingApproval
    );
    let (code, _) = rejected(l.approve(h.id, "bob", false));
    assert_eq!(
        code,
        Rejection::Conflict,
        "the same operator twice counts once"
    );
    let done = handover(l.approve(h.id, "carol", false));
    assert_eq!(done.state, HandoverState::Completed);
    assert_eq!(
        done.granted_token,
        Some(l.index),
        "token is the log index of the grant"
    );
    assert_eq!(l.state.authority.holder.as_deref(), Some("agent-eu"));
}

#[test]
fn request_fences_the_holder_in_the_same_entry() {
    let mut l = Log::new();
    let token = l.grant("agent-eu");
    assert!(matches!(
        l.record("agent-eu", token, 4, 5),
        Response::Records { .. }
    ));
    let h = handover(l.request("agent-us", "alice"));
    assert_eq!(h.fenced_at, h.id);
    assert_eq!(
        h.required_epoch, 5,
        "the fenced holder's highest recorded epoch"
    );
    assert_eq!(l.state.authority.holder, None);
    match l.record("agent-eu", token, 5, 6) {
        Response::NotHolder { holder, token: t } => {
            assert_eq!(holder, None);
            assert_eq!(t, token);
        }
        other => panic!("fenced agent must be refused, got {other:?}"),
    }
}

#[test]
fn approval_is_refused_until_finality_covers_required_epoch() {
    let mut l = Log::new();
    let token = l.grant("agent-eu");
    l.record("agent-eu", token, 4, 5);
    let id = handover_id(&l.request("agent-us", "alice"));
    let (code, message) = rejected(l.approve(id, "bob", false));
    assert_eq!(code, Rejection::Conflict);
    assert!(message.contains("required epoch 5"), "{message}");
    l.finality(4);
    assert_eq!(
        l.state.handovers[&id].state,
        HandoverState::AwaitingFinality
    );
    l.finality(5);
    assert_eq!(
        l.state.handovers[&id].state,
        HandoverState::AwaitingApproval
    );
    l.approve(id, "bob", false);
    let done = handover(l.approve(id, "carol", false));
    assert_eq!(done.state, HandoverState::Completed);
    assert!(
        done.granted_token.unwrap() > token,
        "every grant has a larger token (I1)"
    );
    let events: Vec<_> = done.timeline.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "requested",
            "fenced",
            "finality_confirmed",
            "approved",
            "approved",
            "completed"
        ]
    );
}

#[test]
fn finality_never_moves_back() {
    let mut l = Log::new();
    l.finality(9);
    l.finality(3);
    assert_eq!(l.state.finalized_epoch(), 9);
}

#[test]
fn break_glass_needs_the_larger_quorum_and_is_marked() {
    let mut l = Log::new();
    let token = l.grant("agent-eu");
    l.record("agent-eu", token, 7, 8);
    let id = handover_id(&l.request("agent-us", "alice"));
    l.approve(id, "bob", true);
    assert_eq!(
        handover(l.approve(id, "carol", true)).state,
        HandoverState::AwaitingFinality,
        "two break-glass approvals are not enough"
    );
    let done = handover(l.approve(id, "dave", true));
    assert_eq!(done.state, HandoverState::Completed);
    assert!(done.break_glass);
    let loud = l
        .state
        .audit
        .iter()
        .filter(|e| e.action == failover_protocol::AuditAction::HandoverApproveBreakGlass)
        .count();
    assert_eq!(loud, 3);
    // Slashing protection still holds for the new holder (DESIGN.md break-glass).
    let new_token = done.granted_token.unwrap();
    match l.record("agent-us", new_token, 6, 9) {
        Response::Records { verdicts } => assert!(matches!(verdicts[0], Verdict::Refused(_))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn abort_leaves_the_old_holder_fenced_and_only_one_handover_is_open() {
    let mut l = Log::new();
    let token = l.grant("agent-eu");
    let id = handover_id(&l.request("agent-us", "alice"));
    let (code, _) = rejected(l.request("agent-eu", "bob"));
    assert_eq!(code, Rejection::Conflict, "one open handover at a time");
    let aborted = handover(l.apply(Command::AbortHandover {
        id,
        operator: "bob".into(),
        reason: "changed plans".into(),
        at_ms: 0,
    }));
    assert_eq!(aborted.state, HandoverState::Aborted);
    assert_eq!(l.state.authority.holder, None, "abort does not unfence");
    assert!(matches!(
        l.record("agent-eu", token, 1, 2),
        Response::NotHolder { .. }
    ));
    let (code, _) = rejected(l.approve(id, "carol", false));
    assert_eq!(
        code,
        Rejection::Conflict,
        "an aborted handover cannot be approved"
    );
}

#[test]
fn handover_to_an_unregistered_agent_or_without_reason_is_refused_and_audited() {
    let mut l = Log::new();
    let (code, _) = rejected(l.request("agent-xx", "alice"));
    assert_eq!(code, Rejection::NotFound);
    let r = l.apply(Command::RequestHandover {
        to: "agent-eu".into(),
        reason: "  ".into(),
        operator: "alice".into(),
        at_ms: 0,
        policy: POLICY,
        chain_epoch: None,
    });
    assert_eq!(rejected(r).0, Rejection::BadRequest);
    assert_eq!(l.state.audit.len(), 2);
    assert!(l
        .state
        .audit
        .iter()
        .all(|e| e.outcome.starts_with("refused")));
    assert!(l.state.audit.iter().all(|e| e.operator == "alice"));
}

#[test]
fn apply_is_deterministic() {
    let run = || {
        let mut l = Log::new();
        let t = l.grant("agent-eu");
        l.record("agent-eu", t, 1, 2);
        l.request("agent-us", "alice");
        l.finality(2);
        serde_json::to_string(&l.state).unwrap()
    };
    assert_eq!(run(), run());
}

#[test]
fn a_validator_without_history_signs_nothing_older_than_finality() {
    use failover_protocol::{Refusal, Verdict};
    let mut l = Log::new();
    let token = l.grant("agent-eu");
    l.finality(10);
    let verdict = |r: Response| match r {
        Response::Records { verdicts } => verdicts[0].clone(),
        other => panic!("{other:?}"),
    };
    // Finalized epoch 10, margin 1: the first record starts above epoch 9.
    assert_eq!(
        verdict(l.record("agent-eu", token, 4, 5)),
        Verdict::Refused(Refusal::SourceBelowWatermark {
            source_epoch: 4,
            watermark: 9
        })
    );
    assert!(
        l.state.validators.is_empty(),
        "a refused first record leaves no history behind"
    );
    assert_eq!(verdict(l.record("agent-eu", token, 9, 10)), Verdict::Valid);
    assert_eq!(verdict(l.record("agent-eu", token, 10, 11)), Verdict::Valid);
}
