//! `$DEJIMA_HOME` layout and atomic writes. A record is written to a temp file, fsynced,
//! renamed over the old one, and the directory fsynced, so a crash at any instant leaves
//! either the old record or the new one, never a torn file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The daemon's state directory.
#[derive(Debug, Clone)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    /// `$DEJIMA_HOME`, else `~/.dejima`.
    pub fn from_env() -> Home {
        let root = match std::env::var_os("DEJIMA_HOME") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
                PathBuf::from(home).join(".dejima")
            }
        };
        Home { root }
    }
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("dejimad.sock")
    }
    pub fn islands_dir(&self) -> PathBuf {
        self.root.join("islands")
    }
    pub fn island_dir(&self, name: &str) -> PathBuf {
        self.islands_dir().join(name)
    }
    pub fn island_record(&self, name: &str) -> PathBuf {
        self.island_dir(name).join("island.json")
    }
    pub fn image_dir(&self) -> PathBuf {
        self.root.join("image")
    }
    /// Create the tree with private permissions (the socket's directory guards it too).
    pub fn ensure(&self) -> io::Result<()> {
        fs::create_dir_all(self.islands_dir())?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))?;
        Ok(())
    }
}

/// Write `bytes` to `path` atomically and durably (mode 0600).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_mode(path, bytes, 0o600)
}

/// `atomic_write` with the file's mode. The temporary file is always a new one (`O_EXCL`,
/// never through a link), and gets its mode before it takes the name.
pub fn atomic_write_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", crate::util::random_hex(6)));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    atomic_write(path, &bytes)
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<T> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Remove a file (absent is fine) and make the removal durable in its directory.
pub fn remove_file(path: &Path) -> io::Result<()> {
    durable_removal(path, fs::remove_file(path))
}

/// Remove a directory tree and make the removal durable in its parent.
pub fn remove_dir(path: &Path) -> io::Result<()> {
    durable_removal(path, fs::remove_dir_all(path))
}

/// After removing `path` (`removed`): absent already is fine; fsync the parent.
fn durable_removal(path: &Path, removed: io::Result<()>) -> io::Result<()> {
    match removed {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/rec.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

/// Make `path` a real folder: a link or a file standing there is removed (never followed).
pub fn real_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => {
            fs::remove_file(path)?;
            fs::create_dir(path)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(path),
        Err(e) => Err(e),
    }
}

/// chmod that refuses to follow a link at `path` (a link there is an error).
pub fn chmod_nofollow(path: &Path, mode: u32) -> io::Result<()> {
    nix::sys::stat::fchmodat(
        None,
        path,
        nix::sys::stat::Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    )
    .map_err(|e| io::Error::from_raw_os_error(e as i32))
}
