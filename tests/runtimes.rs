//! One integration suite, run on both runtimes through the API alone: islands (create, exec,
//! files, logs, hibernate, wake, reset, upgrade, clone, purge), agents and their sessions,
//! screens and prompts, events, the island's own socket, and a daemon restart. Then what only the Kubernetes runtime
//! has: a pod deleted behind our back, claims kept while hibernated, a kubelet restart, the
//! features it reports it cannot do.
//!
//! The Kubernetes half runs on the real single-node cluster `scripts/kube-up` starts (the
//! README's test command starts it); each test has a namespace of its own, deleted after.
//! Without a cluster those tests fail when `DEJIMA_TEST_KUBE=1` (scripts/test sets it) and
//! are skipped, saying so, otherwise.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::kube::OnKube;
use support::*;

const LONG: Duration = Duration::from_secs(90);

/// What a runtime holds for an island, named, for "nothing is left" checks.
trait Held {
    fn objects(&self, island: &str) -> Vec<String>;
}

impl Held for OnKube {
    fn objects(&self, island: &str) -> Vec<String> {
        OnKube::objects(self, island)
    }
}

struct DockerHeld;
impl Held for DockerHeld {
    fn objects(&self, island: &str) -> Vec<String> {
        let mut v = Vec::new();
        for args in [
            vec!["ps", "-a", "--format", "{{.Names}}"],
            vec!["volume", "ls", "--format", "{{.Name}}"],
            vec!["network", "ls", "--format", "{{.Name}}"],
        ] {
            let mut a = args.clone();
            let filter = format!("label=dejima.island={island}");
            a.extend(["--filter", &filter]);
            v.extend(docker_ok(&a).lines().map(str::to_string));
        }
        v.retain(|s| !s.is_empty());
        v
    }
}

// ---------- the suite ----------

fn exec(d: &Daemon, island: &str, body: Value) -> Value {
    d.ok("POST", &format!("/v1/islands/{island}/exec"), Some(body))
}

fn container(d: &Daemon, island: &str) -> String {
    d.ok("GET", &format!("/v1/islands/{island}"), None)["container"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Create, exec (users, folders, stdin, environment, exit codes), files, logs, hibernate,
/// wake with both volumes intact, events, and a purge that leaves nothing.
fn lifecycle(d: &Daemon, held: &dyn Held) {
    let i = d.create("rt");
    let n = i.name.clone();
    let v = exec(
        d,
        &n,
        json!({"cmd": ["sh", "-c", "id -un; pwd; echo $HOME; echo oops >&2; exit 3"]}),
    );
    assert_eq!(v["stdout"], "agent\n/workspace\n/home/agent\n", "{v}");
    assert_eq!(v["stderr"], "oops\n", "{v}");
    assert_eq!(v["exit_code"], 3, "{v}");
    let v = exec(
        d,
        &n,
        json!({"cmd": ["sh", "-c", "id -un; pwd; cat; printf '%s\\n' \"$ODD\""],
               "user": "root", "workdir": "/tmp", "stdin": "in put\n",
               "env": {"ODD": "a b=c 'd' \"e\" $f"}}),
    );
    assert_eq!(
        v["stdout"], "root\n/tmp\nin put\na b=c 'd' \"e\" $f\n",
        "{v}"
    );
    let v = exec(d, &n, json!({"cmd": ["no-such-program"]}));
    assert_eq!(v["exit_code"], 127, "{v}");

    // Files through the API, and one in the home folder.
    let body = b"line one\nline two\n\x00\xff binary tail";
    let (s, _) = d.raw(
        "PUT",
        &format!("/v1/islands/{n}/files/workspace/sub/f.bin"),
        body,
    );
    assert!((200..300).contains(&s), "put file: {s}");
    let (s, got) = d.raw(
        "GET",
        &format!("/v1/islands/{n}/files/workspace/sub/f.bin"),
        b"",
    );
    assert_eq!((s, got.as_slice()), (200, &body[..]));
    let v = exec(
        d,
        &n,
        json!({"cmd": ["sh", "-c", "echo kept > ~/home.txt"]}),
    );
    assert_eq!(v["exit_code"], 0, "{v}");

    // The island's own output.
    let (s, logs) = d.raw("GET", &format!("/v1/islands/{n}/logs?tail=all"), b"");
    assert_eq!(s, 200);
    let logs = String::from_utf8_lossy(&logs);
    assert!(
        logs.contains(&format!("dejima island {n} up")),
        "logs: {logs}"
    );

    // Hibernate and wake: both volumes survive.
    d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
    let info = d.island(&n);
    assert_eq!(info.state.as_str(), "hibernated");
    assert_ne!(container(d, &n), "running");
    d.ok("POST", &format!("/v1/islands/{n}/wake"), None);
    assert_eq!(container(d, &n), "running");
    let v = exec(
        d,
        &n,
        json!({"cmd": ["sh", "-c", "cat ~/home.txt; wc -c < /workspace/sub/f.bin"]}),
    );
    assert_eq!(v["stdout"], format!("kept\n{}\n", body.len()), "{v}");

    let kinds = event_kinds(d, &n);
    for k in ["island.created", "island.hibernated", "island.woken"] {
        assert!(kinds.iter().any(|x| x == k), "no {k} in {kinds:?}");
    }
    assert!(!held.objects(&n).is_empty());
    drop(i);
    wait_for(LONG, "the island's objects to go", || {
        held.objects(&n).is_empty().then_some(())
    });
}

/// Agents with their own sessions: attach and type, read the screen without a client,
/// a verified prompt, and removal.
fn agents_and_sessions(d: &Daemon) {
    let i = d.create("rt");
    let n = &i.name;
    let a = d.ok(
        "POST",
        &format!("/v1/islands/{n}/agents"),
        Some(json!({"type": "custom", "cmd": "bash"})),
    );
    let id = a["id"].as_str().unwrap().to_string();
    let mut ws = d.attach(&format!("/v1/islands/{n}/agents/{id}/session"));
    ws.hello();
    ws.resize(30, 100);
    ws.expect("$", LONG);
    ws.send_data(b"echo sess-$((6*7)); tput cols\r");
    ws.expect("sess-42", LONG);
    ws.expect("100", LONG);
    drop(ws);
    let screen = |d: &Daemon| {
        let (s, b) = d.raw(
            "GET",
            &format!("/v1/islands/{n}/agents/{id}/screen?format=text"),
            b"",
        );
        assert_eq!(s, 200);
        String::from_utf8_lossy(&b).into_owned()
    };
    assert!(screen(d).contains("sess-42"));
    let v = d.ok(
        "POST",
        &format!("/v1/islands/{n}/agents/{id}/prompt"),
        Some(json!({"text": "echo prompted-$((2+3))"})),
    );
    assert_eq!(v["delivered"], true, "{v}");
    wait_for(LONG, "the prompt's answer on the screen", || {
        screen(d).contains("prompted-5").then_some(())
    });
    d.ok("DELETE", &format!("/v1/islands/{n}/agents/{id}"), None);
    let list = d.ok("GET", &format!("/v1/islands/{n}/agents"), None);
    assert!(
        !list
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id.as_str()),
        "{list}"
    );
}

/// The island's own socket reaches the daemon with the island's token (agent hooks call it):
/// an agent event sent from inside arrives; a wrong token is refused. On Kubernetes the socket
/// is relayed, so the first call may come a moment after the island runs.
fn island_socket(d: &Daemon) {
    let i = d.create("rt");
    let n = &i.name;
    let notify = json!({"cmd": ["sh", "-c",
        "DEJIMA_AGENT=a1 dejima-notify task-complete '{\"summary\":\"from inside\"}'"]});
    wait_for(LONG, "dejima-notify through the island's socket", || {
        (exec(d, n, notify.clone())["exit_code"] == 0).then_some(())
    });
    let ev = d.ok("GET", &format!("/v1/islands/{n}/events"), None);
    assert!(
        ev.as_array().unwrap().iter().any(|e| e["type"] == "agent.task-complete"
            && e["payload"]["summary"] == "from inside"),
        "{ev}"
    );
    let v = exec(
        d,
        n,
        json!({"cmd": ["sh", "-c",
            "curl -s -o /dev/null -w '%{http_code}' --unix-socket /run/dejima/dejimad.sock -H 'Authorization: Bearer wrong' http://dejimad/v1/internal/agent-event -d '{}'"]}),
    );
    assert_eq!(v["stdout"], "401", "{v}");
}

/// A workspace copied in from a folder on the daemon host, history and owner kept.
fn from_host_folder(d: &Daemon) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = host_repo(tmp.path());
    let name = unique("rth");
    let (s, v) = d.req(
        "POST",
        "/v1/islands",
        Some(json!({"name": name, "repo": repo.display().to_string(), "agent": "custom", "cmd": "bash"})),
    );
    let _i = Island {
        d,
        name: name.clone(),
    };
    assert_eq!(s, 201, "{v}");
    let v = exec(
        d,
        &name,
        json!({"cmd": ["sh", "-c", "git log --format=%s; stat -c %U README.md; cat README.md"]}),
    );
    assert_eq!(v["stdout"], "first\nagent\nhello from the host\n", "{v}");
}

/// Clone copies both volumes; reset empties the home and keeps the workspace; upgrade keeps
/// both.
fn reset_upgrade_clone(d: &Daemon) {
    let i = d.create("rt");
    let n = &i.name;
    let v = exec(
        d,
        n,
        json!({"cmd": ["sh", "-c", "echo w > /workspace/w.txt; echo h > ~/h.txt"]}),
    );
    assert_eq!(v["exit_code"], 0);
    let copy = unique("rtc");
    let (s, v) = d.req(
        "POST",
        &format!("/v1/islands/{n}/clone"),
        Some(json!({"name": copy})),
    );
    let _copy = Island {
        d,
        name: copy.clone(),
    };
    assert!((200..300).contains(&s), "clone: {s} {v}");
    let both = json!({"cmd": ["sh", "-c", "cat /workspace/w.txt ~/h.txt 2>&1"]});
    assert_eq!(exec(d, &copy, both.clone())["stdout"], "w\nh\n");
    d.ok("POST", &format!("/v1/islands/{n}/reset"), None);
    let v = exec(d, n, both.clone());
    assert!(
        v["stdout"].as_str().unwrap().starts_with("w\n")
            && !v["stdout"].as_str().unwrap().contains("\nh\n"),
        "{v}"
    );
    d.ok("POST", &format!("/v1/islands/{n}/upgrade"), None);
    assert!(exec(d, n, both)["stdout"]
        .as_str()
        .unwrap()
        .starts_with("w\n"));
    // The clone is untouched by the source's reset.
    let v = exec(d, &copy, json!({"cmd": ["cat", "/home/agent/h.txt"]}));
    assert_eq!(v["stdout"], "h\n");
}

/// A daemon killed and started again adopts its running islands and their sessions.
fn restart_adopts(d: &Daemon) {
    let i = d.create("rt");
    let n = &i.name;
    exec(
        d,
        n,
        json!({"cmd": ["sh", "-c", "echo before > /workspace/b"]}),
    );
    d.kill9();
    d.spawn();
    wait_for(LONG, "the island adopted and running", || {
        (container(d, n) == "running").then_some(())
    });
    assert_eq!(
        exec(d, n, json!({"cmd": ["cat", "/workspace/b"]}))["stdout"],
        "before\n"
    );
    let mut ws = d.attach(&format!("/v1/islands/{n}/session"));
    ws.hello();
    ws.send_data(b"echo again-$((1+1))\r");
    ws.expect("again-2", LONG);
}

// ---------- on Docker ----------

#[test]
fn docker_lifecycle() {
    let d = Daemon::start();
    lifecycle(&d, &DockerHeld);
    let o = d.ok("GET", "/v1/overview", None);
    assert_eq!(o["runtime"], json!({"kind": "docker", "unsupported": []}));
}

#[test]
fn docker_agents_and_sessions() {
    agents_and_sessions(&Daemon::start());
}

#[test]
fn docker_from_host_folder() {
    from_host_folder(&Daemon::start());
}

#[test]
fn docker_island_socket() {
    island_socket(&Daemon::start());
}

#[test]
fn docker_reset_upgrade_clone() {
    reset_upgrade_clone(&Daemon::start());
}

#[test]
fn docker_restart_adopts() {
    restart_adopts(&Daemon::start());
}

// ---------- on Kubernetes ----------

#[test]
fn kube_lifecycle() {
    let Some(k) = OnKube::start() else { return };
    lifecycle(&k.d, &k);
}

#[test]
fn kube_agents_and_sessions() {
    let Some(k) = OnKube::start() else { return };
    agents_and_sessions(&k.d);
}

#[test]
fn kube_from_host_folder() {
    let Some(k) = OnKube::start() else { return };
    from_host_folder(&k.d);
}

#[test]
fn kube_island_socket() {
    let Some(k) = OnKube::start() else { return };
    island_socket(&k.d);
}

#[test]
fn kube_reset_upgrade_clone() {
    let Some(k) = OnKube::start() else { return };
    reset_upgrade_clone(&k.d);
}

#[test]
fn kube_restart_adopts() {
    let Some(k) = OnKube::start() else { return };
    restart_adopts(&k.d);
}

/// An island is a pod with two claims, its seed Secret and a NetworkPolicy; the claims stay
/// while it hibernates; no secret shows in the pod's spec; a pod deleted behind our back is
/// seen at once and the island wakes on its claims.
#[test]
fn kube_objects_claims_and_a_pod_deleted_behind_our_back() {
    let Some(k) = OnKube::start() else { return };
    let d = &k.d;
    let i = d.create("rtk");
    let n = &i.name;
    let pod = format!("dejima-{n}");
    let mut held = k.objects(n);
    held.sort();
    assert_eq!(
        held,
        [
            format!("networkpolicy.networking.k8s.io/{pod}"),
            format!("persistentvolumeclaim/{pod}-home"),
            format!("persistentvolumeclaim/{pod}-workspace"),
            format!("pod/{pod}"),
            format!("secret/{pod}-secrets"),
        ]
    );
    let spec = k.k(&["get", "pod", &pod, "-o", "json"]).unwrap();
    let token = island_token(d, n);
    assert!(token.len() > 20 && !spec.contains(&token));
    let spec: Value = serde_json::from_str(&spec).unwrap();
    assert_eq!(spec["spec"]["automountServiceAccountToken"], false);
    assert!(!spec.to_string().contains("hostPath"));

    exec(
        d,
        n,
        json!({"cmd": ["sh", "-c", "echo on-claim > /workspace/c"]}),
    );
    d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
    // The hibernate returns once the pod is terminating; the watch reports it gone.
    wait_for(LONG, "the pod gone and seen gone", || {
        (container(d, n) == "missing").then_some(())
    });
    let held = k.objects(n);
    assert!(!held.iter().any(|o| o.starts_with("pod/")), "{held:?}");
    assert_eq!(
        held.iter()
            .filter(|o| o.starts_with("persistentvolumeclaim/"))
            .count(),
        2,
        "{held:?}"
    );
    d.ok("POST", &format!("/v1/islands/{n}/wake"), None);

    // Behind our back: the watch reports it, and a wake makes the pod anew.
    k.k(&["delete", "pod", &pod, "--wait=true"]).unwrap();
    wait_for(LONG, "the deletion seen", || {
        (container(d, n) == "missing").then_some(())
    });
    d.ok("POST", &format!("/v1/islands/{n}/wake"), None);
    assert_eq!(container(d, n), "running");
    assert_eq!(
        exec(d, n, json!({"cmd": ["cat", "/workspace/c"]}))["stdout"],
        "on-claim\n"
    );
}

/// The node's kubelet restarts with the island running: the pod, its exec and sessions carry
/// on, and a daemon restarted after it adopts the same pod.
#[test]
fn kube_kubelet_restart_keeps_islands_adopted() {
    let Some(k) = OnKube::start_alone() else {
        return;
    };
    let d = &k.d;
    let i = d.create("rtk");
    let n = &i.name;
    let pod = format!("dejima-{n}");
    let uid = || {
        k.k(&["get", "pod", &pod, "-o", "jsonpath={.metadata.uid}"])
            .unwrap()
    };
    let before = uid();
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kube-up"))
        .arg("--restart-kubelet")
        .env(
            "KUBE_ROOT",
            std::path::Path::new(&k.c.kubeconfig).parent().unwrap(),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubelet restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(LONG, "exec after the kubelet restart", || {
        let (s, v) = d.req(
            "POST",
            &format!("/v1/islands/{n}/exec"),
            Some(json!({"cmd": ["echo", "alive"]})),
        );
        (s == 200 && v["stdout"] == "alive\n").then_some(())
    });
    d.kill9();
    d.spawn();
    wait_for(LONG, "the island adopted", || {
        (container(d, n) == "running").then_some(())
    });
    let mut ws = d.attach(&format!("/v1/islands/{n}/session"));
    ws.hello();
    ws.send_data(b"echo after-$((3*3))\r");
    ws.expect("after-9", LONG);
    assert_eq!(uid(), before, "the pod was made anew instead of adopted");
}

/// What the runtime cannot do is said in the overview, and requests that need it get a 422
/// (or, for memory, are kept for the next start and say so).
#[test]
fn kube_reports_and_refuses_what_it_cannot_do() {
    let Some(k) = OnKube::start() else { return };
    let d = &k.d;
    let o = d.ok("GET", "/v1/overview", None);
    assert_eq!(o["runtime"]["kind"], "kubernetes");
    let lacks: Vec<&str> = o["runtime"]["unsupported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["feature"].as_str().unwrap())
        .collect();
    assert_eq!(lacks, ["live_memory", "oom_priority", "pause", "stats"]);
    assert!(d.log().contains("cannot do stats"));

    let name = unique("rtk");
    let (s, v) = d.req(
        "POST",
        "/v1/islands",
        Some(json!({"name": name, "no_repo": true, "resources": {"oom_priority": 5}})),
    );
    assert_eq!(s, 422, "{v}");
    assert!(err_text(&v).contains("oom_priority"), "{v}");
    let (s, _) = d.req("GET", &format!("/v1/islands/{name}"), None);
    assert_eq!(s, 404, "a refused create left an island");

    let i = d.create("rtk");
    let n = &i.name;
    let (s, v) = d.req(
        "PUT",
        &format!("/v1/islands/{n}/resources"),
        Some(json!({"oom_priority": 3})),
    );
    assert_eq!(s, 422, "{v}");
    let v = d.ok(
        "PUT",
        &format!("/v1/islands/{n}/resources"),
        Some(json!({"memory": "700m"})),
    );
    assert_eq!(v["restart_required"], true, "{v}");
    d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
    d.ok("POST", &format!("/v1/islands/{n}/wake"), None);
    let limit = k
        .k(&[
            "get",
            "pod",
            &format!("dejima-{n}"),
            "-o",
            "jsonpath={.spec.containers[0].resources.limits.memory}",
        ])
        .unwrap();
    assert_eq!(limit, (700u64 << 20).to_string());
}
