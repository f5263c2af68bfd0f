//! `dejimad`'s life: state directory, engine watchers, adoption, listeners, signals, and an
//! ordered shutdown (stop accepting, let requests finish within a bound, leave islands running).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

use crate::events::webhooks::Webhooks;
use crate::events::Bus;
use crate::http::server::{self, Allow, InFlight, Listener};
use crate::http::App;
use crate::island::{Config, Islands};
use crate::runtime::{self, Engine, Observed};
use crate::session::terminals::Terminals;
use crate::session::Hub;
use crate::store::Home;

/// How long in-flight requests get to finish on shutdown.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--tcp` address (`:7273`, `127.0.0.1:7273`).
    pub tcp: Option<String>,
    /// Extra CIDRs the TCP listener accepts.
    pub allow_cidr: Vec<String>,
    /// Default island image.
    pub image: String,
    /// Serve host terminals (`/v1/terminals`).
    pub host_terminals: bool,
}

/// Run until SIGTERM or SIGINT. Errors are start-up failures.
pub fn run(opts: Options) -> Result<(), String> {
    // Block the shutdown signals in every thread (they inherit the mask); one thread waits
    // for them with sigwait, so no handler ever runs on an arbitrary thread.
    let mut sigs = SigSet::empty();
    sigs.add(Signal::SIGTERM);
    sigs.add(Signal::SIGINT);
    sigs.thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    // A client that hangs up mid-response must be a write error, not a dead daemon.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn);
    }

    let home = Home::from_env();
    home.ensure()
        .map_err(|e| format!("cannot prepare {}: {e}", home.root.display()))?;
    let allow = Allow::new(&opts.allow_cidr)?;
    let unix = server::bind_unix(&home.socket())
        .map_err(|e| format!("cannot listen on {}: {e}", home.socket().display()))?;
    let tcp = match &opts.tcp {
        Some(a) => {
            let addr = server::parse_tcp_addr(a)?;
            let l = std::net::TcpListener::bind(addr)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            log::info!(
                "listening on tcp {addr} (loopback, tailnet{})",
                if opts.allow_cidr.is_empty() {
                    String::new()
                } else {
                    format!(", {}", opts.allow_cidr.join(", "))
                }
            );
            Some(l)
        }
        None => None,
    };
    log::info!("listening on {}", home.socket().display());

    let engine = Engine::from_env();
    let observed = Observed::new();
    runtime::watch::start(engine.clone(), observed.clone())
        .map_err(|e| format!("cannot start engine watchers: {e}"))?;
    let events = Bus::new();
    let webhooks = Webhooks::start(&home).map_err(|e| format!("cannot start webhooks: {e}"))?;
    {
        let w = webhooks.clone();
        events.add_sink(Box::new(move |e| w.enqueue(e)));
    }
    let hub = Hub::new(Some(events.clone()));
    let islands = Arc::new(Islands::new(
        home.clone(),
        engine,
        observed.clone(),
        Config {
            default_image: opts.image.clone(),
        },
        hub.clone(),
        events.clone(),
    ));
    {
        // The watcher outlives nothing it points at: a weak link, so no cycle.
        let weak = Arc::downgrade(&islands);
        observed.set_hook(Box::new(move |island, obs, action| {
            if let Some(i) = weak.upgrade() {
                i.on_container(island, obs, action);
            }
        }));
    }
    let terminals = Arc::new(Terminals::new(opts.host_terminals, home.clone(), hub));
    let n = islands
        .load()
        .map_err(|e| format!("cannot read island records: {e}"))?;
    log::info!("{n} island record(s) loaded");

    // Adopt once the engine has been listed, so `missing` means missing.
    {
        let islands = islands.clone();
        thread::Builder::new()
            .name("adopt".into())
            .spawn(move || {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while !islands.observed.synced() && std::time::Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(50));
                }
                if !islands.observed.synced() {
                    log::warn!("engine not reachable yet; adopting anyway");
                }
                islands.adopt_all();
            })
            .map_err(|e| e.to_string())?;
    }

    let stopping = Arc::new(AtomicBool::new(false));
    let app = Arc::new(App {
        islands,
        terminals,
        events,
        webhooks,
        stopping: stopping.clone(),
    });
    let inflight = Arc::new(InFlight::default());
    let mut listeners = Vec::new();
    let mut spawn = |name: &str, l: Listener| -> Result<(), String> {
        let (app, inflight) = (app.clone(), inflight.clone());
        let h = thread::Builder::new()
            .name(name.into())
            .spawn(move || server::serve(l, app, inflight, None))
            .map_err(|e| e.to_string())?;
        listeners.push(h);
        Ok(())
    };
    spawn("listen-unix", Listener::Unix(unix))?;
    if let Some(l) = tcp {
        spawn("listen-tcp", Listener::Tcp(l, allow))?;
    }

    {
        let (app, inflight) = (app.clone(), inflight.clone());
        thread::Builder::new()
            .name("island-sockets".into())
            .spawn(move || island_sockets(&app, &inflight))
            .map_err(|e| e.to_string())?;
    }

    let sig = sigs.wait().map_err(|e| format!("sigwait: {e}"))?;
    log::info!("{sig:?}: shutting down");
    stopping.store(true, Ordering::SeqCst);
    // The listeners notice within one poll tick; joining them means nothing new is accepted.
    for h in listeners {
        let _ = h.join();
    }
    let _ = std::fs::remove_file(home.socket());
    if !inflight.wait_idle(DRAIN) {
        log::warn!(
            "{} request(s) still running after {DRAIN:?}; exiting anyway",
            inflight.count()
        );
    }
    log::info!("stopped; islands keep running");
    Ok(())
}

/// Keep one listener per island on `islands/<name>/run/dejimad.sock`, the socket its
/// container sees at /run/dejima/dejimad.sock. Requests there must carry that island's
/// token. The operator socket is never mounted into an island.
fn island_sockets(app: &Arc<App>, inflight: &Arc<InFlight>) {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;
    let mut live: HashMap<String, Arc<AtomicBool>> = HashMap::new();
    while !app.stopping.load(Ordering::SeqCst) {
        let names = app.islands.names();
        for n in &names {
            if live.contains_key(n) {
                continue;
            }
            let run = app.islands.home.island_dir(n).join("run");
            let path = run.join("dejimad.sock");
            let bound = std::fs::create_dir_all(&run)
                .and_then(|_| {
                    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755))
                })
                .and_then(|_| {
                    let _ = std::fs::remove_file(&path);
                    std::os::unix::net::UnixListener::bind(&path)
                })
                // The agent user in the island must be able to connect; only that island
                // mounts this directory, and the token is still required.
                .and_then(|l| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
                        .map(|_| l)
                });
            match bound {
                Ok(l) => {
                    let stop = Arc::new(AtomicBool::new(false));
                    let (app2, inflight2, stop2, name) =
                        (app.clone(), inflight.clone(), stop.clone(), n.clone());
                    let spawned =
                        thread::Builder::new()
                            .name(format!("listen-{n}"))
                            .spawn(move || {
                                server::serve(
                                    Listener::Island(l, name),
                                    app2,
                                    inflight2,
                                    Some(stop2),
                                )
                            });
                    match spawned {
                        Ok(_) => {
                            live.insert(n.clone(), stop);
                        }
                        Err(e) => log::warn!("cannot serve island {n}'s socket: {e}"),
                    }
                }
                Err(e) => log::warn!("cannot bind {}: {e}", path.display()),
            }
        }
        live.retain(|n, stop| {
            let keep = names.contains(n);
            if !keep {
                stop.store(true, Ordering::SeqCst);
            }
            keep
        });
        app.islands.wait_for_change(Duration::from_millis(500));
    }
}
