//! Network faults without privileges: one in-process TCP proxy per directed link.
//!
//! Every link `from → to` (a coordinator dialling a peer, an agent dialling a coordinator)
//! listens on `127.0.0.1:0` and forwards to its target. The process that dials is configured
//! with the proxy's URL instead of the target's, so every byte it sends on that link, and
//! every answer it gets back, passes through the proxy. A shared [`Netem`] handle sets the
//! [`LinkMode`] of any set of links at any time:
//! - [`LinkMode::Pass`]: forward untouched;
//! - [`LinkMode::Partition`]: new connections are accepted and closed at once, and every
//!   existing connection of the link is cut (both sockets closed);
//! - [`LinkMode::Drop`]: one-way loss for request/response traffic: a seeded fraction `prob`
//!   of new connections is black-holed (accepted, read, never forwarded nor answered), and
//!   each chunk the dialler sends on an open connection cuts that connection with probability
//!   `prob` instead of being forwarded. Answers (target → dialler) are never dropped, so loss
//!   is in the link's direction only;
//! - [`LinkMode::Delay`]: every chunk, in both directions of the link's connections, is held
//!   for `base_ms + uniform[0, jitter_ms]` before it is written, in order.
//!
//! Invariants:
//! - randomness comes only from a per-link `StdRng` seeded from the [`Netem`] seed and the
//!   link's name, so a seed fixes the sequence of loss and delay decisions of each link;
//! - a mode change applies to connections already open (a partition cuts them) as well as to
//!   new ones;
//! - dropping the [`Netem`] stops every listener and cuts every connection.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a link does to its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum LinkMode {
    /// Forward untouched.
    Pass,
    /// Refuse new connections and cut existing ones.
    Partition,
    /// One-way loss: black-hole or cut a fraction `prob` (0..=1) of the dialler's traffic.
    Drop {
        /// Probability per new connection and per forwarded chunk.
        prob: f64,
    },
    /// Hold every chunk `base_ms + uniform[0, jitter_ms]` milliseconds.
    Delay {
        /// Fixed part of the delay (ms).
        base_ms: u64,
        /// Upper bound of the random part (ms).
        jitter_ms: u64,
    },
}

/// What kind of traffic a link carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// Raft RPC and forwarded writes, coordinator to coordinator.
    Raft,
    /// Agent to coordinator (records, heartbeats, registration).
    Agent,
}

/// One directed link, as described to the drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    /// Unique name, e.g. `raft 1->2` or `agent-eu->3`.
    pub name: String,
    /// Traffic carried.
    pub kind: LinkKind,
    /// Region of the dialler.
    pub from_region: String,
    /// Region of the target.
    pub to_region: String,
    /// The proxy's URL (what the dialler is configured with).
    pub url: String,
    /// The real target address.
    pub target: SocketAddr,
}

struct LinkState {
    info: LinkInfo,
    mode: watch::Sender<LinkMode>,
    rng: Mutex<StdRng>,
}

impl LinkState {
    fn chance(&self, prob: f64) -> bool {
        self.rng.lock().expect("netem rng lock").gen::<f64>() < prob
    }

    fn delay(&self, base_ms: u64, jitter_ms: u64) -> Duration {
        let j = if jitter_ms == 0 {
            0
        } else {
            self.rng
                .lock()
                .expect("netem rng lock")
                .gen_range(0..=jitter_ms)
        };
        Duration::from_millis(base_ms + j)
    }
}

/// The proxies of a drill and their control handle.
pub struct Netem {
    seed: u64,
    /// Address the proxies listen on (127.0.0.1, or the bridge address of a netns lab).
    bind: std::net::IpAddr,
    links: Vec<Arc<LinkState>>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Netem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netem")
            .field("seed", &self.seed)
            .field("links", &self.links().len())
            .finish()
    }
}

/// Splits `http://IP:PORT` or `https://IP:PORT` (a trailing `/` allowed) into its scheme and
/// socket address.
///
/// Errors: another shape.
pub fn split_url(url: &str) -> Result<(&str, SocketAddr)> {
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| matches!(*s, "http" | "https"))
        .with_context(|| format!("{url} is not an http:// or https:// URL"))?;
    let addr = rest
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("{url} is not SCHEME://IP:PORT"))?;
    Ok((scheme, addr))
}

impl Netem {
    /// An empty set of links whose randomness derives from `seed`.
    pub fn new(seed: u64) -> Self {
        Self::bound_to(seed, std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// An empty set whose proxies listen on `bind` (the bridge address of a lab whose
    /// regions are network namespaces, so every region can reach them).
    pub fn bound_to(seed: u64, bind: std::net::IpAddr) -> Self {
        Self {
            seed,
            bind,
            links: Vec::new(),
            tasks: Vec::new(),
            shutdown: watch::channel(false).0,
        }
    }

    /// Starts a proxy for a new link to the server at `target_url` (`http://IP:PORT` or
    /// `https://IP:PORT`) and returns the proxy's URL with the same scheme
    /// (`https://127.0.0.1:P`). The proxy moves bytes, so TLS runs end to end through it, and
    /// the certificate a client sees is the server's.
    ///
    /// Errors: the URL is not `SCHEME://IP:PORT`, or the listener cannot be bound.
    pub async fn add_link(
        &mut self,
        name: &str,
        kind: LinkKind,
        from_region: &str,
        to_region: &str,
        target_url: &str,
    ) -> Result<String> {
        let (scheme, target) = split_url(target_url)?;
        let listener = TcpListener::bind((self.bind, 0))
            .await
            .with_context(|| format!("bind a netem proxy on {}", self.bind))?;
        let url = format!(
            "{scheme}://{}",
            listener.local_addr().context("read the proxy address")?
        );
        let mut h = DefaultHasher::new();
        name.hash(&mut h);
        let link = Arc::new(LinkState {
            info: LinkInfo {
                name: name.to_string(),
                kind,
                from_region: from_region.to_string(),
                to_region: to_region.to_string(),
                url: url.clone(),
                target,
            },
            mode: watch::channel(LinkMode::Pass).0,
            rng: Mutex::new(StdRng::seed_from_u64(self.seed ^ h.finish())),
        });
        self.links.push(link.clone());
        let shutdown = self.shutdown.subscribe();
        self.tasks
            .push(tokio::spawn(accept_loop(listener, link, shutdown)));
        Ok(url)
    }

    /// Every link, in creation order.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.links.iter().map(|l| l.info.clone()).collect()
    }

    /// Sets `mode` on every link for which `select` is true; returns how many.
    pub fn set(&self, select: impl Fn(&LinkInfo) -> bool, mode: LinkMode) -> usize {
        let mut n = 0;
        for l in self.links.iter().filter(|l| select(&l.info)) {
            l.mode.send_replace(mode);
            n += 1;
        }
        n
    }

    /// Names of the links for which `select` is true.
    pub fn select(&self, select: impl Fn(&LinkInfo) -> bool) -> Vec<String> {
        self.links
            .iter()
            .filter(|l| select(&l.info))
            .map(|l| l.info.name.clone())
            .collect()
    }

    /// Sets `mode` on the links named in `names`; returns how many exist.
    pub fn set_named(&self, names: &[String], mode: LinkMode) -> usize {
        self.set(|l| names.contains(&l.name), mode)
    }

    /// The current mode of link `name`.
    pub fn mode(&self, name: &str) -> Option<LinkMode> {
        self.links
            .iter()
            .find(|l| l.info.name == name)
            .map(|l| *l.mode.borrow())
    }

    /// Partitions every link to or from `region`; returns how many.
    pub fn partition_region(&self, region: &str) -> usize {
        self.set(
            |l| l.from_region == region || l.to_region == region,
            LinkMode::Partition,
        )
    }

    /// Sets every link back to [`LinkMode::Pass`].
    pub fn heal_all(&self) {
        self.set(|_| true, LinkMode::Pass);
    }
}

impl Drop for Netem {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, link: Arc<LinkState>, shutdown: watch::Receiver<bool>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let mode = *link.mode.borrow();
        match mode {
            LinkMode::Partition => drop(client),
            LinkMode::Drop { prob } if link.chance(prob) => {
                tokio::spawn(blackhole(client, link.clone(), shutdown.clone()));
            }
            _ => {
                tokio::spawn(forward(client, link.clone(), shutdown.clone()));
            }
        }
    }
}

/// Reads and discards until the dialler gives up, the link is partitioned or netem stops.
async fn blackhole(
    mut client: TcpStream,
    link: Arc<LinkState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut mode = link.mode.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = client.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
            _ = mode.changed() => if *mode.borrow() == LinkMode::Partition { return },
            _ = shutdown.changed() => return,
        }
    }
}

async fn forward(client: TcpStream, link: Arc<LinkState>, shutdown: watch::Receiver<bool>) {
    let Ok(server) = TcpStream::connect(link.info.target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let (cut_tx, cut_rx) = watch::channel(false);
    let cut_tx = Arc::new(cut_tx);
    let up = tokio::spawn(pump(
        cr,
        sw,
        link.clone(),
        true,
        cut_tx.clone(),
        cut_rx.clone(),
        shutdown.clone(),
    ));
    let down = tokio::spawn(pump(sr, cw, link, false, cut_tx, cut_rx, shutdown));
    let _ = up.await;
    let _ = down.await;
}

/// Copies one direction of a connection, applying the link's mode to every chunk. `upstream`
/// is the dialler → target direction (the only one loss applies to). Delayed chunks are
/// pipelined: each is written at its own `read time + delay` (never before the previous
/// chunk), so a delay adds latency without limiting throughput.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    link: Arc<LinkState>,
    upstream: bool,
    cut_tx: Arc<watch::Sender<bool>>,
    cut: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let mut writer_cut = cut.clone();
    // Keeps the cut channel open while this writer flushes, so a closed channel never reads
    // as a cut.
    let keep_open = cut_tx.clone();
    let writer = async move {
        let _keep_open = keep_open;
        loop {
            let item = tokio::select! {
                item = rx.recv() => item,
                _ = writer_cut.changed() => return,
            };
            let Some((at, data)) = item else { break };
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = writer_cut.changed() => return,
            }
            if w.write_all(&data).await.is_err() {
                return;
            }
        }
        // Half-close: pass the end of stream on, let the other direction finish.
        let _ = w.shutdown().await;
    };
    let mut reader_cut = cut;
    let reader = async move {
        let mut mode_rx = link.mode.subscribe();
        let mut buf = vec![0u8; 64 * 1024];
        let mut last = tokio::time::Instant::now();
        loop {
            let n = tokio::select! {
                r = r.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                _ = mode_rx.changed() => {
                    if *mode_rx.borrow() == LinkMode::Partition {
                        cut_tx.send_replace(true);
                        return;
                    }
                    continue;
                }
                _ = reader_cut.changed() => return,
                _ = shutdown.changed() => {
                    cut_tx.send_replace(true);
                    return;
                }
            };
            let mode = *link.mode.borrow();
            let now = tokio::time::Instant::now();
            let at = match mode {
                LinkMode::Partition => {
                    cut_tx.send_replace(true);
                    return;
                }
                LinkMode::Drop { prob } if upstream && link.chance(prob) => {
                    cut_tx.send_replace(true);
                    return;
                }
                LinkMode::Delay { base_ms, jitter_ms } => now + link.delay(base_ms, jitter_ms),
                _ => now,
            };
            last = last.max(at);
            if tx.send((last, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An echo server on loopback; returns its address.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    fn addr_of(url: &str) -> SocketAddr {
        url.trim_start_matches("http://").parse().unwrap()
    }

    /// Sends `msg` and waits up to 1 s for the echo; `None` on close, error or timeout.
    async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> Option<Vec<u8>> {
        s.write_all(msg).await.ok()?;
        let mut buf = vec![0u8; msg.len()];
        match tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf),
            _ => None,
        }
    }

    async fn setup(seed: u64) -> (Netem, SocketAddr) {
        let target = echo().await;
        let mut n = Netem::new(seed);
        let url = n
            .add_link(
                "a->b",
                LinkKind::Raft,
                "eu",
                "us",
                &format!("http://{target}"),
            )
            .await
            .unwrap();
        (n, addr_of(&url))
    }

    #[tokio::test]
    async fn pass_forwards_both_ways() {
        let (_n, proxy) = setup(1).await;
        let mut s = TcpStream::connect(proxy).await.unwrap();
        assert_eq!(
            roundtrip(&mut s, b"hello").await.as_deref(),
            Some(&b"hello"[..])
        );
    }

    #[tokio::test]
    async fn partition_cuts_open_connections_and_refuses_new_ones_until_healed() {
        let (n, proxy) = setup(2).await;
        let mut s = TcpStream::connect(proxy).await.unwrap();
        assert!(roundtrip(&mut s, b"before").await.is_some());
        assert_eq!(n.partition_region("us"), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            roundtrip(&mut s, b"during").await.is_none(),
            "open connection must be cut"
        );
        let mut s2 = TcpStream::connect(proxy).await.unwrap();
        assert!(
            roundtrip(&mut s2, b"new").await.is_none(),
            "new connection must not pass"
        );
        n.heal_all();
        let mut s3 = TcpStream::connect(proxy).await.unwrap();
        assert!(roundtrip(&mut s3, b"healed").await.is_some());
    }

    #[tokio::test]
    async fn partition_of_another_region_leaves_the_link_alone() {
        let (n, proxy) = setup(3).await;
        assert_eq!(n.partition_region("ap"), 0);
        let mut s = TcpStream::connect(proxy).await.unwrap();
        assert!(roundtrip(&mut s, b"x").await.is_some());
    }

    #[tokio::test]
    async fn delay_holds_each_chunk_within_bounds() {
        let (n, proxy) = setup(4).await;
        n.set(
            |_| true,
            LinkMode::Delay {
                base_ms: 60,
                jitter_ms: 40,
            },
        );
        let mut s = TcpStream::connect(proxy).await.unwrap();
        let t = Instant::now();
        assert!(roundtrip(&mut s, b"slow").await.is_some());
        let rtt = t.elapsed();
        // Held once each way: 2 × [60, 100] ms.
        assert!(rtt >= Duration::from_millis(120), "{rtt:?}");
        assert!(rtt < Duration::from_millis(600), "{rtt:?}");
    }

    /// Outcomes of 40 fresh connections under `Drop { prob: 0.5 }`.
    async fn loss_pattern(seed: u64) -> Vec<bool> {
        let (n, proxy) = setup(seed).await;
        n.set(|_| true, LinkMode::Drop { prob: 0.5 });
        let mut out = Vec::new();
        for _ in 0..40 {
            let mut s = TcpStream::connect(proxy).await.unwrap();
            let ok = tokio::time::timeout(Duration::from_millis(300), async {
                s.write_all(b"p").await.ok()?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await.ok()
            })
            .await
            .ok()
            .flatten()
            .is_some();
            out.push(ok);
        }
        out
    }

    #[tokio::test]
    async fn loss_is_seeded_and_partial() {
        let a = loss_pattern(7).await;
        let b = loss_pattern(7).await;
        assert_eq!(a, b, "the same seed must drop the same connections");
        let passed = a.iter().filter(|x| **x).count();
        assert!(
            passed > 0 && passed < a.len(),
            "passed {passed} of {}",
            a.len()
        );
        assert_ne!(a, loss_pattern(8).await, "another seed, another pattern");
    }
}
