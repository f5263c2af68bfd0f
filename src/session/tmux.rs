//! tmux command lines. Inside an island every agent is a session `agent-<id>` on a private
//! server (`-L dejima`, the agent user's); the image's /etc/tmux.conf sets the shared-screen
//! options (window-size latest, remain-on-exit so an exited agent stays visible as such).

/// The island's tmux server name.
pub const SOCKET: &str = "dejima";

pub fn session_name(agent: &str) -> String {
    format!("agent-{agent}")
}

/// Start a detached session running `argv` in `cwd`.
pub fn new_session(
    session: &str,
    cwd: &str,
    env: &[(String, String)],
    argv: &[String],
) -> Vec<String> {
    let mut v: Vec<String> = [
        "tmux",
        "-L",
        SOCKET,
        "new-session",
        "-d",
        "-s",
        session,
        "-c",
        cwd,
        "-x",
        "200",
        "-y",
        "50",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (k, val) in env {
        v.push("-e".into());
        v.push(format!("{k}={val}"));
    }
    v.push("--".into());
    v.extend(argv.iter().cloned());
    v
}

pub fn kill_session(session: &str) -> Vec<String> {
    [
        "tmux",
        "-L",
        SOCKET,
        "kill-session",
        "-t",
        &format!("={session}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Restart a dead pane's program in place.
pub fn respawn(session: &str) -> Vec<String> {
    [
        "tmux",
        "-L",
        SOCKET,
        "respawn-pane",
        "-k",
        "-t",
        &format!("={session}:"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The environment variable that marks an attach's tmux client inside an island, so that
/// client can be found and ended: ending the host's `docker exec` does not end what it
/// started in the container, and a client left behind would pin window sizes for ever.
pub const ATTACH_MARK: &str = "DEJIMA_ATTACH";

/// End the attach marked `$1` (SIGHUP, as a closed terminal would; SIGKILL if it lingers).
/// Run in the island as the agent user, who owns the tmux clients.
pub const DETACH_MARKED: &str = r#"p=$(grep -lzxsF "DEJIMA_ATTACH=$1" /proc/[0-9]*/environ | cut -d/ -f3)
[ -n "$p" ] || exit 0
kill -HUP $p 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 $p 2>/dev/null || exit 0; sleep 0.05; done
kill -KILL $p 2>/dev/null
exit 0
"#;

/// Attach inside an island through `docker exec -it`: the exec's terminal is sized first
/// (`{rows}`/`{cols}` are filled in by the feed), so tmux never sees docker's 80x24 default.
/// A read-only client (observers) neither types nor sizes the window.
pub fn attach_sized(session: &str, read_only: bool) -> Vec<String> {
    let flags = if read_only {
        " -f read-only,ignore-size"
    } else {
        ""
    };
    let script = format!(
        "stty rows \"$1\" cols \"$2\" 2>/dev/null; exec tmux -L {SOCKET} attach-session{flags} -t \"$3\""
    );
    [
        "sh",
        "-c",
        &script,
        "sh",
        "{rows}",
        "{cols}",
        &format!("={session}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One line per pane: `session|dead|dead_status|width|height|current command`. The last is
/// what runs in the pane now (tmux reads it from the pane's foreground process group).
pub const PANES_FORMAT: &str = "#{session_name}|#{pane_dead}|#{pane_dead_status}|#{window_width}|#{window_height}|#{pane_current_command}";

/// Relaunch a session's pane in place with `argv` (its program killed first), in `cwd`.
pub fn respawn_with(session: &str, cwd: &str, argv: &[String]) -> Vec<String> {
    let mut v: Vec<String> = ["tmux", "-L", SOCKET, "respawn-pane", "-k", "-c", cwd, "-t"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.push(format!("={session}:"));
    v.push("--".into());
    v.extend(argv.iter().cloned());
    v
}

/// A pane as `list-panes` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pane {
    pub session: String,
    pub dead: bool,
    pub dead_status: Option<i32>,
    pub width: u16,
    pub height: u16,
    /// What runs in the pane now (empty when tmux did not say).
    pub command: String,
}

pub fn parse_panes(out: &str) -> Vec<Pane> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().splitn(6, '|').collect();
            if f.len() < 5 {
                return None;
            }
            Some(Pane {
                session: f[0].to_string(),
                dead: f[1] == "1",
                dead_status: f[2].parse().ok(),
                width: f[3].parse().unwrap_or(0),
                height: f[4].parse().unwrap_or(0),
                command: f.get(5).map(|c| c.trim().to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// Quote one word for `sh -c`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses() {
        let v = new_session(
            "agent-a1",
            "/workspace",
            &[("A".into(), "b".into())],
            &["bash".into(), "-l".into()],
        );
        assert_eq!(v.join(" "), "tmux -L dejima new-session -d -s agent-a1 -c /workspace -x 200 -y 50 -e A=b -- bash -l");
        let p = parse_panes("agent-a1|0||200|50|claude\nagent-a2|1|3|80|24\njunk\n");
        assert_eq!(
            (p[0].command.as_str(), p[1].command.as_str()),
            ("claude", "")
        );
        assert_eq!(p.len(), 2);
        assert!(!p[0].dead && p[1].dead);
        assert_eq!(p[1].dead_status, Some(3));
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }
}
