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
                &islands.images,
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

/// The wire word of an enum (its serde name).
fn word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// GET /metrics: Prometheus text format.
pub fn metrics(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    let mut g = crate::metrics::Gauges::default();
    for i in app.islands.list() {
        *g.islands
            .entry((word(&i.state), word(&i.container)))
            .or_default() += 1;
        for a in &i.agents {
            *g.agents.entry(word(&a.state)).or_default() += 1;
        }
    }
    g.attached_clients = app.islands.hub.count() as u64;
    let subs = app.webhooks.list();
    g.webhook_subscriptions = subs.len() as u64;
    for s in &subs {
        g.webhook_pending += s.pending;
        g.webhook_delivered += s.delivered;
        g.webhook_failed += s.failed;
    }
    g.panic_engaged = app.islands.panic_status().panicked;
    Ok(Response {
        status: 200,
        headers: vec![(
            "Content-Type".into(),
            "text/plain; version=0.0.4; charset=utf-8".into(),
        )],
        payload: crate::http::wire::Payload::Bytes(crate::metrics::render(&g).into_bytes()),
    })
}

/// GET /v1/readyz: 200 when the engine answers and the island image is there; 503 with why.
pub fn readyz(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    let image = app.islands.config.default_image.clone();
    let why = match app.islands.runtime.ping() {
        Err(e) => Some(format!("the container engine does not answer: {e}")),
        Ok(()) => match app.islands.runtime.image_present(&image) {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "the island image {image} is not built (dejima image build)"
            )),
            Err(e) => Some(format!("cannot look for the island image: {e}")),
        },
    };
    Ok(match why {
        None => Response::json(200, &json!({"ready": true, "image": image})),
        Some(reason) => Response::json(
            503,
            &json!({"ready": false, "reason": reason, "error": reason}),
        ),
    })
}

/// GET /v1/doctor: what this host needs, checked.
pub fn doctor(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    Ok(Response::json(
        200,
        &crate::doctor::run(&app.islands, &app.islands.home.socket()),
    ))
}

/// POST /v1/doctor/fix: do what is safe about it (build the image, tighten the socket,
/// raise the file limit), then check again.
pub fn doctor_fix(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let report = crate::doctor::fix(&app.islands, &app.islands.home.socket());
    if !report.fixed.is_empty() {
        app.audit.append(crate::audit::Record {
            kind: "doctor.fix".into(),
            actor: crate::http::router::actor(&req.caller),
            allowed: true,
            detail: Some(json!({ "fixed": report.fixed })),
            ..Default::default()
        });
    }
    Ok(Response::json(200, &report))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    #[serde(default)]
    execute: bool,
    #[serde(default)]
    force: bool,
}

/// POST /v1/admin/update: what an update would do, or do it. With clients attached it waits
/// (says who) unless forced; once the new binaries are in place the daemon re-executes
/// itself (islands keep running; websocket clients get 1012, "restart, reconnect").
pub fn update(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let body: UpdateRequest = req.json()?;
    let mut plan = app.update.plan()?;
    if !body.execute {
        plan.note = "a dry run: nothing was changed".into();
        return Ok(Response::json(200, &plan));
    }
    if !plan.update_available {
        plan.note = "already the latest".into();
        return Ok(Response::json(200, &plan));
    }
    let attached: Vec<String> = app
        .islands
        .hub
        .history()
        .iter()
        .filter(|c| c.detached_at.is_none())
        .map(|c| format!("{} on {}", c.label, c.island))
        .collect();
    if !attached.is_empty() && !body.force {
        plan.note = format!(
            "deferred: {} client(s) attached; try again later or force",
            attached.len()
        );
        plan.attached = attached;
        return Ok(Response::json(200, &plan));
    }
    let record = |kind: &str, detail: serde_json::Value| {
        app.audit.append(crate::audit::Record {
            kind: kind.into(),
            actor: crate::http::router::actor(&req.caller),
            allowed: true,
            detail: Some(detail),
            ..Default::default()
        })
    };
    if let Err(e) = app.update.apply() {
        record(
            "update.failed",
            json!({"from": plan.current, "to": plan.latest, "mode": plan.mode, "error": e.to_string()}),
        );
        return Err(e);
    }
    record(
        "update.applied",
        json!({"from": plan.current, "to": plan.latest, "mode": plan.mode}),
    );
    let _ = app.audit.sync();
    log::info!("updated to {} ({}); restarting", plan.latest, plan.mode);
    plan.applying = true;
    plan.note = "the new binaries are in place; the daemon restarts now".into();
    crate::daemon::request_restart();
    Ok(Response::json(200, &plan))
}
