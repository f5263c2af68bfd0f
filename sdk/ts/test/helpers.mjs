// Shared set-up for the live-daemon tests: which daemon, unique island names, clean-up,
// deadline-bounded polling, and loopback stand-in HTTP servers.
import http from "node:http";
import path from "node:path";
import { after } from "node:test";
import { Client } from "../dist/index.js";

export const HOME = process.env.DEJIMA_HOME || "";
export const SOCKET = process.env.DEJIMA_TEST_SOCKET || (HOME ? path.join(HOME, "dejimad.sock") : "");
export const TCP = process.env.DEJIMA_TEST_TCP || "";

/** Why live tests cannot run here (undefined when they can). */
export const SKIP_LIVE = SOCKET
  ? undefined
  : "set DEJIMA_HOME (the daemon's home, for its socket) and DEJIMA_TEST_TCP=127.0.0.1:PORT";
export const SKIP_TCP = SKIP_LIVE ?? (TCP ? undefined : "set DEJIMA_TEST_TCP=127.0.0.1:PORT");

/** The owner's client over the Unix socket (ignores DEJIMA_HOST / DEJIMA_TOKEN). */
export function socketClient(opts = {}) {
  return new Client({ socket: SOCKET, token: "", ...opts });
}

/** A client over TCP, with `token` when given. */
export function tcpClient(token, opts = {}) {
  return new Client({ host: TCP, token: token ?? "", ...opts });
}

const run = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 5)}`;
let n = 0;
/** A fresh island name unique to this run, e.g. tsdk-1a2b3c-exec-1. */
export function islandName(what) {
  n += 1;
  return `tsdk-${run}-${what}-${n}`.toLowerCase().slice(0, 60);
}

const created = new Set();
/** Remember an island to purge after the file's tests. */
export function track(name) {
  created.add(name);
  return name;
}

/** A running custom-bash island (purged after the file). */
export async function makeIsland(dj, what, extra = {}) {
  const name = track(islandName(what));
  const info = await dj.createIsland({ name, no_repo: true, agent: "custom", cmd: "bash", ...extra });
  return info;
}

after(async () => {
  if (!created.size || SKIP_LIVE) return;
  const dj = socketClient();
  for (const name of created) {
    await dj.purgeIsland(name, { force: true }).catch((e) => {
      if (e?.status !== 404) console.error(`clean-up of ${name}: ${e?.message ?? e}`);
    });
  }
  dj.close();
});

/** Poll `fn` until it returns a truthy value; throw after `timeout` ms. */
export async function until(fn, { timeout = 20_000, interval = 100, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Resolve with the first value of an async iterator that satisfies `pred`, within `timeout`. */
export async function firstMatch(iter, pred, timeout = 20_000) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no match within ${timeout} ms`)), timeout);
  });
  const search = (async () => {
    for await (const v of iter) {
      if (pred(v)) return v;
    }
    throw new Error("stream ended without a match");
  })();
  try {
    return await Promise.race([search, deadline]);
  } finally {
    clearTimeout(timer);
    await iter.return?.();
  }
}

/**
 * A loopback HTTP server answering with `handler(req, body)` → {status, json, headers}; records
 * every request in `requests` and lets a test await one matching a predicate.
 */
export async function standIn(handler) {
  const requests = [];
  const waiters = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const rec = { method: req.method, url: req.url, headers: req.headers, body };
      requests.push(rec);
      for (const w of [...waiters]) w();
      const out = handler(rec) ?? { status: 204 };
      const payload = out.json === undefined ? "" : JSON.stringify(out.json);
      res.writeHead(out.status ?? 200, { "content-type": "application/json", ...(out.headers ?? {}) });
      res.end(payload);
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    waitFor(pred, timeout = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = requests.find(pred);
          if (hit) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(check), 1);
            resolve(hit);
          }
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(check), 1);
          reject(new Error(`stand-in got no matching request within ${timeout} ms (${requests.length} others)`));
        }, timeout);
        waiters.push(check);
        check();
      });
    },
    close: () => new Promise((r) => server.close(r)),
  };
}
