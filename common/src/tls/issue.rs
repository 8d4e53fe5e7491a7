//! A small certificate authority for a lab or a small deployment (`coordinator certs`), built
//! on `rcgen`: a self-signed cluster CA, and node, agent and operator certificates signed by
//! it. A deployment with a PKI of its own (step-ca, Vault PKI, cert-manager) issues the same
//! shapes there instead (docs/tls.md).
//!
//! Shapes (every key ECDSA P-256 with SHA-256):
//! - the CA: `CA:TRUE, pathlen 0`, key usages `keyCertSign`, `cRLSign`, `digitalSignature`;
//! - a node certificate: the URI SAN `urn:failover:node:<id>`, the DNS and IP SANs the node is
//!   dialled at, EKU `serverAuth` and `clientAuth` (a node serves and dials its peers);
//! - an agent certificate: `urn:failover:agent:<id>`, the agent's hosts, `clientAuth` (to the
//!   coordinators) and `serverAuth` (its Web3Signer and keymanager API);
//! - an operator certificate: `urn:failover:operator:<name>`, `clientAuth` only;
//! - a plain server certificate (no identity) for a listener such as a beacon simulator
//!   (`serverAuth` and `clientAuth`).
//!
//! Invariants: a key file is written mode 0600 before any byte of the key goes into it
//! ([`crate::secret_file`]); validity starts one hour in the past (clock skew between hosts).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use super::identity::{CertInfo, Identity};

/// A certificate and its private key, PEM.
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its PKCS#8 private key, PEM (secret).
    pub key_pem: String,
    /// What the certificate says.
    pub info: CertInfo,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The kind of leaf certificate, which fixes its extended key usages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafKind {
    /// A coordinator: `serverAuth` and `clientAuth`, named by its node id.
    Node(u64),
    /// A signer agent: `serverAuth` and `clientAuth`, named by its agent id.
    Agent(String),
    /// An operator: `clientAuth` only, named by the operator's configured name.
    Operator(String),
    /// A server without a failover identity (a beacon node, a lab tool): `serverAuth`, and
    /// `clientAuth` so that [`super::Tls::load`] can check it against its CA like every other
    /// certificate of this project (it names nobody, so as a client it is anonymous).
    Server,
    /// A client without a failover identity (a validator client of an agent's Web3Signer
    /// API): `clientAuth` only.
    Client,
}

impl LeafKind {
    /// The failover identity a certificate of this kind names.
    pub fn identity(&self) -> Option<Identity> {
        match self {
            LeafKind::Node(id) => Some(Identity::Node(*id)),
            LeafKind::Agent(a) => Some(Identity::Agent(a.clone())),
            LeafKind::Operator(o) => Some(Identity::Operator(o.clone())),
            LeafKind::Server | LeafKind::Client => None,
        }
    }
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// Identity and key usages.
    pub kind: LeafKind,
    /// DNS names and IP addresses the holder is reached at (server certificates).
    pub hosts: Vec<String>,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

impl LeafSpec {
    /// A certificate valid from an hour ago for `days` days.
    pub fn for_days(kind: LeafKind, hosts: Vec<String>, days: u32) -> Self {
        let now = now_unix();
        Self {
            kind,
            hosts,
            not_before: now - 3600,
            not_after: now + i64::from(days) * 86_400,
        }
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn datetime(unix: i64) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| format!("{unix} is not a usable time: {e}"))
}

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn finish(cert: rcgen::Certificate, key: &KeyPair) -> Result<Issued, String> {
    Ok(Issued {
        info: CertInfo::parse(cert.der())?,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Creates a self-signed CA named `common_name`, valid from an hour ago for `days` days.
///
/// Errors: key generation or encoding failed (a bug or a broken platform), as one line.
pub fn new_ca(common_name: &str, days: u32) -> Result<Issued, String> {
    let key = KeyPair::generate().map_err(|e| format!("generate the CA key: {e}"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "failover coordinator");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = now_unix();
    params.not_before = datetime(now - 3600)?;
    params.not_after = datetime(now + i64::from(days) * 86_400)?;
    params.serial_number = Some(serial());
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("self-sign the CA: {e}"))?;
    finish(cert, &key)
}

/// Issues a leaf certificate under the CA given as PEM (`ca_cert_pem`, `ca_key_pem`).
///
/// Errors: the CA certificate or key does not parse, the identity name is invalid
/// ([`Identity::validate`]), a host is neither an IP address nor a DNS name, or the validity
/// is empty or out of range.
pub fn issue(ca_cert_pem: &str, ca_key_pem: &str, spec: &LeafSpec) -> Result<Issued, String> {
    let ca_key =
        KeyPair::from_pem(ca_key_pem).map_err(|e| format!("the CA key does not parse: {e}"))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)
        .map_err(|e| format!("the CA certificate does not parse: {e}"))?;
    if spec.not_after <= spec.not_before {
        return Err("the certificate's validity is empty (not_after ≤ not_before)".into());
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let identity = spec.kind.identity();
    let cn = match (&identity, spec.hosts.first()) {
        (Some(id), _) => id.to_string(),
        (None, Some(h)) => h.clone(),
        (None, None) => "failover client".to_string(),
    };
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "failover coordinator");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match spec.kind {
        LeafKind::Node(_) | LeafKind::Agent(_) | LeafKind::Server => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        LeafKind::Operator(_) | LeafKind::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    if let Some(id) = &identity {
        id.validate()?;
        params.subject_alt_names.push(SanType::URI(
            id.uri()
                .try_into()
                .map_err(|e| format!("identity URI: {e}"))?,
        ));
    }
    for host in &spec.hosts {
        let san =
            match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.clone().try_into().map_err(|e| {
                    format!("{host:?} is neither an IP address nor a DNS name: {e}")
                })?),
            };
        params.subject_alt_names.push(san);
    }
    params.not_before = datetime(spec.not_before)?;
    params.not_after = datetime(spec.not_after)?;
    params.serial_number = Some(serial());
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(|e| format!("generate a key: {e}"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| format!("sign the certificate: {e}"))?;
    finish(cert, &key)
}

/// Where [`write_pair`] put a certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenPair {
    /// `<dir>/<name>.pem`, mode 0644.
    pub cert: PathBuf,
    /// `<dir>/<name>-key.pem`, mode 0600.
    pub key: PathBuf,
}

/// Writes `issued` as `<dir>/<name>.pem` (readable by all) and `<dir>/<name>-key.pem` (owner
/// only), creating `dir`. Refuses to overwrite an existing key, so a CA is never replaced by
/// accident.
///
/// Errors: the key file exists, or a file cannot be written (the path is named).
pub fn write_pair(dir: &Path, name: &str, issued: &Issued) -> Result<WrittenPair, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    if key.exists() {
        return Err(format!(
            "{} exists; remove it first if you mean to replace this key",
            key.display()
        ));
    }
    crate::secret_file::write_private(&key, &issued.key_pem)
        .map_err(|e| format!("write {}: {e}", key.display()))?;
    std::fs::write(&cert, &issued.cert_pem)
        .map_err(|e| format!("write {}: {e}", cert.display()))?;
    Ok(WrittenPair { cert, key })
}

/// A CA kept in a directory (`ca.pem`, `ca-key.pem`) that issues certificates into the same
/// directory: what `coordinator certs` does from the command line, for the lab and tests.
pub struct DirCa {
    dir: PathBuf,
    ca: Issued,
}

impl std::fmt::Debug for DirCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirCa").field("dir", &self.dir).finish()
    }
}

impl DirCa {
    /// Creates a CA named `name`, valid for `days` days, in `dir`.
    ///
    /// Errors: as [`new_ca`] and [`write_pair`] (an existing CA key is never overwritten).
    pub fn create(dir: &Path, name: &str, days: u32) -> Result<Self, String> {
        let ca = new_ca(name, days)?;
        write_pair(dir, "ca", &ca)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            ca,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues `spec` as `<stem>.pem` and `<stem>-key.pem` and returns the files a process
    /// uses with it (this CA as its `ca_file`).
    ///
    /// Errors: as [`issue`] and [`write_pair`].
    pub fn issue(&self, stem: &str, spec: &LeafSpec) -> Result<super::TlsFiles, String> {
        let leaf = issue(&self.ca.cert_pem, &self.ca.key_pem, spec)?;
        let w = write_pair(&self.dir, stem, &leaf)?;
        Ok(super::TlsFiles {
            ca_file: self.ca_file(),
            cert_file: w.cert,
            key_file: w.key,
        })
    }

    /// Issues `spec` again as `<stem>.pem` and `<stem>-key.pem`, replacing the files in
    /// place (certificate rotation): both are written to temporary files first and renamed
    /// over the old ones, key first, so a reader sees either the old pair, the new pair, or a
    /// new key with the old certificate, which [`super::Tls::reload`] refuses as a mismatch
    /// (the material in force stays).
    ///
    /// Errors: as [`issue`], or a file cannot be written or renamed.
    pub fn reissue(&self, stem: &str, spec: &LeafSpec) -> Result<super::TlsFiles, String> {
        let leaf = issue(&self.ca.cert_pem, &self.ca.key_pem, spec)?;
        let staging = self.dir.join(format!(".{stem}.new"));
        let _ = std::fs::remove_dir_all(&staging);
        let w = write_pair(&staging, stem, &leaf)?;
        let key = self.dir.join(format!("{stem}-key.pem"));
        let cert = self.dir.join(format!("{stem}.pem"));
        for (from, to) in [(&w.key, &key), (&w.cert, &cert)] {
            std::fs::rename(from, to)
                .map_err(|e| format!("rename {} to {}: {e}", from.display(), to.display()))?;
        }
        let _ = std::fs::remove_dir(&staging);
        Ok(super::TlsFiles {
            ca_file: self.ca_file(),
            cert_file: cert,
            key_file: key,
        })
    }

    /// Issues a certificate of `kind` for 127.0.0.1 and localhost, valid for `days` days.
    ///
    /// Errors: as [`DirCa::issue`].
    pub fn issue_local(
        &self,
        stem: &str,
        kind: LeafKind,
        days: u32,
    ) -> Result<super::TlsFiles, String> {
        let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        self.issue(stem, &LeafSpec::for_days(kind, hosts, days))
    }
}
