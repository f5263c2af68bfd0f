//! The one way this program runs another program: argv logged at debug, stdin fed from a
//! buffer or a reader, stdout/stderr captured with a cap, a timeout that kills the child.
//! Long-lived children (log followers, event streams) come from `spawn_stream`, which is
//! killed and reaped when its guard drops.

use crate::util::lock;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// What a finished command left behind.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Set when the child was killed for running past its timeout.
    pub timed_out: bool,
    /// Set when stdout or stderr went past the capture cap and was cut.
    pub truncated: bool,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.status == Some(0) && !self.timed_out
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Where a command's stdin comes from.
pub enum Input<'a> {
    None,
    Bytes(&'a [u8]),
    Reader(&'a mut (dyn Read + Send)),
}

/// A command to run once, to completion.
pub struct Run<'a> {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    input: Input<'a>,
    timeout: Duration,
    cap: usize,
    dir: Option<std::path::PathBuf>,
}

/// Default cap on captured output per stream.
pub const DEFAULT_CAP: usize = 16 << 20;

impl<'a> Run<'a> {
    pub fn new<S: AsRef<str>>(argv: &[S]) -> Self {
        Run {
            argv: argv.iter().map(|s| s.as_ref().to_string()).collect(),
            env: Vec::new(),
            input: Input::None,
            timeout: Duration::from_secs(60),
            cap: DEFAULT_CAP,
            dir: None,
        }
    }
    /// Run it in this working folder.
    pub fn dir(mut self, d: &std::path::Path) -> Self {
        self.dir = Some(d.to_path_buf());
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    pub fn input(mut self, input: Input<'a>) -> Self {
        self.input = input;
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn cap(mut self, cap: usize) -> Self {
        self.cap = cap;
        self
    }

    /// Run to completion. An `Err` means the program could not be started (or its pipes
    /// failed); a non-zero exit or a timeout is an `Ok` with that recorded.
    pub fn run(self) -> io::Result<Output> {
        let started = Instant::now();
        log::debug!("run {}", shell_words(&self.argv));
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .stdin(match self.input {
                Input::None => Stdio::null(),
                _ => Stdio::piped(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(d) = &self.dir {
            cmd.current_dir(d);
        }
        // Its own process group, so a timeout kills whatever it started too (a grandchild
        // holding our pipes would otherwise keep the capture threads waiting).
        cmd.process_group(0);
        // No parent-death signal here: it needs a pre_exec hook, which makes every spawn a
        // full fork of the daemon instead of a posix_spawn, on the hot path of every exec. A
        // one-shot child is bounded by its timeout; should the daemon die first, its pipes'
        // readers are gone and it ends on its next write. Long-lived streams keep the signal.
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", self.argv[0])))?;
        let out_t = capture(child.stdout.take(), self.cap, "proc-stdout")?;
        let err_t = capture(child.stderr.take(), self.cap, "proc-stderr")?;

        // Feed stdin from a scoped thread so the timeout still holds when the child stops
        // reading; a child that exits early ends the copy with EPIPE, which is not an error.
        let stdin = child.stdin.take();
        let input = self.input;
        let argv0 = self.argv[0].clone();
        let deadline = started + self.timeout;
        let mut timed_out = false;
        let status = thread::scope(|s| -> io::Result<std::process::ExitStatus> {
            if let Some(mut stdin) = stdin {
                thread::Builder::new()
                    .name("proc-stdin".into())
                    .spawn_scoped(s, move || {
                        let fed = match input {
                            Input::Bytes(b) => stdin.write_all(b),
                            Input::Reader(r) => io::copy(r, &mut stdin).map(|_| ()),
                            Input::None => Ok(()),
                        };
                        if let Err(e) = fed {
                            if e.kind() != io::ErrorKind::BrokenPipe {
                                log::debug!("stdin to {argv0} failed: {e}");
                            }
                        }
                    })?;
            }
            // A pidfd lets us sleep in poll() until the child exits or the deadline passes;
            // without one (old kernels) fall back to short sleeps.
            let pidfd = pidfd_open(child.id());
            loop {
                match child.try_wait()? {
                    Some(st) => return Ok(st),
                    None if Instant::now() >= deadline => {
                        kill_group(&mut child);
                        timed_out = true;
                        return child.wait();
                    }
                    None => match &pidfd {
                        Some(fd) => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            let mut p = libc::pollfd {
                                fd: fd.as_raw_fd(),
                                events: libc::POLLIN,
                                revents: 0,
                            };
                            // SAFETY: one valid pollfd on an fd we own.
                            unsafe {
                                libc::poll(&mut p, 1, left.as_millis().clamp(1, 60_000) as i32)
                            };
                        }
                        None => thread::sleep(poll_step(started)),
                    },
                }
            }
        })?;
        let (stdout, t1) = out_t.join().unwrap_or_default();
        let (stderr, t2) = err_t.join().unwrap_or_default();
        let out = Output {
            status: status.code(),
            stdout,
            stderr,
            timed_out,
            truncated: t1 || t2,
        };
        log::debug!(
            "done {} in {:?}: status {:?}{}",
            self.argv[0],
            started.elapsed(),
            out.status,
            if timed_out { " (timed out)" } else { "" }
        );
        Ok(out)
    }
}

/// Kills a streamed child's process group if it is still running at its deadline (a stream
/// has no `Run` timeout of its own). Dropping the guard stands the watchdog down at once.
pub struct Watchdog {
    state: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Watchdog {
    pub fn new(pid: u32, limit: Duration, what: &str) -> io::Result<Watchdog> {
        let state = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let st = state.clone();
        let what = what.to_string();
        thread::Builder::new()
            .name("proc-watchdog".into())
            .spawn(move || {
                let (done, cv) = &*st;
                let guard = lock(done);
                let (guard, res) = cv
                    .wait_timeout_while(guard, limit, |d| !*d)
                    .unwrap_or_else(|e| e.into_inner());
                if res.timed_out() && !*guard {
                    log::warn!("{what} ran past {limit:?}; killing it");
                    if let Ok(p) = i32::try_from(pid) {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(p),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            })?;
        Ok(Watchdog { state })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (done, cv) = &*self.state;
        *lock(done) = true;
        cv.notify_all();
    }
}

/// A pollable fd that becomes readable when process `pid` exits (Linux 5.3+).
fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a non-negative result is a fresh fd that we now own.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// How long to wait between `try_wait` polls: fine-grained at first so quick commands return
/// quickly, coarser for long ones so a 10-minute build does not spin.
fn poll_step(started: Instant) -> Duration {
    match started.elapsed().as_millis() {
        0..=20 => Duration::from_micros(200),
        21..=500 => Duration::from_millis(2),
        _ => Duration::from_millis(20),
    }
}

type Captured = thread::JoinHandle<(Vec<u8>, bool)>;

fn capture<R: Read + Send + 'static>(r: Option<R>, cap: usize, name: &str) -> io::Result<Captured> {
    thread::Builder::new().name(name.into()).spawn(move || {
        let mut buf = Vec::new();
        let mut truncated = false;
        if let Some(mut r) = r {
            let mut chunk = [0u8; 16384];
            loop {
                match r.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = cap.saturating_sub(buf.len());
                        if n > room {
                            truncated = true;
                        }
                        buf.extend_from_slice(&chunk[..n.min(room)]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
        (buf, truncated)
    })
}

/// A long-lived child whose stdout is read as a stream. Killed and reaped on drop.
pub struct Stream {
    child: Child,
    pub stdout: Option<ChildStdout>,
    stderr_rx: Option<mpsc::Receiver<Vec<u8>>>,
}

impl Stream {
    /// Collected stderr, once the child has ended (empty if it is still running).
    pub fn stderr(&mut self) -> String {
        self.stderr_rx
            .take()
            .and_then(|rx| rx.recv_timeout(Duration::from_secs(2)).ok())
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .unwrap_or_default()
    }
    /// Wait for exit; returns the exit code.
    pub fn wait(&mut self) -> Option<i32> {
        self.child.wait().ok().and_then(|s| s.code())
    }
    /// Whether the child still runs (reaped here when it ended).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    pub fn kill(&mut self) {
        kill_group(&mut self.child);
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        let _ = self.child.wait();
    }
}

/// Start a long-lived child with stdout piped for streaming; stderr is collected up to 64 KiB.
pub fn spawn_stream<S: AsRef<str>>(argv: &[S], stdin_null: bool) -> io::Result<Stream> {
    let argv: Vec<String> = argv.iter().map(|s| s.as_ref().to_string()).collect();
    log::debug!("spawn {}", shell_words(&argv));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .process_group(0)
        .stdin(if stdin_null {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", argv[0])))?;
    let stderr = child.stderr.take();
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("proc-stream-err".into())
        .spawn(move || {
            let mut buf = Vec::new();
            if let Some(e) = stderr {
                let _ = e.take(64 << 10).read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        })?;
    Ok(Stream {
        stdout: child.stdout.take(),
        child,
        stderr_rx: Some(rx),
    })
}

/// A child (say `docker events`) must not outlive a daemon killed with SIGKILL. The signal
/// follows the spawning thread; every spawner here waits for or owns its child until it ends.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// SIGKILL a child and everything in its process group.
pub(crate) fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.kill();
}

/// Quote argv for a log line.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = Run::new(&["sh", "-c", "echo hi; echo err >&2; exit 3"])
            .run()
            .unwrap();
        assert_eq!(out.stdout, b"hi\n");
        assert_eq!(out.stderr_str(), "err");
        assert_eq!(out.status, Some(3));
        assert!(!out.ok());
    }

    #[test]
    fn feeds_stdin() {
        let out = Run::new(&["cat"])
            .input(Input::Bytes(b"abc"))
            .run()
            .unwrap();
        assert_eq!(out.stdout, b"abc");
    }

    #[test]
    fn kills_on_timeout() {
        let t = Instant::now();
        let out = Run::new(&["sleep", "30"])
            .timeout(Duration::from_millis(200))
            .run()
            .unwrap();
        assert!(out.timed_out);
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn timeout_kills_grandchildren_holding_the_pipes() {
        let t = Instant::now();
        let out = Run::new(&["sh", "-c", "sleep 30 & sleep 30; echo never"])
            .timeout(Duration::from_millis(300))
            .run()
            .unwrap();
        assert!(out.timed_out);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }

    #[test]
    fn watchdog_ends_a_stream_past_its_deadline() {
        let mut s = spawn_stream(&["sh", "-c", "sleep 30"], true).unwrap();
        let _w = Watchdog::new(s.pid(), Duration::from_millis(200), "test").unwrap();
        let t = Instant::now();
        s.wait();
        assert!(t.elapsed() < Duration::from_secs(10));
        // Dropped before its deadline, it does nothing.
        let mut s = spawn_stream(&["sh", "-c", "exit 3"], true).unwrap();
        drop(Watchdog::new(s.pid(), Duration::from_secs(60), "test").unwrap());
        assert_eq!(s.wait(), Some(3));
    }

    #[test]
    fn caps_output() {
        let out = Run::new(&["sh", "-c", "head -c 100000 /dev/zero"])
            .cap(1000)
            .run()
            .unwrap();
        assert_eq!(out.stdout.len(), 1000);
        assert!(out.truncated);
    }

    #[test]
    fn missing_program_is_an_error() {
        assert!(Run::new(&["/nonexistent/prog"]).run().is_err());
    }
}
