//! The credentials the daemon holds and injects into islands: Claude Code's login blob,
//! GitHub identities and provider API keys. One owner (`Creds`), one lock, files of mode 0600
//! under `$DEJIMA_HOME/credentials/` written atomically. Nothing here is ever serialised to a
//! response, an event, a log line or an error message with its secret: the views below are
//! the only shapes that leave this module, and they carry hints at most.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store;
use crate::util::{self, lock};

pub mod github;

/// Largest Claude credentials blob accepted (real ones are well under 4 KiB).
const MAX_CLAUDE_BLOB: usize = 64 * 1024;
/// Longest token or key accepted.
const MAX_SECRET: usize = 8 * 1024;

/// What a provider name means when its entry names no env var.
pub fn known_provider(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "anthropic" => Some(("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")),
        "openai" => Some(("OPENAI_API_KEY", "OPENAI_BASE_URL")),
        _ => None,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ClaudeCreds {
    /// The blob as Claude Code writes it to `~/.claude/.credentials.json`.
    pub blob: String,
    /// `api` (pushed) or `host` (the host's own file).
    pub source: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct GithubIdentity {
    pub login: String,
    pub token: String,
    #[serde(default)]
    pub id: Option<u64>,
    /// `github.com`, or a GitHub Enterprise host (`host[:port]`).
    pub host: String,
    /// The REST API's base; empty: derived from the host.
    #[serde(default)]
    pub api_url: String,
    #[serde(default)]
    pub default: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl GithubIdentity {
    /// `https://api.github.com`, `https://{host}/api/v3` for Enterprise, or the override.
    pub fn api_base(&self) -> String {
        if !self.api_url.is_empty() {
            self.api_url.trim_end_matches('/').to_string()
        } else if self.host == "github.com" {
            "https://api.github.com".into()
        } else {
            format!("https://{}/api/v3", self.host)
        }
    }

    /// The commit author email GitHub attributes to this identity without exposing a mailbox.
    pub fn email(&self) -> String {
        // A port is no part of a mail domain.
        let host = self.host.split(':').next().unwrap_or(&self.host);
        let domain = format!("users.noreply.{host}");
        match self.id {
            Some(id) => format!("{id}+{}@{domain}", self.login),
            None => format!("{}@{domain}", self.login),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Provider {
    pub api_key: String,
    #[serde(default)]
    pub base_url: String,
    /// The variable the key goes in (e.g. ANTHROPIC_API_KEY).
    pub env_var: String,
    /// The variable the base URL goes in, when there is one.
    #[serde(default)]
    pub base_url_env: String,
    #[serde(default)]
    pub default: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    claude: Option<ClaudeCreds>,
    #[serde(default)]
    github: BTreeMap<String, GithubIdentity>,
    #[serde(default)]
    providers: BTreeMap<String, Provider>,
}

// ---- what callers send ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutClaude {
    /// The blob: the JSON object of ~/.claude/.credentials.json.
    pub credentials_json: serde_json::Value,
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutGithub {
    pub login: String,
    pub token: String,
    #[serde(default, deserialize_with = "crate::api::whole::opt_u64")]
    pub id: Option<u64>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub default: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutProvider {
    pub api_key: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub env_var: Option<String>,
    #[serde(default)]
    pub base_url_env: Option<String>,
    #[serde(default)]
    pub default: Option<bool>,
}

// ---- what leaves: no secrets ----

#[derive(Debug, Serialize, PartialEq)]
pub struct ClaudeStatus {
    pub present: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Serialize, Clone)]
pub struct GithubView {
    pub name: String,
    pub login: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub host: String,
    pub api_url: String,
    pub default: bool,
    pub token_hint: String,
    pub created_at: String,
    pub updated_at: String,
    /// Islands bound to this identity.
    pub islands: Vec<String>,
}

#[derive(Debug, Serialize, Clone)]
pub struct ProviderView {
    pub name: String,
    pub env_var: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub base_url_env: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub base_url: String,
    pub default: bool,
    pub key_hint: String,
    pub created_at: String,
    pub updated_at: String,
    /// Islands with an agent bound to this provider.
    pub islands: Vec<String>,
}

/// What a DELETE reports: the islands that still name what was removed.
#[derive(Debug, Serialize)]
pub struct Removed {
    pub removed: String,
    pub still_bound: Vec<String>,
}

/// A secret shown as its first and last few characters, never enough to use.
pub fn hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "…".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// Credential names: the same shape as island names, short.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(Error::bad(format!(
            "{kind} name {name:?} must be 1-40 of a-z, 0-9, '-', '_', starting with a letter or digit"
        )))
    }
}

fn check_secret(what: &str, s: &str) -> Result<()> {
    if s.trim().is_empty() {
        return Err(Error::bad(format!("{what} is required")));
    }
    if s.chars().count() > MAX_SECRET || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::bad(format!(
            "{what} must be at most {MAX_SECRET} bytes with no spaces or control characters"
        )));
    }
    Ok(())
}

fn check_env_var(v: &str) -> Result<()> {
    let shaped = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !v.as_bytes()[0].is_ascii_digit();
    if !shaped {
        return Err(Error::bad(format!(
            "env var {v:?} must be an upper-case name (A-Z, 0-9, _, not starting with a digit)"
        )));
    }
    let ok = true
        // Variables the island or its programs rely on, or that make a shell or loader run
        // something: a key must never land in one.
        && !["DEJIMA_", "LD_", "GIT_", "GH_", "BASH_", "NODE_", "PYTHON", "SSH_", "LC_"]
            .iter()
            .any(|p| v.starts_with(p))
        && !matches!(
            v,
            "PATH" | "HOME" | "USER" | "LOGNAME" | "SHELL" | "TERM" | "ENV" | "PWD" | "TMPDIR"
                | "LANG" | "IFS" | "PS4" | "PROMPT_COMMAND" | "MAIL"
        );
    if ok {
        Ok(())
    } else {
        Err(Error::Unprocessable(format!(
            "env var {v:?} is one the island or its programs rely on; pick another"
        )))
    }
}

/// An http(s) URL with a host; plain http only to a loopback address (a local stand-in or
/// proxy), since the key travels with every request.
fn check_url(what: &str, u: &str) -> Result<()> {
    // It is written into CLI configuration (a TOML string for codex): plain URL characters
    // only, no quoting to escape.
    if u.len() > 2048
        || u.chars()
            .any(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\\' | '`' | '<' | '>'))
    {
        return Err(Error::bad(format!(
            "{what} must be a plain URL (no spaces, quotes, backslashes or control characters)"
        )));
    }
    // Shaped like a URL but not one (a host no parser takes): well-formed, unusable.
    let parsed = url::Url::parse(u).map_err(|e| Error::Unprocessable(format!("{what}: {e}")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // It is shown in listings and in CLI command lines; credentials belong in the key.
        return Err(Error::bad(format!(
            "{what} must not carry a user or password"
        )));
    }
    let host = parsed.host_str().unwrap_or("");
    let loopback = host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" if !host.is_empty() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(Error::bad(format!(
            "{what} {u} must be https (http only to a loopback address)"
        ))),
    }
}

/// A GitHub host: `github.com` or an Enterprise `host[:port]`.
fn check_host(h: &str) -> Result<()> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
        && !h.starts_with(['-', '.', ':']);
    if ok {
        Ok(())
    } else {
        Err(Error::bad(format!(
            "host {h:?} must be a host name like github.com or ghe.example.com[:port]"
        )))
    }
}

pub struct Creds {
    dir: PathBuf,
    state: Mutex<State>,
}

impl Creds {
    /// Load `dir/credentials.json` (absent: empty). An unreadable file is an error: the
    /// daemon must not start and then overwrite credentials it could not read.
    pub fn open(dir: PathBuf) -> std::io::Result<Creds> {
        let path = dir.join("credentials.json");
        let state = match std::fs::read(&path) {
            // A parse error's text can quote a value: name only where it is.
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} is not a credential store ({:?} error at line {} column {})",
                        path.display(),
                        e.classify(),
                        e.line(),
                        e.column()
                    ),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(e),
        };
        Ok(Creds {
            dir,
            state: Mutex::new(state),
        })
    }

    fn save(&self, s: &State) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.dir)
            .and_then(|_| {
                std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            })
            .and_then(|_| store::write_json(&self.dir.join("credentials.json"), s))
            .map_err(|e| Error::Internal(format!("cannot save credentials: {e}")))
    }

    /// Change a copy of the state, save it, and only then make it the state: a refused
    /// change or a failed save leaves everything as it was.
    fn change<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut s = lock(&self.state);
        let mut next = s.clone();
        let out = f(&mut next)?;
        self.save(&next)?;
        *s = next;
        Ok(out)
    }

    // ---- Claude ----

    pub fn put_claude(&self, req: PutClaude) -> Result<ClaudeStatus> {
        let blob = match req.credentials_json {
            v @ serde_json::Value::Object(_) => v.to_string(),
            _ => {
                return Err(Error::bad(
                    "credentials_json must be a JSON object (the content of ~/.claude/.credentials.json)",
                ))
            }
        };
        if blob.len() > MAX_CLAUDE_BLOB {
            return Err(Error::TooLarge(format!(
                "credentials_json is over {MAX_CLAUDE_BLOB} bytes"
            )));
        }
        match serde_json::from_str::<serde_json::Value>(&blob) {
            Ok(serde_json::Value::Object(_)) => {}
            // Never echo the blob: it is the secret.
            _ => {
                return Err(Error::bad(
                    "credentials_json does not hold a JSON object (as ~/.claude/.credentials.json does)",
                ))
            }
        }
        let source = match req.source.as_deref() {
            None | Some("api") => "api",
            Some("host") => "host",
            Some(_) => return Err(Error::bad("source must be api or host")),
        };
        self.change(|s| {
            s.claude = Some(ClaudeCreds {
                blob,
                source: source.into(),
                updated_at: util::now_rfc3339(),
            });
            Ok(())
        })?;
        Ok(self.claude_status())
    }

    pub fn claude_status(&self) -> ClaudeStatus {
        match &lock(&self.state).claude {
            Some(c) => ClaudeStatus {
                present: true,
                source: Some(c.source.clone()),
                updated_at: Some(c.updated_at.clone()),
            },
            None => ClaudeStatus {
                present: false,
                source: None,
                updated_at: None,
            },
        }
    }

    pub fn delete_claude(&self) -> Result<()> {
        self.change(|s| {
            s.claude = None;
            Ok(())
        })
    }

    /// The blob, for seeding an island (never for a response).
    pub fn claude(&self) -> Option<ClaudeCreds> {
        lock(&self.state).claude.clone()
    }

    // ---- GitHub ----

    pub fn put_github(&self, name: &str, req: PutGithub) -> Result<(GithubView, bool)> {
        check_name("identity", name)?;
        let login_ok = !req.login.is_empty()
            && req.login.len() <= 39
            && req
                .login
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !login_ok {
            return Err(Error::bad(format!(
                "login {:?} is not a GitHub login",
                req.login
            )));
        }
        check_secret("token", &req.token)?;
        let host = req
            .host
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "github.com".into())
            .to_ascii_lowercase();
        check_host(&host)?;
        let api_url = req.api_url.unwrap_or_default();
        if !api_url.is_empty() {
            check_url("api_url", &api_url)?;
        }
        let now = util::now_rfc3339();
        let created = self.change(|s| {
            let created = !s.github.contains_key(name);
            let prev = s.github.get(name).cloned().unwrap_or_default();
            let default = req.default.unwrap_or(prev.default);
            if default {
                for v in s.github.values_mut() {
                    v.default = false;
                }
            }
            s.github.insert(
                name.to_string(),
                GithubIdentity {
                    login: req.login,
                    token: req.token,
                    id: req.id,
                    host,
                    api_url,
                    default,
                    created_at: if created {
                        now.clone()
                    } else {
                        prev.created_at
                    },
                    updated_at: now,
                },
            );
            Ok(created)
        })?;
        Ok((self.github_view(name, Vec::new())?, created))
    }

    pub fn github(&self, name: &str) -> Result<GithubIdentity> {
        lock(&self.state)
            .github
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("GitHub identity {name:?} not found")))
    }

    /// The identity marked default, if any.
    pub fn default_github(&self) -> Option<(String, GithubIdentity)> {
        lock(&self.state)
            .github
            .iter()
            .find(|(_, g)| g.default)
            .map(|(n, g)| (n.clone(), g.clone()))
    }

    pub fn github_view(&self, name: &str, islands: Vec<String>) -> Result<GithubView> {
        let g = self.github(name)?;
        Ok(GithubView {
            name: name.into(),
            login: g.login.clone(),
            id: g.id,
            host: g.host.clone(),
            api_url: g.api_base(),
            default: g.default,
            token_hint: hint(&g.token),
            created_at: g.created_at,
            updated_at: g.updated_at,
            islands,
        })
    }

    pub fn github_names(&self) -> Vec<String> {
        lock(&self.state).github.keys().cloned().collect()
    }

    pub fn delete_github(&self, name: &str) -> Result<()> {
        self.change(|s| {
            s.github
                .remove(name)
                .map(drop)
                .ok_or_else(|| Error::NotFound(format!("GitHub identity {name:?} not found")))
        })
    }

    // ---- providers ----

    pub fn put_provider(&self, name: &str, req: PutProvider) -> Result<(ProviderView, bool)> {
        check_name("provider", name)?;
        check_secret("api_key", &req.api_key)?;
        let known = known_provider(name);
        let env_var = match (req.env_var.filter(|v| !v.is_empty()), known) {
            (Some(v), _) => v,
            (None, Some((k, _))) => k.to_string(),
            (None, None) => {
                return Err(Error::Unprocessable(format!(
                    "provider {name:?} is not one dejima knows (anthropic, openai); say which env var its key goes in (env_var)"
                )))
            }
        };
        check_env_var(&env_var)?;
        let base_url = req.base_url.unwrap_or_default();
        if !base_url.is_empty() {
            check_url("base_url", &base_url)?;
        }
        let base_url_env = match (req.base_url_env.filter(|v| !v.is_empty()), known) {
            (Some(v), _) => v,
            (None, Some((_, b))) => b.to_string(),
            (None, None) => String::new(),
        };
        if !base_url_env.is_empty() {
            check_env_var(&base_url_env)?;
            if base_url_env == env_var {
                return Err(Error::Unprocessable(
                    "base_url_env must differ from env_var".into(),
                ));
            }
        } else if !base_url.is_empty() {
            return Err(Error::Unprocessable(
                "base_url needs base_url_env: the variable the agent reads it from".into(),
            ));
        }
        let now = util::now_rfc3339();
        let created = self.change(|s| {
            let created = !s.providers.contains_key(name);
            let prev = s.providers.get(name).cloned().unwrap_or_default();
            let default = req.default.unwrap_or(prev.default);
            if default {
                // One default per key variable: the one an agent of that kind gets.
                for p in s.providers.values_mut() {
                    if p.env_var == env_var {
                        p.default = false;
                    }
                }
            }
            s.providers.insert(
                name.to_string(),
                Provider {
                    api_key: req.api_key,
                    base_url,
                    env_var,
                    base_url_env,
                    default,
                    created_at: if created {
                        now.clone()
                    } else {
                        prev.created_at
                    },
                    updated_at: now,
                },
            );
            Ok(created)
        })?;
        Ok((self.provider_view(name, Vec::new())?, created))
    }

    pub fn provider(&self, name: &str) -> Option<Provider> {
        lock(&self.state).providers.get(name).cloned()
    }

    pub fn provider_names(&self) -> Vec<String> {
        lock(&self.state).providers.keys().cloned().collect()
    }

    pub fn provider_view(&self, name: &str, islands: Vec<String>) -> Result<ProviderView> {
        let p = self
            .provider(name)
            .ok_or_else(|| Error::NotFound(format!("provider {name:?} not found")))?;
        Ok(ProviderView {
            name: name.into(),
            env_var: p.env_var.clone(),
            base_url_env: p.base_url_env.clone(),
            base_url: p.base_url.clone(),
            default: p.default,
            key_hint: hint(&p.api_key),
            created_at: p.created_at,
            updated_at: p.updated_at,
            islands,
        })
    }

    pub fn delete_provider(&self, name: &str) -> Result<()> {
        self.change(|s| {
            s.providers
                .remove(name)
                .map(drop)
                .ok_or_else(|| Error::NotFound(format!("provider {name:?} not found")))
        })
    }

    /// The provider an agent whose type reads `key_env` (and is served by `family`) gets
    /// when it names none: the default for that variable, else the one named `family`.
    pub fn provider_for(&self, key_env: &str, family: &str) -> Option<String> {
        let s = lock(&self.state);
        s.providers
            .iter()
            .find(|(_, p)| p.default && p.env_var == key_env)
            .map(|(n, _)| n.clone())
            .or_else(|| s.providers.contains_key(family).then(|| family.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> (tempfile::TempDir, Creds) {
        let d = tempfile::tempdir().unwrap();
        let c = Creds::open(d.path().join("credentials")).unwrap();
        (d, c)
    }

    #[test]
    fn hints_never_show_enough() {
        assert_eq!(hint("short"), "…");
        assert_eq!(hint("sk-ant-0123456789abcdef"), "sk-a…cdef");
    }

    #[test]
    fn providers_validate_and_persist_without_echo() {
        let (d, c) = creds();
        let put = |name: &str, key: &str, env: Option<&str>, url: Option<&str>| {
            c.put_provider(
                name,
                PutProvider {
                    api_key: key.into(),
                    base_url: url.map(String::from),
                    env_var: env.map(String::from),
                    base_url_env: None,
                    default: None,
                },
            )
        };
        assert!(put("anthropic", "sk-secret-value-1234", None, None).is_ok());
        let e = put("mine", "sk-secret-value-1234", None, None).unwrap_err();
        assert!(!e.message().contains("sk-secret"));
        assert!(put("mine", "k", Some("PATH"), None).is_err());
        assert!(put("openai", "k k", None, None).is_err());
        assert!(put("openai", "key", None, Some("http://example.com")).is_err());
        assert!(put("openai", "key", None, Some("http://127.0.0.1:9/v1")).is_ok());
        assert!(put("openai", "key", None, Some("https://x.example/\"a")).is_err());
        assert!(put("openai", "key", None, Some("https://x.example/a b")).is_err());
        assert!(put("openai", "key", None, Some("https://u:p@x.example/")).is_err());
        assert!(put("mine", "k", Some("LD_LIBRARY_PATH"), None).is_err());
        assert!(put("mine", "k", Some("BASH_ENV"), None).is_err());
        assert!(put("Bad Name", "key", None, None).is_err());
        let v = c.provider_view("anthropic", vec![]).unwrap();
        assert_eq!(v.env_var, "ANTHROPIC_API_KEY");
        assert!(!serde_json::to_string(&v).unwrap().contains("secret-value"));
        let again = Creds::open(d.path().join("credentials")).unwrap();
        assert_eq!(
            again.provider("anthropic").unwrap().api_key,
            "sk-secret-value-1234"
        );
        assert_eq!(
            again.provider_for("ANTHROPIC_API_KEY", "anthropic"),
            Some("anthropic".into())
        );
    }

    #[test]
    fn github_hosts_and_defaults() {
        let (_d, c) = creds();
        let put = |name: &str, host: Option<&str>, default: Option<bool>| {
            c.put_github(
                name,
                PutGithub {
                    login: "octo".into(),
                    token: "ghp_0123456789abcdef".into(),
                    id: Some(7),
                    host: host.map(String::from),
                    api_url: None,
                    default,
                },
            )
        };
        assert!(put("work", None, Some(true)).unwrap().1);
        put("ghe", Some("ghe.example.com"), Some(true)).unwrap();
        assert!(!c.github("work").unwrap().default);
        assert_eq!(
            c.github("ghe").unwrap().api_base(),
            "https://ghe.example.com/api/v3"
        );
        assert_eq!(
            c.github("work").unwrap().api_base(),
            "https://api.github.com"
        );
        assert_eq!(
            c.github("work").unwrap().email(),
            "7+octo@users.noreply.github.com"
        );
        assert!(put("x", Some("-bad"), None).is_err());
        assert!(c.delete_github("nope").is_err());
    }

    #[test]
    fn claude_blob_must_be_an_object() {
        let (_d, c) = creds();
        let e = c
            .put_claude(PutClaude {
                credentials_json: serde_json::json!("{\"not\": \"an object secret\"}"),
                source: None,
            })
            .unwrap_err();
        assert!(!e.message().contains("secret"));
        assert!(!c.claude_status().present);
        c.put_claude(PutClaude {
            credentials_json: serde_json::json!({"claudeAiOauth": {"accessToken": "x"}}),
            source: None,
        })
        .unwrap();
        assert!(c.claude_status().present);
    }
}
