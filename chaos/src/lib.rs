//! Drills and lab tooling for the failover coordinator: the beacon-node simulator that stands
//! in for real beacon nodes in a local lab and in tests.
//!
//! - [`beacon_sim`]: a Beacon API server with a controllable chain (finality stalls, syncing,
//!   optimistic mode) driven by an injectable clock.
//! - [`lab`]: the local multi-region lab (real processes), the duty simulator, the run
//!   summary (the checker's verdicts plus the lab's own run checks), and the signing benchmark.
//! - [`netem`]: unprivileged network faults: one TCP proxy per directed link, with partition,
//!   one-way loss and seeded delay.
//! - [`drill`]: chaos drills from scenario files (faults timed against drill phases, a seed
//!   that replays the schedule) run on the real binaries by `failover-drill`.
//! - [`runbook`]: the shell blocks of `runbooks/*.md` and their test directives, so the runbooks
//!   run as a test against the lab.
//! - [`checker`]: the independent history checker (safety invariants I1–I5 re-verified from
//!   the recording with its own SSZ and BLS code) and its Markdown/JSON/SVG reports.

#![deny(missing_docs)]

pub mod beacon_sim;
/// The independent checker, its own crate (`chaos/checker`, `failover-checker`): it depends on
/// the protocol types and its own SSZ and BLS code, never on the lab, the drills or the
/// coordinator.
pub use failover_checker as checker;
pub mod drill;
pub mod lab;
pub mod netem;
pub mod runbook;

/// Logs of the chaos binaries: to stderr, filtered by `RUST_LOG` (default `warn`), so their
/// standard output stays the human summary.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
