//! One attached client: a websocket on an owned socket, a member of a shared feed (`feed`:
//! one attach per target and size), and one thread that polls the socket, the feed's notify
//! pipe, a revocation pipe and the shutdown latch. Full duplex without a second thread: the
//! socket is non-blocking and the loop only waits in poll().
//!
//! Slow clients: output is pulled from the feed's ring only while less than `OUT_CAP` waits in
//! the websocket's buffer, so a slow or stalled client holds back nobody (not the agent, not
//! the other members); one that falls behind the ring is resynced with a full screen. A client
//! whose socket takes nothing for `STALL` is dropped with close code 1008 "client too slow".

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use super::feed::{AttachFn, Member, Pull, Want};
use super::wsout::WsOut;
use super::{Hub, Target};
use crate::api::{ClientFrame, ServerFrame};
use crate::latch::Latch;

/// Largest inbound websocket message (and frame).
pub const MAX_IN: usize = 1 << 20;
/// Output queued for one client before the pump stops pulling from its feed.
pub const OUT_CAP: usize = 1 << 20;
/// Output pulled from the feed at once.
const PULL: usize = 256 << 10;
/// A client whose socket takes nothing for this long is dropped.
pub const STALL: Duration = Duration::from_secs(60);
/// Ping interval, and how long a silent client is kept.
const PING_EVERY: Duration = Duration::from_secs(20);
const SILENT_LIMIT: Duration = Duration::from_secs(75);
/// How long to wait for the client's first resize before sizing the PTY from others.
const FIRST_RESIZE: Duration = Duration::from_millis(150);

/// What to attach.
pub struct Spec {
    /// Starts an attach when no feed of this target and size runs yet.
    pub attach: AttachFn,
    pub target: Target,
    pub label: String,
    /// The operator token the client came with (revoking it closes the session).
    pub owner: Option<String>,
    /// Whether that token still stands; asked once the client is registered, so a token
    /// revoked while the session was being set up is caught.
    pub still_valid: Option<Box<dyn Fn() -> bool + Send>>,
    /// Read-only: input and resizes are refused (viewers always).
    pub observe: bool,
    /// History to show before the live screen (`?scrollback=N`): fetched once the size is
    /// known, sent as plain lines that scroll into the client's own history.
    pub history: Option<Box<dyn FnOnce(u16) -> Vec<u8> + Send>>,
}

/// A client message, decoded.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    Data(Vec<u8>),
    Resize(u16, u16),
    Ping,
}

/// Decode one text frame; the error is what to tell the client.
pub fn decode(text: &str) -> Result<Inbound, String> {
    let f: ClientFrame = serde_json::from_str(text).map_err(|e| format!("bad envelope: {e}"))?;
    match f {
        ClientFrame::Data { b64 } => base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map(Inbound::Data)
            .map_err(|e| format!("bad base64: {e}")),
        ClientFrame::Resize { rows, cols }
            if (1..=1000).contains(&rows) && (1..=1000).contains(&cols) =>
        {
            Ok(Inbound::Resize(rows as u16, cols as u16))
        }
        ClientFrame::Resize { .. } => Err("resize needs rows and cols in 1..=1000".into()),
        ClientFrame::Ping => Ok(Inbound::Ping),
    }
}

/// `ServerFrame::Data`, written by hand: this is every byte of terminal output.
pub fn data_frame(bytes: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut s = String::with_capacity(b.len() + 24);
    s.push_str("{\"type\":\"data\",\"b64\":\"");
    s.push_str(&b);
    s.push_str("\"}");
    s
}

fn error_frame(msg: &str) -> String {
    ServerFrame::Error {
        b64: base64::engine::general_purpose::STANDARD.encode(msg.as_bytes()),
    }
    .text()
}

/// Serve one client until it leaves, is revoked, the terminal ends, or the daemon stops.
pub fn serve<S: Read + Write + AsRawFd>(
    stream: S,
    leftover: Vec<u8>,
    mut spec: Spec,
    hub: &Arc<Hub>,
    shutdown: &Latch,
) {
    let label = spec.label.clone();
    let sock_fd = stream.as_raw_fd();
    if let Err(e) = set_nonblocking(sock_fd) {
        log::warn!("session {label}: {e}");
        return;
    }
    let ws = super::wsout::accept(stream, leftover, OUT_CAP);
    let reg = match hub.join(
        spec.target.clone(),
        &label,
        spec.owner.clone(),
        spec.observe,
    ) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("session {label}: cannot register: {e}");
            return;
        }
    };
    if spec.still_valid.as_ref().is_some_and(|ok| !ok()) {
        reg.waker.revoke();
    }
    let mut p = Pump {
        out: WsOut::new(ws),
        last_in: Instant::now(),
        observe: spec.observe,
        told_read_only: false,
    };
    let hello = ServerFrame::Hello {
        attached: hub.attached(&spec.target),
    }
    .text();
    p.send(Message::Text(hello));

    // The first resize, if it comes promptly, sizes the PTY; otherwise the largest client
    // already there; otherwise 80x24. Never 0x0.
    let mut early: Vec<Inbound> = Vec::new();
    let deadline = Instant::now() + FIRST_RESIZE;
    let mut size = None;
    while size.is_none() && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        if !wait_readable(sock_fd, left) {
            break;
        }
        let (msgs, end) = p.read_all();
        for m in msgs {
            match m {
                Ok(Inbound::Resize(r, c)) if size.is_none() => size = Some((r, c)),
                Ok(i) => early.push(i),
                Err(e) => {
                    p.send(Message::Text(error_frame(&e)));
                }
            }
        }
        if end.is_some() {
            return;
        }
    }
    let (rows, cols) = size
        .or_else(|| hub.largest(&spec.target, reg.id))
        .unwrap_or((24, 80));
    hub.set_size(reg.id, rows, cols);

    if let Some(h) = spec.history.take() {
        let lines = h(rows);
        if !lines.is_empty() {
            p.send(Message::Text(data_frame(&lines)));
        }
    }
    let want = Want {
        target: spec.target.clone(),
        rows,
        cols,
        observe: spec.observe,
    };
    let mut member = match hub.feeds.join(&want, reg.id, &spec.attach) {
        Ok((m, snap)) => {
            if !snap.is_empty() {
                p.send(Message::Text(data_frame(&snap)));
            }
            m
        }
        Err(e) => {
            p.send(Message::Text(error_frame(&format!(
                "cannot start the terminal: {e}"
            ))));
            p.close(CloseCode::Error, "cannot start the terminal");
            return;
        }
    };
    for i in early {
        p.apply(i, &mut member, hub, reg.id, &spec);
    }
    let why = p.run(&mut member, hub, reg.id, &reg.waker, shutdown, &spec);
    log::debug!("session {label} on {:?} ended: {why:?}", spec.target);
    match why {
        End::Exited => {
            p.send(Message::Text(ServerFrame::Exit.text()));
            p.close(CloseCode::Normal, "terminal ended");
        }
        End::Revoked => p.close(CloseCode::Policy, "revoked"),
        End::Stopping if crate::daemon::restarting() => {
            p.close(CloseCode::Restart, "daemon restarting; reconnect")
        }
        End::Stopping => p.close(CloseCode::Away, "daemon shutting down"),
        End::TooSlow => p.close(CloseCode::Policy, "client too slow"),
        End::Silent => p.close(CloseCode::Away, "no pong"),
        End::TooBig => p.close(CloseCode::Size, "message too big"),
        End::ClientGone | End::ClientClosed | End::Failed => {}
    }
    drop(member);
    drop(reg);
}

#[derive(Debug)]
enum End {
    Exited,
    Revoked,
    Stopping,
    TooSlow,
    Silent,
    TooBig,
    ClientGone,
    /// The client said goodbye (a Close frame).
    ClientClosed,
    Failed,
}

struct Pump<S: Read + Write> {
    out: WsOut<S>,
    last_in: Instant,
    observe: bool,
    /// An observer is told once that its keystrokes and resizes are ignored.
    told_read_only: bool,
}

impl<S: Read + Write + AsRawFd> Pump<S> {
    fn send(&mut self, m: Message) -> bool {
        self.out.send(m)
    }

    /// Read every complete message the socket has now, and how the session ends if it does:
    /// what came before a Close is still the client's to have applied.
    fn read_all(&mut self) -> (Vec<Result<Inbound, String>>, Option<End>) {
        let mut out = Vec::new();
        let end = self.read_into(&mut out);
        (out, end)
    }

    fn read_into(&mut self, out: &mut Vec<Result<Inbound, String>>) -> Option<End> {
        loop {
            match self.out.ws.read() {
                Ok(m) => {
                    self.last_in = Instant::now();
                    match m {
                        Message::Text(t) => out.push(decode(&t)),
                        Message::Binary(b) => out.push(Ok(Inbound::Data(b))),
                        Message::Close(_) => {
                            // tungstenite queued the answering Close: send it, so the
                            // client sees a clean close (1000), not a dropped connection.
                            self.out.flush_for(Duration::from_millis(500));
                            return Some(End::ClientClosed);
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return None
                }
                Err(tungstenite::Error::Capacity(_)) => return Some(End::TooBig),
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Some(End::ClientGone)
                }
                Err(e) => {
                    log::debug!("websocket read: {e}");
                    return Some(End::ClientGone);
                }
            }
        }
    }

    fn read_only(&mut self, what: &str) {
        if !self.told_read_only {
            self.told_read_only = true;
            self.send(Message::Text(error_frame(&format!(
                "read-only session (observer): {what} ignored"
            ))));
        }
    }

    fn apply(&mut self, i: Inbound, m: &mut Member, hub: &Arc<Hub>, id: u64, spec: &Spec) {
        match i {
            Inbound::Data(_) if self.observe => self.read_only("input"),
            Inbound::Data(b) => {
                if !m.feed.input(&b) {
                    self.send(Message::Text(error_frame(
                        "input dropped: the terminal is not reading",
                    )));
                }
            }
            Inbound::Resize(..) if self.observe => self.read_only("resize"),
            Inbound::Resize(r, c) => {
                hub.set_size(id, r, c);
                if m.feed.size() == (r, c) {
                    return;
                }
                if hub.feeds.resize_alone(&m.feed, m.client, r, c) {
                    return;
                }
                // Shared with others of the old size: move to a feed of the new size (tmux
                // then sizes the window by the most recent client, as it documents).
                let want = Want {
                    target: spec.target.clone(),
                    rows: r,
                    cols: c,
                    observe: false,
                };
                match hub.feeds.join(&want, id, &spec.attach) {
                    Ok((next, snap)) => {
                        *m = next;
                        if !snap.is_empty() {
                            self.send(Message::Text(data_frame(&snap)));
                        }
                    }
                    Err(e) => {
                        self.send(Message::Text(error_frame(&format!("cannot resize: {e}"))));
                    }
                }
            }
            Inbound::Ping => {
                self.send(Message::Text(ServerFrame::Pong.text()));
            }
        }
    }

    /// Copy what the feed has for this client while its buffer has room.
    fn pull(&mut self, m: &mut Member) -> Option<End> {
        m.notify.drain();
        while self.out.pending < OUT_CAP {
            match m.feed.pull(&mut m.at, PULL) {
                Pull::Chunks(v) if v.is_empty() => return None,
                Pull::Chunks(v) => {
                    for c in v {
                        if !self.send(Message::Text(c.frame().to_string())) {
                            return Some(End::ClientGone);
                        }
                    }
                }
                Pull::Resync(screen) => {
                    let ok = self.send(Message::Text(ServerFrame::Resync.text()))
                        && self.send(Message::Text(data_frame(&screen)));
                    if !ok {
                        return Some(End::ClientGone);
                    }
                }
                Pull::Ended => return Some(End::Exited),
            }
        }
        None
    }

    fn run(
        &mut self,
        m: &mut Member,
        hub: &Arc<Hub>,
        id: u64,
        waker: &super::Waker,
        shutdown: &Latch,
        spec: &Spec,
    ) -> End {
        let sock = self.out.ws.get_ref().as_raw_fd();
        let mut last_ping = Instant::now();
        if let Some(end) = self.pull(m) {
            return end;
        }
        loop {
            if shutdown.is_set() {
                return End::Stopping;
            }
            if waker.revoked() {
                return End::Revoked;
            }
            let mut sock_ev = libc::POLLIN;
            if self.out.pending > 0 {
                sock_ev |= libc::POLLOUT;
            }
            let feed_ev = if self.out.pending < OUT_CAP {
                libc::POLLIN
            } else {
                0
            };
            let mut fds = [
                libc::pollfd {
                    fd: sock,
                    events: sock_ev,
                    revents: 0,
                },
                libc::pollfd {
                    fd: m.notify.fd().as_raw_fd(),
                    events: feed_ev,
                    revents: 0,
                },
                libc::pollfd {
                    fd: waker.fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: shutdown.fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // Sleep until something happens or the next ping or stall check is due.
            let due = [
                Some(last_ping + PING_EVERY),
                Some(self.last_in + SILENT_LIMIT),
                self.out.stalled_since.map(|t| t + STALL),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(Instant::now);
            let wait = due.saturating_duration_since(Instant::now()).as_millis() as i32 + 1;
            // SAFETY: four valid pollfds for fds this function keeps open.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 4, wait) };
            if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return End::Failed;
            }
            let now = Instant::now();
            if fds[2].revents != 0 {
                return End::Revoked;
            }
            if fds[3].revents != 0 {
                return End::Stopping;
            }
            if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                let (msgs, end) = self.read_all();
                for msg in msgs {
                    match msg {
                        Ok(i) => self.apply(i, m, hub, id, spec),
                        Err(e) => {
                            self.send(Message::Text(error_frame(&e)));
                        }
                    }
                }
                if let Some(end) = end {
                    if matches!(end, End::ClientClosed) && !self.observe {
                        // A client that typed and closed at once keeps its keystrokes: they
                        // reach the terminal before its exec is ended.
                        m.feed.settle();
                    }
                    return end;
                }
            }
            if self.out.pending > 0 && fds[0].revents & libc::POLLOUT != 0 && !self.out.flush() {
                return End::ClientGone;
            }
            if fds[1].revents != 0 || self.out.pending < OUT_CAP {
                if let Some(end) = self.pull(m) {
                    return end;
                }
            }
            if let Some(since) = self.out.stalled_since {
                if now.duration_since(since) > STALL {
                    return End::TooSlow;
                }
            }
            if now.duration_since(last_ping) >= PING_EVERY {
                last_ping = now;
                if !self.send(Message::Ping(Vec::new())) {
                    return End::ClientGone;
                }
            }
            if now.duration_since(self.last_in) > SILENT_LIMIT {
                return End::Silent;
            }
        }
    }

    fn close(&mut self, code: CloseCode, reason: &'static str) {
        self.out.close(code, reason)
    }
}

fn wait_readable(fd: RawFd, t: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, t.as_millis().min(60_000) as i32) > 0 }
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: the caller owns fd for the duration.
    let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = nix::fcntl::fcntl(bfd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(bfd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(())
}

pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    unsafe {
        libc::ioctl(fd, libc::TIOCSWINSZ, &ws);
    }
}

/// Start `argv` on a new PTY as the session leader with the PTY as its controlling terminal.
pub fn spawn_on_pty(
    argv: &[String],
    env: &[(String, String)],
    rows: u16,
    cols: u16,
) -> io::Result<(OwnedFd, Child)> {
    // Both ends are opened close-on-exec from the first instant: a child another thread
    // starts meanwhile (an exec, a log follow) must never hold this terminal, or its end
    // would never be seen.
    let (master, slave) = open_pty_cloexec()?;
    set_winsize(master.as_raw_fd(), rows, cols);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    for (k, v) in env {
        cmd.env(k, v);
    }
    log::debug!("pty spawn {}", crate::process::shell_words(argv));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    set_nonblocking(master.as_raw_fd())?;
    Ok((master, child))
}

fn open_pty_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::OFlag;
    let m = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(io::Error::from)?;
    nix::pty::grantpt(&m).map_err(io::Error::from)?;
    nix::pty::unlockpt(&m).map_err(io::Error::from)?;
    let name = nix::pty::ptsname_r(&m).map_err(io::Error::from)?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&name)?;
    // SAFETY: PtyMaster owns a valid descriptor; ownership moves into the OwnedFd.
    let master = unsafe { OwnedFd::from_raw_fd(nix::pty::PtyMaster::into_raw_fd(m)) };
    Ok((master, OwnedFd::from(slave)))
}

/// Hang up the attach command (as a closed terminal would), then make sure it is gone.
pub fn end_child(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_envelopes() {
        assert_eq!(
            decode(r#"{"type":"data","b64":"aGk="}"#),
            Ok(Inbound::Data(b"hi".to_vec()))
        );
        assert_eq!(
            decode(r#"{"type":"resize","rows":24,"cols":80}"#),
            Ok(Inbound::Resize(24, 80))
        );
        assert!(decode(r#"{"type":"resize","rows":0,"cols":80}"#).is_err());
        assert!(decode(r#"{"type":"data","b64":"!!"}"#).is_err());
        assert!(decode(r#"{"type":"data"}"#).is_err());
        assert!(decode("not json").is_err());
        assert!(decode(r#"{"type":"launch"}"#).is_err());
        let f = data_frame(b"\x1b[0m");
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["b64"], "G1swbQ==");
    }
}
