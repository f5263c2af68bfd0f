import { DejimaError } from "./errors.js";

/** Binary frame kinds of /v1/stream (docs/stream.md). */
export const KIND_OUTPUT = 1;
export const KIND_SCREEN = 2;
export const KIND_INPUT = 3;

/** `[kind][island length][island][agent length][agent][payload]`. */
export function muxFrame(kind: number, island: string, agent: string, payload: Uint8Array): Buffer {
  const i = Buffer.from(island, "utf8");
  const a = Buffer.from(agent, "utf8");
  return Buffer.concat([Buffer.from([kind, i.length]), i, Buffer.from([a.length]), a, Buffer.from(payload)]);
}

export function parseMuxFrame(b: Buffer): { kind: number; island: string; agent: string; payload: Buffer } {
  const il = b[0 + 1] ?? 0;
  const island = b.subarray(2, 2 + il).toString("utf8");
  const al = b[2 + il] ?? 0;
  const agent = b.subarray(3 + il, 3 + il + al).toString("utf8");
  return { kind: b[0] ?? 0, island, agent, payload: b.subarray(3 + il + al) };
}

/** What a socket of the `ws` package offers (the part this class uses). */
export interface MuxSocket {
  send(data: string | Buffer): void;
  close(code?: number): void;
  on(ev: "message", cb: (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => void): void;
  on(ev: "close", cb: (code: number) => void): void;
  on(ev: "error", cb: (e: Error) => void): void;
}

type Reply = { type: "reply"; id: number; ok: boolean; status?: number; error?: string; [k: string]: unknown };

/**
 * The multiplexed stream: events and any number of agents' terminals on one websocket.
 * `call(op, fields)` sends a control message and resolves with its reply (rejects with a
 * DejimaError carrying the reply's status when refused); output arrives through `onOutput`
 * and is kept per terminal (`output(island, agent)`); events through `onEvent`.
 */
export class MuxStream {
  #sock: MuxSocket;
  #next = 0;
  #pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  #out = new Map<string, string>();
  #outputCbs: ((island: string, agent: string, data: Buffer, screen: boolean) => void)[] = [];
  #eventCbs: ((e: Record<string, unknown>) => void)[] = [];
  #waiters: (() => void)[] = [];
  closed = false;
  closeCode: number | undefined;

  constructor(sock: MuxSocket) {
    this.#sock = sock;
    sock.on("message", (data, isBinary) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (isBinary) {
        const f = parseMuxFrame(buf);
        const key = `${f.island}/${f.agent}`;
        this.#out.set(key, (this.#out.get(key) ?? "") + f.payload.toString("utf8"));
        for (const cb of this.#outputCbs) cb(f.island, f.agent, f.payload, f.kind === KIND_SCREEN);
      } else {
        const m = JSON.parse(buf.toString("utf8")) as Record<string, unknown>;
        if (m.type === "reply") {
          const p = this.#pending.get(m.id as number);
          if (p) {
            this.#pending.delete(m.id as number);
            p.resolve(m as Reply);
          }
        } else if (m.type === "event") {
          for (const cb of this.#eventCbs) cb(m.event as Record<string, unknown>);
        }
      }
      for (const w of this.#waiters.splice(0)) w();
    });
    sock.on("close", (code) => {
      this.closed = true;
      this.closeCode = code;
      for (const p of this.#pending.values()) p.reject(new DejimaError(0, `the stream closed (${code})`, { method: "WS", path: "/v1/stream" }));
      this.#pending.clear();
      for (const w of this.#waiters.splice(0)) w();
    });
    sock.on("error", () => {});
  }

  /** Send `{op, id, ...fields}` and wait for the reply. */
  call(op: string, fields: Record<string, unknown> = {}): Promise<Reply> {
    const id = ++this.#next;
    return new Promise<Reply>((resolve, reject) => {
      if (this.closed) return reject(new DejimaError(0, "the stream is closed", { method: "WS", path: "/v1/stream" }));
      this.#pending.set(id, {
        resolve: (r) => (r.ok ? resolve(r) : reject(new DejimaError(r.status ?? 0, r.error ?? "refused", { method: "WS", path: "/v1/stream" }))),
        reject,
      });
      this.#sock.send(JSON.stringify({ ...fields, op, id }));
    });
  }

  /** Keystrokes for an attached terminal (a binary input frame). */
  sendInput(island: string, data: string | Uint8Array, agent = "a1"): void {
    const payload = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    this.#sock.send(muxFrame(KIND_INPUT, island, agent, payload));
  }

  onOutput(cb: (island: string, agent: string, data: Buffer, screen: boolean) => void): void {
    this.#outputCbs.push(cb);
  }

  onEvent(cb: (e: Record<string, unknown>) => void): void {
    this.#eventCbs.push(cb);
  }

  /** Everything a terminal sent so far, as text. */
  output(island: string, agent = "a1"): string {
    return this.#out.get(`${island}/${agent}`) ?? "";
  }

  /** Wait until `needle` is in a terminal's output. */
  async waitFor(island: string, needle: string, agent = "a1", timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.output(island, agent).includes(needle)) {
      if (this.closed) throw new DejimaError(0, "the stream closed", { method: "WS", path: "/v1/stream" });
      const left = deadline - Date.now();
      if (left <= 0) throw new DejimaError(0, `no ${JSON.stringify(needle)} from ${island}/${agent}`, { method: "WS", path: "/v1/stream" });
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 500));
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  close(): void {
    if (!this.closed) this.#sock.close(1000);
  }
}
