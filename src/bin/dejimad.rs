use argh::FromArgs;

/// dejimad: the Dejima daemon. Serves the HTTP + websocket API on $DEJIMA_HOME/dejimad.sock
/// (mode 0600; DEJIMA_HOME defaults to ~/.dejima) and optionally on TCP. Log level: RUST_LOG
/// (error, warn, info, debug). Engine: DEJIMA_DOCKER (default docker).
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
    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

fn main() {
    let args: Args = argh::from_env();
    if args.version {
        println!("dejimad {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let opts = dejima::daemon::Options {
        tcp: args.tcp,
        allow_cidr: args.allow_cidr,
        image: args.image,
        host_terminals: args.host_terminals,
    };
    if let Err(e) = dejima::daemon::run(opts) {
        eprintln!("dejimad: {e}");
        std::process::exit(1);
    }
}
