//! Attached clients: who is on which screen (presence), the recent attach/detach ring, and
//! revocation. The PTY pump lives in `pump`, tmux argv in `tmux`, host terminals in
//! `terminals`. Lock rule: `Hub`'s mutexes guard in-memory maps only; nothing blocking runs
//! under them.

pub mod feed;
pub mod pipe;
pub mod pump;
pub mod terminals;
pub mod tmux;
pub mod wsout;

use crate::util::lock;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::api::{ClientRecord, PresenceEntry};
use crate::events::{Bus, EventType};
use crate::util;

/// How many attach/detach records `/v1/clients` keeps.
pub const RING: usize = 200;

/// What a client is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Agent { island: String, agent: String },
    Terminal { id: String },
}

impl Target {
    pub fn island(&self) -> Option<&str> {
        match self {
            Target::Agent { island, .. } => Some(island),
            Target::Terminal { .. } => None,
        }
    }
}

/// Wakes a pump thread out of its poll: a pipe whose read end the pump polls.
pub struct Waker {
    rd: OwnedFd,
    wr: OwnedFd,
    revoked: AtomicBool,
}

impl Waker {
    fn new() -> std::io::Result<Waker> {
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        Ok(Waker {
            rd,
            wr,
            revoked: AtomicBool::new(false),
        })
    }
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
        let _ = nix::unistd::write(self.wr.as_fd(), b"x");
    }
    pub fn revoked(&self) -> bool {
        self.revoked.load(Ordering::SeqCst)
    }
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.rd.as_fd()
    }
}

struct Client {
    target: Target,
    /// The operator token it came with, if any (revoking the token closes it).
    owner: Option<String>,
    label: String,
    joined_at: String,
    /// (rows, cols) of its terminal, once known.
    size: Option<(u16, u16)>,
    read_only: bool,
    waker: Arc<Waker>,
    ring_index: u64,
}

#[derive(Default)]
pub struct Hub {
    /// Where client.attached / client.detached / last-client.detached go.
    events: Option<Arc<Bus>>,
    clients: Mutex<HashMap<u64, Client>>,
    /// Newest at the back; each entry carries its sequence number.
    ring: Mutex<VecDeque<(u64, ClientRecord)>>,
    next: AtomicU64,
    /// The shared attaches clients are members of.
    pub feeds: Arc<feed::Feeds>,
}

/// A registered client; unregisters (and records the detach) on drop.
pub struct Registration {
    hub: Arc<Hub>,
    pub id: u64,
    pub waker: Arc<Waker>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.leave(self.id);
    }
}

impl Hub {
    pub fn new(events: Option<Arc<Bus>>) -> Arc<Hub> {
        Arc::new(Hub {
            events,
            ..Hub::default()
        })
    }

    fn publish(&self, kind: EventType, target: &Target, label: &str) {
        if let (Some(bus), Target::Agent { island, agent }) = (&self.events, target) {
            bus.publish(kind, island, agent, serde_json::json!({ "label": label }));
        }
    }

    pub fn join(
        self: &Arc<Self>,
        target: Target,
        label: &str,
        owner: Option<String>,
        read_only: bool,
    ) -> std::io::Result<Registration> {
        let waker = Arc::new(Waker::new()?);
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let now = util::now_rfc3339();
        let rec = ClientRecord {
            label: label.to_string(),
            island: target.island().unwrap_or("host").to_string(),
            agent: match &target {
                Target::Agent { agent, .. } => agent.clone(),
                _ => String::new(),
            },
            terminal: match &target {
                Target::Terminal { id } => id.clone(),
                _ => String::new(),
            },
            attached_at: now.clone(),
            detached_at: None,
        };
        {
            let mut ring = lock(&self.ring);
            ring.push_back((id, rec));
            while ring.len() > RING {
                ring.pop_front();
            }
        }
        self.publish(EventType::ClientAttached, &target, label);
        lock(&self.clients).insert(
            id,
            Client {
                target,
                owner,
                label: label.to_string(),
                joined_at: now,
                size: None,
                read_only,
                waker: waker.clone(),
                ring_index: id,
            },
        );
        Ok(Registration {
            hub: self.clone(),
            id,
            waker,
        })
    }

    fn leave(&self, id: u64) {
        let (c, island_empty) = {
            let mut map = lock(&self.clients);
            let Some(c) = map.remove(&id) else { return };
            let island = c.target.island().map(str::to_string);
            let empty = island
                .is_some_and(|i| !map.values().any(|o| o.target.island() == Some(i.as_str())));
            (c, empty)
        };
        let now = util::now_rfc3339();
        {
            let mut ring = lock(&self.ring);
            if let Some((_, r)) = ring.iter_mut().find(|(k, _)| *k == c.ring_index) {
                r.detached_at = Some(now);
            }
        }
        self.publish(EventType::ClientDetached, &c.target, &c.label);
        if island_empty {
            self.publish(EventType::LastClientDetached, &c.target, &c.label);
        }
    }

    pub fn set_size(&self, id: u64, rows: u16, cols: u16) {
        if let Some(c) = lock(&self.clients).get_mut(&id) {
            c.size = Some((rows, cols));
        }
    }

    /// The largest known size among clients on `target` (other than `except`).
    pub fn largest(&self, target: &Target, except: u64) -> Option<(u16, u16)> {
        let map = lock(&self.clients);
        map.iter()
            .filter(|(k, c)| **k != except && c.target == *target)
            .filter_map(|(_, c)| c.size)
            .max_by_key(|(r, c)| u32::from(*r) * u32::from(*c))
    }

    /// Every client on an agent, grouped by island, oldest first (one lock for a whole view).
    pub fn presence_by_island(&self) -> HashMap<String, Vec<(Target, PresenceEntry)>> {
        let map = lock(&self.clients);
        let mut all: Vec<(&u64, &Client)> = map.iter().collect();
        all.sort_by_key(|(k, _)| **k);
        let mut out: HashMap<String, Vec<(Target, PresenceEntry)>> = HashMap::new();
        for (_, c) in all {
            if let Some(i) = c.target.island() {
                out.entry(i.to_string()).or_default().push((
                    c.target.clone(),
                    PresenceEntry {
                        label: c.label.clone(),
                        joined_at: c.joined_at.clone(),
                        read_only: c.read_only,
                    },
                ));
            }
        }
        out
    }

    /// Clients on one target, oldest first.
    pub fn attached(&self, target: &Target) -> Vec<PresenceEntry> {
        self.filtered(|t| t == target)
    }

    /// Clients on any agent of an island.
    pub fn attached_island(&self, island: &str) -> Vec<PresenceEntry> {
        self.filtered(|t| t.island() == Some(island))
    }

    fn filtered(&self, f: impl Fn(&Target) -> bool) -> Vec<PresenceEntry> {
        let map = lock(&self.clients);
        let mut v: Vec<(u64, PresenceEntry)> = map
            .iter()
            .filter(|(_, c)| f(&c.target))
            .map(|(k, c)| {
                (
                    *k,
                    PresenceEntry {
                        label: c.label.clone(),
                        joined_at: c.joined_at.clone(),
                        read_only: c.read_only,
                    },
                )
            })
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v.into_iter().map(|(_, p)| p).collect()
    }

    pub fn count(&self) -> usize {
        lock(&self.clients).len()
    }

    /// Recent attach/detach records, newest first.
    pub fn history(&self) -> Vec<ClientRecord> {
        lock(&self.ring)
            .iter()
            .rev()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Close every client that came with token `id`.
    pub fn revoke_owner(&self, id: &str) -> usize {
        let wakers: Vec<Arc<Waker>> = lock(&self.clients)
            .values()
            .filter(|c| c.owner.as_deref() == Some(id))
            .map(|c| c.waker.clone())
            .collect();
        for w in &wakers {
            w.revoke();
        }
        wakers.len()
    }

    /// Close every client matching `f`; returns how many were told to go.
    pub fn revoke_where(&self, f: impl Fn(&Target) -> bool) -> usize {
        let wakers: Vec<Arc<Waker>> = lock(&self.clients)
            .values()
            .filter(|c| f(&c.target))
            .map(|c| c.waker.clone())
            .collect();
        for w in &wakers {
            w.revoke();
        }
        wakers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_ring_and_revoke() {
        let hub = Hub::new(None);
        let t1 = Target::Agent {
            island: "a".into(),
            agent: "a1".into(),
        };
        let t2 = Target::Agent {
            island: "a".into(),
            agent: "a2".into(),
        };
        let r1 = hub.join(t1.clone(), "laptop", None, false).unwrap();
        let r2 = hub.join(t2.clone(), "phone", None, true).unwrap();
        assert_eq!(hub.attached(&t1).len(), 1);
        assert_eq!(hub.attached_island("a").len(), 2);
        hub.set_size(r1.id, 40, 100);
        assert_eq!(hub.largest(&t1, 0), Some((40, 100)));
        assert_eq!(hub.largest(&t1, r1.id), None);
        assert_eq!(hub.revoke_where(|t| t.island() == Some("a")), 2);
        assert!(r2.waker.revoked());
        drop(r1);
        let h = hub.history();
        assert_eq!(h[0].label, "phone");
        assert!(h[0].detached_at.is_none());
        assert!(h[1].detached_at.is_some());
        for _ in 0..(RING + 5) {
            drop(hub.join(t1.clone(), "x", None, false).unwrap());
        }
        assert_eq!(hub.history().len(), RING);
    }
}
