//! Agents and multi-attach PTY sessions: real engine, real tmux, real websocket clients.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const T: Duration = Duration::from_secs(20);

fn session(i: &Island) -> String {
    format!("/v1/islands/{}/session", i.name)
}

#[test]
fn two_clients_share_one_screen_and_presence_shows_them() {
    let d = Daemon::start();
    let i = d.create("share");
    let mut a = d.attach(&format!("{}?label=laptop", session(&i)));
    let h = a.hello();
    assert_eq!(h["attached"][0]["label"], "laptop");
    let mut b = d.attach(&format!("{}?label=phone", session(&i)));
    let h = b.hello();
    let labels: Vec<&str> = h["attached"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, vec!["laptop", "phone"]);

    a.send_data(b"echo from-a-$((6*7))\r");
    a.expect("from-a-42", T);
    b.expect("from-a-42", T);
    b.send_data(b"echo from-b-$((7*7))\r");
    a.expect("from-b-49", T);
    b.expect("from-b-49", T);

    let info = d.island(&i.name);
    assert_eq!(info.attached.len(), 2);
    let agents = d.ok("GET", &format!("/v1/islands/{}/agents", i.name), None);
    assert_eq!(agents[0]["id"], "a1");
    assert_eq!(agents[0]["state"], "running");
    assert_eq!(agents[0]["attachable"], true);
    assert_eq!(agents[0]["tmux"], "agent-a1");
    assert_eq!(agents[0]["worktree"], "/workspace");
    assert_eq!(agents[0]["attached"].as_array().unwrap().len(), 2);

    drop(a);
    wait_for(T, "presence to drop the laptop", || {
        (d.island(&i.name).attached.len() == 1).then_some(())
    });
    let clients = d.ok("GET", "/v1/clients", None);
    let laptop = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == "laptop")
        .unwrap();
    assert_eq!(laptop["island"], i.name.as_str());
    assert!(laptop["detached_at"].is_string());
    let phone = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == "phone")
        .unwrap();
    assert!(phone.get("detached_at").is_none());
    assert_eq!(clients[0]["label"], "phone", "newest first");
}

#[test]
fn a_reconnecting_client_sees_the_current_screen() {
    let d = Daemon::start();
    let i = d.create("recon");
    let mut a = d.attach(&session(&i));
    a.hello();
    a.send_data(b"clear; echo still-here-$((5*5))\r");
    a.expect("still-here-25", T);
    drop(a);
    let mut b = d.attach(&session(&i));
    b.hello();
    b.expect("still-here-25", T);
}

#[test]
fn resize_changes_what_tmux_reports() {
    let d = Daemon::start();
    let i = d.create("size");
    let mut a = d.attach(&session(&i));
    a.hello();
    a.resize(30, 100);
    wait_for(T, "tmux to take 100x30", || {
        a.pump_once();
        (window(&d, &i.name, "a1") == "100x30").then_some(())
    });
    a.resize(40, 132);
    wait_for(T, "tmux to take 132x40", || {
        a.pump_once();
        (window(&d, &i.name, "a1") == "132x40").then_some(())
    });
    // A client that never sends a size gets the largest attached one, never 0x0.
    let mut b = d.attach(&session(&i));
    b.hello();
    b.send_data(b"stty size\r");
    let deadline = Instant::now() + T;
    while !b.text().contains("40 132") {
        if Instant::now() > deadline {
            let pane = screen(&d, &i.name, "a1");
            panic!(
                "B never showed the size; pane now:\n{pane}\nB got {:?}",
                b.text()
            );
        }
        b.pump_once();
        a.pump_once_nowait();
    }
}

/// docker's CLI misses a SIGWINCH that comes just after its exec starts (before it watches
/// for one); the daemon signals such an early resize again. A resize sent the moment the
/// screen first appears, several times over, must reach tmux every time.
#[test]
fn a_resize_the_moment_the_screen_appears_still_reaches_the_pane() {
    let d = Daemon::start();
    let i = d.create("early");
    for k in 0..8u16 {
        let mut a = d.attach(&session(&i));
        a.hello();
        a.resize(24, 80);
        wait_for(T, "the first screen", || {
            a.pump_once();
            (!a.text().is_empty()).then_some(())
        });
        let (rows, cols) = (30 + k, 100 + k);
        a.resize(rows, cols);
        let want = format!("{cols}x{rows}");
        wait_for(T, &format!("tmux to take {want} (attach {k})"), || {
            a.pump_once_nowait();
            (window(&d, &i.name, "a1") == want).then_some(())
        });
    }
}

#[test]
fn agents_get_worktrees_and_removal_keeps_the_branch() {
    let d = Daemon::start();
    let i = d.create("agents");
    let n = &i.name;
    let v = d.ok(
        "POST",
        &format!("/v1/islands/{n}/agents"),
        Some(json!({"type": "custom", "label": "frontend"})),
    );
    assert_eq!(v["id"], "a2");
    assert_eq!(v["branch"], "agent/a2");
    assert_eq!(v["worktree"], "/workspace/.agents/a2");
    assert_eq!(v["label"], "frontend");
    assert_eq!(v["state"], "running", "{v}");
    // Its session runs in its worktree, on its branch.
    let mut c = d.attach(&format!("/v1/islands/{n}/agents/a2/session?label=x"));
    c.hello();
    c.send_data(b"echo wt=$(pwd) br=$(git branch --show-current)\r");
    c.expect("wt=/workspace/.agents/a2 br=agent/a2", T);
    c.send_data(b"echo work > f.txt && git add f.txt && git -c user.email=a@b -c user.name=a commit -qm agent-work && echo committed\r");
    c.expect("committed", T);
    // The main workspace does not see the worktrees as dirt.
    assert_eq!(
        d.exec(n, &["git", "-C", "/workspace", "status", "--porcelain"])
            .0,
        ""
    );

    let v = d.ok(
        "PATCH",
        &format!("/v1/islands/{n}/agents/a2"),
        Some(json!({"label": "backend"})),
    );
    assert_eq!(v["label"], "backend");
    let v = d.ok("POST", &format!("/v1/islands/{n}/agents"), Some(json!({})));
    assert_eq!(
        (v["id"].as_str(), v["type"].as_str()),
        (Some("a3"), Some("custom")),
        "type defaults to the primary's"
    );

    let (s, _) = d.req("DELETE", &format!("/v1/islands/{n}/agents/a1"), None);
    assert_eq!(s, 409, "the primary stays");
    let (s, _) = d.req("DELETE", &format!("/v1/islands/{n}/agents/a2"), None);
    assert_eq!(s, 204);
    let close = c.expect_close(T);
    assert!(close.starts_with("1008") || c.saw_exit, "{close}");
    let (out, _) = d.exec(n, &["sh", "-c", "cd /workspace; test -d .agents/a2 && echo has-dir; git log --format=%s agent/a2 -1; git worktree list | wc -l"]);
    assert_eq!(
        out, "agent-work\n2\n",
        "worktree pruned, branch and its commit kept"
    );
    assert_eq!(
        d.req("GET", &format!("/v1/islands/{n}/agents/a2"), None).0,
        404
    );
    let ids: Vec<String> = d
        .ok("GET", &format!("/v1/islands/{n}/agents"), None)
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["a1", "a3"]);

    // Agents come back after hibernate + wake.
    d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
    let v = d.ok("GET", &format!("/v1/islands/{n}/agents/a3"), None);
    assert_eq!(v["state"], "stopped");
    d.ok("POST", &format!("/v1/islands/{n}/wake"), None);
    // The container starts its agents as it boots.
    wait_for(T, "a3 to run again after wake", || {
        (d.ok("GET", &format!("/v1/islands/{n}/agents/a3"), None)["state"] == "running")
            .then_some(())
    });
}

#[test]
fn headless_agents_are_supervised_and_logged() {
    let d = Daemon::start();
    let i = d.create("headless");
    let n = &i.name;
    let v = d.ok(
        "POST",
        &format!("/v1/islands/{n}/agents"),
        Some(json!({"type": "headless", "cmd": "echo tick-$((2+2)); exit 3"})),
    );
    assert_eq!(v["attachable"], false);
    let id = v["id"].as_str().unwrap().to_string();
    let v = wait_for(Duration::from_secs(30), "two restarts", || {
        let v = d.ok("GET", &format!("/v1/islands/{n}/agents/{id}"), None);
        (v["restarts"].as_i64().unwrap_or(0) >= 2).then_some(v)
    });
    assert_eq!(v["state"], "running", "the supervisor keeps it alive: {v}");
    let log = d
        .client
        .call(
            "GET",
            &format!("/v1/islands/{n}/logs?agent={id}"),
            dejima::client::Body::None,
        )
        .unwrap()
        .text()
        .unwrap();
    assert!(log.contains("tick-4"), "{log}");
    assert!(log.contains("exited with status 3"), "{log}");
    let (s, v) = d.req("GET", &format!("/v1/islands/{n}/logs?agent=a1"), None);
    assert_eq!(s, 409, "interactive agents have no log: {v}");
    let e = d
        .try_attach(&format!("/v1/islands/{n}/agents/{id}/session"))
        .err()
        .unwrap();
    assert!(e.starts_with("409"), "{e}");
    let (s, _) = d.req(
        "POST",
        &format!("/v1/islands/{n}/agents"),
        Some(json!({"type": "headless"})),
    );
    assert_eq!(s, 400, "headless needs cmd");
}

#[test]
fn an_agent_whose_program_ended_is_exited_not_running() {
    let d = Daemon::start();
    let i = d.create("exited");
    let n = &i.name;
    let v = d.ok(
        "POST",
        &format!("/v1/islands/{n}/agents"),
        Some(json!({"type": "custom", "cmd": "exit 4"})),
    );
    let id = v["id"].as_str().unwrap().to_string();
    let v = wait_for(T, "the agent to be seen exited", || {
        let v = d.ok("GET", &format!("/v1/islands/{n}/agents/{id}"), None);
        (v["state"] == "exited").then_some(v)
    });
    assert!(v["error"].as_str().unwrap().contains("exited"), "{v}");
    // The primary, a live shell, is running.
    assert_eq!(
        d.ok("GET", &format!("/v1/islands/{n}/agents/a1"), None)["state"],
        "running"
    );
    // An upgrade restarts what should run.
    d.ok("POST", &format!("/v1/islands/{n}/upgrade"), None);
    assert_eq!(
        d.ok("GET", &format!("/v1/islands/{n}/agents/a1"), None)["state"],
        "running"
    );
}

#[test]
fn revoke_closes_every_client_and_agents_keep_running() {
    let d = Daemon::start();
    let i = d.create("revoke");
    let mut a = d.attach(&format!("{}?label=one", session(&i)));
    let mut b = d.attach(&format!("{}?label=two", session(&i)));
    a.hello();
    b.hello();
    let v = d.ok("POST", "/v1/sessions/revoke", None);
    assert_eq!(v, json!({"revoked": 2}));
    assert!(a.expect_close(T).starts_with("1008"));
    assert!(b.expect_close(T).starts_with("1008"));
    wait_for(T, "presence to empty", || {
        d.island(&i.name).attached.is_empty().then_some(())
    });
    assert_eq!(
        d.ok("GET", &format!("/v1/islands/{}/agents/a1", i.name), None)["state"],
        "running"
    );
    let mut c = d.attach(&session(&i));
    c.hello();
}

#[test]
fn a_client_that_stops_reading_does_not_delay_another() {
    let d = Daemon::start();
    let i = d.create("slow");
    // The slow one attaches and never reads again.
    let mut slow = d.attach(&format!("{}?label=slow", session(&i)));
    slow.hello();
    let mut fast = d.attach(&format!("{}?label=fast", session(&i)));
    fast.hello();
    let t = Instant::now();
    fast.send_data(b"seq 1 200000; echo done-$((3*3))\r");
    fast.expect("done-9", Duration::from_secs(60));
    let took = t.elapsed();
    eprintln!("fast client saw 200000 lines in {took:?} while the other stalled");
    // The agent itself went on too: it answers.
    let (out, _) = d.exec(&i.name, &["echo", "alive"]);
    assert_eq!(out, "alive\n");
    drop(slow);
}

#[test]
fn malformed_envelopes_get_errors_or_a_close_never_a_crash() {
    let d = Daemon::start();
    let i = d.create("bad");
    let mut a = d.attach(&session(&i));
    a.hello();
    a.ws.send(tungstenite::Message::Text("not json".into()))
        .unwrap();
    a.send_json(json!({"type": "data", "b64": "%%%"}));
    a.send_json(json!({"type": "resize", "rows": 0, "cols": 10}));
    a.send_json(json!({"type": "teleport"}));
    wait_for(T, "four error frames", || {
        a.pump_once();
        (a.errors.len() >= 4).then_some(())
    });
    // Still usable.
    a.send_data(b"echo ok-$((1+1))\r");
    a.expect("ok-2", T);
    // A message over the 1 MiB cap closes that client only.
    let big = "x".repeat(2 << 20);
    let _ = a.ws.send(tungstenite::Message::Text(big));
    let close = a.expect_close(T);
    assert!(
        close.starts_with("1009") || close.starts_with("error"),
        "{close}"
    );
    assert_eq!(d.req("GET", "/v1/healthz", None).0, 200);
    let mut b = d.attach(&session(&i));
    b.hello();
}

#[test]
fn exit_is_sent_when_the_terminal_ends() {
    let d = Daemon::start();
    let i = d.create("exit");
    let mut a = d.attach(&session(&i));
    a.hello();
    d.ok("POST", &format!("/v1/islands/{}/hibernate", i.name), None);
    a.expect_close(T);
    assert!(a.saw_exit, "exit frame before the close");
}

#[test]
fn session_refusals() {
    let d = Daemon::start();
    let i = d.create("refuse");
    let n = &i.name;
    for (path, want) in [
        (format!("/v1/islands/{n}/agents/a9/session"), "404"),
        ("/v1/islands/nosuch/session".to_string(), "404"),
        (format!("/v1/islands/{n}/session?label=%07bell"), "400"),
    ] {
        let e = d
            .try_attach(&path)
            .err()
            .unwrap_or_else(|| panic!("{path} attached"));
        assert!(e.starts_with(want), "{path}: {e}");
    }
    // Plain GET on a websocket route.
    let (s, _) = d.req("GET", &format!("/v1/islands/{n}/session"), None);
    assert_eq!(s, 400);
    for (body, want) in [
        (json!({"type": "nope"}), 400),
        (json!({"label": "\u{1}"}), 400),
        (json!({"surprise": true}), 400),
    ] {
        assert_eq!(
            d.req(
                "POST",
                &format!("/v1/islands/{n}/agents"),
                Some(body.clone())
            )
            .0,
            want,
            "{body}"
        );
    }
    assert_eq!(d.req("GET", "/v1/islands/nosuch/agents", None).0, 404);
    d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
    let e = d
        .try_attach(&format!("/v1/islands/{n}/session"))
        .err()
        .unwrap();
    assert!(e.starts_with("409"), "{e}");
}

#[test]
fn host_terminals() {
    let off = Daemon::start();
    assert_eq!(off.req("GET", "/v1/terminals", None).0, 404);
    drop(off);
    let d = Daemon::start_with(&["--host-terminals"], &[]);
    let v = d.ok("POST", "/v1/terminals", Some(json!({"label": "ops", "command": "bash", "args": ["--norc"], "cwd": "/tmp", "env": {"GREETING": "hi-there"}, "cols": 90, "rows": 20})));
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        (v["label"].as_str(), v["status"].as_str()),
        (Some("ops"), Some("running"))
    );
    let mut a = d.attach(&format!("/v1/terminals/{id}/session?label=me"));
    a.hello();
    a.send_data(b"echo $GREETING-$((8*8)) $(pwd)\r");
    a.expect("hi-there-64 /tmp", T);
    let list = d.ok("GET", "/v1/terminals", None);
    assert_eq!(list[0]["attached"][0]["label"], "me");
    let v = d.ok(
        "PATCH",
        &format!("/v1/terminals/{id}"),
        Some(json!({"label": "renamed"})),
    );
    assert_eq!(v["label"], "renamed");
    // The program ending ends the terminal: exit, then close.
    a.send_data(b"exit\r");
    a.expect_close(T);
    assert!(a.saw_exit);
    assert_eq!(d.ok("GET", "/v1/terminals", None)[0]["status"], "exited");
    assert_eq!(d.req("DELETE", &format!("/v1/terminals/{id}"), None).0, 204);
    assert_eq!(d.req("DELETE", &format!("/v1/terminals/{id}"), None).0, 404);
    assert_eq!(
        d.req(
            "POST",
            "/v1/terminals",
            Some(json!({"cwd": "/nonexistent"}))
        )
        .0,
        422
    );
    // The user's own tmux server is untouched: ours has its own socket in DEJIMA_HOME.
    assert!(d.home.join("host-tmux.sock").exists());
    let _ = std::process::Command::new("tmux")
        .args([
            "-S",
            &d.home.join("host-tmux.sock").display().to_string(),
            "kill-server",
        ])
        .output();
}

#[test]
fn an_agent_added_while_hibernated_starts_on_wake() {
    let d = Daemon::start();
    let i = d.create("later");
    let n = &i.name;
    d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
    let v = d.ok(
        "POST",
        &format!("/v1/islands/{n}/agents"),
        Some(json!({"type": "custom", "label": "late"})),
    );
    assert_eq!(v["state"], "stopped");
    let id = v["id"].as_str().unwrap().to_string();
    d.ok("POST", &format!("/v1/islands/{n}/wake"), None);
    wait_for(T, "the late agent to run", || {
        (d.ok("GET", &format!("/v1/islands/{n}/agents/{id}"), None)["state"] == "running")
            .then_some(())
    });
    let (out, _) = d.exec(
        n,
        &[
            "git",
            "-C",
            &format!("/workspace/.agents/{id}"),
            "branch",
            "--show-current",
        ],
    );
    assert_eq!(out, format!("agent/{id}\n"));
    let mut c = d.attach(&format!("/v1/islands/{n}/agents/{id}/session"));
    c.hello();
    c.send_data(b"pwd\r");
    c.expect(&format!("/workspace/.agents/{id}"), T);
}

#[test]
fn detached_clients_leave_no_tmux_client_behind_in_the_island() {
    let d = Daemon::start();
    let i = d.create("ghost");
    for k in 0..50 {
        let mut w = d.attach(&format!("{}?label=cycle-{k}", session(&i)));
        w.hello();
        // The attach has drawn (the client is really attached) before it leaves.
        wait_for(T, "the first screen bytes", || {
            w.pump_once();
            (!w.output.is_empty()).then_some(())
        });
        if k % 2 == 0 {
            let _ = w.ws.close(None);
            let _ = w.ws.flush();
        }
        drop(w);
    }
    wait_for(T, "every attach to end inside the island", || {
        (in_island_clients(&d, &i.name) == (0, 0)).then_some(())
    });
    assert!(d.island(&i.name).attached.is_empty());
    // The agent itself is untouched.
    let mut w = d.attach(&session(&i));
    w.hello();
    w.send_data(b"echo alive-$((8*8))\r");
    w.expect("alive-64", T);
    assert_eq!(in_island_clients(&d, &i.name), (1, 1));
}

#[test]
fn a_restarted_daemon_sweeps_the_attaches_a_killed_one_left() {
    let d = Daemon::start();
    let i = d.create("sweep");
    let mut ws = Vec::new();
    // Three sizes: three attaches (clients of one size would share one).
    for k in 0..3 {
        let mut w = d.attach(&session(&i));
        w.resize(30 + k, 100);
        w.hello();
        wait_for(T, "the first screen bytes", || {
            w.pump_once();
            (!w.output.is_empty()).then_some(())
        });
        ws.push(w);
    }
    assert_eq!(in_island_clients(&d, &i.name), (3, 3));
    // And a long exec whose caller (and deadline keeper) dies with the daemon.
    let client = d.client.clone();
    let path = format!("/v1/islands/{}/exec", i.name);
    std::thread::spawn(move || {
        let b = serde_json::to_vec(
            &json!({"cmd": ["sh", "-c", "sleep 3033 & exec sleep 3034"], "timeout_secs": 3600}),
        )
        .unwrap();
        let _ = client.send(
            "POST",
            &path,
            dejima::client::Body::Bytes(&b, "application/json"),
        );
    });
    let sleeps = |d: &Daemon| {
        let (n, _) = d.exec(&i.name, &["sh", "-c", "pgrep -f 'sleep 303[34]' | wc -l"]);
        n.trim().parse::<usize>().unwrap()
    };
    wait_for(T, "the long exec to run", || {
        (sleeps(&d) == 2).then_some(())
    });
    // SIGKILL: no pump gets to end its attach, no deadline will be kept.
    d.kill9();
    drop(ws);
    d.spawn();
    wait_for(T, "the restarted daemon to sweep the strays", || {
        (in_island_clients(&d, &i.name) == (0, 0) && sleeps(&d) == 0).then_some(())
    });
    wait_for(T, "the sweep to be logged", || {
        d.log()
            .contains("ended 5 stray attach(es) and exec(s)")
            .then_some(())
    });
    // The agents are not strays: the terminal still works, and a new attach is kept.
    let mut w = d.attach(&session(&i));
    w.hello();
    w.send_data(b"echo swept-$((9*9))\r");
    w.expect("swept-81", T);
    assert_eq!(in_island_clients(&d, &i.name), (1, 1));
}

#[test]
fn an_agent_restarts_in_place_and_says_what_runs() {
    let d = Daemon::start();
    let i = d.create("restart");
    let a = d.ok(
        "POST",
        &format!("/v1/islands/{}/agents", i.name),
        Some(json!({"type": "custom", "cmd": "exec sleep 1000"})),
    );
    let id = a["id"].as_str().unwrap().to_string();
    let agent = |d: &Daemon| d.ok("GET", &format!("/v1/islands/{}/agents/{id}", i.name), None);
    wait_for(T, "the agent to run", || {
        (agent(&d)["runtime"] == "sleep").then_some(())
    });
    assert_eq!(
        d.ok("GET", &format!("/v1/islands/{}/agents/a1", i.name), None)["runtime"],
        "bash"
    );
    // Its program dies: exited, nothing running.
    d.exec(&i.name, &["sh", "-c", "pkill -f 'sleep 1000'"]);
    wait_for(T, "the agent to be exited", || {
        let v = agent(&d);
        (v["state"] == "exited" && v.get("runtime").is_none()).then_some(())
    });
    // Restarted in place: the same session, a new program.
    let path = format!("/v1/islands/{}/agents/{id}/restart", i.name);
    let v = d.ok("POST", &path, Some(json!({})));
    assert_eq!(v["state"], "running", "{v}");
    wait_for(T, "the program to be back", || {
        (agent(&d)["runtime"] == "sleep").then_some(())
    });
    let (s, v) = d.req("POST", &path, Some(json!({"resume": true})));
    assert_eq!(s, 422, "a custom command cannot resume a conversation: {v}");
    let (s, _) = d.req(
        "POST",
        &format!("/v1/islands/{}/agents/nope/restart", i.name),
        None,
    );
    assert_eq!(s, 404);
    // The types say which can resume.
    let types = d.ok("GET", "/v1/agent-types", None);
    let claude = types
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "claude-code")
        .unwrap();
    assert_eq!(
        (claude["binary"].as_str(), claude["can_resume"].as_bool()),
        (Some("claude"), Some(true))
    );
    assert_eq!(claude["key_env"], "ANTHROPIC_API_KEY");
    assert_eq!(types.as_array().unwrap().len(), 4);
}

#[test]
fn a_client_close_is_answered_with_a_close() {
    let d = Daemon::start();
    let i = d.create("wsclose");
    let mut w = d.attach(&format!("/v1/islands/{}/session?label=closer", i.name));
    w.hello();
    w.ws.close(None).unwrap();
    // The handshake completes (the server's Close arrives) instead of a dropped connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let outcome = loop {
        match w.ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && std::time::Instant::now() < deadline => {}
            Err(e) => break e,
        }
    };
    assert!(
        matches!(outcome, tungstenite::Error::ConnectionClosed),
        "{outcome:?}"
    );
}

#[test]
fn keystrokes_sent_just_before_a_close_still_run() {
    let d = Daemon::start();
    let i = d.create("typeclose");
    for round in 0..5 {
        let mut w = d.attach(&format!("/v1/islands/{}/session?label=typist", i.name));
        w.hello();
        // The shell's prompt is on screen: the attach is live.
        w.expect("$", T);
        let mark = format!("/tmp/closed-{round}");
        w.send_data(format!("touch {mark}\r").as_bytes());
        w.ws.close(None).unwrap();
        let _ = w.ws.flush();
        wait_for(T, "the command typed before the close to run", || {
            (d.exec(&i.name, &["test", "-e", &mark]).1 == 0).then_some(())
        });
    }
}
