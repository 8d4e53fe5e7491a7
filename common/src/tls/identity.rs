//! Who a certificate names: the one failover identity a certificate of this project carries,
//! as a URI subject alternative name (`urn:failover:node:3`, `urn:failover:agent:agent-eu`,
//! `urn:failover:operator:alice`), and the facts about a certificate the rest of the code
//! needs (expiry, SHA-256 fingerprint).
//!
//! Invariants:
//! - a certificate names at most one failover identity: one with two is refused as a whole
//!   ([`CertInfo::parse`] errors), so no certificate can act under two names;
//! - names are `[A-Za-z0-9._-]`, 1 to 64 characters, so an identity is unambiguous inside
//!   the URI and in logs.

use std::fmt;

use sha2::{Digest, Sha256};

/// Prefix of every failover identity URI.
pub const URI_PREFIX: &str = "urn:failover:";

/// The principal a certificate names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// A coordinator, by Raft node id (≥ 1).
    Node(u64),
    /// A signer agent, by agent id.
    Agent(String),
    /// An operator, by the name the coordinators' `[[operators]]` give.
    Operator(String),
}

impl Identity {
    /// The subject alternative name URI of this identity, e.g. `urn:failover:node:3`.
    pub fn uri(&self) -> String {
        match self {
            Identity::Node(id) => format!("{URI_PREFIX}node:{id}"),
            Identity::Agent(a) => format!("{URI_PREFIX}agent:{a}"),
            Identity::Operator(o) => format!("{URI_PREFIX}operator:{o}"),
        }
    }

    /// Parses a URI SAN. `None` for a URI that is not a failover identity (another scheme,
    /// another kind, node id 0 or not a number, a name outside `[A-Za-z0-9._-]{1,64}`).
    pub fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(URI_PREFIX)?;
        let (kind, name) = rest.split_once(':')?;
        match kind {
            "node" => match name.parse::<u64>() {
                Ok(id) if id >= 1 && name == id.to_string() => Some(Identity::Node(id)),
                _ => None,
            },
            "agent" if valid_name(name) => Some(Identity::Agent(name.to_string())),
            "operator" if valid_name(name) => Some(Identity::Operator(name.to_string())),
            _ => None,
        }
    }

    /// Checks that the identity can be written into a certificate.
    ///
    /// Errors: node id 0, or a name outside `[A-Za-z0-9._-]{1,64}`.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Identity::Node(0) => Err("node ids start at 1".into()),
            Identity::Node(_) => Ok(()),
            Identity::Agent(n) | Identity::Operator(n) if valid_name(n) => Ok(()),
            Identity::Agent(n) | Identity::Operator(n) => Err(format!(
                "{n:?} is not a valid name: use 1 to 64 characters of A-Z a-z 0-9 . _ -"
            )),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Node(id) => write!(f, "node {id}"),
            Identity::Agent(a) => write!(f, "agent {a}"),
            Identity::Operator(o) => write!(f, "operator {o}"),
        }
    }
}

fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What this project reads from one X.509 certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The failover identity it names, if any.
    pub identity: Option<Identity>,
    /// Its `notAfter`, Unix seconds.
    pub not_after: i64,
    /// Its `notBefore`, Unix seconds.
    pub not_before: i64,
    /// SHA-256 of its DER encoding (the fingerprint Web3Signer's known-clients file lists).
    pub fingerprint: [u8; 32],
    /// Its subject, RFC 4514 style (for messages).
    pub subject: String,
}

impl CertInfo {
    /// Parses a DER certificate.
    ///
    /// Errors: not a DER X.509 certificate, or it names more than one failover identity.
    pub fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let mut identities = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::URI(uri) = name {
                    if let Some(id) = Identity::from_uri(uri) {
                        identities.push(id);
                    }
                }
            }
        }
        if identities.len() > 1 {
            return Err(format!(
                "certificate {} names {} failover identities ({}); a certificate may name one",
                cert.subject(),
                identities.len(),
                identities
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(Self {
            identity: identities.pop(),
            not_after: cert.validity().not_after.timestamp(),
            not_before: cert.validity().not_before.timestamp(),
            fingerprint: Sha256::digest(der).into(),
            subject: cert.subject().to_string(),
        })
    }

    /// The fingerprint as 64 lowercase hex digits.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }
}

/// Parses a fingerprint written as 64 hex digits, with or without `:` between the bytes
/// (Web3Signer's known-clients file writes `DF:65:B8:…`), case-insensitive.
///
/// Errors: anything else.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let digits: String = s.trim().chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&digits)
        .map_err(|_| format!("{s:?} is not a SHA-256 fingerprint (64 hex digits)"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{s:?} is not a SHA-256 fingerprint (64 hex digits)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_their_uri() {
        for id in [
            Identity::Node(1),
            Identity::Node(u64::MAX),
            Identity::Agent("agent-eu".into()),
            Identity::Operator("alice.b_2".into()),
        ] {
            assert_eq!(Identity::from_uri(&id.uri()), Some(id.clone()));
            id.validate().unwrap();
        }
    }

    #[test]
    fn malformed_identity_uris_name_nobody() {
        for uri in [
            "urn:failover:node:0",
            "urn:failover:node:01",
            "urn:failover:node:-1",
            "urn:failover:node:18446744073709551616",
            "urn:failover:agent:",
            "urn:failover:agent:a/b",
            "urn:failover:agent:a:b",
            "urn:failover:root:x",
            "urn:other:node:1",
            "https://example.com",
        ] {
            assert_eq!(Identity::from_uri(uri), None, "{uri}");
        }
        let long = format!("urn:failover:operator:{}", "a".repeat(65));
        assert_eq!(Identity::from_uri(&long), None);
        assert!(Identity::Agent("a b".into()).validate().is_err());
        assert!(Identity::Node(0).validate().is_err());
    }

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let hex = "df65b8".to_string() + &"0".repeat(58);
        let colons = hex
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            parse_fingerprint(&hex).unwrap(),
            parse_fingerprint(&colons).unwrap()
        );
        assert!(parse_fingerprint("abc").is_err());
        assert!(parse_fingerprint(&"0".repeat(66)).is_err());
    }
}
