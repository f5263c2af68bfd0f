//! `dejima`: the command-line client. Each subcommand is a thin call to the API; tables for
//! people, `--json` for scripts, errors on stderr with a non-zero exit.

mod access;
mod agents;
pub mod attach;
mod audit;
mod brokers;
mod creds;
mod doctor;
mod events;
mod image;
mod islands;
mod live;
mod overview;
mod panic;
mod service;
mod sessions;
mod ssh;
pub mod terms;
mod tokens;
mod ui;
mod update;

use argh::FromArgs;
use serde::Serialize;

use crate::client::{Client, ClientError};

/// dejima: run coding agents in isolated Docker islands (talks to dejimad over
/// $DEJIMA_HOME/dejimad.sock, or TCP when DEJIMA_HOST=host:port).
#[derive(FromArgs)]
pub struct Cli {
    /// print the version and exit
    #[argh(switch)]
    pub version: bool,
    #[argh(subcommand)]
    pub cmd: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum Command {
    Ls(islands::Ls),
    Create(islands::Create),
    Init(islands::Init),
    Status(islands::Status),
    Hibernate(islands::Hibernate),
    Wake(islands::Wake),
    Reset(islands::Reset),
    Upgrade(islands::Upgrade),
    Reclone(islands::Reclone),
    Clone(islands::CloneCmd),
    Purge(islands::Purge),
    Title(islands::Title),
    Resources(islands::ResourcesCmd),
    Exec(access::Exec),
    Cp(access::Cp),
    Logs(access::Logs),
    Overview(overview::OverviewCmd),
    Image(image::ImageCmd),
    Attach(attach::Attach),
    Prompt(live::Prompt),
    Screen(live::Screen),
    Upload(live::Upload),
    Recordings(live::RecordingsCmd),
    Agent(agents::AgentCmd),
    Term(terms::TermCmd),
    Clients(sessions::Clients),
    LogoutAll(sessions::LogoutAll),
    Events(events::Events),
    Webhook(events::WebhookCmd),
    Token(tokens::TokenCmd),
    Panic(panic::PanicCmd),
    Audit(audit::AuditCmd),
    Creds(creds::CredsCmd),
    Port(brokers::PortCmd),
    Cap(brokers::CapCmd),
    Mcp(brokers::McpCmd),
    Spawn(brokers::SpawnCmd),
    Ssh(ssh::SshCmd),
    SshProxy(ssh::SshProxy),
    SshKey(ssh::SshKeyCmd),
    Service(service::ServiceCmd),
    Doctor(doctor::Doctor),
    Update(update::Update),
    Ui(ui::Ui),
}

/// What a command failed with.
pub struct Failure {
    pub message: String,
    pub code: i32,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure {
            message: e.to_string(),
            code: 1,
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure {
            message: e.to_string(),
            code: 1,
        }
    }
}

pub fn fail(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        code: 1,
    }
}

pub type Out = Result<(), Failure>;

/// Run a parsed command line; the exit code.
pub fn main(cli: Cli) -> i32 {
    if cli.version {
        println!("dejima {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let Some(cmd) = cli.cmd else {
        eprintln!("dejima: a subcommand is required; see `dejima --help`");
        return 2;
    };
    let c = Client::from_env();
    let r = match cmd {
        Command::Ls(a) => islands::ls(&c, a),
        Command::Create(a) => islands::create(&c, a),
        Command::Init(a) => islands::init(&c, a),
        Command::Status(a) => islands::status(&c, a),
        Command::Hibernate(a) => islands::lifecycle(&c, &a.island, "hibernate", a.json),
        Command::Wake(a) => islands::lifecycle(&c, &a.island, "wake", a.json),
        Command::Reset(a) => islands::lifecycle(&c, &a.island, "reset", a.json),
        Command::Upgrade(a) => islands::lifecycle(&c, &a.island, "upgrade", a.json),
        Command::Reclone(a) => islands::reclone(&c, a),
        Command::Clone(a) => islands::clone(&c, a),
        Command::Purge(a) => islands::purge(&c, a),
        Command::Title(a) => islands::title(&c, a),
        Command::Resources(a) => islands::resources(&c, a),
        Command::Exec(a) => access::exec(&c, a),
        Command::Cp(a) => access::cp(&c, a),
        Command::Logs(a) => access::logs(&c, a),
        Command::Overview(a) => overview::overview(&c, a),
        Command::Image(a) => image::image(&c, a),
        Command::Attach(a) => attach::attach(&c, a),
        Command::Prompt(a) => live::prompt(&c, a),
        Command::Screen(a) => live::screen(&c, a),
        Command::Upload(a) => live::upload(&c, a),
        Command::Recordings(a) => live::recordings(&c, a),
        Command::Agent(a) => agents::agent(&c, a),
        Command::Term(a) => terms::term(&c, a),
        Command::Clients(a) => sessions::clients(&c, a),
        Command::LogoutAll(a) => sessions::logout_all(&c, a),
        Command::Events(a) => events::events(&c, a),
        Command::Webhook(a) => events::webhook(&c, a),
        Command::Token(a) => tokens::token(&c, a),
        Command::Panic(a) => panic::panic(&c, a),
        Command::Audit(a) => audit::audit(&c, a),
        Command::Creds(a) => creds::creds(&c, a),
        Command::Port(a) => brokers::port(&c, a),
        Command::Cap(a) => brokers::cap(&c, a),
        Command::Mcp(a) => brokers::mcp(&c, a),
        Command::Spawn(a) => brokers::spawn(&c, a),
        Command::Ssh(a) => ssh::ssh(&c, a),
        Command::SshProxy(a) => ssh::ssh_proxy(&c, a),
        Command::SshKey(a) => ssh::ssh_key(&c, a),
        Command::Service(a) => service::service(a),
        Command::Doctor(a) => doctor::doctor(&c, a),
        Command::Update(a) => update::update(&c, a),
        Command::Ui(a) => ui::ui(&c, a),
    };
    match r {
        Ok(()) => 0,
        Err(f) => {
            // Empty when the command already said why (e.g. a session's closing line).
            if !f.message.is_empty() {
                eprintln!("dejima: {}", f.message);
            }
            f.code
        }
    }
}

pub fn print_json<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Print rows as aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let s: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == n {
                    c
                } else {
                    format!("{c:<width$}", width = w[i])
                }
            })
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// Bytes as a short human size.
pub fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", U[i])
    }
}
