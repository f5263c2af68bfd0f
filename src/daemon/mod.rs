//! `dejimad`'s life: state directory, engine watchers, adoption, listeners, signals, and an
//! ordered shutdown (stop accepting, let requests finish within a bound, leave islands running).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

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
    let hub = Hub::new();
    let islands = Arc::new(Islands::new(
        home.clone(),
        engine,
        observed.clone(),
        Config {
            default_image: opts.image.clone(),
        },
        hub.clone(),
    ));
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
        stopping: stopping.clone(),
    });
    let inflight = Arc::new(InFlight::default());
    let mut listeners = Vec::new();
    let mut spawn = |name: &str, l: Listener| -> Result<(), String> {
        let (app, inflight) = (app.clone(), inflight.clone());
        let h = thread::Builder::new()
            .name(name.into())
            .spawn(move || server::serve(l, app, inflight))
            .map_err(|e| e.to_string())?;
        listeners.push(h);
        Ok(())
    };
    spawn("listen-unix", Listener::Unix(unix))?;
    if let Some(l) = tcp {
        spawn("listen-tcp", Listener::Tcp(l, allow))?;
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
