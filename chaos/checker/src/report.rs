//! The checker's reports: `report.md` (for people), `report.json` (for tools) and
//! `timeline.svg` (drawn with `plotters`, SVG backend, no system fonts needed).
//!
//! The picture's x axis is seconds since the recording began; its rows, top to bottom: the
//! leader seen from each region (from leader samples), the authority holder and token
//! (rebuilt from handover timelines), and one row per agent with a bar per slot whose height
//! is the number of 200 answers of that agent in that slot (a red tick marks slots where it
//! refused or failed requests). Fault windows are shaded red across every row; handover
//! requests are dashed-looking thin vertical lines.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde_json::json;

use crate::{CheckReport, History};

/// Markdown report file name.
pub const FILE_MD: &str = "report.md";
/// JSON report file name.
pub const FILE_JSON: &str = "report.json";
/// Timeline picture file name.
pub const FILE_SVG: &str = "timeline.svg";

/// Writes `report.md`, `report.json` and `timeline.svg` into `dir`.
///
/// Errors: a file cannot be written or the picture cannot be drawn.
pub fn write_reports(dir: &Path, history: &History, report: &CheckReport) -> Result<()> {
    let json = json!({
        "passed": report.passed(),
        "slots_per_epoch": history.slots_per_epoch,
        "records": history.duties.len(),
        "handovers": history.handovers.len(),
        "faults": history.faults,
        "report": report,
    });
    let path = dir.join(FILE_JSON);
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("write {}", path.display()))?;
    let path = dir.join(FILE_MD);
    std::fs::write(&path, markdown(history, report))
        .with_context(|| format!("write {}", path.display()))?;
    let path = dir.join(FILE_SVG);
    draw_timeline(&path, history, report)
        .map_err(|e| anyhow::anyhow!("draw {}: {e}", path.display()))
}

fn markdown(h: &History, r: &CheckReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "# Drill check report\n");
    let _ = writeln!(
        s,
        "**Verdict: {}** — {} records, {} handovers, {} fault windows (SLOTS_PER_EPOCH = {}).\n",
        if r.passed() { "PASS" } else { "FAIL" },
        h.duties.len(),
        h.handovers.len(),
        h.faults.len(),
        h.slots_per_epoch
    );
    let _ = writeln!(s, "![timeline]({FILE_SVG})\n");
    let _ = writeln!(s, "## Safety checks\n");
    let _ = writeln!(s, "| check | invariant | result | examined | violations |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for c in &r.checks {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} |",
            c.name,
            c.invariant,
            if c.passed() { "pass" } else { "**FAIL**" },
            c.examined,
            c.violations.len()
        );
    }
    for c in r.checks.iter().filter(|c| !c.passed()) {
        let _ = writeln!(s, "\n### `{}` violations\n\n{}\n", c.name, c.description);
        for v in c.violations.iter().take(50) {
            let _ = writeln!(s, "- {v}");
        }
        if c.violations.len() > 50 {
            let _ = writeln!(s, "- … {} more (see {FILE_JSON})", c.violations.len() - 50);
        }
    }
    let _ = writeln!(s, "\n## Authority\n");
    let _ = writeln!(
        s,
        "| holder | token | handover | from (µs, recorder) | until (µs, recorder) | bounds from | from (ms, coordinator) | until (ms, coordinator) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for a in &r.authority {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            a.agent,
            a.token.map_or("-".into(), |t| t.to_string()),
            a.handover,
            a.from_us,
            a.until_us.map_or("still holds".into(), |u| u.to_string()),
            a.clock,
            a.from_ms,
            a.until_ms.map_or("still holds".into(), |u| u.to_string())
        );
    }
    let l = &r.liveness;
    let _ = writeln!(s, "\n## Liveness\n");
    let _ = writeln!(
        s,
        "- honest duties signed: {} of {} ({:.1} %)",
        l.signed,
        l.duties,
        l.signed_share * 100.0
    );
    if l.quiet_windows.is_empty() {
        let _ = writeln!(s, "- no slot without a signature");
    }
    for w in &l.quiet_windows {
        let _ = writeln!(
            s,
            "- no signature in slots {}–{} ({:.1} s): {}",
            w.first_slot,
            w.last_slot,
            w.end_us.saturating_sub(w.start_us) as f64 / 1e6,
            w.causes.join(", ")
        );
    }
    for d in &l.handovers {
        let _ = writeln!(
            s,
            "- handover {} ({} → {}): request → first signature of the new holder: {}",
            d.handover,
            d.from.as_deref().unwrap_or("nobody"),
            d.to,
            d.downtime_ms
                .map_or("never signed".into(), |m| format!("{m} ms"))
        );
    }
    for rec in &l.recoveries {
        let _ = writeln!(
            s,
            "- after fault `{}`: next signature {}",
            rec.fault,
            rec.recovery_ms
                .map_or("never".into(), |m| format!("{m} ms after its end"))
        );
    }
    s
}

type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn draw_timeline(path: &Path, h: &History, r: &CheckReport) -> DrawResult<()> {
    let t0 = h
        .duties
        .iter()
        .map(|d| d.sent_us)
        .chain(h.leaders.iter().map(|l| l.at_us))
        .chain(h.faults.iter().map(|f| f.start_us))
        .min()
        .unwrap_or(0);
    let t1 = h
        .duties
        .iter()
        .map(|d| d.received_us)
        .chain(h.leaders.iter().map(|l| l.at_us))
        .chain(h.faults.iter().map(|f| f.end_us))
        .max()
        .unwrap_or(t0 + 1_000_000)
        .max(t0 + 1_000_000);
    let sec = |us: u64| us.saturating_sub(t0) as f64 / 1e6;
    let span = sec(t1);

    let regions: Vec<String> = h
        .leaders
        .iter()
        .map(|l| l.region.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let agents: Vec<String> = h
        .duties
        .iter()
        .map(|d| d.agent.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rows: Vec<String> = regions
        .iter()
        .map(|r| format!("leader seen in {r}"))
        .collect();
    if regions.is_empty() {
        rows.push("leader (no samples)".into());
    }
    let authority_row = rows.len();
    rows.push("authority holder".into());
    let agent_row0 = rows.len();
    rows.extend(agents.iter().map(|a| format!("{a} signatures/slot")));
    let n = rows.len() as f64;
    // Row i occupies y in [n-1-i, n-i]: the first row is at the top.
    let y_of = |i: usize| n - 1.0 - i as f64;

    let height = 120 + 50 * rows.len() as u32;
    let root = SVGBackend::new(path, (1200, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let label_space = span * 0.18;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .caption(
            format!(
                "drill timeline: {} ({} records)",
                if r.passed() {
                    "checker PASS"
                } else {
                    "checker FAIL"
                },
                h.duties.len()
            ),
            ("sans-serif", 18),
        )
        .x_label_area_size(35)
        .build_cartesian_2d(-label_space..span * 1.01, 0f64..n)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("seconds since the recording began")
        .x_label_formatter(&|x| {
            if *x < 0.0 {
                String::new()
            } else {
                format!("{x:.0}")
            }
        })
        .draw()?;

    // Faults, shaded behind everything.
    chart.draw_series(h.faults.iter().map(|f| {
        Rectangle::new(
            [(sec(f.start_us), 0.0), (sec(f.end_us), n)],
            RGBColor(255, 120, 120).mix(0.25).filled(),
        )
    }))?;
    chart.draw_series(h.faults.iter().map(|f| {
        Text::new(
            f.name.clone(),
            (sec(f.start_us), n - 0.05),
            ("sans-serif", 11).into_font().color(&RED),
        )
    }))?;

    // Row names.
    chart.draw_series(rows.iter().enumerate().map(|(i, name)| {
        Text::new(
            name.clone(),
            (-label_space * 0.98, y_of(i) + 0.55),
            ("sans-serif", 12).into_font(),
        )
    }))?;

    // Leaders: per region, segments between consecutive samples coloured by leader id.
    for (ri, region) in regions.iter().enumerate() {
        let mut samples: Vec<_> = h.leaders.iter().filter(|l| &l.region == region).collect();
        samples.sort_by_key(|l| l.at_us);
        let y = y_of(ri);
        let mut last_label = None;
        for (k, s) in samples.iter().enumerate() {
            let end = samples.get(k + 1).map_or(t1, |n| n.at_us);
            let color = match s.leader_id {
                Some(id) => Palette99::pick(id as usize).to_rgba(),
                None => RGBColor(200, 200, 200).to_rgba(),
            };
            chart.draw_series(std::iter::once(Rectangle::new(
                [(sec(s.at_us), y + 0.2), (sec(end), y + 0.8)],
                color.mix(0.6).filled(),
            )))?;
            let label = (s.leader_id, s.term);
            if last_label != Some(label) {
                last_label = Some(label);
                chart.draw_series(std::iter::once(Text::new(
                    match s.leader_id {
                        Some(id) => format!("node {id}, term {}", s.term),
                        None => format!("no leader, term {}", s.term),
                    },
                    (sec(s.at_us), y + 0.95),
                    ("sans-serif", 10).into_font(),
                )))?;
            }
        }
    }

    // Authority intervals.
    let agent_color = |a: &str| {
        let i = agents.iter().position(|x| x == a).unwrap_or(agents.len());
        Palette99::pick(i + 2).to_rgba()
    };
    let y = y_of(authority_row);
    for iv in &r.authority {
        let start = sec(iv.from_us).max(0.0);
        let end = iv.until_us.map_or(span, sec);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(start, y + 0.2), (end.max(start), y + 0.8)],
            agent_color(&iv.agent).mix(0.6).filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!(
                "{} token {}",
                iv.agent,
                iv.token.map_or("-".into(), |t| t.to_string())
            ),
            (start, y + 0.95),
            ("sans-serif", 10).into_font(),
        )))?;
    }
    for ho in &h.handovers {
        if let (Some(requested_us), _) = crate::handover_span_us(h, ho) {
            let x = sec(requested_us);
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, n)],
                BLACK.mix(0.4),
            )))?;
        }
    }

    // Signatures per agent per slot.
    let mut slot_start: BTreeMap<u64, u64> = BTreeMap::new();
    for d in &h.duties {
        let e = slot_start.entry(d.slot).or_insert(d.sent_us);
        *e = (*e).min(d.sent_us);
    }
    let starts: Vec<(u64, u64)> = slot_start.iter().map(|(s, t)| (*s, *t)).collect();
    let typical = starts
        .windows(2)
        .map(|w| (w[1].1.saturating_sub(w[0].1)) / (w[1].0 - w[0].0).max(1))
        .min()
        .unwrap_or(1_000_000)
        .max(1);
    let mut counts: BTreeMap<(&str, u64), (u32, u32)> = BTreeMap::new();
    for d in h.duties.iter().filter(|d| d.probe.is_none()) {
        let c = counts.entry((d.agent.as_str(), d.slot)).or_default();
        if d.status == 200 {
            c.0 += 1;
        } else {
            c.1 += 1;
        }
    }
    let max = counts.values().map(|c| c.0).max().unwrap_or(1).max(1) as f64;
    for (ai, agent) in agents.iter().enumerate() {
        let y = y_of(agent_row0 + ai);
        let color = agent_color(agent);
        for (slot, start) in &starts {
            let Some((ok, bad)) = counts.get(&(agent.as_str(), *slot)) else {
                continue;
            };
            let (x0, x1) = (sec(*start), sec(*start + typical * 9 / 10));
            if *ok > 0 {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x0, y + 0.1), (x1, y + 0.1 + 0.8 * *ok as f64 / max)],
                    color.filled(),
                )))?;
            }
            if *bad > 0 {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x0, y + 0.02), (x1, y + 0.08)],
                    RED.filled(),
                )))?;
            }
        }
        // Probe answers: a black dot at the top of the row per 200, red per refusal.
        chart.draw_series(
            h.duties
                .iter()
                .filter(|d| d.probe.is_some() && &d.agent == agent)
                .map(|d| {
                    let c = if d.status == 200 { BLACK } else { RED };
                    Circle::new((sec(d.sent_us), y + 0.93), 3, c.filled())
                }),
        )?;
    }
    root.present()?;
    Ok(())
}
