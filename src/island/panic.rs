//! The panic switch: stop every island at once and start nothing until an owner clears it.
//! The switch is a file (`$DEJIMA_HOME/PANIC`, written atomically before anything is
//! stopped), so it holds across daemon restarts; island containers run with restart policy
//! `no`, so an engine restart brings none of them back either. Every path that starts a
//! container or an agent asks `refuse_if_panicked` first; `start_or_run` asks again after
//! starting, so a start racing the switch is stopped.

use serde::{Deserialize, Serialize};

use super::Islands;
use crate::api::{DesiredState, PanicStatus};
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::store;
use crate::util::{self, lock};

/// Islands stopped (or woken) side by side.
const PARALLEL: usize = 8;
/// Grace for each island's stop.
const STOP_GRACE: u32 = 5;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PanicState {
    pub reason: String,
    pub since: String,
}

impl Islands {
    fn panic_path(&self) -> std::path::PathBuf {
        self.home.root.join("PANIC")
    }

    /// Read the switch at start (a file that cannot be read counts as engaged: fail closed).
    pub fn load_panic(&self) {
        let path = self.panic_path();
        if !path.exists() {
            return;
        }
        let state = store::read_json::<PanicState>(&path).unwrap_or_else(|e| {
            log::error!("{e}; treating the panic switch as engaged");
            PanicState {
                reason: "unreadable PANIC file".into(),
                since: util::now_rfc3339(),
            }
        });
        log::warn!(
            "the panic switch is engaged (since {}: {}); nothing will start",
            state.since,
            state.reason
        );
        *lock(&self.panic) = Some(state);
    }

    pub fn panicked(&self) -> bool {
        lock(&self.panic).is_some()
    }

    /// A 409 naming the panic when the switch is engaged.
    pub(super) fn refuse_if_panicked(&self, what: &str) -> Result<()> {
        match &*lock(&self.panic) {
            None => Ok(()),
            Some(p) => Err(Error::Conflict(format!(
                "cannot {what}: the panic switch is engaged since {} ({}); an owner clears it with DELETE /v1/panic (dejima panic clear)",
                p.since, p.reason
            ))),
        }
    }

    /// GET /v1/panic
    pub fn panic_status(&self) -> PanicStatus {
        match &*lock(&self.panic) {
            None => PanicStatus::default(),
            Some(p) => PanicStatus {
                panicked: true,
                reason: Some(p.reason.clone()),
                since: Some(p.since.clone()),
                ..Default::default()
            },
        }
    }

    /// Our islands whose container runs, asked of the engine itself (the watcher's cache may
    /// be behind, or never synced), plus any the cache knows of.
    fn running_now(&self) -> Vec<String> {
        let ours = self.names();
        let mut v: Vec<String> = match self.runtime.list_islands() {
            Ok(list) => list
                .into_iter()
                .filter(|(n, st)| {
                    crate::runtime::watch::map_status(st) == crate::runtime::ContainerState::Running
                        && ours.contains(n)
                })
                .map(|(n, _)| n)
                .collect(),
            Err(e) => {
                log::error!("panic: cannot list the engine's containers ({e}); stopping what the cache shows");
                Vec::new()
            }
        };
        v.extend(ours.into_iter().filter(|n| self.observed.running(n)));
        v.sort();
        v.dedup();
        v
    }

    /// Stop each of `names` side by side, at most `PARALLEL` at once; how many stopped.
    fn stop_all(&self, names: &[String]) -> u64 {
        let stopped = std::sync::atomic::AtomicU64::new(0);
        side_by_side("panic-stop", names, |n| {
            self.expect_stop(n);
            match self.runtime.stop(n, STOP_GRACE) {
                Ok(()) => {
                    self.observed
                        .set_state(n, crate::runtime::ContainerState::Exited);
                    stopped.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Err(e) => log::error!("panic: cannot stop island {n}: {e}"),
            }
        });
        stopped.into_inner()
    }

    /// POST /v1/panic: the switch first (durably), then every session revoked and every
    /// running island stopped.
    pub fn engage_panic(&self, reason: &str) -> Result<PanicStatus> {
        if reason.chars().count() > 1024 || reason.chars().any(|c| c.is_control()) {
            return Err(Error::bad(
                "reason must be at most 1024 characters with no control characters",
            ));
        }
        let state = {
            let mut p = lock(&self.panic);
            p.get_or_insert_with(|| PanicState {
                reason: if reason.is_empty() {
                    "no reason given".into()
                } else {
                    reason.to_string()
                },
                since: util::now_rfc3339(),
            })
            .clone()
        };
        store::write_json(&self.panic_path(), &state)
            .map_err(|e| Error::Internal(format!("cannot write the PANIC file: {e}")))?;
        let revoked = self.hub.revoke_where(|_| true);
        let running = self.running_now();
        let stopped = self.stop_all(&running);
        log::warn!(
            "PANIC engaged ({}): {stopped} island(s) stopped, {revoked} session(s) revoked",
            state.reason
        );
        self.events.publish(
            EventType::DaemonPanicEngaged,
            "",
            "",
            serde_json::json!({ "reason": state.reason, "stopped": stopped }),
        );
        Ok(PanicStatus {
            panicked: true,
            reason: Some(state.reason),
            since: Some(state.since),
            stopped: Some(stopped),
        })
    }

    /// DELETE /v1/panic: clear the switch and wake the islands that should be running.
    pub fn clear_panic(&self) -> Result<PanicStatus> {
        if lock(&self.panic).is_none() {
            return Ok(PanicStatus::default());
        }
        store::remove_file(&self.panic_path())
            .map_err(|e| Error::Internal(format!("cannot remove the PANIC file: {e}")))?;
        *lock(&self.panic) = None;
        let wake: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| {
                self.record(n)
                    .is_ok_and(|r| r.state == DesiredState::Running && r.provisioned)
            })
            .collect();
        side_by_side("panic-wake", &wake, |n| {
            if let Err(e) = self.wake(n) {
                log::error!("panic cleared: cannot wake island {n}: {e}");
            }
        });
        log::warn!("PANIC cleared: {} island(s) woken", wake.len());
        self.events.publish(
            EventType::DaemonPanicCleared,
            "",
            "",
            serde_json::json!({ "woken": wake.len() }),
        );
        Ok(PanicStatus::default())
    }

    /// At start with the switch engaged: anything of ours found running is stopped.
    pub(super) fn adopt_panicked(&self) {
        let running = self.running_now();
        let n = self.stop_all(&running);
        log::warn!("panic switch engaged: adoption started nothing and stopped {n} island(s)");
    }
}

/// Run `f` on each name, at most `PARALLEL` at once, on named scoped threads.
fn side_by_side(name: &str, names: &[String], f: impl Fn(&str) + Sync) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(names.len()) {
            let spawned = std::thread::Builder::new()
                .name(name.into())
                .spawn_scoped(s, || loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(n) = names.get(k) else { return };
                    f(n);
                });
            if let Err(e) = spawned {
                log::error!("cannot start a {name} thread: {e}");
            }
        }
    });
    // Should no thread have started, do the work here rather than not at all.
    let k = next.load(std::sync::atomic::Ordering::SeqCst);
    for n in names.iter().skip(k) {
        f(n);
    }
}
