//! Test support: spawn the real `dejimad` on a private home, wait for it with backoff, talk to
//! it over its socket, and remove what each test made (drop guards). Everything a test creates
//! carries the label `dejima.test=<run>` so `scripts/test` can sweep leftovers of a crashed run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dejima::api::IslandInfo;
use dejima::client::{Body, Client, ClientError, Response};
use serde_json::{json, Value};

pub mod bench;
pub mod kube;

pub const RUN_LABEL: &str = "dejima.test";

/// Poll `f` until it returns Some, or panic with `what` after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    let mut step = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(step);
        step = (step * 2).min(Duration::from_millis(250));
    }
}

/// A loopback TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A unique, valid island name for this test.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", dejima::util::random_hex(4))
}

pub fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI")
}

pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A running dejimad on its own home directory. Killed on drop; the home is removed.
pub struct Daemon {
    pub home: PathBuf,
    child: Mutex<Option<Child>>,
    pub client: Client,
    pub extra_args: Vec<String>,
    pub envs: Mutex<Vec<(String, String)>>,
    /// The dejimad it runs (the one cargo built, unless a test installed another).
    pub exe: PathBuf,
}

static IMAGE: Mutex<bool> = Mutex::new(false);

impl Daemon {
    pub fn start() -> Daemon {
        Self::start_with(&[], &[])
    }

    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        Self::start_exe(Path::new(env!("CARGO_BIN_EXE_dejimad")), args, envs)
    }

    /// A daemon from another copy of the binary (self-update tests replace it).
    pub fn start_exe(exe: &Path, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        // Short path: Unix socket paths are limited to 108 bytes.
        let home = PathBuf::from(format!("/tmp/dj-{}", dejima::util::random_hex(5)));
        std::fs::create_dir_all(&home).unwrap();
        let d = Daemon {
            client: Client::unix(home.join("dejimad.sock")),
            home,
            child: Mutex::new(None),
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            envs: Mutex::new(
                envs.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            exe: exe.to_path_buf(),
        };
        d.spawn();
        ensure_image(&d.client);
        d
    }

    pub fn sock(&self) -> PathBuf {
        self.home.join("dejimad.sock")
    }

    /// Start the daemon process and wait until it answers healthz.
    pub fn spawn(&self) {
        let log = std::fs::File::create(self.home.join("dejimad.log")).unwrap();
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.extra_args)
            .env("DEJIMA_HOME", &self.home)
            .env("DEJIMA_LABELS", format!("{RUN_LABEL}=1"))
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in self.envs.lock().unwrap().iter() {
            cmd.env(k, v);
        }
        let mut slot = self.child.lock().unwrap();
        *slot = Some(cmd.spawn().expect("spawn dejimad"));
        let c = self.client.clone();
        let child = slot.as_mut().unwrap();
        wait_for(Duration::from_secs(20), "dejimad to answer healthz", || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("dejimad exited early: {st}");
            }
            c.send("GET", "/v1/healthz", Body::None)
                .ok()
                .filter(|r| r.status == 200)
        });
    }

    /// SIGKILL: the crash case.
    pub fn kill9(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&self) -> std::process::ExitStatus {
        let mut c = self.child.lock().unwrap().take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        wait_for(Duration::from_secs(20), "dejimad to exit", || {
            c.try_wait().unwrap()
        })
    }

    pub fn pid(&self) -> u32 {
        self.child
            .lock()
            .unwrap()
            .as_ref()
            .map(|c| c.id())
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("dejimad.log")).unwrap_or_default()
    }

    // --- requests ---

    pub fn req(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let r = match &body {
            Some(v) => {
                let b = serde_json::to_vec(v).unwrap();
                self.client
                    .send(method, path, Body::Bytes(&b, "application/json"))
            }
            None => self.client.send(method, path, Body::None),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        status_json(r)
    }

    pub fn raw(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let r = self
            .client
            .send(method, path, Body::Bytes(body, "application/octet-stream"))
            .unwrap();
        let s = r.status;
        (s, r.bytes().unwrap())
    }

    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.req(method, path, body);
        assert!((200..300).contains(&s), "{method} {path} -> {s}: {v}");
        v
    }

    pub fn island(&self, name: &str) -> IslandInfo {
        let v = self.ok("GET", &format!("/v1/islands/{name}"), None);
        serde_json::from_value(v).unwrap()
    }

    /// Create a no-repo island and return its guard.
    pub fn create(&self, prefix: &str) -> Island<'_> {
        let name = unique(prefix);
        let (s, v) = self.req(
            "POST",
            "/v1/islands",
            Some(json!({"name": name, "no_repo": true, "agent": "custom", "cmd": "bash"})),
        );
        assert_eq!(s, 201, "create {name}: {v}");
        Island { d: self, name }
    }

    pub fn exec(&self, island: &str, cmd: &[&str]) -> (String, i64) {
        let v = self.ok(
            "POST",
            &format!("/v1/islands/{island}/exec"),
            Some(json!({"cmd": cmd})),
        );
        (
            v["stdout"].as_str().unwrap().to_string(),
            v["exit_code"].as_i64().unwrap(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.home);
        } else {
            eprintln!(
                "--- dejimad log ({}) ---\n{}",
                self.home.display(),
                tail(&self.log(), 60)
            );
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn status_json(r: Response) -> (u16, Value) {
    let s = r.status;
    let b = r.bytes().unwrap();
    let v = if b.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into()))
    };
    (s, v)
}

/// Build the island image once per test process (the daemon skips it when current).
fn ensure_image(c: &Client) {
    let mut done = IMAGE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    let r = c
        .call("POST", "/v1/image/build", Body::None)
        .expect("image build");
    let text = r.text().unwrap();
    let last = text.trim_end().lines().last().unwrap_or("").to_string();
    assert!(
        last.starts_with("ok:"),
        "image build failed:\n{}",
        tail(&text, 40)
    );
    *done = true;
}

/// An island a test made; purged (forced) on drop, with a docker sweep as the backstop.
pub struct Island<'a> {
    pub d: &'a Daemon,
    pub name: String,
}

impl Drop for Island<'_> {
    fn drop(&mut self) {
        purge_everything(self.d, &self.name);
    }
}

pub fn purge_everything(d: &Daemon, name: &str) {
    let _ = d.client.send(
        "DELETE",
        &format!("/v1/islands/{name}?force=true"),
        Body::None,
    );
    remove_engine_objects(name);
}

/// Remove an island's container, volumes and network straight from the engine.
pub fn remove_engine_objects(name: &str) {
    let _ = docker(&["rm", "-f", &format!("dejima-{name}")]);
    let _ = docker(&[
        "volume",
        "rm",
        "-f",
        &format!("dejima-{name}-workspace"),
        &format!("dejima-{name}-home"),
    ]);
    let _ = docker(&["network", "rm", &format!("dejima-net-{name}")]);
}

/// A guard for a name a test expects the daemon to create (for cases that may fail halfway).
pub struct Sweep(pub String);
impl Drop for Sweep {
    fn drop(&mut self) {
        remove_engine_objects(&self.0);
    }
}

/// The types of an island's recent events, newest first.
pub fn event_kinds(d: &Daemon, island: &str) -> Vec<String> {
    let ev = d.ok("GET", &format!("/v1/islands/{island}/events"), None);
    ev.as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

pub fn err_text(v: &Value) -> String {
    v["error"].as_str().unwrap_or_default().to_string()
}

pub fn is_client_error(e: &ClientError, status: u16) -> bool {
    matches!(e, ClientError::Status { status: s, .. } if *s == status)
}

/// A git repository on this host with one commit, for path-based creates.
pub fn host_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("proj");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("README.md"), "hello from the host\n").unwrap();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    git(&[
        "-c",
        "user.email=t@example.com",
        "-c",
        "user.name=t",
        "add",
        ".",
    ]);
    git(&[
        "-c",
        "user.email=t@example.com",
        "-c",
        "user.name=t",
        "commit",
        "-q",
        "-m",
        "first",
    ]);
    repo
}

/// tmux's idea of the agent window's size, `WxH`.
pub fn window(d: &Daemon, island: &str, agent: &str) -> String {
    d.exec(
        island,
        &[
            "tmux",
            "-L",
            "dejima",
            "display",
            "-p",
            "-t",
            &format!("agent-{agent}"),
            "#{window_width}x#{window_height}",
        ],
    )
    .0
    .trim()
    .to_string()
}

/// A websocket client on the daemon's socket, speaking the session envelope.
pub struct Ws {
    pub ws: tungstenite::WebSocket<std::os::unix::net::UnixStream>,
    /// Every data byte received so far.
    pub output: Vec<u8>,
    pub closed: Option<String>,
    pub saw_exit: bool,
    pub errors: Vec<String>,
    /// Resync frames received (each is followed by a full screen).
    pub resyncs: usize,
}

impl Daemon {
    /// Open a websocket on `path` (with query). Panics on a refused handshake.
    pub fn attach(&self, path: &str) -> Ws {
        self.try_attach(path)
            .unwrap_or_else(|e| panic!("attach {path}: {e}"))
    }

    pub fn try_attach(&self, path: &str) -> Result<Ws, String> {
        let s = std::os::unix::net::UnixStream::connect(self.sock()).map_err(|e| e.to_string())?;
        // The handshake may wait on the island (its agents starting); reads after it are short.
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let url = format!("ws://dejimad{path}");
        match tungstenite::client::client(url.as_str(), s) {
            Ok((ws, _)) => Ok(Ws {
                ws: {
                    ws.get_ref()
                        .set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    ws
                },
                output: Vec::new(),
                closed: None,
                saw_exit: false,
                errors: Vec::new(),
                resyncs: 0,
            }),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
                let body = r
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err(format!("{} {body}", r.status().as_u16()))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Ws {
    pub fn send_json(&mut self, v: Value) {
        self.ws
            .send(tungstenite::Message::Text(v.to_string()))
            .unwrap();
    }
    pub fn send_data(&mut self, bytes: &[u8]) {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::STANDARD.encode(bytes);
        self.send_json(json!({"type": "data", "b64": b}));
    }
    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.send_json(json!({"type": "resize", "rows": rows, "cols": cols}));
    }
    /// Read one message (None on timeout); data is appended to `output`.
    pub fn pump_once(&mut self) -> Option<Value> {
        use base64::Engine as _;
        match self.ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).expect("server frames are JSON");
                match v["type"].as_str() {
                    Some("data") => {
                        let b = base64::engine::general_purpose::STANDARD
                            .decode(v["b64"].as_str().unwrap())
                            .expect("base64");
                        self.output.extend_from_slice(&b);
                    }
                    Some("exit") => self.saw_exit = true,
                    Some("resync") => self.resyncs += 1,
                    Some("error") => {
                        let b = base64::engine::general_purpose::STANDARD
                            .decode(v["b64"].as_str().unwrap_or(""))
                            .unwrap_or_default();
                        self.errors.push(String::from_utf8_lossy(&b).into_owned());
                    }
                    _ => {}
                }
                Some(v)
            }
            Ok(tungstenite::Message::Close(f)) => {
                self.closed = Some(
                    f.map(|f| format!("{} {}", u16::from(f.code), f.reason))
                        .unwrap_or_default(),
                );
                Some(Value::Null)
            }
            Ok(_) => Some(Value::Null),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => {
                if self.closed.is_none() {
                    self.closed = Some(format!("error: {e}"));
                }
                Some(Value::Null)
            }
        }
    }
    /// Take whatever is already there without waiting.
    pub fn pump_once_nowait(&mut self) {
        let _ = self
            .ws
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(1)));
        self.pump_once();
        let _ = self
            .ws
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)));
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
    /// Read until the output contains `needle`.
    pub fn expect(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.text().contains(needle) {
            if self.closed.is_some() {
                panic!(
                    "closed ({:?}) before {needle:?}; got {:?}",
                    self.closed,
                    tail(&self.text(), 10)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "no {needle:?} within {limit:?}; got {:?}",
                    tail(&self.text(), 10)
                );
            }
            self.pump_once();
        }
    }
    /// Read until the server closes; returns the close code and reason.
    pub fn expect_close(&mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while self.closed.is_none() {
            assert!(Instant::now() < deadline, "not closed within {limit:?}");
            self.pump_once();
        }
        self.closed.clone().unwrap()
    }
    /// The first message: hello.
    pub fn hello(&mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self.pump_once() {
                if v["type"] == "hello" {
                    return v;
                }
            }
            assert!(Instant::now() < deadline, "no hello");
        }
    }
}

/// One request a `Receiver` got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A real HTTP receiver on loopback for webhook tests. Answers `status` (settable: 503 plays
/// a receiver that is down) and records only what it answered 2xx to.
pub struct Receiver {
    pub url: String,
    pub got: std::sync::Arc<Mutex<Vec<Received>>>,
    pub refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    /// Milliseconds to sit on each request before answering (a slow receiver).
    pub delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    pub fn start() -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::atomic::Ordering;
        use std::sync::Arc;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (g, r, st, sp, dl) = (
            got.clone(),
            refused.clone(),
            status.clone(),
            stop.clone(),
            delay_ms.clone(),
        );
        std::thread::spawn(move || {
            while !sp.load(Ordering::SeqCst) {
                let Ok((s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut rd = BufReader::new(s.try_clone().unwrap());
                let mut headers = Vec::new();
                let mut line = String::new();
                if rd.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                loop {
                    line.clear();
                    if rd.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = rd.read_exact(&mut body);
                std::thread::sleep(Duration::from_millis(dl.load(Ordering::SeqCst)));
                let code = st.load(Ordering::SeqCst);
                if (200..300).contains(&code) {
                    g.lock().unwrap().push(Received { headers, body });
                } else {
                    r.fetch_add(1, Ordering::SeqCst);
                }
                let mut s = s;
                let _ = write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver {
            url,
            got,
            refused,
            status,
            delay_ms,
            stop,
        }
    }

    pub fn set_status(&self, code: u16) {
        self.status.store(code, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn events(&self) -> Vec<Value> {
        self.got.lock().unwrap().iter().map(|r| r.json()).collect()
    }

    /// Wait until an event of `kind` for `island` arrived; returns that delivery.
    pub fn wait_event(&self, kind: &str, island: &str, limit: Duration) -> Received {
        wait_for(limit, &format!("webhook {kind} for {island}"), || {
            self.got
                .lock()
                .unwrap()
                .iter()
                .find(|r| {
                    let v = r.json();
                    v["type"] == kind && v["island"] == island
                })
                .cloned()
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// An SSE reader on the daemon's event stream.
pub struct Sse {
    pub resp: dejima::client::Response,
    buf: Vec<u8>,
}

impl Daemon {
    pub fn stream(&self, query: &str) -> Sse {
        let mut c = self.client.clone();
        c.timeout = Some(Duration::from_millis(200));
        let resp = c
            .call("GET", &format!("/v1/events/stream{query}"), Body::None)
            .unwrap();
        assert_eq!(resp.header("content-type"), Some("text/event-stream"));
        Sse {
            resp,
            buf: Vec::new(),
        }
    }
}

impl Sse {
    /// The next `(event, data)` frame, or None when `limit` passes.
    pub fn next(&mut self, limit: Duration) -> Option<(String, Value)> {
        let deadline = Instant::now() + limit;
        loop {
            let text = String::from_utf8_lossy(&self.buf).to_string();
            if let Some(end) = text.find("\n\n") {
                let frame = text[..end].to_string();
                self.buf.drain(..end + 2);
                let mut ev = String::new();
                let mut data = String::new();
                for l in frame.lines() {
                    if let Some(v) = l.strip_prefix("event: ") {
                        ev = v.to_string();
                    } else if let Some(v) = l.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if ev.is_empty() {
                    continue; // a comment or keepalive
                }
                return Some((ev, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut b = [0u8; 8192];
            match self.resp.reader().read(&mut b) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
    }

    /// Skip frames until one of `kind` comes.
    pub fn until(&mut self, kind: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some((k, v)) if k == kind => return v,
                Some(_) => {}
                None => panic!("no {kind} event within {limit:?}"),
            }
        }
    }
}

/// A stand-in for an external service (tests/standins/*.py, run by the host's python3):
/// on the host's loopback, or inside an island's network namespace (its own loopback, where
/// the island's agents reach it as 127.0.0.1). Secrets go in through `envs`, never argv.
/// Killed on drop.
pub struct Standin {
    child: Child,
    pub port: u16,
}

impl Standin {
    fn spawn(mut cmd: Command, port: u16) -> Standin {
        use std::io::{BufRead, BufReader};
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn python3 stand-in");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("stand-in to say ready");
        assert_eq!(line.trim(), "ready", "stand-in did not start");
        Standin { child, port }
    }

    fn script(name: &str) -> String {
        format!("{}/tests/standins/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    /// On the host's loopback (for the daemon's own calls).
    pub fn on_host(script: &str, port: u16, args: &[&str], envs: &[(&str, &str)]) -> Standin {
        let mut cmd = Command::new("python3");
        cmd.arg(Self::script(script))
            .arg(port.to_string())
            .args(args)
            .envs(envs.iter().copied());
        Self::spawn(cmd, port)
    }

    /// In island `island`'s network namespace.
    pub fn in_island(
        island: &str,
        script: &str,
        port: u16,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Standin {
        let pid = docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Pid}}",
            &format!("dejima-{island}"),
        ]);
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &pid, "-n", "python3", &Self::script(script)])
            .arg(port.to_string())
            .args(args)
            .envs(envs.iter().copied());
        Self::spawn(cmd, port)
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON lines a stand-in logged.
pub fn standin_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// (tmux clients, attach processes) in an island: what attaches left there.
pub fn in_island_clients(d: &Daemon, island: &str) -> (usize, usize) {
    let (out, _) = d.exec(
        island,
        &[
            "sh",
            "-c",
            "tmux -L dejima list-clients 2>/dev/null | wc -l; ps -eo args | grep -c '^tmux -L dejima attach-session' || true",
        ],
    );
    let mut n = out.split_whitespace().map(|w| w.parse::<usize>().unwrap());
    (n.next().unwrap(), n.next().unwrap())
}

/// A websocket handshake request for `path` on a TCP address, with a bearer token.
pub fn ws_request(addr: &str, path: &str, token: &str) -> tungstenite::handshake::client::Request {
    tungstenite::http::Request::builder()
        .uri(format!("ws://{addr}{path}"))
        .header("Host", addr)
        .header("Authorization", format!("Bearer {token}"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap()
}

/// The visible screen of an agent's pane, as tmux renders it.
pub fn screen(d: &Daemon, island: &str, agent: &str) -> String {
    d.exec(
        island,
        &[
            "tmux",
            "-L",
            "dejima",
            "capture-pane",
            "-p",
            "-t",
            &format!("agent-{agent}"),
        ],
    )
    .0
}

/// The hex HMAC-SHA-256 of `body` under `secret`, as webhook signatures carry it.
pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body);
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether island `name`'s container runs, as the engine itself says.
pub fn running(name: &str) -> bool {
    docker(&[
        "inspect",
        "-f",
        "{{.State.Running}}",
        &format!("dejima-{name}"),
    ])
    .stdout
    .starts_with(b"true")
}

/// Island `name`'s own token, as its agents read it.
/// An operator token of `role` (labelled `t-<role>`): its id and its secret.
pub fn create_token(d: &Daemon, role: &str) -> (String, String) {
    let v = d.ok(
        "POST",
        "/v1/tokens",
        Some(json!({"role": role, "label": format!("t-{role}")})),
    );
    (
        v["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

pub fn island_token(d: &Daemon, name: &str) -> String {
    let (t, code) = d.exec(name, &["cat", "/run/secrets/dejima/token"]);
    assert_eq!(code, 0, "no token in {name}");
    t.trim().to_string()
}

/// A client holding island `name`'s token, on that island's own socket (as inside it).
pub fn as_island(d: &Daemon, name: &str) -> Client {
    Client {
        target: dejima::client::Target::Unix(
            d.home.join("islands").join(name).join("run/dejimad.sock"),
        ),
        token: Some(island_token(d, name)),
        timeout: Some(Duration::from_secs(120)),
    }
}

/// One JSON call through any client: the status and the JSON answer (Null when none).
pub fn call(c: &Client, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let r = match &body {
        Some(v) => {
            let b = serde_json::to_vec(v).unwrap();
            c.send(method, path, Body::Bytes(&b, "application/json"))
        }
        None => c.send(method, path, Body::None),
    }
    .unwrap();
    status_json(r)
}

/// Ledger entries of one type for one island (newest last).
pub fn ledger(d: &Daemon, kind: &str, island: &str) -> Vec<Value> {
    let v = d.ok(
        "GET",
        &format!("/v1/audit?type={kind}&island={island}&limit=10000"),
        None,
    );
    v["entries"].as_array().cloned().unwrap_or_default()
}

/// Whether the whole ledger verifies.
pub fn ledger_verifies(d: &Daemon) -> bool {
    d.ok("GET", "/v1/audit?limit=1", None)["verify"]["ok"] == true
}
