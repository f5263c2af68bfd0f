//! dejima term ls|new|attach|rm: host terminals (operator shells on the daemon host).

use std::path::Path;

use argh::FromArgs;

use super::attach::{default_label, session};
use super::{print_json, table, Out};
use crate::client::{seg, Body, Client, Target};

pub use crate::api::TerminalInfo;

/// host terminals: uncontained shells on the daemon host (needs dejimad --host-terminals)
#[derive(FromArgs)]
#[argh(subcommand, name = "term")]
pub struct TermCmd {
    #[argh(subcommand)]
    cmd: TermSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum TermSub {
    Ls(Ls),
    New(New),
    Attach(Attach),
    Rm(Rm),
}

/// list host terminals
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct Ls {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// start a host terminal running a command (default: the daemon's choice of shell)
#[derive(FromArgs)]
#[argh(subcommand, name = "new")]
struct New {
    /// the command and its arguments (put `--` before it if it has flags)
    #[argh(positional, greedy)]
    cmd: Vec<String>,
    /// display label
    #[argh(option)]
    label: Option<String>,
    /// working directory on the daemon host (a relative one is resolved here when the daemon
    /// is local)
    #[argh(option)]
    cwd: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// attach this terminal to a host terminal (Ctrl-] detaches)
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "attach",
    note = "Ctrl-] detaches; the terminal keeps running."
)]
struct Attach {
    #[argh(positional)]
    id: String,
    /// how other clients see this one (default: cli@<hostname>)
    #[argh(option)]
    label: Option<String>,
}

/// close a host terminal
#[derive(FromArgs)]
#[argh(subcommand, name = "rm")]
struct Rm {
    #[argh(positional)]
    id: String,
}

/// The session websocket of a host terminal.
pub fn terminal_session_path(id: &str, label: &str) -> String {
    format!("/v1/terminals/{}/session?label={}", seg(id), seg(label))
}

/// The create body: only what was given.
fn new_body(cmd: &[String], label: Option<String>, cwd: Option<String>) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    if let Some(l) = label {
        m.insert("label".into(), l.into());
    }
    if let Some((command, args)) = cmd.split_first() {
        m.insert("command".into(), command.clone().into());
        m.insert("args".into(), args.to_vec().into());
    }
    if let Some(d) = cwd {
        m.insert("cwd".into(), d.into());
    }
    m.into()
}

fn row(t: &TerminalInfo) -> Vec<String> {
    let dash = |s: String| if s.is_empty() { "-".into() } else { s };
    let mut cmd = vec![t.command.as_str()];
    cmd.extend(t.args.iter().map(String::as_str));
    let attached: Vec<&str> = t.attached.iter().map(|p| p.label.as_str()).collect();
    vec![
        t.id.clone(),
        dash(t.label.clone()),
        dash(cmd.join(" ").trim().to_string()),
        dash(t.cwd.clone()),
        dash(t.created_at.clone()),
        dash(attached.join(",")),
    ]
}

fn rows(list: &[TerminalInfo]) {
    let rows: Vec<Vec<String>> = list.iter().map(row).collect();
    table(
        &["ID", "LABEL", "COMMAND", "CWD", "CREATED", "ATTACHED"],
        &rows,
    );
}

pub fn term(c: &Client, a: TermCmd) -> Out {
    match a.cmd {
        TermSub::Ls(a) => {
            let list: Vec<TerminalInfo> = c.get_json("/v1/terminals")?;
            if a.json {
                print_json(&list);
            } else {
                rows(&list);
            }
            Ok(())
        }
        TermSub::New(a) => {
            let cwd = match a.cwd {
                // Only a local daemon shares our idea of the current directory.
                Some(d) if !Path::new(&d).is_absolute() && matches!(c.target, Target::Unix(_)) => {
                    Some(std::env::current_dir()?.join(d).display().to_string())
                }
                d => d,
            };
            let t: TerminalInfo =
                c.send_json("POST", "/v1/terminals", &new_body(&a.cmd, a.label, cwd))?;
            if a.json {
                print_json(&t);
            } else {
                rows(std::slice::from_ref(&t));
            }
            Ok(())
        }
        TermSub::Attach(a) => {
            let label = a.label.unwrap_or_else(default_label);
            session(c, &terminal_session_path(&a.id, &label))
        }
        TermSub::Rm(a) => {
            c.call(
                "DELETE",
                &format!("/v1/terminals/{}", seg(&a.id)),
                Body::None,
            )?;
            println!("closed terminal {}", a.id);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_path() {
        assert_eq!(
            terminal_session_path("t1", "cli@box"),
            "/v1/terminals/t1/session?label=cli%40box"
        );
    }

    #[test]
    fn new_body_splits_command_and_args() {
        let cmd = vec!["htop".to_string(), "-d".into(), "10".into()];
        assert_eq!(
            new_body(&cmd, Some("top".into()), Some("/srv".into())),
            serde_json::json!({"label": "top", "command": "htop", "args": ["-d", "10"], "cwd": "/srv"})
        );
        assert_eq!(new_body(&[], None, None), serde_json::json!({}));
    }

    #[test]
    fn parses_and_renders_a_listing() {
        let t: TerminalInfo = serde_json::from_str(
            r#"{"id":"t1","label":"","command":"bash","cwd":"/home/me","created_at":"2026-05-22T10:00:00Z",
                "attached":[{"label":"laptop","joined_at":"2026-05-22T10:01:00Z"}]}"#,
        )
        .unwrap();
        assert_eq!(
            row(&t),
            [
                "t1",
                "-",
                "bash",
                "/home/me",
                "2026-05-22T10:00:00Z",
                "laptop"
            ]
        );
    }
}
