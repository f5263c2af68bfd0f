//! Listeners and connections. Each listener is one named thread that polls its socket (so
//! shutdown is noticed within a tick); each accepted connection gets its own thread that owns
//! the socket outright, reads requests, routes them and writes responses (keep-alive).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::wire::{self, Caller, HeadError, Peer, Response};
use super::{router, App};
use crate::latch::Latch;
use crate::util::lock;

/// How long a listener's connections may take and how many it holds (`dejimad --help`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// From a request's first byte (or a new connection's accept) to the end of its head.
    pub head_timeout: Duration,
    /// A keep-alive connection waiting this long for its next request is closed.
    pub idle_timeout: Duration,
    /// Longest wait for the next bytes of a request body.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 512,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// An accepted socket of either family.
pub enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
        })
    }
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(t),
            Conn::Tcp(s) => s.set_read_timeout(t),
        }
    }
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_write_timeout(t),
            Conn::Tcp(s) => s.set_write_timeout(t),
        }
    }
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Conn::Unix(s) => s.as_raw_fd(),
            Conn::Tcp(s) => s.as_raw_fd(),
        }
    }
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        self.raw_fd()
    }
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(b),
            Conn::Tcp(s) => s.read(b),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(b),
            Conn::Tcp(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts requests being served, for a bounded graceful shutdown.
#[derive(Default)]
pub struct InFlight {
    n: std::sync::Mutex<usize>,
    idle: std::sync::Condvar,
}

impl InFlight {
    pub fn count(&self) -> usize {
        *lock(&self.n)
    }
    fn enter(&self) -> Guard<'_> {
        *lock(&self.n) += 1;
        Guard(self)
    }
    /// Wait until no request is in flight or `limit` passes; true when drained.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let g = lock(&self.n);
        let (g, _) = self
            .idle
            .wait_timeout_while(g, limit, |n| *n > 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g == 0
    }
}

struct Guard<'a>(&'a InFlight);
impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let mut n = lock(&self.0.n);
        *n -= 1;
        if *n == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// One open connection of a listener; counted down when its thread ends (or never starts).
struct Open(Arc<AtomicUsize>);
impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The connection's reads, each bounded by the current deadline (the head's, or the idle
/// wait's) or, with none set, by the body timeout. The deadline is shared so it can be
/// changed while a request borrows the reader.
pub struct Deadlined {
    conn: Conn,
    base: Instant,
    /// Milliseconds after `base`; 0 = no deadline.
    at: Arc<std::sync::atomic::AtomicU64>,
    body_timeout: Duration,
    set: Option<Duration>,
}

impl Deadlined {
    fn new(conn: Conn, body_timeout: Duration) -> Deadlined {
        Deadlined {
            conn,
            base: Instant::now(),
            at: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            body_timeout,
            set: None,
        }
    }
    fn handle(&self) -> DeadlineHandle {
        DeadlineHandle {
            base: self.base,
            at: self.at.clone(),
        }
    }
}

#[derive(Clone)]
struct DeadlineHandle {
    base: Instant,
    at: Arc<std::sync::atomic::AtomicU64>,
}

impl DeadlineHandle {
    fn within(&self, d: Duration) {
        let ms = (Instant::now() + d).duration_since(self.base).as_millis() as u64;
        self.at.store(ms.max(1), Ordering::SeqCst);
    }
    fn clear(&self) {
        self.at.store(0, Ordering::SeqCst);
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = match self.at.load(Ordering::SeqCst) {
            0 => self.body_timeout,
            ms => {
                let left = (self.base + Duration::from_millis(ms))
                    .saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
                }
                left
            }
        };
        if self.set != Some(t) {
            self.conn.set_read_timeout(Some(t))?;
            self.set = Some(t);
        }
        self.conn.read(buf)
    }
}

/// Which TCP peers may connect.
#[derive(Debug, Clone)]
pub struct Allow {
    nets: Vec<(IpAddr, u8)>,
}

impl Allow {
    /// Loopback and the tailnet ranges (100.64.0.0/10, fd7a:115c:a1e0::/48), plus `extra`.
    pub fn new(extra: &[String]) -> Result<Allow, String> {
        let mut nets = Vec::new();
        for c in [
            "127.0.0.0/8",
            "::1/128",
            "100.64.0.0/10",
            "fd7a:115c:a1e0::/48",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().cloned())
        {
            nets.push(parse_cidr(&c)?);
        }
        Ok(Allow { nets })
    }
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.nets.iter().any(|(net, bits)| in_net(ip, *net, *bits))
    }
}

pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, b)) => (ip, Some(b)),
        None => (s, None),
    };
    let ip: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an address or CIDR"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => b
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("bad prefix length in {s:?}"))?,
        None => max,
    };
    Ok((ip, bits))
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// A bound listener.
pub enum Listener {
    Unix(UnixListener),
    /// One island's own socket (bind-mounted into it); callers must hold its token.
    Island(UnixListener, String),
    Tcp(TcpListener, Allow),
}

/// Accept on `listener` until the daemon shuts down (or `stop`, for an island's socket); each
/// connection on its own thread, at most `limits.max_connections` at once.
pub fn serve(
    listener: Listener,
    app: Arc<App>,
    inflight: Arc<InFlight>,
    limits: Limits,
    stop: Option<Arc<Latch>>,
) {
    let fd = match &listener {
        Listener::Unix(l) | Listener::Island(l, _) => l.as_fd().try_clone_to_owned(),
        Listener::Tcp(l, _) => l.as_fd().try_clone_to_owned(),
    };
    let Ok(fd) = fd else { return };
    let island = match &listener {
        Listener::Island(_, name) => Some(name.clone()),
        _ => None,
    };
    let open = Arc::new(AtomicUsize::new(0));
    let limits = Arc::new(limits);
    loop {
        let mut fds = vec![
            PollFd::new(fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(app.shutdown.fd(), PollFlags::POLLIN),
        ];
        if let Some(s) = &stop {
            fds.push(PollFd::new(s.fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("listener poll failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        if fds[1..].iter().any(|p| p.any() == Some(true)) {
            return;
        }
        let (conn, caller) = match &listener {
            Listener::Unix(l) | Listener::Island(l, _) => match l.accept() {
                Ok((s, _)) => (
                    Conn::Unix(s),
                    match &island {
                        Some(n) => Caller::IslandSocket(n.clone()),
                        None => Caller::Socket,
                    },
                ),
                Err(e) => {
                    log::debug!("accept: {e}");
                    continue;
                }
            },
            Listener::Tcp(l, allow) => match l.accept() {
                Ok((s, addr)) => {
                    if !allow.permits(addr.ip()) {
                        log::warn!("refused TCP connection from {addr} (not loopback, tailnet or --allow-cidr)");
                        drop(s);
                        continue;
                    }
                    let _ = s.set_nodelay(true);
                    (Conn::Tcp(s), Caller::Tcp(addr.ip()))
                }
                Err(e) => {
                    log::debug!("accept: {e}");
                    continue;
                }
            },
        };
        if open.load(Ordering::SeqCst) >= limits.max_connections {
            let hint = match caller {
                Caller::IslandSocket(_) => "close idle connections to this island's socket",
                _ => "close idle clients or raise dejimad --max-connections",
            };
            refuse(conn, limits.max_connections, hint);
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let counted = Open(open.clone());
        let (app, inflight, limits) = (app.clone(), inflight.clone(), limits.clone());
        let spawned = thread::Builder::new().name("http-conn".into()).spawn({
            move || {
                let _counted = counted;
                // A panic past the handler (a stream, a websocket pump) ends this connection
                // only; `guarded` already answered any panic inside a handler with a 500.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handle_conn(conn, &app, &inflight, caller, &limits)
                }));
                if r.is_err() {
                    log::error!("a connection thread panicked; that connection is closed");
                }
            }
        });
        if let Err(e) = spawned {
            log::error!("cannot start a connection thread: {e}");
        }
    }
}

/// Answer a connection over the listener's cap with a 503 and close it, without ever
/// waiting on the peer (the listener thread must not block).
fn refuse(conn: Conn, max: usize, hint: &str) {
    let _ = match &conn {
        Conn::Unix(s) => s.set_nonblocking(true),
        Conn::Tcp(s) => s.set_nonblocking(true),
    };
    let body = format!(
        "{{\"error\":\"too many connections: this listener already holds {max}; {hint}\"}}\n"
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut conn = conn;
    let _ = conn.write_all(format!("{head}{body}").as_bytes());
    // Done writing; drop what the client already sent, so closing is less likely to reset
    // the connection before the answer is read (best effort: this thread never waits).
    let _ = conn.shutdown_write();
    let mut sink = [0u8; 4096];
    let _ = conn.read(&mut sink);
    log::warn!("refused a connection: {max} already open on this listener");
}

/// Serve requests on one connection until it closes, errs, idles out, or the daemon stops.
fn handle_conn(conn: Conn, app: &App, inflight: &InFlight, caller: Caller, limits: &Limits) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    // A client that stops reading cannot hold this thread (and its connection slot) for
    // ever: a write that stalls this long ends the connection. (Websocket pumps make the
    // socket non-blocking and keep their own stall limit.)
    let _ = writer.set_write_timeout(Some(limits.body_timeout));
    let peer = Peer { fd: conn.raw_fd() };
    let reader = Deadlined::new(conn, limits.body_timeout);
    let deadline = reader.handle();
    let mut reader = BufReader::with_capacity(16 << 10, reader);
    let mut first = true;
    let linger = loop {
        // The next request's first byte: within the head deadline on a new connection (one
        // that never speaks holds nothing for long), within the idle deadline on a kept one.
        deadline.within(if first {
            limits.head_timeout
        } else {
            limits.idle_timeout
        });
        match reader.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(_) => {}
        }
        // A new connection's head deadline runs from the accept; a kept one's from the first
        // byte of its next request.
        if !first {
            deadline.within(limits.head_timeout);
        }
        first = false;
        let mut req = match wire::read_request(&mut reader, caller.clone()) {
            Ok(r) => r,
            Err(HeadError::Closed) => return,
            Err(HeadError::Bad(status, msg)) => {
                let msg = if status == 408 {
                    format!(
                        "{msg} (the head must arrive within {}s)",
                        limits.head_timeout.as_secs()
                    )
                } else {
                    msg
                };
                let resp = Response::json(status, &crate::api::ErrorBody { error: msg });
                let _ = wire::write_response(&mut writer, resp, false, false, &peer);
                break true;
            }
        };
        deadline.clear();
        match req.header("expect").map(str::trim) {
            None => {}
            Some(e) if e.eq_ignore_ascii_case("100-continue") => {
                if req.content_length() != Some(0) {
                    match writer.try_clone() {
                        Ok(w) => req.expect_continue(Box::new(w)),
                        Err(_) => return,
                    }
                }
            }
            Some(e) => {
                let msg = format!("Expect: {e:?} is not supported (only 100-continue)");
                let resp = Response::json(417, &crate::api::ErrorBody { error: msg });
                let _ = wire::write_response(&mut writer, resp, false, false, &peer);
                break true;
            }
        }
        let guard = inflight.enter();
        let started = Instant::now();
        let wants_close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let head_only = req.method == "HEAD";
        let (method, path) = (req.method.clone(), req.path.clone());
        let mut resp = guarded(&method, &path, || router::dispatch(app, &mut req));
        let status = resp.status;
        let upgrade = match std::mem::replace(&mut resp.payload, wire::Payload::Empty) {
            wire::Payload::Upgrade(f) => Some(f),
            other => {
                resp.payload = other;
                None
            }
        };
        if let Some(f) = upgrade {
            drop(req);
            // The session stays in flight: on shutdown its pump ends at once, and the drain
            // lets it say goodbye (a close frame, its in-island attach ended) before exit.
            // The 101 carries its own Upgrade headers and nothing else: no keep-alive, no
            // body headers (strict clients such as Python's websocket-client refuse them).
            resp.payload = wire::Payload::Switching;
            if wire::write_response(&mut writer, resp, false, false, &peer).is_err() {
                return;
            }
            log::debug!("{method} {path} -> 101 (websocket)");
            // Bytes the client sent after its head belong to the websocket.
            let leftover = reader.buffer().to_vec();
            let conn = reader.into_inner().conn;
            drop(writer);
            let _ = conn.set_read_timeout(None);
            f(conn, leftover);
            drop(guard);
            return;
        }
        // Leftover body must be read before the next request can be; if it is large, close.
        let drained = req.drain();
        drop(req);
        let keep = drained && !wants_close && !app.shutdown.is_set();
        let wrote = wire::write_response(&mut writer, resp, keep, head_only, &peer);
        log::debug!("{method} {path} -> {status} in {:?}", started.elapsed());
        drop(guard);
        if wrote.is_err() {
            return;
        }
        if !keep {
            break true;
        }
    };
    if linger {
        // Closing with unread request bytes (a refused upload, a half-sent head) makes the
        // kernel reset the connection, and a reset can destroy the answer before the client
        // reads it: say we are done writing, then read and drop what is left, briefly.
        let _ = writer.shutdown_write();
        deadline.within(Duration::from_secs(1));
        let mut sink = [0u8; 16 << 10];
        let mut left = 1usize << 20;
        while left > 0 {
            match reader.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    }
}

/// Run a handler; a panic in it becomes a logged 500 for this request alone (the registry's
/// locks survive poisoning, so the next request is served as usual).
fn guarded(method: &str, path: &str, f: impl FnOnce() -> Response) -> Response {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log::error!("BUG: {method} {path} panicked: {what}");
            super::error_response(&crate::error::Error::Internal(
                "the daemon hit a bug serving this request (logged); other requests are unaffected"
                    .into(),
            ))
        }
    }
}

/// Bind the operator socket: mode 0600; a stale socket file is replaced, a live one is an error.
pub fn bind_unix(path: &std::path::Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is served by a running dejimad", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // Bind under a restrictive umask so the socket is never briefly world-connectable.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = l?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// `:7273` means every address; otherwise `host:port`.
pub fn parse_tcp_addr(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| format!("--tcp {s:?} is not host:port or :port"))
}

/// Wait until `fd` (a streaming response's peer) hangs up, or until one of `wake` is set.
/// True on hang-up.
pub fn hung_up(fd: RawFd, wake: &[&Latch]) -> bool {
    // libc directly: nix 0.29's PollFlags has no POLLRDHUP and drops revents it cannot name.
    let mut p = vec![libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    }];
    for w in wake {
        p.push(libc::pollfd {
            fd: w.fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
    }
    loop {
        if wake.iter().any(|w| w.is_set()) {
            return false;
        }
        // SAFETY: valid pollfds for fds the caller keeps open while this runs.
        let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return true;
        }
        if p[0].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_loopback_and_tailnet_only() {
        let a = Allow::new(&[]).unwrap();
        for ok in [
            "127.0.0.1",
            "::1",
            "100.64.0.1",
            "100.127.255.254",
            "fd7a:115c:a1e0::5",
            "::ffff:127.0.0.1",
        ] {
            assert!(a.permits(ok.parse().unwrap()), "{ok}");
        }
        for no in [
            "10.0.0.1",
            "192.168.1.1",
            "100.128.0.1",
            "8.8.8.8",
            "fd7a:115c:a1e1::1",
            "::2",
        ] {
            assert!(!a.permits(no.parse().unwrap()), "{no}");
        }
        let b = Allow::new(&["10.1.0.0/16".into()]).unwrap();
        assert!(b.permits("10.1.2.3".parse().unwrap()));
        assert!(!b.permits("10.2.0.1".parse().unwrap()));
        assert!(Allow::new(&["nope".into()]).is_err());
        assert!(Allow::new(&["10.0.0.0/33".into()]).is_err());
    }

    #[test]
    fn a_panicking_handler_is_a_500_json() {
        let r = guarded("GET", "/x", || panic!("boom"));
        assert_eq!(r.status, 500);
        let wire::Payload::Bytes(b) = r.payload else {
            panic!("a JSON body")
        };
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert!(v["error"].as_str().unwrap().contains("bug"));
        assert_eq!(guarded("GET", "/x", Response::no_content).status, 204);
    }

    #[test]
    fn tcp_addrs() {
        assert_eq!(parse_tcp_addr(":7273").unwrap().port(), 7273);
        assert!(parse_tcp_addr("127.0.0.1:7273").is_ok());
        assert!(parse_tcp_addr("[::1]:7273").is_ok());
        assert!(parse_tcp_addr("nope").is_err());
    }
}
