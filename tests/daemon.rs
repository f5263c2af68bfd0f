//! The daemon's own life: adoption, crashes mid-operation, engine failures, shutdown,
//! listeners.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dejima::client::{Body, Client};
use serde_json::json;
use support::*;

/// A docker wrapper for failure injection: runs the real docker, except as `script` says.
fn wrapper(dir: &Path, script: &str) -> String {
    let p = dir.join("docker-wrapper");
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v docker"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nREAL={}\n{script}\nexec \"$REAL\" \"$@\"\n",
            real.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

#[test]
fn restart_adopts_islands_to_their_desired_state() {
    let d = Daemon::start();
    let up = d.create("up");
    let down = d.create("down");
    d.ok(
        "POST",
        &format!("/v1/islands/{}/hibernate", down.name),
        None,
    );
    d.kill9();
    // Behind the daemon's back: the running one stops, the hibernated one starts.
    docker_ok(&["stop", "-t", "1", &format!("dejima-{}", up.name)]);
    docker_ok(&["start", &format!("dejima-{}", down.name)]);
    d.spawn();
    wait_for(Duration::from_secs(30), "adoption", || {
        let a = docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Running}}",
            &format!("dejima-{}", up.name),
        ]);
        let b = docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Running}}",
            &format!("dejima-{}", down.name),
        ]);
        (a == "true" && b == "false").then_some(())
    });
    assert_eq!(d.island(&up.name).state.as_str(), "running");
    assert_eq!(d.island(&down.name).state.as_str(), "hibernated");
    // A container removed while the daemon was down is recreated against its volumes.
    d.exec(&up.name, &["sh", "-c", "echo survived > /workspace/s.txt"]);
    d.kill9();
    docker_ok(&["rm", "-f", &format!("dejima-{}", up.name)]);
    d.spawn();
    wait_for(Duration::from_secs(30), "recreation", || {
        let o = docker(&[
            "inspect",
            "-f",
            "{{.State.Running}}",
            &format!("dejima-{}", up.name),
        ]);
        (String::from_utf8_lossy(&o.stdout).trim() == "true").then_some(())
    });
    wait_for(Duration::from_secs(10), "the island to answer", || {
        (d.island(&up.name).container.as_str() == "running").then_some(())
    });
    assert_eq!(
        d.exec(&up.name, &["cat", "/workspace/s.txt"]).0,
        "survived\n"
    );
}

#[test]
fn killed_mid_create_then_restarted_finishes_the_island() {
    let tmp = tempfile::tempdir().unwrap();
    let gate = tmp.path().join("run-reached");
    // `docker run -d` (the island container) signals, then hangs: the daemon dies inside it.
    let w = wrapper(
        tmp.path(),
        &format!(
            "if [ \"$1\" = run ] && [ \"$2\" = -d ]; then touch {}; sleep 600; exit 1; fi",
            gate.display()
        ),
    );
    let d = Daemon::start_with(&[], &[("DEJIMA_DOCKER", &w)]);
    let name = unique("mid");
    let _sweep = Sweep(name.clone());
    let client = d.client.clone();
    let body = serde_json::to_vec(
        &json!({"name": name, "no_repo": true, "agent": "custom", "cmd": "bash"}),
    )
    .unwrap();
    let t = std::thread::spawn(move || {
        client
            .send(
                "POST",
                "/v1/islands",
                Body::Bytes(&body, "application/json"),
            )
            .map(|r| r.status)
    });
    wait_for(
        Duration::from_secs(30),
        "create to reach docker run",
        || gate.exists().then_some(()),
    );
    let record = d.home.join("islands").join(&name).join("island.json");
    assert!(
        record.exists(),
        "the record is written before engine work starts"
    );
    d.kill9();
    let _ = t.join();
    // The orphaned wrapper must never run docker later.
    let _ = Command::new("pkill").args(["-f", &w]).status();
    // The record on disk is whole and says the create did not finish.
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(rec["provisioned"], false);
    // Restart on the real engine: adoption finishes the job.
    d.envs.lock().unwrap().clear();
    d.spawn();
    let _g = Island {
        d: &d,
        name: name.clone(),
    };
    wait_for(
        Duration::from_secs(60),
        "the interrupted create to finish",
        || {
            let (s, v) = d.req("GET", &format!("/v1/islands/{name}/workspace-ready"), None);
            (s == 200 && v["ready"] == true).then_some(())
        },
    );
    assert_eq!(d.island(&name).container.as_str(), "running");
    assert_eq!(
        d.exec(
            &name,
            &[
                "git",
                "-C",
                "/workspace",
                "rev-parse",
                "--is-inside-work-tree"
            ]
        )
        .0,
        "true\n"
    );
    // No stray temp files beside the record (only the record and the island's run and
    // secrets directories).
    let mut names: Vec<String> = std::fs::read_dir(record.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["island.json", "run", "secrets"]);
}

#[test]
fn an_unreachable_engine_is_503_and_reads_still_work() {
    let tmp = tempfile::tempdir().unwrap();
    let w = wrapper(tmp.path(), "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2; exit 1");
    // The image check goes through the same wrapper, so start without the image step.
    let home = std::path::PathBuf::from(format!("/tmp/dj-{}", dejima::util::random_hex(5)));
    std::fs::create_dir_all(&home).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dejimad"))
        .env("DEJIMA_HOME", &home)
        .env("DEJIMA_DOCKER", &w)
        .stderr(std::fs::File::create(home.join("log")).unwrap())
        .spawn()
        .unwrap();
    let c = Client::unix(home.join("dejimad.sock"));
    let req = |m: &str, p: &str, b: Option<serde_json::Value>| {
        let bytes = b.map(|v| serde_json::to_vec(&v).unwrap());
        let r = match &bytes {
            Some(b) => c.send(m, p, Body::Bytes(b, "application/json")),
            None => c.send(m, p, Body::None),
        };
        r.ok().map(status_json)
    };
    wait_for(Duration::from_secs(20), "daemon up", || {
        req("GET", "/v1/healthz", None)
    });
    let (s, v) = req(
        "POST",
        "/v1/islands",
        Some(json!({"name": unique("down"), "no_repo": true})),
    )
    .unwrap();
    assert_eq!(s, 503, "{v}");
    assert!(err_text(&v).contains("unreachable"), "{v}");
    let (s, v) = req("GET", "/v1/overview", None).unwrap();
    assert_eq!(s, 200);
    assert_eq!(v["docker_reachable"], false);
    assert_eq!(req("GET", "/v1/islands", None).unwrap(), (200, json!([])));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_hung_engine_times_out_instead_of_hanging_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let w = wrapper(tmp.path(), "if [ \"$1\" = network ]; then sleep 600; fi");
    let d = Daemon::start_with(
        &[],
        &[("DEJIMA_DOCKER", &w), ("DEJIMA_ENGINE_TIMEOUT", "2")],
    );
    let name = unique("hung");
    let _sweep = Sweep(name.clone());
    let (s, v) = d.req(
        "POST",
        "/v1/islands",
        Some(json!({"name": name, "no_repo": true})),
    );
    assert_eq!(s, 503, "{v}");
    assert!(err_text(&v).contains("timed out"), "{v}");
    // Rolled back: no record left.
    assert_eq!(d.req("GET", &format!("/v1/islands/{name}"), None).0, 404);
    // Other requests were never blocked.
    assert_eq!(d.req("GET", "/v1/islands", None).0, 200);
}

#[test]
fn sigterm_lets_requests_finish_and_leaves_islands_running() {
    let d = Daemon::start();
    let i = d.create("term");
    let client = d.client.clone();
    let n = i.name.clone();
    let slow = std::thread::spawn(move || {
        let b =
            serde_json::to_vec(&json!({"cmd": ["sh", "-c", "sleep 2; echo finished"]})).unwrap();
        client
            .send(
                "POST",
                &format!("/v1/islands/{n}/exec"),
                Body::Bytes(&b, "application/json"),
            )
            .map(status_json)
    });
    // The exec is under way when its docker exec process exists.
    let pattern = format!("dejima-{} sh -c sleep 2", i.name);
    wait_for(Duration::from_secs(10), "the exec to start", || {
        Command::new("pgrep")
            .args(["-f", &pattern])
            .status()
            .unwrap()
            .success()
            .then_some(())
    });
    let st = d.terminate();
    assert!(st.success(), "clean exit: {st}");
    let (s, v) = slow
        .join()
        .unwrap()
        .expect("the in-flight request was answered");
    assert_eq!(s, 200);
    assert_eq!(v["stdout"], "finished\n");
    assert!(!d.sock().exists(), "socket removed on shutdown");
    assert_eq!(
        docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Running}}",
            &format!("dejima-{}", i.name)
        ]),
        "true"
    );
    d.spawn();
}

#[test]
fn socket_is_private_stale_ones_are_replaced_live_ones_refused() {
    let d = Daemon::start();
    let mode = std::fs::metadata(d.sock()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let home_mode = std::fs::metadata(&d.home).unwrap().permissions().mode() & 0o777;
    assert_eq!(home_mode, 0o700);
    // A second daemon on the same home refuses to steal a live socket.
    let out = Command::new(env!("CARGO_BIN_EXE_dejimad"))
        .env("DEJIMA_HOME", &d.home)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already running") && err.contains(&d.pid().to_string()),
        "{err}"
    );
    assert_eq!(
        d.req("GET", "/v1/healthz", None).0,
        200,
        "the first one still serves"
    );
    // After a crash the socket file is stale; a new daemon replaces it.
    d.kill9();
    assert!(d.sock().exists());
    d.spawn();
    assert_eq!(d.req("GET", "/v1/healthz", None).0, 200);
}

#[test]
fn daemons_started_at_once_on_one_home_leave_exactly_one_serving() {
    let home = std::path::PathBuf::from(format!("/tmp/dj-race-{}", dejima::util::random_hex(4)));
    std::fs::create_dir_all(&home).unwrap();
    let mut kids: Vec<std::process::Child> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_dejimad"))
                .env("DEJIMA_HOME", &home)
                .env("DEJIMA_LABELS", "dejima.test=1")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let c = dejima::client::Client::unix(home.join("dejimad.sock"));
    wait_for(
        Duration::from_secs(20),
        "three to give up and one to serve",
        || {
            let exited = kids
                .iter_mut()
                .map(|k| k.try_wait().unwrap().is_some())
                .filter(|e| *e)
                .count();
            let serving = c
                .send("GET", "/v1/healthz", Body::None)
                .is_ok_and(|r| r.status == 200);
            (exited == 3 && serving).then_some(())
        },
    );
    let mut survivor = None;
    for mut k in kids {
        match k.try_wait().unwrap() {
            Some(st) => {
                assert!(!st.success());
                let mut err = String::new();
                std::io::Read::read_to_string(k.stderr.as_mut().unwrap(), &mut err).unwrap();
                assert!(err.contains("already running"), "{err}");
            }
            None => survivor = Some(k),
        }
    }
    let mut survivor = survivor.expect("one daemon serves");
    let lock = std::fs::read_to_string(home.join("dejimad.lock")).unwrap();
    assert_eq!(
        lock.trim(),
        survivor.id().to_string(),
        "the lock names the survivor"
    );
    // Its socket was never removed under it.
    assert_eq!(
        c.send("GET", "/v1/healthz", Body::None).unwrap().status,
        200
    );
    let _ = survivor.kill();
    let _ = survivor.wait();
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn sigterm_with_idle_streams_attached_exits_at_once() {
    let d = Daemon::start();
    let i = d.create("quit");
    // An idle event stream, an idle log follower and an attached terminal.
    let mut sse = d.stream("");
    let _ = sse.next(Duration::from_millis(100));
    let mut follow = d.client.clone();
    follow.timeout = Some(Duration::from_millis(200));
    let logs = follow
        .call(
            "GET",
            &format!("/v1/islands/{}/logs?follow=true&tail=0", i.name),
            Body::None,
        )
        .unwrap();
    let mut ws = d.attach(&format!("/v1/islands/{}/session", i.name));
    ws.hello();
    let t = std::time::Instant::now();
    let st = d.terminate();
    let took = t.elapsed();
    assert!(st.success(), "{st}");
    // Before: the stream's 15 s keepalive tick and a 10 s drain; now the streams wake on the
    // shutdown signal itself.
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
    drop((sse, logs));
    assert!(ws.expect_close(Duration::from_secs(5)).starts_with("1001"));
    d.spawn();
}

#[test]
fn tcp_listener_and_keep_alive() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&["--tcp", &addr], &[]);
    let c = Client {
        target: dejima::client::Target::Tcp(addr.clone()),
        token: None,
        timeout: Some(Duration::from_secs(10)),
    };
    let (s, v) = status_json(c.send("GET", "/v1/healthz", Body::None).unwrap());
    assert_eq!((s, v["ok"].as_bool()), (200, Some(true)));
    // curl reuses one connection for two requests on the socket.
    let out = Command::new("curl")
        .args([
            "-sv",
            "--unix-socket",
            &d.sock().display().to_string(),
            "http://d/v1/healthz",
            "http://d/v1/islands",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("Re-using existing connection") || err.contains("Reusing existing connection"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"ok\":true"));
    // Bad --tcp and --allow-cidr values are start-up errors.
    for args in [
        vec!["--tcp", "nonsense"],
        vec!["--tcp", "127.0.0.1:0", "--allow-cidr", "10.0.0.0/99"],
    ] {
        let home = format!("/tmp/dj-{}", dejima::util::random_hex(5));
        let out = Command::new(env!("CARGO_BIN_EXE_dejimad"))
            .args(&args)
            .env("DEJIMA_HOME", &home)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&home);
        assert!(!out.status.success(), "{args:?}");
    }
}

#[test]
fn garbage_on_the_socket_never_takes_the_daemon_down() {
    use std::io::{Read, Write};
    let d = Daemon::start();
    let inputs: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\r\n\r\n".to_vec(),
        b"GET /v1/healthz HTTP/1.1\r\nContent-Length: -5\r\n\r\n".to_vec(),
        b"POST /v1/islands HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(40_000)).into_bytes(),
        b"GET /v1/healthz HTTP/1.1\r\n".repeat(100),
    ];
    for inp in inputs {
        let mut s = std::os::unix::net::UnixStream::connect(d.sock()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&inp);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 4"), "{out}");
    }
    assert_eq!(d.req("GET", "/v1/healthz", None).0, 200);
}
