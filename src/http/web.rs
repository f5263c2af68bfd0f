//! The dashboard: its assets (embedded at build time from `web/dist`), the browser login (a
//! cookie that stands for one operator token), and the guard every browser request passes
//! (its `Origin` must be the daemon's own, its `Host` a name the daemon answers browsers on).
//! docs/dashboard.md says what a browser may do and why.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::router::Params;
use super::wire::{Caller, Request, Response};
use super::App;
use crate::api::Role;
use crate::error::{Error, Result};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// The login cookie's name.
pub const COOKIE: &str = "dejima_session";
/// A login cookie's lifetime in the browser (the daemon also ends idle logins).
const COOKIE_MAX_AGE: u64 = 7 * 24 * 3600;

/// No inline scripts, nothing from elsewhere. Styles may be inline: the terminal (xterm.js)
/// writes its own style elements for its theme and cell size.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Shown at `/` when the binary was built without `web/dist`.
const UNBUILT: &str = "<!doctype html><meta charset=utf-8><title>Dejima</title>\
<p>This dejimad was built without its dashboard. Run <code>scripts/setup</code> (it builds \
<code>web/dist</code> with npm), then build dejimad again.</p>\n";

/// One embedded file, ready to serve.
struct Asset {
    name: &'static str,
    body: &'static [u8],
    gzip: Option<&'static [u8]>,
    etag: String,
}

fn assets() -> &'static [Asset] {
    static ALL: OnceLock<Vec<Asset>> = OnceLock::new();
    ALL.get_or_init(|| {
        embedded::ASSETS
            .iter()
            .map(|(name, body, gzip)| Asset {
                name,
                body,
                gzip: *gzip,
                etag: format!("\"{}\"", crate::util::hex(&Sha256::digest(body)[..12])),
            })
            .collect()
    })
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// The headers every dashboard response carries.
fn guarded(resp: Response) -> Response {
    resp.header("Content-Security-Policy", CSP)
        .header("X-Content-Type-Options", "nosniff")
        .header("X-Frame-Options", "DENY")
        .header("Referrer-Policy", "no-referrer")
        .header("Cross-Origin-Opener-Policy", "same-origin")
        .header("Cross-Origin-Resource-Policy", "same-origin")
}

fn serve_asset(req: &Request, name: &str) -> Result<Response> {
    let Some(a) = assets().iter().find(|a| a.name == name) else {
        if name == "index.html" {
            return Ok(guarded(Response::body(
                200,
                "text/html; charset=utf-8",
                UNBUILT.as_bytes().to_vec(),
            )));
        }
        return Err(Error::NotFound(format!("no dashboard file {name:?}")));
    };
    // Revalidated on every load (the names carry no hash), answered 304 when unchanged.
    let fresh = req
        .header("if-none-match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag));
    let resp = if fresh {
        Response {
            status: 304,
            headers: Vec::new(),
            payload: super::wire::Payload::Empty,
        }
    } else {
        let gzip_ok = req.header("accept-encoding").is_some_and(|v| {
            v.split(',')
                .any(|t| t.split(';').next().unwrap_or("").trim() == "gzip")
        });
        match (a.gzip, gzip_ok) {
            (Some(gz), true) => Response::body(200, content_type(name), gz.to_vec())
                .header("Content-Encoding", "gzip"),
            _ => Response::body(200, content_type(name), a.body.to_vec()),
        }
    };
    Ok(guarded(
        resp.header("ETag", &a.etag)
            .header("Cache-Control", "no-cache")
            .header("Vary", "Accept-Encoding"),
    ))
}

/// GET /
pub fn index(_: &App, req: &mut Request, _: &Params) -> Result<Response> {
    serve_asset(req, "index.html")
}

/// GET /ui/{file}
pub fn asset(_: &App, req: &mut Request, p: &Params) -> Result<Response> {
    serve_asset(req, p.get("file"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    token: String,
}

#[derive(Serialize)]
struct Me {
    role: Role,
    islands: Vec<String>,
    /// How this request was authenticated: cookie, bearer, socket, trusted.
    auth: &'static str,
}

/// The cookie named `name`, if the request carries it.
pub fn cookie<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether the page the browser is on came over TLS (a proxy such as `tailscale serve` in
/// front of the daemon), so the cookie must be `Secure`.
fn over_tls(req: &Request) -> bool {
    req.header("origin")
        .is_some_and(|o| o.starts_with("https://"))
        || req
            .header("x-forwarded-proto")
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

fn set_cookie(req: &Request, value: &str, max_age: u64) -> String {
    let secure = if over_tls(req) { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

/// POST /ui/login `{token}`: check an operator token and start a login that stands for it.
pub fn login(app: &App, req: &mut Request, _: &Params) -> Result<Response> {
    let peer = match req.caller {
        Caller::Tcp(ip) | Caller::Trusted(ip) => Some(ip),
        _ => None,
    };
    if let Some(ip) = peer {
        if app.tokens.blocked(ip) {
            return Err(Error::TooManyRequests(
                "too many failed token attempts from this address; wait a minute".into(),
            ));
        }
    }
    let body: LoginBody = req.json_secret()?;
    let token = body.token.trim();
    let verified = token
        .starts_with(crate::auth::SECRET_PREFIX)
        .then(|| app.tokens.verify(token))
        .flatten();
    let Some(v) = verified else {
        if let Some(ip) = peer {
            app.tokens.failed(ip);
        }
        return Err(Error::Unauthorized(
            "unknown or revoked token (an operator token, djo_...; see dejima token create)".into(),
        ));
    };
    let value = app.logins.start(&v.id);
    log::info!("dashboard login for token {}", v.id);
    let me = Me {
        role: v.role,
        islands: v.islands,
        auth: "cookie",
    };
    Ok(guarded(
        Response::json(200, &me)
            .header("Set-Cookie", &set_cookie(req, &value, COOKIE_MAX_AGE))
            .header("Cache-Control", "no-store"),
    ))
}

/// POST /ui/logout: end this browser's login (if any) and clear its cookie.
pub fn logout(app: &App, req: &mut Request, _: &Params) -> Result<Response> {
    if let Some(v) = cookie(req, COOKIE) {
        app.logins.end(v);
    }
    Ok(guarded(
        Response::no_content().header("Set-Cookie", &set_cookie(req, "", 0)),
    ))
}

/// GET /ui/whoami: the caller's role and scope (a 401 tells the page to show its login).
pub fn whoami(_: &App, req: &mut Request, _: &Params) -> Result<Response> {
    let auth = match &req.caller {
        Caller::Token { .. } if req.header("authorization").is_some() => "bearer",
        Caller::Token { .. } => "cookie",
        Caller::Socket => "socket",
        _ => "trusted",
    };
    let role = req
        .caller
        .role()
        .ok_or_else(|| Error::Forbidden("an island token has no dashboard".into()))?;
    let me = Me {
        role,
        islands: req
            .caller
            .scope()
            .map(<[String]>::to_vec)
            .unwrap_or_default(),
        auth,
    };
    Ok(guarded(
        Response::json(200, &me).header("Cache-Control", "no-store"),
    ))
}

/// How often the fleet stream looks for changes no event announces (stats, agent states).
const FLEET_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// GET /ui/fleet: the fleet view's feed (server-sent events). First `snapshot` (every island
/// the caller sees, as GET /v1/islands gives them), then `island` (one island, whole) whenever
/// it changed and `gone` (`{"name"}`) when it went: at once after an event, and every 2 s for
/// what no event announces (CPU and memory, agent states). The page never polls.
pub fn fleet(app: &App, req: &mut Request, _: &Params) -> Result<Response> {
    let scope = req.caller.scope().map(<[String]>::to_vec);
    let owner = super::handlers::agents::token_of(req);
    let filter = crate::events::Filter {
        islands: scope.clone().unwrap_or_default(),
        types: Vec::new(),
    };
    let (_, rx) = app.events.subscribe(filter, 0, owner.clone());
    let (islands, tokens, shutdown) = (
        app.islands.clone(),
        app.tokens.clone(),
        app.shutdown.clone(),
    );
    let sees = move |name: &str| scope.as_ref().is_none_or(|s| s.iter().any(|i| i == name));
    Ok(guarded(
        Response::stream(
            "text/event-stream",
            Box::new(move |w, _peer| {
                let mut sent: std::collections::HashMap<String, String> = Default::default();
                let mut first = true;
                loop {
                    if owner.as_deref().is_some_and(|id| !tokens.exists(id)) {
                        w.write_all(b"event: revoked\ndata: {\"reason\":\"token revoked\"}\n\n")?;
                        return Ok(());
                    }
                    let now: Vec<(String, String)> = islands
                        .list()
                        .into_iter()
                        .filter(|i| sees(&i.name))
                        .map(|i| {
                            (
                                i.name.clone(),
                                serde_json::to_string(&i).unwrap_or_default(),
                            )
                        })
                        .collect();
                    let mut out = String::new();
                    if first {
                        let all: Vec<&str> = now.iter().map(|(_, j)| j.as_str()).collect();
                        out = format!("event: snapshot\ndata: [{}]\n\n", all.join(","));
                        first = false;
                    } else {
                        for (name, j) in &now {
                            if sent.get(name) != Some(j) {
                                out.push_str(&format!("event: island\ndata: {j}\n\n"));
                            }
                        }
                        for name in sent.keys() {
                            if !now.iter().any(|(n, _)| n == name) {
                                let gone = serde_json::json!({ "name": name });
                                out.push_str(&format!("event: gone\ndata: {gone}\n\n"));
                            }
                        }
                    }
                    sent = now.into_iter().collect();
                    // Something to say, or a keepalive that notices a browser gone away.
                    w.write_all(if out.is_empty() {
                        b": -\n\n"
                    } else {
                        out.as_bytes()
                    })?;
                    match rx.recv_timeout(FLEET_EVERY) {
                        // An event: let its burst settle a moment, then look again.
                        Ok(_) => {
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            while rx.try_recv().is_ok() {}
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        Err(_) => return Ok(()),
                    }
                    if shutdown.is_set() {
                        return Ok(());
                    }
                }
            }),
        )
        .header("Cache-Control", "no-store"),
    ))
}

/// `scheme://host[:port]` minus a default port, lowercased, for comparing origins.
fn normal_origin(scheme: &str, hostport: &str) -> String {
    let hp = hostport.trim().to_ascii_lowercase();
    let hp = match scheme {
        "http" => hp.strip_suffix(":80").map(str::to_string).unwrap_or(hp),
        "https" => hp.strip_suffix(":443").map(str::to_string).unwrap_or(hp),
        _ => hp,
    };
    format!("{scheme}://{hp}")
}

/// The host name of a `Host` header (without its port; an IPv6 literal without brackets).
fn host_name(host: &str) -> &str {
    let h = host.trim();
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match h.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => h,
    }
}

/// Whether browsers may reach the daemon by this host name: an IP address, localhost, a
/// tailnet name (*.ts.net), or one named with `--web-host`. Anything else may be a DNS
/// rebinding: another site's name pointed at this daemon to read it with the browser.
fn host_allowed(app: &App, host: &str) -> bool {
    let name = host_name(host).trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || name.ends_with(".ts.net")
        || app
            .web_hosts
            .iter()
            .any(|h| h.trim_end_matches('.').eq_ignore_ascii_case(&name))
}

/// Refuse what a browser sends on another site's behalf. A request with an `Origin` (every
/// browser request but a same-origin GET, and every websocket handshake from a page) must come
/// from the daemon's own origin; a browser's request (`Origin` or `Sec-Fetch-*`) must name the
/// daemon by a host it answers browsers on. Other clients (curl, SDKs) send neither, or an
/// `Origin` equal to their `Host`.
pub fn guard(app: &App, req: &Request) -> Result<()> {
    if matches!(req.caller, Caller::IslandSocket(_)) {
        return Ok(());
    }
    let host = req.header("host").unwrap_or("");
    if let Some(origin) = req.header("origin") {
        let o = origin.trim();
        let same = ["http", "https"].iter().any(|scheme| {
            o.strip_prefix(scheme)
                .and_then(|r| r.strip_prefix("://"))
                .is_some_and(|hp| normal_origin(scheme, hp) == normal_origin(scheme, host))
        });
        if !same {
            return Err(Error::Forbidden(format!(
                "cross-origin request refused: Origin {:?} is not this daemon's own origin (Host {:?})",
                crate::util::clip(o),
                crate::util::clip(host)
            )));
        }
    }
    let browser = req.header("origin").is_some()
        || req.header("sec-fetch-site").is_some()
        || req.header("sec-fetch-mode").is_some();
    if browser && !host_allowed(app, host) {
        return Err(Error::Forbidden(format!(
            "a browser reached this daemon as {:?}: browsers may use its IP address, localhost or a *.ts.net name; to allow this name, start dejimad with --web-host {}",
            crate::util::clip(host),
            crate::util::clip(host_name(host))
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_hosts() {
        assert_eq!(
            normal_origin("http", "127.0.0.1:80"),
            normal_origin("http", "127.0.0.1")
        );
        assert_ne!(
            normal_origin("http", "127.0.0.1:7273"),
            normal_origin("http", "127.0.0.1:7274")
        );
        assert_eq!(host_name("[::1]:7273"), "::1");
        assert_eq!(host_name("box.tail1234.ts.net:7273"), "box.tail1234.ts.net");
        assert_eq!(host_name("localhost"), "localhost");
    }

    #[test]
    fn every_embedded_file_has_a_type() {
        for a in assets() {
            assert_ne!(
                content_type(a.name),
                "application/octet-stream",
                "{}",
                a.name
            );
        }
    }
}
