//! The planned-handover drill on real processes, small and fast: 8 validators, cheap-KDF
//! keystores, 0.25 s slots, finality one epoch behind the head.
//!
//! It needs every workspace binary (coordinator, signer-agent, failoverctl, beacon-sim) next to
//! the test executable's directory. `cargo test --workspace` builds them all before running any
//! test; run alone, first `cargo build --workspace`. A missing binary fails with that hint.

use chaos::lab::scenario::{self, ScenarioOptions};
use chaos::lab::{Lab, LabConfig};

#[tokio::test(flavor = "multi_thread")]
async fn planned_handover_drill_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LabConfig::fast_test(dir.path().join("lab"), 8);
    let progress = |line: &str| eprintln!("[lab] {line}");
    let mut lab = Lab::start(cfg, &progress).await.unwrap();
    let opts = ScenarioOptions {
        epochs_before_handover: 1,
        epochs_after_handover: 1,
        ..ScenarioOptions::default()
    };
    let summary = scenario::run(&mut lab, &opts, &progress).await;
    lab.stop().await;
    let summary = summary.unwrap();
    assert!(summary.passed(), "{summary}");
    assert!(
        summary
            .checks
            .iter()
            .any(|c| c.name.contains("conflicting messages") && c.ok),
        "the drill must have sent conflict probes:\n{summary}"
    );
}
