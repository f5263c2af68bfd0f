//! Recordings: each agent session of a recording island (`record: true`, or every island with
//! `dejimad --record`) is written as asciicast v2 under the island's folder. The bytes come
//! from `tmux pipe-pane` in the island (the pane's own output at the pane's size, whoever is
//! attached or not), carried out by one `docker exec` per recorded agent; the pane's size is
//! watched beside it and becomes `r` events. A `rec-<island>` thread per recorder writes the
//! file, flushing and fsyncing once a second, never on a client's path. Files roll over at
//! 32 MiB, and the oldest are dropped while an island holds more than its cap.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::Islands;
use crate::api::AgentRun;
use crate::error::{Error, Result};
use crate::process::Input;
use crate::runtime::{self, ExecOpts};
use crate::session::tmux;
use crate::util::lock;

/// A recording file rolls over past this size, or a quarter of the island's cap if smaller
/// (each part is a whole asciicast, so dropping the oldest keeps the rest playable).
const SEGMENT: u64 = 32 << 20;
/// Written to disk (flush and fsync) at least this often.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// In the island, as the agent: pipe the pane's output through a private FIFO to stdout;
/// print the pane's size (`cols rows`) to stderr at the start and whenever it changes.
const RECORD: &str = r#"t="=$1:"
f=$(mktemp -u /tmp/.dejima-rec.XXXXXX) && mkfifo -m 600 "$f" || exit 4
done_() { tmux -L dejima pipe-pane -t "$t" 2>/dev/null; rm -f "$f"; kill 0 2>/dev/null; exit 0; }
trap done_ EXIT HUP TERM INT
last=$(tmux -L dejima display-message -p -t "$t" '#{pane_width} #{pane_height}') || exit 3
echo "$last" >&2
tmux -L dejima pipe-pane -O -t "$t" "exec cat > '$f'" || exit 3
# The recording starts from the screen as it is, then the pane's own output.
printf '\033[H\033[2J'
tmux -L dejima capture-pane -p -e -t "$t" | awk 'NR>1{printf "\r\n"} {printf "%s", $0}'
tmux -L dejima display-message -p -t "$t" '#{cursor_y} #{cursor_x}' | { read y x; printf '\033[%d;%dH' $((y+1)) $((x+1)); }
( while sleep 0.25; do s=$(tmux -L dejima display-message -p -t "$t" '#{pane_width} #{pane_height}' 2>/dev/null) || exit 0; [ "$s" = "$last" ] || { echo "$s" >&2; last=$s; }; done ) &
cat "$f"
"#;

/// The pane's size as the recorder's stderr first reports it, and who waits for it.
type FirstSize = (Mutex<Option<(u16, u16)>>, std::sync::Condvar);

/// One recording, as the list shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordingInfo {
    pub id: String,
    pub agent: String,
    pub started_at: String,
    /// Absent while it is still being written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub bytes: u64,
    pub active: bool,
}

/// The running recorders, by (island, agent): their stop marks and current files.
#[derive(Default)]
pub struct Recorders {
    map: Mutex<HashMap<(String, String), Arc<Recorder>>>,
    /// A recorder that ended without recording anything is not tried again before this.
    backoff: Mutex<HashMap<(String, String), Instant>>,
}

struct Recorder {
    stop: AtomicBool,
    /// The id of the file being written.
    current: Mutex<String>,
}

/// A recording id: `<agent>-<unix ms>`; nothing else reaches the file system.
pub fn valid_id(id: &str) -> bool {
    match id.rsplit_once('-') {
        Some((agent, ms)) => {
            !agent.is_empty()
                && agent.len() <= 32
                && agent
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && !ms.is_empty()
                && ms.len() <= 16
                && ms.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn rfc3339_of(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Islands {
    fn recordings_dir(&self, island: &str) -> PathBuf {
        self.home.island_dir(island).join("recordings")
    }

    /// Whether an island's sessions are recorded.
    pub fn recording(&self, island: &str) -> bool {
        self.config.record_all || self.with_slot(island, |s| s.rec.record).unwrap_or(false)
    }

    /// PATCH `record`: start or stop recording an island's sessions.
    pub fn set_record(self: &Arc<Islands>, island: &str, on: bool) -> Result<()> {
        self.update(island, |r| r.record = on)?;
        self.sweep_recorders();
        Ok(())
    }

    /// Start a recorder for every live agent session of a recording island that has none,
    /// and stop those whose island no longer records or runs. Called every 2 s.
    pub fn sweep_recorders(self: &Arc<Islands>) {
        let names = self.names();
        let mut want: Vec<(String, String)> = Vec::new();
        for n in &names {
            if !self.recording(n) || !self.observed.running(n) {
                continue;
            }
            // The agents seen running; before the first look, every agent of the record.
            let live = self
                .with_slot(n, |s| {
                    s.agent_obs.as_ref().map(|m| {
                        m.iter()
                            .filter(|(_, o)| o.state == AgentRun::Running)
                            .map(|(id, _)| id.clone())
                            .collect::<Vec<_>>()
                    })
                })
                .flatten()
                .unwrap_or_else(|| {
                    self.record(n)
                        .map(|r| r.agents.iter().map(|a| a.id.clone()).collect())
                        .unwrap_or_default()
                });
            let headless: Vec<String> = self
                .record(n)
                .map(|r| {
                    r.agents
                        .iter()
                        .filter(|a| a.headless())
                        .map(|a| a.id.clone())
                        .collect()
                })
                .unwrap_or_default();
            for id in live {
                if !headless.contains(&id) {
                    want.push((n.clone(), id));
                }
            }
        }
        {
            let now = Instant::now();
            let mut b = lock(&self.recorders.backoff);
            b.retain(|_, until| *until > now);
            want.retain(|k| !b.contains_key(k));
        }
        let mut map = lock(&self.recorders.map);
        // A recorder no longer wanted is told to stop but stays listed until its thread (and
        // its clean-up in the island, which closes the pane's pipe) is done: a new one for the
        // same pane starts only after, or the old clean-up would close the new pipe.
        for (k, r) in map.iter() {
            if !want.contains(k) {
                r.stop.store(true, Ordering::SeqCst);
            }
        }
        for k in want {
            if map.contains_key(&k) {
                continue;
            }
            let r = Arc::new(Recorder {
                stop: AtomicBool::new(false),
                current: Mutex::new(String::new()),
            });
            map.insert(k.clone(), r.clone());
            let (island, agent) = k;
            let me = Some(self.clone());
            let name = format!("rec-{island}");
            let spawned = std::thread::Builder::new().name(name).spawn(move || {
                if let Some(me) = me {
                    let recorded = match me.run_recorder(&island, &agent, &r) {
                        Ok(n) => n,
                        Err(e) => {
                            log::warn!("island {island}: recording agent {agent}: {e}");
                            0
                        }
                    };
                    if recorded == 0 {
                        lock(&me.recorders.backoff).insert(
                            (island.clone(), agent.clone()),
                            Instant::now() + Duration::from_secs(10),
                        );
                    }
                    r.stop.store(true, Ordering::SeqCst);
                    // Forgotten only if it is still this recorder (a new one may be there).
                    let mut map = lock(&me.recorders.map);
                    if map
                        .get(&(island.clone(), agent.clone()))
                        .is_some_and(|x| Arc::ptr_eq(x, &r))
                    {
                        map.remove(&(island, agent));
                    }
                }
            });
            if let Err(e) = spawned {
                log::warn!("cannot start a recorder thread: {e}");
            }
        }
    }

    /// Stop every recorder of an island (purge, hibernate).
    pub fn stop_recorders(&self, island: &str) {
        for (k, r) in lock(&self.recorders.map).iter() {
            if k.0 == island {
                r.stop.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Record until the session or the recording ends; the bytes of output recorded.
    fn run_recorder(&self, island: &str, agent: &str, r: &Recorder) -> io::Result<u64> {
        let dir = self.recordings_dir(island);
        std::fs::create_dir_all(&dir)?;
        let mark = self.runtime.mark();
        let session = tmux::session_name(agent);
        let argv = self.runtime.pipe_exec_argv(
            island,
            runtime::AGENT_USER,
            &[(tmux::ATTACH_MARK, &mark)],
            &["sh", "-c", RECORD, "sh", &session],
        );
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        crate::process::die_with_parent(&mut cmd);
        let mut child = cmd.spawn()?;
        let result = self.record_stream(island, agent, r, &dir, &mut child);
        crate::process::kill_group(&mut child);
        let _ = child.wait();
        // The pipe and the reader in the island are ended there (the docker CLI's end does
        // not reach into the container).
        let opts = ExecOpts {
            timeout: Duration::from_secs(15),
            ..ExecOpts::agent(&["sh", "-c", tmux::DETACH_MARKED, "sh", &mark])
        };
        let _ = self.runtime.exec(island, &opts, Input::None);
        result
    }

    fn record_stream(
        &self,
        island: &str,
        agent: &str,
        r: &Recorder,
        dir: &Path,
        child: &mut Child,
    ) -> io::Result<u64> {
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr"))?;
        // Sizes arrive on stderr: `cols rows` lines.
        let sizes: Arc<Mutex<Vec<(Instant, u16, u16)>>> = Arc::default();
        let first: Arc<FirstSize> = Arc::default();
        {
            let (sizes, first) = (sizes.clone(), first.clone());
            std::thread::Builder::new()
                .name("rec-size".into())
                .spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                        let mut it = line.split_whitespace().map(|x| x.parse::<u16>());
                        if let (Some(Ok(c)), Some(Ok(rw))) = (it.next(), it.next()) {
                            let mut f = lock(&first.0);
                            if f.is_none() {
                                *f = Some((c, rw));
                                first.1.notify_all();
                            } else {
                                lock(&sizes).push((Instant::now(), c, rw));
                            }
                        }
                    }
                    let mut f = lock(&first.0);
                    if f.is_none() {
                        *f = Some((0, 0));
                        first.1.notify_all();
                    }
                })?;
        }
        let (cols, rows) = {
            let mut f = lock(&first.0);
            let deadline = Instant::now() + Duration::from_secs(30);
            while f.is_none() && Instant::now() < deadline {
                f = first
                    .1
                    .wait_timeout(f, Duration::from_millis(200))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
                if r.stop.load(Ordering::SeqCst) {
                    return Ok(0);
                }
            }
            f.unwrap_or((0, 0))
        };
        if cols == 0 {
            return Err(io::Error::other("the agent's pane did not answer"));
        }
        let mut w = Writer::open(dir, agent, island, cols, rows)?;
        *lock(&r.current) = w.id.clone();
        self.enforce_cap(island, &w.id);
        // The pane as a terminal would show it, so a new part starts from the screen.
        let mut screen = vt100::Parser::new(rows, cols, 0);
        crate::session::pump::set_nonblocking(stdout.as_raw_fd())?;
        let mut buf = vec![0u8; 64 << 10];
        let mut carry: Vec<u8> = Vec::new();
        let mut last_sync = Instant::now();
        let mut recorded: u64 = 0;
        loop {
            if r.stop.load(Ordering::SeqCst) {
                break;
            }
            let mut p = libc::pollfd {
                fd: stdout.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 500) };
            for (t, c, rw) in lock(&sizes).drain(..) {
                w.resize(t, c, rw)?;
                screen.screen_mut().set_size(rw, c);
            }
            let mut eof = false;
            match stdout.read(&mut buf) {
                Ok(0) => eof = true,
                Ok(n) => {
                    recorded += n as u64;
                    carry.extend_from_slice(&buf[..n]);
                    let cut = crate::util::utf8_end(&carry);
                    let rest = carry.split_off(cut);
                    screen.process(&carry);
                    w.output(&carry)?;
                    carry = rest;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if w.bytes >= (self.config.record_max / 4).clamp(64 << 10, SEGMENT) {
                let (c, rw) = (w.cols, w.rows);
                w.finish()?;
                w = Writer::open(dir, agent, island, c, rw)?;
                let mut first = b"\x1b[H\x1b[2J".to_vec();
                first.extend_from_slice(&screen.screen().state_formatted());
                w.output(&first)?;
                *lock(&r.current) = w.id.clone();
                self.enforce_cap(island, &w.id);
            }
            if last_sync.elapsed() >= SYNC_EVERY {
                w.sync()?;
                last_sync = Instant::now();
            }
            if eof {
                break;
            }
        }
        if !carry.is_empty() {
            w.output(&carry)?;
        }
        let id = w.id.clone();
        w.finish()?;
        if recorded == 0 {
            // Nothing came: leave no empty recording behind.
            let _ = std::fs::remove_file(dir.join(format!("{id}.cast")));
        }
        Ok(recorded)
    }

    /// Drop the oldest finished recordings while the island holds more than its cap.
    fn enforce_cap(&self, island: &str, keep: &str) {
        let Ok(list) = self.recordings(island) else {
            return;
        };
        let mut total: u64 = list.iter().map(|r| r.bytes).sum();
        for r in list.iter().rev() {
            if total <= self.config.record_max {
                break;
            }
            if r.active || r.id == keep {
                continue;
            }
            if std::fs::remove_file(self.recordings_dir(island).join(format!("{}.cast", r.id)))
                .is_ok()
            {
                log::info!("island {island}: recording {} dropped (cap)", r.id);
                total = total.saturating_sub(r.bytes);
            }
        }
    }

    /// GET /v1/islands/{name}/recordings: newest first.
    pub fn recordings(&self, island: &str) -> Result<Vec<RecordingInfo>> {
        self.record(island)?;
        let dir = self.recordings_dir(island);
        let active: Vec<String> = lock(&self.recorders.map)
            .iter()
            .filter(|(k, r)| k.0 == island && !r.stop.load(Ordering::SeqCst))
            .map(|(_, r)| lock(&r.current).clone())
            .collect();
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::Internal(format!("reading {}: {e}", dir.display()))),
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".cast") else {
                continue;
            };
            if !valid_id(id) {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            let (agent, ms) = id.rsplit_once('-').unwrap_or((id, "0"));
            let started = UNIX_EPOCH + Duration::from_millis(ms.parse::<u64>().unwrap_or(0));
            let is_active = active.iter().any(|a| a == id);
            out.push(RecordingInfo {
                id: id.to_string(),
                agent: agent.to_string(),
                started_at: rfc3339_of(started),
                ended_at: (!is_active).then(|| rfc3339_of(meta.modified().unwrap_or(started))),
                bytes: meta.len(),
                active: is_active,
            });
        }
        out.sort_by(|a, b| {
            let ms = |r: &RecordingInfo| {
                r.id.rsplit_once('-')
                    .and_then(|(_, m)| m.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            ms(b).cmp(&ms(a)).then(b.id.cmp(&a.id))
        });
        Ok(out)
    }

    /// The path of one recording (GET streams it).
    pub fn recording_file(&self, island: &str, id: &str) -> Result<PathBuf> {
        self.record(island)?;
        let p = self.recordings_dir(island).join(format!("{id}.cast"));
        if !valid_id(id) || !p.is_file() {
            return Err(Error::NotFound(format!(
                "no recording {id:?} in island {island:?}"
            )));
        }
        Ok(p)
    }

    /// DELETE one recording (not the one being written).
    pub fn delete_recording(&self, island: &str, id: &str) -> Result<()> {
        let p = self.recording_file(island, id)?;
        let active = lock(&self.recorders.map).iter().any(|(k, r)| {
            k.0 == island && *lock(&r.current) == id && !r.stop.load(Ordering::SeqCst)
        });
        if active {
            return Err(Error::Conflict(format!(
                "recording {id} is being written; stop recording (PATCH record: false) first"
            )));
        }
        std::fs::remove_file(&p)
            .map_err(|e| Error::Internal(format!("removing {}: {e}", p.display())))
    }
}

/// One asciicast v2 file being written.
struct Writer {
    id: String,
    out: BufWriter<std::fs::File>,
    started: Instant,
    bytes: u64,
    cols: u16,
    rows: u16,
}

impl Writer {
    fn open(dir: &Path, agent: &str, island: &str, cols: u16, rows: u16) -> io::Result<Writer> {
        let mut ms = unix_ms();
        // Ids are unique per island: a second file in the same millisecond moves on.
        let (id, file) = loop {
            let id = format!("{agent}-{ms}");
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join(format!("{id}.cast")))
            {
                Ok(f) => break (id, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => ms += 1,
                Err(e) => return Err(e),
            }
        };
        // Written by hand so `version` comes first, as players expect.
        let header = format!(
            r#"{{"version":2,"width":{cols},"height":{rows},"timestamp":{},"env":{{"TERM":"xterm-256color","SHELL":"/bin/bash"}},"title":{}}}"#,
            ms / 1000,
            serde_json::Value::String(format!("{island}/{agent}"))
        );
        let mut w = Writer {
            id,
            out: BufWriter::with_capacity(256 << 10, file),
            started: Instant::now(),
            bytes: 0,
            cols,
            rows,
        };
        w.line(&header)?;
        Ok(w)
    }

    fn line(&mut self, s: &str) -> io::Result<()> {
        self.out.write_all(s.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.bytes += s.len() as u64 + 1;
        Ok(())
    }

    fn at(&self, t: Instant) -> f64 {
        (t.saturating_duration_since(self.started).as_micros() as f64) / 1e6
    }

    fn output(&mut self, b: &[u8]) -> io::Result<()> {
        if b.is_empty() {
            return Ok(());
        }
        let t = self.at(Instant::now());
        let ev = serde_json::json!([t, "o", String::from_utf8_lossy(b)]);
        self.line(&ev.to_string())
    }

    fn resize(&mut self, when: Instant, cols: u16, rows: u16) -> io::Result<()> {
        self.cols = cols;
        self.rows = rows;
        let ev = serde_json::json!([self.at(when), "r", format!("{cols}x{rows}")]);
        self.line(&ev.to_string())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }

    fn finish(mut self) -> io::Result<()> {
        self.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("a1-1764669000123"));
        assert!(valid_id("a12-1"));
        assert!(!valid_id("../a1-1"));
        assert!(!valid_id("a1-"));
        assert!(!valid_id("-123"));
        assert!(!valid_id("a1-12x"));
        assert!(!valid_id("A1-12"));
        assert!(!valid_id("a1"));
    }

    #[test]
    fn writes_asciicast_v2() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(dir.path(), "a1", "isl", 80, 24).unwrap();
        let id = w.id.clone();
        w.output("héllo\r\n".as_bytes()).unwrap();
        w.resize(Instant::now(), 100, 30).unwrap();
        w.finish().unwrap();
        let text = std::fs::read_to_string(dir.path().join(format!("{id}.cast"))).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(text.starts_with(r#"{"version":2,"#));
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["width"], 80);
        assert_eq!(lines[1][1], "o");
        assert_eq!(lines[1][2], "héllo\r\n");
        assert_eq!(lines[2][1], "r");
        assert_eq!(lines[2][2], "100x30");
    }
}
