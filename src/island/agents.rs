//! Agents: each runs in its own tmux session `agent-<id>` inside the island. `a1`, the
//! primary, works in /workspace; every added agent gets a git worktree
//! `/workspace/.agents/<id>` on branch `agent/<id>`. Headless agents run under
//! `dejima-supervise` (restart with backoff, a restart count, a log file) in their session.
//!
//! What runs is observed with one `tmux list-panes` per island, cached; the island list reads
//! the cache and never waits on the engine.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{names, Islands, Record};
use crate::api::{AddAgent, AgentInfo, AgentRun, AgentType};
use crate::error::{Error, Result};
use crate::process::{Input, Stream};
use crate::runtime::{self, ExecOpts, WORKSPACE};
use crate::session::{feed, pump, tmux, Target};
use crate::store;
use crate::util;

pub const PRIMARY: &str = "a1";
/// An agent observation younger than this answers reads without asking the island again.
const OBS_FRESH: std::time::Duration = std::time::Duration::from_millis(1500);
const LOG_DIR: &str = "/home/agent/.dejima/logs";

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct AgentRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: AgentType,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub cmd: String,
    #[serde(default)]
    pub branch: String,
    pub worktree: String,
    #[serde(default)]
    pub created_at: String,
    /// The last orchestration failure, if any.
    #[serde(default)]
    pub error: String,
    /// The stored provider whose key the agent is launched with (empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// The model its CLI is started with (empty: the CLI's default).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
}

impl AgentRecord {
    pub fn headless(&self) -> bool {
        self.kind == AgentType::Headless
    }

    pub fn primary(kind: AgentType, cmd: &str) -> AgentRecord {
        AgentRecord {
            id: PRIMARY.into(),
            kind,
            cmd: cmd.into(),
            worktree: WORKSPACE.into(),
            created_at: util::now_rfc3339(),
            ..AgentRecord::default()
        }
    }
}

/// What the engine last showed of one agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentObs {
    pub state: AgentRun,
    pub restarts: i64,
    pub exit_status: Option<i32>,
    /// What runs in the agent's pane now (`claude`, `codex`, `bash`, ...).
    pub runtime: String,
}

/// Parse the observation script's output (panes, `---`, `id|restarts` lines).
pub fn parse_obs(out: &str, agents: &[AgentRecord]) -> HashMap<String, AgentObs> {
    let (panes, rest) = out.split_once("---\n").unwrap_or((out, ""));
    let panes = tmux::parse_panes(panes);
    let restarts: HashMap<&str, i64> = rest
        .lines()
        .filter_map(|l| {
            let (id, n) = l.split_once('|')?;
            Some((id, n.trim().parse().unwrap_or(0)))
        })
        .collect();
    agents
        .iter()
        .map(|a| {
            let s = tmux::session_name(&a.id);
            let pane = panes.iter().find(|p| p.session == s);
            // A CLI agent whose pane shows a shell again has ended, whatever the tmux
            // session says: the shell outlived the agent (a custom cmd like `claude; bash`).
            let cli_gone = matches!(a.kind, AgentType::ClaudeCode | AgentType::Codex)
                && pane.is_some_and(|p| {
                    !p.dead && matches!(p.command.as_str(), "bash" | "zsh" | "fish")
                });
            let obs = AgentObs {
                state: match pane {
                    None => AgentRun::Stopped,
                    Some(p) if p.dead => AgentRun::Exited,
                    Some(_) if cli_gone => AgentRun::Exited,
                    Some(_) => AgentRun::Running,
                },
                restarts: restarts.get(a.id.as_str()).copied().unwrap_or(0),
                exit_status: pane.filter(|p| p.dead).and_then(|p| p.dead_status),
                runtime: pane
                    .filter(|p| !p.dead)
                    .map(|p| p.command.clone())
                    .unwrap_or_default(),
            };
            (a.id.clone(), obs)
        })
        .collect()
}

/// What one observation runs: the panes (`tmux::PANES_FORMAT`, passed as `$1`), `---`, then
/// `id|restarts` per headless agent.
const OBSERVE: &str = "tmux -L dejima list-panes -a -F \"$1\" 2>/dev/null\n\
    echo ---\n\
    for d in /home/agent/.dejima/agents/*/; do [ -d \"$d\" ] || continue; echo \"$(basename \"$d\")|$(cat \"$d/restarts\" 2>/dev/null || echo 0)\"; done\n";

/// Shell that makes an added agent's worktree `$2` on branch `$1` when it is missing (and a
/// first commit when the repository has none); part of each agent's start script.
const WORKTREE: &str = r#"if [ ! -d "$2" ]; then
  cd /workspace || exit 1
  git rev-parse --is-inside-work-tree >/dev/null 2>&1 || git init -q || exit 1
  git rev-parse -q --verify HEAD >/dev/null || git -c user.name=dejima -c user.email=dejima@localhost commit -q --allow-empty -m 'dejima: initial commit' || exit 1
  mkdir -p .git/info && { grep -qx '/.agents/' .git/info/exclude 2>/dev/null || echo '/.agents/' >> .git/info/exclude; }
  if git show-ref -q --verify "refs/heads/$1"; then git worktree add -q "$2" "$1"; else git worktree add -q -b "$1" "$2"; fi || exit 1
fi
"#;

impl Islands {
    /// Records written before agents existed get their primary here.
    pub(super) fn ensure_primary(rec: &mut Record) {
        if rec.token.is_empty() {
            rec.token = util::random_hex(32);
        }
        if rec.agents.is_empty() {
            rec.agents.push(AgentRecord::primary(rec.agent, &rec.cmd));
        }
        if rec.next_agent < 2 {
            rec.next_agent = 2;
        }
    }

    /// Write the island's run directory: one start script per agent in `agents.d/`, which
    /// the image's entrypoint runs (as the agent user) every time the container starts. So a
    /// wake or recreate brings the agents up with the container, no exec round trips.
    pub(super) fn prepare_run_dir(&self, rec: &Record) -> Result<std::path::PathBuf> {
        let run = self.home.island_dir(&rec.name).join("run");
        let dir = run.join("agents.d");
        let io =
            |e: std::io::Error| Error::Internal(format!("cannot write {}: {e}", dir.display()));
        // The island sees this folder (read-only now; older containers had it writable): a
        // link planted in it is removed, never followed.
        std::fs::create_dir_all(&run).map_err(io)?;
        store::real_dir(&dir).map_err(io)?;
        for d in [&run, &dir] {
            store::chmod_nofollow(d, 0o755).map_err(io)?;
        }
        let want: Vec<String> = rec.agents.iter().map(|a| format!("{}.sh", a.id)).collect();
        for e in std::fs::read_dir(&dir).map_err(io)?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !want.contains(&n) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        for a in &rec.agents {
            let p = dir.join(format!("{}.sh", a.id));
            let script = start_script(&rec.name, a, &self.agent_launch(rec, a, false));
            store::atomic_write_mode(&p, script.as_bytes(), 0o644).map_err(io)?;
        }
        Ok(run)
    }

    fn exec_agent_script(
        &self,
        island: &str,
        script: &str,
        args: &[&str],
    ) -> Result<crate::process::Output> {
        let mut argv = vec!["sh", "-c", script, "sh"];
        argv.extend_from_slice(args);
        Ok(self
            .runtime
            .exec(island, &ExecOpts::agent(&argv), Input::None)?)
    }

    /// Ask the island what runs, and cache it.
    pub fn observe_agents(&self, island: &str) -> Result<HashMap<String, AgentObs>> {
        let rec = self.record(island)?;
        let obs = if self.observed.running(island) {
            let out = self.exec_agent_script(island, OBSERVE, &[tmux::PANES_FORMAT])?;
            parse_obs(&out.stdout_str(), &rec.agents)
        } else {
            rec.agents
                .iter()
                .map(|a| {
                    (
                        a.id.clone(),
                        AgentObs {
                            state: AgentRun::Stopped,
                            ..Default::default()
                        },
                    )
                })
                .collect()
        };
        self.with_slot(island, |slot| {
            slot.agent_obs = Some(obs.clone());
            slot.agent_obs_at = Some(std::time::Instant::now());
        });
        Ok(obs)
    }

    /// The container was (re)started: what ran before says nothing now.
    pub(super) fn forget_agent_obs(&self, island: &str) {
        self.with_slot(island, |slot| {
            slot.agent_obs = None;
            slot.agent_obs_at = None;
        });
    }

    /// How old the island's agent observation is (None: there is none).
    fn agent_obs_age(&self, island: &str) -> Option<std::time::Duration> {
        self.with_slot(island, |slot| {
            slot.agent_obs
                .as_ref()
                .and(slot.agent_obs_at)
                .map(|t| t.elapsed())
        })
        .flatten()
    }

    /// Look again only when the last look is older than `OBS_FRESH`: readers of a busy
    /// island share one exec, and the sweep keeps quiet islands current.
    fn observe_if_stale(&self, island: &str) -> Result<()> {
        if self.agent_obs_age(island).is_some_and(|a| a < OBS_FRESH) {
            return Ok(());
        }
        self.observe_agents(island).map(drop)
    }

    /// One pass of the background sweep: re-observe, one island at a time and at most one
    /// every `pace`, the running islands whose observation is older than `max_age`. Returns
    /// how many were looked at. `stop` ends the pass early.
    pub fn sweep_agents(
        &self,
        max_age: std::time::Duration,
        pace: std::time::Duration,
        stop: &crate::latch::Latch,
    ) -> usize {
        let mut n = 0;
        for island in self.names() {
            if stop.is_set() {
                break;
            }
            if !self.observed.running(&island) || self.panicked() {
                continue;
            }
            if self.agent_obs_age(&island).is_some_and(|a| a < max_age) {
                continue;
            }
            // Never beside a lifecycle operation (a clone pauses the island); marked so one
            // that starts meanwhile waits for this exec.
            let begun = self
                .with_slot(&island, |s| {
                    let free = s.busy.is_none();
                    if free {
                        s.sweeping = true;
                    }
                    free
                })
                .unwrap_or(false);
            if !begun {
                continue;
            }
            if let Err(e) = self.observe_agents(&island) {
                log::debug!("island {island}: agent sweep: {e}");
            }
            self.with_slot(&island, |s| s.sweeping = false);
            n += 1;
            if stop.wait_timeout(pace) {
                break;
            }
        }
        n
    }

    /// One agent's view (the island's `View` taken once).
    pub(super) fn agent_info(&self, island: &str, id: &str) -> Result<AgentInfo> {
        let view = self.view();
        self.with_slot(island, |slot| {
            let running = view
                .containers
                .get(island)
                .is_some_and(|o| o.state == crate::runtime::ContainerState::Running);
            let a = find(&slot.rec, id)?;
            Ok(info_from(slot, a, running, view.presence.get(island)))
        })
        .ok_or_else(|| Error::island_not_found(island))?
    }

    /// GET /v1/islands/{name}/agents
    pub fn list_agents(&self, island: &str) -> Result<Vec<AgentInfo>> {
        self.record(island)?;
        self.observe_if_stale(island)?;
        Ok(self.info(island)?.agents)
    }

    /// GET /v1/islands/{name}/agents/{id}
    pub fn get_agent(&self, island: &str, id: &str) -> Result<AgentInfo> {
        find(&self.record(island)?, id)?;
        self.observe_if_stale(island)?;
        self.agent_info(island, id)
    }

    /// Start one agent's session if it is not there; restart its program if it exited.
    fn start_agent(&self, island: &str, a: &AgentRecord, obs: Option<&AgentObs>) -> Result<()> {
        let out = match obs.map(|o| o.state) {
            Some(AgentRun::Running) => return Ok(()),
            Some(AgentRun::Exited) => self.runtime.exec(
                island,
                &ExecOpts::agent(&str_refs(&tmux::respawn(&tmux::session_name(&a.id)))),
                Input::None,
            )?,
            // The same script the entrypoint runs at container start.
            _ => self.runtime.exec(
                island,
                &ExecOpts::agent(&["sh", &format!("/run/dejima/agents.d/{}.sh", a.id)]),
                Input::None,
            )?,
        };
        if !out.ok() && !out.stderr_str().contains("duplicate session") {
            return Err(Error::Unprocessable(format!(
                "cannot start agent {}: {}",
                a.id,
                out.stderr_str()
            )));
        }
        Ok(())
    }

    /// End what earlier daemon runs left running in the island: tmux clients of attaches
    /// whose websocket is gone, execs whose deadline nobody keeps any more. Marks of this run
    /// are left alone, so a client that attached in the meantime keeps its screen.
    pub(super) fn sweep_strays(&self, island: &str) {
        // Attaches run as the agent user; execs as the agent or root. Each user can only
        // see its own processes' environments.
        let mut ended = 0;
        for user in [runtime::AGENT_USER, "root"] {
            match self.runtime.sweep_strays(island, user) {
                Ok(n) => ended += n,
                Err(e) => log::warn!("island {island}: sweeping strays as {user}: {e}"),
            }
        }
        if ended > 0 {
            log::info!("island {island}: ended {ended} stray attach(es) and exec(s)");
        }
    }

    /// Make every agent that should run, run (create, wake, reset, upgrade, adoption). A
    /// failure is recorded on the agent, not returned: one broken agent must not fail a wake.
    pub fn reconcile_agents(&self, island: &str) {
        if self.panicked() {
            return;
        }
        let Ok(rec) = self.record(island) else { return };
        if !self.observed.running(island) {
            return;
        }
        let obs = self.observe_agents(island).unwrap_or_default();
        for a in &rec.agents {
            let err = match self.start_agent(island, a, obs.get(&a.id)) {
                Ok(()) => String::new(),
                Err(e) => {
                    log::warn!("island {island}: agent {}: {e}", a.id);
                    e.to_string()
                }
            };
            if err != a.error {
                let id = a.id.clone();
                let _ = self.update(island, |r| {
                    if let Some(x) = r.agents.iter_mut().find(|x| x.id == id) {
                        x.error = err;
                    }
                });
            }
        }
        let _ = self.observe_agents(island);
    }

    /// POST /v1/islands/{name}/agents
    pub fn add_agent(&self, island: &str, req: AddAgent) -> Result<AgentInfo> {
        self.refuse_if_panicked("add an agent")?;
        names::check_label(&req.label)?;
        let _busy = self.begin(island, "adding an agent")?;
        let rec = self.record(island)?;
        let kind = if req.kind.is_empty() {
            // The type comes from the island (its primary's): what it then needs is a fact
            // of the island, not of the request.
            let kind = rec.agents.first().map(|a| a.kind).unwrap_or(rec.agent);
            check_type(kind.as_str(), &req.cmd).map_err(|e| match e {
                Error::BadRequest(m) => Error::Unprocessable(format!(
                    "{m} (the island's primary is {kind}, so an added agent is too unless it names a type)"
                )),
                e => e,
            })?
        } else {
            check_type(&req.kind, &req.cmd)?
        };
        if !req.model.is_empty() {
            super::creds::check_model(&req.model)?;
        }
        let provider = self.resolve_provider(kind, &req.provider)?;
        let id = format!("a{}", rec.next_agent.max(2));
        let a = AgentRecord {
            id: id.clone(),
            kind,
            label: req.label,
            cmd: req.cmd,
            branch: format!("agent/{id}"),
            worktree: format!("{WORKSPACE}/.agents/{id}"),
            created_at: util::now_rfc3339(),
            error: String::new(),
            provider,
            model: req.model,
        };
        let a2 = a.clone();
        let rec = self.update(island, |r| {
            r.next_agent = r.next_agent.max(2) + 1;
            r.agents.push(a2);
        })?;
        self.prepare_run_dir(&rec)?;
        self.write_secrets(&rec.name)?;
        if self.observed.running(island) {
            if let Err(e) = self.start_agent(island, &a, None) {
                let msg = e.to_string();
                self.update(island, |r| {
                    if let Some(x) = r.agents.iter_mut().find(|x| x.id == id) {
                        x.error = msg;
                    }
                })?;
            }
            self.observe_agents(island)?;
        }
        self.agent_info(island, &id)
    }

    /// DELETE /v1/islands/{name}/agents/{id}: session killed, worktree pruned, branch kept.
    pub fn remove_agent(&self, island: &str, id: &str) -> Result<()> {
        let _busy = self.begin(island, "removing an agent")?;
        let rec = self.record(island)?;
        let a = find(&rec, id)?.clone();
        if a.id == PRIMARY {
            return Err(Error::Conflict(
                "the primary agent cannot be removed".into(),
            ));
        }
        if rec.agents.len() <= 1 {
            return Err(Error::Conflict("the last agent cannot be removed".into()));
        }
        self.hub.revoke_where(|t| {
            *t == Target::Agent {
                island: island.into(),
                agent: id.into(),
            }
        });
        if self.observed.running(island) {
            let _ = self.runtime.exec(
                island,
                &ExecOpts::agent(&str_refs(&tmux::kill_session(&tmux::session_name(id)))),
                Input::None,
            )?;
            let script = "cd /workspace && { git worktree remove --force \"$1\" 2>/dev/null || rm -rf \"$1\"; git worktree prune; }";
            let out = self.exec_agent_script(island, script, &[&a.worktree])?;
            if !out.ok() {
                log::warn!(
                    "island {island}: pruning {}: {}",
                    a.worktree,
                    out.stderr_str()
                );
            }
        }
        let rec = self.update(island, |r| r.agents.retain(|x| x.id != id))?;
        self.prepare_run_dir(&rec)?;
        self.write_secrets(&rec.name)?;
        self.with_slot(island, |slot| {
            if let Some(m) = slot.agent_obs.as_mut() {
                m.remove(id);
            }
        });
        Ok(())
    }

    /// POST /v1/islands/{name}/agents/{id}/restart: relaunch the agent's program in place
    /// (its tmux session, worktree and attached clients stay). `resume` continues the last
    /// conversation where the CLI can (`claude --continue`).
    pub fn restart_agent(&self, island: &str, id: &str, resume: bool) -> Result<AgentInfo> {
        self.refuse_if_panicked("restart an agent")?;
        let _busy = self.begin(island, "restarting an agent")?;
        let rec = self.record(island)?;
        let a = find(&rec, id)?.clone();
        if !self.observed.running(island) {
            return Err(Error::Conflict(format!(
                "island {island:?} is not running; wake it first"
            )));
        }
        if resume
            && !(matches!(a.kind, AgentType::ClaudeCode | AgentType::Codex) && a.cmd.is_empty())
        {
            return Err(Error::Unprocessable(format!(
                "agent {id} ({}) cannot resume a conversation; restart it without resume",
                a.kind
            )));
        }
        // Its start script and secrets follow the record and credentials as they are now.
        self.prepare_run_dir(&rec)?;
        self.write_secrets(&rec.name)?;
        let argv = self.agent_launch(&rec, &a, resume);
        let session = tmux::session_name(id);
        let has = self.exec_agent_script(
            island,
            "tmux -L dejima has-session -t \"=$1\" 2>/dev/null",
            &[&session],
        )?;
        let out = if has.ok() {
            self.runtime.exec(
                island,
                &ExecOpts::agent(&str_refs(&tmux::respawn_with(&session, &a.worktree, &argv))),
                Input::None,
            )?
        } else {
            // No session at all: start it as the container would.
            self.runtime.exec(
                island,
                &ExecOpts::agent(&["sh", &format!("/run/dejima/agents.d/{id}.sh")]),
                Input::None,
            )?
        };
        if !out.ok() {
            return Err(Error::Unprocessable(format!(
                "cannot restart agent {id}: {}",
                out.stderr_str()
            )));
        }
        self.observe_agents(island)?;
        self.agent_info(island, id)
    }

    /// PATCH /v1/islands/{name}/agents/{id}/config: provider and model. Both are read when
    /// the agent's program launches, so a running agent needs a restart to take them up
    /// (`restart_required`); its start script and the island's secrets change at once.
    pub fn configure_agent(
        &self,
        island: &str,
        id: &str,
        cfg: crate::api::AgentConfig,
    ) -> Result<AgentInfo> {
        let _busy = self.begin(island, "configuring an agent")?;
        let rec = self.record(island)?;
        let a = find(&rec, id)?.clone();
        let provider = match cfg.provider.as_deref() {
            None => a.provider.clone(),
            Some("") => String::new(),
            Some(p) => self.resolve_provider(a.kind, p)?,
        };
        let model = match cfg.model {
            None => a.model.clone(),
            Some(m) => {
                if !m.is_empty() {
                    super::creds::check_model(&m)?;
                }
                m
            }
        };
        let changed = provider != a.provider || model != a.model;
        let rec = self.update(island, |r| {
            if let Some(x) = r.agents.iter_mut().find(|x| x.id == id) {
                x.provider = provider;
                x.model = model;
            }
        })?;
        self.prepare_run_dir(&rec)?;
        self.write_secrets(&rec.name)?;
        let mut info = self.agent_info(island, id)?;
        let running = self.observed.running(island)
            && matches!(info.state, AgentRun::Running | AgentRun::Exited);
        info.restart_required = Some(changed && running);
        Ok(info)
    }

    /// PATCH /v1/islands/{name}/agents/{id}
    pub fn relabel_agent(&self, island: &str, id: &str, label: &str) -> Result<AgentInfo> {
        names::check_label(label)?;
        find(&self.record(island)?, id)?;
        self.update(island, |r| {
            if let Some(a) = r.agents.iter_mut().find(|a| a.id == id) {
                a.label = label.to_string();
            }
        })?;
        self.agent_info(island, id)
    }

    /// GET /v1/islands/{name}/logs?agent=<id>: a headless agent's log.
    pub fn agent_log(&self, island: &str, id: &str, follow: bool, tail: &str) -> Result<Stream> {
        let rec = self.record(island)?;
        let a = find(&rec, id)?;
        if !a.headless() {
            return Err(Error::Conflict(format!(
                "agent {id} is interactive; attach to its session instead"
            )));
        }
        if tail != "all" && tail.parse::<u64>().is_err() {
            return Err(Error::bad("tail must be a number of lines or \"all\""));
        }
        if !self.observed.running(island) {
            return Err(Error::Conflict(format!(
                "island {island:?} is not running; wake it first"
            )));
        }
        let log = format!("{LOG_DIR}/{id}.log");
        let n = if tail == "all" {
            "+1".to_string()
        } else {
            tail.to_string()
        };
        let script = if follow {
            "touch \"$1\"; exec tail -n \"$2\" -F \"$1\" 2>/dev/null"
        } else {
            "[ -f \"$1\" ] || exit 0; exec tail -n \"$2\" \"$1\""
        };
        Ok(self.runtime.exec_stream(
            island,
            &ExecOpts::agent(&["sh", "-c", script, "sh", &log, &n]),
        )?)
    }

    /// What a websocket client on agent `id` attaches to. 409 for a headless agent or one
    /// that is not running.
    /// What attaching to an agent needs. `may_start`: an agent without a session is started
    /// first (not for observers: watching never starts anything).
    pub fn session_spec(
        &self,
        island: &str,
        id: Option<&str>,
        label: &str,
        may_start: bool,
    ) -> Result<pump::Spec> {
        let rec = self.record(island)?;
        let id = id.unwrap_or(PRIMARY);
        let a = find(&rec, id)?;
        if a.headless() {
            return Err(Error::Conflict(format!(
                "agent {id} is headless; read its log (logs?agent={id})"
            )));
        }
        if !self.observed.running(island) {
            return Err(Error::Conflict(format!(
                "island {island:?} is not running; wake it first"
            )));
        }
        // The cache decides without a round trip; only an unknown or "stopped" agent is
        // looked at again. One that has no session while its island runs is started here,
        // as the container would (the start lock makes this safe beside the entrypoint's own
        // start, and an existing session is left alone): an attach never finds a dead end.
        let cached = self
            .with_slot(island, |slot| {
                slot.agent_obs
                    .as_ref()
                    .and_then(|m| m.get(id))
                    .map(|o| o.state)
            })
            .flatten();
        if matches!(cached, None | Some(AgentRun::Stopped)) {
            let state = |s: &Self| -> Result<Option<AgentRun>> {
                Ok(s.observe_agents(island)?.get(id).map(|o| o.state))
            };
            if state(self)? == Some(AgentRun::Stopped) {
                if !may_start {
                    return Err(Error::Conflict(format!(
                        "agent {id} is not running; an observer does not start it (an operator's attach or restart does)"
                    )));
                }
                self.refuse_if_panicked("start an agent")?;
                if let Err(e) = self.start_agent(island, a, None) {
                    log::warn!("island {island}: starting agent {id} for an attach: {e}");
                }
                if state(self)? == Some(AgentRun::Stopped) {
                    return Err(Error::Conflict(format!(
                        "agent {id} has no session and did not start (state stopped); see the island's logs"
                    )));
                }
            }
        }
        self.touch(island);
        let (engine, name, session) = (
            self.runtime.clone(),
            island.to_string(),
            tmux::session_name(id),
        );
        // Each shared attach is its own tmux client with its own mark.
        let attach = move |read_only: bool| {
            let mark = engine.mark();
            let argv = engine.tty_exec_argv(
                &name,
                runtime::AGENT_USER,
                &[
                    ("TERM", "xterm-256color"),
                    ("LANG", "C.UTF-8"),
                    (tmux::ATTACH_MARK, &mark),
                ],
                &tmux::attach_sized(&session, read_only),
            );
            let (engine, name) = (engine.clone(), name.clone());
            let on_end = move || {
                let opts = ExecOpts {
                    timeout: std::time::Duration::from_secs(15),
                    ..ExecOpts::agent(&["sh", "-c", tmux::DETACH_MARKED, "sh", &mark])
                };
                match engine.exec(&name, &opts, Input::None) {
                    Ok(out) if out.ok() => {}
                    Ok(out) => {
                        log::warn!("island {name}: ending attach {mark}: {}", out.stderr_str())
                    }
                    // A stopped or removed container took the client with it.
                    Err(e) => log::debug!("island {name}: ending attach {mark}: {e}"),
                }
            };
            feed::Attach {
                argv,
                env: Vec::new(),
                on_end: Some(Box::new(on_end)),
            }
        };
        Ok(pump::Spec {
            attach: std::sync::Arc::new(attach),
            target: Target::Agent {
                island: island.into(),
                agent: id.into(),
            },
            label: label.to_string(),
            owner: None,
            still_valid: None,
            observe: false,
            history: None,
        })
    }
}

/// An agent's view from its island's slot: `running` is the container's state, `presence` the
/// island's attached clients (no lock, no engine call).
pub(super) fn info_from(
    slot: &super::Slot,
    a: &AgentRecord,
    running: bool,
    presence: Option<&Vec<(Target, crate::api::PresenceEntry)>>,
) -> AgentInfo {
    let obs = slot
        .agent_obs
        .as_ref()
        .and_then(|m| m.get(&a.id))
        .filter(|_| running)
        .cloned()
        .unwrap_or_default();
    let mut error = a.error.clone();
    if error.is_empty() && obs.state == AgentRun::Exited && !obs.runtime.is_empty() {
        error = format!(
            "the agent's CLI is not running; its session shows {} (restart the agent)",
            obs.runtime
        );
    } else if error.is_empty() && obs.state == AgentRun::Exited {
        error = format!(
            "agent program exited{}",
            obs.exit_status
                .map(|s| format!(" with status {s}"))
                .unwrap_or_default()
        );
    }
    let target = Target::Agent {
        island: slot.rec.name.clone(),
        agent: a.id.clone(),
    };
    AgentInfo {
        id: a.id.clone(),
        kind: a.kind,
        label: a.label.clone(),
        tmux: tmux::session_name(&a.id),
        branch: a.branch.clone(),
        worktree: a.worktree.clone(),
        attachable: !a.headless(),
        state: obs.state,
        runtime: obs.runtime,
        provider: a.provider.clone(),
        model: a.model.clone(),
        restart_required: None,
        restarts: obs.restarts,
        agent_state: slot.agent_states.agents.get(&a.id).cloned(),
        attached: presence
            .map(|p| {
                p.iter()
                    .filter(|(t, _)| *t == target)
                    .map(|(_, e)| e.clone())
                    .collect()
            })
            .unwrap_or_default(),
        error,
    }
}

/// The shell script that starts one agent's session (run by the entrypoint as the agent user).
fn start_script(island: &str, a: &AgentRecord, launch: &[String]) -> String {
    let env = vec![
        ("DEJIMA_ISLAND".to_string(), island.to_string()),
        ("DEJIMA_AGENT".to_string(), a.id.clone()),
    ];
    let argv = tmux::new_session(&tmux::session_name(&a.id), &a.worktree, &env, launch);
    let cmd: Vec<String> = argv.iter().map(|w| tmux::sh_quote(w)).collect();
    let wt = tmux::sh_quote(&a.worktree);
    let mut s = format!(
        "# Written by dejimad: starts agent {} as the agent user. Edits are overwritten.\n",
        a.id
    );
    s.push_str("export HOME=/home/agent USER=agent LOGNAME=agent SHELL=/bin/bash\n");
    // Started by a marked exec, the tmux server must not carry that one-shot's mark: an
    // orphan sweep would take every agent with it.
    s.push_str("unset DEJIMA_EXEC DEJIMA_ATTACH\n");
    // One agent start at a time in an island: two first tmux clients racing (the entrypoint's
    // and an exec's) would each start a server on the same socket, and one server, with its
    // sessions, would be lost; worktree creation must not race either. The lock is held until
    // this client has made its session; the server it may start never holds it (fd 9 is
    // closed for tmux).
    s.push_str("exec 9>/tmp/.dejima-agent-start.lock && flock 9\n");
    if a.id != PRIMARY {
        s.push_str(&format!("set -- {} {wt}\n", tmux::sh_quote(&a.branch)));
        s.push_str(WORKTREE);
    }
    s.push_str(&format!("cd {wt} && {} 9>&-\n", cmd.join(" ")));
    s
}

/// A type that speaks to no provider and keeps no conversation.
fn plain(kind: AgentType, binary: &str, description: &str) -> crate::api::AgentTypeInfo {
    crate::api::AgentTypeInfo {
        kind,
        binary: binary.into(),
        needs_provider_key: false,
        provider: None,
        key_env: None,
        base_url_env: None,
        default_model: None,
        can_resume: false,
        emits_events: false,
        description: description.into(),
    }
}

/// Every agent type, described (GET /v1/agent-types): the one place these facts live.
pub fn agent_types() -> Vec<crate::api::AgentTypeInfo> {
    use crate::api::AgentTypeInfo as T;
    AgentType::ALL
        .iter()
        .map(|k| match k {
            AgentType::ClaudeCode => T {
                kind: *k,
                binary: "claude".into(),
                needs_provider_key: true,
                provider: Some("anthropic".into()),
                key_env: Some("ANTHROPIC_API_KEY".into()),
                base_url_env: Some("ANTHROPIC_BASE_URL".into()),
                default_model: None,
                can_resume: true,
                emits_events: true,
                description: "Claude Code; its hooks report waiting-for-input and task-complete"
                    .into(),
            },
            AgentType::Codex => T {
                kind: *k,
                binary: "codex".into(),
                needs_provider_key: true,
                provider: Some("openai".into()),
                key_env: Some("OPENAI_API_KEY".into()),
                base_url_env: Some("OPENAI_BASE_URL".into()),
                default_model: None,
                can_resume: true,
                emits_events: true,
                description: "OpenAI Codex CLI; its notify hook reports task-complete".into(),
            },
            AgentType::Custom => plain(
                *k,
                "bash (or the agent's cmd)",
                "any interactive command in a tmux session (a login shell by default)",
            ),
            AgentType::Headless => plain(
                *k,
                "dejima-supervise (running the agent's cmd)",
                "a supervised background command, restarted with backoff; read its log",
            ),
        })
        .collect()
}

/// An agent type and its command, checked the same way for the primary and added agents.
pub fn check_type(kind: &str, cmd: &str) -> Result<AgentType> {
    let kind: AgentType = kind.parse().map_err(|_| {
        Error::bad(format!(
            "agent type {kind:?} must be one of {}",
            AgentType::words()
        ))
    })?;
    if kind == AgentType::Headless && cmd.trim().is_empty() {
        return Err(Error::bad("a headless agent needs cmd"));
    }
    if cmd.contains('\0') {
        return Err(Error::bad("cmd must not contain NUL bytes"));
    }
    Ok(kind)
}

/// The key that submits a prompt in an agent type's CLI (as `tmux send-keys` names it).
pub fn submit_key(kind: AgentType) -> &'static str {
    match kind {
        // Claude Code, Codex and shells all submit their input line with Enter.
        AgentType::ClaudeCode | AgentType::Codex | AgentType::Custom | AgentType::Headless => {
            "Enter"
        }
    }
}

fn find<'r>(rec: &'r Record, id: &str) -> Result<&'r AgentRecord> {
    rec.agents
        .iter()
        .find(|a| a.id == id)
        .ok_or_else(|| Error::NotFound(format!("agent {id:?} not found in island {:?}", rec.name)))
}

fn str_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observes_states() {
        let agents = vec![
            AgentRecord::primary(AgentType::Custom, ""),
            AgentRecord {
                id: "a2".into(),
                kind: AgentType::Headless,
                ..Default::default()
            },
            AgentRecord {
                id: "a3".into(),
                ..Default::default()
            },
        ];
        let out = "agent-a1|1|3|80|24\nagent-a2|0||80|24\n---\na2|4\n";
        let o = parse_obs(out, &agents);
        let claude = vec![AgentRecord::primary(AgentType::ClaudeCode, "claude; bash")];
        let o2 = parse_obs("agent-a1|0||80|24|bash\n---\n", &claude);
        assert_eq!(o2["a1"].state, AgentRun::Exited);
        let o3 = parse_obs("agent-a1|0||80|24|claude\n---\n", &claude);
        assert_eq!(o3["a1"].state, AgentRun::Running);
        assert_eq!(
            (o["a1"].state, o["a1"].exit_status),
            (AgentRun::Exited, Some(3))
        );
        assert_eq!((o["a2"].state, o["a2"].restarts), (AgentRun::Running, 4));
        assert_eq!(o["a3"].state, AgentRun::Stopped);
    }

    #[test]
    fn argv_per_type() {
        use super::super::creds::program;
        let mut a = AgentRecord::primary(AgentType::ClaudeCode, "");
        assert_eq!(program(&a, None, false), vec!["claude"]);
        a.kind = AgentType::Custom;
        assert_eq!(program(&a, None, false), vec!["bash", "-l"]);
        a.cmd = "python x.py".into();
        assert_eq!(program(&a, None, false), vec!["bash", "-lc", "python x.py"]);
        a.kind = AgentType::Headless;
        assert_eq!(
            program(&a, None, false),
            vec!["dejima-supervise", "a1", "python x.py"]
        );
    }
}
