//! The one error type the domain returns. `http::status_of` is the single place it becomes a
//! status code.

use std::fmt;

use crate::runtime::EngineError;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The request is malformed or names something invalid (400).
    BadRequest(String),
    /// A bearer token that is missing, wrong, or sent where tokens may not go (401).
    Unauthorized(String),
    /// Authenticated but not allowed, or a path that escapes its root (403).
    Forbidden(String),
    /// No such island, agent, file or route (404).
    NotFound(String),
    /// The route exists, but not for this method (405).
    MethodNotAllowed(String),
    /// A body whose length must be known up front came without one (411).
    LengthRequired(String),
    /// The object exists in a state that forbids this (409).
    Conflict(String),
    /// A body over its documented cap (413).
    TooLarge(String),
    /// Too many failed attempts from this address lately (429).
    TooManyRequests(String),
    /// Well-formed, but the engine cannot do what was asked (422).
    Unprocessable(String),
    /// The engine is unreachable or timed out (503).
    Unavailable(String),
    /// A service the daemon calls for the caller (GitHub) failed or sent nonsense (502).
    BadGateway(String),
    /// A service the daemon calls for the caller (an MCP server) did not answer in time (504).
    Timeout(String),
    /// A host resource the daemon hands out is used up, e.g. island subnets (507); the
    /// message says what to change.
    Exhausted(String),
    /// Our fault (500).
    Internal(String),
}

impl Error {
    pub fn message(&self) -> &str {
        match self {
            Error::BadRequest(m)
            | Error::Unauthorized(m)
            | Error::Forbidden(m)
            | Error::NotFound(m)
            | Error::MethodNotAllowed(m)
            | Error::LengthRequired(m)
            | Error::Conflict(m)
            | Error::TooLarge(m)
            | Error::TooManyRequests(m)
            | Error::Unprocessable(m)
            | Error::Unavailable(m)
            | Error::BadGateway(m)
            | Error::Timeout(m)
            | Error::Exhausted(m)
            | Error::Internal(m) => m,
        }
    }
    pub fn bad(m: impl Into<String>) -> Error {
        Error::BadRequest(m.into())
    }
    pub fn island_not_found(name: &str) -> Error {
        Error::NotFound(format!("island {name:?} not found"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Error {
        match e {
            EngineError::Unavailable(_) => Error::Unavailable(e.to_string()),
            EngineError::NotFound(m) => Error::NotFound(m),
            // The container stopped under the caller (a hibernate, a crash): the island's
            // state, not our fault.
            EngineError::Failed { .. } if e.text().contains("is not running") => Error::Conflict(
                format!("the island's container is not running: {}", e.text()),
            ),
            // Paused while it is being cloned: the copy ends soon.
            EngineError::Failed { .. } if e.text().contains("is paused") => {
                Error::Conflict(format!(
                    "the island is paused (a clone is copying it); try again: {}",
                    e.text()
                ))
            }
            EngineError::Failed { .. } => {
                log::warn!("engine refused: {} ({})", e.text(), e.command());
                Error::Internal(format!("engine: {}", e.text()))
            }
            EngineError::SubnetTaken(_) => Error::Internal(e.to_string()),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Internal(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
