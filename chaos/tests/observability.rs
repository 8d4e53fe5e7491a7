//! Operators can see and act: the dashboards, the scrape configuration and the alert rules of
//! `grafana/`, checked three ways.
//!
//! 1. Statically (no processes): every dashboard is a Grafana JSON model on the `prometheus`
//!    datasource whose expressions name only metrics the coordinator and the agent export;
//!    every alert has a severity, a summary, a description and its runbook
//!    (`runbooks/<alert-name-kebab>.md`); the provisioning files point at both.
//! 2. With `promtool` (Debian package `prometheus`): `check config`, `check rules` and the
//!    rule unit tests `grafana/prometheus/alerts.test.yml`.
//! 3. On the real lab with a real Prometheus (`Lab::start_prometheus`, 1 s scrapes): after a
//!    short workload and a planned handover, every dashboard expression (template variables
//!    set to "All") and every metric selector of every alert returns series; then the
//!    authority holder is killed and `FailoverAuthorityHolderSilent` must fire.
//!
//! Tests 2 and 3 fail, never skip, when `prometheus`/`promtool` is missing, with the install
//! hint. Test 3 needs every workspace binary next to the test executable's directory
//! (`cargo test --workspace` builds them; alone, `cargo build --workspace` first).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chaos::lab::prometheus::{
    alert_rules, locate_tool, metric_selectors, PromClient, PrometheusOptions, ALERTS_YML,
};
use chaos::lab::scenario::{self, ScenarioOptions};
use chaos::lab::{procs, Lab, LabConfig};
use serde_json::Value;

/// The dashboards that must exist, by file name.
const DASHBOARDS: &[&str] = &[
    "cluster-health.json",
    "authority-handovers.json",
    "signing.json",
    "finality.json",
];

fn grafana_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("grafana")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every dashboard as `(file name, JSON model)`.
fn dashboards() -> Vec<(String, Value)> {
    DASHBOARDS
        .iter()
        .map(|name| {
            let path = grafana_dir().join("dashboards").join(name);
            let json = serde_json::from_str(&read(&path))
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            (name.to_string(), json)
        })
        .collect()
}

/// Every panel of a dashboard, rows' nested panels included, rows themselves excluded.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

/// `expr` with Grafana's variables replaced as the dashboards' "All" would: template
/// variables by `.*` (they are only used in `=~` matchers), `$__rate_interval` and
/// `$__interval` by `1m`.
fn substitute(expr: &str, variables: &[String]) -> String {
    let mut e = expr
        .replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__interval", "1m");
    // Longest names first, so `$agent` does not eat the start of `$agents`.
    let mut vars = variables.to_vec();
    vars.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in vars {
        e = e
            .replace(&format!("${{{v}}}"), ".*")
            .replace(&format!("${v}"), ".*");
    }
    e
}

fn template_variables(d: &Value) -> Vec<String> {
    d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect()
}

/// Metric names the coordinator and the agent export, plus Prometheus's `up`.
fn known_metrics() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = coordinator::metrics::Metrics::new()
        .names()
        .iter()
        .cloned()
        .collect();
    names.extend(signer_agent::metrics::Metrics::new().names());
    names.insert("up".into());
    names
}

/// The metric name of a selector (`name{…}` → `name`), without a histogram's series suffix
/// when the family is known.
fn family(selector: &str, known: &BTreeSet<String>) -> String {
    let name = selector.split('{').next().unwrap_or_default();
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if known.contains(base) {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

/// `FailoverNoLeader` → `failover-no-leader`.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn dashboards_are_grafana_models_on_the_prometheus_datasource_with_known_metrics() {
    let known = known_metrics();
    let mut uids = BTreeSet::new();
    for (file, d) in dashboards() {
        let uid = d["uid"].as_str().unwrap_or_default();
        assert!(!uid.is_empty(), "{file}: no uid");
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} used twice");
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{file}: no title"
        );
        assert!(
            d["schemaVersion"].as_u64().is_some(),
            "{file}: no schemaVersion"
        );
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            assert_eq!(v["datasource"]["uid"], "prometheus", "{file}: variable {v}");
        }
        let ps = panels(&d);
        assert!(ps.len() >= 6, "{file}: only {} panels", ps.len());
        let mut ids = BTreeSet::new();
        for p in &ps {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{file}: a panel without a title: {p}");
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{file}: panel id twice"
            );
            assert_eq!(p["datasource"]["uid"], "prometheus", "{file}: {title}");
            assert!(
                p["gridPos"]["w"].as_u64().is_some(),
                "{file}: {title}: no gridPos"
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file}: {title}: no query");
            let mut refs = BTreeSet::new();
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "prometheus", "{file}: {title}");
                assert!(refs.insert(t["refId"].as_str().unwrap().to_string()));
                let expr = t["expr"].as_str().unwrap_or_default();
                let selectors = metric_selectors(expr);
                assert!(
                    !selectors.is_empty(),
                    "{file}: {title}: no metric in {expr}"
                );
                for s in selectors {
                    let f = family(&s, &known);
                    assert!(
                        known.contains(&f),
                        "{file}: {title}: unknown metric {f} in {expr}"
                    );
                }
            }
        }
    }
}

#[test]
fn alerts_have_severity_annotations_and_runbooks_and_use_known_metrics() {
    let known = known_metrics();
    let doc: serde_yaml::Value = serde_yaml::from_str(ALERTS_YML).unwrap();
    let mut names = BTreeSet::new();
    for g in doc["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            let name = r["alert"].as_str().expect("only alerting rules");
            assert!(names.insert(name.to_string()), "{name} twice");
            let severity = r["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                ["critical", "warning"].contains(&severity),
                "{name}: severity {severity:?}"
            );
            for a in ["summary", "description"] {
                assert!(
                    r["annotations"][a].as_str().is_some_and(|s| s.len() > 10),
                    "{name}: no {a}"
                );
            }
            assert_eq!(
                r["annotations"]["runbook_url"].as_str(),
                Some(format!("runbooks/{}.md", kebab(name)).as_str()),
                "{name}"
            );
            let expr = r["expr"].as_str().unwrap();
            for s in metric_selectors(expr) {
                let f = family(&s, &known);
                assert!(known.contains(&f), "{name}: unknown metric {f}");
            }
        }
    }
    for required in [
        "FailoverTargetDown",
        "FailoverNoLeader",
        "FailoverQuorumLost",
        "FailoverFollowerBehind",
        "FailoverAuthorityHolderSilent",
        "FailoverHandoverAwaitingApproval",
        "FailoverHandoverAwaitingFinality",
        "FailoverFinalityStalled",
        "FailoverSlashingRefusal",
        "FailoverCoordinatorFailClosed",
        "FailoverSignerFailClosed",
        "FailoverKeysNotLoaded",
    ] {
        assert!(names.contains(required), "missing alert {required}");
    }
    // Every alert has a unit test in alerts.test.yml.
    let tests = read(&grafana_dir().join("prometheus").join("alerts.test.yml"));
    for name in &names {
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "alerts.test.yml does not test {name}"
        );
    }
}

#[test]
fn provisioning_points_at_the_dashboards_and_the_prometheus_datasource() {
    let ds: serde_yaml::Value = serde_yaml::from_str(&read(
        &grafana_dir().join("provisioning/datasources/prometheus.yaml"),
    ))
    .unwrap();
    let d = &ds["datasources"][0];
    assert_eq!(d["type"].as_str(), Some("prometheus"));
    assert_eq!(d["uid"].as_str(), Some("prometheus"));
    let dash: serde_yaml::Value = serde_yaml::from_str(&read(
        &grafana_dir().join("provisioning/dashboards/failover.yaml"),
    ))
    .unwrap();
    let p = &dash["providers"][0];
    assert_eq!(p["type"].as_str(), Some("file"));
    assert!(
        p["options"]["path"]
            .as_str()
            .is_some_and(|s| s.ends_with("/dashboards")),
        "{p:?}"
    );
}

/// Runs `promtool args…` in `grafana/prometheus` and returns its output, failing the test
/// (with the install hint when promtool is missing) unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let bin = locate_tool("promtool").unwrap_or_else(|e| panic!("{e:#}"));
    let out = Command::new(&bin)
        .args(args)
        .current_dir(grafana_dir().join("prometheus"))
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}

#[test]
fn promtool_accepts_the_config_and_the_rules_and_the_rule_unit_tests_pass() {
    promtool(&["check", "config", "prometheus-lab.yml"]);
    promtool(&["check", "rules", "alerts.yml"]);
    let out = promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Queries every `(what, expr)` and returns the ones that failed or returned no series.
async fn empty_or_failing(prom: &PromClient, queries: &[(String, String)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (what, expr) in queries {
        match prom.query(expr).await {
            Ok(r) if !r.is_empty() => {}
            Ok(_) => bad.push(format!("{what}: no series for {expr}")),
            Err(e) => bad.push(format!("{what}: {expr}: {e:#}")),
        }
    }
    bad
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_prometheus_has_data_for_every_panel_and_alert_and_a_dead_holder_fires() {
    // Fail (never skip) without Prometheus, before starting anything.
    locate_tool("prometheus").unwrap_or_else(|e| panic!("{e:#}"));
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let cfg = LabConfig::fast_test(dir.path().join("lab"), 8);
    let progress = |line: &str| eprintln!("[lab] {line}");
    let mut lab = Lab::start(cfg, &progress).await.unwrap();
    let opts = PrometheusOptions {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], procs::free_port().unwrap())),
        rule_for: "2s".into(),
    };
    let url = lab.start_prometheus(&opts).await.unwrap();
    progress(&format!("Prometheus at {url}"));
    let prom = PromClient::new(&url);

    let result = async {
        // A short workload with a planned handover (and the drill's conflict probes).
        let summary = scenario::run(
            &mut lab,
            &ScenarioOptions {
                epochs_before_handover: 1,
                epochs_after_handover: 1,
                ..ScenarioOptions::default()
            },
            &progress,
        )
        .await?;
        if !summary.passed() {
            eprintln!("note: the drill's own checks did not all pass:\n{summary}");
        }
        progress(&format!(
            "workload and handover done at {:.1} s",
            t0.elapsed().as_secs_f64()
        ));

        // Every target is still scraped, with enough samples for the panels' rates (the
        // lab's Prometheus scraped every target once before the workload started).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let targets = prom.targets().await?;
            let up = targets.iter().filter(|t| t.2 == "up").count();
            let samples = prom.query("min(count_over_time(up[1m]))").await?;
            let fewest = samples
                .first()
                .and_then(|s| s["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if targets.len() == 5 && up == 5 && fewest >= 5.0 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "not every lab target is up in Prometheus with 5 samples: {targets:?}, \
                 fewest samples {fewest}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        // Every dashboard expression returns series, and every template variable has values.
        let mut queries = Vec::new();
        for (file, d) in dashboards() {
            let vars = template_variables(&d);
            for v in d["templating"]["list"].as_array().into_iter().flatten() {
                let q = v["definition"].as_str().unwrap_or_default();
                // label_values(metric, label)
                let inner = q
                    .strip_prefix("label_values(")
                    .and_then(|s| s.strip_suffix(')'))
                    .unwrap_or_else(|| panic!("{file}: variable query {q}"));
                let (metric, label) = inner.rsplit_once(',').expect("label_values(m, l)");
                queries.push((
                    format!("{file}: variable {}", v["name"]),
                    format!("count by ({}) ({})", label.trim(), metric.trim()),
                ));
            }
            for p in panels(&d) {
                for t in p["targets"].as_array().into_iter().flatten() {
                    let expr = t["expr"].as_str().unwrap_or_default();
                    queries.push((
                        format!(
                            "{file}: panel {:?}",
                            p["title"].as_str().unwrap_or_default()
                        ),
                        substitute(expr, &vars),
                    ));
                }
            }
        }
        let panels_checked = queries.len();
        // Every alert expression parses, and each metric selector in it returns series.
        let mut alert_selectors = Vec::new();
        for (name, expr) in alert_rules(ALERTS_YML)? {
            if let Err(e) = prom.query(&expr).await {
                anyhow::bail!("alert {name}: Prometheus refused its expression: {e:#}");
            }
            for s in metric_selectors(&expr) {
                alert_selectors.push((format!("alert {name}"), s));
            }
        }
        queries.extend(alert_selectors);
        let bad = empty_or_failing(&prom, &queries).await;
        anyhow::ensure!(
            bad.is_empty(),
            "{} of {} queries returned no data:\n{}",
            bad.len(),
            queries.len(),
            bad.join("\n")
        );
        progress(&format!(
            "{panels_checked} dashboard queries and {} alert selectors return data",
            queries.len() - panels_checked
        ));

        // The holder dies: its heartbeat age keeps growing and the alert fires.
        let holders = prom
            .query("max by (agent) (failover_authority_holder) == 1")
            .await?;
        anyhow::ensure!(holders.len() == 1, "one holder expected: {holders:?}");
        let holder = holders[0]["metric"]["agent"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let killed_at = Instant::now();
        lab.proc_mut(&holder)
            .ok_or_else(|| anyhow::anyhow!("no process {holder}"))?
            .kill();
        progress(&format!("killed the holder {holder}"));
        let deadline = killed_at + Duration::from_secs(90);
        let mut states = BTreeMap::new();
        loop {
            let alerts = prom.alerts().await?;
            let silent = alerts.iter().find(|a| {
                a.labels.get("alertname").map(String::as_str)
                    == Some("FailoverAuthorityHolderSilent")
                    && a.labels.get("agent") == Some(&holder)
            });
            if let Some(a) = silent {
                states.insert(a.state.clone(), killed_at.elapsed());
                if a.state == "firing" {
                    break;
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "FailoverAuthorityHolderSilent did not fire for {holder} within 90 s; alerts: \
                 {alerts:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        progress(&format!(
            "FailoverAuthorityHolderSilent for {holder}: {states:?} after the kill"
        ));
        anyhow::Ok(())
    }
    .await;
    lab.stop().await;
    progress(&format!("done in {:.1} s", t0.elapsed().as_secs_f64()));
    result.unwrap();
}
