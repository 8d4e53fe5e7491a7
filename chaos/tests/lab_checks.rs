//! The lab's own pieces, without processes: the duty messages agree with the shared request
//! parser, the keystores decrypt to the interop keys, and the summary's independent checks
//! catch what they claim to catch.

use chaos::checker::{self, History};
use chaos::lab::bench::percentile;
use chaos::lab::duties::{
    attestation_duty, block_duty, duties_for_slot, parse_signature, DutyKind, DutyRecord,
};
use chaos::lab::keys::{self, KdfChoice};
use chaos::lab::probes::{conflict_probes, Expectation};
use chaos::lab::procs::Binaries;
use chaos::lab::summary::reason_label;
use failover_common::eth::{self, signing_task_from_json, Fork, ForkInfo, SlashableMessage};
use failover_common::interop;
use failover_common::keystore::Keystore;
use failover_common::types::{Root, Version};

const SPE: u64 = 8;

fn fork_info() -> ForkInfo {
    ForkInfo {
        fork: Fork {
            previous_version: Version([0, 0, 0, 1]),
            current_version: Version([4, 0, 0, 1]),
            epoch: 0,
        },
        genesis_validators_root: chaos::lab::lab_genesis_validators_root(),
    }
}

/// A signed record of validator 0, as an agent's 200 answer would leave it.
fn signed(kind: DutyKind, slot: u64, source: u64, target: u64, root_byte: u8) -> DutyRecord {
    let signing_root = Root([root_byte; 32]);
    let sig = eth::sign(&interop::secret_key(0), &signing_root);
    DutyRecord {
        agent: "agent-eu".into(),
        kind,
        validator: 0,
        pubkey: interop::pubkey(0),
        slot,
        source_epoch: (kind == DutyKind::Attestation).then_some(source),
        target_epoch: (kind == DutyKind::Attestation).then_some(target),
        signing_root,
        status: 200,
        reason: String::new(),
        signature: Some(sig),
        sent_us: 1_000,
        received_us: 2_000,
        probe: None,
        request: serde_json::Value::Null,
    }
}

#[test]
fn duty_bodies_parse_to_the_signing_root_the_lab_computed() {
    let v = &keys::validators(3)[2];
    for slot in [0, 7, 8, 77] {
        let block = block_duty(v, slot, &fork_info(), SPE);
        let task = signing_task_from_json(block.body.to_string().as_bytes()).unwrap();
        assert_eq!(
            task.signing_root, block.signing_root,
            "block at slot {slot}"
        );
        assert_eq!(task.slashable, Some(SlashableMessage::Block { slot }));

        let att = attestation_duty(v, slot, &fork_info(), SPE);
        let task = signing_task_from_json(att.body.to_string().as_bytes()).unwrap();
        assert_eq!(
            task.signing_root, att.signing_root,
            "attestation at slot {slot}"
        );
        let epoch = slot / SPE;
        assert_eq!(
            task.slashable,
            Some(SlashableMessage::Attestation {
                source_epoch: epoch.saturating_sub(1),
                target_epoch: epoch
            })
        );
    }
}

#[test]
fn every_validator_attests_once_per_epoch_and_one_proposes_per_slot() {
    let validators = keys::validators(20);
    let mut attestations = vec![0; 20];
    for slot in SPE * 3..SPE * 4 {
        let duties = duties_for_slot(&validators, slot, &fork_info(), SPE);
        assert_eq!(
            duties.iter().filter(|d| d.kind == DutyKind::Block).count(),
            1
        );
        for d in duties.iter().filter(|d| d.kind == DutyKind::Attestation) {
            attestations[d.validator.index as usize] += 1;
            assert_eq!((d.source_epoch, d.target_epoch), (Some(2), Some(3)));
        }
    }
    assert_eq!(attestations, vec![1; 20]);
}

#[test]
fn lab_keystores_decrypt_to_the_interop_keys() {
    let dir = tempfile::tempdir().unwrap();
    let validators = keys::validators(3);
    let (ks, pw) = (dir.path().join("ks"), dir.path().join("pw"));
    keys::write_keystores(&validators, KdfChoice::Pbkdf2Cheap, &ks, &pw).unwrap();
    for v in &validators {
        let name = keys::key_name(v.index);
        let json = std::fs::read_to_string(ks.join(format!("{name}.json"))).unwrap();
        let password = std::fs::read_to_string(pw.join(format!("{name}.txt"))).unwrap();
        let store = Keystore::from_json(&json).unwrap();
        assert_eq!(store.pubkey, v.pubkey);
        let secret = store.decrypt(&password).unwrap();
        assert_eq!(secret.expose(), &interop::secret_key(v.index).to_bytes());
    }
}

#[test]
fn refusal_labels_group_messages_that_differ_only_in_numbers() {
    let a = reason_label(r#"{"code":"not_holder","message":"x","holder":"agent-eu"}"#);
    assert_eq!(a, "not_holder (holder agent-eu)");
    let b = reason_label(
        r#"{"code":"slashing_protection","message":"x","refusal":{"reason":"double_vote","target_epoch":"3"}}"#,
    );
    assert_eq!(b, "slashing_protection: double_vote");
    assert_eq!(
        reason_label(r#"{"code":"not_holder","message":"fenced"}"#),
        "not_holder (no holder: fenced)"
    );
    assert_eq!(
        reason_label(r#"{"code":"unavailable","message":"no verdict within 2000 ms"}"#),
        "unavailable: no verdict within N ms"
    );
    assert_eq!(
        reason_label("surrounded vote 12→15 by 0xabcdef"),
        reason_label("surrounded vote 3→4 by 0x12")
    );
}

#[test]
fn signatures_parse_from_json_and_text_answers() {
    let sig = eth::sign(&interop::secret_key(1), &Root([7; 32]));
    assert_eq!(
        parse_signature(&format!(r#"{{"signature":"{sig}"}}"#)),
        Some(sig)
    );
    assert_eq!(parse_signature(&sig.to_string()), Some(sig));
    assert_eq!(parse_signature(r#"{"signature":"0x12"}"#), None);
}

#[test]
fn missing_binaries_are_named_with_the_build_hint() {
    let dir = tempfile::tempdir().unwrap();
    let err = Binaries::locate_in(&[dir.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("signer-agent"), "{err}");
    assert!(err.contains("cargo build --workspace"), "{err}");
}

#[test]
fn percentiles_pick_ranks_of_sorted_latencies() {
    use std::time::Duration;
    let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    assert_eq!(percentile(&ms, 0.5), Duration::from_millis(51));
    assert_eq!(percentile(&ms, 0.99), Duration::from_millis(99));
    assert_eq!(percentile(&[], 0.5), Duration::ZERO);
}

/// The record an agent's 200 answer to `duty` leaves, signed with the interop key.
fn answered(duty: &chaos::lab::duties::Duty, agent: &str) -> DutyRecord {
    let sig = eth::sign(
        &interop::secret_key(duty.validator.index),
        &duty.signing_root,
    );
    DutyRecord {
        agent: agent.into(),
        kind: duty.kind,
        validator: duty.validator.index,
        pubkey: duty.validator.pubkey,
        slot: duty.slot,
        source_epoch: duty.source_epoch,
        target_epoch: duty.target_epoch,
        signing_root: duty.signing_root,
        status: 200,
        reason: String::new(),
        signature: Some(sig),
        sent_us: 1,
        received_us: 2,
        probe: None,
        request: duty.body.clone(),
    }
}

#[test]
fn probes_conflict_with_the_signers_latest_messages_and_nothing_else() {
    let validators = keys::validators(16);
    let history: Vec<DutyRecord> = (20..28)
        .flat_map(|slot| duties_for_slot(&validators, slot, &fork_info(), SPE))
        .map(|d| answered(&d, "agent-eu"))
        .collect();
    let probes = conflict_probes(&history, "agent-eu", &validators, &fork_info(), SPE);
    let names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(probes.len(), 5, "{names:?}");

    for p in &probes {
        // Every probe is a well-formed request whose root the shared parser agrees with.
        let task = signing_task_from_json(p.duty.body.to_string().as_bytes()).unwrap();
        assert_eq!(task.signing_root, p.duty.signing_root, "{}", p.name);

        let mut with_probe = history.clone();
        with_probe.push(answered(&p.duty, "agent-us"));
        let report = checker::check(&History {
            slots_per_epoch: SPE,
            duties: with_probe,
            ..History::default()
        });
        let pairs = &report
            .checks
            .iter()
            .find(|c| c.name == "no_slashable_pair")
            .expect("the checker judges slashability")
            .violations;
        match &p.expect {
            // Re-signing the identical message is never slashable, and the signature matches.
            Expectation::SameSignatureOrRefused(sig) => {
                assert!(pairs.is_empty(), "{}: {pairs:?}", p.name);
                assert_eq!(answered(&p.duty, "agent-us").signature.as_ref(), Some(sig));
            }
            // Every conflicting probe, had it been signed, is caught by the pairwise checker.
            Expectation::Refused => assert_eq!(pairs.len(), 1, "{}: {pairs:?}", p.name),
        }
    }
}

#[test]
fn a_signed_conflict_probe_is_judged_wrong_and_a_refused_one_right() {
    let validators = keys::validators(8);
    let history: Vec<DutyRecord> = duties_for_slot(&validators, 17, &fork_info(), SPE)
        .iter()
        .map(|d| answered(d, "agent-eu"))
        .collect();
    let probes = conflict_probes(&history, "agent-eu", &validators, &fork_info(), SPE);
    let conflict = probes
        .iter()
        .find(|p| p.expect == Expectation::Refused)
        .unwrap();
    let mut rec = answered(&conflict.duty, "agent-us");
    assert!(conflict.judge(&rec).is_err());
    rec.status = 412;
    assert!(conflict.judge(&rec).is_ok());
    rec.status = 503;
    assert!(conflict.judge(&rec).is_err());
}

fn summary_of(records: Vec<DutyRecord>) -> chaos::lab::Summary {
    summary_with(records, checker::check(&History::default()))
}

fn summary_with(records: Vec<DutyRecord>, report: checker::CheckReport) -> chaos::lab::Summary {
    summary_input(records, report, None, true)
}

fn summary_input(
    records: Vec<DutyRecord>,
    report: checker::CheckReport,
    handover: Option<failover_protocol::Handover>,
    duties_sent: bool,
) -> chaos::lab::Summary {
    chaos::lab::Summary::build(chaos::lab::summary::SummaryInput {
        validators: 1,
        kdf: "test".into(),
        agents: vec![("agent-eu".into(), "active".into())],
        records,
        probes: vec![],
        final_holder: handover
            .as_ref()
            .map_or(Some("agent-eu".into()), |h| Some(h.to.clone())),
        handover,
        run_errors: vec![],
        report,
        duties_sent,
        expected_doppelganger: None,
    })
}

/// A handover to `agent-us` that completed.
fn completed_handover() -> failover_protocol::Handover {
    use failover_protocol::{Handover, HandoverState};
    Handover {
        id: 7,
        from: Some("agent-eu".into()),
        to: "agent-us".into(),
        requested_by: "alice".into(),
        reason: "lab".into(),
        state: HandoverState::Completed,
        fenced_at: 7,
        required_epoch: 0,
        finality_evidence: None,
        approvals: vec![],
        granted_token: Some(8),
        break_glass: false,
        timeline: vec![],
        liveness: None,
    }
}

#[test]
fn without_duties_the_check_that_needs_them_is_skipped_and_says_so() {
    let report = checker::check(&History::default());
    let summary = summary_input(vec![], report.clone(), Some(completed_handover()), false);
    let text = summary.to_string();
    assert!(summary.passed(), "{text}");
    assert!(
        text.contains("[skip] agent-us signs after the handover: no duties were sent"),
        "{text}"
    );
    assert!(text.contains("RESULT PASS"), "{text}");
    // With duties sent and none signed by the new holder, the same run fails.
    let summary = summary_input(vec![], report, Some(completed_handover()), true);
    assert!(!summary.passed(), "{summary}");
    assert!(summary
        .to_string()
        .contains("[FAIL] agent-us signs after the handover: 0 signatures"));
}

#[test]
fn a_violation_the_checker_found_fails_the_summary() {
    // The checker's verdicts are tested in tests/checker.rs; here only that the summary shows
    // a failed one as a failed check.
    let mut report = checker::check(&History::default());
    let slashable = report
        .checks
        .iter_mut()
        .find(|c| c.name == "no_slashable_pair")
        .expect("the checker judges slashability");
    slashable
        .violations
        .push("double vote by validator 0: [a] and [b]".into());
    let summary = summary_with(vec![signed(DutyKind::Block, 9, 0, 0, 1)], report);
    assert!(!summary.passed(), "{summary}");
    let text = summary.to_string();
    assert!(text.contains("double vote by validator 0"), "{text}");
    assert!(text.contains("RESULT FAIL"), "{text}");
}

#[test]
fn a_drill_with_signed_and_fenced_duties_passes() {
    let mut fenced = signed(DutyKind::Block, 10, 0, 0, 2);
    (fenced.status, fenced.signature) = (403, None);
    let summary = summary_of(vec![signed(DutyKind::Block, 9, 0, 0, 1), fenced]);
    assert!(summary.passed(), "{summary}");
}

#[test]
fn a_signing_root_mismatch_on_an_honest_duty_fails_the_drill() {
    let mut mismatch = signed(DutyKind::Block, 10, 0, 0, 2);
    (mismatch.status, mismatch.signature) = (400, None);
    mismatch.reason = r#"{"code":"bad_request","message":"signingRoot 0x12 differs"}"#.into();
    let summary = summary_of(vec![signed(DutyKind::Block, 9, 0, 0, 1), mismatch]);
    assert!(!summary.passed());
    assert!(summary.to_string().contains("RESULT FAIL"));
}
