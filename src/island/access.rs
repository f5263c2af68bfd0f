//! Lightweight access to a running island: one-shot exec, files in and out, logs, and the
//! detail view (git, health, disk) that needs the engine.

use std::io::Read;
use std::time::Duration;

use super::paths;
use super::Islands;
use crate::api::{ExecRequest, ExecResult, GitInfo, IslandDisk, IslandHealth, IslandInfo};
use crate::error::{Error, Result};
use crate::process::{Input, Stream};
use crate::runtime::{ContainerState, ExecOpts, WORKSPACE};

/// Longest an exec may be asked to run.
pub const MAX_EXEC_SECS: u64 = 3600;
/// Captured stdout/stderr per exec (the rest is cut and `truncated` set).
pub const EXEC_CAP: usize = 8 << 20;

impl Islands {
    /// Refuse work that needs the container when it is not running.
    pub(crate) fn require_running(&self, name: &str) -> Result<()> {
        let rec = self.record(name)?;
        let obs = self.observed.container(name);
        // Until the engine's first listing is in, `missing` means unknown: let docker say.
        if obs.state != ContainerState::Running && self.observed.synced() {
            return Err(Error::Conflict(format!(
                "island {name:?} is not running (state {}, container {}); wake it first",
                rec.state, obs.state
            )));
        }
        Ok(())
    }

    /// POST /v1/islands/{name}/exec
    pub fn exec(&self, name: &str, req: ExecRequest) -> Result<ExecResult> {
        if req.cmd.is_empty() {
            return Err(Error::bad("cmd must be a non-empty array of strings"));
        }
        if req.cmd.iter().any(|a| a.contains('\0')) {
            return Err(Error::bad("cmd arguments must not contain NUL bytes"));
        }
        let timeout = req.timeout_secs.unwrap_or(60);
        if timeout == 0 || timeout > MAX_EXEC_SECS {
            return Err(Error::bad(format!(
                "timeout_secs must be 1..={MAX_EXEC_SECS}"
            )));
        }
        let user = match req.user.as_deref() {
            None | Some("") | Some("agent") => "agent",
            Some("root") => "root",
            Some(u) => return Err(Error::bad(format!("user {u:?} must be agent or root"))),
        };
        let workdir = req.workdir.clone().unwrap_or_else(|| WORKSPACE.to_string());
        if !workdir.starts_with('/') || workdir.contains('\0') {
            return Err(Error::bad("workdir must be an absolute path"));
        }
        for (k, v) in &req.env {
            let b = k.as_bytes();
            let name_ok = !b.is_empty()
                && (b[0].is_ascii_alphabetic() || b[0] == b'_')
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
            if !name_ok {
                return Err(Error::bad(format!(
                    "env name {k:?} is invalid: letters, digits and _ only, not starting with a digit"
                )));
            }
            if k.starts_with("DEJIMA_") {
                return Err(Error::bad(format!(
                    "env name {k:?} is reserved (DEJIMA_* is the daemon's)"
                )));
            }
            if v.contains('\n') || v.contains('\0') {
                return Err(Error::bad(format!(
                    "env {k}: values must be one line (no newline or NUL); pass longer text on stdin or in a file"
                )));
            }
        }
        self.require_running(name)?;
        // A command still running at the deadline is killed inside the island too (see
        // `Engine::exec`); no wrapper runs in the island until then.
        let opts = ExecOpts {
            argv: req.cmd.clone(),
            user: user.into(),
            workdir,
            env: req.env.clone().into_iter().collect(),
            timeout: Duration::from_secs(timeout),
            cap: EXEC_CAP,
        };
        let input = match &req.stdin {
            Some(s) => Input::Bytes(s.as_bytes()),
            None => Input::None,
        };
        let out = self.runtime.exec(name, &opts, input)?;
        self.touch(name);
        Ok(ExecResult {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            // 124, as timeout(1) reports it.
            exit_code: match out.status {
                _ if out.timed_out => 124,
                Some(s) => i64::from(s),
                None => -1,
            },
            timed_out: out.timed_out,
            truncated: out.truncated,
        })
    }

    /// GET /v1/islands/{name}/files/{path}: checks the file, then hands back a stream of its
    /// bytes and its size.
    pub fn read_file(&self, name: &str, raw_path: &str) -> Result<(Stream, u64)> {
        let path = paths::resolve(raw_path)?;
        self.require_running(name)?;
        let probe = ExecOpts::agent(&["sh", "-c", &paths::stat_script(), "sh", &path]);
        let out = self.runtime.exec(name, &probe, Input::None)?;
        file_status(out.status, &path, &out.stderr_str())?;
        let size: u64 = out.stdout_str().trim().parse().unwrap_or(0);
        let read = ExecOpts::agent(&["sh", "-c", &paths::read_script(), "sh", &path]);
        let stream = self.runtime.exec_stream(name, &read)?;
        self.touch(name);
        Ok((stream, size))
    }

    /// PUT /v1/islands/{name}/files/{path}: the body is streamed into the container.
    /// The file is replaced only when exactly `len` bytes arrived.
    pub fn write_file(
        &self,
        name: &str,
        raw_path: &str,
        body: &mut (dyn Read + Send),
        len: u64,
    ) -> Result<()> {
        let path = paths::resolve(raw_path)?;
        self.require_running(name)?;
        let len = len.to_string();
        let opts = ExecOpts {
            timeout: Duration::from_secs(600),
            ..ExecOpts::agent(&["sh", "-c", &paths::write_script(), "sh", &path, &len])
        };
        let out = self.runtime.exec(name, &opts, Input::Reader(body))?;
        file_status(out.status, &path, &out.stderr_str())?;
        self.touch(name);
        Ok(())
    }

    /// GET /v1/islands/{name}/logs: the container's stdout and stderr.
    pub fn logs(&self, name: &str, follow: bool, tail: &str) -> Result<Stream> {
        self.record(name)?;
        if tail != "all" && tail.parse::<u64>().is_err() {
            return Err(Error::bad("tail must be a number of lines or \"all\""));
        }
        if self.observed.container(name).state == ContainerState::Missing {
            return Err(Error::Conflict(format!(
                "island {name:?} has no container; wake it first"
            )));
        }
        Ok(self.runtime.logs(name, follow, tail)?)
    }

    /// GET /v1/islands/{name}: the list view plus git, health, disk and resources. The engine
    /// calls run side by side.
    pub fn detail(&self, name: &str) -> Result<IslandInfo> {
        let rec = self.record(name)?;
        let mut info = self.info(name)?;
        info.resources = Some(rec.resources.clone());
        let running = info.container == ContainerState::Running;
        let (git, inspect, disk) = std::thread::scope(|s| {
            let call = || std::thread::Builder::new().name("engine-call".into());
            let g = call().spawn_scoped(s, || running.then(|| self.git_info(name)).flatten());
            let d = call().spawn_scoped(s, || running.then(|| self.disk_usage(name)).flatten());
            let i = self.runtime.inspect(name).ok();
            // A thread that could not start or panicked leaves its part out.
            let git = g.ok().and_then(|h| h.join().ok()).flatten();
            let disk = d.ok().and_then(|h| h.join().ok()).flatten();
            (git, i, disk)
        });
        info.git = git;
        info.disk = disk;
        info.health = Some(match inspect {
            Some(i) => IslandHealth {
                oom_killed: i.oom_killed,
                restart_count: i.restart_count,
                exit_code: i.exit_code,
            },
            None => {
                let o = self.observed.container(name);
                IslandHealth {
                    oom_killed: o.oom_killed,
                    restart_count: 0,
                    exit_code: o.exit_code,
                }
            }
        });
        Ok(info)
    }

    fn git_info(&self, name: &str) -> Option<GitInfo> {
        let script = "cd /workspace && git rev-parse --is-inside-work-tree >/dev/null 2>&1 || exit 3\n\
            b=$(git symbolic-ref --short -q HEAD || git rev-parse --short HEAD 2>/dev/null || echo HEAD)\n\
            d=$(git status --porcelain 2>/dev/null | wc -l)\n\
            ab=$(git rev-list --left-right --count '@{upstream}...HEAD' 2>/dev/null || echo '0 0')\n\
            echo \"$b|$d|$ab\"";
        let out = self
            .runtime
            .exec(name, &ExecOpts::agent(&["sh", "-c", script]), Input::None)
            .ok()?;
        if !out.ok() {
            return None;
        }
        parse_git_line(&out.stdout_str())
    }

    fn disk_usage(&self, name: &str) -> Option<IslandDisk> {
        let opts = ExecOpts::root(&["du", "-sxb", "/workspace", "/home/agent"]);
        let out = self.runtime.exec(name, &opts, Input::None).ok()?;
        let s = out.stdout_str();
        let mut sizes = s
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok());
        Some(IslandDisk {
            workspace_bytes: sizes.next()?,
            home_bytes: sizes.next()?,
        })
    }
}

/// `branch|dirty|behind ahead` → GitInfo.
fn parse_git_line(s: &str) -> Option<GitInfo> {
    let mut f = s.trim().split('|');
    let branch = f.next()?.to_string();
    let dirty: i64 = f.next()?.trim().parse().ok()?;
    let mut ab = f.next()?.split_whitespace();
    let behind: i64 = ab.next()?.parse().ok()?;
    let ahead: i64 = ab.next()?.parse().ok()?;
    Some(GitInfo {
        branch,
        clean: dirty == 0,
        ahead,
        behind,
        dirty_files: dirty,
    })
}

/// The in-container file helper's exit code → our error.
fn file_status(code: Option<i32>, path: &str, stderr: &str) -> Result<()> {
    match code {
        Some(0) => Ok(()),
        Some(3) => Err(Error::Conflict(format!("{path} is not a regular file"))),
        Some(4) => Err(Error::NotFound(format!("file {path} not found"))),
        Some(5) => Err(Error::Forbidden(format!(
            "{path} resolves outside the workspace and agent home"
        ))),
        Some(6) => Err(Error::Conflict(format!("cannot write {path}: {stderr}"))),
        Some(7) => Err(Error::bad(format!(
            "the body for {path} ended before its Content-Length; nothing written"
        ))),
        other => Err(Error::Internal(format!(
            "file helper for {path} exited {other:?}: {stderr}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_git_lines() {
        let g = parse_git_line("main|2|1 3\n").unwrap();
        assert_eq!(
            (g.branch.as_str(), g.clean, g.dirty_files, g.behind, g.ahead),
            ("main", false, 2, 1, 3)
        );
        assert!(parse_git_line("main|0|0 0").unwrap().clean);
        assert!(parse_git_line("garbage").is_none());
    }
}
