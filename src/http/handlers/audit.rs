//! GET /v1/audit (the ledger, verified, in JSON, JSONL or CSV) and GET /v1/activity (a
//! newest-first timeline projected from it).

use serde::Serialize;
use serde_json::json;

use crate::audit::{self, Entry};
use crate::error::{Error, Result};
use crate::http::router::Params;
use crate::http::{App, Request, Response};
use crate::util;

/// The filters both routes take.
struct Filter {
    since: Option<u64>,
    until: Option<u64>,
    island: Option<String>,
    actor: Option<String>,
    decision: Option<String>,
    limit: Option<usize>,
}

fn time_param(req: &Request, k: &str) -> Result<Option<u64>> {
    match req.query(k) {
        None => Ok(None),
        // Any RFC 3339 time; one before 1970 bounds nothing the ledger holds.
        Some(v) => time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .map(|t| Some(u64::try_from(t.unix_timestamp()).unwrap_or(0)))
            .map_err(|_| Error::bad(format!("{k}={v:?} is not an RFC 3339 time"))),
    }
}

fn filter(req: &Request, default_limit: Option<usize>) -> Result<Filter> {
    let decision = req.query("decision").map(str::to_string);
    if let Some(d) = &decision {
        if d != "allowed" && d != "denied" {
            return Err(Error::bad("decision must be allowed or denied"));
        }
    }
    let limit = match req.query("limit") {
        None => default_limit,
        Some(v) => Some(
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| Error::bad("limit must be 1..=100000"))?,
        ),
    };
    let text = |k: &str| req.query(k).filter(|v| !v.is_empty()).map(str::to_string);
    Ok(Filter {
        since: time_param(req, "since")?,
        until: time_param(req, "until")?,
        island: text("island"),
        actor: text("actor"),
        decision,
        limit,
    })
}

impl Filter {
    fn keeps(&self, e: &Entry) -> bool {
        let t = util::parse_rfc3339(&e.body.time).unwrap_or(0);
        self.since.is_none_or(|s| t >= s)
            && self.until.is_none_or(|u| t <= u)
            && self
                .island
                .as_ref()
                .is_none_or(|i| e.body.island.as_deref() == Some(i.as_str()))
            && self.actor.as_ref().is_none_or(|a| e.body.actor == *a)
            && self.decision.as_ref().is_none_or(|d| e.body.decision == *d)
    }
}

fn entries(app: &App, f: &Filter, kind: impl Fn(&Entry) -> bool) -> Result<Vec<Entry>> {
    app.audit
        .sync()
        .map_err(|e| Error::Internal(format!("cannot sync the ledger: {e}")))?;
    let all = audit::read_all(app.audit.dir())
        .map_err(|e| Error::Internal(format!("cannot read the ledger: {e}")))?;
    let mut v: Vec<Entry> = all.into_iter().filter(|e| f.keeps(e) && kind(e)).collect();
    if let Some(n) = f.limit {
        let cut = v.len().saturating_sub(n);
        v.drain(..cut);
    }
    Ok(v)
}

fn csv_field(s: &str) -> String {
    // A cell a spreadsheet would run as a formula is prefixed so it stays text.
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv(entries: &[Entry]) -> String {
    let mut out = String::from(
        "seq,time,type,island,agent,actor,decision,method,route,status,detail,prev,chain\n",
    );
    out.push_str(&csv_rows(entries));
    out
}

fn csv_rows(entries: &[Entry]) -> String {
    let mut out = String::new();
    for e in entries {
        let b = &e.body;
        let cells = [
            b.seq.to_string(),
            b.time.clone(),
            b.kind.clone(),
            b.island.clone().unwrap_or_default(),
            b.agent.clone().unwrap_or_default(),
            b.actor.clone(),
            b.decision.clone(),
            b.method.clone().unwrap_or_default(),
            b.route.clone().unwrap_or_default(),
            b.status.map(|s| s.to_string()).unwrap_or_default(),
            b.detail.as_ref().map(|d| d.to_string()).unwrap_or_default(),
            b.prev.clone(),
            e.chain.clone(),
        ];
        let row: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// GET /v1/audit
pub fn list(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let format = req.query("format").unwrap_or("json").to_string();
    let kind = req
        .query("type")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let default_limit = (format == "json").then_some(100);
    let f = filter(req, default_limit)?;
    let of_kind = |e: &Entry| kind.as_ref().is_none_or(|k| e.body.kind == *k);
    match format.as_str() {
        "json" => {
            let entries = entries(app, &f, of_kind)?;
            let verify = app
                .audit
                .verify()
                .map_err(|e| Error::Internal(format!("cannot verify the ledger: {e}")))?;
            Ok(Response::json(
                200,
                &json!({ "entries": entries, "verify": verify }),
            ))
        }
        "jsonl" | "csv" if f.limit.is_none() => {
            // A whole export is streamed segment by segment, never held in memory at once.
            app.audit
                .sync()
                .map_err(|e| Error::Internal(format!("cannot sync the ledger: {e}")))?;
            let files = audit::segments(app.audit.dir())
                .map_err(|e| Error::Internal(format!("cannot read the ledger: {e}")))?;
            let (ct, as_csv) = if format == "csv" {
                ("text/csv; charset=utf-8", true)
            } else {
                ("application/x-ndjson", false)
            };
            Ok(Response::stream(
                ct,
                Box::new(move |w, _peer| {
                    if as_csv {
                        w.write_all(csv(&[]).as_bytes())?;
                    }
                    for file in files {
                        let mut chunk = Vec::new();
                        for line in std::io::BufRead::split(
                            std::io::BufReader::new(std::fs::File::open(&file)?),
                            b'\n',
                        ) {
                            let Ok(e) = serde_json::from_slice::<Entry>(&line?) else {
                                continue;
                            };
                            if !(f.keeps(&e) && kind.as_ref().is_none_or(|k| e.body.kind == *k)) {
                                continue;
                            }
                            if as_csv {
                                chunk.extend(csv_rows(std::slice::from_ref(&e)).into_bytes());
                            } else {
                                chunk.extend(serde_json::to_vec(&e).unwrap_or_default());
                                chunk.push(b'\n');
                            }
                            if chunk.len() >= 64 << 10 {
                                w.write_all(&chunk)?;
                                chunk.clear();
                            }
                        }
                        if !chunk.is_empty() {
                            w.write_all(&chunk)?;
                        }
                    }
                    Ok(())
                }),
            ))
        }
        "jsonl" => {
            let mut body = Vec::new();
            for e in entries(app, &f, of_kind)? {
                body.extend(serde_json::to_vec(&e).unwrap_or_default());
                body.push(b'\n');
            }
            Ok(bytes(body, "application/x-ndjson"))
        }
        "csv" => Ok(bytes(
            csv(&entries(app, &f, of_kind)?).into_bytes(),
            "text/csv; charset=utf-8",
        )),
        other => Err(Error::bad(format!(
            "format {other:?} must be json, jsonl or csv"
        ))),
    }
}

fn bytes(b: Vec<u8>, content_type: &str) -> Response {
    Response {
        status: 200,
        headers: vec![("Content-Type".into(), content_type.into())],
        payload: crate::http::wire::Payload::Bytes(b),
    }
}

/// One line of the activity timeline.
#[derive(Serialize)]
struct Activity {
    seq: u64,
    time: String,
    kind: &'static str,
    actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    island: Option<String>,
    decision: String,
    text: String,
}

fn kind_of(e: &Entry) -> &'static str {
    let k = e.body.kind.as_str();
    if k.starts_with("island.") || k.starts_with("container.") {
        "lifecycle"
    } else if k.starts_with("broker.") {
        "broker"
    } else {
        "system"
    }
}

fn text_of(e: &Entry) -> String {
    let b = &e.body;
    let island = b.island.as_deref().unwrap_or("?");
    let d = |k: &str| {
        b.detail
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_default()
    };
    match b.kind.as_str() {
        "api.request" if b.decision == "denied" => format!(
            "{} was refused {} {} ({})",
            b.actor,
            b.method.as_deref().unwrap_or("?"),
            b.route.as_deref().unwrap_or("?"),
            b.status.unwrap_or(0)
        ),
        "api.request" => format!(
            "{} called {} {} → {}",
            b.actor,
            b.method.as_deref().unwrap_or("?"),
            b.route.as_deref().unwrap_or("?"),
            b.status.unwrap_or(0)
        ),
        "island.created" => format!("island {island} was created"),
        "island.running" => format!("island {island} is running"),
        "island.hibernated" => format!("island {island} was hibernated"),
        "island.woken" => format!("island {island} was woken"),
        "island.reset" => format!("island {island} was reset"),
        "island.purged" => format!("island {island} was purged"),
        "container.crashed" => format!("island {island} crashed (exit {})", d("exit_code")),
        "token.created" => format!("{} created token {} ({})", b.actor, d("id"), d("role")),
        "token.revoked" => format!("{} revoked token {}", b.actor, d("id")),
        "daemon.panic-engaged" => format!("the panic switch was engaged: {}", d("reason")),
        "daemon.panic-cleared" => "the panic switch was cleared".to_string(),
        other => format!("{} {other}", b.actor),
    }
}

/// GET /v1/activity
pub fn activity(app: &App, req: &mut Request, _p: &Params) -> Result<Response> {
    let f = filter(req, Some(50))?;
    let kind = req.query("kind").map(str::to_string);
    if let Some(k) = &kind {
        if !["lifecycle", "broker", "system"].contains(&k.as_str()) {
            return Err(Error::bad("kind must be lifecycle, broker or system"));
        }
    }
    let caller = req.caller.clone();
    let mut v: Vec<Activity> = entries(app, &f, |e| {
        kind.as_ref().is_none_or(|k| kind_of(e) == k.as_str())
            // A scoped token sees its islands' entries only.
            && (caller.scope().is_none()
                || e.body.island.as_deref().is_some_and(|i| caller.sees(i)))
    })?
    .iter()
    .map(|e| Activity {
        seq: e.body.seq,
        time: e.body.time.clone(),
        kind: kind_of(e),
        actor: e.body.actor.clone(),
        island: e.body.island.clone(),
        decision: e.body.decision.clone(),
        text: text_of(e),
    })
    .collect();
    v.reverse();
    Ok(Response::json(200, &v))
}
