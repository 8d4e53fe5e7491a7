//! The independent checker: a clean recorded history passes, and each planted violation
//! (double vote, surround vote, double proposal, bad signature, signature by a fenced agent,
//! approval before finality) makes the named check fail.
//!
//! Histories carry real BLS signatures by the interop keys over real Web3Signer request
//! bodies. The bodies are built with the lab's duty builders (which use
//! `failover_common::eth`): that is input generation; the checker recomputes every root itself.

use chaos::checker::{self, CheckReport, FaultWindow, History};
use chaos::lab::duties::{
    attestation_data, attestation_duty_from, block_duty_from, block_header, duties_for_slot, Duty,
    DutyRecord,
};
use chaos::lab::keys::Validator;
use chaos::lab::CommandWindow;
use failover_common::beacon::CheckpointObs;
use failover_common::eth::{Fork, ForkInfo};
use failover_common::interop;
use failover_common::types::{Root, Signature, Version};
use failover_protocol::{
    Approval, AuditAction, AuditEntry, DoppelgangerFinding, Handover, HandoverEvent, HandoverState,
    LivenessGate, TimelineEvent,
};

const SPE: u64 = 8;
const SLOTS: u64 = 24;
const DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
/// Agent A holds authority from the initial grant until the handover is requested.
const A: &str = "agent-eu";
/// Agent B holds authority once the handover completes.
const B: &str = "agent-us";
const HANDOVER_REQUESTED_MS: u64 = 11_500;
const HANDOVER_COMPLETED_MS: u64 = 12_800;

/// The fork changes at epoch 2, so both fork versions are exercised.
fn fork_info() -> ForkInfo {
    ForkInfo {
        fork: Fork {
            previous_version: Version([0, 0, 0, 1]),
            current_version: Version([4, 0, 0, 1]),
            epoch: 2,
        },
        genesis_validators_root: chaos::lab::lab_genesis_validators_root(),
    }
}

fn validators() -> Vec<Validator> {
    (0..4)
        .map(|index| Validator {
            index,
            pubkey: interop::pubkey(index),
        })
        .collect()
}

/// Slot `s` is sent at 2 s + s seconds (Unix µs).
fn slot_us(slot: u64) -> u64 {
    2_000_000 + slot * 1_000_000
}

fn sign(index: u64, root: &Root) -> Signature {
    Signature(
        interop::secret_key(index)
            .sign(&root.0, DST, &[])
            .to_bytes(),
    )
}

fn record(agent: &str, duty: &Duty, sent_us: u64, status: u16) -> DutyRecord {
    DutyRecord {
        agent: agent.into(),
        kind: duty.kind,
        validator: duty.validator.index,
        pubkey: duty.validator.pubkey,
        slot: duty.slot,
        source_epoch: duty.source_epoch,
        target_epoch: duty.target_epoch,
        signing_root: duty.signing_root,
        status,
        reason: if status == 200 {
            String::new()
        } else {
            "refused".into()
        },
        signature: (status == 200).then(|| sign(duty.validator.index, &duty.signing_root)),
        sent_us,
        received_us: sent_us + 1_000,
        probe: None,
        request: duty.body.clone(),
    }
}

fn ev(event: HandoverEvent, log_index: u64, at_ms: u64) -> TimelineEvent {
    TimelineEvent {
        event,
        log_index,
        at_ms,
    }
}

/// A completed handover: requested and fenced at `id`, finality confirmed at `id`, approved
/// by bob and completed at `id + 1`.
fn handover(id: u64, from: Option<&str>, to: &str, requested_ms: u64, done_ms: u64) -> Handover {
    Handover {
        id,
        from: from.map(Into::into),
        to: to.into(),
        requested_by: "alice".into(),
        reason: "test".into(),
        state: HandoverState::Completed,
        fenced_at: id,
        required_epoch: 0,
        finality_evidence: Some((
            CheckpointObs {
                epoch: 0,
                root: Root::ZERO,
            },
            id,
        )),
        approvals: vec![Approval {
            operator: "bob".into(),
            log_index: id + 1,
            at_ms: done_ms,
            break_glass: false,
            acknowledged: vec![],
        }],
        granted_token: Some(id + 1),
        break_glass: false,
        timeline: vec![
            ev(HandoverEvent::Requested, id, requested_ms),
            ev(HandoverEvent::Fenced, id, requested_ms),
            ev(HandoverEvent::FinalityConfirmed, id, requested_ms),
            ev(HandoverEvent::Approved, id + 1, done_ms),
            ev(HandoverEvent::Completed, id + 1, done_ms),
        ],
        liveness: None,
    }
}

fn audit(handover: u64, log_index: u64, at_ms: u64) -> AuditEntry {
    AuditEntry {
        log_index,
        at_ms,
        operator: "bob".into(),
        action: AuditAction::HandoverApprove,
        handover: Some(handover),
        detail: String::new(),
        outcome: "completed".into(),
    }
}

/// 24 slots (3 epochs) of honest duties sent to both agents: A signs slots 0–9, B refuses;
/// slot 10 falls in the handover and both refuse; B signs slots 11–23, A refuses.
fn clean_history() -> History {
    let vals = validators();
    let mut duties = Vec::new();
    for slot in 0..SLOTS {
        for duty in duties_for_slot(&vals, slot, &fork_info(), SPE) {
            let (a, b) = match slot {
                0..=9 => (200, 409),
                10 => (503, 503),
                _ => (409, 200),
            };
            duties.push(record(A, &duty, slot_us(slot), a));
            duties.push(record(B, &duty, slot_us(slot), b));
        }
    }
    History {
        slots_per_epoch: SPE,
        duties,
        handovers: vec![
            handover(1, None, A, 500, 1_000),
            handover(10, Some(A), B, HANDOVER_REQUESTED_MS, HANDOVER_COMPLETED_MS),
        ],
        audit: vec![audit(1, 2, 1_000), audit(10, 11, HANDOVER_COMPLETED_MS)],
        faults: vec![],
        leaders: vec![],
        authority: vec![],
        commands: vec![],
    }
}

fn validator(index: u64) -> Validator {
    Validator {
        index,
        pubkey: interop::pubkey(index),
    }
}

/// Asserts exactly the check `name` fails, with a violation mentioning `needle`.
fn assert_only_failure(report: &CheckReport, name: &str, needle: &str) {
    let failed: Vec<&str> = report.failed().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(failed, vec![name], "{:#?}", report.summary_lines());
    let c = report.check(name).expect("the check exists");
    assert!(
        c.violations.iter().any(|v| v.contains(needle)),
        "expected a violation mentioning `{needle}`: {:#?}",
        c.violations
    );
    assert!(!report.passed());
}

#[test]
fn a_clean_history_passes_every_check() {
    let h = clean_history();
    let report = checker::check(&h);
    assert!(report.passed(), "{:#?}", report.summary_lines());
    assert_eq!(report.checks.len(), 4);
    assert_eq!(report.authority.len(), 2);
    assert_eq!(report.authority[0].until_ms, Some(HANDOVER_REQUESTED_MS));
    let l = &report.liveness;
    // 24 proposals + 12 attestations (4 validators, once per epoch), all but slot 10's.
    assert_eq!(l.duties, 36);
    assert_eq!(l.signed, 36 - 2);
    assert_eq!(l.quiet_windows.len(), 1);
    let w = &l.quiet_windows[0];
    assert_eq!((w.first_slot, w.last_slot), (10, 10));
    assert_eq!(w.causes, vec![format!("handover 10 → {B}")]);
    let d = l
        .handovers
        .iter()
        .find(|d| d.handover == 10)
        .expect("handover 10");
    assert_eq!(
        d.downtime_ms,
        Some((slot_us(11) + 1_000) / 1_000 - HANDOVER_REQUESTED_MS)
    );
}

#[test]
fn a_planted_double_vote_fails_the_slashing_check() {
    let mut h = clean_history();
    // Validator 1 attested 0→1 at slot 9 (through A); B signs other data for target 1.
    let mut data = attestation_data(9, SPE);
    data.beacon_block_root = Root([7; 32]);
    let duty = attestation_duty_from(&validator(1), data, &fork_info());
    h.duties.push(record(B, &duty, slot_us(13), 200));
    assert_only_failure(&checker::check(&h), "no_slashable_pair", "double vote");
}

#[test]
fn a_planted_surround_vote_fails_the_slashing_check() {
    let mut h = clean_history();
    // Validator 1 attested 1→2 at slot 17; B signs 0→3, which surrounds it.
    let mut data = attestation_data(17, SPE);
    data.source.epoch = 0;
    data.target.epoch = 3;
    let duty = attestation_duty_from(&validator(1), data, &fork_info());
    h.duties.push(record(B, &duty, slot_us(20), 200));
    assert_only_failure(&checker::check(&h), "no_slashable_pair", "surround vote");
}

#[test]
fn a_surround_vote_is_found_whichever_message_was_signed_first() {
    let mut h = clean_history();
    // A, while it holds authority, signs 0→3 for validator 1, long before B's 1→2 at slot 17
    // (and first in the recorded history).
    let mut data = attestation_data(17, SPE);
    data.source.epoch = 0;
    data.target.epoch = 3;
    let duty = attestation_duty_from(&validator(1), data, &fork_info());
    h.duties.insert(0, record(A, &duty, slot_us(1), 200));
    assert_only_failure(&checker::check(&h), "no_slashable_pair", "surround vote");
}

#[test]
fn a_refused_conflicting_message_is_no_violation() {
    let mut h = clean_history();
    // The same double vote as above, refused (412): nothing was signed, nothing is slashable.
    let mut data = attestation_data(9, SPE);
    data.beacon_block_root = Root([7; 32]);
    let duty = attestation_duty_from(&validator(1), data, &fork_info());
    h.duties.push(record(B, &duty, slot_us(13), 412));
    let report = checker::check(&h);
    assert!(report.failed().is_empty(), "{report:?}");
}

#[test]
fn a_planted_double_proposal_fails_the_slashing_check() {
    let mut h = clean_history();
    // Validator 20 % 4 = 0 proposed slot 20 through B; B signs a second block for slot 20.
    let mut header = block_header(&validator(0), 20);
    header.body_root = Root([9; 32]);
    let duty = block_duty_from(&validator(0), header, &fork_info(), SPE);
    h.duties.push(record(B, &duty, slot_us(20) + 100, 200));
    assert_only_failure(&checker::check(&h), "no_slashable_pair", "double proposal");
}

#[test]
fn a_signature_over_another_message_fails_the_signature_check() {
    let mut h = clean_history();
    let i = h
        .duties
        .iter()
        .position(|r| r.status == 200 && r.slot == 5)
        .expect("a signed record at slot 5");
    let other = Root([1; 32]);
    h.duties[i].signature = Some(sign(h.duties[i].validator, &other));
    assert_only_failure(
        &checker::check(&h),
        "signatures_valid",
        "signature does not verify",
    );
}

#[test]
fn a_request_that_does_not_hash_to_the_recorded_root_fails_the_signature_check() {
    let mut h = clean_history();
    let i = h
        .duties
        .iter()
        .position(|r| r.status == 200 && r.slot == 6)
        .expect("a signed record at slot 6");
    h.duties[i].request["fork_info"]["genesis_validators_root"] =
        serde_json::json!(format!("0x{}", "11".repeat(32)));
    assert_only_failure(&checker::check(&h), "signatures_valid", "differs");
}

#[test]
fn a_signature_by_the_fenced_agent_during_the_new_holders_authority_fails() {
    let mut h = clean_history();
    // The same honest block B signed at slot 20, also signed by the fenced A.
    let duty = duties_for_slot(&validators(), 20, &fork_info(), SPE)
        .into_iter()
        .next()
        .expect("a proposal at slot 20");
    h.duties.push(record(A, &duty, slot_us(20), 200));
    assert_only_failure(
        &checker::check(&h),
        "signed_under_authority",
        "signed without authority",
    );
}

#[test]
fn a_handover_approved_before_finality_fails_the_order_check() {
    let mut h = clean_history();
    let ho = &mut h.handovers[1];
    for e in &mut ho.timeline {
        if e.event == HandoverEvent::FinalityConfirmed {
            e.log_index = 12;
        }
    }
    assert_only_failure(
        &checker::check(&h),
        "handover_order",
        "approved at index 11 before finality was confirmed at 12",
    );
}

/// The clean history's second handover with a liveness gate that found `live` validators
/// (none: the gate passed at index 10, before the approval at 11).
fn gated(h: &mut History, live: &[u64]) {
    let ho = &mut h.handovers[1];
    ho.liveness = Some(LivenessGate {
        first_epoch: 3,
        epochs_required: 2,
        clear_through: live.is_empty().then_some(4),
        passed_at: live.is_empty().then_some(10),
        findings: live
            .iter()
            .map(|i| DoppelgangerFinding {
                pubkey: interop::pubkey(*i),
                index: *i,
                epoch: 3,
                seen_by: vec!["http://beacon-eu".into()],
                log_index: 10,
            })
            .collect(),
    });
    let at = ho.timeline[2].at_ms;
    let event = if live.is_empty() {
        HandoverEvent::LivenessConfirmed
    } else {
        HandoverEvent::DoppelgangerDetected
    };
    ho.timeline.insert(3, ev(event, 10, at));
}

#[test]
fn a_gated_handover_that_passed_its_liveness_gate_passes() {
    let mut h = clean_history();
    gated(&mut h, &[]);
    let report = checker::check(&h);
    assert!(report.passed(), "{:#?}", report.summary_lines());
}

#[test]
fn a_handover_completed_after_a_doppelganger_finding_without_break_glass_fails() {
    let mut h = clean_history();
    gated(&mut h, &[2]);
    assert_only_failure(
        &checker::check(&h),
        "handover_order",
        "completed without break-glass although 1 validator(s) were seen live",
    );
}

#[test]
fn a_gated_handover_approved_before_liveness_was_confirmed_fails() {
    let mut h = clean_history();
    gated(&mut h, &[]);
    h.handovers[1].timeline[3].log_index = 12;
    assert_only_failure(
        &checker::check(&h),
        "handover_order",
        "approved at index 11 before liveness was confirmed at 12",
    );
}

#[test]
fn an_approval_by_the_requester_fails_the_order_check() {
    let mut h = clean_history();
    h.handovers[1].approvals[0].operator = "alice".into();
    assert_only_failure(
        &checker::check(&h),
        "handover_order",
        "approved by its requester",
    );
}

#[test]
fn a_quiet_window_inside_a_fault_names_the_fault_and_the_recovery_is_measured() {
    let mut h = clean_history();
    h.faults.push(FaultWindow {
        name: "partition eu".into(),
        start_us: slot_us(10) - 200_000,
        end_us: slot_us(10) + 500_000,
    });
    let report = checker::check(&h);
    assert!(report.passed());
    let w = &report.liveness.quiet_windows[0];
    assert!(
        w.causes.contains(&"fault `partition eu`".to_string()),
        "{w:?}"
    );
    let r = &report.liveness.recoveries[0];
    // Fault end (slot 10 + 0.5 s) → B's first answer at slot 11 + 1 ms.
    assert_eq!(r.recovery_ms, Some(501));
}

#[test]
fn reports_are_written_and_the_history_reloads_from_its_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = clean_history();
    h.faults.push(FaultWindow {
        name: "partition eu".into(),
        start_us: slot_us(10),
        end_us: slot_us(11),
    });
    let lines: Vec<String> = h
        .duties
        .iter()
        .map(|r| serde_json::to_string(r).expect("serialize"))
        .collect();
    std::fs::write(dir.path().join("duties.jsonl"), lines.join("\n")).expect("write duties");
    h.save_authority_history(dir.path()).expect("save");
    let loaded = History::load(dir.path(), SPE).expect("load");
    assert_eq!(loaded, h);
    let report = checker::check(&loaded);
    checker::write_reports(dir.path(), &loaded, &report).expect("reports");
    let md = std::fs::read_to_string(dir.path().join("report.md")).expect("md");
    assert!(md.contains("**Verdict: PASS**"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .expect("json");
    assert_eq!(json["passed"], true);
    let svg = std::fs::read_to_string(dir.path().join("timeline.svg")).expect("svg");
    assert!(
        svg.starts_with("<svg") && svg.contains("authority holder"),
        "{svg}"
    );
    assert!(svg.contains(&format!("{B} token 11")));
}

#[test]
fn a_signature_by_the_old_holder_between_fence_and_completion_fails() {
    let mut h = clean_history();
    // Slot 10 is sent at 12.0 s: after the fence (11.5 s), before the completion (12.8 s).
    let duty = duties_for_slot(&validators(), 10, &fork_info(), SPE)
        .into_iter()
        .next()
        .expect("a proposal at slot 10");
    h.duties.push(record(A, &duty, slot_us(10), 200));
    assert_only_failure(
        &checker::check(&h),
        "signed_under_authority",
        "the last grant before it went to agent-eu (token 2, fenced by 11500999 µs; coordinator clock)",
    );
}

fn window(operator: &str, args: &[&str], start_us: u64, end_us: u64, id: u64) -> CommandWindow {
    CommandWindow {
        operator: operator.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        start_us,
        end_us,
        exit_code: Some(0),
        handover: Some(id),
        state: Some(
            if args[1] == "approve" {
                "completed"
            } else {
                "fenced"
            }
            .into(),
        ),
    }
}

/// The clean history with every coordinator timestamp one hour ahead (a leader under
/// faketime), plus the `failoverctl` windows the drill machine recorded on its own clock.
fn jumped_clock_history() -> History {
    let mut h = clean_history();
    for ho in &mut h.handovers {
        for e in &mut ho.timeline {
            e.at_ms += 3_600_000;
        }
    }
    h.commands = vec![
        window(
            "alice",
            &["handover", "request", "--to", A],
            400_000,
            450_000,
            1,
        ),
        window("bob", &["handover", "approve", "1"], 900_000, 950_000, 1),
        window(
            "alice",
            &["handover", "request", "--to", B],
            11_400_000,
            11_600_000,
            10,
        ),
        window(
            "bob",
            &["handover", "approve", "10"],
            12_700_000,
            12_900_000,
            10,
        ),
    ];
    h
}

#[test]
fn a_jumped_coordinator_clock_is_ignored_when_command_windows_are_recorded() {
    let h = jumped_clock_history();
    let report = checker::check(&h);
    assert!(report.passed(), "{:#?}", report.summary_lines());
    assert!(report.authority.iter().all(|iv| iv.clock == "commands"));
    assert_eq!(report.authority[0].until_us, Some(11_600_000));
    assert_eq!(report.authority[1].from_us, 12_700_000);
    // Downtime is measured from the request command: B's first signature is slot 11's.
    assert_eq!(
        report.liveness.handovers[1].downtime_ms,
        Some((slot_us(11) + 1_000 - 11_400_000) / 1_000)
    );

    // Without the windows the jumped timeline places B's grant an hour late.
    let mut without = h.clone();
    without.commands.clear();
    let report = checker::check(&without);
    assert_only_failure(&report, "signed_under_authority", "agent-us");
}

#[test]
fn with_command_windows_a_signature_before_the_approval_command_fails() {
    let mut h = jumped_clock_history();
    let r = h
        .duties
        .iter_mut()
        .find(|r| r.agent == B && r.slot == 10 && r.kind == chaos::lab::duties::DutyKind::Block)
        .expect("B's slot 10 proposal");
    *r = DutyRecord {
        status: 200,
        reason: String::new(),
        signature: Some(sign(r.validator, &r.signing_root)),
        ..r.clone()
    };
    let report = checker::check(&h);
    assert_only_failure(&report, "signed_under_authority", "agent-us");
}
