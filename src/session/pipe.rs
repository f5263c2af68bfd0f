//! A raw byte pump: an upgraded connection joined to a program's stdin and stdout (SSH: the
//! client's `dejima ssh-proxy` on one end, `sshd -i` in the island on the other). Each
//! direction has its own thread, so neither side's slowness can stall the other into a
//! deadlock; the program's stderr is handed over line by line (sshd's log).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::latch::Latch;

/// Run `argv` and pump bytes between it and the connection (`conn` written to, `from` a
/// second handle on it read from) until either side ends or the daemon stops. `on_log` gets
/// each stderr line; `on_end` runs last, whatever ended it.
#[allow(clippy::too_many_arguments)]
pub fn serve<W: Write + AsRawFd, R: Read + Send + 'static>(
    mut conn: W,
    from: io::Result<R>,
    leftover: Vec<u8>,
    argv: Vec<String>,
    mut on_log: Box<dyn FnMut(&str) + Send>,
    on_end: Box<dyn FnOnce() + Send>,
    shutdown: &Latch,
) {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            crate::util::close_from(3);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            log::warn!("pipe: cannot start {}: {e}", argv[0]);
            on_end();
            return;
        }
    };
    let pid = child.id() as i32;
    let (mut stdin, mut stdout, stderr) = (
        child.stdin.take().expect("piped"),
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let log_t = std::thread::Builder::new()
        .name("pipe-log".into())
        .spawn(move || {
            for line in BufReader::new(stderr).lines() {
                match line {
                    Ok(l) => on_log(&l),
                    Err(_) => break,
                }
            }
        });
    let inbound = from.map(|mut from| {
        std::thread::Builder::new()
            .name("pipe-in".into())
            .spawn(move || {
                if stdin.write_all(&leftover).is_ok() {
                    let _ = io::copy(&mut from, &mut stdin);
                }
                // Dropping stdin tells the program the client is done.
            })
    });
    let sock = conn.as_raw_fd();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: stdout.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: shutdown.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds for descriptors held open here.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if fds[1].revents != 0 {
            break;
        }
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                if conn.write_all(&buf[..k]).is_err() {
                    break;
                }
            }
        }
    }
    // Whichever side ended, end the other: the socket (so the inbound copy returns) and
    // the program's group.
    let _ = nix::sys::socket::shutdown(sock, nix::sys::socket::Shutdown::Both);
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    if let Ok(Ok(h)) = inbound {
        let _ = h.join();
    }
    if let Ok(h) = log_t {
        let _ = h.join();
    }
    on_end();
}
