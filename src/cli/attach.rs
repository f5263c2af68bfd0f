//! `dejima attach`, and the websocket PTY session it shares with `dejima term attach`.
//!
//! A blocking tungstenite socket can't be read and written from two threads, so one loop
//! polls stdin, the (non-blocking) socket and a self-pipe fed by signal handlers.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use argh::FromArgs;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::http::header::{HeaderValue, AUTHORIZATION, USER_AGENT};
use tungstenite::protocol::CloseFrame;
use tungstenite::{HandshakeError, Message, WebSocket};

use super::{fail, Failure, Out};
use crate::api::{ClientFrame as ClientMsg, ServerFrame as ServerMsg};
use crate::client::{seg, Client, ClientError, Target};

/// Ctrl-]: detaches on the client side, as in telnet; never sent to the session.
pub const DETACH_KEY: u8 = 0x1d;

/// How long the upgrade (and the goodbye on detach) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// attach this terminal to an island's agent session (Ctrl-] detaches)
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "attach",
    note = "Ctrl-] detaches; the agent keeps running. When stdin is not a terminal its bytes \
            are sent as they are and end of input detaches."
)]
pub struct Attach {
    #[argh(positional)]
    island: String,
    /// agent id, e.g. a2 (default: the island's primary agent)
    #[argh(option)]
    agent: Option<String>,
    /// how other clients see this one (default: cli@<hostname>)
    #[argh(option)]
    label: Option<String>,
    /// watch only: keystrokes and resizes are not sent on (always so for a viewer's token)
    #[argh(switch)]
    observe: bool,
    /// lines of history to show before the live screen (0-10000)
    #[argh(option, default = "0")]
    scrollback: u32,
}

pub fn attach(c: &Client, a: Attach) -> Out {
    let label = a.label.unwrap_or_else(default_label);
    let mut path = island_session_path(&a.island, a.agent.as_deref(), &label);
    if a.observe {
        path.push_str("&mode=observe");
    }
    if a.scrollback > 0 {
        path.push_str(&format!("&scrollback={}", a.scrollback));
    }
    session(c, &path)
}

/// The session websocket of an island's primary agent, or of one agent.
pub fn island_session_path(island: &str, agent: Option<&str>, label: &str) -> String {
    match agent {
        Some(id) => format!(
            "/v1/islands/{}/agents/{}/session?label={}",
            seg(island),
            seg(id),
            seg(label)
        ),
        None => format!("/v1/islands/{}/session?label={}", seg(island), seg(label)),
    }
}

/// `cli@<hostname>`, or `cli` when the host has no usable name.
pub fn default_label() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    // No NUL means the name was truncated; treat it as unknown.
    let n = buf.iter().position(|&b| b == 0).unwrap_or(0);
    let host = String::from_utf8_lossy(&buf[..n]);
    if ok && !host.is_empty() {
        format!("cli@{host}")
    } else {
        "cli".into()
    }
}

/// Run the session websocket at `path` (an API path with its query) on this terminal until
/// detach, the terminal's end, or the connection's. Raw mode and signal handlers are undone
/// before anything is printed, on every exit path.
pub fn session(c: &Client, path: &str) -> Out {
    let ws = connect(c, path)?;
    let interactive = nix::unistd::isatty(0).unwrap_or(false);
    let mut s = Session {
        ws,
        interactive,
        alt_screen: false,
    };
    let end = {
        let signals = Signals::install()?;
        let _raw = if interactive {
            Some(RawMode::enter()?)
        } else {
            None
        };
        s.pump(&signals)
    };
    if interactive && nix::unistd::isatty(1).unwrap_or(false) {
        // The remote tmux may have left the screen in modes our shell doesn't expect.
        let mut o = io::stdout();
        let _ = o.write_all(screen_reset(s.alt_screen).as_bytes());
        let _ = o.flush();
    }
    // In raw mode the cursor was wherever the remote left it.
    let nl = if interactive { "\n" } else { "" };
    match end {
        Err(f) => {
            s.close();
            Err(f)
        }
        Ok(End::Detached) => {
            s.close();
            eprintln!("{nl}[detached]");
            Ok(())
        }
        Ok(End::InputEnded) => {
            s.close();
            Ok(())
        }
        Ok(End::Exited) => {
            eprintln!("{nl}[terminal ended]");
            Ok(())
        }
        Ok(End::Closed(reason)) => {
            eprintln!("{nl}[connection closed: {reason}]");
            // Already said; main prints nothing for an empty message.
            Err(Failure {
                message: String::new(),
                code: 1,
            })
        }
        Ok(End::Signal(sig)) => {
            s.close();
            Err(Failure {
                message: format!("detached on {sig}"),
                code: 128 + sig as i32,
            })
        }
    }
}

/// How a session ended.
#[derive(Debug, PartialEq)]
enum End {
    /// The detach key.
    Detached,
    /// Piped stdin ran out.
    InputEnded,
    /// The daemon said the terminal ended.
    Exited,
    /// The connection ended without an exit; why.
    Closed(String),
    /// A terminating signal reached us.
    Signal(Signal),
}

trait Frame {
    fn frame(&self) -> Message;
}

fn data_msg(bytes: &[u8]) -> ClientMsg {
    ClientMsg::Data {
        b64: B64.encode(bytes),
    }
}

impl Frame for ClientMsg {
    fn frame(&self) -> Message {
        // Serializing a string or two integers cannot fail.
        Message::Text(serde_json::to_string(self).unwrap_or_default())
    }
}

/// What a daemon text frame means here.
#[derive(Debug, PartialEq)]
enum Event {
    /// Who is attached (labels).
    Hello(Vec<String>),
    Output(Vec<u8>),
    Error(String),
    Exit,
    Ignore,
}

fn decode(text: &str) -> Event {
    match serde_json::from_str::<ServerMsg>(text) {
        Ok(ServerMsg::Hello { attached }) => {
            Event::Hello(attached.into_iter().map(|p| p.label).collect())
        }
        Ok(ServerMsg::Data { b64 }) => match B64.decode(b64) {
            Ok(b) => Event::Output(b),
            Err(e) => {
                log::debug!("undecodable data frame: {e}");
                Event::Ignore
            }
        },
        // Shown even if the daemon sent plain text rather than base64.
        Ok(ServerMsg::Error { b64 }) => Event::Error(match B64.decode(&b64) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => b64,
        }),
        Ok(ServerMsg::Exit) => Event::Exit,
        // A resync is followed by a full screen, which simply redraws.
        Ok(ServerMsg::Other | ServerMsg::Pong | ServerMsg::Resync) => Event::Ignore,
        Err(e) => {
            log::debug!("unparseable frame: {e}");
            Event::Ignore
        }
    }
}

/// Keyboard bytes → (what to send, whether the detach key was pressed). Bytes after the key
/// are dropped.
fn split_detach(input: &[u8]) -> (&[u8], bool) {
    match input.iter().position(|&b| b == DETACH_KEY) {
        Some(i) => (&input[..i], true),
        None => (input, false),
    }
}

fn close_reason(f: Option<CloseFrame<'_>>) -> String {
    match f {
        Some(f) if !f.reason.is_empty() => f.reason.into_owned(),
        Some(f) => format!("code {}", f.code),
        None => "no reason given".into(),
    }
}

/// Why the connection ended, when it ended in an error rather than a close frame.
fn lost_reason(e: &tungstenite::Error) -> String {
    use tungstenite::error::ProtocolError;
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => "closed".into(),
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            "dejimad went away".into()
        }
        e => e.to_string(),
    }
}

/// Whether `out` leaves the alternate screen on (its last switch wins), given it was `alt`.
fn alt_screen_after(alt: bool, out: &[u8]) -> bool {
    let last = |pat: &[u8]| out.windows(pat.len()).rposition(|w| w == pat);
    match (last(b"\x1b[?1049h"), last(b"\x1b[?1049l")) {
        (Some(on), Some(off)) => on > off,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => alt,
    }
}

/// Escapes that undo what a remote tmux may have switched on: cursor hidden, mouse reporting,
/// bracketed paste, colours, and (only if it is on, since leaving it moves the cursor) the
/// alternate screen.
fn screen_reset(alt: bool) -> String {
    let mut s = String::new();
    if alt {
        s.push_str("\x1b[?1049l");
    }
    s.push_str("\x1b[0m\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l");
    s
}

/// (rows, cols) of the terminal on stdout (or stdin, stderr when stdout is redirected).
fn window_size() -> Option<(u16, u16)> {
    for fd in [1, 0, 2] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into ws.
        let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        if r == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// The daemon connection: the same socket or address the REST client uses.
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn open(t: &Target) -> Result<Conn, ClientError> {
        match t {
            Target::Unix(p) => UnixStream::connect(p)
                .map(Conn::Unix)
                .map_err(|e| ClientError::Connect(format!("{}: {e}", p.display()))),
            Target::Tcp(a) => {
                let s =
                    TcpStream::connect(a).map_err(|e| ClientError::Connect(format!("{a}: {e}")))?;
                // Keystrokes are tiny; don't hold them back.
                let _ = s.set_nodelay(true);
                Ok(Conn::Tcp(s))
            }
        }
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_nonblocking(on),
            Conn::Tcp(s) => s.set_nonblocking(on),
        }
    }
    fn set_timeouts(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(t).and(s.set_write_timeout(t)),
            Conn::Tcp(s) => s.set_read_timeout(t).and(s.set_write_timeout(t)),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Conn::Unix(s) => s.as_fd(),
            Conn::Tcp(s) => s.as_fd(),
        }
    }
}

/// Connect and upgrade (blocking, bounded), then leave the socket non-blocking for the loop.
fn connect(c: &Client, path: &str) -> Result<WebSocket<Conn>, Failure> {
    let conn = Conn::open(&c.target)?;
    conn.set_timeouts(Some(HANDSHAKE_TIMEOUT))?;
    let host = match &c.target {
        Target::Unix(_) => "dejimad",
        Target::Tcp(a) => a.as_str(),
    };
    let mut req = format!("ws://{host}{path}")
        .into_client_request()
        .map_err(|e| fail(format!("bad session address: {e}")))?;
    let h = req.headers_mut();
    h.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("dejima/", env!("CARGO_PKG_VERSION"))),
    );
    if let Some(t) = &c.token {
        let v = HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| fail("DEJIMA_TOKEN holds characters a header can't carry"))?;
        h.insert(AUTHORIZATION, v);
    }
    let (ws, _) = tungstenite::client::client(req, conn).map_err(handshake_failure)?;
    ws.get_ref().set_timeouts(None)?;
    ws.get_ref().set_nonblocking(true)?;
    Ok(ws)
}

fn handshake_failure(e: HandshakeError<ClientHandshake<Conn>>) -> Failure {
    match e {
        // Only a read timeout makes the blocking handshake "would block".
        HandshakeError::Interrupted(_) => fail("dejimad did not answer the session upgrade"),
        HandshakeError::Failure(tungstenite::Error::Http(r)) => {
            let status = r.status();
            let mut message = error_message(r.body().as_deref().unwrap_or_default());
            if message.is_empty() {
                message = status
                    .canonical_reason()
                    .unwrap_or("upgrade refused")
                    .to_string();
            }
            ClientError::Status {
                status: status.as_u16(),
                message,
            }
            .into()
        }
        HandshakeError::Failure(e) => fail(format!("session handshake failed: {e}")),
    }
}

/// The `error` field of a JSON error body, else the body as text.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

/// The terminal's settings from before raw mode, put back on drop (so also on error and
/// panic unwinding).
struct RawMode(Termios);

impl RawMode {
    fn enter() -> io::Result<RawMode> {
        let stdin = io::stdin();
        let saved = tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &self.0);
    }
}

/// Write end of the signal self-pipe, for the handler; -1 when none.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let errno = Errno::last_raw();
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking, so when full the
        // byte is dropped (a wakeup is already pending).
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
    Errno::set_raw(errno);
}

/// SIGWINCH and the terminating signals, turned into bytes on a pipe poll() can watch (the
/// default actions would kill us with the terminal still raw). Old handlers return on drop.
struct Signals {
    read: OwnedFd,
    _write: OwnedFd,
    old: Vec<(Signal, SigAction)>,
}

const WATCHED: [Signal; 4] = [
    Signal::SIGWINCH,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGINT,
];

fn nonblocking_cloexec(fd: RawFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
    let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(())
}

impl Signals {
    fn install() -> io::Result<Signals> {
        let (read, write) = nix::unistd::pipe()?;
        nonblocking_cloexec(read.as_raw_fd())?;
        nonblocking_cloexec(write.as_raw_fd())?;
        SIGNAL_PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
        // Built before the handlers go in, so a failure part-way still restores them.
        let mut s = Signals {
            read,
            _write: write,
            old: Vec::new(),
        };
        let act = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for sig in WATCHED {
            // SAFETY: the handler only loads an atomic and calls write(2).
            let old = unsafe { sigaction(sig, &act) }?;
            s.old.push((sig, old));
        }
        Ok(s)
    }

    /// The signals caught since the last call.
    fn take(&self) -> Vec<Signal> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        // Non-blocking: stops at empty (EAGAIN).
        while let Ok(n) = nix::unistd::read(self.read.as_raw_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            out.extend(
                buf[..n]
                    .iter()
                    .filter_map(|&b| Signal::try_from(b as i32).ok()),
            );
        }
        out
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for (sig, old) in self.old.drain(..).rev() {
            // SAFETY: reinstating the handler that was there before.
            let _ = unsafe { sigaction(sig, &old) };
        }
        SIGNAL_PIPE.store(-1, Ordering::Relaxed);
    }
}

struct Session {
    ws: WebSocket<Conn>,
    /// stdin is a terminal: raw mode, the detach key, status lines.
    interactive: bool,
    /// The remote left our terminal on the alternate screen.
    alt_screen: bool,
}

impl Session {
    fn pump(&mut self, signals: &Signals) -> Result<End, Failure> {
        if let Some(end) = self.send_resize() {
            return Ok(end);
        }
        let stdin = io::stdin();
        let mut buf = vec![0u8; 16 << 10];
        loop {
            // tungstenite may already hold whole frames that poll() can't see: read them all.
            if let Some(end) = self.drain()? {
                return Ok(end);
            }
            let pending = match self.ws.flush() {
                Ok(()) => false,
                Err(e) if would_block(&e) => true,
                Err(e) => return Ok(End::Closed(lost_reason(&e))),
            };
            let (sig_ready, in_ready) = {
                let sock_ev = if pending {
                    PollFlags::POLLIN | PollFlags::POLLOUT
                } else {
                    PollFlags::POLLIN
                };
                let mut fds = vec![
                    PollFd::new(self.ws.get_ref().as_fd(), sock_ev),
                    PollFd::new(signals.read.as_fd(), PollFlags::POLLIN),
                ];
                // Stop taking keystrokes while the daemon isn't taking them.
                if !pending {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(io::Error::from(e).into()),
                }
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[1]), fds.get(2).is_some_and(ready))
            };
            if sig_ready {
                for sig in signals.take() {
                    if sig != Signal::SIGWINCH {
                        return Ok(End::Signal(sig));
                    }
                    if let Some(end) = self.send_resize() {
                        return Ok(end);
                    }
                }
            }
            if in_ready {
                let n = match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                    Ok(0) => return Ok(End::InputEnded),
                    Ok(n) => n,
                    Err(Errno::EINTR | Errno::EAGAIN) => continue,
                    Err(e) => return Err(fail(format!("reading standard input: {e}"))),
                };
                if let Some(end) = self.on_input(&buf[..n]) {
                    return Ok(end);
                }
            }
        }
    }

    /// Handle every message that can be read now.
    fn drain(&mut self) -> Result<Option<End>, Failure> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    if let Some(end) = self.on_event(decode(&t))? {
                        return Ok(Some(end));
                    }
                }
                Ok(Message::Close(f)) => return Ok(Some(End::Closed(close_reason(f)))),
                // Pings are answered by tungstenite; binary frames aren't part of the protocol.
                Ok(_) => {}
                Err(e) if would_block(&e) => return Ok(None),
                Err(e) => return Ok(Some(End::Closed(lost_reason(&e)))),
            }
        }
    }

    fn on_event(&mut self, ev: Event) -> Result<Option<End>, Failure> {
        match ev {
            Event::Hello(labels) if self.interactive => self.note(&format!(
                "[attached: {}; Ctrl-] detaches]",
                labels.join(", ")
            )),
            Event::Output(b) => {
                self.alt_screen = alt_screen_after(self.alt_screen, &b);
                let mut o = io::stdout().lock();
                o.write_all(&b)?;
                o.flush()?;
            }
            Event::Error(m) => self.note(&format!("[error: {m}]")),
            Event::Exit => return Ok(Some(End::Exited)),
            Event::Hello(_) | Event::Ignore => {}
        }
        Ok(None)
    }

    fn on_input(&mut self, input: &[u8]) -> Option<End> {
        let (data, detach) = if self.interactive {
            split_detach(input)
        } else {
            (input, false)
        };
        if !data.is_empty() {
            if let Some(end) = self.send(&data_msg(data)) {
                return Some(end);
            }
        }
        detach.then_some(End::Detached)
    }

    fn send_resize(&mut self) -> Option<End> {
        let (rows, cols) = window_size()?;
        self.send(&ClientMsg::Resize {
            rows: rows.into(),
            cols: cols.into(),
        })
    }

    /// Queue a frame; the loop flushes it when the socket can take it.
    fn send(&mut self, m: &ClientMsg) -> Option<End> {
        match self.ws.write(m.frame()) {
            Ok(()) => None,
            Err(e) if would_block(&e) => None,
            Err(e) => Some(End::Closed(lost_reason(&e))),
        }
    }

    /// A status line on stderr, which in raw mode needs its own carriage return.
    fn note(&self, msg: &str) {
        let eol = if self.interactive { "\r\n" } else { "\n" };
        eprint!("{msg}{eol}");
    }

    /// Say goodbye (flushing queued input first) and read until the daemon answers, bounded:
    /// unread data at close would make TCP reset the connection and could lose that input.
    fn close(&mut self) {
        let c = self.ws.get_ref();
        if c.set_nonblocking(false).is_err() || c.set_timeouts(Some(CLOSE_TIMEOUT)).is_err() {
            return;
        }
        if self.ws.close(None).is_err() {
            return;
        }
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        while Instant::now() < deadline && self.ws.read().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            island_session_path("foo", None, "cli@box"),
            "/v1/islands/foo/session?label=cli%40box"
        );
        assert_eq!(
            island_session_path("foo", Some("a2"), "my phone"),
            "/v1/islands/foo/agents/a2/session?label=my%20phone"
        );
        assert_eq!(
            island_session_path("a/b", Some("x?"), "l&m=n"),
            "/v1/islands/a%2Fb/agents/x%3F/session?label=l%26m%3Dn"
        );
    }

    #[test]
    fn default_label_names_the_client() {
        assert!(default_label().starts_with("cli"));
    }

    #[test]
    fn decodes_server_frames() {
        assert_eq!(
            decode(r#"{"type":"hello","attached":[{"label":"laptop","joined_at":"t"}]}"#),
            Event::Hello(vec!["laptop".into()])
        );
        assert_eq!(decode(r#"{"type":"hello"}"#), Event::Hello(vec![]));
        assert_eq!(
            decode(r#"{"type":"data","b64":"aGkbWzBt"}"#),
            Event::Output(b"hi\x1b[0m".to_vec())
        );
        assert_eq!(
            decode(r#"{"type":"error","b64":"bm8gc3VjaCBhZ2VudA=="}"#),
            Event::Error("no such agent".into())
        );
        assert_eq!(
            decode(r#"{"type":"error","b64":"plain text!"}"#),
            Event::Error("plain text!".into())
        );
        assert_eq!(decode(r#"{"type":"exit"}"#), Event::Exit);
        assert_eq!(decode(r#"{"type":"exit","code":3}"#), Event::Exit);
        assert_eq!(decode(r#"{"type":"presence","x":1}"#), Event::Ignore);
        assert_eq!(decode(r#"{"type":"data","b64":"%%%"}"#), Event::Ignore);
        assert_eq!(decode("not json"), Event::Ignore);
    }

    #[test]
    fn encodes_client_frames() {
        let text = |m: ClientMsg| match m.frame() {
            Message::Text(t) => serde_json::from_str::<serde_json::Value>(&t).unwrap(),
            _ => unreachable!(),
        };
        assert_eq!(
            text(data_msg(b"ls\r")),
            serde_json::json!({"type": "data", "b64": "bHMN"})
        );
        assert_eq!(
            text(ClientMsg::Resize { rows: 24, cols: 80 }),
            serde_json::json!({"type": "resize", "rows": 24, "cols": 80})
        );
    }

    #[test]
    fn detach_key_cuts_input() {
        assert_eq!(split_detach(b"abc"), (&b"abc"[..], false));
        assert_eq!(split_detach(b"ab\x1dcd"), (&b"ab"[..], true));
        assert_eq!(split_detach(b"\x1d"), (&b""[..], true));
    }

    #[test]
    fn close_reasons() {
        use tungstenite::protocol::frame::coding::CloseCode;
        assert_eq!(close_reason(None), "no reason given");
        assert_eq!(
            close_reason(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "revoked".into()
            })),
            "revoked"
        );
        assert_eq!(
            close_reason(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "".into()
            })),
            "code 1001"
        );
    }

    #[test]
    fn tracks_the_alternate_screen() {
        assert!(alt_screen_after(false, b"x\x1b[?1049hy"));
        assert!(!alt_screen_after(true, b"\x1b[?1049h..\x1b[?1049l"));
        assert!(alt_screen_after(true, b"plain"));
        assert!(!alt_screen_after(false, b"plain"));
        assert!(screen_reset(true).starts_with("\x1b[?1049l"));
        assert!(!screen_reset(false).contains("1049"));
    }

    #[test]
    fn upgrade_errors_show_the_daemon_message() {
        assert_eq!(
            error_message(br#"{"error":"no such island: foo"}"#),
            "no such island: foo"
        );
        assert_eq!(error_message(b" Forbidden\n"), "Forbidden");
        assert_eq!(error_message(b""), "");
    }
}
