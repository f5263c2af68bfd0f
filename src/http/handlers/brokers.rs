//! Port, capabilities, MCP and the spawn grant: thin adapters from HTTP to `broker`.

use super::islands::name;
use crate::api::{
    ExecuteCapability, ExportRequest, GrantCapability, GrantMcp, GrantScope, IntakeRequest,
    McpCall, PortWriteRequest, SpawnGrant,
};
use crate::broker::Asker;
use crate::error::Result;
use crate::http::router::{actor, Params};
use crate::http::wire::Caller;
use crate::http::{App, Request, Response};

fn asker(req: &Request) -> Asker {
    Asker {
        actor: actor(&req.caller),
        island: match &req.caller {
            Caller::Island(n) => Some(n.clone()),
            _ => None,
        },
    }
}

pub fn scopes(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.scopes(name(p)?)?))
}

pub fn grant_scope(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: GrantScope = req.json()?;
    Ok(Response::json(
        201,
        &app.brokers.grant_scope(&asker(req), n, body)?,
    ))
}

pub fn revoke_scope(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    app.brokers.revoke_scope(&asker(req), n, p.get("scope"))?;
    Ok(Response::no_content())
}

pub fn intake(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: IntakeRequest = req.json()?;
    Ok(Response::json(
        200,
        &app.brokers.intake(&asker(req), n, body)?,
    ))
}

pub fn export(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: ExportRequest = req.json()?;
    Ok(Response::json(
        200,
        &app.brokers.export(&asker(req), n, body)?,
    ))
}

pub fn write(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: PortWriteRequest = req.json()?;
    Ok(Response::json(
        200,
        &app.brokers.write(&asker(req), n, body)?,
    ))
}

pub fn capabilities(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.brokers.capabilities().list()))
}

pub fn capability_grants(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(
        200,
        &app.islands.record(name(p)?)?.capability_grants,
    ))
}

pub fn grant_capability(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: GrantCapability = req.json()?;
    Ok(Response::json(
        201,
        &app.brokers.grant_capability(&asker(req), n, &body.target)?,
    ))
}

pub fn revoke_capability(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    app.brokers
        .revoke_capability(&asker(req), n, p.get("target"))?;
    Ok(Response::no_content())
}

pub fn execute(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let body: ExecuteCapability = req.json()?;
    Ok(Response::json(
        200,
        &app.brokers.execute(&asker(req), body)?,
    ))
}

pub fn mcp_servers(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.brokers.mcp.list()?))
}

pub fn mcp_grants(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(
        200,
        &app.islands.record(name(p)?)?.mcp_grants,
    ))
}

pub fn grant_mcp(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: GrantMcp = req.json()?;
    Ok(Response::json(
        201,
        &app.brokers.grant_mcp(&asker(req), n, &body.server)?,
    ))
}

pub fn revoke_mcp(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    app.brokers.revoke_mcp(&asker(req), n, p.get("server"))?;
    Ok(Response::no_content())
}

pub fn mcp_call(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let body: McpCall = req.json()?;
    Ok(Response::json(
        200,
        &app.brokers.mcp_call(&asker(req), body)?,
    ))
}

pub fn spawn_info(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.spawn_info(name(p)?)?))
}

pub fn grant_spawn(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: SpawnGrant = req.json()?;
    Ok(Response::json(
        200,
        &app.brokers.grant_spawn(&asker(req), n, &body)?,
    ))
}
