//! The audit ledger: append-only JSONL segments under `$DEJIMA_HOME/audit/`, each entry
//! chained to the one before: `chain = hex(SHA-256(prev ‖ canonical JSON of the entry without
//! chain))`, or HMAC-SHA-256 under a key file (`dejimad --audit-key`), so someone who can
//! write the ledger but not the key cannot re-chain an edit. Segments rotate by size; the
//! chain runs on across them and across restarts (a torn last line is cut off at start).
//!
//! Cost: API requests are written at once but fsynced in groups by the `audit-sync` thread
//! (a crash can lose the last ~100 ms of them); `append_sync` is for broker crossings, which
//! must be on disk before their bytes cross, and fails closed when it cannot be.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::util::{self, lock};

/// A segment grows to about this size before the next one starts.
pub const SEGMENT_BYTES: u64 = 8 << 20;
/// The `prev` of the very first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// How often grouped entries are fsynced.
const SYNC_EVERY: Duration = Duration::from_millis(100);

/// An entry without its chain: exactly what is hashed (field order fixed by this struct,
/// object keys in `detail` sorted by serde_json's map).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Body {
    pub seq: u64,
    pub time: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub island: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub actor: String,
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
    pub prev: String,
}

/// One ledger line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    #[serde(flatten)]
    pub body: Body,
    pub chain: String,
}

/// What to record; the ledger fills in seq, time, prev and chain.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub kind: String,
    pub island: Option<String>,
    pub agent: Option<String>,
    pub actor: String,
    pub allowed: bool,
    pub method: Option<String>,
    pub route: Option<String>,
    pub status: Option<u16>,
    pub detail: Option<Value>,
}

/// The result of checking a ledger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Verdict {
    pub ok: bool,
    pub checked: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// `chain` for `body` after `prev`.
pub fn chain_of(body: &Body, key: Option<&[u8]>) -> String {
    let canon = serde_json::to_vec(body).unwrap_or_default();
    match key {
        Some(k) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(k).expect("HMAC takes any key length");
            mac.update(body.prev.as_bytes());
            mac.update(&canon);
            util::hex(&mac.finalize().into_bytes())
        }
        None => {
            let mut h = Sha256::new();
            h.update(body.prev.as_bytes());
            h.update(&canon);
            util::hex(&h.finalize())
        }
    }
}

/// The segment files of a ledger directory, oldest first.
pub fn segments(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(r) => r
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    v.sort();
    Ok(v)
}

/// Check the lines of `files` in order: each parses, its seq is the previous + 1, its prev is
/// the previous chain, and its chain is right. `start` is what the first line must follow
/// (None: whatever its own prev and seq say, for a lone segment).
pub fn verify_files(files: &[PathBuf], key: Option<&[u8]>, genesis: bool) -> io::Result<Verdict> {
    let mut expect: Option<(u64, String)> = genesis.then(|| (1, GENESIS.to_string()));
    let mut checked = 0;
    for f in files {
        let r = BufReader::new(File::open(f)?);
        for line in r.split(b'\n') {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            let bad = |seq: u64, why: String| Verdict {
                ok: false,
                checked,
                first_bad_seq: Some(seq),
                problem: Some(why),
            };
            let next_seq = expect.as_ref().map(|(s, _)| *s).unwrap_or(0);
            let e: Entry = match serde_json::from_slice(&line) {
                Ok(e) => e,
                Err(err) => return Ok(bad(next_seq, format!("unreadable entry: {err}"))),
            };
            if let Some((seq, prev)) = &expect {
                if e.body.seq != *seq {
                    return Ok(bad(
                        *seq,
                        format!("expected seq {seq}, found {}", e.body.seq),
                    ));
                }
                if e.body.prev != *prev {
                    return Ok(bad(*seq, "prev does not match the entry before".into()));
                }
            }
            if chain_of(&e.body, key) != e.chain {
                return Ok(bad(e.body.seq, "chain does not match the entry".into()));
            }
            let Some(next) = e.body.seq.checked_add(1) else {
                return Ok(bad(e.body.seq, "seq out of range".into()));
            };
            checked += 1;
            expect = Some((next, e.chain));
        }
    }
    Ok(Verdict {
        ok: true,
        checked,
        first_bad_seq: None,
        problem: None,
    })
}

/// Every entry of a ledger directory, oldest first (unreadable lines skipped).
pub fn read_all(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for f in segments(dir)? {
        for line in BufReader::new(File::open(&f)?).split(b'\n') {
            if let Ok(e) = serde_json::from_slice::<Entry>(&line?) {
                out.push(e);
            }
        }
    }
    Ok(out)
}

struct Tail {
    seq: u64,
    chain: String,
    file: File,
    path: PathBuf,
    index: u64,
    size: u64,
}

pub struct Ledger {
    dir: PathBuf,
    key: Option<Vec<u8>>,
    tail: Mutex<Tail>,
    dirty: AtomicBool,
    /// Refusals recorded per actor in the current minute (a flood of them must not fill the
    /// disk): (count, minute start).
    refusals: Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>,
}

/// Refusals of one actor recorded per minute; past it they are counted, and the count is
/// recorded with the next refusal after the minute.
const REFUSALS_PER_MINUTE: u32 = 30;
/// Broker denials ledgered per actor per minute (the rest are counted).
const DENIALS_PER_MINUTE: u32 = 120;

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("audit-{index:06}.jsonl"))
}

fn open_append(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(p)
}

impl Ledger {
    /// Open (or start) the ledger in `dir`, resuming the chain from its last entry. A torn
    /// last line (a crash mid-write) is cut off, so the chain verifies on.
    pub fn open(dir: &Path, key: Option<Vec<u8>>) -> io::Result<Arc<Ledger>> {
        fs::create_dir_all(dir)?;
        let segs = segments(dir)?;
        let index = segs
            .last()
            .and_then(|p| {
                p.file_name()?
                    .to_str()?
                    .strip_prefix("audit-")?
                    .strip_suffix(".jsonl")?
                    .parse()
                    .ok()
            })
            .unwrap_or(1u64);
        let (mut seq, mut chain) = (0, GENESIS.to_string());
        if let Some(last) = segs.last() {
            let bytes = fs::read(last)?;
            // Only a trailing fragment with no newline (a crash mid-write) is cut off. A
            // complete line that does not parse is evidence, left for `verify` to name.
            let end = bytes
                .iter()
                .rposition(|b| *b == b'\n')
                .map(|i| i + 1)
                .unwrap_or(0);
            if end < bytes.len() {
                log::warn!(
                    "audit: {} ends with {} byte(s) of a torn entry; cut off",
                    last.display(),
                    bytes.len() - end
                );
                let f = OpenOptions::new().write(true).open(last)?;
                f.set_len(end as u64)?;
                f.sync_all()?;
            }
            // The chain resumes from the newest entry that parses, in any segment.
            if let Some(e) = read_all(dir)?.last() {
                seq = e.body.seq;
                chain = e.chain.clone();
            }
        }
        let path = segment_path(dir, index);
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        let l = Arc::new(Ledger {
            dir: dir.to_path_buf(),
            key,
            tail: Mutex::new(Tail {
                seq,
                chain,
                file,
                path,
                index,
                size,
            }),
            dirty: AtomicBool::new(false),
            refusals: Mutex::new(std::collections::HashMap::new()),
        });
        {
            let w = Arc::downgrade(&l);
            std::thread::Builder::new()
                .name("audit-sync".into())
                .spawn(move || loop {
                    std::thread::sleep(SYNC_EVERY);
                    let Some(l) = w.upgrade() else { return };
                    if let Err(e) = l.sync() {
                        log::error!("audit: cannot sync the ledger: {e}");
                    }
                })?;
        }
        Ok(l)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    fn write(&self, r: Record, sync: bool) -> io::Result<Entry> {
        let mut t = lock(&self.tail);
        if t.size >= SEGMENT_BYTES {
            t.file.sync_all()?;
            t.index += 1;
            t.path = segment_path(&self.dir, t.index);
            t.file = open_append(&t.path)?;
            t.size = 0;
            File::open(&self.dir)?.sync_all()?;
        }
        let body = Body {
            seq: t.seq + 1,
            time: util::now_rfc3339(),
            kind: r.kind,
            island: r.island,
            agent: r.agent,
            actor: r.actor,
            decision: if r.allowed { "allowed" } else { "denied" }.into(),
            method: r.method,
            route: r.route,
            status: r.status,
            detail: r.detail,
            prev: t.chain.clone(),
        };
        let chain = chain_of(&body, self.key.as_deref());
        let e = Entry { body, chain };
        let mut line = serde_json::to_vec(&e).map_err(io::Error::other)?;
        line.push(b'\n');
        if let Err(err) = t.file.write_all(&line) {
            // A part-written line would be glued to the next one: take it back.
            let _ = t.file.set_len(t.size);
            return Err(err);
        }
        if sync {
            t.file.sync_data()?;
        } else {
            self.dirty.store(true, Ordering::SeqCst);
        }
        t.seq = e.body.seq;
        t.chain = e.chain.clone();
        t.size += line.len() as u64;
        Ok(e)
    }

    /// Record, fsynced with the next group (within ~100 ms). A failure is logged: the
    /// request it records has happened either way.
    pub fn append(&self, r: Record) {
        if let Err(e) = self.write(r, false) {
            log::error!("audit: cannot append to the ledger: {e}");
        }
    }

    /// Record a refusal, at most `REFUSALS_PER_MINUTE` per actor: past that they are only
    /// counted, and the count goes with the actor's first refusal of the next minute.
    pub fn append_refusal(&self, r: Record) {
        let key = r.actor.clone();
        self.append_limited(r, key, REFUSALS_PER_MINUTE);
    }

    /// Record a broker's refusal (a Port, capability or MCP denial), on its own budget of
    /// `DENIALS_PER_MINUTE` per actor, apart from the request refusals it comes with.
    pub fn append_denial(&self, r: Record) {
        let key = format!("broker {}", r.actor);
        self.append_limited(r, key, DENIALS_PER_MINUTE);
    }

    fn append_limited(&self, mut r: Record, key: String, per_minute: u32) {
        let suppressed = {
            let mut m = lock(&self.refusals);
            if m.len() > 10_000 {
                m.retain(|_, (_, since)| since.elapsed() < Duration::from_secs(60));
            }
            let e = m.entry(key).or_insert((0, std::time::Instant::now()));
            if e.1.elapsed() >= Duration::from_secs(60) {
                let over = e.0.saturating_sub(per_minute);
                *e = (1, std::time::Instant::now());
                over
            } else {
                e.0 += 1;
                if e.0 > per_minute {
                    return;
                }
                0
            }
        };
        if suppressed > 0 {
            match &mut r.detail {
                Some(serde_json::Value::Object(m)) => {
                    m.insert("suppressed_before".into(), suppressed.into());
                }
                _ => r.detail = Some(serde_json::json!({ "suppressed_before": suppressed })),
            }
        }
        self.append(r);
    }

    /// Record and fsync now; an error means the caller must not go ahead (fail closed).
    pub fn append_sync(&self, r: Record) -> io::Result<Entry> {
        self.write(r, true)
    }

    /// Flush grouped entries to disk.
    pub fn sync(&self) -> io::Result<()> {
        if self.dirty.swap(false, Ordering::SeqCst) {
            lock(&self.tail).file.sync_data()?;
        }
        Ok(())
    }

    /// Check the whole ledger from its genesis.
    pub fn verify(&self) -> io::Result<Verdict> {
        self.sync()?;
        verify_files(&segments(&self.dir)?, self.key.as_deref(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: usize) -> Record {
        Record {
            kind: "api.request".into(),
            actor: "socket".into(),
            allowed: true,
            method: Some("POST".into()),
            route: Some("/v1/islands".into()),
            status: Some(201),
            island: Some(format!("i{k}")),
            detail: Some(serde_json::json!({"b": 1, "a": [k]})),
            ..Record::default()
        }
    }

    fn lines(dir: &Path) -> (PathBuf, Vec<String>) {
        let f = segments(dir).unwrap().pop().unwrap();
        let text = fs::read_to_string(&f).unwrap();
        (f, text.lines().map(str::to_string).collect())
    }

    #[test]
    fn tampering_is_found_at_its_first_bad_seq() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), None).unwrap();
        for k in 0..10 {
            l.append(rec(k));
        }
        assert_eq!(
            l.verify().unwrap(),
            Verdict {
                ok: true,
                checked: 10,
                ..Default::default()
            }
        );
        drop(l);
        let (f, good) = lines(dir.path());
        let check = |ls: &[String]| {
            fs::write(&f, ls.join("\n") + "\n").unwrap();
            verify_files(&segments(dir.path()).unwrap(), None, true).unwrap()
        };
        // A flipped byte in entry 4's island.
        let mut ls = good.clone();
        ls[3] = ls[3].replace("\"i3\"", "\"j3\"");
        assert_eq!(check(&ls).first_bad_seq, Some(4));
        // A byte that breaks the JSON of entry 6.
        let mut ls = good.clone();
        ls[5].replace_range(0..1, "[");
        assert_eq!(check(&ls).first_bad_seq, Some(6));
        // Entry 5 deleted.
        let mut ls = good.clone();
        ls.remove(4);
        assert_eq!(check(&ls).first_bad_seq, Some(5));
        // Entries 7 and 8 swapped.
        let mut ls = good.clone();
        ls.swap(6, 7);
        assert_eq!(check(&ls).first_bad_seq, Some(7));
        // Re-chained without the key: a keyed ledger still says no.
        assert!(check(&good).ok);
    }

    #[test]
    fn a_keyed_ledger_cannot_be_rechained_without_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), Some(b"k3y".to_vec())).unwrap();
        for k in 0..3 {
            l.append(rec(k));
        }
        assert!(l.verify().unwrap().ok);
        drop(l);
        // An attacker edits entry 2 and recomputes every chain with plain SHA-256.
        let (f, ls) = lines(dir.path());
        let mut prev = GENESIS.to_string();
        let mut out = Vec::new();
        for (k, line) in ls.iter().enumerate() {
            let mut e: Entry = serde_json::from_str(line).unwrap();
            if k == 1 {
                e.body.actor = "someone-else".into();
            }
            e.body.prev = prev.clone();
            e.chain = chain_of(&e.body, None);
            prev = e.chain.clone();
            out.push(serde_json::to_string(&e).unwrap());
        }
        fs::write(&f, out.join("\n") + "\n").unwrap();
        let v = verify_files(&segments(dir.path()).unwrap(), Some(b"k3y"), true).unwrap();
        assert_eq!(v.first_bad_seq, Some(1));
        assert!(
            verify_files(&segments(dir.path()).unwrap(), None, true)
                .unwrap()
                .ok
        );
    }

    #[test]
    fn the_chain_resumes_across_restarts_torn_lines_and_segments() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), None).unwrap();
        l.append(rec(0));
        l.append_sync(rec(1)).unwrap();
        drop(l);
        // A crash mid-write leaves half a line.
        let (f, _) = lines(dir.path());
        let mut fh = OpenOptions::new().append(true).open(&f).unwrap();
        fh.write_all(b"{\"seq\":3,\"time\":\"2026").unwrap();
        drop(fh);
        let l = Ledger::open(dir.path(), None).unwrap();
        let e = l.append_sync(rec(2)).unwrap();
        assert_eq!(e.body.seq, 3);
        assert_eq!(
            l.verify().unwrap(),
            Verdict {
                ok: true,
                checked: 3,
                ..Default::default()
            }
        );
        // A full segment rolls over to the next, the chain running on.
        lock(&l.tail).size = SEGMENT_BYTES;
        l.append(rec(3));
        assert_eq!(segments(dir.path()).unwrap().len(), 2);
        drop(l);
        let l = Ledger::open(dir.path(), None).unwrap();
        assert_eq!(l.append_sync(rec(4)).unwrap().body.seq, 5);
        assert_eq!(l.verify().unwrap().checked, 5);
        assert_eq!(read_all(dir.path()).unwrap().len(), 5);
    }

    #[test]
    fn a_corrupt_entry_is_kept_as_evidence_not_cut_away() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), None).unwrap();
        for k in 0..4 {
            l.append(rec(k));
        }
        drop(l);
        let (f, mut ls) = lines(dir.path());
        ls[1] = "{not an entry".into();
        fs::write(&f, ls.join("\n") + "\n").unwrap();
        // A restart neither deletes the bad line nor anything after it, and appends go on.
        let l = Ledger::open(dir.path(), None).unwrap();
        assert_eq!(l.append_sync(rec(9)).unwrap().body.seq, 5);
        assert_eq!(lines(dir.path()).1.len(), 5);
        assert_eq!(l.verify().unwrap().first_bad_seq, Some(2));
    }

    #[test]
    fn a_flood_of_refusals_is_counted_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path(), None).unwrap();
        let refusal = || Record {
            kind: "api.request".into(),
            actor: "tcp:127.0.0.9".into(),
            allowed: false,
            status: Some(401),
            ..Record::default()
        };
        for _ in 0..1000 {
            l.append_refusal(refusal());
        }
        assert_eq!(l.verify().unwrap().checked, u64::from(REFUSALS_PER_MINUTE));
        // Another actor is not held back.
        l.append_refusal(Record {
            actor: "tcp:127.0.0.8".into(),
            ..refusal()
        });
        assert_eq!(
            l.verify().unwrap().checked,
            u64::from(REFUSALS_PER_MINUTE) + 1
        );
    }
}
