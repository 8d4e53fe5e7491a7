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
use failover_common::tls::issue::{issue, new_ca, write_pair, Issued, LeafKind, LeafSpec};
use failover_common::tls::{PeerRole, Tls, TlsFiles};
use serde::{Deserialize, Serialize};

/// Days the lab's certificates are valid.
const DAYS: u32 = 30;

/// The lab's CA, able to issue more certificates while the lab runs (rotation drills).
pub struct LabPki {
    dir: PathBuf,
    ca: Issued,
}

impl std::fmt::Debug for LabPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabPki").field("dir", &self.dir).finish()
    }
}

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

impl LabPki {
    /// Creates `dir` with a new CA.
    ///
    /// Errors: key generation or a file write failed.
    pub fn create(dir: &Path) -> Result<Self> {
        let ca = new_ca("failover lab CA", DAYS).map_err(anyhow::Error::msg)?;
        write_pair(dir, "ca", &ca).map_err(anyhow::Error::msg)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            ca,
        })
    }

    /// The CA certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a certificate of `kind` for 127.0.0.1 and localhost as `<stem>.pem` and
    /// `<stem>-key.pem`, valid for 30 days, and returns the files a process uses with it.
    ///
    /// Errors: as [`issue`] and [`write_pair`] (an existing key is never overwritten).
    pub fn issue(&self, stem: &str, kind: LeafKind) -> Result<TlsFiles> {
        let spec = LeafSpec::for_days(kind, vec!["127.0.0.1".into(), "localhost".into()], DAYS);
        self.issue_spec(stem, &spec)
    }

    /// Issues `spec` as `<stem>.pem` and `<stem>-key.pem`.
    ///
    /// Errors: as [`issue`] and [`write_pair`].
    pub fn issue_spec(&self, stem: &str, spec: &LeafSpec) -> Result<TlsFiles> {
        let leaf = issue(&self.ca.cert_pem, &self.ca.key_pem, spec).map_err(anyhow::Error::msg)?;
        let w = write_pair(&self.dir, stem, &leaf).map_err(anyhow::Error::msg)?;
        Ok(TlsFiles {
            ca_file: self.ca_file(),
            cert_file: w.cert,
            key_file: w.key,
        })
    }
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
}
