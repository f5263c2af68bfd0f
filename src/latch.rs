//! A one-shot signal that can be waited on every way the daemon waits: a flag, a pipe for
//! poll() sets (written once and never drained, its read end stays readable for ever), and
//! hooks for condvar- and channel-based waiters. The daemon's shutdown is one (everything
//! long-lived waits on it directly instead of polling a flag on a timer); an island's socket
//! listener and a log follower's "the child is done" are others.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::util::lock;

type Hook = Box<dyn Fn() + Send + Sync>;

pub struct Latch {
    set: AtomicBool,
    rd: OwnedFd,
    wr: OwnedFd,
    hooks: Mutex<Vec<Hook>>,
}

impl Latch {
    pub fn new() -> std::io::Result<Latch> {
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        Ok(Latch {
            set: AtomicBool::new(false),
            rd,
            wr,
            hooks: Mutex::new(Vec::new()),
        })
    }

    /// Set it: wake every waiter (once; later calls do nothing).
    pub fn trigger(&self) {
        // The flag is set under the hooks' lock, so a hook is either registered before (and
        // run here) or sees the flag (and runs at once): never neither.
        let hooks = {
            let mut h = lock(&self.hooks);
            if self.set.swap(true, Ordering::SeqCst) {
                return;
            }
            std::mem::take(&mut *h)
        };
        let _ = nix::unistd::write(self.wr.as_fd(), b"x");
        for h in &hooks {
            h();
        }
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Readable (POLLIN) once set.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.rd.as_fd()
    }

    /// Sleep up to `d`, waking early when set; true when set.
    pub fn wait_timeout(&self, d: std::time::Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        if self.is_set() {
            return true;
        }
        let ms = d.as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(self.rd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        );
        self.is_set()
    }

    /// Run `f` when set (at once if it already is). `f` must not block.
    pub fn on_trigger(&self, f: impl Fn() + Send + Sync + 'static) {
        let mut h = lock(&self.hooks);
        if self.is_set() {
            drop(h);
            f();
            return;
        }
        h.push(Box::new(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn wakes_pollers_and_hooks_once() {
        let s = Latch::new().unwrap();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        s.on_trigger(move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        let mut p = libc::pollfd {
            fd: s.fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 0) }, 0);
        s.trigger();
        s.trigger();
        assert!(s.is_set());
        // SAFETY: as above; still readable on every later poll.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 0) }, 1);
        assert_eq!(unsafe { libc::poll(&mut p, 1, 0) }, 1);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let h = hits.clone();
        s.on_trigger(move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(hits.load(Ordering::SeqCst), 2, "a late hook runs at once");
    }
}
