//! Create, hibernate, wake, reset, upgrade, clone, purge, resources, and adoption on start.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::names::{self, Source};
use super::{Islands, Record};
use crate::api::{
    AgentType, CreateIsland, DesiredState, IslandInfo, PutResources, Resources, ResourcesResult,
    WorkspaceReady,
};
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::image;
use crate::process::Input;
use crate::runtime::{
    self, ContainerSpec, ContainerState, EngineError, ExecOpts, AGENT_USER, WORKSPACE,
};
use crate::util;

/// How long a repo clone may take.
const CLONE_TIMEOUT: Duration = Duration::from_secs(600);
/// Grace period for `docker stop`.
const STOP_GRACE: u32 = 10;
/// `oom_priority` range; the kernel's oom_score_adj is priority * 100.
const OOM_RANGE: std::ops::RangeInclusive<i64> = -10..=10;
/// Islands are more expendable than the host's own processes unless told otherwise.
const DEFAULT_OOM_PRIORITY: i64 = 5;

fn parse_memory(m: &str) -> Result<u64> {
    match util::parse_size(m) {
        Some(b) if b > 1 << 50 => Err(Error::Unprocessable(format!(
            "memory {m:?} is larger than any host (1 PiB at most)"
        ))),
        // Below this an island's init and tmux cannot start (runc fails opaquely).
        Some(b) if b >= 64 << 20 => Ok(b),
        Some(_) => Err(Error::Unprocessable(format!(
            "memory {m:?} is below an island's 64 MiB minimum"
        ))),
        None => Err(Error::bad(format!(
            "memory {m:?} is not a size like 512m or 4G"
        ))),
    }
}

/// Whether resources are well formed (also a spawn grant's ceilings).
pub(crate) fn check_resources(r: &Resources) -> Result<()> {
    validate_resources(r)
}

fn validate_resources(r: &Resources) -> Result<()> {
    if !r.memory.is_empty() {
        parse_memory(&r.memory)?;
    }
    if !r.cpus.is_empty() {
        match r.cpus.parse::<f64>() {
            Ok(c) if c > 0.0 && c.is_finite() => {}
            Ok(c) if c == 0.0 => {
                return Err(Error::Unprocessable(
                    "cpus must be above 0 (leave it out for no cap)".into(),
                ))
            }
            _ => {
                return Err(Error::bad(format!(
                    "cpus {:?} is not a positive number",
                    r.cpus
                )))
            }
        }
    }
    if !r.disk.is_empty() && util::parse_size(&r.disk).is_none() {
        return Err(Error::bad(format!(
            "disk {:?} is not a size like 20G",
            r.disk
        )));
    }
    if let Some(p) = r.oom_priority {
        if !OOM_RANGE.contains(&p) {
            return Err(Error::bad(format!("oom_priority {p} is outside -10..=10")));
        }
    }
    Ok(())
}

fn base_spec(rec: &Record) -> ContainerSpec {
    ContainerSpec {
        island: rec.name.clone(),
        image: rec.image.clone(),
        memory: (!rec.resources.memory.is_empty())
            .then(|| util::parse_size(&rec.resources.memory))
            .flatten(),
        cpus: rec.resources.cpus.clone(),
        disk: rec.resources.disk.clone(),
        oom_score_adj: Some(rec.resources.oom_priority.unwrap_or(DEFAULT_OOM_PRIORITY) * 100),
        run_dir: None,
        secrets_dir: None,
    }
}

/// Map a refused `docker run` to what the caller can act on.
fn run_error(e: EngineError, rec: &Record) -> Error {
    let m = e.text().to_string();
    let refused = matches!(e, EngineError::Failed { .. });
    if refused && (m.contains("storage-opt") || m.contains("storage opt")) {
        Error::Unprocessable(format!(
            "the engine cannot honour disk {:?}: {m}",
            rec.resources.disk
        ))
    } else if refused
        && (m.contains("OCI runtime create failed") || m.contains("failed to create shim task"))
    {
        Error::Unprocessable(format!(
            "the engine could not start the island's container (its resources may be too small: {:?}): {m}",
            rec.resources
        ))
    } else if refused
        && (m.contains("Minimum memory") || m.contains("memory") && m.contains("limit"))
    {
        Error::Unprocessable(format!("the engine refused the memory limit: {m}"))
    } else if refused && (m.contains("cpus") || m.contains("NanoCPUs") || m.contains("CPUs")) {
        Error::Unprocessable(format!(
            "the engine refused cpus {:?}: {m}",
            rec.resources.cpus
        ))
    } else if matches!(e, EngineError::NotFound(_) | EngineError::Failed { .. })
        && (m.contains("No such image")
            || m.contains("invalid reference format")
            || m.contains("pull access denied")
            || m.contains("Unable to find image"))
    {
        Error::Unprocessable(format!("image {:?} is not available: {m}", rec.image))
    } else {
        e.into()
    }
}

impl Islands {
    /// The container for a record. Its run directory (bind-mounted at /run/dejima, holding
    /// the agent start scripts the entrypoint runs) is written first.
    fn container_spec(&self, rec: &Record) -> Result<ContainerSpec> {
        let run_dir = self.prepare_run_dir(rec)?;
        let secrets_dir = self.write_secrets(&rec.name)?;
        if rec.container_gen != super::CONTAINER_GEN {
            self.update(&rec.name, |r| r.container_gen = super::CONTAINER_GEN)?;
        }
        Ok(ContainerSpec {
            run_dir: Some(run_dir),
            secrets_dir: Some(secrets_dir),
            ..base_spec(rec)
        })
    }

    /// Make the island's network on its own subnet from the pool. A subnet someone else
    /// already uses (another daemon, a host network) is skipped for the next free one.
    fn ensure_network(&self, name: &str) -> Result<()> {
        let mut tried = Vec::new();
        loop {
            let subnet = self.subnet_of(name, &tried)?;
            match self.runtime.create_network(name, &subnet) {
                Ok(()) => return Ok(()),
                Err(EngineError::SubnetTaken(s)) => {
                    log::info!("island {name}: subnet {s} is in use elsewhere; trying the next");
                    self.note_subnet_taken(&s);
                    tried.push(s);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A request that needs what this runtime cannot do: 422 with the runtime's reason.
    pub(crate) fn require(&self, feature: &str) -> Result<()> {
        match self
            .runtime
            .unsupported()
            .into_iter()
            .find(|(f, _)| *f == feature)
        {
            None => Ok(()),
            Some((f, why)) => Err(Error::Unprocessable(format!(
                "the {} runtime cannot do {f}: {why}",
                self.runtime.kind()
            ))),
        }
    }

    /// POST /v1/islands
    pub fn create(self: &Arc<Self>, req: CreateIsland) -> Result<IslandInfo> {
        self.create_as(req, None)
    }

    /// POST /v1/islands by an island's token: a child of `parent`, within its spawn grant
    /// (resources clamped to the grant's ceilings; the count is checked as it is reserved).
    pub fn create_as(
        self: &Arc<Self>,
        mut req: CreateIsland,
        parent: Option<&str>,
    ) -> Result<IslandInfo> {
        self.refuse_if_panicked("create an island")?;
        if let Some(p) = parent {
            req.resources = Some(self.clamp_child(p, req.resources.take())?);
            req.owner = p.to_string();
            // Its image is the default one or its parent's, never one the parent picks.
            let parent_image = self.record(p)?.image;
            if !req.image.is_empty()
                && req.image != parent_image
                && req.image != self.config.default_image
            {
                return Err(Error::Forbidden(format!(
                    "a child island runs the default image or its parent's ({parent_image}), not {:?}",
                    req.image
                )));
            }
        }
        let source = if req.no_repo {
            if req.name.is_empty() {
                return Err(Error::bad("no_repo needs a name"));
            }
            if !req.repo.is_empty() {
                return Err(Error::bad("no_repo and repo are exclusive"));
            }
            None
        } else {
            Some(names::classify_repo(&req.repo)?)
        };
        let name = if req.name.is_empty() {
            names::derive(&req.repo).ok_or_else(|| {
                Error::Unprocessable(format!(
                    "cannot derive an island name from repo {:?}; pass a name",
                    req.repo
                ))
            })?
        } else {
            req.name.clone()
        };
        names::validate(&name)?;
        let agent = super::agents::check_type(
            if req.agent.is_empty() {
                AgentType::ClaudeCode.as_str()
            } else {
                &req.agent
            },
            &req.cmd,
        )?;
        let resources = req.resources.clone().unwrap_or_default();
        validate_resources(&resources)?;
        if resources.oom_priority.is_some() {
            self.require(runtime::feature::OOM_PRIORITY)?;
        }
        if req.tags.len() > 64 {
            return Err(Error::bad("tags: at most 64"));
        }
        for (k, v) in &req.tags {
            let (kc, vc) = (k.chars().count(), v.chars().count());
            if kc == 0 || kc > 128 || vc > 1024 {
                return Err(Error::bad(
                    "tags: keys must be 1-128 characters, values at most 1024",
                ));
            }
        }
        names::check_title(&req.title)?;
        if req.owner.chars().count() > 256 || req.role.chars().count() > 256 {
            return Err(Error::bad("owner and role are at most 256 characters"));
        }
        let image = if req.image.is_empty() {
            self.config.default_image.clone()
        } else {
            req.image.clone()
        };
        // A docker image reference: [registry/]repo[:tag][@digest].
        let ref_ok = image.len() <= 255
            && image
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && image
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._/:@-".contains(c));
        if !ref_ok {
            return Err(Error::bad(format!("invalid image reference {image:?}")));
        }
        if !req.model.is_empty() {
            super::creds::check_model(&req.model)?;
        }
        // A child of an island gets none of the operator's credentials: its parent chose its
        // code, and a default key or identity would reach that code.
        let (provider, github_identity) = if parent.is_some() {
            (String::new(), String::new())
        } else {
            (
                self.resolve_provider(agent, &req.provider)?,
                self.resolve_identity(&req.github_identity, &req.repo)?,
            )
        };
        let now = util::now_rfc3339();
        let rec = Record {
            name: name.clone(),
            repo: req.repo.clone(),
            agent,
            cmd: req.cmd.clone(),
            image,
            state: DesiredState::Running,
            created_at: now.clone(),
            last_used_at: now,
            title: req.title.clone(),
            role: req.role.clone(),
            owner: req.owner.clone(),
            tags: req.tags.clone(),
            github_identity,
            resources,
            no_repo: req.no_repo,
            record: req.record,
            provisioned: false,
            workspace: WorkspaceReady::default(),
            cloned_from: String::new(),
            agents: Vec::new(),
            next_agent: 2,
            token: String::new(),
            subnet: String::new(),
            container_gen: super::CONTAINER_GEN,
            claude_seeded_at: String::new(),
            port_scopes: Vec::new(),
            capability_grants: Vec::new(),
            mcp_grants: Vec::new(),
            spawn: None,
            parent: parent.unwrap_or_default().to_string(),
            spawned: parent.is_some(),
            ssh_keys: Vec::new(),
        };
        let mut rec = rec;
        Self::ensure_primary(&mut rec);
        if let Some(a1) = rec.agents.first_mut() {
            a1.provider = provider;
            a1.model = req.model.clone();
        }
        let busy = self.reserve(rec.clone(), "creating")?;
        if let Err(e) = self.provision(&rec) {
            log::warn!("create {name}: {e}; rolling back");
            self.teardown(&name);
            // Forgotten while still busy, so nothing can start on a half-removed island.
            let _ = self.forget(&name);
            drop(busy);
            return Err(e);
        }
        let rec = self.update(&name, |r| r.provisioned = true)?;
        // Before the clone: it may need the identity's git configuration.
        self.seed_home(&name, true);
        log::info!("island {name} created");
        self.events.publish(
            EventType::IslandCreated,
            &name,
            "",
            serde_json::json!({ "repo": rec.repo, "agent": rec.agent }),
        );
        match source {
            Some(Source::Url(url)) => {
                // The clone runs on, carrying the busy mark: the island stays busy until it
                // ends (or at once, should the thread fail to start).
                let name2 = name.clone();
                let islands = Arc::clone(self);
                thread::Builder::new()
                    .name(format!("clone-{name}"))
                    .spawn(move || {
                        islands.populate_from_url(&name2, &url);
                        drop(busy);
                    })
                    .map_err(|e| Error::Internal(format!("cannot start clone thread: {e}")))?;
            }
            Some(Source::Path(p)) => {
                let r = self.populate_from_path(&name, &p);
                drop(busy);
                r?;
            }
            None => {
                let r = self.populate_empty(&name);
                drop(busy);
                r?;
            }
        }
        let _ = rec;
        self.get(&name)
    }

    /// Create the engine objects for a record; every step tolerates its object existing.
    fn provision(&self, rec: &Record) -> Result<()> {
        let e = &self.runtime;
        let n = rec.name.as_str();
        // The three are independent; creating them side by side saves two round trips.
        let (net, ws, home) = thread::scope(|s| {
            let call = || thread::Builder::new().name("engine-call".into());
            let a = call().spawn_scoped(s, || self.ensure_network(n));
            let b =
                call().spawn_scoped(s, || Ok(e.create_volume(n, &runtime::workspace_volume(n))?));
            let c = call().spawn_scoped(s, || Ok(e.create_volume(n, &runtime::home_volume(n))?));
            let join = |h: std::io::Result<thread::ScopedJoinHandle<'_, _>>| match h {
                Ok(h) => h
                    .join()
                    .map_err(|_| Error::Internal("engine call panicked".into())),
                Err(e) => Err(Error::Internal(format!("cannot start a thread: {e}"))),
            };
            (join(a), join(b), join(c))
        });
        for r in [net, ws, home] {
            r??;
        }
        if !rec.cloned_from.is_empty() {
            self.copy_volumes(&rec.cloned_from, n, &rec.image)?;
        }
        self.start_or_run(rec)
    }

    /// Start the container, recreating it against the volumes if it is gone.
    fn start_or_run(&self, rec: &Record) -> Result<()> {
        self.refuse_if_panicked("start an island")?;
        let n = rec.name.as_str();
        self.start_or_run_unchecked(rec)?;
        self.undo_if_panicked(n)
    }

    /// `docker run` the island's container under the panic switch: refused when it is
    /// engaged, undone when it was engaged while the container started.
    fn run_checked(&self, rec: &Record) -> Result<()> {
        self.refuse_if_panicked("start an island")?;
        let n = rec.name.as_str();
        self.runtime
            .run_container(&self.container_spec(rec)?)
            .map_err(|e| run_error(e, rec))?;
        self.observed.set_state(n, ContainerState::Running);
        self.undo_if_panicked(n)
    }

    /// The switch may have been thrown while a start was under way: stop what started.
    fn undo_if_panicked(&self, n: &str) -> Result<()> {
        if self.panicked() {
            self.expect_stop(n);
            let _ = self.runtime.stop(n, STOP_GRACE);
            self.observed.set_state(n, ContainerState::Exited);
            return self.refuse_if_panicked("start an island");
        }
        Ok(())
    }

    fn start_or_run_unchecked(&self, rec: &Record) -> Result<()> {
        let n = rec.name.as_str();
        let obs = self.observed.container(n);
        if obs.state == ContainerState::Running && self.observed.synced() {
            return Ok(());
        }
        let mut known_missing = self.observed.synced() && obs.state == ContainerState::Missing;
        if rec.container_gen < super::CONTAINER_GEN && !known_missing {
            // Made by an older daemon (its secrets in its environment, no secrets mount):
            // recreated on the volumes, as an upgrade would.
            log::info!("island {n}: recreating a container an older dejimad made");
            self.expect_stop(n);
            self.runtime.remove_container(n)?;
            self.observed.set_state(n, ContainerState::Missing);
            known_missing = true;
        }
        if !known_missing {
            // The container keeps its mounts: bring what they hold up to date first.
            self.prepare_run_dir(rec)?;
            self.write_secrets(&rec.name)?;
            match self.runtime.start(n) {
                Ok(()) => {
                    self.observed.set_state(n, ContainerState::Running);
                    return Ok(());
                }
                Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match self.runtime.run_container(&self.container_spec(rec)?) {
            Ok(()) => {}
            Err(EngineError::Failed { stderr, .. }) if stderr.contains("is already in use") => {
                self.runtime.start(n)?;
            }
            Err(EngineError::NotFound(m)) if m.contains("network") => {
                // Someone removed the network behind our back: make it again.
                self.ensure_network(n)?;
                self.runtime
                    .run_container(&self.container_spec(rec)?)
                    .map_err(|e| run_error(e, rec))?;
            }
            Err(e) => return Err(run_error(e, rec)),
        }
        self.observed.set_state(n, ContainerState::Running);
        Ok(())
    }

    /// Remove every engine object of an island (best effort; used for rollback and purge).
    fn teardown(&self, name: &str) -> Vec<String> {
        let e = &self.runtime;
        let mut errors = Vec::new();
        self.expect_stop(name);
        if let Err(err) = e.remove_container(name) {
            errors.push(err.to_string());
        }
        for v in [runtime::workspace_volume(name), runtime::home_volume(name)] {
            if let Err(err) = e.remove_volume(&v) {
                errors.push(err.to_string());
            }
        }
        if let Err(err) = e.remove_network(name) {
            errors.push(err.to_string());
        }
        self.observed.set_state(name, ContainerState::Missing);
        errors
    }

    /// Run a setup command in the island; its failure is ours to report.
    fn setup_exec(&self, name: &str, opts: &ExecOpts, what: &str) -> Result<()> {
        let out = self.runtime.exec(name, opts, Input::None)?;
        if out.ok() {
            Ok(())
        } else {
            Err(Error::Internal(format!(
                "{what} failed: {}",
                out.stderr_str()
            )))
        }
    }

    fn mark_workspace_ready(&self, name: &str) -> Result<()> {
        self.update(name, |r| {
            r.workspace = WorkspaceReady {
                ready: true,
                ..Default::default()
            }
        })?;
        Ok(())
    }

    fn populate_empty(&self, name: &str) -> Result<()> {
        self.setup_exec(
            name,
            &ExecOpts::agent(&["git", "init", "-q", WORKSPACE]),
            "git init",
        )?;
        self.mark_workspace_ready(name)
    }

    fn populate_from_path(&self, name: &str, path: &std::path::Path) -> Result<()> {
        self.runtime.copy_in(name, path, WORKSPACE)?;
        let owner = format!("{AGENT_USER}:{AGENT_USER}");
        let chown = ExecOpts {
            timeout: Duration::from_secs(600),
            ..ExecOpts::root(&["chown", "-R", &owner, WORKSPACE])
        };
        self.setup_exec(name, &chown, "chown of the workspace")?;
        self.mark_workspace_ready(name)
    }

    /// POST /v1/islands/{name}/reclone: clone the island's git URL again after a clone that
    /// failed (an identity added or fixed since, a server that was down). Waits for the
    /// clone; the outcome is the workspace status.
    pub fn retry_clone(&self, name: &str) -> Result<WorkspaceReady> {
        self.refuse_if_panicked("clone a repository")?;
        let _busy = self.begin(name, "cloning")?;
        let rec = self.record(name)?;
        let url = match names::classify_repo(&rec.repo) {
            Ok(Source::Url(u)) if !rec.no_repo => u,
            _ => {
                return Err(Error::Conflict(format!(
                    "island {name:?} was not made from a git URL; there is nothing to clone"
                )))
            }
        };
        if rec.workspace.ready {
            return Err(Error::Conflict(format!(
                "island {name:?}'s workspace is ready; a clone would replace its work"
            )));
        }
        if !self.observed.running(name) {
            return Err(Error::Conflict(format!(
                "island {name:?} is not running; wake it first"
            )));
        }
        // Its identity may be new since the island was made.
        self.write_secrets(name)?;
        self.seed_home(name, false);
        self.update(name, |r| r.workspace = WorkspaceReady::default())?;
        self.populate_from_url(name, &url);
        self.workspace_ready(name)
    }

    /// Clone `url` into the island's workspace; the outcome is recorded, not returned.
    fn populate_from_url(&self, name: &str, url: &str) {
        let script = "set -e\ncd /workspace\n\
            if [ -n \"$(ls -A)\" ]; then find . -mindepth 1 -maxdepth 1 -exec rm -rf {} +; fi\n\
            exec git clone --quiet -- \"$1\" /workspace";
        let opts = ExecOpts {
            env: vec![
                ("GIT_TERMINAL_PROMPT".into(), "0".into()),
                (
                    "GIT_SSH_COMMAND".into(),
                    "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o ConnectTimeout=20"
                        .into(),
                ),
            ],
            timeout: CLONE_TIMEOUT,
            ..ExecOpts::agent(&["sh", "-c", script, "sh", url])
        };
        let status = match self.runtime.exec(name, &opts, Input::None) {
            Ok(out) if out.ok() => WorkspaceReady {
                ready: true,
                ..Default::default()
            },
            Ok(out) if out.timed_out => WorkspaceReady {
                ready: false,
                clone_failed: true,
                clone_reason: format!("git clone timed out after {}s", CLONE_TIMEOUT.as_secs()),
            },
            Ok(out) => {
                let err = out.stderr_str();
                let tail: Vec<&str> = err.lines().rev().take(4).collect();
                let reason = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
                WorkspaceReady {
                    ready: false,
                    clone_failed: true,
                    clone_reason: if reason.is_empty() {
                        format!("git clone exited {:?}", out.status)
                    } else {
                        reason
                    },
                }
            }
            Err(e) => WorkspaceReady {
                ready: false,
                clone_failed: true,
                clone_reason: e.to_string(),
            },
        };
        if status.clone_failed {
            log::warn!("island {name}: clone failed: {}", status.clone_reason);
        }
        if let Err(e) = self.update(name, |r| r.workspace = status) {
            log::warn!("{e}");
        }
    }

    /// POST /v1/islands/{name}/hibernate
    pub fn hibernate(&self, name: &str) -> Result<IslandInfo> {
        let _busy = self.begin(name, "hibernating")?;
        self.update(name, |r| {
            r.state = DesiredState::Hibernated;
            r.last_used_at = util::now_rfc3339();
        })?;
        {
            self.expect_stop(name);
            self.runtime.stop(name, STOP_GRACE)?;
        }
        if self.observed.running(name) {
            self.observed.set_state(name, ContainerState::Exited);
        }
        self.forget_agent_obs(name);
        self.events
            .publish(EventType::IslandHibernated, name, "", serde_json::json!({}));
        self.get(name)
    }

    /// POST /v1/islands/{name}/wake
    pub fn wake(&self, name: &str) -> Result<IslandInfo> {
        self.refuse_if_panicked("wake an island")?;
        let _busy = self.begin(name, "waking")?;
        let rec = self.update(name, |r| {
            r.state = DesiredState::Running;
            r.last_used_at = util::now_rfc3339();
        })?;
        if !rec.provisioned {
            self.provision(&rec)?;
            self.update(name, |r| r.provisioned = true)?;
        } else {
            self.start_or_run(&rec)?;
        }
        self.forget_agent_obs(name);
        self.events
            .publish(EventType::IslandWoken, name, "", serde_json::json!({}));
        self.get(name)
    }

    /// POST /v1/islands/{name}/reset: a new empty home volume, the workspace untouched.
    pub fn reset(&self, name: &str) -> Result<IslandInfo> {
        self.refuse_if_panicked("reset an island")?;
        let _busy = self.begin(name, "resetting")?;
        let rec = self.update(name, |r| {
            r.state = DesiredState::Running;
            r.last_used_at = util::now_rfc3339();
        })?;
        self.expect_stop(name);
        self.runtime.remove_container(name)?;
        self.observed.set_state(name, ContainerState::Missing);
        let home = runtime::home_volume(name);
        self.runtime.remove_volume(&home)?;
        self.runtime.create_volume(name, &home)?;
        self.ensure_network(name)?;
        self.run_checked(&rec)?;
        self.forget_agent_obs(name);
        self.events
            .publish(EventType::IslandReset, name, "", serde_json::json!({}));
        self.get(name)
    }

    /// POST /v1/islands/{name}/upgrade: recreate on the current image, volumes kept.
    pub fn upgrade(&self, name: &str) -> Result<IslandInfo> {
        self.refuse_if_panicked("upgrade an island")?;
        let _busy = self.begin(name, "upgrading")?;
        let rec = self.record(name)?;
        image::ensure(
            &self.images,
            &self.work_dir(),
            &rec.image,
            &self.config.base_image,
        )?;
        self.forget_image_cache();
        self.expect_stop(name);
        self.runtime.remove_container(name)?;
        self.observed.set_state(name, ContainerState::Missing);
        if rec.state == DesiredState::Running {
            self.ensure_network(name)?;
            self.run_checked(&rec)?;
        }
        self.forget_agent_obs(name);
        self.update(name, |r| r.last_used_at = util::now_rfc3339())?;
        // Newer Claude credentials and a changed identity reach the home on upgrade.
        self.seed_home(name, false);
        self.get(name)
    }

    /// Copy both volumes of `from` into `to`'s, pausing `from` so the copy is consistent.
    fn copy_volumes(&self, from: &str, to: &str, image: &str) -> Result<()> {
        // The source is marked busy (no new sweep starts); one already under way finishes
        // before the pause.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while self.with_slot(from, |s| s.sweeping).unwrap_or(false)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let paused = self.observed.running(from) && self.runtime.pause(from).is_ok();
        let result = (|| -> Result<()> {
            self.runtime.copy_volume(
                to,
                &runtime::workspace_volume(from),
                &runtime::workspace_volume(to),
                image,
            )?;
            self.runtime.copy_volume(
                to,
                &runtime::home_volume(from),
                &runtime::home_volume(to),
                image,
            )?;
            Ok(())
        })();
        if paused {
            if let Err(e) = self.runtime.unpause(from) {
                log::error!("cannot unpause {from} after copying its volumes: {e}");
            }
        }
        result
    }

    /// POST /v1/islands/{name}/clone
    pub fn clone_island(&self, from: &str, to: &str) -> Result<IslandInfo> {
        self.refuse_if_panicked("clone an island")?;
        if to.is_empty() {
            return Err(Error::bad(
                "the new island's name is required (name or new_name)",
            ));
        }
        names::validate(to)?;
        let _src = self.begin(from, "being cloned")?;
        let src = self.record(from)?;
        let now = util::now_rfc3339();
        let rec = Record {
            name: to.to_string(),
            state: DesiredState::Running,
            created_at: now.clone(),
            last_used_at: now,
            title: String::new(),
            provisioned: false,
            cloned_from: from.to_string(),
            // A clone is its own island: never the source's credential or network.
            token: util::random_hex(32),
            subnet: String::new(),
            // Nor its host access: a clone starts deny-all, and is nobody's child.
            port_scopes: Vec::new(),
            capability_grants: Vec::new(),
            mcp_grants: Vec::new(),
            spawn: None,
            parent: String::new(),
            spawned: src.spawned,
            // Island keys are access too: a clone lets in the account keys only.
            ssh_keys: Vec::new(),
            ..src
        };
        let busy = self.reserve(rec.clone(), "creating")?;
        if let Err(e) = self.provision(&rec) {
            log::warn!("clone {from} -> {to}: {e}; rolling back");
            self.teardown(to);
            let _ = self.forget(to);
            drop(busy);
            return Err(e);
        }
        self.update(to, |r| {
            r.provisioned = true;
            r.cloned_from.clear();
        })?;
        drop(busy);
        self.events.publish(
            EventType::IslandCreated,
            to,
            "",
            serde_json::json!({ "cloned_from": from }),
        );
        self.get(to)
    }

    /// What would be lost by purging: None when nothing, else the reason.
    fn unsaved_work(&self, rec: &Record) -> Result<Option<String>> {
        let script = "cd /workspace 2>/dev/null || { echo none; exit 0; }\n\
            if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then\n\
              echo \"nogit $(find . -mindepth 1 -maxdepth 1 | wc -l)\"; exit 0; fi\n\
            d=$(git status --porcelain 2>/dev/null | wc -l)\n\
            u=$(git log --branches --not --remotes --oneline 2>/dev/null | wc -l)\n\
            echo \"git $d $u\"";
        let out = if self.observed.running(&rec.name) {
            self.runtime.exec(
                &rec.name,
                &ExecOpts::agent(&["sh", "-c", script]),
                Input::None,
            )?
        } else {
            self.runtime.run_on_volumes(&rec.name, &rec.image, script)?
        };
        let s = out.stdout_str();
        let f: Vec<&str> = s.split_whitespace().collect();
        Ok(match f.as_slice() {
            ["none"] => None,
            ["nogit", "0"] => None,
            ["nogit", n] => Some(format!(
                "the workspace is not a git repository and holds {n} entries"
            )),
            ["git", "0", "0"] => None,
            ["git", d, u] => {
                let mut why = Vec::new();
                if *d != "0" {
                    why.push(format!("{d} uncommitted change(s)"));
                }
                if *u != "0" {
                    why.push(format!("{u} commit(s) not pushed to any remote"));
                }
                Some(format!("the workspace has {}", why.join(" and ")))
            }
            _ => Some(format!(
                "could not verify the workspace is saved ({})",
                out.stderr_str()
            )),
        })
    }

    /// DELETE /v1/islands/{name}
    pub fn purge(&self, name: &str, force: bool) -> Result<()> {
        let _busy = self.begin(name, "purging")?;
        let rec = self.record(name)?;
        if !force && rec.provisioned {
            if let Some(why) = self.unsaved_work(&rec)? {
                return Err(Error::Conflict(format!(
                    "refusing to purge {name:?}: {why}; push or commit it, or purge with force=true"
                )));
            }
        }
        self.stop_recorders(name);
        let errors = self.teardown(name);
        if let Some(e) = errors.iter().find(|e| e.contains("unreachable")) {
            return Err(Error::Unavailable(e.clone()));
        }
        if !errors.is_empty() {
            log::warn!("purge {name}: {}", errors.join("; "));
        }
        // Its children stay, orphaned first: a later island of the same name never gets them.
        for child in self.children_of(name) {
            self.update(&child, |r| r.parent.clear())?;
        }
        self.forget(name)?;
        log::info!("island {name} purged");
        self.hub.revoke_where(|t| t.island() == Some(name));
        self.events
            .publish(EventType::IslandPurged, name, "", serde_json::json!({}));
        // The slot went with `forget`; the event ring is the last thing keyed by the name (a
        // webhook queue is its subscriber's and stays).
        self.events.forget_island(name);
        Ok(())
    }

    /// PATCH /v1/islands/{name}
    pub fn set_title(&self, name: &str, title: &str) -> Result<IslandInfo> {
        names::check_title(title)?;
        self.update(name, |r| r.title = title.to_string())?;
        self.info(name)
    }

    /// PUT /v1/islands/{name}/resources
    pub fn set_resources(&self, name: &str, req: PutResources) -> Result<ResourcesResult> {
        let probe = Resources {
            memory: req.memory.clone().unwrap_or_default(),
            oom_priority: req.oom_priority,
            ..Resources::default()
        };
        validate_resources(&probe)?;
        if req.oom_priority.is_some() {
            self.require(runtime::feature::OOM_PRIORITY)?;
        }
        let _busy = self.begin(name, "updating resources")?;
        let rec = self.record(name)?;
        // A runtime that cannot change a running island's memory takes it at the next start.
        let live = self.runtime.supports(runtime::feature::LIVE_MEMORY);
        let memory_later = req.memory.is_some() && !live && self.observed.running(name);
        if let Some(m) = req.memory.as_ref().filter(|_| live) {
            let bytes = parse_memory(m)?;
            match self.runtime.update_memory(name, bytes) {
                Ok(()) | Err(EngineError::NotFound(_)) => {}
                Err(e @ EngineError::Failed { .. }) => {
                    return Err(Error::Unprocessable(format!(
                        "the engine refused memory {m:?}: {e}"
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
        let restart_required = memory_later
            || req.oom_priority.is_some() && req.oom_priority != rec.resources.oom_priority;
        let rec = self.update(name, |r| {
            if let Some(m) = req.memory {
                r.resources.memory = m;
            }
            if let Some(p) = req.oom_priority {
                r.resources.oom_priority = Some(p);
            }
        })?;
        Ok(ResourcesResult {
            resources: rec.resources,
            restart_required,
        })
    }

    /// Bring every island to its desired state (daemon start). Runs on its own thread.
    pub fn adopt_all(&self) {
        if self.panicked() {
            self.adopt_panicked();
            return;
        }
        for name in self.names() {
            let Ok(busy) = self.begin(&name, "adopting") else {
                continue;
            };
            let r = self.adopt(&name);
            drop(busy);
            if let Err(e) = r {
                log::error!("adopt {name}: {e}");
            }
        }
        log::info!("adoption finished");
    }

    fn adopt(&self, name: &str) -> Result<()> {
        let rec = self.record(name)?;
        if !rec.provisioned {
            log::info!("island {name}: finishing an interrupted create");
            // A clone interrupted while copying left its source paused: an exec into a paused
            // container waits, so nothing else could use that island until it is unpaused.
            if !rec.cloned_from.is_empty() {
                let _ = self.runtime.unpause(&rec.cloned_from);
            }
            self.provision(&rec)?;
            let rec = self.update(name, |r| {
                r.provisioned = true;
                r.cloned_from.clear();
            })?;
            if rec.state == DesiredState::Hibernated {
                {
                    self.expect_stop(name);
                    self.runtime.stop(name, STOP_GRACE)?;
                }
            }
        } else if rec.state == DesiredState::Running {
            let was = self.runtime.inspect(name).map(|i| i.status);
            if !matches!(was, Ok(ContainerState::Running)) {
                log::info!("island {name}: starting (was {was:?})");
                self.start_or_run(&rec)?;
            }
        } else if self.observed.running(name) {
            log::info!("island {name}: hibernated but running; stopping");
            {
                self.expect_stop(name);
                self.runtime.stop(name, STOP_GRACE)?;
            }
        }
        let rec = self.record(name)?;
        if !rec.workspace.ready && !rec.workspace.clone_failed && rec.state == DesiredState::Running
        {
            match names::classify_repo(&rec.repo) {
                _ if rec.no_repo => self.populate_empty(name)?,
                Ok(Source::Url(url)) => self.populate_from_url(name, &url),
                Ok(Source::Path(p)) => self.populate_from_path(name, &p)?,
                Err(e) => {
                    self.update(name, |r| {
                        r.workspace = WorkspaceReady {
                            ready: false,
                            clone_failed: true,
                            clone_reason: e.to_string(),
                        }
                    })?;
                }
            }
        }
        if rec.state == DesiredState::Running {
            self.sweep_strays(name);
            self.reconcile_agents(name);
        }
        Ok(())
    }
}
