//! The beacon simulator's validator registry and liveness, read through the coordinators'
//! Beacon API client (`failover_common::beacon::BeaconClient`) over real HTTP, with liveness
//! coming from what the duty simulator publishes.

use std::sync::Arc;
use std::time::Duration;

use chaos::beacon_sim::{serve, ManualClock, SimConfig, SimState};
use chaos::lab::duties::{attestation_duty, publication};
use chaos::lab::Validator;
use failover_common::beacon::{BeaconClient, BeaconError};
use failover_common::eth::{Fork, ForkInfo};
use failover_common::interop;
use failover_common::types::{Signature, Version};

const GENESIS: u64 = 1_700_000_000;

async fn sim() -> (String, SimState) {
    let mut cfg = SimConfig::devnet(GENESIS);
    cfg.seconds_per_slot = 0.5;
    cfg.slots_per_epoch = 8;
    cfg.validators = 16;
    // Three epochs after genesis, half a slot in.
    let clock = Arc::new(ManualClock::new(Duration::from_millis(
        GENESIS * 1000 + 3 * 4000 + 250,
    )));
    let state = SimState::new(cfg, clock).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, state.clone(), None, std::future::pending()));
    (url, state)
}

#[tokio::test]
async fn indices_and_liveness_come_back_through_the_beacon_client() {
    let (url, state) = sim().await;
    let gvr = state.config().genesis_validators_root;
    let client = BeaconClient::new(vec![url.clone()], Duration::from_secs(5), gvr);

    // Pubkeys to indices: registered ones only.
    let unknown = interop::pubkey(100);
    let found = client
        .validator_indices(&url, &[interop::pubkey(3), interop::pubkey(5), unknown])
        .await
        .unwrap();
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        vec![(interop::pubkey(3), 3), (interop::pubkey(5), 5)]
    );

    // Validator 3 attests in epoch 3 and its client publishes it.
    let fork_info = ForkInfo {
        fork: Fork {
            previous_version: Version([0, 0, 0, 0]),
            current_version: Version([4, 0, 0, 0]),
            epoch: 0,
        },
        genesis_validators_root: gvr,
    };
    let v3 = Validator {
        index: 3,
        pubkey: interop::pubkey(3),
    };
    let duty = attestation_duty(&v3, 3 * 8 + 3, &fork_info, 8);
    let (path, body) = publication(&duty, &Signature([0x44; 96]));
    let status = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");

    assert_eq!(
        client.liveness(&url, 3, &[3, 5]).await.unwrap(),
        vec![(3, true), (5, false)]
    );
    assert_eq!(
        client.liveness(&url, 2, &[3]).await.unwrap(),
        vec![(3, false)]
    );
    // The node cannot say about a future epoch: an error, never "not live".
    match client.liveness(&url, 4, &[3]).await {
        Err(BeaconError::Status { status: 400, .. }) => {}
        other => panic!("expected a 400, got {other:?}"),
    }
}
