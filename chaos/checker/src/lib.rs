//! The independent checker: reads a recorded drill history and re-verifies the safety
//! invariants of DESIGN.md with its own straightforward code, then measures liveness.
//!
//! Independence: nothing here calls the code under test to decide a verdict. Signing roots
//! are recomputed from the recorded Web3Signer request bodies by [`verify`] (hand-written SSZ
//! merkleization with `sha2`, `blst::min_pk` for signatures); slashability is a plain pairwise
//! comparison; authority intervals are rebuilt from the coordinator's handover timelines. The
//! protocol's `Handover`/`AuditEntry` types are used only as data (serde), never any logic;
//! the checker imports nothing from the lab or the drills ([`record`] owns the records).
//!
//! Checks (one per invariant, each with every violation listed):
//! - `signatures_valid` (I4): every 200 answer carries a signature that verifies for the
//!   record's pubkey over the signing root recomputed from the request; the recorded and the
//!   sent `signingRoot` agree with the recomputation.
//! - `no_slashable_pair` (I3): no two 200-signed messages of one validator are a double
//!   proposal (same slot, different signing root), a double vote (same target epoch, different
//!   signing root) or a surround vote (either direction). Identical signing roots are allowed.
//! - `signed_under_authority` (I1/I2): every 200 signature of a slashable type by agent X
//!   overlaps (in time, `[sent_us, received_us]`) an interval in which X held authority: from
//!   the `completed` event of a handover granting X to the `fenced` event of the next
//!   handover (order by log index); granted tokens strictly increase. The recorded interval
//!   `[sent_us, received_us]` must only overlap the authority interval: a request sent just
//!   before a fence may be answered after it.
//!
//! Clocks: duty times are the recorder's clock. The handover timeline's `at_ms` is the Raft
//! proposer's wall clock, which a drill may have moved (faketime). So each interval bound is
//! placed on the recorder's clock from the `failoverctl` command windows when they were
//! recorded ([`History::commands`]): a handover cannot complete before its first `approve`
//! command started, and its fence is committed before its `request` command returned. Only
//! a bound without such a window falls back to `at_ms`, and the interval says so
//! ([`AuthorityInterval::clock`]).
//! - `handover_order` (I5): each handover is `fenced ≤ finality_confirmed ≤ approved ≤
//!   completed` in log index, its finality evidence covers `required_epoch` (unless break
//!   glass), every approval is by an operator other than the requester, and (when an audit
//!   record is given) every completion is in the audit record. A handover with a liveness
//!   gate completed without break-glass only after `liveness_confirmed` and with no
//!   validator found live; one that found validators live completed only through break-glass
//!   approvals naming every one of them.
//!
//! Liveness ([`Liveness`]) is reported, never judged: share of honest duties signed, windows
//! of slots without any signature and their causes, handover downtime, recovery after faults.

#![deny(missing_docs)]

pub mod record;
pub mod report;
pub mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use failover_protocol::{AuditEntry, Handover, HandoverEvent, HandoverState};
use serde::{Deserialize, Serialize};

pub use record::{CommandWindow, DutyKind, DutyRecord};
pub use report::write_reports;
use verify::Message;

/// A time window in which a fault was injected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// What was injected, e.g. `partition eu`.
    pub name: String,
    /// Start (Unix µs).
    pub start_us: u64,
    /// End (Unix µs).
    pub end_us: u64,
}

/// Who one coordinator node considered leader at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderSample {
    /// When the sample was taken (Unix µs).
    pub at_us: u64,
    /// The node answering.
    pub node_id: u64,
    /// Its region.
    pub region: String,
    /// The leader it knew, if any.
    pub leader_id: Option<u64>,
    /// Its Raft term.
    pub term: u64,
}

/// The authority holder and token one coordinator node reported at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthoritySample {
    /// When the sample was taken (Unix µs).
    pub at_us: u64,
    /// The node answering.
    pub node_id: u64,
    /// The holder it reported.
    pub holder: Option<String>,
    /// The fencing token it reported.
    pub token: u64,
}

/// Everything the checker judges. File names used by [`History::load`] and
/// [`History::save_authority_history`] are the `FILE_*` constants; only the duties are required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// `SLOTS_PER_EPOCH` of the chain (slots), to place blocks in epochs (the lab uses 8).
    pub slots_per_epoch: u64,
    /// Every sign request and its answer.
    pub duties: Vec<DutyRecord>,
    /// Every handover with its timeline (`GET /v1/handovers`).
    pub handovers: Vec<Handover>,
    /// The coordinator's audit record (`GET /v1/audit`); may be empty.
    pub audit: Vec<AuditEntry>,
    /// Injected faults; may be empty.
    pub faults: Vec<FaultWindow>,
    /// Leader samples; may be empty.
    pub leaders: Vec<LeaderSample>,
    /// Authority samples; may be empty.
    pub authority: Vec<AuthoritySample>,
    /// Every `failoverctl` invocation of the drill, on the recorder's clock; may be empty
    /// (then authority intervals use the coordinator's `at_ms`).
    #[serde(default)]
    pub commands: Vec<CommandWindow>,
}

/// Duty records, one JSON object per line.
pub const FILE_DUTIES: &str = "duties.jsonl";
/// Handovers, a JSON array.
pub const FILE_HANDOVERS: &str = "handovers.json";
/// Audit entries, a JSON array.
pub const FILE_AUDIT: &str = "audit.json";
/// Fault windows, a JSON array.
pub const FILE_FAULTS: &str = "faults.json";
/// Leader samples, a JSON array.
pub const FILE_LEADERS: &str = "leaders.json";
/// Authority samples, a JSON array.
pub const FILE_AUTHORITY: &str = "authority.json";
/// `failoverctl` command windows, a JSON array.
pub const FILE_COMMANDS: &str = "commands.json";

fn read_optional<T: serde::de::DeserializeOwned + Default>(dir: &Path, name: &str) -> Result<T> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(T::default());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
}

fn write_json<T: Serialize>(dir: &Path, name: &str, v: &T) -> Result<()> {
    let path = dir.join(name);
    let text = serde_json::to_string_pretty(v).context("serialize")?;
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
}

impl History {
    /// Reads a drill or lab directory: `duties.jsonl` (required) and the optional JSON files.
    /// `slots_per_epoch` is the chain's (slots).
    ///
    /// Errors: `duties.jsonl` is missing, or a file does not parse.
    pub fn load(dir: &Path, slots_per_epoch: u64) -> Result<Self> {
        let path = dir.join(FILE_DUTIES);
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let duties = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .with_context(|| format!("parse {} line {}", path.display(), i + 1))
            })
            .collect::<Result<Vec<DutyRecord>>>()?;
        Ok(Self {
            slots_per_epoch,
            duties,
            handovers: read_optional(dir, FILE_HANDOVERS)?,
            audit: read_optional(dir, FILE_AUDIT)?,
            faults: read_optional(dir, FILE_FAULTS)?,
            leaders: read_optional(dir, FILE_LEADERS)?,
            authority: read_optional(dir, FILE_AUTHORITY)?,
            commands: read_optional(dir, FILE_COMMANDS)?,
        })
    }

    /// Writes every part except the duties (the lab writes `duties.jsonl` itself) into `dir`.
    ///
    /// Errors: a file cannot be written.
    pub fn save_authority_history(&self, dir: &Path) -> Result<()> {
        write_json(dir, FILE_HANDOVERS, &self.handovers)?;
        write_json(dir, FILE_AUDIT, &self.audit)?;
        write_json(dir, FILE_FAULTS, &self.faults)?;
        write_json(dir, FILE_LEADERS, &self.leaders)?;
        write_json(dir, FILE_AUTHORITY, &self.authority)?;
        write_json(dir, FILE_COMMANDS, &self.commands)
    }
}

/// The verdict of one named check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Check name, e.g. `no_slashable_pair`.
    pub name: String,
    /// Invariants it covers, e.g. `I3`.
    pub invariant: String,
    /// What it verifies, in one sentence.
    pub description: String,
    /// How many items it examined (records, pairs' validators, handovers).
    pub examined: usize,
    /// Every violation found, one line each; empty means pass.
    pub violations: Vec<String>,
}

impl CheckResult {
    /// True when no violation was found.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// A run of slots in which no honest duty was signed by anyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietWindow {
    /// First slot without a signature (slots).
    pub first_slot: u64,
    /// Last slot without a signature (slots).
    pub last_slot: u64,
    /// Earliest request of these slots (Unix µs).
    pub start_us: u64,
    /// First request of the next slot that was signed, or the latest answer of these slots
    /// if none followed (Unix µs).
    pub end_us: u64,
    /// Overlapping fault windows and handovers, or `unexplained`.
    pub causes: Vec<String>,
}

/// Time from a handover request to the new holder's first signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverDowntime {
    /// Handover id.
    pub handover: u64,
    /// Old holder, if any.
    pub from: Option<String>,
    /// New holder.
    pub to: String,
    /// Request time (Unix ms, coordinator clock).
    pub requested_ms: u64,
    /// Completion time (Unix ms), if completed.
    pub completed_ms: Option<u64>,
    /// Request → first 200 answer of the new holder (ms); `None` if it never signed.
    pub downtime_ms: Option<u64>,
}

/// Time from the end of a fault to the next signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Fault name.
    pub fault: String,
    /// Fault end (Unix µs).
    pub end_us: u64,
    /// Fault end → next 200 answer of an honest duty (ms); `None` if none came.
    pub recovery_ms: Option<u64>,
}

/// Liveness figures (reported, not judged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Liveness {
    /// Distinct honest duties (kind, validator, slot) requested.
    pub duties: usize,
    /// Of these, signed by at least one agent.
    pub signed: usize,
    /// `signed / duties` (0 when there were none).
    pub signed_share: f64,
    /// Runs of slots with no signature at all.
    pub quiet_windows: Vec<QuietWindow>,
    /// Downtime of each handover.
    pub handovers: Vec<HandoverDowntime>,
    /// Recovery after each fault window.
    pub recoveries: Vec<Recovery>,
}

/// The checker's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// One result per check, in a fixed order.
    pub checks: Vec<CheckResult>,
    /// Authority intervals the checker reconstructed.
    pub authority: Vec<AuthorityInterval>,
    /// Liveness figures.
    pub liveness: Liveness,
}

impl CheckReport {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(CheckResult::passed)
    }

    /// The failed checks.
    pub fn failed(&self) -> Vec<&CheckResult> {
        self.checks.iter().filter(|c| !c.passed()).collect()
    }

    /// The result of the check named `name`.
    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// One line per check (`PASS`/`FAIL name: n violations`) and the liveness headline.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .checks
            .iter()
            .map(|c| {
                format!(
                    "{} {} ({}): examined {}, {} violation(s){}",
                    if c.passed() { "PASS" } else { "FAIL" },
                    c.name,
                    c.invariant,
                    c.examined,
                    c.violations.len(),
                    c.violations
                        .first()
                        .map(|v| format!("; first: {v}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        let l = &self.liveness;
        out.push(format!(
            "liveness: {}/{} honest duties signed ({:.1} %), {} quiet window(s), handover downtime {}",
            l.signed,
            l.duties,
            l.signed_share * 100.0,
            l.quiet_windows.len(),
            l.handovers
                .iter()
                .map(|h| format!(
                    "#{}: {}",
                    h.handover,
                    h.downtime_ms.map_or("never signed".into(), |d| format!("{d} ms"))
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out
    }
}

/// An interval in which one agent held authority, rebuilt from the handover timelines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityInterval {
    /// The holder.
    pub agent: String,
    /// Its fencing token.
    pub token: Option<u64>,
    /// The granting handover.
    pub handover: u64,
    /// The grant's `completed` event as the proposing coordinator stamped it (Unix ms).
    pub from_ms: u64,
    /// Log index of the grant.
    pub from_index: u64,
    /// The next handover's `fenced` event as its proposer stamped it (Unix ms); `None` while
    /// it still holds.
    pub until_ms: Option<u64>,
    /// Earliest moment the grant can have happened on the recorder's clock (Unix µs): the
    /// start of the first `failoverctl handover approve` of the granting handover, else
    /// `from_ms`.
    pub from_us: u64,
    /// Latest moment the next fence can have happened on the recorder's clock (Unix µs): the
    /// end of the `failoverctl handover request` that created the fencing handover, else the
    /// end of `until_ms`; `None` while it still holds.
    pub until_us: Option<u64>,
    /// Where the bounds come from: `commands` (both from command windows), `coordinator`
    /// (both from `at_ms`) or `mixed`.
    pub clock: String,
}

fn event(h: &Handover, name: HandoverEvent) -> Option<&failover_protocol::TimelineEvent> {
    h.timeline.iter().find(|e| e.event == name)
}

/// A 200 answer with its message as the checker reads it.
struct Signed<'a> {
    rec: &'a DutyRecord,
    /// Recomputed from the request when possible, else from the record's own fields.
    message: Message,
    signing_root: [u8; 32],
}

/// Runs every check and computes liveness.
pub fn check(h: &History) -> CheckReport {
    let (sig_check, signed) = check_signatures(&h.duties, h.slots_per_epoch);
    let authority = authority_intervals(&h.handovers, &h.commands);
    let checks = vec![
        sig_check,
        check_slashable(&signed),
        check_authority(&signed, &authority),
        check_handover_order(h),
    ];
    CheckReport {
        checks,
        authority,
        liveness: liveness(h),
    }
}

fn describe(r: &DutyRecord) -> String {
    format!(
        "{} {:?} v{} slot {}{}{} (sent {} µs)",
        r.agent,
        r.kind,
        r.validator,
        r.slot,
        r.target_epoch
            .map(|t| format!(" {}→{}", r.source_epoch.unwrap_or_default(), t))
            .unwrap_or_default(),
        r.probe
            .as_ref()
            .map(|p| format!(" probe `{p}`"))
            .unwrap_or_default(),
        r.sent_us
    )
}

/// The signature check alone ([`check`]'s `signatures_valid`), for tools that judge records
/// without a whole history (the benchmark): every 200 answer among `duties` carries a BLS
/// signature valid over the signing root recomputed from its request (`slots_per_epoch`
/// places blocks in epochs).
pub fn signatures_valid(duties: &[DutyRecord], slots_per_epoch: u64) -> CheckResult {
    check_signatures(duties, slots_per_epoch).0
}

fn check_signatures(duties: &[DutyRecord], slots_per_epoch: u64) -> (CheckResult, Vec<Signed<'_>>) {
    let mut violations = Vec::new();
    let mut signed = Vec::new();
    let mut examined = 0;
    for r in duties.iter().filter(|r| r.status == 200) {
        examined += 1;
        let fallback = || -> Message {
            match (r.kind, r.source_epoch, r.target_epoch) {
                (DutyKind::Attestation, Some(s), Some(t)) => Message::Attestation {
                    slot: r.slot,
                    source: s,
                    target: t,
                    object_root: [0; 32],
                },
                _ => Message::Block {
                    slot: r.slot,
                    object_root: [0; 32],
                },
            }
        };
        let (message, root) = if r.request.is_null() {
            violations.push(format!(
                "{}: no request body recorded; cannot recompute its signing root",
                describe(r)
            ));
            (fallback(), r.signing_root.0)
        } else {
            match verify::recompute(&r.request, slots_per_epoch) {
                Ok(re) => {
                    if re.signing_root != r.signing_root.0 {
                        violations.push(format!(
                            "{}: recorded signing root 0x{} differs from the recomputed 0x{}",
                            describe(r),
                            hex::encode(r.signing_root.0),
                            hex::encode(re.signing_root)
                        ));
                    }
                    if let Some(c) = re.claimed_root.filter(|c| *c != re.signing_root) {
                        violations.push(format!(
                            "{}: the request's signingRoot 0x{} differs from the recomputed 0x{}",
                            describe(r),
                            hex::encode(c),
                            hex::encode(re.signing_root)
                        ));
                    }
                    (re.message, re.signing_root)
                }
                Err(e) => {
                    violations.push(format!("{}: unreadable request: {e}", describe(r)));
                    (fallback(), r.signing_root.0)
                }
            }
        };
        match &r.signature {
            None => violations.push(format!("{}: 200 without a signature", describe(r))),
            Some(sig) => {
                if let Err(e) = verify::verify_bls(&r.pubkey.0, &sig.0, &root) {
                    violations.push(format!("{}: {e}", describe(r)));
                }
            }
        }
        signed.push(Signed {
            rec: r,
            message,
            signing_root: root,
        });
    }
    (
        CheckResult {
            name: "signatures_valid".into(),
            invariant: "I4".into(),
            description: "every 200 answer carries a BLS signature valid for its pubkey over the signing root recomputed from the request".into(),
            examined,
            violations,
        },
        signed,
    )
}

fn check_slashable(signed: &[Signed<'_>]) -> CheckResult {
    // Per validator, distinct messages (identical signing roots are one message).
    let mut by_validator: BTreeMap<Vec<u8>, BTreeMap<[u8; 32], &Signed<'_>>> = BTreeMap::new();
    for s in signed {
        by_validator
            .entry(s.rec.pubkey.0.to_vec())
            .or_default()
            .entry(s.signing_root)
            .or_insert(s);
    }
    let mut violations = Vec::new();
    for msgs in by_validator.values() {
        let msgs: Vec<&&Signed<'_>> = msgs.values().collect();
        for (i, a) in msgs.iter().enumerate() {
            for b in &msgs[i + 1..] {
                let what = match (a.message, b.message) {
                    (Message::Block { slot: s1, .. }, Message::Block { slot: s2, .. })
                        if s1 == s2 =>
                    {
                        Some("double proposal")
                    }
                    (
                        Message::Attestation {
                            source: s1,
                            target: t1,
                            ..
                        },
                        Message::Attestation {
                            source: s2,
                            target: t2,
                            ..
                        },
                    ) => {
                        if t1 == t2 {
                            Some("double vote")
                        } else if (s1 < s2 && t2 < t1) || (s2 < s1 && t1 < t2) {
                            Some("surround vote")
                        } else {
                            None
                        }
                    }
                    _ => None,
                };
                if let Some(what) = what {
                    violations.push(format!(
                        "{what} by validator {}: [{}] and [{}]",
                        a.rec.validator,
                        describe(a.rec),
                        describe(b.rec)
                    ));
                }
            }
        }
    }
    CheckResult {
        name: "no_slashable_pair".into(),
        invariant: "I3".into(),
        description: "no two signed messages of one validator are a double proposal, a double vote or a surround vote".into(),
        examined: by_validator.len(),
        violations,
    }
}

/// The `failoverctl handover request` window that created handover `id`.
fn request_window(commands: &[CommandWindow], id: u64) -> Option<&CommandWindow> {
    commands
        .iter()
        .find(|c| c.is_handover("request") && c.handover == Some(id))
}

/// The start of the first `failoverctl handover approve ID` (Unix µs).
fn first_approve_us(commands: &[CommandWindow], id: u64) -> Option<u64> {
    let id = id.to_string();
    commands
        .iter()
        .filter(|c| c.is_handover("approve") && c.args.get(2) == Some(&id))
        .map(|c| c.start_us)
        .min()
}

/// Rebuilds the authority intervals: each completed handover grants its target from its
/// `completed` event until the `fenced` event of the next handover (by log index). Bounds are
/// put on the recorder's clock with `commands` where possible (module docs, "Clocks").
pub fn authority_intervals(
    handovers: &[Handover],
    commands: &[CommandWindow],
) -> Vec<AuthorityInterval> {
    let mut grants: Vec<(&Handover, u64, u64)> = handovers
        .iter()
        .filter(|h| h.state == HandoverState::Completed)
        .filter_map(|h| event(h, HandoverEvent::Completed).map(|e| (h, e.log_index, e.at_ms)))
        .collect();
    grants.sort_by_key(|g| g.1);
    // (log index, at_ms, handover id) of every fence.
    let mut fences: Vec<(u64, u64, u64)> = handovers
        .iter()
        .filter_map(|h| event(h, HandoverEvent::Fenced).map(|e| (e.log_index, e.at_ms, h.id)))
        .collect();
    fences.sort();
    grants
        .iter()
        .map(|(h, index, at_ms)| {
            let fence = fences.iter().find(|f| f.0 > *index);
            let from_cmd = first_approve_us(commands, h.id);
            let until_cmd = fence.and_then(|f| request_window(commands, f.2).map(|w| w.end_us));
            let from_us = from_cmd.unwrap_or(at_ms * 1000);
            let until_us = fence.map(|f| until_cmd.unwrap_or(f.1 * 1000 + 999));
            let until_from_cmd = fence.map(|_| until_cmd.is_some());
            let clock = match (from_cmd.is_some(), until_from_cmd) {
                (true, None | Some(true)) => "commands",
                (false, None | Some(false)) => "coordinator",
                _ => "mixed",
            };
            AuthorityInterval {
                agent: h.to.clone(),
                token: h.granted_token,
                handover: h.id,
                from_ms: *at_ms,
                from_index: *index,
                until_ms: fence.map(|f| f.1),
                from_us,
                until_us,
                clock: clock.into(),
            }
        })
        .collect()
}

fn check_authority(signed: &[Signed<'_>], intervals: &[AuthorityInterval]) -> CheckResult {
    let mut violations = Vec::new();
    for w in intervals.windows(2) {
        if w[1].token <= w[0].token {
            violations.push(format!(
                "token did not increase: handover {} granted {:?} after handover {} granted {:?}",
                w[1].handover, w[1].token, w[0].handover, w[0].token
            ));
        }
    }
    for s in signed {
        let r = s.rec;
        let held = intervals.iter().any(|iv| {
            iv.agent == r.agent
                && iv.from_us <= r.received_us
                && r.sent_us <= iv.until_us.unwrap_or(u64::MAX)
        });
        if !held {
            let holder = intervals
                .iter()
                .rfind(|iv| iv.from_us <= r.received_us)
                .map_or("nobody".to_string(), |iv| {
                    format!(
                        "{} (token {}, {}; {} clock)",
                        iv.agent,
                        iv.token.map_or("none".into(), |t| t.to_string()),
                        iv.until_us
                            .map_or("not fenced".into(), |u| format!("fenced by {u} µs")),
                        iv.clock
                    )
                });
            violations.push(format!(
                "{} signed without authority; the last grant before it went to {holder}",
                describe(r)
            ));
        }
    }
    CheckResult {
        name: "signed_under_authority".into(),
        invariant: "I1, I2".into(),
        description: "every slashable signature came from the agent holding authority at that time (grant completed, not yet fenced); tokens increase".into(),
        examined: signed.len(),
        violations,
    }
}

/// The liveness gate's part of `handover_order` for a handover completed at log index `done`
/// with approvals at `approved`.
fn check_liveness_gate(ho: &Handover, done: u64, approved: &[u64]) -> Vec<String> {
    let id = ho.id;
    let Some(gate) = &ho.liveness else {
        return vec![];
    };
    let mut violations = Vec::new();
    if !gate.findings.is_empty() {
        if !ho.break_glass {
            violations.push(format!(
                "handover {id}: completed without break-glass although {} validator(s) were \
                 seen live",
                gate.findings.len()
            ));
        }
        let naming_all = ho
            .approvals
            .iter()
            .filter(|a| a.break_glass)
            .filter(|a| {
                gate.findings
                    .iter()
                    .all(|f| a.acknowledged.contains(&f.pubkey))
            })
            .count();
        if naming_all == 0 {
            violations.push(format!(
                "handover {id}: completed although no break-glass approval names every \
                 validator seen live"
            ));
        }
        return violations;
    }
    if ho.break_glass {
        return violations;
    }
    match event(ho, HandoverEvent::LivenessConfirmed).map(|e| e.log_index) {
        None => violations.push(format!(
            "handover {id}: completed without liveness confirmation (not break-glass)"
        )),
        Some(l) => {
            if l > done {
                violations.push(format!(
                    "handover {id}: liveness confirmed at index {l} after completion at {done}"
                ));
            }
            for a in approved.iter().filter(|a| **a < l) {
                violations.push(format!(
                    "handover {id}: approved at index {a} before liveness was confirmed at {l}"
                ));
            }
        }
    }
    violations
}

fn check_handover_order(h: &History) -> CheckResult {
    let mut violations = Vec::new();
    for ho in &h.handovers {
        let id = ho.id;
        let idx = |name: HandoverEvent| event(ho, name).map(|e| e.log_index);
        let fenced = idx(HandoverEvent::Fenced);
        let finality = idx(HandoverEvent::FinalityConfirmed);
        let approved: Vec<u64> = ho
            .timeline
            .iter()
            .filter(|e| {
                matches!(
                    e.event,
                    HandoverEvent::Approved | HandoverEvent::ApprovedBreakGlass
                )
            })
            .map(|e| e.log_index)
            .collect();
        let completed = idx(HandoverEvent::Completed);
        if ho.state == HandoverState::Completed && completed.is_none() {
            violations.push(format!(
                "handover {id}: completed without a `completed` event"
            ));
        }
        let Some(done) = completed else { continue };
        let Some(fenced) = fenced else {
            violations.push(format!("handover {id}: completed without being fenced"));
            continue;
        };
        if fenced > done {
            violations.push(format!(
                "handover {id}: fenced at index {fenced} after completion at {done}"
            ));
        }
        if !ho.break_glass {
            match finality {
                None => violations.push(format!(
                    "handover {id}: completed without finality confirmation (not break-glass)"
                )),
                Some(f) => {
                    if f < fenced {
                        violations.push(format!(
                            "handover {id}: finality confirmed at index {f} before fencing at {fenced}"
                        ));
                    }
                    for a in approved.iter().filter(|a| **a < f) {
                        violations.push(format!(
                            "handover {id}: approved at index {a} before finality was confirmed at {f}"
                        ));
                    }
                    if f > done {
                        violations.push(format!(
                            "handover {id}: finality confirmed at index {f} after completion at {done}"
                        ));
                    }
                }
            }
            match &ho.finality_evidence {
                Some((cp, _)) if cp.epoch >= ho.required_epoch => {}
                Some((cp, _)) => violations.push(format!(
                    "handover {id}: finality evidence epoch {} below required epoch {}",
                    cp.epoch, ho.required_epoch
                )),
                None if ho.required_epoch == 0 => {}
                None => violations.push(format!(
                    "handover {id}: no finality evidence for required epoch {}",
                    ho.required_epoch
                )),
            }
        }
        violations.extend(check_liveness_gate(ho, done, &approved));
        if approved.is_empty() {
            violations.push(format!("handover {id}: completed without any approval"));
        }
        for a in approved.iter().filter(|a| **a > done) {
            violations.push(format!(
                "handover {id}: approval at index {a} after completion at {done}"
            ));
        }
        for a in ho
            .approvals
            .iter()
            .filter(|a| a.operator == ho.requested_by)
        {
            violations.push(format!(
                "handover {id}: approved by its requester {}",
                a.operator
            ));
        }
        let approvers: BTreeSet<&str> = ho.approvals.iter().map(|a| a.operator.as_str()).collect();
        if approvers.len() != ho.approvals.len() {
            violations.push(format!("handover {id}: an operator approved twice"));
        }
        if !h.audit.is_empty()
            && !h
                .audit
                .iter()
                .any(|a| a.handover == Some(id) && a.outcome == "completed")
        {
            violations.push(format!(
                "handover {id}: completed, but the audit record has no completing entry"
            ));
        }
    }
    CheckResult {
        name: "handover_order".into(),
        invariant: "I5".into(),
        description: "each completed handover went fenced → finality confirmed (evidence ≥ required epoch) → approved by others → completed, in log order".into(),
        examined: h.handovers.len(),
        violations,
    }
}

/// When a handover was requested and when it ended (completed or aborted), on the recorder's
/// clock (Unix µs): from the `failoverctl` windows when recorded (request start; end of the
/// last command that printed the final state), else from the timeline's `at_ms`. The end is
/// `u64::MAX` while it is open.
pub(crate) fn handover_span_us(h: &History, ho: &Handover) -> (Option<u64>, u64) {
    let start = request_window(&h.commands, ho.id)
        .map(|w| w.start_us)
        .or_else(|| event(ho, HandoverEvent::Requested).map(|e| e.at_ms * 1000));
    let done = |state: &str| {
        h.commands
            .iter()
            .filter(|c| c.handover == Some(ho.id) && c.state.as_deref() == Some(state))
            .map(|c| c.end_us)
            .min()
    };
    let end = done("completed")
        .or_else(|| done("aborted"))
        .or_else(|| {
            event(ho, HandoverEvent::Completed)
                .or_else(|| event(ho, HandoverEvent::Aborted))
                .map(|e| e.at_ms * 1000 + 999)
        })
        .unwrap_or(u64::MAX);
    (start, end)
}

fn liveness(h: &History) -> Liveness {
    let honest: Vec<&DutyRecord> = h.duties.iter().filter(|r| r.probe.is_none()).collect();
    let mut duties: BTreeMap<(DutyKind, u64, u64), bool> = BTreeMap::new();
    // slot -> (signed?, first sent, last received)
    let mut slots: BTreeMap<u64, (bool, u64, u64)> = BTreeMap::new();
    for r in &honest {
        let ok = r.status == 200;
        *duties.entry((r.kind, r.validator, r.slot)).or_default() |= ok;
        let e = slots.entry(r.slot).or_insert((false, u64::MAX, 0));
        e.0 |= ok;
        e.1 = e.1.min(r.sent_us);
        e.2 = e.2.max(r.received_us);
    }
    let signed = duties.values().filter(|s| **s).count();
    let mut quiet_windows = Vec::new();
    let mut open: Option<QuietWindow> = None;
    let first = slots.keys().next().copied().unwrap_or(0);
    let last = slots.keys().next_back().copied().unwrap_or(0);
    for slot in first..=last.max(first) {
        let (ok, s_us, e_us) = slots.get(&slot).copied().unwrap_or((false, u64::MAX, 0));
        if ok {
            if let Some(mut w) = open.take() {
                // The window lasts until this slot's first request.
                w.end_us = w.end_us.max(s_us);
                quiet_windows.push(w);
            }
            continue;
        }
        let w = open.get_or_insert(QuietWindow {
            first_slot: slot,
            last_slot: slot,
            start_us: s_us,
            end_us: e_us,
            causes: vec![],
        });
        w.last_slot = slot;
        w.start_us = w.start_us.min(s_us);
        w.end_us = w.end_us.max(e_us);
    }
    quiet_windows.extend(open);
    for w in &mut quiet_windows {
        for f in &h.faults {
            if f.start_us <= w.end_us && w.start_us <= f.end_us {
                w.causes.push(format!("fault `{}`", f.name));
            }
        }
        for ho in &h.handovers {
            let (start, end) = handover_span_us(h, ho);
            if let Some(start) = start {
                if start <= w.end_us && w.start_us <= end {
                    w.causes.push(format!("handover {} → {}", ho.id, ho.to));
                }
            }
        }
        if w.causes.is_empty() {
            w.causes.push("unexplained".into());
        }
    }
    let handovers = h
        .handovers
        .iter()
        .filter_map(|ho| {
            let req = event(ho, HandoverEvent::Requested)?;
            let (start, _) = handover_span_us(h, ho);
            let start = start?;
            let first = h
                .duties
                .iter()
                .filter(|r| r.status == 200 && r.agent == ho.to && r.received_us >= start)
                .map(|r| r.received_us)
                .min();
            Some(HandoverDowntime {
                handover: ho.id,
                from: ho.from.clone(),
                to: ho.to.clone(),
                requested_ms: req.at_ms,
                completed_ms: event(ho, HandoverEvent::Completed).map(|e| e.at_ms),
                downtime_ms: first.map(|f| (f - start) / 1000),
            })
        })
        .collect();
    let recoveries = h
        .faults
        .iter()
        .map(|f| Recovery {
            fault: f.name.clone(),
            end_us: f.end_us,
            recovery_ms: honest
                .iter()
                .filter(|r| r.status == 200 && r.received_us >= f.end_us)
                .map(|r| (r.received_us - f.end_us) / 1000)
                .min(),
        })
        .collect();
    Liveness {
        duties: duties.len(),
        signed,
        signed_share: if duties.is_empty() {
            0.0
        } else {
            signed as f64 / duties.len() as f64
        },
        quiet_windows,
        handovers,
        recoveries,
    }
}
