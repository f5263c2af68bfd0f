//! Exec, files and logs against a real island.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use dejima::client::Body;
use serde_json::json;
use sha2::{Digest, Sha256};
use support::*;

#[test]
fn exec_returns_output_code_and_honours_options() {
    let d = Daemon::start();
    let i = d.create("exec");
    let p = format!("/v1/islands/{}/exec", i.name);
    let v = d.ok(
        "POST",
        &p,
        Some(json!({"cmd": ["sh", "-c", "echo out; echo err >&2; exit 7"]})),
    );
    assert_eq!(
        (
            v["stdout"].as_str(),
            v["stderr"].as_str(),
            v["exit_code"].as_i64()
        ),
        (Some("out\n"), Some("err\n"), Some(7))
    );
    let v = d.ok("POST", &p, Some(json!({"cmd": ["id", "-un"]})));
    assert_eq!(v["stdout"], "agent\n");
    let v = d.ok(
        "POST",
        &p,
        Some(json!({"cmd": ["id", "-un"], "user": "root"})),
    );
    assert_eq!(v["stdout"], "root\n");
    let v = d.ok("POST", &p, Some(json!({"cmd": ["pwd"]})));
    assert_eq!(v["stdout"], "/workspace\n");
    let v = d.ok("POST", &p, Some(json!({"cmd": ["pwd"], "workdir": "/tmp"})));
    assert_eq!(v["stdout"], "/tmp\n");
    let v = d.ok("POST", &p, Some(json!({"cmd": ["cat"], "stdin": "fed in"})));
    assert_eq!(v["stdout"], "fed in");
    let v = d.ok(
        "POST",
        &p,
        Some(json!({"cmd": ["sh", "-c", "echo $FOO"], "env": {"FOO": "bar"}})),
    );
    assert_eq!(v["stdout"], "bar\n");
    let v = d.ok("POST", &p, Some(json!({"cmd": ["no-such-program"]})));
    assert_eq!(v["exit_code"], 127);

    // A timeout ends the command inside the island, not just the client.
    let t = Instant::now();
    let v = d.ok(
        "POST",
        &p,
        // A child in the background and the command itself: both must go.
        Some(json!({"cmd": ["sh", "-c", "sleep 301 & exec sleep 302"], "timeout_secs": 1})),
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(v["exit_code"], 124);
    wait_for(
        Duration::from_secs(10),
        "the timed-out command and its child to be gone from the island",
        || {
            let (out, _) = d.exec(&i.name, &["sh", "-c", "pgrep -f 'sleep 30[12]' | wc -l"]);
            (out.trim() == "0").then_some(())
        },
    );
    // A command that finishes in time is not touched, and nothing of it is left marked.
    let v = d.ok(
        "POST",
        &p,
        Some(json!({"cmd": ["sh", "-c", "echo quick"], "timeout_secs": 5})),
    );
    assert_eq!(
        (v["stdout"].as_str(), v.get("timed_out")),
        (Some("quick\n"), None)
    );

    // Environment values reach the command but never the daemon's argv or log.
    let v = d.ok(
        "POST",
        &p,
        Some(json!({"cmd": ["sh", "-c", "echo $SECRET_THING"], "env": {"SECRET_THING": "hunter2-xyzzy"}})),
    );
    assert_eq!(v["stdout"], "hunter2-xyzzy\n");
    assert!(
        !d.log().contains("hunter2-xyzzy"),
        "an env value reached the log"
    );
    let scratch: Vec<_> = std::fs::read_dir(d.home.join("tmp"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        scratch.is_empty(),
        "env files are removed after the call: {scratch:?}"
    );
    // Names the daemon reserves, or that docker's env file cannot carry, are refused.
    for (env, why) in [
        (json!({"DEJIMA_EXEC": "x"}), "reserved"),
        (json!({"1X": "x"}), "invalid"),
        (json!({"A B": "x"}), "invalid"),
        (json!({"MULTI": "a\nb"}), "one line"),
    ] {
        let (s, v) = d.req("POST", &p, Some(json!({"cmd": ["true"], "env": env})));
        assert_eq!(s, 400, "{v}");
        assert!(err_text(&v).contains(why), "{v}");
    }

    for bad in [
        json!({"cmd": []}),
        json!({"cmd": "ls"}),
        json!({}),
        json!({"cmd": ["ls"], "user": "bob"}),
        json!({"cmd": ["ls"], "timeout_secs": 0}),
        json!({"cmd": ["ls"], "workdir": "rel"}),
    ] {
        let (s, v) = d.req("POST", &p, Some(bad.clone()));
        assert_eq!(s, 400, "{bad} -> {v}");
    }
}

#[test]
fn files_round_trip_and_never_escape_the_roots() {
    let d = Daemon::start();
    let i = d.create("files");
    let f = |p: &str| format!("/v1/islands/{}/files/{p}", i.name);

    // Binary content, parents created.
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let (s, b) = d.raw("PUT", &f("workspace/deep/er/bin.dat"), &data);
    assert_eq!(s, 204, "{}", String::from_utf8_lossy(&b));
    let (s, got) = d.raw("GET", &f("workspace/deep/er/bin.dat"), b"");
    assert_eq!(s, 200);
    assert_eq!(got, data);
    assert_eq!(
        d.exec(&i.name, &["stat", "-c", "%U", "/workspace/deep/er/bin.dat"])
            .0
            .trim(),
        "agent"
    );
    // A doubled slash is tolerated; the home is a root too.
    let (s, got) = d.raw("GET", &f("/workspace/deep//er/bin.dat"), b"");
    assert_eq!((s, got.len()), (200, data.len()));
    assert_eq!(d.raw("PUT", &f("home/agent/notes.txt"), b"n").0, 204);
    assert_eq!(d.raw("GET", &f("home/agent/notes.txt"), b"").1, b"n");
    // Overwrite replaces.
    d.raw("PUT", &f("workspace/deep/er/bin.dat"), b"short");
    assert_eq!(
        d.raw("GET", &f("workspace/deep/er/bin.dat"), b"").1,
        b"short"
    );
    // Empty file.
    assert_eq!(d.raw("PUT", &f("workspace/empty"), b"").0, 204);
    assert_eq!(d.raw("GET", &f("workspace/empty"), b""), (200, vec![]));

    // Escapes: lexical, absolute, encoded, and through a symlink planted in the workspace.
    d.exec(&i.name, &["ln", "-s", "/etc", "/workspace/etc-link"]);
    for p in [
        "etc/passwd",
        "workspace/../etc/passwd",
        "workspace/%2e%2e/etc/passwd",
        "workspace%2F..%2F..%2Fetc%2Fpasswd",
        "workspace/etc-link/passwd",
        "home/agent/../../etc/shadow",
        "workspace",
        "proc/self/environ",
    ] {
        let (s, b) = d.raw("GET", &f(p), b"");
        assert_eq!(s, 403, "GET {p}: {}", String::from_utf8_lossy(&b));
        let (s, _) = d.raw("PUT", &f(p), b"pwned");
        assert_eq!(s, 403, "PUT {p}");
    }
    assert_ne!(d.exec(&i.name, &["cat", "/etc/passwd"]).0, "pwned");
    let (s, _) = d.raw("GET", &f("workspace/missing.txt"), b"");
    assert_eq!(s, 404);
    let (s, _) = d.raw("GET", &f("workspace/deep"), b"");
    assert_eq!(s, 409, "a directory is not a file");
    let (s, _) = d.raw("GET", &f("workspace/a%00b"), b"");
    assert_eq!(s, 400);
}

#[test]
fn large_files_stream_intact_and_short_uploads_change_nothing() {
    let d = Daemon::start();
    let i = d.create("big");
    let path = format!("/v1/islands/{}/files/workspace/big.bin", i.name);
    let mut data = vec![0u8; 24 << 20];
    for (k, b) in data.iter_mut().enumerate() {
        *b = (k.wrapping_mul(2654435761) >> 13) as u8;
    }
    let want = Sha256::digest(&data);
    let mut rd: &[u8] = &data;
    d.client
        .call("PUT", &path, Body::Reader(&mut rd, data.len() as u64))
        .unwrap();
    let mut r = d.client.call("GET", &path, Body::None).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    loop {
        let n = r.reader().read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        h.update(&buf[..n]);
    }
    assert_eq!(total, data.len());
    assert_eq!(h.finalize(), want);

    // A body that ends before its Content-Length: the old file stays.
    let mut s = std::os::unix::net::UnixStream::connect(d.sock()).unwrap();
    use std::io::Write;
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial"
    )
    .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let (out, _) = d.exec(
        &i.name,
        &[
            "sh",
            "-c",
            "stat -c %s /workspace/big.bin; ls -a /workspace | grep -c dejima-put || true",
        ],
    );
    assert_eq!(out, format!("{}\n0\n", data.len()), "response was: {resp}");
}

#[test]
fn logs_stream_and_follow_ends_when_the_client_leaves() {
    let d = Daemon::start();
    let i = d.create("logs");
    let n = &i.name;
    // The entrypoint says it is up once its agents are started, a moment after the create.
    wait_for(
        Duration::from_secs(20),
        "the island's first log line",
        || {
            let text = d
                .client
                .call("GET", &format!("/v1/islands/{n}/logs"), Body::None)
                .unwrap()
                .text()
                .unwrap();
            text.contains(&format!("dejima island {n} up"))
                .then_some(())
        },
    );

    // The follower attaches to the engine a moment after the response starts, so a line
    // written at once can precede it: keep writing the marker until it comes through.
    let mut c = d.client.clone();
    c.timeout = Some(Duration::from_millis(300));
    let mut r = c
        .call(
            "GET",
            &format!("/v1/islands/{n}/logs?follow=true&tail=0"),
            Body::None,
        )
        .unwrap();
    let marker = format!("marker-{}", dejima::util::random_hex(4));
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&seen).contains(&marker) {
        assert!(
            std::time::Instant::now() < deadline,
            "the marker never came through: {:?}",
            String::from_utf8_lossy(&seen)
        );
        d.ok(
            "POST",
            &format!("/v1/islands/{n}/exec"),
            Some(json!({"cmd": ["sh", "-c", format!("echo {marker} > /proc/1/fd/1")], "user": "root"})),
        );
        match r.reader().read(&mut buf) {
            Ok(0) => panic!("stream ended before the marker"),
            Ok(k) => seen.extend_from_slice(&buf[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}"),
        }
    }
    drop(r);
    // The follower process goes away once we hang up, though the container is silent.
    let pattern = format!("logs --tail 0 --follow dejima-{n}");
    wait_for(
        Duration::from_secs(10),
        "the docker logs follower to end",
        || {
            let o = std::process::Command::new("pgrep")
                .args(["-f", &pattern])
                .output()
                .unwrap();
            (!o.status.success()).then_some(())
        },
    );
    let (s, _) = d.req("GET", &format!("/v1/islands/{n}/logs?tail=x"), None);
    assert_eq!(s, 400);
    let (s, _) = d.req("GET", &format!("/v1/islands/{n}/logs?follow=maybe"), None);
    assert_eq!(s, 400);
}
