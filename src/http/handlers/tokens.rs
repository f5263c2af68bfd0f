//! /v1/tokens: operator tokens (owner only).

use crate::api::CreateToken;
use crate::error::Result;
use crate::http::router::Params;
use crate::http::{App, Request, Response};

pub fn list(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.tokens.list()))
}

pub fn create(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let body: CreateToken = req.json()?;
    let t = app.tokens.create(body)?;
    log::info!("token {} created ({})", t.id, t.role);
    app.audit.append(crate::audit::Record {
        kind: "token.created".into(),
        actor: crate::http::router::actor(&req.caller),
        allowed: true,
        detail: Some(
            serde_json::json!({"id": t.id, "role": t.role, "label": t.label, "islands": t.islands}),
        ),
        ..Default::default()
    });
    Ok(Response::json(201, &t))
}

/// Revoked at once: its next request is refused, and its open sessions and event streams
/// are closed now.
pub fn revoke(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let id = p.get("id");
    let revoked = app.tokens.revoke(id);
    if matches!(revoked, Err(crate::error::Error::NotFound(_))) {
        return revoked.map(|_| Response::no_content());
    }
    app.audit.append(crate::audit::Record {
        kind: "token.revoked".into(),
        actor: crate::http::router::actor(&req.caller),
        allowed: true,
        detail: Some(serde_json::json!({ "id": id })),
        ..Default::default()
    });
    let n = app.islands.hub.revoke_owner(id);
    app.events.close_owner(id);
    log::info!("token {id} revoked ({n} session(s) closed)");
    // Gone from memory (and so refused) even when saving failed; say so.
    revoked?;
    Ok(Response::no_content())
}
