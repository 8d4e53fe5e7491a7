//! The leader's side of the liveness gate (DESIGN.md "Liveness gate"): asking the beacon
//! nodes whether any validator of a handover's target was live in one epoch, and turning the
//! answers into a [`Command::Liveness`] for the log.
//!
//! Invariants:
//! - an epoch is asked about only once it is complete (below the chain clock's current
//!   epoch) and only in the order the gate needs ([`LivenessGate::next_epoch`]);
//! - "not live" is never assumed: a node counts only if it answered for every validator it
//!   knows an index for, and evidence is proposed only when at least the beacon quorum
//!   (`beacon.min_agreeing`) counted; otherwise nothing is proposed and the gate stays shut
//!   (fail closed);
//! - one node reporting a validator live is enough to stop the handover: nodes that disagree
//!   do not average out into "clear".
//!
//! The state machine checks the evidence again (`StateData::apply_liveness` in
//! [`crate::state`]); this module only gathers it.

use std::collections::BTreeMap;

use failover_common::beacon::{BeaconClient, BeaconError};
use failover_common::types::Pubkey;
use failover_protocol::{AgentId, HandoverState, LivenessGate};

use crate::state::{Command, LiveSighting, StateData};

/// Most validator indices asked per request (`POST .../validators` ids, and the liveness
/// body), to stay well under beacon nodes' body limits.
pub const INDICES_PER_REQUEST: usize = 1024;

/// The epoch of an open handover's liveness gate the leader should check next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivenessTask {
    /// Handover id.
    pub handover: u64,
    /// Target agent.
    pub to: AgentId,
    /// The epoch to check (epochs).
    pub epoch: u64,
    /// The chain's current epoch by the leader's clock (epochs).
    pub current_epoch: u64,
    /// The target's validators.
    pub pubkeys: Vec<Pubkey>,
}

/// The next epoch to check, if an open handover's gate needs one that is complete at
/// `current_epoch`. At most one handover is open at a time.
pub fn next_task(state: &StateData, current_epoch: u64) -> Option<LivenessTask> {
    let h = state.handovers.values().find(|h| {
        matches!(
            h.state,
            HandoverState::AwaitingFinality | HandoverState::AwaitingLiveness
        )
    })?;
    let gate: &LivenessGate = h.liveness.as_ref().filter(|g| !g.passed())?;
    let epoch = gate.next_epoch();
    if epoch >= current_epoch {
        return None;
    }
    let pubkeys = state
        .agents
        .get(&h.to)
        .map(|a| a.pubkeys.iter().copied().collect())
        .unwrap_or_default();
    Some(LivenessTask {
        handover: h.id,
        to: h.to.clone(),
        epoch,
        current_epoch,
        pubkeys,
    })
}

/// What one beacon node said about the target's validators in one epoch.
type NodeAnswer = Result<Vec<(Pubkey, u64, bool)>, BeaconError>;

/// Asks one node for the indices of `pubkeys` and their liveness in `epoch`.
async fn ask(client: &BeaconClient, url: &str, epoch: u64, pubkeys: &[Pubkey]) -> NodeAnswer {
    let mut indices: BTreeMap<Pubkey, u64> = BTreeMap::new();
    for chunk in pubkeys.chunks(INDICES_PER_REQUEST) {
        indices.extend(client.validator_indices(url, chunk).await?);
    }
    let by_index: BTreeMap<u64, Pubkey> = indices.iter().map(|(pk, i)| (*i, *pk)).collect();
    let all: Vec<u64> = by_index.keys().copied().collect();
    let mut out = Vec::with_capacity(all.len());
    for chunk in all.chunks(INDICES_PER_REQUEST) {
        for (index, live) in client.liveness(url, epoch, chunk).await? {
            if let Some(pk) = by_index.get(&index) {
                out.push((*pk, index, live));
            }
        }
    }
    Ok(out)
}

/// Asks every configured beacon node about `task` and builds the evidence entry, proposed by
/// node `node` at wall-clock `at_ms`.
///
/// Errors: fewer than `quorum` nodes answered (or `quorum` is 0); the message names each
/// node that did not answer and why. Nothing may be proposed then.
pub async fn gather(
    client: &BeaconClient,
    quorum: usize,
    task: &LivenessTask,
    node: u64,
    at_ms: u64,
) -> Result<Command, String> {
    let answers = futures::future::join_all(client.urls().iter().map(|url| async move {
        (
            url.clone(),
            ask(client, url, task.epoch, &task.pubkeys).await,
        )
    }))
    .await;
    evidence(answers, quorum, task, node, at_ms)
}

/// Builds the evidence entry from each node's answer (pure; see [`gather`]).
///
/// Errors: as [`gather`].
pub fn evidence(
    answers: Vec<(String, NodeAnswer)>,
    quorum: usize,
    task: &LivenessTask,
    node: u64,
    at_ms: u64,
) -> Result<Command, String> {
    let mut answered = Vec::new();
    let mut failed = Vec::new();
    let mut live: BTreeMap<Pubkey, LiveSighting> = BTreeMap::new();
    let mut checked = 0u64;
    for (url, answer) in answers {
        match answer {
            Err(e) => failed.push(format!("{url}: {e}")),
            Ok(rows) => {
                checked = checked.max(rows.len() as u64);
                for (pubkey, index, _) in rows.iter().filter(|r| r.2) {
                    live.entry(*pubkey)
                        .or_insert_with(|| LiveSighting {
                            pubkey: *pubkey,
                            index: *index,
                            seen_by: vec![],
                        })
                        .seen_by
                        .push(url.clone());
                }
                answered.push(url);
            }
        }
    }
    if quorum == 0 || answered.len() < quorum {
        return Err(format!(
            "liveness of {} in epoch {} unknown: {} of {} beacon node(s) answered, {quorum} \
             needed; {}",
            task.to,
            task.epoch,
            answered.len(),
            answered.len() + failed.len(),
            if failed.is_empty() {
                "no node configured".to_string()
            } else {
                failed.join("; ")
            }
        ));
    }
    Ok(Command::Liveness {
        handover: task.handover,
        epoch: task.epoch,
        current_epoch: task.current_epoch,
        live: live.into_values().collect(),
        answered,
        checked,
        node,
        at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> LivenessTask {
        LivenessTask {
            handover: 7,
            to: "agent-us".into(),
            epoch: 12,
            current_epoch: 14,
            pubkeys: vec![Pubkey([1; 48]), Pubkey([2; 48])],
        }
    }

    fn rows(live2: bool) -> NodeAnswer {
        Ok(vec![
            (Pubkey([1; 48]), 0, false),
            (Pubkey([2; 48]), 1, live2),
        ])
    }

    #[test]
    fn one_node_reporting_live_names_the_validator_and_the_node() {
        let cmd = evidence(
            vec![
                ("http://a".into(), rows(false)),
                ("http://b".into(), rows(true)),
            ],
            2,
            &task(),
            1,
            5,
        )
        .unwrap();
        let Command::Liveness {
            live,
            answered,
            checked,
            epoch,
            ..
        } = cmd
        else {
            panic!("not liveness evidence")
        };
        assert_eq!(epoch, 12);
        assert_eq!(checked, 2);
        assert_eq!(
            answered,
            vec!["http://a".to_string(), "http://b".to_string()]
        );
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].pubkey, Pubkey([2; 48]));
        assert_eq!(live[0].index, 1);
        assert_eq!(live[0].seen_by, vec!["http://b".to_string()]);
    }

    #[test]
    fn fewer_answers_than_the_quorum_is_no_evidence() {
        let err = evidence(
            vec![
                ("http://a".into(), rows(false)),
                (
                    "http://b".into(),
                    Err(BeaconError::Decode(
                        "liveness answer leaves out validator 1".into(),
                    )),
                ),
            ],
            2,
            &task(),
            1,
            5,
        )
        .unwrap_err();
        assert!(
            err.contains("1 of 2 beacon node(s) answered, 2 needed"),
            "{err}"
        );
        assert!(err.contains("http://b"), "{err}");
        assert!(
            evidence(vec![], 0, &task(), 1, 5).is_err(),
            "quorum 0 is no gate"
        );
    }

    #[test]
    fn every_node_clear_is_clear_evidence() {
        let Ok(Command::Liveness { live, answered, .. }) = evidence(
            vec![
                ("http://a".into(), rows(false)),
                ("http://b".into(), rows(false)),
            ],
            2,
            &task(),
            1,
            5,
        ) else {
            panic!("no evidence")
        };
        assert!(live.is_empty());
        assert_eq!(answered.len(), 2);
    }
}
