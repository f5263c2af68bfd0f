//! Operator tokens: who may do what from TCP. A secret is 256 random bits, prefixed `djo_` so
//! a leaked one is greppable; it is returned once at creation and kept only as its SHA-256
//! (`$DEJIMA_HOME/tokens.json`, mode 0600). Failed attempts are counted per peer address:
//! past a limit that address is refused (429) for a while, without touching anyone else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::api::Role;
use crate::api::{CreateToken, TokenCreated, TokenInfo};
use crate::error::{Error, Result};
use crate::store::{self, Home};
use crate::util::{self, lock};

/// The prefix of every operator token secret.
pub const SECRET_PREFIX: &str = "djo_";
/// Failed attempts one address may make in `FAIL_WINDOW` before it is refused.
const FAIL_LIMIT: u32 = 10;
const FAIL_WINDOW: Duration = Duration::from_secs(60);
/// Tokens one daemon keeps.
const MAX_TOKENS: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    id: String,
    /// Hex SHA-256 of the secret.
    hash: String,
    role: Role,
    #[serde(default)]
    label: String,
    /// The islands it reaches; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    islands: Vec<String>,
    created_at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    last_used_at: String,
}

impl TokenRecord {
    fn info(&self) -> TokenInfo {
        TokenInfo {
            id: self.id.clone(),
            role: self.role,
            label: self.label.clone(),
            islands: self.islands.clone(),
            created_at: self.created_at.clone(),
            last_used_at: (!self.last_used_at.is_empty()).then(|| self.last_used_at.clone()),
        }
    }
}

/// A caller a token was checked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub id: String,
    pub role: Role,
    /// Its island scope; empty: every island.
    pub islands: Vec<String>,
}

pub struct Tokens {
    path: PathBuf,
    recs: Mutex<Vec<TokenRecord>>,
    /// Serialises writes of the file.
    write: Mutex<()>,
    /// Failed attempts per peer address: (count, window start).
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

fn digest(secret: &str) -> String {
    util::hex(&Sha256::digest(secret.as_bytes()))
}

impl Tokens {
    pub fn load(home: &Home) -> std::io::Result<Tokens> {
        let path = home.root.join("tokens.json");
        let recs = if path.exists() {
            store::read_json(&path)?
        } else {
            Vec::new()
        };
        Ok(Tokens {
            path,
            recs: Mutex::new(recs),
            write: Mutex::new(()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    fn save(&self) -> Result<()> {
        let _w = lock(&self.write);
        let recs = lock(&self.recs).clone();
        store::write_json(&self.path, &recs)
            .map_err(|e| Error::Internal(format!("cannot save tokens: {e}")))
    }

    /// POST /v1/tokens
    pub fn create(&self, req: CreateToken) -> Result<TokenCreated> {
        let role: Role = req.role.parse().map_err(|_| {
            Error::bad(format!(
                "role {:?} must be one of {}",
                req.role,
                Role::words()
            ))
        })?;
        crate::island::names::check_label(&req.label)?;
        let mut islands = req.islands;
        if role == Role::Owner && !islands.is_empty() {
            // An owner reaches tokens, host terminals and the image: nothing a scope bounds.
            return Err(Error::bad(
                "an owner token cannot be scoped to islands; scope an operator or viewer token",
            ));
        }
        if islands.len() > 256 {
            return Err(Error::bad("a token may be scoped to at most 256 islands"));
        }
        for i in &islands {
            crate::island::names::validate(i)?;
        }
        islands.sort();
        islands.dedup();
        let secret = format!("{SECRET_PREFIX}{}", util::random_hex(32));
        let rec = TokenRecord {
            id: format!("tok_{}", util::random_hex(6)),
            hash: digest(&secret),
            role,
            label: req.label,
            islands,
            created_at: util::now_rfc3339(),
            last_used_at: String::new(),
        };
        {
            let mut recs = lock(&self.recs);
            if recs.len() >= MAX_TOKENS {
                return Err(Error::Conflict(format!(
                    "this daemon already holds {MAX_TOKENS} tokens; revoke some first"
                )));
            }
            recs.push(rec.clone());
        }
        if let Err(e) = self.save() {
            lock(&self.recs).retain(|r| r.id != rec.id);
            return Err(e);
        }
        let info = rec.info();
        Ok(TokenCreated {
            id: info.id,
            secret,
            role: info.role,
            label: info.label,
            islands: info.islands,
            created_at: info.created_at,
        })
    }

    /// GET /v1/tokens: metadata only.
    pub fn list(&self) -> Vec<TokenInfo> {
        lock(&self.recs).iter().map(TokenRecord::info).collect()
    }

    /// DELETE /v1/tokens/{id}
    pub fn revoke(&self, id: &str) -> Result<()> {
        let removed = {
            let mut recs = lock(&self.recs);
            let before = recs.len();
            recs.retain(|r| r.id != id);
            recs.len() != before
        };
        if !removed {
            return Err(Error::NotFound(format!("token {id:?} not found")));
        }
        self.save().map_err(|e| {
            Error::Internal(format!(
                "token {id:?} is revoked for this run, but {e}; it would come back after a restart"
            ))
        })
    }

    pub fn exists(&self, id: &str) -> bool {
        lock(&self.recs).iter().any(|r| r.id == id)
    }

    /// The token with this id, as `verify` would give it (a browser login stands for one).
    pub fn by_id(&self, id: &str) -> Option<Verified> {
        let mut recs = lock(&self.recs);
        let r = recs.iter_mut().find(|r| r.id == id)?;
        r.last_used_at = util::now_rfc3339();
        Some(Verified {
            id: r.id.clone(),
            role: r.role,
            islands: r.islands.clone(),
        })
    }

    /// The token whose secret this is. Every stored hash is compared, in constant time, so
    /// timing says nothing about which (or whether one) matched.
    pub fn verify(&self, secret: &str) -> Option<Verified> {
        let h = digest(secret);
        let mut recs = lock(&self.recs);
        let mut found = None;
        for (k, r) in recs.iter().enumerate() {
            if util::ct_eq(r.hash.as_bytes(), h.as_bytes()) {
                found = Some(k);
            }
        }
        let r = &mut recs[found?];
        // In memory; written with the next change (a crash loses at most that much).
        r.last_used_at = util::now_rfc3339();
        Some(Verified {
            id: r.id.clone(),
            role: r.role,
            islands: r.islands.clone(),
        })
    }

    /// Whether `ip` has failed too often lately.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        let map = lock(&self.failures);
        map.get(&ip)
            .is_some_and(|(n, since)| *n >= FAIL_LIMIT && since.elapsed() < FAIL_WINDOW)
    }

    /// Count a failed attempt from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let mut map = lock(&self.failures);
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| since.elapsed() < FAIL_WINDOW);
        }
        let e = map.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= FAIL_WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
        if e.0 == FAIL_LIMIT {
            log::warn!("{ip}: {FAIL_LIMIT} failed token attempts; refusing it for {FAIL_WINDOW:?}");
        }
    }
}

/// How long a browser login lasts without use, and at most.
const LOGIN_IDLE: Duration = Duration::from_secs(12 * 3600);
const LOGIN_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
/// Logins one daemon keeps (the oldest goes first).
const MAX_LOGINS: usize = 1024;

struct Login {
    token: String,
    started: Instant,
    used: Instant,
}

/// Browser logins (the dashboard's cookie). A login stands for one operator token: it has
/// that token's role and scope, and ends when the token is revoked. Only the SHA-256 of the
/// cookie's value is kept, in memory: a restart logs everyone out, and nothing on disk opens
/// a session.
#[derive(Default)]
pub struct Logins {
    map: Mutex<HashMap<String, Login>>,
}

impl Logins {
    /// Start a login for token `token_id`; the cookie's value, shown this once.
    pub fn start(&self, token_id: &str) -> String {
        let value = format!("djs_{}", util::random_hex(32));
        let now = Instant::now();
        let mut map = lock(&self.map);
        map.retain(|_, l| l.used.elapsed() < LOGIN_IDLE && l.started.elapsed() < LOGIN_MAX);
        if map.len() >= MAX_LOGINS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, l)| l.used)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            digest(&value),
            Login {
                token: token_id.to_string(),
                started: now,
                used: now,
            },
        );
        value
    }

    /// The token a cookie's login stands for, while the login and the token both stand.
    pub fn resolve(&self, value: &str, tokens: &Tokens) -> Option<Verified> {
        let key = digest(value);
        let mut map = lock(&self.map);
        let l = map.get_mut(&key)?;
        if l.used.elapsed() >= LOGIN_IDLE || l.started.elapsed() >= LOGIN_MAX {
            map.remove(&key);
            return None;
        }
        match tokens.by_id(&l.token) {
            Some(v) => {
                l.used = Instant::now();
                Some(v)
            }
            None => {
                // Its token was revoked: the login goes with it.
                map.remove(&key);
                None
            }
        }
    }

    /// End a login (logout).
    pub fn end(&self, value: &str) {
        lock(&self.map).remove(&digest(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token store in a fresh home.
    fn store() -> (tempfile::TempDir, Home, Tokens) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        home.ensure().unwrap();
        let t = Tokens::load(&home).unwrap();
        (dir, home, t)
    }

    #[test]
    fn secrets_are_shown_once_and_kept_as_hashes() {
        let (dir, home, t) = store();
        let c = t
            .create(CreateToken {
                role: "operator".into(),
                label: "ci".into(),
                islands: Vec::new(),
            })
            .unwrap();
        assert!(c.secret.starts_with(SECRET_PREFIX) && c.secret.len() == 4 + 64);
        let file = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!file.contains(&c.secret[4..]), "only the hash is stored");
        assert_eq!(t.verify(&c.secret).unwrap().role, Role::Operator);
        assert!(t.verify("djo_nope").is_none());
        // A reload keeps it.
        let t2 = Tokens::load(&home).unwrap();
        assert_eq!(t2.verify(&c.secret).unwrap().id, c.id);
        t2.revoke(&c.id).unwrap();
        assert!(t2.verify(&c.secret).is_none());
        assert!(matches!(t2.revoke(&c.id), Err(Error::NotFound(_))));
        for bad in ["root", ""] {
            assert!(t
                .create(CreateToken {
                    role: bad.into(),
                    ..Default::default()
                })
                .is_err());
        }
    }

    #[test]
    fn a_login_stands_for_its_token_until_either_ends() {
        let (_dir, _, t) = store();
        let c = t
            .create(CreateToken {
                role: "viewer".into(),
                ..Default::default()
            })
            .unwrap();
        let logins = Logins::default();
        let a = logins.start(&c.id);
        let b = logins.start(&c.id);
        assert_ne!(a, b);
        assert_eq!(logins.resolve(&a, &t).unwrap().role, Role::Viewer);
        assert!(logins.resolve("djs_nope", &t).is_none());
        logins.end(&a);
        assert!(logins.resolve(&a, &t).is_none());
        t.revoke(&c.id).unwrap();
        assert!(logins.resolve(&b, &t).is_none());
    }

    #[test]
    fn failures_block_one_address_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::load(&Home::new(dir.path())).unwrap();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        for _ in 0..FAIL_LIMIT {
            assert!(!t.blocked(a));
            t.failed(a);
        }
        assert!(t.blocked(a));
        assert!(!t.blocked(b));
    }
}
