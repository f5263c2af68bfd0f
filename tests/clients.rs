//! Independent client stacks attach to the session websocket: Python's websocket-client (with
//! requests for REST) and Node's ws, over TCP and the Unix socket. Guards the 101 head: a
//! response that carried `Connection: keep-alive` beside `Connection: Upgrade` and a
//! `Content-Length: 0` made websocket-client refuse it ("Invalid WebSocket Header").
//! The scripts live in tests/clients/; scripts/setup installs what they import.

mod support;

use std::process::{Command, Output};

use support::*;

/// A free loopback port: bind port 0, note it, let it go.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A daemon that also listens on loopback TCP; returns it and the port.
fn tcp_daemon() -> (Daemon, u16) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    (Daemon::start_with(&["--tcp", &addr], &[]), port)
}

/// Run a client script from the crate root; panic with its whole output unless it printed ok.
fn run_client(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e} (run scripts/setup)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.lines().any(|l| l.trim() == "ok"),
        "{program} {args:?} -> {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    // Shown with --nocapture: what the client saw of the 101.
    print!("{stdout}");
    out
}

#[test]
fn python_websocket_client_attaches_and_types() {
    let (d, port) = tcp_daemon();
    let isl = d.create("pyws");
    let marker = format!("py{}", dejima::util::random_hex(4));
    run_client(
        "python3",
        &[
            "tests/clients/attach.py",
            &port.to_string(),
            &isl.name,
            &marker,
        ],
    );
    let clients = d.ok("GET", "/v1/clients", None);
    let recs = clients.as_array().expect("a list of client records");
    assert!(
        recs.iter()
            .any(|r| r["label"] == "python" && r["island"] == isl.name.as_str()),
        "no client record labelled python for {}: {clients}",
        isl.name
    );
}

#[test]
fn node_ws_attaches_over_tcp_and_the_unix_socket() {
    let (d, port) = tcp_daemon();
    let isl = d.create("nodews");
    let marker = format!("nd{}", dejima::util::random_hex(4));
    let sock = d.sock().display().to_string();
    run_client(
        "node",
        &[
            "tests/clients/attach.mjs",
            &port.to_string(),
            &isl.name,
            &marker,
            &sock,
        ],
    );
    let clients = d.ok("GET", "/v1/clients", None);
    for label in ["node", "node-unix"] {
        assert!(
            clients
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["label"] == label && r["island"] == isl.name.as_str()),
            "no client record labelled {label}: {clients}"
        );
    }
}

#[test]
fn node_ws_drives_the_multiplexed_stream() {
    let d = Daemon::start();
    let a = d.create("mxa");
    let b = d.create("mxb");
    let sock = d.sock().display().to_string();
    run_client(
        "node",
        &["tests/clients/stream.mjs", &sock, &a.name, &b.name],
    );
}
