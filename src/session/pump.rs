//! One attached client: a websocket on an owned socket, a host PTY running the attach command
//! (`docker exec -it … tmux attach`, or host tmux), and one thread that polls both plus a
//! revocation pipe. Full duplex without a second thread: the socket and the PTY master are
//! non-blocking and the loop only waits in poll().
//!
//! Slow clients: output read from the PTY is queued in the websocket's write buffer; past
//! `OUT_CAP` the pump stops reading the PTY, so tmux holds that one client back (and redraws
//! it when it catches up) while every other client and the agent carry on. A client that
//! accepts nothing for `STALL` is dropped with close code 1008 "client too slow".

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::{Hub, Target};
use crate::api::{ClientFrame, ServerFrame};
use crate::latch::Latch;

/// Largest inbound websocket message (and frame).
pub const MAX_IN: usize = 1 << 20;
/// Output queued for one client before the pump stops reading its PTY.
pub const OUT_CAP: usize = 1 << 20;
/// Keystrokes queued for the PTY before input is refused.
const IN_CAP: usize = 1 << 20;
/// A client that takes nothing for this long is dropped.
pub const STALL: Duration = Duration::from_secs(30);
/// Ping interval, and how long a silent client is kept.
const PING_EVERY: Duration = Duration::from_secs(20);
const SILENT_LIMIT: Duration = Duration::from_secs(75);
/// How long to wait for the client's first resize before sizing the PTY from others.
const FIRST_RESIZE: Duration = Duration::from_millis(150);
/// docker's CLI starts watching SIGWINCH only once its first resize call returns, just after
/// the exec starts: a resize in that gap never reaches the island. A resize this soon after
/// the attach starts is signalled again, after the gap has surely closed.
const EARLY: Duration = Duration::from_secs(3);
const RESIGNAL_AFTER: [Duration; 2] = [Duration::from_millis(250), Duration::from_millis(1500)];

/// What to attach.
pub struct Spec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub target: Target,
    pub label: String,
    /// The operator token the client came with (revoking it closes the session).
    pub owner: Option<String>,
    /// Whether that token still stands; asked once the client is registered, so a token
    /// revoked while the session was being set up is caught.
    pub still_valid: Option<Box<dyn Fn() -> bool + Send>>,
    /// Run once the attach command is gone, whatever ended the session: ends what the
    /// attach left running out of this host's reach (the in-island tmux client).
    pub on_end: Option<Box<dyn FnOnce() + Send>>,
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
    let mut cfg = WebSocketConfig::default();
    cfg.max_message_size = Some(MAX_IN);
    cfg.max_frame_size = Some(MAX_IN);
    cfg.write_buffer_size = 0;
    cfg.max_write_buffer_size = OUT_CAP * 4;
    let ws = WebSocket::from_partially_read(stream, leftover, Role::Server, Some(cfg));
    let reg = match hub.join(spec.target.clone(), &label, spec.owner.clone()) {
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
        ws,
        out_pending: 0,
        stalled_since: None,
        last_in: Instant::now(),
        drawn: false,
        spawned: Instant::now(),
        resignal: Vec::new(),
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

    // The attach command may carry the size as `{rows}`/`{cols}` so the remote terminal has
    // it from its first instant (`docker exec -it` otherwise sets it after starting, racily).
    let argv: Vec<String> = spec
        .argv
        .iter()
        .map(|a| {
            a.replace("{rows}", &rows.to_string())
                .replace("{cols}", &cols.to_string())
        })
        .collect();
    let (master, mut child) = match spawn_on_pty(&argv, &spec.env, rows, cols) {
        Ok(x) => x,
        Err(e) => {
            p.send(Message::Text(error_frame(&format!(
                "cannot start the terminal: {e}"
            ))));
            p.close(CloseCode::Error, "cannot start the terminal");
            return;
        }
    };
    p.spawned = Instant::now();
    let mut input: Vec<u8> = Vec::new();
    for i in early {
        p.apply(i, &master, &mut input, hub, reg.id);
    }
    let why = p.run(&master, &mut input, hub, reg.id, &reg.waker, shutdown);
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
    end_child(&mut child);
    drop(reg);
    if let Some(f) = spec.on_end.take() {
        f();
    }
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
    ws: WebSocket<S>,
    /// Bytes handed to the websocket since it last flushed completely.
    out_pending: usize,
    stalled_since: Option<Instant>,
    last_in: Instant,
    /// The PTY has produced output (the attach drew its screen).
    drawn: bool,
    /// When the attach command started, and when to repeat an early resize's SIGWINCH.
    spawned: Instant,
    resignal: Vec<Instant>,
}

impl<S: Read + Write + AsRawFd> Pump<S> {
    /// Keystrokes go to the PTY only once the attach has drawn its screen: before that the
    /// PTY is still in cooked mode (docker has not made it raw), and the line discipline would
    /// echo and rewrite what a fast client sends first.
    fn live(&self) -> bool {
        self.drawn
    }

    /// Queue a message and push what the socket takes now.
    fn send(&mut self, m: Message) -> bool {
        let n = m.len();
        match self.ws.write(m) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
        self.out_pending += n;
        self.flush()
    }

    fn flush(&mut self) -> bool {
        match self.ws.flush() {
            Ok(()) => {
                self.out_pending = 0;
                self.stalled_since = None;
                true
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stalled_since.get_or_insert_with(Instant::now);
                true
            }
            Err(_) => false,
        }
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
            match self.ws.read() {
                Ok(m) => {
                    self.last_in = Instant::now();
                    match m {
                        Message::Text(t) => out.push(decode(&t)),
                        Message::Binary(b) => out.push(Ok(Inbound::Data(b))),
                        Message::Close(_) => {
                            // tungstenite queued the answering Close: send it, so the
                            // client sees a clean close (1000), not a dropped connection.
                            self.flush_for(Duration::from_millis(500));
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

    fn apply(&mut self, i: Inbound, master: &OwnedFd, input: &mut Vec<u8>, hub: &Hub, id: u64) {
        match i {
            Inbound::Data(b) => {
                if input.len() + b.len() > IN_CAP {
                    self.send(Message::Text(error_frame(
                        "input dropped: the terminal is not reading",
                    )));
                } else {
                    input.extend_from_slice(&b);
                    if self.live() {
                        write_some(master, input);
                    }
                }
            }
            Inbound::Resize(r, c) => {
                set_winsize(master.as_raw_fd(), r, c);
                hub.set_size(id, r, c);
                let now = Instant::now();
                if now.duration_since(self.spawned) < EARLY {
                    self.resignal = RESIGNAL_AFTER.iter().map(|d| now + *d).collect();
                }
            }
            Inbound::Ping => {
                self.send(Message::Text(ServerFrame::Pong.text()));
            }
        }
    }

    fn run(
        &mut self,
        master: &OwnedFd,
        input: &mut Vec<u8>,
        hub: &Hub,
        id: u64,
        waker: &super::Waker,
        shutdown: &Latch,
    ) -> End {
        let sock = self.ws.get_ref().as_raw_fd();
        let mut last_ping = Instant::now();
        let mut buf = vec![0u8; 32 << 10];
        loop {
            if shutdown.is_set() {
                return End::Stopping;
            }
            if waker.revoked() {
                return End::Revoked;
            }
            let read_pty = self.out_pending < OUT_CAP;
            let mut sock_ev = libc::POLLIN;
            if self.out_pending > 0 {
                sock_ev |= libc::POLLOUT;
            }
            let mut pty_ev = 0;
            if read_pty {
                pty_ev |= libc::POLLIN;
            }
            if self.live() && !input.is_empty() {
                pty_ev |= libc::POLLOUT;
            }
            let mut fds = [
                libc::pollfd {
                    fd: sock,
                    events: sock_ev,
                    revents: 0,
                },
                libc::pollfd {
                    fd: master.as_raw_fd(),
                    events: pty_ev,
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
                self.stalled_since.map(|t| t + STALL),
                self.resignal.first().copied(),
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
                for m in msgs {
                    match m {
                        Ok(i) => self.apply(i, master, input, hub, id),
                        Err(e) => {
                            self.send(Message::Text(error_frame(&e)));
                        }
                    }
                }
                if let Some(end) = end {
                    if matches!(end, End::ClientClosed) {
                        // A client that typed and closed at once keeps its keystrokes: they
                        // reach the terminal before its exec is ended.
                        settle_input(master, input, self.drawn);
                    }
                    return end;
                }
            }
            if fds[1].revents & libc::POLLOUT != 0 {
                write_some(master, input);
            }
            if fds[1].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                    Ok(0) => return End::Exited,
                    Ok(k) => {
                        if !self.drawn {
                            self.drawn = true;
                            write_some(master, input);
                        }
                        if !self.send(Message::Text(data_frame(&buf[..k]))) {
                            return End::ClientGone;
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                    // EIO: every holder of the slave side is gone, the program ended.
                    Err(_) => return End::Exited,
                }
            }
            if self.out_pending > 0 && fds[0].revents & libc::POLLOUT != 0 && !self.flush() {
                return End::ClientGone;
            }
            if let Some(since) = self.stalled_since {
                if now.duration_since(since) > STALL {
                    return End::TooSlow;
                }
            }
            if self.resignal.first().is_some_and(|t| now >= *t) {
                self.resignal.remove(0);
                signal_winch(master.as_raw_fd());
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

    /// Send a close frame and give it a moment to leave.
    fn close(&mut self, code: CloseCode, reason: &'static str) {
        let _ = self.ws.close(Some(CloseFrame {
            code,
            reason: Cow::Borrowed(reason),
        }));
        self.flush_for(Duration::from_secs(1));
    }

    /// Flush what is queued for the client, waiting for the socket up to `limit`.
    fn flush_for(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.ws.flush() {
                Ok(()) => break,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    let fd = self.ws.get_ref().as_raw_fd();
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, 100) };
                }
                Err(_) => break,
            }
        }
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

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: the caller owns fd for the duration.
    let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = nix::fcntl::fcntl(bfd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(bfd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// Write what the PTY takes now from the front of `input`.
/// Hand what the client typed to the terminal and let the attach pass it on: write the rest of
/// `input` (once the screen was drawn), then wait until the terminal has been quiet for 50 ms
/// (its echo read and dropped), at most 300 ms in all.
fn settle_input(master: &OwnedFd, input: &mut Vec<u8>, drawn: bool) {
    if !drawn {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(300);
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        write_some(master, input);
        if !wait_readable(master.as_raw_fd(), Duration::from_millis(50)) {
            if input.is_empty() {
                return;
            }
            continue;
        }
        match nix::unistd::read(master.as_raw_fd(), &mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

fn write_some(master: &OwnedFd, input: &mut Vec<u8>) {
    while !input.is_empty() {
        match nix::unistd::write(master.as_fd(), input) {
            Ok(0) => return,
            Ok(k) => {
                input.drain(..k);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
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

/// Tell the terminal's foreground process group its size changed (as TIOCSWINSZ did).
fn signal_winch(master: RawFd) {
    let mut pgrp: libc::pid_t = 0;
    // SAFETY: TIOCGPGRP writes one pid_t through a valid pointer.
    if unsafe { libc::ioctl(master, libc::TIOCGPGRP, &mut pgrp) } == 0 && pgrp > 0 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgrp),
            nix::sys::signal::Signal::SIGWINCH,
        );
    }
}

/// Start `argv` on a new PTY as the session leader with the PTY as its controlling terminal.
fn spawn_on_pty(
    argv: &[String],
    env: &[(String, String)],
    rows: u16,
    cols: u16,
) -> io::Result<(OwnedFd, Child)> {
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None).map_err(io::Error::from)?;
    let (master, slave) = (pty.master, pty.slave);
    // openpty leaves both ends inheritable: no other child (a capability, an MCP server, a
    // later session's attach) may hold this session's terminal.
    for fd in [master.as_raw_fd(), slave.as_raw_fd()] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(io::Error::from)?;
    }
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

/// Hang up the attach command (as a closed terminal would), then make sure it is gone.
fn end_child(child: &mut Child) {
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
