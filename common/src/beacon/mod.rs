//! Beacon API client for the handover finality gate (DESIGN.md "Handover", step 2).
//!
//! Layout: `types` (the response types), `ids` (state and block identifiers), `agreement`
//! (observations and [`agree`]), `client` ([`BeaconClient`]).
//!
//! Two layers:
//! - serde types for the standard Beacon API responses the system reads or serves
//!   (`ethereum/beacon-APIs`, see `shared/vectors/README.md` §5): finality checkpoints, syncing
//!   status, genesis, fork, chain spec, block header, node version, and the error body;
//! - [`BeaconClient`], which asks every configured beacon node for its syncing status, its
//!   genesis and its head finality checkpoints, and turns each answer into a
//!   [`BeaconObservation`]; and [`agree`], which reduces a set of observations to the finalized
//!   checkpoint that enough nodes vouch for.
//!
//! Invariants:
//! - every Beacon API integer (`uint64`) is a decimal string on the wire, in both directions
//!   (via [`crate::types::quoted_u64`]); roots and versions are `0x`-hex of exactly 32 and 4 bytes;
//! - a [`BeaconObservation`] is plain data (no clock, no handle): the leader proposes it into the
//!   Raft log as finality evidence and every replica applies the same bytes;
//! - only [`ObservationStatus::Usable`] observations count towards [`agree`]. A node that is
//!   syncing, optimistic, on another chain (different genesis validators root) or that failed
//!   to answer in time never counts (DESIGN.md, Handover step 2);
//! - [`agree`] depends only on the multiset of its inputs, never on their order, and fails
//!   closed: too few usable nodes gives `None`.

#![warn(missing_docs)]

mod agreement;
mod client;
mod ids;
pub mod network_check;
mod types;

pub use agreement::*;
pub use client::*;
pub use ids::*;
pub use types::*;

/// Path of the head finality checkpoints query (Beacon API `getStateFinalityCheckpoints`).
pub const PATH_FINALITY_CHECKPOINTS_HEAD: &str = "/eth/v1/beacon/states/head/finality_checkpoints";
/// Path of the syncing status query (Beacon API `getSyncingStatus`).
pub const PATH_SYNCING: &str = "/eth/v1/node/syncing";
/// Path of the genesis query (Beacon API `getGenesis`).
pub const PATH_GENESIS: &str = "/eth/v1/beacon/genesis";
/// Path of the chain spec query (Beacon API `getSpec`).
pub const PATH_SPEC: &str = "/eth/v1/config/spec";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Root, Version};
    use client::classify;
    use std::time::Duration;

    fn root(b: u8) -> Root {
        Root([b; 32])
    }

    fn obs(url: &str, status: ObservationStatus, epoch: u64) -> BeaconObservation {
        BeaconObservation {
            url: url.to_string(),
            status,
            finalized: Some(CheckpointObs {
                epoch,
                root: root(epoch as u8 + 1),
            }),
        }
    }

    fn usable(url: &str, epoch: u64) -> BeaconObservation {
        obs(url, ObservationStatus::Usable, epoch)
    }

    #[test]
    fn two_of_three_agree_on_lower_epoch() {
        let o = [usable("a", 10), usable("b", 8), usable("c", 5)];
        assert_eq!(agree(&o, 2), o[1].finalized);
        assert_eq!(agree(&o, 1), o[0].finalized);
        assert_eq!(agree(&o, 3), o[2].finalized);
    }

    #[test]
    fn nodes_finalizing_different_roots_for_one_epoch_block_agreement() {
        let mut forked = usable("b", 10);
        forked.finalized = Some(CheckpointObs {
            epoch: 10,
            root: root(99),
        });
        let o = [usable("a", 10), forked, usable("c", 12)];
        assert!(conflicting_finality(&o).is_some());
        assert_eq!(
            agree(&o, 1),
            None,
            "a fork between beacon nodes must fail closed"
        );
        assert_eq!(agree(&o, 2), None);
        // the same epoch and root from two nodes is agreement, not a conflict
        let o = [usable("a", 10), usable("b", 10)];
        assert!(conflicting_finality(&o).is_none());
        assert_eq!(agree(&o, 2), o[0].finalized);
    }

    #[test]
    fn syncing_node_does_not_count() {
        let o = [
            usable("a", 10),
            obs("b", ObservationStatus::Syncing { sync_distance: 3 }, 12),
        ];
        assert_eq!(agree(&o, 2), None);
        assert_eq!(agree(&o, 1), o[0].finalized);
    }

    #[test]
    fn wrong_genesis_node_does_not_count() {
        let o = [
            usable("a", 10),
            obs("b", ObservationStatus::WrongGenesis { got: root(9) }, 50),
        ];
        assert_eq!(agree(&o, 2), None);
        assert_eq!(agree(&o, 1), o[0].finalized);
    }

    #[test]
    fn optimistic_node_does_not_count() {
        let o = [usable("a", 10), obs("b", ObservationStatus::Optimistic, 50)];
        assert_eq!(agree(&o, 2), None);
        assert_eq!(agree(&o, 1), o[0].finalized);
    }

    #[test]
    fn errored_node_does_not_count() {
        let mut failed = obs(
            "b",
            ObservationStatus::Error {
                message: "syncing: HTTP 500: boom".into(),
            },
            50,
        );
        let o = [usable("a", 10), failed.clone()];
        assert_eq!(agree(&o, 2), None);
        failed.finalized = None;
        assert_eq!(
            agree(&[usable("a", 10), failed], 1),
            Some(o[0].finalized.unwrap())
        );
    }

    #[test]
    fn fewer_usable_nodes_than_required_gives_none() {
        assert_eq!(agree(&[], 1), None);
        assert_eq!(agree(&[usable("a", 3), usable("b", 4)], 3), None);
    }

    #[test]
    fn zero_required_agreement_gives_none() {
        assert_eq!(agree(&[usable("a", 3)], 0), None);
    }

    #[test]
    fn result_does_not_depend_on_observation_order() {
        let o = vec![
            usable("a", 7),
            usable("b", 9),
            obs("x", ObservationStatus::Syncing { sync_distance: 1 }, 100),
            usable("c", 4),
            usable("d", 9),
        ];
        let expected: Vec<_> = (1..=4).map(|k| agree(&o, k)).collect();
        let mut rev = o.clone();
        rev.reverse();
        let mut rot = o.clone();
        rot.rotate_left(2);
        for perm in [rev, rot] {
            let got: Vec<_> = (1..=4).map(|k| agree(&perm, k)).collect();
            assert_eq!(got, expected);
        }
        assert_eq!(expected[1].map(|c| c.epoch), Some(9), "two nodes at 9");
        assert_eq!(expected[2].map(|c| c.epoch), Some(7));
    }

    fn genesis(r: Root) -> Result<Genesis, BeaconError> {
        Ok(Genesis {
            genesis_time: 1_600_000_000,
            genesis_validators_root: r,
            genesis_fork_version: Version([0; 4]),
        })
    }

    fn synced() -> Result<SyncingStatus, BeaconError> {
        Ok(SyncingStatus {
            head_slot: 100,
            sync_distance: 0,
            is_syncing: false,
            is_optimistic: false,
            el_offline: false,
        })
    }

    fn finality(
        epoch: u64,
        r: Root,
        optimistic: bool,
    ) -> Result<FinalityCheckpointsResponse, BeaconError> {
        let cp = Checkpoint { epoch, root: r };
        Ok(StateResponse {
            execution_optimistic: optimistic,
            finalized: false,
            data: FinalityCheckpoints {
                previous_justified: cp,
                current_justified: cp,
                finalized: cp,
            },
        })
    }

    #[test]
    fn classify_accepts_a_synced_node_on_the_expected_chain() {
        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            synced(),
            finality(3, root(7), false),
        );
        assert_eq!(o.status, ObservationStatus::Usable);
        assert_eq!(
            o.finalized,
            Some(CheckpointObs {
                epoch: 3,
                root: root(7)
            })
        );
    }

    #[test]
    fn classify_flags_wrong_genesis_before_anything_else() {
        let o = classify(
            "u",
            root(1),
            genesis(root(2)),
            Err(BeaconError::Transport("reset".into())),
            finality(3, root(7), true),
        );
        assert_eq!(o.status, ObservationStatus::WrongGenesis { got: root(2) });
    }

    #[test]
    fn classify_reports_syncing_distance_and_optimism() {
        let mut s = synced().unwrap();
        s.is_syncing = true;
        s.sync_distance = 42;
        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            Ok(s),
            finality(3, root(7), false),
        );
        assert_eq!(o.status, ObservationStatus::Syncing { sync_distance: 42 });

        s.is_syncing = false;
        s.is_optimistic = true;
        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            Ok(s),
            finality(3, root(7), false),
        );
        assert_eq!(o.status, ObservationStatus::Optimistic);

        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            synced(),
            finality(3, root(7), true),
        );
        assert_eq!(o.status, ObservationStatus::Optimistic);
    }

    #[test]
    fn classify_names_the_failed_query() {
        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            synced(),
            Err(BeaconError::Status {
                status: 404,
                message: "State not found".into(),
            }),
        );
        assert_eq!(
            o.status,
            ObservationStatus::Error {
                message: "finality: HTTP 404: State not found".into()
            }
        );
        assert_eq!(o.finalized, None);

        let o = classify(
            "u",
            root(1),
            Err(BeaconError::Timeout(Duration::from_millis(250))),
            synced(),
            finality(3, root(7), false),
        );
        assert_eq!(
            o.status,
            ObservationStatus::Error {
                message: "genesis: no answer within 250 ms".into()
            }
        );
    }

    #[test]
    fn classify_rejects_a_finalized_epoch_with_the_zero_root() {
        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            synced(),
            finality(4, Root::ZERO, false),
        );
        assert!(matches!(o.status, ObservationStatus::Error { .. }));
        let o = classify(
            "u",
            root(1),
            genesis(root(1)),
            synced(),
            finality(0, Root::ZERO, false),
        );
        assert_eq!(o.status, ObservationStatus::Usable);
    }

    #[test]
    fn observation_serializes_as_tagged_plain_data() {
        let o = obs(
            "http://n1",
            ObservationStatus::Syncing { sync_distance: 5 },
            2,
        );
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(
            json["status"],
            serde_json::json!({"kind": "syncing", "sync_distance": 5})
        );
        assert_eq!(json["finalized"]["epoch"], 2);
        let back: BeaconObservation = serde_json::from_value(json).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn state_and_block_ids_parse_as_the_spec_lists_them() {
        for s in ["head", "genesis", "finalized", "justified", "0", "12345"] {
            assert_eq!(s.parse::<StateId>().unwrap().to_string(), s);
        }
        let r = format!("0x{}", "ab".repeat(32));
        assert_eq!(r.parse::<StateId>(), Ok(StateId::Root(Root([0xab; 32]))));
        assert_eq!(r.parse::<BlockId>(), Ok(BlockId::Root(Root([0xab; 32]))));
        for bad in ["current", "", "-1", "1.5", "0x12", "Head"] {
            assert_eq!(
                bad.parse::<StateId>(),
                Err(IdError::InvalidState(bad.to_string()))
            );
        }
        assert_eq!(
            "justified".parse::<BlockId>(),
            Err(IdError::InvalidBlock("justified".into()))
        );
        assert_eq!(
            IdError::InvalidState("current".into()).to_string(),
            "Invalid state ID: current"
        );
    }

    #[test]
    fn chain_spec_getters_check_shapes() {
        let spec: SpecConstants = serde_json::from_value(serde_json::json!({
            "SLOTS_PER_EPOCH": "32",
            "DOMAIN_BEACON_ATTESTER": "0x01000000",
            "BLOB_SCHEDULE": [{"EPOCH": "1", "MAX_BLOBS_PER_BLOCK": "6"}],
            "BAD": "0x10"
        }))
        .unwrap();
        assert_eq!(spec.get_u64("SLOTS_PER_EPOCH"), Ok(32));
        assert_eq!(
            spec.get_version("DOMAIN_BEACON_ATTESTER"),
            Ok(Version([1, 0, 0, 0]))
        );
        assert_eq!(
            spec.get_u64("MISSING"),
            Err(SpecError::Missing("MISSING".into()))
        );
        assert!(matches!(
            spec.get_u64("BLOB_SCHEDULE"),
            Err(SpecError::Invalid { .. })
        ));
        assert!(matches!(
            spec.get_u64("BAD"),
            Err(SpecError::Invalid { .. })
        ));
        assert!(matches!(
            spec.get_version("BAD"),
            Err(SpecError::Invalid { .. })
        ));
    }
}
