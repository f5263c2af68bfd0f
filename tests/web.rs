//! The dashboard: served by dejimad with its guards (CSP, cookie login bound to a token, Origin
//! and Host checks on what a browser sends), `dejima ui`'s one-time loopback listener, and the
//! flows in a real browser (tests/web/dashboard.mjs: Debian's Chromium through playwright-core).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const T: Duration = Duration::from_secs(30);

/// One request with exactly these headers (`Connection: close`): status, headers, body.
fn raw(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
        raw_body: all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| all[i + 4..].to_vec())
            .unwrap_or_default(),
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    raw_body: Vec<u8>,
}

impl Reply {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Log in with `secret`; the cookie pair (`dejima_session=...`).
fn login(addr: &str, secret: &str) -> (String, Reply) {
    let origin = format!("http://{addr}");
    let r = raw(
        addr,
        "POST",
        "/ui/login",
        &[("Origin", &origin), ("Content-Type", "application/json")],
        &json!({ "token": secret }).to_string(),
    );
    assert_eq!(r.status, 200, "login: {}", r.body);
    let set = r.header("set-cookie").unwrap().to_string();
    (set.split(';').next().unwrap().to_string(), r)
}

/// A websocket handshake with these headers: the session, or the refusal's status.
fn ws(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<tungstenite::WebSocket<TcpStream>, u16> {
    use tungstenite::client::IntoClientRequest;
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tungstenite::client::client(req, s) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            Err(r.status().as_u16())
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

/// Read frames until one is text containing `needle` (or the socket closes: None).
fn ws_until(w: &mut tungstenite::WebSocket<TcpStream>, needle: &str) -> Option<String> {
    use base64::Engine as _;
    let deadline = std::time::Instant::now() + T;
    let mut seen = String::new();
    while std::time::Instant::now() < deadline {
        match w.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                if let Some(b) = v["b64"].as_str() {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .unwrap_or_default();
                    seen.push_str(&String::from_utf8_lossy(&bytes));
                } else {
                    seen.push_str(&t);
                }
                if seen.contains(needle) {
                    return Some(seen);
                }
            }
            Ok(tungstenite::Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    panic!("{needle:?} never came: {seen}");
}

#[test]
fn the_dashboard_is_served_with_its_guards() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&["--tcp", &addr, "--require-token"], &[]);
    let origin = format!("http://{addr}");

    // The page and its files need no token; everything else still does.
    let page = raw(&addr, "GET", "/", &[], "");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap();
    let script_src = csp
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .unwrap();
    assert_eq!(script_src.trim(), "script-src 'self'", "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    // No inline script: every <script> names its source (the CSP would block the rest).
    for tag in page.body.split("<script").skip(1) {
        let open = tag.split('>').next().unwrap();
        assert!(open.contains("src="), "an inline script: <script{open}>");
    }
    assert!(page.body.contains("/ui/app.js"), "{}", page.body);
    let js = raw(
        &addr,
        "GET",
        "/ui/app.js",
        &[("Accept-Encoding", "gzip")],
        "",
    );
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-encoding"), Some("gzip"));
    assert!(js.raw_body.len() < 400 << 10, "{} bytes", js.raw_body.len());
    let etag = js.header("etag").unwrap().to_string();
    let again = raw(&addr, "GET", "/ui/app.js", &[("If-None-Match", &etag)], "");
    assert_eq!(again.status, 304);
    assert_eq!(raw(&addr, "GET", "/ui/nope.js", &[], "").status, 404);
    assert_eq!(raw(&addr, "GET", "/ui/whoami", &[], "").status, 401);
    assert_eq!(raw(&addr, "GET", "/v1/islands", &[], "").status, 401);

    // Login: a wrong token is a 401; a right one a cookie bound to it.
    let bad = raw(
        &addr,
        "POST",
        "/ui/login",
        &[("Origin", &origin)],
        r#"{"token":"djo_0000000000000000000000000000000000000000000000000000000000000000"}"#,
    );
    assert_eq!(bad.status, 401, "{}", bad.body);
    assert!(bad.json()["error"].as_str().unwrap().contains("token"));
    let denied = d.ok("GET", "/v1/audit?decision=denied", None);
    assert!(
        denied["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["route"] == "/ui/login" && e["status"] == 401),
        "a failed login is ledgered: {denied}"
    );
    let (viewer_id, viewer) = create_token(&d, "viewer");
    let (cookie, r) = login(&addr, &viewer);
    let set = r.header("set-cookie").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain http: no Secure ({set})");
    assert!(!r.body.contains(&viewer), "the secret is never echoed");
    let allowed = d.ok("GET", "/v1/audit?decision=allowed", None);
    assert!(
        allowed["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["route"] == "/ui/login" && e["status"] == 200),
        "a login is ledgered: {allowed}"
    );
    assert!(!allowed.to_string().contains(&viewer[4..]));
    // Behind TLS (a proxy such as tailscale serve), the cookie is Secure.
    let tls = raw(
        &addr,
        "POST",
        "/ui/login",
        &[("Origin", &format!("https://{addr}"))],
        &json!({ "token": viewer }).to_string(),
    );
    assert!(tls.header("set-cookie").unwrap().contains("; Secure"));
    let me = raw(&addr, "GET", "/ui/whoami", &[("Cookie", &cookie)], "");
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["role"], "viewer");
    assert_eq!(me.json()["auth"], "cookie");
    // The role applies to everything the cookie does.
    assert_eq!(
        raw(&addr, "GET", "/v1/islands", &[("Cookie", &cookie)], "").status,
        200
    );
    let refused = raw(
        &addr,
        "POST",
        "/v1/islands",
        &[("Cookie", &cookie), ("Origin", &origin)],
        r#"{"name":"x","no_repo":true}"#,
    );
    assert_eq!(refused.status, 403, "{}", refused.body);

    // What another origin sends through a logged-in browser is refused, websockets too.
    let (_, owner) = create_token(&d, "owner");
    let (owner_cookie, _) = login(&addr, &owner);
    let i = d.create("webg");
    let evil = format!("http://127.0.0.1:{}", port + 1);
    let cross = raw(
        &addr,
        "POST",
        &format!("/v1/islands/{}/hibernate", i.name),
        &[("Cookie", &owner_cookie), ("Origin", &evil)],
        "",
    );
    assert_eq!(cross.status, 403, "{}", cross.body);
    assert!(cross.body.contains("cross-origin"), "{}", cross.body);
    assert_eq!(
        d.ok("GET", &format!("/v1/islands/{}", i.name), None)["state"],
        "running"
    );
    let session = format!("/v1/islands/{}/agents/a1/session?label=web", i.name);
    assert_eq!(
        ws(
            &addr,
            &session,
            &[("Cookie", &owner_cookie), ("Origin", &evil)]
        )
        .err(),
        Some(403)
    );
    // "null" (a sandboxed frame, a file) is no origin of ours either.
    assert_eq!(
        raw(
            &addr,
            "POST",
            "/ui/logout",
            &[("Cookie", &owner_cookie), ("Origin", "null")],
            ""
        )
        .status,
        403
    );
    // A browser that reached the daemon by another site's name (DNS rebinding) is refused.
    let rebound = raw(
        &addr,
        "GET",
        "/v1/islands",
        &[
            ("Cookie", &owner_cookie),
            ("Host", "attacker.example"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        "",
    );
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    assert!(rebound.body.contains("--web-host"), "{}", rebound.body);
    // curl logs in and follows the fleet stream with the cookie, as a script would: the
    // snapshot names the island.
    let jar = std::env::temp_dir().join(format!("web-jar-{}", dejima::util::random_hex(4)));
    let curl = |args: &[&str]| {
        let o = Command::new("curl")
            .args([
                "-s",
                "-b",
                jar.to_str().unwrap(),
                "-c",
                jar.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let me = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &json!({ "token": owner }).to_string(),
        &format!("http://{addr}/ui/login"),
    ]);
    assert!(me.contains("\"owner\""), "{me}");
    let stream = curl(&["-N", "--max-time", "3", &format!("http://{addr}/ui/fleet")]);
    let _ = std::fs::remove_file(&jar);
    assert!(stream.starts_with("event: snapshot\ndata: ["), "{stream}");
    assert!(
        stream.contains(&format!("\"name\":\"{}\"", i.name)),
        "{stream}"
    );
    // From its own origin, the cookie's websocket works.
    let mut w = ws(
        &addr,
        &session,
        &[("Cookie", &owner_cookie), ("Origin", &origin)],
    )
    .expect("a same-origin session");
    assert!(ws_until(&mut w, "hello").is_some());
    drop(w);

    // A viewer's cookie session observes; revoking the token ends the login and the session.
    let mut watch = ws(
        &addr,
        &format!("/v1/islands/{}/agents/a1/session?label=viewer-web", i.name),
        &[("Cookie", &cookie), ("Origin", &origin)],
    )
    .expect("a viewer watches");
    assert!(ws_until(&mut watch, "hello").is_some());
    d.ok("DELETE", &format!("/v1/tokens/{viewer_id}"), None);
    assert_eq!(
        raw(&addr, "GET", "/ui/whoami", &[("Cookie", &cookie)], "").status,
        401
    );
    assert!(
        ws_until(&mut watch, "never-printed").is_none(),
        "the revoked login's session is closed"
    );

    // Logout ends the login and clears the cookie.
    let out = raw(
        &addr,
        "POST",
        "/ui/logout",
        &[("Cookie", &owner_cookie), ("Origin", &origin)],
        "",
    );
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        raw(&addr, "GET", "/ui/whoami", &[("Cookie", &owner_cookie)], "").status,
        401
    );
}

/// Kills `dejima ui` however the test ends; holds its stdout open till then (closed, its next
/// line would end it with SIGPIPE).
struct Kill(std::process::Child, Option<std::process::ChildStdout>);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `dejima ui --no-open` for `d`: the running process and the URL it printed.
fn dejima_ui(d: &Daemon) -> (Kill, String) {
    let mut ui = Command::new(env!("CARGO_BIN_EXE_dejima"))
        .args(["ui", "--no-open"])
        .env("DEJIMA_HOME", &d.home)
        .env_remove("DEJIMA_HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = ui.stdout.take().unwrap();
    let mut ui = Kill(ui, None);
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\n") {
        assert_eq!(out.read(&mut b).unwrap(), 1, "dejima ui printed nothing");
        line.push(b[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let url = line.trim().strip_prefix("dashboard: ").expect(&line);
    ui.1 = Some(out);
    (ui, url.to_string())
}

#[test]
fn dejima_ui_opens_only_for_its_one_time_link() {
    let d = Daemon::start();
    let i = d.create("webui");
    let (_ui, url) = dejima_ui(&d);
    let url = url.as_str();
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let port = addr.rsplit(':').next().unwrap();

    // Without the link nothing passes; a wrong link neither.
    assert_eq!(raw(addr, "GET", "/v1/islands", &[], "").status, 401);
    assert_eq!(raw(addr, "GET", "/?ui=deadbeef", &[], "").status, 403);
    // The link trades its token for a cookie, once.
    let first = raw(addr, "GET", &format!("/{path}"), &[], "");
    assert_eq!(first.status, 303);
    assert_eq!(first.header("location"), Some("/"));
    let set = first.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    assert!(
        cookie.starts_with(&format!("dejima_ui_{port}=")),
        "{cookie}"
    );
    assert_eq!(raw(addr, "GET", &format!("/{path}"), &[], "").status, 403);
    // With it, the browser is the socket's owner: the page, the API and a terminal.
    let page = raw(addr, "GET", "/", &[("Cookie", &cookie)], "");
    assert_eq!(page.status, 200);
    assert!(page.header("content-security-policy").is_some());
    let me = raw(addr, "GET", "/ui/whoami", &[("Cookie", &cookie)], "");
    assert_eq!(me.json()["role"], "owner", "{}", me.body);
    assert_eq!(me.json()["auth"], "socket", "{}", me.body);
    let origin = format!("http://{addr}");
    let mut w = ws(
        addr,
        &format!("/v1/islands/{}/agents/a1/session?label=ui", i.name),
        &[("Cookie", &cookie), ("Origin", &origin)],
    )
    .expect("a session through dejima ui");
    assert!(ws_until(&mut w, "hello").is_some());
    use base64::Engine as _;
    let input = base64::engine::general_purpose::STANDARD.encode(b"echo via-ui-$((6*7))\r");
    w.send(tungstenite::Message::Text(
        json!({"type": "data", "b64": input}).to_string(),
    ))
    .unwrap();
    assert!(ws_until(&mut w, "via-ui-42").is_some());
    drop(w);
    // The same flow in Chromium, with a fresh link (a second `dejima ui`).
    let (_ui2, url2) = dejima_ui(&d);
    let browser = Command::new("timeout")
        .args(["-k", "5", "120", "node", "tests/web/ui.mjs"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("URL", &url2)
        .env("ISLAND", &i.name)
        .env(
            "ARTIFACTS",
            format!("{}/tests/web/artifacts", env!("CARGO_MANIFEST_DIR")),
        )
        .output()
        .expect("node (run scripts/setup)");
    let stdout = String::from_utf8_lossy(&browser.stdout);
    assert!(
        browser.status.success() && stdout.trim_end().ends_with("ok"),
        "dejima ui in Chromium:\n{stdout}\n{}",
        String::from_utf8_lossy(&browser.stderr)
    );
    // Another origin gets nothing through it either.
    let cross = raw(
        addr,
        "POST",
        &format!("/v1/islands/{}/hibernate", i.name),
        &[("Cookie", &cookie), ("Origin", "http://127.0.0.1:1")],
        "",
    );
    assert_eq!(cross.status, 403, "{}", cross.body);
}

#[test]
fn the_dashboard_in_chromium() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&["--tcp", &addr, "--require-token"], &[]);
    let (_, owner) = create_token(&d, "owner");
    let (_, viewer) = create_token(&d, "viewer");
    let prefix = unique("web");
    let artifacts = format!("{}/tests/web/artifacts", env!("CARGO_MANIFEST_DIR"));
    // A hung browser must not hang the suite: the flows take well under a minute.
    let out = Command::new("timeout")
        .args(["-k", "5", "300", "node", "tests/web/dashboard.mjs"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("BASE", format!("http://{addr}"))
        .env("OWNER", &owner)
        .env("VIEWER", &viewer)
        .env("PREFIX", &prefix)
        .env("ARTIFACTS", &artifacts)
        .output()
        .expect("node (run scripts/setup)");
    for suffix in ["api", "ui", "evil"] {
        purge_everything(&d, &format!("{prefix}-{suffix}"));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "the browser flows failed:\n{stdout}\n{stderr}"
    );
    println!("screenshots in {artifacts}");
}
