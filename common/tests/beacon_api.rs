//! Conformance of `failover_common::beacon` types with the Beacon API spec YAMLs
//! (`shared/vectors/beacon-APIs`, read in place).
//!
//! For each endpoint the system uses, the test walks the spec from `beacon-node-oapi.yaml`'s
//! `paths` entry to the 200 response schema, builds the example response the spec describes
//! (the media type's `example`/`examples` when present; otherwise the schema's own `example`s,
//! following `$ref`s and `allOf`, with every required property), then checks that our type
//! parses it and serializes it back to the same JSON, and that dropping any required `data`
//! field is refused. Error bodies use the spec's explicit error examples.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use failover_common::beacon::{
    BlockHeaderResponse, ErrorMessage, FinalityCheckpointsResponse, ForkResponse, GenesisResponse,
    SpecConstants, SpecResponse, SyncingResponse, VersionResponse,
};
use failover_common::types::Version;
use failover_common::vectors;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value as Json};
use serde_yaml::Value as Yaml;

/// Loads spec files and resolves `$ref`s between them.
struct Spec {
    files: HashMap<PathBuf, Yaml>,
}

impl Spec {
    fn new() -> Self {
        Self {
            files: HashMap::new(),
        }
    }

    fn file(&mut self, path: &Path) -> Yaml {
        let path = path
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.files
            .entry(path.clone())
            .or_insert_with(|| {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                serde_yaml::from_str(&text)
                    .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
            })
            .clone()
    }

    /// Follows a `$ref` written in `from`; returns the target file and node.
    fn deref(&mut self, from: &Path, reference: &str) -> (PathBuf, Yaml) {
        let (file_part, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let file = if file_part.is_empty() {
            from.to_path_buf()
        } else {
            from.parent().unwrap().join(file_part)
        };
        let mut node = self.file(&file);
        for key in pointer.split('/').filter(|k| !k.is_empty()) {
            node = get(&node, key)
                .unwrap_or_else(|| panic!("{reference} (from {}): no key {key}", from.display()))
                .clone();
        }
        (file, node)
    }

    /// Resolves `node` while it is a bare `$ref`.
    fn resolve(&mut self, file: &Path, node: &Yaml) -> (PathBuf, Yaml) {
        let (mut file, mut node) = (file.to_path_buf(), node.clone());
        while let Some(r) = get(&node, "$ref").and_then(Yaml::as_str).map(str::to_owned) {
            (file, node) = self.deref(&file, &r);
        }
        (file, node)
    }

    /// The example value the schema `node` (located in `file`) describes.
    fn example(&mut self, file: &Path, node: &Yaml) -> Json {
        if let Some(ex) = get(node, "example") {
            return serde_json::to_value(ex).expect("YAML example converts to JSON");
        }
        if let Some(r) = get(node, "$ref").and_then(Yaml::as_str) {
            let (f, n) = self.deref(file, r);
            return self.example(&f, &n);
        }
        if let Some(parts) = get(node, "allOf").and_then(Yaml::as_sequence) {
            let mut merged = serde_json::Map::new();
            for part in parts.clone() {
                match self.example(file, &part) {
                    Json::Object(m) => merged.extend(m),
                    other => panic!("allOf part is not an object: {other}"),
                }
            }
            return Json::Object(merged);
        }
        match get(node, "type").and_then(Yaml::as_str) {
            Some("object") => {
                let props = get(node, "properties").cloned().unwrap_or(Yaml::Null);
                let mut out = serde_json::Map::new();
                for key in required(node) {
                    let prop = get(&props, &key)
                        .unwrap_or_else(|| panic!("required {key} has no schema"))
                        .clone();
                    out.insert(key, self.example(file, &prop));
                }
                Json::Object(out)
            }
            Some("array") => {
                let items = get(node, "items").expect("array has items").clone();
                Json::Array(vec![self.example(file, &items)])
            }
            // The spec gives no example for these leaves; any value of the type will do.
            Some("boolean") => Json::Bool(true),
            Some("number") | Some("integer") => json!(1),
            other => panic!("no example for a {other:?} schema in {}", file.display()),
        }
    }

    /// The `application/json` media object of `GET path`'s response `status`, and its file.
    fn media(&mut self, path: &str, status: &str) -> (PathBuf, Yaml) {
        let root = vectors::path("beacon-APIs/beacon-node-oapi.yaml");
        let oapi = self.file(&root);
        let item = get(&oapi, "paths")
            .and_then(|p| get(p, path))
            .unwrap_or_else(|| panic!("{path} not in beacon-node-oapi.yaml"))
            .clone();
        let (file, item) = self.resolve(&root, &item);
        let response = get(&item, "get")
            .and_then(|g| get(g, "responses"))
            .and_then(|r| get(r, status))
            .unwrap_or_else(|| panic!("GET {path} has no {status} response"))
            .clone();
        let (file, response) = self.resolve(&file, &response);
        let media = get(&response, "content")
            .and_then(|c| get(c, "application/json"))
            .unwrap_or_else(|| panic!("GET {path} {status} has no JSON body"))
            .clone();
        (file, media)
    }

    /// Every example body of `GET path`'s response `status`.
    fn examples(&mut self, path: &str, status: &str) -> Vec<Json> {
        let (file, media) = self.media(path, status);
        if let Some(ex) = get(&media, "example") {
            return vec![serde_json::to_value(ex).unwrap()];
        }
        if let Some(map) = get(&media, "examples").and_then(Yaml::as_mapping) {
            return map
                .values()
                .map(|e| serde_json::to_value(get(e, "value").expect("example value")).unwrap())
                .collect();
        }
        let schema = get(&media, "schema").expect("media has a schema").clone();
        vec![self.example(&file, &schema)]
    }

    /// The required property names of the `data` object in `GET path`'s 200 schema.
    fn required_data_fields(&mut self, path: &str) -> Vec<String> {
        let (file, media) = self.media(path, "200");
        let (file, schema) = self.resolve(&file, get(&media, "schema").unwrap());
        let data = get(&schema, "properties")
            .and_then(|p| get(p, "data"))
            .expect("schema has data")
            .clone();
        let (_, data) = self.resolve(&file, &data);
        required(&data)
    }
}

fn get<'a>(node: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    node.as_mapping()?.get(Yaml::String(key.to_string()))
}

fn required(node: &Yaml) -> Vec<String> {
    get(node, "required")
        .and_then(Yaml::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses `example` as `T`, serializes it back and checks the JSON is unchanged.
fn round_trip<T: DeserializeOwned + Serialize>(what: &str, example: &Json) -> T {
    let parsed: T = serde_json::from_value(example.clone())
        .unwrap_or_else(|e| panic!("{what}: spec example does not parse: {e}\n{example:#}"));
    let back = serde_json::to_value(&parsed).unwrap();
    assert_eq!(&back, example, "{what}: round trip changed the JSON");
    parsed
}

/// Round-trips every 200 example of `path`, and checks that removing any required `data`
/// field makes `T` refuse the body.
fn check_endpoint<T: DeserializeOwned + Serialize>(path: &str) -> Vec<T> {
    let mut spec = Spec::new();
    let examples = spec.examples(path, "200");
    assert!(!examples.is_empty(), "{path}: no example");
    let required = spec.required_data_fields(path);
    let mut parsed = Vec::new();
    for ex in &examples {
        parsed.push(round_trip::<T>(path, ex));
        for key in &required {
            let mut broken = ex.clone();
            broken["data"].as_object_mut().unwrap().remove(key);
            assert!(
                serde_json::from_value::<T>(broken).is_err(),
                "{path}: accepted a body without required data.{key}"
            );
        }
    }
    parsed
}

#[test]
fn finality_checkpoints_example_round_trips() {
    let parsed = check_endpoint::<FinalityCheckpointsResponse>(
        "/eth/v1/beacon/states/{state_id}/finality_checkpoints",
    );
    let example = &Spec::new().examples(
        "/eth/v1/beacon/states/{state_id}/finality_checkpoints",
        "200",
    )[0];
    let epoch: u64 = example["data"]["finalized"]["epoch"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(parsed[0].data.finalized.epoch, epoch);
}

#[test]
fn finality_checkpoints_envelope_flags_default_to_false_when_absent() {
    // The spec: "If the field is not present, assume the False value."
    let mut example = Spec::new().examples(
        "/eth/v1/beacon/states/{state_id}/finality_checkpoints",
        "200",
    )[0]
    .clone();
    let obj = example.as_object_mut().unwrap();
    obj.remove("execution_optimistic");
    obj.remove("finalized");
    let parsed: FinalityCheckpointsResponse = serde_json::from_value(example).unwrap();
    assert!(!parsed.execution_optimistic);
    assert!(!parsed.finalized);
}

#[test]
fn syncing_example_round_trips() {
    let parsed = check_endpoint::<SyncingResponse>("/eth/v1/node/syncing");
    let required = Spec::new().required_data_fields("/eth/v1/node/syncing");
    assert_eq!(
        required,
        [
            "head_slot",
            "sync_distance",
            "is_syncing",
            "is_optimistic",
            "el_offline"
        ],
        "the spec's required syncing fields changed"
    );
    assert!(!parsed.is_empty());
}

#[test]
fn genesis_example_round_trips() {
    let parsed = check_endpoint::<GenesisResponse>("/eth/v1/beacon/genesis");
    let example = &Spec::new().examples("/eth/v1/beacon/genesis", "200")[0];
    assert_eq!(
        parsed[0].data.genesis_time.to_string(),
        example["data"]["genesis_time"].as_str().unwrap()
    );
}

#[test]
fn fork_example_round_trips() {
    check_endpoint::<ForkResponse>("/eth/v1/beacon/states/{state_id}/fork");
}

#[test]
fn block_header_example_round_trips() {
    check_endpoint::<BlockHeaderResponse>("/eth/v1/beacon/headers/{block_id}");
}

#[test]
fn node_version_example_round_trips() {
    check_endpoint::<VersionResponse>("/eth/v1/node/version");
}

#[test]
fn spec_example_round_trips_and_typed_getters_read_it() {
    let path = "/eth/v1/config/spec";
    let example = &Spec::new().examples(path, "200")[0];
    let parsed: SpecResponse = round_trip(path, example);
    let spec: &SpecConstants = &parsed.data;
    let raw = example["data"].as_object().unwrap();
    assert!(!raw.is_empty());
    let mut checked = 0;
    for (key, value) in raw {
        match value.as_str() {
            Some(s) if s.starts_with("0x") && s.len() == 10 => {
                let v: Version = s.parse().unwrap();
                assert_eq!(spec.get_version(key), Ok(v), "{key}");
                checked += 1;
            }
            Some(s) if s.bytes().all(|b| b.is_ascii_digit()) => {
                assert_eq!(spec.get_u64(key).unwrap().to_string(), s, "{key}");
                checked += 1;
            }
            Some(_) => assert!(spec.get_str(key).is_ok(), "{key}"),
            // Arrays (BLOB_SCHEDULE) are kept as JSON and are not numbers.
            None => assert!(spec.get_u64(key).is_err(), "{key}"),
        }
    }
    assert!(checked >= 2, "the example has hex and decimal constants");
}

#[test]
fn error_examples_round_trip() {
    let mut spec = Spec::new();
    let cases = [
        (
            "/eth/v1/beacon/states/{state_id}/finality_checkpoints",
            "400",
        ),
        (
            "/eth/v1/beacon/states/{state_id}/finality_checkpoints",
            "404",
        ),
        ("/eth/v1/beacon/states/{state_id}/fork", "400"),
        ("/eth/v1/beacon/states/{state_id}/fork", "404"),
        ("/eth/v1/beacon/headers/{block_id}", "400"),
        ("/eth/v1/beacon/headers/{block_id}", "404"),
        ("/eth/v1/beacon/genesis", "404"),
        ("/eth/v1/beacon/genesis", "500"),
    ];
    for (path, status) in cases {
        for ex in spec.examples(path, status) {
            let e: ErrorMessage = round_trip(&format!("{path} {status}"), &ex);
            assert_eq!(e.code.to_string(), status, "{path}");
            assert!(!e.message.is_empty());
        }
    }
}
