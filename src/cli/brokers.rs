//! dejima port|cap|mcp|spawn: the brokers that let an island reach past its walls, each
//! through a grant: host folders (Port), host executables (capabilities), MCP servers on the
//! host, and child islands.

use std::io::Write;
use std::path::Path;

use argh::FromArgs;
use serde_json::{json, Map, Value};

use super::{fail, human, print_json, table, Failure, Out};
use crate::client::{seg, Body, Client, Target};

// ---- port ----

/// host folders an island may read from or write to (Port)
#[derive(FromArgs)]
#[argh(subcommand, name = "port")]
pub struct PortCmd {
    #[argh(subcommand)]
    cmd: PortSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum PortSub {
    Grant(PortGrant),
    Revoke(PortRevoke),
    Ls(PortLs),
    Intake(PortIntake),
    Export(PortExport),
    Write(PortWrite),
}

/// grant an island a host folder as a named scope (owner only)
#[derive(FromArgs)]
#[argh(subcommand, name = "grant")]
struct PortGrant {
    #[argh(positional)]
    island: String,
    /// an existing directory on the daemon host
    #[argh(positional)]
    host_path: String,
    /// ro (default) or rw
    #[argh(option)]
    mode: Option<String>,
    /// the scope's name (default: the folder's basename)
    #[argh(option)]
    name: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// take a scope away from an island (owner only)
#[derive(FromArgs)]
#[argh(subcommand, name = "revoke")]
struct PortRevoke {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    scope: String,
}

/// list an island's scopes
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct PortLs {
    #[argh(positional)]
    island: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// copy a file or folder from a scope into the island
#[derive(FromArgs)]
#[argh(subcommand, name = "intake")]
struct PortIntake {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    scope: String,
    /// path inside the scope (default: all of it)
    #[argh(positional)]
    src_rel: Option<String>,
    /// where in the island (default /home/agent/intake/<scope>/<src_rel>)
    #[argh(option)]
    dest: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// copy an island file or folder out to the host's exports folder
#[derive(FromArgs)]
#[argh(subcommand, name = "export")]
struct PortExport {
    #[argh(positional)]
    island: String,
    /// a path under /workspace or /home/agent
    #[argh(positional)]
    src: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// write an island file into an rw scope
#[derive(FromArgs)]
#[argh(subcommand, name = "write")]
struct PortWrite {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    scope: String,
    /// the island file
    #[argh(positional)]
    src: String,
    /// path inside the scope
    #[argh(positional)]
    dest_rel: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

// ---- cap ----

/// host executables islands may run (capabilities)
#[derive(FromArgs)]
#[argh(subcommand, name = "cap")]
pub struct CapCmd {
    #[argh(subcommand)]
    cmd: CapSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum CapSub {
    Ls(CapLs),
    Grant(CapGrant),
    Revoke(CapRevoke),
    Run(CapRun),
}

/// list the capabilities, or with an island its grants
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct CapLs {
    #[argh(positional)]
    island: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// let an island run a capability
#[derive(FromArgs)]
#[argh(subcommand, name = "grant")]
struct CapGrant {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    target: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// take a capability away from an island
#[derive(FromArgs)]
#[argh(subcommand, name = "revoke")]
struct CapRevoke {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    target: String,
}

/// run a capability for an island (exit code is the capability's)
#[derive(FromArgs)]
#[argh(subcommand, name = "run")]
struct CapRun {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    target: String,
    /// arguments as KEY=VALUE
    #[argh(positional)]
    args: Vec<String>,
    /// print the JSON result instead
    #[argh(switch)]
    json: bool,
}

// ---- mcp ----

/// MCP servers on the host that islands may call
#[derive(FromArgs)]
#[argh(subcommand, name = "mcp")]
pub struct McpCmd {
    #[argh(subcommand)]
    cmd: McpSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum McpSub {
    Servers(McpServers),
    Grant(McpGrant),
    Revoke(McpRevoke),
    Ls(McpLs),
    Call(McpCall),
}

/// list the configured MCP servers
#[derive(FromArgs)]
#[argh(subcommand, name = "servers")]
struct McpServers {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// let an island call an MCP server
#[derive(FromArgs)]
#[argh(subcommand, name = "grant")]
struct McpGrant {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    server: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// take an MCP server away from an island
#[derive(FromArgs)]
#[argh(subcommand, name = "revoke")]
struct McpRevoke {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    server: String,
}

/// list an island's MCP grants
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct McpLs {
    #[argh(positional)]
    island: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// call an MCP method (e.g. tools/list, tools/call) for an island; prints the result
#[derive(FromArgs)]
#[argh(subcommand, name = "call")]
struct McpCall {
    #[argh(positional)]
    island: String,
    #[argh(positional)]
    server: String,
    #[argh(positional)]
    method: String,
    /// the method's params, as JSON
    #[argh(option)]
    params: Option<String>,
    /// print the whole JSON answer instead
    #[argh(switch)]
    json: bool,
}

// ---- spawn ----

/// let an island create child islands
#[derive(FromArgs)]
#[argh(subcommand, name = "spawn")]
pub struct SpawnCmd {
    #[argh(subcommand)]
    cmd: SpawnSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum SpawnSub {
    Grant(SpawnGrant),
    Revoke(SpawnRevoke),
    Show(SpawnShow),
}

/// grant or change an island's right to spawn children, with a ceiling for each
#[derive(FromArgs)]
#[argh(subcommand, name = "grant")]
struct SpawnGrant {
    #[argh(positional)]
    island: String,
    /// how many children it may have at once (1-64)
    #[argh(option)]
    max_children: u32,
    /// CPU ceiling per child, e.g. 2.0
    #[argh(option)]
    cpus: Option<String>,
    /// memory ceiling per child, e.g. 4G
    #[argh(option)]
    memory: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// take away an island's right to spawn children
#[derive(FromArgs)]
#[argh(subcommand, name = "revoke")]
struct SpawnRevoke {
    #[argh(positional)]
    island: String,
}

/// an island's spawn grant and its children
#[derive(FromArgs)]
#[argh(subcommand, name = "show")]
struct SpawnShow {
    #[argh(positional)]
    island: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

// ---- helpers ----

fn island_path(island: &str, rest: &str) -> String {
    format!("/v1/islands/{}/{rest}", seg(island))
}

/// A string field, "-" when absent or empty; numbers as they are.
fn s(v: &Value) -> String {
    match v {
        Value::String(x) if !x.is_empty() => x.clone(),
        Value::Number(n) => n.to_string(),
        _ => "-".into(),
    }
}

fn rows_of(v: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    v.as_array()
        .map(|l| l.iter().map(row).collect())
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn list_or_dash(v: &Value) -> String {
    let l = strings(v);
    if l.is_empty() {
        "-".into()
    } else {
        l.join(",")
    }
}

/// Say what a crossing left behind (links are never followed or copied).
fn note_skipped(v: &Value) {
    let l = strings(&v["skipped"]);
    if !l.is_empty() {
        eprintln!("skipped (links): {}", l.join(", "));
    }
}

fn size_of(v: &Value) -> String {
    human(v["bytes"].as_u64().unwrap_or(0))
}

/// `KEY=VALUE` arguments as a JSON object of strings.
fn kv_args(args: &[String]) -> Result<Map<String, Value>, Failure> {
    let mut m = Map::new();
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            return Err(fail(format!("argument {a:?} is not KEY=VALUE")));
        };
        if m.insert(k.to_string(), v.into()).is_some() {
            return Err(fail(format!("argument {k} given twice")));
        }
    }
    Ok(m)
}

/// An MCP or capability error field (a string or a JSON-RPC error object) as one line.
fn error_text(e: &Value) -> String {
    match e {
        Value::String(x) => x.clone(),
        Value::Object(o) => match (o.get("message").and_then(Value::as_str), o.get("code")) {
            (Some(m), Some(c)) => format!("{m} (code {c})"),
            (Some(m), None) => m.to_string(),
            _ => e.to_string(),
        },
        Value::Null => "failed".into(),
        _ => e.to_string(),
    }
}

// ---- the commands ----

pub fn port(c: &Client, a: PortCmd) -> Out {
    match a.cmd {
        PortSub::Grant(a) => {
            if let Some(m) = &a.mode {
                if m != "ro" && m != "rw" {
                    return Err(fail("--mode is ro or rw"));
                }
            }
            let host_path = match a.host_path {
                // Only a local daemon shares our idea of the current directory.
                p if !Path::new(&p).is_absolute() && matches!(c.target, Target::Unix(_)) => {
                    std::env::current_dir()?.join(p).display().to_string()
                }
                p => p,
            };
            let mut body = json!({ "host_path": host_path });
            if let Some(m) = a.mode {
                body["mode"] = m.into();
            }
            if let Some(n) = a.name {
                body["name"] = n.into();
            }
            let v: Value = c.send_json("POST", &island_path(&a.island, "port/scopes"), &body)?;
            if a.json {
                print_json(&v);
            } else {
                println!(
                    "granted {} scope {} ({}) to {}",
                    s(&v["mode"]),
                    s(&v["name"]),
                    s(&v["host_path"]),
                    a.island
                );
            }
        }
        PortSub::Revoke(a) => {
            let path = island_path(&a.island, &format!("port/scopes/{}", seg(&a.scope)));
            c.call("DELETE", &path, Body::None)?;
            println!("revoked scope {} from {}", a.scope, a.island);
        }
        PortSub::Ls(a) => {
            let v: Value = c.get_json(&island_path(&a.island, "port/scopes"))?;
            if a.json {
                print_json(&v);
            } else {
                let rows = rows_of(&v, |p| {
                    vec![
                        s(&p["name"]),
                        s(&p["mode"]),
                        s(&p["granted_at"]),
                        s(&p["host_path"]),
                    ]
                });
                table(&["SCOPE", "MODE", "GRANTED", "HOST PATH"], &rows);
            }
        }
        PortSub::Intake(a) => {
            let mut body = json!({ "scope": a.scope });
            if let Some(r) = a.src_rel {
                body["src_rel"] = r.into();
            }
            if let Some(d) = a.dest {
                body["dest"] = d.into();
            }
            let v: Value = c.send_json("POST", &island_path(&a.island, "port/intake"), &body)?;
            if a.json {
                print_json(&v);
            } else {
                let rel = v["src_rel"].as_str().unwrap_or("");
                println!(
                    "{}{}{} -> {}:{}: {} file(s), {}, sha256 {}",
                    s(&v["scope"]),
                    if rel.is_empty() { "" } else { "/" },
                    rel,
                    a.island,
                    s(&v["dest"]),
                    s(&v["files"]),
                    size_of(&v),
                    s(&v["sha256"])
                );
                note_skipped(&v);
            }
        }
        PortSub::Export(a) => {
            let v: Value = c.send_json(
                "POST",
                &island_path(&a.island, "port/export"),
                &json!({ "src": a.src }),
            )?;
            if a.json {
                print_json(&v);
            } else {
                println!(
                    "{}:{} -> {}: {} file(s), {}, sha256 {}",
                    a.island,
                    s(&v["src"]),
                    s(&v["host_path"]),
                    s(&v["files"]),
                    size_of(&v),
                    s(&v["sha256"])
                );
                note_skipped(&v);
            }
        }
        PortSub::Write(a) => {
            let v: Value = c.send_json(
                "POST",
                &island_path(&a.island, "port/write"),
                &json!({ "scope": a.scope, "src": a.src, "dest_rel": a.dest_rel }),
            )?;
            if a.json {
                print_json(&v);
            } else {
                println!(
                    "{}:{} -> {}: {}, sha256 {}",
                    a.island,
                    a.src,
                    s(&v["host_path"]),
                    size_of(&v),
                    s(&v["sha256"])
                );
            }
        }
    }
    Ok(())
}

pub fn cap(c: &Client, a: CapCmd) -> Out {
    match a.cmd {
        CapSub::Ls(a) => {
            let Some(island) = a.island else {
                let v: Value = c.get_json("/v1/capabilities")?;
                if a.json {
                    print_json(&v);
                } else {
                    let rows = rows_of(&v, |t| {
                        vec![
                            s(&t["target"]),
                            if t["usable"] == true { "yes" } else { "no" }.into(),
                            s(&t["problem"]),
                        ]
                    });
                    table(&["TARGET", "USABLE", "PROBLEM"], &rows);
                }
                return Ok(());
            };
            let v: Value = c.get_json(&island_path(&island, "capability/grants"))?;
            if a.json {
                print_json(&v);
            } else {
                let rows = rows_of(&v, |g| vec![s(&g["target"]), s(&g["granted_at"])]);
                table(&["TARGET", "GRANTED"], &rows);
            }
        }
        CapSub::Grant(a) => {
            let v: Value = c.send_json(
                "POST",
                &island_path(&a.island, "capability/grants"),
                &json!({ "target": a.target }),
            )?;
            if a.json {
                print_json(&v);
            } else {
                println!("granted capability {} to {}", s(&v["target"]), a.island);
            }
        }
        CapSub::Revoke(a) => {
            let path = island_path(&a.island, &format!("capability/grants/{}", seg(&a.target)));
            c.call("DELETE", &path, Body::None)?;
            println!("revoked capability {} from {}", a.target, a.island);
        }
        CapSub::Run(a) => {
            let args = kv_args(&a.args)?;
            let v: Value = c.send_json(
                "POST",
                "/v1/capabilities/execute",
                &json!({ "target": a.target, "island": a.island, "args": args }),
            )?;
            if a.json {
                print_json(&v);
                return Ok(());
            }
            print!("{}", v["stdout"].as_str().unwrap_or(""));
            eprint!("{}", v["stderr"].as_str().unwrap_or(""));
            let _ = std::io::stdout().flush();
            if v["truncated"] == true {
                eprintln!("dejima: output truncated (1 MiB per stream)");
            }
            if v["timed_out"] == true {
                return Err(fail("capability timed out"));
            }
            let code = v["exit_code"].as_i64();
            if code != Some(0) || v["ok"] == false {
                return Err(Failure {
                    message: match code {
                        Some(n) => format!("capability exited {n}"),
                        None => "capability failed".into(),
                    },
                    code: code.unwrap_or(1).clamp(1, 255) as i32,
                });
            }
        }
    }
    Ok(())
}

pub fn mcp(c: &Client, a: McpCmd) -> Out {
    match a.cmd {
        McpSub::Servers(a) => {
            let v: Value = c.get_json("/v1/mcp/servers")?;
            if a.json {
                print_json(&v);
            } else {
                let rows = rows_of(&v, |m| {
                    let mut cmd = vec![s(&m["command"])];
                    cmd.extend(strings(&m["args"]));
                    vec![
                        s(&m["name"]),
                        list_or_dash(&m["env_keys"]),
                        s(&m["keep_alive_secs"]),
                        cmd.join(" "),
                    ]
                });
                table(&["NAME", "ENV", "KEEP ALIVE", "COMMAND"], &rows);
            }
        }
        McpSub::Grant(a) => {
            let v: Value = c.send_json(
                "POST",
                &island_path(&a.island, "mcp/grants"),
                &json!({ "server": a.server }),
            )?;
            if a.json {
                print_json(&v);
            } else {
                println!("granted MCP server {} to {}", s(&v["server"]), a.island);
            }
        }
        McpSub::Revoke(a) => {
            let path = island_path(&a.island, &format!("mcp/grants/{}", seg(&a.server)));
            c.call("DELETE", &path, Body::None)?;
            println!("revoked MCP server {} from {}", a.server, a.island);
        }
        McpSub::Ls(a) => {
            let v: Value = c.get_json(&island_path(&a.island, "mcp/grants"))?;
            if a.json {
                print_json(&v);
            } else {
                let rows = rows_of(&v, |g| vec![s(&g["server"]), s(&g["granted_at"])]);
                table(&["SERVER", "GRANTED"], &rows);
            }
        }
        McpSub::Call(a) => {
            let mut body = json!({ "island": a.island, "server": a.server, "method": a.method });
            if let Some(p) = &a.params {
                let p: Value = serde_json::from_str(p)
                    .map_err(|e| fail(format!("--params is not JSON: {e}")))?;
                body["params"] = p;
            }
            let v: Value = c.send_json("POST", "/v1/mcp/call", &body)?;
            if a.json {
                print_json(&v);
                return Ok(());
            }
            if let Some(r) = v.get("result").filter(|r| !r.is_null()) {
                print_json(r);
            }
            if v["ok"] == false {
                return Err(fail(format!("MCP error: {}", error_text(&v["error"]))));
            }
            if v["is_error"] == true {
                return Err(fail("the MCP server reported an error"));
            }
        }
    }
    Ok(())
}

pub fn spawn(c: &Client, a: SpawnCmd) -> Out {
    match a.cmd {
        SpawnSub::Grant(a) => {
            let mut body = json!({ "max_children": a.max_children });
            if let Some(x) = a.cpus {
                body["cpus"] = x.into();
            }
            if let Some(m) = a.memory {
                body["memory"] = m.into();
            }
            let v: Value = c.send_json("PUT", &island_path(&a.island, "spawn"), &body)?;
            show_spawn(&a.island, &v, a.json);
        }
        SpawnSub::Revoke(a) => {
            let _: Value = c.send_json(
                "PUT",
                &island_path(&a.island, "spawn"),
                &json!({"max_children": 0}),
            )?;
            println!("{} may no longer spawn islands", a.island);
        }
        SpawnSub::Show(a) => {
            let v: Value = c.get_json(&island_path(&a.island, "spawn"))?;
            show_spawn(&a.island, &v, a.json);
        }
    }
    Ok(())
}

fn show_spawn(island: &str, v: &Value, json: bool) {
    if json {
        print_json(v);
        return;
    }
    if v["granted"] == false {
        println!("{island} may not create islands (no spawn grant)");
        println!("children: {}", list_or_dash(&v["children"]));
        return;
    }
    println!(
        "{island} may spawn up to {} island(s); per child: cpus {}, memory {}",
        s(&v["max_children"]),
        s(&v["cpus"]),
        s(&v["memory"])
    );
    println!("children: {}", list_or_dash(&v["children"]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded() {
        assert_eq!(
            island_path("my proj", &format!("port/scopes/{}", seg("a b"))),
            "/v1/islands/my%20proj/port/scopes/a%20b"
        );
        assert_eq!(island_path("foo", "spawn"), "/v1/islands/foo/spawn");
    }

    #[test]
    fn kv_args_split_on_the_first_equals() {
        let Ok(m) = kv_args(&["a=1".into(), "b=x=y".into(), "c=".into()]) else {
            panic!("kv_args refused good arguments");
        };
        assert_eq!(Value::from(m), json!({"a": "1", "b": "x=y", "c": ""}));
        assert!(kv_args(&["nope".into()]).is_err());
        assert!(kv_args(&["a=1".into(), "a=2".into()]).is_err());
    }

    #[test]
    fn error_text_reads_strings_and_rpc_errors() {
        assert_eq!(error_text(&json!("boom")), "boom");
        assert_eq!(
            error_text(&json!({"code": -32601, "message": "Method not found"})),
            "Method not found (code -32601)"
        );
    }
}
