//! Handshakes between real sockets: who is accepted, who is refused, and why.

use std::net::SocketAddr;
use std::path::Path;

use axum::routing::get;
use axum::{Extension, Router};

use std::sync::Arc;

use failover_common::tls::issue::{issue, new_ca, write_pair, Issued, LeafKind, LeafSpec};
use failover_common::tls::rustls;
use failover_common::tls::*;

struct Ca {
    dir: tempfile::TempDir,
    ca: Issued,
}

impl Ca {
    fn new() -> Self {
        Self::named("test cluster CA")
    }
    fn named(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(name, 30).unwrap();
        write_pair(dir.path(), "ca", &ca).unwrap();
        Self { dir, ca }
    }
    fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }
    /// Issues `kind` for 127.0.0.1 and returns the files of a process using it.
    fn files(&self, name: &str, kind: LeafKind) -> TlsFiles {
        let leaf = issue(
            &self.ca.cert_pem,
            &self.ca.key_pem,
            &LeafSpec::for_days(kind, vec!["127.0.0.1".into(), "localhost".into()], 30),
        )
        .unwrap();
        let pair = write_pair(self.dir.path(), name, &leaf).unwrap();
        TlsFiles {
            ca_file: self.ca_file(),
            cert_file: pair.cert,
            key_file: pair.key,
        }
    }
}

/// A TLS server answering `GET /who` with the client certificate's identity.
async fn server(
    cfg: Arc<rustls::ServerConfig>,
) -> (SocketAddr, Arc<failover_common::serve::ListenerStats>) {
    let app = Router::new().route(
        "/who",
        get(|Extension(t): Extension<TlsConnection>| async move {
            t.identity()
                .map_or_else(|| "anonymous".to_string(), |i| i.uri())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(failover_common::serve::ListenerStats::default());
    tokio::spawn(failover_common::serve::serve(
        listener,
        app,
        failover_common::serve::ListenerLimits::default(),
        stats.clone(),
        Some(cfg),
        std::future::pending(),
    ));
    (addr, stats)
}

async fn who(client: &reqwest::Client, addr: SocketAddr) -> Result<String, String> {
    let res = client
        .get(format!("https://{addr}/who"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(res.text().await.unwrap())
}

fn client(tls: &Arc<Tls>, role: PeerRole) -> reqwest::Client {
    tls.reqwest_builder(role).build().unwrap()
}

#[tokio::test]
async fn a_node_and_an_agent_of_the_cluster_see_each_other_s_identity() {
    let ca = Ca::new();
    let node = Tls::load(&ca.files("node1", LeafKind::Node(1))).unwrap();
    let agent = Tls::load(&ca.files("agent", LeafKind::Agent("agent-eu".into()))).unwrap();
    assert_eq!(node.identity(), Some(Identity::Node(1)));
    let (addr, _) = server(node.server_config(ClientAuth::Optional)).await;
    assert_eq!(
        who(&client(&agent, PeerRole::Node), addr).await.unwrap(),
        "urn:failover:agent:agent-eu"
    );
    let res = client(&agent, PeerRole::Node)
        .get(format!("https://{addr}/who"))
        .send()
        .await
        .unwrap();
    assert_eq!(peer_identity(&res), Some(Identity::Node(1)));
    // A tool with the CA and no certificate of its own is anonymous but served.
    let anon = reqwest::Client::builder()
        .use_preconfigured_tls(ca_only_client_config(&ca.ca_file(), PeerRole::Node).unwrap())
        .build()
        .unwrap();
    assert_eq!(who(&anon, addr).await.unwrap(), "anonymous");
}

#[tokio::test]
async fn a_server_from_another_ca_is_refused_before_any_request_is_sent() {
    let ca = Ca::new();
    let agent = Tls::load(&ca.files("agent", LeafKind::Agent("agent-us".into()))).unwrap();
    // A man in the middle with a node certificate of its own CA: one with another name, and
    // one that copies the cluster CA's name (the issuer is found by name, the signature fails).
    for (rogue_ca, why) in [
        (Ca::named("mitm CA"), "UnknownIssuer"),
        (Ca::new(), "BadSignature"),
    ] {
        let rogue = Tls::load(&rogue_ca.files("mitm", LeafKind::Node(1))).unwrap();
        let (addr, _) = server(rogue.server_config(ClientAuth::Optional)).await;
        let err = who(&client(&agent, PeerRole::Node), addr)
            .await
            .unwrap_err();
        assert!(err.contains(why), "{err}");
    }
}

#[tokio::test]
async fn a_server_of_the_cluster_ca_that_is_not_a_coordinator_is_refused_as_one() {
    let ca = Ca::new();
    let agent = Tls::load(&ca.files("agent", LeafKind::Agent("agent-us".into()))).unwrap();
    // Another agent of the same CA posing as a coordinator.
    let other = Tls::load(&ca.files("other", LeafKind::Agent("agent-eu".into()))).unwrap();
    let (addr, _) = server(other.server_config(ClientAuth::Optional)).await;
    let err = who(&client(&agent, PeerRole::Node), addr)
        .await
        .unwrap_err();
    assert!(err.contains("is not a coordinator"), "{err}");
    assert!(err.contains("agent agent-eu"), "{err}");
    // The same server is fine for a client that expects any server of the CA.
    assert_eq!(
        who(&client(&agent, PeerRole::Any), addr).await.unwrap(),
        "urn:failover:agent:agent-us"
    );
}

#[tokio::test]
async fn a_required_client_certificate_refuses_anonymous_and_foreign_clients() {
    let ca = Ca::new();
    let rogue_ca = Ca::new();
    let node = Tls::load(&ca.files("node1", LeafKind::Node(1))).unwrap();
    let (addr, stats) = server(node.server_config(ClientAuth::Required)).await;
    let anon = reqwest::Client::builder()
        .use_preconfigured_tls(ca_only_client_config(&ca.ca_file(), PeerRole::Node).unwrap())
        .build()
        .unwrap();
    assert!(who(&anon, addr).await.is_err());
    // A client whose certificate comes from another CA (it trusts our CA, so only the
    // client side of the handshake can fail).
    let foreign_files = rogue_ca.files("node2", LeafKind::Node(2));
    let foreign = Tls::load(&TlsFiles {
        ca_file: ca.ca_file(),
        ..foreign_files.clone()
    });
    // Loading refuses it already: its certificate does not chain to the CA it names.
    let err = foreign.unwrap_err().0;
    assert!(err.contains("does not chain to the CA"), "{err}");
    let peer2 = Tls::load(&ca.files("node2", LeafKind::Node(2))).unwrap();
    assert_eq!(
        who(&client(&peer2, PeerRole::Node), addr).await.unwrap(),
        "urn:failover:node:2"
    );
    assert!(
        stats
            .tls_handshake_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn plain_http_on_a_tls_port_gets_no_answer() {
    let ca = Ca::new();
    let node = Tls::load(&ca.files("node1", LeafKind::Node(1))).unwrap();
    let (addr, stats) = server(node.server_config(ClientAuth::Optional)).await;
    let res = reqwest::get(format!("http://{addr}/who")).await;
    assert!(res.is_err(), "{res:?}");
    assert_eq!(
        stats
            .tls_handshake_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

fn replace_pair(dir: &Path, name: &str, issued: &Issued) {
    std::fs::remove_file(dir.join(format!("{name}-key.pem"))).unwrap();
    write_pair(dir, name, issued).unwrap();
}

#[tokio::test]
async fn reload_puts_a_new_certificate_in_force_for_the_next_handshake_only_for_the_same_identity()
{
    let ca = Ca::new();
    let files = ca.files("node1", LeafKind::Node(1));
    let node = Tls::load(&files).unwrap();
    let before = node.leaf();
    let (addr, _) = server(node.server_config(ClientAuth::Optional)).await;
    let agent = Tls::load(&ca.files("agent", LeafKind::Agent("a".into()))).unwrap();
    let fresh_client = || client(&agent, PeerRole::Node);
    who(&fresh_client(), addr).await.unwrap();

    // The same node, a new certificate: in force at once, the served one changes.
    let renewed = issue(
        &ca.ca.cert_pem,
        &ca.ca.key_pem,
        &LeafSpec::for_days(LeafKind::Node(1), vec!["127.0.0.1".into()], 60),
    )
    .unwrap();
    replace_pair(ca.dir.path(), "node1", &renewed);
    let after = node.reload().unwrap();
    assert_ne!(after.fingerprint, before.fingerprint);
    let res = fresh_client()
        .get(format!("https://{addr}/who"))
        .send()
        .await
        .unwrap();
    let served = res
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(|d| CertInfo::parse(d).unwrap().fingerprint);
    assert_eq!(served, Some(after.fingerprint));

    // Another identity in the same files: refused, the old one stays.
    let other = issue(
        &ca.ca.cert_pem,
        &ca.ca.key_pem,
        &LeafSpec::for_days(LeafKind::Node(2), vec!["127.0.0.1".into()], 60),
    )
    .unwrap();
    replace_pair(ca.dir.path(), "node1", &other);
    let err = node.reload().unwrap_err().0;
    assert!(err.contains("cannot change who this process is"), "{err}");
    assert_eq!(node.leaf().fingerprint, after.fingerprint);

    // A broken file: refused, the old one stays.
    std::fs::write(&files.cert_file, "garbage").unwrap();
    assert!(node.reload().is_err());
    assert_eq!(node.leaf().fingerprint, after.fingerprint);
    who(&fresh_client(), addr).await.unwrap();
}

#[test]
fn an_expired_certificate_or_an_open_key_file_is_refused_at_load() {
    let ca = Ca::new();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expired = issue(
        &ca.ca.cert_pem,
        &ca.ca.key_pem,
        &LeafSpec {
            kind: LeafKind::Node(1),
            hosts: vec!["127.0.0.1".into()],
            not_before: now - 7200,
            not_after: now - 60,
        },
    )
    .unwrap();
    let pair = write_pair(ca.dir.path(), "old", &expired).unwrap();
    let files = TlsFiles {
        ca_file: ca.ca_file(),
        cert_file: pair.cert,
        key_file: pair.key.clone(),
    };
    let err = Tls::load(&files).unwrap_err().0;
    assert!(err.contains("outside its validity"), "{err}");

    let files = ca.files("node1", LeafKind::Node(1));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&files.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Tls::load(&files).unwrap_err().0;
    assert!(err.contains("chmod 600"), "{err}");
}

#[tokio::test]
async fn an_allowlist_takes_listed_fingerprints_and_its_ca_and_nobody_else() {
    let ca = Ca::new();
    let clients_ca = Ca::new();
    let stranger_ca = Ca::new();
    let agent = Tls::load(&ca.files("agent", LeafKind::Agent("a".into()))).unwrap();
    // A validator client with a certificate of a CA nobody configured, listed by fingerprint.
    let listed_files = stranger_ca.files("vc1", LeafKind::Client);
    let listed = Tls::load(&listed_files).unwrap();
    let unlisted = stranger_ca.files("vc2", LeafKind::Client);
    let by_ca = clients_ca.files("vc3", LeafKind::Client);
    let known = ca.dir.path().join("known_clients.txt");
    std::fs::write(
        &known,
        format!(
            "# validator clients\nlighthouse {}\n",
            listed.leaf().fingerprint_hex().to_uppercase()
        ),
    )
    .unwrap();
    let list = allowlist::AllowList::load(&allowlist::AllowListFiles {
        client_ca_file: Some(clients_ca.ca_file()),
        known_clients_file: Some(known.clone()),
    })
    .unwrap();
    assert_eq!(list.known_clients(), vec!["lighthouse".to_string()]);
    let (addr, _) = server(agent.server_config(ClientAuth::Verifier(list.clone()))).await;
    // Each client trusts the agent's CA for the server side, beside its own.
    let dial = |files: &TlsFiles| {
        let both = files.cert_file.with_extension("cas.pem");
        let pem = |f: &std::path::Path| std::fs::read_to_string(f).unwrap();
        std::fs::write(&both, pem(&ca.ca_file()) + &pem(&files.ca_file)).unwrap();
        let pair = (files.cert_file.as_path(), files.key_file.as_path());
        tool_client(Some(&both), Some(pair), PeerRole::Any)
            .unwrap()
            .build()
            .unwrap()
    };
    assert_eq!(who(&dial(&listed_files), addr).await.unwrap(), "anonymous");
    assert_eq!(who(&dial(&by_ca), addr).await.unwrap(), "anonymous");
    assert!(who(&dial(&unlisted), addr).await.is_err());
    let anon = reqwest::Client::builder()
        .use_preconfigured_tls(ca_only_client_config(&ca.ca_file(), PeerRole::Any).unwrap())
        .build()
        .unwrap();
    assert!(who(&anon, addr).await.is_err());

    // Emptied list: the listed client is out from the next handshake on.
    std::fs::write(&known, "").unwrap();
    list.reload().unwrap();
    assert!(who(&dial(&listed_files), addr).await.is_err());
    // A malformed file keeps the old list and names the line.
    std::fs::write(&known, "one-field\n").unwrap();
    let err = list.reload().unwrap_err().0;
    assert!(err.contains("line 1"), "{err}");
}
