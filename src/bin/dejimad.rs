use std::time::Duration;

use argh::FromArgs;

/// dejimad: the Dejima daemon. Serves the HTTP + websocket API on $DEJIMA_HOME/dejimad.sock
/// (mode 0600; DEJIMA_HOME defaults to ~/.dejima) and optionally on TCP.
///
/// Environment: DEJIMA_HOME (state directory), DEJIMA_DOCKER (docker CLI, default docker),
/// DEJIMA_LABELS (k=v,... extra labels on every engine object), DEJIMA_ENGINE_TIMEOUT
/// (seconds one engine call may take, default 120), DEJIMA_BASE_IMAGE (base of island image
/// builds), DEJIMA_WEBHOOK_GIVE_UP_SECS (default 86400), DEJIMA_WEBHOOK_MAX_BACKOFF_SECS
/// (default 300), DEJIMA_UPDATE_KEY (as --update-key), DEJIMA_KUBECTL (kubectl CLI for
/// --runtime kubernetes, default kubectl), RUST_LOG (error, warn, info, debug).
#[derive(FromArgs)]
struct Args {
    /// also listen on TCP, e.g. :7273 or 127.0.0.1:7273 (loopback and tailnet peers only)
    #[argh(option)]
    tcp: Option<String>,
    /// let TCP peers from this CIDR connect too (repeatable)
    #[argh(option)]
    allow_cidr: Vec<String>,
    /// default island image (default dejima/island:latest)
    #[argh(option, default = "dejima::image::DEFAULT_IMAGE.to_string()")]
    image: String,
    /// serve host terminals (operator shells in tmux on this host) under /v1/terminals
    #[argh(switch)]
    host_terminals: bool,
    /// record every island's agent sessions as asciicast (not only islands with record: true)
    #[argh(switch)]
    record: bool,
    /// megabytes (MiB) of recordings one island may hold; the oldest are dropped past it (default 256)
    #[argh(option, default = "256")]
    record_max_mb: u64,
    /// refuse TCP requests (HTTP, websockets, event streams) without an operator token
    #[argh(switch)]
    require_token: bool,
    /// a host name browsers may reach the dashboard by, besides IP addresses, localhost and
    /// *.ts.net (repeatable); guards against DNS rebinding
    #[argh(option)]
    web_host: Vec<String>,
    /// chain the audit ledger with HMAC-SHA-256 under the key in this file (16+ bytes)
    #[argh(option)]
    audit_key: Option<String>,
    /// connections each listener (the socket, TCP) holds at once; more get 503 (default 512)
    #[argh(option, default = "512")]
    max_connections: usize,
    /// seconds a request head may take to arrive, from its first byte or the accept (default 10)
    #[argh(option, default = "10")]
    header_timeout: u64,
    /// seconds a keep-alive connection may wait for its next request (default 60)
    #[argh(option, default = "60")]
    idle_timeout: u64,
    /// seconds a request body may stall between reads (default 60)
    #[argh(option, default = "60")]
    body_timeout: u64,
    /// IPv4 range island networks are cut from, one subnet each (default 10.213.0.0/16)
    #[argh(option, default = "dejima::runtime::SubnetPool::DEFAULT.to_string()")]
    subnet_pool: String,
    /// send the daemon's own outbound HTTP (webhooks, GitHub) to loopback addresses only
    #[argh(switch)]
    egress_loopback: bool,
    /// prefix length of each island's subnet within --subnet-pool (default 28)
    #[argh(option, default = "dejima::runtime::SubnetPool::DEFAULT_SUBNET_BITS")]
    subnet_prefix: u8,
    /// self-update from this release index (JSON: version, and per platform an archive's
    /// url, sha256 and ed25519 signature); needs --update-key
    #[argh(option)]
    update_index: Option<String>,
    /// the base64 ed25519 public key release archives must be signed with (or
    /// $DEJIMA_UPDATE_KEY)
    #[argh(option)]
    update_key: Option<String>,
    /// self-update from this git checkout (fetch, fast-forward, cargo build --release); by
    /// default the checkout this binary was built in, when it runs from target/release
    #[argh(option)]
    update_source: Option<String>,
    /// where islands run: docker (this host's engine, the default) or kubernetes (a cluster
    /// through kubectl; $KUBECONFIG or ~/.kube/config, kubectl from $DEJIMA_KUBECTL)
    #[argh(option, default = "String::from(\"docker\")")]
    runtime: String,
    /// kubernetes: the kubeconfig context to use (default: its current context)
    #[argh(option)]
    kube_context: Option<String>,
    /// kubernetes: the namespace this daemon's islands live in, made when missing (default dejima)
    #[argh(option, default = "String::from(\"dejima\")")]
    namespace: String,
    /// kubernetes: the storage class of the islands' volume claims (default: the cluster's)
    #[argh(option)]
    storage_class: Option<String>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

/// Where updates come from: a release index, a checkout, or (from target/release) the
/// checkout this binary was built in.
fn update_config(args: &Args) -> Result<dejima::update::Config, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let install_dir = exe
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let key = args
        .update_key
        .clone()
        .or_else(|| std::env::var("DEJIMA_UPDATE_KEY").ok())
        .filter(|k| !k.is_empty());
    let mode = match (&args.update_index, &args.update_source) {
        (Some(_), Some(_)) => return Err("--update-index and --update-source are exclusive".into()),
        (Some(index), None) => {
            let key =
                key.ok_or("--update-index needs --update-key (the releases' ed25519 public key)")?;
            dejima::update::Mode::Release {
                index: index.clone(),
                key: dejima::update::parse_key(&key)?,
            }
        }
        (None, Some(dir)) => dejima::update::Mode::Source {
            checkout: std::path::PathBuf::from(dir),
        },
        (None, None) => {
            let checkout = install_dir.parent().and_then(|t| t.parent());
            match checkout {
                Some(c) if install_dir.ends_with("target/release") && c.join(".git").exists() => {
                    dejima::update::Mode::Source {
                        checkout: c.to_path_buf(),
                    }
                }
                _ => dejima::update::Mode::None,
            }
        }
    };
    Ok(dejima::update::Config { mode, install_dir })
}

/// A number of seconds from the environment, or `default`.
fn env_secs(name: &str, default: u64) -> Result<Duration, String> {
    match std::env::var(name) {
        Err(_) => Ok(Duration::from_secs(default)),
        Ok(v) => v
            .trim()
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{name}={v:?} is not a number of seconds")),
    }
}

fn options(args: Args) -> Result<dejima::daemon::Options, String> {
    let update = update_config(&args)?;
    let positive = |n: u64, flag: &str| {
        if n == 0 {
            Err(format!("--{flag} must be at least 1"))
        } else {
            Ok(Duration::from_secs(n))
        }
    };
    if args.max_connections == 0 {
        return Err("--max-connections must be at least 1".into());
    }
    let home = match std::env::var_os("DEJIMA_HOME") {
        Some(p) if !p.is_empty() => std::path::PathBuf::from(p),
        _ => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".dejima"),
    };
    Ok(dejima::daemon::Options {
        home,
        tcp: args.tcp,
        allow_cidr: args.allow_cidr,
        image: args.image,
        base_image: std::env::var("DEJIMA_BASE_IMAGE").unwrap_or_default(),
        host_terminals: args.host_terminals,
        record_all: args.record,
        record_max_mb: args.record_max_mb.max(1),
        limits: dejima::http::server::Limits {
            max_connections: args.max_connections,
            head_timeout: positive(args.header_timeout, "header-timeout")?,
            idle_timeout: positive(args.idle_timeout, "idle-timeout")?,
            body_timeout: positive(args.body_timeout, "body-timeout")?,
        },
        docker: std::env::var("DEJIMA_DOCKER").unwrap_or_else(|_| "docker".into()),
        labels: dejima::runtime::Engine::parse_labels(
            &std::env::var("DEJIMA_LABELS").unwrap_or_default(),
        ),
        engine_timeout: env_secs("DEJIMA_ENGINE_TIMEOUT", 120)?,
        kube: match args.runtime.as_str() {
            "docker" => {
                if args.kube_context.is_some() || args.storage_class.is_some() {
                    return Err(
                        "--kube-context and --storage-class need --runtime kubernetes".into(),
                    );
                }
                None
            }
            "kubernetes" => Some(dejima::daemon::KubeOptions {
                kubectl: std::env::var("DEJIMA_KUBECTL").unwrap_or_else(|_| "kubectl".into()),
                context: args.kube_context,
                namespace: args.namespace,
                storage_class: args.storage_class,
            }),
            other => return Err(format!("--runtime {other:?}: one of docker, kubernetes")),
        },
        subnets: dejima::runtime::SubnetPool::parse(&args.subnet_pool, args.subnet_prefix)?,
        webhooks: dejima::events::webhooks::Policy {
            give_up: env_secs("DEJIMA_WEBHOOK_GIVE_UP_SECS", 24 * 3600)?,
            max_backoff: env_secs("DEJIMA_WEBHOOK_MAX_BACKOFF_SECS", 300)?,
        },
        require_token: args.require_token,
        web_hosts: args.web_host,
        audit_key: args.audit_key.map(std::path::PathBuf::from),
        update,
    })
}

fn main() {
    // Kept for a restart after an update: the same path (now the new binary), same arguments.
    let exe = std::env::current_exe().ok();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let args: Args = argh::from_env();
    if args.version {
        println!("dejimad {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    if args.egress_loopback {
        dejima::egress::restrict_to_loopback();
    }
    let result = options(args).and_then(dejima::daemon::run);
    if let Err(e) = result {
        eprintln!("dejimad: {e}");
        std::process::exit(1);
    }
    if dejima::daemon::restarting() {
        if let Some(exe) = exe {
            use std::os::unix::process::CommandExt;
            log::info!("re-executing {}", exe.display());
            let err = std::process::Command::new(&exe).args(&argv).exec();
            eprintln!("dejimad: cannot re-execute {}: {err}", exe.display());
            std::process::exit(1);
        }
    }
}
