//! dejima panic [--reason R] | dejima panic clear | dejima panic status

use argh::FromArgs;

use super::{print_json, Out};
use crate::api::{PanicRequest, PanicStatus};
use crate::client::{Body, Client};

/// stop every island and revoke every session now; nothing starts until cleared (owner only)
#[derive(FromArgs)]
#[argh(subcommand, name = "panic")]
pub struct PanicCmd {
    /// why (kept with the switch and shown by status)
    #[argh(option, default = "String::new()")]
    reason: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
    #[argh(subcommand)]
    cmd: Option<PanicSub>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum PanicSub {
    Clear(Clear),
    Status(Status),
}

/// clear the panic switch; islands that should run are woken
#[derive(FromArgs)]
#[argh(subcommand, name = "clear")]
struct Clear {}

/// whether the panic switch is engaged, since when and why
#[derive(FromArgs)]
#[argh(subcommand, name = "status")]
struct Status {}

fn show(p: &PanicStatus, json: bool) {
    if json {
        print_json(p);
    } else if p.panicked {
        println!(
            "PANIC engaged since {}: {}{}",
            p.since.as_deref().unwrap_or("?"),
            p.reason.as_deref().unwrap_or(""),
            p.stopped
                .map(|n| format!(" ({n} island(s) stopped)"))
                .unwrap_or_default()
        );
    } else {
        println!("panic switch clear");
    }
}

pub fn panic(c: &Client, a: PanicCmd) -> Out {
    let p: PanicStatus = match a.cmd {
        None => c.send_json(
            "POST",
            "/v1/panic",
            &PanicRequest {
                reason: a.reason.clone(),
            },
        )?,
        Some(PanicSub::Clear(_)) => c.call("DELETE", "/v1/panic", Body::None)?.json()?,
        Some(PanicSub::Status(_)) => c.get_json("/v1/panic")?,
    };
    show(&p, a.json);
    Ok(())
}
