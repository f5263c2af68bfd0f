//! Credentials inside an island. The daemon writes the island's secrets as files into a
//! host directory mounted read-only at /run/secrets/dejima: its own token, the keys and base
//! URLs of the providers its agents are bound to, and its GitHub identity. Each agent's
//! launch reads the files it needs into its own environment (`launch_argv`); nothing secret
//! is ever in an argv, the container's environment (`docker inspect`), a log or an event.
//! Another island's directory is never mounted, so it cannot read these.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::agents::AgentRecord;
use super::{Islands, Record};
use crate::api::AgentType;
use crate::error::{Error, Result};
use crate::process::Input;
use crate::runtime::{ExecOpts, SECRETS_MOUNT};
use crate::session::tmux::sh_quote;

/// The agent user's uid in the image: secret files are its own, read-only.
const AGENT_UID: u32 = 1000;

/// What an agent's launch needs to know of its provider (no secret: the key stays a file).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderEnv {
    pub name: String,
    pub env_var: String,
    pub base_url_env: String,
    pub base_url: String,
}

/// Write one secret file: temp file with its final owner and mode, then renamed, so the
/// island never sees a half-written or wrongly owned file.
fn put_secret(dir: &Path, name: &str, value: &str, can_chown: bool) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.{}.tmp", crate::util::random_hex(6)));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(value.as_bytes())?;
    f.sync_all()?;
    if can_chown {
        std::os::unix::fs::fchown(&f, Some(AGENT_UID), Some(AGENT_UID))?;
        f.set_permissions(fs::Permissions::from_mode(0o400))?;
    } else {
        // A daemon that is not root cannot give the file to the agent user; the island is
        // the only reader (the directory sits under the 0700 state directory).
        f.set_permissions(fs::Permissions::from_mode(0o444))?;
    }
    drop(f);
    let r = fs::rename(&tmp, dir.join(name));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// Make `dir` hold exactly `files` (name -> value); anything else in it is removed.
fn sync_dir(dir: &Path, files: &[(&str, String)], can_chown: bool) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for e in fs::read_dir(dir)?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !files.iter().any(|(f, _)| *f == n) {
            if e.path().is_dir() {
                fs::remove_dir_all(e.path())?;
            } else {
                fs::remove_file(e.path())?;
            }
        }
    }
    for (name, value) in files {
        put_secret(dir, name, value, can_chown)?;
    }
    Ok(())
}

/// The shell that runs before every agent program: it reads the agent's secrets into its
/// environment and prepares the CLI, then execs the program (`"$@"`). Only names and paths
/// appear in it, never a value.
fn prologue(a: &AgentRecord, p: Option<&ProviderEnv>, github: Option<&str>) -> String {
    let s = SECRETS_MOUNT;
    let mut out = format!(
        "[ -r {s}/token ] && DEJIMA_TOKEN=$(cat {s}/token) && export DEJIMA_TOKEN\n\
         export DEJIMA_HOST=unix:/run/dejima/dejimad.sock\n"
    );
    if let Some(p) = p {
        let d = format!("{s}/providers/{}", p.name);
        out.push_str(&format!(
            "if [ -r {d}/api_key ]; then {v}=$(cat {d}/api_key); export {v}; else echo 'dejima: provider {n} has no key in this island; the agent starts without one' >&2; fi\n",
            v = p.env_var,
            n = p.name
        ));
        if !p.base_url_env.is_empty() {
            out.push_str(&format!(
                "[ -r {d}/base_url ] && {b}=$(cat {d}/base_url) && export {b}\n",
                b = p.base_url_env
            ));
        }
    }
    if let Some(host) = github {
        // gh reads its token from the environment; an Enterprise host needs GH_HOST too.
        if host == "github.com" {
            out.push_str(&format!(
                "[ -r {s}/github/token ] && GH_TOKEN=$(cat {s}/github/token) && export GH_TOKEN\n"
            ));
        } else {
            out.push_str(&format!(
                "[ -r {s}/github/token ] && GH_ENTERPRISE_TOKEN=$(cat {s}/github/token) && export GH_ENTERPRISE_TOKEN GH_HOST={}\n",
                sh_quote(host)
            ));
        }
    }
    // First-run screens that would stand between the agent and its work in an island the
    // operator made for it: onboarding, trusting its own worktree, approving its key.
    match a.kind {
        AgentType::ClaudeCode if a.cmd.is_empty() => {
            out.push_str("dejima-agent-prep claude || true\n")
        }
        AgentType::Codex if a.cmd.is_empty() => out.push_str("dejima-agent-prep codex || true\n"),
        _ => {}
    }
    out.push_str("exec \"$@\"\n");
    out
}

/// The program an agent's session runs, without the prologue.
pub fn program(a: &AgentRecord, p: Option<&ProviderEnv>, resume: bool) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    match a.kind {
        AgentType::Headless => {
            v.extend(["dejima-supervise".into(), a.id.clone(), a.cmd.clone()]);
        }
        AgentType::ClaudeCode if a.cmd.is_empty() => {
            v.push("claude".into());
            if !a.model.is_empty() {
                v.extend(["--model".into(), a.model.clone()]);
            }
            if resume {
                v.push("--continue".into());
            }
        }
        AgentType::Codex if a.cmd.is_empty() => {
            v.push("codex".into());
            if resume {
                v.extend(["resume".into(), "--last".into()]);
            }
            if !a.model.is_empty() {
                v.extend(["-m".into(), a.model.clone()]);
            }
            // Each finished turn is reported (trust is marked by dejima-agent-prep).
            v.extend([
                "-c".into(),
                "notify=[\"dejima-notify\",\"task-complete\"]".into(),
            ]);
            if let Some(p) = p {
                let base = if p.base_url.is_empty() {
                    "https://api.openai.com/v1"
                } else {
                    &p.base_url
                };
                v.extend([
                    "-c".into(),
                    "model_provider=\"dejima\"".into(),
                    "-c".into(),
                    format!(
                        "model_providers.dejima={{name=\"dejima ({})\",base_url=\"{base}\",env_key=\"{}\",wire_api=\"responses\"}}",
                        p.name, p.env_var
                    ),
                ]);
            }
        }
        _ if a.cmd.is_empty() => v.extend(["bash".into(), "-l".into()]),
        _ => v.extend(["bash".into(), "-lc".into(), a.cmd.clone()]),
    }
    v
}

/// What a session runs: the prologue, then the program.
pub fn launch_argv(
    a: &AgentRecord,
    p: Option<&ProviderEnv>,
    github: Option<&str>,
    resume: bool,
) -> Vec<String> {
    let mut v = vec![
        "sh".to_string(),
        "-c".into(),
        prologue(a, p, github),
        "dejima-launch".into(),
    ];
    v.extend(program(a, p, resume));
    v
}

/// A model name as CLIs take it.
pub fn check_model(m: &str) -> Result<()> {
    let ok = m.len() <= 100
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/@-[]".contains(&b))
        && !m.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::bad(format!(
            "model {m:?} must be at most 100 of A-Z, a-z, 0-9 and ._:/@-[]"
        )))
    }
}

impl Islands {
    pub(super) fn secrets_dir(&self, name: &str) -> PathBuf {
        self.home.island_dir(name).join("secrets")
    }

    /// The provider an agent's launch reads, if it is bound to one that exists.
    pub(super) fn provider_env(&self, a: &AgentRecord) -> Option<ProviderEnv> {
        if a.provider.is_empty() {
            return None;
        }
        let p = self.creds.provider(&a.provider)?;
        Some(ProviderEnv {
            name: a.provider.clone(),
            env_var: p.env_var,
            base_url_env: p.base_url_env,
            base_url: p.base_url,
        })
    }

    /// The GitHub host an island's identity is for, if it has one that exists.
    pub(super) fn github_host(&self, rec: &Record) -> Option<String> {
        if rec.github_identity.is_empty() {
            return None;
        }
        self.creds.github(&rec.github_identity).ok().map(|g| g.host)
    }

    /// An agent's launch argv, as its island's record and the credentials stand now.
    pub(super) fn agent_launch(&self, rec: &Record, a: &AgentRecord, resume: bool) -> Vec<String> {
        launch_argv(
            a,
            self.provider_env(a).as_ref(),
            self.github_host(rec).as_deref(),
            resume,
        )
    }

    /// Write the island's secrets directory from its record and the credential store as they
    /// are now: the token, each bound provider's key and base URL, the GitHub identity.
    /// Called before every container start and after every change that affects it; one
    /// writer at a time (the record is read under the lock, so the last writer wins with the
    /// latest record). A purged island's directory is never made again.
    pub(super) fn write_secrets(&self, name: &str) -> Result<PathBuf> {
        // ssh-keygen runs (once per island) before the lock is taken, never under it.
        if self.home.island_dir(name).is_dir() {
            if let Err(e) = self.ensure_host_key(name) {
                log::warn!("{e}");
            }
        }
        let _one = crate::util::lock(&self.secrets_lock);
        let rec = self.record(name)?;
        if !self.home.island_dir(name).is_dir() {
            return Err(Error::island_not_found(name));
        }
        let rec = &rec;
        let dir = self.secrets_dir(name);
        let can_chown = nix::unistd::geteuid().is_root();
        let io = |e: std::io::Error| {
            Error::Internal(format!("cannot write island {name:?}'s secrets: {e}"))
        };
        if let Err(e) = fs::create_dir(&dir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(io(e));
            }
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(io)?;
        put_secret(&dir, "token", &rec.token, can_chown).map_err(io)?;
        // Providers: one directory each, for those an agent is bound to.
        let pdir = dir.join("providers");
        fs::create_dir_all(&pdir).map_err(io)?;
        fs::set_permissions(&pdir, fs::Permissions::from_mode(0o755)).map_err(io)?;
        let mut bound: Vec<String> = rec
            .agents
            .iter()
            .filter(|a| !a.provider.is_empty())
            .map(|a| a.provider.clone())
            .collect();
        bound.sort();
        bound.dedup();
        let mut present = Vec::new();
        for name in &bound {
            let Some(p) = self.creds.provider(name) else {
                continue;
            };
            let mut files = vec![("api_key", p.api_key)];
            if !p.base_url.is_empty() {
                files.push(("base_url", p.base_url));
            }
            sync_dir(&pdir.join(name), &files, can_chown).map_err(io)?;
            present.push(name.clone());
        }
        for e in fs::read_dir(&pdir).map_err(io)?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !present.contains(&n) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let gdir = dir.join("github");
        match self.creds.github(&rec.github_identity) {
            Ok(g) if !rec.github_identity.is_empty() => {
                let files = [("host", g.host), ("login", g.login), ("token", g.token)];
                sync_dir(&gdir, &files, can_chown).map_err(io)?;
            }
            _ => {
                let _ = fs::remove_dir_all(&gdir);
            }
        }
        // SSH is one way in among others: the island starts even if its keys cannot be made.
        if let Err(e) = self.write_ssh(name, &dir) {
            log::warn!("{e}");
        }
        // A runtime without bind mounts gets the island's copy brought up to date now, under
        // the same lock, so two writers cannot push out of order.
        if self.observed.running(name) {
            let run = self.home.island_dir(name).join("run");
            self.runtime.sync_files(name, &run, &dir)?;
        }
        Ok(dir)
    }

    /// Islands whose agents are bound to provider `name`.
    pub fn islands_with_provider(&self, name: &str) -> Vec<String> {
        self.records_where(|r| r.agents.iter().any(|a| a.provider == name))
    }

    /// Islands bound to GitHub identity `name`.
    pub fn islands_with_identity(&self, name: &str) -> Vec<String> {
        self.records_where(|r| r.github_identity == name)
    }

    fn records_where(&self, f: impl Fn(&Record) -> bool) -> Vec<String> {
        self.names()
            .into_iter()
            .filter(|n| self.record(n).is_ok_and(|r| f(&r)))
            .collect()
    }

    /// A credential changed: rewrite the secrets of the islands that use it, so a rotated
    /// key reaches them (read at each agent's next launch).
    pub fn refresh_secrets(&self, islands: &[String]) {
        for n in islands {
            match self.write_secrets(n) {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => log::warn!("island {n}: {e}"),
            }
        }
    }

    /// The agent home's share of the credentials, written once the container runs: the
    /// Claude login (when the daemon's copy is newer than the island's last seeding), and
    /// the git author and gh host of the island's GitHub identity. `force_claude` seeds
    /// even an island that has its own copy (a new island).
    pub(super) fn seed_home(&self, name: &str, force_claude: bool) {
        let Ok(rec) = self.record(name) else { return };
        if !self.observed.running(name) {
            return;
        }
        if rec.spawned {
            return;
        }
        if let Some(c) = self.creds.claude() {
            if force_claude || c.updated_at > rec.claude_seeded_at {
                let script = "umask 077 && mkdir -p \"$HOME/.claude\" && cat > \"$HOME/.claude/.credentials.json.tmp\" && mv -f \"$HOME/.claude/.credentials.json.tmp\" \"$HOME/.claude/.credentials.json\"";
                let opts = ExecOpts {
                    env: vec![("HOME".into(), "/home/agent".into())],
                    ..ExecOpts::agent(&["sh", "-c", script])
                };
                match self
                    .runtime
                    .exec(name, &opts, Input::Bytes(c.blob.as_bytes()))
                {
                    Ok(out) if out.ok() => {
                        let at = c.updated_at.clone();
                        let _ = self.update(name, |r| r.claude_seeded_at = at);
                    }
                    Ok(out) => log::warn!(
                        "island {name}: seeding Claude credentials failed (exit {:?})",
                        out.status
                    ),
                    Err(e) => log::warn!("island {name}: seeding Claude credentials: {e}"),
                }
            }
        }
        if let Ok(g) = self.creds.github(&rec.github_identity) {
            if rec.github_identity.is_empty() {
                return;
            }
            // Author identity and gh's host entry; the token itself stays in the secrets
            // mount (the credential helper and GH_TOKEN read it there).
            let script = "export HOME=/home/agent\n\
                git config --global user.name \"$1\" && git config --global user.email \"$2\" || exit 1\n\
                mkdir -p \"$HOME/.config/gh\" && printf '%s:\\n    user: %s\\n    git_protocol: https\\n' \"$3\" \"$1\" > \"$HOME/.config/gh/hosts.yml\"\n";
            let email = g.email();
            let opts = ExecOpts::agent(&["sh", "-c", script, "sh", &g.login, &email, &g.host]);
            match self.runtime.exec(name, &opts, Input::None) {
                Ok(out) if out.ok() => {}
                Ok(out) => log::warn!(
                    "island {name}: configuring git for identity {}: {}",
                    rec.github_identity,
                    out.stderr_str().trim()
                ),
                Err(e) => log::warn!("island {name}: configuring git: {e}"),
            }
        }
    }

    /// The identity a new island is bound to: the one asked for (which must exist), else the
    /// default identity when the repo is on its host, else none.
    pub(super) fn resolve_identity(&self, asked: &str, repo: &str) -> Result<String> {
        if !asked.is_empty() {
            crate::creds::check_name("identity", asked)?;
            self.creds.github(asked).map_err(|_| {
                Error::Unprocessable(format!(
                    "GitHub identity {asked:?} is not stored; add it with `dejima creds github add {asked}`"
                ))
            })?;
            return Ok(asked.to_string());
        }
        Ok(match self.creds.default_github() {
            Some((name, g)) if repo_host(repo).is_some_and(|h| h == g.host) => name,
            _ => String::new(),
        })
    }

    /// The provider a new agent of `kind` gets: the one asked for (which must exist), else
    /// the default for its type's key, else none.
    pub(super) fn resolve_provider(&self, kind: AgentType, asked: &str) -> Result<String> {
        let t = super::agents::agent_types()
            .into_iter()
            .find(|t| t.kind == kind);
        if !asked.is_empty() {
            crate::creds::check_name("provider", asked)?;
            let Some(p) = self.creds.provider(asked) else {
                return Err(Error::Unprocessable(format!(
                    "provider {asked:?} is not stored; add it with `dejima creds provider set {asked}`"
                )));
            };
            // A key meant for one vendor must not go to another's default endpoint: a CLI
            // agent takes a provider of its own kind, or one with its own base URL.
            if let Some(want) = t.as_ref().and_then(|t| t.key_env.clone()) {
                if p.env_var != want && p.base_url.is_empty() {
                    return Err(Error::Unprocessable(format!(
                        "provider {asked:?} holds a {} key and has no base_url; a {kind} agent reads {want}",
                        p.env_var
                    )));
                }
            }
            return Ok(asked.to_string());
        }
        Ok(match t.and_then(|t| Some((t.key_env?, t.provider?))) {
            Some((key_env, family)) => self
                .creds
                .provider_for(&key_env, &family)
                .unwrap_or_default(),
            None => String::new(),
        })
    }
}

/// The host of a git URL (`https://host[:port]/...`, `ssh://git@host/...`, `git@host:...`).
pub fn repo_host(repo: &str) -> Option<String> {
    let r = repo.trim();
    if let Ok(u) = url::Url::parse(r) {
        let h = u.host_str()?;
        return Some(match u.port() {
            Some(p) if u.scheme() != "ssh" => format!("{h}:{p}"),
            _ => h.to_string(),
        });
    }
    let (head, _) = r.split_once(':')?;
    let host = head.rsplit('@').next()?;
    (!host.is_empty() && !host.contains('/')).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(kind: AgentType) -> AgentRecord {
        AgentRecord::primary(kind, "")
    }

    #[test]
    fn launch_reads_secrets_by_path_only() {
        let p = ProviderEnv {
            name: "anthropic".into(),
            env_var: "ANTHROPIC_API_KEY".into(),
            base_url_env: "ANTHROPIC_BASE_URL".into(),
            base_url: "http://127.0.0.1:9/".into(),
        };
        let v = launch_argv(
            &agent(AgentType::ClaudeCode),
            Some(&p),
            Some("github.com"),
            true,
        );
        assert_eq!(&v[..2], &["sh", "-c"]);
        assert!(v[2]
            .contains("ANTHROPIC_API_KEY=$(cat /run/secrets/dejima/providers/anthropic/api_key)"));
        assert!(v[2].contains("GH_TOKEN=$(cat"));
        assert!(v[2].ends_with("exec \"$@\"\n"));
        assert_eq!(&v[4..], &["claude", "--continue"]);
    }

    #[test]
    fn codex_gets_its_provider_and_hooks() {
        let p = ProviderEnv {
            name: "openai".into(),
            env_var: "OPENAI_API_KEY".into(),
            base_url_env: "OPENAI_BASE_URL".into(),
            base_url: "http://127.0.0.1:9/v1".into(),
        };
        let mut a = agent(AgentType::Codex);
        a.model = "gpt-x".into();
        let v = program(&a, Some(&p), false);
        assert_eq!(&v[..3], &["codex", "-m", "gpt-x"]);
        assert!(v
            .iter()
            .any(|w| w.contains("base_url=\"http://127.0.0.1:9/v1\"")));
        assert!(v.iter().any(|w| w.starts_with("notify=")));
        assert!(!v.iter().any(|w| w.contains("api_key")));
    }

    #[test]
    fn repo_hosts() {
        assert_eq!(
            repo_host("git@github.com:you/foo.git").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            repo_host("https://github.com/you/foo").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            repo_host("http://127.0.0.1:8080/x.git").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(repo_host("/srv/repo"), None);
    }

    #[test]
    fn models() {
        assert!(check_model("claude-sonnet-4-5").is_ok());
        assert!(check_model("-x").is_err());
        assert!(check_model("a b").is_err());
    }
}
