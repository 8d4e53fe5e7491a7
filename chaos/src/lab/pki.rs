//! The lab's certificates (`DIR/pki`): a cluster CA made for this lab, a node certificate per
//! coordinator, an agent certificate per signer agent, an operator certificate per operator,
//! and one validator-client certificate that every agent's Web3Signer API lists in its
//! known-clients file. Everything is issued for `127.0.0.1` and `localhost`, with the same
//! code as `coordinator certs` ([`failover_common::tls::issue`]).
//!
//! The lab's own tools (status pollers, duty simulators, drills) dial with [`ClientTls`]: the
//! lab CA for servers, and the validator-client certificate, which coordinators see as a
//! certificate without a failover identity (the tools authenticate there with tokens) and
//! agents accept as their validator client.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use failover_common::tls::issue::{DirCa, LeafKind};
use failover_common::tls::{PeerRole, Tls, TlsFiles};
use serde::{Deserialize, Serialize};

/// Days the lab's certificates are valid.
const DAYS: u32 = 30;

/// The lab's CA, able to issue more certificates while the lab runs (rotation drills).
pub type LabPki = DirCa;

/// The certificate files of the lab, as `lab.json` lists them, so curl and other tools can
/// talk to it: `curl --cacert CA --cert OPERATOR_CERT --key OPERATOR_KEY https://…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabTls {
    /// The lab's cluster CA certificate (PEM).
    pub ca_file: PathBuf,
    /// Name of the operator whose client certificate follows (the first operator).
    pub operator: String,
    /// That operator's client certificate (PEM): accepted by the coordinators without a token.
    pub operator_cert_file: PathBuf,
    /// Its key (PEM, mode 0600).
    pub operator_key_file: PathBuf,
    /// The validator-client certificate every agent's Web3Signer API accepts (PEM).
    pub client_cert_file: PathBuf,
    /// Its key (PEM, mode 0600).
    pub client_key_file: PathBuf,
}

/// Creates the lab's CA in `dir`.
///
/// Errors: key generation or a file write failed.
pub fn create(dir: &Path) -> Result<LabPki> {
    DirCa::create(dir, "failover lab CA", DAYS).map_err(anyhow::Error::msg)
}

/// The spec of a lab certificate of `kind`: 127.0.0.1, localhost and `extra_hosts` (a
/// region's address on a netns lab), valid for 30 days.
fn spec(kind: LeafKind, extra_hosts: &[String]) -> failover_common::tls::issue::LeafSpec {
    let mut hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    hosts.extend(extra_hosts.iter().cloned());
    failover_common::tls::issue::LeafSpec::for_days(kind, hosts, DAYS)
}

/// Issues a certificate of `kind` from the lab's CA (for 127.0.0.1, localhost and
/// `extra_hosts`, 30 days) as `<stem>.pem` and `<stem>-key.pem`.
///
/// Errors: as [`DirCa::issue`] (an existing key is never overwritten).
pub fn issue(pki: &LabPki, stem: &str, kind: LeafKind, extra_hosts: &[String]) -> Result<TlsFiles> {
    pki.issue(stem, &spec(kind, extra_hosts))
        .map_err(anyhow::Error::msg)
}

/// The certificate `<stem>` of the lab CA: the files already there (a process started again,
/// or a second process with the same identity, as when its whole configuration directory is
/// copied), else a new one issued as [`issue`] does.
///
/// Errors: as [`issue`].
pub fn existing_or_issue(
    pki: &LabPki,
    stem: &str,
    kind: LeafKind,
    extra_hosts: &[String],
) -> Result<TlsFiles> {
    let cert = pki.dir().join(format!("{stem}.pem"));
    let key = pki.dir().join(format!("{stem}-key.pem"));
    if cert.exists() && key.exists() {
        return Ok(TlsFiles {
            ca_file: pki.ca_file(),
            cert_file: cert,
            key_file: key,
        });
    }
    issue(pki, stem, kind, extra_hosts)
}

/// Issues the certificate `<stem>` again (a new key, 30 more days), replacing its files in
/// place ([`DirCa::reissue`]).
///
/// Errors: as [`DirCa::reissue`].
pub fn reissue(
    pki: &LabPki,
    stem: &str,
    kind: LeafKind,
    extra_hosts: &[String],
) -> Result<TlsFiles> {
    pki.reissue(stem, &spec(kind, extra_hosts))
        .map_err(anyhow::Error::msg)
}

/// How the lab's tools dial: plain HTTP, or TLS with the lab CA and the validator-client
/// certificate. Cheap to clone.
#[derive(Clone, Default)]
pub struct ClientTls(Option<Arc<rustls::ClientConfig>>);

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ClientTls(lab CA)"
        } else {
            "ClientTls(plain)"
        })
    }
}

impl ClientTls {
    /// Plain HTTP.
    pub fn plain() -> Self {
        Self(None)
    }

    /// The tools' TLS of a lab with `tls` (plain without).
    ///
    /// Errors: the files do not load.
    pub fn of(tls: Option<&LabTls>) -> Result<Self> {
        let Some(t) = tls else {
            return Ok(Self::plain());
        };
        let loaded = Tls::load(&TlsFiles {
            ca_file: t.ca_file.clone(),
            cert_file: t.client_cert_file.clone(),
            key_file: t.client_key_file.clone(),
        })
        .context("load the lab's client certificate")?;
        Ok(Self(Some(Arc::new(loaded.client_config(PeerRole::Any)))))
    }

    /// A reqwest builder dialling as the lab's tools do.
    pub fn builder(&self) -> reqwest::ClientBuilder {
        match &self.0 {
            Some(cfg) => reqwest::Client::builder().use_preconfigured_tls((**cfg).clone()),
            None => reqwest::Client::builder(),
        }
    }

    /// [`ClientTls::builder`] without TLS session resumption, and with the server's
    /// certificate readable from each answer (`reqwest::tls::TlsInfo`): every connection
    /// makes a full handshake, so it sees the certificate the server serves now, not the one
    /// of a resumed session.
    pub fn full_handshake_builder(&self) -> reqwest::ClientBuilder {
        match &self.0 {
            Some(cfg) => {
                let mut cfg = (**cfg).clone();
                cfg.resumption = rustls::client::Resumption::disabled();
                reqwest::Client::builder()
                    .use_preconfigured_tls(cfg)
                    .tls_info(true)
            }
            None => reqwest::Client::builder(),
        }
    }
}
