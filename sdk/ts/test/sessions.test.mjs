// Websocket sessions: the primary agent and a chosen agent, a shared screen, presence,
// resize and ping, revoke, clients, and host terminals (when dejimad runs --host-terminals).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { DejimaError, Session } from "../dist/index.js";
import { SKIP_LIVE, socketClient, makeIsland, until } from "./helpers.mjs";

const skip = SKIP_LIVE;
let dj;
let name;

before(async () => {
  if (skip) return;
  dj = socketClient();
  name = (await makeIsland(dj, "sess")).name;
});
after(() => dj?.close());

test("attach to the primary agent: hello, resize, ping, type and wait for the answer", { skip }, async () => {
  const s = await dj.attach(name, { label: "sdk-primary", rows: 30, cols: 100 });
  try {
    assert.ok(s instanceof Session);
    assert.ok(s.attached.some((p) => p.label === "sdk-primary" && p.joined_at), JSON.stringify(s.attached));
    const rtt = await s.ping();
    assert.ok(rtt >= 0 && rtt < 5000);
    s.sendText("echo MARK-$((6*7))\r");
    const upTo = await s.waitFor("MARK-42", 15_000);
    assert.match(upTo, /MARK-42$/);
    // waitFor consumes: the same mark again needs new output.
    s.send(new TextEncoder().encode("echo MARK-$((6*7))\r"));
    await s.waitFor(/MARK-4\d/, 15_000);
    s.resize(40, 120);
    // tmux may draw a run of spaces as a cursor move: keep markers free of spaces.
    // The pane follows the resize asynchronously: ask again until it has.
    await until(async () => {
      s.sendText("stty size | tr ' ' x\r");
      return s.waitFor("40x120", 1000).then(() => true, () => false);
    }, { what: "the pane to take 40x120", interval: 0 });
    const island = await dj.getIsland(name);
    assert.ok(island.attached?.some((p) => p.label === "sdk-primary"));
  } finally {
    await s.close();
  }
});

test("attach to a specific agent", { skip }, async () => {
  const a = await dj.addAgent(name, { type: "custom", label: "side" });
  const s = await dj.attach(name, { agent: a.id, label: "sdk-agent" });
  try {
    s.sendText("echo MARK-$((6*7))-in-$PWD\r");
    await s.waitFor(`MARK-42-in-/workspace/.agents/${a.id}`, 15_000);
    const agent = await dj.getAgent(name, a.id);
    assert.ok(agent.attached?.some((p) => p.label === "sdk-agent"), "presence is per agent");
    const primary = await dj.getAgent(name, "a1");
    assert.ok(!primary.attached?.some((p) => p.label === "sdk-agent"));
  } finally {
    await s.close();
  }
  await assert.rejects(dj.attach(name, { agent: "a99" }), (e) => e instanceof DejimaError && e.status === 404);
  await assert.rejects(dj.attach("no-such-island-here"), (e) => e instanceof DejimaError && e.status === 404);
});

test("two sessions on one screen see each other's output and presence", { skip }, async () => {
  const one = await dj.attach(name, { label: "sdk-one" });
  const two = await dj.attach(name, { label: "sdk-two" });
  try {
    assert.ok(two.attached.some((p) => p.label === "sdk-one"), "the second hello lists the first client");
    one.sendText("echo SHARED-$((6*7))\r");
    await Promise.all([one.waitFor("SHARED-42", 15_000), two.waitFor("SHARED-42", 15_000)]);
    two.sendText("echo OTHER-$((7*6))\r");
    await one.waitFor("OTHER-42", 15_000);
    const chunks = [];
    const off = two.onData((b) => chunks.push(b));
    one.sendText("echo BYTES-$((2*3))\r");
    await two.waitFor("BYTES-6", 15_000);
    off();
    assert.ok(chunks.length > 0 && chunks.every((c) => c instanceof Uint8Array));
  } finally {
    await Promise.all([one.close(), two.close()]);
  }
});

test("clients() records attach and detach; revokeSessions closes every session", { skip }, async () => {
  const s = await dj.attach(name, { label: "sdk-revoked" });
  const recs = await dj.clients();
  const live = recs.find((r) => r.label === "sdk-revoked" && r.island === name);
  assert.ok(live, "the attach is recorded");
  assert.equal(live.detached_at, undefined);
  let closedBy;
  s.onClose((info) => (closedBy = info));
  const { revoked } = await dj.revokeSessions();
  assert.ok(revoked >= 1);
  const info = await s.closed;
  assert.equal(info.code, 1008);
  assert.equal(info.reason, "revoked");
  assert.deepEqual(closedBy, info);
  await assert.rejects(s.waitFor("never", 1000), /closed/);
  assert.throws(() => s.sendText("x"), /not open/);
  await until(async () => (await dj.clients()).some((r) => r.label === "sdk-revoked" && r.detached_at), { what: "the detach record" });
});

test("host terminals: CRUD and attach (404 when dejimad runs without --host-terminals)", { skip }, async () => {
  let list;
  try {
    list = await dj.listTerminals();
  } catch (e) {
    assert.ok(e instanceof DejimaError);
    assert.equal(e.status, 404);
    assert.match(e.message, /host-terminals/);
    for (const call of [() => dj.createTerminal({ label: "x" }), () => dj.relabelTerminal("t1", "y"), () => dj.closeTerminal("t1"), () => dj.attachTerminal("t1")]) {
      await assert.rejects(call(), (err) => err instanceof DejimaError && err.status === 404);
    }
    return;
  }
  assert.ok(Array.isArray(list));
  const t = await dj.createTerminal({ label: "sdk-term", command: "/bin/sh", cols: 90, rows: 20 });
  try {
    assert.equal(t.label, "sdk-term");
    assert.ok((await dj.listTerminals()).some((x) => x.id === t.id));
    assert.equal((await dj.relabelTerminal(t.id, "sdk-term-2")).label, "sdk-term-2");
    const s = await dj.attachTerminal(t.id, { label: "sdk-host" });
    let exited = false;
    s.onExit(() => (exited = true));
    s.sendText("echo TERM-$((6*7))\r");
    await s.waitFor("TERM-42", 15_000);
    s.sendText("exit\r");
    await s.closed;
    assert.equal(exited, true, "the exit frame came before the close");
  } finally {
    await dj.closeTerminal(t.id).catch(() => {});
  }
  await assert.rejects(dj.closeTerminal(t.id), (e) => e instanceof DejimaError && e.status === 404);
});

test("screen, verified prompt, upload, and an observer with history", { skip }, async () => {
  const mark = Math.random().toString(16).slice(2, 8);
  const d = await dj.prompt(name, `echo TSPROMPT-$((6*7))-${mark}`);
  assert.equal(d.delivered, true);
  assert.equal(d.submitted, true);
  await until(async () => (await dj.screen(name)).includes(`TSPROMPT-42-${mark}`), { what: "the prompt's output" });
  const j = await dj.screen(name, "a1", { format: "json", scrollback: 20 });
  assert.equal(j.rows.length, j.size.rows);
  assert.ok(j.cursor.row < j.size.rows);
  const up = await dj.upload(name, "ts note.txt", `echo TSUPLOAD-${mark}`);
  assert.match(up.path, /^\/home\/agent\/uploads\/ts_note(-\d+)?\.txt$/);
  assert.equal(up.pasted_as, "text");
  await until(async () => (await dj.screen(name)).includes(`echo TSUPLOAD-${mark}`), { what: "the pasted upload" });
  const o = await dj.attach(name, { label: "sdk-observer", observe: true, scrollback: 100 });
  try {
    assert.ok(o.attached.some((p) => p.label === "sdk-observer" && p.read_only === true), JSON.stringify(o.attached));
    await o.waitFor(`TSPROMPT-42-${mark}`, 15_000);
  } finally {
    await o.close();
  }
});

test("the multiplexed stream: events, two terminals, a prompt, detach", { skip }, async () => {
  const other = (await makeIsland(dj, "mux")).name;
  const st = await dj.openStream({ label: "sdk-mux" });
  try {
    const events = [];
    st.onEvent((e) => events.push(e));
    await st.call("subscribe", { islands: [name, other], types: ["client.attached"] });
    for (const i of [name, other]) {
      const r = await st.call("attach", { island: i, rows: 24, cols: 80 });
      assert.equal(r.read_only, false);
    }
    st.sendInput(name, "echo TSMUXA-$((2*3))\r");
    await st.call("prompt", { island: other, text: "echo TSMUXB-$((3*3))" });
    await st.waitFor(name, "TSMUXA-6");
    await st.waitFor(other, "TSMUXB-9");
    assert.ok(!st.output(other).includes("TSMUXA-6"), "output stays with its terminal");
    await until(async () => events.filter((e) => e.type === "client.attached").length >= 2, { what: "client.attached events" });
    await st.call("detach", { island: name });
    await assert.rejects(st.call("input", { island: name, b64: "eA==" }), (e) => e instanceof DejimaError && e.status === 409);
  } finally {
    st.close();
    await dj.purgeIsland(other, { force: true }).catch(() => {});
  }
});

test("recordings: on at create, listed, fetched, stopped, deleted", { skip }, async () => {
  const isl = (await makeIsland(dj, "rec", { record: true })).name;
  const rec = await until(async () => (await dj.listRecordings(isl)).find((r) => r.active), { what: "a recording", timeout: 60_000 });
  await dj.prompt(isl, "echo TSREC-$((6*7))");
  await until(async () => (await dj.getRecording(isl, rec.id)).includes("TSREC-42"), { what: "the output recorded" });
  assert.equal((await dj.setRecord(isl, false)).record, false);
  await until(async () => (await dj.listRecordings(isl)).some((r) => r.id === rec.id && !r.active), { what: "the end" });
  await dj.deleteRecording(isl, rec.id);
  assert.ok(!(await dj.listRecordings(isl)).some((r) => r.id === rec.id));
});
