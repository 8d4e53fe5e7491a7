//! Chaos drills: scenario files, their seeded fault schedule, and the runner that executes
//! them on the real binaries ([`run`]).
//!
//! A scenario (`chaos/scenarios/*.toml`, see [`Scenario`]) states a hypothesis, the lab to
//! start, the workload, the planned handover, a list of fault steps with their timing relative
//! to drill phases (`at = "handover.requested+2s"`, `at = "slot 20"`), and pass criteria.
//!
//! Invariants:
//! - every random choice of a drill (timing jitter, which follower or minority is killed, the
//!   proxies' loss and delay decisions) derives from the one seed, through [`Schedule::new`]
//!   and the netem seed it yields; the same seed gives the same schedule, printed at start;
//! - a scenario is validated completely when it is loaded: an unknown anchor, target or region
//!   reference is an error before any process starts;
//! - a fault step whose anchor is never reached is a failed run, never silently skipped.

pub mod attacks;
pub mod run;
pub mod workload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// A drill scenario, as written in its TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (the file stem by convention).
    pub name: String,
    /// What the drill expects to hold, in a sentence or two.
    pub hypothesis: String,
    /// Default seed (overridden by `--seed`).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Part of the CI suite (`failover-drill suite --ci`).
    #[serde(default)]
    pub ci: bool,
    /// The lab to start.
    #[serde(default)]
    pub lab: LabParams,
    /// The simulated validator client.
    #[serde(default)]
    pub workload: WorkloadParams,
    /// The planned handover; none when absent.
    pub handover: Option<HandoverParams>,
    /// Slots of workload after the handover finished (or after the start, without one).
    #[serde(default = "default_tail_slots")]
    pub tail_slots: u64,
    /// Fault steps.
    #[serde(default)]
    pub faults: Vec<FaultStep>,
    /// Pass criteria on top of the safety checks, which always apply.
    #[serde(default)]
    pub criteria: Criteria,
}

fn default_seed() -> u64 {
    1
}

fn default_tail_slots() -> u64 {
    16
}

/// Lab parameters of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabParams {
    /// Interop validators.
    pub validators: u64,
    /// Slot length (seconds).
    pub seconds_per_slot: f64,
    /// `SLOTS_PER_EPOCH`.
    pub slots_per_epoch: u64,
    /// Finality lag of the beacon simulators (epochs).
    pub finality_lag_epochs: u64,
    /// Route links through netem proxies (needed by partition, loss and latency faults).
    pub netem: bool,
    /// Run this coordinator under libfaketime (needed by clock jumps).
    pub faketime_node: Option<u64>,
    /// Agent record deadline (ms).
    pub record_deadline_ms: u64,
    /// Raft heartbeat (ms); it is also the Raft RPC deadline, so with added latency it must
    /// exceed the round trip (DESIGN.md: about 3 × RTT).
    pub heartbeat_ms: u64,
    /// Raft election timeout, lower bound (ms).
    pub election_min_ms: u64,
    /// Raft election timeout, upper bound (ms).
    pub election_max_ms: u64,
    /// TLS on every link (the default); `false` runs the lab in plain HTTP.
    pub tls: bool,
    /// Every region in a network namespace of its own (root only); a partition then takes
    /// the region's interface down.
    pub netns: bool,
    /// WAN latency between regions (eu–us 80 ms, us–ap 150 ms, eu–ap 200 ms round trip).
    pub wan: bool,
}

impl Default for LabParams {
    fn default() -> Self {
        Self {
            validators: 8,
            seconds_per_slot: 0.25,
            slots_per_epoch: 8,
            finality_lag_epochs: 1,
            netem: true,
            faketime_node: None,
            record_deadline_ms: 2_000,
            heartbeat_ms: 100,
            election_min_ms: 1_000,
            election_max_ms: 2_000,
            tls: true,
            netns: false,
            wan: false,
        }
    }
}

/// The workload: honest duties to every agent, optionally adversarial pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadParams {
    /// Also send conflicting messages (double vote, surround vote, double proposal) against
    /// the current signer's latest messages, to every agent at the same instant.
    pub adversarial: bool,
    /// Slots between two adversarial rounds.
    pub adversarial_every_slots: u64,
}

impl Default for WorkloadParams {
    fn default() -> Self {
        Self {
            adversarial: false,
            adversarial_every_slots: 4,
        }
    }
}

/// The planned handover from the active agent to the standby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoverParams {
    /// When it is requested (an [`Anchor`], e.g. `slot 16`).
    pub at: String,
    /// Longest wait for each handover state, e.g. `60s`.
    #[serde(default = "default_handover_wait")]
    pub wait: String,
}

fn default_handover_wait() -> String {
    "60s".into()
}

/// Pass criteria beyond safety.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Criteria {
    /// Largest allowed share of honest duties that no agent signed (0..=1).
    pub max_unsigned_share: f64,
    /// The planned handover must reach `completed`.
    pub handover_must_complete: bool,
    /// Validators (a list such as `2,5`) a signer outside the cluster signs for: the planned
    /// handover must stop in `doppelganger_detected` naming exactly these, the
    /// `failover_doppelganger_validators` alert series must count them on the leader, and the
    /// drill then aborts it as `runbooks/doppelganger-detected.md` says. Needs
    /// `handover_must_complete = false`.
    pub expect_doppelganger: Option<String>,
}

impl Default for Criteria {
    fn default() -> Self {
        Self {
            max_unsigned_share: 1.0,
            handover_must_complete: true,
            expect_doppelganger: None,
        }
    }
}

/// One fault step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultStep {
    /// When it starts (an [`Anchor`]).
    pub at: String,
    /// Uniform random extra delay `[0, jitter]`, drawn from the seed.
    #[serde(default)]
    pub jitter: Option<String>,
    /// How long it lasts before it is reverted (restart, SIGCONT, heal, offset back to 0);
    /// absent: until the end of the drill.
    #[serde(default)]
    pub duration: Option<String>,
    /// What to do.
    #[serde(flatten)]
    pub action: FaultAction,
}

/// What a fault step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// `kill -9` of coordinators, restarted (same data directory and port) at the end.
    /// `target`: `leader`, `follower`, `minority`, `all` or `node N`.
    Kill {
        /// Which coordinators.
        target: String,
    },
    /// SIGSTOP, SIGCONT at the end. `target`: `leader`, `follower`, `node N`, `active_agent`
    /// or `standby_agent`.
    Stop {
        /// Which process.
        target: String,
    },
    /// Cut every link to and from a region. `region`: a region name, `leader` (the leader's
    /// region at fault time) or `active_agent` (the authority holder's region).
    Partition {
        /// Which region.
        region: String,
    },
    /// One-way loss on the links from region `from` to region `to` (region references as
    /// for `partition`).
    Loss {
        /// Dialling side.
        from: String,
        /// Target side.
        to: String,
        /// Loss probability per connection and per chunk.
        prob: f64,
    },
    /// Delay every chunk on every link between two different regions by
    /// `uniform[min_ms, max_ms]`.
    Latency {
        /// Smallest delay (ms).
        min_ms: u64,
        /// Largest delay (ms).
        max_ms: u64,
    },
    /// Start a second signer agent with the same keys, under the identity of `copy_of`
    /// (`active`: the current holder, same agent id and token; `standby`: the standby's), in
    /// that agent's region, and send it every duty too.
    DuplicateAgent {
        /// `active` or `standby`.
        copy_of: String,
    },
    /// Jump the wall clock of the faketime coordinator by `offset_s` seconds.
    ClockJump {
        /// Node id (must be the lab's `faketime_node`).
        node: u64,
        /// Offset (seconds; negative jumps back).
        offset_s: i64,
    },
    /// Certificate rotation of every coordinator and agent (new key and certificate from the
    /// lab CA, SIGHUP), done when each serves its new certificate ([`crate::lab::Lab::
    /// rotate_certificates`]). Nothing to revert. TLS labs only.
    RotateCerts,
    /// Hostile input against the real binaries ([`attacks`]): the step fails unless every
    /// request got its documented answer. Nothing to revert.
    Attack {
        /// One of [`attacks::ATTACKS`].
        attack: String,
    },
    /// A signer outside the cluster ([`crate::lab::rogue`]) signs one attestation per epoch
    /// for each of `validators` (`2,5`, `2-4`) and publishes it to every beacon simulator;
    /// stopped at the end.
    RogueSigner {
        /// Validator indices.
        validators: String,
    },
}

impl FaultAction {
    /// A one-line description, e.g. `kill -9 leader`.
    pub fn describe(&self) -> String {
        match self {
            FaultAction::Kill { target } => format!("kill -9 {target}"),
            FaultAction::Stop { target } => format!("SIGSTOP {target}"),
            FaultAction::Partition { region } => format!("partition {region}"),
            FaultAction::Loss { from, to, prob } => {
                format!("loss {from}->{to} {:.0}%", prob * 100.0)
            }
            FaultAction::Latency { min_ms, max_ms } => format!("latency {min_ms}..{max_ms}ms"),
            FaultAction::DuplicateAgent { copy_of } => format!("duplicate agent copy of {copy_of}"),
            FaultAction::ClockJump { node, offset_s } => {
                format!("clock jump node {node} {offset_s:+}s")
            }
            FaultAction::Attack { attack } => format!("attack {attack}"),
            FaultAction::RotateCerts => "rotate every certificate".to_string(),
            FaultAction::RogueSigner { validators } => {
                format!("rogue signer for validators {validators}")
            }
        }
    }
}

/// A drill phase a step can be timed against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// The workload started.
    Start,
    /// The start of a chain slot. The chain's genesis is the lab's start, so a few slots
    /// (more on a loaded machine) have passed when the workload starts; anchor early faults
    /// to `start+…` instead. A slot that had passed by more than one slot when the step
    /// waited for it fails the run.
    Slot(u64),
    /// A phase of the planned handover: `requested`, `awaiting_approval`, `approved`,
    /// `completed`, or (drills expecting a doppelganger) `doppelganger_detected`, `aborted`.
    Handover(String),
}

/// The handover phases an anchor may name.
pub const HANDOVER_PHASES: &[&str] = &[
    "requested",
    "awaiting_approval",
    "approved",
    "completed",
    "doppelganger_detected",
    "aborted",
];

/// An anchor plus an offset: `start`, `slot 20`, `handover.requested+2s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// The phase.
    pub anchor: Anchor,
    /// Added to the phase's time.
    pub offset: Duration,
}

impl At {
    /// Parses `ANCHOR[+DURATION]`.
    ///
    /// Errors: unknown anchor or malformed duration.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let (a, off) = match s.split_once('+') {
            Some((a, o)) => (a.trim(), parse_duration(o)?),
            None => (s, Duration::ZERO),
        };
        let anchor = if a == "start" {
            Anchor::Start
        } else if let Some(n) = a.strip_prefix("slot") {
            Anchor::Slot(
                n.trim()
                    .parse()
                    .with_context(|| format!("`{a}`: slot number"))?,
            )
        } else if let Some(p) = a.strip_prefix("handover.") {
            ensure!(
                HANDOVER_PHASES.contains(&p),
                "`{a}`: handover phase must be one of {}",
                HANDOVER_PHASES.join(", ")
            );
            Anchor::Handover(p.to_string())
        } else {
            bail!("`{s}`: anchor must be `start`, `slot N` or `handover.PHASE`, optionally `+DURATION`")
        };
        Ok(Self {
            anchor,
            offset: off,
        })
    }
}

/// Parses `250ms`, `2s`, `1.5s`.
///
/// Errors: anything else.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        bail!("`{s}`: a duration is a number with `ms` or `s`")
    };
    let v: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("`{s}`: not a number"))?;
    ensure!(
        v >= 0.0 && v.is_finite(),
        "`{s}`: must be a non-negative number"
    );
    Ok(Duration::from_secs_f64(v * scale))
}

fn check_node_target(t: &str, coordinators: u64) -> Result<()> {
    match t {
        "leader" | "follower" | "minority" | "all" => Ok(()),
        _ => {
            let n: u64 = t
                .strip_prefix("node")
                .map(str::trim)
                .and_then(|n| n.parse().ok())
                .with_context(|| {
                    format!("target `{t}`: must be leader, follower, minority, all or `node N`")
                })?;
            ensure!(
                (1..=coordinators).contains(&n),
                "target `{t}`: no such node"
            );
            Ok(())
        }
    }
}

/// The regions of the drill lab (coordinators, beacon nodes), in node order.
pub const REGIONS: &[&str] = &["eu", "us", "ap"];

fn check_region(r: &str) -> Result<()> {
    ensure!(
        REGIONS.contains(&r) || r == "leader" || r == "active_agent",
        "region `{r}`: must be one of {} or `leader` or `active_agent`",
        REGIONS.join(", ")
    );
    Ok(())
}

impl Scenario {
    /// Reads and validates a scenario file.
    ///
    /// Errors: unreadable, not TOML of this shape, or invalid (see [`Scenario::validate`]).
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let s: Scenario =
            toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        s.validate()
            .with_context(|| format!("invalid scenario {}", path.display()))?;
        Ok(s)
    }

    /// Checks every anchor, duration, target and region, and that the lab has what the
    /// faults need (netem for network faults, faketime for clock jumps).
    ///
    /// Errors: the first problem found.
    pub fn validate(&self) -> Result<()> {
        let n = REGIONS.len() as u64;
        ensure!(self.lab.validators > 0, "lab.validators must be positive");
        ensure!(
            self.lab.seconds_per_slot > 0.0,
            "lab.seconds_per_slot must be positive"
        );
        ensure!(
            (0.0..=1.0).contains(&self.criteria.max_unsigned_share),
            "criteria.max_unsigned_share must be within 0..=1"
        );
        if let Some(h) = &self.handover {
            At::parse(&h.at).context("handover.at")?;
            ensure!(
                !matches!(At::parse(&h.at)?.anchor, Anchor::Handover(_)),
                "handover.at cannot refer to the handover itself"
            );
            parse_duration(&h.wait).context("handover.wait")?;
        } else {
            ensure!(
                !self.criteria.handover_must_complete,
                "criteria.handover_must_complete needs a [handover]"
            );
        }
        if let Some(list) = &self.criteria.expect_doppelganger {
            let expected =
                crate::lab::rogue::parse_indices(list).context("criteria.expect_doppelganger")?;
            ensure!(
                self.handover.is_some() && !self.criteria.handover_must_complete,
                "criteria.expect_doppelganger needs a [handover] and handover_must_complete = false"
            );
            ensure!(
                expected.iter().all(|i| *i < self.lab.validators),
                "criteria.expect_doppelganger names a validator the lab does not have"
            );
        }
        for (i, f) in self.faults.iter().enumerate() {
            let ctx = || format!("faults[{i}] ({})", f.action.describe());
            let at = At::parse(&f.at).with_context(ctx)?;
            if matches!(at.anchor, Anchor::Handover(_)) {
                ensure!(
                    self.handover.is_some(),
                    "{}: no [handover] to anchor to",
                    ctx()
                );
            }
            if let Some(j) = &f.jitter {
                parse_duration(j).with_context(ctx)?;
            }
            if let Some(d) = &f.duration {
                parse_duration(d).with_context(ctx)?;
            }
            match &f.action {
                FaultAction::Kill { target } => check_node_target(target, n).with_context(ctx)?,
                FaultAction::Stop { target } => {
                    if !matches!(target.as_str(), "active_agent" | "standby_agent") {
                        ensure!(
                            !matches!(target.as_str(), "minority" | "all"),
                            "{}: stop takes one process",
                            ctx()
                        );
                        check_node_target(target, n).with_context(ctx)?;
                    }
                }
                FaultAction::Partition { region } => {
                    ensure!(
                        self.lab.netem || self.lab.netns,
                        "{}: needs lab.netem = true or lab.netns = true",
                        ctx()
                    );
                    check_region(region).with_context(ctx)?;
                }
                FaultAction::Loss { from, to, prob } => {
                    ensure!(self.lab.netem, "{}: needs lab.netem = true", ctx());
                    check_region(from).with_context(ctx)?;
                    check_region(to).with_context(ctx)?;
                    ensure!((0.0..=1.0).contains(prob), "{}: prob within 0..=1", ctx());
                }
                FaultAction::Latency { min_ms, max_ms } => {
                    ensure!(self.lab.netem, "{}: needs lab.netem = true", ctx());
                    ensure!(min_ms <= max_ms, "{}: min_ms > max_ms", ctx());
                }
                FaultAction::DuplicateAgent { copy_of } => ensure!(
                    matches!(copy_of.as_str(), "active" | "standby"),
                    "{}: copy_of must be active or standby",
                    ctx()
                ),
                FaultAction::ClockJump { node, .. } => ensure!(
                    self.lab.faketime_node == Some(*node),
                    "{}: needs lab.faketime_node = {node}",
                    ctx()
                ),
                FaultAction::RotateCerts => {
                    ensure!(self.lab.tls, "{}: needs lab.tls = true", ctx())
                }
                FaultAction::RogueSigner { validators } => {
                    let v = crate::lab::rogue::parse_indices(validators).with_context(ctx)?;
                    ensure!(
                        v.iter().all(|i| *i < self.lab.validators),
                        "{}: the lab has {} validators",
                        ctx(),
                        self.lab.validators
                    );
                }
                FaultAction::Attack { attack } => ensure!(
                    attacks::ATTACKS.contains(&attack.as_str()),
                    "{}: unknown attack {attack:?} (known: {})",
                    ctx(),
                    attacks::ATTACKS.join(", ")
                ),
            }
        }
        Ok(())
    }
}

/// One fault step with its seeded draws resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFault {
    /// Index in the scenario's `faults`.
    pub index: usize,
    /// Anchor and offset, jitter included.
    pub at: At,
    /// How long it lasts (`None`: until the end).
    pub duration: Option<Duration>,
    /// What it does.
    pub action: FaultAction,
    /// Seeded draw used to choose among candidates (which follower, which minority).
    pub pick: u64,
}

/// The seeded fault schedule of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The seed.
    pub seed: u64,
    /// Seed of the netem proxies.
    pub netem_seed: u64,
    /// The steps, in scenario order.
    pub faults: Vec<PlannedFault>,
}

impl Schedule {
    /// Draws, from `seed` only, the jitter and the choice of every step and the netem seed.
    ///
    /// Errors: the scenario is invalid.
    pub fn new(s: &Scenario, seed: u64) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let netem_seed = rng.gen();
        let mut faults = Vec::new();
        for (index, f) in s.faults.iter().enumerate() {
            let mut at = At::parse(&f.at)?;
            if let Some(j) = &f.jitter {
                let j = parse_duration(j)?.as_millis() as u64;
                at.offset += Duration::from_millis(rng.gen_range(0..=j));
            }
            faults.push(PlannedFault {
                index,
                at,
                duration: f.duration.as_deref().map(parse_duration).transpose()?,
                action: f.action.clone(),
                pick: rng.gen(),
            });
        }
        Ok(Self {
            seed,
            netem_seed,
            faults,
        })
    }

    /// One line per step, for the log: `#0 kill -9 leader at handover.requested+1.234s for 3s`.
    pub fn describe(&self) -> Vec<String> {
        self.faults
            .iter()
            .map(|f| {
                let anchor = match &f.at.anchor {
                    Anchor::Start => "start".to_string(),
                    Anchor::Slot(n) => format!("slot {n}"),
                    Anchor::Handover(p) => format!("handover.{p}"),
                };
                format!(
                    "#{} {} at {anchor}+{:.3}s for {} (pick {})",
                    f.index,
                    f.action.describe(),
                    f.at.offset.as_secs_f64(),
                    f.duration
                        .map_or("the rest of the drill".into(), |d| format!(
                            "{:.3}s",
                            d.as_secs_f64()
                        )),
                    f.pick % 1000
                )
            })
            .collect()
    }
}

/// The scenario directory of this source tree (`chaos/scenarios`).
pub fn default_scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// Every `*.toml` scenario in `dir`, loaded and validated, sorted by file name.
///
/// Errors: the directory cannot be read or a file is invalid.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Scenario)>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| Scenario::load(&p).map(|s| (p, s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_parse() {
        assert_eq!(
            At::parse("handover.requested+2s").unwrap(),
            At {
                anchor: Anchor::Handover("requested".into()),
                offset: Duration::from_secs(2)
            }
        );
        assert_eq!(At::parse("slot 20").unwrap().anchor, Anchor::Slot(20));
        assert_eq!(
            At::parse("start+250ms").unwrap().offset,
            Duration::from_millis(250)
        );
        assert!(At::parse("handover.nope").is_err());
        assert!(At::parse("later").is_err());
        assert!(parse_duration("3").is_err());
    }

    #[test]
    fn every_scenario_file_is_valid_and_the_ci_suite_runs_them_all() {
        let all = load_dir(&default_scenario_dir()).unwrap();
        assert!(all.len() >= 12, "one scenario per fault of issue 3");
        let not_ci: Vec<&str> = all
            .iter()
            .filter(|(_, s)| !s.ci)
            .map(|(_, s)| s.name.as_str())
            .collect();
        assert!(not_ci.is_empty(), "scenarios left out of CI: {not_ci:?}");
        for (p, s) in &all {
            assert_eq!(
                p.file_stem().unwrap().to_string_lossy(),
                s.name,
                "{}: name must match the file",
                p.display()
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let (_, s) = load_dir(&default_scenario_dir())
            .unwrap()
            .into_iter()
            .find(|(_, s)| s.faults.iter().any(|f| f.jitter.is_some()))
            .expect("a scenario with jitter");
        let a = Schedule::new(&s, 42).unwrap();
        assert_eq!(a, Schedule::new(&s, 42).unwrap());
        assert_ne!(a, Schedule::new(&s, 43).unwrap());
    }

    #[test]
    fn invalid_scenarios_are_refused() {
        let base = r#"
            name = "x"
            hypothesis = "h"
            [handover]
            at = "slot 8"
        "#;
        let ok: Scenario = toml::from_str(base).unwrap();
        ok.validate().unwrap();
        for bad in [
            "[[faults]]\nat = \"slot 1\"\naction = \"kill\"\ntarget = \"node 9\"",
            "[[faults]]\nat = \"soon\"\naction = \"kill\"\ntarget = \"leader\"",
            "[[faults]]\nat = \"slot 1\"\naction = \"clock_jump\"\nnode = 2\noffset_s = 5",
            "[[faults]]\nat = \"slot 1\"\naction = \"partition\"\nregion = \"mars\"",
        ] {
            let s: Scenario = toml::from_str(&format!("{base}\n{bad}")).unwrap();
            assert!(s.validate().is_err(), "{bad}");
        }
    }
}
