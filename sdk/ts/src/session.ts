import { DejimaError } from "./errors.js";

/** A client in a session's presence list. */
export interface Presence {
  label?: string;
  joined_at?: string;
}

/** How a session ended. */
export interface CloseInfo {
  code: number;
  reason: string;
}

/** The few parts of a websocket this module uses (the `ws` package or a WHATWG WebSocket). */
export interface SocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** 1 = open. */
  readonly readyState: number;
}

/** What a transport feeds into a Session. */
export interface SocketEvents {
  message(text: string): void;
  binary(bytes: Uint8Array): void;
  close(code: number, reason: string): void;
  error(err: Error): void;
}

const MAX_TEXT = 1 << 20;

/**
 * A websocket PTY session on an island agent's (or a host terminal's) tmux screen. Any number
 * of sessions can share one screen. Output arrives through `onData`; `waitFor` searches it.
 */
export class Session {
  /** The presence list from the server's hello (this client included). */
  attached: Presence[] = [];
  /** True once the server said the terminal itself ended. */
  exited = false;
  /** Set once the websocket is closed. */
  closeInfo: CloseInfo | undefined;
  /** Resolves when the websocket closes (never rejects). */
  readonly closed: Promise<CloseInfo>;

  private socket: SocketLike | undefined;
  private readonly dataCbs = new Set<(bytes: Uint8Array) => void>();
  private readonly exitCbs = new Set<() => void>();
  private readonly errorCbs = new Set<(message: string) => void>();
  private readonly closeCbs = new Set<(info: CloseInfo) => void>();
  private readonly pongs: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private readonly decoder = new TextDecoder("utf-8");
  private text = "";
  private cursor = 0;
  private readonly waiters = new Set<() => void>();
  private resolveClosed!: (info: CloseInfo) => void;
  private helloResolve: ((s: Session) => void) | undefined;
  private helloReject: ((e: Error) => void) | undefined;

  /** @internal Sessions come from Client.attach / Client.attachTerminal. */
  constructor(readonly label: string | undefined) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
  }

  /** @internal Wire the socket in; resolves on the server's hello. */
  _bind(socket: SocketLike, hello: { resolve: (s: Session) => void; reject: (e: Error) => void }): SocketEvents {
    this.socket = socket;
    this.helloResolve = hello.resolve;
    this.helloReject = hello.reject;
    return {
      message: (text) => this.onMessage(text),
      binary: (bytes) => this.deliver(bytes),
      close: (code, reason) => this.handleClose(code, reason),
      error: (err) => this.failHello(err),
    };
  }

  /** Type text (UTF-8) into the terminal. Use "\r" for Enter. */
  sendText(text: string): void {
    this.send(new TextEncoder().encode(text));
  }

  /** Send raw bytes as keystrokes. */
  send(bytes: Uint8Array): void {
    this.frame({ type: "data", b64: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64") });
  }

  /** Tell the server this client's terminal size (1..1000 each). */
  resize(rows: number, cols: number): void {
    this.frame({ type: "resize", rows, cols });
  }

  /** An application-level ping; resolves with the round trip in milliseconds on the pong. */
  ping(): Promise<number> {
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      if (this.closeInfo) return reject(new Error("session is closed"));
      this.pongs.push({ resolve: () => resolve(performance.now() - t0), reject });
      this.frame({ type: "ping" });
    });
  }

  /** Called with each chunk of terminal output. Returns a function that unsubscribes. */
  onData(cb: (bytes: Uint8Array) => void): () => void {
    this.dataCbs.add(cb);
    return () => this.dataCbs.delete(cb);
  }

  /** Called once when the program in the terminal ends (the server's `exit` frame). */
  onExit(cb: () => void): () => void {
    this.exitCbs.add(cb);
    return () => this.exitCbs.delete(cb);
  }

  /** Called with the text of each recoverable `error` frame. */
  onError(cb: (message: string) => void): () => void {
    this.errorCbs.add(cb);
    return () => this.errorCbs.delete(cb);
  }

  /** Called once when the websocket closes (e.g. 1008 "revoked", 1001 shutdown). */
  onClose(cb: (info: CloseInfo) => void): () => void {
    if (this.closeInfo) {
      queueMicrotask(() => cb(this.closeInfo!));
      return () => {};
    }
    this.closeCbs.add(cb);
    return () => this.closeCbs.delete(cb);
  }

  /** All output received so far, decoded as UTF-8 (at most the last MiB). */
  output(): string {
    return this.text;
  }

  /**
   * Wait until `pattern` appears in output not yet consumed by an earlier `waitFor` (so a
   * match already on screen before the call counts; each match is consumed, like expect).
   * Resolves with the output up to and including the match; rejects after `timeoutMs` or if
   * the session closes first.
   */
  waitFor(pattern: string | RegExp, timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const hay = this.text.slice(this.cursor);
        let end = -1;
        if (typeof pattern === "string") {
          const i = hay.indexOf(pattern);
          if (i >= 0) end = i + pattern.length;
        } else {
          const re = new RegExp(pattern.source, pattern.flags.replace("g", "").replace("y", ""));
          const m = re.exec(hay);
          if (m) end = m.index + m[0].length;
        }
        if (end < 0) return false;
        const upTo = hay.slice(0, end);
        this.cursor += end;
        finish();
        resolve(upTo);
        return true;
      };
      const onClosed = () => {
        if (check()) return;
        finish();
        const info = this.closeInfo;
        reject(new Error(`session closed (${info?.code} ${info?.reason ?? ""}) before ${String(pattern)} appeared; tail: ${JSON.stringify(this.text.slice(-300))}`));
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${String(pattern)} did not appear within ${timeoutMs} ms; tail: ${JSON.stringify(this.text.slice(-300))}`));
      }, timeoutMs);
      const waiter = () => {
        if (this.closeInfo) onClosed();
        else check();
      };
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      if (check()) return;
      if (this.closeInfo) return onClosed();
      this.waiters.add(waiter);
    });
  }

  /** Close the websocket (1000). Resolves once it is closed. */
  close(code = 1000, reason = ""): Promise<CloseInfo> {
    const s = this.socket;
    if (s && !this.closeInfo) {
      try {
        s.close(code, reason);
      } catch {
        // already closing
      }
    }
    return this.closed;
  }

  /** Output chunks until the session closes: `for await (const bytes of session) ...`. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array, void, undefined> {
    const queue: Uint8Array[] = [];
    let wake: (() => void) | undefined;
    const off = this.onData((b) => {
      queue.push(b);
      wake?.();
    });
    const offClose = this.onClose(() => wake?.());
    try {
      for (;;) {
        while (queue.length) yield queue.shift()!;
        if (this.closeInfo) return;
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    } finally {
      off();
      offClose();
    }
  }

  private frame(msg: unknown): void {
    const s = this.socket;
    if (!s || s.readyState !== 1) throw new Error("session is not open");
    s.send(JSON.stringify(msg));
  }

  private deliver(bytes: Uint8Array): void {
    this.text += this.decoder.decode(bytes, { stream: true });
    if (this.text.length > MAX_TEXT) {
      const cut = this.text.length - MAX_TEXT;
      this.text = this.text.slice(cut);
      this.cursor = Math.max(0, this.cursor - cut);
    }
    for (const cb of this.dataCbs) cb(bytes);
    for (const w of [...this.waiters]) w();
  }

  private onMessage(text: string): void {
    let msg: { type?: string; b64?: string; attached?: Presence[] };
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    switch (msg.type) {
      case "hello":
        this.attached = msg.attached ?? [];
        this.helloResolve?.(this);
        this.helloResolve = this.helloReject = undefined;
        break;
      case "data":
        this.deliver(Buffer.from(msg.b64 ?? "", "base64"));
        break;
      case "error": {
        const m = Buffer.from(msg.b64 ?? "", "base64").toString("utf8");
        for (const cb of this.errorCbs) cb(m);
        break;
      }
      case "pong":
        this.pongs.shift()?.resolve();
        break;
      case "exit":
        if (!this.exited) {
          this.exited = true;
          for (const cb of this.exitCbs) cb();
        }
        break;
      default:
        break;
    }
  }

  private failHello(err: Error): void {
    this.helloReject?.(err);
    this.helloResolve = this.helloReject = undefined;
  }

  private handleClose(code: number, reason: string): void {
    if (this.closeInfo) return;
    const info = { code, reason };
    this.closeInfo = info;
    this.failHello(new DejimaError(0, `websocket closed (${code} ${reason}) before the server's hello`));
    for (const cb of this.closeCbs) cb(info);
    this.closeCbs.clear();
    for (const w of [...this.waiters]) w();
    for (const p of this.pongs.splice(0)) p.reject(new Error(`session closed (${code}) before the pong`));
    this.resolveClosed(info);
  }
}
