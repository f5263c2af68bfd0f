//! Benchmarks, run by `scripts/bench` (ignored in the normal test run). Each figure is printed
//! next to the raw docker operation measured in the same run, as a ratio or a difference.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use dejima::client::Body;
use serde_json::json;
use support::*;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

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
        .unwrap_or(40);

    // --- exec overhead ---
    let i = d.create("bench");
    let c = format!("dejima-{}", i.name);
    let body = serde_json::to_vec(&json!({"cmd": ["true"]})).unwrap();
    let path = format!("/v1/islands/{}/exec", i.name);
    let (mut raw, mut api, mut wrapped) = (Vec::new(), Vec::new(), Vec::new());
    let docker = |args: &[&str]| {
        assert!(Command::new("docker")
            .args(args)
            .status()
            .unwrap()
            .success())
    };
    for _ in 0..rounds {
        raw.push(time(|| docker(&["exec", "-u", "agent", &c, "true"])));
        // What the API runs: the in-island timeout that makes a timed-out command really die.
        wrapped.push(time(|| {
            docker(&[
                "exec",
                "-u",
                "agent",
                "-w",
                "/workspace",
                &c,
                "timeout",
                "-k",
                "5",
                "60",
                "true",
            ])
        }));
        api.push(time(|| {
            let r = d
                .client
                .call("POST", &path, Body::Bytes(&body, "application/json"))
                .unwrap();
            assert_eq!(r.status, 200)
        }));
    }
    let (r50, a50, w50) = (
        pct(&mut raw, 0.5),
        pct(&mut api, 0.5),
        pct(&mut wrapped, 0.5),
    );
    println!(
        "exec: raw docker exec p50 {:.1} ms, API p50 {:.1} ms, overhead {:+.1} ms (goal <= 3 ms); raw with the API's in-island timeout wrapper p50 {:.1} ms, API over that {:+.1} ms",
        ms(r50),
        ms(a50),
        ms(a50) - ms(r50),
        ms(w50),
        ms(a50) - ms(w50)
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
        pct(&mut raw_c, 0.5),
        pct(&mut api_c, 0.5),
        pct(&mut raw_w, 0.5),
        pct(&mut api_w, 0.5),
    );
    println!(
        "create: raw chain p50 {:.0} ms, API p50 {:.0} ms, ratio {:.2} (goal <= 1.15)",
        ms(rc),
        ms(ac),
        ms(ac) / ms(rc)
    );
    println!(
        "wake: raw docker start p50 {:.0} ms, API p50 {:.0} ms, ratio {:.2} (goal <= 1.10)",
        ms(rw),
        ms(aw),
        ms(aw) / ms(rw)
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
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    println!(
        "list: GET /v1/islands with 100 islands p50 {:.2} ms, p99 {:.2} ms (goal p99 <= 2 ms)",
        ms(p50),
        ms(p99)
    );
    let rss = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let rss = rss
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("")
        .to_string();
    println!("daemon idle {rss}");
}
