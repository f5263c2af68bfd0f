//! The daemon's side of the GitHub REST API: an identity's repositories, listed a page at a
//! time and created. The token goes in the Authorization header and nowhere else; errors
//! say what GitHub answered, never what was sent.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::GithubIdentity;
use crate::error::{Error, Result};

/// One repository, as the API reports it (the fields a create flow needs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Repo {
    pub name: String,
    pub full_name: String,
    pub private: bool,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub clone_url: String,
    #[serde(default)]
    pub ssh_url: String,
    #[serde(default)]
    pub html_url: String,
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RepoPage {
    pub repos: Vec<Repo>,
    pub page: u32,
    pub per_page: u32,
    /// The next page, when GitHub's Link header names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRepo {
    pub name: String,
    /// Required: a repository's visibility is never guessed.
    pub private: Option<bool>,
    #[serde(default)]
    pub description: Option<String>,
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirects(0)
        .user_agent(concat!("dejimad/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// What GitHub's refusal means for the caller. `what` names the identity, never its token.
/// An identity with its own `api_url` that fails is the caller's to fix (422); the real
/// GitHub failing is a bad gateway (502).
fn upstream(e: ureq::Error, name: &str, g: &GithubIdentity) -> Error {
    let base = g.api_base();
    match upstream_at(e, name, &base) {
        Error::BadGateway(m) if !g.api_url.is_empty() => {
            Error::Unprocessable(format!("{m}; check identity {name:?}'s api_url"))
        }
        other => other,
    }
}

fn upstream_at(e: ureq::Error, name: &str, base: &str) -> Error {
    match e {
        ureq::Error::Status(code, resp) => {
            // GitHub's own message (e.g. "Bad credentials", "name already exists").
            let msg = resp
                .into_json::<serde_json::Value>()
                .ok()
                .and_then(|v| {
                    let mut m = v.get("message")?.as_str()?.to_string();
                    if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
                        for e in errs {
                            if let Some(s) = e.get("message").and_then(|s| s.as_str()) {
                                m.push_str("; ");
                                m.push_str(s);
                            }
                        }
                    }
                    Some(m.chars().take(300).collect::<String>())
                })
                .unwrap_or_default();
            let why = match code {
                401 => format!("GitHub refused identity {name:?}'s token (HTTP 401 {msg}); replace it with `dejima creds github add {name}`"),
                403 => format!("GitHub refused identity {name:?} (HTTP 403 {msg}); the token may lack the repo scope or be rate limited"),
                404 => format!("GitHub has no such resource for identity {name:?} (HTTP 404 {msg})"),
                422 => format!("GitHub refused the request (HTTP 422 {msg})"),
                c => {
                    return Error::BadGateway(format!(
                        "GitHub at {base} answered HTTP {c} {msg}"
                    ))
                }
            };
            Error::Unprocessable(why)
        }
        ureq::Error::Transport(t) => {
            Error::BadGateway(format!("cannot reach GitHub at {base}: {}", t.kind()))
        }
    }
}

/// The `rel="next"` page in a Link header.
fn next_page(link: &str) -> Option<u32> {
    link.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        if !rel.contains("rel=\"next\"") {
            return None;
        }
        let url = url.trim().trim_start_matches('<').trim_end_matches('>');
        let parsed = url::Url::parse(url).ok()?;
        let page = parsed
            .query_pairs()
            .find(|(k, _)| k == "page")?
            .1
            .parse()
            .ok()?;
        Some(page)
    })
}

/// GET {api}/user/repos: the repositories the identity can reach, most recently updated first.
pub fn list_repos(name: &str, g: &GithubIdentity, page: u32, per_page: u32) -> Result<RepoPage> {
    if page == 0 || !(1..=100).contains(&per_page) {
        return Err(Error::bad("page starts at 1; per_page is 1-100"));
    }
    let base = g.api_base();
    crate::egress::check(&base)?;
    let resp = agent()
        .get(&format!("{base}/user/repos"))
        .query("page", &page.to_string())
        .query("per_page", &per_page.to_string())
        .query("sort", "updated")
        .set("Accept", "application/vnd.github+json")
        .set("X-GitHub-Api-Version", "2022-11-28")
        .set("Authorization", &format!("Bearer {}", g.token))
        .call()
        .map_err(|e| upstream(e, name, g))?;
    let next = resp.header("Link").and_then(next_page);
    let repos: Vec<Repo> = resp.into_json().map_err(|e| {
        Error::BadGateway(format!(
            "GitHub at {base} sent a repository list we cannot read: {e}"
        ))
    })?;
    Ok(RepoPage {
        repos,
        page,
        per_page,
        next_page: next,
    })
}

/// POST {api}/user/repos: a new repository owned by the identity.
pub fn create_repo(name: &str, g: &GithubIdentity, req: &NewRepo) -> Result<Repo> {
    let ok = !req.name.is_empty()
        && req.name.len() <= 100
        && req
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        return Err(Error::bad(format!(
            "repository name {:?} must be 1-100 of A-Z, a-z, 0-9, '-', '_', '.'",
            req.name
        )));
    }
    let private = req.private.ok_or_else(|| {
        Error::bad(
            "private is required: say whether the repository is private (true) or public (false)",
        )
    })?;
    let mut body = serde_json::json!({ "name": req.name, "private": private });
    if let Some(d) = &req.description {
        if d.chars().count() > 350 {
            return Err(Error::bad("description is at most 350 bytes"));
        }
        body["description"] = serde_json::Value::String(d.clone());
    }
    let base = g.api_base();
    crate::egress::check(&base)?;
    let resp = agent()
        .post(&format!("{base}/user/repos"))
        .set("Accept", "application/vnd.github+json")
        .set("X-GitHub-Api-Version", "2022-11-28")
        .set("Authorization", &format!("Bearer {}", g.token))
        .send_json(body)
        .map_err(|e| upstream(e, name, g))?;
    resp.into_json().map_err(|e| {
        Error::BadGateway(format!(
            "GitHub at {base} sent a repository we cannot read: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next() {
        let l = r#"<https://api.github.com/user/repos?page=3&per_page=2>; rel="next", <https://api.github.com/user/repos?page=9&per_page=2>; rel="last""#;
        assert_eq!(next_page(l), Some(3));
        assert_eq!(
            next_page(r#"<https://x/user/repos?page=1>; rel="prev""#),
            None
        );
        assert_eq!(next_page("garbage"), None);
    }
}
