//! dejima update [--apply] [--force]: the daemon's self-update.

use argh::FromArgs;
use serde_json::{json, Value};

use super::{print_json, Out};
use crate::client::Client;

/// see whether a newer dejimad exists, or put it in place (owner)
#[derive(FromArgs)]
#[argh(subcommand, name = "update")]
pub struct Update {
    /// install it (the daemon then restarts; islands keep running)
    #[argh(switch)]
    apply: bool,
    /// even with clients attached (they are told to reconnect)
    #[argh(switch)]
    force: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

pub fn update(c: &Client, a: Update) -> Out {
    let v: Value = c.send_json(
        "POST",
        "/v1/admin/update",
        &json!({"execute": a.apply, "force": a.force}),
    )?;
    if a.json {
        print_json(&v);
        return Ok(());
    }
    println!(
        "{} mode: running {}, latest {}{}",
        v["mode"].as_str().unwrap_or(""),
        v["current"].as_str().unwrap_or(""),
        v["latest"].as_str().unwrap_or(""),
        if v["update_available"] == true {
            " (newer)"
        } else {
            " (up to date)"
        }
    );
    if let Some(n) = v["note"].as_str() {
        println!("{n}");
    }
    for c in v["attached"].as_array().into_iter().flatten() {
        println!("  attached: {}", c.as_str().unwrap_or(""));
    }
    Ok(())
}
