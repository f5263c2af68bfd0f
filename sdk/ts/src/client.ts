import http, { type IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import path from "node:path";
import type { components, paths } from "./openapi.js";
import { DejimaError, DejimaTimeoutError } from "./errors.js";
import { Session, type SocketEvents, type SocketLike } from "./session.js";
import { MuxStream, type MuxSocket } from "./mux.js";
import { lazyIterator, readLines, readSse, type SseMessage } from "./stream.js";
import { defaultHome, encodeQuery, parseHost, Transport, type Endpoint, type QueryValue } from "./transport.js";

// ---------------------------------------------------------------------------------------------
// Types derived from the generated OpenAPI description (src/openapi.ts, `npm run gen`).

type HttpMethod = "get" | "put" | "post" | "patch" | "delete";
type Operation<P extends keyof paths, M extends HttpMethod> = NonNullable<paths[P][M]>;
type JsonContent<C> = C extends { content: { "application/json": infer T } } ? T : never;
/** `unknown` (a schema the generator could not express) becomes a plain JSON object. */
type Known<T> = unknown extends T ? Record<string, unknown> : T;
/**
 * The member of a union that has property K. openapi-typescript renders a schema with
 * `anyOf: [{required: ...}]` constraints as `{...all properties} | {fragment} | ...`; this
 * picks the full object (or T itself when it is not such a union).
 */
type MainVariant<T, K extends PropertyKey> = [T extends unknown ? (K extends keyof T ? T : never) : never] extends [never]
  ? T
  : T extends unknown
    ? K extends keyof T
      ? T
      : never
    : never;

/** The JSON body of an operation's 200 (else 201) answer. */
export type ResponseOf<P extends keyof paths, M extends HttpMethod> =
  Operation<P, M> extends { responses: infer R }
    ? 200 extends keyof R
      ? JsonContent<R[200]>
      : 201 extends keyof R
        ? JsonContent<R[201]>
        : void
    : never;
/** The JSON request body of an operation. */
export type BodyOf<P extends keyof paths, M extends HttpMethod> =
  Operation<P, M> extends { requestBody?: infer B } ? Known<JsonContent<NonNullable<B>>> : never;
/** The query parameters of an operation. */
export type QueryOf<P extends keyof paths, M extends HttpMethod> =
  Operation<P, M> extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;

type Schemas = components["schemas"];
/**
 * T with K present. The spec lists no `required` fields for these objects, yet the daemon
 * always sends their handle; without this `dj.addAgent(isl.name, ...)` would not type-check.
 */
type WithRequired<T, K extends keyof T> = T & { [P in K]-?: NonNullable<T[P]> };
export type IslandInfo = WithRequired<Schemas["IslandInfo"], "name">;
export type AgentInfo = WithRequired<Schemas["AgentInfo"], "id">;
export type CreateIslandRequest = MainVariant<Schemas["CreateIsland"], "agent">;
export type DejimaEvent = Schemas["Event"];
export type Subscription = WithRequired<Schemas["Subscription"], "id">;
export type TerminalInfo = WithRequired<Schemas["TerminalInfo"], "id">;
export type Overview = Schemas["Overview"];
export type TokenInfo = Schemas["TokenInfo"];
export type PanicStatus = Schemas["PanicStatus"];
export type ClaudeStatus = Schemas["ClaudeStatus"];
export type GithubIdentity = Schemas["GithubIdentity"];
export type GithubRepo = Schemas["GithubRepo"];
export type Provider = Schemas["Provider"];
export type Removed = Schemas["Removed"];
export type Resources = Schemas["Resources"];
export type PortScope = Schemas["PortScope"];
export type PortResult = Schemas["PortResult"];
export type CapabilityGrant = Schemas["CapabilityGrant"];
export type McpGrant = Schemas["McpGrant"];
export type SpawnInfo = Schemas["SpawnInfo"];
export type SshKey = Schemas["SshKey"];
export type Screen = Schemas["Screen"];
export type Delivery = Schemas["Delivery"];
export type Uploaded = ResponseOf<"/v1/islands/{name}/agents/{id}/upload", "post">;
export type Recording = ResponseOf<"/v1/islands/{name}/recordings", "get">[number];

export type Health = ResponseOf<"/v1/healthz", "get">;
export type Readiness = ResponseOf<"/v1/readyz", "get">;
export type DoctorReport = ResponseOf<"/v1/doctor", "get">;
export type UpdatePlan = ResponseOf<"/v1/admin/update", "post">;
export type ImageBuildOptions = BodyOf<"/v1/image/build", "post">;
export type CreateIslandOptions = Omit<CreateIslandRequest, "repo">;
export type ResourcesUpdate = BodyOf<"/v1/islands/{name}/resources", "put">;
export type ResourcesResult = ResponseOf<"/v1/islands/{name}/resources", "put">;
export type WorkspaceStatus = ResponseOf<"/v1/islands/{name}/workspace-ready", "get">;
export type ExecRequest = BodyOf<"/v1/islands/{name}/exec", "post">;
export type ExecOptions = Omit<ExecRequest, "cmd">;
export type ExecResult = ResponseOf<"/v1/islands/{name}/exec", "post">;
export type LogsQuery = QueryOf<"/v1/islands/{name}/logs", "get">;
export type AddAgentOptions = BodyOf<"/v1/islands/{name}/agents", "post">;
export type RestartAgentOptions = BodyOf<"/v1/islands/{name}/agents/{id}/restart", "post">;
export type AgentConfig = BodyOf<"/v1/islands/{name}/agents/{id}/config", "patch">;
export type ClientRecord = ResponseOf<"/v1/clients", "get">[number];
export type RevokeResult = ResponseOf<"/v1/sessions/revoke", "post">;
export type CreateTerminalOptions = BodyOf<"/v1/terminals", "post">;
export type SubscribeRequest = BodyOf<"/v1/events/subscribe", "post">;
export type SubscribeOptions = Omit<SubscribeRequest, "url">;
export type EventStreamQuery = QueryOf<"/v1/events/stream", "get">;
export type AgentEventRequest = BodyOf<"/v1/internal/agent-event", "post">;
export type AuditQuery = QueryOf<"/v1/audit", "get">;
export type ActivityQuery = QueryOf<"/v1/activity", "get">;
export type CreateTokenRequest = BodyOf<"/v1/tokens", "post">;
export type CreateTokenOptions = Omit<CreateTokenRequest, "role">;
export type CreatedToken = ResponseOf<"/v1/tokens", "post">;
export type TokenRole = CreateTokenRequest["role"];
export type SetClaudeOptions = Omit<BodyOf<"/v1/credentials/claude", "put">, "credentials_json">;
export type GithubIdentityRequest = BodyOf<"/v1/credentials/github/{name}", "put">;
export type GithubReposQuery = QueryOf<"/v1/credentials/github/{name}/repos", "get">;
export type GithubRepoPage = ResponseOf<"/v1/credentials/github/{name}/repos", "get">;
export type CreateGithubRepoRequest = BodyOf<"/v1/credentials/github/{name}/repos", "post">;
export type ProviderRequest = BodyOf<"/v1/credentials/providers/{provider}", "put">;
export type PortScopeRequest = BodyOf<"/v1/islands/{name}/port/scopes", "post">;
export type PortScopeOptions = Omit<PortScopeRequest, "host_path">;
export type PortIntakeRequest = BodyOf<"/v1/islands/{name}/port/intake", "post">;
export type PortIntakeOptions = Omit<PortIntakeRequest, "scope">;
export type PortWriteRequest = BodyOf<"/v1/islands/{name}/port/write", "post">;
export type CapabilityInfo = ResponseOf<"/v1/capabilities", "get">[number];
export type ExecuteCapabilityRequest = BodyOf<"/v1/capabilities/execute", "post">;
export type ExecuteCapabilityOptions = Omit<ExecuteCapabilityRequest, "target">;
export type CapabilityResult = ResponseOf<"/v1/capabilities/execute", "post">;
export type McpServer = ResponseOf<"/v1/mcp/servers", "get">[number];
/** The spec's `params: {type: object}` generates `Record<string, never>`; any JSON object goes. */
export type McpCallRequest = Omit<BodyOf<"/v1/mcp/call", "post">, "params"> & { params?: Record<string, unknown> };
export type McpMethod = McpCallRequest["method"];
export type McpCallResult = ResponseOf<"/v1/mcp/call", "post">;
export type SpawnGrantRequest = BodyOf<"/v1/islands/{name}/spawn", "put">;
export type SpawnGrantOptions = Omit<SpawnGrantRequest, "max_children">;
export type AddSshKeyRequest = BodyOf<"/v1/ssh/account-keys", "post">;

/** One entry of /v1/agent-types (the spec describes it in prose only). */
export interface AgentType {
  type: string;
  binary: string;
  needs_provider_key: boolean;
  provider?: string;
  key_env?: string;
  base_url_env?: string;
  default_model: string | null;
  can_resume: boolean;
  emits_events: boolean;
  description: string;
  [k: string]: unknown;
}

/** One ledger entry of /v1/audit (the spec describes it in prose only). */
export interface AuditEntry {
  seq: number;
  time: string;
  type: string;
  island?: string;
  agent?: string;
  actor: string;
  decision: "allowed" | "denied" | string;
  method?: string;
  route?: string;
  status?: number;
  detail?: unknown;
  prev: string;
  chain: string;
  [k: string]: unknown;
}

/** /v1/audit as JSON: entries oldest first, and the chain's verdict. */
export interface AuditResult {
  entries: AuditEntry[];
  verify: { ok: boolean; checked: number; first_bad_seq?: number; problem?: string };
}

/** One line of /v1/activity (the spec describes it in prose only). */
export interface ActivityItem {
  seq: number;
  time: string;
  kind: string;
  actor: string;
  island?: string;
  decision: string;
  text: string;
  [k: string]: unknown;
}

/** One server-sent event of /v1/events/stream; `data` is the event (absent for `dropped`). */
export type StreamEvent = SseMessage<DejimaEvent>;

export interface ClientOptions {
  /** `host:port`, `http://host:port` or `unix:/path/to/dejimad.sock`. Default: $DEJIMA_HOST. */
  host?: string;
  /** Operator token (`djo_...`), sent as `Authorization: Bearer`. Default: $DEJIMA_TOKEN. */
  token?: string;
  /** Unix socket path; wins over `host`. Default (no host): $DEJIMA_HOME/dejimad.sock, ~/.dejima. */
  socket?: string;
  /** Milliseconds a non-streaming call may take (0: no limit). Default 120000. */
  timeout?: number;
  /** The environment to read DEJIMA_* from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface AttachOptions {
  /** An agent id (a2, ...): attach to that agent; default the island's primary agent. */
  agent?: string;
  /** This client's name in presence (server default "anonymous"). */
  label?: string;
  /** Initial terminal size, sent as the first frame (both or neither). */
  rows?: number;
  cols?: number;
  /** Milliseconds to wait for the server's hello (default: the client's timeout). */
  timeout?: number;
  /** "ws" (the package; required for a Unix socket) or "global" (globalThis.WebSocket). Default: ws, else global. */
  webSocket?: "ws" | "global";
  /** Read-only: keystrokes and resizes are ignored (always so for a viewer's token). */
  observe?: boolean;
  /** History lines the server sends before the live screen. */
  scrollback?: number;
}

export interface SshStreamOptions {
  /** Milliseconds to wait for the daemon's 101 (default: the client's timeout; 0: none). */
  timeout?: number;
  /** Abort the handshake (rejects with the signal's reason). */
  signal?: AbortSignal;
}

export interface StreamOptions {
  /** Abort the stream (ends the iteration with the signal's reason). */
  signal?: AbortSignal;
}

export interface LogsOptions extends StreamOptions {
  /** Stay open and yield lines as they come. */
  follow?: boolean;
  /** A number of lines, or "all" (default). */
  tail?: number | string;
  /** A headless agent's log instead of the container's. */
  agent?: string;
}

// ---------------------------------------------------------------------------------------------

/** Copy of `o` without its undefined fields: only what the caller gave is sent. */
function given<T extends object>(o: T | undefined): Partial<T> {
  const out: Record<string, unknown> = {};
  if (o) {
    for (const [k, v] of Object.entries(o)) {
      if (v !== undefined) out[k] = v;
    }
  }
  return out as Partial<T>;
}

function hasKeys(o: object): boolean {
  return Object.keys(o).length > 0;
}

const seg = (s: string) => encodeURIComponent(s);
/** The protocol of the SSH upgrade (`Upgrade: dejima-ssh`). */
const SSH_PROTO = "dejima-ssh";
const isl = (name: string) => `/v1/islands/${seg(name)}`;

/** `/workspace/a b/c.txt` → `workspace/a%20b/c.txt` (the files route's path form). */
function filePath(p: string): string {
  return p
    .replace(/^\/+/, "")
    .split("/")
    .map((s) => encodeURIComponent(s))
    .join("/");
}

type WsModule = typeof import("ws");
let wsModule: Promise<WsModule | null> | undefined;
function loadWs(): Promise<WsModule | null> {
  wsModule ??= import("ws").then(
    (m) => m,
    () => null,
  );
  return wsModule;
}

/**
 * A client for one dejimad. Every operation of openapi.yaml is a method (see ROUTES); the
 * websocket sessions are `attach` and `attachTerminal`. Non-2xx answers reject with
 * DejimaError (`status`, `message`).
 */
export class Client {
  /** Where requests go. */
  readonly endpoint: Endpoint;
  private readonly t: Transport;

  constructor(opts: ClientOptions = {}) {
    const env = opts.env ?? process.env;
    let endpoint: Endpoint;
    if (opts.socket) endpoint = { socketPath: opts.socket };
    else if (opts.host) endpoint = parseHost(opts.host);
    else if (env.DEJIMA_HOST) endpoint = parseHost(env.DEJIMA_HOST);
    else endpoint = { socketPath: path.join(defaultHome(env), "dejimad.sock") };
    this.endpoint = endpoint;
    this.t = new Transport(endpoint, opts.token ?? env.DEJIMA_TOKEN, opts.timeout ?? 120_000);
  }

  /** Close idle keep-alive connections (open sessions and streams are not affected). */
  close(): void {
    this.t.close();
  }

  async #call<T>(
    method: string,
    p: string,
    opts: { query?: Record<string, QueryValue>; json?: unknown; timeout?: number } = {},
  ): Promise<T> {
    const req: Parameters<Transport["request"]>[0] = { method, path: p };
    if (opts.query) req.query = opts.query;
    if (opts.json !== undefined) req.json = opts.json;
    if (opts.timeout !== undefined) req.timeout = opts.timeout;
    const r = await this.t.request(req);
    if (r.status === 204 || r.body.length === 0) return undefined as T;
    const type = String(r.headers["content-type"] ?? "");
    if (/^application\/(?:[\w.-]+\+)?json\b/i.test(type)) return JSON.parse(r.body.toString("utf8")) as T;
    return r.body.toString("utf8") as T;
  }

  #lines(method: string, p: string, opts: { query?: Record<string, QueryValue>; json?: unknown; signal?: AbortSignal }): AsyncGenerator<string, void, undefined> {
    return lazyIterator(async () => readLines(await this.#open(method, p, opts)));
  }

  #open(method: string, p: string, opts: { query?: Record<string, QueryValue>; json?: unknown; signal?: AbortSignal; accept?: string }): Promise<IncomingMessage> {
    const req: Parameters<Transport["stream"]>[0] = { method, path: p, headers: { accept: opts.accept ?? "text/plain" } };
    if (opts.query) req.query = opts.query;
    if (opts.json !== undefined) req.json = opts.json;
    if (opts.signal) req.signal = opts.signal;
    return this.t.stream(req);
  }

  // --- system ---------------------------------------------------------------------------------

  /** GET /v1/healthz — liveness (any role). */
  healthz(): Promise<Health> {
    return this.#call("GET", "/v1/healthz");
  }

  /**
   * GET /v1/readyz — readiness (any role): `{ ready: true, image }` when the engine answers and
   * the island image is there; otherwise rejects with DejimaError 503 whose `body` is
   * `{ ready: false, reason, error }`.
   */
  readyz(): Promise<Readiness> {
    return this.#call("GET", "/v1/readyz");
  }

  /** GET /metrics — the Prometheus exposition, text format 0.0.4 (operator). */
  async metrics(): Promise<string> {
    const r = await this.t.request({ method: "GET", path: "/metrics", headers: { accept: "text/plain" } });
    return r.body.toString("utf8");
  }

  /** GET /v1/doctor — the daemon's checks of its host: `{ ok, checks: [{name, status, detail, fix?, hint?}], fixed }` (operator). */
  doctor(): Promise<DoctorReport> {
    return this.#call("GET", "/v1/doctor");
  }

  /** POST /v1/doctor/fix — do what is safe (build the image, chmod 600 the socket, raise the file limit), then check again (owner). */
  doctorFix(): Promise<DoctorReport> {
    return this.#call("POST", "/v1/doctor/fix");
  }

  /**
   * POST /v1/admin/update — whether a newer dejimad exists; with `execute` put it in place
   * (the daemon then re-executes itself) (owner). Rejects 409 when the daemon has no update
   * source, 502 on a bad signature or checksum.
   */
  update(opts: { execute?: boolean; force?: boolean } = {}): Promise<UpdatePlan> {
    return this.#call("POST", "/v1/admin/update", { json: opts, timeout: 0 });
  }

  /** The daemon's version, from /v1/healthz (the API has no separate version route). */
  async version(): Promise<string> {
    return (await this.healthz()).version ?? "";
  }

  /** GET /v1/overview — server-wide totals and substrate health (viewer). */
  overview(): Promise<Overview> {
    return this.#call("GET", "/v1/overview");
  }

  /**
   * POST /v1/image/build — build the island image (owner). Yields the build's output line by
   * line; the last line is `ok: ...` or `error: ...`. Breaking out of the loop abandons the build.
   */
  imageBuild(opts: ImageBuildOptions & StreamOptions = {}): AsyncGenerator<string, void, undefined> {
    const { signal, ...body } = opts;
    const json = given(body);
    return this.#lines("POST", "/v1/image/build", { json: hasKeys(json) ? json : undefined, signal });
  }

  // --- islands --------------------------------------------------------------------------------

  /** GET /v1/islands — every island, lightweight (viewer). */
  listIslands(): Promise<IslandInfo[]> {
    return this.#call("GET", "/v1/islands");
  }

  /**
   * POST /v1/islands — create an island (operator). `repo` is a git URL or an absolute path
   * on the daemon host; pass `null` (or one object) for `{ no_repo: true, name }`.
   */
  createIsland(repo: string | null | undefined, opts?: CreateIslandOptions): Promise<IslandInfo>;
  createIsland(request: CreateIslandRequest): Promise<IslandInfo>;
  createIsland(repoOrRequest: string | null | undefined | CreateIslandRequest, opts: CreateIslandOptions = {}): Promise<IslandInfo> {
    const body: CreateIslandRequest =
      repoOrRequest !== null && typeof repoOrRequest === "object"
        ? given(repoOrRequest)
        : { ...given(opts), ...(repoOrRequest ? { repo: repoOrRequest } : {}) };
    return this.#call("POST", "/v1/islands", { json: body });
  }

  /** GET /v1/islands/{name} — detail view with git, health, disk and resources (viewer). */
  getIsland(name: string): Promise<IslandInfo> {
    return this.#call("GET", isl(name));
  }

  /** PATCH /v1/islands/{name} — set the display title (operator). */
  setTitle(name: string, title: string): Promise<IslandInfo> {
    return this.#call("PATCH", isl(name), { json: { title } });
  }

  /**
   * DELETE /v1/islands/{name} — purge container, volumes, network and records (operator).
   * Refused (409) while the workspace holds unpushed work, unless `force`.
   */
  purgeIsland(name: string, opts: { force?: boolean } = {}): Promise<void> {
    return this.#call("DELETE", isl(name), { query: given(opts) });
  }

  /** POST /v1/islands/{name}/hibernate — stop the container, keep the volumes (operator). */
  hibernate(name: string): Promise<IslandInfo> {
    return this.#call("POST", `${isl(name)}/hibernate`);
  }

  /** POST /v1/islands/{name}/wake — start the container again (operator). */
  wake(name: string): Promise<IslandInfo> {
    return this.#call("POST", `${isl(name)}/wake`);
  }

  /** POST /v1/islands/{name}/reset — a new empty home volume, workspace untouched (operator). */
  reset(name: string): Promise<IslandInfo> {
    return this.#call("POST", `${isl(name)}/reset`);
  }

  /** POST /v1/islands/{name}/upgrade — recreate on the current image, volumes kept (operator). */
  upgrade(name: string): Promise<IslandInfo> {
    return this.#call("POST", `${isl(name)}/upgrade`);
  }

  /** POST /v1/islands/{name}/clone — copy both volumes into a new island `newName` (operator). */
  cloneIsland(name: string, newName: string): Promise<IslandInfo> {
    return this.#call("POST", `${isl(name)}/clone`, { json: { name: newName } });
  }

  /** PUT /v1/islands/{name}/resources — memory cap (live) and OOM priority (operator). */
  setResources(name: string, resources: ResourcesUpdate): Promise<ResourcesResult> {
    return this.#call("PUT", `${isl(name)}/resources`, { json: given(resources) });
  }

  /** GET /v1/islands/{name}/workspace-ready — whether the workspace is populated (viewer). */
  workspaceReady(name: string): Promise<WorkspaceStatus> {
    return this.#call("GET", `${isl(name)}/workspace-ready`);
  }

  /** POST /v1/islands/{name}/reclone — clone the island's git URL again; waits (operator). */
  reclone(name: string): Promise<WorkspaceStatus> {
    return this.#call("POST", `${isl(name)}/reclone`, { timeout: 0 });
  }

  /**
   * POST /v1/islands/{name}/exec — run a command (no PTY) and return its output (operator).
   * `cmd` is an argv array; a string is run as `sh -c <string>`.
   */
  exec(name: string, cmd: string | readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const argv = typeof cmd === "string" ? ["sh", "-c", cmd] : [...cmd];
    const body = { cmd: argv, ...given(opts) };
    const secs = typeof opts.timeout_secs === "number" ? opts.timeout_secs : 60;
    const timeout = this.t.timeout > 0 ? Math.max(this.t.timeout, secs * 1000 + 30_000) : 0;
    return this.#call("POST", `${isl(name)}/exec`, { json: body, timeout });
  }

  /** GET /v1/islands/{name}/files/{path} — a file's bytes (viewer). `filePath` is absolute. */
  async readFile(name: string, filePathInIsland: string): Promise<Buffer> {
    const r = await this.t.request({
      method: "GET",
      path: `${isl(name)}/files/${filePath(filePathInIsland)}`,
      headers: { accept: "application/octet-stream" },
    });
    return r.body;
  }

  /** PUT /v1/islands/{name}/files/{path} — write a file, parents created, atomically (operator). */
  async writeFile(name: string, filePathInIsland: string, data: Uint8Array | string): Promise<void> {
    await this.t.request({ method: "PUT", path: `${isl(name)}/files/${filePath(filePathInIsland)}`, body: data });
  }

  /**
   * GET /v1/islands/{name}/logs — container (or a headless agent's) output (viewer). With
   * `follow: true` an async iterator of lines that stays open; otherwise the text.
   */
  logs(name: string, opts: LogsOptions & { follow: true }): AsyncGenerator<string, void, undefined>;
  logs(name: string, opts?: LogsOptions & { follow?: false }): Promise<string>;
  logs(name: string, opts: LogsOptions): Promise<string> | AsyncGenerator<string, void, undefined>;
  logs(name: string, opts: LogsOptions = {}): Promise<string> | AsyncGenerator<string, void, undefined> {
    const { signal, ...q } = opts;
    const query = given(q) as Record<string, QueryValue>;
    if (opts.follow) return this.#lines("GET", `${isl(name)}/logs`, { query, signal });
    return this.t
      .request({ method: "GET", path: `${isl(name)}/logs`, query, headers: { accept: "text/plain" }, ...(signal ? { signal } : {}) })
      .then((r) => r.body.toString("utf8"));
  }

  // --- agents ---------------------------------------------------------------------------------

  /** GET /v1/islands/{name}/agents — the island's agents, primary first (viewer). */
  listAgents(name: string): Promise<AgentInfo[]> {
    return this.#call("GET", `${isl(name)}/agents`);
  }

  /** POST /v1/islands/{name}/agents — add an agent (operator). */
  addAgent(name: string, opts: AddAgentOptions = {}): Promise<AgentInfo> {
    return this.#call("POST", `${isl(name)}/agents`, { json: given(opts) });
  }

  /** GET /v1/islands/{name}/agents/{id} — one agent (viewer). */
  getAgent(name: string, id: string): Promise<AgentInfo> {
    return this.#call("GET", `${isl(name)}/agents/${seg(id)}`);
  }

  /** PATCH /v1/islands/{name}/agents/{id} — relabel an agent (operator). */
  relabelAgent(name: string, id: string, label: string): Promise<AgentInfo> {
    return this.#call("PATCH", `${isl(name)}/agents/${seg(id)}`, { json: { label } });
  }

  /** DELETE /v1/islands/{name}/agents/{id} — remove an agent (operator). */
  removeAgent(name: string, id: string): Promise<void> {
    return this.#call("DELETE", `${isl(name)}/agents/${seg(id)}`);
  }

  /** POST /v1/islands/{name}/agents/{id}/restart — relaunch the agent's program (operator). */
  restartAgent(name: string, id: string, opts: RestartAgentOptions = {}): Promise<AgentInfo> {
    const json = given(opts);
    return this.#call("POST", `${isl(name)}/agents/${seg(id)}/restart`, hasKeys(json) ? { json } : {});
  }

  /** PATCH /v1/islands/{name}/agents/{id}/config — set provider and model (operator). */
  configureAgent(name: string, id: string, config: AgentConfig): Promise<AgentInfo> {
    return this.#call("PATCH", `${isl(name)}/agents/${seg(id)}/config`, { json: given(config) });
  }

  /** GET /v1/agent-types — the agent types and what each needs (viewer). */
  agentTypes(): Promise<AgentType[]> {
    return this.#call("GET", "/v1/agent-types");
  }

  // --- sessions -------------------------------------------------------------------------------

  /**
   * GET /v1/islands/{name}/session or /v1/islands/{name}/agents/{id}/session (websocket,
   * operator) — attach to the primary agent's terminal, or to `opts.agent`'s. Resolves after
   * the server's hello (`session.attached`).
   */
  attach(island: string, opts: AttachOptions = {}): Promise<Session> {
    const p = opts.agent ? `${isl(island)}/agents/${seg(opts.agent)}/session` : `${isl(island)}/session`;
    return this.#openSession(p, opts);
  }

  /**
   * GET /v1/islands/{name}/agents/{id}/screen — the agent's screen without attaching (viewer):
   * `text` or `ansi` as a string, `json` as a Screen (rows, cursor, size, history).
   */
  screen(name: string, agent: string, opts: { format: "json"; scrollback?: number }): Promise<Screen>;
  screen(name: string, agent?: string, opts?: { format?: "text" | "ansi"; scrollback?: number }): Promise<string>;
  screen(
    name: string,
    agent = "a1",
    opts: { format?: "text" | "ansi" | "json"; scrollback?: number } = {},
  ): Promise<string | Screen> {
    const path = `${isl(name)}/agents/${seg(agent)}/screen`;
    const query = given({ format: opts.format, scrollback: opts.scrollback }) as Record<string, QueryValue>;
    if (opts.format === "json") return this.#call("GET", path, { query });
    return this.t.request({ method: "GET", path, query, headers: { accept: "text/plain" } }).then((r) => r.body.toString("utf8"));
  }

  /**
   * POST /v1/islands/{name}/agents/{id}/prompt — paste `text` and press the agent's submit key,
   * each verified on its screen (operator). 409/504 reject with what was seen.
   */
  prompt(name: string, text: string, opts: { agent?: string; submit?: boolean } = {}): Promise<Delivery> {
    const body = given({ text, submit: opts.submit });
    return this.#call("POST", `${isl(name)}/agents/${seg(opts.agent ?? "a1")}/prompt`, { json: body });
  }

  /**
   * POST /v1/islands/{name}/agents/{id}/upload — save a file (at most 8 MiB) in the island's
   * ~/uploads and paste it (text) or its path (anything else) into the agent's input (operator).
   */
  upload(name: string, filename: string, data: Buffer | Uint8Array | string, opts: { agent?: string } = {}): Promise<Uploaded> {
    const body = typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data);
    return this.t
      .request({
        method: "POST",
        path: `${isl(name)}/agents/${seg(opts.agent ?? "a1")}/upload`,
        query: { filename },
        body,
        headers: { "content-type": "application/octet-stream" },
      })
      .then((r) => JSON.parse(r.body.toString("utf8")) as Uploaded);
  }

  /** PATCH /v1/islands/{name} {record} — record the island's agent sessions, or stop (operator). */
  setRecord(name: string, on: boolean): Promise<IslandInfo> {
    return this.#call("PATCH", isl(name), { json: { record: on } });
  }

  /** GET /v1/islands/{name}/recordings — session recordings, newest first (viewer). */
  listRecordings(name: string): Promise<Recording[]> {
    return this.#call("GET", `${isl(name)}/recordings`);
  }

  /** GET /v1/islands/{name}/recordings/{id} — one recording, asciicast v2 text (viewer). */
  getRecording(name: string, id: string): Promise<string> {
    return this.t
      .request({ method: "GET", path: `${isl(name)}/recordings/${seg(id)}`, headers: { accept: "application/x-asciicast" } })
      .then((r) => r.body.toString("utf8"));
  }

  /** DELETE /v1/islands/{name}/recordings/{id} — delete a finished recording (operator). */
  async deleteRecording(name: string, id: string): Promise<void> {
    await this.#call("DELETE", `${isl(name)}/recordings/${seg(id)}`);
  }

  /** GET /v1/terminals/{id}/session (websocket, owner) — attach to a host terminal. */
  attachTerminal(id: string, opts: Omit<AttachOptions, "agent"> = {}): Promise<Session> {
    return this.#openSession(`/v1/terminals/${seg(id)}/session`, opts);
  }

  /**
   * GET /v1/stream (websocket, viewer; each operation checks its own role) — events and any
   * number of agents' terminals on one connection (docs/stream.md). Needs the `ws` package.
   */
  async openStream(opts: { label?: string; timeout?: number } = {}): Promise<MuxStream> {
    const ws = await loadWs();
    if (!ws) throw new Error("openStream needs the ws package (npm install ws)");
    const pathq = "/v1/stream" + encodeQuery({ label: opts.label });
    const ep = this.endpoint;
    const url = "socketPath" in ep ? `ws+unix://${ep.socketPath}:${pathq}` : `ws://${hostForUrl(ep.hostname)}:${ep.port}${pathq}`;
    const timeout = opts.timeout ?? this.t.timeout;
    const sock = new ws.WebSocket(url, { headers: this.t.authHeaders(), perMessageDeflate: false, ...(timeout > 0 ? { handshakeTimeout: timeout } : {}) });
    return new Promise<MuxStream>((resolve, reject) => {
      sock.on("unexpected-response", (req, res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          reject(DejimaError.fromBody(res.statusCode ?? 0, Buffer.concat(chunks), "GET", pathq));
          req.destroy();
          sock.terminate();
        });
      });
      sock.on("error", (e: Error) => reject(e));
      sock.on("open", () => resolve(new MuxStream(sock as unknown as MuxSocket)));
    });
  }

  /** GET /v1/clients — recent attach/detach records, newest first (viewer). */
  clients(): Promise<ClientRecord[]> {
    return this.#call("GET", "/v1/clients");
  }

  /** POST /v1/sessions/revoke — close every attached client (operator). */
  revokeSessions(): Promise<RevokeResult> {
    return this.#call("POST", "/v1/sessions/revoke");
  }

  // --- host terminals -------------------------------------------------------------------------

  /** GET /v1/terminals — host terminals (owner; 404 unless dejimad --host-terminals). */
  listTerminals(): Promise<TerminalInfo[]> {
    return this.#call("GET", "/v1/terminals");
  }

  /** POST /v1/terminals — start a host terminal (owner). */
  createTerminal(opts: CreateTerminalOptions = {}): Promise<TerminalInfo> {
    return this.#call("POST", "/v1/terminals", { json: given(opts) });
  }

  /** PATCH /v1/terminals/{id} — relabel a host terminal (owner). */
  relabelTerminal(id: string, label: string): Promise<TerminalInfo> {
    return this.#call("PATCH", `/v1/terminals/${seg(id)}`, { json: { label } });
  }

  /** DELETE /v1/terminals/{id} — close a host terminal (owner). */
  closeTerminal(id: string): Promise<void> {
    return this.#call("DELETE", `/v1/terminals/${seg(id)}`);
  }

  // --- events ---------------------------------------------------------------------------------

  /** GET /v1/islands/{name}/events — the island's recent events, newest first (viewer). */
  islandEvents(name: string): Promise<DejimaEvent[]> {
    return this.#call("GET", `${isl(name)}/events`);
  }

  /** POST /v1/events/subscribe — subscribe a webhook (operator). */
  subscribe(url: string, opts: SubscribeOptions = {}): Promise<Subscription> {
    return this.#call("POST", "/v1/events/subscribe", { json: { url, ...given(opts) } });
  }

  /** GET /v1/events/subscriptions — webhook subscriptions and their delivery state (viewer). */
  subscriptions(): Promise<Subscription[]> {
    return this.#call("GET", "/v1/events/subscriptions");
  }

  /** DELETE /v1/events/subscriptions/{id} — remove a webhook (operator). */
  unsubscribe(id: string): Promise<void> {
    return this.#call("DELETE", `/v1/events/subscriptions/${seg(id)}`);
  }

  /**
   * GET /v1/events/stream — live events (viewer) as an async iterator of parsed server-sent
   * events. `island` and `type` filter (arrays are comma-joined); `replay` first sends that
   * many recent matching events. A final `event: "dropped"` means the consumer fell behind.
   */
  eventStream(
    opts: { island?: string | readonly string[]; type?: string | readonly string[]; replay?: number } & StreamOptions = {},
  ): AsyncGenerator<StreamEvent, void, undefined> {
    const { signal, ...q } = opts;
    const query = given(q) as Record<string, QueryValue>;
    return lazyIterator(async () => readSse<DejimaEvent>(await this.#open("GET", "/v1/events/stream", { query, signal, accept: "text/event-stream" })));
  }

  /** POST /v1/internal/agent-event — an agent reports its state (operator or the island's token). */
  postAgentEvent(event: AgentEventRequest): Promise<void> {
    return this.#call("POST", "/v1/internal/agent-event", { json: given(event) });
  }

  // --- audit ----------------------------------------------------------------------------------

  /** GET /v1/audit — the ledger with its chain's verdict (owner); jsonl/csv exports as text. */
  audit(query: AuditQuery & { format: "jsonl" | "csv" }): Promise<string>;
  audit(query?: AuditQuery & { format?: "json" }): Promise<AuditResult>;
  audit(query: AuditQuery): Promise<AuditResult | string>;
  audit(query: AuditQuery = {}): Promise<AuditResult | string> {
    return this.#call("GET", "/v1/audit", { query: given(query) as Record<string, QueryValue> });
  }

  /** GET /v1/activity — a newest-first timeline in words (operator). */
  activity(query: ActivityQuery = {}): Promise<ActivityItem[]> {
    return this.#call("GET", "/v1/activity", { query: given(query) as Record<string, QueryValue> });
  }

  // --- panic ----------------------------------------------------------------------------------

  /** GET /v1/panic — whether the panic switch is engaged (viewer). */
  panicStatus(): Promise<PanicStatus> {
    return this.#call("GET", "/v1/panic");
  }

  /** POST /v1/panic — stop every island and revoke every session until cleared (owner). */
  engagePanic(reason?: string): Promise<PanicStatus> {
    return this.#call("POST", "/v1/panic", reason === undefined ? {} : { json: { reason } });
  }

  /** DELETE /v1/panic — clear the switch; islands meant to run are woken (owner). */
  clearPanic(): Promise<PanicStatus> {
    return this.#call("DELETE", "/v1/panic");
  }

  // --- tokens ---------------------------------------------------------------------------------

  /** GET /v1/tokens — operator tokens, never their secrets (owner). */
  listTokens(): Promise<TokenInfo[]> {
    return this.#call("GET", "/v1/tokens");
  }

  /** POST /v1/tokens — create an operator token; `secret` is in this answer only (owner). */
  createToken(role: TokenRole, opts: CreateTokenOptions = {}): Promise<CreatedToken> {
    return this.#call("POST", "/v1/tokens", { json: { role, ...given(opts) } });
  }

  /** DELETE /v1/tokens/{id} — revoke a token at once (owner). */
  revokeToken(id: string): Promise<void> {
    return this.#call("DELETE", `/v1/tokens/${seg(id)}`);
  }

  // --- Port: host folders --------------------------------------------------------------------

  /** GET /v1/islands/{name}/port/scopes — the island's Port scopes (viewer, or the island's own token). */
  listPortScopes(name: string): Promise<PortScope[]> {
    return this.#call("GET", `${isl(name)}/port/scopes`);
  }

  /**
   * POST /v1/islands/{name}/port/scopes — grant a host folder (absolute, existing; stored
   * canonical) to the island (owner). `mode` "ro" (default) or "rw"; `name` defaults to the
   * folder's basename, de-duplicated with -2, -3…; a taken explicit name is 409.
   */
  grantPortScope(name: string, hostPath: string, opts: PortScopeOptions = {}): Promise<PortScope> {
    return this.#call("POST", `${isl(name)}/port/scopes`, { json: { host_path: hostPath, ...given(opts) } });
  }

  /** DELETE /v1/islands/{name}/port/scopes/{scope} — revoke a scope (owner). */
  revokePortScope(name: string, scope: string): Promise<void> {
    return this.#call("DELETE", `${isl(name)}/port/scopes/${seg(scope)}`);
  }

  /**
   * POST /v1/islands/{name}/port/intake — copy `<scope>/<src_rel>` (a file or folder; default
   * the whole scope) into the island at `dest` (default /home/agent/intake/<scope>/<src_rel>)
   * (operator, or the island's own token). Links inside a folder are left behind (`skipped`).
   */
  portIntake(name: string, scope: string, opts: PortIntakeOptions = {}): Promise<PortResult> {
    return this.#call("POST", `${isl(name)}/port/intake`, { json: { scope, ...given(opts) } });
  }

  /**
   * POST /v1/islands/{name}/port/export — copy the island's `src` (under /workspace or
   * /home/agent) to a new folder under $DEJIMA_HOME/port/<island>/exports/ on the host; the
   * answer's `host_path` is where it is (operator, or the island's own token).
   */
  portExport(name: string, src: string): Promise<PortResult> {
    return this.#call("POST", `${isl(name)}/port/export`, { json: { src } });
  }

  /**
   * POST /v1/islands/{name}/port/write — write the island file `src` into an rw scope at
   * `dest_rel`, atomically, folders made (operator, or the island's own token). An ro scope is 403.
   */
  portWrite(name: string, write: PortWriteRequest): Promise<PortResult> {
    return this.#call("POST", `${isl(name)}/port/write`, { json: given(write) });
  }

  // --- capabilities ---------------------------------------------------------------------------

  /** GET /v1/capabilities — the targets in $DEJIMA_HOME/capabilities/ and whether each may run (viewer). */
  listCapabilities(): Promise<CapabilityInfo[]> {
    return this.#call("GET", "/v1/capabilities");
  }

  /** GET /v1/islands/{name}/capability/grants — what the island may run (viewer, or its own token). */
  listCapabilityGrants(name: string): Promise<CapabilityGrant[]> {
    return this.#call("GET", `${isl(name)}/capability/grants`);
  }

  /** POST /v1/islands/{name}/capability/grants — let the island run `target` (need not exist yet) (operator). */
  grantCapability(name: string, target: string): Promise<CapabilityGrant> {
    return this.#call("POST", `${isl(name)}/capability/grants`, { json: { target } });
  }

  /** DELETE /v1/islands/{name}/capability/grants/{target} — withdraw a capability grant (operator). */
  revokeCapability(name: string, target: string): Promise<void> {
    return this.#call("DELETE", `${isl(name)}/capability/grants/${seg(target)}`);
  }

  /**
   * POST /v1/capabilities/execute — run a granted capability, `args` (string → string) as JSON
   * on its stdin. A non-zero exit still resolves, with `ok: false`. `island` is required unless
   * the client holds an island's own token (then it is that island). Ungranted: 403.
   */
  executeCapability(target: string, opts: ExecuteCapabilityOptions = {}): Promise<CapabilityResult> {
    return this.#call("POST", "/v1/capabilities/execute", { json: { target, ...given(opts) } });
  }

  // --- MCP ------------------------------------------------------------------------------------

  /** GET /v1/mcp/servers — the servers in $DEJIMA_HOME/mcp/servers.json, env values never shown (viewer). */
  listMcpServers(): Promise<McpServer[]> {
    return this.#call("GET", "/v1/mcp/servers");
  }

  /** GET /v1/islands/{name}/mcp/grants — the MCP servers the island may call (viewer, or its own token). */
  listMcpGrants(name: string): Promise<McpGrant[]> {
    return this.#call("GET", `${isl(name)}/mcp/grants`);
  }

  /** POST /v1/islands/{name}/mcp/grants — let the island call a registered server (unknown: 404) (operator). */
  grantMcp(name: string, server: string): Promise<McpGrant> {
    return this.#call("POST", `${isl(name)}/mcp/grants`, { json: { server } });
  }

  /** DELETE /v1/islands/{name}/mcp/grants/{server} — withdraw an MCP grant; its process ends (operator). */
  revokeMcp(name: string, server: string): Promise<void> {
    return this.#call("DELETE", `${isl(name)}/mcp/grants/${seg(server)}`);
  }

  /**
   * POST /v1/mcp/call — one brokered JSON-RPC call on a granted server (tools/list, tools/call,
   * resources/list, resources/read, prompts/list, prompts/get; others 400). `island` may be
   * null only with an island's own token.
   */
  mcpCall(island: string | null | undefined, server: string, method: McpMethod, params?: Record<string, unknown>): Promise<McpCallResult> {
    const body: McpCallRequest = { server, method, ...(island ? { island } : {}), ...(params !== undefined ? { params } : {}) };
    return this.#call("POST", "/v1/mcp/call", { json: body });
  }

  // --- child islands --------------------------------------------------------------------------

  /** GET /v1/islands/{name}/spawn — the island's spawn grant and children; `granted` false without one (viewer, or its own token). */
  spawnInfo(name: string): Promise<SpawnInfo> {
    return this.#call("GET", `${isl(name)}/spawn`);
  }

  /**
   * PUT /v1/islands/{name}/spawn — let the island's token create up to `maxChildren` (1..64)
   * child islands, each within the `cpus` / `memory` ceilings (operator).
   */
  grantSpawn(name: string, maxChildren: number, opts: SpawnGrantOptions = {}): Promise<SpawnInfo> {
    return this.#call("PUT", `${isl(name)}/spawn`, { json: { max_children: maxChildren, ...given(opts) } });
  }

  /** PUT /v1/islands/{name}/spawn with max_children 0 — withdraw the spawn grant; existing children stay (operator). */
  revokeSpawn(name: string): Promise<SpawnInfo> {
    return this.#call("PUT", `${isl(name)}/spawn`, { json: { max_children: 0 } });
  }

  // --- SSH ------------------------------------------------------------------------------------

  /**
   * GET /v1/islands/{name}/ssh (upgrade to `dejima-ssh`; operator, or the island's own token)
   * — a raw byte stream to a `sshd -i` started in the island for this connection (key
   * authentication only, as the agent user). Resolves with the connection after the daemon's
   * `101 Switching Protocols`: from then on it carries the SSH protocol both ways (the island's
   * banner comes first), e.g. for an SSH library's `sock` option. Over the Unix socket or TCP
   * (with the token). Any other answer rejects with DejimaError (404 no such island, 409 not
   * running, 403 not allowed).
   */
  sshStream(name: string, opts: SshStreamOptions = {}): Promise<Socket> {
    const p = `${isl(name)}/ssh`;
    const ep = this.endpoint;
    const target: http.RequestOptions =
      "socketPath" in ep ? { socketPath: ep.socketPath, host: "dejimad" } : { hostname: ep.hostname, port: ep.port };
    const timeout = opts.timeout ?? this.t.timeout;
    return new Promise<Socket>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let settled = false;
      const done = (err: Error | null, sock?: Socket) => {
        if (settled) {
          if (sock) sock.destroy();
          return;
        }
        settled = true;
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve(sock!);
      };
      const req = http.request({
        ...target,
        method: "GET",
        path: p,
        agent: false,
        headers: { ...this.t.authHeaders(), connection: "Upgrade", upgrade: SSH_PROTO },
      });
      const onAbort = () => {
        const reason = opts.signal?.reason ?? new Error("aborted");
        req.destroy(reason instanceof Error ? reason : new Error(String(reason)));
      };
      if (opts.signal) {
        if (opts.signal.aborted) onAbort();
        else opts.signal.addEventListener("abort", onAbort, { once: true });
      }
      if (timeout > 0) {
        timer = setTimeout(() => req.destroy(new DejimaTimeoutError(`GET ${p}: no answer within ${timeout} ms`)), timeout);
      }
      req.on("error", (e) => done(e));
      req.on("upgrade", (res: IncomingMessage, socket: Socket, head: Buffer) => {
        const proto = String(res.headers.upgrade ?? "");
        if (proto.toLowerCase() !== SSH_PROTO) {
          socket.destroy();
          done(new Error(`GET ${p}: dejimad switched to ${JSON.stringify(proto)}, not ${SSH_PROTO}`));
          return;
        }
        if (!("socketPath" in ep)) socket.setNoDelay(true);
        socket.setTimeout(0);
        // Whatever arrived with the head is already the island's sshd speaking.
        if (head.length > 0) socket.unshift(head);
        done(null, socket);
      });
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", (e) => done(e));
        res.on("end", () => done(DejimaError.fromBody(res.statusCode ?? 0, Buffer.concat(chunks), "GET", p)));
      });
      req.end();
    });
  }

  /** GET /v1/ssh/account-keys — the SSH keys let into every island (owner). */
  listAccountKeys(): Promise<SshKey[]> {
    return this.#call("GET", "/v1/ssh/account-keys");
  }

  /**
   * POST /v1/ssh/account-keys — let a public key (one OpenSSH line, `ssh-ed25519 AAAA…
   * comment`) into every island from the next connection on (owner). Resolves with the key's
   * record: new (201), or the one it had when it was there already (200). Malformed: 400 or 422.
   */
  addAccountKey(publicKey: string): Promise<SshKey> {
    return this.#call("POST", "/v1/ssh/account-keys", { json: { public_key: publicKey.trim() } satisfies AddSshKeyRequest });
  }

  /** DELETE /v1/ssh/account-keys/{fingerprint} — stop letting an account key in; `SHA256:` prefix optional (owner). */
  removeAccountKey(fingerprint: string): Promise<void> {
    return this.#call("DELETE", `/v1/ssh/account-keys/${seg(fingerprint)}`);
  }

  /** GET /v1/islands/{name}/ssh/keys — the SSH keys let into this island only (viewer). */
  listIslandSshKeys(name: string): Promise<SshKey[]> {
    return this.#call("GET", `${isl(name)}/ssh/keys`);
  }

  /**
   * POST /v1/islands/{name}/ssh/keys — let a public key into this island only (operator).
   * Resolves with the key's record: new (201), or the one it had already (200).
   */
  addIslandSshKey(name: string, publicKey: string): Promise<SshKey> {
    return this.#call("POST", `${isl(name)}/ssh/keys`, { json: { public_key: publicKey.trim() } satisfies AddSshKeyRequest });
  }

  /** DELETE /v1/islands/{name}/ssh/keys/{fingerprint} — stop letting an island key in; `SHA256:` prefix optional (operator). */
  removeIslandSshKey(name: string, fingerprint: string): Promise<void> {
    return this.#call("DELETE", `${isl(name)}/ssh/keys/${seg(fingerprint)}`);
  }

  // --- credentials ----------------------------------------------------------------------------

  /** GET /v1/credentials/claude — whether Claude Code's login is stored (owner). */
  claudeCredentials(): Promise<ClaudeStatus> {
    return this.#call("GET", "/v1/credentials/claude");
  }

  /** PUT /v1/credentials/claude — store Claude Code's login (the credentials file's JSON) (owner). */
  setClaudeCredentials(credentialsJson: unknown, opts: SetClaudeOptions = {}): Promise<ClaudeStatus> {
    return this.#call("PUT", "/v1/credentials/claude", { json: { credentials_json: credentialsJson, ...given(opts) } });
  }

  /** DELETE /v1/credentials/claude — forget the stored Claude login (owner). */
  deleteClaudeCredentials(): Promise<void> {
    return this.#call("DELETE", "/v1/credentials/claude");
  }

  /** GET /v1/credentials/github — GitHub identities, token hints only (owner). */
  githubIdentities(): Promise<GithubIdentity[]> {
    return this.#call("GET", "/v1/credentials/github");
  }

  /** PUT /v1/credentials/github/{name} — add or replace an identity (owner). */
  setGithubIdentity(name: string, identity: GithubIdentityRequest): Promise<GithubIdentity> {
    return this.#call("PUT", `/v1/credentials/github/${seg(name)}`, { json: given(identity) });
  }

  /** DELETE /v1/credentials/github/{name} — remove an identity (owner). */
  removeGithubIdentity(name: string): Promise<Removed> {
    return this.#call("DELETE", `/v1/credentials/github/${seg(name)}`);
  }

  /** GET /v1/credentials/github/{name}/repos — one page of the identity's repositories (owner). */
  githubRepos(name: string, query: GithubReposQuery = {}): Promise<GithubRepoPage> {
    return this.#call("GET", `/v1/credentials/github/${seg(name)}/repos`, { query: given(query) as Record<string, QueryValue> });
  }

  /** POST /v1/credentials/github/{name}/repos — create a repository owned by the identity (owner). */
  createGithubRepo(identity: string, repo: CreateGithubRepoRequest): Promise<GithubRepo> {
    return this.#call("POST", `/v1/credentials/github/${seg(identity)}/repos`, { json: given(repo) });
  }

  /** GET /v1/credentials/providers — provider keys (masked) and the islands using each (owner). */
  listProviders(): Promise<Provider[]> {
    return this.#call("GET", "/v1/credentials/providers");
  }

  /** GET /v1/credentials/providers/{provider} — one provider, masked (owner). */
  getProvider(name: string): Promise<Provider> {
    return this.#call("GET", `/v1/credentials/providers/${seg(name)}`);
  }

  /** PUT /v1/credentials/providers/{provider} — set a provider's key (write-only) (owner). */
  setProvider(name: string, provider: ProviderRequest): Promise<Provider> {
    return this.#call("PUT", `/v1/credentials/providers/${seg(name)}`, { json: given(provider) });
  }

  /** DELETE /v1/credentials/providers/{provider} — remove a provider (owner). */
  removeProvider(name: string): Promise<Removed> {
    return this.#call("DELETE", `/v1/credentials/providers/${seg(name)}`);
  }

  // --- websocket plumbing ---------------------------------------------------------------------

  async #openSession(p: string, opts: Omit<AttachOptions, "agent">): Promise<Session> {
    const pathq = p + encodeQuery({ label: opts.label, mode: opts.observe ? "observe" : undefined, scrollback: opts.scrollback });
    const headers = this.t.authHeaders();
    const timeout = opts.timeout ?? this.t.timeout;
    const ep = this.endpoint;
    const session = new Session(opts.label);
    const ws = opts.webSocket === "global" ? null : await loadWs();
    const Global = (globalThis as { WebSocket?: new (url: string, init?: unknown) => WhatwgSocket }).WebSocket;

    return new Promise<Session>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let socket: SocketLike & { terminate?: () => void };
      const fail = (e: Error) => {
        if (timer) clearTimeout(timer);
        reject(e);
      };
      const hello = {
        resolve: (s: Session) => {
          if (timer) clearTimeout(timer);
          resolve(s);
        },
        reject: fail,
      };
      const sendResize = () => {
        if (opts.rows !== undefined && opts.cols !== undefined) {
          socket.send(JSON.stringify({ type: "resize", rows: opts.rows, cols: opts.cols }));
        }
      };

      if (ws) {
        const url =
          "socketPath" in ep ? `ws+unix://${ep.socketPath}:${pathq}` : `ws://${hostForUrl(ep.hostname)}:${ep.port}${pathq}`;
        const sock = new ws.WebSocket(url, { headers, perMessageDeflate: false, ...(timeout > 0 ? { handshakeTimeout: timeout } : {}) });
        socket = sock;
        const ev: SocketEvents = session._bind(sock, hello);
        sock.on("unexpected-response", (req, res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            fail(DejimaError.fromBody(res.statusCode ?? 0, Buffer.concat(chunks), "GET", pathq));
            req.destroy();
            sock.terminate();
          });
        });
        sock.on("open", sendResize);
        sock.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
          const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
          if (isBinary) ev.binary(buf);
          else ev.message(buf.toString("utf8"));
        });
        sock.on("close", (code: number, reason: Buffer) => ev.close(code, reason.toString("utf8")));
        sock.on("error", (err: Error) => ev.error(err));
      } else if (Global && !("socketPath" in ep)) {
        const url = `ws://${hostForUrl(ep.hostname)}:${ep.port}${pathq}`;
        // Node's (undici's) WebSocket takes headers in its init; a browser ignores them.
        const sock = new Global(url, hasKeys(headers) ? { headers } : undefined);
        sock.binaryType = "arraybuffer";
        socket = sock;
        const ev = session._bind(sock, hello);
        sock.addEventListener("open", sendResize);
        sock.addEventListener("message", (e: { data: unknown }) => {
          if (typeof e.data === "string") ev.message(e.data);
          else if (e.data instanceof ArrayBuffer) ev.binary(new Uint8Array(e.data));
        });
        sock.addEventListener("close", (e: { code: number; reason: string }) => ev.close(e.code, e.reason));
        sock.addEventListener("error", () => ev.error(new Error(`websocket to ${url} failed`)));
      } else {
        reject(new Error("attach needs the `ws` package (npm install ws) for a Unix socket or where no global WebSocket exists"));
        return;
      }
      if (timeout > 0) {
        timer = setTimeout(() => {
          reject(new Error(`no hello from ${pathq} within ${timeout} ms`));
          if (socket.terminate) socket.terminate();
          else socket.close();
        }, timeout);
      }
    });
  }
}

interface WhatwgSocket extends SocketLike {
  binaryType: string;
  addEventListener(type: string, cb: (e: never) => void): void;
}

function hostForUrl(h: string): string {
  return h.includes(":") ? `[${h}]` : h;
}

/**
 * Every operation of openapi.yaml ("METHOD /path", as the spec writes the path) and the
 * Client method that performs it. The test suite fails when the spec gains an operation
 * this table lacks.
 */
export const ROUTES = {
  "GET /v1/healthz": "healthz",
  "GET /v1/readyz": "readyz",
  "GET /metrics": "metrics",
  "GET /v1/doctor": "doctor",
  "POST /v1/doctor/fix": "doctorFix",
  "POST /v1/admin/update": "update",
  "GET /v1/overview": "overview",
  "POST /v1/image/build": "imageBuild",
  "GET /v1/islands": "listIslands",
  "POST /v1/islands": "createIsland",
  "GET /v1/islands/{name}": "getIsland",
  "PATCH /v1/islands/{name}": "setTitle",
  "DELETE /v1/islands/{name}": "purgeIsland",
  "POST /v1/islands/{name}/hibernate": "hibernate",
  "POST /v1/islands/{name}/wake": "wake",
  "POST /v1/islands/{name}/reset": "reset",
  "POST /v1/islands/{name}/upgrade": "upgrade",
  "POST /v1/islands/{name}/clone": "cloneIsland",
  "PUT /v1/islands/{name}/resources": "setResources",
  "GET /v1/islands/{name}/workspace-ready": "workspaceReady",
  "POST /v1/islands/{name}/reclone": "reclone",
  "POST /v1/islands/{name}/exec": "exec",
  "GET /v1/islands/{name}/files/{path}": "readFile",
  "PUT /v1/islands/{name}/files/{path}": "writeFile",
  "GET /v1/islands/{name}/logs": "logs",
  "GET /v1/islands/{name}/session": "attach",
  "GET /v1/islands/{name}/agents": "listAgents",
  "POST /v1/islands/{name}/agents": "addAgent",
  "GET /v1/islands/{name}/agents/{id}": "getAgent",
  "PATCH /v1/islands/{name}/agents/{id}": "relabelAgent",
  "DELETE /v1/islands/{name}/agents/{id}": "removeAgent",
  "GET /v1/agent-types": "agentTypes",
  "POST /v1/islands/{name}/agents/{id}/restart": "restartAgent",
  "PATCH /v1/islands/{name}/agents/{id}/config": "configureAgent",
  "GET /v1/islands/{name}/agents/{id}/session": "attach",
  "GET /v1/islands/{name}/agents/{id}/screen": "screen",
  "POST /v1/islands/{name}/agents/{id}/prompt": "prompt",
  "POST /v1/islands/{name}/agents/{id}/upload": "upload",
  "GET /v1/islands/{name}/recordings": "listRecordings",
  "GET /v1/islands/{name}/recordings/{id}": "getRecording",
  "DELETE /v1/islands/{name}/recordings/{id}": "deleteRecording",
  "GET /v1/stream": "openStream",
  "GET /v1/clients": "clients",
  "POST /v1/sessions/revoke": "revokeSessions",
  "GET /v1/terminals": "listTerminals",
  "POST /v1/terminals": "createTerminal",
  "PATCH /v1/terminals/{id}": "relabelTerminal",
  "DELETE /v1/terminals/{id}": "closeTerminal",
  "GET /v1/terminals/{id}/session": "attachTerminal",
  "GET /v1/islands/{name}/events": "islandEvents",
  "POST /v1/events/subscribe": "subscribe",
  "GET /v1/events/subscriptions": "subscriptions",
  "DELETE /v1/events/subscriptions/{id}": "unsubscribe",
  "GET /v1/events/stream": "eventStream",
  "POST /v1/internal/agent-event": "postAgentEvent",
  "GET /v1/audit": "audit",
  "GET /v1/activity": "activity",
  "GET /v1/panic": "panicStatus",
  "POST /v1/panic": "engagePanic",
  "DELETE /v1/panic": "clearPanic",
  "GET /v1/tokens": "listTokens",
  "POST /v1/tokens": "createToken",
  "DELETE /v1/tokens/{id}": "revokeToken",
  "GET /v1/islands/{name}/port/scopes": "listPortScopes",
  "POST /v1/islands/{name}/port/scopes": "grantPortScope",
  "DELETE /v1/islands/{name}/port/scopes/{scope}": "revokePortScope",
  "POST /v1/islands/{name}/port/intake": "portIntake",
  "POST /v1/islands/{name}/port/export": "portExport",
  "POST /v1/islands/{name}/port/write": "portWrite",
  "GET /v1/capabilities": "listCapabilities",
  "GET /v1/islands/{name}/capability/grants": "listCapabilityGrants",
  "POST /v1/islands/{name}/capability/grants": "grantCapability",
  "DELETE /v1/islands/{name}/capability/grants/{target}": "revokeCapability",
  "POST /v1/capabilities/execute": "executeCapability",
  "GET /v1/mcp/servers": "listMcpServers",
  "GET /v1/islands/{name}/mcp/grants": "listMcpGrants",
  "POST /v1/islands/{name}/mcp/grants": "grantMcp",
  "DELETE /v1/islands/{name}/mcp/grants/{server}": "revokeMcp",
  "POST /v1/mcp/call": "mcpCall",
  "GET /v1/islands/{name}/spawn": "spawnInfo",
  "PUT /v1/islands/{name}/spawn": "grantSpawn",
  "GET /v1/credentials/claude": "claudeCredentials",
  "PUT /v1/credentials/claude": "setClaudeCredentials",
  "DELETE /v1/credentials/claude": "deleteClaudeCredentials",
  "GET /v1/credentials/github": "githubIdentities",
  "PUT /v1/credentials/github/{name}": "setGithubIdentity",
  "DELETE /v1/credentials/github/{name}": "removeGithubIdentity",
  "GET /v1/credentials/github/{name}/repos": "githubRepos",
  "POST /v1/credentials/github/{name}/repos": "createGithubRepo",
  "GET /v1/credentials/providers": "listProviders",
  "GET /v1/credentials/providers/{provider}": "getProvider",
  "PUT /v1/credentials/providers/{provider}": "setProvider",
  "DELETE /v1/credentials/providers/{provider}": "removeProvider",
  "GET /v1/islands/{name}/ssh": "sshStream",
  "GET /v1/ssh/account-keys": "listAccountKeys",
  "POST /v1/ssh/account-keys": "addAccountKey",
  "DELETE /v1/ssh/account-keys/{fingerprint}": "removeAccountKey",
  "GET /v1/islands/{name}/ssh/keys": "listIslandSshKeys",
  "POST /v1/islands/{name}/ssh/keys": "addIslandSshKey",
  "DELETE /v1/islands/{name}/ssh/keys/{fingerprint}": "removeIslandSshKey",
} as const satisfies Record<string, keyof Client>;

/** A route key of ROUTES, e.g. "GET /v1/islands". */
export type Route = keyof typeof ROUTES;

/** Every "METHOD /path" the generated types describe. */
export type SpecRoute = {
  [P in keyof paths]: {
    [M in HttpMethod]: [NonNullable<paths[P][M]>] extends [never] ? never : `${Uppercase<M>} ${P & string}`;
  }[HttpMethod];
}[keyof paths];

// Compile-time completeness: `npm run gen` after an openapi.yaml change makes `tsc` fail here
// until ROUTES (and so a method) covers each new operation.
type MissingRoutes = Exclude<SpecRoute, Route>;
const routesComplete: [MissingRoutes] extends [never] ? true : { missing: MissingRoutes } = true;
void routesComplete;
