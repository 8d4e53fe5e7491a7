//! The end-of-run summary: counts, the handover timeline, and the lab's own checks of how the
//! run went, beside the independent checker's verdicts.
//!
//! Invariant: there is one checker. Whether signatures verify, whether two signatures are
//! slashable together and whether two agents signed under one authority are judged only by
//! [`crate::checker`] (its own SSZ and BLS, DESIGN.md I1–I5); the summary shows its
//! [`CheckReport`] as checks and adds only what the checker does not judge:
//! - **handover completed**: `failoverctl` reports the handover `completed` and the cluster
//!   names the target as holder;
//! - **new holder signs**: the target returned signatures after the handover;
//! - **honest duties answered sensibly**: a regular duty gets a signature, or a refusal for
//!   authority (403 not holder, 503 fail closed); any other answer (400 malformed or signing
//!   root mismatch, 404, 412 on a non-conflicting message, 500, no answer) means the validator
//!   client and the system disagree and duties are being missed;
//! - **conflict probes** (see `probes`): conflicting messages are refused (412), identical ones
//!   re-sign to the same signature.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};

use failover_protocol::{Handover, HandoverEvent, HandoverState, LivenessGate};

use super::duties::{DutyKind, DutyRecord};
use crate::checker::{CheckReport, CheckResult};

/// One named check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What is checked, as a sentence.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// Counts, or the first counter-examples.
    pub detail: String,
}

fn describe(r: &DutyRecord) -> String {
    match r.kind {
        DutyKind::Block => format!(
            "block slot {} root {} via {}",
            r.slot, r.signing_root, r.agent
        ),
        DutyKind::Attestation => format!(
            "attestation {}→{} root {} via {}",
            r.source_epoch.unwrap_or_default(),
            r.target_epoch.unwrap_or_default(),
            r.signing_root,
            r.agent
        ),
    }
}

/// A short stable label for a refusal body, for grouping.
///
/// For the agent's JSON error body `{code, message, holder?, refusal?}` it is the `code`,
/// then the slashing refusal's `reason`, the holder, or (for `unavailable` and
/// `bad_request`) the message with numbers and hex masked. Any other text is masked whole.
pub fn reason_label(reason: &str) -> String {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(reason) else {
        return mask(reason);
    };
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(String::from);
    let Some(code) = text(m.get("code")) else {
        return mask(reason);
    };
    let mut label = code.clone();
    if let Some(r) = text(m.get("refusal").and_then(|r| r.get("reason"))) {
        let _ = write!(label, ": {r}");
    }
    match text(m.get("holder")) {
        Some(h) => {
            let _ = write!(label, " (holder {h})");
        }
        None if code == "not_holder" => label.push_str(" (no holder: fenced)"),
        None => {}
    }
    if matches!(code.as_str(), "unavailable" | "bad_request") {
        if let Some(msg) = text(m.get("message")) {
            let _ = write!(label, ": {}", mask(&msg));
        }
    }
    label
}

/// Replaces `0x…` hex and digit runs by `0x…` and `N`, and cuts to 80 characters.
fn mask(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '0' && chars.peek() == Some(&'x') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                chars.next();
            }
            out.push_str("0x…");
        } else if c.is_ascii_digit() {
            while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
                chars.next();
            }
            out.push('N');
        } else {
            out.push(c);
        }
    }
    match out.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &out[..i]),
        None => out,
    }
}

/// A conflict probe's answer and whether it met the probe's expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// `Ok` when the answer met the expectation, else how it did not.
    pub verdict: Result<(), String>,
    /// The probe's record (`probe` holds its name).
    pub record: DutyRecord,
}

/// What the summary is built from.
#[derive(Debug, Clone)]
pub struct SummaryInput {
    /// Number of validators.
    pub validators: usize,
    /// Keystore KDF description.
    pub kdf: String,
    /// `(agent id, role)` in display order.
    pub agents: Vec<(String, String)>,
    /// Every record: regular duties and conflict probes (`probe` set).
    pub records: Vec<DutyRecord>,
    /// The conflict probes with their verdicts (their records are also in `records`).
    pub probes: Vec<ProbeOutcome>,
    /// The planned handover as `failoverctl handover show` reported it at the end, if one ran.
    pub handover: Option<Handover>,
    /// The authority holder `failoverctl status` reported at the end.
    pub final_holder: Option<String>,
    /// Errors of the run itself (a step that failed), each also a failed check.
    pub run_errors: Vec<String>,
    /// The independent checker's verdicts over the same run ([`crate::checker::check`]).
    pub report: CheckReport,
    /// Whether duties were sent at all (`failover-lab --no-duties` sends none): the checks
    /// that need them are skipped, and say so, instead of failing.
    pub duties_sent: bool,
    /// The handover was meant to be stopped by the liveness gate naming these validator
    /// indices (the `rogue-signer` drill), then aborted: that is its check instead of
    /// "completed".
    pub expected_doppelganger: Option<Vec<u64>>,
}

/// The end-of-run summary: counts, the handover timeline and the checks.
#[derive(Debug, Clone)]
pub struct Summary {
    input: SummaryInput,
    /// Every check, in display order.
    pub checks: Vec<Check>,
    /// Checks that did not apply to this run, `(name, why)`; they neither pass nor fail.
    pub skipped: Vec<(String, String)>,
}

impl Summary {
    /// Runs the checks over `input`.
    pub fn build(input: SummaryInput) -> Self {
        let mut checks = Vec::new();
        let mut skipped = Vec::new();
        for e in &input.run_errors {
            checks.push(Check {
                name: "the scenario ran to the end".into(),
                ok: false,
                detail: e.clone(),
            });
        }
        checks.extend(input.report.checks.iter().map(checker_check));
        let odd: Vec<&DutyRecord> = input
            .records
            .iter()
            .filter(|r| r.probe.is_none() && !matches!(r.status, 200 | 403 | 503))
            .collect();
        let fail_closed = input
            .records
            .iter()
            .filter(|r| r.probe.is_none() && r.status == 503)
            .count();
        checks.push(Check {
            name: "honest duties are only signed or refused for authority (403/503)".into(),
            ok: odd.is_empty(),
            detail: if odd.is_empty() {
                format!("{fail_closed} fail-closed 503s")
            } else {
                let shown: Vec<String> = odd
                    .iter()
                    .map(|r| format!("{} → {} {}", describe(r), r.status, reason_label(&r.reason)))
                    .collect();
                format!(
                    "{} duties answered otherwise, e.g. {}",
                    odd.len(),
                    first_few(&shown)
                )
            },
        });
        if let (Some(h), Some(expected)) = (&input.handover, &input.expected_doppelganger) {
            let named = h
                .liveness
                .as_ref()
                .map(LivenessGate::found_indices)
                .unwrap_or_default();
            let stopped = h
                .timeline
                .iter()
                .any(|e| e.event == HandoverEvent::DoppelgangerDetected);
            checks.push(Check {
                name: format!(
                    "handover {} stopped by the liveness gate, then aborted",
                    h.id
                ),
                ok: stopped && h.state == HandoverState::Aborted && &named == expected,
                detail: format!(
                    "state {}, validators named {named:?} (expected {expected:?}), holder now {}",
                    state_name(h.state),
                    input.final_holder.as_deref().unwrap_or("none")
                ),
            });
        } else if let Some(h) = &input.handover {
            let completed = h.state == HandoverState::Completed;
            let holder_ok = input.final_holder.as_deref() == Some(h.to.as_str());
            checks.push(Check {
                name: format!("handover {} completed", h.id),
                ok: completed && holder_ok,
                detail: format!(
                    "state {}, holder now {}",
                    state_name(h.state),
                    input.final_holder.as_deref().unwrap_or("none")
                ),
            });
            let name = format!("{} signs after the handover", h.to);
            if input.duties_sent {
                let new_sigs = input
                    .records
                    .iter()
                    .filter(|r| r.agent == h.to && r.status == 200 && r.probe.is_none())
                    .count();
                checks.push(Check {
                    name,
                    ok: new_sigs > 0,
                    detail: format!("{new_sigs} signatures"),
                });
            } else {
                skipped.push((name, "no duties were sent (--no-duties)".into()));
            }
        }
        if !input.probes.is_empty() {
            let wrong: Vec<String> = input
                .probes
                .iter()
                .filter_map(|p| {
                    p.verdict.as_ref().err().map(|e| {
                        format!(
                            "{} to {}: {e}",
                            p.record.probe.as_deref().unwrap_or("?"),
                            p.record.agent
                        )
                    })
                })
                .collect();
            checks.push(Check {
                name: "conflicting messages are refused, identical ones re-sign identically".into(),
                ok: wrong.is_empty(),
                detail: if wrong.is_empty() {
                    format!("{} probes as expected", input.probes.len())
                } else {
                    format!(
                        "{} of {} probes wrong: {}",
                        wrong.len(),
                        input.probes.len(),
                        first_few(&wrong)
                    )
                },
            });
        }
        Self {
            input,
            checks,
            skipped,
        }
    }

    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// One of the checker's verdicts as a summary check.
fn checker_check(c: &CheckResult) -> Check {
    Check {
        name: format!(
            "independent checker: {} ({}): {}",
            c.name, c.invariant, c.description
        ),
        ok: c.passed(),
        detail: if c.passed() {
            format!("{} examined", c.examined)
        } else {
            format!(
                "{} violation(s), e.g. {}",
                c.violations.len(),
                first_few(&c.violations)
            )
        },
    }
}

fn first_few(items: &[String]) -> String {
    items.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
}

fn state_name(s: HandoverState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{s:?}"))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inp = &self.input;
        // Regular duties only; probes have their own section.
        let recs: Vec<&DutyRecord> = inp.records.iter().filter(|r| r.probe.is_none()).collect();
        writeln!(f, "SUMMARY")?;
        writeln!(
            f,
            "  validators  {} (interop keys 0..{})",
            inp.validators,
            inp.validators.saturating_sub(1)
        )?;
        writeln!(f, "  keystores   {}", inp.kdf)?;
        if let (Some(lo), Some(hi)) = (
            recs.iter().map(|r| r.slot).min(),
            recs.iter().map(|r| r.slot).max(),
        ) {
            writeln!(
                f,
                "  duties      slots {lo}..={hi}, {} requests to {} agents",
                recs.len(),
                inp.agents.len()
            )?;
        } else {
            writeln!(f, "  duties      none sent")?;
        }
        let no_answer = recs.iter().filter(|r| r.status == 0).count();
        if no_answer > 0 {
            writeln!(
                f,
                "  no answer   {no_answer} requests (connection error or timeout)"
            )?;
        }

        writeln!(f, "\nSIGNATURES")?;
        writeln!(
            f,
            "  {:<10} {:<8} {:>7} {:>13} {:>7}",
            "AGENT", "ROLE", "BLOCKS", "ATTESTATIONS", "TOTAL"
        )?;
        for (id, role) in &inp.agents {
            let count = |k: DutyKind| {
                recs.iter()
                    .filter(|r| &r.agent == id && r.status == 200 && r.kind == k)
                    .count()
            };
            let (b, a) = (count(DutyKind::Block), count(DutyKind::Attestation));
            writeln!(f, "  {id:<10} {role:<8} {b:>7} {a:>13} {:>7}", a + b)?;
        }

        writeln!(f, "\nREFUSALS (by agent, status, reason)")?;
        let mut refusals: BTreeMap<(String, u16, String), usize> = BTreeMap::new();
        for r in recs.iter().filter(|r| r.status != 200) {
            *refusals
                .entry((r.agent.clone(), r.status, reason_label(&r.reason)))
                .or_default() += 1;
        }
        if refusals.is_empty() {
            writeln!(f, "  none")?;
        }
        for ((agent, status, label), n) in &refusals {
            writeln!(f, "  {agent:<10} {status:>3} {n:>6}  {label}")?;
        }

        if let Some(h) = &inp.handover {
            writeln!(
                f,
                "\nHANDOVER {}: {} -> {} (requested by {}, reason {:?}; state {})",
                h.id,
                h.from.as_deref().unwrap_or("none"),
                h.to,
                h.requested_by,
                h.reason,
                state_name(h.state)
            )?;
            let t0 = h
                .timeline
                .iter()
                .find(|e| e.event == HandoverEvent::Requested)
                .or(h.timeline.first())
                .map_or(0, |e| e.at_ms);
            let rel = |at_us: u64| (at_us as f64 / 1e3 - t0 as f64) / 1e3;
            let approvers: HashMap<u64, &str> = h
                .approvals
                .iter()
                .map(|a| (a.log_index, a.operator.as_str()))
                .collect();
            for e in &h.timeline {
                let mut note = String::new();
                if e.event == HandoverEvent::FinalityConfirmed {
                    if let Some((cp, _)) = &h.finality_evidence {
                        note = format!(
                            "finalized epoch {} ≥ required epoch {}",
                            cp.epoch, h.required_epoch
                        );
                    }
                }
                if let (HandoverEvent::LivenessConfirmed, Some(g)) = (e.event, &h.liveness) {
                    note = format!(
                        "epochs {} to {}: no validator of {} live",
                        g.first_epoch,
                        g.first_epoch
                            .saturating_add(g.epochs_required)
                            .saturating_sub(1),
                        h.to
                    );
                }
                if let (HandoverEvent::DoppelgangerDetected, Some(g)) = (e.event, &h.liveness) {
                    let here: Vec<String> = g
                        .findings
                        .iter()
                        .filter(|f| f.log_index == e.log_index)
                        .map(|f| format!("{} (epoch {})", f.index, f.epoch))
                        .collect();
                    note = format!("seen live outside the cluster: {}", here.join(", "));
                }
                if e.event == HandoverEvent::Approved {
                    if let Some(op) = approvers.get(&e.log_index) {
                        note = format!("by {op}");
                    }
                }
                if e.event == HandoverEvent::Completed {
                    if let Some(t) = h.granted_token {
                        note = format!("token {t}");
                    }
                }
                writeln!(
                    f,
                    "  {:<32} log {:>6}  {:>+9.3} s  {note}",
                    e.event,
                    e.log_index,
                    rel(e.at_ms * 1000)
                )?;
            }
            if let Some(from) = &h.from {
                if let Some(r) = recs
                    .iter()
                    .filter(|r| &r.agent == from && r.status == 200)
                    .max_by_key(|r| r.received_us)
                {
                    writeln!(
                        f,
                        "  {:<32} {:>10}  {:>+9.3} s  slot {}",
                        format!("last signature by {from}"),
                        "",
                        rel(r.received_us),
                        r.slot
                    )?;
                }
            }
            let first_new = recs
                .iter()
                .filter(|r| r.agent == h.to && r.status == 200)
                .min_by_key(|r| r.received_us);
            if let Some(r) = first_new {
                writeln!(
                    f,
                    "  {:<32} {:>10}  {:>+9.3} s  slot {}",
                    format!("first signature by {}", h.to),
                    "",
                    rel(r.received_us),
                    r.slot
                )?;
            }
            let last_old = h.from.as_ref().and_then(|from| {
                recs.iter()
                    .filter(|r| &r.agent == from && r.status == 200)
                    .map(|r| r.slot)
                    .max()
            });
            if let (Some(last), Some(first)) = (last_old, first_new.map(|r| r.slot)) {
                if first > last + 1 {
                    writeln!(
                        f,
                        "  signing gap: no signature for slots {}..={} ({} slots, the price of waiting for finality and the liveness gate)",
                        last + 1,
                        first - 1,
                        first - last - 1
                    )?;
                }
            }
        }

        if !inp.probes.is_empty() {
            writeln!(f, "\nCONFLICT PROBES")?;
            for p in &inp.probes {
                let r = &p.record;
                writeln!(
                    f,
                    "  {:<10} {:>3} {:<5} {}{}",
                    r.agent,
                    r.status,
                    if p.verdict.is_ok() { "ok" } else { "WRONG" },
                    r.probe.as_deref().unwrap_or("?"),
                    match r.status {
                        200 => String::new(),
                        _ => format!(": {}", reason_label(&r.reason)),
                    }
                )?;
            }
        }

        writeln!(f, "\nCHECKS")?;
        for c in &self.checks {
            writeln!(
                f,
                "  [{}] {}: {}",
                if c.ok { " ok " } else { "FAIL" },
                c.name,
                c.detail
            )?;
        }
        for (name, why) in &self.skipped {
            writeln!(f, "  [skip] {name}: {why}")?;
        }
        writeln!(
            f,
            "\nRESULT {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}
