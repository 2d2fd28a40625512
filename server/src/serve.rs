//! The HTTP server loop: the router over hyper, with the connection limits
//! `axum::serve` has no setting for.
//!
//! - a header timeout: a connection that does not send a request's headers
//!   within it (from its opening, or from the end of the previous response on
//!   a kept-alive connection) is closed, so silent or trickling clients
//!   cannot hold sockets open for ever;
//! - a cap on the connections one IP address holds open, HTTP and WebSocket
//!   alike (an upgraded WebSocket keeps its place until it closes), so one
//!   client cannot use up the process's file descriptors.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Limits on each client connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Time to send a request's headers; also the keep-alive idle time.
    pub header_timeout: Duration,
    /// Open connections per client IP address; 0 = unlimited.
    pub max_per_ip: usize,
}

/// What a connection over the per-IP cap reads before it is closed. Written
/// at once, without reading the request: the place it would take is not there.
const OVER_CAP_RESPONSE: &str = concat!(
    "HTTP/1.1 429 Too Many Requests\r\n",
    "Content-Type: application/json\r\n",
    "Retry-After: 1\r\n",
    "Connection: close\r\n",
    "Content-Length: 153\r\n",
    "\r\n",
    r#"{"error":{"code":"too_many_connections","message":"unable to open a connection; this address already holds the most open connections the server allows"}}"#,
);

/// Open connections by client address.
#[derive(Clone, Default)]
struct PerIp {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    /// A place for one more connection from `ip`, or `None` at the cap.
    fn admit(&self, ip: IpAddr, max: usize) -> Option<IpPlace> {
        // IPv4 clients of an IPv6 socket are one address, however written.
        let ip = ip.to_canonical();
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(ip).or_insert(0);
        if max != 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(IpPlace {
            per_ip: self.clone(),
            ip,
        })
    }
}

/// One connection's place in [`PerIp`], given back on drop.
struct IpPlace {
    per_ip: PerIp,
    ip: IpAddr,
}

impl Drop for IpPlace {
    fn drop(&mut self) {
        let mut open = self
            .per_ip
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A TCP stream that holds its place in [`PerIp`] for as long as it lives:
/// through hyper, and through the WebSocket it may be upgraded to.
struct Counted {
    stream: TcpStream,
    _place: IpPlace,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish and returns once every HTTP
/// connection is closed (upgraded WebSockets are the broker's to close).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let per_ip = PerIp::default();
    let (stopping_tx, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Finished connections leave the set here, so it does not grow.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors (or memory): the waiting clients
                    // stay in the backlog; try again once some have closed.
                    if !is_per_connection_error(&err) {
                        eprintln!("domvia-server: unable to accept a connection; {err}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    continue;
                }
            },
        };
        let Some(place) = per_ip.admit(peer.ip(), limits.max_per_ip) else {
            // A fresh socket's send buffer is empty, so this does not block;
            // if it cannot be written the client only sees the close.
            stream.try_write(OVER_CAP_RESPONSE.as_bytes()).ok();
            continue;
        };
        // Realtime frames are small and latency-bound: without TCP_NODELAY,
        // Nagle's algorithm meets the peer's delayed ACK and holds frames for
        // ~40 ms. A socket that refuses it still works, only slower.
        stream.set_nodelay(true).ok();
        let io = TokioIo::new(Counted {
            stream,
            _place: place,
        });
        // The peer address, for the backend's per-IP rate limits (what
        // axum's `into_make_service_with_connect_info` would provide).
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let connection = builder.serve_connection(io, service).with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                // Errors are the client's (a reset, a timeout, a bad request):
                // hyper has answered what could be answered.
                served = connection.as_mut() => {
                    served.ok();
                    return;
                }
                _ = stopping.wait_for(|stopping| *stopping) => {}
            }
            connection.as_mut().graceful_shutdown();
            connection.await.ok();
        });
    }
    drop(listener);
    // No receiver left only means no connection is open.
    stopping_tx.send(true).ok();
    while connections.join_next().await.is_some() {}
}

/// Errors that concern one incoming connection (it was reset before it was
/// accepted), not the listener.
fn is_per_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_over_cap_response_has_its_length() {
        let (_, body) = OVER_CAP_RESPONSE.split_once("\r\n\r\n").unwrap();
        assert!(OVER_CAP_RESPONSE.contains(&format!("Content-Length: {}\r\n", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "too_many_connections");
    }

    #[test]
    fn places_per_ip_are_counted_and_given_back() {
        let per_ip = PerIp::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = per_ip.admit(a, 2).unwrap();
        let _second = per_ip.admit(mapped, 2).unwrap();
        assert!(per_ip.admit(a, 2).is_none());
        assert!(per_ip.admit(b, 2).is_some());
        drop(first);
        assert!(per_ip.admit(a, 2).is_some());
        // 0 = unlimited.
        let many: Vec<IpPlace> = (0..1000).filter_map(|_| per_ip.admit(b, 0)).collect();
        assert_eq!(many.len(), 1000);
        drop(many);
        assert!(per_ip.open.lock().unwrap().get(&b).is_none());
    }
}
