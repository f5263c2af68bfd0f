//! Daemon-wide routes: health, overview, the island image.

use serde::Deserialize;
use serde_json::json;

use crate::error::Result;
use crate::http::router::Params;
use crate::http::{App, Request, Response};
use crate::image::{self, BuildOpts};

pub fn healthz(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    Ok(Response::json(
        200,
        &json!({
            "status": "ok",
            "ok": true,
            "version": env!("CARGO_PKG_VERSION"),
            "docker_reachable": app.islands.observed.reachable(),
        }),
    ))
}

pub fn overview(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let caller = req.caller.clone();
    // A scoped token counts its own islands' clients and webhooks only.
    let (clients, hooks) = match caller.scope() {
        None => (app.islands.hub.count() as u64, app.webhooks.count() as u64),
        Some(_) => (
            app.islands
                .hub
                .history()
                .iter()
                .filter(|c| c.detached_at.is_none() && caller.sees(&c.island))
                .count() as u64,
            app.webhooks
                .list()
                .iter()
                .filter(|s| !s.islands.is_empty() && s.islands.iter().all(|i| caller.sees(i)))
                .count() as u64,
        ),
    };
    Ok(Response::json(
        200,
        &app.islands
            .overview(&|n: &str| caller.sees(n), clients, hooks),
    ))
}

/// GET /v1/panic
pub fn panic_status(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.panic_status()))
}

/// POST /v1/panic: every island stopped, every session revoked, nothing starts after.
pub fn panic_engage(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let body: crate::api::PanicRequest = req.json()?;
    Ok(Response::json(
        200,
        &app.islands.engage_panic(&body.reason)?,
    ))
}

/// DELETE /v1/panic: cleared; islands that should run are woken.
pub fn panic_clear(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.clear_panic()?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BuildBody {
    #[serde(default)]
    tag: String,
    #[serde(default)]
    base: String,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    slim: bool,
}

/// Streams the build's progress as text; the last line is `ok: ...` or `error: ...`
/// (the status line went out before the build finished).
pub fn image_build(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let b: BuildBody = req.json()?;
    let opts = BuildOpts {
        tag: if b.tag.is_empty() {
            app.islands.config.default_image.clone()
        } else {
            b.tag
        },
        base: if b.base.is_empty() {
            app.islands.config.base_image.clone()
        } else {
            b.base
        },
        force: b.force || req.query_bool("force")?,
        slim: b.slim,
    };
    image::validate_opts(&opts)?;
    // Claimed before the 200 goes out, so a second build is a plain 409.
    let slot = image::BuildSlot::try_claim()?;
    let islands = app.islands.clone();
    let shutdown = app.shutdown.clone();
    Ok(Response::stream(
        "text/plain; charset=utf-8",
        Box::new(move |w, _peer| {
            let mut alive = true;
            let result = image::build(
                &islands.engine,
                &islands.work_dir(),
                &opts,
                &slot,
                &mut |chunk| {
                    alive = alive && !shutdown.is_set() && w.write_all(chunk).is_ok();
                    alive
                },
            );
            drop(slot);
            islands.forget_image_cache();
            let last = match result {
                Ok(true) => format!("ok: built {}\n", opts.tag),
                Ok(false) => format!("ok: {} is up to date\n", opts.tag),
                Err(e) => format!("error: {e}\n"),
            };
            w.write_all(last.as_bytes())
        }),
    ))
}
