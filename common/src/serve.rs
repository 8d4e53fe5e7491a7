//! One way to serve an axum router on a TCP listener with the limits every listener of this
//! project needs (DESIGN.md "Trust boundaries and hostile input", STYLE.md 14).
//!
//! `axum::serve` sets no timer, so a client that opens a connection and never finishes its
//! request headers holds the connection, and a task, for ever; enough of them exhaust the
//! process's file descriptors. [`serve`] runs each connection with hyper's HTTP/1 server and:
//! - a **request-header read timeout** ([`ListenerLimits::header_read_timeout`]): a
//!   connection that has not sent a complete request head in time is closed. hyper applies it
//!   to every request head, so a keep-alive connection that stays idle is closed after the
//!   same time;
//! - a **request timeout** ([`ListenerLimits::request_timeout`]): a request whose handler
//!   (body included) has not answered in time gets 408, so a body trickled byte by byte
//!   cannot hold a handler;
//! - a **connection cap** ([`ListenerLimits::max_connections`]): past it a new connection is
//!   closed at once, and existing ones keep being served, so a flood of connections cannot
//!   starve the clients already connected;
//! - the peer address as axum's `ConnectInfo<SocketAddr>` on every request (for per-source
//!   accounting), and graceful shutdown: on `shutdown`, no new connection is accepted and the
//!   open ones finish their current request.
//!
//! With a TLS config ([`crate::tls`]) every connection is TLS: the handshake must finish
//! within the header read timeout (a client that opens a connection and stalls the handshake
//! is cut like one that stalls its headers), a failed handshake only ends that connection and
//! is counted ([`ListenerStats::tls_handshake_failures`]), and every request carries the
//! connection's [`crate::tls::TlsConnection`] (the client certificate, when one was sent).
//!
//! Body limits are per route and belong to the router (`axum::extract::DefaultBodyLimit`).
//!
//! Invariant: every accepted connection holds one permit of the cap until it is closed, and
//! each connection is served in its own task, so one slow client never delays another.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Time a client has to send a complete request head, and the longest a keep-alive
    /// connection may stay idle between requests.
    pub header_read_timeout: Duration,
    /// Time a request has, from its head to the handler's answer (body reading included);
    /// past it the answer is 408.
    pub request_timeout: Duration,
    /// Connections served at once; further ones are closed when accepted.
    pub max_connections: usize,
}

impl Default for ListenerLimits {
    /// 10 s for headers, 30 s per request, 1,024 connections.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Counters of one listener, readable while it runs (for metrics and tests).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections closed at once because the cap was reached.
    pub refused_over_cap: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// TLS handshakes that failed or timed out (a client without an acceptable certificate,
    /// a plain-HTTP client on a TLS port, a stalled handshake).
    pub tls_handshake_failures: AtomicU64,
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then waits for the
/// open connections to finish their current request. `stats` is updated as connections come
/// and go. With `tls`, every connection is TLS with that config; without, plain HTTP.
///
/// Errors: none from clients (a failing connection or handshake only ends that connection);
/// accept errors (such as running out of file descriptors) are logged and retried after
/// 50 ms.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    stats: Arc<ListenerStats>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let app = app.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let cap = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = cap.clone().try_acquire_owned() else {
            stats.refused_over_cap.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "connection cap reached; closing the new connection");
            drop(stream);
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let app = app.clone();
        let watcher = graceful.watcher();
        let stats = stats.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => {
                    serve_connection(TokioIo::new(stream), app, None, limits, watcher, peer).await;
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                            .await;
                    match handshake {
                        Ok(Ok(tls)) => {
                            let peer_cert = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|der| crate::tls::CertInfo::parse(der).ok());
                            let info = crate::tls::TlsConnection { peer: peer_cert };
                            let io = TokioIo::new(tls);
                            serve_connection(io, app, Some(info), limits, watcher, peer).await;
                        }
                        Ok(Err(e)) => {
                            stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, "TLS handshake not finished in time");
                        }
                    }
                }
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Serves one connection with hyper's HTTP/1 server until it closes or graceful shutdown
/// ends it; every request carries the peer address (and the TLS facts, on TLS).
async fn serve_connection<I>(
    io: TokioIo<I>,
    app: Router,
    tls: Option<crate::tls::TlsConnection>,
    limits: ListenerLimits,
    watcher: hyper_util::server::graceful::Watcher,
    peer: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = app.map_request(move |mut req: axum::extract::Request| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(t) = &tls {
            req.extensions_mut().insert(t.clone());
        }
        req
    });
    let svc = TowerToHyperService::new(
        svc.map_request(|req: hyper::Request<hyper::body::Incoming>| {
            req.map(axum::body::Body::new)
        }),
    );
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(io, svc);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads until the server closes the connection (EOF or reset), or `within` passes.
    async fn closed_within(c: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        tokio::time::timeout(within, async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await
        .is_ok()
    }

    #[tokio::test]
    async fn half_open_and_idle_keep_alive_connections_are_closed_by_the_header_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let limits = ListenerLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ListenerLimits::default()
        };
        let stats = Arc::new(ListenerStats::default());
        tokio::spawn(serve(
            listener,
            app,
            limits,
            stats.clone(),
            None,
            std::future::pending(),
        ));

        // Never finishes its headers.
        let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // Sends one whole request, reads the answer, then stays idle on keep-alive.
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

        assert!(
            closed_within(&mut half, Duration::from_secs(3)).await,
            "half-open"
        );
        assert!(
            closed_within(&mut idle, Duration::from_secs(3)).await,
            "idle keep-alive"
        );
        assert_eq!(stats.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn past_the_connection_cap_a_new_connection_is_closed_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let limits = ListenerLimits {
            max_connections: 1,
            ..ListenerLimits::default()
        };
        let stats = Arc::new(ListenerStats::default());
        tokio::spawn(serve(
            listener,
            app,
            limits,
            stats.clone(),
            None,
            std::future::pending(),
        ));
        let _held = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut refused = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut refused, Duration::from_secs(2)).await);
        assert_eq!(stats.refused_over_cap.load(Ordering::SeqCst), 1);
    }
}
