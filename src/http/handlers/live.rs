//! The live agent experience without a terminal: the screen as text or JSON, and prompts
//! whose delivery is verified.

use serde::Deserialize;

use super::islands::name;
use crate::error::{Error, Result};
use crate::http::router::Params;
use crate::http::{App, Request, Response};
use crate::island::screen::{MAX_PROMPT, MAX_SCROLLBACK, MAX_UPLOAD};

/// `?scrollback=N` (0 when absent).
pub fn scrollback(req: &Request) -> Result<u32> {
    match req.query("scrollback") {
        None => Ok(0),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= MAX_SCROLLBACK)
            .ok_or_else(|| Error::bad(format!("scrollback must be 0..={MAX_SCROLLBACK}"))),
    }
}

/// GET /v1/islands/{name}/agents/{id}/screen?format=text|ansi|json&scrollback=N
pub fn screen(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let format = req.query("format").unwrap_or("text");
    let ansi = match format {
        "text" | "json" => false,
        "ansi" => true,
        _ => return Err(Error::bad("format must be text, ansi or json")),
    };
    let s = app
        .islands
        .screen(n, Some(p.get("id")), scrollback(req)?, ansi)?;
    Ok(match format {
        "json" => Response::json(200, &s),
        _ => Response::body(200, "text/plain; charset=utf-8", s.text().into_bytes()),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptBody {
    text: String,
    #[serde(default = "yes")]
    submit: bool,
}

fn yes() -> bool {
    true
}

/// POST /v1/islands/{name}/agents/{id}/prompt {text, submit?}
pub fn prompt(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: PromptBody = req.json()?;
    if body.text.len() > MAX_PROMPT {
        return Err(Error::TooLarge(format!(
            "a prompt is at most {MAX_PROMPT} bytes; upload a file instead"
        )));
    }
    let d = app
        .islands
        .prompt(n, Some(p.get("id")), &body.text, body.submit)?;
    Ok(Response::json(200, &d))
}

/// POST /v1/islands/{name}/agents/{id}/upload?filename= (raw body, at most 8 MiB)
pub fn upload(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let filename = req
        .query("filename")
        .filter(|f| !f.is_empty())
        .ok_or_else(|| Error::bad("upload needs ?filename="))?
        .to_string();
    if req.content_length().is_some_and(|l| l > MAX_UPLOAD) {
        return Err(Error::TooLarge(format!(
            "an upload is at most {MAX_UPLOAD} bytes; copy larger files with PUT /files"
        )));
    }
    // Refused before the body is read (and before a `100 Continue`) when there is no screen.
    app.islands.pane_target(n, Some(p.get("id")))?;
    let data = req.bytes(MAX_UPLOAD)?;
    if data.is_empty() {
        return Err(Error::bad(
            "an upload needs the file's bytes as the request body",
        ));
    }
    let u = app.islands.upload(n, Some(p.get("id")), &filename, &data)?;
    Ok(Response::json(201, &u))
}

/// GET /v1/stream: the multiplexed websocket (events and terminals; docs/stream.md).
pub fn stream(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let who = crate::http::mux::Who {
        actor: crate::http::router::actor(&req.caller),
        caller: req.caller.clone(),
        token: super::agents::token_of(req),
        label: super::agents::label(req)?,
    };
    let ctx = crate::http::mux::Ctx {
        islands: app.islands.clone(),
        events: app.events.clone(),
        tokens: app.tokens.clone(),
        shutdown: app.shutdown.clone(),
        audit: app.audit.clone(),
    };
    Response::websocket(
        req,
        Box::new(move |conn, leftover| crate::http::mux::serve(conn, leftover, ctx, who)),
    )
}

/// GET /v1/islands/{name}/recordings
pub fn recordings(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.recordings(name(p)?)?))
}

/// GET /v1/islands/{name}/recordings/{id}: the asciicast file (what is written so far, for
/// one still being recorded).
pub fn recording(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    let path = app.islands.recording_file(name(p)?, p.get("id"))?;
    let f = std::fs::File::open(&path)
        .map_err(|e| Error::NotFound(format!("recording {}: {e}", p.get("id"))))?;
    Ok(Response::stream(
        "application/x-asciicast",
        Box::new(move |w, _peer| {
            let mut f = f;
            std::io::copy(&mut f, w)?;
            Ok(())
        }),
    ))
}

/// DELETE /v1/islands/{name}/recordings/{id}
pub fn delete_recording(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    app.islands.delete_recording(name(p)?, p.get("id"))?;
    Ok(Response::no_content())
}
