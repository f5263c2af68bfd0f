// Transports and tokens: the Unix socket and TCP, DEJIMA_HOST / DEJIMA_TOKEN from the
// environment, tokens made over TCP (operator works, viewer is 403 on a mutating call,
// island-scoped tokens, revoked tokens are 401), and attach over TCP with a token.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Client, DejimaError } from "../dist/index.js";
import { SKIP_TCP, SOCKET, TCP, socketClient, tcpClient, makeIsland } from "./helpers.mjs";

const skip = SKIP_TCP;
let owner; // untokened loopback TCP: trusted as the owner (no --require-token)
let name;
const tokens = [];

before(async () => {
  if (skip) return;
  owner = tcpClient();
  name = (await makeIsland(socketClient(), "auth")).name;
});
after(async () => {
  if (skip) return;
  for (const id of tokens) await owner.revokeToken(id).catch(() => {});
  owner.close();
});

test("the same daemon over the Unix socket and over TCP", { skip }, async () => {
  const unix = socketClient();
  assert.deepEqual(unix.endpoint, { socketPath: SOCKET });
  const [a, b] = await Promise.all([unix.healthz(), owner.healthz()]);
  assert.equal(a.status, "ok");
  assert.equal(b.status, "ok");
  assert.equal(await unix.version(), await owner.version());
  assert.ok((await owner.listIslands()).some((i) => i.name === name));
  unix.close();
});

test("the environment: DEJIMA_HOST (host:port and unix:), DEJIMA_TOKEN, DEJIMA_HOME", { skip }, async () => {
  const [host, port] = TCP.split(":");
  const viaHost = new Client({ env: { DEJIMA_HOST: TCP } });
  assert.deepEqual(viaHost.endpoint, { hostname: host, port: Number(port) });
  assert.equal((await viaHost.healthz()).status, "ok");
  const viaUnix = new Client({ env: { DEJIMA_HOST: `unix:${SOCKET}` } });
  assert.deepEqual(viaUnix.endpoint, { socketPath: SOCKET });
  assert.equal((await viaUnix.healthz()).status, "ok");
  const viaHome = new Client({ env: { DEJIMA_HOME: SOCKET.replace(/\/dejimad\.sock$/, "") } });
  assert.deepEqual(viaHome.endpoint, { socketPath: SOCKET });
  assert.equal((await viaHome.overview()).docker_reachable, true);
  const bad = new Client({ env: { DEJIMA_HOST: TCP, DEJIMA_TOKEN: "djo_not_a_real_token" } });
  await assert.rejects(bad.listIslands(), (e) => e instanceof DejimaError && e.status === 401);
  for (const c of [viaHost, viaUnix, viaHome, bad]) c.close();
});

test("tokens: create over TCP, operator mutates, viewer is 403, list, revoke → 401", { skip }, async () => {
  const op = await owner.createToken("operator", { label: "sdk-operator" });
  tokens.push(op.id);
  assert.match(op.secret, /^djo_[0-9a-f]{64}$/);
  assert.equal(op.role, "operator");
  const viewer = await owner.createToken("viewer", { label: "sdk-viewer" });
  tokens.push(viewer.id);

  const asOp = tcpClient(op.secret);
  assert.equal((await asOp.setTitle(name, "set by an operator token")).title, "set by an operator token");
  assert.equal((await asOp.exec(name, ["echo", "op"])).stdout, "op\n");
  await assert.rejects(asOp.listTokens(), (e) => e instanceof DejimaError && e.status === 403);

  const asViewer = tcpClient(viewer.secret);
  assert.ok((await asViewer.listIslands()).some((i) => i.name === name));
  await assert.rejects(asViewer.setTitle(name, "nope"), (e) => e instanceof DejimaError && e.status === 403);
  await assert.rejects(asViewer.exec(name, ["true"]), (e) => e instanceof DejimaError && e.status === 403);
  // A viewer may watch: its session is an observer's (read-only in presence).
  const watch = await asViewer.attach(name, { label: "sdk-viewer-watch" });
  try {
    assert.ok(watch.attached.some((p) => p.label === "sdk-viewer-watch" && p.read_only === true), JSON.stringify(watch.attached));
  } finally {
    await watch.close();
  }
  await assert.rejects(asViewer.metrics(), (e) => e instanceof DejimaError && e.status === 403); // operator
  assert.equal((await asViewer.readyz()).ready, true); // any role

  const list = await owner.listTokens();
  const mine = list.find((t) => t.id === op.id);
  assert.equal(mine.label, "sdk-operator");
  assert.ok(!("secret" in mine), "the list never shows secrets");

  await owner.revokeToken(viewer.id);
  await assert.rejects(asViewer.listIslands(), (e) => e instanceof DejimaError && e.status === 401);
  assert.ok(!(await owner.listTokens()).some((t) => t.id === viewer.id));
  asOp.close();
  asViewer.close();
});

test("an island-scoped token sees only its islands", { skip }, async () => {
  const other = (await makeIsland(socketClient(), "auth-other")).name;
  const scoped = await owner.createToken("viewer", { islands: [name] });
  tokens.push(scoped.id);
  const c = tcpClient(scoped.secret);
  const names = (await c.listIslands()).map((i) => i.name);
  assert.deepEqual(names, [name]);
  await assert.rejects(c.getIsland(other), (e) => e instanceof DejimaError && e.status === 404);
  c.close();
});

test("attach over TCP with an operator token (Authorization header on the upgrade)", { skip }, async () => {
  const op = await owner.createToken("operator", { label: "sdk-ws" });
  tokens.push(op.id);
  const c = tcpClient(op.secret);
  const s = await c.attach(name, { label: "sdk-tcp" });
  try {
    s.sendText("echo MARK-$((6*7))\r");
    await s.waitFor("MARK-42", 15_000);
  } finally {
    await s.close();
  }
  await assert.rejects(tcpClient("djo_" + "0".repeat(64)).attach(name), (e) => e instanceof DejimaError && e.status === 401);
  c.close();
});
