//! Wire types shared by the daemon and the CLI: exactly the reference's field names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct IslandStats {
    pub memory_usage_bytes: u64,
    /// 0 = unlimited.
    pub memory_limit_bytes: u64,
    pub cpu_percent: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentStateInfo {
    pub latest: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PresenceEntry {
    pub label: String,
    pub joined_at: String,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    pub kind: String,
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
    pub state: String,
    #[serde(default)]
    pub restarts: i64,
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
    pub agent: String,
    pub image: String,
    /// Desired state from our record: `running` or `hibernated`.
    pub state: String,
    /// Observed state from the engine: `running`, `exited`, `missing`, `errored`.
    pub container: String,
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
    pub title: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PutResources {
    pub memory: Option<String>,
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
    #[serde(default)]
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
    #[serde(default)]
    pub cols: Option<u16>,
    #[serde(default)]
    pub rows: Option<u16>,
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
    /// running, or exited once its program has ended.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub attached: Vec<PresenceEntry>,
}
