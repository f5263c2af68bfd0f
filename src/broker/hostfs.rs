//! Host paths for Port, resolved with descriptors, never with strings: every step is an
//! `openat` relative to the directory opened before it, with `O_NOFOLLOW`, so a symlink (or a
//! directory swapped for one between a check and a use) is refused where it stands instead of
//! being followed out of the scope. A scope's own root is opened the same way from `/`.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

/// Why a host path was refused.
#[derive(Debug)]
pub enum PathError {
    /// A relative path that tries to leave its root (`..`, absolute, NUL, encoded
    /// separators): refused as an escape.
    Escape(String),
    /// Something else about the path that cannot be (not absolute, a file where a folder is
    /// needed).
    Invalid(String),
    /// A folder where a file is to be written.
    IsFolder(String),
    /// A symlink where a file or folder was expected, or another escape attempt.
    Link(String),
    NotFound(String),
    Io(io::Error),
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathError::Escape(m)
            | PathError::Invalid(m)
            | PathError::IsFolder(m)
            | PathError::Link(m)
            | PathError::NotFound(m) => f.write_str(m),
            PathError::Io(e) => write!(f, "{e}"),
        }
    }
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Split a relative path into its components, refusing anything that is not plainly
/// beneath: absolute paths, `..`, NUL, backslashes, percent-encoded dots or separators,
/// over-long names. `""` and `"."` are the root itself (no components).
pub fn components(rel: &str) -> Result<Vec<String>, PathError> {
    let bad = |why: &str| PathError::Escape(format!("path {rel:?} {why}"));
    if rel.len() > 4096 {
        return Err(bad("is too long"));
    }
    if rel.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if rel.starts_with('/') {
        return Err(bad("must be relative to the scope"));
    }
    if rel.contains('\\') {
        return Err(bad("contains a backslash"));
    }
    let lower = rel.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%00"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return Err(bad("contains a percent-encoded dot or separator"));
    }
    let mut out = Vec::new();
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(bad("may not contain \"..\"")),
            s if s.len() > 255 => return Err(bad("has a name over 255 bytes")),
            s => out.push(s.to_string()),
        }
    }
    Ok(out)
}

fn open_dir_at(dir: BorrowedFd<'_>, name: &str, shown: &str) -> Result<OwnedFd, PathError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(Some(dir.as_raw_fd()), name, flags, Mode::empty()) {
        // SAFETY: openat returned a new descriptor we now own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(Errno::ELOOP) => Err(PathError::Link(format!(
            "{shown:?} is a symlink; Port never follows links"
        ))),
        Err(Errno::ENOTDIR) => Err(link_or_file(dir, name, shown)),
        Err(Errno::ENOENT) => Err(PathError::NotFound(format!("{shown:?} does not exist"))),
        Err(e) => Err(PathError::Io(errno_io(e))),
    }
}

/// ENOTDIR with O_NOFOLLOW: a symlink (to anything) or a plain file.
fn link_or_file(dir: BorrowedFd<'_>, name: &str, shown: &str) -> PathError {
    match nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        // A link, or a folder now that was a link when opened (swapped meanwhile).
        Ok(st)
            if matches!(
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT,
                SFlag::S_IFLNK | SFlag::S_IFDIR
            ) =>
        {
            PathError::Link(format!("{shown:?} is a symlink; Port never follows links"))
        }
        _ => PathError::NotFound(format!("{shown:?} is not a folder")),
    }
}

/// Open an absolute host folder from `/`, one component at a time, no links anywhere.
pub fn open_root(abs: &Path) -> Result<OwnedFd, PathError> {
    let s = abs
        .to_str()
        .ok_or_else(|| PathError::Invalid(format!("{} is not valid UTF-8", abs.display())))?;
    if !s.starts_with('/') {
        return Err(PathError::Invalid(format!("{s:?} is not absolute")));
    }
    let root = File::open("/").map_err(PathError::Io)?;
    let mut cur: OwnedFd = root.into();
    let mut shown = String::new();
    for c in components(s.trim_start_matches('/'))? {
        shown.push('/');
        shown.push_str(&c);
        cur = open_dir_at(cur.as_fd(), &c, &shown)?;
    }
    Ok(cur)
}

/// Walk `comps` beneath `root` as folders. With `create`, missing ones are made (mode 0755,
/// owned like `root`).
pub fn walk_dirs(
    root: BorrowedFd<'_>,
    comps: &[String],
    create: bool,
) -> Result<OwnedFd, PathError> {
    let mut cur = dup(root)?;
    let mut shown = String::new();
    for c in comps {
        if !shown.is_empty() {
            shown.push('/');
        }
        shown.push_str(c);
        cur = match open_dir_at(cur.as_fd(), c, &shown) {
            Err(PathError::NotFound(_)) if create => {
                match nix::sys::stat::mkdirat(
                    Some(cur.as_raw_fd()),
                    c.as_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(PathError::Io(errno_io(e))),
                }
                let d = open_dir_at(cur.as_fd(), c, &shown)?;
                chown_like(root, d.as_fd());
                d
            }
            other => other?,
        };
    }
    Ok(cur)
}

fn dup(fd: BorrowedFd<'_>) -> Result<OwnedFd, PathError> {
    fd.try_clone_to_owned().map_err(PathError::Io)
}

/// Give `fd` the owner of `like` (best effort: a daemon that is not root cannot, and then
/// the file is its own anyway).
pub fn chown_like(like: BorrowedFd<'_>, fd: BorrowedFd<'_>) {
    if let Ok(st) = fstat(like.as_raw_fd()) {
        let _ = nix::unistd::fchown(
            fd.as_raw_fd(),
            Some(nix::unistd::Uid::from_raw(st.st_uid)),
            Some(nix::unistd::Gid::from_raw(st.st_gid)),
        );
    }
}

/// What stands at a name, opened without following it.
pub enum Node {
    File(File, u64),
    Dir(OwnedFd),
    /// A symlink, FIFO, socket or device: never read.
    Other(&'static str),
}

/// Open the entry `name` in `dir` without following a link: a regular file for reading (a
/// FIFO is not waited on), a folder, or what else it is.
pub fn open_node(dir: BorrowedFd<'_>, name: &str) -> Result<Node, PathError> {
    let st = nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| match e {
        Errno::ENOENT => PathError::NotFound(format!("{name:?} does not exist")),
        e => PathError::Io(errno_io(e)),
    })?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind == SFlag::S_IFDIR {
        return open_dir_at(dir, name, name).map(Node::Dir);
    }
    if kind == SFlag::S_IFLNK {
        return Ok(Node::Other("symlink"));
    }
    if kind != SFlag::S_IFREG {
        return Ok(Node::Other("special file"));
    }
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    let fd = match openat(Some(dir.as_raw_fd()), name, flags, Mode::empty()) {
        // SAFETY: a new descriptor we own.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        // Swapped for a link since the stat: refused as one.
        Err(Errno::ELOOP) => return Ok(Node::Other("symlink")),
        Err(Errno::ENOENT) => return Err(PathError::NotFound(format!("{name:?} does not exist"))),
        Err(e) => return Err(PathError::Io(errno_io(e))),
    };
    // What was opened is what counts (the name may have changed since the stat).
    let st = fstat(fd.as_raw_fd()).map_err(|e| PathError::Io(errno_io(e)))?;
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => Ok(Node::File(File::from(fd), st.st_size as u64)),
        SFlag::S_IFDIR => Ok(Node::Dir(fd)),
        _ => Ok(Node::Other("special file")),
    }
}

/// The names in a folder (without `.` and `..`), sorted, read through the descriptor; more
/// than `max` is an error (`Invalid`).
pub fn list(dir: BorrowedFd<'_>, max: usize) -> Result<Vec<String>, PathError> {
    // Its own open of "." (a dup would share, and move, the folder's read position).
    let d = nix::dir::Dir::openat(
        Some(dir.as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| PathError::Io(errno_io(e)))?;
    let mut names = Vec::new();
    for e in d.into_iter() {
        let e = e.map_err(|e| PathError::Io(errno_io(e)))?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n != "." && n != ".." {
            names.push(n);
            if names.len() > max {
                return Err(PathError::Invalid(format!("more than {max} entries")));
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Write `content` as `name` in `dir` atomically: a new temporary file beside it (never an
/// existing one: `O_EXCL`), synced, then renamed over the name. A symlink standing at `name`
/// is replaced itself, never followed. Returns the bytes written.
pub fn write_atomic(
    dir: BorrowedFd<'_>,
    name: &str,
    content: &mut dyn Read,
    owner_like: BorrowedFd<'_>,
) -> Result<u64, PathError> {
    let tmp = format!(".{name}.dejima-{}", crate::util::random_hex(6));
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(
        Some(dir.as_raw_fd()),
        tmp.as_str(),
        flags,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| PathError::Io(errno_io(e)))?;
    // SAFETY: a new descriptor we own.
    let mut f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let unlink = || {
        let _ = nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            tmp.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    };
    let written = match io::copy(content, &mut f).and_then(|n| f.sync_all().map(|_| n)) {
        Ok(n) => n,
        Err(e) => {
            unlink();
            return Err(PathError::Io(e));
        }
    };
    chown_like(owner_like, f.as_fd());
    drop(f);
    match nix::fcntl::renameat(
        Some(dir.as_raw_fd()),
        tmp.as_str(),
        Some(dir.as_raw_fd()),
        name,
    ) {
        Ok(()) => {}
        Err(e) => {
            unlink();
            return Err(match e {
                Errno::EISDIR | Errno::ENOTEMPTY | Errno::EEXIST => {
                    PathError::IsFolder(format!("{name:?} is a folder"))
                }
                e => PathError::Io(errno_io(e)),
            });
        }
    }
    let _ = nix::unistd::fsync(dir.as_raw_fd());
    Ok(written)
}

/// Create the new file `name` in `dir` (never an existing one, never through a link).
pub fn create_new(dir: BorrowedFd<'_>, name: &str) -> Result<File, PathError> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(
        Some(dir.as_raw_fd()),
        name,
        flags,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| PathError::Io(errno_io(e)))?;
    // SAFETY: a new descriptor we own.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Make the new folder `name` in `dir` and open it (refused when anything stands there).
pub fn mkdir_new(dir: BorrowedFd<'_>, name: &str) -> Result<OwnedFd, PathError> {
    nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755))
        .map_err(|e| PathError::Io(errno_io(e)))?;
    open_dir_at(dir, name, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn components_refuse_escapes() {
        for bad in [
            "..", "a/../b", "/etc", "a\0b", "%2e%2e/x", "a%2Fb", "a\\b", "%2E%2E",
        ] {
            assert!(components(bad).is_err(), "{bad:?}");
        }
        assert_eq!(components("").unwrap(), Vec::<String>::new());
        assert_eq!(components("./a//b/").unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn links_are_refused_at_every_step() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("scope");
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::fs::write(root.join("real/sub/f"), "x").unwrap();
        symlink("/etc", root.join("out")).unwrap();
        symlink("real", root.join("alias")).unwrap();
        let r = open_root(&root).unwrap();
        let d = walk_dirs(r.as_fd(), &["real".into(), "sub".into()], false).unwrap();
        assert!(matches!(
            open_node(d.as_fd(), "f").unwrap(),
            Node::File(_, 1)
        ));
        assert!(matches!(
            walk_dirs(r.as_fd(), &["out".into()], false),
            Err(PathError::Link(_))
        ));
        assert!(matches!(
            walk_dirs(r.as_fd(), &["alias".into(), "sub".into()], false),
            Err(PathError::Link(_))
        ));
        assert!(matches!(
            open_node(r.as_fd(), "out").unwrap(),
            Node::Other("symlink")
        ));
        // The root's own ancestors are checked too.
        symlink(&root, t.path().join("rootlink")).unwrap();
        assert!(matches!(
            open_root(&t.path().join("rootlink")),
            Err(PathError::Link(_))
        ));
        // An atomic write replaces a link at the name, never what it points at.
        let mut c: &[u8] = b"new";
        write_atomic(r.as_fd(), "out", &mut c, r.as_fd()).unwrap();
        assert!(std::fs::symlink_metadata(root.join("out"))
            .unwrap()
            .is_file());
        assert_eq!(list(r.as_fd(), 10).unwrap(), vec!["alias", "out", "real"]);
        assert!(list(r.as_fd(), 2).is_err());
    }
}
