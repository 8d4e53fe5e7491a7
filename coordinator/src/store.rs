//! RocksDB storage under openraft: the Raft log store and the state-machine store.
//!
//! One RocksDB database per node, with three column families:
//! - `logs`: key = log index (8 bytes big-endian), value = the `Entry` in the versioned binary
//!   envelope of [`crate::codec`] (entries written before it are JSON and still read);
//! - `meta`: the vote, the committed log id and the last purged log id;
//! - `sm`: the state machine, one key per item (`authority`, `finality`, `restore`,
//!   `policy`, `pending_policy`, `h/<id>`, `a/<agent>`, `ac/<agent>`, `audit/<seq>`) plus
//!   `last_applied`, `membership` and the latest built snapshot (a [`crate::codec`]
//!   envelope; the other `sm` and `meta` values are JSON). Slashing history is stored
//!   one key per record (issue 15 item 4), so a batch writes what it changed, not whole
//!   histories: `r/<pubkey>/b/<slot>` (signing root), `r/<pubkey>/a/<target>` (attestation
//!   record), `r/<pubkey>/w` (watermarks; present for every stored validator); numbers are
//!   20-digit zero-padded decimals, so key order is numeric order. An agent's counters live
//!   in `ac/<agent>`, apart from its key list in `a/<agent>`, which a record batch does not
//!   rewrite. Stores written before this layout hold a validator's whole history in
//!   `v/<pubkey>`: it is read as before and replaced by per-record keys at the validator's
//!   next change.
//!
//! A restored node's store is seeded with [`seed_snapshot`] (`coordinator restore`): exactly
//! the state a node has after installing a snapshot, so openraft starts with its log beginning
//! after the snapshot.
//!
//! Durability invariants (DESIGN.md I6 and "Durability and fsyncs", STYLE.md 5):
//! - one RocksDB database, so one WAL: what survives a crash is a prefix of all writes, in
//!   order (point-in-time WAL recovery), and one fsync makes every earlier write durable;
//! - an append is reported flushed to openraft ([`LogFlushed`]) only after a WAL fsync that
//!   covers it; appends are written at once and fsynced by one flusher thread, so concurrent
//!   appends share an fsync; a vote is a synced write before `save_vote` returns;
//! - `committed` and each batch of applied entries are written without fsync: both follow
//!   from the durable log (apply is deterministic), they reach the disk with the next fsync,
//!   and a crash that loses them leaves `last_applied` behind, so openraft re-applies the
//!   committed entries at restart; no signature depends on them being on disk;
//! - each batch of applied entries is written together with `last_applied` in one atomic
//!   `WriteBatch`, so a crash never leaves a state that is ahead of or behind its
//!   `last_applied`;
//! - a built or installed snapshot is a synced write, so before a log purge (which follows a
//!   snapshot) every state write it covers is durable, and `last_applied` never falls below
//!   the purge point;
//! - installing a snapshot replaces the whole `sm` family in one synced `WriteBatch`;
//! - any I/O error inside apply is returned to openraft as a `StorageError`, which stops the
//!   node rather than letting replicas diverge (logged at ERROR; `/health` then answers 503);
//!   a restart reloads the state from disk and replays the log from `last_applied`;
//! - state is visible only once durable: apply works on a private copy, writes, and only then
//!   publishes the change to the read view ([`StateMachineStore`]); no fsync runs under the
//!   read view's lock.

// openraft's storage traits fix the error type (`StorageError`, ~224 bytes); the helpers
// here return the same type so `?` works without conversions.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

use crate::slashing::{AttestationRecord, Epoch, Slot, ValidatorHistory, Watermarks};
use crate::state::{AgentInfo, Command, Dirty, Response, StateData};
use crate::{codec, NodeId, TypeConfig};
use failover_common::types::{Pubkey, Root};

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const CF_SM: &str = "sm";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

/// Opens (or creates) the node's RocksDB database at `dir`.
///
/// Errors: RocksDB open errors (permissions, corruption, a lock held by another process).
pub fn open_db(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    open_db_with_wal_limit(dir, MAX_TOTAL_WAL_BYTES)
}

/// Bound on the write-ahead log files kept on disk (bytes; RocksDB `max_total_wal_size`).
///
/// The three column families share one WAL, and RocksDB deletes a WAL file only once every
/// family's memtable holding data from it was flushed. `meta` takes a few small writes (vote,
/// committed) and fills its memtable so slowly that, unbounded, it pinned every WAL file: the
/// steady-state bench saw the data directory grow by 6.6 MB per epoch, mostly WAL files, to
/// 704 MB after 100 epochs of 10,000 validators. Past this bound RocksDB flushes the families
/// that pin the oldest WAL file, which is then deleted. Durability is unchanged: a flush
/// writes SST files before the WAL they replace goes.
pub const MAX_TOTAL_WAL_BYTES: u64 = 64 * 1024 * 1024;

fn open_db_with_wal_limit(dir: &Path, max_wal_bytes: u64) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = Options::default();
    // Recover the WAL to its last consistent point: what survives a crash is a prefix of the
    // writes, in order (the durability argument in the module docs relies on it).
    opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
    opts.set_max_total_wal_size(max_wal_bytes);
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let cfs = [CF_LOGS, CF_META, CF_SM]
        .into_iter()
        .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    Ok(Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?))
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family created at open")
}

fn idx_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Counters of the log flusher (read by tests; not exported as Prometheus metrics).
#[derive(Debug, Default)]
pub struct FlushStats {
    /// Appends handed to the flusher (openraft `append` calls).
    pub appends: AtomicU64,
    /// WAL fsyncs the flusher ran; `appends / fsyncs` is how many appends shared one.
    pub fsyncs: AtomicU64,
}

/// The log flusher: one thread that makes appended entries durable and reports them to
/// openraft through [`LogFlushed`] (openraft's storage contract: `append` may return before
/// the entries are on disk, as long as the callback fires only after they are).
///
/// Every callback queued while an fsync runs is answered by the next one, so concurrent
/// appends share one fsync. Callbacks fire in append order. One fsync of the RocksDB WAL
/// makes every earlier write of this database durable, in write order (the WAL is one
/// sequential file), so an entry is never reported flushed before an earlier one.
struct Flusher {
    tx: std::sync::Mutex<mpsc::Sender<LogFlushed<TypeConfig>>>,
    /// Test hook: held by a test, it stops the flusher between taking the first waiting
    /// callback and collecting the rest.
    #[cfg(test)]
    gate: Arc<std::sync::Mutex<()>>,
}

impl Flusher {
    fn start(db: &Arc<DB>, stats: Arc<FlushStats>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        #[cfg(test)]
        let gate = Arc::new(std::sync::Mutex::new(()));
        #[cfg(test)]
        let thread_gate = gate.clone();
        // A weak handle: the thread must not keep the database open after the node dropped
        // its stores (a restart in the same process reopens it).
        let db = Arc::downgrade(db);
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    #[cfg(test)]
                    let _gate = thread_gate.lock();
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let res = match db.upgrade() {
                        Some(db) => db.flush_wal(true).map_err(|e| e.to_string()),
                        None => Err("the database was closed before the log was flushed".into()),
                    };
                    stats.fsyncs.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = &res {
                        tracing::error!(error = %e, entries = waiting.len(), "raft log fsync failed; this node stops");
                    }
                    for cb in waiting {
                        cb.log_io_completed(res.clone().map_err(std::io::Error::other));
                    }
                }
            })?;
        Ok(Self {
            tx: std::sync::Mutex::new(tx),
            #[cfg(test)]
            gate,
        })
    }
}

/// The Raft log store (openraft `RaftLogStorage`), cheap to clone.
///
/// Appends are written without waiting for the disk and made durable by the flusher
/// thread, which tells openraft through [`LogFlushed`]; votes, truncations and purges are
/// synced writes (which also make every earlier append durable).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    flusher: Arc<Flusher>,
    stats: Arc<FlushStats>,
}

impl LogStore {
    /// Log store over an open database; starts its flusher thread (`raft-log-flush`), which
    /// ends when the last clone of this store is dropped.
    ///
    /// Errors: the OS refuses to start the thread.
    pub fn new(db: Arc<DB>) -> std::io::Result<Self> {
        let stats = Arc::new(FlushStats::default());
        let flusher = Arc::new(Flusher::start(&db, stats.clone())?);
        Ok(Self { db, flusher, stats })
    }

    /// The flusher's counters (appends, fsyncs).
    pub fn flush_stats(&self) -> Arc<FlushStats> {
        self.stats.clone()
    }

    fn get_meta<T: for<'de> Deserialize<'de>>(&self, key: &str) -> StorageResult<Option<T>> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_META), key)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
        v.map(|b| serde_json::from_slice(&b))
            .transpose()
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &str,
        v: &T,
        subject: ErrorSubject<NodeId>,
    ) -> StorageResult<()> {
        let b = serde_json::to_vec(v).map_err(|e| io_err(subject.clone(), ErrorVerb::Write, e))?;
        self.db
            .put_cf_opt(cf(&self.db, CF_META), key, b, &synced())
            .map_err(|e| io_err(subject, ErrorVerb::Write, e))
    }

    fn last_log_id(&self) -> StorageResult<Option<LogId<NodeId>>> {
        let mut it = self
            .db
            .iterator_cf(cf(&self.db, CF_LOGS), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(r) => {
                let (_, v) = r.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                let ent: Entry<TypeConfig> = codec::decode(&v)
                    .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Ok(Some(ent.log_id))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            cf(&self.db, CF_LOGS),
            IteratorMode::From(&idx_key(start), Direction::Forward),
        );
        for r in it {
            let (k, v) = r.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().expect("8-byte log key"));
            if !range.contains(&idx) {
                break;
            }
            out.push(
                codec::decode(&v).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?,
            );
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta("last_purged")?;
        let last = self.last_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.put_meta("vote", vote, ErrorSubject::Vote)
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.get_meta("vote")
    }

    /// Not synced (DESIGN.md "Durability and fsyncs"): a lost `committed` only means openraft
    /// re-applies less at restart and learns the commit index from the leader again; it
    /// reaches the disk with the next fsync of the WAL, after every entry it covers.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        let b = serde_json::to_vec(&committed)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.db
            .put_cf(cf(&self.db, CF_META), "committed", b)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>("committed")?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let logs = cf(&self.db, CF_LOGS);
        for ent in entries {
            let b =
                codec::encode(&ent).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
            batch.put_cf(logs, idx_key(ent.log_id.index), b);
        }
        // Written to the WAL without waiting for the disk (readable at once); the flusher
        // fsyncs and only then tells openraft the entries are flushed.
        if let Err(e) = self.db.write(batch) {
            let msg = e.to_string();
            callback.log_io_completed(Err(std::io::Error::other(msg)));
            return Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e));
        }
        self.stats.appends.fetch_add(1, Ordering::Relaxed);
        let queued = self
            .flusher
            .tx
            .lock()
            .map_err(|_| "flusher lock poisoned".to_string())
            .and_then(|tx| {
                tx.send(callback)
                    .map_err(|_| "the log flusher thread has stopped".to_string())
            });
        queued.map_err(|e| {
            io_err(
                ErrorSubject::Logs,
                ErrorVerb::Write,
                std::io::Error::other(e),
            )
        })
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let logs = cf(&self.db, CF_LOGS);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(logs, idx_key(log_id.index), idx_key(u64::MAX));
        batch.delete_cf(logs, idx_key(u64::MAX));
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        // Record the purge point first, so a crash between the two writes never loses it.
        self.put_meta("last_purged", &log_id, ErrorSubject::Logs)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, CF_LOGS), idx_key(0), idx_key(log_id.index + 1));
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

/// Everything a snapshot carries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SmSnapshotData {
    /// Last applied log id at the snapshot.
    pub last_applied: Option<LogId<NodeId>>,
    /// Membership at the snapshot.
    pub membership: StoredMembership<NodeId, openraft::BasicNode>,
    /// The replicated state.
    pub data: StateData,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    /// One byte string in CBOR (a JSON array of numbers in snapshots stored before it).
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// Shared read view of the applied state, for the HTTP handlers.
pub type SharedState = Arc<RwLock<SmSnapshotData>>;

/// The state-machine store (openraft `RaftStateMachine`).
///
/// Two copies of the state: `working`, which only apply touches, and `state`, the published
/// read view. Apply changes `working`, writes the change in one synced batch, and only then
/// copies the changed parts into `state` (item 4 of the hostile-input issue): readers (status,
/// audit, metrics, snapshots) never see a change that is not on disk, and the fsync never runs
/// under the lock readers take.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<DB>,
    state: SharedState,
    working: Arc<std::sync::Mutex<SmSnapshotData>>,
    snapshot_seq: Arc<std::sync::atomic::AtomicU64>,
    /// Validators still stored in the old whole-history layout (`v/<pubkey>`): their next
    /// write replaces that key by per-record keys.
    legacy: Arc<std::sync::Mutex<std::collections::BTreeSet<Pubkey>>>,
    /// Set by a failed state-machine write: `working` is then ahead of the disk, so every
    /// later apply fails too (fail-stop) until the process restarts and reloads from disk.
    failed: Arc<std::sync::atomic::AtomicBool>,
    /// Test hook: the next state-machine write fails as an I/O error would.
    #[cfg(test)]
    fail_next_write: Arc<std::sync::atomic::AtomicBool>,
}

fn json<T: Serialize>(v: &T) -> StorageResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))
}

/// A log entry's or snapshot's bytes: the versioned binary envelope ([`codec`]).
fn binary<T: Serialize>(v: &T) -> StorageResult<Vec<u8>> {
    codec::encode(v).map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))
}

fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    io_err(ErrorSubject::StateMachine, ErrorVerb::Read, e)
}

/// An agent's counters, stored apart from its registration (`ac/<agent>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct AgentCounters {
    max_block_slot: Option<u64>,
    max_target_epoch: Option<u64>,
    records_accepted: u64,
}

impl AgentCounters {
    fn of(a: &AgentInfo) -> Self {
        Self {
            max_block_slot: a.max_block_slot,
            max_target_epoch: a.max_target_epoch,
            records_accepted: a.records_accepted,
        }
    }

    fn copy_into(self, a: &mut AgentInfo) {
        a.max_block_slot = self.max_block_slot;
        a.max_target_epoch = self.max_target_epoch;
        a.records_accepted = self.records_accepted;
    }
}

fn block_key(pk: &Pubkey, slot: Slot) -> String {
    format!("r/{pk}/b/{:020}", slot.0)
}

fn attestation_key(pk: &Pubkey, target: Epoch) -> String {
    format!("r/{pk}/a/{:020}", target.0)
}

fn watermark_key(pk: &Pubkey) -> String {
    format!("r/{pk}/w")
}

/// Adds to `batch` what turns the stored records of `pk` from `old` into `new`: puts for
/// new or changed records, deletes for dropped ones, the watermarks when they changed (or the
/// validator is new to the store); every key of `pk` deleted when `new` is `None`. The
/// comparison runs in memory; only changes reach RocksDB.
fn write_history(
    batch: &mut WriteBatch,
    sm: &rocksdb::ColumnFamily,
    pk: &Pubkey,
    old: Option<&ValidatorHistory>,
    new: Option<&ValidatorHistory>,
) -> StorageResult<()> {
    let Some(new) = new else {
        // `'0'` follows `'/'`: the range covers exactly the keys under `r/<pk>/`.
        batch.delete_range_cf(sm, format!("r/{pk}/"), format!("r/{pk}0"));
        return Ok(());
    };
    let empty = ValidatorHistory::default();
    let known = old.unwrap_or(&empty);
    write_map_diff(batch, sm, known.blocks(), new.blocks(), |slot| {
        block_key(pk, *slot)
    })?;
    write_map_diff(
        batch,
        sm,
        known.attestations(),
        new.attestations(),
        |target| attestation_key(pk, *target),
    )?;
    if old.is_none() || known.watermarks() != new.watermarks() {
        batch.put_cf(sm, watermark_key(pk), json(&new.watermarks())?);
    }
    Ok(())
}

/// Adds to `batch` a put (value as JSON) for every entry of `new` that `old` lacks or holds
/// differently, and a delete for every key of `old` that `new` lacks; `key` names the
/// RocksDB key of a map key.
fn write_map_diff<K: Ord, V: PartialEq + Serialize>(
    batch: &mut WriteBatch,
    sm: &rocksdb::ColumnFamily,
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
    key: impl Fn(&K) -> String,
) -> StorageResult<()> {
    for (k, v) in new {
        if old.get(k) != Some(v) {
            batch.put_cf(sm, key(k), json(v)?);
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(k)) {
        batch.delete_cf(sm, key(k));
    }
    Ok(())
}

/// A validator's per-record keys, gathered while loading.
#[derive(Default)]
struct StoredRecords {
    blocks: BTreeMap<Slot, Option<Root>>,
    attestations: BTreeMap<Epoch, AttestationRecord>,
    watermarks: Watermarks,
}

/// Reads one `r/<pubkey>/…` key into `into` (`rest` is the key without `r/`).
fn read_record_key(
    rest: &str,
    value: &[u8],
    into: &mut BTreeMap<Pubkey, StoredRecords>,
) -> StorageResult<()> {
    let bad = || {
        sm_read_err(std::io::Error::other(format!(
            "malformed state key r/{rest}"
        )))
    };
    let (pk, tail) = rest.split_once('/').ok_or_else(bad)?;
    let pk: Pubkey = pk.parse().map_err(|_| bad())?;
    let entry = into.entry(pk).or_default();
    match tail.split_once('/') {
        None if tail == "w" => {
            entry.watermarks = serde_json::from_slice(value).map_err(sm_read_err)?;
        }
        Some(("b", n)) => {
            let slot: u64 = n.parse().map_err(|_| bad())?;
            entry.blocks.insert(
                Slot(slot),
                serde_json::from_slice(value).map_err(sm_read_err)?,
            );
        }
        Some(("a", n)) => {
            let target: u64 = n.parse().map_err(|_| bad())?;
            entry.attestations.insert(
                Epoch(target),
                serde_json::from_slice(value).map_err(sm_read_err)?,
            );
        }
        _ => return Err(bad()),
    }
    Ok(())
}

impl StateMachineStore {
    /// Loads the state machine from the database (empty on a fresh database).
    ///
    /// Errors: RocksDB read errors or undecodable stored values (corruption).
    pub fn load(db: Arc<DB>) -> StorageResult<Self> {
        let mut s = SmSnapshotData::default();
        let mut records: BTreeMap<Pubkey, StoredRecords> = BTreeMap::new();
        let mut counters: Vec<(String, AgentCounters)> = Vec::new();
        let mut legacy = std::collections::BTreeSet::new();
        let sm = cf(&db, CF_SM);
        for r in db.iterator_cf(sm, IteratorMode::Start) {
            let (k, v) = r.map_err(sm_read_err)?;
            let key = std::str::from_utf8(&k).unwrap_or("");
            match key {
                "last_applied" => {
                    s.last_applied = serde_json::from_slice(&v).map_err(sm_read_err)?
                }
                "membership" => s.membership = serde_json::from_slice(&v).map_err(sm_read_err)?,
                "authority" => {
                    s.data.authority = serde_json::from_slice(&v).map_err(sm_read_err)?
                }
                "finality" => s.data.finality = serde_json::from_slice(&v).map_err(sm_read_err)?,
                "restore" => s.data.restore = serde_json::from_slice(&v).map_err(sm_read_err)?,
                "policy" => s.data.policy = serde_json::from_slice(&v).map_err(sm_read_err)?,
                "pending_policy" => {
                    s.data.pending_policy = serde_json::from_slice(&v).map_err(sm_read_err)?
                }
                "snapshot" => {}
                _ => {
                    if let Some(rest) = key.strip_prefix("r/") {
                        read_record_key(rest, &v, &mut records)?;
                    } else if let Some(rest) = key.strip_prefix("v/") {
                        // The layout before per-record keys: one key per whole history.
                        let pk = rest.parse().map_err(sm_read_err)?;
                        s.data
                            .validators
                            .insert(pk, serde_json::from_slice(&v).map_err(sm_read_err)?);
                        legacy.insert(pk);
                    } else if let Some(rest) = key.strip_prefix("ac/") {
                        counters.push((
                            rest.to_string(),
                            serde_json::from_slice(&v).map_err(sm_read_err)?,
                        ));
                    } else if let Some(rest) = key.strip_prefix("h/") {
                        let id: u64 = rest.parse().map_err(sm_read_err)?;
                        s.data
                            .handovers
                            .insert(id, serde_json::from_slice(&v).map_err(sm_read_err)?);
                    } else if let Some(rest) = key.strip_prefix("a/") {
                        s.data.agents.insert(
                            rest.to_string(),
                            serde_json::from_slice(&v).map_err(sm_read_err)?,
                        );
                    } else if key.starts_with("audit/") {
                        // keys are zero-padded so iteration order is append order
                        s.data
                            .audit
                            .push(serde_json::from_slice(&v).map_err(sm_read_err)?);
                    }
                }
            }
        }
        for (pk, r) in records {
            s.data.validators.insert(
                pk,
                ValidatorHistory::from_stored(r.blocks, r.attestations, r.watermarks),
            );
        }
        for (agent, c) in counters {
            c.copy_into(s.data.agents.entry(agent).or_default());
        }
        Ok(Self {
            db,
            legacy: Arc::new(std::sync::Mutex::new(legacy)),
            working: Arc::new(std::sync::Mutex::new(s.clone())),
            state: Arc::new(RwLock::new(s)),
            snapshot_seq: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            failed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            #[cfg(test)]
            fail_next_write: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    /// The shared read view of the applied state.
    pub fn shared(&self) -> SharedState {
        self.state.clone()
    }

    /// Adds to `batch` the writes of what `dirty` names, from the new state `s`; `old` is the
    /// state before the change (the published read view), against which validator histories
    /// are compared record by record, or `None` when the family was emptied first (every
    /// record is then written).
    fn write_dirty(
        &self,
        s: &SmSnapshotData,
        old: Option<&SmSnapshotData>,
        dirty: &Dirty,
        batch: &mut WriteBatch,
    ) -> StorageResult<()> {
        let sm = cf(&self.db, CF_SM);
        if dirty.authority {
            batch.put_cf(sm, "authority", json(&s.data.authority)?);
        }
        if dirty.finality {
            batch.put_cf(sm, "finality", json(&s.data.finality)?);
        }
        if dirty.restore {
            match &s.data.restore {
                Some(r) => batch.put_cf(sm, "restore", json(r)?),
                None => batch.delete_cf(sm, "restore"),
            }
        }
        if dirty.policy {
            batch.put_cf(sm, "policy", json(&s.data.policy)?);
            batch.put_cf(sm, "pending_policy", json(&s.data.pending_policy)?);
        }
        let mut legacy = self.legacy.lock().expect("legacy set lock");
        for pk in &dirty.validators {
            let before = if legacy.remove(pk) {
                // Replace the whole-history key by per-record keys, all of them.
                batch.delete_cf(sm, format!("v/{pk}"));
                None
            } else {
                old.and_then(|o| o.data.validators.get(pk))
            };
            write_history(batch, sm, pk, before, s.data.validators.get(pk))?;
        }
        drop(legacy);
        for id in &dirty.handovers {
            batch.put_cf(sm, format!("h/{id}"), json(&s.data.handovers[id])?);
        }
        for a in &dirty.agents {
            batch.put_cf(sm, format!("a/{a}"), json(&s.data.agents[a])?);
        }
        for a in dirty.agent_counters.union(&dirty.agents) {
            let c = AgentCounters::of(&s.data.agents[a]);
            batch.put_cf(sm, format!("ac/{a}"), json(&c)?);
        }
        if let Some(from) = dirty.audit_from {
            for (i, e) in s.data.audit.iter().enumerate().skip(from) {
                batch.put_cf(sm, format!("audit/{i:020}"), json(e)?);
            }
        }
        Ok(())
    }
}

/// Copies into the read view `to` what one apply changed in the working copy `from`: the
/// parts `dirty` names, `last_applied`, and the membership when it changed.
fn publish(from: &SmSnapshotData, to: &mut SmSnapshotData, dirty: &Dirty, membership: bool) {
    to.last_applied = from.last_applied;
    if membership {
        to.membership = from.membership.clone();
    }
    if dirty.authority {
        to.data.authority = from.data.authority.clone();
    }
    if dirty.finality {
        to.data.finality = from.data.finality.clone();
    }
    if dirty.restore {
        to.data.restore = from.data.restore.clone();
    }
    if dirty.policy {
        to.data.policy = from.data.policy;
        to.data.pending_policy = from.data.pending_policy.clone();
    }
    for pk in &dirty.validators {
        match from.data.validators.get(pk) {
            Some(h) => to.data.validators.insert(*pk, h.clone()),
            None => to.data.validators.remove(pk),
        };
    }
    for id in &dirty.handovers {
        if let Some(h) = from.data.handovers.get(id) {
            to.data.handovers.insert(*id, h.clone());
        }
    }
    for a in &dirty.agents {
        if let Some(info) = from.data.agents.get(a) {
            to.data.agents.insert(a.clone(), info.clone());
        }
    }
    for a in dirty.agent_counters.difference(&dirty.agents) {
        if let Some(info) = from.data.agents.get(a) {
            // Counters only: the key list is not copied again.
            AgentCounters::of(info).copy_into(to.data.agents.entry(a.clone()).or_default());
        }
    }
    if dirty.audit_from.is_some() {
        let have = to.data.audit.len();
        to.data
            .audit
            .extend(from.data.audit.iter().skip(have).cloned());
    }
}

impl StateMachineStore {
    /// One atomic write of the state machine's batch, not synced (DESIGN.md "Durability and
    /// fsyncs"): the entries it applies are already durable in the log, apply is a
    /// deterministic function of them, and the write reaches the disk with the next fsync of
    /// the WAL, before any later write (point-in-time WAL recovery keeps a prefix of the
    /// writes). A crash that loses it leaves `last_applied` behind, and openraft re-applies
    /// the committed entries from the log at restart.
    fn write_state(&self, batch: WriteBatch) -> StorageResult<()> {
        #[cfg(test)]
        if self
            .fail_next_write
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(io_err(
                ErrorSubject::StateMachine,
                ErrorVerb::Write,
                std::io::Error::other("injected write failure"),
            ));
        }
        self.db
            .write(batch)
            .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))
    }

    /// A batch that replaces the whole `sm` family with `new` and stores it as the current
    /// snapshot (`meta`, `bytes` = the JSON of `new`).
    fn replace_all(
        &self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        new: &SmSnapshotData,
        bytes: Vec<u8>,
    ) -> StorageResult<WriteBatch> {
        let sm = cf(&self.db, CF_SM);
        let mut batch = WriteBatch::default();
        // Replace the whole family: delete every existing key, then write the new state.
        for r in self.db.iterator_cf(sm, IteratorMode::Start) {
            let (k, _) = r.map_err(sm_read_err)?;
            batch.delete_cf(sm, k);
        }
        let all = Dirty {
            authority: true,
            finality: true,
            validators: new.data.validators.keys().copied().collect(),
            handovers: new.data.handovers.keys().copied().collect(),
            agents: new.data.agents.keys().cloned().collect(),
            agent_counters: Default::default(),
            audit_from: Some(0),
            restore: true,
            policy: true,
        };
        self.legacy.lock().expect("legacy set lock").clear();
        self.write_dirty(new, None, &all, &mut batch)?;
        batch.put_cf(sm, "last_applied", json(&new.last_applied)?);
        batch.put_cf(sm, "membership", json(&new.membership)?);
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        };
        batch.put_cf(sm, "snapshot", binary(&stored)?);
        Ok(batch)
    }
}

/// Seeds an EMPTY store with `state` as if this node had installed a snapshot of it: the
/// state machine, the current snapshot, `committed` and `last_purged` at
/// `state.last_applied`, and `vote`, in one synced `WriteBatch`. openraft then starts with
/// the log beginning after the snapshot, so a node added later receives the snapshot before
/// any entry (used by `coordinator restore`, `backup` module).
///
/// Errors: the store is not empty (any key in any column family), `state.last_applied` is
/// `None`, or a RocksDB error.
pub fn seed_snapshot(
    db: Arc<DB>,
    state: &SmSnapshotData,
    vote: Vote<NodeId>,
) -> anyhow::Result<()> {
    for name in [CF_LOGS, CF_META, CF_SM] {
        let mut it = db.iterator_cf(cf(&db, name), IteratorMode::Start);
        anyhow::ensure!(
            it.next().is_none(),
            "refusing to seed a store that already holds data (column family {name})"
        );
    }
    let last = state
        .last_applied
        .ok_or_else(|| anyhow::anyhow!("a seeded snapshot needs a last applied log id"))?;
    let sm = StateMachineStore::load(db.clone())?;
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: state.membership.clone(),
        snapshot_id: format!("restore-{}", last.index),
    };
    let bytes = codec::encode(state)?;
    let mut batch = sm.replace_all(&meta, state, bytes)?;
    let m = cf(&db, CF_META);
    batch.put_cf(m, "vote", serde_json::to_vec(&vote)?);
    batch.put_cf(m, "committed", serde_json::to_vec(&Some(last))?);
    batch.put_cf(m, "last_purged", serde_json::to_vec(&last)?);
    db.write_opt(batch, &synced())?;
    Ok(())
}

/// Opens the node's database at `dir` read-only (for an offline backup). Does not take the
/// database lock and writes nothing; on a directory a running node writes to it sees the
/// state as of the open.
///
/// Errors: no database at `dir`, or RocksDB open errors.
pub fn open_db_read_only(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let opts = Options::default();
    Ok(Arc::new(DB::open_cf_for_read_only(
        &opts,
        dir,
        [CF_LOGS, CF_META, CF_SM],
        false,
    )?))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (bytes, last_applied, membership) = {
            let s = self.state.read().expect("state lock");
            (binary(&*s)?, s.last_applied, s.membership.clone())
        };
        let seq = self
            .snapshot_seq
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes.clone(),
        };
        self.db
            .put_cf_opt(cf(&self.db, CF_SM), "snapshot", binary(&stored)?, &synced())
            .map_err(|e| {
                io_err(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Write,
                    e,
                )
            })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(
        Option<LogId<NodeId>>,
        StoredMembership<NodeId, openraft::BasicNode>,
    )> {
        let s = self.state.read().expect("state lock");
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        if self.failed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(io_err(
                ErrorSubject::StateMachine,
                ErrorVerb::Write,
                std::io::Error::other("an earlier state-machine write failed; restart the node"),
            ));
        }
        let mut dirty = Dirty::default();
        let mut responses = Vec::new();
        let mut batch = WriteBatch::default();
        // 1. Build: apply to the working copy, which no reader sees.
        let mut w = self.working.lock().expect("working state lock");
        let mut membership_changed = false;
        for ent in entries {
            w.last_applied = Some(ent.log_id);
            let resp = match &ent.payload {
                EntryPayload::Blank => Response::Ok,
                EntryPayload::Normal(cmd) => {
                    let cmd: &Command = cmd;
                    w.data.apply(ent.log_id.index, cmd, &mut dirty)
                }
                EntryPayload::Membership(m) => {
                    w.membership = StoredMembership::new(Some(ent.log_id), m.clone());
                    membership_changed = true;
                    Response::Ok
                }
            };
            responses.push(resp);
        }
        // 2. Write: one atomic batch, with no reader lock held.
        {
            // The read view still holds the state before this apply (it is published below).
            let before = self.state.read().expect("state lock");
            self.write_dirty(&w, Some(&before), &dirty, &mut batch)?;
        }
        let sm = cf(&self.db, CF_SM);
        batch.put_cf(sm, "last_applied", json(&w.last_applied)?);
        if membership_changed {
            batch.put_cf(sm, "membership", json(&w.membership)?);
        }
        if let Err(e) = self.write_state(batch) {
            self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::error!(
                error = %e,
                last_applied = ?w.last_applied,
                "cannot persist the state machine: this node stops (fail-stop) and serves only \
                 state that is on disk; fix the disk and restart it"
            );
            return Err(e);
        }
        // 3. Publish: copy what changed into the read view.
        let mut s = self.state.write().expect("state lock");
        publish(&w, &mut s, &dirty, membership_changed);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let mut new: SmSnapshotData = codec::decode(&bytes).map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        new.last_applied = meta.last_log_id;
        new.membership = meta.last_membership.clone();
        let batch = self.replace_all(meta, &new, bytes)?;
        self.db.write_opt(batch, &synced()).map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })?;
        *self.working.lock().expect("working state lock") = new.clone();
        *self.state.write().expect("state lock") = new;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_SM), "snapshot")
            .map_err(sm_read_err)?;
        match v {
            None => Ok(None),
            Some(b) => {
                let s: StoredSnapshot = codec::decode(&b).map_err(sm_read_err)?;
                Ok(Some(Snapshot {
                    meta: s.meta,
                    snapshot: Box::new(Cursor::new(s.data)),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId};

    fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn audit(at_ms: u64) -> Command {
        Command::RecordAudit {
            operator: "alice".into(),
            action: failover_protocol::AuditAction::ClusterPromote,
            detail: String::new(),
            outcome: "completed".into(),
            at_ms,
        }
    }

    fn blank(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn history(targets: std::ops::RangeInclusive<u64>) -> ValidatorHistory {
        let mut h = ValidatorHistory::default();
        for t in targets {
            h.check_and_insert_attestation(t - 1, t, Root([t as u8; 32]));
        }
        h.check_and_insert_block(Slot(64), Root([1; 32]));
        h
    }

    fn record_batch(n: u8) -> Command {
        Command::RecordBatch {
            agent: "agent-eu".into(),
            token: 7,
            items: (0..n)
                .map(|i| failover_protocol::RecordItem::Attestation {
                    pubkey: Pubkey([i; 48]),
                    source_epoch: 1_000_000,
                    target_epoch: 1_000_001,
                    signing_root: Root([i.wrapping_mul(3); 32]),
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn log_entries_are_the_binary_envelope_and_json_entries_still_read() {
        use openraft::storage::RaftLogStorageExt;
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        // Entry 1 as a store written before the envelope holds it.
        let legacy = entry(1, record_batch(100));
        db.put_cf(
            cf(&db, CF_LOGS),
            idx_key(1),
            serde_json::to_vec(&legacy).unwrap(),
        )
        .unwrap();
        let mut log = LogStore::new(db.clone()).unwrap();
        let fresh = entry(2, record_batch(100));
        log.blocking_append([fresh.clone()]).await.unwrap();

        let raw = db.get_cf(cf(&db, CF_LOGS), idx_key(2)).unwrap().unwrap();
        assert_eq!(&raw[..2], &[codec::MAGIC, codec::VERSION]);
        let json_len = serde_json::to_vec(&fresh).unwrap().len();
        // 100 attestations: 48 + 32 bytes of key material each, raw instead of hex, and
        // integers instead of text (measured: 15,908 bytes against 26,440 of JSON).
        assert!(
            raw.len() * 3 < json_len * 2,
            "{} bytes binary vs {json_len} bytes JSON",
            raw.len()
        );
        let read = log.try_get_log_entries(1..=2).await.unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(
            serde_json::to_value(&read[0]).unwrap(),
            serde_json::to_value(&legacy).unwrap()
        );
        assert_eq!(
            serde_json::to_value(&read[1]).unwrap(),
            serde_json::to_value(&fresh).unwrap()
        );
        assert_eq!(
            log.get_log_state().await.unwrap().last_log_id,
            Some(fresh.log_id)
        );

        // A corrupt entry is a read error that names the encoding, not a panic.
        db.put_cf(cf(&db, CF_LOGS), idx_key(3), [codec::MAGIC, 9, 0])
            .unwrap();
        let e = log.try_get_log_entries(3..=3).await.unwrap_err();
        assert!(e.to_string().contains("version 9"), "{e}");
    }

    fn same_state(a: &StateMachineStore, b: &StateMachineStore) {
        let (a, b) = (a.shared(), b.shared());
        let (a, b) = (a.read().unwrap(), b.read().unwrap());
        assert_eq!(a.data, b.data);
        assert_eq!(a.last_applied, b.last_applied);
        assert_eq!(a.membership, b.membership);
    }

    #[tokio::test]
    async fn a_snapshot_round_trips_through_the_envelope_and_a_json_one_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let mut sm = StateMachineStore::load(db.clone()).unwrap();
        sm.apply([entry(1, audit(1)), entry(2, audit(2))])
            .await
            .unwrap();
        let built = sm.build_snapshot().await.unwrap();
        let bytes = built.snapshot.into_inner();
        assert_eq!(&bytes[..2], &[codec::MAGIC, codec::VERSION]);

        // Installed on another node, it gives the same state.
        let other_dir = tempfile::tempdir().unwrap();
        let mut other = StateMachineStore::load(open_db(other_dir.path()).unwrap()).unwrap();
        other
            .install_snapshot(&built.meta, Box::new(Cursor::new(bytes.clone())))
            .await
            .unwrap();
        same_state(&other, &sm);
        let current = other.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.snapshot.into_inner(), bytes);

        // A snapshot stored as JSON before the envelope still reads, and installs.
        let state_json = serde_json::to_vec(&*sm.shared().read().unwrap()).unwrap();
        let legacy = StoredSnapshot {
            meta: built.meta.clone(),
            data: state_json.clone(),
        };
        db.put_cf(
            cf(&db, CF_SM),
            "snapshot",
            serde_json::to_vec(&legacy).unwrap(),
        )
        .unwrap();
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, built.meta);
        let third_dir = tempfile::tempdir().unwrap();
        let mut third = StateMachineStore::load(open_db(third_dir.path()).unwrap()).unwrap();
        third
            .install_snapshot(&current.meta, current.snapshot)
            .await
            .unwrap();
        same_state(&third, &sm);
    }

    /// Bytes of the WAL files (`*.log`) in `dir`.
    fn wal_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn a_rarely_written_family_does_not_pin_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db_with_wal_limit(dir.path(), 4 * 1024 * 1024).unwrap();
        // One small write to `meta`, then 40 MB of log entries: unbounded, the first WAL file
        // (holding the `meta` write) and every later one would stay.
        db.put_cf(cf(&db, CF_META), "vote", b"x").unwrap();
        let value = vec![7u8; 64 * 1024];
        for i in 0..640u64 {
            db.put_cf(cf(&db, CF_LOGS), idx_key(i), &value).unwrap();
        }
        // Flushes and WAL deletion run in the background.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while wal_bytes(dir.path()) > 16 * 1024 * 1024 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let kept = wal_bytes(dir.path());
        assert!(
            kept <= 16 * 1024 * 1024,
            "{kept} bytes of WAL kept after 40 MB of writes with a 4 MiB bound"
        );
        assert_eq!(
            db.get_cf(cf(&db, CF_META), "vote").unwrap().as_deref(),
            Some(&b"x"[..])
        );
    }

    #[test]
    fn a_change_writes_only_the_records_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let sm = cf(&db, CF_SM);
        let pk = Pubkey([3; 48]);
        let old = history(1..=100);

        let mut new = old.clone();
        new.check_and_insert_attestation(100, 101, Root([7; 32]));
        let mut batch = WriteBatch::default();
        write_history(&mut batch, sm, &pk, Some(&old), Some(&new)).unwrap();
        assert_eq!(batch.len(), 1, "one new attestation, one put");

        let mut pruned = new.clone();
        pruned.prune_below(Slot(0), Epoch(51));
        let mut batch = WriteBatch::default();
        write_history(&mut batch, sm, &pk, Some(&new), Some(&pruned)).unwrap();
        assert_eq!(batch.len(), 50 + 1, "50 deletes and the new watermarks");

        let mut batch = WriteBatch::default();
        write_history(&mut batch, sm, &pk, None, Some(&pruned)).unwrap();
        assert_eq!(
            batch.len(),
            51 + 1 + 1,
            "a new validator: every record and its watermarks"
        );
    }

    #[test]
    fn an_old_whole_history_key_loads_and_is_replaced_by_record_keys_at_its_next_change() {
        let dir = tempfile::tempdir().unwrap();
        let pk = Pubkey([5; 48]);
        let old = history(1..=10);
        {
            let db = open_db(dir.path()).unwrap();
            db.put_cf(cf(&db, CF_SM), format!("v/{pk}"), json(&old).unwrap())
                .unwrap();
        }
        let db = open_db(dir.path()).unwrap();
        let store = StateMachineStore::load(db.clone()).unwrap();
        let before = store.shared().read().unwrap().clone();
        assert_eq!(before.data.validators[&pk], old);

        let mut after = before.clone();
        let h = after.data.validators.get_mut(&pk).unwrap();
        assert!(h
            .check_and_insert_attestation(10, 11, Root([9; 32]))
            .allows_signing());
        let mut dirty = Dirty::default();
        dirty.validators.insert(pk);
        let mut batch = WriteBatch::default();
        store
            .write_dirty(&after, Some(&before), &dirty, &mut batch)
            .unwrap();
        db.write(batch).unwrap();
        drop(store);

        let sm = cf(&db, CF_SM);
        assert!(db.get_cf(sm, format!("v/{pk}")).unwrap().is_none());
        let record_keys = db
            .prefix_iterator_cf(sm, format!("r/{pk}/"))
            .filter(|r| {
                r.as_ref()
                    .unwrap()
                    .0
                    .starts_with(format!("r/{pk}/").as_bytes())
            })
            .count();
        assert_eq!(
            record_keys,
            11 + 1 + 1,
            "every record, the block and the watermarks"
        );
        let reloaded = StateMachineStore::load(db.clone()).unwrap();
        assert_eq!(
            reloaded.shared().read().unwrap().data.validators[&pk],
            after.data.validators[&pk]
        );
    }

    // The gate is a std mutex on purpose: it stops the flusher's OS thread, not a task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_queued_during_an_fsync_share_the_next_one() {
        use openraft::storage::RaftLogStorageExt;
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::new(open_db(dir.path()).unwrap()).unwrap();
        let stats = log.flush_stats();

        // Hold the flusher: the first append's callback is taken, the fsync waits.
        let gate = log.flusher.gate.clone();
        let held = gate.lock().unwrap();
        let mut tasks = Vec::new();
        let done = Arc::new(std::sync::Mutex::new(Vec::new()));
        for i in 1..=10u64 {
            let mut log = log.clone();
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                log.blocking_append([blank(i)]).await.unwrap();
                done.lock().unwrap().push(i);
            }));
            // Each append is written before the next starts, as openraft issues them.
            while stats.appends.load(Ordering::SeqCst) < i {
                tokio::task::yield_now().await;
            }
        }
        // Written but not reported flushed: readable, and no callback has fired.
        let mut reader = log.clone();
        assert_eq!(reader.try_get_log_entries(1..=10).await.unwrap().len(), 10);
        assert!(done.lock().unwrap().is_empty());
        assert_eq!(stats.fsyncs.load(Ordering::SeqCst), 0);

        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(stats.appends.load(Ordering::SeqCst), 10);
        assert_eq!(
            stats.fsyncs.load(Ordering::SeqCst),
            1,
            "the ten appends queued during one fsync share the next"
        );
        assert_eq!(done.lock().unwrap().len(), 10);
    }

    #[tokio::test]
    async fn a_failed_write_publishes_nothing_and_stops_every_later_apply() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachineStore::load(open_db(dir.path()).unwrap()).unwrap();
        let view = sm.shared();
        sm.apply([entry(1, audit(1))]).await.unwrap();
        assert_eq!(view.read().unwrap().data.audit.len(), 1);

        sm.fail_next_write
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(sm.apply([entry(2, audit(2))]).await.is_err());
        {
            let seen = view.read().unwrap();
            assert_eq!(
                seen.data.audit.len(),
                1,
                "the unpersisted entry is not visible"
            );
            assert_eq!(seen.last_applied.map(|l| l.index), Some(1));
        }
        // The working copy is ahead of the disk now: nothing more may be applied.
        assert!(sm.apply([entry(2, audit(2))]).await.is_err());
        assert_eq!(view.read().unwrap().data.audit.len(), 1);

        // A restart reloads what is on disk and applies the entry again.
        drop(sm);
        let mut sm = StateMachineStore::load(open_db(dir.path()).unwrap()).unwrap();
        assert_eq!(sm.shared().read().unwrap().data.audit.len(), 1);
        sm.apply([entry(2, audit(2))]).await.unwrap();
        assert_eq!(sm.shared().read().unwrap().data.audit.len(), 2);
    }
}
