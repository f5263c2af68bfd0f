//! Exec, files and logs.

use std::io::{self, Read};

use super::islands::name;
use crate::api::ExecRequest;
use crate::error::{Error, Result};
use crate::http::router::Params;
use crate::http::server::hung_up;
use crate::http::{App, Request, Response};
use crate::latch::Latch;
use crate::process::Stream;

/// Largest file a PUT accepts.
pub const MAX_FILE: u64 = 1 << 30;

pub fn exec(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: ExecRequest = req.json()?;
    Ok(Response::json(200, &app.islands.exec(n, body)?))
}

pub fn read_file(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let (stream, size) = app.islands.read_file(n, p.get("path"))?;
    Ok(stream_child("application/octet-stream", stream, app)
        .header("X-Dejima-File-Size", &size.to_string()))
}

pub fn write_file(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let path = p.get("path").to_string();
    match req.content_length() {
        Some(len) if len > MAX_FILE => {
            return Err(Error::TooLarge(format!(
                "file of {len} bytes is over the {MAX_FILE}-byte limit"
            )))
        }
        Some(len) => {
            // The helper keeps the old file unless exactly `len` bytes arrived. The body is
            // asked for only when the helper reads it, so a refusal before then (no such
            // island, a bad path) reaches a waiting `Expect: 100-continue` client at once.
            let mut body = Exact { req, left: len };
            app.islands.write_file(n, &path, &mut body, len)?;
        }
        None => {
            // Chunked: spool to know the length, so a cut-off upload never lands.
            let mut spool = tempfile_in(&app.islands.work_dir())?;
            let copied = io::copy(&mut req.body().take(MAX_FILE + 1), &mut spool)
                .map_err(|e| Error::bad(format!("cannot read the request body: {e}")))?;
            if copied > MAX_FILE {
                return Err(Error::TooLarge(format!(
                    "file is over the {MAX_FILE}-byte limit"
                )));
            }
            use std::io::Seek;
            spool.seek(io::SeekFrom::Start(0))?;
            app.islands.write_file(n, &path, &mut spool, copied)?;
        }
    }
    Ok(Response::no_content())
}

pub fn logs(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let follow = req.query_bool("follow")?;
    let tail = req
        .query("tail")
        .filter(|t| !t.is_empty())
        .unwrap_or("all")
        .to_string();
    let stream = match req.query("agent") {
        Some(agent) => app.islands.agent_log(n, agent, follow, &tail)?,
        None => app.islands.logs(n, follow, &tail)?,
    };
    Ok(stream_child("text/plain; charset=utf-8", stream, app))
}

/// Stream a child's stdout as the body; a client that hangs up ends the child at once, even
/// while the child is silent, and so does the daemon's shutdown.
fn stream_child(content_type: &str, mut child: Stream, app: &App) -> Response {
    let shutdown = app.shutdown.clone();
    Response::stream(
        content_type,
        Box::new(move |w, peer| {
            let Some(mut out) = child.stdout.take() else {
                return Ok(());
            };
            let done = Latch::new()?;
            let pid = child.pid();
            let fd = peer.fd;
            let result = std::thread::scope(|s| {
                let (d, st) = (&done, &shutdown);
                let watch = std::thread::Builder::new().name("stream-watch".into());
                watch.spawn_scoped(s, move || {
                    if hung_up(fd, &[d, st]) || st.is_set() {
                        log::debug!("stream peer gone or daemon stopping; ending child {pid}");
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                })?;
                let mut buf = vec![0u8; 32 << 10];
                let r = loop {
                    match out.read(&mut buf) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            if let Err(e) = w.write_all(&buf[..n]) {
                                break Err(e);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                done.trigger();
                r
            });
            drop(child);
            result
        }),
    )
}

/// Passes through exactly `left` bytes of the request body, then EOF.
struct Exact<'r, 'a> {
    req: &'r mut Request<'a>,
    left: u64,
}

impl Read for Exact<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.req.body().read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

fn tempfile_in(dir: &std::path::Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".upload-{}", crate::util::random_hex(8)));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    // Unlinked at once: the open handle keeps it until this upload ends.
    let _ = std::fs::remove_file(&path);
    Ok(f)
}
