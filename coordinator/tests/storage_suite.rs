//! openraft's storage conformance suite on the RocksDB log and state-machine store
//! (STYLE.md 7).

use coordinator::store::{open_db, LogStore, StateMachineStore};
use coordinator::{NodeId, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_db(dir.path()).expect("open rocksdb");
        let sm = StateMachineStore::load(db.clone())?;
        Ok((dir, LogStore::new(db).expect("start the log flusher"), sm))
    }
}

#[test]
fn rocksdb_store_passes_openraft_storage_suite() {
    Suite::test_all(RocksBuilder).expect("openraft storage suite");
}
