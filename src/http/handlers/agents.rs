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
    agent_spec(app, req, name(p)?, None)
}

pub fn agent_session(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    agent_spec(app, req, name(p)?, Some(p.get("id")))
}

fn agent_spec(app: &App, req: &mut Request, island: &str, id: Option<&str>) -> Result<Response> {
    let watch = observe(req)?;
    let mut spec = app.islands.session_spec(island, id, &label(req)?, !watch)?;
    let n = super::live::scrollback(req)?;
    if n > 0 {
        let (islands, island) = (app.islands.clone(), island.to_string());
        let agent = match &spec.target {
            crate::session::Target::Agent { agent, .. } => agent.clone(),
            _ => String::new(),
        };
        spec.history = Some(Box::new(move |rows| {
            islands.history_bytes(&island, &agent, n, rows)
        }));
    }
    upgrade(app, req, spec)
}

/// `?mode=interactive|observe`; a viewer's session is always an observer's.
fn observe(req: &Request) -> Result<bool> {
    let asked = match req.query("mode") {
        None | Some("interactive") => false,
        Some("observe") => true,
        Some(_) => return Err(Error::bad("mode must be interactive or observe")),
    };
    Ok(asked || req.caller.role() == Some(crate::api::Role::Viewer))
}

/// Accept the websocket; the connection's thread then runs the client's pump.
pub fn upgrade(app: &App, req: &Request, mut spec: pump::Spec) -> Result<Response> {
    spec.owner = token_of(req);
    spec.observe = observe(req)?;
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
