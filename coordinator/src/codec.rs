//! The coordinators' internal encoding: Raft log entries and snapshots on disk, Raft RPC
//! bodies (`/raft/append`, `/raft/vote`, `/raft/snapshot`) and writes a follower forwards to
//! the leader (`/internal/v1/write`). The public APIs (operators, agents, backups) stay JSON.
//!
//! # Format
//!
//! An encoded value is an envelope: the byte [`MAGIC`] (`0xCB`), one version byte
//! ([`VERSION`], now 1), then the value as CBOR (RFC 8949, through `ciborium`). Version 1 is
//! serde's data model in CBOR with `is_human_readable() == false`, so fixed-size byte values
//! (pubkeys, roots, signatures: `failover_common::types`) are CBOR byte strings and
//! consensus `uint64`s (`quoted_u64`) are CBOR integers, not hex or decimal text as in JSON.
//!
//! CBOR rather than a schema-less format such as postcard: CBOR names its fields, so the
//! replicated types keep the evolution rules they have in JSON (a new field with
//! `#[serde(default)]`, internally tagged commands, skipped empty fields), and a replica
//! decodes entries written by an older release without a per-version schema.
//!
//! # Invariants
//!
//! - Decoding never panics and allocates at most in proportion to the input: every failure is
//!   a [`CodecError`] that names what was wrong (empty, an unknown envelope, a newer version,
//!   malformed CBOR or JSON).
//! - JSON stays readable: a value that starts with `{` or `[` (after ASCII whitespace) is
//!   decoded as JSON. Log entries and snapshots written before version 1 are JSON, and so are
//!   RPC bodies from tools and tests; [`decode`] tells the two apart by the first byte,
//!   because a JSON document never starts with `0xCB`.
//! - A receiver answers in the format of the request ([`Format::of`]), so an older peer that
//!   sends JSON gets JSON back.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// First byte of an encoded value (`0xCB`, "CBor"). Never the first byte of a JSON document.
pub const MAGIC: u8 = 0xCB;

/// The envelope version this build writes, and the newest it reads.
pub const VERSION: u8 = 1;

/// `Content-Type` of a version-1 body on the internal routes.
pub const MEDIA_TYPE: &str = "application/vnd.failover.internal+cbor; v=1";

/// Why bytes do not decode. Nothing is applied or answered from them.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Zero bytes.
    #[error("empty value: expected a 0xCB envelope or a JSON document")]
    Empty,
    /// The first byte is neither [`MAGIC`] nor the start of a JSON document.
    #[error("unknown encoding: first byte 0x{0:02x} is neither 0xCB (CBOR envelope) nor JSON")]
    UnknownFormat(u8),
    /// The envelope ends after its magic byte.
    #[error("truncated envelope: 0xCB without a version byte")]
    Truncated,
    /// An envelope of another version (written by a newer release, or corrupt).
    #[error("envelope version {0} is not supported; this build reads versions 1..={VERSION}")]
    UnsupportedVersion(u8),
    /// The CBOR does not decode as the expected type.
    #[error("malformed CBOR: {0}")]
    Cbor(String),
    /// The JSON does not decode as the expected type.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The value cannot be encoded (a serde `Serialize` implementation refused it).
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// The two encodings a coordinator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The versioned CBOR envelope ([`encode`]).
    Cbor,
    /// Plain JSON (pre-version-1 data, tools, tests).
    Json,
}

impl Format {
    /// The format of `bytes`, by their first byte.
    ///
    /// Errors: [`CodecError::Empty`], [`CodecError::UnknownFormat`].
    pub fn of(bytes: &[u8]) -> Result<Self, CodecError> {
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None if bytes.is_empty() => Err(CodecError::Empty),
            None => Err(CodecError::UnknownFormat(bytes[0])),
            Some(&MAGIC) if bytes[0] == MAGIC => Ok(Self::Cbor),
            Some(b'{' | b'[') => Ok(Self::Json),
            Some(&b) => Err(CodecError::UnknownFormat(b)),
        }
    }

    /// Encodes `value` in this format.
    ///
    /// Errors: [`CodecError::Encode`] / [`CodecError::Json`] when serde refuses the value.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        match self {
            Self::Cbor => encode(value),
            Self::Json => Ok(serde_json::to_vec(value)?),
        }
    }

    /// The `Content-Type` of a body in this format.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Cbor => MEDIA_TYPE,
            Self::Json => "application/json",
        }
    }
}

/// Encodes `value` as a version-[`VERSION`] envelope.
///
/// Errors: [`CodecError::Encode`] when serde refuses the value (a map with non-string keys is
/// fine in CBOR; a failing custom `Serialize` is not).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    out.push(MAGIC);
    out.push(VERSION);
    ciborium::into_writer(value, &mut out).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a value written by [`encode`] (any version up to [`VERSION`]) or as JSON.
///
/// Errors: every [`CodecError`] but `Encode`; trailing bytes after the value are malformed.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match Format::of(bytes)? {
        Format::Json => Ok(serde_json::from_slice(bytes)?),
        Format::Cbor => {
            let version = *bytes.get(1).ok_or(CodecError::Truncated)?;
            if version == 0 || version > VERSION {
                return Err(CodecError::UnsupportedVersion(version));
            }
            let mut body = &bytes[2..];
            let value = ciborium::from_reader(&mut body).map_err(|e| match e {
                ciborium::de::Error::Io(_) => {
                    CodecError::Cbor("the value ends before it is complete".into())
                }
                other => CodecError::Cbor(other.to_string()),
            })?;
            if !body.is_empty() {
                return Err(CodecError::Cbor(format!(
                    "{} bytes after the end of the value",
                    body.len()
                )));
            }
            Ok(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_common::types::{Pubkey, Root};
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "cmd", rename_all = "snake_case")]
    enum Tagged {
        Record {
            pubkey: Pubkey,
            root: Root,
            #[serde(with = "failover_common::types::quoted_u64")]
            slot: u64,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            note: Option<String>,
        },
        Other {
            text: String,
        },
    }

    fn record(note: Option<String>) -> Tagged {
        Tagged::Record {
            pubkey: Pubkey([0xab; 48]),
            root: Root([7; 32]),
            slot: u64::MAX,
            note,
        }
    }

    #[test]
    fn the_envelope_round_trips_what_json_does_and_is_smaller() {
        for v in [
            record(None),
            record(Some("x".repeat(10_000))),
            Tagged::Other {
                text: String::new(),
            },
        ] {
            let cbor = encode(&v).unwrap();
            assert_eq!(&cbor[..2], &[MAGIC, VERSION]);
            assert_eq!(decode::<Tagged>(&cbor).unwrap(), v);
            let json = serde_json::to_vec(&v).unwrap();
            assert_eq!(decode::<Tagged>(&json).unwrap(), v);
            assert!(cbor.len() < json.len(), "{} vs {}", cbor.len(), json.len());
        }
        // Byte values are raw bytes: 48 + 32 bytes of key material in a body of 124.
        let small = encode(&record(None)).unwrap();
        assert!(small.len() < 130, "{}", small.len());
        assert!(small.windows(48).any(|w| w == [0xab; 48]));
    }

    #[test]
    fn json_from_before_version_1_still_decodes() {
        let json = br#" {"cmd":"record","pubkey":"0xabababababababababababababababababababababababababababababababababababababababababababababababab","root":"0x0707070707070707070707070707070707070707070707070707070707070707","slot":"18446744073709551615"}"#;
        assert_eq!(decode::<Tagged>(json).unwrap(), record(None));
    }

    #[test]
    fn bad_bytes_get_named_errors() {
        let good = encode(&record(None)).unwrap();
        let err = |b: &[u8]| decode::<Tagged>(b).unwrap_err().to_string();
        assert!(err(b"").contains("empty"));
        assert!(err(b"   ").contains("unknown encoding"));
        assert!(err(&[MAGIC]).contains("truncated envelope"));
        assert!(err(&[MAGIC, 2, 0xa0]).contains("version 2 is not supported"));
        assert!(err(&[MAGIC, 0, 0xa0]).contains("version 0 is not supported"));
        assert!(err(b"\x00\x01").contains("first byte 0x00"));
        assert!(err(&good[..good.len() - 1]).contains("ends before"));
        let mut long = good.clone();
        long.push(0);
        assert!(
            err(&long).contains("1 bytes after the end"),
            "{}",
            err(&long)
        );
        // A pubkey of the wrong length is refused, not truncated or padded.
        let mut short = vec![MAGIC, VERSION];
        ciborium::into_writer(
            &serde_json::json!({"cmd": "record", "pubkey": serde_bytes_like(47), "root": serde_bytes_like(32), "slot": 1}),
            &mut short,
        )
        .unwrap();
        assert!(err(&short).contains("malformed CBOR"), "{}", err(&short));
    }

    /// A JSON array of `n` small numbers: decodes as a byte sequence of length `n`.
    fn serde_bytes_like(n: usize) -> serde_json::Value {
        serde_json::Value::Array(vec![serde_json::Value::from(1u8); n])
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Tagged>(&bytes);
            let mut enveloped = vec![MAGIC, VERSION];
            enveloped.extend(&bytes);
            let _ = decode::<Tagged>(&enveloped);
        }

        #[test]
        fn a_flipped_byte_never_panics(i in 2usize..120, b in any::<u8>()) {
            let mut v = encode(&record(Some("note".into()))).unwrap();
            let i = i % v.len();
            v[i] = b;
            let _ = decode::<Tagged>(&v);
        }
    }
}
