//! dejima agent ls|add|rm|rename

use argh::FromArgs;

use super::{print_json, table, Out};
use crate::api::AgentInfo;
use crate::client::{seg, Body, Client};

/// manage the agents in an island
#[derive(FromArgs)]
#[argh(subcommand, name = "agent")]
pub struct AgentCmd {
    #[argh(subcommand)]
    cmd: AgentSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum AgentSub {
    Ls(Ls),
    Add(Add),
    Rm(Rm),
    Rename(Rename),
    Restart(Restart),
    Config(Config),
    Types(Types),
}

/// set an agent's provider and model (taken up at its next restart)
#[derive(FromArgs)]
#[argh(subcommand, name = "config")]
struct Config {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    id: String,
    /// stored provider (empty: none)
    #[argh(option)]
    provider: Option<String>,
    /// model for its CLI (empty: the CLI's default)
    #[argh(option)]
    model: Option<String>,
    /// restart the agent now if the change needs it
    #[argh(switch)]
    restart: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// the agent types this daemon runs, and what each needs
#[derive(FromArgs)]
#[argh(subcommand, name = "types")]
struct Types {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// list an island's agents
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct Ls {
    #[argh(positional)]
    island: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// add an agent with its own worktree and branch (agent/<id>)
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
struct Add {
    #[argh(positional)]
    island: String,
    /// agent type: claude-code, codex, custom, headless (default: the primary's)
    #[argh(option, long = "type")]
    kind: Option<String>,
    /// display label
    #[argh(option)]
    label: Option<String>,
    /// command for a custom or headless agent
    #[argh(option)]
    cmd: Option<String>,
    /// stored provider whose key it gets (default: the one its type uses)
    #[argh(option)]
    provider: Option<String>,
    /// model for its CLI
    #[argh(option)]
    model: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// remove an agent: its session ends and its worktree is pruned (the branch is kept)
#[derive(FromArgs)]
#[argh(subcommand, name = "rm")]
struct Rm {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    id: String,
}

/// relaunch an agent's program in place (its session, worktree and attached clients stay)
#[derive(FromArgs)]
#[argh(subcommand, name = "restart")]
struct Restart {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    id: String,
    /// continue the last conversation (claude-code, codex)
    #[argh(switch)]
    resume: bool,
}

/// set an agent's display label
#[derive(FromArgs)]
#[argh(subcommand, name = "rename")]
struct Rename {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    id: String,
    #[argh(positional)]
    label: String,
}

fn agents_path(island: &str) -> String {
    format!("/v1/islands/{}/agents", seg(island))
}

fn agent_path(island: &str, id: &str) -> String {
    format!("{}/{}", agents_path(island), seg(id))
}

/// The add body: only what was given, so the daemon's defaults apply to the rest.
fn add_body(a: &Add) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("type", &a.kind),
        ("label", &a.label),
        ("cmd", &a.cmd),
        ("provider", &a.provider),
        ("model", &a.model),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), v.clone().into());
        }
    }
    m.into()
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

fn row(a: &AgentInfo) -> Vec<String> {
    let attached: Vec<&str> = a.attached.iter().map(|p| p.label.as_str()).collect();
    vec![
        a.id.clone(),
        a.kind.to_string(),
        dash(&a.label),
        dash(a.state.as_str()),
        dash(&a.runtime),
        dash(&a.provider),
        dash(&a.branch),
        dash(&attached.join(",")),
    ]
}

fn rows(list: &[AgentInfo]) {
    let rows: Vec<Vec<String>> = list.iter().map(row).collect();
    table(
        &[
            "ID", "TYPE", "LABEL", "STATE", "RUNTIME", "PROVIDER", "BRANCH", "ATTACHED",
        ],
        &rows,
    );
}

fn show(a: &AgentInfo, json: bool) {
    if json {
        print_json(a);
    } else {
        rows(std::slice::from_ref(a));
    }
}

pub fn agent(c: &Client, a: AgentCmd) -> Out {
    match a.cmd {
        AgentSub::Ls(a) => {
            let list: Vec<AgentInfo> = c.get_json(&agents_path(&a.island))?;
            if a.json {
                print_json(&list);
            } else {
                rows(&list);
            }
        }
        AgentSub::Add(a) => {
            let r: AgentInfo = c.send_json("POST", &agents_path(&a.island), &add_body(&a))?;
            show(&r, a.json);
        }
        AgentSub::Types(a) => {
            let list: Vec<crate::api::AgentTypeInfo> = c.get_json("/v1/agent-types")?;
            if a.json {
                super::print_json(&list);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|t| {
                        vec![
                            t.kind.to_string(),
                            t.binary.clone(),
                            t.key_env.clone().unwrap_or_else(|| "-".into()),
                            if t.can_resume { "yes" } else { "no" }.into(),
                            if t.emits_events { "yes" } else { "no" }.into(),
                        ]
                    })
                    .collect();
                super::table(&["TYPE", "BINARY", "KEY", "RESUME", "EVENTS"], &rows);
            }
        }
        AgentSub::Restart(a) => {
            let r: AgentInfo = c.send_json(
                "POST",
                &format!("{}/restart", agent_path(&a.island, &a.id)),
                &serde_json::json!({ "resume": a.resume }),
            )?;
            println!("restarted agent {} of {} ({})", r.id, a.island, r.state);
        }
        AgentSub::Config(a) => {
            let mut body = serde_json::Map::new();
            for (k, v) in [("provider", &a.provider), ("model", &a.model)] {
                if let Some(v) = v {
                    body.insert(k.into(), v.clone().into());
                }
            }
            let path = format!("{}/config", agent_path(&a.island, &a.id));
            let mut r: AgentInfo = c.send_json("PATCH", &path, &serde_json::Value::from(body))?;
            if r.restart_required == Some(true) {
                if a.restart {
                    r = c.send_json(
                        "POST",
                        &format!("{}/restart", agent_path(&a.island, &a.id)),
                        &serde_json::json!({}),
                    )?;
                } else if !a.json {
                    eprintln!(
                        "the change takes effect at the agent's next restart (dejima agent restart {} {})",
                        a.island, a.id
                    );
                }
            }
            show(&r, a.json);
        }
        AgentSub::Rm(a) => {
            c.call("DELETE", &agent_path(&a.island, &a.id), Body::None)?;
            println!("removed agent {} from {}", a.id, a.island);
        }
        AgentSub::Rename(a) => {
            let r: AgentInfo = c.send_json(
                "PATCH",
                &agent_path(&a.island, &a.id),
                &serde_json::json!({ "label": a.label }),
            )?;
            show(&r, false);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PresenceEntry;

    #[test]
    fn paths() {
        assert_eq!(agents_path("my proj"), "/v1/islands/my%20proj/agents");
        assert_eq!(agent_path("foo", "a2"), "/v1/islands/foo/agents/a2");
    }

    #[test]
    fn add_sends_only_what_was_given() {
        let a = Add {
            island: "foo".into(),
            kind: Some("headless".into()),
            label: None,
            cmd: Some("python loop.py".into()),
            provider: None,
            model: None,
            json: false,
        };
        assert_eq!(
            add_body(&a),
            serde_json::json!({"type": "headless", "cmd": "python loop.py"})
        );
    }

    #[test]
    fn rows_fill_blanks() {
        let a = AgentInfo {
            id: "a1".into(),
            kind: crate::api::AgentType::ClaudeCode,
            state: crate::api::AgentRun::Running,
            attached: vec![
                PresenceEntry {
                    label: "laptop".into(),
                    joined_at: "t".into(),
                    read_only: false,
                },
                PresenceEntry {
                    label: "phone".into(),
                    joined_at: "t".into(),
                    read_only: false,
                },
            ],
            ..AgentInfo::default()
        };
        assert_eq!(
            row(&a),
            [
                "a1",
                "claude-code",
                "-",
                "running",
                "-",
                "-",
                "-",
                "laptop,phone"
            ]
        );
    }
}
