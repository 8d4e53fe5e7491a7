//! A real Prometheus scraping the lab (`failover-lab --prometheus`), with the repository's
//! scrape configuration and alert rules (`grafana/prometheus/`), and a small client of its
//! HTTP API for tests.
//!
//! [`Lab::start_prometheus`] writes into `DIR/prometheus/`:
//! - `prometheus.yml`: `grafana/prometheus/prometheus-lab.yml` as is (1 s scrape and rule
//!   evaluation, file-based targets);
//! - `alerts.yml`: `grafana/prometheus/alerts.yml` with every `for:` replaced by
//!   [`PrometheusOptions::rule_for`], so alerts fire within seconds in the lab (thresholds are
//!   the production ones);
//! - `targets/coordinators.json` (labels `node`, `region`) and `targets/agents.json` (labels
//!   `agent`, `region`): the lab's ephemeral loopback ports;
//! - `data/`: the TSDB;
//!
//! then starts `prometheus` from `PATH` on a fixed loopback address (default
//! `127.0.0.1:9090`), its output in `DIR/logs/prometheus.log`, and waits for `/-/ready` and
//! for a first successful scrape of every coordinator and agent (about 5 s). It
//! is one of the lab's processes: [`Lab::stop`] stops it and `failover-lab down` finds it in
//! `lab.json`.
//!
//! Invariants: the configuration files are compiled into the lab (`include_str!`), so the lab
//! always runs the rules of its own source tree; nothing is downloaded.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::procs::{tail, Proc};
use super::Lab;

/// `grafana/prometheus/prometheus-lab.yml`: the lab's scrape configuration.
pub const PROMETHEUS_LAB_YML: &str = include_str!("../../../grafana/prometheus/prometheus-lab.yml");

/// `grafana/prometheus/alerts.yml`: the alert rules (production `for:` durations).
pub const ALERTS_YML: &str = include_str!("../../../grafana/prometheus/alerts.yml");

/// The hint given whenever `prometheus` or `promtool` is missing.
pub const INSTALL_HINT: &str = "install the Debian package `prometheus` (it provides `prometheus` \
     and `promtool`): `sudo apt-get install prometheus`, or run .ci/setup";

/// How to run the lab's Prometheus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusOptions {
    /// Loopback address of its web UI and API.
    pub listen: SocketAddr,
    /// The `for:` of every alert rule that has one, as a Prometheus duration (`2s`).
    pub rule_for: String,
}

impl Default for PrometheusOptions {
    /// `127.0.0.1:9090`, `for: 2s`.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            rule_for: "2s".into(),
        }
    }
}

/// The lab's Prometheus, as recorded in `lab.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrometheusInfo {
    /// Base URL of its UI and HTTP API, e.g. `http://127.0.0.1:9090`.
    pub url: String,
    /// OS process id.
    pub pid: u32,
    /// The `prometheus` executable that runs.
    pub binary: PathBuf,
    /// Its configuration file (`DIR/prometheus/prometheus.yml`).
    pub config: PathBuf,
    /// Log file (stdout and stderr).
    pub log: PathBuf,
}

/// Finds the executable `name` in the directories of `PATH`.
///
/// Errors: not found; the message names `PATH` and the install hint ([`INSTALL_HINT`]).
pub fn locate_tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .with_context(|| {
            format!(
                "`{name}` is not on PATH ({}); {INSTALL_HINT}",
                path.to_string_lossy()
            )
        })
}

/// `alerts` (an alert rule file) with the `for:` of every rule that has one set to
/// `rule_for`.
///
/// Errors: `alerts` is not a rule file (`groups[].rules[]`).
pub fn lab_rules(alerts: &str, rule_for: &str) -> Result<String> {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(alerts).context("parse alerts.yml")?;
    let groups = doc
        .get_mut("groups")
        .and_then(|g| g.as_sequence_mut())
        .context("alerts.yml has no groups")?;
    for group in groups {
        let rules = group
            .get_mut("rules")
            .and_then(|r| r.as_sequence_mut())
            .context("a group of alerts.yml has no rules")?;
        for rule in rules {
            if let Some(f) = rule.get_mut("for") {
                *f = serde_yaml::Value::String(rule_for.to_string());
            }
        }
    }
    let text = serde_yaml::to_string(&doc).context("serialize the lab's alert rules")?;
    Ok(format!(
        "# Written by failover-lab from grafana/prometheus/alerts.yml, every `for:` set to \
         {rule_for}.\n{text}"
    ))
}

/// Every alert rule of `alerts` as `(name, expression)`, in file order.
///
/// Errors: `alerts` is not a rule file.
pub fn alert_rules(alerts: &str) -> Result<Vec<(String, String)>> {
    let doc: serde_yaml::Value = serde_yaml::from_str(alerts).context("parse alerts.yml")?;
    let mut out = Vec::new();
    for group in doc
        .get("groups")
        .and_then(|g| g.as_sequence())
        .context("alerts.yml has no groups")?
    {
        for rule in group
            .get("rules")
            .and_then(|r| r.as_sequence())
            .context("a group of alerts.yml has no rules")?
        {
            let (Some(name), Some(expr)) = (
                rule.get("alert").and_then(|v| v.as_str()),
                rule.get("expr").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            out.push((name.to_string(), expr.to_string()));
        }
    }
    Ok(out)
}

/// The vector selectors of a PromQL expression whose metric name is `up` or starts with
/// `failover_` or `signer_agent_`, each with its label matchers (`name{…}`), in order of
/// appearance, without duplicates. A range (`[5m]`) is not part of the selector.
pub fn metric_selectors(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        // Skip string literals (label values, `label_replace` arguments).
        if bytes[i] == b'"' || bytes[i] == b'\'' {
            let q = bytes[i];
            i += 1;
            while i < bytes.len() && bytes[i] != q {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if !ident(bytes[i]) || (i > 0 && ident(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && ident(bytes[i]) {
            i += 1;
        }
        let name = &expr[start..i];
        let wanted =
            name == "up" || name.starts_with("failover_") || name.starts_with("signer_agent_");
        if !wanted {
            continue;
        }
        // A name followed by `(` is a function call, after `by`/`on` a label list: only
        // names not inside such lists are selectors. Label lists never hold these prefixes
        // in our expressions, except label names, which are never metric names.
        let mut sel = name.to_string();
        let rest = &expr[i..];
        let trimmed = rest.trim_start();
        if trimmed.starts_with('{') {
            let skipped = rest.len() - trimmed.len();
            if let Some(end) = matching_brace(trimmed) {
                sel.push_str(&trimmed[..=end]);
                i += skipped + end + 1;
            }
        }
        if !out.contains(&sel) {
            out.push(sel);
        }
    }
    out
}

/// Index of the `}` closing the `{` at the start of `s`, skipping quoted strings.
fn matching_brace(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The file-based service discovery targets of the lab: `(coordinators.json, agents.json)`.
pub fn targets(manifest: &super::Manifest) -> (serde_json::Value, serde_json::Value) {
    let host = |url: &str| {
        url.trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string()
    };
    let coordinators = manifest
        .coordinators
        .iter()
        .map(|c| {
            serde_json::json!({
                "targets": [host(&c.url)],
                "labels": {"node": c.id.to_string(), "region": c.region},
            })
        })
        .collect();
    let agents = manifest
        .agents
        .iter()
        .map(|a| {
            serde_json::json!({
                "targets": [host(&a.url)],
                "labels": {"agent": a.id, "region": a.region},
            })
        })
        .collect();
    (
        serde_json::Value::Array(coordinators),
        serde_json::Value::Array(agents),
    )
}

impl Lab {
    /// Writes the Prometheus configuration, rules and targets into `DIR/prometheus/` and
    /// starts `prometheus` from `PATH` on `opts.listen` (see the module documentation).
    /// Returns its base URL once it is ready, and records it in the manifest (write it again
    /// with [`Lab::write_manifest`]).
    ///
    /// Errors: `prometheus` is not on `PATH` (with the install hint), the address is taken,
    /// a file cannot be written, Prometheus exits or is not ready within 30 s (with the tail
    /// of its log), or it has not scraped every lab target within 30 s.
    pub async fn start_prometheus(&mut self, opts: &PrometheusOptions) -> Result<String> {
        let binary = locate_tool("prometheus")?;
        ensure!(
            opts.listen.ip().is_loopback(),
            "the lab's Prometheus listens on loopback only, not {}",
            opts.listen
        );
        TcpListener::bind(opts.listen).with_context(|| {
            format!(
                "{} is in use (another Prometheus?); choose another port (failover-lab \
                 --prometheus-port)",
                opts.listen
            )
        })?;
        let dir = self.manifest.dir.join("prometheus");
        let targets_dir = dir.join("targets");
        std::fs::create_dir_all(&targets_dir)
            .with_context(|| format!("create {}", targets_dir.display()))?;
        let config = dir.join("prometheus.yml");
        write(&config, &scrape_config(self.manifest.tls.as_ref())?)?;
        write(
            &dir.join("alerts.yml"),
            &lab_rules(ALERTS_YML, &opts.rule_for)?,
        )?;
        self.write_prometheus_targets()?;
        let data = dir.join("data");
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            "--storage.tsdb.retention.time=1d".into(),
            format!("--web.listen-address={}", opts.listen),
            "--log.level=warn".into(),
        ];
        let log = self.manifest.dir.join("logs").join("prometheus.log");
        let mut p = Proc::spawn("prometheus", &binary, &args, &log)?;
        let url = format!("http://{}", opts.listen);
        wait_ready(&mut p, &url, Duration::from_secs(30)).await?;
        let expected = self.manifest.coordinators.len() + self.manifest.agents.len();
        wait_scraped(&url, expected, Duration::from_secs(30)).await?;
        self.manifest.prometheus = Some(PrometheusInfo {
            url: url.clone(),
            pid: p.pid(),
            binary,
            config,
            log,
        });
        self.procs.push(p);
        Ok(url)
    }

    /// Writes `DIR/prometheus/targets/{coordinators,agents}.json` from the manifest;
    /// Prometheus picks up changes within 2 s.
    ///
    /// Errors: a file cannot be written.
    pub fn write_prometheus_targets(&self) -> Result<()> {
        let dir = self.manifest.dir.join("prometheus").join("targets");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let (coordinators, agents) = targets(&self.manifest);
        for (name, value) in [("coordinators.json", coordinators), ("agents.json", agents)] {
            let text = serde_json::to_string_pretty(&value).context("serialize targets")?;
            // Write then rename, so Prometheus never reads half a file.
            let tmp = dir.join(format!(".{name}.tmp"));
            write(&tmp, &text)?;
            std::fs::rename(&tmp, dir.join(name))
                .with_context(|| format!("rename {}", tmp.display()))?;
        }
        Ok(())
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// The lab's `prometheus.yml`: [`PROMETHEUS_LAB_YML`] as is for a plaintext lab; for a TLS
/// lab every job scrapes `https` with the lab CA and the validator-client certificate (the
/// agents' API admits only known clients; the coordinators serve `/metrics` to any client of
/// the CA).
///
/// Errors: the compiled-in file does not parse (a build defect).
pub fn scrape_config(tls: Option<&super::pki::LabTls>) -> Result<String> {
    let Some(t) = tls else {
        return Ok(PROMETHEUS_LAB_YML.to_string());
    };
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(PROMETHEUS_LAB_YML).context("parse prometheus-lab.yml")?;
    let jobs = doc["scrape_configs"]
        .as_sequence_mut()
        .context("prometheus-lab.yml has no scrape_configs")?;
    for job in jobs {
        job["scheme"] = "https".into();
        let mut tls_config = serde_yaml::Mapping::new();
        for (k, v) in [
            ("ca_file", &t.ca_file),
            ("cert_file", &t.client_cert_file),
            ("key_file", &t.client_key_file),
        ] {
            tls_config.insert(k.into(), v.display().to_string().into());
        }
        job["tls_config"] = serde_yaml::Value::Mapping(tls_config);
    }
    Ok(format!(
        "# grafana/prometheus/prometheus-lab.yml with TLS: every target is scraped over https\n\
         # with the lab CA and the validator-client certificate.\n{}",
        serde_yaml::to_string(&doc).context("write prometheus.yml")?
    ))
}

/// Polls `url/-/ready` until it answers 200.
async fn wait_ready(p: &mut Proc, url: &str, timeout: Duration) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("build an HTTP client")?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = http.get(format!("{url}/-/ready")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        let log_path = p.log.clone();
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(status) = p.try_exited() {
            bail!(
                "prometheus exited ({status}) before it was ready; last lines of {}:\n{}",
                log_path.display(),
                tail(&log(), 15)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "prometheus was not ready at {url} within {timeout:?}; last lines of {}:\n{}",
                log_path.display(),
                tail(&log(), 15)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until Prometheus at `url` has scraped `expected` targets successfully (its service
/// discovery hands targets to the scrapers about 5 s after start).
async fn wait_scraped(url: &str, expected: usize, timeout: Duration) -> Result<()> {
    let prom = PromClient::new(url);
    let deadline = Instant::now() + timeout;
    loop {
        let targets = prom.targets().await.unwrap_or_default();
        let up = targets.iter().filter(|t| t.2 == "up").count();
        if up >= expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "Prometheus at {url} scraped {up} of {expected} lab targets within {timeout:?}: \
                 {targets:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A small client of the Prometheus HTTP API (`/api/v1/query`, `/api/v1/alerts`).
#[derive(Debug, Clone)]
pub struct PromClient {
    base: String,
    http: reqwest::Client,
}

/// One alert as `/api/v1/alerts` lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActiveAlert {
    /// Labels, `alertname` included.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
    /// The expression's value when it was last evaluated, as text.
    #[serde(default)]
    pub value: String,
}

impl PromClient {
    /// A client of the Prometheus at `base` (e.g. `http://127.0.0.1:9090`).
    ///
    /// Panics only if the TLS backend cannot be initialised, as `reqwest::Client::new` does.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client builds"),
        }
    }

    /// Evaluates `expr` now (`GET /api/v1/query`) and returns the result's series (vector) or
    /// the one scalar, as JSON values.
    ///
    /// Errors: transport failure, or Prometheus refused the query (the message has its error,
    /// e.g. a parse error).
    pub async fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>> {
        let res = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
            .with_context(|| format!("query {expr}"))?;
        let body: serde_json::Value = res.json().await.context("parse the query answer")?;
        if body["status"] != "success" {
            bail!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("error"),
                body["error"].as_str().unwrap_or("unknown error")
            );
        }
        let result = &body["data"]["result"];
        Ok(match body["data"]["resultType"].as_str() {
            Some("vector") | Some("matrix") => result.as_array().cloned().unwrap_or_default(),
            _ => vec![result.clone()],
        })
    }

    /// The alerts currently pending or firing (`GET /api/v1/alerts`).
    ///
    /// Errors: transport failure or an unexpected answer.
    pub async fn alerts(&self) -> Result<Vec<ActiveAlert>> {
        let body: serde_json::Value = self
            .http
            .get(format!("{}/api/v1/alerts", self.base))
            .send()
            .await
            .context("GET /api/v1/alerts")?
            .json()
            .await
            .context("parse /api/v1/alerts")?;
        serde_json::from_value(body["data"]["alerts"].clone()).context("read the alerts")
    }

    /// The scrape targets' health: `(job, instance, health, last error)` of every active
    /// target (`GET /api/v1/targets`).
    ///
    /// Errors: transport failure or an unexpected answer.
    pub async fn targets(&self) -> Result<Vec<(String, String, String, String)>> {
        let body: serde_json::Value = self
            .http
            .get(format!("{}/api/v1/targets", self.base))
            .send()
            .await
            .context("GET /api/v1/targets")?
            .json()
            .await
            .context("parse /api/v1/targets")?;
        Ok(body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| {
                let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                (
                    s(&t["labels"]["job"]),
                    s(&t["labels"]["instance"]),
                    s(&t["health"]),
                    s(&t["lastError"]),
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_the_metric_names_with_their_matchers() {
        let expr = r#"min by (agent) (failover_agent_heartbeat_age_seconds) > 10
          and on (agent) (max by (agent) (failover_authority_holder * on (instance)
          group_left () failover_raft_is_leader) == 1)"#;
        assert_eq!(
            metric_selectors(expr),
            [
                "failover_agent_heartbeat_age_seconds",
                "failover_authority_holder",
                "failover_raft_is_leader"
            ]
        );
        let expr = r#"sum by (instance) (increase(signer_agent_sign_requests_total{outcome="slashing_protection", type=~"A{1}"}[5m])) > 0 or sum(up{job="failover-coordinator"}) < 2 or max(failover_x{a="failover_y"})"#;
        assert_eq!(
            metric_selectors(expr),
            [
                r#"signer_agent_sign_requests_total{outcome="slashing_protection", type=~"A{1}"}"#,
                r#"up{job="failover-coordinator"}"#,
                r#"failover_x{a="failover_y"}"#,
            ]
        );
    }

    #[test]
    fn lab_rules_shorten_every_for_and_keep_the_rest() {
        let lab = lab_rules(ALERTS_YML, "2s").unwrap();
        let prod = alert_rules(ALERTS_YML).unwrap();
        assert_eq!(alert_rules(&lab).unwrap(), prod);
        let doc: serde_yaml::Value = serde_yaml::from_str(&lab).unwrap();
        let mut with_for = 0;
        for g in doc["groups"].as_sequence().unwrap() {
            for r in g["rules"].as_sequence().unwrap() {
                if let Some(f) = r.get("for") {
                    assert_eq!(f.as_str(), Some("2s"));
                    with_for += 1;
                }
            }
        }
        assert!(with_for > 5, "{lab}");
    }
}
