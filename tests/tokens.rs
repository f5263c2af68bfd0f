//! Operator tokens and roles on the real daemon over TCP: every route walked with every
//! role, the token lifecycle (CLI and API), revocation closing sessions and streams,
//! `--require-token` for HTTP, websockets and SSE, and the per-address brake on guessing.

mod support;

use std::process::Command;
use std::time::Duration;

use dejima::client::{Body, Client, Target};
use dejima::http::router::{Access, ROUTES};
use serde_json::{json, Value};
use support::*;

const T: Duration = Duration::from_secs(20);

fn tcp(addr: &str, token: Option<&str>) -> Client {
    Client {
        target: Target::Tcp(addr.to_string()),
        token: token.map(str::to_string),
        timeout: Some(Duration::from_secs(30)),
    }
}

/// A websocket over TCP with an Authorization header; the handshake's status on refusal.
fn ws_tcp(
    addr: &str,
    path: &str,
    token: Option<&str>,
) -> Result<tungstenite::WebSocket<std::net::TcpStream>, u16> {
    use tungstenite::client::IntoClientRequest;
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    match tungstenite::client::client(req, s) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            Err(r.status().as_u16())
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

#[test]
fn every_route_with_every_role_is_allowed_or_a_403_json_as_declared() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&["--tcp", &addr], &[]);
    let tokens: Vec<(String, String)> = ["viewer", "operator", "owner"]
        .iter()
        .map(|r| (r.to_string(), create_token(&d, r).1))
        .collect();
    let (mut allowed, mut denied) = (0, 0);
    for (role, secret) in &tokens {
        let c = tcp(&addr, Some(secret));
        let rank = |r: &str| ["viewer", "operator", "owner"].iter().position(|x| *x == r);
        for r in ROUTES {
            // Names that exist nowhere and a body no handler accepts: an allowed call is
            // refused by its handler (400/404/...), never carried out.
            let path = r
                .pattern
                .replace("{name}", "no-such-island")
                .replace("{id}", "no-such-id")
                .replace("{path...}", "workspace/x");
            let resp = c
                .send(
                    r.method,
                    &path,
                    Body::Bytes(b"{not json", "application/json"),
                )
                .unwrap();
            let status = resp.status;
            let may =
                r.access == Access::Any || rank(role).unwrap() >= rank(r.role.as_str()).unwrap();
            if may {
                assert_ne!(status, 403, "{role} {} {path}", r.method);
                allowed += 1;
            } else {
                assert_eq!(status, 403, "{role} {} {path}", r.method);
                let v: Value = serde_json::from_slice(&resp.bytes().unwrap()).unwrap();
                assert!(v["error"].as_str().unwrap().contains("role"), "{v}");
                denied += 1;
            }
        }
    }
    // The table is not trivially open or closed.
    assert!(
        allowed > 60 && denied > 30,
        "allowed {allowed}, denied {denied}"
    );
    // A few that must hold whatever the table says.
    let viewer = tcp(&addr, Some(&tokens[0].1));
    let exec = viewer
        .send(
            "POST",
            "/v1/islands/x/exec",
            Body::Bytes(b"{}", "application/json"),
        )
        .unwrap();
    assert_eq!(exec.status, 403, "a viewer cannot exec");
    let operator = tcp(&addr, Some(&tokens[1].1));
    for (m, p) in [
        ("GET", "/v1/tokens"),
        ("POST", "/v1/terminals"),
        ("POST", "/v1/image/build"),
    ] {
        assert_eq!(
            operator.send(m, p, Body::None).unwrap().status,
            403,
            "{m} {p}"
        );
    }
    assert_eq!(
        tcp(&addr, Some(&tokens[2].1))
            .send("GET", "/v1/tokens", Body::None)
            .unwrap()
            .status,
        200
    );
}

#[test]
fn tokens_are_shown_once_never_kept_or_logged_and_revoked_at_once() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&["--tcp", &addr], &[]);
    let i = d.create("tok");
    let dejima = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_dejima"))
            .args(args)
            .env("DEJIMA_HOME", &d.home)
            .env_remove("DEJIMA_HOST")
            .env_remove("DEJIMA_TOKEN")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let created: Value = serde_json::from_str(&dejima(&[
        "token", "create", "--role", "operator", "--label", "ci", "--json",
    ]))
    .unwrap();
    let (id, secret) = (
        created["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    );
    assert!(secret.starts_with("djo_") && secret.len() == 68, "{secret}");
    let listed = dejima(&["token", "ls"]);
    assert!(listed.contains(&id) && listed.contains("operator") && !listed.contains(&secret));
    let api = d.ok("GET", "/v1/tokens", None);
    assert!(!api.to_string().contains(&secret[4..]), "{api}");
    let file = std::fs::read_to_string(d.home.join("tokens.json")).unwrap();
    assert!(!file.contains(&secret[4..]), "only the hash is stored");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.home.join("tokens.json"))
            .unwrap()
            .permissions(),
    ) & 0o777;
    assert_eq!(mode, 0o600);

    // The CLI over TCP with the token; last_used_at follows.
    let o = Command::new(env!("CARGO_BIN_EXE_dejima"))
        .args(["ls", "--json"])
        .env("DEJIMA_HOST", &addr)
        .env("DEJIMA_TOKEN", &secret)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&i.name));
    let api = d.ok("GET", "/v1/tokens", None);
    assert!(api[0]["last_used_at"].is_string(), "{api}");

    // Open a terminal and an event stream with it, then revoke: both close now.
    let mut ws = ws_tcp(
        &addr,
        &format!("/v1/islands/{}/session", i.name),
        Some(&secret),
    )
    .expect("the operator attaches");
    let mut c = tcp(&addr, Some(&secret));
    c.timeout = Some(Duration::from_millis(200));
    let mut sse = c.call("GET", "/v1/events/stream", Body::None).unwrap();
    dejima(&["token", "revoke", &id]);
    let closed = wait_for(T, "the session to be closed", || match ws.read() {
        Ok(tungstenite::Message::Close(f)) => {
            Some(f.map(|f| f.reason.to_string()).unwrap_or_default())
        }
        Ok(_) => None,
        Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) => Some(e.to_string()),
    });
    assert!(closed.contains("revoked"), "{closed}");
    let mut got = Vec::new();
    wait_for(T, "the event stream to end", || {
        let mut b = [0u8; 4096];
        match sse.reader().read(&mut b) {
            Ok(0) => Some(()),
            Ok(n) => {
                got.extend_from_slice(&b[..n]);
                None
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(_) => Some(()),
        }
    });
    assert!(
        String::from_utf8_lossy(&got).contains("event: revoked"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let r = tcp(&addr, Some(&secret))
        .send("GET", "/v1/islands", Body::None)
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(!d.log().contains(&secret[4..]), "a secret reached the log");
}

#[test]
fn a_scoped_token_sees_only_its_islands() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&["--tcp", &addr], &[]);
    let a = d.create("sc-a");
    let b = d.create("sc-b");
    let v = d.ok(
        "POST",
        "/v1/tokens",
        Some(json!({"role": "operator", "islands": [a.name]})),
    );
    assert_eq!(v["islands"], json!([a.name]));
    let c = tcp(&addr, Some(v["secret"].as_str().unwrap()));
    let get = |p: &str| {
        let r = c.send("GET", p, Body::None).unwrap();
        let s = r.status;
        (
            s,
            serde_json::from_slice::<Value>(&r.bytes().unwrap()).unwrap_or(Value::Null),
        )
    };
    // Lists and counts hold its island only; the other is a 404 everywhere, as if missing.
    let (s, list) = get("/v1/islands");
    assert_eq!(s, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec![a.name.as_str()]);
    assert_eq!(get("/v1/overview").1["total_islands"], 1);
    for p in [
        format!("/v1/islands/{}", b.name),
        format!("/v1/islands/{}/events", b.name),
        format!("/v1/events/stream?island={}", b.name),
    ] {
        assert_eq!(get(&p).0, 404, "{p}");
    }
    let exec = |n: &str| {
        c.send(
            "POST",
            &format!("/v1/islands/{n}/exec"),
            Body::Bytes(br#"{"cmd":["true"]}"#, "application/json"),
        )
        .unwrap()
        .status
    };
    assert_eq!(exec(&a.name), 200);
    assert_eq!(exec(&b.name), 404);
    // An owner token cannot be scoped: it would reach tokens and host terminals anyway.
    let (s, v) = d.req(
        "POST",
        "/v1/tokens",
        Some(json!({"role": "owner", "islands": [a.name]})),
    );
    assert_eq!(s, 400, "{v}");
    // A repo on the daemon host's disk is host file access: the owner's alone.
    let r = c
        .send(
            "POST",
            "/v1/islands",
            Body::Bytes(
                json!({"name": a.name, "repo": "/tmp"})
                    .to_string()
                    .as_bytes(),
                "application/json",
            ),
        )
        .unwrap();
    assert_eq!(r.status, 403);
    // It cannot make islands outside its scope, and its webhooks cover its island only.
    let r = c
        .send(
            "POST",
            "/v1/islands",
            Body::Bytes(
                json!({"name": unique("sc-c"), "no_repo": true})
                    .to_string()
                    .as_bytes(),
                "application/json",
            ),
        )
        .unwrap();
    assert_eq!(r.status, 403);
    let r = c
        .send(
            "POST",
            "/v1/events/subscribe",
            Body::Bytes(br#"{"url":"http://127.0.0.1:9/x"}"#, "application/json"),
        )
        .unwrap();
    assert_eq!(r.status, 201);
    let sub: Value = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
    assert_eq!(sub["islands"], json!([a.name]));
    // Its event stream carries its island's events only.
    let mut sc = c.clone();
    sc.timeout = Some(Duration::from_millis(200));
    let mut sse =
        dejima::client::Client::call(&sc, "GET", "/v1/events/stream", Body::None).unwrap();
    d.ok("POST", &format!("/v1/islands/{}/hibernate", b.name), None);
    d.ok("POST", &format!("/v1/islands/{}/hibernate", a.name), None);
    let mut got = String::new();
    wait_for(T, "its island's event", || {
        let mut buf = [0u8; 4096];
        if let Ok(n) = std::io::Read::read(sse.reader(), &mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        got.contains(&format!("\"island\":\"{}\"", a.name))
            .then_some(())
    });
    assert!(
        !got.contains(&b.name),
        "another island's event leaked: {got}"
    );
}

#[test]
fn require_token_closes_tcp_to_the_untokened_and_not_the_socket() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&["--tcp", &addr, "--require-token"], &[]);
    let i = d.create("req");
    let none = tcp(&addr, None);
    assert_eq!(
        none.send("GET", "/v1/islands", Body::None).unwrap().status,
        401
    );
    assert_eq!(
        none.send("GET", "/v1/events/stream", Body::None)
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        ws_tcp(&addr, &format!("/v1/islands/{}/session", i.name), None).err(),
        Some(401)
    );
    // Nothing on TCP answers without a token; the socket is the owner as ever.
    assert_eq!(
        none.send("GET", "/v1/healthz", Body::None).unwrap().status,
        401
    );
    assert_eq!(d.req("GET", "/v1/islands", None).0, 200);
    // With a token all three work.
    let (_, viewer) = create_token(&d, "viewer");
    let (_, operator) = create_token(&d, "operator");
    let v = tcp(&addr, Some(&viewer));
    assert_eq!(
        v.send("GET", "/v1/islands", Body::None).unwrap().status,
        200
    );
    let mut vc = v.clone();
    vc.timeout = Some(Duration::from_millis(200));
    let r = vc.call("GET", "/v1/events/stream", Body::None).unwrap();
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    drop(r);
    // A viewer may watch a terminal, never type into it (tests/live.rs checks the typing).
    let mut watch = ws_tcp(
        &addr,
        &format!("/v1/islands/{}/session?label=watcher", i.name),
        Some(&viewer),
    )
    .expect("a viewer attaches as an observer");
    // The hello frame follows the registration: presence is certain once it is here.
    expect_hello(&mut watch);
    let a = d.ok("GET", &format!("/v1/islands/{}/agents/a1", i.name), None);
    assert!(
        a["attached"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["label"] == "watcher" && p["read_only"] == true),
        "{a}"
    );
    drop(watch);
    let mut ws = ws_tcp(
        &addr,
        &format!("/v1/islands/{}/session", i.name),
        Some(&operator),
    )
    .expect("an operator attaches");
    expect_hello(&mut ws);
}

/// The session's first text frame, which must be its hello.
fn expect_hello(ws: &mut tungstenite::WebSocket<std::net::TcpStream>) {
    let hello = wait_for(T, "hello", || match ws.read() {
        Ok(tungstenite::Message::Text(t)) => Some(t),
        _ => None,
    });
    assert!(hello.contains("hello"), "{hello}");
}

#[test]
fn wrong_guesses_brake_only_the_guessing_address() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&["--tcp", &format!(":{port}")], &[]);
    let (_, secret) = create_token(&d, "viewer");
    let bad = tcp(
        &addr,
        Some("djo_0000000000000000000000000000000000000000000000000000000000000000"),
    );
    for _ in 0..10 {
        assert_eq!(
            bad.send("GET", "/v1/islands", Body::None).unwrap().status,
            401
        );
    }
    assert_eq!(
        bad.send("GET", "/v1/islands", Body::None).unwrap().status,
        429
    );
    // The same address is braked even with the right token (it cannot go on guessing)...
    assert_eq!(
        tcp(&addr, Some(&secret))
            .send("GET", "/v1/islands", Body::None)
            .unwrap()
            .status,
        429
    );
    // ...while another address is not.
    let o = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            "127.0.0.2",
            "-H",
            &format!("Authorization: Bearer {secret}"),
            &format!("http://127.0.0.1:{port}/v1/islands"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200");
}
