//! Events: per-island recent events, the live stream, webhook subscriptions, and the
//! in-island agent-event endpoint.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::islands::name;
use crate::error::{Error, Result};
use crate::events::webhooks::Subscribe;
use crate::events::{EventType, Filter};
use crate::http::router::Params;
use crate::http::wire::Caller;
use crate::http::{App, Request, Response};

pub fn island_events(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    app.islands.record(n)?;
    Ok(Response::json(200, &app.events.island_events(n)))
}

/// A scoped token's webhook covers its islands only (all of them when it names none).
pub fn subscribe(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let mut body: Subscribe = req.json()?;
    if let Some(scope) = req.caller.scope() {
        if body.islands.is_empty() {
            body.islands = scope.to_vec();
        }
        if let Some(i) = body.islands.iter().find(|i| !req.caller.sees(i)) {
            return Err(Error::island_not_found(i));
        }
    }
    let s = app.webhooks.subscribe(body)?;
    Ok(Response::json(201, &s))
}

/// Whether a subscription lies within what `caller` sees.
fn within(caller: &Caller, islands: &[String]) -> bool {
    caller.scope().is_none() || (!islands.is_empty() && islands.iter().all(|i| caller.sees(i)))
}

pub fn subscriptions(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let mut l = app.webhooks.list();
    l.retain(|s| within(&req.caller, &s.islands));
    Ok(Response::json(200, &l))
}

pub fn unsubscribe(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let id = p.get("id");
    if !app
        .webhooks
        .list()
        .iter()
        .any(|s| s.id == id && within(&req.caller, &s.islands))
    {
        return Err(Error::NotFound(format!("subscription {id:?} not found")));
    }
    app.webhooks.remove(id)?;
    Ok(Response::no_content())
}

fn list_param(req: &Request, key: &str) -> Vec<String> {
    req.query
        .iter()
        .filter(|(k, _)| k == key)
        .flat_map(|(_, v)| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Server-sent events: `id`, `event` (the type) and `data` (the JSON event) per event; a
/// comment line every 15 s keeps idle connections honest.
pub fn stream(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let mut islands = list_param(req, "island");
    for i in &islands {
        crate::island::names::validate(i)?;
        if !req.caller.sees(i) {
            return Err(Error::island_not_found(i));
        }
    }
    // A scoped token's stream carries its islands' events only.
    if let (true, Some(scope)) = (islands.is_empty(), req.caller.scope()) {
        islands = scope.to_vec();
    }
    let types = list_param(req, "type")
        .iter()
        .map(|t| {
            t.parse::<EventType>()
                .map_err(|_| Error::bad(format!("unknown event type {t:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let replay = match req.query("replay") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| Error::bad("replay must be a number of events"))?
            .min(crate::events::RECENT),
    };
    let owner = super::agents::token_of(req);
    let (past, rx) = app
        .events
        .subscribe(Filter { islands, types }, replay, owner.clone());
    let tokens = app.tokens.clone();
    let shutdown = app.shutdown.clone();
    Ok(Response::stream(
        "text/event-stream",
        Box::new(move |w, _peer| {
            let frame = |e: &crate::events::Event| {
                format!(
                    "id: {}\nevent: {}\ndata: {}\n\n",
                    e.id,
                    e.kind,
                    serde_json::to_string(e).unwrap_or_default()
                )
            };
            w.write_all(b": dejima event stream\n\n")?;
            for e in &past {
                w.write_all(frame(e).as_bytes())?;
            }
            loop {
                // A token revoked while this stream was being opened is caught here.
                let revoked = owner.as_deref().is_some_and(|id| !tokens.exists(id));
                if revoked {
                    w.write_all(b"event: revoked\ndata: {\"reason\":\"token revoked\"}\n\n")?;
                    return Ok(());
                }
                match rx.recv_timeout(Duration::from_secs(15)) {
                    Ok(e) => w.write_all(frame(&e).as_bytes())?,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        w.write_all(b": keepalive\n\n")?
                    }
                    // Shutdown closes every stream's queue at once.
                    Err(_) if shutdown.is_set() => return Ok(()),
                    // So does revoking the token the stream was opened with.
                    Err(_) if owner.as_deref().is_some_and(|id| !tokens.exists(id)) => {
                        w.write_all(b"event: revoked\ndata: {\"reason\":\"token revoked\"}\n\n")?;
                        return Ok(());
                    }
                    // The bus cut us off (too slow) or is gone.
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        w.write_all(
                            b"event: dropped\ndata: {\"reason\":\"consumer too slow\"}\n\n",
                        )?;
                        return Ok(());
                    }
                }
            }
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentEvent {
    #[serde(default)]
    island: String,
    #[serde(default)]
    agent: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: Value,
}

/// POST /v1/internal/agent-event: the island is the token's, whatever the body says.
pub fn agent_event(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let body: AgentEvent = req.json()?;
    let island = match &req.caller {
        Caller::Island(i) => i.clone(),
        _ => {
            if body.island.is_empty() {
                return Err(Error::bad("island is required"));
            }
            crate::island::names::validate(&body.island)?;
            if !req.caller.sees(&body.island) {
                return Err(Error::island_not_found(&body.island));
            }
            body.island.clone()
        }
    };
    let word = if body.kind.starts_with("agent.") {
        body.kind.clone()
    } else {
        format!("agent.{}", body.kind)
    };
    let kind = word
        .parse::<EventType>()
        .ok()
        .filter(|k| k.signal().is_some())
        .ok_or_else(|| {
            Error::bad(format!(
                "type {:?} must be agent.waiting-for-input, agent.task-complete or agent.error",
                body.kind
            ))
        })?;
    let payload = if body.payload.is_null() {
        json!({})
    } else {
        body.payload
    };
    if !payload.is_object() {
        return Err(Error::bad("payload must be a JSON object"));
    }
    if serde_json::to_vec(&payload).map(|v| v.len()).unwrap_or(0) > 64 << 10 {
        return Err(Error::TooLarge("payload is over 64 KiB".into()));
    }
    app.islands
        .agent_event(&island, &body.agent, kind, payload)?;
    Ok(Response::json(202, &json!({ "accepted": true })))
}
