//! /v1/islands/{name}/agents and the session websockets.

use super::islands::name;
use crate::api::{AddAgent, PatchLabel};
use crate::error::{Error, Result};
use crate::http::router::Params;
use crate::http::{App, Request, Response};
use crate::session::pump;

/// GET /v1/agent-types
pub fn types(_app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    Ok(Response::json(200, &crate::island::agents::agent_types()))
}

pub fn list(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.list_agents(name(p)?)?))
}

pub fn add(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: AddAgent = req.json()?;
    super::creds::may_name_credentials(req, &body.provider, "")?;
    Ok(Response::json(201, &app.islands.add_agent(n, body)?))
}

pub fn get(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(
        200,
        &app.islands.get_agent(name(p)?, p.get("id"))?,
    ))
}

pub fn patch(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: PatchLabel = req.json()?;
    let label = body
        .label
        .ok_or_else(|| Error::bad("PATCH takes {\"label\": \"...\"}"))?;
    Ok(Response::json(
        200,
        &app.islands.relabel_agent(n, p.get("id"), &label)?,
    ))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RestartBody {
    #[serde(default)]
    resume: bool,
}

pub fn restart(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: RestartBody = req.json()?;
    Ok(Response::json(
        200,
        &app.islands.restart_agent(n, p.get("id"), body.resume)?,
    ))
}

/// PATCH /v1/islands/{name}/agents/{id}/config {provider?, model?}
pub fn config(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: crate::api::AgentConfig = req.json()?;
    super::creds::may_name_credentials(req, body.provider.as_deref().unwrap_or(""), "")?;
    Ok(Response::json(
        200,
        &app.islands.configure_agent(n, p.get("id"), body)?,
    ))
}

pub fn remove(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    app.islands.remove_agent(name(p)?, p.get("id"))?;
    Ok(Response::no_content())
}

/// The operator token a request came with.
pub fn token_of(req: &Request) -> Option<String> {
    match &req.caller {
        crate::http::wire::Caller::Token { id, .. } => Some(id.clone()),
        _ => None,
    }
}

/// `?label=` names the client in presence; `anonymous` when absent.
pub fn label(req: &Request) -> Result<String> {
    let l = req
        .query("label")
        .filter(|l| !l.is_empty())
        .unwrap_or("anonymous");
    crate::island::names::check_label(l)?;
    Ok(l.to_string())
}

pub fn island_session(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let spec = app.islands.session_spec(name(p)?, None, &label(req)?)?;
    upgrade(app, req, spec)
}

pub fn agent_session(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let spec = app
        .islands
        .session_spec(name(p)?, Some(p.get("id")), &label(req)?)?;
    upgrade(app, req, spec)
}

/// Accept the websocket; the connection's thread then runs the client's pump.
pub fn upgrade(app: &App, req: &Request, mut spec: pump::Spec) -> Result<Response> {
    spec.owner = token_of(req);
    if let Some(id) = spec.owner.clone() {
        let tokens = app.tokens.clone();
        spec.still_valid = Some(Box::new(move || tokens.exists(&id)));
    }
    let hub = app.islands.hub.clone();
    let shutdown = app.shutdown.clone();
    Response::websocket(
        req,
        Box::new(move |conn, leftover| pump::serve(conn, leftover, spec, &hub, &shutdown)),
    )
}
