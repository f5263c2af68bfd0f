//! What the engine says about our containers, kept current by two long-lived children, each
//! owned by one named thread: `docker events` (state transitions, OOM) and `docker stats`
//! (memory, CPU). Requests read the cache and never wait on the engine.

use crate::util::lock;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{container_name, Engine, Runtime, ISLAND_LABEL};
use crate::process;
use crate::util::parse_size;

pub use crate::api::ContainerState;

/// A container transition the engine reported, parsed from `docker events` at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerEvent {
    /// `start`
    Started,
    /// `unpause`, `restart`: running again, reported only when that is news
    Resumed,
    /// `die`
    Died,
    /// `oom`
    OomKilled,
    /// `create`
    Created,
    /// `destroy`
    Destroyed,
}

impl ContainerEvent {
    fn parse(action: &str) -> Option<ContainerEvent> {
        Some(match action {
            "start" => ContainerEvent::Started,
            "unpause" | "restart" => ContainerEvent::Resumed,
            "die" => ContainerEvent::Died,
            "oom" => ContainerEvent::OomKilled,
            "create" => ContainerEvent::Created,
            "destroy" => ContainerEvent::Destroyed,
            _ => return None,
        })
    }
}

/// Observed state of one island's container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerObs {
    pub state: ContainerState,
    pub exit_code: i64,
    pub oom_killed: bool,
}

/// One stats sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSample {
    pub memory_usage: u64,
    /// As the engine reports it: the host/VM total when the container has no cap.
    pub memory_limit: u64,
    pub cpu_percent: f64,
}

/// A container transition is reported through this hook (island, what it is now, what
/// happened).
pub type TransitionHook = Box<dyn Fn(&str, &ContainerObs, ContainerEvent) + Send + Sync>;

/// The cache. `containers` has an entry for every island container the engine knows.
#[derive(Default)]
pub struct Observed {
    containers: Mutex<HashMap<String, ContainerObs>>,
    stats: Mutex<HashMap<String, StatsSample>>,
    reachable: AtomicBool,
    synced: AtomicBool,
    hook: Mutex<Option<Arc<TransitionHook>>>,
}

impl Observed {
    pub fn new() -> Arc<Observed> {
        Arc::new(Observed::default())
    }

    /// Observed container state; `missing` when the engine has no such container.
    pub fn container(&self, island: &str) -> ContainerObs {
        let map = lock(&self.containers);
        map.get(island).cloned().unwrap_or(ContainerObs {
            state: ContainerState::Missing,
            exit_code: 0,
            oom_killed: false,
        })
    }

    pub fn stats(&self, island: &str) -> Option<StatsSample> {
        lock(&self.stats).get(island).cloned()
    }

    /// Every container observation and stats sample, each map copied under one lock.
    pub fn snapshot(&self) -> (HashMap<String, ContainerObs>, HashMap<String, StatsSample>) {
        let c = lock(&self.containers).clone();
        let s = lock(&self.stats).clone();
        (c, s)
    }

    pub fn all_stats(&self) -> Vec<(String, StatsSample)> {
        let map = lock(&self.stats);
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Whether the first full listing has been read (until then, `missing` means unknown).
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Record a state we caused (so the answer to our own request is already current).
    pub fn set_state(&self, island: &str, state: ContainerState) {
        let mut map = lock(&self.containers);
        if state == ContainerState::Missing {
            map.remove(island);
        } else {
            let e = map.entry(island.to_string()).or_insert(ContainerObs {
                state,
                exit_code: 0,
                oom_killed: false,
            });
            e.state = state;
            if state == ContainerState::Running {
                e.exit_code = 0;
                e.oom_killed = false;
            }
        }
        drop(map);
        if state != ContainerState::Running {
            lock(&self.stats).remove(island);
        }
    }

    /// Whether the island's container is running, as last seen.
    pub fn running(&self, island: &str) -> bool {
        self.container(island).state == ContainerState::Running
    }

    pub fn set_hook(&self, hook: TransitionHook) {
        *lock(&self.hook) = Some(Arc::new(hook));
    }

    fn apply_event(&self, island: &str, ev: ContainerEvent, exit_code: Option<i64>) {
        let prev = self.container(island);
        let mut map = lock(&self.containers);
        let entry = map
            .entry(island.to_string())
            .or_insert_with(|| prev.clone());
        match ev {
            ContainerEvent::Started | ContainerEvent::Resumed => {
                entry.state = ContainerState::Running;
                entry.exit_code = 0;
                entry.oom_killed = false;
            }
            ContainerEvent::Died => {
                entry.state = ContainerState::Exited;
                entry.exit_code = exit_code.unwrap_or(entry.exit_code);
            }
            ContainerEvent::OomKilled => entry.oom_killed = true,
            ContainerEvent::Created => {
                if entry.state == ContainerState::Missing {
                    entry.state = ContainerState::Exited;
                }
            }
            ContainerEvent::Destroyed => {
                map.remove(island);
            }
        }
        let now = map.get(island).cloned().unwrap_or(ContainerObs {
            state: ContainerState::Missing,
            exit_code: 0,
            oom_killed: false,
        });
        drop(map);
        if now.state != ContainerState::Running {
            lock(&self.stats).remove(island);
        }
        let hook = lock(&self.hook).clone();
        if let Some(h) = hook {
            // A start is reported even when we already recorded the state ourselves.
            if now != prev || matches!(ev, ContainerEvent::OomKilled | ContainerEvent::Started) {
                h(island, &now, ev);
            }
        }
    }

    /// Whether the engine answers (its watcher says).
    pub(crate) fn set_reachable(&self, yes: bool) {
        self.reachable.store(yes, Ordering::Relaxed);
    }

    /// A runtime that reports whole states (a pod as it is now; None: gone) rather than
    /// transitions: the transition is worked out here and reported as the engine's would be.
    pub(crate) fn apply_observation(&self, island: &str, now: Option<ContainerObs>) {
        let prev = self.container(island);
        let ev = match &now {
            None => ContainerEvent::Destroyed,
            Some(n) if n.oom_killed && !prev.oom_killed => {
                self.apply_event(island, ContainerEvent::OomKilled, None);
                ContainerEvent::Died
            }
            Some(n) if n.state == ContainerState::Running => {
                if prev.state == ContainerState::Running {
                    return;
                }
                ContainerEvent::Started
            }
            Some(n)
                if n.state == ContainerState::Exited && prev.state == ContainerState::Running =>
            {
                ContainerEvent::Died
            }
            Some(_) => ContainerEvent::Created,
        };
        let code = now.as_ref().map(|n| n.exit_code);
        self.apply_event(island, ev, code);
    }

    /// The engine's whole listing, read on every (re)connect of its watch.
    pub(crate) fn replace_all(&self, listing: Vec<(String, String)>) {
        self.synced.store(true, Ordering::Relaxed);
        let mut map = lock(&self.containers);
        let old = std::mem::take(&mut *map);
        for (island, status) in listing {
            let prev = old.get(&island);
            map.insert(
                island,
                ContainerObs {
                    state: map_status(&status),
                    exit_code: prev.map(|p| p.exit_code).unwrap_or(0),
                    oom_killed: prev.map(|p| p.oom_killed).unwrap_or(false),
                },
            );
        }
    }
}

/// Engine status words to ours.
pub fn map_status(status: &str) -> ContainerState {
    match status {
        "running" | "restarting" | "paused" => ContainerState::Running,
        "created" | "exited" => ContainerState::Exited,
        _ => ContainerState::Errored,
    }
}

/// Start the watcher threads. They run for the life of the process.
pub fn start(engine: Engine, observed: Arc<Observed>) -> std::io::Result<()> {
    let (e2, o2) = (engine.clone(), observed.clone());
    thread::Builder::new()
        .name("engine-events".into())
        .spawn(move || events_loop(&engine, &observed))?;
    thread::Builder::new()
        .name("engine-stats".into())
        .spawn(move || stats_loop(&e2, &o2))?;
    Ok(())
}

#[derive(Deserialize)]
struct EventLine {
    #[serde(rename = "Action", default)]
    action: String,
    /// Older engines put the action here only.
    #[serde(default)]
    status: String,
    #[serde(rename = "Actor", default)]
    actor: Option<Actor>,
}

#[derive(Deserialize)]
struct Actor {
    #[serde(rename = "Attributes", default)]
    attributes: HashMap<String, String>,
}

/// Follow `docker events`; on every (re)connect, relist so no transition is missed.
fn events_loop(engine: &Engine, observed: &Observed) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let argv = [
            engine.docker().to_string(),
            "events".into(),
            "--filter".into(),
            "type=container".into(),
            "--filter".into(),
            format!("label={ISLAND_LABEL}"),
            "--format".into(),
            "{{json .}}".into(),
        ];
        let started = Instant::now();
        match process::spawn_stream(&argv, true) {
            Ok(mut child) => {
                // The stream is subscribed before we list, so a change between the two shows
                // up in the stream.
                match engine.list_islands() {
                    Ok(listing) => {
                        observed.replace_all(listing);
                        observed.reachable.store(true, Ordering::Relaxed);
                        observed.synced.store(true, Ordering::Relaxed);
                        backoff = Duration::from_millis(250);
                    }
                    Err(e) => {
                        observed.reachable.store(false, Ordering::Relaxed);
                        log::warn!("engine unreachable: {e}");
                    }
                }
                if let Some(out) = child.stdout.take() {
                    for line in BufReader::new(out).lines() {
                        let Ok(line) = line else { break };
                        handle_event_line(observed, &line);
                    }
                }
                let code = child.wait();
                let err = child.stderr();
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(250);
                }
                log::warn!("docker events ended ({code:?}): {err}");
            }
            Err(e) => log::warn!("cannot start docker events: {e}"),
        }
        observed.reachable.store(false, Ordering::Relaxed);
        thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn handle_event_line(observed: &Observed, line: &str) {
    let Ok(ev) = serde_json::from_str::<EventLine>(line) else {
        log::debug!("unparsed engine event: {line}");
        return;
    };
    let Some(actor) = ev.actor else { return };
    let Some(island) = actor.attributes.get(ISLAND_LABEL) else {
        return;
    };
    // Helpers (volume copies, checks) carry the label but are not the island's container.
    if actor.attributes.get("name") != Some(&container_name(island)) {
        return;
    }
    let action = if ev.action.is_empty() {
        &ev.status
    } else {
        &ev.action
    };
    let Some(ev) = ContainerEvent::parse(action.split(':').next().unwrap_or("").trim()) else {
        return;
    };
    let exit_code = actor
        .attributes
        .get("exitCode")
        .and_then(|c| c.parse().ok());
    observed.apply_event(island, ev, exit_code);
}

#[derive(Deserialize)]
struct StatsLine {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "MemUsage", default)]
    mem_usage: String,
    #[serde(rename = "CPUPerc", default)]
    cpu_perc: String,
}

/// Follow `docker stats` (all running containers, refreshed by the engine about every 2 s).
fn stats_loop(engine: &Engine, observed: &Observed) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let argv = [
            engine.docker().to_string(),
            "stats".into(),
            "--format".into(),
            "{{json .}}".into(),
        ];
        let started = Instant::now();
        if let Ok(mut child) = process::spawn_stream(&argv, true) {
            if let Some(out) = child.stdout.take() {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if let Some((island, s)) = parse_stats_line(&line) {
                        if observed.running(&island) {
                            lock(&observed.stats).insert(island, s);
                        }
                    }
                }
            }
            child.wait();
            log::debug!("docker stats ended: {}", child.stderr());
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// One line of `docker stats --format '{{json .}}'`, which may start with terminal
/// clear-screen codes.
pub fn parse_stats_line(line: &str) -> Option<(String, StatsSample)> {
    let json = &line[line.find('{')?..];
    let s: StatsLine = serde_json::from_str(json).ok()?;
    let island = s.name.strip_prefix("dejima-")?.to_string();
    let (used, limit) = s.mem_usage.split_once('/')?;
    Some((
        island,
        StatsSample {
            memory_usage: parse_size(used).unwrap_or(0),
            memory_limit: parse_size(limit).unwrap_or(0),
            cpu_percent: s
                .cpu_perc
                .trim()
                .trim_end_matches('%')
                .parse()
                .unwrap_or(0.0),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stats_with_clear_codes() {
        let line = "\u{1b}[2J\u{1b}[H{\"BlockIO\":\"0B / 0B\",\"CPUPerc\":\"12.50%\",\"Container\":\"abc\",\"ID\":\"abc\",\"MemPerc\":\"0.01%\",\"MemUsage\":\"1.5MiB / 4GiB\",\"Name\":\"dejima-foo\",\"NetIO\":\"0B / 0B\",\"PIDs\":\"3\"}";
        let (island, s) = parse_stats_line(line).unwrap();
        assert_eq!(island, "foo");
        assert_eq!(s.memory_usage, 1_572_864);
        assert_eq!(s.memory_limit, 4 << 30);
        assert_eq!(s.cpu_percent, 12.5);
        assert!(parse_stats_line("{\"Name\":\"other\",\"MemUsage\":\"1B / 2B\"}").is_none());
    }

    #[test]
    fn events_update_state() {
        let o = Observed::default();
        o.set_state("foo", ContainerState::Running);
        let line = r#"{"status":"die","id":"x","Type":"container","Action":"die","Actor":{"ID":"x","Attributes":{"dejima.island":"foo","exitCode":"137","name":"dejima-foo"}}}"#;
        handle_event_line(&o, line);
        let c = o.container("foo");
        assert_eq!((c.state, c.exit_code), (ContainerState::Exited, 137));
        let helper = r#"{"Action":"start","Actor":{"Attributes":{"dejima.island":"foo","name":"eager_turing"}}}"#;
        handle_event_line(&o, helper);
        assert_eq!(o.container("foo").state, ContainerState::Exited);
        let destroy = r#"{"Action":"destroy","Actor":{"Attributes":{"dejima.island":"foo","name":"dejima-foo"}}}"#;
        handle_event_line(&o, destroy);
        assert_eq!(o.container("foo").state, ContainerState::Missing);
    }
}
