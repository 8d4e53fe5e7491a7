//! The EIP-3076 slashing-protection interchange conformance suite (all 38 files of
//! eth-clients/slashing-protection-interchange-tests v5.3.0), read in place from the vectors
//! folder.
//!
//! Each file runs against a fresh replicated state: each step imports its interchange, then
//! sends every block and attestation check through the same `RecordBatch` command the signer
//! agent uses, and compares with `should_succeed_complete` (this cluster keeps the complete
//! history). Imports with slashable data are accepted (kept as refusals), so every step and
//! every check of every file runs; an import must fail exactly when `should_succeed` is false.

use coordinator::interchange::Interchange;
use coordinator::state::{Authority, Command, Dirty, Response, StateData};
use failover_common::types::{quoted_u64, Pubkey, Root};
use failover_protocol::RecordItem;
use serde::Deserialize;

#[derive(Deserialize)]
struct TestCase {
    name: String,
    genesis_validators_root: Root,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    should_succeed: bool,
    contains_slashable_data: bool,
    interchange: serde_json::Value,
    blocks: Vec<BlockCheck>,
    attestations: Vec<AttCheck>,
}

#[derive(Deserialize)]
struct BlockCheck {
    pubkey: Pubkey,
    #[serde(with = "quoted_u64")]
    slot: u64,
    signing_root: Root,
    should_succeed_complete: bool,
}

#[derive(Deserialize)]
struct AttCheck {
    pubkey: Pubkey,
    #[serde(with = "quoted_u64")]
    source_epoch: u64,
    #[serde(with = "quoted_u64")]
    target_epoch: u64,
    signing_root: Root,
    should_succeed_complete: bool,
}

/// Runs one file; returns the mismatches (empty = pass) and the number of checks run.
fn run_case(case: &TestCase) -> (Vec<String>, usize) {
    let mut state = StateData {
        authority: Authority {
            holder: Some("agent".into()),
            token: 1,
        },
        ..Default::default()
    };
    let mut index = 1;
    let mut failures = vec![];
    let mut executed = 0;
    for (n, step) in case.steps.iter().enumerate() {
        let imported = serde_json::from_value::<Interchange>(step.interchange.clone())
            .map_err(|e| e.to_string())
            .and_then(|doc| {
                state
                    .import_interchange(&doc, case.genesis_validators_root)
                    .map_err(|e| e.to_string())
            });
        if let Ok((summary, _)) = &imported {
            if !step.contains_slashable_data && summary.slashable > 0 {
                failures.push(format!(
                    "step {n}: {} record(s) counted slashable in a file without slashable data",
                    summary.slashable
                ));
            }
        }
        match (&imported, step.should_succeed) {
            (Ok(_), false) => {
                failures.push(format!("step {n}: import must fail but succeeded"));
                break;
            }
            (Err(_), false) => break,
            (Err(e), true) => {
                failures.push(format!("step {n}: import must succeed: {e}"));
                break;
            }
            (Ok(_), true) => {}
        }
        let checks = step
            .blocks
            .iter()
            .map(|b| {
                (
                    RecordItem::Block {
                        pubkey: b.pubkey,
                        slot: b.slot,
                        signing_root: b.signing_root,
                    },
                    b.should_succeed_complete,
                )
            })
            .chain(step.attestations.iter().map(|a| {
                (
                    RecordItem::Attestation {
                        pubkey: a.pubkey,
                        source_epoch: a.source_epoch,
                        target_epoch: a.target_epoch,
                        signing_root: a.signing_root,
                    },
                    a.should_succeed_complete,
                )
            }));
        for (item, expected) in checks {
            executed += 1;
            index += 1;
            // The holder records only for keys it registered.
            let holder = state.agents.entry("agent".into()).or_default();
            if !holder.holds(item.pubkey()) {
                holder.pubkeys.insert(*item.pubkey());
            }
            let cmd = Command::RecordBatch {
                agent: "agent".into(),
                token: 1,
                items: vec![item.clone()],
            };
            let resp = state.apply(index, &cmd, &mut Dirty::default());
            let Response::Records { verdicts } = resp else {
                failures.push(format!("step {n}: unexpected response {resp:?}"));
                continue;
            };
            let allowed = verdicts[0].allows_signing();
            if allowed != expected {
                failures.push(format!(
                    "step {n}: {item:?}: expected allowed={expected}, got {:?}",
                    verdicts[0]
                ));
            }
        }
    }
    (failures, executed)
}

#[test]
fn all_eip3076_conformance_files_pass_under_the_complete_strategy() {
    let dir =
        failover_common::vectors::path("slashing-protection-interchange-tests/tests/generated");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        38,
        "expected the 38 files of v5.3.0 in {}",
        dir.display()
    );
    let mut report = vec![];
    let mut checks = 0;
    let mut executed = 0;
    let mut skipped_files = vec![];
    for f in &files {
        let case: TestCase = serde_json::from_str(&std::fs::read_to_string(f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        checks += case
            .steps
            .iter()
            .map(|s| s.blocks.len() + s.attestations.len())
            .sum::<usize>();
        let (failures, ran) = run_case(&case);
        let total: usize = case
            .steps
            .iter()
            .map(|s| s.blocks.len() + s.attestations.len())
            .sum();
        if ran < total {
            skipped_files.push(format!("{} ({ran}/{total})", case.name));
        }
        executed += ran;
        for failure in failures {
            report.push(format!("{}: {failure}", case.name));
        }
    }
    assert_eq!(checks, 150, "71 block + 79 attestation checks in the suite");
    assert!(
        report.is_empty(),
        "{} mismatches:\n{}",
        report.len(),
        report.join("\n")
    );
    println!("ran {executed} of {checks} checks");
    assert_eq!(
        executed, checks,
        "every check of every step runs; skipped in: {skipped_files:?}"
    );
}
