//! dejima creds claude|github|provider: the credentials dejimad injects into islands (owner
//! only). Secrets are read from a file or standard input, never taken as arguments (which
//! the host's process list shows to everyone).

use std::io::Read;

use argh::FromArgs;
use serde_json::{json, Value};

use super::{fail, print_json, table, Out};
use crate::client::{seg, Body, Client};

/// the credentials islands get: Claude's login, GitHub identities, provider keys (owner only)
#[derive(FromArgs)]
#[argh(subcommand, name = "creds")]
pub struct CredsCmd {
    #[argh(subcommand)]
    cmd: CredsSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum CredsSub {
    Claude(ClaudeCmd),
    Github(GithubCmd),
    Provider(ProviderCmd),
}

/// Claude Code's login (~/.claude/.credentials.json), seeded into new islands
#[derive(FromArgs)]
#[argh(subcommand, name = "claude")]
struct ClaudeCmd {
    #[argh(subcommand)]
    cmd: ClaudeSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum ClaudeSub {
    Set(ClaudeSet),
    Status(ClaudeStatus),
    Rm(ClaudeRm),
}

/// store Claude's login: from --file, --from-host (this host's ~/.claude/.credentials.json), or standard input
#[derive(FromArgs)]
#[argh(subcommand, name = "set")]
struct ClaudeSet {
    /// read the credentials JSON from this file
    #[argh(option)]
    file: Option<String>,
    /// read this host's own ~/.claude/.credentials.json
    #[argh(switch)]
    from_host: bool,
}

/// whether Claude's login is stored (never the secret)
#[derive(FromArgs)]
#[argh(subcommand, name = "status")]
struct ClaudeStatus {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// forget the stored Claude login (islands keep their own copies)
#[derive(FromArgs)]
#[argh(subcommand, name = "rm")]
struct ClaudeRm {}

/// GitHub identities islands clone and push as
#[derive(FromArgs)]
#[argh(subcommand, name = "github")]
struct GithubCmd {
    #[argh(subcommand)]
    cmd: GithubSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum GithubSub {
    Add(GithubAdd),
    Ls(GithubLs),
    Rm(GithubRm),
    Repos(GithubRepos),
}

/// add or replace an identity; its token is read from --token-file or standard input
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
struct GithubAdd {
    /// the identity's name (e.g. work)
    #[argh(positional)]
    name: String,
    /// the GitHub login
    #[argh(option)]
    login: String,
    /// read the token from this file (default: standard input)
    #[argh(option)]
    token_file: Option<String>,
    /// the GitHub user id (for the noreply author email)
    #[argh(option)]
    id: Option<u64>,
    /// a GitHub Enterprise host (default github.com)
    #[argh(option)]
    host: Option<String>,
    /// REST API base override
    #[argh(option)]
    api_url: Option<String>,
    /// bind it to new islands whose repo is on its host
    #[argh(switch)]
    default: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// list identities (token hints only) and the islands bound to each
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct GithubLs {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// remove an identity (says which islands still name it)
#[derive(FromArgs)]
#[argh(subcommand, name = "rm")]
struct GithubRm {
    #[argh(positional)]
    name: String,
}

/// list an identity's repositories, or create one with --create NAME --private|--public
#[derive(FromArgs)]
#[argh(subcommand, name = "repos")]
struct GithubRepos {
    #[argh(positional)]
    name: String,
    /// page (from 1)
    #[argh(option, default = "1")]
    page: u32,
    /// repositories per page (1-100)
    #[argh(option, default = "30")]
    per_page: u32,
    /// create a repository with this name
    #[argh(option)]
    create: Option<String>,
    /// the new repository is private
    #[argh(switch)]
    private: bool,
    /// the new repository is public
    #[argh(switch)]
    public: bool,
    /// the new repository's description
    #[argh(option)]
    description: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// provider API keys agents are launched with (anthropic, openai, or your own)
#[derive(FromArgs)]
#[argh(subcommand, name = "provider")]
struct ProviderCmd {
    #[argh(subcommand)]
    cmd: ProviderSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum ProviderSub {
    Set(ProviderSet),
    Ls(ProviderLs),
    Rm(ProviderRm),
}

/// set a provider's key (read from --key-file or standard input); bound islands get it at once
#[derive(FromArgs)]
#[argh(subcommand, name = "set")]
struct ProviderSet {
    /// provider name: anthropic, openai, or any other with --env-var
    #[argh(positional)]
    name: String,
    /// read the key from this file (default: standard input)
    #[argh(option)]
    key_file: Option<String>,
    /// base URL (https, or http to a loopback proxy)
    #[argh(option)]
    base_url: Option<String>,
    /// variable the key goes in (default for anthropic/openai: their own)
    #[argh(option)]
    env_var: Option<String>,
    /// variable the base URL goes in
    #[argh(option)]
    base_url_env: Option<String>,
    /// the provider agents of its kind get when they name none
    #[argh(switch)]
    default: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// list providers (masked) and the islands using each
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct ProviderLs {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// remove a provider (says which islands still name it)
#[derive(FromArgs)]
#[argh(subcommand, name = "rm")]
struct ProviderRm {
    #[argh(positional)]
    name: String,
}

/// A secret from a file, or the first line of standard input.
fn read_secret(file: Option<&str>, what: &str) -> Result<String, super::Failure> {
    let raw = match file {
        Some(f) => std::fs::read_to_string(f).map_err(|e| fail(format!("{f}: {e}")))?,
        None => {
            use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
            let stdin = std::io::stdin();
            // On a terminal the secret is typed without echo; piped in, it is read as is.
            let saved = tcgetattr(&stdin).ok();
            if let Some(t) = &saved {
                eprint!("{what}: ");
                let mut quiet = t.clone();
                quiet.local_flags.remove(LocalFlags::ECHO);
                let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
            }
            let mut s = String::new();
            let r = stdin.read_line(&mut s);
            if let Some(t) = &saved {
                let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
                eprintln!();
            }
            r?;
            s
        }
    };
    let s = raw.trim().to_string();
    if s.is_empty() {
        return Err(fail(format!("no {what} given")));
    }
    Ok(s)
}

fn delete(c: &Client, path: &str) -> Result<Value, super::Failure> {
    let text = c.call("DELETE", path, Body::None)?.text()?;
    serde_json::from_str(&text).map_err(|e| fail(format!("unreadable answer: {e}")))
}

fn removed(v: &Value, what: &str) {
    let bound: Vec<&str> = v["still_bound"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    if bound.is_empty() {
        println!("removed {what}");
    } else {
        println!(
            "removed {what}; still named by: {} (they lose it at once; rebind or upgrade them)",
            bound.join(", ")
        );
    }
}

fn list_or_dash(v: &Value) -> String {
    let items: Vec<&str> = v
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

fn s(v: &Value) -> String {
    v.as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("-")
        .to_string()
}

pub fn creds(c: &Client, a: CredsCmd) -> Out {
    match a.cmd {
        CredsSub::Claude(a) => match a.cmd {
            ClaudeSub::Set(a) => {
                let (text, source) = if a.from_host {
                    let home = std::env::var("HOME").map_err(|_| fail("HOME is not set"))?;
                    let p = format!("{home}/.claude/.credentials.json");
                    let t = std::fs::read_to_string(&p)
                        .map_err(|e| fail(format!("{p}: {e}; log in with `claude` first")))?;
                    (t, "host")
                } else if let Some(f) = &a.file {
                    (
                        std::fs::read_to_string(f).map_err(|e| fail(format!("{f}: {e}")))?,
                        "api",
                    )
                } else {
                    let mut t = String::new();
                    std::io::stdin().read_to_string(&mut t)?;
                    (t, "api")
                };
                let blob: Value = serde_json::from_str(text.trim()).map_err(|_| {
                    fail("the credentials are not JSON (expected the content of ~/.claude/.credentials.json)")
                })?;
                let v: Value = c.send_json(
                    "PUT",
                    "/v1/credentials/claude",
                    &json!({"credentials_json": blob, "source": source}),
                )?;
                println!(
                    "stored Claude credentials ({}); new islands get them, existing ones on upgrade",
                    s(&v["source"])
                );
            }
            ClaudeSub::Status(a) => {
                let v: Value = c.get_json("/v1/credentials/claude")?;
                if a.json {
                    print_json(&v);
                } else if v["present"] == true {
                    println!(
                        "present (source {}, updated {})",
                        s(&v["source"]),
                        s(&v["updated_at"])
                    );
                } else {
                    println!("not stored; `dejima creds claude set --from-host` stores this host's login");
                }
            }
            ClaudeSub::Rm(_) => {
                c.call("DELETE", "/v1/credentials/claude", Body::None)?;
                println!("removed the stored Claude credentials");
            }
        },
        CredsSub::Github(a) => match a.cmd {
            GithubSub::Add(a) => {
                let token = read_secret(a.token_file.as_deref(), "GitHub token")?;
                let mut body = json!({"login": a.login, "token": token, "default": a.default});
                if let Some(id) = a.id {
                    body["id"] = id.into();
                }
                if let Some(h) = a.host {
                    body["host"] = h.into();
                }
                if let Some(u) = a.api_url {
                    body["api_url"] = u.into();
                }
                let v: Value = c.send_json(
                    "PUT",
                    &format!("/v1/credentials/github/{}", seg(&a.name)),
                    &body,
                )?;
                if a.json {
                    print_json(&v);
                } else {
                    println!(
                        "identity {} ({} on {}, token {})",
                        a.name,
                        s(&v["login"]),
                        s(&v["host"]),
                        s(&v["token_hint"])
                    );
                }
            }
            GithubSub::Ls(a) => {
                let v: Value = c.get_json("/v1/credentials/github")?;
                if a.json {
                    print_json(&v);
                } else {
                    let rows: Vec<Vec<String>> = v
                        .as_array()
                        .map(|l| {
                            l.iter()
                                .map(|g| {
                                    vec![
                                        s(&g["name"]),
                                        s(&g["login"]),
                                        s(&g["host"]),
                                        if g["default"] == true { "yes" } else { "-" }.into(),
                                        s(&g["token_hint"]),
                                        list_or_dash(&g["islands"]),
                                    ]
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    table(
                        &["NAME", "LOGIN", "HOST", "DEFAULT", "TOKEN", "ISLANDS"],
                        &rows,
                    );
                }
            }
            GithubSub::Rm(a) => {
                let v = delete(c, &format!("/v1/credentials/github/{}", seg(&a.name)))?;
                removed(&v, &format!("identity {}", a.name));
            }
            GithubSub::Repos(a) => {
                let base = format!("/v1/credentials/github/{}/repos", seg(&a.name));
                if let Some(repo) = a.create {
                    let private = match (a.private, a.public) {
                        (true, false) => true,
                        (false, true) => false,
                        _ => return Err(fail("say --private or --public")),
                    };
                    let mut body = json!({"name": repo, "private": private});
                    if let Some(d) = a.description {
                        body["description"] = d.into();
                    }
                    let v: Value = c.send_json("POST", &base, &body)?;
                    if a.json {
                        print_json(&v);
                    } else {
                        println!("created {} ({})", s(&v["full_name"]), s(&v["clone_url"]));
                    }
                    return Ok(());
                }
                let v: Value =
                    c.get_json(&format!("{base}?page={}&per_page={}", a.page, a.per_page))?;
                if a.json {
                    print_json(&v);
                } else {
                    let rows: Vec<Vec<String>> = v["repos"]
                        .as_array()
                        .map(|l| {
                            l.iter()
                                .map(|r| {
                                    vec![
                                        s(&r["full_name"]),
                                        if r["private"] == true {
                                            "private"
                                        } else {
                                            "public"
                                        }
                                        .into(),
                                        s(&r["clone_url"]),
                                    ]
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    table(&["REPO", "VISIBILITY", "CLONE URL"], &rows);
                    if let Some(n) = v["next_page"].as_u64() {
                        println!("more: --page {n}");
                    }
                }
            }
        },
        CredsSub::Provider(a) => match a.cmd {
            ProviderSub::Set(a) => {
                let key = read_secret(a.key_file.as_deref(), "API key")?;
                let mut body = json!({"api_key": key, "default": a.default});
                for (k, v) in [
                    ("base_url", a.base_url),
                    ("env_var", a.env_var),
                    ("base_url_env", a.base_url_env),
                ] {
                    if let Some(v) = v {
                        body[k] = v.into();
                    }
                }
                let v: Value = c.send_json(
                    "PUT",
                    &format!("/v1/credentials/providers/{}", seg(&a.name)),
                    &body,
                )?;
                if a.json {
                    print_json(&v);
                } else {
                    println!(
                        "provider {} ({} {})",
                        a.name,
                        s(&v["env_var"]),
                        s(&v["key_hint"])
                    );
                }
            }
            ProviderSub::Ls(a) => {
                let v: Value = c.get_json("/v1/credentials/providers")?;
                if a.json {
                    print_json(&v);
                } else {
                    let rows: Vec<Vec<String>> = v
                        .as_array()
                        .map(|l| {
                            l.iter()
                                .map(|p| {
                                    vec![
                                        s(&p["name"]),
                                        s(&p["env_var"]),
                                        s(&p["key_hint"]),
                                        s(&p["base_url"]),
                                        if p["default"] == true { "yes" } else { "-" }.into(),
                                        list_or_dash(&p["islands"]),
                                    ]
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    table(
                        &["NAME", "ENV", "KEY", "BASE URL", "DEFAULT", "ISLANDS"],
                        &rows,
                    );
                }
            }
            ProviderSub::Rm(a) => {
                let v = delete(c, &format!("/v1/credentials/providers/{}", seg(&a.name)))?;
                removed(&v, &format!("provider {}", a.name));
            }
        },
    }
    Ok(())
}
