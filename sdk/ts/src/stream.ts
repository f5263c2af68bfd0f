import type { IncomingMessage } from "node:http";
import { StringDecoder } from "node:string_decoder";

/** The response's text, line by line (without the newline; a last unterminated line too). */
export async function* readLines(res: IncomingMessage): AsyncGenerator<string, void, undefined> {
  const decoder = new StringDecoder("utf8");
  let buf = "";
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      buf += decoder.write(chunk);
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        yield line.endsWith("\r") ? line.slice(0, -1) : line;
      }
    }
    buf += decoder.end();
    if (buf) yield buf;
  } finally {
    if (!res.destroyed) res.destroy();
  }
}

/** One server-sent event. */
export interface SseMessage<T = unknown> {
  /** The frame's `id:`, when it had one. */
  id?: string;
  /** The frame's `event:` (default "message"). */
  event: string;
  /** The `data:` lines joined by newlines. */
  raw: string;
  /** `raw` parsed as JSON, or undefined when it is not JSON. */
  data: T | undefined;
}

/** Parse a text/event-stream response into events (comments and `retry:` skipped). */
export async function* readSse<T>(res: IncomingMessage): AsyncGenerator<SseMessage<T>, void, undefined> {
  let id: string | undefined;
  let event = "";
  let data: string[] = [];
  let has = false;
  for await (const line of readLines(res)) {
    if (line === "") {
      if (has) {
        const raw = data.join("\n");
        let parsed: T | undefined;
        try {
          parsed = JSON.parse(raw) as T;
        } catch {
          parsed = undefined;
        }
        const msg: SseMessage<T> = { event: event || "message", raw, data: parsed };
        if (id !== undefined) msg.id = id;
        yield msg;
      }
      id = undefined;
      event = "";
      data = [];
      has = false;
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "id":
        id = value;
        has = true;
        break;
      case "event":
        event = value;
        has = true;
        break;
      case "data":
        data.push(value);
        has = true;
        break;
      default:
        break;
    }
  }
}

/**
 * An async iterator that runs `start` only when first pulled, so a method can hand back a
 * `for await`-able stream at once and report a refusal (DejimaError) on the first `next()`.
 */
export function lazyIterator<T>(start: () => Promise<AsyncGenerator<T, void, undefined>>): AsyncGenerator<T, void, undefined> {
  async function* run(): AsyncGenerator<T, void, undefined> {
    const inner = await start();
    yield* inner;
  }
  return run();
}
