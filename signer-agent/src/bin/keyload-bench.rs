//! `keyload-bench`: how close the agent's start-up keystore loading comes to the machine's
//! scrypt ceiling.
//!
//! ```text
//! keyload-bench CACHE_DIR [--count 1000] [--threads N] [--samples 3]
//! ```
//!
//! 1. Makes sure `CACHE_DIR/keystores/validator-NNNNN.json` and
//!    `CACHE_DIR/passwords/validator-NNNNN.txt` exist for `0..count`: production-cost EIP-2335
//!    keystores (scrypt `n = 2^18, r = 8, p = 1, dklen = 32`) of the interop keys, generated
//!    once on every core and reused by later runs (a file with other KDF parameters is
//!    regenerated).
//! 2. Decrypts `--samples` of them one after the other on one thread, after one uncounted
//!    warm-up: the single-thread cost of one key (seconds), measured in this run on this
//!    machine.
//! 3. Loads the first `count` through the agent's real path, `keys::scan` then
//!    `keys::decrypt_all` with `--threads` (default: every core), logging its progress.
//! 4. Prints one table row: keys, cores used, wall seconds, keys/s, the single-thread cost per
//!    key, the ideal rate (`cores / cost`) and achieved/ideal.
//!
//! Memory: each scrypt run needs 256 MiB, so `threads × 256 MiB` at once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use failover_common::interop;
use failover_common::keystore::{encrypt, KdfParams, Keystore};
use signer_agent::keys::{self, DecryptJob, Keys};

/// Measures start-up keystore loading against the single-thread scrypt cost.
#[derive(Debug, Parser)]
#[command(
    name = "keyload-bench",
    about = "Measures start-up loading of production-cost EIP-2335 keystores (scrypt n=2^18) against the single-thread scrypt cost measured in the same run"
)]
struct Args {
    /// Folder that keeps the generated keystores between runs.
    cache: PathBuf,
    /// Number of keystores to load.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Decryption threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Keystores decrypted serially to measure the single-thread cost per key.
    #[arg(long, default_value_t = 3)]
    samples: usize,
}

fn name(i: usize) -> String {
    format!("validator-{i:05}")
}

/// True when `path` is a keystore with the production scrypt parameters.
fn is_production(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| Keystore::from_json(&t).ok())
        .is_some_and(|k| k.crypto.kdf.params == KdfParams::SCRYPT)
}

/// Generates the missing keystores `0..count` on `threads` threads.
fn ensure_cache(cache: &Path, count: usize, threads: usize) -> anyhow::Result<(PathBuf, PathBuf)> {
    let ks_dir = cache.join("keystores");
    let pw_dir = cache.join("passwords");
    std::fs::create_dir_all(&ks_dir).with_context(|| format!("create {}", ks_dir.display()))?;
    std::fs::create_dir_all(&pw_dir).with_context(|| format!("create {}", pw_dir.display()))?;
    let missing: Vec<usize> = (0..count)
        .filter(|&i| {
            !(is_production(&ks_dir.join(format!("{}.json", name(i))))
                && pw_dir.join(format!("{}.txt", name(i))).is_file())
        })
        .collect();
    if missing.is_empty() {
        eprintln!(
            "cache: {count} production keystores already in {}",
            cache.display()
        );
        return Ok((ks_dir, pw_dir));
    }
    eprintln!(
        "cache: generating {} production keystores (scrypt n=2^18 r=8 p=1) on {threads} threads…",
        missing.len()
    );
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    let mut rng = rand::thread_rng();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = missing.get(k) else {
                            return Ok(());
                        };
                        let password = format!("bench-password-{i}");
                        let ks = encrypt(
                            &interop::secret_key(i as u64).to_bytes(),
                            &password,
                            KdfParams::SCRYPT,
                            &mut rng,
                        )?;
                        failover_common::secret_file::write_private(
                            &pw_dir.join(format!("{}.txt", name(i))),
                            &password,
                        )?;
                        std::fs::write(ks_dir.join(format!("{}.json", name(i))), ks.to_json())?;
                        if k % 50 == 49 {
                            eprintln!(
                                "cache: {}/{} generated ({:.0} s)",
                                k + 1,
                                missing.len(),
                                started.elapsed().as_secs_f64()
                            );
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("generator thread")?;
        }
        Ok(())
    })?;
    eprintln!(
        "cache: generated in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((ks_dir, pw_dir))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    signer_agent::init_logging();
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    let cores = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let (ks_dir, pw_dir) = ensure_cache(&args.cache, args.count, cores)?;

    // The real loading path: scan (parse every keystore, pair passwords), keep `count`.
    let mut files = keys::scan(&ks_dir, &pw_dir)?;
    files.retain(|f| {
        f.path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("validator-"))
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n < args.count)
    });
    anyhow::ensure!(
        files.len() == args.count,
        "expected {} keystores, found {}",
        args.count,
        files.len()
    );

    // Single-thread cost per key, in this run, after one uncounted warm-up decryption (the
    // first one also pays for faulting in its 256 MiB).
    let samples = args.samples.clamp(1, files.len());
    files[0].decrypt()?;
    let serial_started = Instant::now();
    for f in &files[..samples] {
        f.decrypt()?;
    }
    let per_key = serial_started.elapsed().as_secs_f64() / samples as f64;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(cores.max(2))
        .build()
        .context("start the Tokio runtime")?;
    let loaded = Arc::new(Keys::new());
    let started = Instant::now();
    runtime.block_on(keys::decrypt_all(files, loaded.clone(), cores))?;
    let wall = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        loaded.is_complete() && loaded.count() == args.count,
        "not every key loaded"
    );

    let rate = args.count as f64 / wall;
    let ideal = cores as f64 / per_key;
    println!("| keys | cores used | wall s | keys/s | scrypt s/key (1 thread, {samples} serial) | ideal keys/s | achieved/ideal |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {cores} | {wall:.2} | {rate:.3} | {per_key:.3} | {ideal:.3} | {:.2} |",
        args.count,
        rate / ideal
    );
    Ok(())
}
