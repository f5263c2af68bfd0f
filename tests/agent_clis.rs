//! The real agent CLIs of the default image (Claude Code and Codex), driven end to end: a
//! provider key and base URL from the credential store, a stand-in of the provider's API on
//! the island's own loopback, a prompt typed through the session websocket, the reply on the
//! agent's screen, and its hook reported as an event and a signed webhook.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const T: Duration = Duration::from_secs(60);

/// A port for a stand-in inside an island (its own network namespace: anything is free).
fn island_port() -> u16 {
    20000 + free_port() % 20000
}

/// Type `prompt` into the agent's session, wait for the stand-in's reply on the screen and
/// for the agent's task-complete hook as a stream event and a signed webhook.
fn prompt_round_trip(d: &Daemon, island: &str, agent: &str, ready: &str, reply: &str) {
    let rx = Receiver::start();
    d.ok(
        "POST",
        "/v1/events/subscribe",
        Some(json!({"url": rx.url, "secret": "hush", "events": ["agent.task-complete"], "islands": [island]})),
    );
    let mut sse = d.stream(&format!("?island={island}&type=agent.task-complete"));
    let mut ws = d.attach(&format!(
        "/v1/islands/{island}/agents/{agent}/session?label=e2e"
    ));
    ws.hello();
    // The CLI's own prompt, on the screen an attached client sees.
    wait_for(T, "the agent's prompt", || {
        ws.pump_once_nowait();
        screen(d, island, agent).contains(ready).then_some(())
    });
    // A TUI may draw its prompt a moment before it reads keys: what it dropped is typed again
    // (the stand-in answers whatever the prompt says).
    ws.send_data(b"say hi");
    let mut typed = std::time::Instant::now();
    wait_for(T, "the typed prompt on screen", || {
        ws.pump_once_nowait();
        if screen(d, island, agent).contains("say hi") {
            return Some(());
        }
        if typed.elapsed() > Duration::from_secs(5) {
            ws.send_data(b"say hi");
            typed = std::time::Instant::now();
        }
        None
    });
    ws.send_data(b"\r");
    // The reply travels the websocket (the bytes the client renders) and lands on screen.
    ws.expect(reply, T);
    let ev = sse.until("agent.task-complete", T);
    assert_eq!(ev["island"], island);
    assert_eq!(ev["agent"], agent);
    let hook = rx.wait_event("agent.task-complete", island, T);
    assert_eq!(
        hook.header("X-Dejima-Signature").unwrap(),
        format!("sha256={}", hmac_hex("hush", &hook.body))
    );
    let info = d.ok("GET", &format!("/v1/islands/{island}/agents/{agent}"), None);
    assert_eq!(info["agent_state"]["latest"], "task-complete", "{info}");
}

/// A daemon whose `provider` points at a stand-in of its API on a new island's loopback, the
/// island (primary agent of `agent` type) and the stand-in answering `reply`.
struct Rig {
    d: Daemon,
    name: String,
    log: std::path::PathBuf,
    _llm: Option<Standin>,
}

impl Rig {
    fn new(provider: &str, key_prefix: &str, base_path: &str, agent: &str, reply: &str) -> Rig {
        let d = Daemon::start_with(&[], &[("DEJIMA_WEBHOOK_MAX_BACKOFF_SECS", "1")]);
        let port = island_port();
        let key = format!("{key_prefix}-{}", dejima::util::random_hex(12));
        d.ok(
            "PUT",
            &format!("/v1/credentials/providers/{provider}"),
            Some(
                json!({"api_key": key, "base_url": format!("http://127.0.0.1:{port}{base_path}")}),
            ),
        );
        let name = unique(agent.split('-').next().unwrap_or(agent));
        let (s, v) = d.req(
            "POST",
            "/v1/islands",
            Some(json!({"name": name, "no_repo": true, "agent": agent})),
        );
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["agents"][0]["provider"], provider, "{v}");
        let log = d.home.join("llm.log");
        let mut rig = Rig {
            d,
            name,
            log,
            _llm: None,
        };
        rig._llm = Some(Standin::in_island(
            &rig.name,
            "llm.py",
            port,
            &[reply, rig.log.to_str().unwrap()],
            &[("STANDIN_KEY", &key)],
        ));
        rig
    }

    /// The stand-in saw the island's key on every call (it logs whether it matched, never
    /// what it was), and at least one call to `path`.
    fn assert_calls(&self, path: &str) {
        let calls = standin_log(&self.log);
        assert!(
            calls
                .iter()
                .any(|c| c["path"] == path && c["authed"] == true),
            "{calls:?}"
        );
        assert!(calls.iter().all(|c| c["authed"] == true), "{calls:?}");
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self._llm = None;
        purge_everything(&self.d, &self.name);
    }
}

#[test]
fn claude_code_answers_through_its_provider_and_reports_task_complete() {
    let reply = "STANDIN-SAYS-HI-42";
    let rig = Rig::new("anthropic", "sk-ant-e2e", "", "claude-code", reply);
    let (d, name) = (&rig.d, rig.name.clone());
    let a1 = wait_for(T, "claude to run", || {
        let a = d.ok("GET", &format!("/v1/islands/{name}/agents/a1"), None);
        (a["state"] == "running" && a["runtime"] == "claude").then_some(a)
    });
    assert_eq!(a1["provider"], "anthropic");
    prompt_round_trip(d, &name, "a1", "❯", reply);
    rig.assert_calls("/v1/messages");

    // A bot's way: one verified prompt, no terminal; the reply read from the screen.
    let text = |d: &Daemon| {
        let r = d
            .client
            .send(
                "GET",
                &format!("/v1/islands/{name}/agents/a1/screen?scrollback=2000"),
                dejima::client::Body::None,
            )
            .unwrap();
        r.text().unwrap()
    };
    let before = text(d).matches(reply).count();
    let mut sse = d.stream(&format!("?island={name}&type=agent.task-complete"));
    let v = d.ok(
        "POST",
        &format!("/v1/islands/{name}/agents/a1/prompt"),
        Some(json!({"text": "say hi again"})),
    );
    assert_eq!(v["delivered"], true, "{v}");
    assert_eq!(v["submitted"], true, "{v}");
    wait_for(T, "the second reply on the screen", || {
        (text(d).matches(reply).count() > before).then_some(())
    });
    let ev = sse.until("agent.task-complete", T);
    assert_eq!(ev["island"], name);

    // A model change needs a relaunch; the restart resumes the conversation.
    let v = d.ok(
        "PATCH",
        &format!("/v1/islands/{name}/agents/a1/config"),
        Some(json!({"model": "claude-stand-in-1"})),
    );
    assert_eq!(v["model"], "claude-stand-in-1");
    assert_eq!(v["restart_required"], true);
    let v = d.ok(
        "POST",
        &format!("/v1/islands/{name}/agents/a1/restart"),
        Some(json!({"resume": true})),
    );
    assert_eq!(v["model"], "claude-stand-in-1");
    // The old claude may still be on its way out for a moment: wait for the new one.
    wait_for(T, "claude to run with the new model, resuming", || {
        let (args, _) = d.exec(&name, &["sh", "-c", "ps -o args= -C claude"]);
        (args.contains("--model claude-stand-in-1") && args.contains("--continue")).then_some(())
    });
    // The resumed conversation is on the screen again.
    wait_for(T, "the resumed conversation", || {
        screen(&d, &name, "a1").contains(reply).then_some(())
    });
    // Unknown provider: a clear 422, nothing changed.
    let (s, v) = d.req(
        "PATCH",
        &format!("/v1/islands/{name}/agents/a1/config"),
        Some(json!({"provider": "nope"})),
    );
    assert_eq!(s, 422, "{v}");
    let a = d.ok("GET", &format!("/v1/islands/{name}/agents/a1"), None);
    assert_eq!(a["provider"], "anthropic");
}

#[test]
fn codex_answers_through_its_provider_and_reports_task_complete() {
    let reply = "STANDIN-CODEX-SAYS-HI";
    let rig = Rig::new("openai", "sk-proj-e2e", "/v1", "codex", reply);
    let (d, name) = (&rig.d, rig.name.clone());
    wait_for(T, "codex to run", || {
        let a = d.ok("GET", &format!("/v1/islands/{name}/agents/a1"), None);
        (a["state"] == "running" && a["runtime"] == "codex").then_some(())
    });
    prompt_round_trip(d, &name, "a1", "Ask Codex", reply);
    rig.assert_calls("/v1/responses");
}

#[test]
fn without_credentials_the_agent_is_alive_and_says_so() {
    let d = Daemon::start();
    let name = unique("nocreds");
    let (s, v) = d.req(
        "POST",
        "/v1/islands",
        Some(json!({"name": name, "no_repo": true})),
    );
    assert_eq!(s, 201, "{v}");
    let _g = Island {
        d: &d,
        name: name.clone(),
    };
    assert!(v["agents"][0].get("provider").is_none(), "{v}");
    // The real CLI runs and its own screen says what is missing; no dead pane.
    wait_for(T, "claude's not-logged-in screen", || {
        screen(&d, &name, "a1")
            .contains("Not logged in")
            .then_some(())
    });
    let a = d.ok("GET", &format!("/v1/islands/{name}/agents/a1"), None);
    assert_eq!(a["state"], "running", "{a}");
    assert_eq!(a["runtime"], "claude", "{a}");
    // The shell outliving the agent reads as exited, with the reason.
    let (s, v) = d.req(
        "POST",
        &format!("/v1/islands/{name}/agents"),
        Some(json!({"type": "claude-code", "cmd": "claude --version; exec bash"})),
    );
    assert_eq!(s, 201, "{v}");
    let a2 = wait_for(T, "a2 to show its shell outlived claude", || {
        let a = d.ok("GET", &format!("/v1/islands/{name}/agents/a2"), None);
        (a["state"] == "exited").then_some(a)
    });
    assert_eq!(a2["runtime"], "bash", "{a2}");
    assert!(
        a2["error"].as_str().unwrap().contains("not running"),
        "{a2}"
    );
    // The agent types say what each needs.
    let types = d.ok("GET", "/v1/agent-types", None);
    let claude = types
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "claude-code")
        .unwrap()
        .clone();
    assert_eq!(claude["binary"], "claude");
    assert_eq!(claude["key_env"], "ANTHROPIC_API_KEY");
    assert_eq!(claude["can_resume"], true);
    assert_eq!(claude["emits_events"], true);
    // Both CLIs are in the image, at their pinned versions.
    let (v, code) = d.exec(
        &name,
        &[
            "sh",
            "-c",
            "claude --version && codex --version && gh --version",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert!(v.contains("Claude Code") && v.contains("codex-cli"), "{v}");
}

#[test]
fn agent_states_follow_their_programs_without_a_request_asking() {
    let d = Daemon::start();
    let name = unique("sweep");
    let (s, v) = d.req(
        "POST",
        "/v1/islands",
        Some(json!({"name": name, "no_repo": true, "agent": "custom", "cmd": "sleep 4"})),
    );
    assert_eq!(s, 201, "{v}");
    let _g = Island {
        d: &d,
        name: name.clone(),
    };
    // The island view never asks the island; the daemon's sweep brings the news.
    let a1 = wait_for(T, "the island view to show a1 exited", || {
        let i = d.ok("GET", &format!("/v1/islands/{name}"), None);
        (i["agents"][0]["state"] == "exited").then(|| i["agents"][0].clone())
    });
    assert!(a1["error"].as_str().unwrap().contains("exited"), "{a1}");
    // Reads of the agents share one look: two in a row ask the island once.
    let before = d.log().matches("list-panes").count();
    d.ok("GET", &format!("/v1/islands/{name}/agents"), None);
    d.ok("GET", &format!("/v1/islands/{name}/agents/a1"), None);
    let after = d.log().matches("list-panes").count();
    assert!(after - before <= 1, "{before} -> {after}");
}
