//! [`serve`]: the accept loop, with the limits a server facing the internet needs.
//!
//! `axum::serve` has no header timeout, no cap on connections and retries a failing `accept` at
//! once: a thousand clients sending a header one byte every two seconds held a thousand descriptors
//! forever, and at the open-file limit new clients were refused. Here:
//!
//! - **Every request's headers** must arrive within [`Config::header_timeout`] of the connection being
//!   ready for them (hyper's header timeout), which also bounds how long a kept-alive connection idles.
//! - **A new connection** must deliver a whole Bayeux request (headers and body, or on a WebSocket its
//!   first bytes) within [`Config::idle_timeout`] of being accepted, however slowly it trickles bytes:
//!   until then it is *unproven*. Every request body must then be complete within `idle_timeout` of its
//!   headers (see `whole_request` in the router). A WebSocket that sends nothing for
//!   [`Config::inactivity`] (plus the advised interval) is closed: its client is removed by then anyway.
//! - **At most [`Config::max_connections`]** are served at once. At the cap, and when `accept` fails for
//!   want of descriptors (`EMFILE`), the oldest unproven connection is closed to make room, so slow
//!   connections cannot keep a working client out; with none to close, a new connection is answered
//!   `503` and closed, and a failing `accept` backs off (1 ms doubling to 1 s) instead of spinning.
//!
//! The deadlines live in the socket wrapper [`Guarded`], below hyper and the WebSocket, so they hold
//! whatever protocol runs on the connection; what a connection has proven lives in its [`Conn`], which
//! the router sees as a request extension.

use crate::{Config, Server};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// Serves `server` ([`crate::router`]) on `listener` until `shutdown` completes, with the header and
/// idle timeouts and the connection cap of its [`Config`] (see the module docs), `TCP_NODELAY` on every
/// connection (see [`crate::without_delay`]) and HTTP/1.1 with WebSocket upgrades.
///
/// After `shutdown`, no connection is accepted, held connects are answered at once
/// ([`Server::drain`]: their clients connect again, elsewhere), requests in progress finish and their
/// connections close, for at most [`Config::drain`], then the rest are dropped.
pub async fn serve(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let router = crate::router(server.clone());
    serve_with(listener, &server, router, shutdown).await
}

/// [`serve`] with the host's own `router`: [`crate::router`] of `server` merged with other routes (a
/// program that also serves its front end's scripts or pages), under the same limits.
pub async fn serve_with(
    listener: TcpListener,
    server: &Server,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let config = server.config().clone();
    let shared = Arc::new(Shared::default());
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let mut backoff = Backoff::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => {
                backoff.reset();
                tcp
            }
            Err(error) if out_of_descriptors(&error) => {
                // The pending connection waits in the kernel's backlog; make room and try again.
                let evicted = shared.evict_oldest_unproven();
                backoff.wait(&error, evicted, shared.live()).await;
                continue;
            }
            // The peer gave up before we took it (ECONNABORTED and the like): nothing to do.
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                continue;
            }
        };
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        if shared.live() >= config.max_connections && !shared.evict_oldest_unproven() {
            tokio::spawn(refuse(tcp, config.max_connections));
            continue;
        }
        let conn = Conn::new(&shared);
        tokio::spawn(run(
            tcp,
            conn,
            router.clone(),
            config.clone(),
            closing.clone(),
        ));
    }
    drop(listener);
    server.drain();
    let _ = closing_tx.send(true);
    let live = shared.live();
    if tokio::time::timeout(config.drain, shared.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = shared.live(),
            of = live,
            "drain time over; dropping the connections still open"
        );
    }
    Ok(())
}

/// One connection: hyper over the guarded socket, until it ends, is evicted, or the server closes.
async fn run(
    tcp: TcpStream,
    conn: Arc<Conn>,
    router: axum::Router,
    config: Config,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let io = TokioIo::new(Guarded::new(tcp, conn.clone(), &config));
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnHandle(conn.clone()));
            router.clone().oneshot(request.map(axum::body::Body::new))
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let mut graceful = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = conn.evicted.notified() => {
                tracing::debug!("closed an unproven connection to make room");
                return;
            }
            changed = closing.changed(), if !graceful => {
                if changed.is_ok() {
                    graceful = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Answers a connection over the cap, at once and in a bounded time, and closes it.
async fn refuse(mut tcp: TcpStream, max: usize) {
    let body = format!("too many connections: this server serves at most {max} at once\n");
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        tcp.write_all(reply.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

fn out_of_descriptors(error: &io::Error) -> bool {
    // EMFILE (this process) and ENFILE (the system); ENOBUFS and ENOMEM are the same want of kernel
    // resources. Everything else from accept is about one connection only.
    matches!(error.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// The accept loop's pause after running out of descriptors: 1 ms doubling to 1 s, logged at most
/// once a second.
#[derive(Default)]
struct Backoff {
    pause: Duration,
    logged: Option<Instant>,
}

impl Backoff {
    fn reset(&mut self) {
        self.pause = Duration::ZERO;
    }

    async fn wait(&mut self, error: &io::Error, evicted: bool, live: usize) {
        if evicted {
            // A descriptor is on its way back: retry almost at once.
            self.pause = Duration::from_millis(1);
        } else {
            self.pause = (self.pause * 2).clamp(Duration::from_millis(1), Duration::from_secs(1));
        }
        if self
            .logged
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            self.logged = Some(Instant::now());
            tracing::warn!(%error, connections = live, evicted, pause_ms = self.pause.as_millis() as u64,
                "accept failed for want of descriptors; backing off");
        }
        tokio::time::sleep(self.pause).await;
    }
}

/// The connections of one [`serve`] call.
#[derive(Default)]
struct Shared {
    live: AtomicUsize,
    next: AtomicU64,
    /// Unproven connections by accept order, the oldest first.
    unproven: Mutex<BTreeMap<u64, Weak<Conn>>>,
    closed: tokio::sync::Notify,
}

impl Shared {
    fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    fn unproven(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Weak<Conn>>> {
        self.unproven.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the oldest unproven connection; `false` if there is none.
    fn evict_oldest_unproven(&self) -> bool {
        let oldest = {
            let mut unproven = self.unproven();
            std::iter::from_fn(|| unproven.pop_first()).find_map(|(_, conn)| conn.upgrade())
        };
        match oldest {
            Some(conn) => {
                conn.mode.store(EVICTED, Ordering::Relaxed);
                conn.evicted.notify_one();
                true
            }
            None => false,
        }
    }

    async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            if self.live() == 0 {
                return;
            }
            closed.await;
        }
    }
}

const UNPROVEN: u8 = 0;
const PROVEN: u8 = 1;
const SOCKET: u8 = 2;
const EVICTED: u8 = 3;

/// What one connection has shown so far; counted as live until dropped.
pub(crate) struct Conn {
    seq: u64,
    mode: AtomicU8,
    evicted: tokio::sync::Notify,
    shared: Arc<Shared>,
}

impl Conn {
    fn new(shared: &Arc<Shared>) -> Arc<Conn> {
        shared.live.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            seq: shared.next.fetch_add(1, Ordering::Relaxed),
            mode: AtomicU8::new(UNPROVEN),
            evicted: tokio::sync::Notify::new(),
            shared: shared.clone(),
        });
        shared.unproven().insert(conn.seq, Arc::downgrade(&conn));
        conn
    }

    /// A whole Bayeux request arrived: the connection is no longer evictable or bound by its
    /// first-request deadline.
    pub(crate) fn prove(&self) {
        if self
            .mode
            .compare_exchange(UNPROVEN, PROVEN, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.shared.unproven().remove(&self.seq);
        }
    }

    /// The connection is becoming a WebSocket: from now on it is bound by the socket deadlines.
    pub(crate) fn upgrade(&self) {
        let mode = self.mode.load(Ordering::Relaxed);
        if mode == UNPROVEN || mode == PROVEN {
            self.mode.store(SOCKET, Ordering::Relaxed);
            self.shared.unproven().remove(&self.seq);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.unproven().remove(&self.seq);
        self.shared.live.fetch_sub(1, Ordering::Relaxed);
        self.shared.closed.notify_waiters();
    }
}

/// The request extension through which the router tells the connection what it has proven.
#[derive(Clone)]
pub(crate) struct ConnHandle(pub(crate) Arc<Conn>);

/// A TCP stream whose reads fail once its connection's deadline passes (see the module docs).
struct Guarded {
    tcp: TcpStream,
    conn: Arc<Conn>,
    /// The mode the deadline was last set for.
    armed_for: u8,
    deadline: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    socket_idle: Duration,
}

impl Guarded {
    fn new(tcp: TcpStream, conn: Arc<Conn>, config: &Config) -> Self {
        Guarded {
            tcp,
            conn,
            armed_for: UNPROVEN,
            deadline: Box::pin(tokio::time::sleep(config.idle_timeout)),
            idle_timeout: config.idle_timeout,
            socket_idle: config.inactivity + config.interval,
        }
    }

    /// Whether the connection's deadline has passed (registering the wake-up if not).
    fn expired(&mut self, cx: &mut Context<'_>, read_something: bool) -> bool {
        let mode = self.conn.mode.load(Ordering::Relaxed);
        match mode {
            PROVEN => return false,
            EVICTED => return true,
            SOCKET if self.armed_for != SOCKET => {
                // Just upgraded: the client's first frame is due within the idle timeout.
                self.armed_for = SOCKET;
                self.deadline
                    .as_mut()
                    .reset(Instant::now() + self.idle_timeout);
            }
            SOCKET if read_something => {
                // Reset at most once a second: a reset costs a timer-wheel update.
                let next = Instant::now() + self.socket_idle;
                if next > self.deadline.deadline() + Duration::from_secs(1) {
                    self.deadline.as_mut().reset(next);
                }
            }
            _ => {}
        }
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() > before;
                if this.expired(cx, read) && read {
                    // Bytes that came too late (or to an evicted connection) are not served.
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if this.expired(cx, false) => {
                Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
