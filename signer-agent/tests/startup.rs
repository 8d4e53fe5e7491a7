//! Start-up: the config file and its layering, keystore loading, and the real binary printing
//! `READY <url>` and stopping on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use failover_common::eth::ChainSpec;
use failover_common::interop;
use failover_common::keystore::{encrypt, KdfParams};
use failover_common::types::Version;
use signer_agent::keys::{self, Keys};
use signer_agent::{Agent, Config, NetworkSetting, Overrides};

const GVR: &str = "0x04700007fabc8282644aed6d1c7c9e21d38a03a0c4ba193f3afe428824b3a673";

/// Writes interop keys `indices` as cheap PBKDF2 keystores `validator-i.json` with passwords
/// `validator-i.txt` (`password-i` plus a trailing newline, as editors save it).
fn write_keys(dir: &Path, indices: &[u64]) -> (std::path::PathBuf, std::path::PathBuf) {
    let ks = dir.join("keystores");
    let pw = dir.join("passwords");
    std::fs::create_dir_all(&ks).unwrap();
    std::fs::create_dir_all(&pw).unwrap();
    for &i in indices {
        let k = encrypt(
            &interop::secret_key(i).to_bytes(),
            &format!("password-{i}"),
            KdfParams::Pbkdf2 { c: 1024 },
            &mut rand::thread_rng(),
        )
        .unwrap();
        std::fs::write(ks.join(format!("validator-{i}.json")), k.to_json()).unwrap();
        failover_common::secret_file::write_private(
            &pw.join(format!("validator-{i}.txt")),
            &format!("password-{i}\n"),
        )
        .unwrap();
    }
    (ks, pw)
}

#[test]
fn the_example_config_parses_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/signer-agent.example.toml");
    let cfg = Config::from_file(&path).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.record_deadline_ms, 3000);
    assert_eq!(cfg.max_batch, 1024);
    assert!(!cfg.allow_voluntary_exit);
    assert_eq!(cfg.network, NetworkSetting::Mainnet);
    assert_eq!(cfg.chain_spec().unwrap(), ChainSpec::mainnet());
}

/// A valid config file, plus `extra` lines.
fn config_with(extra: &str) -> String {
    format!(
        "agent_id = \"a\"\nregion = \"eu\"\ncoordinators = [\"http://127.0.0.1:1\"]\n\
         coordinator_token_file = \"t\"\ninsecure_plaintext_coordinators = true\ninsecure_plaintext_api = true\ngenesis_validators_root = \"{GVR}\"\n\
         keystores_dir = \"k\"\npasswords_dir = \"p\"\n{extra}"
    )
}

#[test]
fn network_defaults_to_mainnet_and_named_networks_use_their_built_in_constants() {
    let cfg = Config::from_toml(&config_with("")).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.network, NetworkSetting::Mainnet);
    assert_eq!(cfg.chain_spec().unwrap(), ChainSpec::mainnet());

    for (name, chain) in [
        ("mainnet", ChainSpec::mainnet()),
        ("hoodi", ChainSpec::hoodi()),
        ("holesky", ChainSpec::holesky()),
        ("sepolia", ChainSpec::sepolia()),
    ] {
        let cfg = Config::from_toml(&config_with(&format!("network = \"{name}\"\n"))).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.chain_spec().unwrap(), chain, "{name}");
    }
    // The chain's SLOTS_PER_EPOCH comes from the config (a devnet may shorten epochs).
    let cfg =
        Config::from_toml(&config_with("network = \"hoodi\"\nslots_per_epoch = 8\n")).unwrap();
    assert_eq!(
        cfg.chain_spec().unwrap(),
        ChainSpec {
            slots_per_epoch: 8,
            ..ChainSpec::hoodi()
        }
    );

    let err = Config::from_toml(&config_with("network = \"goerli\"\n")).unwrap_err();
    assert!(format!("{err:#}").contains("goerli"), "{err:#}");
    let err = Config::from_toml(&config_with("network = \"Mainnet\"\n")).unwrap_err();
    assert!(format!("{err:#}").contains("Mainnet"), "{err:#}");
}

#[test]
fn a_named_network_refuses_fork_overrides_and_a_custom_one_needs_all_three() {
    let cfg = Config::from_toml(&config_with(
        "network = \"mainnet\"\ncapella_fork_version = \"0x03000000\"\ndeneb_fork_epoch = 5\n",
    ))
    .unwrap();
    let err = cfg.validate().unwrap_err().to_string();
    assert!(
        err.contains(
            "capella_fork_version, deneb_fork_epoch may be set only with network = \"custom\""
        ),
        "{err}"
    );

    let cfg = Config::from_toml(&config_with(
        "network = \"custom\"\ngenesis_fork_version = \"0x10000038\"\n",
    ))
    .unwrap();
    let err = cfg.validate().unwrap_err().to_string();
    assert!(
        err.contains("missing: capella_fork_version, deneb_fork_epoch"),
        "{err}"
    );
    assert!(
        Agent::new(cfg, Some("t".into()), None).is_err(),
        "an agent never starts with it"
    );

    let cfg = Config::from_toml(&config_with(
        "network = \"custom\"\ngenesis_fork_version = \"0x10000038\"\n\
         capella_fork_version = \"0x40000038\"\ndeneb_fork_epoch = 7\nslots_per_epoch = 6\n",
    ))
    .unwrap();
    cfg.validate().unwrap();
    assert_eq!(
        cfg.chain_spec().unwrap(),
        ChainSpec {
            name: "custom",
            genesis_fork_version: Version([0x10, 0, 0, 0x38]),
            capella_fork_version: Version([0x40, 0, 0, 0x38]),
            deneb_fork_epoch: 7,
            slots_per_epoch: 6,
        }
    );

    let err = Config::from_toml(&config_with(
        "network = \"custom\"\ngenesis_fork_version = \"0x1000\"\n",
    ))
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("genesis_fork_version"),
        "{err:#}"
    );
}

#[test]
fn network_settings_come_from_flags_and_survive_the_printed_config() {
    let mut cfg = Config::from_toml(&config_with("network = \"hoodi\"\n")).unwrap();
    cfg.apply(&Overrides {
        network: Some(NetworkSetting::Custom),
        genesis_fork_version: Some("0x10000038".parse().unwrap()),
        capella_fork_version: Some("0x40000038".parse().unwrap()),
        deneb_fork_epoch: Some(0),
        ..Overrides::default()
    });
    cfg.validate().unwrap();
    assert_eq!(
        cfg.chain_spec().unwrap().capella_fork_version,
        Version([0x40, 0, 0, 0x38])
    );
    // `check-config` prints the effective config as TOML; it parses back to the same values.
    let printed = toml::to_string(&cfg).unwrap();
    assert!(printed.contains("network = \"custom\""), "{printed}");
    assert!(printed.contains("deneb_fork_epoch = 0"), "{printed}");
    assert_eq!(Config::from_toml(&printed).unwrap(), cfg);
    // A named network prints without the fork settings, and also parses back.
    let named = Config::from_toml(&config_with("")).unwrap();
    let printed = toml::to_string(&named).unwrap();
    assert!(!printed.contains("fork_version"), "{printed}");
    assert_eq!(Config::from_toml(&printed).unwrap(), named);
}

#[test]
fn unknown_config_keys_are_rejected() {
    let err = Config::from_toml("agent_id = \"a\"\nrecord_deadline = 5\n").unwrap_err();
    assert!(format!("{err:#}").contains("record_deadline"), "{err:#}");
}

#[test]
fn validation_lists_every_missing_field_by_name() {
    let err = Config::default().validate().unwrap_err().to_string();
    for field in [
        "agent_id",
        "region",
        "coordinators",
        "coordinator_token_file",
        "genesis_validators_root",
        "keystores_dir",
        "passwords_dir",
    ] {
        assert!(err.contains(field), "{field} not named in: {err}");
    }
    let cfg = Config {
        coordinators: vec!["ftp://x".into(), "http://a:1".into(), "http://a:1".into()],
        authority_poll_ms: 500,
        authority_max_age_ms: 400,
        ..Config::default()
    };
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("coordinators[0]"), "{err}");
    assert!(err.contains("listed twice"), "{err}");
    assert!(err.contains("authority_max_age_ms"), "{err}");
}

#[test]
fn environment_and_flags_override_the_file() {
    let mut cfg = Config::from_toml(&format!(
        "agent_id = \"a\"\nregion = \"eu\"\ncoordinators = [\"http://127.0.0.1:1\"]\n\
         coordinator_token_file = \"t\"\ninsecure_plaintext_coordinators = true\ninsecure_plaintext_api = true\ngenesis_validators_root = \"{GVR}\"\n\
         keystores_dir = \"k\"\npasswords_dir = \"p\"\nrecord_deadline_ms = 100\n"
    ))
    .unwrap();
    cfg.apply(&Overrides {
        record_deadline_ms: Some(250),
        coordinators: Some(vec![
            "http://127.0.0.1:2".into(),
            "http://127.0.0.1:3".into(),
        ]),
        allow_voluntary_exit: Some(true),
        ..Overrides::default()
    });
    cfg.validate().unwrap();
    assert_eq!(cfg.record_deadline_ms, 250);
    assert_eq!(cfg.coordinators.len(), 2);
    assert!(cfg.allow_voluntary_exit);
    assert_eq!(
        cfg.agent_id, "a",
        "fields without override keep the file's value"
    );
}

#[tokio::test]
async fn loads_every_keystore_in_the_folder_with_its_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, pw) = write_keys(dir.path(), &[0, 1, 2]);
    std::fs::write(ks.join("README.md"), "not a keystore").unwrap();

    let files = keys::scan(&ks, &pw).unwrap();
    assert_eq!(files.len(), 3);
    let keys = Arc::new(Keys::new());
    keys::decrypt_all(files, keys.clone(), 2).await.unwrap();
    assert!(keys.is_complete());
    let mut expected: Vec<_> = (0..3).map(interop::pubkey).collect();
    expected.sort();
    assert_eq!(keys.pubkeys(), expected);
}

#[tokio::test]
async fn a_wrong_password_stops_loading_and_names_the_keystore() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, pw) = write_keys(dir.path(), &[0, 1]);
    failover_common::secret_file::write_private(&pw.join("validator-1.txt"), "nope").unwrap();
    let keys = Arc::new(Keys::new());
    let err = keys::decrypt_all(keys::scan(&ks, &pw).unwrap(), keys.clone(), 2)
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("validator-1.json"), "{msg}");
    assert!(msg.contains("wrong keystore password"), "{msg}");
    assert!(!keys.is_complete());
}

#[test]
fn a_missing_password_file_or_a_duplicate_key_is_refused_at_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, pw) = write_keys(dir.path(), &[0]);
    std::fs::copy(ks.join("validator-0.json"), ks.join("copy.json")).unwrap();
    let err = format!("{:#}", keys::scan(&ks, &pw).err().unwrap());
    assert!(err.contains("copy.json"), "{err}");

    std::fs::copy(pw.join("validator-0.txt"), pw.join("copy.txt")).unwrap();
    let err = format!("{:#}", keys::scan(&ks, &pw).err().unwrap());
    assert!(err.contains("same pubkey"), "{err}");
}

#[test]
fn the_binary_prints_ready_after_loading_keys_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, pw) = write_keys(dir.path(), &[0, 1]);
    let token = dir.path().join("token");
    failover_common::secret_file::write_private(&token, "secret\n").unwrap();
    let cfg = dir.path().join("signer-agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "agent_id = \"agent-a\"\nregion = \"eu\"\nlisten = \"127.0.0.1:0\"\n\
             coordinators = [\"http://127.0.0.1:9\"]\ncoordinator_token_file = {token:?}\n\
             insecure_plaintext_coordinators = true\ninsecure_plaintext_api = true\n\
             genesis_validators_root = \"{GVR}\"\nkeystores_dir = {ks:?}\npasswords_dir = {pw:?}\n"
        ),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_signer-agent"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("no READY line within 60 s");
        }
    };
    let url = line
        .trim()
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // Keys are loaded by READY time: the public keys list is complete.
    let keys: Vec<String> = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::get(format!("{url}/api/v1/eth2/publicKeys"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(keys.len(), 2);

    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}

#[test]
fn the_connection_cap_comes_from_the_config_and_zero_is_refused() {
    let cfg = Config::from_toml(&config_with("")).unwrap();
    assert_eq!(signer_agent::listener_limits(&cfg).max_connections, 1024);
    let cfg = Config::from_toml(&config_with("max_connections = 4096\n")).unwrap();
    cfg.validate().unwrap();
    let limits = signer_agent::listener_limits(&cfg);
    assert_eq!(limits.max_connections, 4096);
    assert_eq!(
        limits.request_timeout,
        signer_agent::LISTENER_LIMITS.request_timeout
    );
    let cfg = Config::from_toml(&config_with("max_connections = 0\n")).unwrap();
    let err = cfg.validate().unwrap_err();
    assert!(
        format!("{err:#}").contains("max_connections must be > 0"),
        "{err:#}"
    );
}
