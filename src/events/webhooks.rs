//! Durable webhooks. Each matching event becomes a delivery written to
//! `$DEJIMA_HOME/webhooks/pending/` (by the outbox thread, so publishing never waits on a
//! disk; a graceful shutdown waits for it) before anything is sent; each subscription has its own
//! named thread that delivers its queue in order, retrying with backoff until a 2xx or the
//! give-up age. A daemon restart picks the pending files up again, so delivery is
//! at-least-once: receivers dedupe on the event's `id` (also sent as `X-Dejima-Delivery`).
//! At most `MAX_IN_FLIGHT` requests run at once across subscriptions; a slow receiver holds
//! only its own thread.

use crate::util::lock;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{Event, EventType};
use crate::error::{Error, Result};
use crate::store::{self, Home};
use crate::util;

/// Requests in flight across all subscriptions.
const MAX_IN_FLIGHT: usize = 8;
/// One delivery attempt's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    pub url: String,
    #[serde(default)]
    pub secret: String,
    #[serde(default)]
    pub events: Vec<String>,
    /// Only these islands (empty: all).
    #[serde(default)]
    pub islands: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SubRecord {
    id: String,
    url: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    events: Vec<EventType>,
    #[serde(default)]
    islands: Vec<String>,
    created_at: String,
}

/// What `GET /v1/events/subscriptions` shows (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct SubscriptionInfo {
    pub id: String,
    pub url: String,
    pub events: Vec<EventType>,
    pub islands: Vec<String>,
    pub created_at: String,
    pub has_secret: bool,
    /// Deliveries waiting (including one being retried).
    pub pending: u64,
    /// Attempts made on the oldest pending delivery.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_attempt_at: String,
    pub delivered: u64,
    /// Deliveries given up on after the give-up age.
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Delivery {
    id: String,
    sub: String,
    event_type: EventType,
    body: String,
    /// Unix milliseconds.
    created_ms: u64,
    next_ms: u64,
    attempts: u32,
    #[serde(default)]
    last_error: String,
}

#[derive(Default)]
struct Counters {
    delivered: u64,
    failed: u64,
}

struct State {
    subs: Vec<SubRecord>,
    /// Pending deliveries per subscription, oldest first.
    queues: HashMap<String, Vec<Delivery>>,
    counters: HashMap<String, Counters>,
    /// Stop flags of the subscription threads.
    stops: HashMap<String, Arc<AtomicBool>>,
}

/// An event and the subscriptions it matched when it was published.
type Handover = (Event, Vec<String>);

pub struct Webhooks {
    dir: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
    in_flight: Mutex<usize>,
    slot_free: Condvar,
    agent: ureq::Agent,
    /// Give up on a delivery this long after the event.
    give_up: Duration,
    /// Longest wait between attempts.
    max_backoff: Duration,
    /// Serialises writes of the subscription list.
    write: Mutex<()>,
    /// Events (with the subscriptions they matched when published) on their way to the
    /// outbox thread, which persists their deliveries: the bus hands an event over and
    /// returns, never waiting on a disk. None once closed for shutdown.
    outbox: Mutex<Option<std::sync::mpsc::Sender<Handover>>>,
    /// Set by the outbox thread when it has written everything handed to it and ended.
    outbox_done: (Mutex<bool>, Condvar),
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", util::hex(&mac.finalize().into_bytes()))
}

/// When to retry and when to give up (`dejimad --help`).
#[derive(Debug, Clone)]
pub struct Policy {
    /// Give up on a delivery this long after the event.
    pub give_up: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            give_up: Duration::from_secs(24 * 3600),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl Webhooks {
    /// Load subscriptions and pending deliveries and start one thread per subscription.
    pub fn start(home: &Home, policy: Policy) -> std::io::Result<Arc<Webhooks>> {
        let dir = home.root.join("webhooks");
        std::fs::create_dir_all(dir.join("pending"))?;
        let subs: Vec<SubRecord> =
            store::read_json(&dir.join("subscriptions.json")).unwrap_or_default();
        let mut queues: HashMap<String, Vec<Delivery>> = HashMap::new();
        for e in std::fs::read_dir(dir.join("pending"))?.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                // A temp file from a write cut short: the rename never happened.
                let _ = std::fs::remove_file(&p);
                continue;
            }
            match store::read_json::<Delivery>(&p) {
                Ok(d) if subs.iter().any(|s| s.id == d.sub) => {
                    queues.entry(d.sub.clone()).or_default().push(d)
                }
                Ok(_) => {
                    let _ = std::fs::remove_file(&p);
                }
                Err(e) => log::error!("unreadable webhook delivery left in place: {e}"),
            }
        }
        let mut pending = 0;
        for q in queues.values_mut() {
            q.sort_by_key(|d| (d.created_ms, d.id.clone()));
            pending += q.len();
        }
        if pending > 0 {
            log::info!("{pending} webhook deliveries pending from before the restart");
        }
        let (outbox, rx) = std::sync::mpsc::channel::<Handover>();
        let w = Arc::new(Webhooks {
            dir,
            state: Mutex::new(State {
                subs: subs.clone(),
                queues,
                counters: HashMap::new(),
                stops: HashMap::new(),
            }),
            wake: Condvar::new(),
            in_flight: Mutex::new(0),
            slot_free: Condvar::new(),
            agent: ureq::AgentBuilder::new()
                .timeout(REQUEST_TIMEOUT)
                .redirects(0)
                .user_agent(concat!("dejimad/", env!("CARGO_PKG_VERSION")))
                .build(),
            give_up: policy.give_up,
            max_backoff: policy.max_backoff,
            write: Mutex::new(()),
            outbox: Mutex::new(Some(outbox)),
            outbox_done: (Mutex::new(false), Condvar::new()),
        });
        {
            let w = w.clone();
            thread::Builder::new()
                .name("webhook-outbox".into())
                .spawn(move || {
                    for (e, subs) in rx {
                        w.persist(&e, subs);
                    }
                    *lock(&w.outbox_done.0) = true;
                    w.outbox_done.1.notify_all();
                })?;
        }
        for s in subs {
            w.spawn_worker(&s.id)?;
        }
        Ok(w)
    }

    fn spawn_worker(self: &Arc<Self>, id: &str) -> std::io::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        lock(&self.state).stops.insert(id.to_string(), stop.clone());
        let (w, id2) = (self.clone(), id.to_string());
        thread::Builder::new()
            .name(format!("webhook-{id}"))
            .spawn(move || w.worker(&id2, &stop))?;
        Ok(())
    }

    fn save_subs(&self) -> Result<()> {
        let _w = lock(&self.write);
        let subs = lock(&self.state).subs.clone();
        store::write_json(&self.dir.join("subscriptions.json"), &subs)
            .map_err(|e| Error::Internal(format!("cannot save webhooks: {e}")))
    }

    pub fn subscribe(self: &Arc<Self>, req: Subscribe) -> Result<SubscriptionInfo> {
        let url = req.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.len() > 2048
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::bad("url must be an http:// or https:// URL"));
        }
        // A host part is what makes it a URL at all (400 without one); one that does not
        // parse after that is well-formed but unusable (422).
        let host_part = url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
            .map(|h| h.rsplit_once(':').map_or(h, |(h, _)| h))
            .unwrap_or("");
        if host_part.is_empty() || host_part.contains('@') {
            return Err(Error::bad(format!("url {url:?} has no host")));
        }
        match url::Url::parse(url) {
            Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {}
            // Shaped like a URL but not one (a bad port, a host no resolver takes).
            _ => {
                return Err(Error::Unprocessable(format!(
                    "url {url:?} is not a usable URL"
                )))
            }
        }
        crate::egress::check(url)?;
        let mut events = Vec::new();
        for t in &req.events {
            events.push(t.parse::<EventType>().map_err(|_| {
                Error::bad(format!(
                    "unknown event type {t:?} (known: {})",
                    EventType::words()
                ))
            })?);
        }
        for i in &req.islands {
            crate::island::names::validate(i)?;
        }
        if req.secret.len() > 1024 {
            return Err(Error::bad("secret is over 1024 bytes"));
        }
        let rec = SubRecord {
            id: format!("wh_{}", util::random_hex(6)),
            url: url.to_string(),
            secret: req.secret,
            events,
            islands: req.islands,
            created_at: util::now_rfc3339(),
        };
        lock(&self.state).subs.push(rec.clone());
        if let Err(e) = self.save_subs() {
            lock(&self.state).subs.retain(|s| s.id != rec.id);
            return Err(e);
        }
        self.spawn_worker(&rec.id)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(self.info(&rec.id).expect("just added"))
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        let queue = {
            let mut st = lock(&self.state);
            if !st.subs.iter().any(|s| s.id == id) {
                return Err(Error::NotFound(format!("subscription {id:?} not found")));
            }
            st.subs.retain(|s| s.id != id);
            if let Some(stop) = st.stops.remove(id) {
                stop.store(true, Ordering::SeqCst);
            }
            st.counters.remove(id);
            st.queues.remove(id).unwrap_or_default()
        };
        self.wake.notify_all();
        self.save_subs()?;
        for d in queue {
            let _ = std::fs::remove_file(self.pending_path(&d.id));
        }
        Ok(())
    }

    pub fn count(&self) -> usize {
        lock(&self.state).subs.len()
    }

    fn info(&self, id: &str) -> Option<SubscriptionInfo> {
        let st = lock(&self.state);
        let s = st.subs.iter().find(|s| s.id == id)?;
        let q = st.queues.get(id);
        let head = q.and_then(|q| q.first());
        let c = st.counters.get(id);
        Some(SubscriptionInfo {
            id: s.id.clone(),
            url: s.url.clone(),
            events: s.events.clone(),
            islands: s.islands.clone(),
            created_at: s.created_at.clone(),
            has_secret: !s.secret.is_empty(),
            pending: q.map(|q| q.len() as u64).unwrap_or(0),
            attempts: head.map(|d| d.attempts).unwrap_or(0),
            last_error: head.map(|d| d.last_error.clone()).unwrap_or_default(),
            next_attempt_at: head
                .filter(|d| d.attempts > 0)
                .map(|d| util::rfc3339(d.next_ms / 1000))
                .unwrap_or_default(),
            delivered: c.map(|c| c.delivered).unwrap_or(0),
            failed: c.map(|c| c.failed).unwrap_or(0),
        })
    }

    pub fn list(&self) -> Vec<SubscriptionInfo> {
        let ids: Vec<String> = lock(&self.state)
            .subs
            .iter()
            .map(|s| s.id.clone())
            .collect();
        ids.iter().filter_map(|id| self.info(id)).collect()
    }

    fn pending_path(&self, id: &str) -> PathBuf {
        self.dir.join("pending").join(format!("{id}.json"))
    }

    /// Called for every event (from the bus): match it against the subscriptions (in
    /// memory) and hand it to the outbox thread. Never waits on a disk or a receiver.
    pub fn enqueue(&self, e: &Event) {
        let matching: Vec<String> = {
            let st = lock(&self.state);
            st.subs
                .iter()
                .filter(|s| {
                    (s.events.is_empty() || s.events.contains(&e.kind))
                        && (s.islands.is_empty() || s.islands.contains(&e.island))
                })
                .map(|s| s.id.clone())
                .collect()
        };
        if matching.is_empty() {
            return;
        }
        if let Some(tx) = lock(&self.outbox).as_ref() {
            let _ = tx.send((e.clone(), matching));
        }
    }

    /// Shutdown: stop taking events and wait (up to `limit`) until the outbox has written
    /// every delivery handed to it. True when it has.
    pub fn close(&self, limit: Duration) -> bool {
        drop(lock(&self.outbox).take());
        let done = lock(&self.outbox_done.0);
        let (done, _) = self
            .outbox_done
            .1
            .wait_timeout_while(done, limit, |d| !*d)
            .unwrap_or_else(PoisonError::into_inner);
        *done
    }

    /// On the outbox thread: persist a delivery per matching subscription, then queue it.
    fn persist(&self, e: &Event, matching: Vec<String>) {
        let body = serde_json::to_string(e).unwrap_or_default();
        let now = now_ms();
        for sub in matching {
            if !lock(&self.state).subs.iter().any(|s| s.id == sub) {
                continue; // unsubscribed since
            }
            let d = Delivery {
                id: format!("dl_{}", util::random_hex(8)),
                sub: sub.clone(),
                event_type: e.kind,
                body: body.clone(),
                created_ms: now,
                next_ms: now,
                attempts: 0,
                last_error: String::new(),
            };
            // Durable first: a crash after this line still delivers.
            if let Err(err) = store::write_json(&self.pending_path(&d.id), &d) {
                log::error!("cannot persist a webhook delivery for {sub}: {err}");
            }
            let mut st = lock(&self.state);
            if st.subs.iter().any(|s| s.id == sub) {
                st.queues.entry(sub).or_default().push(d);
            }
        }
        self.wake.notify_all();
    }

    fn worker(&self, sub: &str, stop: &AtomicBool) {
        loop {
            // The head of this subscription's queue, once it is due.
            let (d, url, secret) = {
                let mut st = lock(&self.state);
                loop {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let now = now_ms();
                    let head = st.queues.get(sub).and_then(|q| q.first()).cloned();
                    match head {
                        Some(d) if d.next_ms <= now => {
                            let s = st.subs.iter().find(|s| s.id == sub).cloned();
                            match s {
                                Some(s) => break (d, s.url, s.secret),
                                None => return,
                            }
                        }
                        Some(d) => {
                            let wait = Duration::from_millis(d.next_ms - now);
                            st = self
                                .wake
                                .wait_timeout(st, wait)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0;
                        }
                        None => {
                            st = self
                                .wake
                                .wait_timeout(st, Duration::from_secs(5))
                                .unwrap_or_else(PoisonError::into_inner)
                                .0;
                        }
                    }
                }
            };
            self.acquire();
            let result = self.post(&url, &secret, &d);
            self.release();
            self.settle(sub, d, result);
        }
    }

    fn acquire(&self) {
        let mut n = lock(&self.in_flight);
        while *n >= MAX_IN_FLIGHT {
            n = self
                .slot_free
                .wait(n)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *n += 1;
    }

    fn release(&self) {
        *lock(&self.in_flight) -= 1;
        self.slot_free.notify_one();
    }

    fn post(&self, url: &str, secret: &str, d: &Delivery) -> std::result::Result<(), String> {
        crate::egress::check(url).map_err(|e| e.to_string())?;
        let mut req = self
            .agent
            .post(url)
            .set("Content-Type", "application/json")
            .set("X-Dejima-Event", d.event_type.as_str())
            .set("X-Dejima-Delivery", &d.id);
        if !secret.is_empty() {
            req = req.set("X-Dejima-Signature", &sign(secret, d.body.as_bytes()));
        }
        match req.send_string(&d.body) {
            Ok(r) if (200..300).contains(&r.status()) => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(ureq::Error::Status(code, _)) => Err(format!("HTTP {code}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Record an attempt's outcome: delivered (file removed), retry later, or given up.
    fn settle(&self, sub: &str, mut d: Delivery, result: std::result::Result<(), String>) {
        let now = now_ms();
        let done = match &result {
            Ok(()) => true,
            Err(_) => now.saturating_sub(d.created_ms) >= self.give_up.as_millis() as u64,
        };
        if done {
            if let Err(e) = &result {
                log::warn!(
                    "webhook {sub}: giving up on {} ({}) after {} attempts: {e}",
                    d.id,
                    d.event_type,
                    d.attempts + 1
                );
            }
            let _ = std::fs::remove_file(self.pending_path(&d.id));
            let mut st = lock(&self.state);
            if let Some(q) = st.queues.get_mut(sub) {
                q.retain(|x| x.id != d.id);
            }
            let c = st.counters.entry(sub.to_string()).or_default();
            if result.is_ok() {
                c.delivered += 1;
            } else {
                c.failed += 1;
            }
            return;
        }
        d.attempts += 1;
        crate::metrics::webhook_retry();
        d.last_error = result.err().unwrap_or_default();
        let backoff = Duration::from_secs(1u64 << d.attempts.min(16)).min(self.max_backoff);
        d.next_ms = now + backoff.as_millis() as u64;
        log::debug!(
            "webhook {sub}: {} attempt {} failed ({}); next in {backoff:?}",
            d.id,
            d.attempts,
            d.last_error
        );
        if let Err(e) = store::write_json(&self.pending_path(&d.id), &d) {
            log::warn!("cannot update webhook delivery {}: {e}", d.id);
        }
        let mut st = lock(&self.state);
        if let Some(q) = st.queues.get_mut(sub) {
            if let Some(x) = q.iter_mut().find(|x| x.id == d.id) {
                *x = d;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_reference() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog")
        assert_eq!(
            sign("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn subscriptions_need_a_real_http_url() {
        let dir = tempfile::tempdir().unwrap();
        let w = Webhooks::start(&Home::new(dir.path()), Policy::default()).unwrap();
        for bad in [
            "ftp://h/x",
            "http://",
            "https://exa mple.com/",
            "h://x",
            "http://:80/",
        ] {
            let r = w.subscribe(Subscribe {
                url: bad.into(),
                ..Subscribe::default()
            });
            assert!(matches!(r, Err(Error::BadRequest(_))), "{bad}");
        }
        let ok = w
            .subscribe(Subscribe {
                url: "http://127.0.0.1:9/x".into(),
                events: vec!["island.created".into()],
                ..Subscribe::default()
            })
            .unwrap();
        assert_eq!(ok.events, vec![EventType::IslandCreated]);
        assert_eq!(w.count(), 1);
    }
}
