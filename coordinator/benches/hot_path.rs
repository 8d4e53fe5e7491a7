//! Criterion micro-benchmarks of the sign path's hot spots (issue 15 item 7), each in a group
//! with the baseline it is judged against, measured in the same run:
//! - **slashing check**: `check_attestation` (O(log n) surround index) on histories of 10 to
//!   10,000 attestations, next to the naive scan of every record it replaced;
//! - **signing root**: parsing a Web3Signer `ATTESTATION` request (the conformance example)
//!   and computing its signing root, next to one BLS signature (the cost it must stay small
//!   against);
//! - **apply**: one `RecordBatch` of 1,000 attestations applied to a state of 1,000
//!   validators with 100 records each, next to 1,000 BLS signatures;
//! - **log entry encoding**: the same batch encoded and decoded in the versioned binary
//!   envelope of `coordinator::codec`, next to JSON (the encoding it replaced); the sizes in
//!   bytes of both are printed first.
//!
//! Run with `cargo bench -p coordinator --bench hot_path`. Needs the conformance vectors
//! (`FAILOVER_VECTORS`, default `../shared/vectors`) for the request example.

use std::collections::BTreeMap;

use coordinator::slashing::ValidatorHistory;
use coordinator::state::{AgentInfo, Authority, Command, Dirty, StateData};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use failover_common::eth::{self, ChainSpec};
use failover_common::interop;
use failover_common::types::{Pubkey, Root};
use failover_protocol::RecordItem;

/// A history of `n` attestations `t-1 → t` for `t = 1..=n`.
fn history(n: u64) -> ValidatorHistory {
    let mut h = ValidatorHistory::default();
    for t in 1..=n {
        h.check_and_insert_attestation(t - 1, t, Root([(t % 251) as u8; 32]));
    }
    h
}

/// The check without the index: every record, both directions (what the index replaced).
fn naive_surround(h: &ValidatorHistory, source: u64, target: u64) -> bool {
    h.attestations().iter().any(|(&t, a)| {
        (t.0 > target && a.source_epoch.0 < source) || (t.0 < target && a.max_source().0 > source)
    })
}

fn slashing_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("slashing check: next attestation");
    for n in [10u64, 100, 1_000, 10_000] {
        let h = history(n);
        let root = Root([7; 32]);
        g.bench_with_input(BenchmarkId::new("indexed check", n), &n, |b, &n| {
            b.iter(|| h.check_attestation(n, n + 1, std::hint::black_box(&root)))
        });
        g.bench_with_input(BenchmarkId::new("baseline: naive scan", n), &n, |b, &n| {
            b.iter(|| naive_surround(&h, std::hint::black_box(n), n + 1))
        });
    }
    g.finish();
}

fn signing_root(c: &mut Criterion) {
    let body = serde_json::to_vec(&failover_common::vectors::sign_request_example(
        "ATTESTATION",
    ))
    .expect("example encodes");
    let chain = ChainSpec::mainnet();
    let sk = interop::secret_key(0);
    let mut g = c.benchmark_group("signing root of an ATTESTATION request");
    g.bench_function("parse + signing root", |b| {
        b.iter(|| {
            eth::signing_task_from_json_for_chain::<eth::Mainnet>(
                std::hint::black_box(&body),
                &chain,
            )
            .expect("the example is valid")
        })
    });
    g.bench_function("baseline: one BLS signature", |b| {
        b.iter(|| eth::sign(&sk, std::hint::black_box(&Root([3; 32]))))
    });
    g.finish();
}

fn apply(c: &mut Criterion) {
    const VALIDATORS: u8 = 250;
    const PER_KEY: u64 = 4; // 250 × 4 = 1,000 validators
    let pubkeys: Vec<Pubkey> = (0..VALIDATORS)
        .flat_map(|a| {
            (0..PER_KEY).map(move |b| {
                let mut k = [a; 48];
                k[0] = b as u8;
                Pubkey(k)
            })
        })
        .collect();
    let mut agents = BTreeMap::new();
    agents.insert(
        "a".to_string(),
        AgentInfo {
            pubkeys: pubkeys.iter().copied().collect(),
            ..Default::default()
        },
    );
    let mut state = StateData {
        authority: Authority {
            holder: Some("a".into()),
            token: 1,
        },
        agents,
        ..Default::default()
    };
    state.validators = pubkeys.iter().map(|pk| (*pk, history(100))).collect();
    let batch = Command::RecordBatch {
        agent: "a".into(),
        token: 1,
        items: pubkeys
            .iter()
            .map(|pk| RecordItem::Attestation {
                pubkey: *pk,
                source_epoch: 100,
                target_epoch: 101,
                signing_root: Root([9; 32]),
            })
            .collect(),
    };
    let sk = interop::secret_key(0);
    let mut g = c.benchmark_group("1,000 attestations");
    g.sample_size(20);
    g.bench_function("apply one record batch", |b| {
        // By reference: cloning and dropping the state stay outside the measurement.
        b.iter_batched_ref(
            || state.clone(),
            |s| s.apply(2, &batch, &mut Dirty::default()),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("baseline: 1,000 BLS signatures", |b| {
        b.iter(|| {
            for i in 0..1_000u32 {
                let mut r = [0u8; 32];
                r[..4].copy_from_slice(&i.to_le_bytes());
                std::hint::black_box(eth::sign(&sk, &Root(r)));
            }
        })
    });
    g.finish();
}

/// A record batch of 1,000 attestations, as a leader appends it.
fn record_batch() -> Command {
    Command::RecordBatch {
        agent: "agent-eu".into(),
        token: 7,
        items: (0..1_000u32)
            .map(|i| {
                let mut pk = [0x80u8; 48];
                pk[..4].copy_from_slice(&i.to_le_bytes());
                RecordItem::Attestation {
                    pubkey: Pubkey(pk),
                    source_epoch: 300_000,
                    target_epoch: 300_001,
                    signing_root: Root([(i % 251) as u8; 32]),
                }
            })
            .collect(),
    }
}

fn encoding(c: &mut Criterion) {
    let batch = record_batch();
    let json = serde_json::to_vec(&batch).expect("encodes");
    let binary = coordinator::codec::encode(&batch).expect("encodes");
    println!(
        "record batch of 1,000 attestations: {} bytes as JSON, {} bytes in the binary envelope \
         ({:.2} of JSON)",
        json.len(),
        binary.len(),
        binary.len() as f64 / json.len() as f64
    );
    let mut g = c.benchmark_group("log entry of 1,000 attestations");
    g.bench_function("encode, binary envelope", |b| {
        b.iter(|| coordinator::codec::encode(&batch).expect("encodes"))
    });
    g.bench_function("baseline: encode, JSON", |b| {
        b.iter(|| serde_json::to_vec(&batch).expect("encodes"))
    });
    g.bench_function("decode, binary envelope", |b| {
        b.iter(|| coordinator::codec::decode::<Command>(&binary).expect("decodes"))
    });
    g.bench_function("baseline: decode, JSON", |b| {
        b.iter(|| serde_json::from_slice::<Command>(&json).expect("decodes"))
    });
    g.finish();
}

criterion_group!(benches, slashing_check, signing_root, apply, encoding);
criterion_main!(benches);
