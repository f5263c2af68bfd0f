//! /v1/islands and the lifecycle routes.

use crate::api::{CloneIsland, CreateIsland, PatchIsland, PutResources};
use crate::error::{Error, Result};
use crate::http::router::Params;
use crate::http::{App, Request, Response};
use crate::island::names;

/// The `{name}` parameter, validated before anything else looks at it.
pub fn name<'p>(p: &'p Params) -> Result<&'p str> {
    let n = p.get("name");
    names::validate(n)?;
    Ok(n)
}

pub fn list(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let mut list = app.islands.list();
    list.retain(|i| req.caller.sees(&i.name));
    Ok(Response::json(200, &list))
}

/// A scoped token may make only islands of its scope, named outright.
pub fn may_make(req: &Request, name: &str) -> Result<()> {
    match req.caller.scope() {
        Some(s) if !s.iter().any(|i| i == name) => Err(Error::Forbidden(format!(
            "this token reaches only islands {}; it cannot make {name:?}",
            s.join(", ")
        ))),
        _ => Ok(()),
    }
}

pub fn create(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let body: CreateIsland = req.json()?;
    super::creds::may_name_credentials(req, &body.provider, &body.github_identity)?;
    // A repo that is a path on the daemon host copies that directory into the island: host
    // file access, which is the owner's alone.
    if !body.repo.is_empty()
        && !body.no_repo
        && matches!(names::classify_repo(&body.repo), Ok(names::Source::Path(_)))
        && req.caller.role() != Some(crate::api::Role::Owner)
    {
        return Err(Error::Forbidden(
            "a repo on the daemon host's disk needs the owner role; give a git URL instead".into(),
        ));
    }
    if req.caller.scope().is_some() {
        if body.name.is_empty() {
            return Err(Error::bad("a scoped token must name the island it creates"));
        }
        may_make(req, &body.name)?;
    }
    if let crate::http::wire::Caller::Island(parent) = &req.caller {
        return spawn_child(app, req, parent.clone(), body);
    }
    Ok(Response::json(201, &app.islands.create(body)?))
}

/// An island's token creating a child: within its spawn grant, and the answer carries the
/// child's own token (the only time it is shown).
fn spawn_child(app: &App, req: &Request, parent: String, body: CreateIsland) -> Result<Response> {
    let record = |_: bool, detail: serde_json::Value| {
        app.audit.append_denial(crate::audit::Record {
            kind: "spawn.denied".into(),
            island: Some(parent.clone()),
            actor: crate::http::router::actor(&req.caller),
            allowed: false,
            detail: Some(detail),
            ..Default::default()
        })
    };
    let asked = crate::broker::port::clip(&body.name);
    // A child clones from a URL or starts empty: never a path on the daemon host (whether
    // one exists is not the island's to learn).
    let url = ["https://", "http://", "ssh://", "git@"]
        .iter()
        .any(|p| body.repo.starts_with(p));
    if !body.no_repo && !body.repo.is_empty() && !url {
        let e = Error::Forbidden("a child island's repo must be a git URL".into());
        record(
            false,
            serde_json::json!({"child": asked, "reason": e.to_string()}),
        );
        return Err(e);
    }
    // Ledgered, and synced, before the child exists.
    app.audit
        .append_sync(crate::audit::Record {
            kind: "spawn.child".into(),
            island: Some(parent.clone()),
            actor: crate::http::router::actor(&req.caller),
            allowed: true,
            detail: Some(serde_json::json!({"child": asked})),
            ..Default::default()
        })
        .map_err(|e| {
            Error::Unavailable(format!(
                "the audit ledger cannot be written ({e}); no island was created"
            ))
        })?;
    let info = match app.islands.create_as(body, Some(&parent)) {
        Ok(i) => i,
        Err(e) => {
            if matches!(e, Error::Forbidden(_)) {
                record(
                    false,
                    serde_json::json!({"child": asked, "reason": e.to_string()}),
                );
            }
            return Err(e);
        }
    };
    let token = app.islands.record(&info.name)?.token;
    let mut v = serde_json::to_value(&info).map_err(|e| Error::Internal(e.to_string()))?;
    v["token"] = serde_json::Value::String(token);
    Ok(Response::json(201, &v))
}

pub fn get(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.detail(name(p)?)?))
}

pub fn patch(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: PatchIsland = req.json()?;
    if body.title.is_none() && body.record.is_none() {
        return Err(Error::bad(
            "PATCH takes {\"title\": \"...\"} and/or {\"record\": true|false}",
        ));
    }
    if let Some(t) = &body.title {
        crate::island::names::check_title(t)?;
    }
    app.islands.record(n)?;
    if let Some(on) = body.record {
        app.islands.set_record(n, on)?;
    }
    Ok(Response::json(
        200,
        &match &body.title {
            Some(t) => app.islands.set_title(n, t)?,
            None => app.islands.info(n)?,
        },
    ))
}

pub fn purge(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    app.islands.purge(n, req.query_bool("force")?)?;
    app.brokers.forget_island(n);
    Ok(Response::no_content())
}

pub fn hibernate(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.hibernate(name(p)?)?))
}

pub fn wake(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.wake(name(p)?)?))
}

pub fn reset(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.reset(name(p)?)?))
}

pub fn upgrade(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.upgrade(name(p)?)?))
}

pub fn clone(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let from = name(p)?;
    let body: CloneIsland = req.json()?;
    let to = match (body.name.as_str(), body.new_name.as_str()) {
        (a, b) if !a.is_empty() && !b.is_empty() => {
            return Err(Error::bad(
                "send the new island's name once: name or new_name",
            ))
        }
        ("", b) => b,
        (a, _) => a,
    };
    may_make(req, to)?;
    Ok(Response::json(201, &app.islands.clone_island(from, to)?))
}

pub fn resources(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: PutResources = req.json()?;
    Ok(Response::json(200, &app.islands.set_resources(n, body)?))
}

pub fn workspace_ready(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.workspace_ready(name(p)?)?))
}

/// POST /v1/islands/{name}/reclone
pub fn reclone(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.retry_clone(name(p)?)?))
}
