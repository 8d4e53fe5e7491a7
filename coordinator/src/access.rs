//! Who may call the HTTP API: the table of bearer-token hashes of operators, agents and the
//! cluster, the rule that turns a request's credentials (token, client certificate, the
//! forwarding header of a coordinator) into one principal ([`AccessList::authenticate`]), and
//! the table's replacement while the node runs (operator onboarding, offboarding and token
//! rotation without a cluster outage).
//!
//! Invariants:
//! - a request acts as exactly one principal, and every credential it carries must name that
//!   principal: a token of one principal with a certificate of another is refused (403), so a
//!   stolen token is useless without the matching certificate;
//! - over TLS an agent always proves itself with its client certificate, and only
//!   coordinators (node certificates of members) may act on someone else's behalf
//!   ([`ON_BEHALF_HEADER`], set by a follower forwarding a request it authenticated);
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

use failover_common::tls::Identity;

use crate::config::{token_hash, AgentCfg, Config, OperatorCfg};
use crate::NodeId;

/// Header with which a coordinator forwarding a request to the leader names the principal it
/// authenticated (`operator:<name>` or `agent:<id>`). Accepted only from a coordinator's
/// certificate; over plain HTTP the caller's own `Authorization` is forwarded instead.
pub const ON_BEHALF_HEADER: &str = "x-failover-on-behalf-of";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator, by configured name (recorded in the audit trail).
    Operator(String),
    /// A signer agent, by id.
    Agent(AgentId),
    /// Another coordinator (Raft RPC, forwarding): the cluster token in plaintext, a member's
    /// node certificate over TLS.
    Cluster,
}

impl Principal {
    /// The value of [`ON_BEHALF_HEADER`] naming this principal; `None` for the cluster.
    pub fn on_behalf(&self) -> Option<String> {
        match self {
            Principal::Operator(n) => Some(format!("operator:{n}")),
            Principal::Agent(a) => Some(format!("agent:{a}")),
            Principal::Cluster => None,
        }
    }
}

/// What a request presents to authenticate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// Its bearer token, if any.
    pub token: Option<&'a str>,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The failover identity of its client certificate, if any (TLS only).
    pub cert: Option<&'a Identity>,
    /// The value of [`ON_BEHALF_HEADER`], if any.
    pub on_behalf: Option<&'a str>,
}

/// Why credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token and no usable certificate (401).
    Missing,
    /// A token nobody holds (401).
    UnknownToken,
    /// Credentials that name different principals, or a principal that may not act this way
    /// (403); the message says which.
    Conflict(String),
}

/// The token table of one configuration: lowercase SHA-256 hex → principal.
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    by_hash: HashMap<String, Principal>,
    /// Operator name → token hash (none: certificate only).
    operators: BTreeMap<String, Option<String>>,
    /// Agent id → token hash (none: certificate only).
    agents: BTreeMap<String, Option<String>>,
}

impl AccessList {
    /// Builds the table from the configured operators and agents (token hashes, optional over
    /// TLS) and the clear cluster token (plaintext only).
    ///
    /// Errors (all problems, one per line): a hash that is not 64 hex digits, a duplicate
    /// operator name or agent id, or two principals sharing one token hash (the cluster token
    /// included).
    pub fn new(
        operators: &[OperatorCfg],
        agents: &[AgentCfg],
        cluster_token: Option<&str>,
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
        if let Some(t) = cluster_token {
            claim(&token_hash(t), "the cluster token".into(), &mut errs);
        }
        let operators = operators.iter().map(|o| (true, &o.name, &o.token_sha256));
        let agents = agents.iter().map(|a| (false, &a.id, &a.token_sha256));
        for (is_operator, name, token_sha256) in operators.chain(agents) {
            let (who, table, principal) = if is_operator {
                let p = Principal::Operator(name.clone());
                (format!("operator {name:?}"), &mut list.operators, p)
            } else {
                let p = Principal::Agent(name.clone());
                (format!("agent {name:?}"), &mut list.agents, p)
            };
            if table.contains_key(name) {
                errs.push(format!("{who} is configured twice"));
                continue;
            }
            let hash = match token_sha256 {
                Some(h) => match claim(h, who, &mut errs) {
                    Some(h) => Some(h),
                    None => continue,
                },
                None => None,
            };
            table.insert(name.clone(), hash.clone());
            if let Some(h) = hash {
                list.by_hash.insert(h, principal);
            }
        }
        if let Some(t) = cluster_token {
            list.by_hash.insert(token_hash(t), Principal::Cluster);
        }
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

    /// The one principal `c` authenticates as. `is_member` says whether a node id is a
    /// coordinator of this cluster (a node certificate of anyone else is refused).
    ///
    /// The rules:
    /// - a member's node certificate is [`Principal::Cluster`], or, with [`ON_BEHALF_HEADER`],
    ///   the configured operator or agent it names (the forwarding node authenticated them);
    ///   the header from anyone else is refused;
    /// - a token names its holder, and a certificate sent with it must name the same
    ///   principal; over TLS an agent's token must come with the agent's certificate;
    /// - without a token, a certificate naming a configured operator, or a configured agent
    ///   that has no token, is that principal.
    ///
    /// Errors: [`AuthError`] (401 for [`AuthError::Missing`] and [`AuthError::UnknownToken`],
    /// 403 for [`AuthError::Conflict`]).
    pub fn authenticate(
        &self,
        c: &Credentials<'_>,
        is_member: impl Fn(NodeId) -> bool,
    ) -> Result<Principal, AuthError> {
        let conflict = |m: String| Err(AuthError::Conflict(m));
        if let Some(Identity::Node(n)) = c.cert {
            if !is_member(*n) {
                return conflict(format!(
                    "node {n} is not a member of this cluster; its certificate is not accepted"
                ));
            }
            let Some(v) = c.on_behalf else {
                return Ok(Principal::Cluster);
            };
            return match v.split_once(':') {
                Some(("operator", n)) if self.operators.contains_key(n) => {
                    Ok(Principal::Operator(n.to_string()))
                }
                Some(("agent", a)) if self.agents.contains_key(a) => {
                    Ok(Principal::Agent(a.to_string()))
                }
                _ => conflict(format!(
                    "{ON_BEHALF_HEADER} names {v:?}, which is no configured operator or agent"
                )),
            };
        }
        if c.on_behalf.is_some() {
            return conflict(format!(
                "{ON_BEHALF_HEADER} is accepted only from a coordinator's certificate"
            ));
        }
        let cert_principal = match c.cert {
            Some(Identity::Operator(n)) => Some(Principal::Operator(n.clone())),
            Some(Identity::Agent(a)) => Some(Principal::Agent(a.clone())),
            Some(Identity::Node(_)) | None => None,
        };
        let show = |p: &Principal| match p {
            Principal::Operator(n) => format!("operator {n}"),
            Principal::Agent(a) => format!("agent {a}"),
            Principal::Cluster => "the cluster".to_string(),
        };
        match c.token {
            Some(t) => {
                let p = self.by_hash.get(&token_hash(t)).cloned();
                let p = p.ok_or(AuthError::UnknownToken)?;
                match (&p, &cert_principal) {
                    (_, Some(cp)) if *cp != p => conflict(format!(
                        "the client certificate names {} but the token is {}'s",
                        show(cp),
                        show(&p)
                    )),
                    (Principal::Agent(a), None) if c.tls => conflict(format!(
                        "agent {a} must present its client certificate (urn:failover:agent:{a}) with its token"
                    )),
                    _ => Ok(p),
                }
            }
            None => match cert_principal {
                Some(Principal::Operator(n)) if self.operators.contains_key(&n) => {
                    Ok(Principal::Operator(n))
                }
                Some(Principal::Agent(a)) => match self.agents.get(&a) {
                    Some(None) => Ok(Principal::Agent(a)),
                    Some(Some(_)) => conflict(format!(
                        "agent {a} has a token configured: send it with the certificate"
                    )),
                    None => Err(AuthError::Missing),
                },
                _ => Err(AuthError::Missing),
            },
        }
    }

    /// What replacing `self` by `new` changes (names only, never hashes).
    pub fn diff(&self, new: &AccessList) -> ReloadSummary {
        fn split(
            old: &BTreeMap<String, Option<String>>,
            new: &BTreeMap<String, Option<String>>,
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
    cluster_token: Option<&str>,
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
        ("tls", running.tls != new.tls),
        (
            "insecure_plaintext",
            running.insecure_plaintext != new.insecure_plaintext,
        ),
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
            token_sha256: Some(token_hash(token)),
        }
    }

    fn agent(id: &str, token: &str) -> AgentCfg {
        AgentCfg {
            id: id.into(),
            token_sha256: Some(token_hash(token)),
        }
    }

    #[test]
    fn looks_up_principals_by_token() {
        let l = AccessList::new(&[op("alice", "a")], &[agent("agent-a", "x")], Some("c")).unwrap();
        assert_eq!(l.principal("a"), Some(Principal::Operator("alice".into())));
        assert_eq!(l.principal("x"), Some(Principal::Agent("agent-a".into())));
        assert_eq!(l.principal("c"), Some(Principal::Cluster));
        assert_eq!(l.principal("nope"), None);
    }

    #[test]
    fn shared_and_duplicate_tokens_are_refused() {
        let e =
            AccessList::new(&[op("alice", "a")], &[agent("agent-a", "a")], Some("c")).unwrap_err();
        assert!(e.contains("same token"), "{e}");
        let e = AccessList::new(&[op("alice", "c")], &[], Some("c")).unwrap_err();
        assert!(e.contains("cluster token"), "{e}");
        let e = AccessList::new(&[op("alice", "a"), op("alice", "b")], &[], Some("c")).unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn diff_names_added_removed_and_rotated() {
        let old = AccessList::new(&[op("alice", "a"), op("bob", "b")], &[], Some("c")).unwrap();
        let new = AccessList::new(&[op("alice", "a2"), op("carol", "k")], &[], Some("c")).unwrap();
        let d = old.diff(&new);
        assert_eq!(d.operators_added, ["carol"]);
        assert_eq!(d.operators_removed, ["bob"]);
        assert_eq!(d.operators_rotated, ["alice"]);
        assert!(d.changed());
        assert!(!old.diff(&old).changed());
    }

    fn authenticate(
        l: &AccessList,
        token: Option<&str>,
        cert: Option<Identity>,
        on_behalf: Option<&str>,
    ) -> Result<Principal, AuthError> {
        l.authenticate(
            &Credentials {
                token,
                tls: true,
                cert: cert.as_ref(),
                on_behalf,
            },
            |n| n <= 3,
        )
    }

    #[test]
    fn over_tls_every_credential_must_name_the_same_principal() {
        let cert_only = AgentCfg {
            id: "agent-c".into(),
            token_sha256: None,
        };
        let l = AccessList::new(
            &[op("alice", "a"), op("bob", "b")],
            &[agent("agent-a", "x"), cert_only],
            None,
        )
        .unwrap();
        let alice = || Some(Identity::Operator("alice".into()));
        let agent_a = || Some(Identity::Agent("agent-a".into()));
        let conflict = |r: Result<Principal, AuthError>| match r {
            Err(AuthError::Conflict(m)) => m,
            other => panic!("expected a conflict, got {other:?}"),
        };
        // Operators: token, certificate, or both when they agree.
        let op_alice = Ok(Principal::Operator("alice".into()));
        assert_eq!(authenticate(&l, Some("a"), None, None), op_alice);
        assert_eq!(authenticate(&l, None, alice(), None), op_alice);
        assert_eq!(authenticate(&l, Some("a"), alice(), None), op_alice);
        let m = conflict(authenticate(&l, Some("b"), alice(), None));
        assert!(
            m.contains("names operator alice but the token is operator bob's"),
            "{m}"
        );
        // Agents: the certificate is required, and a token must match it.
        let m = conflict(authenticate(&l, Some("x"), None, None));
        assert!(m.contains("must present its client certificate"), "{m}");
        assert_eq!(
            authenticate(&l, Some("x"), agent_a(), None),
            Ok(Principal::Agent("agent-a".into()))
        );
        let m = conflict(authenticate(
            &l,
            Some("x"),
            Some(Identity::Agent("agent-c".into())),
            None,
        ));
        assert!(
            m.contains("names agent agent-c but the token is agent agent-a's"),
            "{m}"
        );
        let m = conflict(authenticate(&l, None, agent_a(), None));
        assert!(m.contains("send it with the certificate"), "{m}");
        assert_eq!(
            authenticate(&l, None, Some(Identity::Agent("agent-c".into())), None),
            Ok(Principal::Agent("agent-c".into()))
        );
        // Nobody configured, nothing sent, an unknown token.
        assert_eq!(
            authenticate(&l, None, Some(Identity::Operator("mallory".into())), None),
            Err(AuthError::Missing)
        );
        assert_eq!(authenticate(&l, None, None, None), Err(AuthError::Missing));
        assert_eq!(
            authenticate(&l, Some("nope"), alice(), None),
            Err(AuthError::UnknownToken)
        );
        // Coordinators: members only, and only they may act on someone's behalf.
        assert_eq!(
            authenticate(&l, None, Some(Identity::Node(2)), None),
            Ok(Principal::Cluster)
        );
        let m = conflict(authenticate(&l, None, Some(Identity::Node(9)), None));
        assert!(m.contains("node 9 is not a member"), "{m}");
        assert_eq!(
            authenticate(&l, None, Some(Identity::Node(2)), Some("operator:bob")),
            Ok(Principal::Operator("bob".into()))
        );
        let m = conflict(authenticate(
            &l,
            None,
            Some(Identity::Node(2)),
            Some("operator:mallory"),
        ));
        assert!(m.contains("no configured operator"), "{m}");
        let m = conflict(authenticate(&l, Some("a"), alice(), Some("operator:bob")));
        assert!(m.contains("only from a coordinator"), "{m}");
    }
}
