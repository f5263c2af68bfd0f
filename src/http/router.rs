//! The one route table. Each route is a method, a pattern of path segments (`{x}` one
//! segment, `{x...}` the rest of the path), and a handler. `openapi.yaml` is kept equal to this
//! table by a test.

use super::handlers::{
    access, agents, audit, brokers, creds, events, islands, live, sessions, ssh, system, tokens,
};
use super::web;
use super::wire::Caller;
use super::wire::{Request, Response};
use super::{error_response, App};
use crate::api::Role;
use crate::error::{Error, Result};

/// Path parameters, percent-decoded (a `{x...}` tail is left encoded for its resolver).
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

pub type Handler = fn(&App, &mut Request, &Params) -> Result<Response>;

/// Who may call a route, besides an operator token's role.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Access {
    /// Operators only (island tokens are refused).
    Operator,
    /// Also an island token, for its own island only (autonomy routes).
    Island,
    /// Also an island token with a spawn grant (creating a child island; the handler checks
    /// the grant).
    Spawn,
    /// Also an island token, for the islands it created (its children) only.
    Child,
    /// Anyone who reached the daemon (liveness).
    Any,
    /// Anyone, even without a token where one is required: the dashboard's own files and its
    /// login (the page that asks for the token must load without one).
    Public,
}

pub struct Route {
    pub method: &'static str,
    pub pattern: &'static str,
    pub handler: Handler,
    pub access: Access,
    /// The least operator role that may call it (the socket is the owner).
    pub role: Role,
}

const fn route(
    method: &'static str,
    pattern: &'static str,
    handler: Handler,
    access: Access,
    role: Role,
) -> Route {
    Route {
        method,
        pattern,
        handler,
        access,
        role,
    }
}

/// Reading: any operator token.
const fn view(method: &'static str, pattern: &'static str, handler: Handler) -> Route {
    route(method, pattern, handler, Access::Operator, Role::Viewer)
}

/// Running islands, agents, sessions, exec, files, events, webhooks.
const fn op(method: &'static str, pattern: &'static str, handler: Handler) -> Route {
    route(method, pattern, handler, Access::Operator, Role::Operator)
}

/// Tokens, host terminals, the image: the owner only.
const fn own(method: &'static str, pattern: &'static str, handler: Handler) -> Route {
    route(method, pattern, handler, Access::Operator, Role::Owner)
}

/// An autonomy route: an island's token may call it for its own island.
const fn autonomy(method: &'static str, pattern: &'static str, handler: Handler) -> Route {
    route(method, pattern, handler, Access::Island, Role::Operator)
}

/// Operators, or the token of the island that created the named one.
const fn parent(
    method: &'static str,
    pattern: &'static str,
    handler: Handler,
    role: Role,
) -> Route {
    route(method, pattern, handler, Access::Child, role)
}

/// Reading an island's own grants: viewers, or that island's token.
const fn own_view(method: &'static str, pattern: &'static str, handler: Handler) -> Route {
    route(method, pattern, handler, Access::Island, Role::Viewer)
}

const fn open(method: &'static str, pattern: &'static str, handler: Handler) -> Route {
    route(method, pattern, handler, Access::Any, Role::Viewer)
}

/// The one route table: method, pattern, handler, who may call it.
pub static ROUTES: &[Route] = &[
    open("GET", "/v1/healthz", system::healthz),
    open("GET", "/v1/readyz", system::readyz),
    op("GET", "/metrics", system::metrics),
    op("GET", "/v1/doctor", system::doctor),
    own("POST", "/v1/doctor/fix", system::doctor_fix),
    own("POST", "/v1/admin/update", system::update),
    view("GET", "/v1/overview", system::overview),
    own("POST", "/v1/image/build", system::image_build),
    view("GET", "/v1/islands", islands::list),
    route(
        "POST",
        "/v1/islands",
        islands::create,
        Access::Spawn,
        Role::Operator,
    ),
    parent("GET", "/v1/islands/{name}", islands::get, Role::Viewer),
    op("PATCH", "/v1/islands/{name}", islands::patch),
    parent(
        "DELETE",
        "/v1/islands/{name}",
        islands::purge,
        Role::Operator,
    ),
    parent(
        "POST",
        "/v1/islands/{name}/hibernate",
        islands::hibernate,
        Role::Operator,
    ),
    parent(
        "POST",
        "/v1/islands/{name}/wake",
        islands::wake,
        Role::Operator,
    ),
    op("POST", "/v1/islands/{name}/reset", islands::reset),
    op("POST", "/v1/islands/{name}/upgrade", islands::upgrade),
    op("POST", "/v1/islands/{name}/clone", islands::clone),
    op("PUT", "/v1/islands/{name}/resources", islands::resources),
    view(
        "GET",
        "/v1/islands/{name}/workspace-ready",
        islands::workspace_ready,
    ),
    op("POST", "/v1/islands/{name}/reclone", islands::reclone),
    op("POST", "/v1/islands/{name}/exec", access::exec),
    view(
        "GET",
        "/v1/islands/{name}/files/{path...}",
        access::read_file,
    ),
    op(
        "PUT",
        "/v1/islands/{name}/files/{path...}",
        access::write_file,
    ),
    view("GET", "/v1/islands/{name}/logs", access::logs),
    // Sessions carry keystrokes: a viewer's session is always a read-only observer's.
    view("GET", "/v1/islands/{name}/session", agents::island_session),
    view("GET", "/v1/agent-types", agents::types),
    view("GET", "/v1/islands/{name}/agents", agents::list),
    op("POST", "/v1/islands/{name}/agents", agents::add),
    view("GET", "/v1/islands/{name}/agents/{id}", agents::get),
    op("PATCH", "/v1/islands/{name}/agents/{id}", agents::patch),
    op("DELETE", "/v1/islands/{name}/agents/{id}", agents::remove),
    op(
        "POST",
        "/v1/islands/{name}/agents/{id}/restart",
        agents::restart,
    ),
    op(
        "PATCH",
        "/v1/islands/{name}/agents/{id}/config",
        agents::config,
    ),
    view(
        "GET",
        "/v1/islands/{name}/agents/{id}/session",
        agents::agent_session,
    ),
    view("GET", "/v1/islands/{name}/agents/{id}/screen", live::screen),
    op(
        "POST",
        "/v1/islands/{name}/agents/{id}/prompt",
        live::prompt,
    ),
    op(
        "POST",
        "/v1/islands/{name}/agents/{id}/upload",
        live::upload,
    ),
    view("GET", "/v1/islands/{name}/recordings", live::recordings),
    view("GET", "/v1/islands/{name}/recordings/{id}", live::recording),
    op(
        "DELETE",
        "/v1/islands/{name}/recordings/{id}",
        live::delete_recording,
    ),
    // SSH: a connection is an island's shell, so operators (or the island's own token);
    // account keys reach every island, so they are the owner's.
    autonomy("GET", "/v1/islands/{name}/ssh", ssh::connect),
    own("GET", "/v1/ssh/account-keys", ssh::account_keys),
    own("POST", "/v1/ssh/account-keys", ssh::add_account_key),
    own(
        "DELETE",
        "/v1/ssh/account-keys/{fingerprint}",
        ssh::remove_account_key,
    ),
    view("GET", "/v1/islands/{name}/ssh/keys", ssh::island_keys),
    op("POST", "/v1/islands/{name}/ssh/keys", ssh::add_island_key),
    op(
        "DELETE",
        "/v1/islands/{name}/ssh/keys/{fingerprint}",
        ssh::remove_island_key,
    ),
    // The multiplexed stream: each operation inside it checks role and island scope.
    view("GET", "/v1/stream", live::stream),
    view("GET", "/v1/clients", sessions::clients),
    op("POST", "/v1/sessions/revoke", sessions::revoke),
    own("GET", "/v1/terminals", sessions::terminals),
    own("POST", "/v1/terminals", sessions::create_terminal),
    own("PATCH", "/v1/terminals/{id}", sessions::patch_terminal),
    own("DELETE", "/v1/terminals/{id}", sessions::delete_terminal),
    own(
        "GET",
        "/v1/terminals/{id}/session",
        sessions::terminal_session,
    ),
    view("GET", "/v1/islands/{name}/events", events::island_events),
    op("POST", "/v1/events/subscribe", events::subscribe),
    view("GET", "/v1/events/subscriptions", events::subscriptions),
    op(
        "DELETE",
        "/v1/events/subscriptions/{id}",
        events::unsubscribe,
    ),
    view("GET", "/v1/events/stream", events::stream),
    autonomy("POST", "/v1/internal/agent-event", events::agent_event),
    view("GET", "/v1/panic", system::panic_status),
    own("POST", "/v1/panic", system::panic_engage),
    own("DELETE", "/v1/panic", system::panic_clear),
    own("GET", "/v1/audit", audit::list),
    op("GET", "/v1/activity", audit::activity),
    own("GET", "/v1/tokens", tokens::list),
    own("POST", "/v1/tokens", tokens::create),
    own("DELETE", "/v1/tokens/{id}", tokens::revoke),
    // Port: granting host folders is host file access, the owner's alone.
    own_view("GET", "/v1/islands/{name}/port/scopes", brokers::scopes),
    own(
        "POST",
        "/v1/islands/{name}/port/scopes",
        brokers::grant_scope,
    ),
    own(
        "DELETE",
        "/v1/islands/{name}/port/scopes/{scope}",
        brokers::revoke_scope,
    ),
    autonomy("POST", "/v1/islands/{name}/port/intake", brokers::intake),
    autonomy("POST", "/v1/islands/{name}/port/export", brokers::export),
    autonomy("POST", "/v1/islands/{name}/port/write", brokers::write),
    view("GET", "/v1/capabilities", brokers::capabilities),
    own_view(
        "GET",
        "/v1/islands/{name}/capability/grants",
        brokers::capability_grants,
    ),
    op(
        "POST",
        "/v1/islands/{name}/capability/grants",
        brokers::grant_capability,
    ),
    op(
        "DELETE",
        "/v1/islands/{name}/capability/grants/{target}",
        brokers::revoke_capability,
    ),
    autonomy("POST", "/v1/capabilities/execute", brokers::execute),
    view("GET", "/v1/mcp/servers", brokers::mcp_servers),
    own_view("GET", "/v1/islands/{name}/mcp/grants", brokers::mcp_grants),
    op("POST", "/v1/islands/{name}/mcp/grants", brokers::grant_mcp),
    op(
        "DELETE",
        "/v1/islands/{name}/mcp/grants/{server}",
        brokers::revoke_mcp,
    ),
    autonomy("POST", "/v1/mcp/call", brokers::mcp_call),
    own_view("GET", "/v1/islands/{name}/spawn", brokers::spawn_info),
    op("PUT", "/v1/islands/{name}/spawn", brokers::grant_spawn),
    own("GET", "/v1/credentials/claude", creds::claude_status),
    own("PUT", "/v1/credentials/claude", creds::claude_put),
    own("DELETE", "/v1/credentials/claude", creds::claude_delete),
    own("GET", "/v1/credentials/github", creds::github_list),
    own("PUT", "/v1/credentials/github/{name}", creds::github_put),
    own(
        "DELETE",
        "/v1/credentials/github/{name}",
        creds::github_delete,
    ),
    own(
        "GET",
        "/v1/credentials/github/{name}/repos",
        creds::github_repos,
    ),
    own(
        "POST",
        "/v1/credentials/github/{name}/repos",
        creds::github_create_repo,
    ),
    own("GET", "/v1/credentials/providers", creds::provider_list),
    own(
        "GET",
        "/v1/credentials/providers/{provider}",
        creds::provider_get,
    ),
    own(
        "PUT",
        "/v1/credentials/providers/{provider}",
        creds::provider_put,
    ),
    own(
        "DELETE",
        "/v1/credentials/providers/{provider}",
        creds::provider_delete,
    ),
];

/// The dashboard's routes (`web.rs`): not the API, so not in `openapi.yaml`; docs/dashboard.md.
pub static WEB_ROUTES: &[Route] = &[
    route("GET", "/", web::index, Access::Public, Role::Viewer),
    view("GET", "/ui/whoami", web::whoami),
    view("GET", "/ui/fleet", web::fleet),
    route(
        "POST",
        "/ui/login",
        web::login,
        Access::Public,
        Role::Viewer,
    ),
    route(
        "POST",
        "/ui/logout",
        web::logout,
        Access::Public,
        Role::Viewer,
    ),
    route(
        "GET",
        "/ui/{file}",
        web::asset,
        Access::Public,
        Role::Viewer,
    ),
];

/// Match `path` against `pattern`; the parameters when it fits.
pub fn matches(pattern: &'static str, path: &str) -> Option<Params> {
    let mut params = Vec::new();
    let mut rest = path.strip_prefix('/')?;
    let mut pats = pattern.strip_prefix('/')?.split('/').peekable();
    while let Some(p) = pats.next() {
        if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix("...}")) {
            // The tail: everything left (a doubled slash after the prefix is tolerated).
            if rest.is_empty() {
                return None;
            }
            params.push((leak_name(pattern, name), rest.to_string()));
            return Some(Params(params));
        }
        let (seg, tail) = match rest.split_once('/') {
            Some((s, t)) => (s, Some(t)),
            None => (rest, None),
        };
        if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if seg.is_empty() {
                return None;
            }
            let value = percent_encoding::percent_decode_str(seg)
                .decode_utf8()
                .ok()?
                .into_owned();
            params.push((leak_name(pattern, name), value));
        } else if seg != p {
            return None;
        }
        match tail {
            Some(t) => {
                if pats.peek().is_none() {
                    // A trailing slash is the same route; anything more is not.
                    return t.is_empty().then_some(Params(params));
                }
                rest = t;
            }
            None => {
                return pats.peek().is_none().then_some(Params(params));
            }
        }
    }
    None
}

/// Parameter names are slices of the static pattern, so they are `'static` already; this
/// finds that slice.
fn leak_name(pattern: &'static str, name: &str) -> &'static str {
    let start = pattern.find(name).unwrap_or(0);
    &pattern[start..start + name.len()]
}

/// Resolve who is calling: the listener the request came through and its bearer token.
fn authenticate(app: &App, req: &Request) -> Result<Caller> {
    if req
        .query
        .iter()
        .any(|(k, _)| k == "token" || k == "access_token")
    {
        return Err(Error::Unauthorized(
            "tokens go in the Authorization header, never in the URL".into(),
        ));
    }
    let bearer = match req.header("authorization") {
        None => None,
        Some(h) => match h
            .trim()
            .strip_prefix("Bearer ")
            .or_else(|| h.trim().strip_prefix("bearer "))
        {
            Some(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            _ => {
                return Err(Error::Unauthorized(
                    "Authorization must be \"Bearer <token>\"".into(),
                ))
            }
        },
    };
    let peer = match &req.caller {
        Caller::Tcp(ip) => Some(*ip),
        _ => None,
    };
    // An address that keeps failing is refused before its next guess is even looked at.
    if let (Some(ip), Some(_)) = (peer, &bearer) {
        if app.tokens.blocked(ip) {
            return Err(Error::TooManyRequests(
                "too many failed token attempts from this address; wait a minute".into(),
            ));
        }
    }
    let failed = |msg: &str| {
        if let Some(ip) = peer {
            app.tokens.failed(ip);
        }
        Error::Unauthorized(msg.into())
    };
    let login = match (&req.caller, &bearer) {
        (Caller::Tcp(_) | Caller::Socket, None) => {
            web::cookie(req, web::COOKIE).and_then(|c| app.logins.resolve(c, &app.tokens))
        }
        _ => None,
    };
    match (&req.caller, bearer) {
        (Caller::IslandSocket(island), Some(t)) => {
            if app.islands.token_matches(island, &t) {
                Ok(Caller::Island(island.clone()))
            } else {
                Err(Error::Unauthorized("wrong token for this island".into()))
            }
        }
        (Caller::IslandSocket(_), None) => Err(Error::Unauthorized(
            "this socket needs the island's token (Authorization: Bearer $DEJIMA_TOKEN)".into(),
        )),
        (_, Some(t)) if t.starts_with(crate::auth::SECRET_PREFIX) => {
            match app.tokens.verify(&t) {
                Some(v) => Ok(Caller::Token {
                    id: v.id,
                    role: v.role,
                    islands: v.islands,
                }),
                None => Err(failed("unknown or revoked token")),
            }
        }
        (_, Some(t)) => app
            .islands
            .island_of_token(&t)
            .map(Caller::Island)
            .ok_or_else(|| failed("unknown token")),
        // A browser's login stands for its token (an unknown or ended one is no login).
        (Caller::Tcp(_) | Caller::Socket, None) if login.is_some() => {
            let v = login.ok_or_else(|| Error::Unauthorized("log in again".into()))?;
            Ok(Caller::Token {
                id: v.id,
                role: v.role,
                islands: v.islands,
            })
        }
        (Caller::Tcp(_), None) if app.require_token => Err(Error::Unauthorized(
            "this daemon requires a token on TCP (Authorization: Bearer djo_...; see dejima token create)"
                .into(),
        )),
        (Caller::Tcp(ip), None) => Ok(Caller::Trusted(*ip)),
        (c, None) => Ok(c.clone()),
    }
}

/// Whether `caller` may call `route` with these parameters.
fn authorize(app: &App, caller: &Caller, route: &Route, params: &Params) -> Result<()> {
    let role = match caller {
        Caller::Island(island) => {
            let denied = || {
                Error::Forbidden(
                    "an island token reaches only its own island's autonomy routes".into(),
                )
            };
            let named = params.0.iter().find(|(k, _)| *k == "name").map(|(_, v)| v);
            return match route.access {
                Access::Any | Access::Public | Access::Spawn => Ok(()),
                Access::Operator => Err(denied()),
                Access::Child => match named {
                    Some(n) if app.islands.is_child_of(n, island) => Ok(()),
                    _ => Err(Error::Forbidden(
                        "an island token reaches only the islands it created".into(),
                    )),
                },
                // The name was decoded from the escaped path by the matcher, so an encoded
                // slash cannot make another island's name look like this one's.
                Access::Island if params.0.iter().any(|(k, v)| *k == "name" && v != island) => {
                    Err(denied())
                }
                Access::Island => Ok(()),
            };
        }
        Caller::Token { role, .. } => *role,
        Caller::Socket | Caller::Trusted(_) => Role::Owner,
        // Authentication resolves these first.
        Caller::Tcp(_) | Caller::IslandSocket(_) => {
            return Err(Error::Unauthorized("not authenticated".into()))
        }
    };
    if !matches!(route.access, Access::Any | Access::Public) && role < route.role {
        return Err(Error::Forbidden(format!(
            "this route needs the {} role; this token has {role}",
            route.role
        )));
    }
    // A scoped token does not see other islands at all: the same 404 as a missing one.
    match params.0.iter().find(|(k, _)| *k == "name") {
        Some((_, n)) if !caller.sees(n) => Err(Error::island_not_found(n)),
        _ => Ok(()),
    }
}

/// Route a request and run its handler; every error becomes its JSON response here.
pub fn dispatch(app: &App, req: &mut Request) -> Response {
    let started = std::time::Instant::now();
    let method = req.method.clone();
    let (route, resp) = route_request(app, req);
    crate::metrics::request(route, &method, resp.status, started.elapsed());
    resp
}

/// `dispatch`, and the route pattern it went to (for the metrics).
fn route_request(app: &App, req: &mut Request) -> (&'static str, Response) {
    // Who was asking, as the ledger names them (before authentication resolves a token).
    let asker = actor(&req.caller);
    // A page on another site, or reached by another site's name, is refused before anything.
    if let Err(e) = web::guard(app, req) {
        let resp = error_response(&e);
        ledger_refusal(app, req, &asker, None, None, resp.status);
        return ("(cross-origin)", resp);
    }
    let caller = match authenticate(app, req) {
        Ok(c) => c,
        // The dashboard's files and login need no token (the login page asks for one).
        Err(_) if public_route(req).is_some() => {
            let route = public_route(req).unwrap_or(&WEB_ROUTES[0]);
            let resp = match matches(route.pattern, &req.path) {
                Some(params) => {
                    (route.handler)(app, req, &params).unwrap_or_else(|e| error_response(&e))
                }
                None => error_response(&Error::NotFound("no route".into())),
            };
            // A login (its refusals too) is ledgered like any request.
            ledger(app, req, &asker, Some(route.pattern), None, resp.status);
            return (route.pattern, resp);
        }
        Err(e) => {
            let resp = error_response(&e);
            ledger_refusal(app, req, &asker, None, None, resp.status);
            return ("(unauthenticated)", resp);
        }
    };
    req.caller = caller;
    let who = actor(&req.caller);
    let method = if req.method == "HEAD" {
        "GET"
    } else {
        req.method.as_str()
    };
    let mut allowed: Vec<&str> = Vec::new();
    for route in ROUTES.iter().chain(WEB_ROUTES) {
        if let Some(params) = matches(route.pattern, &req.path) {
            if route.method == method {
                let island =
                    (!params.get("name").is_empty()).then(|| params.get("name").to_string());
                if let Err(e) = authorize(app, &req.caller, route, &params) {
                    let resp = error_response(&e);
                    // A scope's 404 is a refusal too, though it looks like a missing island.
                    ledger_refusal(app, req, &who, Some(route.pattern), island, resp.status);
                    return (route.pattern, resp);
                }
                let resp = match (route.handler)(app, req, &params) {
                    Ok(resp) => resp,
                    Err(e) => error_response(&e),
                };
                ledger(app, req, &who, Some(route.pattern), island, resp.status);
                return (route.pattern, resp);
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        let resp = error_response(&Error::NotFound(format!(
            "no route for {} {}",
            req.method, req.path
        )));
        ("(no route)", resp)
    } else {
        let resp = error_response(&Error::MethodNotAllowed(format!(
            "{} is not allowed on {} (allowed: {})",
            req.method,
            req.path,
            allowed.join(", ")
        )))
        .header("Allow", &allowed.join(", "));
        (route_of(&req.path), resp)
    }
}

/// The public dashboard route this request is for, if any.
fn public_route(req: &Request) -> Option<&'static Route> {
    let method = if req.method == "HEAD" {
        "GET"
    } else {
        req.method.as_str()
    };
    // The first route that fits decides (`/ui/whoami` is not the file "whoami").
    WEB_ROUTES
        .iter()
        .find(|r| r.method == method && matches(r.pattern, &req.path).is_some())
        .filter(|r| r.access == Access::Public)
}

/// The pattern a path would have matched (for a 405's metrics).
fn route_of(path: &str) -> &'static str {
    ROUTES
        .iter()
        .chain(WEB_ROUTES)
        .find(|r| matches(r.pattern, path).is_some())
        .map(|r| r.pattern)
        .unwrap_or("(no route)")
}

/// How the ledger names a caller: `socket`, `tcp:<addr>`, `token:<id>`, `island:<name>`.
pub fn actor(c: &Caller) -> String {
    match c {
        Caller::Socket => "socket".into(),
        Caller::Tcp(ip) | Caller::Trusted(ip) => format!("tcp:{ip}"),
        Caller::Token { id, .. } => format!("token:{id}"),
        Caller::IslandSocket(n) => format!("island-socket:{n}"),
        Caller::Island(n) => format!("island:{n}"),
    }
}

/// The ledger's record of a request: the route's pattern (or the raw path, cut short, when
/// none matched) and the island only when it is a valid name (never a caller's raw text).
fn request_record(
    req: &Request,
    actor: &str,
    route: Option<&str>,
    island: Option<String>,
    status: u16,
    allowed: bool,
) -> crate::audit::Record {
    let path = crate::util::clip(route.unwrap_or(req.path.as_str()));
    crate::audit::Record {
        kind: "api.request".into(),
        island: island.filter(|n| crate::island::names::validate(n).is_ok()),
        actor: actor.to_string(),
        allowed,
        method: Some(req.method.chars().take(16).collect()),
        route: Some(path),
        status: Some(status),
        ..Default::default()
    }
}

/// Ledger a mutating request, whatever its outcome (allowed reads are not recorded; an
/// authorization refusal goes through `ledger_refusal`).
fn ledger(
    app: &App,
    req: &Request,
    actor: &str,
    route: Option<&str>,
    island: Option<String>,
    status: u16,
) {
    let denied = matches!(status, 401 | 403 | 429);
    if denied {
        return ledger_refusal(app, req, actor, route, island, status);
    }
    if matches!(req.method.as_str(), "GET" | "HEAD") {
        return;
    }
    app.audit
        .append(request_record(req, actor, route, island, status, true));
}

/// Ledger a refusal by authentication or authorization (rate-limited per actor, so a flood
/// of them cannot fill the disk).
fn ledger_refusal(
    app: &App,
    req: &Request,
    actor: &str,
    route: Option<&str>,
    island: Option<String>,
    status: u16,
) {
    app.audit
        .append_refusal(request_record(req, actor, route, island, status, false));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_segments_and_tails() {
        let p = matches("/v1/islands/{name}", "/v1/islands/foo").unwrap();
        assert_eq!(p.get("name"), "foo");
        assert!(matches("/v1/islands/{name}", "/v1/islands/foo/").is_some());
        assert!(matches("/v1/islands/{name}", "/v1/islands/").is_none());
        assert!(matches("/v1/islands/{name}", "/v1/islands/foo/wake").is_none());
        let p = matches(
            "/v1/islands/{name}/files/{path...}",
            "/v1/islands/a/files/workspace//x%2Fy",
        )
        .unwrap();
        assert_eq!((p.get("name"), p.get("path")), ("a", "workspace//x%2Fy"));
        assert!(matches("/v1/islands/{name}/files/{path...}", "/v1/islands/a/files/").is_none());
        // An encoded slash in a name decodes into the name, which validation then refuses.
        assert_eq!(
            matches("/v1/islands/{name}", "/v1/islands/a%2Fb")
                .unwrap()
                .get("name"),
            "a/b"
        );
    }

    #[test]
    fn every_route_pattern_is_reachable_and_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.pattern == b.pattern),
                    "duplicate {} {}",
                    a.method,
                    a.pattern
                );
            }
            let sample = a
                .pattern
                .replace("{path...}", "workspace/x")
                .replace("{name}", "n")
                .replace("{id}", "i");
            assert!(matches(a.pattern, &sample).is_some(), "{}", a.pattern);
        }
    }
}
