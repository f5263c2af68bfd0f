//! The brokers: how a contained agent acts on the host without an operator credential.
//! Port (host files), capabilities (named host programs) and MCP servers. Each is deny-all
//! per island (grants live in the island's record), and every crossing is written to the
//! ledger, fsynced, *before* its bytes cross; a ledger that cannot be written stops the
//! crossing (fail closed). Refusals are ledgered too.

pub mod capability;
pub mod hostfs;
pub mod mcp;
pub mod port;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::audit::{Ledger, Record};
use crate::error::{Error, Result};
use crate::island::Islands;

/// Who is asking, as a broker needs to know it.
#[derive(Debug, Clone)]
pub struct Asker {
    /// How the ledger names the caller (`island:web`, `token:ab12`, `socket`).
    pub actor: String,
    /// Set when the caller is an island's own token: it acts for that island only.
    pub island: Option<String>,
}

impl Asker {
    /// The island a call acts on: an island token's own (a different one named in the body
    /// is refused), or the one an operator names.
    pub fn island_for(&self, named: Option<&str>) -> Result<String> {
        match (&self.island, named) {
            (Some(own), Some(n)) if !n.is_empty() && n != own => Err(Error::Forbidden(
                "an island token acts for its own island only".into(),
            )),
            (Some(own), _) => Ok(own.clone()),
            (None, Some(n)) if !n.is_empty() => Ok(n.to_string()),
            // Well formed, but an operator acts for no island of its own.
            (None, _) => Err(Error::Unprocessable(
                "island is required: an operator names the island to act for".into(),
            )),
        }
    }
}

pub struct Brokers {
    pub islands: Arc<Islands>,
    pub audit: Arc<Ledger>,
    /// `$DEJIMA_HOME`.
    pub home: PathBuf,
    pub mcp: Arc<mcp::Pool>,
    cap_adapter: capability::LinuxDir,
    /// Port crossings being spooled now (see `port::permit`).
    port_crossings: std::sync::Mutex<usize>,
}

impl Brokers {
    pub fn new(islands: Arc<Islands>, audit: Arc<Ledger>) -> Brokers {
        // Canonical, so Port can tell the daemon's own state apart however it is reached.
        let home =
            std::fs::canonicalize(&islands.home.root).unwrap_or_else(|_| islands.home.root.clone());
        Brokers {
            mcp: Arc::new(mcp::Pool::new(home.join("mcp"))),
            cap_adapter: capability::LinuxDir {
                dir: home.join("capabilities"),
            },
            islands,
            audit,
            home,
            port_crossings: std::sync::Mutex::new(0),
        }
    }

    /// An island was purged: its MCP processes end and their working folders go. (Its
    /// exports stay: they are the operator's now.)
    pub fn forget_island(&self, island: &str) {
        self.mcp.close_island(island);
        let work = self.home.join("mcp").join("work").join(island);
        if let Err(e) = std::fs::remove_dir_all(&work) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("cannot remove {}: {e}", work.display());
            }
        }
    }

    /// PUT /v1/islands/{name}/spawn: granted, then ledgered (synced); a ledger that cannot
    /// be written takes the grant back. `max_children: 0` withdraws it.
    pub fn grant_spawn(
        &self,
        asker: &Asker,
        island: &str,
        g: &crate::api::SpawnGrant,
    ) -> Result<crate::api::SpawnInfo> {
        let before = self.islands.record(island)?.spawn;
        let info = self.islands.grant_spawn(island, g)?;
        if !info.granted {
            // Withdrawn at once (less access needs no ledger to go ahead), then ledgered.
            let _ = self.grant_record("spawn.revoke", island, asker, serde_json::json!({}));
            return Ok(info);
        }
        let detail = serde_json::json!({"max_children": info.max_children, "cpus": info.cpus,
                                        "memory": info.memory});
        if let Err(e) = self.grant_record("spawn.grant", island, asker, detail) {
            let _ = self.islands.update(island, |r| r.spawn = before);
            return Err(e);
        }
        Ok(info)
    }

    /// Where spooled crossings wait (on the same disk as the daemon's state).
    fn spool_dir(&self) -> PathBuf {
        self.home.join("tmp")
    }

    /// Ledger a crossing and fsync it; its sequence number, or 503 and nothing crosses.
    fn crossing(&self, kind: &str, island: &str, asker: &Asker, detail: Value) -> Result<u64> {
        self.audit
            .append_sync(Record {
                kind: kind.into(),
                island: Some(island.to_string()),
                actor: asker.actor.clone(),
                allowed: true,
                detail: Some(detail),
                ..Default::default()
            })
            .map(|e| e.body.seq)
            .map_err(|e| {
                log::error!("{kind} for {island}: the ledger cannot be written: {e}");
                Error::Unavailable(format!(
                    "the audit ledger cannot be written ({e}); nothing crossed"
                ))
            })
    }

    /// Ledger a grant or revoke (fsynced; an error refuses the change).
    fn grant_record(&self, kind: &str, island: &str, asker: &Asker, detail: Value) -> Result<()> {
        self.crossing(kind, island, asker, detail).map(|_| ())
    }

    /// Ledger a refusal, with why, and hand the error back.
    fn deny(
        &self,
        kind: &str,
        island: &str,
        asker: &Asker,
        err: Error,
        mut detail: Value,
    ) -> Error {
        if let Value::Object(m) = &mut detail {
            m.insert("reason".into(), Value::String(port::clip(&err.to_string())));
        }
        self.audit.append_denial(Record {
            kind: kind.into(),
            island: Some(island.to_string()),
            actor: asker.actor.clone(),
            allowed: false,
            detail: Some(detail),
            ..Default::default()
        });
        err
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    crate::util::hex(&sha2::Sha256::digest(bytes))
}
