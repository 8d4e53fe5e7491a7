//! TLS and mutual TLS for every link of the project, with rustls (ring provider, no OpenSSL).
//!
//! One [`Tls`] holds a process's material: the cluster CA (the roots every peer is checked
//! against), its own certificate chain and key, and what its certificate names
//! ([`Identity`]). From it come:
//! - [`Tls::server_config`]: a listener's rustls config. The client certificate is asked for
//!   and checked against the cluster CA; [`ClientAuth::Required`] refuses a handshake without
//!   one (the coordinators' Raft listener), [`ClientAuth::Optional`] lets the application decide
//!   (operators may still use bearer tokens), [`ClientAuth::Verifier`] takes another rule (an
//!   agent's Web3Signer API allowlist, [`allowlist`]);
//! - [`Tls::client_config`]: a dialler's rustls config, presenting this process's certificate
//!   and accepting only servers whose certificate chains to the cluster CA, matches the host
//!   name or address dialled, and, for [`PeerRole::Node`], names a coordinator. An agent
//!   therefore never takes an authority view or a verdict from anything but a coordinator of
//!   its cluster, whatever sits on the path.
//!
//! Reload ([`Tls::reload`], on SIGHUP): the new files are read and checked completely, then
//! replace the old material at once; configs built before keep working and use the new
//! material from the next handshake on (their resolvers and verifiers read the material in
//! force). A file that fails to load leaves the old material in force.
//!
//! Invariants:
//! - the material in force always has a certificate that chains to the CA in force, a key
//!   that matches it, and is inside its validity at load time ([`Tls::load`] refuses
//!   anything else);
//! - a peer certificate is never trusted for its identity unless it chained to the CA in
//!   force during the same handshake;
//! - key files are read only when owner-only ([`crate::secret_file`]).

pub mod allowlist;
pub mod identity;
pub mod issue;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde::{Deserialize, Serialize};

pub use identity::{parse_fingerprint, CertInfo, Identity};
/// The rustls version these configs are built with, for callers that name its types.
pub use rustls;

/// The files of a process's TLS material, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM file of the cluster CA certificate(s): the roots every peer is checked against.
    pub ca_file: PathBuf,
    /// PEM file of this process's certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file of its private key (PKCS#8, SEC1 or PKCS#1); must be owner-only (mode 0600).
    pub key_file: PathBuf,
}

/// Why TLS material could not be loaded, with the file at fault and the fix where one is
/// known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// Who a client expects at the other end ([`Tls::client_config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// A coordinator: the server certificate must name a node (`urn:failover:node:<id>`).
    Node,
    /// Any server whose certificate chains to the CA and matches the host (an agent's
    /// Web3Signer API, a beacon node behind the cluster CA).
    Any,
}

/// How a listener treats client certificates ([`Tls::server_config`]).
#[derive(Clone)]
pub enum ClientAuth {
    /// A client certificate is required and must chain to the cluster CA.
    Required,
    /// A client certificate is asked for; one that is sent must chain to the cluster CA, and
    /// a client without one may still connect (it authenticates otherwise, with a token).
    Optional,
    /// Another rule, such as an allowlist of validator clients ([`allowlist::AllowList`]).
    Verifier(Arc<dyn rustls::server::danger::ClientCertVerifier>),
}

/// The TLS facts of one connection, put into every request served on it
/// ([`crate::serve`]). Absent on a plain-HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConnection {
    /// The client's certificate, when it sent one (it chained to the CA, or passed the
    /// listener's [`ClientAuth::Verifier`]).
    pub peer: Option<CertInfo>,
}

impl TlsConnection {
    /// The failover identity of the client's certificate, if any.
    pub fn identity(&self) -> Option<&Identity> {
        self.peer.as_ref().and_then(|p| p.identity.as_ref())
    }
}

/// The loaded, checked material.
struct Material {
    ca: Vec<CertInfo>,
    key: Arc<CertifiedKey>,
    leaf: CertInfo,
    server_verifier: Arc<rustls::client::WebPkiServerVerifier>,
    client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

/// A process's TLS material, reloadable while it runs.
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .field("leaf", &self.leaf())
            .finish()
    }
}

/// The ring crypto provider every config of this project uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
///
/// Errors: unreadable file, no `CERTIFICATE` block, or a malformed block (the path is named).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path)
        .map_err(|e| TlsError(format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TlsError(format!(
                "{} is not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{} holds no PEM CERTIFICATE block",
            path.display()
        )));
    }
    Ok(certs)
}

/// Builds a root store from the certificates of a PEM file.
///
/// Errors: as [`read_certs`], or a certificate that cannot be a trust anchor.
pub fn read_roots(path: &Path) -> Result<(RootCertStore, Vec<CertInfo>), TlsError> {
    let mut roots = RootCertStore::empty();
    let mut infos = Vec::new();
    for der in read_certs(path)? {
        infos
            .push(CertInfo::parse(&der).map_err(|e| TlsError(format!("{}: {e}", path.display())))?);
        roots.add(der).map_err(|e| {
            TlsError(format!(
                "{}: a certificate cannot serve as a CA: {e}",
                path.display()
            ))
        })?;
    }
    Ok((roots, infos))
}

fn now_unix() -> i64 {
    UnixTime::now().as_secs() as i64
}

impl Material {
    fn load(files: &TlsFiles, provider: &Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let (roots, ca) = read_roots(&files.ca_file)?;
        let roots = Arc::new(roots);
        let chain = read_certs(&files.cert_file)?;
        let leaf = CertInfo::parse(&chain[0])
            .map_err(|e| TlsError(format!("{}: {e}", files.cert_file.display())))?;
        let key_pem = crate::secret_file::read_secret(&files.key_file)
            .map_err(|e| TlsError(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
            TlsError(format!(
                "{} is not a PEM private key: {e}",
                files.key_file.display()
            ))
        })?;
        let key = CertifiedKey::from_der(chain.clone(), key, provider).map_err(|e| {
            TlsError(format!(
                "the key in {} does not match the certificate in {}: {e}",
                files.key_file.display(),
                files.cert_file.display()
            ))
        })?;
        let now = now_unix();
        if leaf.not_after <= now || leaf.not_before > now {
            return Err(TlsError(format!(
                "the certificate in {} is outside its validity (not before {}, not after {}, now \
                 {now}, Unix seconds): issue a new one",
                files.cert_file.display(),
                leaf.not_before,
                leaf.not_after
            )));
        }
        let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError(format!("{}: {e}", files.ca_file.display())))?;
        let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError(format!("{}: {e}", files.ca_file.display())))?;
        // Our own certificate must chain to the CA we check others against, or our peers
        // will refuse us; say so now rather than at the first handshake. Checked as a client
        // certificate: every certificate this project uses has `clientAuth`.
        client_verifier
            .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
            .map_err(|e| {
                TlsError(format!(
                    "the certificate in {} does not chain to the CA in {} as a client \
                     certificate: {e}",
                    files.cert_file.display(),
                    files.ca_file.display()
                ))
            })?;
        Ok(Self {
            ca,
            key: Arc::new(key),
            leaf,
            server_verifier,
            client_verifier,
        })
    }
}

impl Tls {
    /// Loads and checks `files`.
    ///
    /// Errors ([`TlsError`], naming the file): unreadable or malformed PEM, a key file others
    /// may read, a key that does not match the certificate, a certificate that does not chain
    /// to the CA or is outside its validity.
    pub fn load(files: &TlsFiles) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let material = Material::load(files, &provider)?;
        Ok(Arc::new(Self {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(material)),
        }))
    }

    /// Reads the files again and puts them in force if they load and name the same identity
    /// as the certificate in force (a node cannot become another node by a reload).
    ///
    /// Errors: as [`Tls::load`], or the new certificate names another identity; the old
    /// material then stays in force.
    pub fn reload(&self) -> Result<CertInfo, TlsError> {
        let new = Material::load(&self.files, &self.provider)?;
        let old = self.leaf();
        if new.leaf.identity != old.identity {
            return Err(TlsError(format!(
                "the new certificate in {} names {} but the one in force names {}: a reload \
                 cannot change who this process is",
                self.files.cert_file.display(),
                show(new.leaf.identity.as_ref()),
                show(old.identity.as_ref())
            )));
        }
        let leaf = new.leaf.clone();
        *self.current.write().expect("tls lock") = Arc::new(new);
        Ok(leaf)
    }

    fn material(&self) -> Arc<Material> {
        self.current.read().expect("tls lock").clone()
    }

    /// The files this material comes from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The certificate in force.
    pub fn leaf(&self) -> CertInfo {
        self.material().leaf.clone()
    }

    /// The identity of the certificate in force.
    pub fn identity(&self) -> Option<Identity> {
        self.material().leaf.identity.clone()
    }

    /// Checks that the certificate in force names `want`; `how` says how to issue one that
    /// does (e.g. `coordinator certs issue --node 3`).
    ///
    /// Errors: it names nobody or someone else (both named, with the certificate file).
    pub fn expect_identity(&self, want: &Identity, how: &str) -> Result<(), TlsError> {
        let have = self.identity();
        if have.as_ref() == Some(want) {
            return Ok(());
        }
        Err(TlsError(format!(
            "the certificate in {} names {}, but this is {want}: issue one with `{how}`",
            self.files.cert_file.display(),
            show(have.as_ref())
        )))
    }

    /// The CA certificates in force.
    pub fn ca(&self) -> Vec<CertInfo> {
        self.material().ca.clone()
    }

    /// A listener's rustls config (HTTP/1.1 only), presenting the certificate in force and
    /// treating client certificates as `auth` says.
    pub fn server_config(self: &Arc<Self>, auth: ClientAuth) -> Arc<rustls::ServerConfig> {
        let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = match auth {
            ClientAuth::Required => Arc::new(verify::CaClientVerifier::new(self.clone(), true)),
            ClientAuth::Optional => Arc::new(verify::CaClientVerifier::new(self.clone(), false)),
            ClientAuth::Verifier(v) => v,
        };
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(verify::CurrentCert(self.clone())));
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    /// A dialler's rustls config: presents the certificate in force and accepts only servers
    /// that chain to the CA in force, match the host dialled, and (for [`PeerRole::Node`])
    /// name a coordinator.
    pub fn client_config(self: &Arc<Self>, expect: PeerRole) -> rustls::ClientConfig {
        let mut cfg = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verify::CaServerVerifier::new(
                verify::Roots::Live(self.clone()),
                expect,
            )))
            .with_client_cert_resolver(Arc::new(verify::CurrentCert(self.clone())));
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        cfg
    }

    /// A reqwest client builder using [`Tls::client_config`], with `tls_info` on so that a
    /// caller can read the server's certificate ([`peer_identity`]).
    pub fn reqwest_builder(self: &Arc<Self>, expect: PeerRole) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .use_preconfigured_tls(self.client_config(expect))
            .tls_info(true)
    }
}

fn show(i: Option<&Identity>) -> String {
    i.map_or_else(|| "no failover identity".to_string(), |i| i.to_string())
}

/// The failover identity of the server that answered `res`, read from its certificate.
/// `None` on a plain-HTTP answer, or when the client was not built with `tls_info`.
pub fn peer_identity(res: &reqwest::Response) -> Option<Identity> {
    let der = res
        .extensions()
        .get::<reqwest::tls::TlsInfo>()?
        .peer_certificate()?;
    CertInfo::parse(der).ok()?.identity
}

/// A client config for tools that check servers against a CA file and send no certificate
/// of their own (`failoverctl` with a bearer token, a validator client of an agent's
/// Web3Signer API). `expect` as for [`Tls::client_config`].
///
/// Errors: as [`read_roots`].
pub fn ca_only_client_config(
    ca_file: &Path,
    expect: PeerRole,
) -> Result<rustls::ClientConfig, TlsError> {
    let (roots, _) = read_roots(ca_file)?;
    let provider = provider();
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError(format!("{}: {e}", ca_file.display())))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verify::CaServerVerifier::new(
            verify::Roots::Fixed(inner),
            expect,
        )))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A reqwest builder for a tool (`failoverctl`, `coordinator backup`, the lab's tools):
/// with `ca_file`, servers are checked against that CA (and `expect`), and the client
/// certificate `cert` (certificate and key files) is presented when given; without `ca_file`,
/// a plain builder for `http://` URLs.
///
/// Errors: a certificate without a CA file, or files that do not load ([`Tls::load`],
/// [`read_roots`]).
pub fn tool_client(
    ca_file: Option<&Path>,
    cert: Option<(&Path, &Path)>,
    expect: PeerRole,
) -> Result<reqwest::ClientBuilder, TlsError> {
    match (ca_file, cert) {
        (Some(ca), Some((cert, key))) => Ok(Tls::load(&TlsFiles {
            ca_file: ca.to_path_buf(),
            cert_file: cert.to_path_buf(),
            key_file: key.to_path_buf(),
        })?
        .reqwest_builder(expect)),
        (Some(ca), None) => Ok(
            reqwest::Client::builder().use_preconfigured_tls(ca_only_client_config(ca, expect)?)
        ),
        (None, Some(_)) => Err(TlsError(
            "a client certificate needs the CA file to check the server against".into(),
        )),
        (None, None) => Ok(reqwest::Client::builder()),
    }
}
