// Brokers: Port (host folders), capabilities, MCP servers and the spawn grant. The daemon runs
// on this host with DEJIMA_HOME as its home: the tests make host folders it can read, a
// capability in $DEJIMA_HOME/capabilities/ and an MCP server entry in
// $DEJIMA_HOME/mcp/servers.json (both removed or restored after).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client, DejimaError } from "../dist/index.js";
import { HOME, SKIP_LIVE, TCP, SOCKET, socketClient, tcpClient, makeIsland } from "./helpers.mjs";

// The daemon's home on this host: where its capabilities and MCP servers are.
const skip = SKIP_LIVE ?? (HOME ? undefined : "set DEJIMA_HOME to the daemon's home (on this host)");
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");
const everything = path.join(repo, "tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
const suffix = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 5)}`;

let dj;
let name; // the island these tests share

before(async () => {
  if (skip) return;
  dj = socketClient();
  name = (await makeIsland(dj, "brk")).name;
});
after(() => dj?.close());

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

const sha256 = (data) => createHash("sha256").update(data).digest("hex");

/** A client holding the island's own token (its agents' DEJIMA_TOKEN), pinned to it. */
async function islandClient(island) {
  const token = (await dj.exec(island, ["cat", "/run/secrets/dejima/token"])).stdout.trim();
  assert.ok(token, "the island has no token");
  return TCP ? tcpClient(token) : new Client({ socket: SOCKET, token });
}

test("Port: grant scopes, intake, export, write, revoke; an unknown scope is 403", { skip }, async () => {
  const host = mkdtempSync(path.join(os.tmpdir(), "dejima-tsdk-port-"));
  const real = realpathSync(host);
  const rwName = `tsdk-${suffix}-rw`;
  const roName = path.basename(real);
  const content = `from the host ${suffix}\n`;
  mkdirSync(path.join(host, "sub"));
  writeFileSync(path.join(host, "hello.txt"), content);
  writeFileSync(path.join(host, "sub", "b.txt"), "bee");
  try {
    const rw = await dj.grantPortScope(name, host, { mode: "rw", name: rwName });
    assert.deepEqual([rw.name, rw.mode, rw.host_path], [rwName, "rw", real]);
    assert.ok(rw.granted_at);
    const ro = await dj.grantPortScope(name, host);
    assert.deepEqual([ro.name, ro.mode], [roName, "ro"]);
    assert.equal(await statusOf(dj.grantPortScope(name, host, { name: rwName })), 409);
    const listed = await dj.listPortScopes(name);
    assert.deepEqual(listed.map((s) => s.name).sort(), [rwName, roName].sort());

    // Intake of one file, to the default place.
    const one = await dj.portIntake(name, rwName, { src_rel: "hello.txt" });
    assert.equal(one.dest, `/home/agent/intake/${rwName}/hello.txt`);
    assert.deepEqual([one.files, one.bytes, one.skipped], [1, Buffer.byteLength(content), []]);
    assert.equal(one.sha256, sha256(content));
    assert.ok(one.ledger_seq > 0);
    assert.equal((await dj.exec(name, ["cat", one.dest])).stdout, content);
    // The whole scope (a folder), to a chosen place.
    const all = await dj.portIntake(name, roName, { dest: "/workspace/port-in" });
    assert.deepEqual([all.dest, all.files], ["/workspace/port-in", 2]);
    assert.equal((await dj.exec(name, ["cat", "/workspace/port-in/sub/b.txt"])).stdout, "bee");

    // Export: an island file lands in the island's export area on the host.
    await dj.exec(name, `mkdir -p /workspace/out && printf 'export ${suffix}' > /workspace/out/x.txt`);
    const ex = await dj.portExport(name, "/workspace/out/x.txt");
    assert.deepEqual([ex.src, ex.files], ["/workspace/out/x.txt", 1]);
    assert.ok(ex.host_path.startsWith(path.join(realpathSync(HOME), "port", name, "exports") + "/"), ex.host_path);
    assert.equal(readFileSync(ex.host_path, "utf8"), `export ${suffix}`);

    // Write: an island file into the rw scope (folders made); an ro scope is 403.
    await dj.exec(name, `printf 'written ${suffix}' > /workspace/out/w.txt`);
    const w = await dj.portWrite(name, { scope: rwName, src: "/workspace/out/w.txt", dest_rel: "deep/er/w.txt" });
    assert.deepEqual([w.scope, w.dest_rel, w.host_path], [rwName, "deep/er/w.txt", path.join(real, "deep/er/w.txt")]);
    assert.equal(readFileSync(path.join(host, "deep/er/w.txt"), "utf8"), `written ${suffix}`);
    assert.equal(w.sha256, sha256(`written ${suffix}`));
    assert.equal(await statusOf(dj.portWrite(name, { scope: roName, src: "/workspace/out/w.txt", dest_rel: "no.txt" })), 403);
    assert.ok(!existsSync(path.join(host, "no.txt")));

    // An unknown scope is refused.
    assert.equal(await statusOf(dj.portIntake(name, `tsdk-${suffix}-nope`)), 403);

    await dj.revokePortScope(name, rwName);
    await dj.revokePortScope(name, roName);
    assert.deepEqual(await dj.listPortScopes(name), []);
    assert.equal(await statusOf(dj.revokePortScope(name, rwName)), 404);
    assert.equal(await statusOf(dj.portIntake(name, rwName, { src_rel: "hello.txt" })), 403);
  } finally {
    for (const s of [rwName, roName]) await dj.revokePortScope(name, s).catch(() => {});
    rmSync(host, { recursive: true, force: true });
  }
});

test("capabilities: list, grant, execute (operator and island token), revoke", { skip }, async () => {
  const folder = path.join(HOME, "capabilities");
  const target = "echo-args";
  const file = path.join(folder, target);
  mkdirSync(folder, { recursive: true });
  writeFileSync(file, "#!/bin/sh\ncat\n"); // prints its args (the JSON on its stdin)
  chmodSync(file, 0o700);
  try {
    const listed = (await dj.listCapabilities()).find((c) => c.target === target);
    assert.ok(listed, "listCapabilities shows the target");
    assert.equal(listed.usable, true, listed.problem);
    assert.equal(await statusOf(dj.executeCapability(target, { island: name, args: { x: "1" } })), 403);

    const g = await dj.grantCapability(name, target);
    assert.equal(g.target, target);
    assert.ok(g.granted_at);
    assert.deepEqual((await dj.listCapabilityGrants(name)).map((x) => x.target), [target]);
    const r = await dj.executeCapability(target, { island: name, agent: "a1", args: { x: "1" } });
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.exit_code, 0);
    assert.ok(r.stdout.includes('"x":"1"'), r.stdout);
    assert.deepEqual([r.timed_out, r.truncated], [false, false]);
    assert.ok(r.ledger_seq > 0);
    assert.equal(await statusOf(dj.executeCapability(target, { island: name, args: { x: 1 } })), 400);
    assert.equal(await statusOf(dj.executeCapability(target, { args: { x: "1" } })), 422); // an operator names the island

    // The island's own token: the island is implied, another is refused, grants are not its own act.
    const own = await islandClient(name);
    try {
      assert.deepEqual((await own.listCapabilityGrants(name)).map((x) => x.target), [target]);
      const mine = await own.executeCapability(target, { args: { y: "2" } });
      assert.equal(mine.ok, true);
      assert.ok(mine.stdout.includes('"y":"2"'), mine.stdout);
      assert.equal(await statusOf(own.executeCapability(target, { island: `tsdk-${suffix}-other` })), 403);
      assert.equal(await statusOf(own.grantCapability(name, "other-target")), 403);
    } finally {
      own.close();
    }

    await dj.revokeCapability(name, target);
    assert.deepEqual(await dj.listCapabilityGrants(name), []);
    assert.equal(await statusOf(dj.executeCapability(target, { island: name, args: { x: "1" } })), 403);
    assert.equal(await statusOf(dj.revokeCapability(name, target)), 404);
  } finally {
    await dj.revokeCapability(name, target).catch(() => {});
    rmSync(file, { force: true });
  }
});

test("MCP: servers, grant, call (echo), a method that is not brokered (400), revoke", { skip }, async () => {
  assert.ok(existsSync(everything), `${everything} is missing: scripts/setup runs npm ci in tests/mcp`);
  const folder = path.join(HOME, "mcp");
  const file = path.join(folder, "servers.json");
  const tmp = `${file}.tsdk-${suffix}.tmp`;
  mkdirSync(folder, { recursive: true });
  const before = existsSync(file) ? readFileSync(file, "utf8") : null;
  const doc = before ? JSON.parse(before) : { servers: {} };
  doc.servers.everything = { command: process.execPath, args: [everything, "stdio"] };
  writeFileSync(tmp, JSON.stringify(doc));
  renameSync(tmp, file);
  const server = "everything";
  try {
    const s = (await dj.listMcpServers()).find((x) => x.name === server);
    assert.ok(s, "listMcpServers shows the server");
    assert.deepEqual([s.command, s.args, s.env_keys], [process.execPath, [everything, "stdio"], []]);
    assert.equal(typeof s.keep_alive_secs, "number");
    assert.equal(await statusOf(dj.mcpCall(name, server, "tools/list")), 403);
    assert.equal(await statusOf(dj.grantMcp(name, `tsdk-${suffix}-unregistered`)), 422);

    const g = await dj.grantMcp(name, server);
    assert.equal(g.server, server);
    assert.ok(g.granted_at);
    assert.deepEqual((await dj.listMcpGrants(name)).map((x) => x.server), [server]);
    const r = await dj.mcpCall(name, server, "tools/call", { name: "echo", arguments: { message: "hi" } });
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.is_error, false);
    assert.equal(r.result.content[0].text, "Echo: hi");
    const tools = await dj.mcpCall(name, server, "tools/list");
    assert.ok(tools.result.tools.some((t) => t.name === "echo"));
    assert.equal(await statusOf(dj.mcpCall(name, server, "sampling/createMessage", {})), 400);

    await dj.revokeMcp(name, server);
    assert.deepEqual(await dj.listMcpGrants(name), []);
    assert.equal(await statusOf(dj.mcpCall(name, server, "tools/list")), 403);
    assert.equal(await statusOf(dj.revokeMcp(name, server)), 404);
  } finally {
    await dj.revokeMcp(name, server).catch(() => {});
    if (before === null) rmSync(file, { force: true });
    else {
      writeFileSync(tmp, before);
      renameSync(tmp, file);
    }
  }
});

test("spawn: grant, get, re-grant with ceilings, revoke (then not granted)", { skip }, async () => {
  assert.equal((await dj.spawnInfo(name)).granted, false);
  try {
    const g = await dj.grantSpawn(name, 1);
    assert.equal(g.max_children, 1);
    assert.deepEqual(g.children, []);
    assert.ok(g.granted_at);
    assert.equal((await dj.spawnInfo(name)).max_children, 1);
    const g2 = await dj.grantSpawn(name, 2, { cpus: "1.5", memory: "1G" });
    assert.deepEqual([g2.max_children, g2.cpus, g2.memory], [2, "1.5", "1G"]);
    assert.equal(await statusOf(dj.grantSpawn(name, 65)), 400);
    await dj.revokeSpawn(name);
    const after = await dj.spawnInfo(name);
    assert.deepEqual([after.granted, after.max_children, after.granted_at], [false, 0, null]);
    assert.equal((await dj.revokeSpawn(name)).granted, false, "again: still none");
  } finally {
    await dj.revokeSpawn(name).catch(() => {});
  }
});
