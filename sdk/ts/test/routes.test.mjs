// The SDK covers openapi.yaml: every operation has a ROUTES entry naming a real Client
// method, ROUTES names nothing the spec lacks, and the committed generated types equal a
// fresh generation. No daemon needed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { parse } from "yaml";
import { Client, ROUTES } from "../dist/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.resolve(here, "..");
const specPath = process.env.DEJIMA_OPENAPI || path.resolve(pkg, "../../openapi.yaml");
const METHODS = ["get", "put", "post", "patch", "delete", "head", "options", "trace"];
const noSpec = existsSync(specPath) ? undefined : `no openapi.yaml at ${specPath}`;

function specOperations() {
  const spec = parse(readFileSync(specPath, "utf8"));
  const ops = [];
  for (const [p, item] of Object.entries(spec.paths ?? {})) {
    for (const m of METHODS) {
      if (item && item[m]) ops.push(`${m.toUpperCase()} ${p}`);
    }
  }
  return ops;
}

test("every openapi.yaml operation has a ROUTES entry", { skip: noSpec }, () => {
  const ops = specOperations();
  assert.ok(ops.length > 50, `only ${ops.length} operations parsed`);
  const missing = ops.filter((op) => !(op in ROUTES));
  assert.deepEqual(missing, [], `operations without an SDK method: ${missing.join(", ")}`);
});

test("ROUTES names only operations the spec has", { skip: noSpec }, () => {
  const ops = new Set(specOperations());
  const stale = Object.keys(ROUTES).filter((r) => !ops.has(r));
  assert.deepEqual(stale, [], `ROUTES entries the spec no longer has: ${stale.join(", ")}`);
});

test("each ROUTES entry names a Client method", () => {
  for (const [route, method] of Object.entries(ROUTES)) {
    assert.equal(typeof Client.prototype[method], "function", `${route} → ${method} is not a method`);
  }
});

test("the committed src/openapi.ts equals a fresh generation", { skip: noSpec ?? (existsSync(path.join(pkg, "src/openapi.ts")) ? undefined : "no src/ (installed package)") }, () => {
  const bin = path.join(pkg, "node_modules/openapi-typescript/bin/cli.js");
  const out = execFileSync(process.execPath, [bin, specPath, "--default-non-nullable", "false"], {
    cwd: pkg,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 64 << 20,
  });
  const committed = readFileSync(path.join(pkg, "src/openapi.ts"), "utf8");
  assert.ok(committed === out, "src/openapi.ts is stale: run `npm run gen` in sdk/ts and commit the result");
});

test("every Client method is called somewhere in the live tests", () => {
  const sources = readdirSync(here)
    .filter((f) => f.endsWith(".mjs"))
    .map((f) => readFileSync(path.join(here, f), "utf8"))
    .join("\n");
  const methods = Object.getOwnPropertyNames(Client.prototype).filter((m) => m !== "constructor" && typeof Client.prototype[m] === "function");
  const uncalled = methods.filter((m) => !new RegExp(`\\.${m}\\(`).test(sources));
  assert.deepEqual(uncalled, [], `methods no test calls: ${uncalled.join(", ")}`);
});

test("the reference's TypeScript example type-checks (strict) against the built types", { skip: existsSync(path.join(pkg, "examples/tsconfig.json")) ? undefined : "no examples/" }, () => {
  const tsc = path.join(pkg, "node_modules/typescript/bin/tsc");
  try {
    execFileSync(process.execPath, [tsc, "-p", "examples"], { cwd: pkg, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    assert.fail(`tsc -p examples failed:\n${e.stdout}${e.stderr}`);
  }
});
