//! dejima doctor [--fix]: the daemon's checks of this host, one line each.

use argh::FromArgs;
use serde_json::Value;

use super::{fail, print_json, Out};
use crate::client::{Body, Client};

/// check what this host needs (engine, image, socket, disk, memory, file limit, panic, clock)
#[derive(FromArgs)]
#[argh(subcommand, name = "doctor")]
pub struct Doctor {
    /// also do what is safe (build the image, tighten the socket, raise the file limit)
    #[argh(switch)]
    fix: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

pub fn doctor(c: &Client, a: Doctor) -> Out {
    let v: Value = if a.fix {
        c.call("POST", "/v1/doctor/fix", Body::None)?.json()?
    } else {
        c.get_json("/v1/doctor")?
    };
    if a.json {
        print_json(&v);
    } else {
        for ch in v["checks"].as_array().into_iter().flatten() {
            let mark = match ch["status"].as_str() {
                Some("ok") => "ok  ",
                Some("warn") => "warn",
                _ => "FAIL",
            };
            println!(
                "{mark}  {:<13} {}",
                ch["name"].as_str().unwrap_or(""),
                ch["detail"].as_str().unwrap_or("")
            );
            if let Some(f) = ch["fix"].as_str() {
                println!("      {:<13} --fix would {f}", "");
            }
            if let Some(h) = ch["hint"].as_str() {
                println!("      {:<13} {h}", "");
            }
        }
        for f in v["fixed"].as_array().into_iter().flatten() {
            println!("fixed: {}", f.as_str().unwrap_or(""));
        }
    }
    if v["ok"] == true {
        Ok(())
    } else {
        Err(fail("some checks failed"))
    }
}
