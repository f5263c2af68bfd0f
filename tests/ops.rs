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
