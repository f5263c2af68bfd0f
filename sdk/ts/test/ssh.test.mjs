// SSH: island keys, account keys and the raw `dejima-ssh` byte stream to the island's sshd
// (over the Unix socket, and over TCP with a token). Keys are made with the host's
// ssh-keygen; the daemon's fingerprints are compared with what `ssh-keygen -l -E sha256` prints.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import http from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client, DejimaError } from "../dist/index.js";
import { SKIP_TCP, SOCKET, TCP, socketClient, tcpClient, makeIsland } from "./helpers.mjs";

const skip = SKIP_TCP;
const suffix = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 5)}`;
let dj; // the owner, over the socket
let name; // the island these tests share
let dir; // where the keys are made

before(async () => {
  if (skip) return;
  dj = socketClient();
  name = (await makeIsland(dj, "ssh")).name;
  dir = mkdtempSync(path.join(os.tmpdir(), "dejima-tsdk-ssh-"));
});
after(() => {
  dj?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * A new ed25519 key: its public line and ssh-keygen's SHA256 fingerprint. A few are made until
 * one's fingerprint has a "/" or "+", so its percent-encoding in a path is exercised too.
 */
function makeKey(what) {
  for (let i = 0; ; i++) {
    const file = path.join(dir, `${what}-${i}`);
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `tsdk-${suffix}-${what}`, "-f", file]);
    const fp = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", `${file}.pub`], { encoding: "utf8" }).split(/\s+/)[1];
    if (/[/+]/.test(fp) || i === 15) return { pub: readFileSync(`${file}.pub`, "utf8"), fp, file };
  }
}

/** Resolves with the DejimaError status of a call that must fail. */
async function statusOf(p) {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof DejimaError, String(e));
    return e.status;
  }
  assert.fail("the call succeeded");
}

/** One request over the socket with node:http itself: { status, body } (to see a 200 vs 201). */
function raw(method, p, json, headers = {}) {
  return new Promise((resolve, reject) => {
    const payload = json === undefined ? undefined : Buffer.from(JSON.stringify(json));
    const req = http.request({
      socketPath: SOCKET,
      method,
      path: p,
      agent: false,
      headers: { ...headers, ...(payload ? { "content-type": "application/json", "content-length": payload.length } : {}) },
    });
    req.on("error", reject);
    req.on("response", (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode, body: text ? JSON.parse(text) : undefined });
      });
    });
    req.end(payload);
  });
}

/** Everything the socket brings until `pred(all)` holds (the socket is paused after). */
function readUntil(sock, pred, timeout = 30_000) {
  return new Promise((resolve, reject) => {
    let all = Buffer.alloc(0);
    const cleanup = () => {
      clearTimeout(timer);
      sock.pause();
      sock.off("data", onData);
      sock.off("end", onEnd);
      sock.off("error", onError);
    };
    const onData = (c) => {
      all = Buffer.concat([all, c]);
      if (pred(all)) {
        cleanup();
        resolve(all);
      }
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`the stream ended after ${JSON.stringify(all.toString("latin1"))}`));
    };
    const onError = (e) => {
      cleanup();
      reject(e);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`nothing matching within ${timeout} ms; got ${JSON.stringify(all.toString("latin1"))}`));
    }, timeout);
    sock.on("data", onData);
    sock.on("end", onEnd);
    sock.on("error", onError);
    sock.resume();
  });
}

const hasLine = (b) => b.includes("\r\n");

/** Close a socket and wait for it to be gone. */
function closeSocket(sock) {
  return new Promise((resolve) => {
    if (sock.destroyed) return resolve();
    sock.once("close", () => resolve());
    sock.destroy();
  });
}

test("island SSH keys: add (fingerprint as ssh-keygen's), list, again is 200, bad keys, remove, 404", { skip }, async () => {
  const { pub, fp } = makeKey("island");
  assert.deepEqual(await dj.listIslandSshKeys(name), []);
  const k = await dj.addIslandSshKey(name, pub); // a .pub file's text, newline and all
  try {
    assert.equal(k.fingerprint, fp);
    assert.equal(k.type, "ssh-ed25519");
    assert.equal(k.comment, `tsdk-${suffix}-island`);
    assert.equal(k.public_key, pub.split(" ").slice(0, 2).join(" "));
    assert.ok(k.added_at);
    assert.deepEqual(await dj.listIslandSshKeys(name), [k]);
    // Again: the same record, and the answer is a 200 (a new key is 201).
    assert.deepEqual(await dj.addIslandSshKey(name, pub), k);
    const again = await raw("POST", `/v1/islands/${name}/ssh/keys`, { public_key: pub.trim() });
    assert.deepEqual([again.status, again.body], [200, k]);
    for (const bad of ["not a key", "ssh-ed25519 !!!notbase64", "ssh-ed25519 AAAA", "ssh-dss AAAAB3NzaC1kc3M="]) {
      const status = await statusOf(dj.addIslandSshKey(name, bad));
      assert.ok(status === 400 || status === 422, `${bad}: ${status}`);
    }
    assert.equal(await statusOf(dj.listIslandSshKeys(`tsdk-${suffix}-missing`)), 404);
    assert.equal(await statusOf(dj.addIslandSshKey(`tsdk-${suffix}-missing`, pub)), 404);
  } finally {
    await dj.removeIslandSshKey(name, fp);
  }
  assert.deepEqual(await dj.listIslandSshKeys(name), []);
  assert.equal(await statusOf(dj.removeIslandSshKey(name, fp)), 404);
  // Without the SHA256: prefix it is the same key.
  assert.equal((await raw("POST", `/v1/islands/${name}/ssh/keys`, { public_key: pub.trim() })).status, 201);
  await dj.removeIslandSshKey(name, fp.slice("SHA256:".length));
  assert.deepEqual(await dj.listIslandSshKeys(name), []);
});

test("sshStream over the Unix socket: the island's sshd banner comes first", { skip }, async () => {
  const { pub, fp } = makeKey("stream");
  await dj.addIslandSshKey(name, pub);
  try {
    const sock = await dj.sshStream(name);
    try {
      const got = await readUntil(sock, hasLine);
      assert.ok(got.toString("latin1").startsWith("SSH-2.0-OpenSSH"), got.toString("latin1"));
    } finally {
      await closeSocket(sock);
    }
  } finally {
    await dj.removeIslandSshKey(name, fp);
  }
});

test("sshStream over TCP with an operator token: both ways (banners, then sshd's KEXINIT)", { skip }, async () => {
  const owner = tcpClient();
  const tok = await owner.createToken("operator", { label: `tsdk-${suffix}-ssh-op` });
  const op = tcpClient(tok.secret);
  try {
    const sock = await op.sshStream(name, { timeout: 30_000 });
    try {
      sock.write("SSH-2.0-dejima_tsdk_test\r\n");
      // The banner line, then a binary packet: uint32 length, padding byte, message 20.
      const got = await readUntil(sock, (b) => {
        const i = b.indexOf("\r\n");
        return i >= 0 && b.length >= i + 2 + 6;
      });
      const text = got.toString("latin1");
      assert.ok(text.startsWith("SSH-2.0-OpenSSH"), text);
      assert.equal(got[got.indexOf("\r\n") + 2 + 5], 20, `not a KEXINIT: ${JSON.stringify(text.slice(0, 80))}`);
    } finally {
      await closeSocket(sock);
    }
  } finally {
    await owner.revokeToken(tok.id);
    op.close();
    owner.close();
  }
});

// A ProxyCommand made of the SDK: stdin to the stream, the stream to stdout (the island from
// argv, the daemon and token from DEJIMA_HOST / DEJIMA_TOKEN).
const PIPE = `
import { Client } from ${JSON.stringify(path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../dist/index.js"))};
const s = await new Client().sshStream(process.argv[2]);
process.stdin.pipe(s);
s.pipe(process.stdout);
`;

test("OpenSSH's client logs in through sshStream (TCP, operator token) with an island key; refused without", { skip }, async () => {
  const { pub, fp, file } = makeKey("login");
  const pipe = path.join(dir, "pipe.mjs");
  writeFileSync(pipe, PIPE);
  const owner = tcpClient();
  const tok = await owner.createToken("operator", { label: `tsdk-${suffix}-ssh-login` });
  const env = { ...process.env, DEJIMA_HOST: TCP, DEJIMA_TOKEN: tok.secret };
  const ssh = (...cmd) =>
    new Promise((resolve) => {
      const argv = ["-F", "/dev/null", "-o", `ProxyCommand=${process.execPath} ${pipe} %h`, "-o", "BatchMode=yes"];
      argv.push("-o", "StrictHostKeyChecking=no", "-o", `UserKnownHostsFile=${path.join(dir, "known_hosts")}`);
      argv.push("-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=30", "-i", file, `agent@${name}`, ...cmd);
      execFile("ssh", argv, { env, timeout: 90_000, encoding: "utf8" }, (err, stdout, stderr) =>
        resolve({ code: err ? (err.code ?? -1) : 0, stdout, stderr }),
      );
    });
  try {
    const refused = await ssh("true");
    assert.equal(refused.code, 255, JSON.stringify(refused));
    assert.match(refused.stderr, /Permission denied/);
    await dj.addIslandSshKey(name, pub);
    try {
      const r = await ssh("echo", "SSH-$((6*7))", "&&", "id", "-un");
      assert.equal(r.code, 0, JSON.stringify(r));
      assert.equal(r.stdout, "SSH-42\nagent\n");
    } finally {
      await dj.removeIslandSshKey(name, fp);
    }
  } finally {
    await owner.revokeToken(tok.id);
    owner.close();
  }
});

test("sshStream refusals: no island 404, a viewer 403, a plain GET 400, no daemon", { skip }, async () => {
  await assert.rejects(dj.sshStream(`tsdk-${suffix}-missing`), (e) => e instanceof DejimaError && e.status === 404);
  const owner = tcpClient();
  const tok = await owner.createToken("viewer", { label: `tsdk-${suffix}-ssh-viewer` });
  const viewer = tcpClient(tok.secret);
  try {
    await assert.rejects(
      viewer.sshStream(name),
      (e) => e instanceof DejimaError && e.status === 403 && e.message.length > 0 && e.path === `/v1/islands/${name}/ssh`,
    );
    assert.deepEqual(await viewer.listIslandSshKeys(name), []); // a viewer may list them
  } finally {
    await owner.revokeToken(tok.id);
    viewer.close();
    owner.close();
  }
  const plain = await raw("GET", `/v1/islands/${name}/ssh`);
  assert.equal(plain.status, 400);
  assert.match(plain.body.error, /Upgrade/);
  const nowhere = new Client({ socket: path.join(dir, "no.sock"), token: "" });
  await assert.rejects(nowhere.sshStream(name), (e) => e.code === "ENOENT" || e.code === "ECONNREFUSED");
});

test("account keys (owner): add, list, again is 200, remove by fingerprint with and without SHA256:", { skip }, async () => {
  const { pub, fp } = makeKey("account");
  const before = await dj.listAccountKeys();
  const k = await dj.addAccountKey(pub);
  try {
    assert.deepEqual([k.fingerprint, k.type, k.comment], [fp, "ssh-ed25519", `tsdk-${suffix}-account`]);
    assert.deepEqual((await dj.listAccountKeys()).filter((x) => x.fingerprint === fp), [k]);
    assert.deepEqual(await dj.addAccountKey(pub), k);
    const again = await raw("POST", "/v1/ssh/account-keys", { public_key: pub.trim() });
    assert.deepEqual([again.status, again.body], [200, k]);
    const status = await statusOf(dj.addAccountKey("ssh-ed25519"));
    assert.ok(status === 400 || status === 422, String(status));
  } finally {
    await dj.removeAccountKey(fp);
  }
  assert.deepEqual(await dj.listAccountKeys(), before);
  assert.equal(await statusOf(dj.removeAccountKey(fp)), 404);
  await dj.addAccountKey(pub);
  await dj.removeAccountKey(fp.slice("SHA256:".length));
  assert.ok(!(await dj.listAccountKeys()).some((x) => x.fingerprint === fp));
});
