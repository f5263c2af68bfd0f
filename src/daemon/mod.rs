//! `dejimad`'s life: state directory, engine watchers, adoption, listeners, signals, and an
//! ordered shutdown (stop accepting, let requests finish within a bound, leave islands running).

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

use crate::events::webhooks::Webhooks;
use crate::events::Bus;
use crate::http::server::{self, Allow, InFlight, Limits, Listener};
use crate::http::App;
use crate::island::{Config, Islands};
use crate::latch::Latch;
use crate::runtime::{self, Engine, Observed};
use crate::session::terminals::Terminals;
use crate::session::Hub;
use crate::store::Home;

/// How long in-flight requests get to finish on shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// Every setting the daemon reads, from its flags or its environment, in one place: `main`
/// fills it (documented in `dejimad --help` and dejimad(8)) and it is passed down from here.
/// `--runtime kubernetes` and its flags.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    pub kubectl: String,
    pub context: Option<String>,
    pub namespace: String,
    pub storage_class: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// State directory (`$DEJIMA_HOME`, default `~/.dejima`).
    pub home: std::path::PathBuf,
    /// `--tcp` address (`:7273`, `127.0.0.1:7273`).
    pub tcp: Option<String>,
    /// Extra CIDRs the TCP listener accepts.
    pub allow_cidr: Vec<String>,
    /// Default island image.
    pub image: String,
    /// Base for island image builds (`$DEJIMA_BASE_IMAGE`); empty: the bootstrap base if
    /// present, else the registry's Debian.
    pub base_image: String,
    /// Serve host terminals (`/v1/terminals`).
    pub host_terminals: bool,
    /// Connections, head, idle and body deadlines of the operator listeners.
    pub limits: Limits,
    /// The docker CLI (`$DEJIMA_DOCKER`).
    pub docker: String,
    /// Extra labels on every engine object (`$DEJIMA_LABELS`, `k=v,k2=v2`).
    pub labels: Vec<(String, String)>,
    /// Islands on a Kubernetes cluster instead of the Docker engine (`--runtime kubernetes`).
    pub kube: Option<KubeOptions>,
    /// Longest one engine call may take before the engine counts as unreachable
    /// (`$DEJIMA_ENGINE_TIMEOUT`, seconds).
    pub engine_timeout: Duration,
    /// Island networks' addresses: a range the daemon cuts into one small subnet per island.
    pub subnets: crate::runtime::SubnetPool,
    /// Webhook retry policy (`$DEJIMA_WEBHOOK_GIVE_UP_SECS`, `$DEJIMA_WEBHOOK_MAX_BACKOFF_SECS`).
    pub webhooks: crate::events::webhooks::Policy,
    /// TCP requests need an operator token (`--require-token`).
    pub require_token: bool,
    /// Host names browsers may use besides IP addresses, localhost and *.ts.net (`--web-host`).
    pub web_hosts: Vec<String>,
    /// Key file for the audit ledger's HMAC chain (`--audit-key`); None: plain SHA-256.
    pub audit_key: Option<std::path::PathBuf>,
    /// Where updates come from, and where the binaries are.
    pub update: crate::update::Config,
    /// Record every island's agent sessions (`--record`).
    pub record_all: bool,
    /// Recordings one island may hold, in MiB (`--record-max-mb`).
    pub record_max_mb: u64,
}

/// Connections one island's own socket may hold (its agents' hooks and CLIs).
const ISLAND_SOCKET_CONNECTIONS: usize = 64;

/// Raise the open-file limit to its hard ceiling: every attached client holds a socket, a PTY
/// and pipes, and a soft limit of 1024 would refuse clients long before memory runs out.
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => log::info!("open-file limit raised from {soft} to {hard}"),
            Err(e) => log::warn!("cannot raise the open-file limit from {soft}: {e}"),
        },
        Ok((soft, _)) => log::debug!("open-file limit {soft}"),
        Err(e) => log::warn!("cannot read the open-file limit: {e}"),
    }
}

/// Hold `$DEJIMA_HOME/dejimad.lock` for the life of the process, so a second daemon on the
/// same home stops before it touches the socket (two starting at once could otherwise both
/// remove and bind it). The lock dies with the process, however it dies.
fn take_home_lock(home: &Home) -> Result<std::fs::File, String> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let path = home.root.join("dejimad.lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        return Err(format!(
            "another dejimad (pid {}) is already running on {}; stop it first, or give this one its own DEJIMA_HOME",
            pid.trim(),
            home.root.display()
        ));
    }
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = writeln!(f, "{}", std::process::id());
    Ok(f)
}

/// Run until SIGTERM or SIGINT. Errors are start-up failures.
static RESTART: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ask the daemon to stop as for SIGTERM, then run again (the binary may be new): main
/// re-executes it once the shutdown is done.
pub fn request_restart() {
    RESTART.store(true, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: kill with our own pid and a plain signal; the main thread sigwaits for it.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGTERM);
    }
}

/// Whether this shutdown ends in a re-execution.
pub fn restarting() -> bool {
    RESTART.load(std::sync::atomic::Ordering::SeqCst)
}

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
    raise_nofile();

    let home = Home::new(&opts.home);
    home.ensure()
        .map_err(|e| format!("cannot prepare {}: {e}", home.root.display()))?;
    let _lock = take_home_lock(&home)?;
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
            if opts.require_token {
                log::info!("TCP requires an operator token (--require-token)");
            } else {
                log::warn!(
                    "TCP trusts every loopback/tailnet peer as the owner, without a token; \
                     start with --require-token and create tokens (dejima token create) to change that"
                );
            }
            Some(l)
        }
        None => None,
    };
    log::info!("listening on {}", home.socket().display());

    let shutdown = Arc::new(Latch::new().map_err(|e| format!("cannot make a pipe: {e}"))?);
    let engine = Engine::new(
        &opts.docker,
        opts.labels.clone(),
        opts.engine_timeout,
        &home.root.join("tmp"),
    );
    let observed = Observed::new();
    let place: Arc<dyn runtime::Runtime> = match &opts.kube {
        None => {
            runtime::watch::start(engine.clone(), observed.clone())
                .map_err(|e| format!("cannot start engine watchers: {e}"))?;
            Arc::new(engine.clone())
        }
        Some(k) => {
            let kube = runtime::kubernetes::Kube::new(
                &k.kubectl,
                k.context.clone(),
                runtime::kubernetes::Placement {
                    namespace: k.namespace.clone(),
                    storage_class: k.storage_class.clone(),
                    labels: opts.labels.clone(),
                    ..Default::default()
                },
                opts.engine_timeout,
            );
            kube.prepare().map_err(|e| {
                format!(
                    "cannot reach the cluster's namespace {:?}: {e}",
                    k.namespace
                )
            })?;
            runtime::kubernetes::watch(kube.clone(), observed.clone())
                .map_err(|e| format!("cannot start the pod watcher: {e}"))?;
            log::info!("islands run on Kubernetes, namespace {}", k.namespace);
            Arc::new(kube)
        }
    };
    for (feature, what) in place.unsupported() {
        log::warn!("the {} runtime cannot do {feature}: {what}", place.kind());
    }
    let events = Bus::new();
    let webhooks = Webhooks::start(&home, opts.webhooks.clone())
        .map_err(|e| format!("cannot start webhooks: {e}"))?;
    {
        let w = webhooks.clone();
        events.add_sink(Box::new(move |e| w.enqueue(e)));
    }
    {
        // Live event streams end at once on shutdown: their queues are closed.
        let ev = events.clone();
        shutdown.on_trigger(move || ev.close_streams());
    }
    let hub = Hub::new(Some(events.clone()));
    let creds = Arc::new(
        crate::creds::Creds::open(home.root.join("credentials"))
            .map_err(|e| format!("cannot read the credentials store: {e}"))?,
    );
    let islands = Arc::new(Islands::new(
        home.clone(),
        place,
        engine,
        observed.clone(),
        Config {
            default_image: opts.image.clone(),
            base_image: opts.base_image.clone(),
            subnets: opts.subnets.clone(),
            record_all: opts.record_all,
            record_max: opts.record_max_mb << 20,
        },
        hub.clone(),
        events.clone(),
        creds,
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
    {
        // The island socket supervisor waits for registry changes; shutdown is one.
        let weak = Arc::downgrade(&islands);
        shutdown.on_trigger(move || {
            if let Some(i) = weak.upgrade() {
                i.wake_waiters();
            }
        });
    }
    islands.load_panic();
    let terminals = Arc::new(Terminals::new(opts.host_terminals, home.clone(), hub));
    let n = islands
        .load()
        .map_err(|e| format!("cannot read island records: {e}"))?;
    log::info!("{n} island record(s) loaded");

    if islands.runtime.relays_socket() {
        islands
            .ensure_relay_key()
            .map_err(|e| format!("cannot make the island socket relay's key: {e}"))?;
    }

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

    // Where the runtime cannot mount an island's socket, a relay per running island.
    if islands.runtime.relays_socket() {
        let (islands, shutdown) = (islands.clone(), shutdown.clone());
        thread::Builder::new()
            .name("island-relays".into())
            .spawn(move || crate::island::relay::run(islands, shutdown))
            .map_err(|e| e.to_string())?;
    }

    // Recorders follow the islands that record and the agent sessions that run.
    {
        let (islands, shutdown) = (islands.clone(), shutdown.clone());
        thread::Builder::new()
            .name("recorder-sweep".into())
            .spawn(move || {
                while !shutdown.wait_timeout(Duration::from_secs(2)) {
                    islands.sweep_recorders();
                }
            })
            .map_err(|e| e.to_string())?;
    }

    // Agent states follow their programs without a request having to ask: a bounded sweep
    // re-observes each running island whose last look is older than 10 s, one island per
    // 100 ms at most (so a host of 500 islands costs at most ten small execs a second).
    {
        let (islands, shutdown) = (islands.clone(), shutdown.clone());
        thread::Builder::new()
            .name("agent-sweep".into())
            .spawn(move || {
                while !shutdown.wait_timeout(Duration::from_secs(2)) {
                    islands.sweep_agents(
                        Duration::from_secs(10),
                        Duration::from_millis(100),
                        &shutdown,
                    );
                }
            })
            .map_err(|e| e.to_string())?;
    }

    let tokens =
        Arc::new(crate::auth::Tokens::load(&home).map_err(|e| format!("cannot read tokens: {e}"))?);
    let audit_key = match &opts.audit_key {
        None => None,
        Some(p) => {
            let k = std::fs::read(p)
                .map_err(|e| format!("cannot read --audit-key {}: {e}", p.display()))?;
            if k.len() < 16 {
                return Err(format!("--audit-key {} holds under 16 bytes", p.display()));
            }
            Some(k)
        }
    };
    let audit = crate::audit::Ledger::open(&home.root.join("audit"), audit_key)
        .map_err(|e| format!("cannot open the audit ledger: {e}"))?;
    {
        // Lifecycle transitions and the panic switch, as the bus announces them.
        use crate::api::EventType as E;
        let a = audit.clone();
        events.add_sink(Box::new(move |e| {
            let lifecycle = matches!(
                e.kind,
                E::IslandCreated
                    | E::IslandRunning
                    | E::IslandHibernated
                    | E::IslandWoken
                    | E::IslandReset
                    | E::IslandPurged
                    | E::ContainerCrashed
                    | E::DaemonPanicEngaged
                    | E::DaemonPanicCleared
            );
            if lifecycle {
                a.append(crate::audit::Record {
                    kind: e.kind.to_string(),
                    island: (!e.island.is_empty()).then(|| e.island.clone()),
                    actor: "daemon".into(),
                    allowed: true,
                    detail: (!e.payload.is_null() && e.payload != serde_json::json!({}))
                        .then(|| e.payload.clone()),
                    ..Default::default()
                });
            }
        }));
    }
    let brokers = Arc::new(crate::broker::Brokers::new(islands.clone(), audit.clone()));
    let app = Arc::new(App {
        brokers,
        islands,
        terminals,
        events,
        webhooks,
        shutdown: shutdown.clone(),
        tokens,
        audit: audit.clone(),
        require_token: opts.require_token,
        web_hosts: opts.web_hosts.clone(),
        logins: crate::auth::Logins::default(),
        update: opts.update.clone(),
    });
    let inflight = Arc::new(InFlight::default());
    let mut listeners = Vec::new();
    let mut spawn = |name: &str, l: Listener| -> Result<(), String> {
        let (app, inflight, limits) = (app.clone(), inflight.clone(), opts.limits.clone());
        let h = thread::Builder::new()
            .name(name.into())
            .spawn(move || server::serve(l, app, inflight, limits, None))
            .map_err(|e| e.to_string())?;
        listeners.push(h);
        Ok(())
    };
    spawn("listen-unix", Listener::Unix(unix))?;
    if let Some(l) = tcp {
        spawn("listen-tcp", Listener::Tcp(l, allow))?;
    }

    {
        let (app, inflight, limits) = (app.clone(), inflight.clone(), opts.limits.clone());
        thread::Builder::new()
            .name("island-sockets".into())
            .spawn(move || island_sockets(&app, &inflight, &limits))
            .map_err(|e| e.to_string())?;
    }

    let sig = sigs.wait().map_err(|e| format!("sigwait: {e}"))?;
    log::info!("{sig:?}: shutting down");
    shutdown.trigger();
    // The listeners wake on the shutdown pipe; joining them means nothing new is accepted.
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
    if let Err(e) = audit.sync() {
        log::error!("audit: cannot sync the ledger at shutdown: {e}");
    }
    // Events published up to here (the last detaches among them) reach their webhooks.
    if !app.webhooks.close(Duration::from_secs(5)) {
        log::warn!("webhook deliveries still being written after 5 s; exiting anyway");
    }
    log::info!("stopped; islands keep running");
    Ok(())
}

/// Keep one listener per island on `islands/<name>/run/dejimad.sock`, the socket its
/// container sees at /run/dejima/dejimad.sock. Requests there must carry that island's
/// token. The operator socket is never mounted into an island.
fn island_sockets(app: &Arc<App>, inflight: &Arc<InFlight>, limits: &Limits) {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;
    let limits = Limits {
        max_connections: ISLAND_SOCKET_CONNECTIONS,
        ..limits.clone()
    };
    use std::os::unix::fs::MetadataExt;
    // Each live listener with the inode of the socket file it serves: a purged and recreated
    // island of the same name has a new file (its directory was removed), so a new listener.
    let mut live: HashMap<String, (Arc<Latch>, u64)> = HashMap::new();
    while !app.shutdown.is_set() {
        let seen = app.islands.generation();
        let names = app.islands.names();
        let socket = |n: &str| app.islands.home.island_dir(n).join("run/dejimad.sock");
        live.retain(|n, (stop, ino)| {
            let current = std::fs::metadata(socket(n)).map(|m| m.ino()).ok();
            let keep = names.contains(n) && current == Some(*ino);
            if !keep {
                stop.trigger();
            }
            keep
        });
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
                .and_then(|l| crate::store::chmod_nofollow(&path, 0o666).map(|_| l));
            let stop = match (bound, Latch::new()) {
                (Ok(l), Ok(stop)) => {
                    let stop = Arc::new(stop);
                    let (app2, inflight2, stop2, name, limits) = (
                        app.clone(),
                        inflight.clone(),
                        stop.clone(),
                        n.clone(),
                        limits.clone(),
                    );
                    let spawned =
                        thread::Builder::new()
                            .name(format!("listen-{n}"))
                            .spawn(move || {
                                server::serve(
                                    Listener::Island(l, name),
                                    app2,
                                    inflight2,
                                    limits,
                                    Some(stop2),
                                )
                            });
                    match spawned {
                        Ok(_) => Some(stop),
                        Err(e) => {
                            log::warn!("cannot serve island {n}'s socket: {e}");
                            None
                        }
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    log::warn!("cannot bind {}: {e}", path.display());
                    None
                }
            };
            if let Some(stop) = stop {
                match std::fs::metadata(&path) {
                    Ok(m) => {
                        live.insert(n.clone(), (stop, m.ino()));
                    }
                    // Removed already (a purge in between): stop it; the next round sees.
                    Err(_) => stop.trigger(),
                }
            }
        }
        // Woken by an island added or removed, or by shutdown; the timeout retries binds
        // that failed.
        app.islands.wait_for_change(seen, Duration::from_secs(30));
    }
}
