//! Islands: the records we keep, the registry that holds them, and the operations on them.
//! No HTTP here. Lock rule: `slots` is held only to read or change records in memory, never
//! across an engine call, a file write or a socket write. An island's lifecycle operations are
//! serialised by its `busy` mark (a second one gets 409), not by a lock.

pub mod access;
pub mod agents;
pub mod autonomy;
mod creds;
pub mod grants;
pub mod lifecycle;
pub mod names;
pub mod panic;
pub mod paths;
pub mod record;
pub mod relay;
pub mod screen;
pub mod ssh;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::api::{
    AgentType, ContainerState, DesiredState, IslandInfo, IslandStats, Overview, Resources,
    WorkspaceReady,
};
use crate::error::{Error, Result};
use crate::events::Bus;
use crate::runtime::{Engine, Observed, Runtime};
use crate::session::Hub;
use crate::store::{self, Home};
use crate::util::{self, lock};

/// What we persist per island (`$DEJIMA_HOME/islands/<name>/island.json`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Record {
    pub name: String,
    pub repo: String,
    pub agent: AgentType,
    #[serde(default)]
    pub cmd: String,
    pub image: String,
    /// Desired state: running or hibernated.
    pub state: DesiredState,
    pub created_at: String,
    pub last_used_at: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub github_identity: String,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub no_repo: bool,
    /// Engine objects were all created at least once. False after a crash mid-create.
    #[serde(default)]
    pub provisioned: bool,
    #[serde(default)]
    pub workspace: WorkspaceReady,
    /// Set on a clone: the source island whose volumes are copied in (until provisioned).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cloned_from: String,
    /// The island's agents; `a1` is the primary.
    #[serde(default)]
    pub agents: Vec<agents::AgentRecord>,
    /// The number the next added agent gets.
    #[serde(default)]
    pub next_agent: u32,
    /// The island's own bearer token (DEJIMA_TOKEN inside it). Never shown by the API.
    #[serde(default)]
    pub token: String,
    /// Its network's subnet, from the daemon's pool (empty on records older than the pool).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    /// The shape of the container last run for it (`CONTAINER_GEN`); an older one is
    /// recreated (volumes kept) the next time it starts.
    #[serde(default)]
    pub container_gen: u32,
    /// `updated_at` of the Claude credentials last seeded into the agent home.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub claude_seeded_at: String,
    /// Host folders granted through Port. Never carried to a clone or a child.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_scopes: Vec<crate::api::PortScope>,
    /// Capability targets it may execute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capability_grants: Vec<crate::api::CapabilityGrant>,
    /// MCP servers it may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_grants: Vec<crate::api::McpGrant>,
    /// Whether, and how much, its token may create child islands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawn: Option<crate::api::SpawnInfo>,
    /// The island whose token created this one (it may hibernate, wake and purge it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
    /// Made by an island's token (kept when orphaned): it is never given the operator's
    /// credentials (no provider key, GitHub identity or Claude login).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spawned: bool,
    /// Public keys let in over SSH to this island only (account keys reach every island).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<crate::ssh::SshKey>,
    /// Its agents' sessions are recorded (asciicast, under the island's folder).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record: bool,
}

/// What containers are made with now. 1: secrets on a read-only mount at /run/secrets/dejima,
/// none in the environment. 2: the run folder (/run/dejima) mounted read-only.
pub const CONTAINER_GEN: u32 = 2;

/// Everything the daemon keeps about one island, in one place: create fills one entry and
/// purge removes it, so nothing keyed by the name outlives the island.
struct Slot {
    /// Unique to this slot: a busy mark clears only the slot it was taken on, never a later
    /// island of the same name.
    id: u64,
    rec: Record,
    /// The lifecycle operation under way, if any.
    busy: Option<&'static str>,
    /// The last observation of the island's agents; None until looked at (or after the
    /// container restarted, when what ran before says nothing).
    agent_obs: Option<HashMap<String, agents::AgentObs>>,
    /// When `agent_obs` was taken.
    agent_obs_at: Option<Instant>,
    /// The latest agent-emitted signals.
    agent_states: autonomy::AgentStates,
    /// When we announced a stop of our own (its `die` is not a crash).
    own_stop: Option<Instant>,
    /// One prompt at a time per agent (`screen::prompt`).
    prompt_locks: HashMap<String, std::sync::Arc<std::sync::Mutex<()>>>,
    /// The agent sweep has an exec in flight here: a clone waits for it before pausing (an
    /// exec that starts into a pausing container can wedge the engine's unpause).
    sweeping: bool,
}

impl Slot {
    fn new(rec: Record, busy: Option<&'static str>) -> Slot {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Slot {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            rec,
            busy,
            agent_obs: None,
            agent_obs_at: None,
            agent_states: Default::default(),
            own_stop: None,
            prompt_locks: HashMap::new(),
            sweeping: false,
        }
    }
}

type Registry = Mutex<BTreeMap<String, Slot>>;

/// Daemon-wide settings the islands need.
#[derive(Debug, Clone)]
pub struct Config {
    pub default_image: String,
    /// Base for image builds; empty: the bootstrap base if present, else the registry's.
    pub base_image: String,
    /// Where island networks' subnets come from.
    pub subnets: crate::runtime::SubnetPool,
    /// Record every island's sessions (`--record`), not only those with `record: true`.
    pub record_all: bool,
    /// Bytes of recordings one island may hold (`--record-max-mb`); the oldest go first.
    pub record_max: u64,
}

pub struct Islands {
    pub home: Home,
    /// Where islands run (`--runtime`: the Docker engine or a Kubernetes cluster).
    pub runtime: Arc<dyn Runtime>,
    /// The host's Docker engine, which builds and holds the island image (doctor, image builds).
    pub images: Engine,
    pub observed: Arc<Observed>,
    pub config: Config,
    pub started_at: String,
    /// The one registry: a slot per island. See docs/ARCHITECTURE.md for the lock order.
    slots: Arc<Registry>,
    /// Serialises record writes so the file always ends with the latest in-memory record.
    write_lock: Mutex<()>,
    image_cache: Mutex<Option<(Instant, bool)>>,
    /// Attached clients (presence).
    pub hub: Arc<Hub>,
    /// Typed events.
    pub events: Arc<Bus>,
    /// The credentials islands are given (keys, identities, Claude's login).
    pub creds: Arc<crate::creds::Creds>,
    /// One writer of island secrets directories at a time.
    secrets_lock: Mutex<()>,
    /// SSH keys let into every island.
    pub account_keys: Arc<crate::ssh::AccountKeys>,
    /// The panic switch, when engaged (see `panic.rs`).
    panic: Mutex<Option<panic::PanicState>>,
    /// Pool subnets found in use by networks not ours; tried last.
    subnets_elsewhere: Mutex<std::collections::HashSet<String>>,
    /// Bumped when an island is added or removed (the socket supervisor waits on it).
    generation: Mutex<u64>,
    changed: std::sync::Condvar,
    /// The running session recorders.
    recorders: record::Recorders,
}

/// An island's busy mark, owned: it clears the mark when dropped, wherever it has been moved
/// (a background clone thread carries it; a thread that fails to start drops it).
pub struct Busy {
    slots: Arc<Registry>,
    name: String,
    slot: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(slot) = lock(&self.slots).get_mut(&self.name) {
            if slot.id == self.slot {
                slot.busy = None;
            }
        }
    }
}

impl Islands {
    // Each argument is a separate owner's handle; a struct around them would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        home: Home,
        runtime: Arc<dyn Runtime>,
        images: Engine,
        observed: Arc<Observed>,
        config: Config,
        hub: Arc<Hub>,
        events: Arc<Bus>,
        creds: Arc<crate::creds::Creds>,
    ) -> Islands {
        let account_keys = Arc::new(crate::ssh::AccountKeys::open(&home.root).unwrap_or_else(
            |e| {
                log::error!("cannot read the SSH account keys ({e}); starting with none");
                crate::ssh::AccountKeys::empty(&home.root)
            },
        ));
        Islands {
            account_keys,
            creds,
            secrets_lock: Mutex::new(()),
            home,
            runtime,
            images,
            observed,
            config,
            recorders: record::Recorders::default(),
            started_at: util::now_rfc3339(),
            slots: Arc::new(Mutex::new(BTreeMap::new())),
            write_lock: Mutex::new(()),
            image_cache: Mutex::new(None),
            hub,
            events,
            subnets_elsewhere: Mutex::new(Default::default()),
            panic: Mutex::new(None),
            generation: Mutex::new(0),
            changed: std::sync::Condvar::new(),
        }
    }

    /// Read every record from disk. A record that cannot be read is left in place, logged,
    /// and skipped: it is never overwritten or deleted.
    pub fn load(&self) -> std::io::Result<usize> {
        let dir = self.home.islands_dir();
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if names::validate(&name).is_err() {
                continue;
            }
            let path = self.home.island_record(&name);
            if !path.exists() {
                continue;
            }
            match store::read_json::<Record>(&path) {
                Ok(mut rec) if rec.name == name => {
                    Self::ensure_primary(&mut rec);
                    lock(&self.slots).insert(name, Slot::new(rec, None));
                    loaded += 1;
                }
                Ok(_) => log::error!(
                    "{}: name does not match its directory; skipped",
                    path.display()
                ),
                Err(e) => log::error!("cannot read island record: {e}; skipped"),
            }
        }
        Ok(loaded)
    }

    /// A copy of one record.
    pub fn record(&self, name: &str) -> Result<Record> {
        lock(&self.slots)
            .get(name)
            .map(|s| s.rec.clone())
            .ok_or_else(|| Error::island_not_found(name))
    }

    pub fn names(&self) -> Vec<String> {
        lock(&self.slots).keys().cloned().collect()
    }

    /// Mark `name` busy with `op`, or say who holds it.
    pub fn begin(&self, name: &str, op: &'static str) -> Result<Busy> {
        let mut map = lock(&self.slots);
        let slot = map
            .get_mut(name)
            .ok_or_else(|| Error::island_not_found(name))?;
        if let Some(other) = slot.busy {
            return Err(Error::Conflict(format!(
                "island {name:?} is busy ({other})"
            )));
        }
        slot.busy = Some(op);
        Ok(Busy {
            slots: self.slots.clone(),
            name: name.to_string(),
            slot: slot.id,
        })
    }

    /// Add a new record, already busy with `op`; 409 when the name is taken.
    fn reserve(&self, rec: Record, op: &'static str) -> Result<Busy> {
        let name = rec.name.clone();
        let id = {
            let mut map = lock(&self.slots);
            if map.contains_key(&name) {
                return Err(Error::Conflict(format!("island {name:?} already exists")));
            }
            // A child counts against its parent's quota from the moment it is reserved, so
            // two creates at once cannot both take the last place.
            if !rec.parent.is_empty() {
                let max = map
                    .get(&rec.parent)
                    .and_then(|p| p.rec.spawn.as_ref())
                    .map(|g| g.max_children)
                    .unwrap_or(0);
                let have = map.values().filter(|s| s.rec.parent == rec.parent).count() as u64;
                if have >= max {
                    return Err(Error::Forbidden(format!(
                        "island {:?} has {have} of its {max} children already",
                        rec.parent
                    )));
                }
            }
            let slot = Slot::new(rec, Some(op));
            let id = slot.id;
            map.insert(name.clone(), slot);
            id
        };
        let busy = Busy {
            slots: self.slots.clone(),
            name: name.clone(),
            slot: id,
        };
        self.bump();
        if let Err(e) = self.persist(&name) {
            lock(&self.slots).remove(&name);
            self.bump();
            return Err(e);
        }
        Ok(busy)
    }

    /// The subnet for island `name`'s network: its own, or the first free one of the pool
    /// (not held by another island, not in `avoid`, and not known to be used elsewhere unless
    /// nothing else is left). A newly taken one is recorded at once, so two creates never
    /// pick the same. Exhaustion is a 507 that says what to change.
    fn subnet_of(&self, name: &str, avoid: &[String]) -> Result<String> {
        let pool = &self.config.subnets;
        let elsewhere = lock(&self.subnets_elsewhere).clone();
        let chosen = {
            let mut map = lock(&self.slots);
            let own = map
                .get(name)
                .ok_or_else(|| Error::island_not_found(name))?
                .rec
                .subnet
                .clone();
            if !own.is_empty() && !avoid.contains(&own) {
                return Ok(own);
            }
            let used: std::collections::HashSet<&str> =
                map.values().map(|s| s.rec.subnet.as_str()).collect();
            let free = |skip_elsewhere: bool| {
                (0..pool.len()).map(|i| pool.nth(i)).find(|s| {
                    !used.contains(s.as_str())
                        && !avoid.contains(s)
                        && (!skip_elsewhere || !elsewhere.contains(s))
                })
            };
            let Some(chosen) = free(true).or_else(|| free(false)) else {
                return Err(Error::Exhausted(format!(
                    "no free subnet for island {name:?}: all {} subnets of {} are in use by islands or other networks; purge islands you no longer need, or start dejimad with a larger --subnet-pool",
                    pool.len(),
                    pool.describe()
                )));
            };
            if let Some(slot) = map.get_mut(name) {
                slot.rec.subnet = chosen.clone();
            }
            chosen
        };
        self.persist(name)?;
        Ok(chosen)
    }

    /// A pool subnet that overlaps a network not ours: tried last from now on.
    fn note_subnet_taken(&self, subnet: &str) {
        lock(&self.subnets_elsewhere).insert(subnet.to_string());
    }

    /// Read or change an island's slot in memory (never blocking work inside `f`).
    fn with_slot<T>(&self, name: &str, f: impl FnOnce(&mut Slot) -> T) -> Option<T> {
        lock(&self.slots).get_mut(name).map(f)
    }

    fn bump(&self) {
        *lock(&self.generation) += 1;
        self.changed.notify_all();
    }

    /// Wake whoever waits for a change (shutdown is one).
    pub fn wake_waiters(&self) {
        self.bump();
    }

    /// The registry's generation: bumped whenever an island is added or removed.
    pub fn generation(&self) -> u64 {
        *lock(&self.generation)
    }

    /// Wait until the generation moves past `seen` (read before the caller looked at the
    /// registry, so a change in between is never missed), or `limit` passes.
    pub fn wait_for_change(&self, seen: u64, limit: Duration) {
        let g = lock(&self.generation);
        let _ = self.changed.wait_timeout_while(g, limit, |g| *g == seen);
    }

    /// Change a record in memory, then write it.
    pub fn update<F: FnOnce(&mut Record)>(&self, name: &str, f: F) -> Result<Record> {
        let rec = self
            .with_slot(name, |slot| {
                f(&mut slot.rec);
                slot.rec.clone()
            })
            .ok_or_else(|| Error::island_not_found(name))?;
        self.persist(name)?;
        Ok(rec)
    }

    /// Write the current in-memory record of `name` to disk.
    fn persist(&self, name: &str) -> Result<()> {
        let _w = lock(&self.write_lock);
        let rec = self.with_slot(name, |s| s.rec.clone());
        match rec {
            Some(rec) => store::write_json(&self.home.island_record(name), &rec)
                .map_err(|e| Error::Internal(format!("cannot save island {name:?}: {e}"))),
            None => Ok(()),
        }
    }

    /// Drop an island's slot (record, marks, observations, agent states) and its record on
    /// disk.
    fn forget(&self, name: &str) -> Result<()> {
        let _w = lock(&self.write_lock);
        lock(&self.slots).remove(name);
        self.bump();
        store::remove_dir(&self.home.island_dir(name))
            .map_err(|e| Error::Internal(format!("cannot remove island {name:?} config: {e}")))
    }

    /// Note that the island was used. Written at most once a minute to keep fsyncs off the
    /// hot path (a crash loses at most that minute of `last_used_at`).
    pub fn touch(&self, name: &str) {
        let now = util::unix_now();
        let write = self.with_slot(name, |slot| {
            let prev = util::parse_rfc3339(&slot.rec.last_used_at).unwrap_or(0);
            slot.rec.last_used_at = util::rfc3339(now);
            now >= prev + 60
        });
        if write == Some(true) {
            if let Err(e) = self.persist(name) {
                log::warn!("{e}");
            }
        }
    }

    /// What the lightweight view reads besides the registry, taken once per response (one
    /// lock each), so a list of hundreds of islands locks nothing per island.
    fn view(&self) -> View {
        let (containers, stats) = self.observed.snapshot();
        View {
            containers,
            stats,
            presence: self.hub.presence_by_island(),
            unknown: !self.observed.synced() && !self.observed.reachable(),
        }
    }

    /// The lightweight view of one island: record plus cached observations, no engine call.
    pub fn info(&self, name: &str) -> Result<IslandInfo> {
        let view = self.view();
        self.with_slot(name, |slot| info_from(slot, &view))
            .ok_or_else(|| Error::island_not_found(name))
    }

    pub fn list(&self) -> Vec<IslandInfo> {
        let view = self.view();
        lock(&self.slots)
            .values()
            .map(|slot| info_from(slot, &view))
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<IslandInfo> {
        self.info(name)
    }

    /// Whether the default island image exists (cached for a few seconds: the overview is
    /// polled).
    pub fn image_present(&self) -> bool {
        if let Some((at, v)) = *lock(&self.image_cache) {
            if at.elapsed() < Duration::from_secs(5) {
                return v;
            }
        }
        let v = self
            .runtime
            .image_present(&self.config.default_image)
            .unwrap_or(false);
        *lock(&self.image_cache) = Some((Instant::now(), v));
        v
    }

    pub fn forget_image_cache(&self) {
        *lock(&self.image_cache) = None;
    }

    /// Server-wide totals over the islands `sees` admits (a scoped token's view).
    pub fn overview(
        &self,
        sees: &dyn Fn(&str) -> bool,
        attached_clients: u64,
        webhook_count: u64,
    ) -> Overview {
        let mut list = self.list();
        list.retain(|i| sees(&i.name));
        let mut o = Overview {
            total_islands: list.len() as u64,
            daemon_started_at: self.started_at.clone(),
            attached_clients,
            webhook_count,
            docker_reachable: self.observed.reachable(),
            island_image: self.config.default_image.clone(),
            runtime: crate::api::RuntimeInfo {
                kind: self.runtime.kind().to_string(),
                unsupported: self
                    .runtime
                    .unsupported()
                    .into_iter()
                    .map(|(f, d)| crate::api::Unsupported {
                        feature: f.to_string(),
                        detail: d.to_string(),
                    })
                    .collect(),
            },
            ..Overview::default()
        };
        for i in &list {
            match i.container {
                ContainerState::Running => o.running += 1,
                ContainerState::Errored => o.errored += 1,
                ContainerState::Exited | ContainerState::Missing => {}
            }
            if i.state == DesiredState::Hibernated {
                o.hibernated += 1;
            }
            if let Some(s) = &i.stats {
                o.memory_usage_bytes += s.memory_usage_bytes;
                o.memory_limit_bytes += s.memory_limit_bytes;
                o.cpu_percent += s.cpu_percent;
            }
        }
        o.cpu_percent = (o.cpu_percent * 100.0).round() / 100.0;
        o.island_image_present = o.docker_reachable && self.image_present();
        o.host_memory_bytes = host_memory();
        // The runtime's ceiling: the largest limit the engine reports for a running island
        // (an uncapped container reports the VM's, or on Linux the host's, total).
        o.vm_memory_bytes = self
            .observed
            .all_stats()
            .iter()
            .map(|(_, s)| s.memory_limit)
            .max()
            .filter(|m| *m > 0);
        o.vm_recommended_bytes = o.host_memory_bytes.and_then(|h| {
            let r = (h / 4 * 3).min(h.saturating_sub(4 << 30));
            (r > 0).then_some(r)
        });
        o
    }

    pub fn workspace_ready(&self, name: &str) -> Result<WorkspaceReady> {
        Ok(self.record(name)?.workspace)
    }

    /// Scratch space for builds and helpers.
    pub fn work_dir(&self) -> PathBuf {
        self.home.image_dir()
    }
}

/// Engine observations and presence, copied once for a whole response.
struct View {
    containers: HashMap<String, crate::runtime::ContainerObs>,
    stats: HashMap<String, crate::runtime::watch::StatsSample>,
    presence: HashMap<String, Vec<(crate::session::Target, crate::api::PresenceEntry)>>,
    /// The engine has never been listed and is not reachable: states are unknown.
    unknown: bool,
}

/// An island's lightweight view from its slot and a `View` (no lock, no engine call).
fn info_from(slot: &Slot, view: &View) -> IslandInfo {
    let rec = &slot.rec;
    let obs = view.containers.get(&rec.name);
    let state = obs.map(|o| o.state).unwrap_or(ContainerState::Missing);
    let running = state == ContainerState::Running;
    let stats = if running {
        view.stats.get(&rec.name).map(|s| IslandStats {
            memory_usage_bytes: s.memory_usage,
            memory_limit_bytes: if rec.resources.memory.is_empty() {
                0
            } else {
                s.memory_limit
            },
            cpu_percent: s.cpu_percent,
        })
    } else {
        None
    };
    let presence = view.presence.get(&rec.name);
    IslandInfo {
        name: rec.name.clone(),
        repo: rec.repo.clone(),
        agent: rec.agent,
        image: rec.image.clone(),
        state: rec.state,
        container: if view.unknown {
            ContainerState::Errored
        } else {
            state
        },
        created_at: rec.created_at.clone(),
        last_used_at: rec.last_used_at.clone(),
        attached: presence
            .map(|p| p.iter().map(|(_, e)| e.clone()).collect())
            .unwrap_or_default(),
        stats,
        agent_state: slot.agent_states.rollup.clone(),
        agents: rec
            .agents
            .iter()
            .map(|a| agents::info_from(slot, a, running, presence))
            .collect(),
        git: None,
        title: rec.title.clone(),
        role: rec.role.clone(),
        owner: rec.owner.clone(),
        tags: rec.tags.clone(),
        github_identity: rec.github_identity.clone(),
        resources: None,
        health: None,
        disk: None,
        parent: rec.parent.clone(),
        record: rec.record,
    }
}

/// Physical memory of the daemon host.
fn host_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn islands(dir: &std::path::Path) -> Islands {
        let home = Home::new(dir);
        home.ensure().unwrap();
        Islands::new(
            home,
            Arc::new(Engine::new(
                "docker",
                Vec::new(),
                Duration::from_secs(5),
                dir,
            )),
            Engine::new("docker", Vec::new(), Duration::from_secs(5), dir),
            Observed::new(),
            Config {
                default_image: "x".into(),
                base_image: String::new(),
                subnets: Default::default(),
                record_all: false,
                record_max: 1 << 20,
            },
            Hub::new(None),
            Bus::new(),
            Arc::new(crate::creds::Creds::open(dir.join("credentials")).unwrap()),
        )
    }

    #[test]
    fn a_panic_under_the_registry_lock_fails_only_its_own_request() {
        let dir = tempfile::tempdir().unwrap();
        let i = islands(dir.path());
        let rec = Record {
            name: "a".into(),
            ..Record::default()
        };
        drop(i.reserve(rec, "creating").unwrap());
        // A bug inside a critical section poisons the lock...
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = i.update("a", |_| panic!("a bug"));
        }));
        assert!(r.is_err());
        // ...and every other route keeps working.
        assert_eq!(i.list().len(), 1);
        assert_eq!(i.record("a").unwrap().name, "a");
        let busy = i.begin("a", "testing").unwrap();
        assert!(i.begin("a", "again").is_err());
        drop(busy);
        i.update("a", |r| r.title = "ok".into()).unwrap();
        assert_eq!(i.record("a").unwrap().title, "ok");
    }

    #[test]
    fn busy_marks_travel_with_their_owner_and_purge_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let i = Arc::new(islands(dir.path()));
        let rec = Record {
            name: "b".into(),
            ..Record::default()
        };
        let busy = i.reserve(rec, "creating").unwrap();
        let t = std::thread::spawn(move || drop(busy));
        t.join().unwrap();
        let b = i.begin("b", "hibernating").unwrap();
        drop(b);
        i.expect_stop("b");
        i.with_slot("b", |s| {
            s.agent_obs = Some(HashMap::new());
            s.agent_states.rollup = Some(crate::api::AgentStateInfo {
                latest: crate::api::AgentSignal::TaskComplete,
                updated_at: String::new(),
            });
        });
        i.forget("b").unwrap();
        i.update("b", |_| {}).unwrap_err();
        let rec = Record {
            name: "b".into(),
            ..Record::default()
        };
        drop(i.reserve(rec, "creating").unwrap());
        assert!(i.info("b").unwrap().agent_state.is_none());
        assert!(i
            .with_slot("b", |s| s.own_stop.is_none() && s.agent_obs.is_none())
            .unwrap());
    }
}
