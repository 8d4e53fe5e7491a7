//! The coordinator's Beacon API client against real HTTP beacon-node simulators.
//!
//! Each test starts simulators in-process on ephemeral ports, drives their clocks by hand, and
//! checks what `BeaconClient::observe_all` and `agree` make of them (DESIGN.md, Handover step 2:
//! syncing nodes and nodes with another genesis validators root do not count).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chaos::beacon_sim::{self, Clock, ManualClock, SimConfig, SimState};
use failover_common::beacon::{agree, BeaconClient, CheckpointObs, ObservationStatus};
use failover_common::types::Root;
use tokio::sync::oneshot;

const GENESIS: u64 = 1_700_000_000;

/// A running simulator; stops when dropped.
struct Node {
    url: String,
    state: SimState,
    clock: Arc<ManualClock>,
    _stop: oneshot::Sender<()>,
}

impl Node {
    /// The finalized checkpoint the simulator's head state holds now.
    fn finalized(&self) -> CheckpointObs {
        self.state.view().checkpoints.finalized.into()
    }
}

/// Starts a simulator with 1 s slots and 4-slot epochs, `epochs` epochs after genesis.
async fn start(genesis_validators_root: Root, epochs: u64) -> Node {
    let clock = Arc::new(ManualClock::new(Duration::from_secs(GENESIS + 4 * epochs)));
    let mut config = SimConfig::devnet(GENESIS);
    config.seconds_per_slot = 1.0;
    config.slots_per_epoch = 4;
    config.genesis_validators_root = genesis_validators_root;
    let state = SimState::new(config, clock.clone() as Arc<dyn Clock>).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(beacon_sim::serve(listener, state.clone(), None, async {
        let _ = stopped.await;
    }));
    Node {
        url,
        state,
        clock,
        _stop: stop,
    }
}

fn chain() -> Root {
    SimConfig::devnet(0).genesis_validators_root
}

#[tokio::test]
async fn only_the_synced_node_on_our_chain_counts() {
    let other_chain = Root([0x77; 32]);
    let usable = start(chain(), 10).await;
    let syncing = start(chain(), 10).await;
    let foreign = start(other_chain, 12).await;

    syncing.state.set_syncing(true);
    syncing.clock.advance(Duration::from_secs(6)); // 6 slots behind

    let client = BeaconClient::new(
        vec![usable.url.clone(), syncing.url.clone(), foreign.url.clone()],
        Duration::from_secs(5),
        chain(),
    );
    let obs = client.observe_all().await;
    assert_eq!(obs.len(), 3);
    assert_eq!(obs[0].url, usable.url);
    assert_eq!(obs[0].status, ObservationStatus::Usable);
    assert_eq!(obs[0].finalized, Some(usable.finalized()));
    assert_eq!(
        obs[1].status,
        ObservationStatus::Syncing { sync_distance: 6 }
    );
    assert_eq!(
        obs[2].status,
        ObservationStatus::WrongGenesis { got: other_chain }
    );

    let expected = usable.finalized();
    assert_eq!(
        expected.epoch,
        10 - SimConfig::devnet(0).finality_lag_epochs
    );
    assert_eq!(agree(&obs, 1), Some(expected));
    assert_eq!(
        agree(&obs, 2),
        None,
        "syncing and foreign nodes must not count"
    );

    // Once the syncing node catches up it counts, and two nodes agree.
    syncing.state.set_syncing(false);
    let obs = client.observe_all().await;
    assert_eq!(obs[1].status, ObservationStatus::Usable);
    let lower = [usable.finalized(), syncing.finalized()]
        .into_iter()
        .min()
        .unwrap();
    assert_eq!(agree(&obs, 2), Some(lower));
}

#[tokio::test]
async fn two_nodes_agree_on_the_lower_finalized_epoch() {
    let ahead = start(chain(), 20).await;
    let behind = start(chain(), 15).await;
    let client = BeaconClient::new(
        vec![ahead.url.clone(), behind.url.clone()],
        Duration::from_secs(5),
        chain(),
    );
    let obs = client.observe_all().await;
    assert!(
        obs.iter().all(|o| o.status == ObservationStatus::Usable),
        "{obs:?}"
    );
    assert_eq!(agree(&obs, 1), Some(ahead.finalized()));
    assert_eq!(agree(&obs, 2), Some(behind.finalized()));
    assert!(ahead.finalized().epoch > behind.finalized().epoch);
}

#[tokio::test]
async fn stalled_finality_holds_the_agreed_checkpoint() {
    let node = start(chain(), 8).await;
    let client = BeaconClient::new(vec![node.url.clone()], Duration::from_secs(5), chain());
    let before = agree(&client.observe_all().await, 1).unwrap();

    node.state.set_finality_stalled(true);
    node.clock.advance(Duration::from_secs(4 * 5));
    assert_eq!(agree(&client.observe_all().await, 1), Some(before));

    node.state.set_finality_stalled(false);
    let after = agree(&client.observe_all().await, 1).unwrap();
    assert_eq!(after.epoch, before.epoch + 5);
}

#[tokio::test]
async fn optimistic_node_does_not_count() {
    let node = start(chain(), 8).await;
    node.state.set_optimistic(true);
    let client = BeaconClient::new(vec![node.url.clone()], Duration::from_secs(5), chain());
    let obs = client.observe_all().await;
    assert_eq!(obs[0].status, ObservationStatus::Optimistic);
    assert_eq!(agree(&obs, 1), None);
}

#[tokio::test]
async fn unreachable_and_silent_nodes_are_errors_within_the_timeout() {
    let good = start(chain(), 6).await;

    // A port nobody listens on: bind, note the port, close.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    // A listener that accepts connections and never answers.
    let silent_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = format!("http://{}", silent_listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent_listener.accept().await {
            held.push(sock);
        }
    });

    let timeout = Duration::from_millis(400);
    let client = BeaconClient::new(vec![closed, silent, good.url.clone()], timeout, chain());
    let started = Instant::now();
    let obs = client.observe_all().await;
    let took = started.elapsed();
    hold.abort();

    assert!(took < timeout * 4, "observe_all took {took:?}");
    for o in &obs[..2] {
        assert!(
            matches!(o.status, ObservationStatus::Error { .. }),
            "{}: {:?}",
            o.url,
            o.status
        );
        assert_eq!(o.finalized, None);
    }
    assert_eq!(obs[2].status, ObservationStatus::Usable);
    assert_eq!(agree(&obs, 1), Some(good.finalized()));
    assert_eq!(agree(&obs, 2), None);
}

#[tokio::test]
async fn polls_carry_head_slots_and_the_kind_of_problem_for_metrics() {
    let usable = start(chain(), 10).await;
    let syncing = start(chain(), 10).await;
    let foreign = start(Root([0x77; 32]), 10).await;
    syncing.state.set_syncing(true);
    syncing.clock.advance(Duration::from_secs(6));
    // A closed port: connection refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let client = BeaconClient::new(
        vec![
            usable.url.clone(),
            syncing.url.clone(),
            foreign.url.clone(),
            dead,
        ],
        Duration::from_secs(5),
        chain(),
    );
    let polls = client.poll_all().await;
    let problems: Vec<_> = polls.iter().map(|p| p.problem).collect();
    assert_eq!(
        problems,
        [
            None,
            Some("syncing"),
            Some("wrong_genesis"),
            Some("transport")
        ]
    );
    let head = polls[0]
        .syncing
        .expect("the usable node answered /node/syncing");
    assert_eq!(head.sync_distance, 0);
    assert_eq!(head.head_slot, 4 * 10, "epoch 10 of 4-slot epochs");
    assert_eq!(polls[1].syncing.map(|s| s.sync_distance), Some(6));
    assert!(polls[3].syncing.is_none());
    // The evidence is exactly what observe_all returns.
    let obs: Vec<_> = polls.into_iter().map(|p| p.observation).collect();
    assert_eq!(obs, client.observe_all().await);
}
