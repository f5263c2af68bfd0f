//! /v1/credentials: what the daemon injects into islands (owner only). Every change is
//! ledgered by name, never with its secret; no response carries one.

use crate::creds::{github, PutClaude, PutGithub, PutProvider, Removed};
use crate::error::Result;
use crate::http::router::{actor, Params};
use crate::http::{App, Request, Response};

/// Naming a stored credential gives an island its secret, which anyone who can exec there can
/// read: the owner's call. Operators' islands and agents get the defaults.
pub fn may_name_credentials(req: &Request, provider: &str, identity: &str) -> Result<()> {
    if (provider.is_empty() && identity.is_empty())
        || req.caller.role() == Some(crate::api::Role::Owner)
    {
        return Ok(());
    }
    Err(crate::error::Error::Forbidden(
        "naming a provider or GitHub identity needs the owner role; an operator's agents get the default ones"
            .into(),
    ))
}

fn ledger(app: &App, req: &Request, kind: &str, detail: serde_json::Value) {
    app.audit.append(crate::audit::Record {
        kind: kind.into(),
        actor: actor(&req.caller),
        allowed: true,
        detail: Some(detail),
        ..Default::default()
    });
}

pub fn claude_status(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.creds.claude_status()))
}

pub fn claude_put(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let body: PutClaude = req.json_secret()?;
    let status = app.islands.creds.put_claude(body)?;
    ledger(
        app,
        req,
        "credential.set",
        serde_json::json!({"credential": "claude", "source": status.source}),
    );
    Ok(Response::json(200, &status))
}

pub fn claude_delete(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    app.islands.creds.delete_claude()?;
    ledger(
        app,
        req,
        "credential.removed",
        serde_json::json!({"credential": "claude"}),
    );
    Ok(Response::no_content())
}

pub fn github_list(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    let c = &app.islands.creds;
    let views = c
        .github_names()
        .into_iter()
        .filter_map(|n| {
            let bound = app.islands.islands_with_identity(&n);
            c.github_view(&n, bound).ok()
        })
        .collect::<Vec<_>>();
    Ok(Response::json(200, &views))
}

pub fn github_put(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let name = p.get("name");
    let body: PutGithub = req.json_secret()?;
    let (mut view, created) = app.islands.creds.put_github(name, body)?;
    view.islands = app.islands.islands_with_identity(name);
    app.islands.refresh_secrets(&view.islands);
    ledger(
        app,
        req,
        "credential.set",
        serde_json::json!({"credential": "github", "name": name, "login": view.login, "host": view.host}),
    );
    Ok(Response::json(if created { 201 } else { 200 }, &view))
}

pub fn github_delete(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let name = p.get("name");
    app.islands.creds.delete_github(name)?;
    let still_bound = app.islands.islands_with_identity(name);
    app.islands.refresh_secrets(&still_bound);
    ledger(
        app,
        req,
        "credential.removed",
        serde_json::json!({"credential": "github", "name": name, "still_bound": still_bound}),
    );
    Ok(Response::json(
        200,
        &Removed {
            removed: name.into(),
            still_bound,
        },
    ))
}

fn page_param(req: &Request, key: &str, default: u32) -> Result<u32> {
    match req.query(key) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| crate::error::Error::bad(format!("{key} must be a number"))),
    }
}

pub fn github_repos(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let name = p.get("name");
    let g = app.islands.creds.github(name)?;
    let page = page_param(req, "page", 1)?;
    let per_page = page_param(req, "per_page", 30)?;
    Ok(Response::json(
        200,
        &github::list_repos(name, &g, page, per_page)?,
    ))
}

pub fn github_create_repo(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let name = p.get("name");
    let body: github::NewRepo = req.json()?;
    let g = app.islands.creds.github(name)?;
    let repo = github::create_repo(name, &g, &body)?;
    ledger(
        app,
        req,
        "github.repo-created",
        serde_json::json!({"identity": name, "repo": repo.full_name, "private": repo.private}),
    );
    Ok(Response::json(201, &repo))
}

pub fn provider_list(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    let c = &app.islands.creds;
    let views = c
        .provider_names()
        .into_iter()
        .filter_map(|n| {
            let bound = app.islands.islands_with_provider(&n);
            c.provider_view(&n, bound).ok()
        })
        .collect::<Vec<_>>();
    Ok(Response::json(200, &views))
}

pub fn provider_get(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    let name = p.get("provider");
    let bound = app.islands.islands_with_provider(name);
    Ok(Response::json(
        200,
        &app.islands.creds.provider_view(name, bound)?,
    ))
}

pub fn provider_put(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let name = p.get("provider");
    let body: PutProvider = req.json_secret()?;
    let (mut view, created) = app.islands.creds.put_provider(name, body)?;
    view.islands = app.islands.islands_with_provider(name);
    // A rotated key reaches the islands' files now, and each agent at its next launch.
    app.islands.refresh_secrets(&view.islands);
    ledger(
        app,
        req,
        "credential.set",
        serde_json::json!({"credential": "provider", "name": name, "env_var": view.env_var}),
    );
    Ok(Response::json(if created { 201 } else { 200 }, &view))
}

pub fn provider_delete(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let name = p.get("provider");
    app.islands.creds.delete_provider(name)?;
    let still_bound = app.islands.islands_with_provider(name);
    app.islands.refresh_secrets(&still_bound);
    ledger(
        app,
        req,
        "credential.removed",
        serde_json::json!({"credential": "provider", "name": name, "still_bound": still_bound}),
    );
    Ok(Response::json(
        200,
        &Removed {
            removed: name.into(),
            still_bound,
        },
    ))
}
