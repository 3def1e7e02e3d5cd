//! The HTTP(S) server loop: a connection cap, timeouts for slow and idle clients, accept errors
//! that back off instead of ending the loop, and a graceful drain.
//!
//! Why our own loop: `axum::serve` has no header-read timeout, idle timeout or connection cap,
//! and a stranger who opens connections faster than they close must not be able to starve the
//! clients that behave.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Connection-level limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time to complete a request head (and a TLS handshake; and the longest wait for the
    /// next request on a kept-alive connection).
    pub header: Duration,
    /// Time with no bytes moving and no request in progress before a connection is closed.
    pub idle: Duration,
    /// Most connections at once.
    pub max_connections: usize,
    /// Longest a drain waits for in-flight requests at shutdown.
    pub drain: Duration,
}

impl Limits {
    /// From the service configuration; a cap of 0 is derived from the open-file limit (leaving
    /// room for the database, logs and the listener).
    pub fn of(c: &crate::Config) -> Self {
        let max_connections = if c.max_connections > 0 {
            c.max_connections
        } else {
            let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .unwrap_or(u64::MAX);
            usize::try_from(soft.saturating_sub(64).clamp(16, 16_384)).unwrap_or(16_384)
        };
        Self {
            header: Duration::from_secs(c.header_timeout_secs),
            idle: Duration::from_secs(c.idle_timeout_secs),
            max_connections,
            drain: Duration::from_secs(c.request_timeout_secs),
        }
    }
}

/// True for accept errors that mean "out of file descriptors or memory for now".
fn resource_exhausted(e: &std::io::Error) -> bool {
    // EMFILE, ENFILE, ENOMEM, ENOBUFS.
    matches!(e.raw_os_error(), Some(24 | 23 | 12 | 105))
}

/// Serves `app` on `listener` (TLS when `tls` is given) until `shutdown` resolves, then stops
/// accepting and lets in-flight requests finish (up to `limits.drain`).
pub async fn run(
    app: Router,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tracing::info!(
        max_connections = limits.max_connections,
        header_timeout_s = limits.header.as_secs(),
        idle_timeout_s = limits.idle.as_secs(),
        "accepting connections"
    );
    tokio::pin!(shutdown);
    loop {
        // Past the cap, new connections wait in the kernel's backlog rather than take a file
        // descriptor the database or a well-behaved client needs.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) if resource_exhausted(&e) => {
                    tracing::warn!(error = %e, "accept: out of resources; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let activity = Arc::new(Activity::new());
            let io = Watched {
                inner: stream,
                activity: activity.clone(),
            };
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(limits.header, acceptor.accept(io)).await
                    else {
                        return;
                    };
                    // A client certificate here passed the device verifier.
                    let cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| crate::mtls::PeerCertificate(c.to_vec()));
                    connection(app, tls, peer, cert, limits, activity, watcher).await;
                }
                None => connection(app, io, peer, None, limits, activity, watcher).await,
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain) => {
            tracing::warn!("drain timed out; closing the remaining connections");
        }
    }
    Ok(())
}

async fn connection<I>(
    app: Router,
    io: I,
    peer: SocketAddr,
    cert: Option<crate::mtls::PeerCertificate>,
    limits: Limits,
    activity: Arc<Activity>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let busy = activity.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            if let Some(c) = &cert {
                req.extensions_mut().insert(c.clone());
            }
            let app = app.clone();
            let busy = busy.clone();
            async move {
                let _in_flight = busy.request();
                app.oneshot(req).await
            }
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .keep_alive(true);
    let conn = watcher.watch(builder.serve_connection(TokioIo::new(io), service));
    tokio::pin!(conn);
    let tick = (limits.idle / 4).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = &mut conn => return,
            () = tokio::time::sleep(tick) => {
                if activity.idle_for() >= limits.idle {
                    tracing::debug!(%peer, "closing idle connection");
                    return;
                }
            }
        }
    }
}

/// When bytes last moved on a connection, and how many requests are in progress on it.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long nothing has happened (zero while a request is being handled).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A stream that records when bytes move.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
