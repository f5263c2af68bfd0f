//! Island lifecycle against the real daemon, engine and island image.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[test]
fn create_list_detail_title_and_engine_objects() {
    let d = Daemon::start();
    let i = d.create("life");
    let n = &i.name;

    let list = d.ok("GET", "/v1/islands", None);
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == *n)
        .expect("listed");
    assert_eq!(mine["state"], "running");
    assert_eq!(mine["container"], "running");
    assert_eq!(mine["image"], "dejima/island:latest");
    assert_eq!(mine["agent"], "custom");
    assert!(mine.get("git").is_none(), "the list is lightweight: {mine}");
    for k in ["created_at", "last_used_at"] {
        assert!(mine[k].as_str().unwrap().ends_with('Z'), "{k}: {mine}");
    }

    let det = d.island(n);
    let git = det.git.expect("detail has git");
    assert_eq!(
        (git.branch.as_str(), git.clean, git.dirty_files),
        ("main", true, 0)
    );
    assert!(det.health.is_some() && det.disk.is_some() && det.resources.is_some());

    // Engine objects, named and labelled as documented.
    let label = docker_ok(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"dejima.island\"}}",
        &format!("dejima-{n}"),
    ]);
    assert_eq!(label, *n);
    docker_ok(&["volume", "inspect", &format!("dejima-{n}-workspace")]);
    docker_ok(&["volume", "inspect", &format!("dejima-{n}-home")]);
    docker_ok(&["network", "inspect", &format!("dejima-net-{n}")]);
    let init = docker_ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.Init}}",
        &format!("dejima-{n}"),
    ]);
    assert_eq!(init, "true");

    // Duplicate name.
    let (s, v) = d.req(
        "POST",
        "/v1/islands",
        Some(json!({"name": n, "no_repo": true})),
    );
    assert_eq!(s, 409, "{v}");
    assert!(err_text(&v).contains("already exists"));

    // Title.
    let v = d.ok(
        "PATCH",
        &format!("/v1/islands/{n}"),
        Some(json!({"title": "My Project"})),
    );
    assert_eq!(v["title"], "My Project");
    assert_eq!(d.island(n).title, "My Project");
    let (s, _) = d.req(
        "PATCH",
        &format!("/v1/islands/{n}"),
        Some(json!({"title": "bad\u{7}"})),
    );
    assert_eq!(s, 400);

    // Detail git reflects a dirty workspace.
    d.exec(n, &["sh", "-c", "echo x > /workspace/f"]);
    let g = d.island(n).git.unwrap();
    assert_eq!((g.clean, g.dirty_files), (false, 1));
}

#[test]
fn hibernate_wake_reset_upgrade_keep_the_right_volumes() {
    let d = Daemon::start();
    let i = d.create("cycle");
    let n = &i.name;
    d.exec(
        n,
        &[
            "sh",
            "-c",
            "echo keep > /workspace/w.txt && echo cred > /home/agent/h.txt",
        ],
    );

    let v = d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
    assert_eq!(
        (v["state"].as_str(), v["container"].as_str()),
        (Some("hibernated"), Some("exited"))
    );
    assert_eq!(
        docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Running}}",
            &format!("dejima-{n}")
        ]),
        "false"
    );
    let (s, v) = d.req(
        "POST",
        &format!("/v1/islands/{n}/exec"),
        Some(json!({"cmd": ["true"]})),
    );
    assert_eq!(s, 409, "exec on a hibernated island: {v}");

    let v = d.ok("POST", &format!("/v1/islands/{n}/wake"), None);
    assert_eq!(
        (v["state"].as_str(), v["container"].as_str()),
        (Some("running"), Some("running"))
    );
    assert_eq!(
        d.exec(n, &["cat", "/workspace/w.txt", "/home/agent/h.txt"])
            .0,
        "keep\ncred\n"
    );

    // Reset: a fresh home, the workspace untouched.
    d.ok("POST", &format!("/v1/islands/{n}/reset"), None);
    let (out, code) = d.exec(
        n,
        &[
            "sh",
            "-c",
            "cat /workspace/w.txt; test -e /home/agent/h.txt && echo home-kept || echo home-fresh",
        ],
    );
    assert_eq!((out.as_str(), code), ("keep\nhome-fresh\n", 0));
    // The fresh home belongs to the agent user.
    assert_eq!(
        d.exec(n, &["stat", "-c", "%U", "/home/agent"]).0.trim(),
        "agent"
    );

    // Upgrade: a new container, both volumes kept.
    d.exec(n, &["sh", "-c", "echo again > /home/agent/h2.txt"]);
    let before = docker_ok(&["inspect", "-f", "{{.Id}}", &format!("dejima-{n}")]);
    let v = d.ok("POST", &format!("/v1/islands/{n}/upgrade"), None);
    assert_eq!(v["container"], "running");
    let after = docker_ok(&["inspect", "-f", "{{.Id}}", &format!("dejima-{n}")]);
    assert_ne!(before, after, "upgrade recreates the container");
    assert_eq!(
        d.exec(n, &["cat", "/workspace/w.txt", "/home/agent/h2.txt"])
            .0,
        "keep\nagain\n"
    );

    // A second lifecycle call while one runs would be a 409; sequential ones are fine.
    d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
    // Upgrade of a hibernated island keeps it hibernated.
    let v = d.ok("POST", &format!("/v1/islands/{n}/upgrade"), None);
    assert_eq!(v["state"], "hibernated");
    assert_ne!(v["container"], "running");
}

#[test]
fn wake_recreates_a_container_removed_behind_our_back() {
    let d = Daemon::start();
    let i = d.create("gone");
    let n = &i.name;
    d.exec(n, &["sh", "-c", "echo precious > /workspace/p.txt"]);
    docker_ok(&["rm", "-f", &format!("dejima-{n}")]);
    wait_for(
        Duration::from_secs(10),
        "the watcher to see the container gone",
        || (d.island(n).container.as_str() == "missing").then_some(()),
    );
    let v = d.ok("POST", &format!("/v1/islands/{n}/wake"), None);
    assert_eq!(v["container"], "running");
    assert_eq!(d.exec(n, &["cat", "/workspace/p.txt"]).0, "precious\n");
}

#[test]
fn clone_copies_volumes_and_drops_the_title() {
    let d = Daemon::start();
    let i = d.create("src");
    let n = &i.name;
    d.ok(
        "PATCH",
        &format!("/v1/islands/{n}"),
        Some(json!({"title": "Original"})),
    );
    d.exec(
        n,
        &[
            "sh",
            "-c",
            "echo code > /workspace/c.txt && echo tok > /home/agent/.tok",
        ],
    );
    let to = unique("dst");
    let _sweep = Sweep(to.clone());
    // Dejima's own clients send `new_name`.
    let (s, v) = d.req(
        "POST",
        &format!("/v1/islands/{n}/clone"),
        Some(json!({"new_name": to})),
    );
    assert_eq!(s, 201, "{v}");
    let _guard = Island {
        d: &d,
        name: to.clone(),
    };
    assert_eq!(v["name"], to.as_str());
    assert_eq!(v["title"], "");
    assert_eq!(v["agent"], "custom");
    assert_eq!(
        d.exec(&to, &["cat", "/workspace/c.txt", "/home/agent/.tok"])
            .0,
        "code\ntok\n"
    );
    // The source keeps running and is unchanged.
    assert_eq!(d.island(n).container.as_str(), "running");
    assert_eq!(d.island(n).title, "Original");
    // The reference's `name` works too; a taken name is 409.
    let (s, _) = d.req(
        "POST",
        &format!("/v1/islands/{n}/clone"),
        Some(json!({"name": to})),
    );
    assert_eq!(s, 409);
    let (s, _) = d.req("POST", &format!("/v1/islands/{n}/clone"), Some(json!({})));
    assert_eq!(s, 400);
}

#[test]
fn purge_refuses_unsaved_work_unless_forced_and_removes_everything() {
    let d = Daemon::start();
    let i = d.create("purge");
    let n = i.name.clone();
    // Uncommitted work.
    d.exec(&n, &["sh", "-c", "echo wip > /workspace/wip.txt"]);
    let (s, v) = d.req("DELETE", &format!("/v1/islands/{n}"), None);
    assert_eq!(s, 409, "{v}");
    assert!(err_text(&v).contains("uncommitted"), "{v}");
    // Committed but never pushed.
    d.exec(
        &n,
        &[
            "sh",
            "-c",
            "cd /workspace && git add . && git -c user.email=a@b -c user.name=a commit -qm wip",
        ],
    );
    let (s, v) = d.req("DELETE", &format!("/v1/islands/{n}"), None);
    assert_eq!(s, 409);
    assert!(err_text(&v).contains("not pushed"), "{v}");
    // Still there, still running.
    assert_eq!(d.island(&n).container.as_str(), "running");
    // Also refused while hibernated (checked on the volumes).
    d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
    let (s, _) = d.req("DELETE", &format!("/v1/islands/{n}"), None);
    assert_eq!(s, 409);

    let (s, _) = d.req("DELETE", &format!("/v1/islands/{n}?force=true"), None);
    assert_eq!(s, 204);
    assert_eq!(d.req("GET", &format!("/v1/islands/{n}"), None).0, 404);
    assert!(!docker(&["inspect", &format!("dejima-{n}")])
        .status
        .success());
    assert!(
        !docker(&["volume", "inspect", &format!("dejima-{n}-workspace")])
            .status
            .success()
    );
    assert!(!docker(&["volume", "inspect", &format!("dejima-{n}-home")])
        .status
        .success());
    assert!(!docker(&["network", "inspect", &format!("dejima-net-{n}")])
        .status
        .success());
    assert!(!d.home.join("islands").join(&n).exists());
}

#[test]
fn a_purged_islands_state_never_reaches_the_next_island_of_that_name() {
    let d = Daemon::start();
    let name = {
        let i = d.create("reborn");
        let n = i.name.clone();
        d.ok(
            "POST",
            "/v1/internal/agent-event",
            Some(serde_json::json!({"island": n, "agent": "a1", "type": "task-complete"})),
        );
        let info = d.island(&n);
        assert_eq!(info.agent_state.unwrap().latest.as_str(), "task-complete");
        assert!(info.agents[0].agent_state.is_some());
        d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
        let (s, _) = d.req("DELETE", &format!("/v1/islands/{n}?force=true"), None);
        assert_eq!(s, 204);
        std::mem::forget(i);
        n
    };
    let (s, v) = d.req(
        "POST",
        "/v1/islands",
        Some(serde_json::json!({"name": name, "no_repo": true, "agent": "custom", "cmd": "bash"})),
    );
    assert_eq!(s, 201, "{v}");
    let _again = Island {
        d: &d,
        name: name.clone(),
    };
    let info = d.island(&name);
    assert!(
        info.agent_state.is_none(),
        "old agent_state leaked: {:?}",
        info.agent_state
    );
    assert!(info.agents[0].agent_state.is_none());
    let kinds = event_kinds(&d, &name);
    assert!(kinds.iter().any(|k| k == "island.created"), "{kinds:?}");
    for old in ["agent.task-complete", "island.hibernated", "island.purged"] {
        assert!(
            !kinds.iter().any(|k| k == old),
            "the old island's {old} leaked: {kinds:?}"
        );
    }
}

#[test]
fn purge_of_a_clean_island_needs_no_force() {
    let d = Daemon::start();
    let i = d.create("clean");
    let (s, v) = d.req("DELETE", &format!("/v1/islands/{}", i.name), None);
    assert_eq!(s, 204, "{v}");
}

#[test]
fn create_from_a_host_path_keeps_history_and_derives_the_name() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().join(unique("p"));
    let repo = host_repo(&parent);
    let (s, v) = d.req(
        "POST",
        "/v1/islands",
        Some(json!({"repo": repo.display().to_string(), "agent": "custom", "cmd": "bash"})),
    );
    assert_eq!(s, 201, "{v}");
    let name = v["name"].as_str().unwrap().to_string();
    let _g = Island {
        d: &d,
        name: name.clone(),
    };
    assert_eq!(name, "proj");
    assert_eq!(v["repo"], repo.display().to_string());
    let ready = d.ok("GET", &format!("/v1/islands/{name}/workspace-ready"), None);
    assert_eq!(
        ready,
        json!({"ready": true, "clone_failed": false, "clone_reason": ""})
    );
    let (log, _) = d.exec(&name, &["git", "-C", "/workspace", "log", "--format=%s"]);
    assert_eq!(log, "first\n");
    assert_eq!(
        d.exec(&name, &["stat", "-c", "%U", "/workspace/README.md"])
            .0
            .trim(),
        "agent"
    );
    // Pushed nowhere: the history is unpushed work, so purge needs force.
    assert_eq!(d.req("DELETE", &format!("/v1/islands/{name}"), None).0, 409);
}

#[test]
fn a_failing_url_clone_is_recorded_with_its_reason() {
    let d = Daemon::start();
    let name = unique("url");
    let _sweep = Sweep(name.clone());
    let (s, v) = d.req("POST", "/v1/islands", Some(json!({"name": name, "repo": "file:///nonexistent/repo.git", "agent": "custom", "cmd": "bash"})));
    assert_eq!(s, 201, "{v}");
    let _g = Island {
        d: &d,
        name: name.clone(),
    };
    let r = wait_for(Duration::from_secs(60), "the clone to finish", || {
        let r = d.ok("GET", &format!("/v1/islands/{name}/workspace-ready"), None);
        (r["ready"] == true || r["clone_failed"] == true).then_some(r)
    });
    assert_eq!(r["ready"], false);
    assert_eq!(r["clone_failed"], true);
    assert!(
        r["clone_reason"]
            .as_str()
            .unwrap()
            .contains("does not exist")
            || r["clone_reason"].as_str().unwrap().contains("not found")
            || r["clone_reason"].as_str().unwrap().contains("repository"),
        "{r}"
    );
}

#[test]
fn resources_apply_memory_live_and_flag_oom_priority() {
    let d = Daemon::start();
    let name = unique("res");
    let _sweep = Sweep(name.clone());
    let (s, v) = d.req("POST", "/v1/islands", Some(json!({"name": name, "no_repo": true, "agent": "custom", "cmd": "bash", "resources": {"memory": "512m", "cpus": "1.5"}})));
    assert_eq!(s, 201, "{v}");
    let _g = Island {
        d: &d,
        name: name.clone(),
    };
    let c = format!("dejima-{name}");
    assert_eq!(
        docker_ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
            &c
        ]),
        "536870912 1500000000"
    );
    let det = d.island(&name);
    assert_eq!(det.resources.as_ref().unwrap().memory, "512m");

    let v = d.ok(
        "PUT",
        &format!("/v1/islands/{name}/resources"),
        Some(json!({"memory": "256m"})),
    );
    assert_eq!(v["restart_required"], false);
    assert_eq!(v["resources"]["memory"], "256m");
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.HostConfig.Memory}}", &c]),
        "268435456"
    );
    let v = d.ok(
        "PUT",
        &format!("/v1/islands/{name}/resources"),
        Some(json!({"oom_priority": 3})),
    );
    assert_eq!(v["restart_required"], true);
    assert_eq!(v["resources"]["oom_priority"], 3);
    // Takes effect on the next recreate.
    d.ok("POST", &format!("/v1/islands/{name}/upgrade"), None);
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.HostConfig.OomScoreAdj}}", &c]),
        "300"
    );

    // Malformed is 400; a well-formed size an island cannot live in is 422.
    for (bad, want) in [
        (json!({"memory": "lots"}), 400),
        (json!({"oom_priority": 99}), 400),
        (json!({"memory": "1k"}), 422),
        (json!({"cpus": "2"}), 400),
    ] {
        let (s, v) = d.req(
            "PUT",
            &format!("/v1/islands/{name}/resources"),
            Some(bad.clone()),
        );
        assert_eq!(s, want, "{bad} -> {v}");
    }
}

#[test]
fn a_disk_cap_the_engine_cannot_honour_is_422_and_leaves_nothing() {
    let d = Daemon::start();
    let name = unique("disk");
    let _sweep = Sweep(name.clone());
    let (s, v) = d.req(
        "POST",
        "/v1/islands",
        Some(json!({"name": name, "no_repo": true, "resources": {"disk": "20G"}})),
    );
    if s == 201 {
        // An engine on xfs with pquota honours it; then the cap must be real.
        let _g = Island {
            d: &d,
            name: name.clone(),
        };
        let opt = docker_ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.StorageOpt}}",
            &format!("dejima-{name}"),
        ]);
        assert!(opt.contains("size:20G"), "{opt}");
        return;
    }
    assert_eq!(s, 422, "{v}");
    assert!(err_text(&v).contains("disk"), "{v}");
    assert_eq!(d.req("GET", &format!("/v1/islands/{name}"), None).0, 404);
    assert!(
        !docker(&["volume", "inspect", &format!("dejima-{name}-workspace")])
            .status
            .success()
    );
    assert!(
        !docker(&["network", "inspect", &format!("dejima-net-{name}")])
            .status
            .success()
    );
}

#[test]
fn bad_input_is_a_clear_4xx_that_changes_nothing() {
    let d = Daemon::start();
    let before = d.ok("GET", "/v1/islands", None);
    let cases: Vec<(&str, &str, Option<serde_json::Value>, u16)> = vec![
        (
            "POST",
            "/v1/islands",
            Some(json!({"name": "Bad_Name", "no_repo": true})),
            400,
        ),
        (
            "POST",
            "/v1/islands",
            Some(json!({"name": "-x", "no_repo": true})),
            400,
        ),
        (
            "POST",
            "/v1/islands",
            Some(json!({"name": "a".repeat(64), "no_repo": true})),
            400,
        ),
        ("POST", "/v1/islands", Some(json!({"no_repo": true})), 400),
        ("POST", "/v1/islands", Some(json!({})), 400),
        (
            "POST",
            "/v1/islands",
            Some(json!({"repo": "relative/path"})),
            400,
        ),
        (
            "POST",
            "/v1/islands",
            Some(json!({"repo": "--upload-pack=evil"})),
            400,
        ),
        (
            "POST",
            "/v1/islands",
            Some(json!({"name": "ok-name", "no_repo": true, "agent": "nope"})),
            400,
        ),
        (
            "POST",
            "/v1/islands",
            Some(json!({"name": "ok-name", "no_repo": true, "agent": "headless"})),
            400,
        ),
        (
            "POST",
            "/v1/islands",
            Some(
                json!({"name": "ok-name", "no_repo": true, "resources": {"memory": "4 elephants"}}),
            ),
            400,
        ),
        (
            "POST",
            "/v1/islands",
            Some(json!({"name": "ok-name", "no_repo": true, "image": "--privileged"})),
            400,
        ),
        (
            "POST",
            "/v1/islands",
            Some(json!({"name": "ok-name", "no_repo": true, "surprise": 1})),
            400,
        ),
        (
            "POST",
            "/v1/islands",
            Some(json!(["not", "an", "object"])),
            400,
        ),
        ("GET", "/v1/islands/UPPER", None, 400),
        ("GET", "/v1/islands/a%2Fb", None, 400),
        ("GET", "/v1/islands/nosuch", None, 404),
        ("POST", "/v1/islands/nosuch/wake", None, 404),
        ("POST", "/v1/islands/nosuch/hibernate", None, 404),
        ("POST", "/v1/islands/nosuch/reset", None, 404),
        ("POST", "/v1/islands/nosuch/upgrade", None, 404),
        (
            "POST",
            "/v1/islands/nosuch/clone",
            Some(json!({"name": "other"})),
            404,
        ),
        (
            "POST",
            "/v1/islands/nosuch/exec",
            Some(json!({"cmd": ["true"]})),
            404,
        ),
        ("DELETE", "/v1/islands/nosuch", None, 404),
        (
            "PATCH",
            "/v1/islands/nosuch",
            Some(json!({"title": "x"})),
            404,
        ),
        (
            "PUT",
            "/v1/islands/nosuch/resources",
            Some(json!({"memory": "1G"})),
            404,
        ),
        ("GET", "/v1/islands/nosuch/workspace-ready", None, 404),
        ("GET", "/v1/islands/nosuch/logs", None, 404),
        ("GET", "/v1/islands/nosuch/files/workspace/a", None, 404),
        ("GET", "/v1/nope", None, 404),
        ("GET", "/nope", None, 404),
        ("GET", "/ui/nope.js", None, 404),
        ("PUT", "/v1/islands", None, 405),
        ("DELETE", "/v1/overview", None, 405),
    ];
    for (m, p, body, want) in cases {
        let (s, v) = d.req(m, p, body.clone());
        assert_eq!(s, want, "{m} {p} {body:?} -> {v}");
        assert!(!err_text(&v).is_empty(), "{m} {p}: error body {v}");
    }
    // Malformed JSON and a body over the cap.
    let (s, b) = d.raw("POST", "/v1/islands", b"{\"name\": ");
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
    let big = vec![b' '; (1 << 20) + 10];
    let (s, b) = d.raw("POST", "/v1/islands", &big);
    assert_eq!(s, 413, "{}", String::from_utf8_lossy(&b));
    assert_eq!(d.ok("GET", "/v1/islands", None), before, "nothing changed");
    assert!(!d.home.join("islands/ok-name").exists());
    assert!(!docker(&["network", "inspect", "dejima-net-ok-name"])
        .status
        .success());
}

#[test]
fn overview_and_healthz() {
    let d = Daemon::start();
    let i = d.create("ov");
    let h = d.ok("GET", "/v1/healthz", None);
    assert_eq!(h["ok"], true);
    let o = wait_for(Duration::from_secs(15), "stats for the island", || {
        let o = d.ok("GET", "/v1/overview", None);
        (o["memory_usage_bytes"].as_u64().unwrap_or(0) > 0).then_some(o)
    });
    for k in [
        "total_islands",
        "running",
        "hibernated",
        "errored",
        "attached_clients",
        "memory_usage_bytes",
        "memory_limit_bytes",
        "cpu_percent",
        "daemon_started_at",
        "webhook_count",
        "docker_reachable",
        "island_image_present",
        "island_image",
    ] {
        assert!(o.get(k).is_some(), "overview lacks {k}: {o}");
    }
    assert_eq!(o["total_islands"], 1);
    assert_eq!(o["running"], 1);
    assert_eq!(o["docker_reachable"], true);
    assert_eq!(o["island_image_present"], true);
    assert!(o["host_memory_bytes"].as_u64().unwrap() > 0);
    let info = d.island(&i.name);
    let st = info.stats.expect("stats for a running island");
    assert!(st.memory_usage_bytes > 0);
    assert_eq!(
        st.memory_limit_bytes, 0,
        "uncapped island reports 0 (unlimited)"
    );
    d.ok("POST", &format!("/v1/islands/{}/hibernate", i.name), None);
    let o = d.ok("GET", "/v1/overview", None);
    assert_eq!(
        (o["running"].as_u64(), o["hibernated"].as_u64()),
        (Some(0), Some(1))
    );
}

fn subnet_of(name: &str) -> String {
    docker_ok(&[
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
        &format!("dejima-net-{name}"),
    ])
}

/// The networks an island's container is attached to.
fn networks_of(name: &str) -> String {
    docker_ok(&[
        "inspect",
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        &format!("dejima-{name}"),
    ])
}

fn create_no_repo(d: &Daemon, name: &str) -> (u16, serde_json::Value) {
    d.req(
        "POST",
        "/v1/islands",
        Some(serde_json::json!({"name": name, "no_repo": true, "agent": "custom", "cmd": "bash"})),
    )
}

#[test]
fn island_subnets_come_from_the_pool_exhaustion_is_507_and_purge_returns_them() {
    // A pool of four /28s, private to this test.
    let third = u8::from_str_radix(&dejima::util::random_hex(1), 16).unwrap();
    let pool = format!("10.214.{third}.0/26");
    let d = Daemon::start_with(&["--subnet-pool", &pool, "--subnet-prefix", "28"], &[]);
    let names: Vec<String> = (0..4).map(|_| unique("pool")).collect();
    let _guards: Vec<Sweep> = names.iter().map(|n| Sweep(n.clone())).collect();
    for n in &names {
        let (s, v) = create_no_repo(&d, n);
        assert_eq!(s, 201, "{v}");
    }
    let mut subnets: Vec<String> = names.iter().map(|n| subnet_of(n)).collect();
    for (n, s) in names.iter().zip(&subnets) {
        assert!(
            s.starts_with(&format!("10.214.{third}.")) && s.ends_with("/28"),
            "{n}: {s}"
        );
        assert_eq!(
            networks_of(n),
            format!("dejima-net-{n}"),
            "an island is on its own network only"
        );
    }
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 4, "each island has its own subnet");

    // The fifth finds the pool used up: a clear 507 that says what to change, and nothing left.
    let fifth = unique("pool");
    let _g5 = Sweep(fifth.clone());
    let (s, v) = create_no_repo(&d, &fifth);
    assert_eq!(s, 507, "{v}");
    assert!(err_text(&v).contains("--subnet-pool"), "{v}");
    assert_eq!(d.req("GET", &format!("/v1/islands/{fifth}"), None).0, 404);
    assert!(
        !docker(&["network", "inspect", &format!("dejima-net-{fifth}")])
            .status
            .success()
    );
    assert!(
        !docker(&["volume", "inspect", &format!("dejima-{fifth}-home")])
            .status
            .success()
    );

    // Purge gives the subnet back.
    let freed = subnet_of(&names[1]);
    let (s, _) = d.req(
        "DELETE",
        &format!("/v1/islands/{}?force=true", names[1]),
        None,
    );
    assert_eq!(s, 204);
    let (s, v) = create_no_repo(&d, &fifth);
    assert_eq!(s, 201, "{v}");
    assert_eq!(subnet_of(&fifth), freed);
    for n in names.iter().chain([&fifth]) {
        let _ = d.req("DELETE", &format!("/v1/islands/{n}?force=true"), None);
    }
}

#[test]
fn forty_islands_each_on_a_network_of_its_own() {
    // The engine's default address pools end near 30 networks; the daemon's pool does not.
    let d = Daemon::start();
    let names: Vec<String> = (0..40).map(|_| unique("many")).collect();
    let _guards: Vec<Sweep> = names.iter().map(|n| Sweep(n.clone())).collect();
    std::thread::scope(|s| {
        for chunk in names.chunks(10) {
            let d = &d;
            s.spawn(move || {
                for n in chunk {
                    let (st, v) = create_no_repo(d, n);
                    assert_eq!(st, 201, "{n}: {v}");
                    // Most of a host's islands sleep.
                    d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
                }
            });
        }
    });
    let mut subnets: Vec<String> = names.iter().map(|n| subnet_of(n)).collect();
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 40, "forty distinct subnets");
    let last = names.last().unwrap();
    d.ok("POST", &format!("/v1/islands/{last}/wake"), None);
    assert_eq!(networks_of(last), format!("dejima-net-{last}"));
    assert_eq!(
        d.ok("GET", "/v1/islands", None).as_array().unwrap().len(),
        40
    );
    std::thread::scope(|s| {
        for chunk in names.chunks(10) {
            let d = &d;
            s.spawn(move || {
                for n in chunk {
                    let (st, _) = d.req("DELETE", &format!("/v1/islands/{n}?force=true"), None);
                    assert_eq!(st, 204);
                    assert!(!docker(&["network", "inspect", &format!("dejima-net-{n}")])
                        .status
                        .success());
                }
            });
        }
    });
}

#[test]
fn a_second_image_build_while_one_runs_is_409() {
    let d = Daemon::start();
    let tag = format!("dejima/island:buildtest-{}", dejima::util::random_hex(4));
    let body = serde_json::to_vec(&serde_json::json!({"tag": tag, "force": true})).unwrap();
    let mut first = d
        .client
        .call(
            "POST",
            "/v1/image/build",
            dejima::client::Body::Bytes(&body, "application/json"),
        )
        .unwrap();
    // The first is under way once it says what it builds.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("building ") {
        let n = first.reader().read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the build stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let (s, v) = d.req(
        "POST",
        "/v1/image/build",
        Some(serde_json::json!({"tag": format!("{tag}-2"), "force": true})),
    );
    assert_eq!(s, 409, "{v}");
    assert!(err_text(&v).contains("already running"), "{v}");
    let mut rest = String::new();
    first.reader().read_to_string(&mut rest).unwrap();
    assert!(
        rest.trim_end().lines().last().unwrap().starts_with("ok:"),
        "{rest}"
    );
    // Once it is done, building is open again.
    let r = d
        .client
        .call(
            "POST",
            "/v1/image/build",
            dejima::client::Body::Bytes(&body, "application/json"),
        )
        .unwrap()
        .text()
        .unwrap();
    assert!(
        r.trim_end().lines().last().unwrap().starts_with("ok:"),
        "{r}"
    );
    let _ = docker(&["rmi", &tag]);
    assert!(
        !d.home
            .join("image")
            .read_dir()
            .map(|mut e| e.any(|f| f
                .map(|f| f.file_name().to_string_lossy().starts_with("context-"))
                .unwrap_or(false)))
            .unwrap_or(false),
        "no build context is left behind"
    );
}
