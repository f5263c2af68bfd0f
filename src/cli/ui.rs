//! dejima ui: the dashboard of a daemon on this host's socket, in a browser. A listener on a
//! random loopback port passes connections through to the daemon, but only from a browser that
//! opened the printed URL once: its one-time token becomes a cookie (HttpOnly, SameSite=Strict)
//! and the URL stops working. Other local users and other pages get a 401.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argh::FromArgs;

use super::{fail, Out};
use crate::client::{Client, Target};
use crate::http::server::Conn;
use crate::util;

/// open the daemon's web dashboard in a browser, through a loopback listener that only the printed one-time URL opens
#[derive(FromArgs)]
#[argh(subcommand, name = "ui")]
pub struct Ui {
    /// port on 127.0.0.1 to listen on (default: a free one)
    #[argh(option, default = "0")]
    port: u16,
    /// print the URL without starting a browser
    #[argh(switch)]
    no_open: bool,
}

/// Largest request head passed through.
const MAX_HEAD: usize = 32 << 10;

struct Gate {
    /// The URL's token until a browser uses it.
    once: Mutex<Option<String>>,
    cookie: String,
    session: String,
    target: Target,
    token: Option<String>,
}

pub fn ui(c: &Client, a: Ui) -> Out {
    // Fail here, not in the browser, when the daemon is not there.
    c.get_json::<serde_json::Value>("/v1/healthz")?;
    let l = TcpListener::bind(("127.0.0.1", a.port))
        .map_err(|e| fail(format!("cannot listen on 127.0.0.1:{}: {e}", a.port)))?;
    let port = l.local_addr()?.port();
    let once = util::random_hex(32);
    let gate = Arc::new(Gate {
        once: Mutex::new(Some(once.clone())),
        // Cookies do not tell ports apart: one name per listener.
        cookie: format!("dejima_ui_{port}"),
        session: util::random_hex(32),
        target: c.target.clone(),
        token: c.token.clone(),
    });
    let url = format!("http://127.0.0.1:{port}/?ui={once}");
    // Written, not printed: a reader that goes away (`dejima ui | head -1`) must not end it.
    let mut out = io::stdout();
    let _ = writeln!(out, "dashboard: {url}");
    let _ = writeln!(
        out,
        "(the link opens one browser session; Ctrl-C stops the dashboard)"
    );
    let _ = out.flush();
    if !a.no_open {
        open_browser(&url);
    }
    for conn in l.incoming() {
        let Ok(conn) = conn else { continue };
        let gate = gate.clone();
        let _ = std::thread::Builder::new()
            .name("ui-conn".into())
            .spawn(move || {
                if let Err(e) = pass(conn, &gate) {
                    log::debug!("dashboard connection: {e}");
                }
            });
    }
    Ok(())
}

fn open_browser(url: &str) {
    for opener in ["xdg-open", "open"] {
        let started = std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if started.is_ok() {
            return;
        }
    }
}

/// A connection to the daemon on its socket or TCP (the server's own connection type).
fn connect(t: &Target) -> io::Result<Conn> {
    Ok(match t {
        Target::Unix(p) => Conn::Unix(UnixStream::connect(p)?),
        Target::Tcp(a) => Conn::Tcp(TcpStream::connect(a)?),
    })
}

fn answer(mut conn: &TcpStream, status: &str, extra: &str, body: &str) -> io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(msg.as_bytes())
}

/// One browser connection: the one-time exchange, or one request (or websocket) passed to the
/// daemon with `Connection: close`, so every request on this listener is checked.
fn pass(mut conn: TcpStream, gate: &Gate) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::with_capacity(4096);
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return answer(
                &conn,
                "431 Request Header Fields Too Large",
                "",
                "head too large\n",
            );
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(
        req.parse(&buf[..head_len]),
        Ok(httparse::Status::Complete(_))
    ) {
        return answer(&conn, "400 Bad Request", "", "bad request\n");
    }
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return answer(&conn, "400 Bad Request", "", "bad request\n");
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    // The one-time URL: trade its token for this browser's cookie, once.
    if let Some(offered) = path
        .split_once('?')
        .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("ui=")))
    {
        let mut once = util::lock(&gate.once);
        let good = once
            .as_deref()
            .is_some_and(|t| util::ct_eq(t.as_bytes(), offered.as_bytes()));
        if !good || method != "GET" {
            drop(once);
            return answer(
                &conn,
                "403 Forbidden",
                "",
                "this dashboard link was already used (or is wrong); run dejima ui again\n",
            );
        }
        *once = None;
        let cookie = format!(
            "Set-Cookie: {}={}; Path=/; HttpOnly; SameSite=Strict\r\nLocation: /\r\n",
            gate.cookie, gate.session
        );
        return answer(&conn, "303 See Other", &cookie, "");
    }
    let holds = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(k, v)| k == gate.cookie && util::ct_eq(v.as_bytes(), gate.session.as_bytes()));
    if !holds {
        return answer(
            &conn,
            "401 Unauthorized",
            "",
            "open the link dejima ui printed (it holds a one-time token)\n",
        );
    }
    let upgrade = header("upgrade").is_some();
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let n = h.name.to_ascii_lowercase();
        // The cookies stay here (ours, and any daemon login from TCP): through this listener
        // the browser is the socket's owner, and the credential is the proxy's, never the page's.
        let ours = n == "cookie" || n == "authorization";
        if ours || (!upgrade && (n == "connection" || n == "keep-alive")) {
            continue;
        }
        out.push_str(h.name);
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(h.value));
        out.push_str("\r\n");
    }
    if !upgrade {
        out.push_str("Connection: close\r\n");
    }
    if let (Target::Tcp(_), Some(t)) = (&gate.target, &gate.token) {
        out.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    out.push_str("\r\n");
    let mut up = match connect(&gate.target) {
        Ok(u) => u,
        Err(e) => {
            return answer(
                &conn,
                "502 Bad Gateway",
                "",
                &format!("cannot reach dejimad: {e}\n"),
            )
        }
    };
    up.write_all(out.as_bytes())?;
    up.write_all(&buf[head_len..])?;
    conn.set_read_timeout(None)?;
    let (mut from_browser, mut to_daemon) = (conn.try_clone()?, up.try_clone()?);
    let forward = std::thread::Builder::new()
        .name("ui-up".into())
        .spawn(move || {
            let _ = io::copy(&mut from_browser, &mut to_daemon);
            let _ = to_daemon.shutdown_write();
        })?;
    let _ = io::copy(&mut up, &mut conn);
    let _ = conn.shutdown(Shutdown::Both);
    let _ = forward.join();
    Ok(())
}
