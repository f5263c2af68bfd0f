//! Events, webhooks, the live stream, and the in-island path with its token scoping.

mod support;

use std::time::Duration;

use dejima::client::{Body, Client};
use dejima::http::router::{Access, ROUTES};
use serde_json::json;
use support::*;

const T: Duration = Duration::from_secs(30);

fn fast_retries() -> Daemon {
    Daemon::start_with(&[], &[("DEJIMA_WEBHOOK_MAX_BACKOFF_SECS", "1")])
}

#[test]
fn webhooks_are_signed_filtered_and_survive_a_receiver_outage() {
    let d = fast_retries();
    let rx = Receiver::start();
    let other = Receiver::start();
    let v = d.ok(
        "POST",
        "/v1/events/subscribe",
        Some(json!({"url": rx.url, "secret": "hush"})),
    );
    assert!(v["id"].as_str().unwrap().starts_with("wh_"));
    assert_eq!(v["url"], rx.url.as_str());
    assert!(v["created_at"].is_string());
    assert!(v.get("secret").is_none(), "the secret is never shown");
    // A second subscriber that only wants hibernations of an island that does not exist.
    d.ok(
        "POST",
        "/v1/events/subscribe",
        Some(json!({"url": other.url, "events": ["island.hibernated"], "islands": ["elsewhere"]})),
    );

    let i = d.create("hook");
    let n = i.name.clone();
    let created = rx.wait_event("island.created", &n, T);
    let sig = created.header("X-Dejima-Signature").expect("signed");
    assert_eq!(sig, format!("sha256={}", hmac_hex("hush", &created.body)));
    assert_eq!(created.header("X-Dejima-Event"), Some("island.created"));
    assert_eq!(created.header("Content-Type"), Some("application/json"));
    let body = created.json();
    assert!(body["id"].is_string() && body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        created
            .header("X-Dejima-Delivery")
            .map(|s| s.starts_with("dl_")),
        Some(true)
    );

    // The receiver goes down; the event waits, retried, visible in the subscription.
    rx.set_status(503);
    d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
    let sub = wait_for(T, "a failed attempt to show", || {
        let subs = d.ok("GET", "/v1/events/subscriptions", None);
        let s = subs
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["url"] == rx.url.as_str())
            .unwrap()
            .clone();
        (s["attempts"].as_u64().unwrap_or(0) >= 1).then_some(s)
    });
    assert!(sub["pending"].as_u64().unwrap() >= 1);
    assert_eq!(sub["last_error"], "HTTP 503");
    assert_eq!(sub["has_secret"], true);
    // Back up: everything arrives, in order, signed.
    rx.set_status(200);
    let h = rx.wait_event("island.hibernated", &n, T);
    assert_eq!(
        h.header("X-Dejima-Signature").unwrap(),
        format!("sha256={}", hmac_hex("hush", &h.body))
    );
    wait_for(T, "the queue to drain", || {
        let subs = d.ok("GET", "/v1/events/subscriptions", None);
        subs.as_array()
            .unwrap()
            .iter()
            .all(|s| s["pending"] == 0)
            .then_some(())
    });
    // The filtered subscriber got nothing (wrong island).
    assert!(other.events().is_empty(), "{:?}", other.events());

    // Unsubscribe: no more deliveries to it.
    let id = d.ok("GET", "/v1/events/subscriptions", None)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        d.req("DELETE", &format!("/v1/events/subscriptions/{id}"), None)
            .0,
        204
    );
    assert_eq!(
        d.req("DELETE", &format!("/v1/events/subscriptions/{id}"), None)
            .0,
        404
    );
    for bad in [
        json!({"url": "ftp://x"}),
        json!({"url": "http://"}),
        json!({"url": rx.url, "events": ["island.exploded"]}),
        json!({}),
        json!({"url": rx.url, "islands": ["Bad Name"]}),
    ] {
        assert_eq!(
            d.req("POST", "/v1/events/subscribe", Some(bad.clone())).0,
            400,
            "{bad}"
        );
    }
    // Recent events for the island, newest first.
    let kinds = event_kinds(&d, &n);
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("island.hibernated"),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "island.created"));
    assert_eq!(d.req("GET", "/v1/islands/nosuch/events", None).0, 404);
}

#[test]
fn pending_deliveries_survive_a_daemon_restart() {
    let d = fast_retries();
    let rx = Receiver::start();
    rx.set_status(503);
    d.ok(
        "POST",
        "/v1/events/subscribe",
        Some(json!({"url": rx.url, "events": ["island.created"]})),
    );
    let i = d.create("restart");
    wait_for(T, "a refused attempt", || {
        (rx.refused.load(std::sync::atomic::Ordering::SeqCst) >= 1).then_some(())
    });
    let pending = std::fs::read_dir(d.home.join("webhooks/pending"))
        .unwrap()
        .count();
    assert!(pending >= 1, "the delivery is on disk");
    d.kill9();
    rx.set_status(200);
    d.spawn();
    let got = rx.wait_event("island.created", &i.name, T);
    assert_eq!(got.header("X-Dejima-Event"), Some("island.created"));
    wait_for(T, "the pending file to go", || {
        (std::fs::read_dir(d.home.join("webhooks/pending"))
            .unwrap()
            .count()
            == 0)
            .then_some(())
    });
}

#[test]
fn a_container_killed_behind_our_back_is_a_crash_and_ours_are_not() {
    let d = Daemon::start();
    let i = d.create("crash");
    let n = i.name.clone();
    let mut s = d.stream(&format!("?island={n}"));
    d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
    s.until("island.hibernated", T);
    d.ok("POST", &format!("/v1/islands/{n}/wake"), None);
    s.until("island.woken", T);
    // The engine's start shows up as island.running, for our own starts too.
    wait_for(T, "island.running", || {
        let ev = d.ok("GET", &format!("/v1/islands/{n}/events"), None);
        ev.as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "island.running")
            .then_some(())
    });
    docker_ok(&["kill", &format!("dejima-{n}")]);
    let v = s.until("container.crashed", T);
    assert_eq!(v["island"], n.as_str());
    assert!(v["payload"]["exit_code"].is_number(), "{v}");
    let kinds: Vec<String> = d
        .ok("GET", &format!("/v1/islands/{n}/events"), None)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "container.crashed").count(),
        1,
        "hibernate was not a crash: {kinds:?}"
    );
}

#[test]
fn agents_report_from_inside_the_island_through_their_own_socket() {
    let d = Daemon::start();
    let rx = Receiver::start();
    d.ok(
        "POST",
        "/v1/events/subscribe",
        Some(json!({"url": rx.url, "events": ["agent.waiting-for-input", "agent.task-complete"]})),
    );
    let i = d.create("inside");
    let n = i.name.clone();
    let mut s = d.stream(&format!(
        "?island={n}&type=agent.waiting-for-input,agent.task-complete"
    ));
    // The helper the image ships, as an agent would call it.
    let (out, code) = d.exec(
        &n,
        &[
            "sh",
            "-c",
            "DEJIMA_AGENT=a1 dejima-notify waiting-for-input '{\"tool\":\"Bash\"}'",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let v = s.until("agent.waiting-for-input", T);
    assert_eq!(
        (
            v["island"].as_str(),
            v["agent"].as_str(),
            v["payload"]["tool"].as_str()
        ),
        (Some(n.as_str()), Some("a1"), Some("Bash"))
    );
    let info = d.island(&n);
    assert_eq!(
        info.agent_state.as_ref().unwrap().latest.as_str(),
        "waiting-for-input"
    );
    assert_eq!(
        d.ok("GET", &format!("/v1/islands/{n}/agents/a1"), None)["agent_state"]["latest"],
        "waiting-for-input"
    );
    rx.wait_event("agent.waiting-for-input", &n, T);

    // Plain curl with the env a login shell in the island has (its token read from the
    // read-only secrets mount); the body's island is ignored for the token's.
    let script = r#"curl -sS -o /dev/null -w '%{http_code}' --unix-socket /run/dejima/dejimad.sock -H "Authorization: Bearer $DEJIMA_TOKEN" -d '{"island":"someone-else","type":"agent.task-complete"}' http://dejimad/v1/internal/agent-event"#;
    assert_eq!(d.exec(&n, &["bash", "-lc", script]).0, "202");
    let v = s.until("agent.task-complete", T);
    assert_eq!(v["island"], n.as_str());
    assert_eq!(
        d.island(&n).agent_state.unwrap().latest.as_str(),
        "task-complete"
    );
    // The env points agents at that socket; the operator socket is not in the island.
    assert_eq!(
        d.exec(&n, &["bash", "-lc", "printenv DEJIMA_HOST"]).0,
        "unix:/run/dejima/dejimad.sock\n"
    );
    // The token is in no container environment `docker inspect` shows.
    let inspect = docker_ok(&["inspect", &format!("dejima-{n}")]);
    assert!(!inspect.contains("DEJIMA_TOKEN"), "{inspect}");
    let (ls, _) = d.exec(&n, &["ls", "/run/dejima"]);
    assert_eq!(
        ls.lines()
            .filter(|l| l.ends_with(".sock"))
            .collect::<Vec<_>>(),
        vec!["dejimad.sock"]
    );
    // No token, a wrong token, or a token in the URL: 401, from inside.
    for (auth, query, want) in [
        ("", "", "401"),
        ("-H 'Authorization: Bearer nope'", "", "401"),
        ("", "?token=$DEJIMA_TOKEN", "401"),
    ] {
        let script = format!(
            r#"curl -sS -o /dev/null -w '%{{http_code}}' --unix-socket /run/dejima/dejimad.sock {auth} -d '{{"type":"agent.error"}}' "http://dejimad/v1/internal/agent-event{query}""#
        );
        assert_eq!(d.exec(&n, &["bash", "-lc", &script]).0, want, "{script}");
    }
    // Bad bodies are 400 and change nothing.
    let script = r#"curl -sS -o /dev/null -w '%{http_code}' --unix-socket /run/dejima/dejimad.sock -H "Authorization: Bearer $DEJIMA_TOKEN" -d '{"type":"agent.exploded"}' http://dejimad/v1/internal/agent-event"#;
    assert_eq!(d.exec(&n, &["bash", "-lc", script]).0, "400");
}

/// Fill a route pattern for island `island`.
fn fill(pattern: &str, island: &str) -> String {
    pattern
        .replace("{name}", island)
        .replace("{path...}", "workspace/x")
        .replace("{id}", "a1")
        .replace("{provider}", "anthropic")
}

#[test]
fn an_island_token_reaches_only_its_own_autonomy_routes() {
    let d = Daemon::start();
    let a = d.create("tok-a");
    let b = d.create("tok-b");
    let token_a = d
        .exec(&a.name, &["cat", "/run/secrets/dejima/token"])
        .0
        .trim()
        .to_string();
    let token_b = d
        .exec(&b.name, &["cat", "/run/secrets/dejima/token"])
        .0
        .trim()
        .to_string();
    assert_eq!(token_a.len(), 64);
    assert_ne!(token_a, token_b);
    assert!(
        !d.log().contains(&token_a),
        "the token never reaches the log"
    );
    let with = |token: &str, sock: std::path::PathBuf| Client {
        target: dejima::client::Target::Unix(sock),
        token: Some(token.to_string()),
        timeout: Some(Duration::from_secs(30)),
    };
    let a_sock = d
        .home
        .join("islands")
        .join(&a.name)
        .join("run/dejimad.sock");
    // Through the operator socket and through island A's own socket alike.
    for c in [with(&token_a, d.sock()), with(&token_a, a_sock.clone())] {
        for r in ROUTES {
            for target in [&b.name, &a.name] {
                let path = fill(r.pattern, target);
                let body = b"{}";
                let status = c
                    .send(r.method, &path, Body::Bytes(body, "application/json"))
                    .unwrap()
                    .status;
                let other = r.pattern.contains("{name}") && target == &b.name;
                match r.access {
                    Access::Any => assert_eq!(status, 200, "{} {path}", r.method),
                    Access::Public => unreachable!("the dashboard's routes are WEB_ROUTES"),
                    Access::Island if other => assert_eq!(status, 403, "{} {path}", r.method),
                    Access::Island => assert_ne!(status, 403, "{} {path}", r.method),
                    // Without a spawn grant there is no child, and nothing to create.
                    Access::Spawn | Access::Child => {
                        assert_eq!(status, 403, "{} {path}", r.method)
                    }
                    Access::Operator => assert_eq!(
                        status, 403,
                        "{} {path}: island A's token must be refused",
                        r.method
                    ),
                }
            }
        }
        // An encoded slash cannot smuggle another name.
        let status = c
            .send(
                "GET",
                &format!("/v1/islands/{}%2F..%2F{}", a.name, b.name),
                Body::None,
            )
            .unwrap()
            .status;
        assert!(status == 403 || status == 400, "{status}");
    }
    // On A's socket: B's token, no token, a token in the query: 401.
    let r = with(&token_b, a_sock.clone())
        .send("GET", "/v1/healthz", Body::None)
        .unwrap();
    assert_eq!(r.status, 401);
    let r = Client::unix(a_sock.clone())
        .send("GET", "/v1/healthz", Body::None)
        .unwrap();
    assert_eq!(r.status, 401);
    let r = Client::unix(a_sock.clone())
        .send("GET", &format!("/v1/healthz?token={token_a}"), Body::None)
        .unwrap();
    assert_eq!(r.status, 401);
    // A wrong token on the operator socket is refused too, not silently ignored.
    let r = with("not-a-token", d.sock())
        .send("GET", "/v1/islands", Body::None)
        .unwrap();
    assert_eq!(r.status, 401);
    // A's token posts events for A only, whatever the body says.
    let r = with(&token_a, d.sock())
        .send(
            "POST",
            "/v1/internal/agent-event",
            Body::Bytes(
                json!({"island": b.name, "type": "agent.error"})
                    .to_string()
                    .as_bytes(),
                "application/json",
            ),
        )
        .unwrap();
    assert_eq!(r.status, 202);
    assert_eq!(
        d.island(&a.name).agent_state.unwrap().latest.as_str(),
        "error"
    );
    assert!(d.island(&b.name).agent_state.is_none());
    // A clone gets its own token.
    let c = unique("tok-c");
    let _s = Sweep(c.clone());
    d.ok(
        "POST",
        &format!("/v1/islands/{}/clone", a.name),
        Some(json!({"name": c})),
    );
    let _g = Island {
        d: &d,
        name: c.clone(),
    };
    let token_c = d
        .exec(&c, &["cat", "/run/secrets/dejima/token"])
        .0
        .trim()
        .to_string();
    assert_ne!(token_c, token_a);
}

#[test]
fn a_slow_stream_consumer_is_cut_off_and_the_bus_goes_on() {
    let d = Daemon::start();
    let i = d.create("slowsse");
    let n = i.name.clone();
    let mut slow = d.stream(&format!("?island={n}"));
    // Publish far more than one subscriber may queue while this one reads nothing.
    let body =
        json!({"island": n, "type": "agent.task-complete", "payload": {"pad": "x".repeat(2000)}})
            .to_string();
    for _ in 0..1500 {
        let r = d
            .client
            .send(
                "POST",
                "/v1/internal/agent-event",
                Body::Bytes(body.as_bytes(), "application/json"),
            )
            .unwrap();
        assert_eq!(r.status, 202);
    }
    // A fresh subscriber still gets new events at once.
    let mut fresh = d.stream(&format!("?island={n}&type=island.hibernated"));
    d.ok("POST", &format!("/v1/islands/{n}/hibernate"), None);
    fresh.until("island.hibernated", T);
    // The slow one finds, after what was buffered, that it was dropped.
    slow.until("dropped", Duration::from_secs(60));
    // Stream parameters are checked.
    assert_eq!(d.req("GET", "/v1/events/stream?type=nope", None).0, 400);
    assert_eq!(d.req("GET", "/v1/events/stream?replay=x", None).0, 400);
}

#[test]
fn a_slow_receiver_never_delays_another() {
    let d = Daemon::start();
    let slow = Receiver::start();
    slow.delay_ms
        .store(8000, std::sync::atomic::Ordering::SeqCst);
    let fast = Receiver::start();
    d.ok(
        "POST",
        "/v1/events/subscribe",
        Some(json!({"url": slow.url})),
    );
    d.ok(
        "POST",
        "/v1/events/subscribe",
        Some(json!({"url": fast.url})),
    );
    let i = d.create("twohooks");
    let t = std::time::Instant::now();
    d.ok("POST", &format!("/v1/islands/{}/hibernate", i.name), None);
    fast.wait_event("island.hibernated", &i.name, T);
    // The slow receiver is still sitting on its first delivery (island.created) meanwhile.
    assert!(slow.events().is_empty(), "the slow one answered already?");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "the fast receiver waited for the slow one: {:?}",
        t.elapsed()
    );
}

#[test]
fn a_recreated_island_gets_its_own_socket_at_once() {
    // Purge and create the same name straight away: the new island must not be left with
    // the old island's listener (on a file that was removed) or none at all.
    let d = Daemon::start();
    let i = d.create("again");
    let n = i.name.clone();
    let notify = |d: &Daemon| {
        d.exec(
            &n,
            &[
                "sh",
                "-c",
                "DEJIMA_AGENT=a1 dejima-notify task-complete 2>&1",
            ],
        )
    };
    wait_for(T, "the first island's socket", || {
        (notify(&d).1 == 0).then_some(())
    });
    for _ in 0..3 {
        let (s, _) = d.req("DELETE", &format!("/v1/islands/{n}?force=true"), None);
        assert_eq!(s, 204);
        let (s, v) = d.req(
            "POST",
            "/v1/islands",
            Some(json!({"name": n, "no_repo": true, "agent": "custom", "cmd": "bash"})),
        );
        assert_eq!(s, 201, "{v}");
        wait_for(Duration::from_secs(5), "the new island's socket", || {
            (notify(&d).1 == 0).then_some(())
        });
        assert_eq!(
            d.island(&n).agent_state.unwrap().latest.as_str(),
            "task-complete"
        );
    }
}
