//! Benchmark, run by `scripts/bench` (ignored in the normal test run): the brokers against
//! the raw operations they stand for, in the same run.
//! - MCP: a call on a kept (island, server) process and on a fresh process per call
//!   (`keep_alive_secs: 0`), against starting the real server by hand and making the same
//!   call over its stdio. This is what decided that processes are kept.
//! - Capabilities: an execute through the API against running the same script directly.
//! - Port: intake throughput against `docker cp` of the same folder.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::bench::*;
use support::*;

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn p50(v: &[Duration]) -> Duration {
    pct(v, 0.5)
}

fn line(v: &[Duration]) -> String {
    format!(
        "p50 {:.1} ms, p95 {:.1} ms",
        ms(pct(v, 0.5)),
        ms(pct(v, 0.95))
    )
}

/// Start the server by hand, initialize, make one call, and end it: what a broker without
/// kept processes would do per call.
fn raw_mcp_call(node: &str, script: &str) {
    let mut c = Command::new(node)
        .args([script, "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut w = c.stdin.take().unwrap();
    let mut r = BufReader::new(c.stdout.take().unwrap());
    let mut ask = |v: Value, answer: bool| {
        writeln!(w, "{v}").unwrap();
        if answer {
            loop {
                let mut l = String::new();
                assert!(r.read_line(&mut l).unwrap() > 0, "the server ended");
                let m: Value = serde_json::from_str(&l).unwrap_or(Value::Null);
                if m.get("id").is_some() && m.get("method").is_none() {
                    return;
                }
            }
        }
    };
    ask(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}),
        true,
    );
    ask(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        false,
    );
    ask(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "x"}}}),
        true,
    );
    drop(w);
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
#[ignore]
fn bench_brokers() {
    println!();
    let d = Daemon::start();
    let i = d.create("bench-brokers");
    let n = i.name.clone();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
        .clamp(3, 200);

    // --- MCP ---
    let node = String::from_utf8(
        Command::new("node")
            .args(["-e", "process.stdout.write(process.execPath)"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let script = script.to_str().unwrap().to_string();
    std::fs::create_dir_all(d.home.join("mcp")).unwrap();
    std::fs::write(
        d.home.join("mcp/servers.json"),
        json!({"servers": {
            "kept": {"command": node, "args": [script, "stdio"]},
            "fresh": {"command": node, "args": [script, "stdio"], "keep_alive_secs": 0},
        }})
        .to_string(),
    )
    .unwrap();
    for s in ["kept", "fresh"] {
        d.ok(
            "POST",
            &format!("/v1/islands/{n}/mcp/grants"),
            Some(json!({"server": s})),
        );
    }
    let me = as_island(&d, &n);
    let api_call = |server: &str| {
        let (st, v) = call(
            &me,
            "POST",
            "/v1/mcp/call",
            Some(
                json!({"server": server, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "x"}}}),
            ),
        );
        assert_eq!(st, 200, "{v}");
    };
    api_call("kept");
    let (mut raw, mut kept, mut fresh) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw.push(time(|| raw_mcp_call(&node, &script)));
        kept.push(time(|| api_call("kept")));
        fresh.push(time(|| api_call("fresh")));
    }
    figure(format!("mcp raw start+call: {}", line(&raw)));
    figure(format!("mcp call, kept process: {}", line(&kept)));
    figure(format!("mcp call, process per call: {}", line(&fresh)));
    goal(
        "mcp kept call under a fifth of a raw start",
        p50(&kept) * 5 < p50(&raw),
        format!("{:.1} ms", ms(p50(&kept))),
        format!("{:.1} ms / 5", ms(p50(&raw))),
    );
    goal(
        "mcp process-per-call overhead over raw",
        p50(&fresh) < p50(&raw) * 13 / 10,
        format!(
            "{:.2}x",
            p50(&fresh).as_secs_f64() / p50(&raw).as_secs_f64()
        ),
        "1.3x",
    );

    // --- capabilities ---
    let caps = d.home.join("capabilities");
    std::fs::create_dir_all(&caps).unwrap();
    let target = caps.join("noop");
    std::fs::write(&target, "#!/bin/sh\ncat >/dev/null\necho ok\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
    d.ok(
        "POST",
        &format!("/v1/islands/{n}/capability/grants"),
        Some(json!({"target": "noop"})),
    );
    let raw_cap = || {
        let mut c = Command::new(&target)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(b"{}").unwrap();
        assert!(c.wait_with_output().unwrap().status.success());
    };
    let api_cap = || {
        let (st, v) = call(
            &me,
            "POST",
            "/v1/capabilities/execute",
            Some(json!({"target": "noop", "args": {"k": "v"}})),
        );
        assert_eq!((st, v["ok"].clone()), (200, json!(true)), "{v}");
    };
    let (mut raw, mut api) = (Vec::new(), Vec::new());
    for _ in 0..rounds * 3 {
        raw.push(time(raw_cap));
        api.push(time(api_cap));
    }
    figure(format!("capability raw run: {}", line(&raw)));
    figure(format!("capability execute: {}", line(&api)));
    let over = p50(&api).saturating_sub(p50(&raw));
    goal(
        "capability execute overhead over a direct run",
        over < Duration::from_millis(20),
        format!("{:.1} ms", ms(over)),
        "20 ms",
    );

    // --- Port intake throughput ---
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("data");
    std::fs::create_dir_all(src.join("many")).unwrap();
    let chunk: Vec<u8> = (0..(1u32 << 20)).map(|k| (k % 251) as u8).collect();
    {
        let mut f = std::fs::File::create(src.join("big.bin")).unwrap();
        for _ in 0..128 {
            f.write_all(&chunk).unwrap();
        }
    }
    for k in 0..500 {
        std::fs::write(
            src.join(format!("many/f{k}.txt")),
            format!("file {k}\n").repeat(40),
        )
        .unwrap();
    }
    d.ok(
        "POST",
        &format!("/v1/islands/{n}/port/scopes"),
        Some(json!({"host_path": src})),
    );
    let container = format!("dejima-{n}");
    let (mut raw, mut api) = (Vec::new(), Vec::new());
    for k in 0..3 {
        raw.push(time(|| {
            docker_ok(&[
                "cp",
                src.to_str().unwrap(),
                &format!("{container}:/tmp/raw{k}"),
            ]);
        }));
        api.push(time(|| {
            let (st, v) = call(
                &me,
                "POST",
                &format!("/v1/islands/{n}/port/intake"),
                Some(json!({"scope": "data", "dest": format!("/home/agent/in{k}")})),
            );
            assert_eq!(st, 200, "{v}");
        }));
        d.exec(&n, &["rm", "-rf", &format!("/home/agent/in{k}")]);
        docker_ok(&["exec", &container, "rm", "-rf", &format!("/tmp/raw{k}")]);
    }
    let mib = 128.0 + 500.0 * 320.0 / 1048576.0;
    figure(format!(
        "port intake {mib:.0} MiB / 502 files: {:.0} MiB/s (docker cp {:.0} MiB/s)",
        mib / p50(&api).as_secs_f64(),
        mib / p50(&raw).as_secs_f64()
    ));
    goal(
        "port intake time against docker cp",
        p50(&api) < p50(&raw) * 2,
        format!("{:.2}x", p50(&api).as_secs_f64() / p50(&raw).as_secs_f64()),
        "2x",
    );
}
