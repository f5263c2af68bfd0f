//! SSH into an island: its own host key (made once, kept across reset, upgrade and daemon
//! restarts; a clone gets its own), the keys it lets in (account keys and its own, rendered
//! into `authorized_keys`), both on the read-only secrets mount; and the `sshd -i` a
//! connection is joined to.

use std::path::Path;

use super::Islands;
use crate::error::{Error, Result};
use crate::process::{Input, Run};
use crate::runtime::ExecOpts;
use crate::session::tmux;
use crate::ssh::{same_fingerprint, SshKey};

/// sshd's config in the island image.
pub const SSHD_CONFIG: &str = "/etc/ssh/dejima_sshd_config";

/// What a connection runs and how it is ended.
pub struct SshSpec {
    pub argv: Vec<String>,
    pub on_end: Box<dyn FnOnce() + Send>,
}

/// Make an ed25519 key pair at `key` (and `key.pub`) with ssh-keygen, unless one is there.
/// Two first callers both make one; the first to publish wins and the other's is dropped.
pub(super) fn make_key(key: &Path, comment: &str) -> Result<()> {
    if key.exists() {
        return Ok(());
    }
    let io = |e: std::io::Error| Error::Internal(format!("{}: {e}", key.display()));
    let dir = key.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".key-{}", crate::util::random_hex(4)));
    let argv = [
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        comment,
        "-f",
        tmp.to_str().unwrap_or_default(),
    ];
    let out = Run::new(&argv)
        .timeout(std::time::Duration::from_secs(30))
        .run()
        .map_err(|e| {
            Error::Unavailable(format!(
                "cannot make the key {comment:?}: {e} (install openssh-client on the daemon host)"
            ))
        })?;
    if !out.ok() {
        return Err(Error::Internal(format!(
            "ssh-keygen failed: {}",
            out.stderr_str().trim()
        )));
    }
    let (pubk, tmp_pub) = (key.with_extension("pub"), tmp.with_extension("pub"));
    // The private half by a link, which fails if another caller published first (its pair
    // stands); only the winner then puts its public half beside it.
    let published = std::fs::hard_link(&tmp, key).and_then(|_| std::fs::rename(&tmp_pub, &pubk));
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(&tmp_pub);
    match published {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(e)),
    }
}

impl Islands {
    /// Make the island's host key, once. Called before the secrets lock is taken (it runs
    /// ssh-keygen): two first callers both make one, and the first to publish it wins.
    pub(super) fn ensure_host_key(&self, name: &str) -> Result<()> {
        let ssh = self.secrets_dir(name).join("ssh");
        let io = |e: std::io::Error| Error::Internal(format!("island {name:?}'s host key: {e}"));
        let key = ssh.join("host_ed25519_key");
        if key.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(self.secrets_dir(name)).map_err(io)?;
        crate::store::real_dir(&ssh).map_err(io)?;
        crate::store::chmod_nofollow(&ssh, 0o755).map_err(io)?;
        make_key(&key, &format!("dejima-{name}"))?;
        Ok(())
    }

    /// Write the island's authorized keys under its secrets folder (its host key is made
    /// by `ensure_host_key`, outside the lock this runs under).
    pub(super) fn write_ssh(&self, name: &str, dir: &Path) -> Result<()> {
        let rec = self.record(name)?;
        let ssh = dir.join("ssh");
        let io = |e: std::io::Error| Error::Internal(format!("island {name:?}'s ssh keys: {e}"));
        crate::store::real_dir(&ssh).map_err(io)?;
        crate::store::chmod_nofollow(&ssh, 0o755).map_err(io)?;
        let mut lines: Vec<String> = self
            .account_keys
            .list()
            .iter()
            .chain(rec.ssh_keys.iter())
            .map(SshKey::line)
            .collect();
        lines.dedup();
        lines.extend(self.relay_authorized_line());
        let mut text = lines.join("\n");
        text.push('\n');
        crate::store::atomic_write_mode(&ssh.join("authorized_keys"), text.as_bytes(), 0o644)
            .map_err(io)
    }

    /// Render the authorized keys again where the island's secrets folder exists (after an
    /// account key changed: the next connection sees it, no restart).
    pub fn render_ssh_keys(&self, name: &str) -> Result<()> {
        let dir = self.secrets_dir(name);
        if !dir.is_dir() {
            return Ok(());
        }
        self.ensure_host_key(name)?;
        let _one = crate::util::lock(&self.secrets_lock);
        self.write_ssh(name, &dir)?;
        if self.observed.running(name) {
            let run = self.home.island_dir(name).join("run");
            self.runtime.sync_files(name, &run, &dir)?;
        }
        Ok(())
    }

    pub fn render_all_ssh_keys(&self) {
        for n in self.names() {
            if let Err(e) = self.render_ssh_keys(&n) {
                log::warn!("island {n}: {e}");
            }
        }
    }

    pub fn island_ssh_keys(&self, name: &str) -> Result<Vec<SshKey>> {
        Ok(self.record(name)?.ssh_keys)
    }

    /// Add a key to one island; the same key again is the one there (`false`: not new).
    pub fn add_island_ssh_key(&self, name: &str, k: SshKey) -> Result<(SshKey, bool)> {
        let mut out = None;
        self.update(name, |r| {
            if let Some(old) = r.ssh_keys.iter().find(|o| o.fingerprint == k.fingerprint) {
                out = Some((old.clone(), false));
            } else if r.ssh_keys.len() < 64 {
                r.ssh_keys.push(k.clone());
                out = Some((k.clone(), true));
            }
        })?;
        let out = out.ok_or_else(|| Error::Conflict("at most 64 keys per island".into()))?;
        self.render_ssh_keys(name)?;
        Ok(out)
    }

    pub fn remove_island_ssh_key(&self, name: &str, fp: &str) -> Result<SshKey> {
        let mut gone = None;
        self.update(name, |r| {
            if let Some(i) = r
                .ssh_keys
                .iter()
                .position(|k| same_fingerprint(&k.fingerprint, fp))
            {
                gone = Some(r.ssh_keys.remove(i));
            }
        })?;
        let gone =
            gone.ok_or_else(|| Error::NotFound(format!("island {name:?} has no key {fp:?}")))?;
        self.render_ssh_keys(name)?;
        Ok(gone)
    }

    /// What a connection runs: `sshd -i` as root in the island, marked so that it is ended
    /// when the connection ends (and swept should the daemon die first).
    pub fn ssh_spec(&self, name: &str) -> Result<SshSpec> {
        self.require_running(name)?;
        if !self.secrets_dir(name).join("ssh/host_ed25519_key").exists() {
            self.render_ssh_keys(name)?;
        }
        let mark = self.runtime.mark();
        let argv = self.runtime.pipe_exec_argv(
            name,
            "root",
            &[(tmux::ATTACH_MARK, &mark)],
            &["/usr/sbin/sshd", "-i", "-e", "-f", SSHD_CONFIG],
        );
        self.touch(name);
        let (engine, island) = (self.runtime.clone(), name.to_string());
        let on_end = move || {
            let opts = ExecOpts {
                timeout: std::time::Duration::from_secs(15),
                ..ExecOpts::root(&["sh", "-c", tmux::DETACH_MARKED, "sh", &mark])
            };
            match engine.exec(&island, &opts, Input::None) {
                Ok(out) if out.ok() => {}
                Ok(out) => log::warn!("island {island}: ending ssh {mark}: {}", out.stderr_str()),
                Err(e) => log::debug!("island {island}: ending ssh {mark}: {e}"),
            }
        };
        Ok(SshSpec {
            argv,
            on_end: Box::new(on_end),
        })
    }
}
