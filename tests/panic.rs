//! The panic switch on the real daemon and engine: everything stops and every session is
//! revoked at once, nothing starts by any path while it is engaged, it holds across a
//! SIGKILL'd daemon's restart, and clearing it wakes what should run.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn panic_stops_everything_and_nothing_starts_until_it_is_cleared() {
    let d = Daemon::start();
    let a = d.create("pan-a");
    let b = d.create("pan-b");
    let h = d.create("pan-h");
    d.ok("POST", &format!("/v1/islands/{}/hibernate", h.name), None);
    // The engine never restarts an island on its own.
    assert_eq!(
        docker_ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy.Name}}",
            &format!("dejima-{}", a.name)
        ]),
        "no"
    );
    let mut ws = d.attach(&format!("/v1/islands/{}/session", a.name));
    ws.hello();
    let mut events = d.stream("?type=daemon.panic-engaged,daemon.panic-cleared");

    let v = d.ok("POST", "/v1/panic", Some(json!({"reason": "leaked key"})));
    assert_eq!(
        (v["panicked"].as_bool(), v["stopped"].as_u64()),
        (Some(true), Some(2)),
        "{v}"
    );
    assert!(
        ws.expect_close(T).starts_with("1008"),
        "sessions are revoked"
    );
    assert!(!running(&a.name) && !running(&b.name));
    assert!(d.home.join("PANIC").exists());
    let e = events.until("daemon.panic-engaged", T);
    assert_eq!(e["payload"]["reason"], "leaked key");
    let st = d.ok("GET", "/v1/panic", None);
    assert_eq!(
        (st["panicked"].as_bool(), st["reason"].as_str()),
        (Some(true), Some("leaked key"))
    );

    // Every start path is a 409 that names the panic.
    let fresh = unique("pan-new");
    let _s = Sweep(fresh.clone());
    for (m, p, body) in [
        (
            "POST",
            "/v1/islands".to_string(),
            Some(json!({"name": fresh, "no_repo": true, "agent": "custom"})),
        ),
        ("POST", format!("/v1/islands/{}/wake", a.name), None),
        ("POST", format!("/v1/islands/{}/wake", h.name), None),
        ("POST", format!("/v1/islands/{}/reset", a.name), None),
        ("POST", format!("/v1/islands/{}/upgrade", a.name), None),
        (
            "POST",
            format!("/v1/islands/{}/clone", a.name),
            Some(json!({"name": unique("pan-c")})),
        ),
        (
            "POST",
            format!("/v1/islands/{}/agents", a.name),
            Some(json!({"type": "custom"})),
        ),
    ] {
        let (s, v) = d.req(m, &p, body);
        assert_eq!(s, 409, "{m} {p}: {v}");
        assert!(err_text(&v).contains("panic"), "{m} {p}: {v}");
    }
    assert!(!running(&a.name) && !running(&b.name) && !running(&h.name));

    // A SIGKILL'd daemon comes back still panicked and starts nothing; what someone started
    // behind its back in the meantime is stopped.
    d.kill9();
    docker_ok(&["start", &format!("dejima-{}", b.name)]);
    d.spawn();
    wait_for(T, "adoption to finish", || {
        d.log().contains("adoption started nothing").then_some(())
    });
    assert!(!running(&a.name) && !running(&b.name) && !running(&h.name));
    assert_eq!(d.ok("GET", "/v1/panic", None)["panicked"], true);

    // Cleared: the islands that should run are woken, the hibernated one stays asleep.
    let mut events = d.stream("?type=daemon.panic-cleared");
    let v = d.ok("DELETE", "/v1/panic", None);
    assert_eq!(v["panicked"], false);
    events.until("daemon.panic-cleared", T);
    assert!(!d.home.join("PANIC").exists());
    wait_for(T, "the running islands to be back", || {
        (running(&a.name) && running(&b.name)).then_some(())
    });
    assert!(!running(&h.name));
    let (out, code) = d.exec(&a.name, &["echo", "back"]);
    assert_eq!((out.as_str(), code), ("back\n", 0));
    // The CLI speaks it too.
    let cli = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_dejima"))
            .args(args)
            .env("DEJIMA_HOME", &d.home)
            .env_remove("DEJIMA_HOST")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(cli(&["panic", "status"]).contains("clear"));
    assert!(cli(&["panic", "--reason", "drill"]).contains("PANIC engaged"));
    assert!(cli(&["panic", "status"]).contains("drill"));
    assert!(cli(&["panic", "clear"]).contains("clear"));
}
