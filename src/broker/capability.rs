//! Capabilities: named host actions an island may run once granted. Never a shell, never a
//! free-form command: a target is a name, the adapter maps it to one fixed program, and the
//! arguments are string→string pairs handed over as JSON on stdin.
//!
//! The seam is `Adapter`: `check` finds and vets a target, `run` runs what `check` vetted.
//! Linux (here): executables in `$DEJIMA_HOME/capabilities/`. The reference's macOS adapter
//! maps a target to an Apple Shortcut (`shortcuts run NAME --input-path FILE`) behind the
//! same two calls; it is not built here (no macOS host to test it on).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use serde_json::{json, Map, Value};

use super::{sha256_hex, Asker, Brokers};
use crate::api::{CapabilityGrant, CapabilityInfo, CapabilityResult, ExecuteCapability};
use crate::error::{Error, Result};
use crate::island::grants::check_grant_name;
use crate::util::lock;

/// A capability running longer is killed (its whole process group).
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Each of stdout and stderr is kept up to this much; the rest is read and dropped.
pub const OUTPUT_CAP: usize = 1 << 20;
const MAX_ARGS: usize = 64;
const MAX_ARGS_BYTES: usize = 64 << 10;
/// The only PATH a capability sees.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A vetted target, held open: what runs is the file that was checked.
pub struct Prepared {
    file: OwnedFd,
    target: String,
}

pub trait Adapter: Send + Sync {
    /// Every target the adapter can see, usable or not (and why not).
    fn list(&self) -> Vec<CapabilityInfo>;
    /// Find and vet one target.
    fn check(&self, target: &str) -> Result<Prepared>;
}

/// `$DEJIMA_HOME/capabilities/<target>`: a regular file (never a link), owned by the
/// daemon's user, not writable by group or others, executable.
pub struct LinuxDir {
    pub dir: PathBuf,
}

impl LinuxDir {
    fn open_dir(&self) -> Result<OwnedFd> {
        let _ = std::fs::create_dir_all(&self.dir);
        let d = File::open(&self.dir).map_err(|e| {
            Error::NotFound(format!(
                "no capabilities folder ({}): {e}",
                self.dir.display()
            ))
        })?;
        Ok(d.into())
    }
}

impl Adapter for LinuxDir {
    fn list(&self) -> Vec<CapabilityInfo> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| check_grant_name("", n).is_ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .into_iter()
            .map(|n| match self.check(&n) {
                Ok(_) => CapabilityInfo {
                    target: n,
                    usable: true,
                    problem: None,
                },
                Err(e) => CapabilityInfo {
                    target: n,
                    usable: false,
                    problem: Some(e.to_string()),
                },
            })
            .collect()
    }

    fn check(&self, target: &str) -> Result<Prepared> {
        check_grant_name("capability target", target)?;
        let dir = self.open_dir()?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match openat(Some(dir.as_raw_fd()), target, flags, Mode::empty()) {
            // SAFETY: a new descriptor we own.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(Errno::ENOENT) => {
                return Err(Error::NotFound(format!(
                    "no capability {target:?} in {}",
                    self.dir.display()
                )))
            }
            Err(Errno::ELOOP) => {
                return Err(Error::Forbidden(format!(
                    "capability {target:?} is a symlink; only regular files run"
                )))
            }
            Err(e) => return Err(Error::Internal(format!("capability {target:?}: {e}"))),
        };
        let st = fstat(fd.as_raw_fd()).map_err(|e| Error::Internal(e.to_string()))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let refuse = |why: &str| Err(Error::Forbidden(format!("capability {target:?} {why}")));
        if kind != SFlag::S_IFREG {
            return refuse("is not a regular file");
        }
        if st.st_uid != nix::unistd::geteuid().as_raw() {
            return refuse("is not owned by the daemon's user");
        }
        if st.st_mode & 0o022 != 0 {
            return refuse("is writable by group or others; chmod go-w it");
        }
        if st.st_mode & 0o100 == 0 {
            return refuse("is not executable; chmod u+x it");
        }
        Ok(Prepared {
            file: fd,
            target: target.to_string(),
        })
    }
}

/// The args as given: string→string only, bounded.
fn check_args(args: &Option<Map<String, Value>>) -> Result<Map<String, Value>> {
    let Some(args) = args else {
        return Ok(Map::new());
    };
    if args.len() > MAX_ARGS {
        return Err(Error::bad(format!("at most {MAX_ARGS} args")));
    }
    let mut total = 0;
    for (k, v) in args {
        let key_ok = !k.is_empty()
            && k.len() <= 64
            && (k.as_bytes()[0].is_ascii_alphabetic() || k.as_bytes()[0] == b'_')
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !key_ok {
            return Err(Error::bad(format!(
                "arg name {k:?} must be 1-64 letters, digits, '_', '.', '-', starting with a letter or '_'"
            )));
        }
        let Value::String(s) = v else {
            return Err(Error::bad(format!("arg {k:?} must be a string")));
        };
        total += k.len() + s.len();
    }
    if total > MAX_ARGS_BYTES {
        return Err(Error::TooLarge(format!(
            "args are {total} bytes; at most {MAX_ARGS_BYTES}"
        )));
    }
    Ok(args.clone())
}

/// Read a pipe to its end, keeping at most `cap` bytes.
/// What a pipe gave so far, and whether more was dropped.
type Drained = Arc<Mutex<(Vec<u8>, bool)>>;

fn drain(mut r: impl Read, cap: usize, into: Drained) {
    let mut buf = [0u8; 16 << 10];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut g = lock(&into);
                let room = cap.saturating_sub(g.0.len());
                if n > room {
                    g.1 = true;
                }
                g.0.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Read a pipe on its own thread into a shared buffer.
fn reader(
    name: &str,
    r: Option<impl Read + Send + 'static>,
) -> Result<(Drained, std::thread::JoinHandle<()>)> {
    let buf: Drained = Default::default();
    let b = buf.clone();
    let h = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Some(r) = r {
                drain(r, OUTPUT_CAP, b)
            }
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok((buf, h))
}

impl Brokers {
    pub fn capabilities(&self) -> &dyn Adapter {
        &self.cap_adapter
    }

    /// POST /v1/islands/{name}/capability/grants
    pub fn grant_capability(
        &self,
        asker: &Asker,
        island: &str,
        target: &str,
    ) -> Result<CapabilityGrant> {
        check_grant_name("capability target", target)?;
        self.islands.record(island)?;
        self.grant_record("capability.grant", island, asker, json!({"target": target}))?;
        self.islands.grant_capability(island, target)
    }

    /// DELETE /v1/islands/{name}/capability/grants/{target}
    pub fn revoke_capability(&self, asker: &Asker, island: &str, target: &str) -> Result<()> {
        self.islands.revoke_capability(island, target)?;
        let _ = self.grant_record(
            "capability.revoke",
            island,
            asker,
            json!({"target": target}),
        );
        Ok(())
    }

    /// POST /v1/capabilities/execute
    pub fn execute(&self, asker: &Asker, req: ExecuteCapability) -> Result<CapabilityResult> {
        let island = asker.island_for(req.island.as_deref())?;
        let args_json = Value::Object(req.args.clone().unwrap_or_default()).to_string();
        let base = json!({"target": super::port::clip(&req.target), "args_sha256": sha256_hex(args_json.as_bytes())});
        let deny = |e: Error| self.deny("capability.denied", &island, asker, e, base.clone());
        let rec = self.islands.record(&island)?;
        check_grant_name("capability target", &req.target).map_err(deny)?;
        let args = check_args(&req.args).map_err(deny)?;
        let agent = req.agent.clone().unwrap_or_default();
        if !agent.is_empty() && !rec.agents.iter().any(|a| a.id == agent) {
            return Err(deny(Error::NotFound(format!(
                "island {island:?} has no agent {}",
                super::port::clip(&format!("{agent:?}"))
            ))));
        }
        if !rec.capability_grants.iter().any(|g| g.target == req.target) {
            return Err(deny(Error::Forbidden(format!(
                "island {island:?} is not granted capability {:?}",
                req.target
            ))));
        }
        let prepared = self.cap_adapter.check(&req.target).map_err(deny)?;
        let stdin = Value::Object(args).to_string();
        let seq = self.crossing(
            "capability.execute",
            &island,
            asker,
            json!({"target": req.target, "agent": agent, "args_sha256": sha256_hex(stdin.as_bytes())}),
        )?;
        run(prepared, &island, &agent, stdin.as_bytes(), seq)
    }
}

/// Run a vetted target: fixed argv (the file itself, by descriptor), args on stdin, a
/// minimal environment, its own process group, a deadline and capped output.
fn run(p: Prepared, island: &str, agent: &str, stdin: &[u8], seq: u64) -> Result<CapabilityResult> {
    let fd = p.file.as_raw_fd();
    // Executed through its descriptor (moved to 3 in the child), so a file swapped in after
    // the check never runs.
    let mut cmd = Command::new("/proc/self/fd/3");
    cmd.arg0(&p.target)
        .env_clear()
        .env("PATH", PATH)
        .env("DEJIMA_CAP_ISLAND", island)
        .env("DEJIMA_CAP_AGENT", agent)
        .env("DEJIMA_CAP_TARGET", &p.target)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The vetted file becomes 3, open across exec (a script's interpreter opens
            // /proc/self/fd/3 after it); everything else the daemon holds is closed.
            if fd != 3 && libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let flags = libc::fcntl(3, libc::F_GETFD);
            if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            crate::util::close_from(4);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Internal(format!("cannot start capability {:?}: {e}", p.target)))?;
    drop(p.file);
    let pid = child.id() as i32;
    let mut sin = child.stdin.take();
    let input = stdin.to_vec();
    let feeder = std::thread::Builder::new()
        .name("cap-stdin".into())
        .spawn(move || {
            if let Some(s) = sin.as_mut() {
                let _ = s.write_all(&input);
            }
        })
        .ok();
    let kill = |child: &mut std::process::Child| {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
    };
    let (out_buf, out_t) = match reader("cap-stdout", child.stdout.take()) {
        Ok(x) => x,
        Err(e) => {
            kill(&mut child);
            return Err(e);
        }
    };
    let (err_buf, err_t) = match reader("cap-stderr", child.stderr.take()) {
        Ok(x) => x,
        Err(e) => {
            kill(&mut child);
            return Err(e);
        }
    };
    let deadline = Instant::now() + TIMEOUT;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    // Whatever it left running in its group goes too, so the pipes close.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    // Its output is read to the end, but not waited on for long: a descendant that left the
    // group may hold the pipes open.
    let drained_by = Instant::now() + Duration::from_secs(2);
    while !(out_t.is_finished() && err_t.is_finished()) && Instant::now() < drained_by {
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(f) = feeder.filter(|f| f.is_finished()) {
        let _ = f.join();
    }
    let (stdout, t1) = std::mem::take(&mut *lock(&out_buf));
    let (stderr, t2) = std::mem::take(&mut *lock(&err_buf));
    let exit_code = if timed_out {
        None
    } else {
        status.and_then(|s| s.code())
    };
    Ok(CapabilityResult {
        ok: exit_code == Some(0),
        exit_code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        truncated: t1 || t2,
        timed_out,
        ledger_seq: seq,
    })
}
