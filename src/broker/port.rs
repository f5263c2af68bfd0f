//! Port: brokered host files. An operator grants an island a host folder (`ro` or `rw`);
//! the island (or an operator) may then copy from it (intake), copy island files out to the
//! island's export area (export), and write an island file into an `rw` folder (write).
//!
//! Safety, host side: paths are walked by descriptor (`hostfs`), links are never followed,
//! files are read from the descriptor that was checked, and writes go to a new temporary
//! file renamed into place. Island side: the island's own `tar`, run as the agent, packs
//! and unpacks, so whatever links the island plants resolve inside the island only; the
//! daemon reads that archive as data and writes regular files and folders only.
//!
//! Each crossing is spooled first (so what is ledgered — counts, bytes, SHA-256 — is
//! exactly what crosses), ledgered and fsynced, and only then delivered.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::hostfs::{self, Node, PathError};
use super::{Asker, Brokers};
use crate::api::{
    ExportRequest, GrantScope, IntakeRequest, PortMode, PortResult, PortScope, PortWriteRequest,
};
use crate::error::{Error, Result};
use crate::island::paths;
use crate::process::Input;
use crate::runtime::{ExecOpts, AGENT_HOME};

/// At most this many entries (files and folders) cross in one call.
pub const MAX_FILES: u64 = 2_000;
/// At most this many content bytes cross in one call.
pub const MAX_BYTES: u64 = 512 << 20;
/// Folders nested deeper than this are refused (each level holds a descriptor).
const MAX_DEPTH: usize = 64;
/// An island's export area holds at most this much; past it, exports are refused (507)
/// until the operator clears some.
pub const EXPORT_QUOTA: u64 = 2 << 30;
/// Crossings spooled at once, daemon-wide (each may hold up to `MAX_BYTES` of spool).
const CONCURRENT: usize = 4;
/// A crossing's island side (its tar) is killed past this.
const ISLAND_DEADLINE: Duration = Duration::from_secs(600);
/// Longest GNU long-name or PAX header an island's archive may carry.
const MAX_META: u64 = 64 << 10;

/// A place among the crossings under way; released when dropped.
pub struct Permit<'a>(&'a std::sync::Mutex<usize>);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *crate::util::lock(self.0) -= 1;
    }
}

/// Take a place among the crossings under way, or say to come back.
pub fn permit(n: &std::sync::Mutex<usize>) -> Result<Permit<'_>> {
    let mut g = crate::util::lock(n);
    if *g >= CONCURRENT {
        return Err(Error::TooManyRequests(format!(
            "{CONCURRENT} Port crossings are under way; try again shortly"
        )));
    }
    *g += 1;
    Ok(Permit(n))
}

/// Bytes under a host folder (links not followed).
fn usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

pub use crate::util::clip;

/// A spool file under `$DEJIMA_HOME/tmp`, removed when dropped.
struct Spool {
    path: PathBuf,
    file: File,
}

impl Spool {
    fn new(dir: &Path) -> io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("port-{}", crate::util::random_hex(8)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Spool { path, file })
    }
    fn rewind(&mut self) -> io::Result<&mut File> {
        self.file.seek(SeekFrom::Start(0))?;
        Ok(&mut self.file)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A writer that hashes what passes through it (when asked to).
struct HashingWriter<W: Write> {
    inner: W,
    hash: Option<Sha256>,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hash {
            h.update(&buf[..n]);
        }
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Exactly `left` bytes of a file, hashed when asked; an early end means it shrank while
/// read.
struct ExactReader<'a> {
    inner: &'a mut File,
    left: u64,
    hash: Option<&'a mut Sha256>,
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a file shrank while it was read",
            ));
        }
        if let Some(h) = &mut self.hash {
            h.update(&buf[..n]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// What an intake packed.
#[derive(Default)]
struct Packed {
    files: u64,
    entries: u64,
    bytes: u64,
    skipped: Vec<String>,
    /// The content's SHA-256 when a single file was packed.
    file_sha256: Option<String>,
}

fn path_err(e: PathError) -> Error {
    match e {
        PathError::Escape(m) | PathError::Link(m) => Error::Forbidden(m),
        PathError::Invalid(m) => Error::BadRequest(m),
        PathError::IsFolder(m) => Error::Conflict(m),
        PathError::NotFound(m) => Error::NotFound(m),
        PathError::Io(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            Error::Forbidden(format!("the daemon may not read or write there: {e}"))
        }
        PathError::Io(e) => Error::Internal(format!("host file error: {e}")),
    }
}

fn too_many(what: &str) -> Error {
    Error::TooLarge(format!(
        "{what}: Port moves at most {MAX_FILES} files and {} MiB per call; take a smaller part",
        MAX_BYTES >> 20
    ))
}

/// An island path given in a body (not percent-encoded): absolute, no `..`, under the
/// workspace or the agent home.
pub fn island_path(p: &str) -> Result<String> {
    if p.contains('\0') {
        return Err(Error::Forbidden("the path contains a NUL byte".into()));
    }
    if !p.starts_with('/') {
        return Err(Error::bad(format!(
            "island path {p:?} must be absolute (under /workspace or {AGENT_HOME})"
        )));
    }
    if p.split('/').any(|s| s == "..") {
        return Err(Error::Forbidden(format!(
            "island path {p:?} may not contain \"..\""
        )));
    }
    let norm = format!(
        "/{}",
        p.split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect::<Vec<_>>()
            .join("/")
    );
    if !paths::under_roots(&norm) {
        return Err(Error::Forbidden(format!(
            "island path {p:?} is outside the workspace and the agent home"
        )));
    }
    Ok(norm)
}

fn split_parent(p: &str) -> (&str, &str) {
    match p.rsplit_once('/') {
        Some(("", b)) => ("/", b),
        Some((a, b)) => (a, b),
        None => ("/", p),
    }
}

impl Brokers {
    // ---- grants (operator acts) ----

    /// POST /v1/islands/{name}/port/scopes
    pub fn grant_scope(&self, asker: &Asker, island: &str, req: GrantScope) -> Result<PortScope> {
        self.islands.record(island)?;
        let p = Path::new(&req.host_path);
        if !p.is_absolute() {
            return Err(Error::bad(format!(
                "host_path {:?} must be absolute",
                req.host_path
            )));
        }
        // Canonical once, at grant time; every later use walks it again without links.
        let canonical = std::fs::canonicalize(p)
            .map_err(|e| Error::bad(format!("host_path {:?}: {e}", req.host_path)))?;
        if !canonical.is_dir() {
            return Err(Error::bad(format!(
                "host_path {:?} is not a folder",
                req.host_path
            )));
        }
        // Never the daemon's own state (inside it, or a folder holding it), the host root,
        // kernel and device trees, or the engine's data.
        let off_limits = [
            "/proc",
            "/sys",
            "/dev",
            "/run",
            "/var/run",
            "/var/lib/docker",
            "/var/lib/containerd",
        ];
        if canonical == Path::new("/")
            || canonical.starts_with(&self.home)
            || self.home.starts_with(&canonical)
            || off_limits.iter().any(|p| canonical.starts_with(p))
        {
            return Err(Error::Forbidden(format!(
                "host_path {:?} would expose the host root, the daemon's own state, or a system tree",
                req.host_path
            )));
        }
        let canonical = canonical
            .to_str()
            .ok_or_else(|| Error::bad("host_path is not valid UTF-8"))?
            .to_string();
        let scope = self.islands.grant_scope(island, &req, &canonical)?;
        if let Err(e) = self.grant_record(
            "port.grant",
            island,
            asker,
            json!({"scope": scope.name, "host_path": scope.host_path, "mode": scope.mode}),
        ) {
            let _ = self.islands.revoke_scope(island, &scope.name);
            return Err(e);
        }
        Ok(scope)
    }

    /// DELETE /v1/islands/{name}/port/scopes/{scope}
    pub fn revoke_scope(&self, asker: &Asker, island: &str, scope: &str) -> Result<()> {
        let s = self.islands.revoke_scope(island, scope)?;
        // Revoked either way (failing closed means less access); a lost record is logged.
        let _ = self.grant_record(
            "port.revoke",
            island,
            asker,
            json!({"scope": s.name, "host_path": s.host_path}),
        );
        Ok(())
    }

    // ---- crossings ----

    /// POST /v1/islands/{name}/port/intake: host scope → island.
    pub fn intake(&self, asker: &Asker, island: &str, req: IntakeRequest) -> Result<PortResult> {
        let base = json!({"scope": clip(&req.scope), "rel": clip(&req.src_rel)});
        let deny = |e: Error| self.deny("port.intake", island, asker, e, base.clone());
        let scope = self.islands.scope(island, &req.scope).map_err(deny)?;
        let comps = hostfs::components(&req.src_rel).map_err(|e| deny(path_err(e)))?;
        let rel = comps.join("/");
        let dest = match &req.dest {
            Some(d) => island_path(d).map_err(deny)?,
            None => {
                let mut d = format!("{AGENT_HOME}/intake/{}", scope.name);
                if !rel.is_empty() {
                    d.push('/');
                    d.push_str(&rel);
                }
                d
            }
        };
        self.islands.require_running(island)?;
        let root = hostfs::open_root(Path::new(&scope.host_path)).map_err(|e| deny(path_err(e)))?;
        let node = match comps.split_last() {
            None => Node::Dir(
                root.try_clone()
                    .map_err(|e| Error::Internal(e.to_string()))?,
            ),
            Some((leaf, dirs)) => {
                let parent =
                    hostfs::walk_dirs(root.as_fd(), dirs, false).map_err(|e| deny(path_err(e)))?;
                hostfs::open_node(parent.as_fd(), leaf).map_err(|e| deny(path_err(e)))?
            }
        };
        if let Node::Other(what) = node {
            return Err(deny(Error::Forbidden(format!(
                "{rel:?} is a {what}; Port copies files and folders and never follows links"
            ))));
        }
        let (dest_parent, dest_base) = split_parent(&dest);
        let _permit = permit(&self.port_crossings)?;
        let mut spool =
            Spool::new(&self.spool_dir()).map_err(|e| Error::Internal(e.to_string()))?;
        let mut packed = Packed::default();
        // One hash per crossing: a file's content, or a folder's archive.
        let folder = matches!(node, Node::Dir(_));
        let archive_sha = {
            let mut w = HashingWriter {
                inner: io::BufWriter::with_capacity(1 << 20, &mut spool.file),
                hash: folder.then(Sha256::new),
                len: 0,
            };
            let mut b = tar::Builder::new(&mut w);
            pack(&mut b, node, dest_base, "", 0, &mut packed).map_err(|e| match e {
                Error::TooLarge(_) | Error::Forbidden(_) => deny(e),
                e => e,
            })?;
            b.finish()
                .map_err(|e| Error::Internal(format!("cannot spool: {e}")))?;
            drop(b);
            w.flush()
                .map_err(|e| Error::Internal(format!("cannot spool: {e}")))?;
            w.hash.take().map(|h| crate::util::hex(&h.finalize()))
        };
        let sha256 = packed
            .file_sha256
            .clone()
            .or(archive_sha)
            .unwrap_or_default();
        let seq = self.crossing(
            "port.intake",
            island,
            asker,
            json!({"scope": scope.name, "rel": rel, "dest": dest, "files": packed.files,
                   "bytes": packed.bytes, "sha256": sha256, "skipped": packed.skipped.len()}),
        )?;
        let opts = ExecOpts {
            timeout: ISLAND_DEADLINE,
            cap: 64 << 10,
            ..ExecOpts::agent(&[
                "sh",
                "-c",
                "mkdir -p -- \"$1\" && exec tar -x --no-same-owner -C \"$1\"",
                "sh",
                dest_parent,
            ])
        };
        let file = spool.rewind().map_err(|e| Error::Internal(e.to_string()))?;
        let out = self
            .islands
            .runtime
            .exec(island, &opts, Input::Reader(file))?;
        if !out.ok() {
            return Err(Error::Conflict(format!(
                "the island could not unpack into {dest:?}: {}",
                out.stderr_str().trim()
            )));
        }
        Ok(PortResult {
            scope: Some(scope.name),
            src_rel: Some(rel),
            dest: Some(dest),
            files: packed.files,
            bytes: packed.bytes,
            sha256,
            skipped: packed.skipped,
            ledger_seq: seq,
            ..Default::default()
        })
    }

    /// Pack `src` (an island path) with the island's own tar, as the agent, into a spool
    /// (capped); check every entry as data. The spool, its SHA-256 and what it holds.
    fn spool_from_island(
        &self,
        island: &str,
        src: &str,
        kind: &str,
        asker: &Asker,
    ) -> Result<(Spool, String, Unpacked)> {
        let deny = |e: Error| self.deny(kind, island, asker, e, json!({"src": clip(src)}));
        let (parent, base) = split_parent(src);
        let opts = ExecOpts::agent(&["tar", "-c", "-C", parent, "--", base]);
        let mut stream = self.islands.runtime.exec_stream(island, &opts)?;
        // An island can stop its own tar; the crossing does not wait for it forever.
        let _dog = crate::process::Watchdog::new(stream.pid(), ISLAND_DEADLINE, "a Port crossing")
            .map_err(|e| Error::Internal(e.to_string()))?;
        let mut spool =
            Spool::new(&self.spool_dir()).map_err(|e| Error::Internal(e.to_string()))?;
        // Content plus a header per entry, with room to spare.
        let limit = MAX_BYTES + (MAX_FILES + 16) * 1536;
        let hash;
        let copied = {
            let out = stream
                .stdout
                .as_mut()
                .ok_or_else(|| Error::Internal("no stdout".into()))?;
            let mut w = HashingWriter {
                inner: io::BufWriter::with_capacity(1 << 20, &mut spool.file),
                hash: Some(Sha256::new()),
                len: 0,
            };
            let r = io::copy(&mut out.take(limit + 1), &mut w).and_then(|_| w.flush());
            hash = w.hash.take();
            r.map(|_| w.len)
        };
        let copied = match copied {
            Ok(n) => n,
            Err(e) => {
                stream.kill();
                return Err(Error::Internal(format!("reading from the island: {e}")));
            }
        };
        if copied > limit {
            stream.kill();
            return Err(deny(too_many(&format!("{src:?} is too large"))));
        }
        let status = stream.wait();
        if status != Some(0) {
            let err = stream.stderr();
            let e = if err.contains("No such file") || err.contains("Cannot stat") {
                Error::NotFound(format!("{src:?} does not exist in the island"))
            } else if err.contains("not running") || err.contains("is paused") {
                Error::Conflict(format!("island {island:?} is not running; wake it first"))
            } else {
                Error::Conflict(format!("the island could not pack {src:?}: {}", err.trim()))
            };
            return Err(e);
        }
        let sha = hash
            .map(|h| crate::util::hex(&h.finalize()))
            .unwrap_or_default();
        let file = spool.rewind().map_err(|e| Error::Internal(e.to_string()))?;
        let u = unpack(file, base, None).map_err(|e| match e {
            Error::TooLarge(_) | Error::Forbidden(_) | Error::BadRequest(_) => deny(e),
            e => e,
        })?;
        Ok((spool, sha, u))
    }

    /// POST /v1/islands/{name}/port/export: island → the island's export area on the host.
    pub fn export(&self, asker: &Asker, island: &str, req: ExportRequest) -> Result<PortResult> {
        let deny = |e: Error| {
            self.deny(
                "port.export",
                island,
                asker,
                e,
                json!({"src": clip(&req.src)}),
            )
        };
        let src = island_path(&req.src).map_err(deny)?;
        self.islands.require_running(island)?;
        let area = self.home.join("port").join(island).join("exports");
        let used = usage(&area);
        if used >= EXPORT_QUOTA {
            return Err(deny(Error::Exhausted(format!(
                "island {island:?}'s export area ({}) holds {} MiB, its quota of {} MiB; remove old exports",
                area.display(),
                used >> 20,
                EXPORT_QUOTA >> 20
            ))));
        }
        let _permit = permit(&self.port_crossings)?;
        let (mut spool, archive_sha, u) =
            self.spool_from_island(island, &src, "port.export", asker)?;
        let (_, base) = split_parent(&src);
        if used + u.bytes > EXPORT_QUOTA {
            return Err(self.deny(
                "port.export",
                island,
                asker,
                Error::Exhausted(format!(
                    "{src:?} ({} MiB) would take island {island:?}'s export area past its quota of {} MiB; remove old exports",
                    u.bytes >> 20,
                    EXPORT_QUOTA >> 20
                )),
                json!({"src": clip(&src)}),
            ));
        }
        let stamp = crate::util::now_rfc3339().replace(':', "");
        std::fs::create_dir_all(&area).map_err(|e| Error::Internal(format!("export area: {e}")))?;
        let dir_name = format!("{stamp}-{}", crate::util::random_hex(3));
        let sha256 = u.file_sha256.clone().unwrap_or(archive_sha.clone());
        let seq = self.crossing(
            "port.export",
            island,
            asker,
            json!({"src": src, "files": u.files, "bytes": u.bytes, "sha256": sha256,
                   "archive_sha256": archive_sha, "dest": format!("{}/{dir_name}", area.display()),
                   "skipped": u.skipped.len()}),
        )?;
        let area_fd = hostfs::open_root(&area).map_err(path_err)?;
        let into = hostfs::mkdir_new(area_fd.as_fd(), &dir_name).map_err(path_err)?;
        let file = spool.rewind().map_err(|e| Error::Internal(e.to_string()))?;
        unpack(file, base, Some(into.as_fd()))?;
        let host_path = format!("{}/{dir_name}/{base}", area.display());
        Ok(PortResult {
            src: Some(src.clone()),
            host_path: Some(host_path),
            files: u.files,
            bytes: u.bytes,
            sha256,
            skipped: u.skipped,
            ledger_seq: seq,
            ..Default::default()
        })
    }

    /// POST /v1/islands/{name}/port/write: one island file → an `rw` scope, atomically.
    pub fn write(&self, asker: &Asker, island: &str, req: PortWriteRequest) -> Result<PortResult> {
        let base =
            json!({"scope": clip(&req.scope), "rel": clip(&req.dest_rel), "src": clip(&req.src)});
        let deny = |e: Error| self.deny("port.write", island, asker, e, base.clone());
        let scope = self.islands.scope(island, &req.scope).map_err(deny)?;
        if scope.mode != PortMode::Rw {
            return Err(deny(Error::Forbidden(format!(
                "scope {:?} is read-only; the owner grants a folder with mode rw for writes",
                scope.name
            ))));
        }
        let comps = hostfs::components(&req.dest_rel).map_err(|e| deny(path_err(e)))?;
        let Some((leaf, dirs)) = comps.split_last() else {
            return Err(deny(Error::Unprocessable(
                "dest_rel must name a file in the scope, not the scope itself".into(),
            )));
        };
        if comps.iter().any(|c| c == ".git") {
            return Err(deny(Error::Forbidden(
                "Port does not write into a .git folder (its config and hooks run code on the host)"
                    .into(),
            )));
        }
        let src = island_path(&req.src).map_err(deny)?;
        self.islands.require_running(island)?;
        let _permit = permit(&self.port_crossings)?;
        // The host side is checked before anything is ledgered or made: a link on the way
        // is refused now (and again, by descriptor, when written).
        let root = hostfs::open_root(Path::new(&scope.host_path)).map_err(|e| deny(path_err(e)))?;
        match hostfs::walk_dirs(root.as_fd(), dirs, false) {
            Ok(_) | Err(PathError::NotFound(_)) => {}
            Err(e) => return Err(deny(path_err(e))),
        }
        let (mut spool, _, u) = self.spool_from_island(island, &src, "port.write", asker)?;
        if u.entries != 1 || u.files != 1 {
            let e = if !u.skipped.is_empty() && u.files == 0 {
                Error::Forbidden(format!(
                    "{src:?} is a link or special file; write takes a regular file"
                ))
            } else {
                Error::Unprocessable(format!("{src:?} is a folder; write takes one file"))
            };
            return Err(deny(e));
        }
        let rel = comps.join("/");
        let sha256 = u.file_sha256.clone().unwrap_or_default();
        let seq = self.crossing(
            "port.write",
            island,
            asker,
            json!({"scope": scope.name, "rel": rel, "src": src, "files": 1, "bytes": u.bytes,
                   "sha256": sha256}),
        )?;
        let dir = hostfs::walk_dirs(root.as_fd(), dirs, true).map_err(|e| deny(path_err(e)))?;
        let file = spool.rewind().map_err(|e| Error::Internal(e.to_string()))?;
        let mut ar = tar::Archive::new(file);
        let mut entries = ar.entries().map_err(|e| Error::Internal(e.to_string()))?;
        let mut entry = entries
            .next()
            .ok_or_else(|| Error::Internal("the spooled file is gone".into()))?
            .map_err(|e| Error::Internal(e.to_string()))?;
        hostfs::write_atomic(dir.as_fd(), leaf, &mut entry, root.as_fd())
            .map_err(|e| deny(path_err(e)))?;
        Ok(PortResult {
            scope: Some(scope.name.clone()),
            dest_rel: Some(rel.clone()),
            host_path: Some(format!("{}/{rel}", scope.host_path)),
            files: 1,
            bytes: u.bytes,
            sha256,
            skipped: Vec::new(),
            ledger_seq: seq,
            ..Default::default()
        })
    }
}

/// Add `node` to the archive as `name` (and, for a folder, everything beneath it that is a
/// file or a folder; links and special files are listed in `skipped`).
fn pack<W: Write>(
    b: &mut tar::Builder<W>,
    node: Node,
    name: &str,
    shown: &str,
    depth: usize,
    p: &mut Packed,
) -> Result<()> {
    let io_err = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::Conflict(format!("{e}; try again"))
        } else {
            Error::Internal(format!("cannot spool: {e}"))
        }
    };
    p.entries += 1;
    if p.entries > MAX_FILES {
        return Err(too_many("too many files"));
    }
    match node {
        Node::File(mut f, size) => {
            p.files += 1;
            p.bytes += size;
            if p.bytes > MAX_BYTES {
                return Err(too_many("too many bytes"));
            }
            let meta = f.metadata().map_err(io_err)?;
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(size);
            h.set_mode(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777);
            h.set_mtime(std::os::unix::fs::MetadataExt::mtime(&meta).max(0) as u64);
            let mut hash = Sha256::new();
            let mut r = ExactReader {
                inner: &mut f,
                left: size,
                hash: (depth == 0).then_some(&mut hash),
            };
            b.append_data(&mut h, name, &mut r).map_err(io_err)?;
            if depth == 0 {
                p.file_sha256 = Some(crate::util::hex(&hash.finalize()));
            }
        }
        Node::Dir(fd) => {
            if depth > MAX_DEPTH {
                return Err(Error::TooLarge(format!(
                    "{shown:?} is nested more than {MAX_DEPTH} folders deep"
                )));
            }
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
            h.set_mtime(crate::util::unix_now());
            b.append_data(&mut h, format!("{name}/"), io::empty())
                .map_err(io_err)?;
            let names =
                hostfs::list(fd.as_fd(), (MAX_FILES + 1) as usize).map_err(|e| match e {
                    PathError::Invalid(_) => too_many("too many files"),
                    e => path_err(e),
                })?;
            for n in names {
                let child_shown = if shown.is_empty() {
                    n.clone()
                } else {
                    format!("{shown}/{n}")
                };
                // What is left behind counts too: the list of it is bounded like the rest.
                if p.entries + p.skipped.len() as u64 >= MAX_FILES {
                    return Err(too_many("too many files"));
                }
                match hostfs::open_node(fd.as_fd(), &n) {
                    Ok(Node::Other(_)) => p.skipped.push(child_shown),
                    // Gone since listed: nothing to copy.
                    Err(PathError::NotFound(_)) => {}
                    // A folder swapped for a link since listed: not followed.
                    Err(PathError::Link(_)) => p.skipped.push(child_shown),
                    Err(e) => return Err(path_err(e)),
                    Ok(child) => {
                        pack(b, child, &format!("{name}/{n}"), &child_shown, depth + 1, p)?
                    }
                }
            }
        }
        Node::Other(_) => p.skipped.push(shown.to_string()),
    }
    Ok(())
}

/// What an island's archive holds.
#[derive(Default)]
struct Unpacked {
    entries: u64,
    files: u64,
    bytes: u64,
    skipped: Vec<String>,
    file_sha256: Option<String>,
}

/// Read an island-made archive whose entries must all lie under `base`. Without `into`,
/// only check and count; with it, write its folders and regular files beneath that host
/// folder (new names only, by descriptor). Links and special entries are never written.
fn unpack(file: &mut File, base: &str, into: Option<BorrowedFd<'_>>) -> Result<Unpacked> {
    let bad = |m: String| Error::Forbidden(format!("the island's archive is not acceptable: {m}"));
    // First the headers alone: the tar reader would hold a long name or PAX header whole in
    // memory, and expand a sparse map, before anything else could refuse them.
    {
        let mut ar = tar::Archive::new(&mut *file);
        let raw = ar
            .entries()
            .map_err(|e| Error::Internal(format!("reading the spool: {e}")))?
            .raw(true);
        for e in raw {
            let e = e.map_err(|e| bad(e.to_string()))?;
            let t = e.header().entry_type();
            let size = e.header().entry_size().unwrap_or(u64::MAX);
            if t.is_gnu_sparse() {
                return Err(bad("sparse entries are not taken".into()));
            }
            if (t.is_gnu_longname()
                || t.is_gnu_longlink()
                || t.is_pax_local_extensions()
                || t.is_pax_global_extensions())
                && size > MAX_META
            {
                return Err(bad("a name or extended header is too long".into()));
            }
        }
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut u = Unpacked::default();
    let mut ar = tar::Archive::new(file);
    let entries = ar
        .entries()
        .map_err(|e| Error::Internal(format!("reading the spool: {e}")))?;
    let mut dirs: Vec<(Vec<String>, OwnedFd)> = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?;
        let path = path
            .to_str()
            .ok_or_else(|| bad("a name is not UTF-8".into()))?
            .to_string();
        let comps = hostfs::components(&path).map_err(|e| bad(e.to_string()))?;
        if comps.first().map(String::as_str) != Some(base) {
            return Err(bad(format!("{path:?} is outside {base:?}")));
        }
        u.entries += 1;
        if u.entries > MAX_FILES {
            return Err(too_many("too many files"));
        }
        let kind = entry.header().entry_type();
        let top = comps.len() == 1;
        // A repository's config and hooks run code where they land: not exported.
        if let Some(i) = comps.iter().position(|c| c == ".git") {
            if i == comps.len() - 1 {
                u.skipped.push(comps[1..].join("/"));
            }
            continue;
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                u.files += 1;
                u.bytes += size;
                if u.bytes > MAX_BYTES {
                    return Err(too_many("too many bytes"));
                }
                if top {
                    let mut h = Sha256::new();
                    if into.is_none() {
                        io::copy(&mut entry, &mut HashSink(&mut h))
                            .map_err(|e| Error::Internal(e.to_string()))?;
                        u.file_sha256 = Some(crate::util::hex(&h.finalize()));
                    }
                }
                if let Some(root) = into {
                    let (leaf, parents) = comps.split_last().expect("non-empty");
                    let dir = dir_for(root, parents, &mut dirs)?;
                    let mut f = hostfs::create_new(dir, leaf).map_err(path_err)?;
                    let n =
                        io::copy(&mut entry, &mut f).map_err(|e| Error::Internal(e.to_string()))?;
                    if n != size {
                        return Err(bad(format!("{path:?} is shorter than its header says")));
                    }
                    f.sync_all().map_err(|e| Error::Internal(e.to_string()))?;
                }
            }
            tar::EntryType::Directory => {
                if let Some(root) = into {
                    dir_for(root, &comps, &mut dirs)?;
                }
            }
            _ => {
                if top {
                    return Err(Error::Forbidden(format!(
                        "{base:?} is a link or special file in the island; Port never follows links"
                    )));
                }
                u.skipped.push(comps[1..].join("/"));
            }
        }
    }
    if u.entries == 0 {
        return Err(bad("it is empty".into()));
    }
    Ok(u)
}

/// The host folder for `comps` beneath `root`, made when missing (cached by path).
fn dir_for<'a>(
    root: BorrowedFd<'_>,
    comps: &[String],
    cache: &'a mut Vec<(Vec<String>, OwnedFd)>,
) -> Result<BorrowedFd<'a>> {
    if let Some(i) = cache.iter().position(|(c, _)| c.as_slice() == comps) {
        return Ok(cache[i].1.as_fd());
    }
    let fd = hostfs::walk_dirs(root, comps, true).map_err(path_err)?;
    // A handful of folders are held at once; the rest are walked again when needed.
    if cache.len() >= 32 {
        cache.remove(0);
    }
    cache.push((comps.to_vec(), fd));
    Ok(cache.last().expect("just pushed").1.as_fd())
}

struct HashSink<'a>(&'a mut Sha256);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
