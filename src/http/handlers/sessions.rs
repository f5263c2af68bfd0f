//! Presence and revocation: /v1/clients, /v1/sessions/revoke; host terminals.

use serde_json::json;

use super::agents::{label, upgrade};
use crate::api::{CreateTerminal, PatchLabel};
use crate::error::{Error, Result};
use crate::http::router::Params;
use crate::http::{App, Request, Response};
use crate::session::{feed, pump, Target};

pub fn clients(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let mut h = app.islands.hub.history();
    h.retain(|c| req.caller.sees(&c.island));
    Ok(Response::json(200, &h))
}

/// Every session the caller can see (a scoped token: its islands' only).
pub fn revoke(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let caller = req.caller.clone();
    let n = app
        .islands
        .hub
        .revoke_where(|t| caller.scope().is_none() || t.island().is_some_and(|i| caller.sees(i)));
    Ok(Response::json(200, &json!({ "revoked": n })))
}

pub fn terminals(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.terminals.list()?))
}

pub fn create_terminal(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let body: CreateTerminal = req.json()?;
    Ok(Response::json(201, &app.terminals.create(body)?))
}

pub fn patch_terminal(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let body: PatchLabel = req.json()?;
    let l = body
        .label
        .ok_or_else(|| Error::bad("PATCH takes {\"label\": \"...\"}"))?;
    Ok(Response::json(
        200,
        &app.terminals.relabel(p.get("id"), &l)?,
    ))
}

pub fn delete_terminal(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    app.terminals.remove(p.get("id"))?;
    Ok(Response::no_content())
}

pub fn terminal_session(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let id = p.get("id").to_string();
    let (argv, env) = app.terminals.attach_argv(&id)?;
    // A host tmux client is the feed's own child: ending it ends the client.
    let attach = move |read_only: bool| {
        let mut argv = argv.clone();
        if read_only {
            let at = argv.len() - 2;
            argv.splice(
                at..at,
                ["-f".to_string(), "read-only,ignore-size".to_string()],
            );
        }
        feed::Attach {
            argv,
            env: env.clone(),
            on_end: None,
        }
    };
    let spec = pump::Spec {
        attach: std::sync::Arc::new(attach),
        target: Target::Terminal { id },
        label: label(req)?,
        owner: None,
        still_valid: None,
        observe: false,
        history: None,
    };
    upgrade(app, req, spec)
}
