//! The live experience against the real daemon, engine and tmux: clients of one size sharing
//! one attach, late joiners and stalled readers brought back with a full screen, observers,
//! history on attach, screen reads and verified prompts.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const T: Duration = Duration::from_secs(60);

fn session(i: &Island, q: &str) -> String {
    format!("/v1/islands/{}/agents/a1/session{q}", i.name)
}

fn attach(d: &Daemon, path: &str, rows: u16, cols: u16) -> Ws {
    let mut w = d.attach(path);
    w.resize(rows, cols);
    w.hello();
    w
}

/// The last 64 KiB of a client's output, as text.
fn recent(w: &Ws) -> String {
    String::from_utf8_lossy(&w.output[w.output.len().saturating_sub(64 << 10)..]).into_owned()
}

/// Read (without pausing between messages) until `needle` is in the recent output.
fn read_until(w: &mut Ws, needle: &str) {
    let deadline = Instant::now() + T;
    while !recent(w).contains(needle) {
        assert!(Instant::now() < deadline, "no {needle:?}: {:?}", recent(w));
        assert!(w.closed.is_none(), "closed: {:?}", w.closed);
        w.pump_once();
    }
}

/// Take every message already there.
fn drain(w: &mut Ws) {
    let _ =
        w.ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(1)));
    while w.pump_once().is_some() {}
    let _ =
        w.ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)));
}

/// What a terminal shows after `bytes` (the screen a client renders).
fn rendered(bytes: &[u8], rows: u16, cols: u16) -> String {
    let mut p = vt100::Parser::new(rows, cols, 0);
    p.process(bytes);
    p.screen().contents()
}

#[test]
fn clients_of_one_size_share_one_attach_and_a_late_joiner_sees_the_screen() {
    let d = Daemon::start();
    let i = d.create("share");
    let mut a = attach(&d, &session(&i, "?label=a"), 30, 100);
    a.send_data(b"echo marker-$((7*6))\r");
    a.expect("marker-42", T);
    // A late joiner of the same size gets the screen as it is, nothing typed since.
    let mut b = attach(&d, &session(&i, "?label=b"), 30, 100);
    b.expect("marker-42", T);
    assert_eq!(in_island_clients(&d, &i.name), (1, 1));
    // Another size is another tmux client (tmux's own multi-attach between sizes).
    let mut c = attach(&d, &session(&i, "?label=c"), 20, 70);
    wait_for(T, "a second tmux client", || {
        (in_island_clients(&d, &i.name) == (2, 2)).then_some(())
    });
    c.send_data(b"echo third-$((5*5))\r");
    for w in [&mut a, &mut b, &mut c] {
        w.expect("third-25", T);
    }
    // The one member of its feed resizes in place: no new client.
    c.resize(22, 72);
    a.send_data(b"echo again-$((2*2))\r");
    c.expect("again-4", T);
    assert_eq!(in_island_clients(&d, &i.name), (2, 2));
    // A shared member that resizes moves to a feed of its size; the others stay.
    b.resize(22, 72);
    a.send_data(b"echo moved-$((3*3))\r");
    b.expect("moved-9", T);
    assert_eq!(in_island_clients(&d, &i.name), (2, 2));
    drop(a);
    wait_for(T, "the first feed to end with its last member", || {
        (in_island_clients(&d, &i.name) == (1, 1)).then_some(())
    });
    drop(b);
    drop(c);
    wait_for(T, "no tmux client left", || {
        (in_island_clients(&d, &i.name) == (0, 0)).then_some(())
    });
}

#[test]
fn a_stalled_reader_is_resynced_and_never_holds_back_the_others() {
    let d = Daemon::start();
    let i = d.create("stall");
    let mut fast = attach(&d, &session(&i, "?label=fast"), 24, 80);
    let mut stalled = attach(&d, &session(&i, "?label=stalled"), 24, 80);
    let mut slow = attach(&d, &session(&i, "?label=slow"), 24, 80);
    fast.send_data(b"echo ready-$((2*3))\r");
    for w in [&mut fast, &mut stalled, &mut slow] {
        w.expect("ready-6", T);
    }
    // Output while `stalled` reads nothing and `slow` reads a little at a time, until far
    // more than the ring (1 MiB) and every buffer on the way has gone by. tmux skips what a
    // busy client cannot take, so the amount is measured, not assumed.
    let started = Instant::now();
    let mut slow_reads = 0;
    let mut round = 0;
    // Past the ring (1 MiB), the stalled client's own queue (1 MiB) and the socket buffers.
    while fast.output.len() < 5 << 20 {
        round += 1;
        assert!(round <= 40, "only {} bytes of output", fast.output.len());
        // Coloured lines in bursts with pauses: tmux passes on what its clients can take,
        // and a burst it could not pass on would only be skipped.
        fast.send_data(
            format!("awk 'BEGIN{{for(i=0;i<8000;i++){{s=\"\";for(j=0;j<70;j++)s=s sprintf(\"\\033[3%dm%c\",j%8,65+(i+j)%26);print s \"\\033[m\";if(i%100==0){{fflush();system(\"sleep 0.01\")}}}}}}'; echo round-$(({round}*1))-done\r")
                .as_bytes(),
        );
        let done = format!("round-{round}-done");
        while !recent(&fast).contains(&done) {
            assert!(started.elapsed() < Duration::from_secs(300), "no {done}");
            assert!(fast.closed.is_none(), "{:?}", fast.closed);
            fast.pump_once();
            // The throttled reader: one message per ten of the fast one's.
            slow_reads += 1;
            if slow_reads % 10 == 0 {
                slow.pump_once_nowait();
            }
        }
    }
    fast.send_data(b"clear; echo done-$((9*9))\r");
    read_until(&mut fast, "done-81");
    // The stalled reader comes back: it is brought up to date with a full screen.
    read_until(&mut stalled, "done-81");
    read_until(&mut slow, "done-81");
    assert!(stalled.resyncs >= 1, "the stalled reader was not resynced");
    assert!(stalled.closed.is_none() && slow.closed.is_none());
    // Nothing torn: every client's bytes render to the same final screen.
    fast.send_data(b"clear; echo final-$((4*4))\r");
    wait_for(T, "the same screen on every client", || {
        for w in [&mut fast, &mut stalled, &mut slow] {
            drain(w);
        }
        let f = rendered(&fast.output, 24, 80);
        (f.contains("final-16")
            && rendered(&stalled.output, 24, 80) == f
            && rendered(&slow.output, 24, 80) == f)
            .then_some(())
    });
    assert_eq!(fast.resyncs, 0);
}

#[test]
fn observers_neither_type_nor_resize_and_show_as_read_only() {
    let d = Daemon::start();
    let i = d.create("observe");
    let mut w = attach(&d, &session(&i, "?label=writer"), 24, 80);
    let mut o = attach(&d, &session(&i, "?label=watcher&mode=observe"), 24, 80);
    o.send_data(b"echo typed-by-observer-$((1+1))\r");
    o.resize(40, 120);
    wait_for(T, "the read-only notice", || {
        o.pump_once();
        (!o.errors.is_empty()).then_some(())
    });
    w.send_data(b"echo from-writer-$((4+4))\r");
    o.expect("from-writer-8", T);
    w.expect("from-writer-8", T);
    assert_eq!(o.errors.len(), 1, "told once: {:?}", o.errors);
    assert!(o.errors[0].contains("read-only"), "{:?}", o.errors);
    assert!(!w.text().contains("typed-by-observer-2"));
    assert!(!o.text().contains("typed-by-observer-2"));
    let a = d.ok("GET", &format!("/v1/islands/{}/agents/a1", i.name), None);
    let att = a["attached"].as_array().unwrap();
    let ro = |label: &str| {
        att.iter()
            .find(|p| p["label"] == label)
            .map(|p| p["read_only"].clone())
    };
    assert_eq!(ro("watcher"), Some(json!(true)), "{a}");
    assert_eq!(ro("writer"), Some(json!(false)), "{a}");
    // The observer's resize reached nobody: the window keeps the writer's size.
    let s = d.ok(
        "GET",
        &format!("/v1/islands/{}/agents/a1/screen?format=json", i.name),
        None,
    );
    assert_eq!(s["size"], json!({"rows": 24, "cols": 80}), "{s}");
    // An observer alone is a read-only tmux client (alone, tmux lets it size the window);
    // next to a writer it does not size it.
    drop(w);
    drop(o);
    wait_for(T, "no client", || {
        (in_island_clients(&d, &i.name) == (0, 0)).then_some(())
    });
    let mut o = attach(&d, &session(&i, "?mode=observe"), 50, 150);
    o.send_data(b"echo nope\r");
    wait_for(T, "one read-only tmux client", || {
        let (out, _) = d.exec(
            &i.name,
            &[
                "tmux",
                "-L",
                "dejima",
                "list-clients",
                "-F",
                "#{client_flags}",
            ],
        );
        out.contains("read-only").then_some(())
    });
    let mut w = attach(&d, &session(&i, ""), 24, 80);
    w.send_data(b"echo writer-$((5+5))\r");
    w.expect("writer-10", T);
    o.expect("writer-10", T);
    let s = d.ok(
        "GET",
        &format!("/v1/islands/{}/agents/a1/screen?format=json", i.name),
        None,
    );
    assert_eq!(s["size"], json!({"rows": 24, "cols": 80}), "{s}");
}

#[test]
fn a_viewer_token_attaches_as_an_observer() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&["--tcp", &addr, "--require-token"], &[]);
    let i = d.create("viewer");
    let token = |role: &str| {
        d.ok("POST", "/v1/tokens", Some(json!({"role": role})))["secret"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let viewer = token("viewer");
    let s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = ws_request(&addr, &session(&i, "?label=phone"), &viewer);
    let (mut ws, _) = tungstenite::client::client(req, s).unwrap();
    ws.send(tungstenite::Message::Text(
        json!({"type": "data", "b64": "ZWNobyBoaQ0="}).to_string(),
    ))
    .unwrap();
    let deadline = Instant::now() + T;
    let mut notice = None;
    while notice.is_none() {
        assert!(Instant::now() < deadline, "no read-only notice");
        if let tungstenite::Message::Text(t) = ws.read().unwrap() {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "error" {
                notice = Some(v);
            }
        }
    }
    let a = d.ok("GET", &format!("/v1/islands/{}/agents/a1", i.name), None);
    assert_eq!(a["attached"][0]["read_only"], true, "{a}");
}

#[test]
fn history_comes_before_the_live_screen_on_attach() {
    let d = Daemon::start();
    let i = d.create("history");
    let mut w = attach(&d, &session(&i, ""), 24, 80);
    w.send_data(b"seq 1 200 | sed 's/^/hist-/'\r");
    w.expect("hist-200", T);
    drop(w);
    let mut h = attach(&d, &session(&i, "?scrollback=500"), 24, 80);
    h.expect("hist-200", T);
    let text = h.text();
    // Lines long scrolled off the 24-row screen came first.
    let first = text
        .find("hist-5\u{1b}[m\r\n")
        .expect("hist-5 in the history");
    assert!(first < text.find("hist-200").unwrap());
    // Without it, only the screen.
    let mut s = attach(&d, &session(&i, ""), 24, 80);
    s.expect("hist-200", T);
    assert!(!s.text().contains("hist-5\u{1b}"));
    let (st, _) = d.req(
        "GET",
        &format!("/v1/islands/{}/agents/a1/session?scrollback=lots", i.name),
        None,
    );
    assert_eq!(st, 400);
}

#[test]
fn the_screen_reads_as_text_ansi_or_json_without_a_client() {
    let d = Daemon::start();
    let i = d.create("screen");
    let base = format!("/v1/islands/{}/agents/a1/screen", i.name);
    d.ok(
        "POST",
        &format!("/v1/islands/{}/agents/a1/prompt", i.name),
        Some(json!({"text": "printf '\\033[31mred-%s\\033[0m\\n' $((20+1)); seq 1 60 | sed 's/^/row-/'"})),
    );
    let text = |q: &str| {
        let r = d
            .client
            .send("GET", &format!("{base}{q}"), dejima::client::Body::None)
            .unwrap();
        assert_eq!(r.status, 200);
        r.text().unwrap()
    };
    let t = wait_for(T, "the output on screen", || {
        let t = text("");
        t.contains("row-60").then_some(t)
    });
    assert!(!t.contains('\u{1b}'));
    assert!(!t.contains("row-1\n"), "the default has no history: {t}");
    let a = text("?format=ansi&scrollback=100");
    assert!(a.contains("\u{1b}[31mred-21"), "{a}");
    assert!(a.contains("row-1\n"));
    let j = d.ok("GET", &format!("{base}?format=json&scrollback=100"), None);
    assert_eq!(j["agent"], "a1");
    assert_eq!(
        j["rows"].as_array().unwrap().len() as u64,
        j["size"]["rows"].as_u64().unwrap()
    );
    assert!(
        j["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "row-1"),
        "{j}"
    );
    assert!(j["cursor"]["row"].as_u64().unwrap() < j["size"]["rows"].as_u64().unwrap());
    assert_eq!(j["exited"], false);
    // Reading made no tmux client.
    assert_eq!(in_island_clients(&d, &i.name), (0, 0));
    for (q, want) in [
        ("?format=pdf", 400),
        ("?scrollback=-1", 400),
        ("?scrollback=10001", 400),
    ] {
        assert_eq!(d.req("GET", &format!("{base}{q}"), None).0, want, "{q}");
    }
    let (s, _) = d.req(
        "GET",
        &format!("/v1/islands/{}/agents/zz/screen", i.name),
        None,
    );
    assert_eq!(s, 404);
}

#[test]
fn prompts_arrive_literally_one_at_a_time_and_are_verified() {
    let d = Daemon::start();
    let i = d.create("prompt");
    let path = format!("/v1/islands/{}/agents/a1/prompt", i.name);
    let shown = |needle: &str| {
        wait_for(T, needle, || {
            screen(&d, &i.name, "a1").contains(needle).then_some(())
        })
    };
    // Nobody attached.
    let v = d.ok("POST", &path, Some(json!({"text": "echo $((6*7))-answer"})));
    assert_eq!(v["delivered"], true, "{v}");
    assert_eq!(v["submitted"], true, "{v}");
    assert!(v["attempts"].as_u64().unwrap() >= 1);
    shown("42-answer");
    // Key-like words, unicode and several lines arrive as text, not keys.
    d.ok(
        "POST",
        &path,
        Some(json!({"text": "printf '%s|' C-c Enter 'ünï 🙂' '\\e[A'; echo\ncat <<'X'\nline one\nline two\nX"})),
    );
    shown("C-c|Enter|ünï 🙂|\\e[A|");
    shown("line two");
    // Two at once never interleave: each is pasted and submitted on its own, so each
    // command's output is a row of its own (two pastes on one line would print one row
    // holding both).
    let long = |c: char| format!("echo {}", c.to_string().repeat(60));
    std::thread::scope(|s| {
        for c in ['A', 'B'] {
            let (d, path, text) = (&d, &path, long(c));
            s.spawn(move || {
                let v = d.ok("POST", path, Some(json!({ "text": text })));
                assert_eq!(v["delivered"], true, "{v}");
            });
        }
    });
    let out = d.ok(
        "GET",
        &format!(
            "/v1/islands/{}/agents/a1/screen?format=json&scrollback=200",
            i.name
        ),
        None,
    );
    let lines: Vec<&str> = out["history"]
        .as_array()
        .unwrap()
        .iter()
        .chain(out["rows"].as_array().unwrap())
        .map(|l| l.as_str().unwrap().trim_end())
        .collect();
    for c in ["A", "B"] {
        assert!(
            lines.contains(&c.repeat(60).as_str()),
            "no output row of {c}s alone: {lines:?}"
        );
    }
    // Without submit: on the input line, not run.
    d.ok(
        "POST",
        &path,
        Some(json!({"text": "echo not-$((1+1))-yet", "submit": false})),
    );
    shown("echo not-$((1+1))-yet");
    assert!(!screen(&d, &i.name, "a1").contains("not-2-yet"));
    // Bad input changes nothing.
    for (body, want) in [
        (json!({"text": "\u{1b}\u{7}"}), 422),
        (json!({"text": 5}), 400),
        (json!({"text": "x", "extra": 1}), 400),
    ] {
        assert_eq!(d.req("POST", &path, Some(body.clone())).0, want, "{body}");
    }
}

#[test]
fn a_prompt_that_cannot_land_is_refused_with_what_was_seen() {
    let d = Daemon::start();
    let i = d.create("deaf");
    // A program that neither echoes nor draws what it reads.
    let a = d.ok(
        "POST",
        &format!("/v1/islands/{}/agents", i.name),
        Some(
            json!({"type": "custom", "cmd": "stty -echo; echo deaf-$((3*4)); exec cat >/dev/null"}),
        ),
    );
    let id = a["id"].as_str().unwrap().to_string();
    wait_for(T, "the deaf agent", || {
        screen(&d, &i.name, &id).contains("deaf-12").then_some(())
    });
    let (s, v) = d.req(
        "POST",
        &format!("/v1/islands/{}/agents/{id}/prompt", i.name),
        Some(json!({"text": "hello"})),
    );
    assert_eq!(s, 504, "{v}");
    assert!(v["error"].as_str().unwrap().contains("deaf-12"), "{v}");
}

#[test]
fn uploads_land_in_the_agents_home_and_are_pasted() {
    let d = Daemon::start();
    let i = d.create("upload");
    let up = |name: &str, body: &[u8]| {
        let r = d
            .client
            .send(
                "POST",
                &format!("/v1/islands/{}/agents/a1/upload?filename={name}", i.name),
                dejima::client::Body::Bytes(body, "application/octet-stream"),
            )
            .unwrap();
        let status = r.status;
        (status, r.json::<Value>().unwrap_or(Value::Null))
    };
    // Text: saved, and its words are on the input line (not submitted).
    let (s, v) = up("notes.txt", b"echo pasted-$((3+4))");
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["path"], "/home/agent/uploads/notes.txt");
    assert_eq!(v["pasted_as"], "text");
    assert_eq!(v["pasted"], true, "{v}");
    assert!(screen(&d, &i.name, "a1").contains("echo pasted-$((3+4))"));
    assert!(!screen(&d, &i.name, "a1").contains("pasted-7"));
    // The same name again: a new file, the first untouched.
    let (_, v2) = up("notes.txt", b"second");
    assert_eq!(v2["path"], "/home/agent/uploads/notes-2.txt");
    let (cat, _) = d.exec(&i.name, &["cat", "/home/agent/uploads/notes.txt"]);
    assert_eq!(cat, "echo pasted-$((3+4))");
    // Binary: its path is pasted. A hostile name is tamed.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    let (s, v) = up("..%2F..%2Fetc%2Fmy%20pic.png", png);
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["path"], "/home/agent/uploads/my_pic.png");
    assert_eq!(v["pasted_as"], "file");
    wait_for(T, "the path on the input line", || {
        screen(&d, &i.name, "a1")
            .contains("/home/agent/uploads/my_pic.png")
            .then_some(())
    });
    let (sum, _) = d.exec(
        &i.name,
        &["sh", "-c", "wc -c < /home/agent/uploads/my_pic.png"],
    );
    assert_eq!(sum.trim(), png.len().to_string());
    // Too big, or no name: refused, nothing written.
    // (Asked with `Expect: 100-continue`, as curl does: the refusal comes before the body.)
    {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(d.sock()).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        write!(
            s,
            "POST /v1/islands/{}/agents/a1/upload?filename=big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            i.name,
            (8 << 20) + 1
        )
        .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 413");
    }
    let r = d
        .client
        .send(
            "POST",
            &format!("/v1/islands/{}/agents/a1/upload", i.name),
            dejima::client::Body::Bytes(b"x", "application/octet-stream"),
        )
        .unwrap();
    assert_eq!(r.status, 400);
    let (ls, _) = d.exec(&i.name, &["ls", "/home/agent/uploads"]);
    assert_eq!(ls.split_whitespace().count(), 3, "{ls}");
}

/// A /v1/stream client over TCP with a bearer token (tungstenite).
struct Mux {
    ws: tungstenite::WebSocket<std::net::TcpStream>,
    next: u64,
    texts: Vec<Value>,
    out: Vec<u8>,
    closed: Option<String>,
}

impl Mux {
    fn open(addr: &str, token: &str) -> Mux {
        let s = std::net::TcpStream::connect(addr).unwrap();
        let req = ws_request(addr, "/v1/stream?label=rust-mux", token);
        let (ws, _) = tungstenite::client::client(req, s).unwrap();
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Mux {
            ws,
            next: 0,
            texts: Vec::new(),
            out: Vec::new(),
            closed: None,
        }
    }
    fn pump(&mut self) {
        match self.ws.read() {
            Ok(tungstenite::Message::Text(t)) => self.texts.push(serde_json::from_str(&t).unwrap()),
            Ok(tungstenite::Message::Binary(b)) => {
                let (_, _, _, payload) =
                    dejima::http::mux::parse_frame(&b).expect("a framed binary");
                self.out.extend_from_slice(payload);
            }
            Ok(tungstenite::Message::Close(f)) => {
                self.closed = Some(f.map(|f| u16::from(f.code).to_string()).unwrap_or_default())
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                if self.closed.is_none() {
                    self.closed = Some(format!("error: {e}"));
                }
            }
        }
    }
    fn call(&mut self, mut msg: Value) -> Value {
        self.next += 1;
        let id = self.next;
        msg["id"] = json!(id);
        self.ws
            .send(tungstenite::Message::Text(msg.to_string()))
            .unwrap();
        let deadline = Instant::now() + T;
        loop {
            if let Some(r) = self
                .texts
                .iter()
                .find(|v| v["type"] == "reply" && v["id"] == id)
            {
                return r.clone();
            }
            assert!(Instant::now() < deadline, "no reply to {msg}");
            assert!(self.closed.is_none(), "closed: {:?}", self.closed);
            self.pump();
        }
    }
}

#[test]
fn the_stream_applies_roles_and_scopes_per_operation() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&["--tcp", &addr, "--require-token"], &[]);
    let mine = d.create("mux-mine");
    let other = d.create("mux-other");
    let token = |body: Value| {
        d.ok("POST", "/v1/tokens", Some(body))["secret"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // A viewer watches (read-only) and may not type, resize or prompt.
    let mut v = Mux::open(&addr, &token(json!({"role": "viewer"})));
    let r = v.call(json!({"op": "attach", "island": mine.name, "rows": 24, "cols": 80}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["read_only"], true, "{r}");
    let r = v.call(json!({"op": "input", "island": mine.name, "b64": "eA=="}));
    assert_eq!(r["status"], 403, "{r}");
    let r = v.call(json!({"op": "resize", "island": mine.name, "rows": 30, "cols": 90}));
    assert_eq!(r["status"], 403, "{r}");
    let r = v.call(json!({"op": "prompt", "island": mine.name, "text": "echo no"}));
    assert_eq!(r["status"], 403, "{r}");
    // An operator scoped to one island: the other does not exist for it.
    let op = token(json!({"role": "operator", "islands": [mine.name]}));
    let mut o = Mux::open(&addr, &op);
    let r = o.call(json!({"op": "attach", "island": other.name}));
    assert_eq!(r["status"], 404, "{r}");
    let r = o.call(json!({"op": "subscribe", "islands": [other.name]}));
    assert_eq!(r["status"], 404, "{r}");
    let r = o.call(json!({"op": "attach", "island": mine.name, "rows": 24, "cols": 80}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["read_only"], false, "{r}");
    let r = o.call(json!({"op": "prompt", "island": mine.name, "text": "echo scoped-$((6*7))"}));
    assert_eq!(r["delivered"], true, "{r}");
    // The viewer sees what the operator's prompt did.
    let deadline = Instant::now() + T;
    while !String::from_utf8_lossy(&v.out).contains("scoped-42") {
        assert!(Instant::now() < deadline, "the viewer never saw scoped-42");
        v.pump();
    }
    // Bad messages are answered, not fatal.
    for (m, want) in [
        (json!({"op": "launch"}), 400),
        (
            json!({"op": "attach", "island": mine.name, "rows": 0, "cols": 5}),
            400,
        ),
        (json!({"op": "attach", "island": mine.name}), 409),
    ] {
        let r = o.call(m.clone());
        assert_eq!(r["status"], want, "{m}: {r}");
    }
    // The ledger holds the stream's prompt and its refusals, as it would for REST.
    let audit = d.ok("GET", "/v1/audit?limit=1000", None);
    let entries = audit["entries"].as_array().unwrap();
    let has = |route: &str, decision: &str, status: u64| {
        entries
            .iter()
            .any(|e| e["route"] == route && e["decision"] == decision && e["status"] == status)
    };
    assert!(has("/v1/stream prompt", "allowed", 200), "{audit}");
    assert!(has("/v1/stream prompt", "denied", 403), "{audit}");
    assert!(has("/v1/stream input", "denied", 403), "{audit}");
    assert!(has("/v1/stream scope", "denied", 404), "{audit}");
    // Revoking the token ends its stream.
    let id = d
        .ok("GET", "/v1/tokens", None)
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "operator")
        .map(|t| t["id"].as_str().unwrap().to_string())
        .unwrap();
    d.ok("DELETE", &format!("/v1/tokens/{id}"), None);
    let deadline = Instant::now() + T;
    while o.closed.is_none() {
        assert!(Instant::now() < deadline, "the stream outlived its token");
        o.pump();
    }
    assert_eq!(o.closed.as_deref(), Some("1008"));
}

#[test]
fn recorded_sessions_are_asciicast_that_asciinema_replays() {
    let d = Daemon::start();
    let name = unique("rec");
    let (s, v) = d.req(
        "POST",
        "/v1/islands",
        Some(json!({"name": name, "no_repo": true, "agent": "custom", "cmd": "bash", "record": true})),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["record"], true, "{v}");
    let list_path = format!("/v1/islands/{name}/recordings");
    let id = wait_for(T, "an active recording", || {
        let v = d.ok("GET", &list_path, None);
        v.as_array()?
            .iter()
            .find(|r| r["active"] == true && r["agent"] == "a1")
            .map(|r| r["id"].as_str().unwrap().to_string())
    });
    // Typed through a session of another size than the pane: output and a resize.
    let mut w = attach(&d, &format!("/v1/islands/{name}/session"), 30, 100);
    w.send_data(b"echo recorded-$((6*7))\r");
    w.expect("recorded-42", T);
    let get = |id: &str| {
        let r = d
            .client
            .send(
                "GET",
                &format!("{list_path}/{id}"),
                dejima::client::Body::None,
            )
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/x-asciicast"));
        r.text().unwrap()
    };
    let cast = wait_for(T, "the output and the resize in the recording", || {
        let c = get(&id);
        (c.contains("recorded-42") && c.contains(r#""r","100x30""#)).then_some(c)
    });
    let header: Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(header["width"].as_u64().unwrap() > 0 && header["height"].as_u64().unwrap() > 0);
    for l in cast.lines().skip(1) {
        let ev: Value = serde_json::from_str(l).unwrap();
        assert!(ev[0].as_f64().unwrap() >= 0.0);
        assert!(ev[1] == "o" || ev[1] == "r", "{l}");
    }
    // The real asciinema replays it: the typed command's output is there. (It wants a
    // terminal: script(1) gives it one.)
    let file = d.home.join("check.cast");
    std::fs::write(&file, &cast).unwrap();
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("asciinema cat {}", file.display()),
            "/dev/null",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script and asciinema (scripts/setup installs them)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("recorded-42"));
    // The one being written cannot be deleted; stopping ends it.
    let (s, _) = d.req("DELETE", &format!("{list_path}/{id}"), None);
    assert_eq!(s, 409);
    let v = d.ok(
        "PATCH",
        &format!("/v1/islands/{name}"),
        Some(json!({"record": false})),
    );
    assert_eq!(v["record"], false);
    wait_for(T, "the recording to end", || {
        let v = d.ok("GET", &list_path, None);
        let r = v
            .as_array()?
            .iter()
            .find(|r| r["id"] == id.as_str())?
            .clone();
        (r["active"] == false && r["ended_at"].is_string() && r["bytes"].as_u64()? > 0)
            .then_some(())
    });
    assert_eq!(d.req("DELETE", &format!("{list_path}/{id}"), None).0, 204);
    assert_eq!(d.req("GET", &format!("{list_path}/{id}"), None).0, 404);
    assert_eq!(
        d.req("GET", &format!("{list_path}/..%2Fisland"), None).0,
        404
    );
    // Purge takes every recording with it.
    d.ok(
        "PATCH",
        &format!("/v1/islands/{name}"),
        Some(json!({"record": true})),
    );
    wait_for(T, "a new recording", || {
        let v = d.ok("GET", &list_path, None);
        (!v.as_array()?.is_empty()).then_some(())
    });
    let dir = d.home.join("islands").join(&name).join("recordings");
    assert!(dir.is_dir());
    drop(w);
    assert_eq!(
        d.req("DELETE", &format!("/v1/islands/{name}?force=true"), None)
            .0,
        204
    );
    assert!(!dir.exists());
}

#[test]
fn every_island_records_with_the_flag_and_old_parts_go_past_the_cap() {
    let d = Daemon::start_with(&["--record", "--record-max-mb", "1"], &[]);
    let i = d.create("cap");
    let list_path = format!("/v1/islands/{}/recordings", i.name);
    let first = wait_for(T, "a recording without asking", || {
        let v = d.ok("GET", &list_path, None);
        v.as_array()?
            .first()
            .map(|r| r["id"].as_str().unwrap().to_string())
    });
    // About 4 MB of output: parts of 256 KiB roll over and the oldest are dropped.
    d.ok(
        "POST",
        &format!("/v1/islands/{}/agents/a1/prompt", i.name),
        Some(json!({"text": "seq -f 'line-%g-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' 1 80000; echo capped-$((2*2))"})),
    );
    let v = wait_for(T, "rolled parts, the first dropped", || {
        let v = d.ok("GET", &list_path, None);
        let a = v.as_array()?.clone();
        let gone = !a.iter().any(|r| r["id"] == first.as_str());
        (a.len() >= 2 && gone).then_some(a)
    });
    let total: u64 = v.iter().map(|r| r["bytes"].as_u64().unwrap()).sum();
    assert!(
        total <= (1 << 20) + (512 << 10),
        "{total} bytes kept: {v:?}"
    );
    assert_eq!(v.iter().filter(|r| r["active"] == true).count(), 1, "{v:?}");
}

#[test]
fn the_client_that_started_a_shared_attach_may_leave_first() {
    let d = Daemon::start();
    let i = d.create("first-leaves");
    let mut first = attach(&d, &session(&i, "?label=first"), 24, 80);
    let mut second = attach(&d, &session(&i, "?label=second"), 24, 80);
    first.send_data(b"echo both-$((1+2))\r");
    second.expect("both-3", T);
    assert_eq!(in_island_clients(&d, &i.name), (1, 1));
    // The attach was started for the first client; it outlives that client's connection.
    drop(first);
    wait_for(T, "presence to drop the first", || {
        (d.island(&i.name).attached.len() == 1).then_some(())
    });
    second.send_data(b"echo still-$((5*5))\r");
    second.expect("still-25", T);
    assert!(second.closed.is_none() && !second.saw_exit);
    assert_eq!(in_island_clients(&d, &i.name), (1, 1));
}
