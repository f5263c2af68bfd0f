//! MCP: host-side Model Context Protocol servers the operator registers in
//! `$DEJIMA_HOME/mcp/servers.json`, called by granted islands through a fixed method list.
//!
//! A server runs with its fixed argv (never a shell), a minimal environment and its own
//! working folder, speaking newline-delimited JSON-RPC on stdio. One process serves one
//! (island, server) pair — islands never share a server process, so one island's calls
//! cannot see another's state — and is kept for `keep_alive_secs` after its last call
//! (`mcp-reaper` ends idle ones): start-up is the cost that matters (scripts/bench measures
//! a warm call against a fresh process per call). `keep_alive_secs: 0` is a process per call.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{sha256_hex, Asker, Brokers};
use crate::api::{McpCall, McpCallResult, McpGrant, McpServerInfo};
use crate::error::{Error, Result};
use crate::island::grants::check_grant_name;
use crate::util::lock;

/// The methods an island may call; anything else is refused (and ledgered).
pub const METHODS: [&str; 6] = [
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
];
/// A call (start-up included) that has no answer by then fails with 504.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A message from a server longer than this ends its process (502).
pub const MAX_MESSAGE: usize = 8 << 20;
const PROTOCOL_VERSION: &str = "2025-06-18";
const DEFAULT_KEEP_ALIVE: u64 = 120;
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerDef {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub keep_alive_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServersFile {
    #[serde(default)]
    servers: BTreeMap<String, ServerDef>,
}

/// A line from a server, or why there are no more.
enum Msg {
    Line(Vec<u8>),
    TooLong,
    Eof,
}

struct Conn {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Msg>,
    stderr: Arc<Mutex<Vec<u8>>>,
    def: ServerDef,
    next_id: u64,
    last_used: Instant,
}

impl Conn {
    fn kill(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stderr_tail(&self) -> String {
        let e = lock(&self.stderr);
        let s = String::from_utf8_lossy(&e);
        s.trim()
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.kill();
    }
}

type Slot = Arc<Mutex<Option<Conn>>>;

pub struct Pool {
    dir: PathBuf,
    conns: Mutex<HashMap<(String, String), Slot>>,
    reaper: std::sync::Once,
}

/// Why a call failed, before an answer.
enum CallError {
    Exited(String),
    Timeout,
    TooLong,
    Start(String),
}

impl Pool {
    pub fn new(dir: PathBuf) -> Pool {
        Pool {
            dir,
            conns: Mutex::new(HashMap::new()),
            reaper: std::sync::Once::new(),
        }
    }

    /// The registered servers (read afresh: edits apply to the next call).
    pub fn servers(&self) -> Result<BTreeMap<String, ServerDef>> {
        let path = self.dir.join("servers.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(Error::Internal(format!("{}: {e}", path.display()))),
        };
        let f: ServersFile = serde_json::from_str(&text).map_err(|e| {
            Error::Unprocessable(format!("{} is not valid: {e}; fix it", path.display()))
        })?;
        for (name, def) in &f.servers {
            check_grant_name("MCP server", name)?;
            if !def.command.starts_with('/') {
                return Err(Error::Unprocessable(format!(
                    "{}: server {name:?} needs an absolute command path",
                    path.display()
                )));
            }
        }
        Ok(f.servers)
    }

    pub fn list(&self) -> Result<Vec<McpServerInfo>> {
        Ok(self
            .servers()?
            .into_iter()
            .map(|(name, d)| McpServerInfo {
                name,
                command: d.command,
                args: d.args,
                env_keys: d.env.keys().cloned().collect(),
                keep_alive_secs: d.keep_alive_secs.unwrap_or(DEFAULT_KEEP_ALIVE),
            })
            .collect())
    }

    /// End every process of an island (its grants changed, or it is gone).
    pub fn close_island(&self, island: &str) {
        let slots: Vec<Slot> = lock(&self.conns)
            .iter()
            .filter(|((i, _), _)| i.split(' ').next() == Some(island))
            .map(|(_, s)| s.clone())
            .collect();
        for s in slots {
            lock(&s).take();
        }
    }

    /// End one (island, server) process.
    pub fn close(&self, island: &str, server: &str) {
        let slot = lock(&self.conns)
            .get(&(island.to_string(), server.to_string()))
            .cloned();
        if let Some(s) = slot {
            lock(&s).take();
        }
    }

    fn start_reaper(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        self.reaper.call_once(|| {
            let _ = std::thread::Builder::new()
                .name("mcp-reaper".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(2));
                    let Some(pool) = me.upgrade() else { return };
                    pool.reap();
                });
        });
    }

    /// End processes idle past their keep-alive.
    fn reap(&self) {
        let slots: Vec<Slot> = lock(&self.conns).values().cloned().collect();
        for s in slots {
            // A slot in use is busy, not idle.
            let Ok(mut g) = s.try_lock() else { continue };
            let idle = g.as_ref().is_some_and(|c| {
                c.last_used.elapsed()
                    >= Duration::from_secs(c.def.keep_alive_secs.unwrap_or(DEFAULT_KEEP_ALIVE))
            });
            if idle {
                g.take();
            }
        }
        // Forget empty slots nobody holds (islands gone, servers unused).
        lock(&self.conns).retain(|_, s| {
            Arc::strong_count(s) > 1 || s.try_lock().map(|g| g.is_some()).unwrap_or(true)
        });
    }

    /// One call on the (island, server) process, starting it when needed. `incarnation`
    /// tells apart islands that had the same name: a recreated one never meets an old
    /// process.
    #[allow(clippy::too_many_arguments)]
    fn call(
        self: &Arc<Self>,
        island: &str,
        incarnation: &str,
        server: &str,
        def: &ServerDef,
        method: &str,
        params: Option<Value>,
    ) -> std::result::Result<Value, CallError> {
        self.start_reaper();
        let slot = lock(&self.conns)
            .entry((format!("{island} {incarnation}"), server.to_string()))
            .or_default()
            .clone();
        // Calls on one process go one at a time; other pairs are not held up.
        let mut g = lock(&slot);
        let deadline = Instant::now() + CALL_TIMEOUT;
        if g.as_ref().is_some_and(|c| &c.def != def) {
            g.take();
        }
        if let Some(c) = g.as_mut() {
            if let Ok(Some(_)) = c.child.try_wait() {
                g.take();
            }
        }
        if g.is_none() {
            *g = Some(self.start(island, server, def, deadline)?);
        }
        let conn = g.as_mut().expect("started above");
        let r = request(conn, method, params, deadline);
        match &r {
            Ok(_) => {
                conn.last_used = Instant::now();
                if def.keep_alive_secs == Some(0) {
                    g.take();
                }
            }
            // A failed process is not trusted with the next call.
            Err(_) => {
                g.take();
            }
        }
        r
    }

    fn start(
        &self,
        island: &str,
        server: &str,
        def: &ServerDef,
        deadline: Instant,
    ) -> std::result::Result<Conn, CallError> {
        let work = self.dir.join("work").join(island).join(server);
        std::fs::create_dir_all(&work).map_err(|e| CallError::Start(e.to_string()))?;
        let mut cmd = Command::new(&def.command);
        cmd.args(&def.args)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", &work)
            .envs(&def.env)
            .env("DEJIMA_MCP_ISLAND", island)
            .current_dir(&work)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only an async-signal-safe call between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                crate::util::close_from(3);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| CallError::Start(format!("cannot start {:?}: {e}", def.command)))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr_pipe = child.stderr.take().expect("piped");
        // Bounded: a server that talks between calls waits, it does not fill our memory.
        let (tx, rx) = mpsc::sync_channel(64);
        // Writes to it carry the call's deadline (a server that stops reading cannot hold a
        // call, or the slot, forever).
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&stdin),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| CallError::Start(e.to_string()))?;
        std::thread::Builder::new()
            .name(format!("mcp-out-{server}"))
            .spawn(move || read_lines(stdout, tx))
            .map_err(|e| CallError::Start(e.to_string()))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let keep = stderr.clone();
        std::thread::Builder::new()
            .name(format!("mcp-err-{server}"))
            .spawn(move || {
                let mut r = stderr_pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut e = lock(&keep);
                    e.extend_from_slice(&buf[..n]);
                    // The last 4 KiB say why it failed.
                    if e.len() > 8192 {
                        let cut = e.len() - 4096;
                        e.drain(..cut);
                    }
                }
            })
            .map_err(|e| CallError::Start(e.to_string()))?;
        let mut conn = Conn {
            child,
            stdin,
            rx,
            stderr,
            def: def.clone(),
            next_id: 1,
            last_used: Instant::now(),
        };
        let init = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "dejimad", "version": env!("CARGO_PKG_VERSION")},
        });
        let answer = request(&mut conn, "initialize", Some(init), deadline)?;
        if answer.get("result").is_none() {
            log::warn!(
                "mcp server {server} refused initialize: {}",
                answer.get("error").cloned().unwrap_or(Value::Null)
            );
            return Err(CallError::Start(
                "it refused initialize (see the daemon's log)".into(),
            ));
        }
        notify(&mut conn, "notifications/initialized", deadline)?;
        log::info!("mcp server {server} started for island {island}");
        Ok(conn)
    }
}

fn read_lines(stdout: std::process::ChildStdout, tx: mpsc::SyncSender<Msg>) {
    let mut r = BufReader::new(stdout);
    loop {
        let mut line = Vec::new();
        match (&mut r)
            .take(MAX_MESSAGE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => {
                let _ = tx.send(Msg::Eof);
                return;
            }
            Ok(n) if n > MAX_MESSAGE => {
                let _ = tx.send(Msg::TooLong);
                return;
            }
            Ok(_) => {
                if tx.send(Msg::Line(line)).is_err() {
                    return;
                }
            }
        }
    }
}

fn exited(conn: &mut Conn) -> CallError {
    // Give it a moment to be reaped so its status is known.
    let status = (0..50)
        .find_map(|_| match conn.child.try_wait() {
            Ok(Some(s)) => Some(s.to_string()),
            _ => {
                std::thread::sleep(Duration::from_millis(10));
                None
            }
        })
        .unwrap_or_else(|| "closed its output".into());
    // The tail goes to the daemon's log only: servers print their configuration there.
    log::warn!(
        "mcp server exited: {status}; stderr: {}",
        conn.stderr_tail()
    );
    CallError::Exited(status)
}

/// Write all of `buf` to the server before `deadline`.
fn send(conn: &mut Conn, buf: &[u8], deadline: Instant) -> std::result::Result<(), CallError> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&conn.stdin);
    let mut rest = buf;
    while !rest.is_empty() {
        match conn.stdin.write(rest) {
            Ok(0) => return Err(exited(conn)),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(CallError::Timeout);
                }
                let mut p = [libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                }];
                // SAFETY: one valid pollfd for a descriptor this connection owns.
                unsafe { libc::poll(p.as_mut_ptr(), 1, left.as_millis().min(60_000) as i32 + 1) };
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(exited(conn)),
        }
    }
    Ok(())
}

fn notify(conn: &mut Conn, method: &str, deadline: Instant) -> std::result::Result<(), CallError> {
    let mut line =
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "method": method})).unwrap_or_default();
    line.push(b'\n');
    send(conn, &line, deadline)
}

/// Send one request and wait for its answer (the whole JSON-RPC response). Requests the
/// server makes of us meanwhile get an answer: `ping` is answered, others are refused.
fn request(
    conn: &mut Conn,
    method: &str,
    params: Option<Value>,
    deadline: Instant,
) -> std::result::Result<Value, CallError> {
    let id = conn.next_id;
    conn.next_id += 1;
    let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": method});
    if let Some(p) = params {
        msg["params"] = p;
    }
    let mut line = serde_json::to_vec(&msg).unwrap_or_default();
    line.push(b'\n');
    send(conn, &line, deadline)?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = match conn.rx.recv_timeout(left) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => return Err(CallError::Timeout),
            Err(RecvTimeoutError::Disconnected) => return Err(exited(conn)),
        };
        let line = match m {
            Msg::Line(l) => l,
            Msg::TooLong => return Err(CallError::TooLong),
            Msg::Eof => return Err(exited(conn)),
        };
        // Servers may log to stdout by mistake: what is not JSON-RPC is skipped.
        let Ok(v) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        let is_request = v.get("method").is_some();
        match (v.get("id"), is_request) {
            (Some(got), false) if got == &json!(id) => return Ok(v),
            (Some(rid), true) => {
                let answer = if v["method"] == "ping" {
                    json!({"jsonrpc": "2.0", "id": rid, "result": {}})
                } else {
                    json!({"jsonrpc": "2.0", "id": rid,
                           "error": {"code": -32601, "message": "not offered by the Dejima broker"}})
                };
                let mut l = serde_json::to_vec(&answer).unwrap_or_default();
                l.push(b'\n');
                send(conn, &l, deadline)?;
            }
            // Notifications and stale answers.
            _ => {}
        }
    }
}

impl Brokers {
    /// POST /v1/islands/{name}/mcp/grants
    pub fn grant_mcp(&self, asker: &Asker, island: &str, server: &str) -> Result<McpGrant> {
        check_grant_name("MCP server", server)?;
        self.islands.record(island)?;
        // The island exists; the body names what is not there: 422, not a 404 that would
        // read as "no such island".
        if !self.mcp.servers()?.contains_key(server) {
            return Err(Error::Unprocessable(format!(
                "no MCP server {server:?} is registered (see {}/servers.json)",
                self.mcp.dir.display()
            )));
        }
        self.grant_record("mcp.grant", island, asker, json!({"server": server}))?;
        self.islands.grant_mcp(island, server)
    }

    /// DELETE /v1/islands/{name}/mcp/grants/{server}
    pub fn revoke_mcp(&self, asker: &Asker, island: &str, server: &str) -> Result<()> {
        self.islands.revoke_mcp(island, server)?;
        self.mcp.close(island, server);
        let _ = self.grant_record("mcp.revoke", island, asker, json!({"server": server}));
        Ok(())
    }

    /// POST /v1/mcp/call
    pub fn mcp_call(&self, asker: &Asker, req: McpCall) -> Result<McpCallResult> {
        let island = asker.island_for(req.island.as_deref())?;
        let params_text = req
            .params
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let base = json!({"server": super::port::clip(&req.server), "method": super::port::clip(&req.method),
                          "params_sha256": sha256_hex(params_text.as_bytes())});
        let deny = |e: Error| self.deny("mcp.denied", &island, asker, e, base.clone());
        let rec = self.islands.record(&island)?;
        if !METHODS.contains(&req.method.as_str()) {
            return Err(deny(Error::bad(format!(
                "method {:?} is not brokered; allowed: {}",
                req.method,
                METHODS.join(", ")
            ))));
        }
        if let Some(p) = &req.params {
            if !p.is_object() {
                return Err(deny(Error::bad("params must be an object")));
            }
        }
        check_grant_name("MCP server", &req.server).map_err(deny)?;
        if !rec.mcp_grants.iter().any(|g| g.server == req.server) {
            return Err(deny(Error::Forbidden(format!(
                "island {island:?} is not granted MCP server {:?}",
                req.server
            ))));
        }
        let def = self.mcp.servers()?.remove(&req.server).ok_or_else(|| {
            deny(Error::NotFound(format!(
                "MCP server {:?} is no longer registered",
                req.server
            )))
        })?;
        let seq = self.crossing("mcp.call", &island, asker, base.clone())?;
        let answer = self
            .mcp
            .call(
                &island,
                &sha256_hex(rec.token.as_bytes())[..16],
                &req.server,
                &def,
                &req.method,
                req.params,
            )
            .map_err(|e| match e {
                CallError::Exited(why) => Error::BadGateway(format!(
                    "MCP server {:?} exited during the call ({why})",
                    req.server
                )),
                CallError::Timeout => Error::Timeout(format!(
                    "MCP server {:?} did not answer within {} s",
                    req.server,
                    CALL_TIMEOUT.as_secs()
                )),
                CallError::TooLong => Error::BadGateway(format!(
                    "MCP server {:?} sent a message over {} MiB",
                    req.server,
                    MAX_MESSAGE >> 20
                )),
                CallError::Start(why) => Error::BadGateway(format!(
                    "MCP server {:?} could not start: {why}",
                    req.server
                )),
            })?;
        Ok(match (answer.get("result"), answer.get("error")) {
            (Some(r), _) => McpCallResult {
                ok: true,
                is_error: r.get("isError").and_then(Value::as_bool).unwrap_or(false),
                result: Some(r.clone()),
                error: None,
                ledger_seq: seq,
            },
            (None, e) => McpCallResult {
                ok: false,
                is_error: true,
                result: None,
                error: Some(e.cloned().unwrap_or(Value::Null)),
                ledger_seq: seq,
            },
        })
    }
}
