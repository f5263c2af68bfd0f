//! The credential store and how islands get their credentials: Claude's login, GitHub
//! identities (repos through a stand-in of the REST API, clone and push through a stand-in
//! git server that wants the identity's token), provider keys. Secrets must reach the agents
//! that need them and nowhere else: not `docker inspect`, the host's process list, the
//! daemon's log, any API response, any event, or another island.

mod support;

use std::time::Duration;

use dejima::client::{Body, Client};
use serde_json::{json, Value};
use support::*;

const T: Duration = Duration::from_secs(60);

/// Every response body this test saw, to search for secrets at the end.
struct Seen<'a> {
    d: &'a Daemon,
    bodies: std::cell::RefCell<Vec<String>>,
}

impl<'a> Seen<'a> {
    fn new(d: &'a Daemon) -> Self {
        Seen {
            d,
            bodies: Default::default(),
        }
    }
    fn req(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (s, v) = self.d.req(method, path, body);
        self.bodies.borrow_mut().push(v.to_string());
        (s, v)
    }
    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.req(method, path, body);
        assert!((200..300).contains(&s), "{method} {path} -> {s}: {v}");
        v
    }
    fn text(&self, path: &str) -> String {
        let r = self.d.client.send("GET", path, Body::None).unwrap();
        let t = r.text().unwrap();
        self.bodies.borrow_mut().push(t.clone());
        t
    }
}

/// The environment of process `pid` (as the island numbers it) of island `island`, read
/// from the host's /proc.
fn host_environ(island: &str, pid: u32) -> String {
    let init = docker_ok(&[
        "inspect",
        "-f",
        "{{.State.Pid}}",
        &format!("dejima-{island}"),
    ]);
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).unwrap();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        if std::fs::read_link(p.join("ns/pid")).ok().as_ref() != Some(&ns) {
            continue;
        }
        let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
        let inner = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse::<u32>().ok());
        if inner == Some(pid) {
            let env = std::fs::read(p.join("environ")).unwrap();
            return String::from_utf8_lossy(&env).replace('\0', "\n");
        }
    }
    panic!("no process {pid} in island {island}");
}

/// Every command line the host's process list showed while it ran: /proc is read in a tight
/// loop, so short-lived processes (docker execs, curl from a hook, git helpers) are caught too.
struct PsSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PsSampler {
    fn start() -> PsSampler {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>> =
            Default::default();
        let (st, sn) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let mut batch = Vec::new();
                for e in std::fs::read_dir("/proc").unwrap().flatten() {
                    if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
                        if !b.is_empty() {
                            batch.push(String::from_utf8_lossy(&b).replace('\0', " "));
                        }
                    }
                }
                sn.lock().unwrap().extend(batch);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        PsSampler {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> String {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let seen = self.seen.lock().unwrap();
        seen.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

fn host_ps() -> String {
    String::from_utf8_lossy(
        &std::process::Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

#[test]
fn credentials_reach_their_island_and_leak_nowhere() {
    let d = Daemon::start();
    let seen = Seen::new(&d);
    let sampler = PsSampler::start();
    let key = format!("sk-ant-LEAKCHECK{}", dejima::util::random_hex(10));
    let okey = format!("sk-proj-LEAKCHECK{}", dejima::util::random_hex(10));
    let ghtok = format!("ghp_LEAKCHECK{}", dejima::util::random_hex(10));
    let claude_tok = format!("sk-ant-oat-LEAKCHECK{}", dejima::util::random_hex(10));
    let blob =
        json!({"claudeAiOauth": {"accessToken": claude_tok, "refreshToken": "r", "expiresAt": 1}});

    // The store: written, shown masked, refused when malformed (with no echo of the value).
    let v = seen.ok(
        "PUT",
        "/v1/credentials/providers/anthropic",
        Some(json!({"api_key": key, "base_url": "http://127.0.0.1:9/"})),
    );
    assert_eq!(v["env_var"], "ANTHROPIC_API_KEY");
    assert_eq!(v["base_url_env"], "ANTHROPIC_BASE_URL");
    assert!(v["key_hint"].as_str().unwrap().starts_with("sk-a…"));
    seen.ok(
        "PUT",
        "/v1/credentials/providers/openai",
        Some(json!({"api_key": okey})),
    );
    let store = d.home.join("credentials/credentials.json");
    let before = std::fs::read(&store).unwrap();
    for (path, body, want) in [
        (
            "/v1/credentials/providers/anthropic",
            json!({"api_key": key, "base_url": "https://x.example/v1\",env_key=\"HOME"}),
            400,
        ),
        (
            "/v1/credentials/providers/anthropic",
            json!({"api_key": key, "base_url": "https://user:pw@proxy.example/v1"}),
            400,
        ),
        (
            "/v1/credentials/providers/anthropic",
            json!({"api_key": key, "default": key}),
            400,
        ),
        (
            "/v1/credentials/providers/mine",
            json!({"api_key": key}),
            422,
        ),
        (
            "/v1/credentials/providers/anthropic",
            json!({"api_key": key, "base_url": "http://example.com"}),
            400,
        ),
        (
            "/v1/credentials/providers/anthropic",
            json!({"api_key": format!("{key} x")}),
            400,
        ),
        (
            "/v1/credentials/providers/Bad%20Name",
            json!({"api_key": key}),
            400,
        ),
        (
            "/v1/credentials/providers/anthropic",
            json!({"api_key": key, "extra": 1}),
            400,
        ),
        (
            "/v1/credentials/claude",
            json!({"credentials_json": "nope"}),
            400,
        ),
        (
            "/v1/credentials/github/work",
            json!({"login": "octo", "token": ghtok, "host": "-x"}),
            400,
        ),
    ] {
        let (s, v) = seen.req("PUT", path, Some(body));
        assert_eq!(s, want, "PUT {path}: {v}");
        assert!(v["error"].is_string());
    }
    // Refusals changed nothing on disk (and created no identity).
    assert_eq!(std::fs::read(&store).unwrap(), before);
    let v = seen.ok("GET", "/v1/credentials/providers/anthropic", None);
    assert_eq!(v["base_url"], "http://127.0.0.1:9/", "nothing changed: {v}");
    let v = seen.ok(
        "PUT",
        "/v1/credentials/github/work",
        Some(json!({"login": "octo", "token": ghtok, "id": 42, "default": true})),
    );
    assert_eq!(v["host"], "github.com");
    assert_eq!(v["api_url"], "https://api.github.com");
    let v = seen.ok(
        "PUT",
        "/v1/credentials/claude",
        Some(json!({"credentials_json": blob})),
    );
    assert_eq!(v["present"], true);
    assert_eq!(v["source"], "api");
    let v = seen.ok("GET", "/v1/credentials/claude", None);
    assert_eq!(v["present"], true);
    assert!(v["updated_at"].is_string());

    // An island bound to the identity and the providers, with agents of each kind.
    let name = unique("creds");
    let v = seen.ok(
        "POST",
        "/v1/islands",
        Some(json!({"name": name, "no_repo": true, "github_identity": "work"})),
    );
    let _g = Island {
        d: &d,
        name: name.clone(),
    };
    assert_eq!(v["agents"][0]["provider"], "anthropic");
    let a2 = seen.ok(
        "POST",
        &format!("/v1/islands/{name}/agents"),
        Some(json!({"type": "codex"})),
    );
    assert_eq!(a2["provider"], "openai");
    let a3 = seen.ok(
        "POST",
        &format!("/v1/islands/{name}/agents"),
        Some(json!({"type": "headless", "cmd": "env > /tmp/headless.env; sleep 600", "provider": "anthropic"})),
    );
    assert_eq!(a3["provider"], "anthropic");

    // Each agent has its own key in its own environment, read from the secrets mount.
    wait_for(T, "the agents to run", || {
        let (out, _) = d.exec(
            &name,
            &[
                "sh",
                "-c",
                "pgrep -x claude >/dev/null && pgrep -x codex >/dev/null && test -s /tmp/headless.env && echo up",
            ],
        );
        (out.trim() == "up").then_some(())
    });
    // The environment of the program in an agent's pane, read on the host (Claude Code makes
    // itself non-dumpable: nobody in the island can read it, not even its own user).
    let environ = |agent: &str| {
        let pid = d.exec(
            &name,
            &[
                "tmux",
                "-L",
                "dejima",
                "display",
                "-p",
                "-t",
                &format!("agent-{agent}"),
                "#{pane_pid}",
            ],
        );
        let pid = pid.0.trim().to_string();
        assert!(pid.parse::<u32>().is_ok(), "{pid}");
        host_environ(&name, pid.parse().unwrap())
    };
    let env1 = environ("a1");
    assert!(env1.contains(&format!("ANTHROPIC_API_KEY={key}")), "{env1}");
    assert!(env1.contains("ANTHROPIC_BASE_URL=http://127.0.0.1:9/"));
    assert!(env1.contains(&format!("GH_TOKEN={ghtok}")));
    assert!(!env1.contains(&okey), "claude never gets codex's key");
    let env2 = environ("a2");
    assert!(env2.contains(&format!("OPENAI_API_KEY={okey}")));
    assert!(!env2.contains(&key));
    let (henv, _) = d.exec(&name, &["cat", "/tmp/headless.env"]);
    assert!(henv.contains(&format!("ANTHROPIC_API_KEY={key}")));
    // The mount is read-only and the agent's own.
    let (out, code) = d.exec(
        &name,
        &["sh", "-c", "touch /run/secrets/dejima/x 2>&1; stat -c '%U %a' /run/secrets/dejima/providers/anthropic/api_key"],
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("agent 400"), "{out} ({code})");
    // Claude's login is seeded into the home, private.
    let (cj, _) = d.exec(
        &name,
        &["sh", "-c", "stat -c %a /home/agent/.claude/.credentials.json; cat /home/agent/.claude/.credentials.json"],
    );
    assert!(cj.starts_with("600\n"), "{cj}");
    assert!(cj.contains(&claude_tok));
    // git authors as the identity; its credential helper answers for its host only.
    let (gc, _) = d.exec(
        &name,
        &["sh", "-c", "cd /workspace && git config user.name && git config user.email && printf 'protocol=https\\nhost=github.com\\n\\n' | git credential fill; printf 'protocol=https\\nhost=gitlab.com\\n\\n' | GIT_TERMINAL_PROMPT=0 git credential fill 2>&1; cat ~/.config/gh/hosts.yml"],
    );
    assert!(
        gc.contains("octo\n42+octo@users.noreply.github.com"),
        "{gc}"
    );
    assert!(
        gc.contains(&format!("username=octo\npassword={ghtok}")),
        "{gc}"
    );
    assert_eq!(
        gc.matches(&ghtok).count(),
        1,
        "gitlab.com gets nothing: {gc}"
    );
    assert!(gc.contains("github.com:\n    user: octo"), "{gc}");

    // A hook fires the way Claude Code's would (its token goes to curl on stdin).
    let (out, code) = d.exec(
        &name,
        &["bash", "-lc", "echo '{}' | dejima-notify task-complete -"],
    );
    assert_eq!(code, 0, "{out}");
    // Exec, restart, config, upgrade, clone: none of it may carry a secret anywhere.
    seen.ok(
        "POST",
        &format!("/v1/islands/{name}/exec"),
        Some(json!({"cmd": ["true"]})),
    );
    seen.ok(
        "POST",
        &format!("/v1/islands/{name}/agents/a1/restart"),
        Some(json!({})),
    );
    seen.ok(
        "PATCH",
        &format!("/v1/islands/{name}/agents/a2/config"),
        Some(json!({"model": "gpt-stand-in"})),
    );
    let ps_running = host_ps();
    // Newer Claude credentials reach an existing island on upgrade.
    let claude_tok2 = format!("sk-ant-oat-LEAKCHECK{}", dejima::util::random_hex(10));
    seen.ok(
        "PUT",
        "/v1/credentials/claude",
        Some(json!({"credentials_json": {"claudeAiOauth": {"accessToken": claude_tok2}}})),
    );
    let (cj, _) = d.exec(&name, &["cat", "/home/agent/.claude/.credentials.json"]);
    assert!(cj.contains(&claude_tok), "not before the upgrade");
    seen.ok("POST", &format!("/v1/islands/{name}/upgrade"), None);
    let (cj, _) = d.exec(&name, &["cat", "/home/agent/.claude/.credentials.json"]);
    assert!(cj.contains(&claude_tok2), "seeded on upgrade");
    let clone = unique("creds-clone");
    seen.ok(
        "POST",
        &format!("/v1/islands/{name}/clone"),
        Some(json!({"name": clone})),
    );
    let _g2 = Island {
        d: &d,
        name: clone.clone(),
    };
    wait_for(T, "the clone's claude", || {
        let (out, _) = d.exec(&clone, &["sh", "-c", "pgrep -x claude && echo up"]);
        out.contains("up").then_some(())
    });
    let ps_after = host_ps();
    let ps_all = sampler.finish();
    // The sampler does see short-lived processes: the hook's helper was one.
    assert!(
        ps_all.contains("dejima-notify task-complete"),
        "the sampler missed the hook"
    );
    // Rotating a key rewrites the bound islands' files at once (read at the next launch).
    let key2 = format!("sk-ant-LEAKCHECK{}", dejima::util::random_hex(10));
    seen.ok(
        "PUT",
        "/v1/credentials/providers/anthropic",
        Some(json!({"api_key": key2})),
    );
    let (k, _) = d.exec(
        &name,
        &["cat", "/run/secrets/dejima/providers/anthropic/api_key"],
    );
    assert_eq!(k, key2);
    // Removing reports who still uses it.
    let v = seen.ok("DELETE", "/v1/credentials/providers/openai", None);
    assert_eq!(v["removed"], "openai");
    assert!(v["still_bound"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == name.as_str()));
    let (ls, _) = d.exec(&name, &["ls", "/run/secrets/dejima/providers"]);
    assert_eq!(ls.trim(), "anthropic");

    // Lists and views: hints only.
    for path in [
        "/v1/credentials/providers",
        "/v1/credentials/github",
        "/v1/credentials/claude",
        "/v1/islands",
        &format!("/v1/islands/{name}"),
        &format!("/v1/islands/{name}/agents"),
        "/v1/audit?limit=1000",
        "/v1/activity",
    ] {
        seen.text(path);
    }
    let mut sse = d.stream("?replay=1000");
    let mut evs = String::new();
    while let Some((k, v)) = sse.next(Duration::from_millis(500)) {
        evs.push_str(&format!("{k} {v}\n"));
    }
    assert!(evs.contains("island.created"), "{evs}");
    let islands_token =
        std::fs::read_to_string(d.home.join("islands").join(&name).join("secrets/token")).unwrap();
    let ledger: String = std::fs::read_dir(d.home.join("audit"))
        .map(|r| {
            r.flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        ledger.contains("credential.set"),
        "credential changes are ledgered"
    );
    let inspect = docker_ok(&[
        "inspect",
        &format!("dejima-{name}"),
        &format!("dejima-{clone}"),
    ]);
    let log = d.log();
    let bodies = seen.bodies.borrow().join("\n");
    for secret in [
        &key,
        &key2,
        &okey,
        &ghtok,
        &claude_tok,
        &claude_tok2,
        &islands_token,
    ] {
        for (place, text) in [
            ("docker inspect", &inspect),
            ("host ps (agents running)", &ps_running),
            ("host ps (after clone)", &ps_after),
            ("host ps (sampled throughout)", &ps_all),
            ("daemon log", &log),
            ("API responses", &bodies),
            ("events", &evs),
            ("ledger", &ledger),
        ] {
            assert!(
                !text.contains(secret.as_str()),
                "a secret ({}…) leaked into {place}",
                &secret[..8]
            );
        }
    }
}

#[test]
fn keys_stay_in_their_island_and_off_island_tokens() {
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(&["--tcp", &addr], &[]);
    let key = format!("sk-ant-ISO{}", dejima::util::random_hex(10));
    d.ok(
        "PUT",
        "/v1/credentials/providers/anthropic",
        Some(json!({"api_key": key})),
    );
    let a = unique("iso-a");
    d.ok(
        "POST",
        "/v1/islands",
        Some(json!({"name": a, "no_repo": true})),
    );
    let _ga = Island {
        d: &d,
        name: a.clone(),
    };
    // B's agents use a provider of their own; A's key is nowhere in B.
    let bkey = format!("sk-proj-ISO{}", dejima::util::random_hex(10));
    d.ok(
        "PUT",
        "/v1/credentials/providers/openai",
        Some(json!({"api_key": bkey})),
    );
    let b = d.create("iso-b");
    d.ok(
        "POST",
        &format!("/v1/islands/{}/agents", b.name),
        Some(json!({"type": "codex"})),
    );
    let (out, _) = d.exec(&b.name, &["ls", "-R", "/run/secrets/dejima"]);
    assert!(
        out.contains("openai") && !out.contains("anthropic"),
        "{out}"
    );
    // Searched for by its tail, so the search's own command line does not hold it.
    let tail = &key[key.len() - 10..];
    let (hits, _) = d.exec(
        &b.name,
        &[
            "sh",
            "-c",
            &format!(
                "grep -rls -- '{tail}' /run /home /workspace /tmp /etc 2>/dev/null; echo done"
            ),
        ],
    );
    assert_eq!(hits.trim(), "done", "A's key found in B: {hits}");
    let (hits, _) = d.exec(
        &a,
        &[
            "sh",
            "-c",
            &format!(
                "grep -rls -- '{}' /run /home /workspace /tmp /etc 2>/dev/null; echo done",
                &bkey[bkey.len() - 10..]
            ),
        ],
    );
    assert_eq!(hits.trim(), "done", "B's key found in A: {hits}");
    let token_of = |i: &str| {
        std::fs::read_to_string(d.home.join("islands").join(i).join("secrets/token")).unwrap()
    };
    assert_ne!(token_of(&a), token_of(&b.name));
    // An operator token cannot bind a credential by name (the owner's call), only get the
    // defaults; a codex agent cannot be given a key meant for another vendor's endpoint.
    let op = d.ok("POST", "/v1/tokens", Some(json!({"role": "operator"})));
    let opc = Client {
        target: dejima::client::Target::Tcp(addr.clone()),
        token: Some(op["secret"].as_str().unwrap().to_string()),
        timeout: Some(Duration::from_secs(30)),
    };
    let send = |m: &str, p: &str, body: Value| {
        let b = body.to_string();
        let r = opc
            .send(m, p, Body::Bytes(b.as_bytes(), "application/json"))
            .unwrap();
        (r.status, r.text().unwrap_or_default())
    };
    let agents = format!("/v1/islands/{}/agents", b.name);
    let (st, body) = send(
        "POST",
        &agents,
        json!({"type": "codex", "provider": "openai"}),
    );
    assert_eq!(st, 403, "{body}");
    let (st, body) = send(
        "POST",
        "/v1/islands",
        json!({"name": unique("op"), "no_repo": true, "github_identity": "x"}),
    );
    assert_eq!(st, 403, "{body}");
    let (st, body) = send(
        "PATCH",
        &format!("{agents}/a2/config"),
        json!({"provider": "openai"}),
    );
    assert_eq!(st, 403, "{body}");
    // The defaults are an operator's to use.
    let (st, body) = send("POST", &agents, json!({"type": "codex"}));
    assert_eq!(st, 201, "{body}");
    assert!(body.contains("\"provider\":\"openai\""), "{body}");
    let (s, v) = d.req(
        "POST",
        &format!("/v1/islands/{}/agents", b.name),
        Some(json!({"type": "codex", "provider": "anthropic"})),
    );
    assert_eq!(s, 422, "{v}");
    // Neither island's token reaches the credential routes, on its own socket or ours.
    for island in [&a, &b.name] {
        let token =
            std::fs::read_to_string(d.home.join("islands").join(island).join("secrets/token"))
                .unwrap();
        for sock in [
            d.sock(),
            d.home.join("islands").join(island).join("run/dejimad.sock"),
        ] {
            let c = Client {
                target: dejima::client::Target::Unix(sock),
                token: Some(token.clone()),
                timeout: Some(Duration::from_secs(30)),
            };
            for (m, p) in [
                ("GET", "/v1/credentials/providers".to_string()),
                ("GET", "/v1/credentials/providers/anthropic".to_string()),
                ("GET", "/v1/credentials/claude".to_string()),
                ("GET", "/v1/credentials/github".to_string()),
                ("PUT", "/v1/credentials/providers/anthropic".to_string()),
                (
                    "GET",
                    format!("/v1/islands/{island}/files/run/secrets/dejima/token"),
                ),
            ] {
                let r = c
                    .send(
                        m,
                        &p,
                        Body::Bytes(b"{\"api_key\":\"x\"}", "application/json"),
                    )
                    .unwrap();
                let status = r.status;
                let body = r.text().unwrap_or_default();
                assert_eq!(status, 403, "{m} {p} with island {island}'s token: {body}");
                assert!(!body.contains(&key));
            }
        }
    }
}

#[test]
fn github_repos_are_listed_and_created_through_the_rest_api() {
    let d = Daemon::start();
    let port = free_port();
    let token = format!("ghp_{}", dejima::util::random_hex(16));
    let log = d.home.join("github.log");
    let root = tempfile::tempdir().unwrap();
    let _gh = Standin::on_host(
        "github.py",
        port,
        &[
            root.path().to_str().unwrap(),
            log.to_str().unwrap(),
            "octo",
            "5",
        ],
        &[("STANDIN_TOKEN", &token)],
    );
    // The api.github.com form and the Enterprise form (/api/v3) of the same stand-in.
    d.ok(
        "PUT",
        "/v1/credentials/github/dotcom",
        Some(
            json!({"login": "octo", "token": token, "api_url": format!("http://127.0.0.1:{port}")}),
        ),
    );
    let v = d.ok(
        "PUT",
        "/v1/credentials/github/ghe",
        Some(json!({"login": "octo", "token": token, "host": "ghe.example.com", "api_url": format!("http://127.0.0.1:{port}/api/v3")})),
    );
    assert_eq!(v["host"], "ghe.example.com");
    for ident in ["dotcom", "ghe"] {
        let mut names = Vec::new();
        let mut page = 1;
        loop {
            let v = d.ok(
                "GET",
                &format!("/v1/credentials/github/{ident}/repos?per_page=2&page={page}"),
                None,
            );
            for r in v["repos"].as_array().unwrap() {
                names.push(r["name"].as_str().unwrap().to_string());
                assert!(r["clone_url"].as_str().unwrap().ends_with(".git"));
            }
            match v["next_page"].as_u64() {
                Some(n) => page = n as u32,
                None => break,
            }
        }
        assert_eq!(names, ["repo-1", "repo-2", "repo-3", "repo-4", "repo-5"]);
    }
    let calls = standin_log(&log);
    assert!(calls.iter().any(|c| c["ghe"] == true));
    assert!(calls.iter().any(|c| c["ghe"] == false));
    assert!(calls.iter().all(|c| c["authed"] == true));
    // private has no default.
    let (s, v) = d.req(
        "POST",
        "/v1/credentials/github/dotcom/repos",
        Some(json!({"name": "fresh"})),
    );
    assert_eq!(s, 400, "{v}");
    let v = d.ok(
        "POST",
        "/v1/credentials/github/dotcom/repos",
        Some(json!({"name": "fresh", "private": true, "description": "made by dejima"})),
    );
    assert_eq!(v["full_name"], "octo/fresh");
    assert_eq!(v["private"], true);
    let (s, v) = d.req(
        "POST",
        "/v1/credentials/github/dotcom/repos",
        Some(json!({"name": "fresh", "private": false})),
    );
    assert_eq!(s, 422, "GitHub's refusal is the caller's: {v}");
    assert!(
        v["error"].as_str().unwrap().contains("already exists"),
        "{v}"
    );
    // A bad token: GitHub's 401 becomes a clear 422 naming the identity, never the token.
    d.ok(
        "PUT",
        "/v1/credentials/github/stale",
        Some(json!({"login": "octo", "token": "ghp_stale_token_1234", "api_url": format!("http://127.0.0.1:{port}")})),
    );
    let (s, v) = d.req("GET", "/v1/credentials/github/stale/repos", None);
    assert_eq!(s, 422, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("401") && e.contains("stale"), "{e}");
    assert!(!e.contains("ghp_stale"), "{e}");
    // Unreachable at the identity's own api_url: 422, never a 5xx.
    d.ok(
        "PUT",
        "/v1/credentials/github/gone",
        Some(json!({"login": "octo", "token": token, "api_url": format!("http://127.0.0.1:{}", free_port())})),
    );
    let (s, v) = d.req("GET", "/v1/credentials/github/gone/repos", None);
    assert_eq!(
        s, 422,
        "an api_url of the caller's that fails is theirs to fix: {v}"
    );
    let (s, _) = d.req("GET", "/v1/credentials/github/nope/repos", None);
    assert_eq!(s, 404);
    // The list never shows a token; deleting reports bound islands (none here).
    let l = d.ok("GET", "/v1/credentials/github", None);
    assert_eq!(l.as_array().unwrap().len(), 4);
    assert!(!l.to_string().contains(&token));
    let v = d.ok("DELETE", "/v1/credentials/github/stale", None);
    assert_eq!(v["still_bound"], json!([]));
    let (s, _) = d.req("DELETE", "/v1/credentials/github/stale", None);
    assert_eq!(s, 404);
}

#[test]
fn an_island_clones_and_pushes_a_private_repo_as_its_identity() {
    let d = Daemon::start();
    let token = format!("ghp_{}", dejima::util::random_hex(16));
    let root = tempfile::tempdir().unwrap();
    // A private repository with one commit, served only to the identity's token.
    let bare = root.path().join("octo/private.git");
    let sh = |script: &str| {
        let o = std::process::Command::new("sh")
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh(&format!(
        "git init -q --bare -b main {b} && w=$(mktemp -d) && cd $w && git init -q -b main && echo hello > README && git add README && git -c user.name=t -c user.email=t@t commit -qm first && git push -q {b} main && rm -rf $w",
        b = bare.display()
    ));
    let name = unique("ghclone");
    let port: u16 = 20000 + free_port() % 20000;
    d.ok(
        "PUT",
        "/v1/credentials/github/work",
        Some(
            json!({"login": "octo", "token": token, "id": 7, "host": format!("127.0.0.1:{port}")}),
        ),
    );
    // Made from the private repo's URL on the island's own loopback: the server is not up
    // yet (it can only listen once the island's network exists), so the first clone fails.
    let url = format!("http://127.0.0.1:{port}/git/octo/private.git");
    let v = d.ok(
        "POST",
        "/v1/islands",
        Some(json!({"name": name, "repo": url, "agent": "custom", "cmd": "bash", "github_identity": "work"})),
    );
    assert_eq!(v["github_identity"], "work", "{v}");
    let _g = Island {
        d: &d,
        name: name.clone(),
    };
    let ws = wait_for(T, "the first clone to fail", || {
        let w = d.ok("GET", &format!("/v1/islands/{name}/workspace-ready"), None);
        (w["clone_failed"] == true).then_some(w)
    });
    assert!(ws["clone_reason"].as_str().unwrap().len() > 0, "{ws}");
    let log = d.home.join("git.log");
    let _git = Standin::in_island(
        &name,
        "github.py",
        port,
        &[root.path().to_str().unwrap(), log.to_str().unwrap(), "octo"],
        &[("STANDIN_TOKEN", &token)],
    );
    // The create-time clone, run again: through the identity's credential helper.
    let ws = d.ok("POST", &format!("/v1/islands/{name}/reclone"), None);
    assert_eq!(ws["ready"], true, "{ws}");
    let (s, v) = d.req("POST", &format!("/v1/islands/{name}/reclone"), None);
    assert_eq!(s, 409, "a ready workspace is never cloned over: {v}");
    let script = "set -e; cd /workspace; cat README; echo change >> README; \
         git commit -qam 'from the island'; git push -q origin main; \
         git log -1 --format='%an <%ae>'";
    let v = d.ok(
        "POST",
        &format!("/v1/islands/{name}/exec"),
        Some(json!({"cmd": ["sh", "-c", script]})),
    );
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_eq!(
        v["stdout"].as_str().unwrap().trim(),
        "hello\nocto <7+octo@users.noreply.127.0.0.1>",
        "{v}"
    );
    // The push arrived, authored as the identity; every git request carried its token.
    let o = std::process::Command::new("git")
        .args([
            "--git-dir",
            bare.to_str().unwrap(),
            "log",
            "-1",
            "--format=%s|%an",
            "main",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "from the island|octo"
    );
    let calls = standin_log(&log);
    assert!(
        calls.iter().any(|c| c["git"]
            .as_str()
            .is_some_and(|p| p.ends_with("git-receive-pack"))),
        "{calls:?}"
    );
    // git asks without credentials first (401), then with the identity's: never anyone else's.
    assert!(calls
        .iter()
        .filter(|c| c["authed"] == true)
        .all(|c| c["user"] == "octo"));
    // Without the identity's helper, the same server refuses the clone: it is private.
    let v = d.ok(
        "POST",
        &format!("/v1/islands/{name}/exec"),
        Some(json!({"cmd": ["sh", "-c", format!("GIT_TERMINAL_PROMPT=0 git -c credential.helper= clone -q {url} /tmp/x 2>&1; echo rc=$?")]})),
    );
    let out = v["stdout"].as_str().unwrap();
    assert!(
        !out.contains("rc=0")
            && (out.contains("could not read Username") || out.contains("Authentication failed")),
        "{v}"
    );
    assert!(standin_log(&log).iter().any(|c| c["authed"] == false));
}
