//! Host terminals: operator shells in tmux on the daemon host, on a private tmux socket under
//! `$DEJIMA_HOME` so they never touch the user's own tmux server. Off unless
//! `dejimad --host-terminals`. Records (label, command) persist in `terminals.json`; whether a
//! terminal still runs is tmux's answer.

use crate::api::TerminalStatus;
use crate::util::lock;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Hub, Target};
use crate::api::{CreateTerminal, TerminalInfo};
use crate::error::{Error, Result};
use crate::process::Run;
use crate::store::{self, Home};
use crate::util;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: String,
    label: String,
    command: String,
    #[serde(default)]
    args: Vec<String>,
    cwd: String,
    created_at: String,
}

pub struct Terminals {
    enabled: bool,
    home: Home,
    hub: Arc<Hub>,
    records: Mutex<Vec<Record>>,
    /// Serialises record-file writes.
    write: Mutex<()>,
}

fn session(id: &str) -> String {
    format!("term-{id}")
}

impl Terminals {
    pub fn new(enabled: bool, home: Home, hub: Arc<Hub>) -> Terminals {
        let records = store::read_json(&home.root.join("terminals.json")).unwrap_or_default();
        Terminals {
            enabled,
            home,
            hub,
            records: Mutex::new(records),
            write: Mutex::new(()),
        }
    }

    fn socket(&self) -> PathBuf {
        self.home.root.join("host-tmux.sock")
    }

    fn tmux(&self, args: &[&str]) -> Result<crate::process::Output> {
        let sock = self.socket().display().to_string();
        let mut argv = vec!["tmux", "-S", &sock, "-f", "/dev/null"];
        argv.extend_from_slice(args);
        Run::new(&argv)
            .timeout(Duration::from_secs(10))
            .run()
            .map_err(|e| Error::Unprocessable(format!("cannot run tmux on the host: {e}")))
    }

    fn require(&self) -> Result<()> {
        if self.enabled {
            Ok(())
        } else {
            Err(Error::NotFound(
                "host terminals are off; start dejimad with --host-terminals".into(),
            ))
        }
    }

    fn save(&self) -> Result<()> {
        let _w = lock(&self.write);
        let recs = lock(&self.records).clone();
        store::write_json(&self.home.root.join("terminals.json"), &recs)
            .map_err(|e| Error::Internal(format!("cannot save terminals: {e}")))
    }

    fn live(&self) -> Vec<String> {
        match self.tmux(&["list-sessions", "-F", "#{session_name}"]) {
            Ok(o) if o.ok() => o.stdout_str().lines().map(str::to_string).collect(),
            _ => Vec::new(),
        }
    }

    fn info(&self, r: &Record, live: &[String]) -> TerminalInfo {
        TerminalInfo {
            id: r.id.clone(),
            label: r.label.clone(),
            command: r.command.clone(),
            args: r.args.clone(),
            cwd: r.cwd.clone(),
            created_at: r.created_at.clone(),
            status: if live.contains(&session(&r.id)) {
                TerminalStatus::Running
            } else {
                TerminalStatus::Exited
            },
            attached: self.hub.attached(&Target::Terminal { id: r.id.clone() }),
        }
    }

    pub fn list(&self) -> Result<Vec<TerminalInfo>> {
        self.require()?;
        let live = self.live();
        let recs = lock(&self.records).clone();
        Ok(recs.iter().map(|r| self.info(r, &live)).collect())
    }

    pub fn create(&self, req: CreateTerminal) -> Result<TerminalInfo> {
        self.require()?;
        crate::island::names::check_label(&req.label)?;
        let shell = std::env::var("SHELL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".into());
        let command = if req.command.is_empty() {
            shell
        } else {
            req.command.clone()
        };
        let cwd = if req.cwd.is_empty() {
            std::env::var("HOME").unwrap_or_else(|_| "/".into())
        } else {
            req.cwd.clone()
        };
        if !std::path::Path::new(&cwd).is_dir() {
            return Err(Error::Unprocessable(format!(
                "cwd {cwd:?} is not a directory on the host"
            )));
        }
        if req.cols.is_some_and(|c| c > 65535) || req.rows.is_some_and(|r| r > 65535) {
            return Err(Error::bad("cols and rows are at most 65535"));
        }
        for (k, v) in &req.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(Error::bad(format!("env name {k:?} is invalid")));
            }
            if v.contains('\0') {
                return Err(Error::bad(format!(
                    "env {k}: values must not contain NUL bytes"
                )));
            }
        }
        if command.contains('\0') || req.args.iter().any(|a| a.contains('\0')) {
            return Err(Error::bad("command and args must not contain NUL bytes"));
        }
        let (cols, rows) = (
            req.cols.unwrap_or(80).clamp(1, 1000) as u16,
            req.rows.unwrap_or(24).clamp(1, 1000) as u16,
        );
        let id = util::random_hex(4);
        let s = session(&id);
        let (c, r) = (cols.to_string(), rows.to_string());
        let mut args: Vec<String> = [
            "new-session",
            "-d",
            "-s",
            &s,
            "-c",
            &cwd,
            "-x",
            &c,
            "-y",
            &r,
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        for (k, v) in &req.env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push("--".into());
        args.push(command.clone());
        args.extend(req.args.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.tmux(&refs)?;
        if !out.ok() {
            return Err(Error::Unprocessable(format!(
                "tmux refused: {}",
                out.stderr_str()
            )));
        }
        let rec = Record {
            id: id.clone(),
            label: if req.label.is_empty() {
                format!("term-{id}")
            } else {
                req.label
            },
            command,
            args: req.args,
            cwd,
            created_at: util::now_rfc3339(),
        };
        lock(&self.records).push(rec.clone());
        self.save()?;
        Ok(self.info(&rec, &[s]))
    }

    fn find(&self, id: &str) -> Result<Record> {
        lock(&self.records)
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("terminal {id:?} not found")))
    }

    pub fn relabel(&self, id: &str, label: &str) -> Result<TerminalInfo> {
        self.require()?;
        crate::island::names::check_label(label)?;
        self.find(id)?;
        if let Some(r) = lock(&self.records).iter_mut().find(|r| r.id == id) {
            r.label = label.to_string();
        }
        self.save()?;
        let live = self.live();
        Ok(self.info(&self.find(id)?, &live))
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        self.require()?;
        self.find(id)?;
        self.hub
            .revoke_where(|t| *t == Target::Terminal { id: id.to_string() });
        let _ = self.tmux(&["kill-session", "-t", &format!("={}", session(id))]);
        lock(&self.records).retain(|r| r.id != id);
        self.save()
    }

    /// The PTY command and environment to attach to terminal `id`.
    pub fn attach_argv(&self, id: &str) -> Result<(Vec<String>, Vec<(String, String)>)> {
        self.require()?;
        self.find(id)?;
        if !self.live().contains(&session(id)) {
            return Err(Error::Conflict(format!("terminal {id:?} has exited")));
        }
        let sock = self.socket().display().to_string();
        let argv = [
            "tmux",
            "-S",
            &sock,
            "-f",
            "/dev/null",
            "attach-session",
            "-t",
            &format!("={}", session(id)),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Ok((argv, vec![("TERM".into(), "xterm-256color".into())]))
    }
}
