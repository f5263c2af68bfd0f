// Islands: the reference's example, exec, files, logs, title, resources, workspace state,
// reclone, the lifecycle, clone and purge, and errors (404, 400, 409).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { DejimaError } from "../dist/index.js";
import { SKIP_LIVE, socketClient, islandName, track, makeIsland, until, firstMatch } from "./helpers.mjs";

const skip = SKIP_LIVE;
let dj;
let name; // the island most tests share

before(async () => {
  if (skip) return;
  dj = socketClient();
  name = (await makeIsland(dj, "isl")).name;
});
after(() => dj?.close());

test("the reference's example: createIsland(repo, {agent}), addAgent, exec, attach", { skip }, async () => {
  // A local repository stands in for git@github.com:you/foo.git (a path on the daemon host).
  const repo = mkdtempSync(path.join(os.tmpdir(), "dejima-sdk-ref-"));
  try {
    const git = (...a) => execFileSync("git", ["-c", "user.email=sdk@test", "-c", "user.name=sdk", ...a], { cwd: repo });
    git("init", "-q");
    writeFileSync(path.join(repo, "README"), "hello\n");
    git("add", ".");
    git("commit", "-qm", "init");

    const ref = track(islandName("ref"));
    const isl = await dj.createIsland(repo, { agent: "claude-code", name: ref });
    assert.equal(isl.name, ref);
    assert.equal(isl.agent, "claude-code");
    const a2 = await dj.addAgent(isl.name, { type: "codex" });
    assert.equal(a2.type, "codex");
    assert.equal(a2.branch, `agent/${a2.id}`);
    await until(async () => (await dj.workspaceReady(isl.name)).ready, { what: "workspace ready" });
    await dj.writeFile(isl.name, "/workspace/new.txt", "new\n");
    const st = await dj.exec(isl.name, ["git", "status", "--short"]);
    assert.equal(st.exit_code, 0, st.stderr);
    assert.match(st.stdout, /\?\? new\.txt/);

    const s = await dj.attach(isl.name); // the primary agent (claude) draws its screen
    const chunks = [];
    s.onData((bytes) => chunks.push(bytes));
    s.sendText("ls -la\n");
    await until(() => chunks.length > 0, { what: "the agent's screen" });
    assert.ok(chunks[0] instanceof Uint8Array);
    await s.close();
    await dj.purgeIsland(isl.name, { force: true });
  } finally {
    rmSync(repo, { recursive: true, force: true });
  }
});

test("createIsland sends only the fields given; listIslands and getIsland see it", { skip }, async () => {
  const list = await dj.listIslands();
  const mine = list.find((i) => i.name === name);
  assert.ok(mine, "listIslands includes the island");
  assert.equal(mine.agent, "custom");
  assert.equal(mine.state, "running");
  const detail = await dj.getIsland(name);
  assert.equal(detail.name, name);
  assert.equal(detail.agents?.[0]?.id, "a1");
  assert.ok(detail.health, "the detail view carries health");
});

test("exec: argv, sh -c string, stdin, env, workdir, user, timeout", { skip }, async () => {
  const r = await dj.exec(name, ["sh", "-c", "echo $((6*7)); echo oops >&2; exit 3"]);
  assert.deepEqual([r.stdout, r.stderr, r.exit_code], ["42\n", "oops\n", 3]);
  const s = await dj.exec(name, "cat; echo \"$GREETING from $(pwd) as $(id -un)\"", {
    stdin: "in:",
    env: { GREETING: "hi" },
    workdir: "/tmp",
    user: "root",
  });
  assert.equal(s.stdout, "in:hi from /tmp as root\n");
  const t = await dj.exec(name, ["sleep", "30"], { timeout_secs: 1 });
  assert.equal(t.timed_out, true);
  assert.equal(t.exit_code, 124);
});

test("writeFile / readFile round trip (binary, nested, odd names) and the 403 outside the roots", { skip }, async () => {
  const bytes = Uint8Array.from({ length: 256 * 4 }, (_, i) => i % 256);
  await dj.writeFile(name, "/workspace/deep/er/bin #1.dat", bytes);
  const back = await dj.readFile(name, "/workspace/deep/er/bin #1.dat");
  assert.deepEqual(new Uint8Array(back), bytes);
  await dj.writeFile(name, "/home/agent/note.txt", "héllo ✓\n");
  assert.equal((await dj.readFile(name, "/home/agent/note.txt")).toString("utf8"), "héllo ✓\n");
  const seen = await dj.exec(name, ["cat", "/home/agent/note.txt"]);
  assert.equal(seen.stdout, "héllo ✓\n");
  await assert.rejects(dj.readFile(name, "/etc/passwd"), (e) => e instanceof DejimaError && e.status === 403);
  await assert.rejects(dj.readFile(name, "/workspace/absent.txt"), (e) => e instanceof DejimaError && e.status === 404);
});

test("logs: text, and a following iterator of lines", { skip }, async () => {
  const text = await dj.logs(name, { tail: "all" });
  assert.match(text, new RegExp(`dejima island ${name} up`));
  const line = await firstMatch(dj.logs(name, { follow: true, tail: 50 }), (l) => l.includes(`island ${name} up`));
  assert.match(line, /up/);
});

test("setTitle, setResources, workspaceReady", { skip }, async () => {
  const t = await dj.setTitle(name, "SDK test island");
  assert.equal(t.title, "SDK test island");
  assert.equal((await dj.getIsland(name)).title, "SDK test island");
  const r = await dj.setResources(name, { memory: "768m" });
  assert.equal(r.resources?.memory, "768m");
  assert.equal(typeof r.restart_required, "boolean");
  const w = await dj.workspaceReady(name);
  assert.equal(w.ready, true);
});

test("reclone: a failed git clone is tried again; a no-repo island has nothing to clone (409)", { skip }, async () => {
  const bad = track(islandName("reclone"));
  // Nothing listens on port 9 inside the island: the background clone fails fast.
  const isl = await dj.createIsland("http://127.0.0.1:9/none.git", { name: bad, agent: "custom", cmd: "bash" });
  assert.equal(isl.repo, "http://127.0.0.1:9/none.git");
  const w = await until(async () => {
    const s = await dj.workspaceReady(bad);
    return s.clone_failed ? s : null;
  }, { what: "the clone to fail" });
  assert.equal(w.ready, false);
  const again = await dj.reclone(bad);
  assert.equal(again.clone_failed, true);
  assert.ok(again.clone_reason, "a reason is given");
  await dj.purgeIsland(bad, { force: true });
  await assert.rejects(dj.reclone(name), (e) => e instanceof DejimaError && e.status === 409 && /nothing to clone/.test(e.message));
});

test("lifecycle: hibernate, wake, reset, upgrade", { skip }, async () => {
  const life = (await makeIsland(dj, "life")).name;
  await dj.writeFile(life, "/workspace/keep.txt", "kept");
  const h = await dj.hibernate(life);
  assert.equal(h.state, "hibernated");
  await assert.rejects(dj.exec(life, ["true"]), (e) => e instanceof DejimaError && e.status === 409);
  const w = await dj.wake(life);
  assert.equal(w.state, "running");
  await dj.writeFile(life, "/home/agent/gone.txt", "x");
  const r = await dj.reset(life);
  assert.equal(r.state, "running");
  const home = await dj.exec(life, ["sh", "-c", "test -e /home/agent/gone.txt && echo there || echo gone; cat /workspace/keep.txt"]);
  assert.equal(home.stdout, "gone\nkept");
  const u = await dj.upgrade(life);
  assert.equal(u.name, life);
  assert.equal((await dj.exec(life, ["cat", "/workspace/keep.txt"])).stdout, "kept");
  await dj.purgeIsland(life, { force: true });
});

test("cloneIsland copies the workspace; purge refuses unpushed work without force", { skip }, async () => {
  await dj.writeFile(name, "/workspace/cloned.txt", "from the source");
  const copy = track(islandName("copy"));
  const c = await dj.cloneIsland(name, copy);
  assert.equal(c.name, copy);
  assert.equal((await dj.readFile(copy, "/workspace/cloned.txt")).toString(), "from the source");
  await assert.rejects(dj.purgeIsland(copy), (e) => e instanceof DejimaError && e.status === 409);
  await dj.purgeIsland(copy, { force: true });
  await assert.rejects(dj.getIsland(copy), (e) => e instanceof DejimaError && e.status === 404);
  assert.ok(!(await dj.listIslands()).some((i) => i.name === copy));
});

test("errors: 404 unknown island, 400 bad name, 400 unknown field, 409 duplicate", { skip }, async () => {
  await assert.rejects(dj.getIsland("no-such-island-here"), (e) => {
    assert.ok(e instanceof DejimaError);
    assert.ok(e instanceof Error);
    assert.equal(e.status, 404);
    assert.match(e.message, /not found/);
    assert.equal(e.method, "GET");
    return true;
  });
  await assert.rejects(dj.createIsland({ name: "Bad Name!", no_repo: true }), (e) => e instanceof DejimaError && e.status === 400);
  await assert.rejects(
    dj.createIsland({ name: islandName("bogus"), no_repo: true, bogus_field: 1 }),
    (e) => e instanceof DejimaError && e.status === 400 && /bogus_field/.test(e.message),
  );
  await assert.rejects(dj.createIsland({ name, no_repo: true }), (e) => e instanceof DejimaError && e.status === 409);
  await assert.rejects(dj.exec(name, []), (e) => e instanceof DejimaError && e.status === 400);
});
