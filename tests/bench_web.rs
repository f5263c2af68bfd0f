//! The dashboard's budgets, run by `scripts/bench web` (ignored in the normal run): what the
//! browser downloads (JS + CSS, gzipped, as dejimad serves them), the fleet view with
//! `BENCH_WEB_ISLANDS` islands (default 100) until interactive in headless Chromium, beside the
//! raw `GET /v1/islands` it renders; and a keystroke's echo in the browser terminal beside the
//! same round trip by a bare websocket in the same page (tests/web/bench.mjs measures both).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::bench::*;
use support::*;

/// Bytes of the body of a GET with `Accept-Encoding: gzip`, as the browser receives it.
fn shipped(addr: &str, path: &str) -> usize {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let head = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(all.starts_with(b"HTTP/1.1 200"), "{path}");
    all.len() - head
}

/// Purges the bench's islands however the bench ends.
struct Sweep<'a>(&'a Daemon, String, usize);

impl Drop for Sweep<'_> {
    fn drop(&mut self) {
        for k in 0..self.2 {
            purge_everything(self.0, &format!("{}{k:03}", self.1));
        }
    }
}

#[test]
#[ignore]
fn bench_web() {
    println!();
    let n: usize = std::env::var("BENCH_WEB_ISLANDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .max(1);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&["--tcp", &addr, "--require-token"], &[]);

    // What a first visit downloads.
    let js = shipped(&addr, "/ui/app.js");
    let css = shipped(&addr, "/ui/app.css");
    let html = shipped(&addr, "/");
    figure(format_args!(
        "web: shipped gzipped: app.js {:.1} KB, app.css {:.1} KB, index.html {:.1} KB",
        js as f64 / 1024.0,
        css as f64 / 1024.0,
        html as f64 / 1024.0
    ));
    goal(
        "web bundle (JS+CSS gzipped) <= 400 KB",
        js + css <= 400 << 10,
        format_args!("{:.1} KB", (js + css) as f64 / 1024.0),
        "400 KB",
    );

    // The fleet: n islands, all but the last few hibernated so the host holds them.
    let prefix = format!("wb{}-", dejima::util::random_hex(3));
    let _sweep = Sweep(&d, prefix.clone(), n);
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k >= n {
                    return;
                }
                let name = format!("{prefix}{k:03}");
                let (st, v) = d.req(
                    "POST",
                    "/v1/islands",
                    Some(json!({"name": name, "no_repo": true, "agent": "custom", "cmd": "bash"})),
                );
                assert_eq!(st, 201, "create {name}: {v}");
                if k + 4 < n {
                    let (st, v) = d.req("POST", &format!("/v1/islands/{name}/hibernate"), None);
                    assert_eq!(st, 200, "hibernate {name}: {v}");
                }
                if k % 20 == 19 {
                    println!("progress: {} islands", k + 1);
                }
            });
        }
    });
    figure(format_args!(
        "web: {n} islands made in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    // The raw figure: the list the fleet view renders, straight from the API.
    let (_, owner) = create_token(&d, "owner");
    let raw: Vec<Duration> = (0..10)
        .map(|_| {
            let t = Instant::now();
            let (st, v) = d.req("GET", "/v1/islands", None);
            assert_eq!(st, 200);
            assert!(v.as_array().unwrap().len() >= n);
            t.elapsed()
        })
        .collect();

    let live = format!("{prefix}{:03}", n - 1);
    let out = Command::new("timeout")
        .args(["-k", "5", "600", "node", "tests/web/bench.mjs"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("BASE", format!("http://{addr}"))
        .env("OWNER", &owner)
        .env("ISLAND", &live)
        .env("COUNT", n.to_string())
        .output()
        .expect("node (run scripts/setup)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tests/web/bench.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    let durs = |k: &str| -> Vec<Duration> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|v| Duration::from_secs_f64(v.as_f64().unwrap() / 1e3))
            .collect()
    };
    let (fleet, term, ws) = (durs("fleet_ms"), durs("term_ms"), durs("ws_ms"));
    figure(format_args!(
        "web: fleet of {n} interactive: p50 {:.0} ms, max {:.0} ms over {} loads (raw GET /v1/islands p50 {:.1} ms)",
        ms(pct(&fleet, 0.5)),
        ms(pct(&fleet, 1.0)),
        fleet.len(),
        ms(pct(&raw, 0.5))
    ));
    goal(
        &format!("web fleet of {n} interactive <= 1 s (p50)"),
        pct(&fleet, 0.5) <= Duration::from_secs(1),
        format_args!("{:.0} ms", ms(pct(&fleet, 0.5))),
        "1000 ms",
    );
    figure(format_args!(
        "web: keystroke echo: browser terminal p50 {:.2} ms p99 {:.2} ms; bare websocket p50 {:.2} ms p99 {:.2} ms ({} samples each)",
        ms(pct(&term, 0.5)),
        ms(pct(&term, 0.99)),
        ms(pct(&ws, 0.5)),
        ms(pct(&ws, 0.99)),
        term.len()
    ));
    let over = ms(pct(&term, 0.5)) - ms(pct(&ws, 0.5));
    goal(
        "web terminal echo p50 <= websocket p50 + 5 ms",
        over <= 5.0,
        format_args!("{over:+.2} ms"),
        "+5 ms",
    );
}
