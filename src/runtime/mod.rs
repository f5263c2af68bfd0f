//! The runtimes islands run on: the Docker engine driven through its CLI (here: every docker
//! argv in the program lives in this module) and a Kubernetes cluster through kubectl
//! (`kubernetes`). Callers speak in islands, volumes and images, through `Runtime`.

pub mod kubernetes;
pub mod watch;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::process::{self, Input, Output, Run};

pub use watch::{ContainerEvent, ContainerObs, ContainerState, Observed};

/// Why an engine call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// The engine did not answer (daemon down, socket missing, CLI absent, timed out).
    Unavailable(String),
    /// The object (container, volume, image) does not exist.
    NotFound(String),
    /// The engine answered and refused: what ran, its exit status, and the engine's words.
    Failed {
        argv: Vec<String>,
        status: Option<i32>,
        stderr: String,
    },
    /// The subnet asked for overlaps a network that exists (ours or anyone's).
    SubnetTaken(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Unavailable(m) => write!(f, "island runtime unreachable: {m}"),
            EngineError::NotFound(m) => write!(f, "{m}"),
            EngineError::Failed { stderr, .. } => write!(f, "{stderr}"),
            EngineError::SubnetTaken(s) => write!(f, "subnet {s} overlaps an existing network"),
        }
    }
}

impl EngineError {
    /// The engine's refusal, kept whole (its CLI named when it said nothing).
    pub fn refused(argv: Vec<String>, status: Option<i32>, words: &str) -> EngineError {
        let stderr = if words.is_empty() {
            format!(
                "{} failed",
                argv.first().map(String::as_str).unwrap_or("the engine")
            )
        } else {
            words.to_string()
        };
        EngineError::Failed {
            argv,
            status,
            stderr,
        }
    }

    /// The engine's own words, for matching a refusal.
    pub fn text(&self) -> &str {
        match self {
            EngineError::Unavailable(m) | EngineError::NotFound(m) => m,
            EngineError::Failed { stderr, .. } => stderr,
            EngineError::SubnetTaken(s) => s,
        }
    }
    /// `docker <subcommand>` and exit status, for logs.
    pub fn command(&self) -> String {
        match self {
            EngineError::Failed { argv, status, .. } => format!(
                "`{}` exited {}",
                argv.iter().take(3).cloned().collect::<Vec<_>>().join(" "),
                status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "on a signal".into())
            ),
            _ => String::new(),
        }
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Engine object names for an island.
/// What `docker info` tells.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub version: String,
    pub root_dir: String,
    pub system_time: String,
}

pub fn container_name(island: &str) -> String {
    format!("dejima-{island}")
}
pub fn workspace_volume(island: &str) -> String {
    format!("dejima-{island}-workspace")
}
pub fn home_volume(island: &str) -> String {
    format!("dejima-{island}-home")
}
pub fn network_name(island: &str) -> String {
    format!("dejima-net-{island}")
}

/// The addresses island networks are cut from: one range (a CIDR), one subnet of a fixed
/// size per island. The engine's own default pools hold about 30 networks; this holds
/// thousands, and keeps each island on a network of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct SubnetPool {
    base: u32,
    range_bits: u8,
    subnet_bits: u8,
}

impl SubnetPool {
    /// The default: 10.213.0.0/16 cut into /28s (4096 islands, 14 addresses each).
    pub const DEFAULT: &'static str = "10.213.0.0/16";
    pub const DEFAULT_SUBNET_BITS: u8 = 28;

    /// `range` like `10.213.0.0/16`, cut into subnets of `/subnet_bits`.
    pub fn parse(range: &str, subnet_bits: u8) -> std::result::Result<SubnetPool, String> {
        let (ip, bits) = range.split_once('/').ok_or_else(|| {
            format!("subnet pool {range:?} must be an IPv4 CIDR like 10.213.0.0/16")
        })?;
        let ip: std::net::Ipv4Addr = ip
            .trim()
            .parse()
            .map_err(|_| format!("subnet pool {range:?}: {ip:?} is not an IPv4 address"))?;
        let range_bits: u8 = bits
            .trim()
            .parse()
            .ok()
            .filter(|b| (8..=30).contains(b))
            .ok_or_else(|| format!("subnet pool {range:?}: the prefix must be 8..=30"))?;
        if !(range_bits..=30).contains(&subnet_bits) || subnet_bits - range_bits > 20 {
            return Err(format!(
                "island subnets of /{subnet_bits} do not fit subnet pool {range} (need /{range_bits}../30, at most 2^20 of them)"
            ));
        }
        let mask = u32::MAX << (32 - range_bits);
        Ok(SubnetPool {
            base: u32::from(ip) & mask,
            range_bits,
            subnet_bits,
        })
    }

    /// How many island subnets the range holds.
    pub fn len(&self) -> usize {
        1 << (self.subnet_bits - self.range_bits)
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `i`th subnet, as docker takes it.
    pub fn nth(&self, i: usize) -> String {
        let net = self.base + ((i as u32) << (32 - self.subnet_bits));
        format!("{}/{}", std::net::Ipv4Addr::from(net), self.subnet_bits)
    }

    /// `10.213.0.0/16 in /28s`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}/{} cut into /{}s",
            std::net::Ipv4Addr::from(self.base),
            self.range_bits,
            self.subnet_bits
        )
    }
}

impl Default for SubnetPool {
    fn default() -> Self {
        SubnetPool::parse(Self::DEFAULT, Self::DEFAULT_SUBNET_BITS).expect("valid default")
    }
}

/// Label on every object we create; its value is the island name.
pub const ISLAND_LABEL: &str = "dejima.island";
/// Where the island's volumes are mounted inside the container.
pub const WORKSPACE: &str = "/workspace";
pub const AGENT_HOME: &str = "/home/agent";
pub const AGENT_USER: &str = "agent";

/// What a new island container looks like.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub island: String,
    pub image: String,
    pub memory: Option<u64>,
    pub cpus: String,
    pub disk: String,
    pub oom_score_adj: Option<i64>,
    /// A host directory bind-mounted at /run/dejima (the island's socket and agent scripts).
    pub run_dir: Option<std::path::PathBuf>,
    /// A host directory bind-mounted read-only at /run/secrets/dejima: the island's token and
    /// the credentials its agents are given, as files. Secrets never go in the container's
    /// environment, where `docker inspect` shows them.
    pub secrets_dir: Option<std::path::PathBuf>,
}

/// Where an island sees its secrets (read-only).
pub const SECRETS_MOUNT: &str = "/run/secrets/dejima";

/// Facts from `docker inspect` (the slow path).
#[derive(Debug, Clone, Default)]
pub struct Inspect {
    pub status: ContainerState,
    pub exit_code: i64,
    pub oom_killed: bool,
    pub restart_count: i64,
    pub memory_limit: u64,
}

/// The seam between the domain and an engine: everything `island/` (and the sessions,
/// brokers and readiness) may ask of the place islands run, in islands, volumes and commands.
/// The Docker engine (`Engine`, below) is one, a Kubernetes cluster (`kubernetes::Kube`) the
/// other (docs/scale-out.md). Image builds are not here: the host's Docker engine builds the
/// island image for every runtime.
pub trait Runtime: Send + Sync {
    /// `docker` or `kubernetes`.
    fn kind(&self) -> &'static str;
    /// A fresh mark for something this run starts in an island: `<boot>.<random>`.
    fn mark(&self) -> String;
    /// End, inside the island, what an earlier daemon run left marked; how many.
    fn sweep_strays(&self, island: &str, user: &str) -> Result<usize>;
    /// Whether the engine answers.
    fn ping(&self) -> Result<()>;
    /// The island's network (its own subnet where the engine gives one).
    fn create_network(&self, island: &str, subnet: &str) -> Result<()>;
    /// The subnet of an island's existing network (empty where the engine has none).
    fn network_subnet(&self, island: &str) -> Result<String>;
    fn remove_network(&self, island: &str) -> Result<()>;
    fn create_volume(&self, island: &str, volume: &str) -> Result<()>;
    fn remove_volume(&self, volume: &str) -> Result<()>;
    /// Create and start the island's container (pod) from `spec`.
    fn run_container(&self, spec: &ContainerSpec) -> Result<()>;
    fn start(&self, island: &str) -> Result<()>;
    fn stop(&self, island: &str, grace_secs: u32) -> Result<()>;
    fn remove_container(&self, island: &str) -> Result<()>;
    fn pause(&self, island: &str) -> Result<()>;
    fn unpause(&self, island: &str) -> Result<()>;
    fn update_memory(&self, island: &str, bytes: u64) -> Result<()>;
    /// The slow path: state, exit code, OOM, restarts, memory limit.
    fn inspect(&self, island: &str) -> Result<Inspect>;
    /// Run a command in the island and collect its output (within the engine's timeout).
    fn exec(&self, island: &str, opts: &ExecOpts, input: Input<'_>) -> Result<Output>;
    /// The argv that runs `argv` in the island on a TTY (for a PTY pump to spawn).
    fn tty_exec_argv(
        &self,
        island: &str,
        user: &str,
        env: &[(&str, &str)],
        argv: &[String],
    ) -> Vec<String>;
    /// The argv that runs `argv` in the island with stdin and stdout as plain pipes.
    fn pipe_exec_argv(
        &self,
        island: &str,
        user: &str,
        env: &[(&str, &str)],
        argv: &[&str],
    ) -> Vec<String>;
    /// Start a command in the island whose stdout is read as a stream.
    fn exec_stream(&self, island: &str, opts: &ExecOpts) -> Result<process::Stream>;
    /// Copy a host path into the island.
    fn copy_in(&self, island: &str, src: &Path, dst: &str) -> Result<()>;
    /// Copy one volume's content into another (clone).
    fn copy_volume(&self, island: &str, src: &str, dst: &str, image: &str) -> Result<()>;
    /// Run `script` with the island's volumes mounted, the island itself not running.
    fn run_on_volumes(&self, island: &str, image: &str, script: &str) -> Result<Output>;
    fn image_present(&self, image: &str) -> Result<bool>;
    /// The island's output (`follow`: a stream that goes on).
    fn logs(&self, island: &str, follow: bool, tail: &str) -> Result<process::Stream>;
    /// Every island the engine holds: (name, state word).
    fn list_islands(&self) -> Result<Vec<(String, String)>>;
    /// What the API offers that this runtime cannot do: (feature, what the caller sees
    /// instead). Said at start and in /v1/overview; the requests that need one are refused.
    fn unsupported(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
    fn supports(&self, feature: &str) -> bool {
        !self.unsupported().iter().any(|(f, _)| *f == feature)
    }
    /// The island's run and secrets folders changed on the host: bring its copy up to date
    /// (the Docker runtime bind-mounts them, so there is nothing to do).
    fn sync_files(&self, _island: &str, _run_dir: &Path, _secrets_dir: &Path) -> Result<()> {
        Ok(())
    }
    /// Whether the island's socket (`run/dejimad.sock`) reaches the island only through a
    /// relay (`socket_relay`), not a mount.
    fn relays_socket(&self) -> bool {
        false
    }
    /// The argv of a long-lived process that makes the island's socket appear inside it.
    fn socket_relay(&self, _island: &str, _relay: &Relay<'_>) -> Option<Vec<String>> {
        None
    }
}

/// What a socket relay needs from the daemon (`Runtime::socket_relay`).
pub struct Relay<'a> {
    /// The island's socket on the host, where relayed connections go.
    pub host_socket: &'a Path,
    /// The daemon's relay key (private), allowed in by the island's sshd for forwarding only.
    pub key: &'a Path,
    /// A known_hosts file naming the island's host key under `dejima-<island>`.
    pub known_hosts: &'a Path,
    /// Where to write the command that reaches the island's sshd (ssh's ProxyCommand).
    pub proxy_script: &'a Path,
}

/// Names of what a runtime may lack (`Runtime::unsupported`).
pub mod feature {
    /// PUT resources `memory` on a running island.
    pub const LIVE_MEMORY: &str = "live_memory";
    /// `resources.oom_priority`.
    pub const OOM_PRIORITY: &str = "oom_priority";
    /// Pausing an island (a clone's consistent copy of a running source).
    pub const PAUSE: &str = "pause";
    /// Memory and CPU figures.
    pub const STATS: &str = "stats";
}

#[derive(Debug, Clone)]
pub struct Engine {
    docker: String,
    extra_labels: Vec<(String, String)>,
    timeout: Duration,
    /// This daemon run's id: the prefix of every mark it puts on what it starts in an island
    /// (`DEJIMA_EXEC`, `DEJIMA_ATTACH`), so a later run can tell an orphan from its own.
    boot: String,
    /// Where exec environment files are written (private; one per call, removed after).
    scratch: std::path::PathBuf,
}

impl Engine {
    /// Drive the engine through the `docker` CLI at `docker`; `labels` go on every object
    /// created (tests tag theirs so a sweeper can find leftovers); `timeout` bounds each call.
    pub fn new(
        docker: &str,
        labels: Vec<(String, String)>,
        timeout: Duration,
        scratch: &Path,
    ) -> Engine {
        Engine {
            docker: docker.to_string(),
            extra_labels: labels,
            timeout,
            boot: crate::util::random_hex(4),
            scratch: scratch.to_path_buf(),
        }
    }

    /// Parse `k=v,k2=v2` (as `DEJIMA_LABELS` gives it).
    pub fn parse_labels(s: &str) -> Vec<(String, String)> {
        s.split(',')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (!k.trim().is_empty()).then(|| (k.trim().to_string(), v.trim().to_string()))
            })
            .collect()
    }

    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = Vec::with_capacity(args.len() + 1);
        v.push(self.docker.clone());
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    fn labels(&self, island: &str) -> Vec<String> {
        let mut v = vec!["--label".into(), format!("{ISLAND_LABEL}={island}")];
        for (k, val) in &self.extra_labels {
            v.push("--label".into());
            v.push(format!("{k}={val}"));
        }
        v
    }

    /// Run docker with `args` and classify failure.
    fn call(&self, args: &[String], input: Input<'_>, timeout: Duration) -> Result<Output> {
        self.call_env(args, &[], input, timeout)
    }

    fn call_env(
        &self,
        args: &[String],
        env: &[(String, String)],
        input: Input<'_>,
        timeout: Duration,
    ) -> Result<Output> {
        let mut argv = vec![self.docker.clone()];
        argv.extend(args.iter().cloned());
        let mut run = Run::new(&argv);
        for (k, v) in env {
            run = run.env(k, v);
        }
        let started = std::time::Instant::now();
        let out = run
            .input(input)
            .timeout(timeout)
            .run()
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        crate::metrics::engine_call(
            args.first().map(String::as_str).unwrap_or(""),
            started.elapsed(),
        );
        if out.timed_out {
            return Err(EngineError::Unavailable(format!(
                "`docker {}` timed out after {}s",
                args.first().map(String::as_str).unwrap_or(""),
                timeout.as_secs()
            )));
        }
        Ok(out)
    }

    /// Run docker and require success.
    fn ok(&self, args: &[String]) -> Result<Output> {
        let out = self.call(args, Input::None, self.timeout)?;
        if out.ok() {
            Ok(out)
        } else {
            Err(self.refused(args, &out))
        }
    }

    /// Classify a failed docker call, keeping what ran and how it ended.
    fn refused(&self, args: &[String], out: &Output) -> EngineError {
        let mut argv = vec![self.docker.clone()];
        argv.extend(args.iter().cloned());
        classify(argv, out.status, &out.stderr_str())
    }

    /// `docker exec` arguments. Environment values travel in `env_file` (a private file the
    /// CLI reads), never on the command line, in logs, or in the CLI's own environment.
    fn exec_args(
        &self,
        island: &str,
        opts: &ExecOpts,
        stdin: bool,
        mark: &str,
        env_file: Option<&Path>,
    ) -> Vec<String> {
        let mut args = strings(&["exec"]);
        if stdin {
            args.push("-i".into());
        }
        args.extend(["-u".into(), opts.user.clone()]);
        if !opts.workdir.is_empty() {
            args.extend(["-w".into(), opts.workdir.clone()]);
        }
        if let Some(f) = env_file {
            args.extend(["--env-file".into(), f.display().to_string()]);
        }
        // After the file, so a caller's variable of the same name cannot replace it.
        if !mark.is_empty() {
            args.extend(["-e".into(), format!("{EXEC_MARK}={mark}")]);
        }
        args.push(container_name(island));
        args.extend(opts.argv.iter().cloned());
        args
    }

    /// The exec's environment as a docker env file (0600, in the daemon's private scratch
    /// directory), or None when there is none. Removed when the guard drops.
    fn env_file(&self, env: &[(String, String)]) -> Result<Option<EnvFile>> {
        if env.is_empty() {
            return Ok(None);
        }
        let mut text = String::new();
        for (k, v) in env {
            text.push_str(&format!("{k}={v}\n"));
        }
        let path = self
            .scratch
            .join(format!(".env-{}", crate::util::random_hex(8)));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::create_dir_all(&self.scratch)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(text.as_bytes())
        };
        write().map_err(|e| EngineError::Unavailable(format!("cannot write an env file: {e}")))?;
        Ok(Some(EnvFile(path)))
    }

    /// Kill, inside the island, the exec marked `mark` and its process group. As the exec's
    /// own user: root in a container may not read another user's /proc/<pid>/environ.
    fn kill_marked(&self, island: &str, user: &str, mark: &str) {
        let args = housekeeping(island, user, KILL_MARKED, mark);
        match self.call(&args, Input::None, Duration::from_secs(15)) {
            Ok(out) if out.ok() => log::debug!("timed-out exec {mark} killed in {island}"),
            Ok(out) => log::warn!(
                "cannot kill timed-out exec {mark} in {island}: {}",
                out.stderr_str()
            ),
            Err(e) => log::warn!("cannot kill timed-out exec {mark} in {island}: {e}"),
        }
    }

    fn interactive_argv(
        &self,
        mode: &str,
        island: &str,
        user: &str,
        env: &[(&str, &str)],
        argv: &[String],
    ) -> Vec<String> {
        let mut v = vec![
            self.docker.clone(),
            "exec".into(),
            mode.into(),
            "-u".into(),
            user.into(),
        ];
        for (k, val) in env {
            v.push("-e".into());
            v.push(format!("{k}={val}"));
        }
        v.push(container_name(island));
        v.extend(argv.iter().cloned());
        v
    }

    /// The engine's version, its data root, and its clock (RFC 3339).
    pub fn info(&self) -> Result<EngineInfo> {
        let args = strings(&[
            "info",
            "--format",
            "{{.ServerVersion}}\t{{.DockerRootDir}}\t{{.SystemTime}}",
        ]);
        let out = self.ok(&args)?;
        let text = out.stdout_str();
        let mut f = text.trim().split('\t');
        Ok(EngineInfo {
            version: f.next().unwrap_or_default().to_string(),
            root_dir: f.next().unwrap_or_default().to_string(),
            system_time: f.next().unwrap_or_default().to_string(),
        })
    }

    /// Run a program in a throwaway container of `image` (no network); its stdout.
    pub fn image_run(&self, image: &str, argv: &[&str]) -> Result<String> {
        let mut args = strings(&["run", "--rm", "--network", "none", "--entrypoint", argv[0]]);
        for (k, v) in &self.extra_labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        args.push(image.to_string());
        args.extend(argv[1..].iter().map(|s| s.to_string()));
        Ok(self.ok(&args)?.stdout_str())
    }

    /// A label's value on a local image ("" when unset or the image is missing).
    pub fn image_label(&self, image: &str, key: &str) -> Result<String> {
        let fmt = format!("{{{{index .Config.Labels \"{key}\"}}}}");
        let args = strings(&["image", "inspect", "--format", &fmt, image]);
        match self.ok(&args) {
            Ok(out) => Ok(out.stdout_str().trim().replace("<no value>", "")),
            Err(EngineError::NotFound(_)) => Ok(String::new()),
            Err(e) => Err(e),
        }
    }

    /// Start `docker build`; its combined progress is streamed through the returned child.
    pub fn build_image(
        &self,
        context: &Path,
        tag: &str,
        build_args: &[(String, String)],
        labels: &[(String, String)],
    ) -> Result<process::Stream> {
        let mut args = strings(&["build", "-t", tag]);
        for (k, v) in build_args {
            args.extend(["--build-arg".into(), format!("{k}={v}")]);
        }
        for (k, v) in labels {
            args.extend(["--label".into(), format!("{k}={v}")]);
        }
        args.push(context.display().to_string());
        let argv = self.argv(&args.iter().map(String::as_str).collect::<Vec<_>>());
        // BuildKit's plain progress goes to stderr; fold it into stdout for one stream.
        let sh = vec![
            "sh".to_string(),
            "-c".into(),
            "exec \"$@\" 2>&1".into(),
            "sh".into(),
        ]
        .into_iter()
        .chain(argv)
        .collect::<Vec<_>>();
        process::spawn_stream(&sh, true).map_err(|e| EngineError::Unavailable(e.to_string()))
    }

    pub(crate) fn docker(&self) -> &str {
        &self.docker
    }
}

impl Runtime for Engine {
    fn kind(&self) -> &'static str {
        "docker"
    }

    /// A fresh mark for something this run starts in an island: `<boot>.<random>`.
    fn mark(&self) -> String {
        format!("{}.{}", self.boot, crate::util::random_hex(6))
    }

    /// End, inside the island, everything an earlier daemon run left marked: attaches whose
    /// client is gone, execs whose caller (and deadline keeper) is gone. Marks of this run are
    /// left alone. Run as `user`: root in a container may not read another user's
    /// /proc/<pid>/environ. Returns how many were ended.
    fn sweep_strays(&self, island: &str, user: &str) -> Result<usize> {
        let args = housekeeping(island, user, SWEEP_STRAYS, &self.boot);
        let out = self.call(&args, Input::None, Duration::from_secs(30))?;
        if !out.ok() {
            return Err(self.refused(&args, &out));
        }
        Ok(out.stdout_str().trim().parse().unwrap_or(0))
    }

    /// `docker version`: is the engine there at all?
    fn ping(&self) -> Result<()> {
        let args = strings(&["version", "--format", "{{.Server.Version}}"]);
        let out = self.call(&args, Input::None, Duration::from_secs(10))?;
        if out.ok() {
            Ok(())
        } else {
            Err(EngineError::Unavailable(out.stderr_str()))
        }
    }

    /// The island's own bridge network on `subnet` (a `SubnetPool` entry; empty: the engine's
    /// default pools, for records older than the pool). An existing network is kept as is.
    fn create_network(&self, island: &str, subnet: &str) -> Result<()> {
        let mut args = strings(&["network", "create"]);
        if !subnet.is_empty() {
            args.extend(["--subnet".into(), subnet.to_string()]);
        }
        args.extend(self.labels(island));
        args.push(network_name(island));
        match self.ok(&args) {
            Err(EngineError::Failed { stderr, .. }) if stderr.contains("already exists") => Ok(()),
            Err(EngineError::Failed { stderr, .. }) if stderr.contains("overlaps") => {
                Err(EngineError::SubnetTaken(subnet.to_string()))
            }
            r => r.map(drop),
        }
    }

    /// The subnet of an island's network ("" when it has none we can read).
    fn network_subnet(&self, island: &str) -> Result<String> {
        let args = strings(&[
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
            &network_name(island),
        ]);
        Ok(self.ok(&args)?.stdout_str().trim().to_string())
    }

    fn create_volume(&self, island: &str, volume: &str) -> Result<()> {
        let mut args = strings(&["volume", "create"]);
        args.extend(self.labels(island));
        args.push(volume.into());
        self.ok(&args).map(drop)
    }

    fn remove_volume(&self, volume: &str) -> Result<()> {
        match self.ok(&strings(&["volume", "rm", "-f", volume])) {
            Err(EngineError::NotFound(_)) => Ok(()),
            r => r.map(drop),
        }
    }

    fn remove_network(&self, island: &str) -> Result<()> {
        match self.ok(&strings(&["network", "rm", &network_name(island)])) {
            Err(EngineError::NotFound(_)) => Ok(()),
            r => r.map(drop),
        }
    }

    /// `docker run -d` the island's container on its network and volumes.
    fn run_container(&self, spec: &ContainerSpec) -> Result<()> {
        let island = &spec.island;
        // `--pull never`: an island image is built here, never fetched behind the caller's back.
        // `--restart no`: the engine never restarts an island on its own (after a crash or
        // its own restart); the daemon decides, and the panic switch can hold them all down.
        let mut args = strings(&["run", "-d", "--init", "--pull", "never", "--restart", "no"]);
        args.extend([
            "--name".into(),
            container_name(island),
            "--hostname".into(),
            island.clone(),
            "--network".into(),
            network_name(island),
            "--mount".into(),
            format!(
                "type=volume,src={},dst={WORKSPACE}",
                workspace_volume(island)
            ),
            "--mount".into(),
            format!("type=volume,src={},dst={AGENT_HOME}", home_volume(island)),
            "--env".into(),
            format!("DEJIMA_ISLAND={island}"),
        ]);
        args.extend(self.labels(island));
        if let Some(m) = spec.memory {
            args.extend(["--memory".into(), m.to_string()]);
        }
        if !spec.cpus.is_empty() {
            args.extend(["--cpus".into(), spec.cpus.clone()]);
        }
        if !spec.disk.is_empty() {
            args.extend(["--storage-opt".into(), format!("size={}", spec.disk)]);
        }
        if let Some(adj) = spec.oom_score_adj {
            args.extend(["--oom-score-adj".into(), adj.to_string()]);
        }
        if let Some(dir) = &spec.run_dir {
            args.extend([
                "--mount".into(),
                // Read-only: the island connects to its socket and reads its agents' scripts,
                // and can plant nothing the daemon would later follow.
                format!("type=bind,src={},dst=/run/dejima,readonly", dir.display()),
            ]);
        }
        if let Some(dir) = &spec.secrets_dir {
            args.extend([
                "--mount".into(),
                format!(
                    "type=bind,src={},dst={SECRETS_MOUNT},readonly",
                    dir.display()
                ),
            ]);
        }
        args.push(spec.image.clone());
        let out = self.call_env(&args, &[], Input::None, self.timeout)?;
        if out.ok() {
            return Ok(());
        }
        let err = self.refused(&args, &out);
        // A failed `run` can leave a created-but-not-started container behind.
        if !err.text().contains("is already in use") {
            let _ = self.remove_container(island);
        }
        Err(err)
    }

    fn start(&self, island: &str) -> Result<()> {
        self.ok(&strings(&["start", &container_name(island)]))
            .map(drop)
    }

    /// Stop with a grace period; a missing container is already stopped.
    fn stop(&self, island: &str, grace_secs: u32) -> Result<()> {
        let args = strings(&[
            "stop",
            "-t",
            &grace_secs.to_string(),
            &container_name(island),
        ]);
        match self.ok(&args) {
            Err(EngineError::NotFound(_)) => Ok(()),
            r => r.map(drop),
        }
    }

    fn remove_container(&self, island: &str) -> Result<()> {
        match self.ok(&strings(&["rm", "-f", "-v", &container_name(island)])) {
            Err(EngineError::NotFound(_)) => Ok(()),
            r => r.map(drop),
        }
    }

    fn pause(&self, island: &str) -> Result<()> {
        self.ok(&strings(&["pause", &container_name(island)]))
            .map(drop)
    }

    fn unpause(&self, island: &str) -> Result<()> {
        self.ok(&strings(&["unpause", &container_name(island)]))
            .map(drop)
    }

    /// Set a live memory limit (swap kept at twice the memory, docker's own default).
    fn update_memory(&self, island: &str, bytes: u64) -> Result<()> {
        let args = strings(&[
            "update",
            "--memory",
            &bytes.to_string(),
            "--memory-swap",
            &(bytes.saturating_mul(2)).to_string(),
            &container_name(island),
        ]);
        self.ok(&args).map(drop)
    }

    fn inspect(&self, island: &str) -> Result<Inspect> {
        let args = strings(&[
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.State.Status}}|{{.State.ExitCode}}|{{.State.OOMKilled}}|{{.RestartCount}}|{{.HostConfig.Memory}}",
            &container_name(island),
        ]);
        let out = self.ok(&args)?;
        let s = out.stdout_str();
        let f: Vec<&str> = s.trim().split('|').collect();
        if f.len() != 5 {
            return Err(EngineError::Failed {
                argv: args,
                status: out.status,
                stderr: format!("unexpected inspect output: {s}"),
            });
        }
        Ok(Inspect {
            status: watch::map_status(f[0]),
            exit_code: f[1].parse().unwrap_or(0),
            oom_killed: f[2] == "true",
            restart_count: f[3].parse().unwrap_or(0),
            memory_limit: f[4].parse().unwrap_or(0),
        })
    }

    /// Run a command in the island's container and collect its output. A command still
    /// running at `opts.timeout` is killed inside the island too (ending the host's
    /// `docker exec` alone would leave it running there): each exec carries a mark, and only
    /// when the deadline passes is its process (and its process group) found by that mark and
    /// killed. Until then the timeout costs nothing. Should the daemon itself stop first, the
    /// next run ends the orphan (`sweep_strays`).
    fn exec(&self, island: &str, opts: &ExecOpts, input: Input<'_>) -> Result<Output> {
        let mark = self.mark();
        let env_file = self.env_file(&opts.env)?;
        let args = self.exec_args(
            island,
            opts,
            !matches!(input, Input::None),
            &mark,
            env_file.as_ref().map(|f| f.0.as_path()),
        );
        let mut argv = vec![self.docker.clone()];
        argv.extend(args);
        let run = Run::new(&argv)
            .input(input)
            .timeout(opts.timeout)
            .cap(opts.cap);
        let started = std::time::Instant::now();
        let mut out = run
            .run()
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        crate::metrics::engine_call("exec", started.elapsed());
        drop(env_file);
        // A program the runtime could not start: this engine prints why on stdout with 126;
        // the command's streams must not carry that, and a missing program is 127 as a shell
        // (and newer engines) say.
        if out.status == Some(126) && out.stdout.starts_with(b"OCI runtime exec failed") {
            if out
                .stdout
                .windows(25)
                .any(|w| w == b"executable file not found")
            {
                out.status = Some(127);
            }
            out.stderr = std::mem::take(&mut out.stdout);
        }
        if out.timed_out {
            self.kill_marked(island, &opts.user, &mark);
            return Ok(out);
        }
        // 125/126/127 from `docker exec` itself (not the command) come with docker's text.
        if matches!(out.status, Some(1) | Some(125) | Some(126)) {
            let err = out.stderr_str();
            if is_engine_text(&err) {
                return Err(classify(argv, out.status, &err));
            }
        }
        Ok(out)
    }

    /// The argv that runs `argv` in the container on a TTY (for a PTY pump to spawn).
    fn tty_exec_argv(
        &self,
        island: &str,
        user: &str,
        env: &[(&str, &str)],
        argv: &[String],
    ) -> Vec<String> {
        self.interactive_argv("-it", island, user, env, argv)
    }

    /// The argv that runs `argv` in the container with stdin and stdout as plain pipes (for a
    /// byte pump: sshd in inetd mode).
    fn pipe_exec_argv(
        &self,
        island: &str,
        user: &str,
        env: &[(&str, &str)],
        argv: &[&str],
    ) -> Vec<String> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.interactive_argv("-i", island, user, env, &argv)
    }

    /// Start a command in the container whose stdout is read as a stream.
    fn exec_stream(&self, island: &str, opts: &ExecOpts) -> Result<process::Stream> {
        let mut argv = vec![self.docker.clone()];
        // Streams are the daemon's own helpers (file reads, log follows): no caller env.
        debug_assert!(opts.env.is_empty());
        argv.extend(self.exec_args(island, opts, false, "", None));
        process::spawn_stream(&argv, true).map_err(|e| EngineError::Unavailable(e.to_string()))
    }

    /// Copy a host directory's contents into a container path (`docker cp SRC/. C:DST`).
    fn copy_in(&self, island: &str, src: &Path, dst: &str) -> Result<()> {
        let src = format!("{}/.", src.display());
        let args = strings(&["cp", &src, &format!("{}:{dst}", container_name(island))]);
        let out = self.call(&args, Input::None, Duration::from_secs(600))?;
        if out.ok() {
            Ok(())
        } else {
            Err(self.refused(&args, &out))
        }
    }

    /// Copy one volume's bytes into another with a throwaway container on `image`.
    fn copy_volume(&self, island: &str, src: &str, dst: &str, image: &str) -> Result<()> {
        let mut args = strings(&["run", "--rm", "--pull", "never", "--network", "none"]);
        args.extend(self.labels(island));
        args.extend([
            "--mount".into(),
            format!("type=volume,src={src},dst=/from,readonly"),
            "--mount".into(),
            format!("type=volume,src={dst},dst=/to"),
            "--entrypoint".into(),
            "cp".into(),
            image.into(),
            "-a".into(),
            "/from/.".into(),
            "/to/".into(),
        ]);
        let out = self.call(&args, Input::None, Duration::from_secs(1800))?;
        if out.ok() {
            Ok(())
        } else {
            Err(self.refused(&args, &out))
        }
    }

    /// Run a one-off command against an island's volumes on `image` (for checks on a stopped
    /// island). Returns the output whatever the exit code.
    fn run_on_volumes(&self, island: &str, image: &str, script: &str) -> Result<Output> {
        let mut args = strings(&[
            "run",
            "--rm",
            "--pull",
            "never",
            "--network",
            "none",
            "-u",
            AGENT_USER,
        ]);
        args.extend(self.labels(island));
        args.extend([
            "--mount".into(),
            format!(
                "type=volume,src={},dst={WORKSPACE},readonly",
                workspace_volume(island)
            ),
            "--entrypoint".into(),
            "sh".into(),
            image.into(),
            "-c".into(),
            script.into(),
        ]);
        self.call(&args, Input::None, self.timeout)
    }

    fn image_present(&self, image: &str) -> Result<bool> {
        let args = strings(&["image", "inspect", "--format", "{{.Id}}", image]);
        match self.ok(&args) {
            Ok(_) => Ok(true),
            Err(EngineError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Stream a container's logs (stdout and stderr folded together).
    fn logs(&self, island: &str, follow: bool, tail: &str) -> Result<process::Stream> {
        let mut args = vec![
            self.docker.clone(),
            "logs".into(),
            "--tail".into(),
            tail.into(),
        ];
        if follow {
            args.push("--follow".into());
        }
        args.push(container_name(island));
        let sh: Vec<String> = ["sh", "-c", "exec \"$@\" 2>&1", "sh"]
            .iter()
            .map(|s| s.to_string())
            .chain(args)
            .collect();
        process::spawn_stream(&sh, true).map_err(|e| EngineError::Unavailable(e.to_string()))
    }

    /// Every container carrying our label: (island, status).
    fn list_islands(&self) -> Result<Vec<(String, String)>> {
        let fmt = format!("{{{{.Label \"{ISLAND_LABEL}\"}}}}|{{{{.State}}}}|{{{{.Names}}}}");
        let args = strings(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={ISLAND_LABEL}"),
            "--format",
            &fmt,
        ]);
        let out = self.ok(&args)?;
        Ok(out
            .stdout_str()
            .lines()
            .filter_map(|l| {
                let mut p = l.split('|');
                let (island, state, cname) = (p.next()?, p.next()?, p.next()?);
                // Throwaway helpers carry the label too; only the island's own container counts.
                (cname == container_name(island)).then(|| (island.to_string(), state.to_string()))
            })
            .collect())
    }
}

/// Options for `Engine::exec`.
#[derive(Debug, Clone)]
pub struct ExecOpts {
    pub argv: Vec<String>,
    pub user: String,
    pub workdir: String,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Cap on captured stdout/stderr each.
    pub cap: usize,
}

impl ExecOpts {
    /// As the agent user in the workspace, 60 s.
    pub fn agent(argv: &[&str]) -> ExecOpts {
        ExecOpts {
            argv: strings(argv),
            user: AGENT_USER.into(),
            workdir: WORKSPACE.into(),
            env: Vec::new(),
            timeout: Duration::from_secs(60),
            cap: process::DEFAULT_CAP,
        }
    }
    pub fn root(argv: &[&str]) -> ExecOpts {
        ExecOpts {
            user: "root".into(),
            ..ExecOpts::agent(argv)
        }
    }
}

/// `docker exec` of one of the daemon's own scripts (unmarked: it is not a caller's command).
fn housekeeping(island: &str, user: &str, script: &str, arg: &str) -> Vec<String> {
    let c = container_name(island);
    strings(&["exec", "-u", user, &c, "sh", "-c", script, "sh", arg])
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn is_engine_text(err: &str) -> bool {
    // Only docker's own prefixes: a command's stderr that merely starts "Error" is its output.
    err.starts_with("Error response from daemon:")
        || err.starts_with("Error: No such container")
        || err.contains("Cannot connect to the Docker daemon")
}

/// Sort a failed docker call: its exit status first, then its words. `None` (killed on a
/// signal) and 125 with a connection error mean the engine is not there; "no such" texts are
/// a missing object; anything else is the engine's refusal, kept whole.
pub fn classify(argv: Vec<String>, status: Option<i32>, err: &str) -> EngineError {
    let e = err.trim();
    let lower = e.to_ascii_lowercase();
    let unreachable = lower.contains("cannot connect to the docker daemon")
        || lower.contains("is the docker daemon running")
        || lower.contains("error during connect")
        || lower.contains("connection refused");
    if status.is_none() || unreachable {
        EngineError::Unavailable(if e.is_empty() {
            format!(
                "`{}` ended on a signal",
                argv.first().cloned().unwrap_or_default()
            )
        } else {
            e.to_string()
        })
    } else if lower.contains("no such container")
        || lower.contains("no such volume")
        || lower.contains("no such image")
        || lower.contains("no such object")
        || (lower.contains("network") && lower.contains("not found"))
        || lower.contains("get volume: ") && lower.contains("not found")
    {
        EngineError::NotFound(e.to_string())
    } else {
        EngineError::refused(argv, status, e)
    }
}

/// The environment mark of a one-shot exec, found only if its deadline passes.
pub const EXEC_MARK: &str = "DEJIMA_EXEC";

/// A private env file, removed when dropped.
struct EnvFile(std::path::PathBuf);

impl Drop for EnvFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// End marked processes of other daemon runs (`$1` is this run's id): attaches get SIGHUP
/// (as a closed terminal would) then SIGKILL if they linger; execs and the process groups
/// they lead get SIGKILL. Prints how many processes it ended.
const SWEEP_STRAYS: &str = r#"n=0; hup=
for f in $(grep -lzsE '^DEJIMA_(EXEC|ATTACH)=' /proc/[0-9]*/environ); do
  grep -qzsE "^DEJIMA_(EXEC|ATTACH)=$1\." "$f" && continue
  p=${f#/proc/}; p=${p%/environ}
  if grep -qzsE '^DEJIMA_EXEC=' "$f"; then kill -KILL -- -"$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null
  else kill -HUP "$p" 2>/dev/null; hup="$hup $p"; fi
  n=$((n+1))
done
if [ -n "$hup" ]; then
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    left=; for x in $hup; do kill -0 $x 2>/dev/null && left="$left $x"; done
    [ -n "$left" ] || break
    sleep 0.05
  done
  [ -z "$left" ] || kill -KILL $left 2>/dev/null
fi
echo $n
"#;

/// Kill the processes marked `DEJIMA_EXEC=$1` and the process groups they lead.
const KILL_MARKED: &str = r#"p=$(grep -lzxsF "DEJIMA_EXEC=$1" /proc/[0-9]*/environ | cut -d/ -f3)
[ -n "$p" ] || exit 0
for x in $p; do kill -KILL -- -"$x" 2>/dev/null; done
kill -KILL $p 2>/dev/null
exit 0
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_pools() {
        let p = SubnetPool::default();
        assert_eq!(p.len(), 4096);
        assert_eq!(p.nth(0), "10.213.0.0/28");
        assert_eq!(p.nth(1), "10.213.0.16/28");
        assert_eq!(p.nth(4095), "10.213.255.240/28");
        let q = SubnetPool::parse("10.1.2.3/24", 26).unwrap();
        assert_eq!((q.len(), q.nth(3).as_str()), (4, "10.1.2.192/26"));
        for bad in ["10.0.0.0", "x/16", "10.0.0.0/40", "10.0.0.0/4"] {
            assert!(SubnetPool::parse(bad, 28).is_err(), "{bad}");
        }
        assert!(SubnetPool::parse("10.0.0.0/28", 24).is_err());
    }

    #[test]
    fn classifies_engine_errors() {
        let c = |status, e: &str| classify(vec!["docker".into(), "x".into()], status, e);
        assert!(matches!(
            c(Some(1), "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"),
            EngineError::Unavailable(_)
        ));
        assert!(matches!(c(None, ""), EngineError::Unavailable(_)));
        assert!(matches!(
            c(Some(1), "Error: No such container: dejima-x"),
            EngineError::NotFound(_)
        ));
        assert!(matches!(
            c(
                Some(1),
                "Error response from daemon: network dejima-net-x not found"
            ),
            EngineError::NotFound(_)
        ));
        let e = c(Some(125), "docker: Error response from daemon: --storage-opt is supported only for overlay over xfs with 'pquota' mount option.");
        assert!(matches!(
            e,
            EngineError::Failed {
                status: Some(125),
                ..
            }
        ));
        assert!(e.text().contains("storage-opt"));
        assert_eq!(e.command(), "`docker x` exited 125");
    }
}
