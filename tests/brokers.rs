//! Capabilities, MCP servers and child islands against the real daemon and engine: real MCP
//! servers from npm (`tests/mcp`, installed by scripts/setup) and stand-ins that crash, hang
//! or flood; every refusal ledgered; islands kept apart.

mod support;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

fn sha(bytes: &[u8]) -> String {
    dejima::util::hex(&Sha256::digest(bytes))
}

fn script(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn denied(d: &Daemon, kind: &str, island: &str) -> usize {
    ledger(d, kind, island)
        .iter()
        .filter(|e| e["decision"] == "denied")
        .count()
}

#[test]
fn capabilities_run_granted_targets_only_with_a_fixed_argv_and_a_bare_environment() {
    let d = Daemon::start();
    let i = d.create("cap");
    let other = d.create("cap-other");
    let n = &i.name;
    let caps = d.home.join("capabilities");
    script(
        &caps,
        "echo-args",
        "#!/bin/sh\nprintf 'stdin='; cat; printf '\\nargc=%s\\n' \"$#\"; env | sort\n",
        0o700,
    );
    script(&caps, "fails", "#!/bin/sh\necho nope >&2\nexit 3\n", 0o700);
    script(
        &caps,
        "flood",
        "#!/bin/sh\nhead -c 5000000 /dev/zero | tr '\\0' x\n",
        0o700,
    );
    script(&caps, "hangs", "#!/bin/sh\nsleep 300\n", 0o700);
    script(
        &caps,
        "leaves-a-child",
        "#!/bin/sh\n(sleep 300) &\necho started\n",
        0o700,
    );
    script(&caps, "loose", "#!/bin/sh\necho loose\n", 0o777);
    script(&caps, "fds", "#!/bin/sh\nls -l /proc/$$/fd/\n", 0o700);
    script(&caps, "not-exec", "#!/bin/sh\necho x\n", 0o600);
    symlink("/bin/echo", caps.join("linked")).unwrap();

    let listed = d.ok("GET", "/v1/capabilities", None);
    let usable = |t: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["target"] == t)
            .unwrap_or_else(|| panic!("{t} listed: {listed}"))["usable"]
            .clone()
    };
    assert_eq!(usable("echo-args"), true);
    for t in ["loose", "not-exec", "linked"] {
        assert_eq!(usable(t), false, "{t}");
    }

    for t in [
        "fds",
        "echo-args",
        "fails",
        "flood",
        "hangs",
        "leaves-a-child",
        "loose",
        "not-exec",
        "linked",
    ] {
        let g = d.ok(
            "POST",
            &format!("/v1/islands/{n}/capability/grants"),
            Some(json!({"target": t})),
        );
        assert_eq!(g["target"], t);
    }
    let me = as_island(&d, n);
    let exec = |body: Value| call(&me, "POST", "/v1/capabilities/execute", Some(body));

    // Args as JSON on stdin, no argv, only PATH and the DEJIMA_CAP_* variables.
    let (st, v) = exec(
        json!({"target": "echo-args", "agent": "a1", "args": {"to": "me", "body": "hi; rm -rf /"}}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["exit_code"], 0);
    let out = v["stdout"].as_str().unwrap();
    assert!(
        out.contains(r#"stdin={"body":"hi; rm -rf /","to":"me"}"#),
        "{out}"
    );
    assert!(out.contains("argc=0"), "{out}");
    assert!(out.contains(&format!("DEJIMA_CAP_ISLAND={n}")), "{out}");
    assert!(out.contains("DEJIMA_CAP_AGENT=a1"), "{out}");
    assert!(out.contains("DEJIMA_CAP_TARGET=echo-args"), "{out}");
    assert!(out.contains("PATH=/usr/local/bin:/usr/bin:/bin"), "{out}");
    for leak in ["RUST_LOG", "DEJIMA_HOME", "DEJIMA_LABELS", "HOME="] {
        assert!(!out.contains(leak), "{leak} reached the capability: {out}");
    }
    let entry = ledger(&d, "capability.execute", n).pop().unwrap();
    assert_eq!(entry["seq"], v["ledger_seq"]);
    assert_eq!(
        entry["detail"]["args_sha256"],
        sha(br#"{"body":"hi; rm -rf /","to":"me"}"#)
    );
    assert!(
        !entry.to_string().contains("rm -rf"),
        "args are hashed, never kept"
    );

    // With a terminal session open in the daemon, a capability holds none of its
    // descriptors (nor anything else the daemon has open): only its stdio and itself.
    let mut session = d.attach(&format!("/v1/islands/{n}/session"));
    session.hello();
    let (_, v) = exec(json!({"target": "fds"}));
    let fds = v["stdout"].as_str().unwrap();
    assert!(!fds.contains("pts") && !fds.contains("ptmx"), "{fds}");
    assert!(!fds.contains("socket:") && !fds.contains("audit"), "{fds}");
    drop(session);
    let (_, v) = exec(json!({"target": "fails"}));
    assert_eq!(
        (v["ok"].clone(), v["exit_code"].clone()),
        (json!(false), json!(3))
    );
    assert_eq!(v["stderr"], "nope\n");
    let (_, v) = exec(json!({"target": "flood"}));
    assert_eq!(v["truncated"], true);
    assert_eq!(v["stdout"].as_str().unwrap().len(), 1 << 20);
    let (_, v) = exec(json!({"target": "leaves-a-child"}));
    assert_eq!(
        v["timed_out"], false,
        "a child left behind does not hold the call: {v}"
    );
    assert_eq!(v["stdout"], "started\n");

    // Refusals, each ledgered as capability.denied.
    let cases: Vec<(Value, u16)> = vec![
        (json!({"target": "not-granted"}), 403),
        (json!({"target": "../echo-args"}), 400),
        (json!({"target": "a/b"}), 400),
        (json!({"target": ".hidden"}), 400),
        (json!({"target": "loose"}), 403),
        (json!({"target": "not-exec"}), 403),
        (json!({"target": "linked"}), 403),
        (json!({"target": "echo-args", "args": {"n": 1}}), 400),
        (
            json!({"target": "echo-args", "args": {"bad name": "x"}}),
            400,
        ),
        (
            json!({"target": "echo-args", "args": {"big": "x".repeat(70_000)}}),
            413,
        ),
        (json!({"target": "echo-args", "agent": "a99"}), 404),
    ];
    for (body, want) in cases {
        let was = denied(&d, "capability.denied", n);
        let (st, v) = exec(body.clone());
        assert_eq!(st, want, "{body}: {v}");
        wait_for(T, "the denial in the ledger", || {
            (denied(&d, "capability.denied", n) > was).then_some(())
        });
    }
    // An island token acts for its own island only; an operator must name one.
    let (st, _) = exec(json!({"target": "echo-args", "island": other.name}));
    assert_eq!(st, 403);
    assert_eq!(
        d.req(
            "POST",
            "/v1/capabilities/execute",
            Some(json!({"target": "echo-args"}))
        )
        .0,
        422
    );
    let (st, v) = d.req(
        "POST",
        "/v1/capabilities/execute",
        Some(json!({"target": "echo-args", "island": n})),
    );
    assert_eq!(st, 200, "{v}");
    // The other island holds no grant.
    let (st, _) = call(
        &as_island(&d, &other.name),
        "POST",
        "/v1/capabilities/execute",
        Some(json!({"target": "echo-args"})),
    );
    assert_eq!(st, 403);
    // A hang is killed at the deadline, its whole group with it.
    let (st, v) = exec(json!({"target": "hangs"}));
    assert_eq!(st, 200);
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(v["exit_code"], Value::Null);
    // Revoked: refused at once.
    d.ok(
        "DELETE",
        &format!("/v1/islands/{n}/capability/grants/echo-args"),
        None,
    );
    assert_eq!(exec(json!({"target": "echo-args"})).0, 403);
    assert!(!ledger(&d, "capability.revoke", n).is_empty());
    assert!(ledger_verifies(&d));
}

/// The absolute path of a program (the broker gives servers a bare PATH, so no shims).
fn real_program(cmd: &str, probe: &[&str]) -> String {
    let out = Command::new(cmd).args(probe).output().expect(cmd);
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn mcp_calls_reach_real_servers_through_the_allow_list_and_keep_islands_apart() {
    let d = Daemon::start();
    let a = d.create("mcp-a");
    let b = d.create("mcp-b");
    let node = real_program("node", &["-e", "process.stdout.write(process.execPath)"]);
    let python = real_program("python3", &["-c", "import sys; print(sys.executable)"]);
    let everything =
        repo().join("tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let filesystem =
        repo().join("tests/mcp/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    assert!(
        everything.exists(),
        "run scripts/setup (npm ci in tests/mcp)"
    );
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("notes.txt"), "from the host\n").unwrap();
    let standin = |s: &str| repo().join("tests/standins").join(s).display().to_string();
    let servers = json!({"servers": {
        "everything": {"command": node, "args": [everything, "stdio"], "env": {"SECRET_TOKEN_FOR_SERVER": "s3"}},
        "files": {"command": node, "args": [filesystem, shared.path()], "keep_alive_secs": 0},
        "crash": {"command": python, "args": [standin("mcp_crash.py")]},
        "silent": {"command": python, "args": [standin("mcp_silent.py")]},
        "noisy": {"command": python, "args": [standin("mcp_noisy.py")]},
    }});
    std::fs::create_dir_all(d.home.join("mcp")).unwrap();
    std::fs::write(d.home.join("mcp/servers.json"), servers.to_string()).unwrap();

    let listed = d.ok("GET", "/v1/mcp/servers", None);
    let ev = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "everything")
        .unwrap();
    assert_eq!(ev["env_keys"], json!(["SECRET_TOKEN_FOR_SERVER"]));
    assert!(
        !listed.to_string().contains("s3"),
        "env values are never shown"
    );
    assert_eq!(
        d.req(
            "POST",
            &format!("/v1/islands/{}/mcp/grants", a.name),
            Some(json!({"server": "nowhere"}))
        )
        .0,
        422
    );
    for s in ["everything", "files", "crash", "silent", "noisy"] {
        d.ok(
            "POST",
            &format!("/v1/islands/{}/mcp/grants", a.name),
            Some(json!({"server": s})),
        );
    }
    d.ok(
        "POST",
        &format!("/v1/islands/{}/mcp/grants", b.name),
        Some(json!({"server": "everything"})),
    );
    let ma = as_island(&d, &a.name);
    let mb = as_island(&d, &b.name);
    let mcp = |c: &dejima::client::Client, server: &str, method: &str, params: Value| {
        call(
            c,
            "POST",
            "/v1/mcp/call",
            Some(json!({"server": server, "method": method, "params": params})),
        )
    };

    let (st, v) = mcp(&ma, "everything", "tools/list", json!({}));
    assert_eq!(st, 200, "{v}");
    assert!(v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "echo"));
    let (st, v) = mcp(
        &ma,
        "everything",
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "hi there"}}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["is_error"], false);
    assert_eq!(v["result"]["content"][0]["text"], "Echo: hi there");
    let entry = ledger(&d, "mcp.call", &a.name).pop().unwrap();
    assert_eq!(entry["seq"], v["ledger_seq"]);
    assert!(
        !entry.to_string().contains("hi there"),
        "params are hashed, never kept"
    );
    let (_, v) = mcp(
        &ma,
        "everything",
        "tools/call",
        json!({"name": "no-such-tool", "arguments": {}}),
    );
    assert_eq!(
        (v["ok"].clone(), v["is_error"].clone()),
        (json!(true), json!(true)),
        "{v}"
    );
    let (st, v) = mcp(&ma, "everything", "resources/list", json!({}));
    assert_eq!(st, 200);
    let uri = v["result"]["resources"][0]["uri"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, v) = mcp(&ma, "everything", "resources/read", json!({"uri": uri}));
    assert!(v["result"]["contents"][0]["text"].is_string(), "{v}");
    let (_, v) = mcp(&ma, "everything", "prompts/list", json!({}));
    assert!(v["result"]["prompts"].as_array().unwrap().len() > 0);
    let (_, v) = mcp(
        &ma,
        "everything",
        "prompts/get",
        json!({"name": "simple-prompt", "arguments": {}}),
    );
    assert!(v["result"]["messages"].is_array(), "{v}");
    let (_, v) = mcp(
        &ma,
        "everything",
        "prompts/get",
        json!({"name": "args-prompt", "arguments": {}}),
    );
    assert_eq!(v["ok"], false, "a JSON-RPC error is ok false: {v}");
    assert!(v["error"]["code"].is_number());

    // Each island has its own server process, with a bare environment.
    let env_of = |c: &dejima::client::Client| {
        let (st, v) = mcp(
            c,
            "everything",
            "tools/call",
            json!({"name": "get-env", "arguments": {}}),
        );
        assert_eq!(st, 200, "{v}");
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (ea, eb) = (env_of(&ma), env_of(&mb));
    assert!(
        ea.contains(&format!("\"DEJIMA_MCP_ISLAND\": \"{}\"", a.name)) || ea.contains(&a.name),
        "{ea}"
    );
    assert!(eb.contains(&b.name) && !eb.contains(&a.name), "{eb}");
    assert!(
        ea.contains("SECRET_TOKEN_FOR_SERVER"),
        "the registered env is given"
    );
    for leak in ["RUST_LOG", "DEJIMA_HOME", "DEJIMA_LABELS"] {
        assert!(!ea.contains(leak), "{leak} reached the server: {ea}");
    }

    // A second real server, a process per call.
    let (st, v) = mcp(
        &ma,
        "files",
        "tools/call",
        json!({"name": "read_text_file", "arguments": {"path": shared.path().join("notes.txt")}}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "from the host\n");

    // Refusals: methods off the list, ungranted servers, bad params; each ledgered.
    let cases: Vec<(&dejima::client::Client, Value, u16)> = vec![
        (
            &ma,
            json!({"server": "everything", "method": "sampling/createMessage"}),
            400,
        ),
        (
            &ma,
            json!({"server": "everything", "method": "initialize"}),
            400,
        ),
        (
            &ma,
            json!({"server": "everything", "method": "tools/call", "params": [1, 2]}),
            400,
        ),
        (&mb, json!({"server": "files", "method": "tools/list"}), 403),
        (
            &ma,
            json!({"server": "../everything", "method": "tools/list"}),
            400,
        ),
    ];
    for (c, body, want) in cases {
        let island = if std::ptr::eq(c, &mb) {
            &b.name
        } else {
            &a.name
        };
        let was = denied(&d, "mcp.denied", island);
        let (st, v) = call(c, "POST", "/v1/mcp/call", Some(body.clone()));
        assert_eq!(st, want, "{body}: {v}");
        wait_for(T, "the denial in the ledger", || {
            (denied(&d, "mcp.denied", island) > was).then_some(())
        });
    }
    let (st, _) = call(
        &mb,
        "POST",
        "/v1/mcp/call",
        Some(json!({"island": a.name, "server": "everything", "method": "tools/list"})),
    );
    assert_eq!(st, 403, "an island token acts for its own island only");

    // Servers that crash mid-call, flood, or never answer.
    let (st, v) = mcp(
        &ma,
        "crash",
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "x"}}),
    );
    assert_eq!(st, 502, "{v}");
    let (st, v) = mcp(&ma, "crash", "tools/list", json!({}));
    assert_eq!(st, 200, "a crashed server is started again: {v}");
    let (st, v) = mcp(
        &ma,
        "noisy",
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "x"}}),
    );
    assert_eq!(st, 502, "{v}");
    let (st, v) = mcp(&ma, "silent", "tools/list", json!({}));
    assert_eq!(st, 504, "{v}");

    // Revoked: refused at once (and its process ended).
    d.ok(
        "DELETE",
        &format!("/v1/islands/{}/mcp/grants/everything", a.name),
        None,
    );
    assert_eq!(mcp(&ma, "everything", "tools/list", json!({})).0, 403);
    assert_eq!(mcp(&mb, "everything", "tools/list", json!({})).0, 200);
    assert!(ledger_verifies(&d));
}

#[test]
fn a_spawn_grant_lets_an_island_make_and_run_its_own_children_only() {
    let d = Daemon::start();
    let p = d.create("parent");
    let stranger = d.create("stranger");
    let me = as_island(&d, &p.name);
    let child = unique("child");
    let make = |name: &str| {
        call(
            &me,
            "POST",
            "/v1/islands",
            Some(
                json!({"name": name, "no_repo": true, "agent": "custom", "cmd": "bash",
                         "resources": {"memory": "2g"}}),
            ),
        )
    };
    // Without a grant: 403, ledgered.
    let (st, _) = make(&child);
    assert_eq!(st, 403);
    assert_eq!(denied(&d, "spawn.denied", &p.name), 1);
    assert_eq!(d.req("GET", &format!("/v1/islands/{child}"), None).0, 404);
    assert_eq!(
        d.ok("GET", &format!("/v1/islands/{}/spawn", p.name), None)["granted"],
        false
    );

    let scope_dir = tempfile::tempdir().unwrap();
    let g = d.ok(
        "PUT",
        &format!("/v1/islands/{}/spawn", p.name),
        Some(json!({"max_children": 1, "memory": "256m", "cpus": "0.5"})),
    );
    assert_eq!(g["max_children"], 1);
    d.ok(
        "POST",
        &format!("/v1/islands/{}/port/scopes", p.name),
        Some(json!({"host_path": scope_dir.path()})),
    );
    for body in [
        json!({"name": unique("c"), "no_repo": true, "image": "busybox:latest"}),
        json!({"name": unique("c"), "repo": "/root"}),
        json!({"name": unique("c"), "repo": "/no/such/place"}),
    ] {
        let (st, v) = call(&me, "POST", "/v1/islands", Some(body.clone()));
        assert_eq!(st, 403, "{body}: {v}");
    }
    let (st, v) = call(
        &me,
        "POST",
        "/v1/islands",
        Some(
            json!({"name": child, "no_repo": true, "agent": "custom", "cmd": "bash",
                     "resources": {"memory": "2g", "oom_priority": -10, "disk": "500G"}}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    let _c = Island {
        d: &d,
        name: child.clone(),
    };
    assert_eq!(v["parent"], p.name);
    assert_eq!(v["owner"], p.name);
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    assert_eq!(island_token(&d, &child), token, "the child's own token");
    let detail = d.ok("GET", &format!("/v1/islands/{child}"), None);
    assert_eq!(
        detail["resources"]["memory"], "256m",
        "clamped to the grant"
    );
    assert_eq!(detail["resources"]["cpus"], "0.5");
    assert!(detail.get("token").is_none(), "shown once, never again");
    // Nothing is inherited.
    assert_eq!(
        d.ok("GET", &format!("/v1/islands/{child}/port/scopes"), None),
        json!([])
    );
    assert_eq!(
        d.ok("GET", &format!("/v1/islands/{child}/spawn"), None)["granted"],
        false
    );
    assert!(
        detail["resources"]["oom_priority"].as_i64().unwrap_or(0) >= 0,
        "a child is never harder to kill: {detail}"
    );
    assert!(detail["resources"].get("disk").is_none(), "{detail}");
    // The quota holds.
    let (st, _) = make(&unique("child2"));
    assert_eq!(st, 403);
    assert_eq!(
        d.ok("GET", &format!("/v1/islands/{}/spawn", p.name), None)["children"],
        json!([child])
    );
    // It runs its child, and nothing else.
    assert_eq!(
        call(&me, "GET", &format!("/v1/islands/{child}"), None).0,
        200
    );
    assert_eq!(
        call(&me, "POST", &format!("/v1/islands/{child}/hibernate"), None).0,
        200
    );
    assert_eq!(
        call(&me, "POST", &format!("/v1/islands/{child}/wake"), None).0,
        200
    );
    for (m, path) in [
        ("GET", format!("/v1/islands/{}", stranger.name)),
        ("POST", format!("/v1/islands/{}/hibernate", stranger.name)),
        ("DELETE", format!("/v1/islands/{}", stranger.name)),
        ("PATCH", format!("/v1/islands/{child}")),
        ("POST", format!("/v1/islands/{child}/exec")),
        ("PUT", format!("/v1/islands/{}/spawn", p.name)),
    ] {
        let (st, _) = call(&me, m, &path, Some(json!({})));
        assert_eq!(st, 403, "{m} {path}");
    }
    // The child's token cannot reach its parent.
    let ct = dejima::client::Client {
        target: dejima::client::Target::Unix(d.sock()),
        token: Some(token),
        timeout: None,
    };
    assert_eq!(
        call(&ct, "GET", &format!("/v1/islands/{}", p.name), None).0,
        403
    );
    assert_eq!(
        call(
            &me,
            "DELETE",
            &format!("/v1/islands/{child}?force=true"),
            None
        )
        .0,
        204
    );
    assert_eq!(d.req("GET", &format!("/v1/islands/{child}"), None).0, 404);
    assert!(!ledger(&d, "spawn.child", &p.name).is_empty());
    d.ok(
        "PUT",
        &format!("/v1/islands/{}/spawn", p.name),
        Some(json!({"max_children": 0})),
    );
    assert_eq!(make(&unique("child3")).0, 403);
}

const T: std::time::Duration = std::time::Duration::from_secs(20);
