//! Raft membership changes, for replacing a coordinator node: add a learner, promote it to
//! voter, remove the old node (DESIGN.md "Membership"). [`Membership`] holds the operations
//! over a running [`Node`]; the node itself knows nothing of them.
//!
//! Every change runs on the leader, one at a time (a second one is refused with
//! [`MembershipError::InProgress`]), in a task of its own so that a caller that disconnects or
//! times out never leaves openraft's two-step joint change half done. Before proposing, the
//! leader checks what openraft would not:
//! - a learner's URL really answers as that node id and proves that it holds the cluster
//!   token without revealing it ([`crate::identity::probe_identity`]: a random challenge, an HMAC answer), so
//!   the leader never sends the token or the log to an address an operator typed by mistake
//!   or on purpose;
//! - a learner is caught up (at most [`CAUGHT_UP_MAX_LAG`] entries behind) before it becomes a
//!   voter;
//! - the voter set after the change keeps a majority of reachable, caught-up voters, so the
//!   joint configuration can commit rather than hang.
//!
//! Decisions:
//! - removing the leader is allowed: openraft keeps it leading until the configuration
//!   without it is committed, then it steps down and the remaining voters elect a new leader
//!   within about one election timeout (writes fail closed meanwhile). The answer carries a
//!   warning saying so;
//! - an even voter count is allowed (replacing a node of three goes through four) but the
//!   answer warns about it, and about fewer than three voters; an empty voter set is refused;
//! - a removed node leaves the membership completely unless `keep_learner` is set;
//! - each change is audited (`cluster.add_learner`, `cluster.promote`, `cluster.remove`) with a
//!   [`Command::RecordAudit`] entry written after the outcome is known; removing the leader
//!   itself is audited just before the change (outcome `proposed: …`), because afterwards the
//!   removed node can no longer reach the cluster. The audit entry is best effort: a change
//!   that committed is reported as such even if its audit entry could not be written.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, RaftMetrics};

use crate::identity::probe_identity;
use crate::node::{now_ms, Node};
use crate::state::Command;
use crate::NodeId;
use failover_protocol::{
    AddLearnerBody, AuditAction, ChangeAction, ChangeOutcome, ChangeVotersBody, ErrorCode,
    MemberRole, MemberView, MembersView,
};

/// Largest lag, in log entries behind the leader's last log index, at which a learner counts as
/// caught up (ready to be promoted), and a voter counts towards the quorum check.
pub const CAUGHT_UP_MAX_LAG: u64 = 100;

/// Deadline of one identity probe of a peer (quorum check, learner check).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a membership change was refused or has no known outcome. Each has one error code of the
/// protocol ([`MembershipError::code`]); the API layer answers it with that code's status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Malformed request: 400 `bad_request`.
    #[error("{0}")]
    BadRequest(String),
    /// The id is not a member (or, for promote, not a learner): 404 `unknown_node`.
    #[error("{0}")]
    UnknownNode(String),
    /// The id is already a member in another role or at another URL: 409 `already_member`.
    #[error("{0}")]
    AlreadyMember(String),
    /// The URL answers as another node id: 409 `wrong_node`.
    #[error("{0}")]
    WrongNode(String),
    /// The node to add could not be reached from the leader: 409 `node_unreachable`.
    #[error("{0}")]
    NodeUnreachable(String),
    /// The learner to promote lags behind: 409 `not_caught_up`.
    #[error("{0}")]
    NotCaughtUp(String),
    /// Another membership change is running or not yet committed: 409 `change_in_progress`.
    #[error("{0}")]
    InProgress(String),
    /// The change would leave no voter: 409 `no_voters_left`.
    #[error("{0}")]
    NoVotersLeft(String),
    /// The voters after the change would not hold a majority of reachable, caught-up nodes:
    /// 409 `would_lose_quorum`.
    #[error("{0}")]
    WouldLoseQuorum(String),
    /// No quorum, no leader, or no answer in time; the outcome may be unknown: 503
    /// `unavailable`.
    #[error("{message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// The leader's URL, when known.
        leader_hint: Option<String>,
    },
    /// The learner was added but had not caught up in time; it keeps replicating: 504
    /// `catch_up_timeout`.
    #[error("{0}")]
    CatchUpTimeout(String),
}

impl MembershipError {
    /// The protocol's error code for this refusal (its HTTP status is
    /// [`ErrorCode::status`]); also the label in the audit entry of a refused change.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::UnknownNode(_) => ErrorCode::UnknownNode,
            Self::AlreadyMember(_) => ErrorCode::AlreadyMember,
            Self::WrongNode(_) => ErrorCode::WrongNode,
            Self::NodeUnreachable(_) => ErrorCode::NodeUnreachable,
            Self::NotCaughtUp(_) => ErrorCode::NotCaughtUp,
            Self::InProgress(_) => ErrorCode::ChangeInProgress,
            Self::NoVotersLeft(_) => ErrorCode::NoVotersLeft,
            Self::WouldLoseQuorum(_) => ErrorCode::WouldLoseQuorum,
            Self::Unavailable { .. } => ErrorCode::Unavailable,
            Self::CatchUpTimeout(_) => ErrorCode::CatchUpTimeout,
        }
    }

    /// The leader's URL, for [`MembershipError::Unavailable`].
    pub fn leader_hint(&self) -> Option<String> {
        match self {
            Self::Unavailable { leader_hint, .. } => leader_hint.clone(),
            _ => None,
        }
    }
}

type Metrics = RaftMetrics<NodeId, BasicNode>;

/// What an openraft membership call answers.
type RaftChangeResult = Result<
    openraft::raft::ClientWriteResponse<crate::TypeConfig>,
    RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
>;

/// Matched log index of `id` as the leader sees it (its own last log index for the leader).
fn matched(m: &Metrics, leader: NodeId, id: NodeId) -> Option<u64> {
    let repl = m.replication.as_ref()?;
    match repl.get(&id) {
        Some(l) => l.map(|l| l.index),
        None if id == leader => m.last_log_index,
        None => None,
    }
}

/// Highest index held by a majority of each voter configuration.
fn quorum_index(m: &Metrics, leader: NodeId) -> Option<u64> {
    let configs = m.membership_config.membership().get_joint_config();
    let mut commit: Option<u64> = None;
    for voters in configs.iter().filter(|c| !c.is_empty()) {
        let mut idx: Vec<Option<u64>> = voters.iter().map(|v| matched(m, leader, *v)).collect();
        // Largest first: the majority-th largest is held by a majority.
        idx.sort_unstable_by(|a, b| b.cmp(a));
        let q = idx[voters.len() / 2]?;
        commit = Some(commit.map_or(q, |c| c.min(q)));
    }
    commit
}

fn lag_of(m: &Metrics, matched: Option<u64>) -> Option<u64> {
    matched.map(|i| m.last_log_index.unwrap_or(0).saturating_sub(i))
}

fn ids(set: &BTreeSet<NodeId>) -> String {
    let v: Vec<String> = set.iter().map(|i| i.to_string()).collect();
    format!("[{}]", v.join(", "))
}

fn unavailable(message: impl Into<String>, leader_hint: Option<String>) -> MembershipError {
    MembershipError::Unavailable {
        message: message.into(),
        leader_hint,
    }
}

/// The membership operations of one node; each change runs on the leader (module docs). Cheap
/// to clone: it holds the node.
#[derive(Clone)]
pub struct Membership {
    node: Arc<Node>,
}

impl Membership {
    /// The membership operations of `node`.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// The membership as this node sees it; with replication progress when it is the leader.
    pub fn members_view(&self) -> MembersView {
        let m = self.node.raft.metrics().borrow().clone();
        self.view_from(&m)
    }

    fn view_from(&self, m: &Metrics) -> MembersView {
        let membership = m.membership_config.membership();
        let is_leader = m.current_leader == Some(self.node.id) && m.replication.is_some();
        let regions: BTreeMap<NodeId, String> = self
            .node
            .config
            .peers
            .iter()
            .map(|p| (p.id, p.region.clone()))
            .collect();
        let member = |id: NodeId, role: MemberRole| {
            let matched = if is_leader {
                matched(m, self.node.id, id)
            } else {
                None
            };
            MemberView {
                id,
                role,
                url: membership
                    .get_node(&id)
                    .map(|n| n.addr.clone())
                    .unwrap_or_default(),
                region: regions.get(&id).cloned(),
                leader: m.current_leader == Some(id),
                matched_index: matched,
                lag: lag_of(m, matched),
            }
        };
        let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
        MembersView {
            answered_by: self.node.id,
            leader_id: m.current_leader,
            term: m.current_term,
            commit_index: if is_leader {
                quorum_index(m, self.node.id)
            } else {
                None
            },
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            membership_log_index: m.membership_config.log_id().map(|l| l.index),
            joint: membership.get_joint_config().len() > 1,
            configs: membership
                .get_joint_config()
                .iter()
                .map(|c| c.iter().copied().collect())
                .collect(),
            voters: voter_ids
                .iter()
                .map(|id| member(*id, MemberRole::Voter))
                .collect(),
            learners: membership
                .learner_ids()
                .map(|id| member(id, MemberRole::Learner))
                .collect(),
            replication_known: is_leader,
        }
    }

    fn not_leader(&self) -> MembershipError {
        unavailable(
            format!(
                "node {} is not the leader: membership changes run on the leader",
                self.node.id
            ),
            self.node.leader().map(|l| l.1),
        )
    }

    fn change_timeout(&self) -> Duration {
        Duration::from_millis(self.node.config.raft.write_timeout_ms.saturating_mul(2))
    }

    /// Adds node `req.id` at `req.url` as a learner and waits until it has caught up (at most
    /// [`CAUGHT_UP_MAX_LAG`] entries behind, and holding the membership entry that added it),
    /// for at most `req.catch_up_timeout()`. Runs on the leader only; `operator` is recorded in
    /// the audit trail. Adding a learner already present at the same URL only waits.
    ///
    /// Errors: [`MembershipError::AlreadyMember`] (a voter, or a learner at another URL),
    /// [`MembershipError::NodeUnreachable`], [`MembershipError::WrongNode`],
    /// [`MembershipError::InProgress`], [`MembershipError::Unavailable`] (not the leader, no
    /// quorum, outcome unknown), [`MembershipError::CatchUpTimeout`].
    pub async fn add_learner(
        &self,
        req: AddLearnerBody,
        operator: String,
    ) -> Result<ChangeOutcome, MembershipError> {
        req.validate().map_err(MembershipError::BadRequest)?;
        if self.node.tls.is_some() && !req.url.starts_with("https://") {
            return Err(MembershipError::BadRequest(format!(
                "url {:?} must be https://: this cluster's links are TLS, and a node is added \
                 only after its certificate was checked",
                req.url
            )));
        }
        let this = self.clone();
        let detail = format!("node {} at {}", req.id, req.url);
        self.spawn_audited(
            operator,
            AuditAction::ClusterAddLearner,
            detail,
            async move { this.add_learner_inner(req).await },
        )
        .await
    }

    async fn add_learner_inner(
        &self,
        req: AddLearnerBody,
    ) -> Result<ChangeOutcome, MembershipError> {
        let _guard = self.lock_change()?;
        let m = self.node.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if membership.voter_ids().any(|v| v == req.id) {
            return Err(MembershipError::AlreadyMember(format!(
                "node {} is already a voter",
                req.id
            )));
        }
        let existing = membership.get_node(&req.id).map(|n| n.addr.clone());
        if let Some(addr) = &existing {
            if addr.trim_end_matches('/') != req.url.trim_end_matches('/') {
                return Err(MembershipError::AlreadyMember(format!(
                    "node {} is already a learner at {addr}; remove it first to change its URL",
                    req.id
                )));
            }
        }
        // The leader must reach the node, and it must be the node we think it is, at the URL
        // that goes into the membership and at this node's own config URL for it, if any.
        let mut urls = vec![req.url.clone()];
        if let Some(p) = self.node.config.peers.iter().find(|p| p.id == req.id) {
            if p.url.trim_end_matches('/') != req.url.trim_end_matches('/') {
                urls.push(p.url.clone());
            }
        }
        for url in &urls {
            let ident = probe_identity(
                &self.node.http,
                self.node.cluster_token.as_deref(),
                url,
                PROBE_TIMEOUT,
            )
                .await
                .map_err(|e| {
                    MembershipError::NodeUnreachable(format!(
                        "leader {} cannot reach node {} at {url}: {e}; start it first (empty data \
                         dir, bootstrap = false, same cluster token or a certificate from the cluster CA) and check the URL; nothing was sent to it",
                        self.node.id, req.id
                    ))
                })?;
            if ident.node_id != req.id {
                return Err(MembershipError::WrongNode(format!(
                    "the coordinator at {url} is node {}, not node {}",
                    ident.node_id, req.id
                )));
            }
        }
        let (changed, log_index) = if existing.is_some() {
            (false, m.membership_config.log_id().map_or(0, |l| l.index))
        } else {
            let raft = self.node.raft.clone();
            let (id, addr) = (req.id, req.url.clone());
            let task =
                tokio::spawn(async move { raft.add_learner(id, BasicNode { addr }, false).await });
            let resp = self.await_change(task).await?;
            (true, resp)
        };
        // Wait until the learner holds the entry that added it and is within the lag bound.
        let id = req.id;
        let me = self.node.id;
        let waited = self
            .node
            .raft
            .wait(Some(
                req.catch_up_timeout().min(
                    // answer before the listener's request timeout cuts the request
                    Duration::from_millis(self.node.config.limits.request_timeout_ms)
                        .saturating_sub(Duration::from_secs(2)),
                ),
            ))
            .metrics(
                move |m: &Metrics| {
                    if m.current_leader != Some(me) || m.replication.is_none() {
                        return true; // lost leadership: stop waiting
                    }
                    if m.membership_config.log_id().map_or(0, |l| l.index) < log_index {
                        return false;
                    }
                    match matched(m, me, id) {
                        Some(i) => {
                            i >= log_index
                                && m.last_log_index.unwrap_or(0).saturating_sub(i)
                                    <= CAUGHT_UP_MAX_LAG
                        }
                        None => false,
                    }
                },
                "learner caught up",
            )
            .await;
        let m = self.node.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.node.id) || m.replication.is_none() {
            return Err(unavailable(
                format!(
                    "node {} lost leadership while node {id} was catching up (learner added at \
                     log index {log_index}); check `failoverctl cluster members`",
                    self.node.id
                ),
                self.node.leader().map(|l| l.1),
            ));
        }
        if waited.is_err() {
            let matched_now = matched(&m, self.node.id, id);
            return Err(MembershipError::CatchUpTimeout(format!(
                "node {id} was added as a learner (log index {log_index}) but had not caught up \
                 after {} ms: it holds up to index {} of {}; it keeps replicating: watch \
                 `failoverctl cluster members` and promote it once its lag is at most {}",
                req.catch_up_timeout().as_millis(),
                matched_now.map_or("none".to_string(), |i| i.to_string()),
                m.last_log_index.unwrap_or(0),
                CAUGHT_UP_MAX_LAG
            )));
        }
        Ok(ChangeOutcome {
            action: ChangeAction::AddLearner,
            changed,
            log_index: changed.then_some(log_index),
            warnings: vec![],
            members: self.view_from(&m),
        })
    }

    /// Promotes caught-up learners to voters, or removes members, per `req`. Runs on the leader
    /// only; `operator` is recorded in the audit trail. Promoting a voter or removing with
    /// `keep_learner` a node that is already a learner changes nothing (`changed = false`).
    ///
    /// Errors: [`MembershipError::BadRequest`], [`MembershipError::UnknownNode`],
    /// [`MembershipError::NotCaughtUp`], [`MembershipError::NoVotersLeft`],
    /// [`MembershipError::WouldLoseQuorum`], [`MembershipError::InProgress`],
    /// [`MembershipError::Unavailable`] (not the leader, no quorum, outcome unknown).
    pub async fn change_voters(
        &self,
        req: ChangeVotersBody,
        operator: String,
    ) -> Result<ChangeOutcome, MembershipError> {
        req.validate().map_err(MembershipError::BadRequest)?;
        let (action, detail) = if req.promote.is_empty() {
            (
                AuditAction::ClusterRemove,
                format!(
                    "nodes {:?}{}",
                    req.remove,
                    if req.keep_learner {
                        " (kept as learners)"
                    } else {
                        ""
                    }
                ),
            )
        } else {
            (
                AuditAction::ClusterPromote,
                format!("nodes {:?}", req.promote),
            )
        };
        let this = self.clone();
        let op = operator.clone();
        let detail2 = detail.clone();
        self.spawn_audited(operator, action, detail, async move {
            this.change_voters_inner(req, op, detail2).await
        })
        .await
    }

    async fn change_voters_inner(
        &self,
        req: ChangeVotersBody,
        operator: String,
        detail: String,
    ) -> Result<ChangeOutcome, MembershipError> {
        let _guard = self.lock_change()?;
        let m = self.node.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let promote = !req.promote.is_empty();
        let asked: BTreeSet<NodeId> = if promote {
            req.promote.iter().copied().collect()
        } else {
            req.remove.iter().copied().collect()
        };
        for id in &asked {
            if !voters.contains(id) && !learners.contains(id) {
                let hint = if promote {
                    "; add it first with `failoverctl cluster add-learner`"
                } else {
                    ""
                };
                return Err(MembershipError::UnknownNode(format!(
                    "node {id} is not a member (voters {}, learners {}){hint}",
                    ids(&voters),
                    ids(&learners)
                )));
            }
        }
        let mut warnings = Vec::new();
        let (new_voters, voter_change, learner_removal) = if promote {
            let to_promote: BTreeSet<NodeId> = asked.difference(&voters).copied().collect();
            for id in &to_promote {
                let mi = matched(&m, self.node.id, *id);
                let caught_up = mi.is_some_and(|i| last.saturating_sub(i) <= CAUGHT_UP_MAX_LAG);
                if !caught_up {
                    return Err(MembershipError::NotCaughtUp(format!(
                        "learner {id} is not caught up: it holds up to index {} of {last} (at most \
                         {CAUGHT_UP_MAX_LAG} behind is needed); wait and retry",
                        mi.map_or("none".to_string(), |i| i.to_string())
                    )));
                }
            }
            let new: BTreeSet<NodeId> = voters.union(&to_promote).copied().collect();
            let change = (!to_promote.is_empty()).then_some(ChangeMembers::AddVoterIds(to_promote));
            (new, change, None)
        } else {
            let rm_voters: BTreeSet<NodeId> = asked.intersection(&voters).copied().collect();
            let rm_learners: BTreeSet<NodeId> = asked.intersection(&learners).copied().collect();
            let new: BTreeSet<NodeId> = voters.difference(&rm_voters).copied().collect();
            if new.is_empty() {
                return Err(MembershipError::NoVotersLeft(format!(
                    "removing {} would leave no voter",
                    ids(&rm_voters)
                )));
            }
            let change = (!rm_voters.is_empty()).then_some(ChangeMembers::RemoveVoters(rm_voters));
            let learner_removal = (!req.keep_learner && !rm_learners.is_empty())
                .then_some(ChangeMembers::RemoveNodes(rm_learners));
            (new, change, learner_removal)
        };
        if voter_change.is_none() && learner_removal.is_none() {
            return Ok(ChangeOutcome {
                action: if promote {
                    ChangeAction::Promote
                } else {
                    ChangeAction::Remove
                },
                changed: false,
                log_index: None,
                warnings,
                members: self.view_from(&m),
            });
        }
        if voter_change.is_some() {
            self.check_quorum_after(&m, &new_voters).await?;
            let n = new_voters.len();
            if n % 2 == 0 {
                warnings.push(format!(
                    "{n} voters: an even count tolerates no more failures than {} voters; finish \
                     the replacement (promote or remove one more node)",
                    n - 1
                ));
            }
            if n < 3 {
                warnings.push(format!(
                    "{n} voter(s): the cluster tolerates no voter failure"
                ));
            }
        }
        let removes_me = !promote && !new_voters.contains(&self.node.id);
        if removes_me {
            warnings.push(format!(
                "node {} was the leader: it steps down once the change is applied; writes fail \
                 closed until the remaining voters {} elect a new leader (about one election \
                 timeout); stop node {} now",
                self.node.id,
                ids(&new_voters),
                self.node.id
            ));
            // Audit before: once removed, this node can no longer reach the cluster.
            self.audit_best_effort(
                operator,
                AuditAction::ClusterRemove,
                detail,
                "proposed: removes the current leader".into(),
            )
            .await;
        }
        let mut log_index = None;
        for change in [voter_change, learner_removal].into_iter().flatten() {
            let raft = self.node.raft.clone();
            let retain = req.keep_learner;
            let task = tokio::spawn(async move { raft.change_membership(change, retain).await });
            log_index = Some(self.await_change(task).await?);
        }
        let m = self.node.raft.metrics().borrow().clone();
        Ok(ChangeOutcome {
            action: if promote {
                ChangeAction::Promote
            } else {
                ChangeAction::Remove
            },
            changed: true,
            log_index,
            warnings,
            members: self.view_from(&m),
        })
    }

    /// Refuses a voter set that would not have a majority of reachable, caught-up voters (the
    /// leader counts as both).
    async fn check_quorum_after(
        &self,
        m: &Metrics,
        new_voters: &BTreeSet<NodeId>,
    ) -> Result<(), MembershipError> {
        let last = m.last_log_index.unwrap_or(0);
        let probes = new_voters.iter().map(|id| async move {
            if *id == self.node.id {
                return (*id, Ok(()));
            }
            let mi = matched(m, self.node.id, *id);
            if mi.is_none_or(|i| last.saturating_sub(i) > CAUGHT_UP_MAX_LAG) {
                return (
                    *id,
                    Err(format!(
                        "holds up to index {} of {last}",
                        mi.map_or("none".to_string(), |i| i.to_string())
                    )),
                );
            }
            let Some(url) = self.node.peer_url(*id) else {
                return (*id, Err("no URL known".to_string()));
            };
            let r = probe_identity(
                &self.node.http,
                self.node.cluster_token.as_deref(),
                &url,
                PROBE_TIMEOUT,
            )
            .await;
            match r {
                Ok(ident) if ident.node_id == *id => (*id, Ok(())),
                Ok(ident) => (*id, Err(format!("{url} answers as node {}", ident.node_id))),
                Err(e) => (*id, Err(format!("{url} {e}"))),
            }
        });
        let results = futures::future::join_all(probes).await;
        let healthy = results.iter().filter(|(_, r)| r.is_ok()).count();
        let need = new_voters.len() / 2 + 1;
        if healthy >= need {
            return Ok(());
        }
        let problems: Vec<String> = results
            .into_iter()
            .filter_map(|(id, r)| r.err().map(|e| format!("node {id}: {e}")))
            .collect();
        Err(MembershipError::WouldLoseQuorum(format!(
            "after the change the voters {} need {need} reachable, caught-up nodes but only \
             {healthy} are: {}",
            ids(new_voters),
            problems.join("; ")
        )))
    }

    fn lock_change(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, MembershipError> {
        if !self.node.is_leader() {
            return Err(self.not_leader());
        }
        self.node.membership_change.try_lock().map_err(|_| {
            MembershipError::InProgress(format!(
                "another membership change is running on leader {}; wait for it and check \
                 `failoverctl cluster members`",
                self.node.id
            ))
        })
    }

    /// Waits for a spawned openraft membership call for at most twice the write timeout. The
    /// call itself keeps running past the deadline, so a joint change is never abandoned
    /// between its two steps by this node. Returns the log index of the last entry.
    async fn await_change(
        &self,
        task: tokio::task::JoinHandle<RaftChangeResult>,
    ) -> Result<u64, MembershipError> {
        let hint = || self.node.leader().map(|l| l.1);
        match tokio::time::timeout(self.change_timeout(), task).await {
            Err(_) => Err(unavailable(
                format!(
                    "the membership change was not committed within {} ms (no quorum?); its \
                     outcome is unknown and it may still complete: check `failoverctl cluster \
                     members` and re-run the same command",
                    self.change_timeout().as_millis()
                ),
                hint(),
            )),
            Ok(Err(e)) => Err(unavailable(
                format!("membership change task failed: {e}"),
                hint(),
            )),
            Ok(Ok(Ok(resp))) => Ok(resp.log_id.index),
            Ok(Ok(Err(RaftError::APIError(e)))) => Err(match e {
                ClientWriteError::ForwardToLeader(f) => unavailable(
                    format!(
                        "node {} is no longer the leader (leader: {})",
                        self.node.id,
                        f.leader_id.map_or("unknown".to_string(), |l| l.to_string())
                    ),
                    f.leader_node.map(|n| n.addr),
                ),
                ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(p)) => {
                    MembershipError::InProgress(format!(
                        "the membership entry at {} is not committed yet (committed: {}); retry \
                         shortly",
                        p.membership_log_id
                            .map_or("?".to_string(), |l| l.index.to_string()),
                        p.committed
                            .map_or("none".to_string(), |l| l.index.to_string())
                    ))
                }
                ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::LearnerNotFound(l),
                ) => MembershipError::UnknownNode(format!(
                    "node {} is not a learner; add it first with `failoverctl cluster add-learner`",
                    l.node_id
                )),
                ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::EmptyMembership(_),
                ) => MembershipError::NoVotersLeft("the change would leave no voter".into()),
            }),
            Ok(Ok(Err(RaftError::Fatal(e)))) => {
                Err(unavailable(format!("raft stopped: {e}"), None))
            }
        }
    }

    /// Runs `work` in a task of its own (it completes even if the caller goes away), then
    /// audits its outcome, unless it had no committed answer (`unavailable`: the audit write
    /// would fail the same way) or the leader removed itself (audited before the change).
    async fn spawn_audited<F>(
        &self,
        operator: String,
        action: AuditAction,
        detail: String,
        work: F,
    ) -> Result<ChangeOutcome, MembershipError>
    where
        F: std::future::Future<Output = Result<ChangeOutcome, MembershipError>> + Send + 'static,
    {
        let this = self.clone();
        let task = tokio::spawn(async move {
            let result = work.await;
            let outcome = match &result {
                Ok(o) if !o.changed => Some("completed (no change needed)".to_string()),
                Ok(o)
                    if !o.members.voters.iter().any(|v| v.id == this.node.id)
                        && action == AuditAction::ClusterRemove =>
                {
                    None
                }
                Ok(_) => Some("completed".to_string()),
                Err(MembershipError::Unavailable { .. }) => None,
                Err(MembershipError::CatchUpTimeout(_)) => {
                    Some("added; catch-up timed out".to_string())
                }
                Err(e) => Some(format!("refused: {} ({e})", e.code())),
            };
            if let Some(outcome) = outcome {
                this.audit_best_effort(operator, action, detail, outcome)
                    .await;
            }
            result
        });
        task.await.unwrap_or_else(|e| {
            Err(unavailable(
                format!("membership change task failed: {e}"),
                None,
            ))
        })
    }

    async fn audit_best_effort(
        &self,
        operator: String,
        action: AuditAction,
        detail: String,
        outcome: String,
    ) {
        let cmd = Command::RecordAudit {
            operator,
            action,
            detail,
            outcome,
            at_ms: now_ms(),
        };
        if let Err(e) = self.node.write(cmd).await {
            tracing::warn!(error = %e, %action, "could not write the audit entry of a membership change");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_refuse_unknown_fields_and_bad_shapes() {
        let e = serde_json::from_str::<AddLearnerBody>(r#"{"id":4,"url":"http://x","extra":1}"#)
            .unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");
        let b: AddLearnerBody = serde_json::from_str(r#"{"id":4,"url":"ftp://x"}"#).unwrap();
        assert!(b.validate().is_err());
        let b: AddLearnerBody = serde_json::from_str(r#"{"id":0,"url":"http://x:1"}"#).unwrap();
        assert!(b.validate().is_err());
        let b: AddLearnerBody = serde_json::from_str(r#"{"id":4,"url":"http://x:1"}"#).unwrap();
        assert!(b.validate().is_ok());
        assert_eq!(
            b.catch_up_timeout(),
            Duration::from_millis(failover_protocol::DEFAULT_CATCH_UP_TIMEOUT_MS)
        );
        let v: ChangeVotersBody = serde_json::from_str(r#"{}"#).unwrap();
        assert!(v.validate().is_err());
        let v: ChangeVotersBody = serde_json::from_str(r#"{"promote":[4],"remove":[1]}"#).unwrap();
        assert!(v.validate().is_err());
        let v: ChangeVotersBody =
            serde_json::from_str(r#"{"promote":[4],"keep_learner":true}"#).unwrap();
        assert!(v.validate().is_err());
        let v: ChangeVotersBody =
            serde_json::from_str(r#"{"remove":[1],"keep_learner":true}"#).unwrap();
        assert!(v.validate().is_ok());
        assert!(
            serde_json::from_str::<ChangeVotersBody>(r#"{"remove":[1],"force":true}"#).is_err()
        );
    }

    fn log_id(i: u64) -> openraft::LogId<NodeId> {
        openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), i)
    }

    #[test]
    fn commit_index_is_the_quorum_matched_index() {
        let mut m = Metrics::new_initial(1);
        m.current_leader = Some(1);
        m.last_log_index = Some(40);
        let members = openraft::Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([
                (1, BasicNode::new("http://a")),
                (2, BasicNode::new("http://b")),
                (3, BasicNode::new("http://c")),
                (4, BasicNode::new("http://d")),
            ]),
        );
        m.membership_config = Arc::new(openraft::StoredMembership::new(Some(log_id(3)), members));
        m.replication = Some(BTreeMap::from([
            (1, Some(log_id(40))),
            (2, Some(log_id(37))),
            (3, None),
            (4, Some(log_id(12))),
        ]));
        assert_eq!(quorum_index(&m, 1), Some(37));
        m.replication = Some(BTreeMap::from([
            (1, Some(log_id(40))),
            (2, None),
            (3, None),
        ]));
        assert_eq!(quorum_index(&m, 1), None);
        assert_eq!(matched(&m, 1, 1), Some(40));
        assert_eq!(lag_of(&m, Some(37)), Some(3));
    }
}
