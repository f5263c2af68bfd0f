//! Listeners and connections. Each listener is one named thread that polls its socket (so
//! shutdown is noticed within a tick); each accepted connection gets its own thread that owns
//! the socket outright, reads requests, routes them and writes responses (keep-alive).

use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::wire::{self, Caller, HeadError, Peer, Response};
use super::{router, App};

/// A keep-alive connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(120);

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
pub struct InFlight(AtomicUsize);

impl InFlight {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    /// Wait until no request is in flight or `limit` passes; true when drained.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.count() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

struct Guard<'a>(&'a InFlight);
impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
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

/// Accept on `listener` until `app.stopping`; each connection on its own thread.
pub fn serve(
    listener: Listener,
    app: Arc<App>,
    inflight: Arc<InFlight>,
    stop: Option<Arc<AtomicBool>>,
) {
    let fd = match &listener {
        Listener::Unix(l) | Listener::Island(l, _) => l.as_fd().try_clone_to_owned(),
        Listener::Tcp(l, _) => l.as_fd().try_clone_to_owned(),
    };
    let Ok(fd) = fd else { return };
    let caller = match &listener {
        Listener::Island(_, name) => Caller::IslandSocket(name.clone()),
        _ => Caller::Operator,
    };
    while !app.stopping.load(Ordering::SeqCst)
        && !stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("listener poll failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        let conn = match &listener {
            Listener::Unix(l) | Listener::Island(l, _) => match l.accept() {
                Ok((s, _)) => Conn::Unix(s),
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
                    Conn::Tcp(s)
                }
                Err(e) => {
                    log::debug!("accept: {e}");
                    continue;
                }
            },
        };
        let (app, inflight) = (app.clone(), inflight.clone());
        let spawned = thread::Builder::new().name("http-conn".into()).spawn({
            let caller = caller.clone();
            move || {
                // A panic past the handler (a stream, a websocket pump) ends this connection
                // only; `guarded` already answered any panic inside a handler with a 500.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handle_conn(conn, &app, &inflight, caller)
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

/// Serve requests on one connection until it closes, errs, or the daemon stops.
fn handle_conn(conn: Conn, app: &App, inflight: &InFlight, caller: Caller) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let _ = conn.set_read_timeout(Some(IDLE));
    let peer = Peer { fd: conn.raw_fd() };
    let mut reader = BufReader::with_capacity(16 << 10, conn);
    loop {
        let mut req = match wire::read_request(&mut reader, caller.clone()) {
            Ok(r) => r,
            Err(HeadError::Closed) => return,
            Err(HeadError::Bad(status, msg)) => {
                let resp = Response::json(status, &crate::api::ErrorBody { error: msg });
                let _ = wire::write_response(&mut writer, resp, false, false, &peer);
                return;
            }
        };
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
                return;
            }
        }
        inflight.0.fetch_add(1, Ordering::SeqCst);
        let guard = Guard(inflight);
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
            drop(guard);
            // The 101 carries its own Upgrade headers and nothing else: no keep-alive, no
            // body headers (strict clients such as Python's websocket-client refuse them).
            resp.payload = wire::Payload::Switching;
            if wire::write_response(&mut writer, resp, false, false, &peer).is_err() {
                return;
            }
            log::debug!("{method} {path} -> 101 (websocket)");
            // Bytes the client sent after its head belong to the websocket.
            let leftover = reader.buffer().to_vec();
            let conn = reader.into_inner();
            drop(writer);
            let _ = conn.set_read_timeout(None);
            f(conn, leftover);
            return;
        }
        // Leftover body must be read before the next request can be; if it is large, close.
        let drained = req.drain();
        drop(req);
        let keep = drained && !wants_close && !app.stopping.load(Ordering::SeqCst);
        let wrote = wire::write_response(&mut writer, resp, keep, head_only, &peer);
        log::debug!("{method} {path} -> {status} in {:?}", started.elapsed());
        drop(guard);
        if wrote.is_err() || !keep {
            return;
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

/// Wait (polling, bounded) until `fd` is hung up; used by follow streams that may sit idle.
/// Returns true on hang-up, false when `stop` says to end first.
pub fn hung_up(fd: RawFd, stop: &dyn Fn() -> bool) -> bool {
    // libc directly: nix 0.29's PollFlags has no POLLRDHUP and drops revents it cannot name.
    loop {
        if stop() {
            return false;
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the caller keeps `fd` open while this runs.
        let n = unsafe { libc::poll(&mut p, 1, 250) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return true;
        }
        if n > 0
            && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
        {
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
