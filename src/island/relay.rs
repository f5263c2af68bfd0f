//! The island's socket where the runtime cannot mount it (Kubernetes): one relay process per
//! running island (`Runtime::socket_relay`), kept alive by the `island-relays` thread, so the
//! island's `/run/dejima/dejimad.sock` reaches the daemon with the island's token rules as on
//! Docker (agent hooks, in-island `dejima-notify`, child islands).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Islands;
use crate::error::Result;
use crate::process;
use crate::runtime::Relay;

/// A relay that ended is started again no sooner than this.
const RESTART_AFTER: Duration = Duration::from_secs(2);

impl Islands {
    fn relay_key_path(&self) -> PathBuf {
        self.home.root.join("relay_ed25519")
    }

    /// Make the daemon's relay key (once, at start, before any island's keys are written:
    /// ssh-keygen never runs under the secrets lock). It may forward into each island's sshd.
    pub fn ensure_relay_key(&self) -> Result<()> {
        super::ssh::make_key(&self.relay_key_path(), "dejimad-relay")
    }

    /// The authorized_keys line of the relay key, for runtimes that relay (else None): it may
    /// forward and do nothing else.
    pub(super) fn relay_authorized_line(&self) -> Option<String> {
        if !self.runtime.relays_socket() {
            return None;
        }
        let public = std::fs::read_to_string(self.relay_key_path().with_extension("pub")).ok()?;
        Some(format!("restrict,port-forwarding {}", public.trim()))
    }

    /// One pass: a relay for every running island that has none (or whose relay ended), and
    /// none for the others.
    fn tend_relays(
        &self,
        live: &mut HashMap<String, process::Stream>,
        ended: &mut HashMap<String, Instant>,
    ) {
        let running: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| self.observed.running(n))
            .collect();
        live.retain(|n, child| {
            let keep = running.contains(n) && child.running();
            if !keep {
                child.kill();
                let err = child.stderr();
                if !err.trim().is_empty() {
                    log::info!("island {n}: socket relay ended: {}", err.trim());
                }
                ended.insert(n.clone(), Instant::now());
            }
            keep
        });
        // An island whose relay just ended waits a little (a pod still starting, a refusal).
        ended.retain(|_, at| at.elapsed() < RESTART_AFTER);
        let key = self.relay_key_path();
        for n in running {
            if live.contains_key(&n) || ended.contains_key(&n) {
                continue;
            }
            let dir = self.home.island_dir(&n);
            let host_key = self.secrets_dir(&n).join("ssh/host_ed25519_key.pub");
            let Ok(host_key) = std::fs::read_to_string(&host_key) else {
                continue;
            };
            let known = dir.join("relay_known_hosts");
            let alias = crate::runtime::container_name(&n);
            let line = format!("{alias} {}\n", host_key.trim());
            if crate::store::atomic_write_mode(&known, line.as_bytes(), 0o600).is_err() {
                continue;
            }
            let host_socket = dir.join("run/dejimad.sock");
            let relay = Relay {
                host_socket: &host_socket,
                key: &key,
                known_hosts: &known,
                proxy_script: &dir.join("relay_proxy"),
            };
            let Some(argv) = self.runtime.socket_relay(&n, &relay) else {
                continue;
            };
            match process::spawn_stream(&argv, true) {
                Ok(child) => {
                    log::debug!("island {n}: socket relay started");
                    live.insert(n, child);
                }
                Err(e) => log::warn!("island {n}: cannot start its socket relay: {e}"),
            }
        }
    }
}

/// The `island-relays` thread: every second, relays follow the running islands.
pub fn run(islands: std::sync::Arc<Islands>, shutdown: std::sync::Arc<crate::latch::Latch>) {
    let (mut live, mut ended) = (HashMap::new(), HashMap::new());
    while !shutdown.wait_timeout(Duration::from_secs(1)) {
        islands.tend_relays(&mut live, &mut ended);
    }
    for (_, mut child) in live {
        child.kill();
    }
}
