//! Shared terminal feeds. Websocket clients of one target and one size share one attach (one
//! `docker exec -it … tmux attach`, one tmux client): its output is read once by the feed's
//! thread, kept in a bounded ring of chunks, and copied to every member. A server-side screen
//! (the `vt100` parser, fed the same bytes) gives a late joiner, or a member that fell further
//! behind than the ring, a full screen to start from (a resync), so no member sees a gap or a
//! torn escape sequence, and nobody else's screen is redrawn for it. Clients of different sizes
//! get different feeds, so tmux's own multi-attach (window-size latest) still applies between
//! them.
//!
//! The feed thread never waits on a member: it appends and pokes each member's pipe. A member
//! that reads nothing keeps only its place in the ring; when it comes back behind the ring's
//! start it is resynced.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::Target;
use crate::util::lock;

/// Output kept per feed; a member further behind than this is resynced.
pub const RING_BYTES: usize = 1 << 20;
/// Keystrokes queued for a feed's terminal before input is refused.
pub const IN_CAP: usize = 1 << 20;
/// A trailing escape sequence is held back (so every chunk ends between sequences) at most
/// this long; past it the bytes go out as they are.
const HOLD_MAX: usize = 4096;
/// docker's CLI starts watching SIGWINCH only once its first resize call returns, just after
/// the exec starts: a resize in that gap never reaches the island. A resize this soon after
/// the attach starts is signalled again, after the gap has surely closed.
const EARLY: Duration = Duration::from_secs(3);
const RESIGNAL_AFTER: [Duration; 2] = [Duration::from_millis(250), Duration::from_millis(1500)];

/// What starts one attach: a fresh mark each time (two feeds of one agent are two clients).
pub struct Attach {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Run once the attach command is gone: ends what it left running out of this host's
    /// reach (the in-island tmux client).
    pub on_end: Option<Box<dyn FnOnce() + Send>>,
}

/// Makes an `Attach`; `true` asks for a read-only client that does not size the window.
pub type AttachFn = Arc<dyn Fn(bool) -> Attach + Send + Sync>;

/// One piece of output, with its websocket text frame made once for every member.
pub struct Chunk {
    pub seq: u64,
    pub bytes: Vec<u8>,
    frame: OnceLock<String>,
}

impl Chunk {
    pub fn frame(&self) -> &str {
        self.frame
            .get_or_init(|| super::pump::data_frame(&self.bytes))
    }
}

/// Wakes a member's thread: a pipe it polls, written at most once until drained.
pub struct Notify {
    rd: OwnedFd,
    wr: OwnedFd,
    pending: AtomicBool,
}

impl Notify {
    fn new() -> io::Result<Notify> {
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        Ok(Notify {
            rd,
            wr,
            pending: AtomicBool::new(false),
        })
    }
    fn poke(&self) {
        if !self.pending.swap(true, Ordering::SeqCst) {
            let _ = nix::unistd::write(self.wr.as_fd(), b"x");
        }
    }
    /// Empty the pipe, then re-arm; call before reading the ring. In this order a poke
    /// between the two finds the mark still set and writes nothing, but its output was
    /// published before it and the read that follows sees it; any later poke writes.
    pub fn drain(&self) {
        let mut b = [0u8; 64];
        while matches!(nix::unistd::read(self.rd.as_raw_fd(), &mut b), Ok(n) if n > 0) {}
        self.pending.store(false, Ordering::SeqCst);
    }
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.rd.as_fd()
    }
}

struct State {
    chunks: VecDeque<Arc<Chunk>>,
    bytes: usize,
    next_seq: u64,
    screen: vt100::Parser,
    /// The attach has drawn (docker made the terminal raw; keystrokes may go).
    drawn: bool,
    ended: bool,
    members: HashMap<u64, Arc<Notify>>,
}

/// One shared attach.
pub struct Feed {
    pub id: u64,
    pub target: Target,
    pub read_only: bool,
    master: OwnedFd,
    st: Mutex<State>,
    input: Mutex<Vec<u8>>,
    /// Set when the last member left (or the daemon stops): the thread ends the attach.
    stop: AtomicBool,
    wake: Notify,
    spawned: Instant,
    resignal: Mutex<Vec<Instant>>,
}

/// What a member reads next.
pub enum Pull {
    /// Chunks from its place on (possibly none).
    Chunks(Vec<Arc<Chunk>>),
    /// It fell behind the ring (or just joined): a full screen, then live from `next`.
    Resync(Vec<u8>),
    /// The terminal's program ended (and everything before was read).
    Ended,
}

impl Feed {
    /// The terminal's size (the model's: one place holds it).
    pub fn size(&self) -> (u16, u16) {
        lock(&self.st).screen.screen().size()
    }

    /// The full screen now, and the sequence of the first chunk after it.
    fn snapshot(st: &State) -> (Vec<u8>, u64) {
        let mut v = b"\x1b[m\x1b[H\x1b[2J".to_vec();
        v.extend_from_slice(&st.screen.screen().state_formatted());
        (v, st.next_seq)
    }

    /// What a member at `at` reads next (at most `max` bytes of chunks); moves `at`.
    pub fn pull(&self, at: &mut u64, max: usize) -> Pull {
        let st = lock(&self.st);
        let first = st.chunks.front().map(|c| c.seq).unwrap_or(st.next_seq);
        if *at < first {
            let (snap, next) = Feed::snapshot(&st);
            *at = next;
            return Pull::Resync(snap);
        }
        let mut out = Vec::new();
        let mut n = 0;
        let skip = (*at - first) as usize;
        for c in st.chunks.iter().skip(skip) {
            if n > 0 && n + c.bytes.len() > max {
                break;
            }
            n += c.bytes.len();
            *at = c.seq + 1;
            out.push(c.clone());
        }
        if out.is_empty() && st.ended {
            return Pull::Ended;
        }
        Pull::Chunks(out)
    }

    /// Queue keystrokes for the terminal; false when the queue is full.
    pub fn input(&self, b: &[u8]) -> bool {
        let mut q = lock(&self.input);
        if q.len() + b.len() > IN_CAP {
            return false;
        }
        q.extend_from_slice(b);
        if lock(&self.st).drawn {
            write_some(&self.master, &mut q);
        }
        if !q.is_empty() {
            self.wake.poke();
        }
        true
    }

    /// Size the terminal (its only member asked).
    pub fn resize(&self, rows: u16, cols: u16) {
        super::pump::set_winsize(self.master.as_raw_fd(), rows, cols);
        lock(&self.st).screen.screen_mut().set_size(rows, cols);
        let now = Instant::now();
        if now.duration_since(self.spawned) < EARLY {
            *lock(&self.resignal) = RESIGNAL_AFTER.iter().map(|d| now + *d).collect();
            self.wake.poke();
        }
    }

    /// Hand what is queued to the terminal and wait until it has been quiet for 50 ms, at
    /// most 300 ms: a client that typed and closed at once keeps its keystrokes.
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            let empty = {
                let mut q = lock(&self.input);
                if lock(&self.st).drawn {
                    write_some(&self.master, &mut q);
                }
                q.is_empty()
            };
            if empty {
                std::thread::sleep(Duration::from_millis(50));
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The feed thread: read the terminal, keep the ring and the screen, poke the members.
    fn run(self: Arc<Self>, mut child: Child, on_end: Option<Box<dyn FnOnce() + Send>>) {
        let mut buf = vec![0u8; 32 << 10];
        let mut held: Vec<u8> = Vec::new();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let want_out = !lock(&self.input).is_empty() && lock(&self.st).drawn;
            let mut fds = [
                libc::pollfd {
                    fd: self.master.as_raw_fd(),
                    events: libc::POLLIN | if want_out { libc::POLLOUT } else { 0 },
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.wake.rd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let due = lock(&self.resignal).first().copied();
            let wait = due
                .map(|t| t.saturating_duration_since(Instant::now()).as_millis() as i32 + 1)
                .unwrap_or(1000);
            // SAFETY: two valid pollfds for fds this feed keeps open.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, wait) };
            if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break;
            }
            if fds[1].revents != 0 {
                self.wake.drain();
            }
            {
                let mut r = lock(&self.resignal);
                if r.first().is_some_and(|t| Instant::now() >= *t) {
                    r.remove(0);
                    signal_winch(self.master.as_raw_fd());
                }
            }
            if fds[0].revents & libc::POLLOUT != 0 {
                write_some(&self.master, &mut lock(&self.input));
            }
            if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                match nix::unistd::read(self.master.as_raw_fd(), &mut buf) {
                    Ok(0) => break,
                    Ok(k) => {
                        held.extend_from_slice(&buf[..k]);
                        let cut = safe_end(&held);
                        let cut = if held.len() - cut > HOLD_MAX {
                            held.len()
                        } else {
                            cut
                        };
                        if cut > 0 {
                            let rest = held.split_off(cut);
                            let bytes = std::mem::replace(&mut held, rest);
                            self.publish(bytes);
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                    // EIO: every holder of the slave side is gone, the program ended.
                    Err(_) => break,
                }
            }
        }
        if !held.is_empty() {
            self.publish(held);
        }
        let members: Vec<Arc<Notify>> = {
            let mut st = lock(&self.st);
            st.ended = true;
            st.members.values().cloned().collect()
        };
        for m in members {
            m.poke();
        }
        super::pump::end_child(&mut child);
        if let Some(f) = on_end {
            f();
        }
    }

    fn publish(&self, bytes: Vec<u8>) {
        let first_draw;
        let members: Vec<Arc<Notify>> = {
            let mut st = lock(&self.st);
            // The model must not take the feed down with it: on a panic it starts afresh
            // (a later resync then shows less, but every member keeps its stream).
            let size = st.screen.screen().size();
            let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                st.screen.process(&bytes)
            }));
            if parsed.is_err() {
                log::warn!(
                    "feed {}: the terminal model failed; starting it afresh",
                    self.id
                );
                st.screen = vt100::Parser::new(size.0, size.1, 0);
            }
            first_draw = !st.drawn;
            st.drawn = true;
            st.bytes += bytes.len();
            let seq = st.next_seq;
            st.next_seq += 1;
            st.chunks.push_back(Arc::new(Chunk {
                seq,
                bytes,
                frame: OnceLock::new(),
            }));
            while st.bytes > RING_BYTES && st.chunks.len() > 1 {
                if let Some(c) = st.chunks.pop_front() {
                    st.bytes -= c.bytes.len();
                }
            }
            st.members.values().cloned().collect()
        };
        if first_draw {
            write_some(&self.master, &mut lock(&self.input));
        }
        for m in members {
            m.poke();
        }
    }
}

/// Which feed a client wants.
#[derive(Clone, Debug)]
pub struct Want {
    pub target: Target,
    pub rows: u16,
    pub cols: u16,
    /// An observer: never sizes a window, never types.
    pub observe: bool,
}

/// Every feed; the one owner of which attach serves whom.
#[derive(Default)]
pub struct Feeds {
    map: Mutex<Vec<Arc<Feed>>>,
    /// Serialises find-or-start, so two clients of a new size share one attach. Held across
    /// the attach's spawn (a fork and exec); `map` never is.
    gate: Mutex<()>,
    next: AtomicU64,
}

/// A client's place in a feed; leaving (drop) ends the feed with its last member.
pub struct Member {
    feeds: Arc<Feeds>,
    pub feed: Arc<Feed>,
    pub client: u64,
    pub notify: Arc<Notify>,
    /// The next chunk this member reads.
    pub at: u64,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.feeds.leave(&self.feed, self.client);
    }
}

impl Feeds {
    pub fn new() -> Arc<Feeds> {
        Arc::new(Feeds::default())
    }

    /// Join (or start) the feed `want` names. Returns the member and the screen to show
    /// first (empty for a feed that has drawn nothing yet).
    pub fn join(
        self: &Arc<Self>,
        want: &Want,
        client: u64,
        attach: &AttachFn,
    ) -> io::Result<(Member, Vec<u8>)> {
        let notify = Arc::new(Notify::new()?);
        let _g = lock(&self.gate);
        let found = {
            let map = lock(&self.map);
            let live = |f: &&Arc<Feed>| f.target == want.target && !lock(&f.st).ended;
            let same = |f: &&Arc<Feed>| f.size() == (want.rows, want.cols);
            if want.observe {
                map.iter()
                    .filter(live)
                    .find(same)
                    .or_else(|| {
                        map.iter().filter(live).max_by_key(|f| {
                            let (r, c) = f.size();
                            u32::from(r) * u32::from(c)
                        })
                    })
                    .cloned()
            } else {
                map.iter()
                    .filter(live)
                    .filter(|f| !f.read_only)
                    .find(same)
                    .cloned()
            }
        };
        let feed = match found {
            Some(f) => f,
            None => self.start(want, attach)?,
        };
        let (snap, at) = {
            let mut st = lock(&feed.st);
            st.members.insert(client, notify.clone());
            if st.drawn {
                Feed::snapshot(&st)
            } else {
                (
                    Vec::new(),
                    st.chunks.front().map(|c| c.seq).unwrap_or(st.next_seq),
                )
            }
        };
        Ok((
            Member {
                feeds: self.clone(),
                feed,
                client,
                notify,
                at,
            },
            snap,
        ))
    }

    fn start(&self, want: &Want, attach: &AttachFn) -> io::Result<Arc<Feed>> {
        let a = attach(want.observe);
        let (rows, cols) = (want.rows, want.cols);
        let argv: Vec<String> = a
            .argv
            .iter()
            .map(|s| {
                s.replace("{rows}", &rows.to_string())
                    .replace("{cols}", &cols.to_string())
            })
            .collect();
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let (target, read_only, env, on_end) = (want.target.clone(), want.observe, a.env, a.on_end);
        // The attach is started by the feed's own thread, which lives exactly as long as it:
        // a child's parent-death signal follows the thread that spawned it, so a joiner's
        // connection thread (gone when that client leaves) must not be its parent.
        let (tx, rx) = std::sync::mpsc::channel::<io::Result<Arc<Feed>>>();
        let spawned = std::thread::Builder::new()
            .name(format!("feed-{id}"))
            .spawn(move || {
                let (master, child) = match super::pump::spawn_on_pty(&argv, &env, rows, cols) {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let wake = match Notify::new() {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        let mut child = child;
                        super::pump::end_child(&mut child);
                        return;
                    }
                };
                let feed = Arc::new(Feed {
                    id,
                    target,
                    read_only,
                    master,
                    st: Mutex::new(State {
                        chunks: VecDeque::new(),
                        bytes: 0,
                        next_seq: 0,
                        screen: vt100::Parser::new(rows, cols, 0),
                        drawn: false,
                        ended: false,
                        members: HashMap::new(),
                    }),
                    input: Mutex::new(Vec::new()),
                    stop: AtomicBool::new(false),
                    wake,
                    spawned: Instant::now(),
                    resignal: Mutex::new(Vec::new()),
                });
                if tx.send(Ok(feed.clone())).is_err() {
                    feed.stop.store(true, Ordering::SeqCst);
                }
                feed.run(child, on_end);
            })
            .map_err(|e| io::Error::other(format!("cannot start a feed thread: {e}")))?;
        drop(spawned);
        let feed = rx
            .recv()
            .map_err(|_| io::Error::other("the feed thread ended before its attach started"))??;
        lock(&self.map).push(feed.clone());
        Ok(feed)
    }

    fn leave(&self, feed: &Arc<Feed>, client: u64) {
        let last = {
            let mut st = lock(&feed.st);
            st.members.remove(&client);
            st.members.is_empty()
        };
        if last {
            let _g = lock(&self.gate);
            // Someone may have joined between the two locks.
            if !lock(&feed.st).members.is_empty() {
                return;
            }
            lock(&self.map).retain(|f| !Arc::ptr_eq(f, feed));
            feed.stop.store(true, Ordering::SeqCst);
            feed.wake.poke();
        }
    }

    /// Resize `feed` in place if `client` is its only member (under the gate, so nobody
    /// joins at the old size meanwhile); false when it is shared.
    pub fn resize_alone(&self, feed: &Feed, client: u64, rows: u16, cols: u16) -> bool {
        let _g = lock(&self.gate);
        let alone = {
            let st = lock(&feed.st);
            st.members.len() == 1 && st.members.contains_key(&client)
        };
        if alone {
            feed.resize(rows, cols);
        }
        alone
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

/// Tell the terminal's foreground process group its size changed (as TIOCSWINSZ did).
fn signal_winch(master: std::os::fd::RawFd) {
    let mut pgrp: libc::pid_t = 0;
    // SAFETY: TIOCGPGRP writes one pid_t through a valid pointer.
    if unsafe { libc::ioctl(master, libc::TIOCGPGRP, &mut pgrp) } == 0 && pgrp > 0 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgrp),
            nix::sys::signal::Signal::SIGWINCH,
        );
    }
}

/// The length of the longest prefix of `b` that ends between escape sequences and UTF-8
/// characters, so a member that starts at a chunk boundary never starts inside either.
pub fn safe_end(b: &[u8]) -> usize {
    // Only the tail can be unfinished: look back at most HOLD_MAX bytes for an ESC.
    let from = b.len().saturating_sub(HOLD_MAX);
    if let Some(i) = b[from..].iter().rposition(|&c| c == 0x1b).map(|i| i + from) {
        if !sequence_complete(&b[i..]) {
            // That ESC may open the terminator (ESC \) of a string sequence begun earlier:
            // then the cut goes before the string's start.
            return string_start(&b[from..i]).map(|j| j + from).unwrap_or(i);
        }
    }
    // An unfinished UTF-8 character at the very end.
    crate::util::utf8_end(b)
}

/// Where an unterminated string sequence (OSC, DCS, APC, PM, SOS) starts in `b`, if one
/// runs to its end.
fn string_start(b: &[u8]) -> Option<usize> {
    let j = b
        .windows(2)
        .rposition(|w| w[0] == 0x1b && matches!(w[1], b']' | b'P' | b'_' | b'^' | b'X'))?;
    let body = &b[j + 2..];
    let ended = body.contains(&0x07) || body.windows(2).any(|w| w == b"\x1b\\");
    (!ended).then_some(j)
}

/// Whether `s` (starting at ESC) holds a whole escape sequence.
fn sequence_complete(s: &[u8]) -> bool {
    if s.len() < 2 {
        return false;
    }
    match s[1] {
        // CSI: parameters and intermediates, then a final byte 0x40..=0x7e.
        b'[' => s[2..].iter().any(|&c| (0x40..=0x7e).contains(&c)),
        // OSC, DCS, APC, PM, SOS: ended by BEL (OSC) or ST (ESC \).
        b']' | b'P' | b'_' | b'^' | b'X' => {
            s[2..].contains(&0x07) || s[2..].windows(2).any(|w| w == b"\x1b\\")
        }
        // Character set and other intermediates: one more byte.
        b'(' | b')' | b'*' | b'+' | b'#' | b'%' | b' ' => s.len() >= 3,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_end_between_sequences() {
        assert_eq!(safe_end(b"abc"), 3);
        assert_eq!(safe_end(b"abc\x1b"), 3);
        assert_eq!(safe_end(b"abc\x1b["), 3);
        assert_eq!(safe_end(b"abc\x1b[1;2"), 3);
        assert_eq!(safe_end(b"abc\x1b[1;2H"), 9);
        assert_eq!(safe_end(b"a\x1b]0;title"), 1);
        assert_eq!(safe_end(b"a\x1b]0;title\x07"), 11);
        assert_eq!(safe_end(b"a\x1b(B"), 4);
        // The ESC of a string's terminator: cut before the string.
        assert_eq!(safe_end(b"ab\x1b]0;title\x1b"), 2);
        assert_eq!(safe_end(b"ab\x1b]0;t\x07cd\x1b"), 10);
        assert_eq!(safe_end(b"a\x1b("), 1);
        assert_eq!(safe_end("añ".as_bytes()), 3);
        assert_eq!(safe_end(&"añ".as_bytes()[..2]), 1);
        assert_eq!(safe_end(&"a€".as_bytes()[..3]), 1);
        assert_eq!(safe_end("a€".as_bytes()), 4);
    }
}
