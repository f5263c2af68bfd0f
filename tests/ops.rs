//! Operations: readiness, and the Prometheus metrics (checked by promtool itself).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use support::*;

fn promtool_check(text: &str) {
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus; scripts/setup installs it)");
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool check metrics:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn metrics_pass_promtool_and_count_what_happened() {
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(&["--tcp", &addr, "--require-token"], &[]);
    let i = d.create("metrics");
    d.exec(&i.name, &["true"]);
    let _ = d.req("GET", "/v1/islands/no-such-island", None);
    let r = d
        .client
        .send("GET", "/metrics", dejima::client::Body::None)
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().unwrap();
    promtool_check(&text);
    for want in [
        "dejima_http_requests_total{route=\"/v1/islands/{name}/exec\",method=\"POST\",status=\"200\"}",
        "dejima_http_requests_total{route=\"/v1/islands/{name}\",method=\"GET\",status=\"404\"}",
        "dejima_http_request_duration_seconds_bucket{route=\"/v1/islands\",le=\"+Inf\"}",
        "dejima_engine_call_duration_seconds_count{verb=\"exec\"}",
        "dejima_islands{state=\"running\",container=\"running\"} 1",
        "dejima_agents{state=",
        "dejima_attached_clients 0",
        "dejima_webhook_queue_depth 0",
        "dejima_event_stream_drops_total 0",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    assert!(
        !text.contains("no-such-island"),
        "routes are patterns, never raw paths"
    );
    // On TCP: operators may scrape, viewers may not, and nobody without a token.
    let token = |role: &str| {
        d.ok("POST", "/v1/tokens", Some(json!({"role": role})))["secret"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let tcp = |t: Option<String>| dejima::client::Client {
        target: dejima::client::Target::Tcp(addr.clone()),
        token: t,
        timeout: None,
    };
    let get = |c: dejima::client::Client| {
        c.send("GET", "/metrics", dejima::client::Body::None)
            .unwrap()
            .status
    };
    assert_eq!(get(tcp(Some(token("operator")))), 200);
    assert_eq!(get(tcp(Some(token("viewer")))), 403);
    assert_eq!(get(tcp(None)), 401);
}

#[test]
fn readyz_says_what_is_missing() {
    let d = Daemon::start();
    let v = d.ok("GET", "/v1/readyz", None);
    assert_eq!(v["ready"], true, "{v}");
    let other = Daemon::start_with(&["--image", "dejima/island:never-built-here"], &[]);
    let (st, v) = other.req("GET", "/v1/readyz", None);
    assert_eq!(st, 503, "{v}");
    assert!(err_text(&v).contains("never-built-here"), "{v}");
}

#[test]
fn doctor_checks_the_host_and_fixes_what_is_safe() {
    let d = Daemon::start();
    let dejima = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dejima"))
            .args(args)
            .env("DEJIMA_HOME", &d.home)
            .env_remove("DEJIMA_HOST")
            .output()
            .unwrap()
    };
    let o = dejima(&["doctor"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{text}");
    for name in [
        "engine",
        "image",
        "tmux",
        "socket",
        "disk",
        "memory",
        "open files",
        "panic switch",
        "clock",
    ] {
        assert!(text.contains(name), "{name}:\n{text}");
    }
    // A socket others could use is found, and --fix tightens it.
    let sock = d.sock();
    std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let v = d.ok("GET", "/v1/doctor", None);
    let socket = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "socket")
        .unwrap()
        .clone();
    assert_eq!(socket["status"], "warn", "{v}");
    assert!(socket["fix"].is_string());
    let o = dejima(&["doctor", "--fix"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("fixed:"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !ledger(&d, "doctor.fix", "").is_empty(),
        "the fix is ledgered"
    );
    // An engaged panic switch is reported.
    d.ok("POST", "/v1/panic", Some(json!({"reason": "drill"})));
    let o = dejima(&["doctor"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("engaged (drill)"));
    d.ok("DELETE", "/v1/panic", None);
    // A missing image fails the doctor (exit 1).
    let other = Daemon::start_with(&["--image", "dejima/island:never-built-here"], &[]);
    let o = Command::new(env!("CARGO_BIN_EXE_dejima"))
        .arg("doctor")
        .env("DEJIMA_HOME", &other.home)
        .env_remove("DEJIMA_HOST")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("never-built-here is not built"));
}
