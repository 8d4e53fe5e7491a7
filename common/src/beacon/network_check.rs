//! Does a beacon node serve the chain a process is configured for? Compares the node's
//! `GET /eth/v1/config/spec` and `GET /eth/v1/beacon/genesis` (standard Beacon API) with a
//! configured [`ChainSpec`], genesis validators root and, where known, chain timing, field by
//! field, and names every field that differs.
//!
//! Invariants:
//! - every compared field is read from the node; one the node does not report, or reports in a
//!   shape the Beacon API does not allow, is a mismatch (`beacon` says why), never a pass;
//! - the slot length is compared in milliseconds: `SLOT_DURATION_MS` when the node reports it
//!   (newer specs), else `SECONDS_PER_SLOT` (a whole number of seconds per the spec; a decimal
//!   such as `0.5` is read exactly).

use crate::chain_time::ChainTiming;
use crate::eth::ChainSpec;
use crate::types::Root;

use super::{Genesis, SpecConstants};

/// One field on which the beacon node and the configuration disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The Beacon API name of the field (`CAPELLA_FORK_VERSION`, `genesis_validators_root`, …).
    pub field: &'static str,
    /// The configured value.
    pub configured: String,
    /// What the beacon node reports (or why it could not be read).
    pub beacon: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: configured {}, the beacon node reports {}",
            self.field, self.configured, self.beacon
        )
    }
}

/// What a process is configured to sign for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedChain {
    /// Fork versions, Deneb epoch and `SLOTS_PER_EPOCH`.
    pub spec: ChainSpec,
    /// Genesis validators root.
    pub genesis_validators_root: Root,
    /// Genesis time and slot length, when configured.
    pub timing: Option<ChainTiming>,
}

/// Slot length in ms from a spec map: `SLOT_DURATION_MS`, else `SECONDS_PER_SLOT` (integer
/// or decimal seconds). `Err` says what is wrong.
fn slot_ms(spec: &SpecConstants) -> Result<u64, String> {
    if let Ok(ms) = spec.get_u64("SLOT_DURATION_MS") {
        return Ok(ms);
    }
    let s = spec
        .get_str("SECONDS_PER_SLOT")
        .map_err(|e| e.to_string())?;
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let (whole, frac, frac_ok) = match s.split_once('.') {
        Some((w, f)) => (w, f, digits(f) && f.len() <= 3),
        None => (s, "", true),
    };
    if !digits(whole) || !frac_ok {
        return Err(format!("SECONDS_PER_SLOT {s:?} is not a number of seconds"));
    }
    let whole: u64 = whole
        .parse()
        .map_err(|_| format!("SECONDS_PER_SLOT {s:?} is out of range"))?;
    let frac_ms: u64 = format!("{frac:0<3}")
        .parse()
        .map_err(|_| format!("SECONDS_PER_SLOT {s:?} is not a number of seconds"))?;
    whole
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(frac_ms))
        .ok_or_else(|| format!("SECONDS_PER_SLOT {s:?} is out of range"))
}

/// Every field on which `spec` and `genesis` (as the node reports them) differ from
/// `expected`; empty when the node serves the configured chain.
///
/// Compared: `GENESIS_FORK_VERSION`, `CAPELLA_FORK_VERSION` (the domain of voluntary exits
/// from Deneb on, EIP-7044), `DENEB_FORK_EPOCH`, `SLOTS_PER_EPOCH`, the genesis validators
/// root, and with a configured timing the slot length (ms) and genesis time (seconds).
pub fn compare(expected: &ExpectedChain, spec: &SpecConstants, genesis: &Genesis) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut check =
        |field: &'static str, configured: String, beacon: Result<String, String>| match beacon {
            Ok(b) if b == configured => {}
            Ok(b) => out.push(Mismatch {
                field,
                configured,
                beacon: b,
            }),
            Err(why) => out.push(Mismatch {
                field,
                configured,
                beacon: format!("nothing usable ({why})"),
            }),
        };
    let s = &expected.spec;
    let version = |key: &str| {
        spec.get_version(key)
            .map(|v| v.to_string())
            .map_err(|e| e.to_string())
    };
    let number = |key: &str| {
        spec.get_u64(key)
            .map(|v| v.to_string())
            .map_err(|e| e.to_string())
    };
    for (field, configured) in [
        ("GENESIS_FORK_VERSION", s.genesis_fork_version),
        ("CAPELLA_FORK_VERSION", s.capella_fork_version),
    ] {
        check(field, configured.to_string(), version(field));
    }
    for (field, configured) in [
        ("DENEB_FORK_EPOCH", s.deneb_fork_epoch),
        ("SLOTS_PER_EPOCH", s.slots_per_epoch),
    ] {
        check(field, configured.to_string(), number(field));
    }
    check(
        "genesis_validators_root",
        expected.genesis_validators_root.to_string(),
        Ok(genesis.genesis_validators_root.to_string()),
    );
    check(
        "genesis_fork_version (genesis)",
        s.genesis_fork_version.to_string(),
        Ok(genesis.genesis_fork_version.to_string()),
    );
    if let Some(t) = expected.timing {
        check(
            "SLOT_DURATION_MS",
            t.slot_ms.to_string(),
            slot_ms(spec).map(|ms| ms.to_string()),
        );
        check(
            "genesis_time",
            (t.genesis_ms / 1000).to_string(),
            Ok(genesis.genesis_time.to_string()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Version;

    fn node_spec(pairs: &[(&str, &str)]) -> SpecConstants {
        SpecConstants(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                .collect(),
        )
    }

    fn lab_chain() -> (ExpectedChain, SpecConstants, Genesis) {
        let expected = ExpectedChain {
            spec: ChainSpec {
                name: "custom",
                genesis_fork_version: Version([0x10, 0, 0, 0x38]),
                capella_fork_version: Version([0x13, 0, 0, 0x38]),
                deneb_fork_epoch: 0,
                slots_per_epoch: 8,
            },
            genesis_validators_root: Root([4; 32]),
            timing: Some(ChainTiming {
                genesis_ms: 1_700_000_000_000,
                slot_ms: 500,
            }),
        };
        let spec = node_spec(&[
            ("GENESIS_FORK_VERSION", "0x10000038"),
            ("CAPELLA_FORK_VERSION", "0x13000038"),
            ("DENEB_FORK_EPOCH", "0"),
            ("SLOTS_PER_EPOCH", "8"),
            ("SECONDS_PER_SLOT", "0.5"),
        ]);
        let genesis = Genesis {
            genesis_time: 1_700_000_000,
            genesis_validators_root: Root([4; 32]),
            genesis_fork_version: Version([0x10, 0, 0, 0x38]),
        };
        (expected, spec, genesis)
    }

    #[test]
    fn the_same_chain_has_no_mismatch() {
        let (expected, spec, genesis) = lab_chain();
        assert_eq!(compare(&expected, &spec, &genesis), vec![]);
    }

    #[test]
    fn mainnet_constants_against_the_lab_chain_name_every_field_that_differs() {
        let (_, spec, genesis) = lab_chain();
        let mainnet = ExpectedChain {
            spec: ChainSpec::mainnet(),
            genesis_validators_root: Root([4; 32]),
            timing: Some(ChainTiming::of_network(crate::eth::Network::Mainnet)),
        };
        let fields: Vec<&str> = compare(&mainnet, &spec, &genesis)
            .iter()
            .map(|m| m.field)
            .collect();
        assert_eq!(
            fields,
            [
                "GENESIS_FORK_VERSION",
                "CAPELLA_FORK_VERSION",
                "DENEB_FORK_EPOCH",
                "SLOTS_PER_EPOCH",
                "genesis_fork_version (genesis)",
                "SLOT_DURATION_MS",
                "genesis_time"
            ]
        );
        let deneb = &compare(&mainnet, &spec, &genesis)[2];
        assert_eq!(
            deneb.to_string(),
            "DENEB_FORK_EPOCH: configured 269568, the beacon node reports 0"
        );
    }

    #[test]
    fn a_missing_or_malformed_field_is_a_mismatch_not_a_pass() {
        let (expected, _, genesis) = lab_chain();
        let spec = node_spec(&[
            ("GENESIS_FORK_VERSION", "0x10000038"),
            ("CAPELLA_FORK_VERSION", "0x1300"),
            ("SLOTS_PER_EPOCH", "8"),
            ("SECONDS_PER_SLOT", "half"),
        ]);
        let found = compare(&expected, &spec, &genesis);
        let fields: Vec<&str> = found.iter().map(|m| m.field).collect();
        assert_eq!(
            fields,
            [
                "CAPELLA_FORK_VERSION",
                "DENEB_FORK_EPOCH",
                "SLOT_DURATION_MS"
            ]
        );
        assert!(found[1].beacon.contains("missing"), "{}", found[1]);
    }

    #[test]
    fn slot_lengths_read_exactly() {
        let ms = |pairs: &[(&str, &str)]| slot_ms(&node_spec(pairs));
        assert_eq!(ms(&[("SECONDS_PER_SLOT", "12")]), Ok(12_000));
        assert_eq!(ms(&[("SECONDS_PER_SLOT", "0.5")]), Ok(500));
        assert_eq!(ms(&[("SECONDS_PER_SLOT", "1.25")]), Ok(1_250));
        assert_eq!(
            ms(&[("SECONDS_PER_SLOT", "12"), ("SLOT_DURATION_MS", "6000")]),
            Ok(6_000)
        );
        for bad in [
            "",
            ".5",
            "1.",
            "1.2345",
            "-1",
            "1e3",
            "18446744073709551615",
        ] {
            assert!(ms(&[("SECONDS_PER_SLOT", bad)]).is_err(), "{bad:?}");
        }
    }
}
