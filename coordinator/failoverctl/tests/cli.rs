//! `failoverctl` against canned coordinator answers: its exit codes (0 ok, 1 refused, 2 usage,
//! 3 unavailable, 4 timed out) follow the protocol's error codes, and its token never comes
//! from the command line. The CLI links the protocol only, so a tiny HTTP server standing in
//! for a coordinator is all it needs; tests against a real cluster are in the coordinator's
//! `membership` and `hostile_input` tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::sync::mpsc;

/// Serves one canned HTTP answer per connection (`status`, JSON `body`) on 127.0.0.1 and
/// reports each request line and `Authorization` header it saw.
fn canned(status: u16, body: &'static str) -> (String, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut auth = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if lower.starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_string();
                }
            }
            let mut body_in = vec![0; length];
            reader.read_exact(&mut body_in).unwrap();
            let _ = tx.send((request_line.trim_end().to_string(), auth));
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).unwrap();
        }
    });
    (url, rx)
}

fn failoverctl(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_failoverctl"));
    c.env_remove("FAILOVER_TOKEN")
        .env_remove("FAILOVER_TOKEN_FILE")
        .env_remove("FAILOVER_COORDINATOR")
        .args(["--coordinator", url, "--timeout", "5"])
        .args(args);
    if let Some(t) = token {
        c.env("FAILOVER_TOKEN", t);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const HANDOVER: &str = r#"{"id":7,"from":"agent-eu","to":"agent-us","requested_by":"alice","reason":"drill","state":"awaiting_finality","fenced_at":7,"required_epoch":3,"finality_evidence":null,"approvals":[],"granted_token":null,"break_glass":false,"timeline":[{"event":"requested","log_index":7,"at_ms":1},{"event":"fenced","log_index":7,"at_ms":1}]}"#;

#[test]
fn a_handover_request_sends_the_token_and_prints_the_typed_answer() {
    let (url, seen) = canned(200, HANDOVER);
    let out = failoverctl(
        &url,
        Some("alice-token"),
        &[
            "--output", "json", "handover", "request", "--to", "agent-us", "--reason", "drill",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (line, auth) = seen.recv().unwrap();
    assert_eq!(line, "POST /v1/handovers HTTP/1.1");
    assert_eq!(auth, "Bearer alice-token");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["state"], "awaiting_finality");
    assert_eq!(printed["timeline"][1]["event"], "fenced");
}

#[test]
fn exit_codes_follow_the_error_codes() {
    for (status, body, exit) in [
        (
            409,
            r#"{"code":"conflict","message":"a handover is open"}"#,
            1,
        ),
        (
            403,
            r#"{"code":"forbidden","message":"two-person rule"}"#,
            1,
        ),
        (404, r#"{"code":"not_found","message":"no handover 9"}"#, 1),
        (503, r#"{"code":"unavailable","message":"no quorum"}"#, 3),
        (
            504,
            r#"{"code":"catch_up_timeout","message":"still behind"}"#,
            4,
        ),
        (418, r#"{"code":"from_the_future","message":"?"}"#, 1),
        (500, "not json", 3),
    ] {
        let (url, _seen) = canned(status, body);
        let out = failoverctl(&url, Some("alice-token"), &["handover", "show", "9"]);
        assert_eq!(
            out.status.code(),
            Some(exit),
            "{status} {body}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&status.to_string()),
            "{status}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn an_unreachable_coordinator_is_exit_3_and_the_next_url_is_tried() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let out = failoverctl(&closed, Some("t"), &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no coordinator reachable"),
        "{}",
        stderr(&out)
    );

    let (url, seen) = canned(200, HANDOVER);
    let both = format!("{closed},{url}");
    let out = failoverctl(&both, Some("t"), &["handover", "show", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(seen.recv().unwrap().0, "GET /v1/handovers/7 HTTP/1.1");
}

#[test]
fn the_token_comes_from_a_private_file_or_the_environment_never_a_flag() {
    let (url, seen) = canned(200, HANDOVER);
    let out = failoverctl(&url, None, &["handover", "show", "7"]);
    assert_eq!(out.status.code(), Some(2), "no token at all");
    assert!(stderr(&out).contains("--token-file"), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("op.token");
    std::fs::write(&file, "file-token\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = file.to_str().unwrap();
    let out = failoverctl(&url, None, &["--token-file", path, "handover", "show", "7"]);
    assert_eq!(out.status.code(), Some(2), "a token file others can read");
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = failoverctl(&url, None, &["--token-file", path, "handover", "show", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(seen.recv().unwrap().1, "Bearer file-token");

    let out = failoverctl(&url, None, &["--token", "x", "handover", "show", "7"]);
    assert_eq!(out.status.code(), Some(2), "there is no --token flag");
}

#[test]
fn an_answer_with_an_unknown_outcome_is_never_repeated_on_another_coordinator() {
    // The first coordinator answers 503 (the request reached it: its outcome may be unknown);
    // the second would accept. An operator command is not sent twice.
    let (unavailable, first) = canned(503, r#"{"code":"unavailable","message":"no quorum"}"#);
    let (ok, second) = canned(200, HANDOVER);
    let both = format!("{unavailable},{ok}");
    let out = failoverctl(&both, Some("t"), &["handover", "approve", "7"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(
        first.recv().unwrap().0,
        "POST /v1/handovers/7/approve HTTP/1.1"
    );
    assert!(
        second.try_recv().is_err(),
        "the second coordinator was asked too"
    );
}

#[test]
fn a_plain_text_error_answer_is_shown_as_it_came() {
    let (url, _seen) = canned(413, "length limit exceeded");
    let out = failoverctl(&url, Some("t"), &["handover", "show", "7"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("length limit exceeded"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_reader_that_closes_the_pipe_early_ends_failoverctl_quietly() {
    // 5,000 audit entries: far more table than a pipe buffers, so failoverctl is still
    // writing when the reader (`failoverctl audit | head -1`) goes away.
    let entries: Vec<String> = (0..5000)
        .map(|i| {
            format!(
                r#"{{"log_index":{i},"at_ms":1,"operator":"alice","action":"handover.request","handover":null,"detail":"to agent-us: a reason long enough to fill a line of the table","outcome":"accepted"}}"#
            )
        })
        .collect();
    let body: &'static str = Box::leak(format!("[{}]", entries.join(",")).into_boxed_str());
    let (url, _) = canned(200, body);
    let mut child = Command::new(env!("CARGO_BIN_EXE_failoverctl"))
        .env_remove("FAILOVER_TOKEN_FILE")
        .env_remove("FAILOVER_COORDINATOR")
        .env("FAILOVER_TOKEN", "t")
        .args(["--coordinator", &url, "--timeout", "5", "audit"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    // The reader is gone (stdout's read end dropped above).
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}
