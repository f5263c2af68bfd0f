//! HTTP's corners on the real daemon, through real clients: `Expect: 100-continue` with curl,
//! ambiguous body framing, the exact 101 head, idle and half-sent connections, the connection
//! cap, and a panicking request that must not take more than itself down.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use support::*;

/// Send `head` (and `body`) on a fresh Unix-socket connection and read until the server
/// closes or `limit` passes.
fn raw_exchange(d: &Daemon, bytes: &[u8], limit: Duration) -> String {
    let mut s = UnixStream::connect(d.sock()).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn curl(args: &[&str]) -> (String, String) {
    let o = Command::new("curl").args(args).output().expect("curl");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn curl_uploads_get_100_continue_and_refusals_come_before_the_body() {
    let d = Daemon::start();
    let i = d.create("expect");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|k| (k % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let sock = d.sock().display().to_string();
    let at = format!("@{}", file.display());

    // The README's own upload: curl sends Expect: 100-continue for a body this size.
    let url = format!(
        "http://dejimad/v1/islands/{}/files/workspace/big.bin",
        i.name
    );
    let (out, err) = curl(&[
        "-sv",
        "--unix-socket",
        &sock,
        "-X",
        "PUT",
        "--data-binary",
        &at,
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert!(
        err.contains("Expect: 100-continue"),
        "curl did not ask: {err}"
    );
    assert!(
        err.contains("HTTP/1.1 100 Continue"),
        "no interim 100: {err}"
    );
    assert_eq!(out.trim(), "204", "{err}");
    let (sz, _) = d.exec(&i.name, &["stat", "-c", "%s", "/workspace/big.bin"]);
    assert_eq!(sz.trim(), "3000000");

    // Refused before the body: the final status comes at once, without a 100 and without
    // the body having to be sent.
    let url = "http://dejimad/v1/islands/no-such-island/files/workspace/big.bin";
    let (out, err) = curl(&[
        "-sv",
        "--unix-socket",
        &sock,
        "-X",
        "PUT",
        "--data-binary",
        &at,
        "-w",
        "%{http_code}",
        url,
    ]);
    assert_eq!(
        out.trim_end().rsplit('}').next().unwrap().trim(),
        "404",
        "{out} {err}"
    );
    assert!(!err.contains("100 Continue"), "{err}");
    // And over the cap: 413 before a byte of the body.
    let head = format!(
        "PUT /v1/islands/{}/files/workspace/huge HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        i.name,
        (1u64 << 30) + 1
    );
    let reply = raw_exchange(&d, head.as_bytes(), Duration::from_secs(10));
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(!reply.contains("100 Continue"), "{reply}");
    // An expectation we do not know is a 417.
    let reply = raw_exchange(
        &d,
        b"POST /v1/islands HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: teapot\r\n\r\n{}",
        Duration::from_secs(10),
    );
    assert!(reply.starts_with("HTTP/1.1 417"), "{reply}");
}

#[test]
fn ambiguous_framing_is_400_and_changes_nothing() {
    let d = Daemon::start();
    let name = unique("smuggle");
    let body = format!("{{\"name\":\"{name}\",\"no_repo\":true,\"agent\":\"custom\"}}");
    let req = format!(
        "POST /v1/islands HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len(),
        body.len()
    );
    let reply = raw_exchange(&d, req.as_bytes(), Duration::from_secs(10));
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("not both"), "{reply}");
    let (s, _) = d.req("GET", &format!("/v1/islands/{name}"), None);
    assert_eq!(s, 404, "nothing was created");
}

#[test]
fn a_101_carries_exactly_one_connection_header_and_no_body_headers() {
    let d = Daemon::start();
    let i = d.create("hdr");
    let head = format!(
        "GET /v1/islands/{}/agents/a1/session HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        i.name
    );
    let mut s = UnixStream::connect(d.sock()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed mid-head: {got:?}");
        got.push(b[0]);
    }
    let text = String::from_utf8(got).unwrap();
    let lines: Vec<&str> = text.trim_end().split("\r\n").collect();
    assert_eq!(lines[0], "HTTP/1.1 101 Switching Protocols");
    let named = |n: &str| -> Vec<&str> {
        lines[1..]
            .iter()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(n))
            .map(|(_, v)| v.trim())
            .collect()
    };
    assert_eq!(named("connection"), vec!["Upgrade"], "{text}");
    assert_eq!(named("upgrade"), vec!["websocket"], "{text}");
    assert_eq!(
        named("sec-websocket-accept"),
        vec!["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]
    );
    assert!(named("content-length").is_empty(), "{text}");
    assert!(named("transfer-encoding").is_empty(), "{text}");
}

fn threads_of(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Read until the peer closes (Ok) or `limit` passes (Err), returning what came.
fn read_to_close(s: &mut dyn Read, limit: Duration) -> Result<String, String> {
    let deadline = std::time::Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&out).into_owned()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(String::from_utf8_lossy(&out).into_owned())
            }
            Err(_) if std::time::Instant::now() < deadline => {}
            Err(e) => return Err(format!("{e}; got {:?}", String::from_utf8_lossy(&out))),
        }
    }
}

#[test]
fn idle_and_half_sent_connections_are_cut_and_a_full_listener_answers_503() {
    let port = free_port();
    let tcp = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(
        &[
            "--tcp",
            &tcp,
            "--max-connections",
            "40",
            "--header-timeout",
            "2",
            "--idle-timeout",
            "2",
        ],
        &[],
    );
    let i = d.create("conns");
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.home.join("islands").join(&i.name).join("island.json")).unwrap(),
    )
    .unwrap();
    let token = rec["token"].as_str().unwrap().to_string();
    let island_sock = d
        .home
        .join("islands")
        .join(&i.name)
        .join("run/dejimad.sock");
    let pid = d.pid();
    let base = threads_of(pid);
    // Its open-file limit was raised to the hard ceiling at start.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect();
    assert_eq!(files[0], files[1], "soft open-file limit = hard: {files:?}");

    // A listener full of connections that sent half a request line and stopped.
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut s = std::net::TcpStream::connect(&tcp).unwrap();
        s.write_all(b"GET /v1/heal").unwrap();
        held.push(s);
    }
    // One more is told why at once, and how to change it. (The listener accepts in order,
    // so the 41st is accepted after all 40 are counted.)
    let mut extra = std::net::TcpStream::connect(&tcp).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let reply = read_to_close(&mut extra, Duration::from_secs(5)).unwrap();
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("--max-connections"), "{reply}");
    // The operator socket and the island's own socket are not starved by TCP.
    let (s, _) = d.req("GET", "/v1/healthz", None);
    assert_eq!(s, 200);
    let mut isl = UnixStream::connect(&island_sock).unwrap();
    isl.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        isl,
        "GET /v1/healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let reply = read_to_close(&mut isl, Duration::from_secs(5)).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // The head deadline answers the half-sent requests and frees their threads.
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let reply = read_to_close(s, Duration::from_secs(15)).unwrap();
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    }
    assert!(threads_of(pid) >= base, "threads are counted");
    drop(held);
    wait_for(
        Duration::from_secs(10),
        "the connection threads to end",
        || (threads_of(pid) <= base + 2).then_some(()),
    );

    // A connection that never sends a byte is closed too, and so is an idle keep-alive one.
    let mut silent = std::net::TcpStream::connect(&tcp).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert_eq!(
        read_to_close(&mut silent, Duration::from_secs(15)).unwrap(),
        ""
    );
    let mut kept = std::net::TcpStream::connect(&tcp).unwrap();
    kept.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    kept.write_all(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_to_close(&mut kept, Duration::from_secs(15)).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("keep-alive"), "{reply}");
}
