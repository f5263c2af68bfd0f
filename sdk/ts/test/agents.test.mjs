// Agents (add, get, list, relabel, configure, restart, remove, headless logs, types) and
// events (agent events, the island's feed, the live SSE stream, webhooks).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { DejimaError } from "../dist/index.js";
import { SKIP_LIVE, socketClient, makeIsland, until, firstMatch, standIn } from "./helpers.mjs";

const skip = SKIP_LIVE;
let dj;
let name;

before(async () => {
  if (skip) return;
  dj = socketClient();
  name = (await makeIsland(dj, "agents")).name;
});
after(() => dj?.close());

test("agentTypes lists the types and what each needs", { skip }, async () => {
  const types = await dj.agentTypes();
  const byType = Object.fromEntries(types.map((t) => [t.type, t]));
  for (const t of ["claude-code", "codex", "custom", "headless"]) assert.ok(byType[t], `type ${t}`);
  assert.equal(byType["claude-code"].needs_provider_key, true);
  assert.equal(byType.custom.needs_provider_key, false);
});

test("addAgent, getAgent, listAgents, relabelAgent, configureAgent, restartAgent, removeAgent", { skip }, async () => {
  const a = await dj.addAgent(name, { type: "custom", label: "second" });
  assert.match(a.id, /^a\d+$/);
  assert.equal(a.label, "second");
  assert.equal(a.branch, `agent/${a.id}`);
  assert.equal(a.attachable, true);
  const got = await dj.getAgent(name, a.id);
  assert.equal(got.worktree, `/workspace/.agents/${a.id}`);
  assert.deepEqual((await dj.listAgents(name)).map((x) => x.id), ["a1", a.id]);

  const r = await dj.relabelAgent(name, a.id, "renamed");
  assert.equal(r.label, "renamed");
  assert.equal((await dj.getAgent(name, a.id)).label, "renamed");

  const c = await dj.configureAgent(name, a.id, { model: "sdk-model-1" });
  assert.equal(c.model, "sdk-model-1");
  assert.equal(typeof c.restart_required, "boolean");
  assert.equal((await dj.getAgent(name, a.id)).model, "sdk-model-1");

  const restarted = await dj.restartAgent(name, a.id);
  assert.equal(restarted.id, a.id);
  await assert.rejects(dj.restartAgent(name, a.id, { resume: true }), (e) => e instanceof DejimaError && e.status === 422);

  await dj.removeAgent(name, a.id);
  assert.deepEqual((await dj.listAgents(name)).map((x) => x.id), ["a1"]);
  await assert.rejects(dj.getAgent(name, a.id), (e) => e instanceof DejimaError && e.status === 404);
  await assert.rejects(dj.removeAgent(name, "a1"), (e) => e instanceof DejimaError && e.status === 409);
});

test("a headless agent's log follows as lines", { skip }, async () => {
  const h = await dj.addAgent(name, { type: "headless", cmd: "while true; do echo HEADLESS-$((6*7)); sleep 1; done" });
  assert.equal(h.attachable, false);
  const line = await firstMatch(dj.logs(name, { agent: h.id, follow: true }), (l) => l.includes("HEADLESS-42"), 30_000);
  assert.equal(line.trim(), "HEADLESS-42");
  await assert.rejects(dj.logs(name, { agent: "a1" }), (e) => e instanceof DejimaError && e.status === 409);
  await assert.rejects(dj.attach(name, { agent: h.id }), (e) => e instanceof DejimaError && e.status === 409);
  await dj.removeAgent(name, h.id);
});

test("postAgentEvent shows in agent_state, islandEvents and the event stream (replayed and live)", { skip }, async () => {
  await dj.postAgentEvent({ island: name, agent: "a1", type: "agent.task-complete", payload: { note: "sdk" } });
  const a1 = await dj.getAgent(name, "a1");
  assert.match(a1.agent_state?.latest ?? "", /task-complete/);
  const feed = await dj.islandEvents(name);
  const ev = feed.find((e) => e.type === "agent.task-complete");
  assert.ok(ev, "the island's feed has the event");
  assert.equal(ev.island, name);
  assert.deepEqual(ev.payload, { note: "sdk" });

  const stream = dj.eventStream({ island: name, type: ["agent.task-complete", "agent.error"], replay: 5 });
  const first = await stream.next();
  assert.equal(first.done, false);
  assert.equal(first.value.event, "agent.task-complete");
  assert.equal(first.value.data.island, name);
  assert.equal(first.value.id, first.value.data.id);
  // Live: the stream is open now; an event posted after arrives next.
  await dj.postAgentEvent({ island: name, type: "error", payload: { why: "live" } });
  const live = await firstMatch(stream, (m) => m.event === "agent.error");
  assert.deepEqual(live.data.payload, { why: "live" });
  await assert.rejects(dj.postAgentEvent({ type: "agent.error" }), (e) => e instanceof DejimaError && e.status === 400);
});

test("subscribe a webhook, receive an event, list and unsubscribe", { skip }, async () => {
  const hook = await standIn(() => ({ status: 204 }));
  try {
    const sub = await dj.subscribe(`${hook.url}/hook`, { secret: "hush", events: ["agent.waiting-for-input"], islands: [name] });
    assert.ok(sub.id);
    assert.equal(sub.url, `${hook.url}/hook`);
    assert.ok((await dj.subscriptions()).some((s) => s.id === sub.id && s.has_secret));
    await dj.postAgentEvent({ island: name, type: "agent.waiting-for-input" });
    const got = await hook.waitFor((r) => r.url === "/hook");
    assert.equal(got.headers["x-dejima-event"], "agent.waiting-for-input");
    assert.match(String(got.headers["x-dejima-signature"]), /^sha256=[0-9a-f]{64}$/);
    assert.equal(JSON.parse(got.body).island, name);
    await until(async () => (await dj.subscriptions()).find((s) => s.id === sub.id)?.delivered >= 1, { what: "delivery recorded" });
    await dj.unsubscribe(sub.id);
    assert.ok(!(await dj.subscriptions()).some((s) => s.id === sub.id));
    await assert.rejects(dj.unsubscribe(sub.id), (e) => e instanceof DejimaError && e.status === 404);
  } finally {
    await hook.close();
  }
});
