//! Benchmarks, run by `scripts/bench` (ignored in the normal test run). Each figure is printed
//! next to the raw docker operation measured in the same run, as a ratio or a difference.
//!
//! Output protocol (what `scripts/bench` keeps): figures are lines starting `bench: `, goal
//! verdicts are lines `goal: <name>: met|missed (<measured> vs <target>)`, also appended to the
//! file named by `BENCH_GOALS` when it is set.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dejima::client::Body;
use serde_json::json;
use support::bench::*;
use support::*;

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

#[test]
#[ignore]
fn bench() {
    println!();
    let d = Daemon::start();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .max(1);

    // --- exec overhead: the API vs the docker exec it stands for, interleaved ---
    let i = d.create("bench");
    let c = format!("dejima-{}", i.name);
    let body = serde_json::to_vec(&json!({"cmd": ["true"]})).unwrap();
    let path = format!("/v1/islands/{}/exec", i.name);
    let raw_exec = || {
        let o = Command::new("docker")
            .args(["exec", "-u", "agent", "-w", "/workspace", &c, "true"])
            .stdin(Stdio::null())
            .output()
            .expect("docker CLI");
        assert!(
            o.status.success(),
            "docker exec: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let api_exec = || {
        let r = d
            .client
            .call("POST", &path, Body::Bytes(&body, "application/json"))
            .unwrap();
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
        assert_eq!(v["exit_code"], 0, "{v}");
    };
    // Warm both paths (page cache, the engine's exec machinery) before measuring.
    for _ in 0..10 {
        raw_exec();
        api_exec();
    }
    let (mut raw, mut api) = (Vec::new(), Vec::new());
    for k in 0..rounds {
        // Alternate which goes first so neither side always runs right after the other.
        if k % 2 == 0 {
            raw.push(time(raw_exec));
            api.push(time(api_exec));
        } else {
            api.push(time(api_exec));
            raw.push(time(raw_exec));
        }
    }
    let (r50, r99, a50, a99) = (
        pct(&raw, 0.5),
        pct(&raw, 0.99),
        pct(&api, 0.5),
        pct(&api, 0.99),
    );
    // Paired: each round's API time less the raw time next to it, so drift in the engine's
    // own speed over the run cancels out.
    let diffs: Vec<f64> = api.iter().zip(&raw).map(|(a, r)| ms(*a) - ms(*r)).collect();
    let mut sorted = diffs.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let paired = sorted[sorted.len() / 2];
    let (over, ratio) = (paired, (ms(r50) + paired) / ms(r50));
    figure(format_args!(
        "exec ({rounds} rounds, `true`): raw docker exec p50 {:.1} ms p99 {:.1} ms; API p50 {:.1} ms p99 {:.1} ms; overhead (median of paired differences) {over:+.2} ms, ratio {ratio:.3}",
        ms(r50),
        ms(r99),
        ms(a50),
        ms(a99),
    ));
    goal(
        "exec overhead",
        over <= 1.0 && ratio <= 1.02,
        format_args!("p50 {over:+.2} ms, ratio {ratio:.3}"),
        "<= +1 ms and <= 1.02",
    );

    // --- create (no repo) and wake vs the raw docker chain ---
    let (mut raw_c, mut api_c, mut raw_w, mut api_w) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for k in 0..5 {
        let rn = format!("rawb{k}-{}", dejima::util::random_hex(3));
        let _s = Sweep(rn.clone());
        raw_c.push(time(|| {
            let l = "--label=dejima.test=1";
            let net = format!("dejima-net-{rn}");
            let ws = format!("dejima-{rn}-workspace");
            let hv = format!("dejima-{rn}-home");
            docker_ok(&["network", "create", l, &net]);
            docker_ok(&["volume", "create", l, &ws]);
            docker_ok(&["volume", "create", l, &hv]);
            docker_ok(&[
                "run",
                "-d",
                "--init",
                l,
                "--name",
                &format!("dejima-{rn}"),
                "--network",
                &net,
                "--mount",
                &format!("type=volume,src={ws},dst=/workspace"),
                "--mount",
                &format!("type=volume,src={hv},dst=/home/agent"),
                "dejima/island:latest",
            ]);
            docker_ok(&[
                "exec",
                "-u",
                "agent",
                &format!("dejima-{rn}"),
                "git",
                "init",
                "-q",
                "/workspace",
            ]);
        }));
        docker_ok(&["stop", "-t", "10", &format!("dejima-{rn}")]);
        raw_w.push(time(|| {
            docker_ok(&["start", &format!("dejima-{rn}")]);
        }));
        let an = format!("apib{k}-{}", dejima::util::random_hex(3));
        let _s2 = Sweep(an.clone());
        api_c.push(time(|| {
            let (s, v) = d.req(
                "POST",
                "/v1/islands",
                Some(json!({"name": an, "no_repo": true, "agent": "custom", "cmd": "bash"})),
            );
            assert_eq!(s, 201, "{v}");
        }));
        d.ok("POST", &format!("/v1/islands/{an}/hibernate"), None);
        api_w.push(time(|| {
            d.ok("POST", &format!("/v1/islands/{an}/wake"), None);
        }));
        purge_everything(&d, &an);
    }
    let (rc, ac, rw, aw) = (
        pct(&raw_c, 0.5),
        pct(&api_c, 0.5),
        pct(&raw_w, 0.5),
        pct(&api_w, 0.5),
    );
    let (cr, wr) = (ms(ac) / ms(rc), ms(aw) / ms(rw));
    figure(format_args!(
        "create (5 rounds): raw chain p50 {:.0} ms, API p50 {:.0} ms, ratio {cr:.2}",
        ms(rc),
        ms(ac),
    ));
    goal(
        "create vs raw chain",
        cr <= 1.15,
        format_args!("ratio {cr:.2}"),
        "<= 1.15",
    );
    figure(format_args!(
        "wake (5 rounds): raw docker start p50 {:.0} ms, API p50 {:.0} ms, ratio {wr:.2}",
        ms(rw),
        ms(aw),
    ));
    goal(
        "wake vs docker start",
        wr <= 1.10,
        format_args!("ratio {wr:.2}"),
        "<= 1.10",
    );
    drop(i);
    drop(d);

    // --- GET /v1/islands with 100 islands registered (hibernated records) ---
    let d = Daemon::start();
    d.kill9();
    for k in 0..100 {
        let n = format!("reg{k:03}");
        let rec = json!({"name": n, "repo": "", "agent": "custom", "image": "dejima/island:latest", "state": "hibernated",
            "created_at": "2026-11-22T00:00:00Z", "last_used_at": "2026-11-22T00:00:00Z", "provisioned": true});
        let dir = d.home.join("islands").join(&n);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("island.json"), serde_json::to_vec(&rec).unwrap()).unwrap();
    }
    d.spawn();
    assert_eq!(
        d.ok("GET", "/v1/islands", None).as_array().unwrap().len(),
        100
    );
    let mut lat = Vec::new();
    for _ in 0..1000 {
        lat.push(time(|| {
            let r = d.client.call("GET", "/v1/islands", Body::None).unwrap();
            assert_eq!(r.bytes().unwrap().first(), Some(&b'['));
        }));
    }
    let (p50, p99) = (pct(&lat, 0.5), pct(&lat, 0.99));
    figure(format_args!(
        "list: GET /v1/islands with 100 islands (1000 samples) p50 {:.2} ms, p99 {:.2} ms",
        ms(p50),
        ms(p99)
    ));
    goal(
        "list p99 at 100 islands",
        ms(p99) <= 2.0,
        format_args!("{:.2} ms", ms(p99)),
        "<= 2 ms",
    );
    figure(format_args!(
        "daemon RSS after 1000 lists of 100 islands: {} kB",
        rss_kb(d.pid())
    ));
}

/// Thousands of TCP connections that send half a request line and stop (a slowloris, or
/// phones on a bad network): the daemon holds at most `--max-connections` of them, refuses the
/// rest with a 503 at once, keeps the Unix socket answering, and frees everything at the head
/// deadline.
#[test]
#[ignore]
fn bench_connections() {
    use std::io::{Read, Write};
    println!();
    let n: usize = std::env::var("BENCH_CONNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcp = format!("127.0.0.1:{port}");
    // The defaults: 512 connections a listener, a 10 s head deadline.
    let d = Daemon::start_with(&["--tcp", &tcp], &[]);
    let pid = d.pid();
    let (t0, r0) = (proc_status(pid, "Threads"), rss_kb(pid));
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(&tcp).unwrap();
        let _ = s.write_all(b"GET /v1/heal");
        conns.push(s);
    }
    // Every connection past the cap is answered at once; give the answers a moment to land,
    // then sort the connections without waiting on any.
    std::thread::sleep(Duration::from_millis(500));
    let mut refused = 0;
    let mut held = Vec::new();
    for mut s in conns {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(k) if k > 0 && b.starts_with(b"HTTP/1.1 503") => refused += 1,
            _ => {
                s.set_nonblocking(false).unwrap();
                held.push(s)
            }
        }
    }
    let (tp, rp) = (proc_status(pid, "Threads"), rss_kb(pid));
    let mut lat = Vec::new();
    for _ in 0..20 {
        lat.push(time(|| {
            assert_eq!(d.req("GET", "/v1/healthz", None).0, 200)
        }));
    }
    let healthz = pct(&lat, 0.5);
    figure(format!(
        "{n} half-sent TCP connections: {} held, {refused} answered 503; daemon threads {t0} -> {tp}, RSS {:.1} -> {:.1} MB; Unix-socket healthz p50 {:.2} ms meanwhile",
        held.len(),
        r0 as f64 / 1024.0,
        rp as f64 / 1024.0,
        ms(healthz)
    ));
    // The head deadline answers the held ones (408) and frees their threads.
    let mut timed_out = 0;
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut b = Vec::new();
        let _ = s.read_to_end(&mut b);
        if b.starts_with(b"HTTP/1.1 408") {
            timed_out += 1;
        }
    }
    let freed_after = started.elapsed();
    figure(format!(
        "{timed_out} of the held connections were answered 408 at the head deadline"
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while proc_status(pid, "Threads") > t0 + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (t1, r1) = (proc_status(pid, "Threads"), rss_kb(pid));
    figure(format!(
        "all closed by the server {:.1} s after the first connect; threads back to {t1}, RSS {:.1} MB",
        freed_after.as_secs_f64(),
        r1 as f64 / 1024.0
    ));
    goal(
        &format!("{n} half-sent connections"),
        tp <= t0 + 512 + 8 && refused + held.len() == n && t1 <= t0 + 2,
        format!("peak {} threads, {refused} refused, {t1} threads after", tp),
        format!("<= {} threads at peak, back to {t0}", t0 + 520),
    );
}
