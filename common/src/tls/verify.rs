//! The rustls hooks that read the material in force at each handshake: the certificate
//! resolver for both sides, the server verifier that also checks the peer's role, and the
//! client verifier over the cluster CA.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{CertInfo, Identity, PeerRole, Tls};

/// Presents the certificate in force, as server and as client.
#[derive(Debug)]
pub(super) struct CurrentCert(pub(super) Arc<Tls>);

impl rustls::server::ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }
}

impl rustls::client::ResolvesClientCert for CurrentCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// The reason a certificate that chained to the CA is still refused.
#[derive(Debug)]
struct WrongRole(String);

impl std::fmt::Display for WrongRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WrongRole {}

fn refuse(message: String) -> Error {
    Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(WrongRole(message)),
    )))
}

/// Where a server verifier takes its CA from.
#[derive(Debug)]
pub(super) enum Roots {
    /// The material in force of a reloadable [`Tls`].
    Live(Arc<Tls>),
    /// A CA read once (a tool without a certificate of its own).
    Fixed(Arc<WebPkiServerVerifier>),
}

/// Checks a server: chains to the CA in force and matches the host (webpki), and names a
/// coordinator when `expect` is [`PeerRole::Node`].
#[derive(Debug)]
pub(super) struct CaServerVerifier {
    roots: Roots,
    expect: PeerRole,
}

impl CaServerVerifier {
    pub(super) fn new(roots: Roots, expect: PeerRole) -> Self {
        Self { roots, expect }
    }
    fn inner(&self) -> Arc<WebPkiServerVerifier> {
        match &self.roots {
            Roots::Live(tls) => tls.material().server_verifier.clone(),
            Roots::Fixed(v) => v.clone(),
        }
    }
}

impl ServerCertVerifier for CaServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let ok =
            self.inner()
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        if self.expect == PeerRole::Node {
            let info = CertInfo::parse(end_entity).map_err(refuse)?;
            match info.identity {
                Some(Identity::Node(_)) => {}
                other => {
                    return Err(refuse(format!(
                        "the server at {} is not a coordinator: its certificate ({}) names {}",
                        server_name.to_str(),
                        info.subject,
                        super::show(other.as_ref())
                    )))
                }
            }
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner().supported_verify_schemes()
    }
}

/// Handshake-signature checks with a provider's algorithms, for the client verifiers of this
/// module and of [`super::allowlist`].
pub(super) struct Signatures<'a>(pub(super) &'a rustls::crypto::CryptoProvider);

impl Signatures<'_> {
    pub(super) fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    pub(super) fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    pub(super) fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks a client certificate against the CA in force; `mandatory` refuses a handshake
/// without one. A certificate naming two identities is refused ([`CertInfo::parse`]).
#[derive(Debug)]
pub(super) struct CaClientVerifier {
    tls: Arc<Tls>,
    mandatory: bool,
}

impl CaClientVerifier {
    pub(super) fn new(tls: Arc<Tls>, mandatory: bool) -> Self {
        Self { tls, mandatory }
    }
}

impl ClientCertVerifier for CaClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would have to borrow the material in force, which a reload replaces;
        // clients of this project send their one certificate without them.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let ok = self.tls.material().client_verifier.verify_client_cert(
            end_entity,
            intermediates,
            now,
        )?;
        CertInfo::parse(end_entity).map_err(refuse)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Signatures(&self.tls.provider).tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Signatures(&self.tls.provider).tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        Signatures(&self.tls.provider).schemes()
    }
}
