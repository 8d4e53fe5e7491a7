//! The planned-handover drill on real processes, small and fast: 8 validators, cheap-KDF
//! keystores, 0.25 s slots, finality one epoch behind the head. After it, the holder signs a
//! `VOLUNTARY_EXIT` and a `VALIDATOR_REGISTRATION`, checked here with an independent
//! SSZ-and-BLS computation over the lab chain's own domains: EIP-7044's Capella exit domain,
//! and the builder domain of its `GENESIS_FORK_VERSION` (issue 16 item 4).
//!
//! It needs every workspace binary (coordinator, signer-agent, failoverctl, beacon-sim) next to
//! the test executable's directory. `cargo test --workspace` builds them all before running any
//! test; run alone, first `cargo build --workspace`. A missing binary fails with that hint.

use anyhow::{ensure, Context, Result};
use chaos::lab::scenario::{self, ScenarioOptions};
use chaos::lab::{Lab, LabConfig};
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread")]
async fn planned_handover_drill_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LabConfig::fast_test(dir.path().join("lab"), 8);
    cfg.allow_voluntary_exit = true;
    let progress = |line: &str| eprintln!("[lab] {line}");
    let mut lab = Lab::start(cfg, &progress).await.unwrap();
    let opts = ScenarioOptions {
        epochs_before_handover: 1,
        epochs_after_handover: 1,
        ..ScenarioOptions::default()
    };
    let summary = scenario::run(&mut lab, &opts, &progress).await;
    let exit = holder_signs_an_exit_over_the_lab_chains_domain(&lab).await;
    let registration = holder_signs_a_registration_over_the_lab_chains_builder_domain(&lab).await;
    lab.stop().await;
    let summary = summary.unwrap();
    exit.unwrap();
    registration.unwrap();
    assert!(summary.passed(), "{summary}");
    assert!(
        summary
            .checks
            .iter()
            .any(|c| c.name.contains("conflicting messages") && c.ok),
        "the drill must have sent conflict probes:\n{summary}"
    );
}

fn chunk(v: &[u8]) -> [u8; 32] {
    let mut c = [0u8; 32];
    c[..v.len()].copy_from_slice(v);
    c
}

fn sha(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

fn hex4(s: &str) -> Result<[u8; 4]> {
    let v = hex::decode(s.trim_start_matches("0x")).context("hex")?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("{s}: not 4 bytes"))
}

/// `compute_signing_root(VoluntaryExit{epoch, validator_index}, compute_domain(
/// DOMAIN_VOLUNTARY_EXIT, version, genesis_validators_root))`, computed here from the
/// consensus specs with nothing but SHA-256 (phase0: a two-field container is the hash of its
/// two little-endian chunks; `ForkData` likewise; the domain is the 4-byte type and the first
/// 28 bytes of the fork data root).
fn exit_signing_root(epoch: u64, index: u64, version: [u8; 4], gvr: [u8; 32]) -> [u8; 32] {
    let object = sha(&chunk(&epoch.to_le_bytes()), &chunk(&index.to_le_bytes()));
    let fork_data = sha(&chunk(&version), &gvr);
    let mut domain = [0u8; 32];
    domain[..4].copy_from_slice(&[4, 0, 0, 0]); // DOMAIN_VOLUNTARY_EXIT
    domain[4..].copy_from_slice(&fork_data[..28]);
    sha(&object, &domain)
}

/// The holder's base URL, the lab's TLS client, and the first beacon simulator's spec.
async fn holder_and_spec(lab: &Lab) -> Result<(String, reqwest::Client, serde_json::Value)> {
    let holder = lab
        .current_holder()
        .await?
        .context("nobody holds authority after the drill")?;
    let agent = lab.agent(&holder).context("the holder is a lab agent")?;
    let http = lab.client_tls().builder().build()?;
    let spec = beacon_get(lab, &http, "/eth/v1/config/spec").await?;
    Ok((agent.url.trim_end_matches('/').to_string(), http, spec))
}

/// `GET path` on the lab's first beacon simulator, as JSON.
async fn beacon_get(lab: &Lab, http: &reqwest::Client, path: &str) -> Result<serde_json::Value> {
    let beacon = lab.manifest.beacon_nodes[0].url.trim_end_matches('/');
    Ok(http
        .get(format!("{beacon}{path}"))
        .send()
        .await?
        .json()
        .await?)
}

/// Sends `body` to the holder for `index`'s key; returns a check of the signature (blst)
/// over a signing root.
async fn signature_verifies(
    http: &reqwest::Client,
    holder_url: &str,
    index: u64,
    body: &serde_json::Value,
) -> Result<impl Fn([u8; 32]) -> bool> {
    let pubkey = failover_common::interop::pubkey(index);
    let res = http
        .post(format!("{holder_url}/api/v1/eth2/sign/{pubkey}"))
        .header("accept", "application/json")
        .json(body)
        .send()
        .await?;
    let status = res.status();
    let text = res.text().await?;
    ensure!(status == 200, "the holder answered {status}: {text}");
    let sig = chaos::lab::duties::parse_signature(&text).context("a signature")?;
    Ok(move |root: [u8; 32]| {
        let pk = blst::min_pk::PublicKey::from_bytes(&pubkey.0).expect("interop pubkey");
        blst::min_pk::Signature::from_bytes(&sig.0).is_ok_and(|s| {
            s.verify(true, &root, failover_common::eth::BLS_DST, &[], &pk, true)
                == blst::BLST_ERROR::BLST_SUCCESS
        })
    })
}

/// The holder signs validator 5's builder registration; the signature must verify over
/// `compute_domain(DOMAIN_APPLICATION_BUILDER, GENESIS_FORK_VERSION, Root())` of the lab chain
/// (builder-specs), the object root computed here: `ValidatorRegistrationV1` is four fields,
/// `fee_recipient` (20 bytes), `gas_limit`, `timestamp` and `pubkey` (48 bytes, two chunks).
async fn holder_signs_a_registration_over_the_lab_chains_builder_domain(lab: &Lab) -> Result<()> {
    let (holder_url, http, spec) = holder_and_spec(lab).await?;
    let genesis = hex4(
        spec["data"]["GENESIS_FORK_VERSION"]
            .as_str()
            .context("spec")?,
    )?;
    let index = 5u64;
    let pubkey = failover_common::interop::pubkey(index);
    let fee_recipient = [0xfe_u8; 20];
    let (gas_limit, timestamp) = (36_000_000u64, 1_765_000_000u64);
    let body = serde_json::json!({
        "type": "VALIDATOR_REGISTRATION",
        "validator_registration": {
            "fee_recipient": format!("0x{}", hex::encode(fee_recipient)),
            "gas_limit": gas_limit.to_string(),
            "timestamp": timestamp.to_string(),
            "pubkey": pubkey,
        },
    });
    let verify = signature_verifies(&http, &holder_url, index, &body).await?;
    let pk_root = sha(&chunk(&pubkey.0[..32]), &chunk(&pubkey.0[32..]));
    let object = sha(
        &sha(&chunk(&fee_recipient), &chunk(&gas_limit.to_le_bytes())),
        &sha(&chunk(&timestamp.to_le_bytes()), &pk_root),
    );
    let fork_data = sha(&chunk(&genesis), &[0u8; 32]);
    let mut domain = [0u8; 32];
    domain[..4].copy_from_slice(&[0, 0, 0, 1]); // DOMAIN_APPLICATION_BUILDER
    domain[4..].copy_from_slice(&fork_data[..28]);
    ensure!(
        verify(sha(&object, &domain)),
        "the registration signature does not verify over the lab chain's builder domain"
    );
    Ok(())
}

/// The current holder signs validator 3's exit at the current epoch; the signature must verify
/// over the domain of the lab chain's `CAPELLA_FORK_VERSION` (EIP-7044: from Deneb on, exits
/// are signed for Capella, whatever the current fork), and not over the current fork's.
async fn holder_signs_an_exit_over_the_lab_chains_domain(lab: &Lab) -> Result<()> {
    let (holder_url, http, spec) = holder_and_spec(lab).await?;
    let capella = hex4(
        spec["data"]["CAPELLA_FORK_VERSION"]
            .as_str()
            .context("spec")?,
    )?;
    let deneb_epoch: u64 = spec["data"]["DENEB_FORK_EPOCH"]
        .as_str()
        .context("spec")?
        .parse()?;
    let fork = beacon_get(lab, &http, "/eth/v1/beacon/states/head/fork").await?;
    let current = hex4(fork["data"]["current_version"].as_str().context("fork")?)?;
    let clock = lab.clock();
    let epoch = clock.epoch_of(clock.now_slot());
    ensure!(
        epoch >= deneb_epoch,
        "the lab chain must be past Deneb (epoch {epoch}, DENEB_FORK_EPOCH {deneb_epoch})"
    );
    ensure!(
        current != capella,
        "the lab's current fork must not be Capella, or the negative check proves nothing"
    );
    let gvr = lab.manifest.genesis_validators_root;
    let index = 3u64;
    let body = serde_json::json!({
        "type": "VOLUNTARY_EXIT",
        "fork_info": {
            "fork": fork["data"],
            "genesis_validators_root": gvr,
        },
        "voluntary_exit": {"epoch": epoch.to_string(), "validator_index": index.to_string()},
    });
    let verify = signature_verifies(&http, &holder_url, index, &body).await?;
    ensure!(
        verify(exit_signing_root(epoch, index, capella, gvr.0)),
        "the exit signature does not verify over the lab chain's Capella domain (EIP-7044)"
    );
    ensure!(
        !verify(exit_signing_root(epoch, index, current, gvr.0)),
        "the exit signature verifies over the current fork's domain, not EIP-7044's"
    );
    Ok(())
}
