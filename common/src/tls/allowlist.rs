//! Which validator clients may use an agent's Web3Signer API over TLS: clients whose
//! certificate chains to a CA of their own (`client_ca_file`), or clients listed by
//! certificate fingerprint in a known-clients file, in the format of Web3Signer's
//! `--tls-known-clients-file`: one `<name> <SHA-256 fingerprint>` per line, the fingerprint
//! as 64 hex digits with or without `:` between bytes, `#` comments and blank lines ignored.
//!
//! Invariants:
//! - a client certificate is required: the handshake fails without one;
//! - a certificate is accepted only when its fingerprint is listed or it chains to the
//!   client CA in force; the handshake signature is checked with the certificate's key in
//!   both cases, so a listed fingerprint cannot be used without the matching private key;
//! - reload ([`AllowList::reload`]) replaces the whole list at once, and keeps the old one
//!   when the new files do not load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};

use super::{parse_fingerprint, read_roots, CertInfo, TlsError};

/// The allowlist's files, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowListFiles {
    /// PEM file of a CA whose client certificates are accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// Known-clients file (Web3Signer format): `<name> <SHA-256 fingerprint>` per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_clients_file: Option<PathBuf>,
}

struct Loaded {
    ca: Option<Arc<dyn ClientCertVerifier>>,
    known: HashMap<[u8; 32], String>,
}

/// A client-certificate allowlist, reloadable while it runs; use it as
/// [`super::ClientAuth::Verifier`].
pub struct AllowList {
    files: AllowListFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for AllowList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllowList")
            .field("files", &self.files)
            .field("known_clients", &self.known_clients())
            .finish()
    }
}

/// Parses a known-clients file's text; `path` names it in errors.
///
/// Errors: a line that is not `<name> <fingerprint>` (its number is given), or the same
/// fingerprint listed twice.
pub fn parse_known_clients(text: &str, path: &Path) -> Result<HashMap<[u8; 32], String>, TlsError> {
    let mut known = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, fp] = fields[..] else {
            return Err(TlsError(format!(
                "{} line {}: expected `<name> <SHA-256 fingerprint>`, got {} field(s)",
                path.display(),
                n + 1,
                fields.len()
            )));
        };
        let fp = parse_fingerprint(fp)
            .map_err(|e| TlsError(format!("{} line {}: {e}", path.display(), n + 1)))?;
        if let Some(prev) = known.insert(fp, name.to_string()) {
            return Err(TlsError(format!(
                "{} line {}: this fingerprint is already listed as {prev:?}",
                path.display(),
                n + 1
            )));
        }
    }
    Ok(known)
}

impl Loaded {
    fn load(files: &AllowListFiles, provider: &Arc<CryptoProvider>) -> Result<Self, TlsError> {
        if files.client_ca_file.is_none() && files.known_clients_file.is_none() {
            return Err(TlsError(
                "a client allowlist needs client_ca_file, known_clients_file, or both".into(),
            ));
        }
        let ca = match &files.client_ca_file {
            None => None,
            Some(path) => {
                let (roots, _) = read_roots(path)?;
                Some(
                    rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| TlsError(format!("{}: {e}", path.display())))?,
                )
            }
        };
        let known = match &files.known_clients_file {
            None => HashMap::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| TlsError(format!("cannot read {}: {e}", path.display())))?;
                parse_known_clients(&text, path)?
            }
        };
        Ok(Self { ca, known })
    }
}

impl AllowList {
    /// Loads the allowlist.
    ///
    /// Errors: neither file configured, an unreadable or malformed file (named).
    pub fn load(files: &AllowListFiles) -> Result<Arc<Self>, TlsError> {
        let provider = super::provider();
        let loaded = Loaded::load(files, &provider)?;
        Ok(Arc::new(Self {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(loaded)),
        }))
    }

    /// Reads the files again and puts the new list in force.
    ///
    /// Errors: as [`AllowList::load`]; the old list then stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = Loaded::load(&self.files, &self.provider)?;
        *self.current.write().expect("allowlist lock") = Arc::new(loaded);
        Ok(())
    }

    /// The names in the known-clients list in force, sorted.
    pub fn known_clients(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .current
            .read()
            .expect("allowlist lock")
            .known
            .values()
            .cloned()
            .collect();
        names.sort();
        names
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.current.read().expect("allowlist lock").clone()
    }
}

impl ClientCertVerifier for AllowList {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let loaded = self.loaded();
        let info = CertInfo::parse(end_entity)
            .map_err(|_| Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        if loaded.known.contains_key(&info.fingerprint) {
            let now = now.as_secs() as i64;
            if info.not_before > now || info.not_after <= now {
                return Err(Error::InvalidCertificate(rustls::CertificateError::Expired));
            }
            return Ok(ClientCertVerified::assertion());
        }
        match &loaded.ca {
            Some(ca) => ca.verify_client_cert(end_entity, intermediates, now),
            None => Err(Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        super::verify::Signatures(&self.provider).tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        super::verify::Signatures(&self.provider).tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        super::verify::Signatures(&self.provider).schemes()
    }
}
