//! Locating the external conformance vectors (`shared/vectors`) for tests.
//!
//! Tests read the vectors in place and never copy them into the project. The folder is
//! `$FAILOVER_VECTORS` when set, otherwise `../shared/vectors` relative to the workspace root.
//! A missing folder or file is a test failure with a hint, never a silent skip.

use std::path::{Path, PathBuf};

/// Environment variable that overrides the vectors folder.
pub const ENV: &str = "FAILOVER_VECTORS";

/// Hint printed when vectors are missing.
pub const HINT: &str = "conformance vectors not found: set FAILOVER_VECTORS to the folder \
holding the pinned upstream files, or place them at ../shared/vectors beside the repository \
(README.md, section \"Test vectors\", lists the upstream repositories and commits to fetch)";

/// The vectors folder.
///
/// Panics (failing the calling test) with [`HINT`] when the folder does not exist.
pub fn dir() -> PathBuf {
    let dir = match std::env::var_os(ENV) {
        Some(v) => PathBuf::from(v),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    };
    assert!(dir.is_dir(), "{HINT} (looked in {})", dir.display());
    dir
}

/// Path of `rel` inside the vectors folder; panics with [`HINT`] when it does not exist.
pub fn path(rel: &str) -> PathBuf {
    let p = dir().join(rel);
    assert!(p.exists(), "{HINT} (missing {})", p.display());
    p
}

/// Reads `rel` inside the vectors folder as UTF-8; panics with [`HINT`] when missing.
pub fn read(rel: &str) -> String {
    let p = path(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The Web3Signer sign request example named `name` (for example `"ATTESTATION"` or
/// `"BLOCK_V2 (DENEB)"`) from `web3signer/_extracted/sign_request_examples.json`: the request
/// body of Web3Signer's OpenAPI example, whose `signingRoot` was verified independently.
///
/// Panics (failing the calling test) when the file or the example is missing.
pub fn sign_request_example(name: &str) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_str(&read("web3signer/_extracted/sign_request_examples.json"))
            .unwrap_or_else(|e| panic!("parse sign_request_examples.json: {e}"));
    all["examples"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no sign request example {name}"))["request"]
        .clone()
}
