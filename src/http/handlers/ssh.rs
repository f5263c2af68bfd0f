//! SSH: account keys, island keys, and the connection upgrade `dejima ssh-proxy` opens.

use serde::Deserialize;
use serde_json::json;

use super::islands::name;
use crate::error::Result;
use crate::http::router::{actor, Params};
use crate::http::{App, Request, Response};

/// The protocol name of the upgrade (`Upgrade: dejima-ssh`).
pub const PROTO: &str = "dejima-ssh";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddKey {
    public_key: String,
}

fn ledger(app: &App, req: &Request, kind: &str, island: Option<&str>, detail: serde_json::Value) {
    app.audit.append(crate::audit::Record {
        kind: kind.into(),
        island: island.map(str::to_string),
        actor: actor(&req.caller),
        allowed: true,
        detail: Some(detail),
        ..Default::default()
    });
}

pub fn account_keys(app: &App, _req: &mut Request, _p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.account_keys.list()))
}

pub fn add_account_key(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let body: AddKey = req.json()?;
    let key = crate::ssh::parse(&body.public_key)?;
    let (key, new) = app.islands.account_keys.add(key)?;
    if new {
        app.islands.render_all_ssh_keys();
        ledger(
            app,
            req,
            "ssh.key.added",
            None,
            json!({"fingerprint": key.fingerprint, "scope": "account"}),
        );
    }
    Ok(Response::json(if new { 201 } else { 200 }, &key))
}

pub fn remove_account_key(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let gone = app.islands.account_keys.remove(p.get("fingerprint"))?;
    app.islands.render_all_ssh_keys();
    ledger(
        app,
        req,
        "ssh.key.removed",
        None,
        json!({"fingerprint": gone.fingerprint, "scope": "account"}),
    );
    Ok(Response::no_content())
}

pub fn island_keys(app: &App, _req: &mut Request, p: &Params) -> Result<Response> {
    Ok(Response::json(200, &app.islands.island_ssh_keys(name(p)?)?))
}

pub fn add_island_key(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let body: AddKey = req.json()?;
    let key = crate::ssh::parse(&body.public_key)?;
    let (key, new) = app.islands.add_island_ssh_key(n, key)?;
    if new {
        ledger(
            app,
            req,
            "ssh.key.added",
            Some(n),
            json!({"fingerprint": key.fingerprint, "scope": "island"}),
        );
    }
    Ok(Response::json(if new { 201 } else { 200 }, &key))
}

pub fn remove_island_key(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?;
    let gone = app.islands.remove_island_ssh_key(n, p.get("fingerprint"))?;
    ledger(
        app,
        req,
        "ssh.key.removed",
        Some(n),
        json!({"fingerprint": gone.fingerprint, "scope": "island"}),
    );
    Ok(Response::no_content())
}

/// GET /v1/islands/{name}/ssh: upgrade to a byte stream joined to `sshd -i` in the island.
/// The key a connection got in with is ledgered (`ssh.connect`); one that never got in is a
/// refusal (`ssh.refused`).
pub fn connect(app: &App, req: &mut Request, p: &Params) -> Result<Response> {
    let n = name(p)?.to_string();
    let spec = app.islands.ssh_spec(&n)?;
    let (audit, who, shutdown) = (app.audit.clone(), actor(&req.caller), app.shutdown.clone());
    Response::raw_upgrade(
        req,
        PROTO,
        Box::new(move |conn, leftover| {
            let from = conn.try_clone();
            let state = std::sync::Arc::new(std::sync::Mutex::new((false, String::new())));
            let (st, audit2, who2, n2) = (state.clone(), audit.clone(), who.clone(), n.clone());
            let on_log = Box::new(move |line: &str| {
                log::debug!("sshd in {n2}: {line}");
                if let Some((kind, fp)) = crate::ssh::accepted_key(line) {
                    crate::util::lock(&st).0 = true;
                    audit2.append(crate::audit::Record {
                        kind: "ssh.connect".into(),
                        island: Some(n2.clone()),
                        actor: who2.clone(),
                        allowed: true,
                        detail: Some(json!({"fingerprint": fp, "key_type": kind})),
                        ..Default::default()
                    });
                } else if !line.trim().is_empty() {
                    crate::util::lock(&st).1 = crate::broker::port::clip(line.trim());
                }
            });
            let island = n.clone();
            let on_end = Box::new(move || {
                (spec.on_end)();
                let (accepted, last) = std::mem::take(&mut *crate::util::lock(&state));
                if !accepted {
                    audit.append_denial(crate::audit::Record {
                        kind: "ssh.refused".into(),
                        island: Some(island),
                        actor: who,
                        allowed: false,
                        detail: Some(json!({"reason": last})),
                        ..Default::default()
                    });
                }
            });
            crate::session::pipe::serve(conn, from, leftover, spec.argv, on_log, on_end, &shutdown)
        }),
    )
}
