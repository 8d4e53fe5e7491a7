//! Group commit of slashable records: concurrent sign requests share one
//! `POST /v1/agent/records` call, so one Raft entry carries many records (DESIGN.md, step 3 of
//! "One attestation, end to end").
//!
//! How it works: requests enqueue a [`RecordItem`] with the token they hold and a reply
//! channel. One task takes a permit for a batch in flight (at most `max_in_flight_batches`),
//! then takes the first waiting record and every record already queued behind it with the same
//! token, up to `max_batch`, and sends them as one batch. While all permits are busy, records
//! pile up in the queue and leave together in the next batch.
//!
//! Invariants:
//! - a record's reply is exactly the coordinator's committed verdict for that record, or an
//!   outcome that does not allow signing ([`RecordOutcome::NotHolder`],
//!   [`RecordOutcome::Unavailable`]); nothing else is ever reported as a verdict (I4, I7);
//! - a batch carries one token; records with different tokens go in different batches;
//! - records whose requester already gave up (deadline passed) are not sent, so nothing is
//!   recorded that will never be signed;
//! - every caller gets an answer by its deadline: the wait for the reply is bounded by the
//!   request's own deadline, whatever the batch does.

use std::sync::Arc;
use std::time::Duration;

use failover_protocol::{AgentId, RecordBatchRequest, RecordItem, Verdict};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::metrics::Metrics;
use failover_protocol::{BatchOutcome, CoordinatorClient};

/// The answer for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The committed verdict; sign only if [`Verdict::allows_signing`].
    Verdict(Verdict),
    /// The coordinator refused the batch: the token is not the current holder's.
    NotHolder {
        /// Current holder, if any.
        holder: Option<AgentId>,
        /// Current token, if given.
        token: Option<u64>,
    },
    /// No committed verdict by the deadline, or an unknown outcome. Never sign.
    Unavailable,
}

struct Pending {
    item: RecordItem,
    token: u64,
    deadline: Instant,
    reply: oneshot::Sender<RecordOutcome>,
}

/// Handle to the group-commit task. Cloning shares the queue.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Pending>,
}

/// Batch size and concurrency limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most records per batch (≥ 1).
    pub max_batch: usize,
    /// Most batches in flight (≥ 1).
    pub max_in_flight: usize,
}

impl Batcher {
    /// Starts the batching task on the current Tokio runtime. The task ends when every
    /// [`Batcher`] handle is dropped and the queue is drained.
    pub fn spawn(
        agent: AgentId,
        client: Arc<CoordinatorClient>,
        limits: BatchLimits,
        metrics: Metrics,
    ) -> Self {
        let max_batch = limits.max_batch.max(1);
        let max_in_flight = limits.max_in_flight.max(1);
        let (tx, rx) = mpsc::channel(max_batch * max_in_flight * 2);
        tokio::spawn(run(agent, client, rx, max_batch, max_in_flight, metrics));
        Self { tx }
    }

    /// Records `item` under `token` and waits for its outcome until `deadline`.
    ///
    /// Returns [`RecordOutcome::Unavailable`] when the deadline passes first.
    pub async fn record(&self, item: RecordItem, token: u64, deadline: Instant) -> RecordOutcome {
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            item,
            token,
            deadline,
            reply,
        };
        let wait = async {
            if self.tx.send(pending).await.is_err() {
                return RecordOutcome::Unavailable;
            }
            rx.await.unwrap_or(RecordOutcome::Unavailable)
        };
        tokio::time::timeout_at(deadline, wait)
            .await
            .unwrap_or(RecordOutcome::Unavailable)
    }
}

async fn run(
    agent: AgentId,
    client: Arc<CoordinatorClient>,
    mut rx: mpsc::Receiver<Pending>,
    max_batch: usize,
    max_in_flight: usize,
    metrics: Metrics,
) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut held: Option<Pending> = None;
    loop {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is never closed");
        let first = match held.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let token = first.token;
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) if p.token == token => batch.push(p),
                Ok(p) => {
                    held = Some(p);
                    break;
                }
                Err(_) => break,
            }
        }
        batch.retain(|p| !p.reply.is_closed() && p.deadline > Instant::now());
        if batch.is_empty() {
            continue;
        }
        let client = client.clone();
        let metrics = metrics.clone();
        let agent = agent.clone();
        tokio::spawn(async move {
            let _permit = permit;
            send_batch(&agent, &client, token, batch, &metrics).await;
        });
    }
}

async fn send_batch(
    agent: &AgentId,
    client: &CoordinatorClient,
    token: u64,
    batch: Vec<Pending>,
    metrics: &Metrics,
) {
    // The latest deadline of the batch: earlier requests stop waiting on their own.
    let deadline = batch
        .iter()
        .map(|p| p.deadline)
        .max()
        .expect("batch is not empty");
    let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.item, p.reply)).unzip();
    let req = RecordBatchRequest {
        agent: agent.clone(),
        token,
        items,
    };
    metrics.batch_size.observe(req.items.len() as f64);
    let started = Instant::now();
    let outcome = client.post_records(&req, deadline).await;
    metrics
        .batch_duration
        .observe(started.elapsed().as_secs_f64());

    match outcome {
        BatchOutcome::Verdicts(verdicts) => {
            metrics.batches.with_label_values(&["ok"]).inc();
            for (reply, verdict) in replies.into_iter().zip(verdicts) {
                let _ = reply.send(RecordOutcome::Verdict(verdict));
            }
        }
        BatchOutcome::NotHolder { holder, token } => {
            metrics.batches.with_label_values(&["not_holder"]).inc();
            for reply in replies {
                let _ = reply.send(RecordOutcome::NotHolder {
                    holder: holder.clone(),
                    token,
                });
            }
        }
        BatchOutcome::Unavailable(why) => {
            metrics.batches.with_label_values(&["unavailable"]).inc();
            tracing::warn!(%agent, token, records = replies.len(), %why, "record batch has no committed verdict; not signing");
            for reply in replies {
                let _ = reply.send(RecordOutcome::Unavailable);
            }
        }
        BatchOutcome::Rejected(why) => {
            metrics.batches.with_label_values(&["rejected"]).inc();
            tracing::error!(%agent, token, records = replies.len(), %why, "coordinator rejected a record batch; check the agent id and token configuration");
            for reply in replies {
                let _ = reply.send(RecordOutcome::Unavailable);
            }
        }
    }
}

/// Default connect timeout for a record deadline: a quarter of it, between 100 ms and 1 s, so a
/// dead coordinator leaves time to try the next one.
pub fn connect_timeout_for(deadline: Duration) -> Duration {
    (deadline / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}
