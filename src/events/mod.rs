//! Typed events: a bus that keeps each island's last events, feeds live streams, and hands
//! every event to the webhook deliverer. Publishing never blocks: live subscribers get a
//! bounded queue each (`try_send`); one that falls behind is cut off, never waited for.

pub mod webhooks;

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::api::EventType;
use crate::util::{self, lock};

/// Events kept per island for `GET /v1/islands/{name}/events`.
pub const PER_ISLAND: usize = 50;
/// Events kept across islands for a stream's replay.
pub const RECENT: usize = 500;
/// A live subscriber's queue; past it the subscriber is cut off.
pub const STREAM_QUEUE: usize = 1024;

/// The envelope: the reference's fields plus an `id` to dedupe redeliveries by.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Event {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: EventType,
    #[serde(default)]
    pub island: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent: String,
    #[serde(default)]
    pub timestamp: String,
    #[serde(default)]
    pub payload: Value,
}

/// Which events a consumer wants; empty lists mean all.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub islands: Vec<String>,
    pub types: Vec<EventType>,
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        (self.islands.is_empty() || self.islands.iter().any(|i| *i == e.island))
            && (self.types.is_empty() || self.types.contains(&e.kind))
    }
}

type Sink = Box<dyn Fn(&Event) + Send + Sync>;

struct Sub {
    filter: Filter,
    /// The operator token the stream came with (revoking it closes the stream).
    owner: Option<String>,
    tx: SyncSender<Arc<Event>>,
}

#[derive(Default)]
pub struct Bus {
    per_island: Mutex<HashMap<String, VecDeque<Event>>>,
    recent: Mutex<VecDeque<Event>>,
    subs: Mutex<Vec<Sub>>,
    sinks: Mutex<Vec<Arc<Sink>>>,
}

impl Bus {
    pub fn new() -> Arc<Bus> {
        Arc::new(Bus::default())
    }

    /// Something else (webhooks) that sees every event, synchronously; it must not block.
    pub fn add_sink(&self, f: Sink) {
        lock(&self.sinks).push(Arc::new(f));
    }

    pub fn publish(&self, kind: EventType, island: &str, agent: &str, payload: Value) -> Event {
        let e = Event {
            id: format!("ev_{}", util::random_hex(8)),
            kind,
            island: island.to_string(),
            agent: agent.to_string(),
            timestamp: util::now_rfc3339(),
            payload,
        };
        log::debug!("event {} {} {}", e.kind, e.island, e.agent);
        {
            let mut map = lock(&self.per_island);
            let ring = map.entry(island.to_string()).or_default();
            ring.push_back(e.clone());
            while ring.len() > PER_ISLAND {
                ring.pop_front();
            }
        }
        {
            let mut r = lock(&self.recent);
            r.push_back(e.clone());
            while r.len() > RECENT {
                r.pop_front();
            }
        }
        let shared = Arc::new(e.clone());
        lock(&self.subs).retain(|s| {
            if !s.filter.matches(&shared) {
                return true;
            }
            match s.tx.try_send(shared.clone()) {
                Ok(()) => true,
                // Full: too slow, cut off. Disconnected: gone.
                Err(TrySendError::Full(_)) => {
                    crate::metrics::bus_drop();
                    log::info!("event stream subscriber fell {STREAM_QUEUE} events behind; disconnecting it");
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
        let sinks: Vec<Arc<Sink>> = lock(&self.sinks).clone();
        for s in sinks {
            s(&e);
        }
        e
    }

    /// An island's recent events, newest first.
    pub fn island_events(&self, island: &str) -> Vec<Event> {
        lock(&self.per_island)
            .get(island)
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Forget an island's ring (on purge, after its last event).
    pub fn forget_island(&self, island: &str) {
        lock(&self.per_island).remove(island);
    }

    /// Subscribe to live events; `replay` recent matching ones come first (oldest first).
    pub fn subscribe(
        &self,
        filter: Filter,
        replay: usize,
        owner: Option<String>,
    ) -> (Vec<Event>, Receiver<Arc<Event>>) {
        let (tx, rx) = sync_channel(STREAM_QUEUE);
        // Take the replay and register under the same lock order as publish, so nothing
        // falls between them.
        let mut subs = lock(&self.subs);
        let recent: Vec<Event> = {
            let r = lock(&self.recent);
            let m: Vec<&Event> = r.iter().filter(|e| filter.matches(e)).collect();
            m[m.len().saturating_sub(replay)..]
                .iter()
                .map(|e| (*e).clone())
                .collect()
        };
        subs.push(Sub { filter, owner, tx });
        (recent, rx)
    }

    /// End the live streams opened with token `id` (revoked).
    pub fn close_owner(&self, id: &str) {
        lock(&self.subs).retain(|s| s.owner.as_deref() != Some(id));
    }

    /// End every live stream (shutdown): their receivers see the queue close at once.
    pub fn close_streams(&self) {
        lock(&self.subs).clear();
    }

    pub fn subscriber_count(&self) -> usize {
        lock(&self.subs).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_filters_and_slow_subscribers() {
        let bus = Bus::new();
        for k in 0..(PER_ISLAND + 5) {
            bus.publish(
                EventType::IslandRunning,
                "a",
                "",
                serde_json::json!({ "k": k }),
            );
        }
        let ev = bus.island_events("a");
        assert_eq!(ev.len(), PER_ISLAND);
        assert_eq!(ev[0].payload["k"], PER_ISLAND + 4, "newest first");
        let (replay, rx) = bus.subscribe(
            Filter {
                islands: vec!["b".into()],
                types: vec![],
            },
            10,
            None,
        );
        assert!(replay.is_empty());
        bus.publish(EventType::IslandCreated, "a", "", Value::Null);
        bus.publish(EventType::IslandCreated, "b", "", Value::Null);
        assert_eq!(rx.try_recv().unwrap().island, "b");
        assert!(rx.try_recv().is_err());
        // A subscriber that never reads is dropped once its queue is full; publish never blocks.
        let (_r, slow) = bus.subscribe(Filter::default(), 0, Some("tok_x".into()));
        for _ in 0..(STREAM_QUEUE + 10) {
            bus.publish(EventType::ClientAttached, "c", "", Value::Null);
        }
        assert_eq!(
            bus.subscriber_count(),
            1,
            "only the reader of island b is left"
        );
        drop(slow);
        let (_r, revoked) = bus.subscribe(Filter::default(), 0, Some("tok_y".into()));
        bus.close_owner("tok_y");
        assert!(
            revoked.recv().is_err(),
            "a revoked token's stream ends at once"
        );
        bus.publish(EventType::IslandCreated, "d", "", Value::Null);
        let (replay, _rx) = bus.subscribe(
            Filter {
                islands: vec![],
                types: vec![EventType::IslandCreated],
            },
            1,
            None,
        );
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].island, "d");
    }
}
