// System and owner routes: health, overview, the image build stream, audit and activity,
// the panic switch, and credentials (Claude, GitHub identities with a loopback stand-in for
// the GitHub API, providers).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { DejimaError } from "../dist/index.js";
import { SKIP_LIVE, socketClient, makeIsland, standIn } from "./helpers.mjs";

const skip = SKIP_LIVE;
let dj;
const suffix = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 5)}`;

before(() => {
  if (!skip) dj = socketClient();
});
after(() => dj?.close());

test("healthz, readyz, metrics, version, overview", { skip }, async () => {
  const h = await dj.healthz();
  assert.equal(h.status, "ok");
  const r = await dj.readyz();
  assert.equal(r.ready, true);
  assert.ok(r.image);
  const m = await dj.metrics();
  assert.match(m, /^# TYPE dejima_http_requests_total counter$/m);
  assert.ok(m.includes('dejima_http_requests_total{route="/v1/readyz",method="GET",status="200"}'), m.slice(0, 400));
  const doc = await dj.doctor();
  assert.equal(doc.ok, true, JSON.stringify(doc));
  assert.ok(doc.checks.some((c) => c.name === "engine" && c.status === "ok"));
  const fixed = await dj.doctorFix();
  assert.deepEqual(fixed.fixed, [], "a healthy host needs nothing fixed");
  // This test daemon has no update source: a clear 409.
  await assert.rejects(dj.update(), (e) => e.status === 409 && /update source/.test(e.message));
  assert.match(await dj.version(), /^\d+\.\d+\.\d+/);
  const o = await dj.overview();
  assert.equal(typeof o.total_islands, "number");
  assert.equal(o.docker_reachable, true);
  assert.deepEqual(o.runtime, { kind: "docker", unsupported: [] });
  assert.ok(o.daemon_started_at);
});

test("imageBuild streams the build's lines and ends with its verdict", { skip }, async () => {
  // A base that is not on the engine (and cannot be pulled offline) fails in well under a
  // second: this drives the real stream without rebuilding the island image.
  const lines = [];
  try {
    for await (const line of dj.imageBuild({ tag: `dejima-sdk-test/img:${suffix}`, base: "dejima-sdk-test/absent:none", slim: true })) {
      lines.push(line);
    }
  } catch (e) {
    // Another client's build holds the one build slot.
    assert.ok(e instanceof DejimaError && e.status === 409, String(e));
    return;
  }
  assert.match(lines[0], new RegExp(`^building dejima-sdk-test/img:${suffix} on dejima-sdk-test/absent:none`));
  assert.match(lines.at(-1), /^(ok|error): /);
  await assert.rejects(
    (async () => {
      for await (const _ of dj.imageBuild({ tag: "-bad tag" })) void _;
    })(),
    (e) => e instanceof DejimaError && e.status === 400,
  );
});

test("audit (json, jsonl, csv) and activity", { skip }, async () => {
  const a = await dj.audit({ limit: 5 });
  assert.ok(Array.isArray(a.entries) && a.entries.length > 0);
  assert.equal(a.verify.ok, true);
  const e = a.entries.at(-1);
  assert.equal(typeof e.seq, "number");
  assert.ok(e.chain && e.prev);
  const jsonl = await dj.audit({ format: "jsonl", limit: 2 });
  const rows = jsonl.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(rows.length, 2);
  const csv = await dj.audit({ format: "csv", limit: 1 });
  assert.match(csv.split("\n")[0], /seq/);
  const act = await dj.activity({ limit: 3 });
  assert.ok(act.length > 0 && act.length <= 3);
  assert.equal(typeof act[0].text, "string");
  await assert.rejects(dj.activity({ kind: "nonsense" }), (err) => err instanceof DejimaError && err.status === 400);
});

test("panic: engage stops islands and refuses wakes, clear brings them back", { skip }, async () => {
  const before = await dj.panicStatus();
  if (before.panicked) return; // someone else's switch: leave it alone
  const name = (await makeIsland(dj, "panic")).name;
  const on = await dj.engagePanic("sdk test");
  try {
    assert.equal(on.panicked, true);
    assert.equal(on.reason, "sdk test");
    assert.equal((await dj.panicStatus()).panicked, true);
    await assert.rejects(dj.wake(name), (e) => e instanceof DejimaError && e.status === 409 && /panic/.test(e.message));
    assert.notEqual((await dj.getIsland(name)).container, "running");
  } finally {
    const off = await dj.clearPanic();
    assert.equal(off.panicked, false);
  }
  assert.equal((await dj.panicStatus()).panicked, false);
  assert.equal((await dj.getIsland(name)).state, "running");
  assert.equal((await dj.exec(name, ["echo", "back"])).stdout, "back\n");
  await dj.purgeIsland(name, { force: true });
});

test("Claude credentials: store, read, forget (only on a daemon that holds none)", { skip }, async () => {
  const st = await dj.claudeCredentials();
  if (st.present) return; // never touch a real login
  const put = await dj.setClaudeCredentials({ claudeAiOauth: { accessToken: "sk-ant-oat-sdk-test", refreshToken: "r", expiresAt: 1 } });
  assert.equal(put.present, true);
  assert.equal(put.source, "api");
  assert.equal((await dj.claudeCredentials()).present, true);
  await dj.deleteClaudeCredentials();
  assert.equal((await dj.claudeCredentials()).present, false);
  await assert.rejects(dj.setClaudeCredentials(42), (e) => e instanceof DejimaError && e.status === 400);
});

test("GitHub identities and their repositories (a loopback stand-in API)", { skip }, async () => {
  const gh = await standIn((req) => {
    if (req.method === "GET" && req.url.startsWith("/user/repos")) {
      return {
        json: [{ name: "foo", full_name: "octo/foo", private: true, clone_url: "https://example.invalid/octo/foo.git" }],
        headers: { link: '<http://x/user/repos?page=2&per_page=1>; rel="next"' },
      };
    }
    if (req.method === "POST" && req.url === "/user/repos") {
      const b = JSON.parse(req.body);
      return { status: 201, json: { name: b.name, full_name: `octo/${b.name}`, private: b.private, description: b.description ?? null } };
    }
    return { status: 404, json: { message: "Not Found" } };
  });
  const id = `sdk-${suffix}`;
  try {
    const made = await dj.setGithubIdentity(id, { login: "octo", token: "ghp_sdktest0123456789", api_url: gh.url, id: 7 });
    assert.equal(made.name, id);
    assert.equal(made.login, "octo");
    assert.ok(!JSON.stringify(made).includes("ghp_sdktest0123456789"), "the token is never echoed");
    assert.ok((await dj.githubIdentities()).some((g) => g.name === id));
    const page = await dj.githubRepos(id, { per_page: 1 });
    assert.equal(page.repos[0].full_name, "octo/foo");
    assert.equal(page.next_page, 2);
    const sent = gh.requests.find((r) => r.url.startsWith("/user/repos?"));
    assert.equal(sent.headers.authorization, "Bearer ghp_sdktest0123456789");
    assert.match(sent.url, /per_page=1/);
    const repo = await dj.createGithubRepo(id, { name: "bar", private: false, description: "made by the SDK test" });
    assert.deepEqual([repo.full_name, repo.private], ["octo/bar", false]);
    const removed = await dj.removeGithubIdentity(id);
    assert.equal(removed.removed, id);
    assert.deepEqual(removed.still_bound, []);
    await assert.rejects(dj.githubRepos(id), (e) => e instanceof DejimaError && e.status === 404);
  } finally {
    await dj.removeGithubIdentity(id).catch(() => {});
    await gh.close();
  }
});

test("providers: set, list, get (masked), remove", { skip }, async () => {
  const name = `sdk${suffix}`;
  try {
    const p = await dj.setProvider(name, { api_key: "sk-sdk-test-0123456789", env_var: "SDK_TEST_KEY", base_url: "http://127.0.0.1:9/v1", base_url_env: "SDK_TEST_BASE_URL" });
    assert.equal(p.name, name);
    assert.equal(p.env_var, "SDK_TEST_KEY");
    assert.ok(!JSON.stringify(p).includes("sk-sdk-test-0123456789"), "the key is never echoed");
    assert.ok((await dj.listProviders()).some((x) => x.name === name));
    assert.equal((await dj.getProvider(name)).key_hint, p.key_hint);
    const r = await dj.removeProvider(name);
    assert.equal(r.removed, name);
    await assert.rejects(dj.getProvider(name), (e) => e instanceof DejimaError && e.status === 404);
    await assert.rejects(dj.setProvider(name, { api_key: "has space" , env_var: "SDK_TEST_KEY" }), (e) => e instanceof DejimaError && e.status === 400);
  } finally {
    await dj.removeProvider(name).catch(() => {});
  }
});
