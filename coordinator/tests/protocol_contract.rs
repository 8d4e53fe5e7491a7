//! The served OpenAPI document and the protocol crate describe the same error contract.

mod support;

use std::collections::BTreeSet;

use failover_protocol::ErrorCode;
use support::openapi;

#[test]
fn the_openapi_error_codes_are_exactly_the_protocols() {
    let doc = openapi();
    let listed: BTreeSet<String> = doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]
        ["enum"]
        .as_sequence()
        .expect("the Error schema lists its codes")
        .iter()
        .map(|v| v.as_str().expect("a code is a string").to_string())
        .collect();
    let defined: BTreeSet<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    assert_eq!(listed, defined);
}
