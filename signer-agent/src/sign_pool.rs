//! The signing pool: BLS signatures computed on a fixed set of threads, first in, first out,
//! while the record that allows them is still committing (issue 15 item 1).
//!
//! A sign request that passed every local check submits its signing root here *before* it
//! awaits the coordinators' verdict, and gets a [`PendingSignature`]. The handler then awaits
//! the verdict, and only on a committed `Valid`/`SameData` does it await the signature and
//! return it; on any other outcome it drops the [`PendingSignature`], and the signature (if
//! it was already computed) is discarded without ever leaving this module.
//!
//! Invariants:
//! - **I4** (DESIGN.md): a signature computed here is reachable only through its
//!   [`PendingSignature`]; computing early is allowed, releasing early is not, and the
//!   handler releases only after the committed verdict. A dropped pending signature is
//!   counted in `signer_agent_signatures_discarded_total` and zeroised with the job.
//! - **Bounded parallelism**: exactly `threads` OS threads sign (sized to the cores), so a
//!   burst of 1,000 requests queues in arrival order instead of starting 512 blocking threads
//!   that all finish near the end of the burst.
//! - **FIFO**: jobs are taken in submission order from one queue, so a request's wait is the
//!   work queued before it, not the whole burst.
//! - The pool never panics on input: a root is 32 bytes and a key is a valid `blst` secret key
//!   by construction. A panic in `blst` would drop the job's sender, and the handler answers
//!   500 with no signature.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use blst::min_pk::SecretKey;
use failover_common::eth;
use failover_common::types::{Root, Signature};
use prometheus::IntCounter;
use tokio::sync::oneshot;

struct Job {
    sk: Arc<SecretKey>,
    root: Root,
    done: oneshot::Sender<Signature>,
}

/// A fixed pool of signing threads fed by one FIFO queue. Cheap to share behind an `Arc`;
/// the threads end when the pool is dropped (the queue closes).
pub struct SignPool {
    queue: Mutex<mpsc::Sender<Job>>,
    threads: usize,
}

/// A signature being computed (or already computed) for one request, not yet released.
///
/// [`PendingSignature::release`] waits for it; dropping it instead discards the signature.
pub struct PendingSignature {
    rx: oneshot::Receiver<Signature>,
    discarded: IntCounter,
    released: bool,
}

/// The pool stopped before signing (a panic inside `blst`, or the pool was dropped).
#[derive(Debug, thiserror::Error)]
#[error("the signing thread stopped before the signature was computed")]
pub struct PoolStopped;

impl SignPool {
    /// A pool of `threads` signing threads (at least 1), named `sign-<n>`. `discarded` counts
    /// signatures computed for a request that was then refused
    /// (`signer_agent_signatures_discarded_total`).
    ///
    /// Errors: the OS refuses to start a thread.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("sign-{n}"))
                .spawn(move || loop {
                    // Take the lock only to dequeue: the next job goes to the first free
                    // thread, in submission order.
                    let job = match rx.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    if job.done.is_closed() {
                        // Refused (or timed out) before its turn: nothing to compute.
                        continue;
                    }
                    let sig = eth::sign(&job.sk, &job.root);
                    // A closed receiver means the request was refused meanwhile: the
                    // signature is dropped here, never sent anywhere.
                    let _ = job.done.send(sig);
                })?;
        }
        Ok(Self {
            queue: Mutex::new(tx),
            threads,
        })
    }

    /// The number of signing threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues the signature of `root` (a 32-byte signing root) by `sk` and returns its handle
    /// at once. The signature is computed in FIFO order by the next free thread.
    pub fn submit(
        &self,
        sk: Arc<SecretKey>,
        root: Root,
        discarded: IntCounter,
    ) -> PendingSignature {
        let (done, rx) = oneshot::channel();
        let job = Job { sk, root, done };
        // The receiver lives as long as the threads; a send error means every thread is gone,
        // and `release` then reports `PoolStopped`.
        if let Ok(q) = self.queue.lock() {
            let _ = q.send(job);
        }
        PendingSignature {
            rx,
            discarded,
            released: false,
        }
    }
}

impl PendingSignature {
    /// Waits for the signature and hands it out: call only after the committed verdict
    /// allows it (I4).
    ///
    /// Errors: [`PoolStopped`] when the signing thread ended without a signature.
    pub async fn release(mut self) -> Result<Signature, PoolStopped> {
        self.released = true;
        (&mut self.rx).await.map_err(|_| PoolStopped)
    }
}

impl Drop for PendingSignature {
    fn drop(&mut self) {
        if !self.released {
            // Close first: a job not yet started is then skipped, and one in progress has
            // its result dropped by the thread.
            self.rx.close();
            self.discarded.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Arc<SecretKey> {
        Arc::new(SecretKey::key_gen(&[b; 32], &[]).unwrap())
    }

    #[tokio::test]
    async fn released_signature_is_the_one_blst_computes() {
        let pool = SignPool::new(2).unwrap();
        let counter = IntCounter::new("d", "d").unwrap();
        let root = Root([7; 32]);
        let sk = key(1);
        let got = pool
            .submit(sk.clone(), root, counter.clone())
            .release()
            .await
            .unwrap();
        assert_eq!(got, eth::sign(&sk, &root));
        assert_eq!(counter.get(), 0);
    }

    #[tokio::test]
    async fn a_dropped_pending_signature_is_counted_and_never_delivered() {
        let pool = SignPool::new(1).unwrap();
        let counter = IntCounter::new("d", "d").unwrap();
        let pending: Vec<_> = (0..20u8)
            .map(|i| pool.submit(key(i), Root([i; 32]), counter.clone()))
            .collect();
        drop(pending);
        assert_eq!(counter.get(), 20);
        // The pool still serves new work afterwards.
        let sk = key(99);
        let sig = pool
            .submit(sk.clone(), Root([1; 32]), counter.clone())
            .release()
            .await
            .unwrap();
        assert_eq!(sig, eth::sign(&sk, &Root([1; 32])));
        assert_eq!(counter.get(), 20);
    }

    #[tokio::test]
    async fn jobs_complete_in_submission_order_on_one_thread() {
        let pool = SignPool::new(1).unwrap();
        let counter = IntCounter::new("d", "d").unwrap();
        let mut pending: Vec<_> = (0..8u8)
            .map(|i| pool.submit(key(i), Root([i; 32]), counter.clone()))
            .collect();
        let last = pending.pop().unwrap();
        last.release().await.unwrap();
        // One thread, one queue: when the last job is done, every earlier one is too.
        for (i, p) in pending.iter_mut().enumerate() {
            assert!(
                p.rx.try_recv().is_ok(),
                "job {i} finished after a later one"
            );
            p.released = true;
        }
        assert_eq!(pool.threads(), 1);
        assert_eq!(counter.get(), 0);
    }
}
