//! Fixed-size byte types used across the system, with the `0x`-hex JSON encoding that the
//! Web3Signer, Beacon and EIP-3076 formats use.
//!
//! Invariants:
//! - a [`Pubkey`] is always 48 bytes and a [`Root`] always 32 bytes; parsing rejects any other
//!   length, a missing `0x` prefix, or non-hex characters;
//! - `Display` and serde produce lowercase `0x`-hex, so two equal values always print the same;
//!   a binary serde format (`is_human_readable() == false`, the coordinators' CBOR) gets the
//!   raw bytes instead, and reads back exactly that many.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Error from parsing a `0x`-hex string into a fixed-size value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The string does not start with `0x`.
    #[error("expected a 0x-prefixed hex string")]
    MissingPrefix,
    /// A character outside `[0-9a-fA-F]`, or an odd number of digits.
    #[error("invalid hex: {0}")]
    Invalid(String),
    /// The decoded value has the wrong number of bytes.
    #[error("expected {expected} bytes, got {got}")]
    Length {
        /// Bytes the type holds.
        expected: usize,
        /// Bytes the string held.
        got: usize,
    },
}

/// Decodes a `0x`-prefixed hex string into exactly `N` bytes.
///
/// Errors: [`HexError`] for a missing prefix, bad digits or a wrong length.
pub fn decode_fixed<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let digits = s.strip_prefix("0x").ok_or(HexError::MissingPrefix)?;
    let bytes = hex::decode(digits).map_err(|e| HexError::Invalid(e.to_string()))?;
    let got = bytes.len();
    bytes
        .try_into()
        .map_err(|_| HexError::Length { expected: N, got })
}

/// Decodes a `0x`-prefixed hex string of any length.
///
/// Errors: [`HexError`] for a missing prefix or bad digits.
pub fn decode_var(s: &str) -> Result<Vec<u8>, HexError> {
    let digits = s.strip_prefix("0x").ok_or(HexError::MissingPrefix)?;
    hex::decode(digits).map_err(|e| HexError::Invalid(e.to_string()))
}

/// Encodes bytes as lowercase `0x`-hex.
pub fn encode_hex(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// Reads a fixed-size value of `N` bytes from what a format holds: a `0x`-hex string (JSON),
/// or a byte string or byte sequence of exactly `N` bytes (a binary format such as the
/// coordinators' CBOR). All three are accepted whatever the format says of itself, because
/// serde's buffered content (internally tagged enums) reports itself as human-readable even
/// when it was read from a binary format.
struct FixedBytesVisitor<const N: usize>;

impl<'de, const N: usize> serde::de::Visitor<'de> for FixedBytesVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a 0x-prefixed hex string of {N} bytes, or {N} raw bytes")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        decode_fixed::<N>(v).map_err(E::custom)
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = seq
                .next_element()?
                .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
        }
        if seq.next_element::<u8>()?.is_some() {
            return Err(serde::de::Error::invalid_length(N + 1, &self));
        }
        Ok(out)
    }
}

macro_rules! fixed_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;
            /// The all-zero value.
            pub const ZERO: Self = Self([0u8; $len]);
            /// True when every byte is zero.
            pub fn is_zero(&self) -> bool {
                self.0.iter().all(|b| *b == 0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "0x{}", hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = HexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                decode_fixed::<$len>(s).map(Self)
            }
        }

        /// `0x`-prefixed lowercase hex in a human-readable format (JSON); the raw bytes in a
        /// binary one (the coordinators' CBOR, `coordinator::codec`).
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        /// `0x`-prefixed hex, or exactly [`Self::LEN`] raw bytes (`FixedBytesVisitor`).
        /// Any other length is an error.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    d.deserialize_str(FixedBytesVisitor::<$len>).map(Self)
                } else {
                    d.deserialize_bytes(FixedBytesVisitor::<$len>).map(Self)
                }
            }
        }
    };
}

fixed_bytes!(
    /// A compressed BLS12-381 G1 public key (48 bytes): a validator's identity.
    Pubkey,
    48
);
fixed_bytes!(
    /// A 32-byte SSZ hash tree root: a signing root, block root or genesis validators root.
    Root,
    32
);
fixed_bytes!(
    /// A compressed BLS12-381 G2 signature (96 bytes).
    Signature,
    96
);
fixed_bytes!(
    /// A 4-byte fork version (consensus specs `Version`).
    Version,
    4
);

/// Serde helper for the consensus-spec convention of `uint64` values as decimal strings.
///
/// Accepts a JSON string of decimal digits (`"15"`); a bare JSON number is accepted too
/// because some clients send one. Anything else (negative, fractional, hex, empty,
/// overflowing 2^64-1) is an error.
pub mod quoted_u64 {
    use serde::{de, Deserialize, Deserializer, Serializer};

    /// Serializes as a decimal string; as an integer in a binary format
    /// (`is_human_readable() == false`).
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(v)
        } else {
            s.serialize_u64(*v)
        }
    }

    /// Deserializes from a decimal string (or a non-negative JSON integer).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            N(u64),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(n),
            Raw::S(s) => {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(de::Error::custom(format!(
                        "expected a decimal uint64 string, got {s:?}"
                    )));
                }
                s.parse::<u64>()
                    .map_err(|_| de::Error::custom(format!("uint64 out of range: {s:?}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubkey_round_trips_through_json() {
        let pk = Pubkey([0xab; 48]);
        let json = serde_json::to_string(&pk).unwrap();
        assert_eq!(json, format!("\"0x{}\"", "ab".repeat(48)));
        let back: Pubkey = serde_json::from_str(&json).unwrap();
        assert_eq!(back, pk);
    }

    #[test]
    fn rejects_wrong_length_and_missing_prefix() {
        assert_eq!(
            "0x00".parse::<Root>(),
            Err(HexError::Length {
                expected: 32,
                got: 1
            })
        );
        assert_eq!(
            "00".repeat(32).parse::<Root>(),
            Err(HexError::MissingPrefix)
        );
        assert!(matches!(
            "0xzz".parse::<Version>(),
            Err(HexError::Invalid(_))
        ));
    }

    #[test]
    fn quoted_u64_refuses_malformed_numbers() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[serde(with = "quoted_u64")]
            v: u64,
        }
        assert_eq!(serde_json::from_str::<T>(r#"{"v":"15"}"#).unwrap().v, 15);
        assert_eq!(serde_json::from_str::<T>(r#"{"v":15}"#).unwrap().v, 15);
        for bad in [
            r#"{"v":"-1"}"#,
            r#"{"v":"1.5"}"#,
            r#"{"v":"0x10"}"#,
            r#"{"v":""}"#,
            r#"{"v":"18446744073709551616"}"#,
        ] {
            assert!(serde_json::from_str::<T>(bad).is_err(), "{bad} must fail");
        }
    }
}
