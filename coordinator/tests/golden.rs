//! Table-driven tests of the replicated state machine in the goldenscript style: each file in
//! `tests/scripts/` is a script of commands applied to a fresh [`StateData`] as the Raft log
//! would apply them (one log index per command), each followed by the answer it got. A
//! failing script shows the diff of every block, so one wrong verdict does not hide the rest.
//!
//! The expected answers are generated, then read and checked by hand before they are
//! committed: `UPDATE_GOLDENFILES=1 cargo test -p coordinator --test golden`.
//!
//! Commands (keys are `Pubkey([n; 48])` for a small `n`, roots `Root([n; 32])`):
//! - `policy approvals=N two_person=BOOL break_glass=N`: the rules the proposing node carries;
//! - `register AGENT keys="1,2"`;
//! - `request TO by=OPERATOR`, `approve ID by=OPERATOR [break_glass]`,
//!   `abort ID by=OPERATOR`: operator commands;
//! - `finality EPOCH`: agreed finality (slots per epoch 32);
//! - `attest AGENT token=T key=K source=S target=T root=R` and
//!   `block AGENT token=T key=K slot=S root=R`: a record batch of one item;
//! - `holder`: the authority holder and fencing token.

use std::error::Error;
use std::fmt::Write as _;

use coordinator::state::{Command, Dirty, HandoverPolicy, Response, StateData};
use failover_common::beacon::CheckpointObs;
use failover_common::types::{Pubkey, Root};
use failover_protocol::{Handover, RecordItem, Verdict};
use goldenscript::{Argument, Context};

/// Drives a [`StateData`] from script commands, with log indexes as Raft would assign them.
struct Runner {
    state: StateData,
    index: u64,
    policy: HandoverPolicy,
}

impl Runner {
    fn new() -> Self {
        Self {
            state: StateData::default(),
            index: 0,
            policy: HandoverPolicy {
                approvals_required: 1,
                two_person_rule: false,
                break_glass_approvals: 1,
                slots_per_epoch: 32,
                doppelganger_epochs: None,
            },
        }
    }

    fn apply(&mut self, cmd: Command) -> Response {
        self.index += 1;
        self.state.apply(self.index, &cmd, &mut Dirty::default())
    }
}

/// The arguments of one command, consumed by name; anything left over is an error.
struct Args<'a> {
    positional: Vec<&'a str>,
    keys: Vec<(&'a str, &'a str)>,
}

impl<'a> Args<'a> {
    fn of(cmd: &'a goldenscript::Command) -> Self {
        let mut positional = Vec::new();
        let mut keys = Vec::new();
        for a in &cmd.args {
            match a {
                Argument::Positional(v) => positional.push(v.as_str()),
                Argument::KeyValue(k, v) => keys.push((k.as_str(), v.as_str())),
                _ => {}
            }
        }
        Self { positional, keys }
    }

    fn pos(&mut self, what: &str) -> Result<&'a str, Box<dyn Error>> {
        if self.positional.is_empty() {
            return Err(format!("missing {what}").into());
        }
        Ok(self.positional.remove(0))
    }

    fn flag(&mut self, name: &str) -> bool {
        let before = self.positional.len();
        self.positional.retain(|p| *p != name);
        self.positional.len() != before
    }

    fn key(&mut self, name: &str) -> Result<&'a str, Box<dyn Error>> {
        let i = self
            .keys
            .iter()
            .position(|(k, _)| *k == name)
            .ok_or_else(|| format!("missing {name}="))?;
        Ok(self.keys.remove(i).1)
    }

    fn num(&mut self, name: &str) -> Result<u64, Box<dyn Error>> {
        let v = self.key(name)?;
        if v == "max" {
            return Ok(u64::MAX);
        }
        Ok(v.parse()?)
    }

    fn byte(&mut self, name: &str) -> Result<u8, Box<dyn Error>> {
        Ok(self.key(name)?.parse()?)
    }

    fn done(self) -> Result<(), Box<dyn Error>> {
        if let Some(p) = self.positional.first() {
            return Err(format!("unexpected argument {p}").into());
        }
        if let Some((k, _)) = self.keys.first() {
            return Err(format!("unexpected argument {k}=").into());
        }
        Ok(())
    }
}

fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Valid => "valid".into(),
        Verdict::SameData => "same_data".into(),
        Verdict::Refused(r) => {
            let mut detail = serde_json::to_value(r).expect("a refusal serializes");
            if let Some(m) = detail.as_object_mut() {
                m.remove("reason");
            }
            match detail.as_object().filter(|m| !m.is_empty()) {
                Some(m) => {
                    let fields: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("refused {} {}", r.label(), fields.join(" "))
                }
                None => format!("refused {}", r.label()),
            }
        }
    }
}

fn handover(h: &Handover) -> String {
    let approvals: Vec<String> = h
        .approvals
        .iter()
        .map(|a| {
            if a.break_glass {
                format!("{}!", a.operator)
            } else {
                a.operator.clone()
            }
        })
        .collect();
    let mut out = format!(
        "handover {} {} → {}: {} (fenced at {}, required epoch {})",
        h.id,
        h.from.as_deref().unwrap_or("nobody"),
        h.to,
        serde_json::to_value(h.state).expect("a state serializes"),
        h.fenced_at,
        h.required_epoch,
    );
    if !approvals.is_empty() {
        let _ = write!(out, ", approved by {}", approvals.join(","));
    }
    if let Some(t) = h.granted_token {
        let _ = write!(out, ", token {t}");
    }
    if h.break_glass {
        out.push_str(", break glass");
    }
    out
}

fn answer(r: &Response) -> String {
    match r {
        Response::Ok => "ok".into(),
        Response::Records { verdicts } => {
            verdicts.iter().map(verdict).collect::<Vec<_>>().join("; ")
        }
        Response::NotHolder { holder, token } => format!(
            "not holder: holder {}, token {token}",
            holder.as_deref().unwrap_or("nobody")
        ),
        Response::Handover { handover: h } => handover(h),
        Response::Imported { summary } => format!("imported {summary:?}"),
        Response::Rejected { code, message } => format!("rejected {code:?}: {message}"),
    }
}

impl goldenscript::Runner for Runner {
    type Command = goldenscript::Command;

    fn run(
        &mut self,
        command: &goldenscript::Command,
        _context: &Context,
    ) -> Result<String, Box<dyn Error>> {
        let mut a = Args::of(command);
        let at_ms = self.index * 1000;
        let response = match command.name.as_str() {
            "policy" => {
                self.policy.approvals_required = a.num("approvals")?.try_into()?;
                self.policy.two_person_rule = a.key("two_person")?.parse()?;
                self.policy.break_glass_approvals = a.num("break_glass")?.try_into()?;
                a.done()?;
                return Ok("ok\n".into());
            }
            "register" => {
                let agent = a.pos("agent")?.to_string();
                let pubkeys = a
                    .key("keys")?
                    .split(',')
                    .map(|k| k.parse::<u8>().map(|b| Pubkey([b; 48])))
                    .collect::<Result<Vec<_>, _>>()?;
                a.done()?;
                self.apply(Command::RegisterAgent {
                    agent,
                    region: "r".into(),
                    pubkeys,
                })
            }
            "request" => {
                let to = a.pos("target agent")?.to_string();
                let operator = a.key("by")?.to_string();
                a.done()?;
                self.apply(Command::RequestHandover {
                    to,
                    reason: "script".into(),
                    operator,
                    at_ms,
                    policy: self.policy,
                    chain_epoch: None,
                })
            }
            "approve" => {
                let id = a.pos("handover id")?.parse()?;
                let break_glass = a.flag("break_glass");
                let operator = a.key("by")?.to_string();
                a.done()?;
                self.apply(Command::ApproveHandover {
                    id,
                    operator,
                    break_glass,
                    at_ms,
                    policy: self.policy,
                    acknowledged: vec![],
                })
            }
            "abort" => {
                let id = a.pos("handover id")?.parse()?;
                let operator = a.key("by")?.to_string();
                a.done()?;
                self.apply(Command::AbortHandover {
                    id,
                    operator,
                    reason: "script".into(),
                    at_ms,
                })
            }
            "finality" => {
                let epoch: u64 = a.pos("epoch")?.parse()?;
                a.done()?;
                self.apply(Command::Finality {
                    checkpoint: CheckpointObs {
                        epoch,
                        root: Root([7; 32]),
                    },
                    observations: vec![],
                    at_ms,
                    slots_per_epoch: self.policy.slots_per_epoch,
                })
            }
            "attest" | "block" => {
                let agent = a.pos("agent")?.to_string();
                let token = a.num("token")?;
                let pubkey = Pubkey([a.byte("key")?; 48]);
                let signing_root = Root([a.byte("root")?; 32]);
                let item = if command.name == "attest" {
                    RecordItem::Attestation {
                        pubkey,
                        source_epoch: a.num("source")?,
                        target_epoch: a.num("target")?,
                        signing_root,
                    }
                } else {
                    RecordItem::Block {
                        pubkey,
                        slot: a.num("slot")?,
                        signing_root,
                    }
                };
                a.done()?;
                self.apply(Command::RecordBatch {
                    agent,
                    token,
                    items: vec![item],
                })
            }
            "holder" => {
                a.done()?;
                let auth = &self.state.authority;
                return Ok(format!(
                    "holder {}, token {}\n",
                    auth.holder.as_deref().unwrap_or("nobody"),
                    auth.token
                ));
            }
            other => return Err(format!("unknown command {other}").into()),
        };
        Ok(format!("{}: {}\n", self.index, answer(&response)))
    }
}

fn script(name: &str) -> String {
    format!("{}/tests/scripts/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn handover_flow() {
    goldenscript::run(&mut Runner::new(), script("handover")).expect("the script runs");
}

#[test]
fn slashing_rules() {
    goldenscript::run(&mut Runner::new(), script("slashing")).expect("the script runs");
}
