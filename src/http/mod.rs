//! The HTTP surface: a small HTTP/1.1 server of our own on owned sockets (so a websocket can
//! take the socket whole; docs/ARCHITECTURE.md), one route table, one error→status mapping.

pub mod handlers;
pub mod mux;
pub mod router;
pub mod server;
pub mod web;
pub mod wire;

use std::sync::Arc;

use crate::error::Error;
use crate::events::webhooks::Webhooks;
use crate::events::Bus;
use crate::island::Islands;
use crate::session::terminals::Terminals;

pub use wire::{Request, Response};

/// Everything a handler can reach.
pub struct App {
    pub islands: Arc<Islands>,
    pub terminals: Arc<Terminals>,
    pub events: Arc<Bus>,
    pub webhooks: Arc<Webhooks>,
    /// Set when the daemon shuts down: listeners, streams and pumps wait on it.
    pub shutdown: Arc<crate::latch::Latch>,
    /// Operator tokens.
    pub tokens: Arc<crate::auth::Tokens>,
    /// The audit ledger.
    pub audit: Arc<crate::audit::Ledger>,
    /// Port, capabilities, MCP.
    pub brokers: Arc<crate::broker::Brokers>,
    /// TCP refuses requests without a token (`--require-token`).
    pub require_token: bool,
    /// Host names browsers may reach the daemon by (`--web-host`), besides IP literals,
    /// localhost and *.ts.net.
    pub web_hosts: Vec<String>,
    /// The dashboard's browser logins.
    pub logins: crate::auth::Logins,
    /// Self-update's source and the binaries' folder.
    pub update: crate::update::Config,
}

/// The one place an error becomes a status code.
pub fn status_of(e: &Error) -> u16 {
    match e {
        Error::BadRequest(_) => 400,
        Error::Unauthorized(_) => 401,
        Error::Forbidden(_) => 403,
        Error::NotFound(_) => 404,
        Error::MethodNotAllowed(_) => 405,
        Error::Conflict(_) => 409,
        Error::LengthRequired(_) => 411,
        Error::TooLarge(_) => 413,
        Error::TooManyRequests(_) => 429,
        Error::Unprocessable(_) => 422,
        Error::Internal(_) => 500,
        Error::BadGateway(_) => 502,
        Error::Unavailable(_) => 503,
        Error::Timeout(_) => 504,
        Error::Exhausted(_) => 507,
    }
}

/// `{"error": "..."}` with the status `status_of` gives.
pub fn error_response(e: &Error) -> Response {
    let status = status_of(e);
    match status {
        // Ours, or the engine's: the log says what.
        500 | 503 | 507 => log::warn!("{status}: {e}"),
        // A service or an agent answering the caller (GitHub, an MCP server, a pane that never
        // showed a prompt): the message quotes what it sent, which is the caller's to read,
        // not the log's.
        s if s >= 500 => log::warn!("{status} (details in the response)"),
        _ => {}
    }
    Response::json(
        status,
        &crate::api::ErrorBody {
            error: e.to_string(),
        },
    )
}
