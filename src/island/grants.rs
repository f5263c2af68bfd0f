//! An island's grants: Port scopes, capability targets, MCP servers and the spawn quota.
//! They live in the island's record (one owner, saved atomically with it); a clone or a
//! child starts with none.

use crate::api::{
    CapabilityGrant, GrantScope, McpGrant, PortMode, PortScope, Resources, SpawnGrant, SpawnInfo,
};
use crate::error::{Error, Result};
use crate::util::{self, lock};

use super::Islands;

/// Names of scopes, capability targets and MCP servers: one path segment, never a path.
pub fn check_grant_name(what: &str, n: &str) -> Result<()> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::bad(format!(
            "{what} {n:?} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// At most this many grants of each kind per island.
const MAX_GRANTS: usize = 256;

impl Islands {
    /// Grant a host folder; `host_path` is already canonical and checked by the broker.
    pub fn grant_scope(
        &self,
        island: &str,
        req: &GrantScope,
        canonical: &str,
    ) -> Result<PortScope> {
        if let Some(n) = &req.name {
            check_grant_name("scope name", n)?;
        }
        let base = std::path::Path::new(canonical)
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into());
        // The basename made a valid name: odd characters become '-'.
        let base: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .take(56)
            .collect();
        let base = if base.is_empty() || !base.as_bytes()[0].is_ascii_alphanumeric() {
            format!("s{base}")
        } else {
            base
        };
        let mut out = None;
        let mut err = None;
        self.update(island, |r| {
            if r.port_scopes.len() >= MAX_GRANTS {
                err = Some(Error::Conflict(format!(
                    "island {island:?} has {MAX_GRANTS} scopes already"
                )));
                return;
            }
            let taken = |n: &str| r.port_scopes.iter().any(|s| s.name == n);
            let name = match &req.name {
                Some(n) if taken(n) => {
                    err = Some(Error::Conflict(format!("scope {n:?} is already granted")));
                    return;
                }
                Some(n) => n.clone(),
                None => {
                    let mut k = 1;
                    let mut n = base.clone();
                    while taken(&n) {
                        k += 1;
                        n = format!("{base}-{k}");
                    }
                    n
                }
            };
            let s = PortScope {
                name,
                host_path: canonical.to_string(),
                mode: req.mode.unwrap_or(PortMode::Ro),
                granted_at: util::now_rfc3339(),
            };
            r.port_scopes.push(s.clone());
            out = Some(s);
        })?;
        match (out, err) {
            (Some(s), _) => Ok(s),
            (None, Some(e)) => Err(e),
            (None, None) => Err(Error::Internal("scope grant lost".into())),
        }
    }

    pub fn revoke_scope(&self, island: &str, scope: &str) -> Result<PortScope> {
        let mut gone = None;
        self.update(island, |r| {
            if let Some(i) = r.port_scopes.iter().position(|s| s.name == scope) {
                gone = Some(r.port_scopes.remove(i));
            }
        })?;
        gone.ok_or_else(|| Error::NotFound(format!("island {island:?} has no scope {scope:?}")))
    }

    pub fn scopes(&self, island: &str) -> Result<Vec<PortScope>> {
        Ok(self.record(island)?.port_scopes)
    }

    pub fn scope(&self, island: &str, scope: &str) -> Result<PortScope> {
        self.scopes(island)?
            .into_iter()
            .find(|s| s.name == scope)
            .ok_or_else(|| {
                Error::Forbidden(format!("island {island:?} has no Port scope {scope:?}"))
            })
    }

    pub fn grant_capability(&self, island: &str, target: &str) -> Result<CapabilityGrant> {
        check_grant_name("capability target", target)?;
        self.add_named(
            island,
            |r| &mut r.capability_grants,
            |g| &g.target,
            || CapabilityGrant {
                target: target.to_string(),
                granted_at: util::now_rfc3339(),
            },
        )
    }

    pub fn revoke_capability(&self, island: &str, target: &str) -> Result<()> {
        self.remove_named(island, |r| &mut r.capability_grants, |g| &g.target, target)
    }

    pub fn grant_mcp(&self, island: &str, server: &str) -> Result<McpGrant> {
        check_grant_name("MCP server", server)?;
        self.add_named(
            island,
            |r| &mut r.mcp_grants,
            |g| &g.server,
            || McpGrant {
                server: server.to_string(),
                granted_at: util::now_rfc3339(),
            },
        )
    }

    pub fn revoke_mcp(&self, island: &str, server: &str) -> Result<()> {
        self.remove_named(island, |r| &mut r.mcp_grants, |g| &g.server, server)
    }

    /// Add a named grant to one of the record's lists; granting it again is the same grant.
    fn add_named<T: Clone>(
        &self,
        island: &str,
        list: fn(&mut super::Record) -> &mut Vec<T>,
        key: fn(&T) -> &String,
        make: impl FnOnce() -> T,
    ) -> Result<T> {
        let mut out = None;
        self.update(island, |r| {
            let l = list(r);
            let made = make();
            if let Some(g) = l.iter().find(|g| key(g) == key(&made)) {
                out = Some(g.clone());
            } else if l.len() < MAX_GRANTS {
                l.push(made.clone());
                out = Some(made);
            }
        })?;
        out.ok_or_else(|| {
            Error::Conflict(format!("island {island:?} has {MAX_GRANTS} grants already"))
        })
    }

    fn remove_named<T>(
        &self,
        island: &str,
        list: fn(&mut super::Record) -> &mut Vec<T>,
        key: fn(&T) -> &String,
        name: &str,
    ) -> Result<()> {
        let mut found = false;
        self.update(island, |r| {
            let l = list(r);
            let before = l.len();
            l.retain(|g| key(g) != name);
            found = l.len() != before;
        })?;
        found
            .then_some(())
            .ok_or_else(|| Error::NotFound(format!("island {island:?} has no grant of {name:?}")))
    }

    /// PUT /v1/islands/{name}/spawn
    pub fn grant_spawn(&self, island: &str, g: &SpawnGrant) -> Result<SpawnInfo> {
        let max = g
            .max_children
            .ok_or_else(|| Error::bad("max_children is required"))?;
        if max > 64 {
            return Err(Error::bad(
                "max_children must be 0-64 (0 withdraws the grant)",
            ));
        }
        // Checked before a withdrawal too: a bad request changes nothing.
        super::lifecycle::check_resources(&Resources {
            cpus: g.cpus.clone(),
            memory: g.memory.clone(),
            ..Default::default()
        })?;
        if max == 0 {
            self.update(island, |r| r.spawn = None)?;
            return self.spawn_info(island);
        }
        let info = SpawnInfo {
            granted: true,
            max_children: max,
            cpus: g.cpus.clone(),
            memory: g.memory.clone(),
            granted_at: Some(util::now_rfc3339()),
            children: Vec::new(),
        };
        let rec = self.update(island, |r| r.spawn = Some(info.clone()))?;
        Ok(SpawnInfo {
            children: self.children_of(&rec.name),
            ..info
        })
    }

    pub fn spawn_info(&self, island: &str) -> Result<SpawnInfo> {
        let info = self.record(island)?.spawn.unwrap_or_default();
        Ok(SpawnInfo {
            children: self.children_of(island),
            ..info
        })
    }

    /// The islands `parent`'s token created (including ones still being created).
    pub fn children_of(&self, parent: &str) -> Vec<String> {
        lock(&self.slots)
            .values()
            .filter(|s| s.rec.parent == parent)
            .map(|s| s.rec.name.clone())
            .collect()
    }

    /// Whether `child` was created by `parent`'s token.
    pub fn is_child_of(&self, child: &str, parent: &str) -> bool {
        lock(&self.slots)
            .get(child)
            .is_some_and(|s| !parent.is_empty() && s.rec.parent == parent)
    }

    /// A child's resources: what it asked for, never above the grant's ceilings.
    pub fn clamp_child(&self, parent: &str, asked: Option<Resources>) -> Result<Resources> {
        let grant = self.record(parent)?.spawn.ok_or_else(|| {
            Error::Forbidden(format!(
                "island {parent:?} may not create islands (no spawn grant; an operator gives one with PUT /v1/islands/{parent}/spawn)"
            ))
        })?;
        let mut r = asked.unwrap_or_default();
        // A child is never harder to kill than a default island, and takes the default disk.
        r.oom_priority = r.oom_priority.map(|p| p.max(0));
        r.disk.clear();
        if !grant.cpus.is_empty() {
            let cap: f64 = grant.cpus.parse().unwrap_or(f64::MAX);
            let want: f64 = r.cpus.parse().unwrap_or(f64::MAX);
            if r.cpus.is_empty() || want > cap {
                r.cpus = grant.cpus.clone();
            }
        }
        if !grant.memory.is_empty() {
            let cap = util::parse_size(&grant.memory).unwrap_or(u64::MAX);
            let want = util::parse_size(&r.memory).unwrap_or(u64::MAX);
            if r.memory.is_empty() || want > cap {
                r.memory = grant.memory.clone();
            }
        }
        Ok(r)
    }
}
