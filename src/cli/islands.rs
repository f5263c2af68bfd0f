//! ls, create, init, status, the lifecycle verbs, clone, purge, title, resources.

use argh::FromArgs;

use super::{fail, human, print_json, table, Out};
use crate::api::{CreateIsland, IslandInfo, Resources, ResourcesResult};
use crate::client::{seg, Body, Client};

/// list islands
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
pub struct Ls {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// create an island from a git URL or a directory on the daemon host
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
pub struct Create {
    /// git URL (cloned inside the island) or absolute path on the daemon host (copied in)
    #[argh(positional)]
    repo: Option<String>,
    /// island name (default: derived from the repo)
    #[argh(option)]
    name: Option<String>,
    /// start with an empty git-initialised workspace (needs --name)
    #[argh(switch)]
    no_repo: bool,
    /// agent type: claude-code (default), codex, custom, headless
    #[argh(option)]
    agent: Option<String>,
    /// command for a custom or headless agent
    #[argh(option)]
    cmd: Option<String>,
    /// stored provider whose key the agent gets (default: the one its type uses)
    #[argh(option)]
    provider: Option<String>,
    /// model for the agent's CLI
    #[argh(option)]
    model: Option<String>,
    /// stored GitHub identity to clone and push as
    #[argh(option)]
    github_identity: Option<String>,
    /// island image (default: the daemon's)
    #[argh(option)]
    image: Option<String>,
    /// memory cap, e.g. 4G
    #[argh(option)]
    memory: Option<String>,
    /// CPU cap, e.g. 2.0
    #[argh(option)]
    cpus: Option<String>,
    /// disk cap, e.g. 20G (needs an engine that supports --storage-opt size)
    #[argh(option)]
    disk: Option<String>,
    /// display title
    #[argh(option)]
    title: Option<String>,
    /// record the agents' sessions (asciicast; see `dejima recordings`)
    #[argh(switch)]
    record: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// create an island from a directory (default: the current one)
#[derive(FromArgs)]
#[argh(subcommand, name = "init")]
pub struct Init {
    /// directory on this host (default: .)
    #[argh(positional)]
    dir: Option<String>,
    /// island name (default: the directory's name)
    #[argh(option)]
    name: Option<String>,
    /// agent type
    #[argh(option)]
    agent: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// show one island in detail (git, health, disk, resources)
#[derive(FromArgs)]
#[argh(subcommand, name = "status")]
pub struct Status {
    #[argh(positional)]
    island: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

macro_rules! verb {
    ($t:ident, $name:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(FromArgs)]
        #[argh(subcommand, name = $name)]
        pub struct $t {
            #[argh(positional)]
            pub island: String,
            /// print JSON
            #[argh(switch)]
            pub json: bool,
        }
    };
}
verb!(
    Hibernate,
    "hibernate",
    "stop an island's container, keeping its volumes"
);
verb!(
    Wake,
    "wake",
    "start a hibernated island (recreating a removed container)"
);
verb!(
    Reset,
    "reset",
    "give an island a fresh empty home volume; the workspace is kept"
);
verb!(
    Upgrade,
    "upgrade",
    "recreate an island on the current image, volumes kept"
);
verb!(
    Reclone,
    "reclone",
    "clone an island's git URL again after its clone failed (e.g. once its identity is fixed)"
);

pub fn reclone(c: &Client, a: Reclone) -> Out {
    let v: crate::api::WorkspaceReady = c.send_json(
        "POST",
        &format!("/v1/islands/{}/reclone", seg(&a.island)),
        &serde_json::json!({}),
    )?;
    if a.json {
        print_json(&v);
    } else if v.ready {
        println!("{}: workspace cloned", a.island);
    } else {
        return Err(super::fail(format!(
            "{}: the clone failed again: {}",
            a.island, v.clone_reason
        )));
    }
    Ok(())
}

/// copy an island (both volumes) to a new name
#[derive(FromArgs)]
#[argh(subcommand, name = "clone")]
pub struct CloneCmd {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    new_name: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// destroy an island: container, volumes, network, records (refused while work is unsaved)
#[derive(FromArgs)]
#[argh(subcommand, name = "purge")]
pub struct Purge {
    #[argh(positional)]
    island: String,
    /// purge even when the workspace has uncommitted or unpushed work
    #[argh(switch)]
    force: bool,
}

/// set an island's display title
#[derive(FromArgs)]
#[argh(subcommand, name = "title")]
pub struct Title {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    title: String,
}

/// change an island's memory cap (live) or OOM priority (next recreate)
#[derive(FromArgs)]
#[argh(subcommand, name = "resources")]
pub struct ResourcesCmd {
    #[argh(positional)]
    island: String,
    /// memory cap, e.g. 6G
    #[argh(option)]
    memory: Option<String>,
    /// OOM priority -10..10 (higher is killed first)
    #[argh(option)]
    oom_priority: Option<i64>,
}

fn show(i: &IslandInfo, json: bool) {
    if json {
        print_json(i);
    } else {
        rows(std::slice::from_ref(i));
    }
}

fn rows(list: &[IslandInfo]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.state.to_string(),
                i.container.to_string(),
                i.agent.to_string(),
                i.stats
                    .as_ref()
                    .map(|s| human(s.memory_usage_bytes))
                    .unwrap_or_else(|| "-".into()),
                i.stats
                    .as_ref()
                    .map(|s| format!("{:.1}%", s.cpu_percent))
                    .unwrap_or_else(|| "-".into()),
                if i.title.is_empty() {
                    i.repo.clone()
                } else {
                    i.title.clone()
                },
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATE",
            "CONTAINER",
            "AGENT",
            "MEM",
            "CPU",
            "REPO/TITLE",
        ],
        &rows,
    );
}

pub fn ls(c: &Client, a: Ls) -> Out {
    let list: Vec<IslandInfo> = c.get_json("/v1/islands")?;
    if a.json {
        print_json(&list);
    } else {
        rows(&list);
    }
    Ok(())
}

pub fn create(c: &Client, a: Create) -> Out {
    let resources = Resources {
        memory: a.memory.unwrap_or_default(),
        cpus: a.cpus.unwrap_or_default(),
        disk: a.disk.unwrap_or_default(),
        oom_priority: None,
    };
    let body = CreateIsland {
        name: a.name.unwrap_or_default(),
        repo: a.repo.unwrap_or_default(),
        agent: a.agent.unwrap_or_default(),
        image: a.image.unwrap_or_default(),
        no_repo: a.no_repo,
        cmd: a.cmd.unwrap_or_default(),
        provider: a.provider.unwrap_or_default(),
        model: a.model.unwrap_or_default(),
        github_identity: a.github_identity.unwrap_or_default(),
        title: a.title.unwrap_or_default(),
        resources: (resources != Resources::default()).then_some(resources),
        record: a.record,
        ..CreateIsland::default()
    };
    let i: IslandInfo = c.send_json("POST", "/v1/islands", &body)?;
    show(&i, a.json);
    Ok(())
}

pub fn init(c: &Client, a: Init) -> Out {
    let dir = std::fs::canonicalize(a.dir.as_deref().unwrap_or("."))?;
    let body = CreateIsland {
        name: a.name.unwrap_or_default(),
        repo: dir.display().to_string(),
        agent: a.agent.unwrap_or_default(),
        ..CreateIsland::default()
    };
    let i: IslandInfo = c.send_json("POST", "/v1/islands", &body)?;
    show(&i, a.json);
    Ok(())
}

pub fn status(c: &Client, a: Status) -> Out {
    let i: IslandInfo = c.get_json(&format!("/v1/islands/{}", seg(&a.island)))?;
    if a.json {
        print_json(&i);
        return Ok(());
    }
    let mut kv: Vec<(&str, String)> = vec![
        ("name", i.name.clone()),
        ("title", i.title.clone()),
        ("repo", i.repo.clone()),
        ("agent", i.agent.to_string()),
        ("image", i.image.clone()),
        ("state", i.state.to_string()),
        ("container", i.container.to_string()),
        ("created", i.created_at.clone()),
        ("last used", i.last_used_at.clone()),
    ];
    if let Some(g) = &i.git {
        kv.push((
            "git",
            format!(
                "{} ({}, {} dirty, ahead {}, behind {})",
                g.branch,
                if g.clean { "clean" } else { "dirty" },
                g.dirty_files,
                g.ahead,
                g.behind
            ),
        ));
    }
    if let Some(s) = &i.stats {
        kv.push((
            "memory",
            format!(
                "{} / {}",
                human(s.memory_usage_bytes),
                if s.memory_limit_bytes == 0 {
                    "unlimited".into()
                } else {
                    human(s.memory_limit_bytes)
                }
            ),
        ));
        kv.push(("cpu", format!("{:.1}%", s.cpu_percent)));
    }
    if let Some(h) = &i.health {
        kv.push((
            "health",
            format!(
                "oom_killed={} restarts={} exit_code={}",
                h.oom_killed, h.restart_count, h.exit_code
            ),
        ));
    }
    if let Some(d) = &i.disk {
        kv.push((
            "disk",
            format!(
                "workspace {}, home {}",
                human(d.workspace_bytes),
                human(d.home_bytes)
            ),
        ));
    }
    if let Some(r) = &i.resources {
        kv.push(("resources", serde_json::to_string(r).unwrap_or_default()));
    }
    for (k, v) in kv {
        if !v.is_empty() {
            println!("{k:<10} {v}");
        }
    }
    Ok(())
}

pub fn lifecycle(c: &Client, island: &str, verb: &str, json: bool) -> Out {
    let r = c.call(
        "POST",
        &format!("/v1/islands/{}/{verb}", seg(island)),
        Body::None,
    )?;
    let i: IslandInfo = r.json()?;
    show(&i, json);
    Ok(())
}

pub fn clone(c: &Client, a: CloneCmd) -> Out {
    let i: IslandInfo = c.send_json(
        "POST",
        &format!("/v1/islands/{}/clone", seg(&a.island)),
        &serde_json::json!({ "name": a.new_name }),
    )?;
    show(&i, a.json);
    Ok(())
}

pub fn purge(c: &Client, a: Purge) -> Out {
    let q = if a.force { "?force=true" } else { "" };
    c.call(
        "DELETE",
        &format!("/v1/islands/{}{q}", seg(&a.island)),
        Body::None,
    )?;
    println!("purged {}", a.island);
    Ok(())
}

pub fn title(c: &Client, a: Title) -> Out {
    let i: IslandInfo = c.send_json(
        "PATCH",
        &format!("/v1/islands/{}", seg(&a.island)),
        &serde_json::json!({ "title": a.title }),
    )?;
    show(&i, false);
    Ok(())
}

pub fn resources(c: &Client, a: ResourcesCmd) -> Out {
    if a.memory.is_none() && a.oom_priority.is_none() {
        return Err(fail("give --memory and/or --oom-priority"));
    }
    let mut body = serde_json::Map::new();
    if let Some(m) = a.memory {
        body.insert("memory".into(), m.into());
    }
    if let Some(p) = a.oom_priority {
        body.insert("oom_priority".into(), p.into());
    }
    let r: ResourcesResult = c.send_json(
        "PUT",
        &format!("/v1/islands/{}/resources", seg(&a.island)),
        &body,
    )?;
    print_json(&r);
    Ok(())
}
