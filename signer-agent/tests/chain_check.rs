//! The start-up check against a beacon node (`beacon_node`): an agent configured for one chain
//! does not start in front of a beacon node of another, and says which fields differ.
//!
//! The beacon node here is a small fake serving `GET /eth/v1/config/spec` and
//! `GET /eth/v1/beacon/genesis` as the Beacon API specifies them, with the chain of the lab
//! (custom fork versions, Deneb from genesis, 8-slot epochs of 0.5 s).

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};
use failover_common::types::{Root, Version};
use serde_json::json;
use signer_agent::config::{Config, NetworkSetting};

const GVR: Root = Root([0x4b; 32]);
const GENESIS_TIME: u64 = 1_700_000_000;

async fn fake_beacon_node() -> String {
    let app = Router::new()
        .route(
            "/eth/v1/config/spec",
            get(|| async {
                Json(json!({"data": {
                    "CONFIG_NAME": "lab",
                    "GENESIS_FORK_VERSION": "0x10000038",
                    "CAPELLA_FORK_VERSION": "0x13000038",
                    "DENEB_FORK_EPOCH": "0",
                    "SLOTS_PER_EPOCH": "8",
                    "SECONDS_PER_SLOT": "0.5",
                    "SLOT_DURATION_MS": "500",
                }}))
            }),
        )
        .route(
            "/eth/v1/beacon/genesis",
            get(|| async {
                Json(json!({"data": {
                    "genesis_time": GENESIS_TIME.to_string(),
                    "genesis_validators_root": GVR.to_string(),
                    "genesis_fork_version": "0x10000038",
                }}))
            }),
        );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn lab_config(beacon: &str) -> Config {
    Config {
        agent_id: "agent-eu".into(),
        genesis_validators_root: Some(GVR),
        network: NetworkSetting::Custom,
        genesis_fork_version: Some(Version([0x10, 0, 0, 0x38])),
        capella_fork_version: Some(Version([0x13, 0, 0, 0x38])),
        deneb_fork_epoch: Some(0),
        slots_per_epoch: 8,
        genesis_time: Some(GENESIS_TIME),
        slot_duration_ms: Some(500),
        beacon_node: Some(beacon.into()),
        beacon_check_timeout_ms: 200,
        ..Config::default()
    }
}

#[tokio::test]
async fn the_configured_chain_passes() {
    let url = fake_beacon_node().await;
    signer_agent::check_chain_with_beacon_node(&lab_config(&url))
        .await
        .unwrap();
}

#[tokio::test]
async fn mainnet_constants_in_front_of_the_lab_chain_refuse_to_start_naming_each_field() {
    let url = fake_beacon_node().await;
    let cfg = Config {
        network: NetworkSetting::Mainnet,
        genesis_fork_version: None,
        capella_fork_version: None,
        deneb_fork_epoch: None,
        genesis_time: None,
        slot_duration_ms: None,
        slots_per_epoch: 32,
        ..lab_config(&url)
    };
    let e = signer_agent::check_chain_with_beacon_node(&cfg)
        .await
        .unwrap_err()
        .to_string();
    for field in [
        "GENESIS_FORK_VERSION: configured 0x00000000, the beacon node reports 0x10000038",
        "CAPELLA_FORK_VERSION: configured 0x03000000, the beacon node reports 0x13000038",
        "DENEB_FORK_EPOCH: configured 269568, the beacon node reports 0",
        "SLOTS_PER_EPOCH: configured 32, the beacon node reports 8",
        "SLOT_DURATION_MS: configured 12000, the beacon node reports 500",
    ] {
        assert!(e.contains(field), "{field} not in: {e}");
    }
    assert!(e.contains("refusing to start"), "{e}");
}

#[tokio::test]
async fn one_wrong_field_is_enough_and_is_the_one_named() {
    let url = fake_beacon_node().await;
    let cfg = Config {
        deneb_fork_epoch: Some(10),
        ..lab_config(&url)
    };
    let e = signer_agent::check_chain_with_beacon_node(&cfg)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("DENEB_FORK_EPOCH: configured 10, the beacon node reports 0"),
        "{e}"
    );
    assert!(!e.contains("CAPELLA_FORK_VERSION"), "{e}");
}

#[tokio::test]
async fn an_unreachable_beacon_node_stops_the_start_after_the_timeout() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = lab_config(&format!("http://127.0.0.1:{port}"));
    let e = signer_agent::check_chain_with_beacon_node(&cfg)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("did not give its chain configuration"), "{e}");
}

#[tokio::test]
async fn without_a_beacon_node_nothing_is_checked() {
    let cfg = Config {
        beacon_node: None,
        ..lab_config("http://unused")
    };
    signer_agent::check_chain_with_beacon_node(&cfg)
        .await
        .unwrap();
}
