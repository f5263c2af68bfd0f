//! prompt, screen: an agent's live terminal without attaching.

use std::io::{Read, Write};

use argh::FromArgs;

use super::{fail, Out};
use crate::client::{seg, Body, Client};

/// send an agent a prompt (pasted, then submitted), verified on its screen
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "prompt",
    note = "The text is read from stdin when it is not given (or is -). It arrives as one \
            paste: words like C-c or Enter are text, not keys. Exits 1 with what the screen \
            showed if delivery could not be verified."
)]
pub struct Prompt {
    #[argh(positional)]
    island: String,
    /// the prompt (default: stdin)
    #[argh(positional)]
    text: Option<String>,
    /// agent id, e.g. a2 (default: the island's primary agent)
    #[argh(option)]
    agent: Option<String>,
    /// paste only, do not press the submit key
    #[argh(switch)]
    no_submit: bool,
    /// print the JSON result instead
    #[argh(switch)]
    json: bool,
}

/// print an agent's screen without attaching (never resizes anyone's view)
#[derive(FromArgs)]
#[argh(subcommand, name = "screen")]
pub struct Screen {
    #[argh(positional)]
    island: String,
    /// agent id, e.g. a2 (default: the island's primary agent)
    #[argh(option)]
    agent: Option<String>,
    /// lines of history above the screen to include (0-10000)
    #[argh(option, default = "0")]
    scrollback: u32,
    /// text (default), ansi (with colours) or json (rows, cursor, size)
    #[argh(option, default = "String::from(\"text\")")]
    format: String,
}

fn agent_path(island: &str, agent: Option<&str>, what: &str) -> String {
    format!(
        "/v1/islands/{}/agents/{}/{what}",
        seg(island),
        seg(agent.unwrap_or("a1"))
    )
}

pub fn prompt(c: &Client, a: Prompt) -> Out {
    let text = match a.text.as_deref() {
        Some(t) if t != "-" => t.to_string(),
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    if text.trim().is_empty() {
        return Err(fail("prompt needs some text (an argument or stdin)"));
    }
    let body = serde_json::json!({"text": text, "submit": !a.no_submit});
    let v: serde_json::Value = c.send_json(
        "POST",
        &agent_path(&a.island, a.agent.as_deref(), "prompt"),
        &body,
    )?;
    if a.json {
        super::print_json(&v);
    } else {
        println!(
            "delivered{} in {} ms",
            if v["submitted"] == true {
                " and submitted"
            } else {
                ""
            },
            v["elapsed_ms"]
        );
    }
    Ok(())
}

pub fn screen(c: &Client, a: Screen) -> Out {
    if !["text", "ansi", "json"].contains(&a.format.as_str()) {
        return Err(fail("--format is text, ansi or json"));
    }
    let path = format!(
        "{}?format={}&scrollback={}",
        agent_path(&a.island, a.agent.as_deref(), "screen"),
        a.format,
        a.scrollback
    );
    let r = c.call("GET", &path, Body::None)?;
    let body = r.bytes()?;
    std::io::stdout().write_all(&body)?;
    Ok(())
}

/// upload a file for an agent: saved in the island's ~/uploads and pasted into its input
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "upload",
    note = "UTF-8 text of at most 256 KiB is pasted as text; anything else pastes the file's \
            path in the island. Nothing is submitted. At most 8 MiB; an existing file is never \
            replaced (a taken name gets -2, -3, ...)."
)]
pub struct Upload {
    #[argh(positional)]
    island: String,
    /// the file to upload
    #[argh(positional)]
    file: String,
    /// agent id, e.g. a2 (default: the island's primary agent)
    #[argh(option)]
    agent: Option<String>,
    /// print the JSON result instead
    #[argh(switch)]
    json: bool,
}

pub fn upload(c: &Client, a: Upload) -> Out {
    let data = std::fs::read(&a.file).map_err(|e| fail(format!("{}: {e}", a.file)))?;
    let name = std::path::Path::new(&a.file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload".into());
    let path = format!(
        "{}?filename={}",
        agent_path(&a.island, a.agent.as_deref(), "upload"),
        seg(&name)
    );
    let v: serde_json::Value = c
        .call(
            "POST",
            &path,
            Body::Bytes(&data, "application/octet-stream"),
        )?
        .json()?;
    if a.json {
        super::print_json(&v);
        return Ok(());
    }
    println!("{}", v["path"].as_str().unwrap_or_default());
    if v["pasted"] != true {
        eprintln!(
            "saved, but not seen on the agent's screen: {}",
            v["paste_error"].as_str().unwrap_or("unknown")
        );
    }
    Ok(())
}

/// session recordings (asciicast): turn on or off, list, fetch, delete
#[derive(FromArgs)]
#[argh(subcommand, name = "recordings")]
pub struct RecordingsCmd {
    #[argh(subcommand)]
    cmd: RecSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum RecSub {
    On(RecOn),
    Off(RecOff),
    Ls(RecLs),
    Get(RecGet),
    Rm(RecRm),
}

/// record the island's agent sessions from now on
#[derive(FromArgs)]
#[argh(subcommand, name = "on")]
struct RecOn {
    #[argh(positional)]
    island: String,
}

/// stop recording (the recordings being written end)
#[derive(FromArgs)]
#[argh(subcommand, name = "off")]
struct RecOff {
    #[argh(positional)]
    island: String,
}

/// list the island's recordings, newest first
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct RecLs {
    #[argh(positional)]
    island: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// write one recording (asciicast v2) to stdout or a file; play it with `asciinema play`
#[derive(FromArgs)]
#[argh(subcommand, name = "get")]
struct RecGet {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    id: String,
    /// write to this file instead of stdout
    #[argh(option, short = 'o')]
    output: Option<String>,
}

/// delete a finished recording
#[derive(FromArgs)]
#[argh(subcommand, name = "rm")]
struct RecRm {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    id: String,
}

pub fn recordings(c: &Client, a: RecordingsCmd) -> Out {
    let base = |i: &str| format!("/v1/islands/{}/recordings", seg(i));
    match a.cmd {
        RecSub::On(x) => set_record(c, &x.island, true),
        RecSub::Off(x) => set_record(c, &x.island, false),
        RecSub::Ls(x) => {
            let v: serde_json::Value = c.get_json(&base(&x.island))?;
            if x.json {
                super::print_json(&v);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                            vec![
                                s("id"),
                                s("agent"),
                                s("started_at"),
                                if r["active"] == true {
                                    "recording".into()
                                } else {
                                    s("ended_at")
                                },
                                r["bytes"].to_string(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            super::table(&["ID", "AGENT", "STARTED", "ENDED", "BYTES"], &rows);
            Ok(())
        }
        RecSub::Get(x) => {
            let r = c.call(
                "GET",
                &format!("{}/{}", base(&x.island), seg(&x.id)),
                Body::None,
            )?;
            let body = r.bytes()?;
            match x.output {
                Some(f) => std::fs::write(&f, &body).map_err(|e| fail(format!("{f}: {e}")))?,
                None => std::io::stdout().write_all(&body)?,
            }
            Ok(())
        }
        RecSub::Rm(x) => {
            c.call(
                "DELETE",
                &format!("{}/{}", base(&x.island), seg(&x.id)),
                Body::None,
            )?;
            Ok(())
        }
    }
}

fn set_record(c: &Client, island: &str, on: bool) -> Out {
    let _: serde_json::Value = c.send_json(
        "PATCH",
        &format!("/v1/islands/{}", seg(island)),
        &serde_json::json!({ "record": on }),
    )?;
    println!("recording {}", if on { "on" } else { "off" });
    Ok(())
}
