//! A signer outside the cluster: the operator's 3 AM story of a validator client someone
//! started by hand on a standby box with the same keys (issue 16, the `rogue-signer` drill and
//! `runbooks/doppelganger-detected.md`).
//!
//! It holds the interop secret keys of some lab validators, signs each one's honest
//! attestation once per epoch in its duty slot (the duty simulator's schedule: validator `i`
//! attests in slots with `slot % SLOTS_PER_EPOCH == i % SLOTS_PER_EPOCH`), and publishes it
//! to every beacon simulator as a validator client would (`POST
//! /eth/v2/beacon/pool/attestations`, an Electra `SingleAttestation`). It never talks to a
//! coordinator or an agent, so the cluster knows nothing of what it signs; only the beacon
//! nodes see the validators live, which is what the liveness gate asks them.
//!
//! Invariants: it signs only honest attestation data of the current slot (the same data the
//! cluster's holder would sign), so it is a doppelganger, never a slasher of the cluster's own
//! history; it stops at the end of the slot in which it is told to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use failover_common::eth::ForkInfo;
use failover_common::interop;
use tokio::sync::watch;

use super::duties::{attestation_duty, publication, SlotClock};
use super::keys::Validator;

/// A rogue signer ready to start ([`RogueSigner::start`]).
pub struct RogueSigner {
    http: reqwest::Client,
    beacons: Vec<String>,
    validators: Vec<Validator>,
    clock: SlotClock,
    fork_info: ForkInfo,
}

impl RogueSigner {
    /// Reads genesis and the head fork from the first of `beacons` and prepares to sign for
    /// the interop validators `indices`.
    ///
    /// Errors: no beacon node or no validator given, or the first node does not answer.
    pub async fn connect(
        beacons: Vec<String>,
        indices: &[u64],
        clock: SlotClock,
        tls: super::pki::ClientTls,
    ) -> Result<Self> {
        ensure!(!beacons.is_empty(), "a rogue signer needs a beacon node");
        ensure!(
            !indices.is_empty(),
            "a rogue signer needs validators to sign for"
        );
        let http = tls
            .builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("build the rogue signer's HTTP client")?;
        let base = beacons[0].trim_end_matches('/');
        let fork_info = super::duties::read_fork_info(&http, base)
            .await
            .with_context(|| format!("read genesis and fork from {base}"))?;
        Ok(Self {
            http,
            beacons,
            validators: indices
                .iter()
                .map(|i| Validator {
                    index: *i,
                    pubkey: interop::pubkey(*i),
                })
                .collect(),
            clock,
            fork_info,
        })
    }

    /// Starts signing and publishing from the next slot on, in a background task.
    pub fn start(self) -> RunningRogue {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let published = Arc::new(AtomicU64::new(0));
        let count = published.clone();
        let task = tokio::spawn(async move {
            let mut slot = self.clock.now_slot() + 1;
            loop {
                tokio::select! {
                    _ = self.clock.sleep_until(slot) => {}
                    _ = stop_rx.changed() => return,
                }
                let spe = self.clock.slots_per_epoch.max(1);
                for v in self
                    .validators
                    .iter()
                    .filter(|v| v.index % spe == slot % spe)
                {
                    let duty = attestation_duty(v, slot, &self.fork_info, spe);
                    let sig = failover_common::eth::sign(
                        &interop::secret_key(v.index),
                        &duty.signing_root,
                    );
                    let (path, body) = publication(&duty, &sig);
                    for base in &self.beacons {
                        let url = format!("{}{path}", base.trim_end_matches('/'));
                        match self.http.post(&url).json(&body).send().await {
                            Ok(r) if r.status().is_success() => {
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => {
                                tracing::warn!(%url, status = %r.status(), "rogue publication refused")
                            }
                            Err(e) => tracing::warn!(%url, error = %e, "rogue publication failed"),
                        }
                    }
                    tracing::info!(
                        validator = v.index,
                        slot,
                        epoch = slot / spe,
                        "rogue signer published an attestation"
                    );
                }
                slot += 1;
            }
        });
        RunningRogue {
            stop: stop_tx,
            task,
            published,
        }
    }
}

/// A running rogue signer.
#[derive(Debug)]
pub struct RunningRogue {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    published: Arc<AtomicU64>,
}

impl RunningRogue {
    /// Attestations accepted by a beacon node so far (one per node and message).
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Stops it; returns the publications accepted.
    pub async fn stop(self) -> u64 {
        self.stop.send_replace(true);
        let _ = self.task.await;
        self.published.load(Ordering::Relaxed)
    }
}

/// Parses a validator list such as `2,5` or `2-4,9`.
///
/// Errors: an empty list, or an item that is not a number or a range `a-b` with `a ≤ b`.
pub fn parse_indices(s: &str) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (
                    a.trim().parse().with_context(|| format!("`{item}`"))?,
                    b.trim().parse().with_context(|| format!("`{item}`"))?,
                );
                ensure!(a <= b, "`{item}`: a range runs upwards");
                ensure!(b - a < 100_000, "`{item}`: too many validators");
                out.extend(a..=b);
            }
            None => out.push(item.parse().with_context(|| format!("`{item}`"))?),
        }
    }
    out.sort_unstable();
    out.dedup();
    ensure!(!out.is_empty(), "no validator named in `{s}`");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validator_lists_parse_and_bad_ones_are_named() {
        assert_eq!(parse_indices("5,2").unwrap(), vec![2, 5]);
        assert_eq!(parse_indices("2-4,9,3").unwrap(), vec![2, 3, 4, 9]);
        assert!(parse_indices("").is_err());
        assert!(parse_indices("4-2").is_err());
        let e = parse_indices("2,x").unwrap_err().to_string();
        assert!(e.contains("`x`"), "{e}");
    }
}
