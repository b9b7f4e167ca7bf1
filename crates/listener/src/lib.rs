//! `trustgate-listener`: the HTTP listener of `trustgate serve` and `trustgate gateway` —
//! trustgate's own accept loop on hyper, so that no client can hold a process's descriptors for
//! long or take all of them, with TLS when configured and the client's address as trusted
//! proxies tell it.
//!
//! - **Caps.** Every accepted connection takes a [`ConnectionPermit`] from [`ConnectionLimits`]:
//!   at most `max_connections` in all and `max_connections_per_ip` from one address (an IPv6
//!   /64 counts as one address: one host owns a whole /64). A connection over either cap is
//!   answered a fixed `503` with `Connection: close` if the socket takes it at once, and
//!   closed; it never waits in a queue holding a descriptor. Refusals are counted in
//!   `http_connections_refused_total{reason}` and logged at most once every 10 s. The permit is
//!   released when the connection's task ends however it ends (close, timeout, error, panic,
//!   shutdown), and an address's entry is removed when its count reaches zero. The gauge
//!   `http_connections_open` follows the open connections.
//! - **Timeouts.** Each connection has a watch that knows whether a request is in flight. With
//!   none, the connection must make progress: a request header complete within
//!   `header_read_timeout` of the accept (or of the first byte of a later request), and on a
//!   kept-alive connection a new request within `idle_timeout`. Otherwise it is closed
//!   (`http_connections_timed_out_total{phase}`). While a request is in flight the router's own
//!   request timeout applies instead. hyper's `header_read_timeout` is not used: its timer also
//!   runs while a kept-alive connection waits, so it cannot tell idle from slow.
//! - **Descriptor limit.** [`descriptor_limit`] raises the soft `RLIMIT_NOFILE` to the hard limit
//!   and [`effective_max_connections`] keeps the global cap below it, leaving room for the
//!   database pool, files and outgoing connections.
//! - **Accept errors** (`EMFILE`, `ENFILE`, `ENOBUFS`, ...) never end the loop: it backs off
//!   (100 ms doubling to 1 s) and continues; per-connection errors (`ECONNABORTED`) are skipped.
//! - **TLS** ([`tls`]). With a [`Transport`] that carries a TLS acceptor, the handshake must
//!   finish within the header-read budget of the accept; a failed one is counted in
//!   `http_tls_handshake_failures_total` and logged at debug (a scanner's garbage is not an
//!   incident). ALPN picks HTTP/2 (at most 100 concurrent streams per connection) or HTTP/1.1.
//!   HTTPS responses carry `Strict-Transport-Security` (also those a trusted proxy reports as
//!   HTTPS).
//! - **Mutual TLS** ([`mtls`]). A [`Transport::mutual`] listener requires a client certificate
//!   that chains to the configured CA bundles and is not revoked by the configured CRLs (both
//!   reloaded on change); a refused handshake is logged at info with the reason, and every
//!   request of an accepted connection carries the client's chain ([`mtls::PeerCertificates`]).
//! - **Upgrades.** HTTP/1.1 connections may switch protocols (the gateway passes WebSocket
//!   through); a connection that did is no longer watched for timeouts nor counted against the
//!   caps: its bytes belong to whoever took the upgrade.
//! - **Shutdown.** Stop accepting (the listening socket is closed), let in-flight requests finish
//!   within the grace period (idle and half-read connections are closed at once), then abort the
//!   rest: [`serve`] always returns.
//!
//! Handlers see `ConnectInfo<SocketAddr>` (the peer) and [`ClientAddress`] (the client, as the
//! trusted proxies tell it: `trustgate_core::net::TrustedProxies`), inserted into every request.

pub mod mtls;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use http::HeaderValue;
use http::header::{FORWARDED, STRICT_TRANSPORT_SECURITY};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt as _;
use trustgate_core::net::{ForwardedClient, TrustedProxies};

/// Descriptors kept free besides a database pool: standard streams, the listener, the
/// runtime's epoll and wakers, SQLite's database, WAL, shared-memory and lock files, the data
/// directory's files, and outgoing HTTP (back-channel logout, client JWKS, upstreams).
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// The answer to a connection over a cap: short enough to fit a fresh socket's send buffer in
/// one non-blocking write, so refusing never waits on the client.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
content-length: 77\r\n\
retry-after: 1\r\n\
connection: close\r\n\
\r\n\
{\"code\":\"connection_limit\",\"message\":\"too many connections; try again later\"}";

/// At most one log line per this interval for refusals and for accept errors.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Back-off after an accept error that is not the client's (descriptors, memory).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");

/// After the shutdown signal, a connection with no request in flight gets this long to flush
/// a response it just finished before it is closed.
const SHUTDOWN_LINGER: Duration = Duration::from_millis(200);

/// Most concurrent HTTP/2 streams on one connection.
const MAX_H2_STREAMS: u32 = 100;

/// What the listener speaks and whom it believes about the client.
#[derive(Clone, Default)]
pub struct Transport {
    /// TLS, when the listener terminates it.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `Strict-Transport-Security` for HTTPS responses.
    pub hsts: Option<HeaderValue>,
    /// Whose forwarding headers are believed.
    pub proxies: Arc<TrustedProxies>,
    /// The TLS acceptor requires client certificates this verifier accepts (mutual TLS): each
    /// request carries the client's chain as [`mtls::PeerCertificates`].
    pub clients: Option<Arc<mtls::ReloadingClientVerifier>>,
}

impl Transport {
    /// What a listener with `config` speaks: TLS with `certificate` (loaded from `config`) and
    /// its HSTS header, or plain HTTP; `proxies` believed about clients.
    pub fn new(
        certificate: Option<Arc<tls::ReloadingCertificate>>,
        config: &tls::TlsConfig,
        proxies: TrustedProxies,
    ) -> Result<Self, tls::TlsError> {
        Ok(Transport {
            tls: certificate.map(tls::acceptor).transpose()?,
            hsts: config
                .hsts()
                .and_then(|value| HeaderValue::try_from(value).ok()),
            proxies: Arc::new(proxies),
            clients: None,
        })
    }

    /// A mutual-TLS listener: TLS with `certificate`, requiring client certificates that
    /// `clients` accepts.
    pub fn mutual(
        certificate: Arc<tls::ReloadingCertificate>,
        clients: Arc<mtls::ReloadingClientVerifier>,
        config: &tls::TlsConfig,
        proxies: TrustedProxies,
    ) -> Result<Self, tls::TlsError> {
        Ok(Transport {
            tls: Some(tokio_rustls::TlsAcceptor::from(tls::mtls_server_config(
                certificate,
                Arc::clone(&clients),
            )?)),
            hsts: config
                .hsts()
                .and_then(|value| HeaderValue::try_from(value).ok()),
            proxies: Arc::new(proxies),
            clients: Some(clients),
        })
    }
}

/// Refuses plain HTTP on an address other than loopback unless a reverse proxy that terminates
/// TLS is declared in front: passwords and tokens would cross the network in clear text. The
/// message says what to do.
pub fn refuse_plain_http(
    listen: SocketAddr,
    tls: bool,
    proxy_declared: bool,
) -> Result<(), String> {
    if tls || proxy_declared || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "listen: plain HTTP on {listen} would carry passwords and tokens in clear text; give the \
         listener a certificate (tls.cert_file and tls.key_file, or --tls-cert and --tls-key), \
         listen on a loopback address, or declare the reverse proxy that terminates TLS in front \
         of it (trusted_proxies)"
    ))
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("tls", &self.tls.is_some())
            .field("hsts", &self.hsts)
            .field("proxies", &self.proxies)
            .field("mutual", &self.clients.is_some())
            .finish()
    }
}

/// The client of a request (request extension): its address and whether it used HTTPS, from
/// the connection or, behind a trusted proxy, from the proxy's forwarding headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub ForwardedClient);

/// The listener's effective settings (after clamping to the descriptor limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSettings {
    /// A request header must be complete within this.
    pub header_read_timeout: Duration,
    /// A kept-alive connection without a request is closed after this.
    pub idle_timeout: Duration,
    /// Most open connections in all.
    pub max_connections: usize,
    /// Most open connections from one address.
    pub max_connections_per_ip: usize,
}

impl ListenerSettings {
    /// These settings with the global cap clamped below `descriptor_limit` minus `reserved`
    /// descriptors (and the per-address cap to the global one).
    pub fn clamped(self, descriptor_limit: Option<u64>, reserved: u64) -> Self {
        let max_connections =
            effective_max_connections(self.max_connections, descriptor_limit, reserved);
        Self {
            max_connections,
            max_connections_per_ip: self.max_connections_per_ip.min(max_connections),
            ..self
        }
    }
}

/// The global cap that fits: `configured`, but no more than the descriptor limit less the
/// `reserved` ones, and never below 1 (a server that cannot take a connection is no server;
/// start-up warns when the limit is that tight).
pub fn effective_max_connections(
    configured: usize,
    descriptor_limit: Option<u64>,
    reserved: u64,
) -> usize {
    let Some(limit) = descriptor_limit else {
        return configured;
    };
    let available = usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    configured.min(available).max(1)
}

/// The process's file-descriptor limit (soft `RLIMIT_NOFILE`), first raised to the hard limit
/// where the system allows it. `None`: unlimited or unknown.
pub fn descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
            && current < maximum
        {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::debug!(error = %e, current, maximum, "cannot raise the descriptor limit");
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Which cap refused a connection (the metric's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `http.max_connections` connections are open.
    MaxConnections,
    /// `http.max_connections_per_ip` connections from this address are open.
    MaxConnectionsPerIp,
}

impl Refusal {
    /// The stable spelling (metric label, log field).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::MaxConnectionsPerIp => "max_connections_per_ip",
        }
    }
}

/// Open-connection accounting: in all and per client address.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl ConnectionLimits {
    /// Accounting with these caps.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_ip,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Nothing panics while holding the lock; if something did, the counts are still whole.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a connection from `ip`, or says which cap it would exceed.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let key = trustgate_core::net::client_network(ip);
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(Refusal::MaxConnections);
        }
        let from_ip = counts.per_ip.entry(key).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err(Refusal::MaxConnectionsPerIp);
        }
        *from_ip += 1;
        counts.total += 1;
        // Moved, not set: another listener in the process (tests, an mTLS one) shares the gauge.
        metrics::gauge!("http_connections_open").increment(1.0);
        Ok(ConnectionPermit {
            limits: Arc::clone(self),
            key,
        })
    }

    /// Open connections in all.
    pub fn open(&self) -> usize {
        self.counts().total
    }

    /// Addresses with at least one open connection (each has one entry, none has a zero one).
    pub fn addresses(&self) -> usize {
        self.counts().per_ip.len()
    }
}

/// One open connection in the accounting; dropping it releases it.
#[derive(Debug)]
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    key: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.limits.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(from_ip) = counts.per_ip.get_mut(&self.key) {
            *from_ip = from_ip.saturating_sub(1);
            if *from_ip == 0 {
                counts.per_ip.remove(&self.key);
            }
        }
        metrics::gauge!("http_connections_open").decrement(1.0);
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains as described in the
/// module documentation. Returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ListenerSettings,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) {
    let limits = ConnectionLimits::new(settings.max_connections, settings.max_connections_per_ip);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut refusals_log = LogThrottle::new(LOG_INTERVAL);
    let mut accept_errors_log = LogThrottle::new(LOG_INTERVAL);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reap finished connections so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    pair
                }
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    metrics::counter!("http_accept_errors_total").increment(1);
                    if let Some(suppressed) = accept_errors_log.allow() {
                        tracing::warn!(error = %e, suppressed, backoff_ms = backoff.as_millis() as u64, "cannot accept connections; backing off");
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
        };
        match limits.try_acquire(peer.ip()) {
            Ok(permit) => {
                // A response whose head and body are written apart must not wait for the
                // client's delayed ACK (Nagle).
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_connection(
                    stream,
                    peer,
                    app.clone(),
                    settings,
                    transport.clone(),
                    permit,
                    stop_rx.clone(),
                ));
            }
            Err(refusal) => {
                refuse(&stream);
                drop(stream);
                metrics::counter!("http_connections_refused_total", "reason" => refusal.as_str())
                    .increment(1);
                if let Some(suppressed) = refusals_log.allow() {
                    tracing::warn!(
                        reason = refusal.as_str(),
                        peer = %peer.ip(),
                        suppressed,
                        open = limits.open(),
                        "connection refused: limit reached"
                    );
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            open = connections.len(),
            "grace period over; closing remaining connections"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Errors that concern one connection (it went away before we took it), not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// One non-blocking write of the refusal; whatever the socket does not take is dropped.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(REFUSAL);
}

/// Lets a log line through at most once per interval and counts the ones held back.
#[derive(Debug)]
struct LogThrottle {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + self.interval) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// One connection: the TLS handshake if any, then hyper's HTTP/1.1 or HTTP/2 state machine,
/// watched for header-read and idle timeouts, and for shutdown.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    settings: ListenerSettings,
    transport: Transport,
    permit: ConnectionPermit,
    mut stop: watch::Receiver<bool>,
) {
    // Released when this task ends, aborted or not.
    let _permit = permit;
    let watch = Arc::new(ConnectionWatch::new(settings));
    let service = |tls: bool, certificates: Option<mtls::PeerCertificates>| ConnectionService {
        app,
        peer,
        tls,
        hsts: transport.hsts.clone(),
        proxies: Arc::clone(&transport.proxies),
        watch: Arc::clone(&watch),
        certificates,
    };
    let Some(acceptor) = &transport.tls else {
        let io = WatchedIo {
            inner: stream,
            watch: Arc::clone(&watch),
        };
        return drive(io, false, service(false, None), &watch, stop, peer).await;
    };
    // The handshake spends the header-read budget of the accept.
    let handshake = tokio::select! {
        result = acceptor.accept(stream) => result,
        () = sleep_until(watch.deadline()) => Err(io::Error::new(io::ErrorKind::TimedOut, "handshake timed out")),
        _ = stop.changed() => return,
    };
    let stream = match handshake {
        Ok(stream) => stream,
        Err(e) => {
            metrics::counter!("http_tls_handshake_failures_total").increment(1);
            if transport.clients.is_some() {
                // Who was refused, and why (no certificate, expired, unknown CA, revoked):
                // operators of mutual TLS need to see it.
                tracing::info!(error = %e, %peer, "mutual TLS handshake refused");
            } else {
                tracing::debug!(error = %e, %peer, "TLS handshake failed");
            }
            return;
        }
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(tls::ALPN_H2);
    let certificates = match (&transport.clients, stream.get_ref().1.peer_certificates()) {
        (Some(clients), Some(chain)) if !chain.is_empty() => Some(mtls::PeerCertificates {
            trusted: clients.trusts(chain),
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
        }),
        _ => None,
    };
    let io = WatchedIo {
        inner: stream,
        watch: Arc::clone(&watch),
    };
    drive(io, h2, service(true, certificates), &watch, stop, peer).await;
}

/// Serves requests on an established connection until it ends, times out or is drained.
async fn drive<S>(
    io: WatchedIo<S>,
    h2: bool,
    service: ConnectionService,
    watch: &Arc<ConnectionWatch>,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if h2 {
        builder = builder.http2_only();
        builder.http2().max_concurrent_streams(MAX_H2_STREAMS);
    } else {
        builder = builder.http1_only();
        builder.http1().keep_alive(true);
    }
    // An upgraded connection (101) leaves this loop: its bytes belong to whoever took the
    // upgrade, and the connection's permit is returned.
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        let deadline = watch.deadline();
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            () = watch.changed() => {}
            () = sleep_until(deadline) => {
                if let Some(phase) = watch.expired(Instant::now()) {
                    if !stopping {
                        metrics::counter!("http_connections_timed_out_total", "phase" => phase.as_str())
                            .increment(1);
                        tracing::debug!(%peer, phase = phase.as_str(), "connection timed out");
                    }
                    return;
                }
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                    watch.close_soon(Instant::now() + SHUTDOWN_LINGER);
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What a connection without a request in flight is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// A request header (or its rest): `http.header_read_timeout_secs`.
    Header,
    /// A new request on a kept-alive connection: `http.idle_timeout_secs`.
    Idle,
}

impl Waiting {
    fn as_str(self) -> &'static str {
        match self {
            Self::Header => "header_read",
            Self::Idle => "idle",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in flight; closed at `deadline`.
    Waiting { on: Waiting, deadline: Instant },
    /// Requests in flight (hyper serves one at a time; more only for a moment around the
    /// hand-over): the router's request timeout applies.
    Busy { requests: usize },
}

/// Where a connection is in its life, updated by its reads and its requests.
#[derive(Debug)]
struct ConnectionWatch {
    settings: ListenerSettings,
    phase: Mutex<Phase>,
    changed: Notify,
}

impl ConnectionWatch {
    fn new(settings: ListenerSettings) -> Self {
        Self {
            settings,
            phase: Mutex::new(Phase::Waiting {
                on: Waiting::Header,
                deadline: Instant::now() + settings.header_read_timeout,
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, mut phase: MutexGuard<'_, Phase>, next: Phase) {
        *phase = next;
        drop(phase);
        self.changed.notify_one();
    }

    fn deadline(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Waiting { deadline, .. } => Some(deadline),
            Phase::Busy { .. } => None,
        }
    }

    async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The first byte of a new request on an idle connection starts its header clock.
    fn bytes_read(&self) {
        let phase = self.phase();
        if let Phase::Waiting {
            on: Waiting::Idle, ..
        } = *phase
        {
            let deadline = Instant::now() + self.settings.header_read_timeout;
            self.set(
                phase,
                Phase::Waiting {
                    on: Waiting::Header,
                    deadline,
                },
            );
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Waiting { .. } => Phase::Busy { requests: 1 },
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
        };
        InFlight(Arc::clone(self))
    }

    fn request_finished(&self) {
        let phase = self.phase();
        let next = match *phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            Phase::Busy { .. } => Phase::Waiting {
                on: Waiting::Idle,
                deadline: Instant::now() + self.settings.idle_timeout,
            },
            waiting @ Phase::Waiting { .. } => waiting,
        };
        self.set(phase, next);
    }

    /// Shutdown: a connection without a request in flight closes by `deadline`.
    fn close_soon(&self, deadline: Instant) {
        let phase = self.phase();
        if let Phase::Waiting { on, deadline: was } = *phase {
            let deadline = deadline.min(was);
            self.set(phase, Phase::Waiting { on, deadline });
        }
    }

    /// What the connection was waiting for, if its deadline has passed.
    fn expired(&self, now: Instant) -> Option<Waiting> {
        match *self.phase() {
            Phase::Waiting { on, deadline } if now >= deadline => Some(on),
            _ => None,
        }
    }
}

/// A request in flight; dropped when its response body is done (or abandoned).
#[derive(Debug)]
struct InFlight(Arc<ConnectionWatch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The client's socket (or TLS stream), telling the watch when bytes arrive.
#[derive(Debug)]
struct WatchedIo<S> {
    inner: S,
    watch: Arc<ConnectionWatch>,
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.bytes_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The router for one connection: adds `ConnectInfo` and [`ClientAddress`], marks each request
/// in flight until its response body is done, and sets HSTS on HTTPS responses.
#[derive(Debug, Clone)]
struct ConnectionService {
    app: Router,
    peer: SocketAddr,
    tls: bool,
    hsts: Option<HeaderValue>,
    proxies: Arc<TrustedProxies>,
    watch: Arc<ConnectionWatch>,
    certificates: Option<mtls::PeerCertificates>,
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<WatchedBody>, Infallible>> + Send>>;

impl hyper::service::Service<http::Request<Incoming>> for ConnectionService {
    type Response = http::Response<WatchedBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        let headers = request.headers();
        let values =
            |name: &http::HeaderName| headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
        let client = self.proxies.client(
            self.peer.ip(),
            self.tls,
            values(&FORWARDED),
            values(&X_FORWARDED_FOR),
            values(&X_FORWARDED_PROTO),
        );
        request.extensions_mut().insert(ConnectInfo(self.peer));
        request.extensions_mut().insert(ClientAddress(client));
        if let Some(certificates) = &self.certificates {
            request.extensions_mut().insert(certificates.clone());
        }
        let in_flight = self.watch.request_started();
        let app = self.app.clone();
        let hsts = self.hsts.clone().filter(|_| client.https);
        Box::pin(async move {
            let mut response = match app.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if let Some(hsts) = hsts {
                response
                    .headers_mut()
                    .entry(STRICT_TRANSPORT_SECURITY)
                    .or_insert(hsts);
            }
            Ok(response.map(|body| WatchedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that keeps its request in flight until hyper has taken all of it.
#[derive(Debug)]
struct WatchedBody {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_a_complete_response() {
        let text = std::str::from_utf8(REFUSAL).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("json body");
        assert_eq!(json["code"], "connection_limit");
    }

    #[test]
    fn caps_refuse_and_release_without_leaking_entries() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let c: IpAddr = "192.0.2.3".parse().expect("ip");
        let a1 = limits.try_acquire(a).expect("first from a");
        let a2 = limits.try_acquire(a).expect("second from a");
        assert_eq!(
            limits.try_acquire(a).map(drop),
            Err(Refusal::MaxConnectionsPerIp)
        );
        let b1 = limits.try_acquire(b).expect("b still served");
        assert_eq!(
            limits.try_acquire(c).map(drop),
            Err(Refusal::MaxConnections)
        );
        assert_eq!((limits.open(), limits.addresses()), (3, 2));
        drop(a1);
        let c1 = limits.try_acquire(c).expect("room again");
        drop((a2, b1, c1));
        assert_eq!((limits.open(), limits.addresses()), (0, 0), "no entry left");
        // A refused attempt leaves no entry behind either.
        let full = ConnectionLimits::new(1, 1);
        let held = full.try_acquire(a).expect("one");
        assert!(full.try_acquire(b).is_err());
        assert_eq!(full.addresses(), 1);
        drop(held);
        assert_eq!(full.addresses(), 0);
    }

    #[test]
    fn ipv6_counts_per_slash_64_and_mapped_ipv4_as_ipv4() {
        let limits = ConnectionLimits::new(10, 1);
        let first: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let other_64: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        let _held = limits.try_acquire(first).expect("first");
        assert_eq!(
            limits.try_acquire(same_64).map(drop),
            Err(Refusal::MaxConnectionsPerIp)
        );
        let _other = limits.try_acquire(other_64).expect("another /64");
        let v4: IpAddr = "192.0.2.7".parse().expect("ip");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        let _v4 = limits.try_acquire(v4).expect("v4");
        assert_eq!(
            limits.try_acquire(mapped).map(drop),
            Err(Refusal::MaxConnectionsPerIp)
        );
    }

    #[test]
    fn global_cap_stays_below_the_descriptor_limit() {
        assert_eq!(effective_max_connections(4096, None, 74), 4096);
        assert_eq!(effective_max_connections(4096, Some(1024), 74), 950);
        assert_eq!(effective_max_connections(100, Some(1024), 74), 100);
        assert_eq!(effective_max_connections(4096, Some(50), 74), 1);
        let settings = ListenerSettings {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 4096,
            max_connections_per_ip: 2000,
        }
        .clamped(Some(1024), 74);
        assert_eq!(
            (settings.max_connections, settings.max_connections_per_ip),
            (950, 950)
        );
    }

    #[test]
    fn log_throttle_lets_one_line_through_per_interval() {
        let mut throttle = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(throttle.allow(), Some(0));
        assert_eq!(throttle.allow(), None);
        assert_eq!(throttle.allow(), None);
        throttle.last = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(throttle.allow(), Some(2), "reports what it held back");
    }
}
