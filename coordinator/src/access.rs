//! Who may call the HTTP API: the table of bearer-token hashes of operators, agents and the
//! cluster, and its replacement while the node runs (operator onboarding, offboarding and
//! token rotation without a cluster outage).
//!
//! Invariants:
//! - a bearer token is looked up by its SHA-256 ([`crate::config::token_hash`]); clear tokens
//!   are never stored or logged, except the cluster token, which a node must send to its peers;
//! - every token hash names exactly one principal: a table in which two principals (two
//!   operators, an operator and an agent, or anyone and the cluster token) share a hash is
//!   refused, so nobody can act under another name;
//! - the table is replaced as a whole ([`SharedAccess::replace`]): a request sees either the
//!   old table or the new one, never a mix; a candidate table is built and checked completely
//!   before the swap, so a bad configuration file leaves the old table in force;
//! - only `[[operators]]` and `[[agents]]` are reloadable; the cluster token and every other
//!   section need a restart ([`ReloadSummary::restart_needed`] names what differs).
//!
//! Authorisation stays where it was: agents act only as themselves and state-machine
//! commands are checked on apply, so removing an operator here never rewrites history; the
//! audit trail keeps the names that acted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use failover_protocol::AgentId;
use serde::{Deserialize, Serialize};

use crate::config::{token_hash, AgentCfg, Config, OperatorCfg};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator, by configured name (recorded in the audit trail).
    Operator(String),
    /// A signer agent, by id.
    Agent(AgentId),
    /// Another coordinator (Raft RPC, forwarding), holding the cluster token.
    Cluster,
}

/// The token table of one configuration: lowercase SHA-256 hex → principal.
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    by_hash: HashMap<String, Principal>,
    operators: BTreeMap<String, String>,
    agents: BTreeMap<String, String>,
}

impl AccessList {
    /// Builds the table from the configured operators and agents (token hashes) and the clear
    /// cluster token.
    ///
    /// Errors (all problems, one per line): a hash that is not 64 hex digits, a duplicate
    /// operator name or agent id, or two principals sharing one token hash (the cluster token
    /// included).
    pub fn new(
        operators: &[OperatorCfg],
        agents: &[AgentCfg],
        cluster_token: &str,
    ) -> Result<Self, String> {
        let mut errs = Vec::new();
        let mut list = AccessList::default();
        let mut owner: HashMap<String, String> = HashMap::new();
        let mut claim = |hash: &str, who: String, errs: &mut Vec<String>| -> Option<String> {
            let hash = hash.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                errs.push(format!("{who}: token_sha256 must be 64 hex digits"));
                return None;
            }
            if let Some(prev) = owner.insert(hash.clone(), who.clone()) {
                errs.push(format!(
                    "{who} and {prev} have the same token: every principal needs its own token"
                ));
                return None;
            }
            Some(hash)
        };
        claim(
            &token_hash(cluster_token),
            "the cluster token".into(),
            &mut errs,
        );
        for o in operators {
            let who = format!("operator {:?}", o.name);
            if list.operators.contains_key(&o.name) {
                errs.push(format!("{who} is configured twice"));
                continue;
            }
            if let Some(h) = claim(&o.token_sha256, who, &mut errs) {
                list.operators.insert(o.name.clone(), h.clone());
                list.by_hash.insert(h, Principal::Operator(o.name.clone()));
            }
        }
        for a in agents {
            let who = format!("agent {:?}", a.id);
            if list.agents.contains_key(&a.id) {
                errs.push(format!("{who} is configured twice"));
                continue;
            }
            if let Some(h) = claim(&a.token_sha256, who, &mut errs) {
                list.agents.insert(a.id.clone(), h.clone());
                list.by_hash.insert(h, Principal::Agent(a.id.clone()));
            }
        }
        list.by_hash
            .insert(token_hash(cluster_token), Principal::Cluster);
        if errs.is_empty() {
            Ok(list)
        } else {
            Err(errs.join("\n"))
        }
    }

    /// The principal holding the clear bearer token `token`, if any.
    pub fn principal(&self, token: &str) -> Option<Principal> {
        self.by_hash.get(&token_hash(token)).cloned()
    }

    /// Configured operator names, sorted.
    pub fn operators(&self) -> Vec<String> {
        self.operators.keys().cloned().collect()
    }

    /// Configured agent ids, sorted.
    pub fn agents(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    /// What replacing `self` by `new` changes (names only, never hashes).
    pub fn diff(&self, new: &AccessList) -> ReloadSummary {
        fn split(
            old: &BTreeMap<String, String>,
            new: &BTreeMap<String, String>,
        ) -> (Vec<String>, Vec<String>, Vec<String>) {
            let added = new.keys().filter(|k| !old.contains_key(*k)).cloned();
            let removed = old.keys().filter(|k| !new.contains_key(*k)).cloned();
            let rotated = new
                .iter()
                .filter(|(k, h)| old.get(*k).is_some_and(|o| o != *h))
                .map(|(k, _)| k.clone());
            (added.collect(), removed.collect(), rotated.collect())
        }
        let (operators_added, operators_removed, operators_rotated) =
            split(&self.operators, &new.operators);
        let (agents_added, agents_removed, agents_rotated) = split(&self.agents, &new.agents);
        ReloadSummary {
            operators_added,
            operators_removed,
            operators_rotated,
            agents_added,
            agents_removed,
            agents_rotated,
            operators: new.operators(),
            agents: new.agents(),
            restart_needed: vec![],
        }
    }
}

/// What a reload changed. Names only; token hashes never appear.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadSummary {
    /// Operators that can now act.
    pub operators_added: Vec<String>,
    /// Operators whose tokens are now refused (401).
    pub operators_removed: Vec<String>,
    /// Operators whose token changed (the old token is now refused).
    pub operators_rotated: Vec<String>,
    /// Agents that can now call the agent API.
    pub agents_added: Vec<String>,
    /// Agents whose tokens are now refused (401).
    pub agents_removed: Vec<String>,
    /// Agents whose token changed.
    pub agents_rotated: Vec<String>,
    /// Every operator in force after the reload.
    pub operators: Vec<String>,
    /// Every agent in force after the reload.
    pub agents: Vec<String>,
    /// Top-level config keys that differ from the running configuration but are not
    /// reloadable (they take effect at the next restart), e.g. `handover`, `peers`.
    pub restart_needed: Vec<String>,
}

impl ReloadSummary {
    /// True when the reload changed who may call the API.
    pub fn changed(&self) -> bool {
        !(self.operators_added.is_empty()
            && self.operators_removed.is_empty()
            && self.operators_rotated.is_empty()
            && self.agents_added.is_empty()
            && self.agents_removed.is_empty()
            && self.agents_rotated.is_empty())
    }
}

/// The token table in force, replaceable while requests are served.
#[derive(Debug)]
pub struct SharedAccess {
    inner: RwLock<Arc<AccessList>>,
}

impl SharedAccess {
    /// Starts with `list`.
    pub fn new(list: AccessList) -> Self {
        Self {
            inner: RwLock::new(Arc::new(list)),
        }
    }

    /// The table in force now (a request keeps the table it started with).
    pub fn current(&self) -> Arc<AccessList> {
        self.inner.read().expect("access lock").clone()
    }

    /// Puts `list` in force; returns the table it replaced.
    pub fn replace(&self, list: AccessList) -> Arc<AccessList> {
        std::mem::replace(
            &mut *self.inner.write().expect("access lock"),
            Arc::new(list),
        )
    }
}

/// Checks `new` as a replacement of the running configuration `running` on node `node_id`
/// and builds its token table, without putting it in force.
///
/// Errors (nothing changes): `new` fails [`Config::validate`], names another `node_id`, or
/// its table fails [`AccessList::new`]. Returns the table and a [`ReloadSummary`] against
/// `current`, with `restart_needed` listing the non-reloadable keys that differ.
pub fn prepare_reload(
    running: &Config,
    current: &AccessList,
    new: &Config,
    cluster_token: &str,
) -> Result<(AccessList, ReloadSummary), String> {
    new.validate()?;
    if new.node_id != running.node_id {
        return Err(format!(
            "the file is for node_id {}, this node is {}",
            new.node_id, running.node_id
        ));
    }
    let list = AccessList::new(&new.operators, &new.agents, cluster_token)?;
    let mut summary = current.diff(&list);
    let differs = [
        ("listen", running.listen != new.listen),
        ("data_dir", running.data_dir != new.data_dir),
        (
            "cluster_token_file",
            running.cluster_token_file != new.cluster_token_file,
        ),
        ("bootstrap", running.bootstrap != new.bootstrap),
        ("peers", running.peers != new.peers),
        ("chain", running.chain != new.chain),
        ("beacon", running.beacon != new.beacon),
        ("handover", running.handover != new.handover),
        ("raft", running.raft != new.raft),
        ("max_batch", running.max_batch != new.max_batch),
    ];
    summary.restart_needed = differs
        .iter()
        .filter(|(_, d)| *d)
        .map(|(k, _)| k.to_string())
        .collect();
    Ok((list, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, token: &str) -> OperatorCfg {
        OperatorCfg {
            name: name.into(),
            token_sha256: token_hash(token),
        }
    }

    fn agent(id: &str, token: &str) -> AgentCfg {
        AgentCfg {
            id: id.into(),
            token_sha256: token_hash(token),
        }
    }

    #[test]
    fn looks_up_principals_by_token() {
        let l = AccessList::new(&[op("alice", "a")], &[agent("agent-a", "x")], "c").unwrap();
        assert_eq!(l.principal("a"), Some(Principal::Operator("alice".into())));
        assert_eq!(l.principal("x"), Some(Principal::Agent("agent-a".into())));
        assert_eq!(l.principal("c"), Some(Principal::Cluster));
        assert_eq!(l.principal("nope"), None);
    }

    #[test]
    fn shared_and_duplicate_tokens_are_refused() {
        let e = AccessList::new(&[op("alice", "a")], &[agent("agent-a", "a")], "c").unwrap_err();
        assert!(e.contains("same token"), "{e}");
        let e = AccessList::new(&[op("alice", "c")], &[], "c").unwrap_err();
        assert!(e.contains("cluster token"), "{e}");
        let e = AccessList::new(&[op("alice", "a"), op("alice", "b")], &[], "c").unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn diff_names_added_removed_and_rotated() {
        let old = AccessList::new(&[op("alice", "a"), op("bob", "b")], &[], "c").unwrap();
        let new = AccessList::new(&[op("alice", "a2"), op("carol", "k")], &[], "c").unwrap();
        let d = old.diff(&new);
        assert_eq!(d.operators_added, ["carol"]);
        assert_eq!(d.operators_removed, ["bob"]);
        assert_eq!(d.operators_rotated, ["alice"]);
        assert!(d.changed());
        assert!(!old.diff(&old).changed());
    }
}
