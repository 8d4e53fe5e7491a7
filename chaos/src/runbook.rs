//! Runbooks as tests: the shell blocks of `runbooks/*.md`, extracted in order, with the few
//! directives that tell the runbook test (`chaos/tests/runbooks.rs`) how to run them against
//! the lab.
//!
//! A runbook is Markdown written for a tired person. Every fenced block tagged `sh` is a
//! command the operator types, and the test runs it exactly as written (one `bash` process per
//! block, `set -euo pipefail`, variables carried from one block to the next). Blocks tagged
//! anything else (`text`, `toml`, untagged) are shown, never run.
//!
//! Directives are HTML comments, invisible when the Markdown is rendered:
//!
//! - `<!-- runbook-test: setup=ACTION -->` anywhere at the top level: a lab action the test
//!   performs before the first block, to put the lab in the state the runbook is for (for
//!   example `setup=kill-coordinator:leader` before the leader-loss runbook). Several
//!   `setup=` directives run in order.
//! - `<!-- runbook-test: KEY=VALUE ... -->` on the line(s) right before a block applies to that
//!   block:
//!   - `as=operatorN`: run it with the N-th lab operator's token in `FAILOVER_TOKEN` (a
//!     two-person step is `as=operator2`; blocks run as `operator1` by default);
//!   - `expect-exit=N`: the block must end with exit status `N` (a command that is supposed
//!     to fail, such as `failoverctl status` without quorum);
//!   - `lab=ACTION`: the block manages a host service (`systemctl …`); the test performs the
//!     equivalent lab ACTION instead of running the block. A block that mentions `systemctl`
//!     without a `lab=` directive is an error, so no host step is skipped silently;
//!   - `env=NAME:VALUE`: an extra variable for this block only;
//!   - `each=coordinator`: a step done on every coordinator host; the test runs the block once
//!     per running coordinator with `CONFIG` set to that node's config file;
//!   - `hosts=eu,us,ap`: a step of the deployment guide (`docs/deploy.md`) done on each of
//!     these hosts in turn; its test runs the block in that host's network namespace with the
//!     host's directories and `REGION` and `N` (1-based position in the list) set. Runbooks
//!     have no hosts of their own and do not use it.
//!
//! Invariants: blocks keep their order in the file; a directive never applies to a block
//! further than the next one; an unknown directive key is an error (a typo must not turn a
//! check off).

use anyhow::{bail, Context, Result};
use std::path::Path;

/// One fenced `sh` block of a runbook and what the test does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line of the opening fence.
    pub line: usize,
    /// The commands, as written.
    pub script: String,
    /// Run as this operator (0-based index into the lab's operators; `as=operator2` → 1).
    pub operator: usize,
    /// Exit status the block must end with.
    pub expect_exit: i32,
    /// Lab action performed instead of running the block (host service management).
    pub lab_action: Option<String>,
    /// Extra environment variables for this block.
    pub env: Vec<(String, String)>,
    /// Run once per coordinator host (`each=coordinator`), with `CONFIG` set.
    pub each_coordinator: bool,
    /// Run once on each of these hosts (`hosts=eu,us`), in order.
    pub hosts: Vec<String>,
}

/// A parsed runbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runbook {
    /// File name, e.g. `leader-loss.md`.
    pub name: String,
    /// Lab actions to perform before the first step.
    pub setup: Vec<String>,
    /// The `sh` blocks, in file order.
    pub steps: Vec<Step>,
}

#[derive(Default)]
struct Pending {
    operator: Option<usize>,
    expect_exit: Option<i32>,
    lab_action: Option<String>,
    env: Vec<(String, String)>,
    each_coordinator: bool,
    hosts: Vec<String>,
}

/// Splits a directive body `k=v k2="v 2"` into pairs; values may be double-quoted.
fn pairs(body: &str, line: usize) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .with_context(|| format!("line {line}: directive `{rest}` has no `=`"))?;
        let key = rest[..eq].trim().to_string();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q
                .find('"')
                .with_context(|| format!("line {line}: unterminated quote after {key}="))?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.push((key, value));
        rest = next.trim_start();
    }
    Ok(out)
}

/// Parses runbook Markdown.
///
/// Errors: an unknown directive key, a malformed value, a directive left dangling at the end
/// of the file, an unterminated fence, or an `sh` block that mentions `systemctl` without a
/// `lab=` directive.
pub fn parse(name: &str, text: &str) -> Result<Runbook> {
    let mut book = Runbook {
        name: name.to_string(),
        setup: Vec::new(),
        steps: Vec::new(),
    };
    let mut pending = Pending::default();
    let mut pending_line = 0usize;
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let line = raw.trim();
        if let Some(body) = line
            .strip_prefix("<!-- runbook-test:")
            .and_then(|b| b.strip_suffix("-->"))
        {
            for (k, v) in pairs(body, i + 1)? {
                match k.as_str() {
                    "setup" => book.setup.push(v),
                    "as" => {
                        let op = v
                            .strip_prefix("operator")
                            .and_then(|n| n.parse::<usize>().ok())
                            .filter(|n| *n >= 1)
                            .with_context(|| {
                                format!("{name}:{}: as={v}: expected operatorN, N ≥ 1", i + 1)
                            })?;
                        let op = op - 1;
                        pending.operator = Some(op);
                        pending_line = i + 1;
                    }
                    "expect-exit" => {
                        pending.expect_exit = Some(v.parse().with_context(|| {
                            format!("{name}:{}: expect-exit={v} is not a number", i + 1)
                        })?);
                        pending_line = i + 1;
                    }
                    "lab" => {
                        pending.lab_action = Some(v);
                        pending_line = i + 1;
                    }
                    "env" => {
                        let (n, val) = v.split_once(':').with_context(|| {
                            format!("{name}:{}: env={v} must be NAME:VALUE", i + 1)
                        })?;
                        pending.env.push((n.to_string(), val.to_string()));
                        pending_line = i + 1;
                    }
                    "each" if v == "coordinator" => {
                        pending.each_coordinator = true;
                        pending_line = i + 1;
                    }
                    "hosts" => {
                        pending.hosts = v.split(',').map(str::to_string).collect();
                        pending_line = i + 1;
                    }
                    other => bail!("{name}:{}: unknown runbook-test directive `{other}`", i + 1),
                }
            }
            continue;
        }
        let Some(tag) = line.strip_prefix("```") else {
            continue;
        };
        let fence_line = i + 1;
        let mut body = String::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if l.trim() == "```" {
                closed = true;
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        if !closed {
            bail!("{name}:{fence_line}: code block is never closed");
        }
        let p = std::mem::take(&mut pending);
        if tag.trim() != "sh" {
            if p.operator.is_some()
                || p.lab_action.is_some()
                || p.expect_exit.is_some()
                || p.each_coordinator
                || !p.env.is_empty()
                || !p.hosts.is_empty()
            {
                bail!("{name}:{pending_line}: directive before a block that is not `sh`");
            }
            continue;
        }
        if p.lab_action.is_none() && body.contains("systemctl") {
            bail!(
                "{name}:{fence_line}: block manages a host service (systemctl) but has no \
                 `<!-- runbook-test: lab=ACTION -->` directive"
            );
        }
        book.steps.push(Step {
            line: fence_line,
            script: body,
            operator: p.operator.unwrap_or(0),
            expect_exit: p.expect_exit.unwrap_or(0),
            lab_action: p.lab_action,
            env: p.env,
            each_coordinator: p.each_coordinator,
            hosts: p.hosts,
        });
    }
    if pending.operator.is_some()
        || pending.expect_exit.is_some()
        || pending.lab_action.is_some()
        || !pending.env.is_empty()
        || pending.each_coordinator
        || !pending.hosts.is_empty()
    {
        bail!("{name}:{pending_line}: directive with no code block after it");
    }
    Ok(book)
}

/// Reads and parses every `*.md` in `dir` except `README.md`, sorted by file name.
///
/// Errors: the directory cannot be read, or a runbook does not parse (see [`parse`]).
pub fn load_dir(dir: &Path) -> Result<Vec<Runbook>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md") && n != "README.md")
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(n))
                .with_context(|| format!("read runbook {n}"))?;
            parse(n, &text)
        })
        .collect()
}

/// The bash prelude and epilogue that carry variables from one block to the next: the
/// epilogue writes every upper-case shell variable the block set (not exported, not
/// read-only: the environment a block is given, such as `FAILOVER_TOKEN`, is never carried)
/// to `state`, the prelude of the next block reads them back. Returns the whole script for
/// `step`.
pub fn wrap(step: &Step, state: &Path) -> String {
    let state = state.display();
    let strict = if step.expect_exit == 0 {
        "set -euo pipefail"
    } else {
        "set -uo pipefail"
    };
    format!(
        "[ -f '{state}' ] && source '{state}' 2>/dev/null\n\
         {strict}\n\
         __save() {{ for __v in $(compgen -v); do case $__v in [A-Z]*) \
         __d=$(declare -p $__v 2>/dev/null) || continue; \
         __f=${{__d#declare -}}; __f=${{__f%% *}}; \
         case $__f in *[xr]*) ;; *) printf '%s\\n' \"$__d\" ;; esac ;; esac; \
         done > '{state}'; }}\n\
         trap __save EXIT\n\
         {script}",
        script = step.script
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Leader loss\n\
<!-- runbook-test: setup=kill-coordinator:leader -->\n\
```sh\nfailoverctl status\n```\n\
Some text.\n\
```text\nnot run\n```\n\
<!-- runbook-test: as=operator2 expect-exit=3 -->\n\
```sh\nfailoverctl handover approve \"$ID\"\n```\n\
<!-- runbook-test: lab=start-coordinator:1 -->\n\
```sh\nsystemctl start failover-coordinator\n```\n";

    #[test]
    fn blocks_and_directives_are_extracted_in_order() {
        let b = parse("x.md", SAMPLE).unwrap();
        assert_eq!(b.setup, vec!["kill-coordinator:leader".to_string()]);
        assert_eq!(b.steps.len(), 3);
        assert_eq!(b.steps[0].script, "failoverctl status\n");
        assert_eq!(b.steps[0].operator, 0);
        assert_eq!(b.steps[1].operator, 1);
        assert_eq!(b.steps[1].expect_exit, 3);
        assert_eq!(
            b.steps[2].lab_action.as_deref(),
            Some("start-coordinator:1")
        );
        assert_eq!(b.steps[2].line, 15);
    }

    #[test]
    fn a_host_step_without_a_lab_action_is_refused() {
        let err = parse("x.md", "```sh\nsudo systemctl restart x\n```\n").unwrap_err();
        assert!(err.to_string().contains("systemctl"), "{err}");
    }

    #[test]
    fn typos_and_dangling_directives_are_refused() {
        assert!(parse(
            "x.md",
            "<!-- runbook-test: expect_exit=1 -->\n```sh\nx\n```\n"
        )
        .is_err());
        assert!(parse(
            "x.md",
            "<!-- runbook-test: as=operator0 -->\n```sh\nx\n```\n"
        )
        .is_err());
        assert!(parse("x.md", "<!-- runbook-test: as=bob -->\n```sh\nx\n```\n").is_err());
        assert!(parse("x.md", "<!-- runbook-test: as=operator2 -->\ntext\n").is_err());
        assert!(parse("x.md", "```sh\nnever closed\n").is_err());
        assert!(parse("x.md", "<!-- runbook-test: lab=x -->\n```text\nx\n```\n").is_err());
    }

    #[test]
    fn variables_carry_from_one_block_to_the_next() {
        let dir = std::env::temp_dir().join(format!("runbook-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.join("state");
        let b = parse(
            "x.md",
            "```sh\nID=$(echo 42)\nREASON=\"for x y\"\nlower=no\nGIVEN=changed\n```\n\
             ```sh\ntest \"$ID\" = 42\ntest \"$REASON\" = \"for x y\"\necho \"${lower:-unset} $GIVEN\"\n```\n",
        )
        .unwrap();
        let mut outs = Vec::new();
        for s in &b.steps {
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(wrap(s, &state))
                .env("GIVEN", "from-env")
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            outs.push(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        // Lower-case variables stay in their block; the environment a block is given is never
        // overwritten by a block before it.
        assert_eq!(outs[1], "unset from-env\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
