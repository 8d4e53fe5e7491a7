//! Hostile input against the real binaries of a running lab: what an attacker with one
//! operator token, one agent token and network access to the ports can try (the
//! `hostile-inputs` scenario; DESIGN.md "Trust boundaries and hostile input").
//!
//! Each attack is a fault step (`action = "attack"`); it passes only when every request got
//! its documented answer, and the drill around it then checks that the cluster kept a leader,
//! the active agent kept signing ordinary duties, and the independent checker found no
//! violation. An attack that gets another answer is an error of the drill.
//!
//! Invariant: no attack touches a validator the workload signs for in a way the cluster
//! should accept; what must be refused is checked to be refused, and what an operator may
//! override is done for a validator outside the workload.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use failover_common::eth::{AttestationData, Checkpoint, ForkInfo};
use failover_common::types::{Pubkey, Root};
use serde_json::{json, Value};

use crate::lab::duties::{attestation_duty_from, block_root};
use crate::lab::{Manifest, Validator};

/// The attacks a scenario may name.
pub const ATTACKS: &[&str] = &[
    "poison_pill_import",
    "far_future_attestation",
    "foreign_key_import",
    "oversized_body",
    "half_open_connections",
    "bad_token_flood",
    "learner_trap",
];

/// What an attack needs from the drill.
pub struct Target<'a> {
    /// The running lab.
    pub manifest: &'a Manifest,
    /// The current authority holder.
    pub holder: &'a str,
    /// The chain's current slot.
    pub slot: u64,
}

/// Runs `attack` against the lab; returns what was observed, one line.
///
/// Errors: an unknown attack, or an answer other than the documented one.
pub async fn run(attack: &str, t: &Target<'_>) -> Result<String> {
    let http = t
        .manifest
        .client_tls()?
        .builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("build the attacker's HTTP client")?;
    let out = match attack {
        "poison_pill_import" => poison_pill_import(&http, t).await?,
        "far_future_attestation" => far_future_attestation(&http, t).await?,
        "foreign_key_import" => foreign_key_import(t).await?,
        "oversized_body" => oversized_body(t).await?,
        "half_open_connections" => half_open_connections(&http, t).await?,
        "bad_token_flood" => bad_token_flood(t).await?,
        "learner_trap" => learner_trap(&http, t).await?,
        other => bail!("unknown attack {other:?} (known: {})", ATTACKS.join(", ")),
    };
    every_coordinator_healthy(t).await?;
    Ok(out)
}

fn coordinator(t: &Target<'_>) -> String {
    t.manifest.coordinators[0].url.clone()
}

fn operator_token(t: &Target<'_>) -> String {
    t.manifest.operators[0].token.clone()
}

/// A client holding everything agent `agent` holds: on a TLS lab its client certificate (the
/// attacker took over the agent's host, not just its token), so the checks behind
/// authentication are what is attacked.
///
/// Errors: the agent's config or certificate cannot be read.
fn agent_client(t: &Target<'_>, agent: &str) -> Result<reqwest::ClientBuilder> {
    let info = t
        .manifest
        .agents
        .iter()
        .find(|a| a.id == agent)
        .with_context(|| format!("no lab agent {agent}"))?;
    let text = std::fs::read_to_string(&info.config)
        .with_context(|| format!("read {}", info.config.display()))?;
    let cfg: signer_agent::Config = toml::from_str(&text).context("parse the agent config")?;
    match &cfg.tls {
        Some(files) => Ok(failover_common::tls::Tls::load(files)?
            .reqwest_builder(failover_common::tls::PeerRole::Node)),
        None => Ok(reqwest::Client::builder()),
    }
}

fn agent_token(t: &Target<'_>, agent: &str) -> Result<String> {
    let path = t
        .manifest
        .dir
        .join("secrets")
        .join(format!("{agent}.token"));
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("read {}", path.display()))?
        .trim()
        .to_string())
}

/// POSTs `body` and returns the status and the JSON answer (`null` if none).
async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> Result<(u16, Value)> {
    let res = http
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

fn expect(what: &str, got: (u16, &Value), status: u16, code: Option<&str>) -> Result<()> {
    ensure!(
        got.0 == status && code.is_none_or(|c| got.1["code"] == c),
        "{what}: expected {status}{} but got {} {}",
        code.map(|c| format!(" {c}")).unwrap_or_default(),
        got.0,
        got.1
    );
    Ok(())
}

fn interchange(gvr: Root, pubkey: Pubkey, source: &str, target: &str) -> Value {
    json!({
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": gvr},
        "data": [{
            "pubkey": pubkey,
            "signed_blocks": [{"slot": target}],
            "signed_attestations": [{"source_epoch": source, "target_epoch": target}]
        }]
    })
}

/// A valid BLS key no validator of the lab uses.
fn outsider() -> Pubkey {
    failover_common::interop::pubkey(100_000)
}

/// The operator imports `u64::MAX` epochs: refused by the far-future bound; with the audited
/// override (for a validator outside the workload) it reaches apply, which must not panic.
async fn poison_pill_import(http: &reqwest::Client, t: &Target<'_>) -> Result<String> {
    let url = format!("{}/v1/slashing/import", coordinator(t));
    let doc = interchange(
        t.manifest.genesis_validators_root,
        outsider(),
        "5",
        "18446744073709551615",
    );
    let op = operator_token(t);
    let (s, v) = post(http, &url, &op, &doc).await?;
    expect("poison-pill import", (s, &v), 400, Some("future_epoch"))?;
    let (s, v) = post(http, &format!("{url}?allow_future=true"), &op, &doc).await?;
    expect("poison-pill import with the override", (s, &v), 200, None)?;
    Ok(
        "u64::MAX import: 400 future_epoch; with the audited override 200 and no replica fell"
            .into(),
    )
}

/// An attestation 100,000 epochs ahead for a workload validator, to the holder: 400
/// `future_epoch`, nothing recorded (the validator's ordinary duties must keep being signed).
async fn far_future_attestation(http: &reqwest::Client, t: &Target<'_>) -> Result<String> {
    let m = t.manifest;
    let agent = m
        .agents
        .iter()
        .find(|a| a.id == t.holder)
        .with_context(|| format!("no agent {}", t.holder))?;
    let v: &Validator = m.validators.first().context("the lab has no validators")?;
    let spe = m.slots_per_epoch;
    let epoch = (t.slot / spe).saturating_add(100_000);
    let slot = epoch.saturating_mul(spe);
    let beacon = &m.beacon_nodes.first().context("no beacon node")?.url;
    let fork = super::workload::fetch_fork(http, beacon).await?;
    let fork_info = ForkInfo {
        fork,
        genesis_validators_root: m.genesis_validators_root,
    };
    let data = AttestationData {
        slot,
        index: 0,
        beacon_block_root: block_root(slot),
        source: Checkpoint {
            epoch: epoch - 1,
            root: block_root((epoch - 1) * spe),
        },
        target: Checkpoint {
            epoch,
            root: block_root(slot),
        },
    };
    let duty = attestation_duty_from(v, data, &fork_info);
    let url = format!("{}/api/v1/eth2/sign/{}", agent.url, v.pubkey);
    let res = http
        .post(&url)
        .json(&duty.body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let s = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    expect(
        "far-future attestation",
        (s, &body),
        400,
        Some("future_epoch"),
    )?;
    Ok(format!(
        "attestation for epoch {epoch} (validator {}): 400 future_epoch",
        v.index
    ))
}

/// The standby agent's credentials import history for a workload validator: through the
/// operator route (403) and through the agent route without a proof of possession (403).
async fn foreign_key_import(t: &Target<'_>) -> Result<String> {
    let m = t.manifest;
    let standby = m
        .agents
        .iter()
        .find(|a| a.id != t.holder)
        .context("no standby agent")?;
    let token = agent_token(t, &standby.id)?;
    let http = &agent_client(t, &standby.id)?
        .timeout(Duration::from_secs(10))
        .build()
        .context("build the agent's client")?;
    let v = m.validators.first().context("no validators")?;
    let doc = interchange(m.genesis_validators_root, v.pubkey, "0", "1");
    let base = coordinator(t);
    let (s, body) = post(http, &format!("{base}/v1/slashing/import"), &token, &doc).await?;
    expect("agent token on the operator import", (s, &body), 403, None)?;
    let req = json!({"agent": standby.id, "interchange": doc, "possession": []});
    let (s, body) = post(http, &format!("{base}/v1/agent/import"), &token, &req).await?;
    expect(
        "agent import without proof of possession",
        (s, &body),
        403,
        None,
    )?;
    Ok(format!("{}'s token: both imports 403", standby.id))
}

/// A 3 MB record batch: 413 before anything is proposed.
async fn oversized_body(t: &Target<'_>) -> Result<String> {
    // Its own connection: the server answers 413 and closes it while the body is still
    // being written.
    let http = &agent_client(t, t.holder)?
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .context("build a client")?;
    let token = agent_token(t, t.holder)?;
    let filler = "x".repeat(3 * 1024 * 1024);
    let body = json!({"agent": t.holder, "token": 0, "items": [], "filler": filler});
    let (s, v) = post(
        http,
        &format!("{}/v1/agent/records", coordinator(t)),
        &token,
        &body,
    )
    .await?;
    expect("3 MB record batch", (s, &v), 413, None)?;
    Ok("3 MB record batch: 413".into())
}

/// 300 connections that never finish their headers: status still answers within 1 s, and the
/// server closes them within its header-read timeout (10 s) plus a margin.
async fn half_open_connections(http: &reqwest::Client, t: &Target<'_>) -> Result<String> {
    let base = coordinator(t);
    let addr = crate::netem::split_url(&base)?.1.to_string();
    let mut conns = Vec::new();
    for _ in 0..300 {
        let mut c = TcpStream::connect(&addr).with_context(|| format!("connect {addr}"))?;
        c.write_all(b"GET /v1/status HTTP/1.1\r\nHost: lab\r\n")?;
        conns.push(c);
    }
    let started = Instant::now();
    let res = http
        .get(format!("{base}/v1/status"))
        .bearer_auth(operator_token(t))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .context("status during the half-open flood")?;
    let took = started.elapsed();
    ensure!(
        res.status().is_success() && took < Duration::from_secs(1),
        "status during the half-open flood: {} after {took:?}",
        res.status()
    );
    let closed = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut closed = 0usize;
        for c in &mut conns {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = c.set_read_timeout(Some(left.max(Duration::from_millis(10))));
            let mut buf = [0u8; 512];
            let was_closed = loop {
                match c.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) => continue,
                    Err(e) => {
                        break !matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        )
                    }
                }
            };
            closed += usize::from(was_closed);
        }
        closed
    })
    .await?;
    ensure!(
        closed == 300,
        "only {closed} of 300 half-open connections were closed in 15 s"
    );
    Ok(format!(
        "300 half-open connections: status in {} ms, all closed by the server",
        took.as_millis()
    ))
}

/// 50 requests with wrong tokens from another loopback address (127.0.0.2), so that the lab's
/// own clients on 127.0.0.1 are not slowed with it: 401 until the source's budget is spent,
/// then 429, and the failures are counted.
async fn bad_token_flood(t: &Target<'_>) -> Result<String> {
    let attacker = t
        .manifest
        .client_tls()?
        .builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .timeout(Duration::from_secs(5))
        .build()
        .context("build a client on 127.0.0.2")?;
    let base = coordinator(t);
    let before = auth_failures(&attacker, &base).await?;
    let mut statuses = Vec::new();
    for i in 0..50 {
        let res = attacker
            .get(format!("{base}/v1/status"))
            .bearer_auth(format!("guess-{i}"))
            .send()
            .await
            .context("a wrong-token request")?;
        statuses.push(res.status().as_u16());
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let slowed = statuses.iter().filter(|s| **s == 429).count();
    ensure!(
        unauthorized + slowed == 50 && slowed > 0 && statuses.ends_with(&[429]),
        "wrong tokens: expected 401s then 429s, got {statuses:?}"
    );
    let after = auth_failures(&attacker, &base).await?;
    ensure!(
        after >= before + unauthorized as u64,
        "failover_auth_failures_total moved from {before} to {after} for {unauthorized} failures"
    );
    Ok(format!(
        "50 wrong tokens: {unauthorized} × 401 then {slowed} × 429, counted ({before} → {after})"
    ))
}

/// The sum of `failover_auth_failures_total` on `base`.
async fn auth_failures(http: &reqwest::Client, base: &str) -> Result<u64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .context("GET /metrics")?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("failover_auth_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// An operator adds a "learner" at a listener that records what it receives: the leader asks
/// it who it is without any secret and refuses it. On a TLS lab the trap serves a certificate
/// of its own CA naming node 99: the handshake fails, so the trap receives no request at all.
/// In plaintext it gets one unauthenticated identity request, and no proof of the cluster
/// token.
async fn learner_trap(http: &reqwest::Client, t: &Target<'_>) -> Result<String> {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = {
        let seen = seen.clone();
        axum::Router::new().fallback(move |req: axum::extract::Request| {
            let seen = seen.clone();
            async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap_or("?").to_string());
                seen.lock().expect("trap lock").push(format!(
                    "{} {}",
                    req.uri(),
                    auth.unwrap_or_default()
                ));
                axum::Json(json!({"node_id": 99, "initialized": false, "region": "trap"}))
            }
        })
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let tls = t.manifest.tls.is_some();
    let (trap, server) = if tls {
        let dir = t.manifest.dir.join("trap-pki");
        let _ = std::fs::remove_dir_all(&dir);
        let rogue = failover_common::tls::issue::new_ca("failover lab CA", 1)
            .map_err(anyhow::Error::msg)?;
        failover_common::tls::issue::write_pair(&dir, "ca", &rogue).map_err(anyhow::Error::msg)?;
        let leaf = failover_common::tls::issue::issue(
            &rogue.cert_pem,
            &rogue.key_pem,
            &failover_common::tls::issue::LeafSpec::for_days(
                failover_common::tls::issue::LeafKind::Node(99),
                vec!["127.0.0.1".into()],
                1,
            ),
        )
        .map_err(anyhow::Error::msg)?;
        let w = failover_common::tls::issue::write_pair(&dir, "node-99", &leaf)
            .map_err(anyhow::Error::msg)?;
        let cfg = failover_common::tls::Tls::load(&failover_common::tls::TlsFiles {
            ca_file: dir.join("ca.pem"),
            cert_file: w.cert,
            key_file: w.key,
        })?
        .server_config(failover_common::tls::ClientAuth::Optional);
        let server = tokio::spawn(failover_common::serve::serve(
            l,
            app,
            Default::default(),
            Arc::default(),
            Some(cfg),
            std::future::pending(),
        ));
        (format!("https://{addr}"), server)
    } else {
        let server = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        (format!("http://{addr}"), server)
    };
    let body = json!({"id": 99, "url": trap});
    let (s, v) = post(
        http,
        &format!("{}/v1/cluster/learners", coordinator(t)),
        &operator_token(t),
        &body,
    )
    .await?;
    server.abort();
    let message = v["message"].as_str().unwrap_or("");
    let seen = seen.lock().expect("trap lock").clone();
    if tls {
        ensure!(
            (400..600).contains(&s) && message.contains("certificate"),
            "add-learner at a trap with a foreign certificate: expected a refusal naming the \
             certificate, got {s} {v}"
        );
        ensure!(
            seen.is_empty(),
            "the trap with a foreign certificate received requests: {seen:?}"
        );
        return Ok(format!(
            "add-learner at a listener with a foreign CA's node certificate: {s}, refused at the \
             handshake, 0 requests received"
        ));
    }
    ensure!(
        (400..600).contains(&s) && message.contains("proof"),
        "add-learner at a trap: expected a refusal naming the missing proof, got {s} {v}"
    );
    ensure!(
        !seen.is_empty(),
        "the leader never asked the trap who it is"
    );
    if let Some(r) = seen.iter().find(|r| !r.ends_with(' ')) {
        bail!("the trap received a credential: {r}");
    }
    Ok(format!(
        "add-learner at a recording listener: {s}, {} request(s) received, none with a credential",
        seen.len()
    ))
}

async fn every_coordinator_healthy(t: &Target<'_>) -> Result<()> {
    // A client of its own: a connection an attack left half-written (the server answers 413
    // before reading a whole body, then closes) must not be reused for this check.
    let http = t
        .manifest
        .client_tls()?
        .builder()
        .pool_max_idle_per_host(0)
        .build()
        .context("build the health-check client")?;
    for c in &t.manifest.coordinators {
        let res = http
            .get(format!("{}/health", c.url))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .with_context(|| format!("GET {}/health", c.url))?;
        ensure!(
            res.status().is_success(),
            "coordinator {} /health answered {}",
            c.id,
            res.status()
        );
    }
    Ok(())
}
