//! Wire types shared by the daemon and the CLI: exactly the reference's field names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A closed set of wire words as an enum: one list gives the variants, their words (serde
/// reads and writes exactly those), `ALL`, `as_str`, `Display` and `FromStr`. Outside
/// (de)serialisation nothing compares these as strings.
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident default $def:ident { $($body:tt)* }) => {
        wire_enum! { $(#[$m])* $name { $($body)* } }

        impl Default for $name {
            fn default() -> $name {
                $name::$def
            }
        }
    };
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vm])* $var),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $wire),+
                }
            }

            /// The words, for messages: `a, b, c`.
            pub fn words() -> String {
                [$($wire),+].join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                match s {
                    $($wire => Ok($name::$var),)+
                    _ => Err(format!("{s:?} is not one of {}", $name::words())),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let w = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                w.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

wire_enum! {
    /// What the daemon keeps an island at (`state`).
    DesiredState default Running {
        Running = "running",
        Hibernated = "hibernated",
    }
}

wire_enum! {
    /// What the engine reports of an island's container (`container`).
    ContainerState default Missing {
        Running = "running",
        Exited = "exited",
        Missing = "missing",
        Errored = "errored",
    }
}

wire_enum! {
    /// Whether an agent's program runs (`agents[].state`).
    AgentRun default Stopped {
        /// Its program runs in its tmux session.
        Running = "running",
        /// The session is there, its program has ended.
        Exited = "exited",
        /// No session (the container is down, or it never started).
        Stopped = "stopped",
    }
}

wire_enum! {
    /// What an operator token may do, least to most: `viewer` reads, `operator` also runs
    /// islands, agents, sessions, exec and files, `owner` also holds tokens, host terminals
    /// and the image. Ordered, so a route's required role compares with `<`.
    Role default Viewer {
        Viewer = "viewer",
        Operator = "operator",
        Owner = "owner",
    }
}

/// What an agent type is (GET /v1/agent-types).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentTypeInfo {
    #[serde(rename = "type")]
    pub kind: AgentType,
    /// The program its sessions run (for custom and headless: the agent's `cmd`).
    pub binary: String,
    /// Whether it needs a provider key to do anything.
    pub needs_provider_key: bool,
    /// The provider it speaks to, and the variables its key and base URL go in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url_env: Option<String>,
    /// None: the CLI's own default model.
    #[serde(default)]
    pub default_model: Option<String>,
    /// Whether a restart can continue the last conversation.
    pub can_resume: bool,
    /// Whether it reports agent events itself (hooks calling dejima-notify).
    pub emits_events: bool,
    pub description: String,
}

/// POST /v1/tokens
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub role: String,
    #[serde(default)]
    pub label: String,
    /// The islands it reaches (others are invisible to it); empty: every island.
    #[serde(default)]
    pub islands: Vec<String>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenInfo {
    pub id: String,
    pub role: Role,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub islands: Vec<String>,
    pub created_at: String,
    #[serde(default)]
    pub last_used_at: Option<String>,
}

/// A token just created: the only time its secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenCreated {
    pub id: String,
    pub secret: String,
    pub role: Role,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub islands: Vec<String>,
    pub created_at: String,
}

wire_enum! {
    /// A host terminal: its program runs, or has ended.
    TerminalStatus default Running {
        Running = "running",
        Exited = "exited",
    }
}

wire_enum! {
    /// Agent types.
    AgentType default ClaudeCode {
        ClaudeCode = "claude-code",
        Codex = "codex",
        Custom = "custom",
        Headless = "headless",
    }
}

wire_enum! {
    /// The latest signal an agent emitted (`agent_state.latest`).
    AgentSignal {
        WaitingForInput = "waiting-for-input",
        TaskComplete = "task-complete",
        Error = "error",
    }
}

wire_enum! {
    /// Every event type the daemon emits or accepts.
    EventType default IslandCreated {
        IslandCreated = "island.created",
        IslandRunning = "island.running",
        IslandHibernated = "island.hibernated",
        IslandWoken = "island.woken",
        IslandReset = "island.reset",
        IslandPurged = "island.purged",
        ContainerCrashed = "container.crashed",
        ClientAttached = "client.attached",
        ClientDetached = "client.detached",
        LastClientDetached = "last-client.detached",
        AgentWaitingForInput = "agent.waiting-for-input",
        AgentTaskComplete = "agent.task-complete",
        AgentError = "agent.error",
        DaemonPanicEngaged = "daemon.panic-engaged",
        DaemonPanicCleared = "daemon.panic-cleared",
    }
}

/// POST /v1/panic
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PanicRequest {
    #[serde(default)]
    pub reason: String,
}

/// The panic switch (GET, POST and DELETE /v1/panic).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct PanicStatus {
    pub panicked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Islands stopped by this engagement (POST only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<u64>,
}

impl EventType {
    /// The agent signal an `agent.*` event carries.
    pub fn signal(self) -> Option<AgentSignal> {
        match self {
            EventType::AgentWaitingForInput => Some(AgentSignal::WaitingForInput),
            EventType::AgentTaskComplete => Some(AgentSignal::TaskComplete),
            EventType::AgentError => Some(AgentSignal::Error),
            _ => None,
        }
    }
}

/// A message a session client sends (`{"type": ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    /// Keystrokes, base64.
    Data {
        b64: String,
    },
    Resize {
        rows: u32,
        cols: u32,
    },
    Ping,
}

/// A message the daemon sends a session client. (`data` frames are also written by hand on
/// the pump's hot path, in exactly this shape.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    /// First message: who is attached, this client included.
    Hello {
        #[serde(default)]
        attached: Vec<PresenceEntry>,
    },
    /// Terminal output, base64.
    Data {
        b64: String,
    },
    /// A message for the human, base64 text.
    Error {
        b64: String,
    },
    Pong,
    /// The terminal's program ended.
    Exit,
    /// The client fell further behind than its buffer: the next data frame is a full screen
    /// (nothing in between was lost to a torn sequence; the skipped output is not replayed).
    Resync,
    /// A kind newer than the reader: ignored by clients (never sent).
    #[serde(other, skip_serializing)]
    Other,
}

impl ServerFrame {
    /// The frame as websocket text.
    pub fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct IslandStats {
    pub memory_usage_bytes: u64,
    /// 0 = unlimited.
    pub memory_limit_bytes: u64,
    pub cpu_percent: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentStateInfo {
    pub latest: AgentSignal,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PresenceEntry {
    pub label: String,
    pub joined_at: String,
    /// An observer: its keystrokes and resizes are ignored.
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct GitInfo {
    pub branch: String,
    pub clean: bool,
    pub ahead: i64,
    pub behind: i64,
    pub dirty_files: i64,
}

/// Configured caps. Unset fields are omitted.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub memory: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpus: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub disk: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::opt_i64"
    )]
    pub oom_priority: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct IslandHealth {
    pub oom_killed: bool,
    pub restart_count: i64,
    pub exit_code: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct IslandDisk {
    pub workspace_bytes: u64,
    pub home_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct AgentInfo {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: AgentType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tmux: String,
    #[serde(default)]
    pub branch: String,
    #[serde(default)]
    pub worktree: String,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub state: AgentRun,
    #[serde(default)]
    pub restarts: i64,
    /// What runs in the agent's pane now, as the process tree says (`claude`, `codex`,
    /// `bash`, a custom command); absent when nothing does.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runtime: String,
    /// The provider whose key and base URL the agent is given at launch (a stored
    /// credential's name); absent when none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// The model the agent's CLI is started with; absent: the CLI's own default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Set by a config change: true when it takes effect only after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_state: Option<AgentStateInfo>,
    #[serde(default)]
    pub attached: Vec<PresenceEntry>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct IslandInfo {
    pub name: String,
    pub repo: String,
    pub agent: AgentType,
    pub image: String,
    /// Desired state from our record: `running` or `hibernated`.
    pub state: DesiredState,
    /// Observed state from the engine: `running`, `exited`, `missing`, `errored`.
    pub container: ContainerState,
    pub created_at: String,
    pub last_used_at: String,
    #[serde(default)]
    pub attached: Vec<PresenceEntry>,
    pub stats: Option<IslandStats>,
    pub agent_state: Option<AgentStateInfo>,
    #[serde(default)]
    pub agents: Vec<AgentInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitInfo>,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub github_identity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<IslandHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<IslandDisk>,
    /// The island whose token created this one (absent for operators' islands).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
    /// Its agents' sessions are recorded (`record: true`, or `dejimad --record`).
    #[serde(default)]
    pub record: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateIsland {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub repo: String,
    #[serde(default)]
    pub agent: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub github_identity: String,
    #[serde(default)]
    pub resources: Option<Resources>,
    #[serde(default)]
    pub no_repo: bool,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub role: String,
    /// Command for a `custom` or `headless` primary agent.
    #[serde(default)]
    pub cmd: String,
    /// Provider (a stored credential) for the primary agent; default: the one its type uses.
    #[serde(default)]
    pub provider: String,
    /// Model for the primary agent's CLI.
    #[serde(default)]
    pub model: String,
    /// Record its agents' sessions (asciicast).
    #[serde(default)]
    pub record: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CloneIsland {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub new_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PatchIsland {
    /// Absent: unchanged; `null` is refused (the schema says string).
    #[serde(default, deserialize_with = "present::value")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "present::value")]
    pub record: Option<bool>,
}

/// Optional fields that may be left out but not sent as `null`.
pub mod present {
    use serde::{Deserialize, Deserializer};

    pub fn value<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        T::deserialize(d).map(Some)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PutResources {
    pub memory: Option<String>,
    #[serde(default, deserialize_with = "whole::opt_i64")]
    pub oom_priority: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ResourcesResult {
    pub resources: Resources,
    pub restart_required: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    /// Optional stdin for the command.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Seconds before the command is killed; default 60, at most 3600.
    #[serde(default, deserialize_with = "whole::opt_u64")]
    pub timeout_secs: Option<u64>,
    /// Working directory; default the workspace.
    #[serde(default)]
    pub workdir: Option<String>,
    /// `agent` (default) or `root`.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ExecResult {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct WorkspaceReady {
    pub ready: bool,
    pub clone_failed: bool,
    #[serde(default)]
    pub clone_reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Overview {
    pub total_islands: u64,
    pub running: u64,
    pub hibernated: u64,
    pub errored: u64,
    pub attached_clients: u64,
    pub memory_usage_bytes: u64,
    pub memory_limit_bytes: u64,
    pub cpu_percent: f64,
    pub daemon_started_at: String,
    pub webhook_count: u64,
    pub docker_reachable: bool,
    pub island_image_present: bool,
    pub island_image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_recommended_bytes: Option<u64>,
    /// Where islands run, and what of the API that runtime cannot do.
    #[serde(default)]
    pub runtime: RuntimeInfo,
}

/// `overview.runtime`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RuntimeInfo {
    /// `docker` or `kubernetes`.
    pub kind: String,
    /// Features this runtime lacks; requests that need one get a 422 saying so.
    pub unsupported: Vec<Unsupported>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Unsupported {
    pub feature: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AddAgent {
    /// Defaults to the primary agent's type.
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub label: String,
    /// Command for `custom` (optional) and `headless` (required) agents.
    #[serde(default)]
    pub cmd: String,
    /// Provider (a stored credential); default: the one the agent's type uses.
    #[serde(default)]
    pub provider: String,
    /// Model for the agent's CLI.
    #[serde(default)]
    pub model: String,
}

/// PATCH /v1/islands/{name}/agents/{id}/config. An empty string clears the field.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub provider: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
/// Body of PATCH on an agent or a host terminal.
pub struct PatchLabel {
    pub label: Option<String>,
}

/// One attach or detach in the `/v1/clients` ring.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientRecord {
    pub label: String,
    /// The island, or `host` for a host terminal.
    pub island: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub terminal: String,
    pub attached_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detached_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateTerminal {
    #[serde(default)]
    pub label: String,
    /// Program to run (default: the user's shell).
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "whole::opt_u64")]
    pub cols: Option<u64>,
    #[serde(default, deserialize_with = "whole::opt_u64")]
    pub rows: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct TerminalInfo {
    pub id: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub status: TerminalStatus,
    #[serde(default)]
    pub attached: Vec<PresenceEntry>,
}

/// JSON numbers as JSON Schema counts them: `274.0` is the integer 274 (clients in languages
/// with one number type send whole numbers that way). Anything with a fraction is refused.
pub mod whole {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Number>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)
    }

    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let Some(n) = number(d)? else { return Ok(None) };
        n.as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number of 0 or more")))
    }

    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let Some(n) = number(d)? else { return Ok(None) };
        n.as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number")))
    }

    #[cfg(test)]
    mod tests {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "super::opt_i64")]
            n: Option<i64>,
        }

        #[test]
        fn whole_floats_are_integers() {
            let t = |s: &str| serde_json::from_str::<T>(s).map(|t| t.n);
            assert_eq!(t(r#"{"n": -1.0}"#).unwrap(), Some(-1));
            assert_eq!(t(r#"{"n": 3}"#).unwrap(), Some(3));
            assert_eq!(t(r#"{"n": null}"#).unwrap(), None);
            assert_eq!(t(r#"{}"#).unwrap(), None);
            assert!(t(r#"{"n": 1.5}"#).is_err());
            assert_eq!(
                t(r#"{"n": 3871491458634582.0}"#).unwrap(),
                Some(3871491458634582)
            );
        }
    }
}

// ---- Brokers (Port, capabilities, MCP, child islands) ----

/// What a Port scope lets an island do with its host folder.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PortMode {
    /// Intake only.
    #[default]
    Ro,
    /// Intake, and `write` into it.
    Rw,
}

/// A host folder granted to an island.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortScope {
    pub name: String,
    pub host_path: String,
    pub mode: PortMode,
    pub granted_at: String,
}

/// POST /v1/islands/{name}/port/scopes
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GrantScope {
    pub host_path: String,
    #[serde(default)]
    pub mode: Option<PortMode>,
    #[serde(default)]
    pub name: Option<String>,
}

/// POST /v1/islands/{name}/port/intake
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IntakeRequest {
    pub scope: String,
    #[serde(default)]
    pub src_rel: String,
    #[serde(default)]
    pub dest: Option<String>,
}

/// POST /v1/islands/{name}/port/export
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    pub src: String,
}

/// POST /v1/islands/{name}/port/write
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PortWriteRequest {
    pub scope: String,
    pub src: String,
    pub dest_rel: String,
}

/// What a Port crossing moved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PortResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_rel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_rel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    pub files: u64,
    pub bytes: u64,
    /// SHA-256 of what crossed: the file's content for one file, the archive for a folder.
    pub sha256: String,
    /// Links and special files left behind (never followed, never copied).
    pub skipped: Vec<String>,
    pub ledger_seq: u64,
}

/// A named grant (a capability target or an MCP server).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapabilityGrant {
    pub target: String,
    pub granted_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct McpGrant {
    pub server: String,
    pub granted_at: String,
}

/// POST /v1/islands/{name}/capability/grants
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GrantCapability {
    pub target: String,
}

/// POST /v1/islands/{name}/mcp/grants
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GrantMcp {
    pub server: String,
}

/// A capability target as the daemon finds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapabilityInfo {
    pub target: String,
    pub usable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// POST /v1/capabilities/execute
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExecuteCapability {
    pub target: String,
    #[serde(default)]
    pub island: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub args: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapabilityResult {
    pub ok: bool,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub timed_out: bool,
    pub ledger_seq: u64,
}

/// A registered MCP server as listed (env values are never shown).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct McpServerInfo {
    pub name: String,
    pub command: String,
    pub args: Vec<String>,
    pub env_keys: Vec<String>,
    pub keep_alive_secs: u64,
}

/// POST /v1/mcp/call
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct McpCall {
    #[serde(default)]
    pub island: Option<String>,
    pub server: String,
    pub method: String,
    #[serde(default)]
    pub params: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct McpCallResult {
    pub ok: bool,
    pub is_error: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    pub ledger_seq: u64,
}

/// PUT /v1/islands/{name}/spawn: what an island may create.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SpawnGrant {
    #[serde(default, deserialize_with = "whole::opt_u64")]
    pub max_children: Option<u64>,
    /// Ceilings for each child (empty: none beyond the daemon's own).
    #[serde(default)]
    pub cpus: String,
    #[serde(default)]
    pub memory: String,
}

/// An island's spawn grant (`granted` false: none), and the children it has now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SpawnInfo {
    #[serde(default)]
    pub granted: bool,
    pub max_children: u64,
    #[serde(default)]
    pub cpus: String,
    #[serde(default)]
    pub memory: String,
    pub granted_at: Option<String>,
    #[serde(default)]
    pub children: Vec<String>,
}
