//! `GET /v1/stream`: one websocket that carries the event stream and the terminals of any
//! number of agents across islands (docs/stream.md). Control messages are JSON text frames
//! with request ids; terminal bytes are binary frames with a small header naming the island
//! and the agent. Each terminal is a member of the same shared feed a session websocket
//! joins, so flow control, resyncs and observers work as they do there. Role and island
//! scope are checked per operation.
//!
//! One thread serves the connection (it polls the socket, every member's notify pipe, the
//! event and prompt queues' pipe, the revocation pipes and the shutdown latch); a
//! `stream-events` thread moves bus events into the connection's queue, and each prompt runs
//! on a `stream-prompt` thread of its own (a verified prompt takes seconds).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use super::wire::Caller;
use crate::api::Role;
use crate::error::Error;
use crate::events::{EventType, Filter};
use crate::session::feed::{Member, Pull, Want};
use crate::session::wsout::WsOut;
use crate::session::{Registration, Target};
use crate::util::lock;

/// Output frame kinds (the first header byte).
pub const KIND_OUTPUT: u8 = 1;
/// A full screen after the client fell behind (or on attach).
pub const KIND_SCREEN: u8 = 2;
/// Client → server: keystrokes.
pub const KIND_INPUT: u8 = 3;

/// Output queued for the client before the connection stops pulling from its terminals.
const OUT_CAP: usize = 1 << 20;
const PULL: usize = 128 << 10;
/// Events waiting for the connection; past it the subscription is dropped (and told so).
const EVENT_QUEUE: usize = 4096;
/// Terminals one connection may hold.
const MAX_ATTACHED: usize = 64;
/// Prompts one connection may have waiting for delivery at once.
const MAX_PROMPTS: usize = 4;
const PING_EVERY: Duration = Duration::from_secs(20);
const SILENT_LIMIT: Duration = Duration::from_secs(75);
const STALL: Duration = Duration::from_secs(60);

/// A binary frame: `[kind][island length][island][agent length][agent][payload]`.
pub fn frame(kind: u8, island: &str, agent: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(3 + island.len() + agent.len() + payload.len());
    v.push(kind);
    v.push(island.len() as u8);
    v.extend_from_slice(island.as_bytes());
    v.push(agent.len() as u8);
    v.extend_from_slice(agent.as_bytes());
    v.extend_from_slice(payload);
    v
}

/// Split a binary frame into (kind, island, agent, payload).
pub fn parse_frame(b: &[u8]) -> Option<(u8, &str, &str, &[u8])> {
    let kind = *b.first()?;
    let il = *b.get(1)? as usize;
    let island = std::str::from_utf8(b.get(2..2 + il)?).ok()?;
    let al = *b.get(2 + il)? as usize;
    let agent = std::str::from_utf8(b.get(3 + il..3 + il + al)?).ok()?;
    Some((kind, island, agent, &b[3 + il + al..]))
}

#[derive(Deserialize, Debug)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum Op {
    Subscribe {
        #[serde(default)]
        id: Value,
        #[serde(default)]
        islands: Vec<String>,
        #[serde(default)]
        types: Vec<String>,
    },
    Unsubscribe {
        #[serde(default)]
        id: Value,
    },
    Attach {
        #[serde(default)]
        id: Value,
        island: String,
        #[serde(default = "primary")]
        agent: String,
        #[serde(default)]
        rows: Option<u16>,
        #[serde(default)]
        cols: Option<u16>,
        #[serde(default)]
        mode: Option<String>,
        #[serde(default)]
        scrollback: u32,
    },
    Detach {
        #[serde(default)]
        id: Value,
        island: String,
        #[serde(default = "primary")]
        agent: String,
    },
    Input {
        #[serde(default)]
        id: Value,
        island: String,
        #[serde(default = "primary")]
        agent: String,
        b64: String,
    },
    Resize {
        #[serde(default)]
        id: Value,
        island: String,
        #[serde(default = "primary")]
        agent: String,
        rows: u16,
        cols: u16,
    },
    Prompt {
        #[serde(default)]
        id: Value,
        island: String,
        #[serde(default = "primary")]
        agent: String,
        text: String,
        #[serde(default = "yes")]
        submit: bool,
    },
    Ping {
        #[serde(default)]
        id: Value,
    },
}

fn primary() -> String {
    crate::island::agents::PRIMARY.to_string()
}
fn yes() -> bool {
    true
}

/// A pipe a helper thread pokes when it queued something for the connection.
struct Wake {
    rd: OwnedFd,
    wr: OwnedFd,
}

impl Wake {
    fn new() -> io::Result<Wake> {
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        Ok(Wake { rd, wr })
    }
    fn poke(&self) {
        let _ = nix::unistd::write(self.wr.as_fd(), b"x");
    }
    fn drain(&self) {
        let mut b = [0u8; 256];
        while matches!(nix::unistd::read(self.rd.as_raw_fd(), &mut b), Ok(n) if n > 0) {}
    }
}

/// What helper threads hand the connection: text frames, ready to send.
struct Inbox {
    texts: Mutex<VecDeque<String>>,
    wake: Wake,
    /// The event subscription's stop mark (a new subscribe or the connection's end).
    events_stop: Mutex<Arc<AtomicBool>>,
    /// Prompts this connection has in flight (each on its own thread).
    prompts: std::sync::atomic::AtomicUsize,
}

impl Inbox {
    fn push(&self, s: String) {
        lock(&self.texts).push_back(s);
        self.wake.poke();
    }
}

/// One terminal on this connection.
struct Attached {
    island: String,
    agent: String,
    observe: bool,
    member: Member,
    reg: Registration,
    attach: crate::session::feed::AttachFn,
}

/// What a stream reaches.
#[derive(Clone)]
pub struct Ctx {
    pub islands: Arc<crate::island::Islands>,
    pub events: Arc<crate::events::Bus>,
    pub tokens: Arc<crate::auth::Tokens>,
    pub shutdown: Arc<crate::latch::Latch>,
    pub audit: Arc<crate::audit::Ledger>,
}

/// Ledger one stream operation as the router ledgers a request: prompts whatever their
/// outcome, refusals by role or scope (rate-limited per actor); reads and keystrokes are not.
fn ledger(
    audit: &crate::audit::Ledger,
    actor: &str,
    op: &str,
    island: &str,
    status: u16,
    allowed: bool,
) {
    let rec = crate::audit::Record {
        kind: "api.request".into(),
        island: Some(island.to_string()).filter(|n| crate::island::names::validate(n).is_ok()),
        actor: actor.to_string(),
        allowed,
        method: Some("WS".into()),
        route: Some(format!("/v1/stream {op}")),
        status: Some(status),
        ..Default::default()
    };
    if allowed {
        audit.append(rec);
    } else {
        audit.append_refusal(rec);
    }
}

/// Who the connection belongs to, for every operation's checks.
pub struct Who {
    /// How the ledger names the caller.
    pub actor: String,
    pub caller: Caller,
    pub token: Option<String>,
    pub label: String,
}

impl Who {
    fn role(&self) -> Role {
        self.caller.role().unwrap_or(Role::Viewer)
    }
}

/// Serve one multiplexed stream until the client leaves, its token is revoked, or shutdown.
pub fn serve<S: Read + Write + AsRawFd>(stream: S, leftover: Vec<u8>, app: Ctx, who: Who) {
    let fd = stream.as_raw_fd();
    if crate::session::pump::set_nonblocking(fd).is_err() {
        return;
    }
    let ws = crate::session::wsout::accept(stream, leftover, OUT_CAP);
    let inbox = match Wake::new() {
        Ok(wake) => Arc::new(Inbox {
            texts: Mutex::new(VecDeque::new()),
            wake,
            events_stop: Mutex::new(Arc::new(AtomicBool::new(false))),
            prompts: std::sync::atomic::AtomicUsize::new(0),
        }),
        Err(_) => return,
    };
    let mut c = Conn {
        out: WsOut::new(ws),
        app,
        who,
        inbox,
        attached: Vec::new(),
        last_in: Instant::now(),
        rr: 0,
    };
    let end = c.run();
    lock(&c.inbox.events_stop).store(true, Ordering::SeqCst);
    match end {
        End::Revoked => c.close(CloseCode::Policy, "revoked"),
        End::Stopping if crate::daemon::restarting() => {
            c.close(CloseCode::Restart, "daemon restarting; reconnect")
        }
        End::Stopping => c.close(CloseCode::Away, "daemon shutting down"),
        End::TooSlow => c.close(CloseCode::Policy, "client too slow"),
        End::Silent => c.close(CloseCode::Away, "no pong"),
        End::TooBig => c.close(CloseCode::Size, "message too big"),
        End::Gone | End::Closed => {}
    }
}

#[derive(Debug)]
enum End {
    Revoked,
    Stopping,
    TooSlow,
    Silent,
    TooBig,
    Gone,
    Closed,
}

struct Conn<S: Read + Write> {
    out: WsOut<S>,
    app: Ctx,
    who: Who,
    inbox: Arc<Inbox>,
    attached: Vec<Attached>,
    last_in: Instant,
    /// Where the next round of pulls starts, so one busy terminal cannot starve the rest.
    rr: usize,
}

fn reply_ok(id: &Value, extra: Value) -> String {
    let mut v = json!({"type": "reply", "id": id, "ok": true});
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    v.to_string()
}

fn reply_err(id: &Value, e: &Error) -> String {
    json!({"type": "reply", "id": id, "ok": false, "status": super::status_of(e), "error": e.to_string()})
        .to_string()
}

impl<S: Read + Write + AsRawFd> Conn<S> {
    fn send(&mut self, m: Message) -> bool {
        self.out.send(m)
    }

    fn text(&mut self, s: String) -> bool {
        self.send(Message::Text(s))
    }

    fn close(&mut self, code: CloseCode, reason: &'static str) {
        self.out.close(code, reason)
    }

    fn revoked(&self) -> bool {
        self.who
            .token
            .as_deref()
            .is_some_and(|id| !self.app.tokens.exists(id))
    }

    fn run(&mut self) -> End {
        let sock = self.out.ws.get_ref().as_raw_fd();
        let mut last_ping = Instant::now();
        if self.revoked() {
            return End::Revoked;
        }
        let _ = self.text(json!({"type": "hello", "protocol": 1}).to_string());
        loop {
            if self.app.shutdown.is_set() {
                return End::Stopping;
            }
            let room = self.out.pending < OUT_CAP;
            let mut fds = vec![
                libc::pollfd {
                    fd: sock,
                    events: libc::POLLIN
                        | if self.out.pending > 0 {
                            libc::POLLOUT
                        } else {
                            0
                        },
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.inbox.wake.rd.as_raw_fd(),
                    events: if room { libc::POLLIN } else { 0 },
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.app.shutdown.fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            for a in &self.attached {
                fds.push(libc::pollfd {
                    fd: a.member.notify.fd().as_raw_fd(),
                    events: if room { libc::POLLIN } else { 0 },
                    revents: 0,
                });
                fds.push(libc::pollfd {
                    fd: a.reg.waker.fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
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
            // SAFETY: valid pollfds for descriptors this connection keeps open.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) };
            if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return End::Gone;
            }
            if fds[2].revents != 0 {
                return End::Stopping;
            }
            if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                if let Some(end) = self.read() {
                    return end;
                }
            }
            if self.out.pending > 0 && fds[0].revents & libc::POLLOUT != 0 && !self.out.flush() {
                return End::Gone;
            }
            // Queued events and replies go out while the client's queue has room; past it
            // they wait in the inbox (whose event thread gives up, and says so, when full).
            if fds[1].revents != 0 || self.out.pending < OUT_CAP {
                self.inbox.wake.drain();
                while self.out.pending < OUT_CAP {
                    let Some(t) = lock(&self.inbox.texts).pop_front() else {
                        break;
                    };
                    if t == "\u{0}revoked" {
                        return End::Revoked;
                    }
                    if !self.text(t) {
                        return End::Gone;
                    }
                }
            }
            // A revoked token ends the stream, whatever it holds (or does not hold).
            if self.revoked() {
                return End::Revoked;
            }
            // Revoked terminals (presence revocation, a purge) leave; the rest stay.
            let gone: Vec<usize> = (0..self.attached.len())
                .filter(|k| self.attached[*k].reg.waker.revoked())
                .collect();
            for k in gone.into_iter().rev() {
                let a = self.attached.remove(k);
                if self.revoked() {
                    return End::Revoked;
                }
                let t = json!({"type": "detached", "island": a.island, "agent": a.agent, "reason": "revoked"});
                if !self.text(t.to_string()) {
                    return End::Gone;
                }
            }
            if let Some(end) = self.pull_all() {
                return end;
            }
            let now = Instant::now();
            if self
                .out
                .stalled_since
                .is_some_and(|t| now.duration_since(t) > STALL)
            {
                return End::TooSlow;
            }
            if now.duration_since(last_ping) >= PING_EVERY {
                last_ping = now;
                if !self.send(Message::Ping(Vec::new())) {
                    return End::Gone;
                }
            }
            if now.duration_since(self.last_in) > SILENT_LIMIT {
                return End::Silent;
            }
        }
    }

    /// Copy what every terminal has, round robin, while the client's queue has room: rounds
    /// go on while some terminal still had more than one batch waiting.
    fn pull_all(&mut self) -> Option<End> {
        loop {
            let n = self.attached.len();
            if n == 0 || self.out.pending >= OUT_CAP {
                return None;
            }
            let mut more = false;
            let mut ended: Vec<usize> = Vec::new();
            for step in 0..n {
                if self.out.pending >= OUT_CAP {
                    break;
                }
                let k = (self.rr + step) % n;
                let a = &mut self.attached[k];
                a.member.notify.drain();
                let pulled = a.member.feed.pull(&mut a.member.at, PULL);
                let (island, agent) = (a.island.clone(), a.agent.clone());
                match pulled {
                    Pull::Chunks(v) => {
                        let got: usize = v.iter().map(|c| c.bytes.len()).sum();
                        more |= got >= PULL / 2;
                        for c in v {
                            let f = frame(KIND_OUTPUT, &island, &agent, &c.bytes);
                            if !self.send(Message::Binary(f)) {
                                return Some(End::Gone);
                            }
                        }
                    }
                    Pull::Resync(screen) => {
                        more = true;
                        let f = frame(KIND_SCREEN, &island, &agent, &screen);
                        if !self.send(Message::Binary(f)) {
                            return Some(End::Gone);
                        }
                    }
                    Pull::Ended => ended.push(k),
                }
            }
            self.rr = (self.rr + 1) % n.max(1);
            for k in ended.into_iter().rev() {
                let a = self.attached.remove(k);
                let t = json!({"type": "exit", "island": a.island, "agent": a.agent});
                if !self.text(t.to_string()) {
                    return Some(End::Gone);
                }
            }
            if !more {
                return None;
            }
        }
    }

    fn read(&mut self) -> Option<End> {
        loop {
            match self.out.ws.read() {
                Ok(m) => {
                    self.last_in = Instant::now();
                    if self.revoked() {
                        return Some(End::Revoked);
                    }
                    match m {
                        Message::Text(t) => self.op(&t),
                        Message::Binary(b) => self.binary(&b),
                        Message::Close(_) => {
                            // Answer the client's close before going (a clean 1000).
                            self.out.flush_for(Duration::from_millis(500));
                            return Some(End::Closed);
                        }
                        _ => {}
                    }
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return None
                }
                Err(tungstenite::Error::Capacity(_)) => return Some(End::TooBig),
                Err(_) => return Some(End::Gone),
            }
        }
    }

    fn find(&self, island: &str, agent: &str) -> Option<usize> {
        self.attached
            .iter()
            .position(|a| a.island == island && a.agent == agent)
    }

    fn binary(&mut self, b: &[u8]) {
        let Some((kind, island, agent, payload)) = parse_frame(b) else {
            let e =
                Error::bad("a binary frame is [kind][island len][island][agent len][agent][bytes]");
            self.text(reply_err(&Value::Null, &e));
            return;
        };
        if kind != KIND_INPUT {
            let e = Error::bad(format!(
                "binary frame kind {kind} is not input ({KIND_INPUT})"
            ));
            self.text(reply_err(&Value::Null, &e));
            return;
        }
        let (island, agent) = (island.to_string(), agent.to_string());
        if let Err(e) = self.input(&island, &agent, payload) {
            self.text(reply_err(&Value::Null, &e));
        }
    }

    fn input(&mut self, island: &str, agent: &str, b: &[u8]) -> Result<(), Error> {
        let k = self.find(island, agent).ok_or_else(|| {
            Error::Conflict(format!("not attached to {island}/{agent}; attach first"))
        })?;
        let a = &self.attached[k];
        if a.observe {
            ledger(
                &self.app.audit,
                &self.who.actor,
                "input",
                island,
                403,
                false,
            );
            return Err(Error::Forbidden(format!(
                "{island}/{agent} is attached read-only (observer)"
            )));
        }
        if !a.member.feed.input(b) {
            return Err(Error::Conflict(
                "input dropped: the terminal is not reading".into(),
            ));
        }
        Ok(())
    }

    fn op(&mut self, text: &str) {
        let op: Op = match serde_json::from_str(text) {
            Ok(op) => op,
            Err(e) => {
                let id = serde_json::from_str::<Value>(text)
                    .ok()
                    .map(|v| v["id"].clone())
                    .unwrap_or(Value::Null);
                self.text(reply_err(&id, &Error::bad(format!("bad message: {e}"))));
                return;
            }
        };
        let (id, r) = match op {
            Op::Ping { id } => {
                self.text(json!({"type": "pong", "id": id}).to_string());
                return;
            }
            Op::Subscribe { id, islands, types } => (id, self.subscribe(islands, types)),
            Op::Unsubscribe { id } => {
                lock(&self.inbox.events_stop).store(true, Ordering::SeqCst);
                (id, Ok(json!({})))
            }
            Op::Attach {
                id,
                island,
                agent,
                rows,
                cols,
                mode,
                scrollback,
            } => (
                id,
                self.attach(&island, &agent, rows.zip(cols), mode, scrollback),
            ),
            Op::Detach { id, island, agent } => {
                let r = match self.find(&island, &agent) {
                    Some(k) => {
                        self.attached.remove(k);
                        Ok(json!({}))
                    }
                    None => Err(Error::NotFound(format!("not attached to {island}/{agent}"))),
                };
                (id, r)
            }
            Op::Input {
                id,
                island,
                agent,
                b64,
            } => {
                let r = base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| Error::bad(format!("bad base64: {e}")))
                    .and_then(|b| self.input(&island, &agent, &b));
                // Keystrokes are answered only when refused.
                if let Err(e) = r {
                    self.text(reply_err(&id, &e));
                }
                return;
            }
            Op::Resize {
                id,
                island,
                agent,
                rows,
                cols,
            } => (id, self.resize(&island, &agent, rows, cols)),
            Op::Prompt {
                id,
                island,
                agent,
                text,
                submit,
            } => {
                if let Err(e) = self.prompt(id.clone(), island, agent, text, submit) {
                    self.text(reply_err(&id, &e));
                }
                return;
            }
        };
        let s = match r {
            Ok(extra) => reply_ok(&id, extra),
            Err(e) => reply_err(&id, &e),
        };
        self.text(s);
    }

    fn may_see(&self, island: &str) -> Result<(), Error> {
        crate::island::names::validate(island)?;
        if self.who.caller.sees(island) {
            Ok(())
        } else {
            ledger(
                &self.app.audit,
                &self.who.actor,
                "scope",
                island,
                404,
                false,
            );
            Err(Error::island_not_found(island))
        }
    }

    fn subscribe(&mut self, mut islands: Vec<String>, types: Vec<String>) -> Result<Value, Error> {
        for i in &islands {
            self.may_see(i)?;
        }
        if let (true, Some(scope)) = (islands.is_empty(), self.who.caller.scope()) {
            islands = scope.to_vec();
        }
        let types = types
            .iter()
            .map(|t| {
                t.parse::<EventType>()
                    .map_err(|_| Error::bad(format!("unknown event type {t:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A new subscription replaces the old one.
        let stop = Arc::new(AtomicBool::new(false));
        std::mem::replace(&mut *lock(&self.inbox.events_stop), stop.clone())
            .store(true, Ordering::SeqCst);
        let (_, rx) =
            self.app
                .events
                .subscribe(Filter { islands, types }, 0, self.who.token.clone());
        let inbox = self.inbox.clone();
        let (tokens, token) = (self.app.tokens.clone(), self.who.token.clone());
        std::thread::Builder::new()
            .name("stream-events".into())
            .spawn(move || loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(e) => {
                        if lock(&inbox.texts).len() >= EVENT_QUEUE {
                            inbox.push(
                                json!({"type": "dropped", "reason": "consumer too slow"})
                                    .to_string(),
                            );
                            return;
                        }
                        inbox.push(json!({"type": "event", "event": &*e}).to_string());
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(_) => {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        if token.as_deref().is_some_and(|id| !tokens.exists(id)) {
                            inbox.push("\u{0}revoked".into());
                        } else {
                            inbox.push(
                                json!({"type": "dropped", "reason": "consumer too slow"})
                                    .to_string(),
                            );
                        }
                        return;
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the event thread: {e}")))?;
        Ok(json!({}))
    }

    fn attach(
        &mut self,
        island: &str,
        agent: &str,
        size: Option<(u16, u16)>,
        mode: Option<String>,
        scrollback: u32,
    ) -> Result<Value, Error> {
        self.may_see(island)?;
        let observe = match mode.as_deref() {
            None | Some("interactive") => false,
            Some("observe") => true,
            Some(_) => return Err(Error::bad("mode must be interactive or observe")),
        } || self.who.role() == Role::Viewer;
        if let Some((r, c)) = size {
            if !(1..=1000).contains(&r) || !(1..=1000).contains(&c) {
                return Err(Error::bad("rows and cols must be 1..=1000"));
            }
        }
        if scrollback > crate::island::screen::MAX_SCROLLBACK {
            return Err(Error::bad("scrollback must be 0..=10000"));
        }
        if self.find(island, agent).is_some() {
            return Err(Error::Conflict(format!(
                "already attached to {island}/{agent}"
            )));
        }
        if self.attached.len() >= MAX_ATTACHED {
            return Err(Error::Conflict(format!(
                "one stream holds at most {MAX_ATTACHED} terminals; detach one first"
            )));
        }
        let spec = self
            .app
            .islands
            .session_spec(island, Some(agent), &self.who.label, !observe)?;
        let hub = self.app.islands.hub.clone();
        let reg = hub
            .join(
                spec.target.clone(),
                &self.who.label,
                self.who.token.clone(),
                observe,
            )
            .map_err(|e| Error::Internal(format!("cannot register the client: {e}")))?;
        let (rows, cols) = size
            .or_else(|| hub.largest(&spec.target, reg.id))
            .unwrap_or((24, 80));
        hub.set_size(reg.id, rows, cols);
        if scrollback > 0 {
            let out = self
                .app
                .islands
                .history_bytes(island, agent, scrollback, rows);
            if !out.is_empty() {
                self.send(Message::Binary(frame(KIND_OUTPUT, island, agent, &out)));
            }
        }
        let want = Want {
            target: spec.target.clone(),
            rows,
            cols,
            observe,
        };
        let (member, snap) = hub
            .feeds
            .join(&want, reg.id, &spec.attach)
            .map_err(|e| Error::Internal(format!("cannot start the terminal: {e}")))?;
        if !snap.is_empty() {
            self.send(Message::Binary(frame(KIND_SCREEN, island, agent, &snap)));
        }
        self.attached.push(Attached {
            island: island.to_string(),
            agent: agent.to_string(),
            observe,
            member,
            reg,
            attach: spec.attach,
        });
        Ok(
            json!({"island": island, "agent": agent, "read_only": observe, "rows": rows, "cols": cols}),
        )
    }

    fn resize(&mut self, island: &str, agent: &str, rows: u16, cols: u16) -> Result<Value, Error> {
        if !(1..=1000).contains(&rows) || !(1..=1000).contains(&cols) {
            return Err(Error::bad("rows and cols must be 1..=1000"));
        }
        let k = self.find(island, agent).ok_or_else(|| {
            Error::Conflict(format!("not attached to {island}/{agent}; attach first"))
        })?;
        let hub = self.app.islands.hub.clone();
        let a = &mut self.attached[k];
        if a.observe {
            return Err(Error::Forbidden(format!(
                "{island}/{agent} is attached read-only (observer)"
            )));
        }
        hub.set_size(a.reg.id, rows, cols);
        if a.member.feed.size() == (rows, cols) {
            return Ok(json!({}));
        }
        if hub
            .feeds
            .resize_alone(&a.member.feed, a.member.client, rows, cols)
        {
            return Ok(json!({}));
        }
        let want = Want {
            target: Target::Agent {
                island: island.to_string(),
                agent: agent.to_string(),
            },
            rows,
            cols,
            observe: false,
        };
        let (member, snap) = hub
            .feeds
            .join(&want, a.reg.id, &a.attach)
            .map_err(|e| Error::Internal(format!("cannot resize: {e}")))?;
        a.member = member;
        if !snap.is_empty() {
            self.send(Message::Binary(frame(KIND_SCREEN, island, agent, &snap)));
        }
        Ok(json!({}))
    }

    fn prompt(
        &mut self,
        id: Value,
        island: String,
        agent: String,
        text: String,
        submit: bool,
    ) -> Result<(), Error> {
        self.may_see(&island)?;
        if self.who.role() < Role::Operator {
            ledger(
                &self.app.audit,
                &self.who.actor,
                "prompt",
                &island,
                403,
                false,
            );
            return Err(Error::Forbidden("a prompt needs an operator token".into()));
        }
        if text.len() > crate::island::screen::MAX_PROMPT {
            return Err(Error::TooLarge("a prompt is at most 262144 bytes".into()));
        }
        if self.inbox.prompts.load(Ordering::SeqCst) >= MAX_PROMPTS {
            return Err(Error::TooManyRequests(format!(
                "at most {MAX_PROMPTS} prompts in flight per stream; wait for a reply"
            )));
        }
        self.inbox.prompts.fetch_add(1, Ordering::SeqCst);
        let (islands, inbox) = (self.app.islands.clone(), self.inbox.clone());
        let (audit, actor) = (self.app.audit.clone(), self.who.actor.clone());
        std::thread::Builder::new()
            .name("stream-prompt".into())
            .spawn(move || {
                let r = islands.prompt(&island, Some(&agent), &text, submit);
                inbox.prompts.fetch_sub(1, Ordering::SeqCst);
                let status = r.as_ref().map(|_| 200).unwrap_or_else(super::status_of);
                ledger(&audit, &actor, "prompt", &island, status, status != 403);
                inbox.push(match r {
                    Ok(d) => reply_ok(&id, serde_json::to_value(d).unwrap_or_else(|_| json!({}))),
                    Err(e) => reply_err(&id, &e),
                });
            })
            .map_err(|e| Error::Internal(format!("cannot start the prompt thread: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f = frame(KIND_OUTPUT, "isl", "a1", b"\x1b[0mhi");
        assert_eq!(&f[..8], b"\x01\x03isl\x02a1");
        assert_eq!(
            parse_frame(&f),
            Some((KIND_OUTPUT, "isl", "a1", &b"\x1b[0mhi"[..]))
        );
        assert_eq!(parse_frame(b""), None);
        assert_eq!(parse_frame(b"\x03\x09ab"), None);
        assert_eq!(
            parse_frame(b"\x03\x00\x00"),
            Some((KIND_INPUT, "", "", &b""[..]))
        );
    }

    #[test]
    fn ops_parse_strictly() {
        let op: Op = serde_json::from_str(r#"{"op":"attach","id":7,"island":"x"}"#).unwrap();
        assert!(matches!(op, Op::Attach { ref agent, .. } if agent == "a1"));
        assert!(serde_json::from_str::<Op>(r#"{"op":"attach","island":"x","bogus":1}"#).is_err());
        assert!(serde_json::from_str::<Op>(r#"{"op":"launch"}"#).is_err());
    }
}
