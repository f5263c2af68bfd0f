//! The audit ledger on the real daemon: who did what (socket, tokens, refusals, lifecycle,
//! tokens, panic) is recorded without secrets, the chain verifies through the API and
//! offline, tampering is named at its first bad entry, exports, activity, and a keyed chain.

mod support;

use std::process::Command;
use std::time::Duration;

use dejima::client::{Body, Client, Target};
use serde_json::{json, Value};
use support::*;

const T: Duration = Duration::from_secs(20);

fn cli(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dejima"))
        .args(args)
        .env("DEJIMA_HOME", home)
        .env_remove("DEJIMA_HOST")
        .env_remove("DEJIMA_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn the_ledger_records_who_did_what_and_verifies_until_tampered_with() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&["--tcp", &addr], &[]);
    let i = d.create("aud");
    let v = d.ok(
        "POST",
        "/v1/tokens",
        Some(json!({"role": "viewer", "label": "ro"})),
    );
    let (tid, secret) = (
        v["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    );
    let viewer = Client {
        target: Target::Tcp(addr.clone()),
        token: Some(secret.clone()),
        timeout: Some(T),
    };
    // Allowed read (not recorded), refused write (recorded as denied), a wrong token (denied).
    assert_eq!(
        viewer
            .send("GET", "/v1/islands", Body::None)
            .unwrap()
            .status,
        200
    );
    let r = viewer
        .send(
            "POST",
            &format!("/v1/islands/{}/hibernate", i.name),
            Body::None,
        )
        .unwrap();
    assert_eq!(r.status, 403);
    let bad = Client {
        token: Some("djo_wrong".into()),
        ..viewer.clone()
    };
    assert_eq!(
        bad.send("GET", "/v1/islands", Body::None).unwrap().status,
        401
    );
    d.ok("POST", &format!("/v1/islands/{}/hibernate", i.name), None);
    d.ok("POST", "/v1/panic", Some(json!({"reason": "drill"})));
    d.ok("DELETE", "/v1/panic", None);

    let v = d.ok("GET", "/v1/audit?limit=1000", None);
    assert_eq!(v["verify"]["ok"], true, "{}", v["verify"]);
    let entries = v["entries"].as_array().unwrap();
    let find = |f: &dyn Fn(&Value) -> bool| entries.iter().find(|e| f(e)).cloned();
    let created = find(&|e| {
        e["type"] == "api.request" && e["route"] == "/v1/islands" && e["method"] == "POST"
    })
    .unwrap();
    assert_eq!(
        (created["actor"].as_str(), created["status"].as_u64()),
        (Some("socket"), Some(201))
    );
    let refused = find(&|e| e["decision"] == "denied" && e["status"] == 403).unwrap();
    assert_eq!(refused["actor"], format!("token:{tid}"));
    assert_eq!(refused["island"], i.name.as_str());
    assert_eq!(refused["route"], "/v1/islands/{name}/hibernate");
    assert!(find(&|e| e["decision"] == "denied"
        && e["status"] == 401
        && e["actor"] == "tcp:127.0.0.1")
    .is_some());
    assert!(
        find(&|e| e["type"] == "island.hibernated" && e["island"] == i.name.as_str()).is_some()
    );
    assert!(find(&|e| e["type"] == "token.created" && e["detail"]["id"] == tid.as_str()).is_some());
    assert!(find(&|e| e["type"] == "daemon.panic-engaged").is_some());
    assert!(
        find(&|e| e["type"] == "api.request" && e["method"] == "GET" && e["status"] == 200)
            .is_none(),
        "allowed reads are not recorded"
    );
    let ledger_text: String = std::fs::read_dir(d.home.join("audit"))
        .unwrap()
        .flatten()
        .map(|f| std::fs::read_to_string(f.path()).unwrap())
        .collect();
    assert!(
        !ledger_text.contains(&secret[4..]),
        "a secret reached the ledger"
    );

    // Filters, exports and the activity timeline.
    let denied = d.ok(
        "GET",
        &format!("/v1/audit?decision=denied&actor=token:{tid}"),
        None,
    );
    assert!(denied["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["decision"] == "denied"));
    let r = d
        .client
        .call("GET", "/v1/audit?format=csv", Body::None)
        .unwrap();
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let csv = r.text().unwrap();
    assert!(
        csv.starts_with("seq,time,type,island,agent,actor,decision"),
        "{csv}"
    );
    assert_eq!(csv.lines().count() - 1, entries.len());
    let jsonl = d
        .client
        .call("GET", "/v1/audit?format=jsonl", Body::None)
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(jsonl.lines().count(), entries.len());
    let act = d.ok(
        "GET",
        &format!("/v1/activity?island={}&kind=lifecycle", i.name),
        None,
    );
    let texts: Vec<&str> = act
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts.first().copied(),
        Some(format!("island {} was hibernated", i.name).as_str()),
        "{texts:?}"
    );
    assert_eq!(d.req("GET", "/v1/audit?format=xml", None).0, 400);

    // The CLI: through the daemon, and offline on a tampered copy.
    let o = cli(&d.home, &["audit", "--verify"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("verifies"));
    let copy = tempfile::tempdir().unwrap();
    let seg = std::fs::read_dir(d.home.join("audit"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let target = copy.path().join(seg.file_name().unwrap());
    let mut lines: Vec<String> = std::fs::read_to_string(&seg)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines[2] = lines[2].replacen("\"actor\":\"", "\"actor\":\"x", 1);
    std::fs::write(&target, lines.join("\n") + "\n").unwrap();
    let o = cli(
        &d.home,
        &["audit", "--verify", "--file", copy.path().to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("seq 3"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_keyed_ledger_verifies_only_with_its_key() {
    let keydir = tempfile::tempdir().unwrap();
    let key = keydir.path().join("audit.key");
    std::fs::write(&key, dejima::util::random_hex(32)).unwrap();
    let d = Daemon::start_with(&["--audit-key", key.to_str().unwrap()], &[]);
    let _i = d.create("audk");
    let v = d.ok("GET", "/v1/audit", None);
    assert_eq!(v["verify"]["ok"], true, "{v}");
    let dir = d.home.join("audit");
    let with = cli(
        &d.home,
        &[
            "audit",
            "--verify",
            "--file",
            dir.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    let without = cli(
        &d.home,
        &["audit", "--verify", "--file", dir.to_str().unwrap()],
    );
    assert!(
        !without.status.success(),
        "a keyed chain does not verify as plain SHA-256"
    );
    // The chain resumes across a restart.
    d.kill9();
    d.spawn();
    let _j = d.create("audk2");
    assert_eq!(d.ok("GET", "/v1/audit", None)["verify"]["ok"], true);
}
