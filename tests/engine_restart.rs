//! The panic switch across an engine restart: with the switch engaged, dockerd is stopped
//! and started again, and no island container comes back (they run with restart policy
//! `no`, and the daemon starts nothing while panicked). Its own test binary, because it
//! restarts the engine every other test uses.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::*;

const T: Duration = Duration::from_secs(60);

fn engine_up() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Restart dockerd the way `scripts/setup` started it (systemd, or a plain `dockerd`).
fn restart_engine() {
    let systemd = Command::new("systemctl")
        .args(["is-active", "--quiet", "docker"])
        .status()
        .is_ok_and(|s| s.success());
    if systemd {
        assert!(Command::new("systemctl")
            .args(["restart", "docker"])
            .status()
            .unwrap()
            .success());
    } else {
        let pid = String::from_utf8(
            Command::new("pgrep")
                .args(["-x", "dockerd"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let pid = pid
            .split_whitespace()
            .next()
            .expect("a running dockerd")
            .to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        wait_for(T, "dockerd to stop", || {
            (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
        });
        Command::new("sh")
            .args(["-c", "nohup dockerd >>/var/log/dejima-dockerd.log 2>&1 &"])
            .status()
            .unwrap();
    }
    wait_for(T, "the engine to answer again", || {
        engine_up().then_some(())
    });
}

#[test]
fn a_panicked_host_stays_down_across_an_engine_restart() {
    let d = Daemon::start();
    let a = d.create("eng-a");
    let b = d.create("eng-b");
    d.ok("POST", "/v1/panic", Some(json!({"reason": "engine drill"})));
    // Someone starts one by hand behind the daemon's back, then the engine restarts.
    docker_ok(&["start", &format!("dejima-{}", a.name)]);
    restart_engine();
    // The engine brought none back; the daemon (its watcher reconnects) starts none either.
    wait_for(T, "the daemon to see the engine again", || {
        d.ok("GET", "/v1/healthz", None)["docker_reachable"]
            .as_bool()
            .filter(|r| *r)
    });
    assert!(!running(&a.name) && !running(&b.name));
    assert_eq!(d.ok("GET", "/v1/panic", None)["panicked"], true);
    let (s, v) = d.req("POST", &format!("/v1/islands/{}/wake", a.name), None);
    assert_eq!(s, 409, "{v}");
    // Cleared, they come back.
    d.ok("DELETE", "/v1/panic", None);
    wait_for(T, "the islands to run again", || {
        (running(&a.name) && running(&b.name)).then_some(())
    });
}
