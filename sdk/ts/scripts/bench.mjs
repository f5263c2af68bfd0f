// Throughput and latency of the SDK against a live daemon.
//   DEJIMA_HOME=<home> DEJIMA_TEST_TCP=127.0.0.1:PORT node scripts/bench.mjs
// Creates 3 islands (purged at the end), then measures listIslands() requests/s over the
// Unix socket and over TCP (sequential calls on one keep-alive client), and the attach
// round trip: a keystroke until its echo comes back, and a command until its output does
// (median of N each).
import path from "node:path";
import { Client } from "../dist/index.js";

const home = process.env.DEJIMA_HOME;
const tcp = process.env.DEJIMA_TEST_TCP;
if (!home || !tcp) {
  console.error("set DEJIMA_HOME and DEJIMA_TEST_TCP=127.0.0.1:PORT");
  process.exit(2);
}
const CALLS = Number(process.env.BENCH_CALLS || 500);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 20);
const unix = new Client({ socket: path.join(home, "dejimad.sock"), token: "" });
const net = new Client({ host: tcp, token: "" });
const tag = process.pid.toString(36);
const names = [1, 2, 3].map((i) => `tsdk-bench-${tag}-${i}`);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function rate(label, client) {
  for (let i = 0; i < 20; i++) await client.listIslands(); // warm the pool
  const t0 = performance.now();
  let n = 0;
  for (let i = 0; i < CALLS; i++) n += (await client.listIslands()).length;
  const secs = (performance.now() - t0) / 1000;
  console.log(`listIslands over ${label}: ${CALLS} calls in ${secs.toFixed(2)} s = ${(CALLS / secs).toFixed(0)} req/s (${n / CALLS} islands each)`);
}

try {
  await Promise.all(names.map((name) => unix.createIsland({ name, no_repo: true, agent: "custom", cmd: "bash" })));
  await rate("the Unix socket", unix);
  await rate("TCP", net);

  const s = await unix.attach(names[0], { label: "bench", rows: 24, cols: 80 });
  s.sendText("echo READY-$((1+1))\r");
  await s.waitFor("READY-2", 20_000);
  const echo = [];
  const cmd = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now();
    s.sendText(`K${i}Q`); // keystrokes only: wait for the terminal to echo them
    await s.waitFor(`K${i}Q`, 10_000);
    echo.push(performance.now() - t0);
    s.sendText("\u0015"); // Ctrl-U: clear the line
    const t1 = performance.now();
    s.sendText(`echo R${i}-$((${i}+1))\r`);
    await s.waitFor(`R${i}-${i + 1}`, 10_000);
    cmd.push(performance.now() - t1);
  }
  const ping = [];
  for (let i = 0; i < ROUNDS; i++) ping.push(await s.ping());
  await s.close();
  const f = (xs) => `median ${median(xs).toFixed(1)} ms (min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)})`;
  console.log(`attach keystroke → echo, ${ROUNDS} rounds: ${f(echo)}`);
  console.log(`attach command → output, ${ROUNDS} rounds: ${f(cmd)}`);
  console.log(`session ping → pong, ${ROUNDS} rounds: ${f(ping)}`);
} finally {
  for (const name of names) await unix.purgeIsland(name, { force: true }).catch(() => {});
  unix.close();
  net.close();
}
