import http from "node:http";
import os from "node:os";
import path from "node:path";
import { DejimaError, DejimaTimeoutError } from "./errors.js";

/** Where the daemon is: a Unix socket, or a TCP host and port. */
export type Endpoint = { socketPath: string } | { hostname: string; port: number };

/** Query values: undefined and null are left out; arrays become comma-separated lists. */
export type QueryValue = string | number | boolean | undefined | null | readonly (string | number)[];

export interface RequestOptions {
  method: string;
  /** Path without the query, already percent-encoded. */
  path: string;
  query?: Record<string, QueryValue>;
  /** A JSON body (sent with Content-Type: application/json). */
  json?: unknown;
  /** A raw body (sent as application/octet-stream). */
  body?: Uint8Array | string;
  headers?: Record<string, string>;
  /** Milliseconds for the whole exchange (for a stream: until its head arrives). 0: none. */
  timeout?: number;
  signal?: AbortSignal;
}

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** The default daemon home: $DEJIMA_HOME, else ~/.dejima. */
export function defaultHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.DEJIMA_HOME || path.join(os.homedir(), ".dejima");
}

/**
 * Parse a DEJIMA_HOST-style address: `unix:/path/to.sock`, `host:port`, `http://host:port`,
 * `[::1]:port` or `:port` (loopback). The port defaults to 7273.
 */
export function parseHost(host: string): Endpoint {
  const h = host.trim();
  if (h.startsWith("unix:")) {
    const p = h.slice("unix:".length).replace(/^\/\/(?=\/)/, "");
    if (!p) throw new Error(`DEJIMA_HOST ${JSON.stringify(host)}: no socket path after unix:`);
    return { socketPath: p };
  }
  if (h.startsWith("/")) return { socketPath: h };
  let rest = h.replace(/^https?:\/\//, "").replace(/\/+$/, "");
  if (rest.startsWith(":")) rest = `127.0.0.1${rest}`;
  const url = new URL(`http://${rest}`);
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!hostname) throw new Error(`DEJIMA_HOST ${JSON.stringify(host)}: no host`);
  return { hostname, port: url.port ? Number(url.port) : 7273 };
}

export function encodeQuery(query: Record<string, QueryValue> | undefined): string {
  if (!query) return "";
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null) continue;
    const s = Array.isArray(v) ? v.join(",") : String(v);
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(s)}`);
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

/** HTTP/1.1 over node:http with a keep-alive pool, to a Unix socket or a TCP address. */
export class Transport {
  readonly endpoint: Endpoint;
  readonly token: string | undefined;
  readonly timeout: number;
  private readonly agent: http.Agent;

  constructor(endpoint: Endpoint, token: string | undefined, timeout: number) {
    this.endpoint = endpoint;
    this.token = token || undefined;
    this.timeout = timeout;
    this.agent = new http.Agent({ keepAlive: true, keepAliveMsecs: 10_000, maxFreeSockets: 16 });
  }

  /** Headers every request carries (the token, when there is one). */
  authHeaders(): Record<string, string> {
    return this.token ? { authorization: `Bearer ${this.token}` } : {};
  }

  /** Close pooled keep-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  /** A buffered request: resolves with the whole body, or rejects with DejimaError on non-2xx. */
  async request(opts: RequestOptions): Promise<Response> {
    const res = await this.open(opts, false);
    return res as Response;
  }

  /** A streamed request: resolves with the live response once a 2xx head arrived. */
  async stream(opts: RequestOptions): Promise<http.IncomingMessage> {
    return (await this.open(opts, true)) as http.IncomingMessage;
  }

  private open(opts: RequestOptions, streaming: boolean): Promise<Response | http.IncomingMessage> {
    return this.attempt(opts, streaming).catch((e: unknown) => {
      // A pooled connection the daemon closed while idle: the request never reached it, so
      // sending it again on a fresh connection is safe (Node's documented pattern).
      if (e instanceof RetryableError) return this.attempt(opts, streaming);
      throw e;
    });
  }

  private attempt(opts: RequestOptions, streaming: boolean): Promise<Response | http.IncomingMessage> {
    const fullPath = opts.path + encodeQuery(opts.query);
    const headers: Record<string, string> = { accept: "application/json", ...this.authHeaders(), ...opts.headers };
    let payload: Buffer | undefined;
    if (opts.json !== undefined) {
      payload = Buffer.from(JSON.stringify(opts.json), "utf8");
      headers["content-type"] = "application/json";
    } else if (opts.body !== undefined) {
      payload = typeof opts.body === "string" ? Buffer.from(opts.body, "utf8") : Buffer.from(opts.body.buffer, opts.body.byteOffset, opts.body.byteLength);
      headers["content-type"] ??= "application/octet-stream";
    }
    if (payload !== undefined || opts.method !== "GET") {
      headers["content-length"] = String(payload?.byteLength ?? 0);
    }
    const target: http.RequestOptions =
      "socketPath" in this.endpoint
        ? { socketPath: this.endpoint.socketPath, host: "dejimad" }
        : { hostname: this.endpoint.hostname, port: this.endpoint.port };
    const timeout = opts.timeout ?? this.timeout;

    return new Promise((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const done = (err: unknown, value?: Response | http.IncomingMessage) => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve(value!);
      };
      const req = http.request({ ...target, method: opts.method, path: fullPath, headers, agent: this.agent });
      const onAbort = () => {
        const reason = opts.signal?.reason ?? new Error("aborted");
        req.destroy(reason instanceof Error ? reason : new Error(String(reason)));
      };
      if (opts.signal) {
        if (opts.signal.aborted) {
          onAbort();
        } else {
          opts.signal.addEventListener("abort", onAbort, { once: true });
        }
      }
      if (timeout > 0) {
        timer = setTimeout(() => {
          req.destroy(new DejimaTimeoutError(`${opts.method} ${fullPath}: no answer within ${timeout} ms`));
        }, timeout);
      }
      req.on("error", (err: NodeJS.ErrnoException) => {
        if (!settled && req.reusedSocket && (err.code === "ECONNRESET" || err.code === "EPIPE")) {
          done(new RetryableError());
        } else {
          done(err);
        }
      });
      req.on("response", (res) => {
        const status = res.statusCode ?? 0;
        const ok = status >= 200 && status < 300;
        if (streaming && ok) {
          if (timer) clearTimeout(timer);
          timer = undefined;
          // Errors after this point surface on the response stream.
          res.on("error", () => {});
          done(null, res);
          return;
        }
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", (e) => done(e));
        res.on("end", () => {
          const body = Buffer.concat(chunks);
          if (!ok) done(DejimaError.fromBody(status, body, opts.method, fullPath));
          else done(null, { status, headers: res.headers, body });
        });
      });
      req.end(payload);
    });
  }
}

class RetryableError extends Error {}
