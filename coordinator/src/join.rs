//! Whether this node may vote: a node that lost its disk must not help elect a leader that
//! lacks committed records (item 5 of the hostile-input issue; DESIGN.md I6).
//!
//! Raft's safety rests on every voter keeping what it acknowledged. A voter whose store was
//! wiped comes back empty and would grant its vote to any candidate; with the old leader gone,
//! a candidate that missed a committed record can then win with the wiped node's vote, and
//! the record is lost. So a node remembers, in a small file beside its store
//! (`DATA_DIR/cluster-identity`), whether it has joined:
//! - a node that starts with an empty store and no such file writes `joining`: it is either
//!   a node of a brand-new cluster, a learner being added (the replace-node runbook), or a
//!   voter that lost its disk; it cannot tell which, so it assumes the worst;
//! - while `joining`, it grants no vote to a candidate whose log holds anything beyond the
//!   founding membership entry (last log index > 0), which is refused with 403 `not_joined`;
//!   at founding, when nothing can have been committed, it votes normally;
//! - it accepts the log from the leader and remembers the largest commit index the leader
//!   sent; once it has applied at least that far, it holds every record committed before it
//!   came back, writes `joined`, and votes like any other node from then on;
//! - the bootstrap node that founds the cluster, and a node whose store already holds data
//!   when this file is missing (a node from before this rule, or one restored from a backup),
//!   are `joined` at once.
//!
//! The file is replaced atomically (write, fsync, rename, fsync of the folder), so a crash
//! leaves either the old state or the new one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{NodeId, Raft};

/// The file's name inside the data directory.
pub const FILE_NAME: &str = "cluster-identity";

/// This node's join state.
#[derive(Debug)]
pub struct JoinState {
    path: PathBuf,
    node: NodeId,
    joined: AtomicBool,
    leader_commit: AtomicU64,
}

impl JoinState {
    /// Reads (or creates) the state in `data_dir` for node `node` whose store
    /// `store_has_data` or not (module docs).
    ///
    /// Errors: the file cannot be read or written.
    pub fn open(data_dir: &Path, node: NodeId, store_has_data: bool) -> std::io::Result<Self> {
        let path = data_dir.join(FILE_NAME);
        let s = Self {
            path,
            node,
            joined: AtomicBool::new(false),
            leader_commit: AtomicU64::new(0),
        };
        match std::fs::read_to_string(&s.path) {
            Ok(text) if text.starts_with("joined") => s.joined.store(true, Ordering::SeqCst),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if store_has_data {
                    s.write(&format!(
                        "joined {node} (store held data when this file was made)"
                    ))?;
                    s.joined.store(true, Ordering::SeqCst);
                } else {
                    s.write(&format!("joining {node}"))?;
                }
            }
            Err(e) => return Err(e),
        }
        Ok(s)
    }

    /// True once this node may vote for any candidate.
    pub fn is_joined(&self) -> bool {
        self.joined.load(Ordering::SeqCst)
    }

    /// Whether this node may grant its vote to a candidate whose last log index is
    /// `candidate_last_index` (`None` for an empty log): always once joined, otherwise only
    /// to a candidate of a brand-new cluster.
    pub fn may_vote_for(&self, candidate_last_index: Option<u64>) -> bool {
        self.is_joined() || candidate_last_index.unwrap_or(0) == 0
    }

    /// Records a commit index (log index) the leader sent.
    pub fn observe_leader_commit(&self, index: u64) {
        self.leader_commit.fetch_max(index, Ordering::SeqCst);
    }

    /// Marks this node joined after it applied up to `applied` (log index).
    ///
    /// Errors: the file cannot be written (the node then stays `joining`).
    pub fn mark_joined(&self, applied: u64) -> std::io::Result<()> {
        if self.is_joined() {
            return Ok(());
        }
        self.write(&format!("joined {} at applied index {applied}", self.node))?;
        self.joined.store(true, Ordering::SeqCst);
        tracing::info!(
            node = self.node,
            applied,
            "caught up with the leader: this node votes again"
        );
        Ok(())
    }

    /// Until joined: every 200 ms, marks the node joined once it has applied at least the
    /// largest commit index a leader sent it (and that index is positive).
    pub async fn watch(self: Arc<Self>, raft: Raft) {
        if self.is_joined() {
            return;
        }
        tracing::warn!(
            node = self.node,
            "empty store: this node grants no vote to a candidate with history until it has \
             caught up with the leader's log (it may have lost records it acknowledged)"
        );
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let commit = self.leader_commit.load(Ordering::SeqCst);
            let applied = raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
            if commit > 0 && applied >= commit {
                match self.mark_joined(applied) {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::error!(error = %e, file = %self.path.display(), "cannot record that this node joined")
                    }
                }
            }
        }
    }

    fn write(&self, text: &str) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_store_votes_only_at_founding_until_it_caught_up() {
        let dir = tempfile::tempdir().unwrap();
        let j = JoinState::open(dir.path(), 2, false).unwrap();
        assert!(!j.is_joined());
        assert!(j.may_vote_for(None));
        assert!(j.may_vote_for(Some(0)));
        assert!(!j.may_vote_for(Some(7)));
        // a restart before catching up stays joining, even with data in the store
        let j = JoinState::open(dir.path(), 2, true).unwrap();
        assert!(!j.may_vote_for(Some(7)));
        j.mark_joined(9).unwrap();
        assert!(j.may_vote_for(Some(7)));
        let j = JoinState::open(dir.path(), 2, false).unwrap();
        assert!(j.is_joined(), "joined survives a restart");
    }

    #[test]
    fn a_store_with_data_and_no_file_is_joined() {
        let dir = tempfile::tempdir().unwrap();
        let j = JoinState::open(dir.path(), 1, true).unwrap();
        assert!(j.is_joined());
        assert!(std::fs::read_to_string(dir.path().join(FILE_NAME))
            .unwrap()
            .starts_with("joined"));
    }
}
