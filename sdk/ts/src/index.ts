export { Client, ROUTES } from "./client.js";
export type {
  ResponseOf, BodyOf, QueryOf, IslandInfo, AgentInfo, CreateIslandRequest, DejimaEvent,
  Subscription, TerminalInfo, Overview, TokenInfo, PanicStatus, ClaudeStatus, GithubIdentity,
  GithubRepo, Provider, Removed, Resources, Health, Readiness, DoctorReport, UpdatePlan, ImageBuildOptions, CreateIslandOptions,
  ResourcesUpdate, ResourcesResult, WorkspaceStatus, ExecRequest, ExecOptions, ExecResult,
  LogsQuery, AddAgentOptions, RestartAgentOptions, AgentConfig, ClientRecord, RevokeResult,
  CreateTerminalOptions, SubscribeRequest, SubscribeOptions, EventStreamQuery,
  AgentEventRequest, AuditQuery, ActivityQuery, CreateTokenRequest, CreateTokenOptions,
  CreatedToken, TokenRole, SetClaudeOptions, GithubIdentityRequest, GithubReposQuery,
  GithubRepoPage, CreateGithubRepoRequest, ProviderRequest, PortScope, PortResult,
  CapabilityGrant, McpGrant, SpawnInfo, PortScopeRequest, PortScopeOptions, PortIntakeRequest,
  PortIntakeOptions, PortWriteRequest, CapabilityInfo, ExecuteCapabilityRequest,
  ExecuteCapabilityOptions, CapabilityResult, McpServer, McpCallRequest, McpMethod,
  McpCallResult, SpawnGrantRequest, SpawnGrantOptions, SshKey, AddSshKeyRequest, SshStreamOptions, AgentType, AuditEntry, AuditResult,
  ActivityItem, StreamEvent, ClientOptions, AttachOptions, StreamOptions, LogsOptions, Route,
  SpecRoute, Screen, Delivery, Uploaded, Recording,
} from "./client.js";
export { DejimaError, DejimaTimeoutError } from "./errors.js";
export { Session } from "./session.js";
export { MuxStream, muxFrame, parseMuxFrame, KIND_OUTPUT, KIND_SCREEN, KIND_INPUT } from "./mux.js";
export type { CloseInfo, Presence } from "./session.js";
export type { SseMessage } from "./stream.js";
export { parseHost, defaultHome } from "./transport.js";
export type { Endpoint } from "./transport.js";
export type { paths, components } from "./openapi.js";
