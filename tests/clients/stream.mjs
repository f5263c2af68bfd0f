// Drive /v1/stream (the multiplexed websocket) with Node's `ws` over the Unix socket.
//
// Usage: node stream.mjs SOCKET_PATH ISLAND_A ISLAND_B
//
// Subscribes to client.attached events of both islands, attaches to a1 of each, types into A
// with a binary input frame and into B with a JSON input message, and checks that each
// terminal's output arrives in binary frames headed with its own island and agent (and never
// the other's); sends B a verified prompt and waits for its reply and its output; detaches A
// and sees input to it refused. Prints "ok" and exits 0; exits non-zero with a message on
// failure or after 40 s.

import WebSocket from 'ws';

const DEADLINE_MS = 40_000;
const fail = (msg) => {
  process.stderr.write(`stream.mjs: FAIL: ${msg}\n`);
  process.exit(1);
};
const [sockPath, a, b] = process.argv.slice(2);
if (!sockPath || !a || !b) fail('usage: node stream.mjs SOCKET_PATH ISLAND_A ISLAND_B');
setTimeout(() => fail(`not done within ${DEADLINE_MS} ms`), DEADLINE_MS).unref();

/** [kind][island len][island][agent len][agent][payload] */
function frame(kind, island, agent, payload) {
  const i = Buffer.from(island), g = Buffer.from(agent);
  return Buffer.concat([Buffer.from([kind, i.length]), i, Buffer.from([g.length]), g, payload]);
}
function parse(buf) {
  const il = buf[1];
  const island = buf.subarray(2, 2 + il).toString();
  const al = buf[2 + il];
  const agent = buf.subarray(3 + il, 3 + il + al).toString();
  return { kind: buf[0], island, agent, payload: buf.subarray(3 + il + al) };
}

const ws = new WebSocket(`ws+unix://${sockPath}:/v1/stream?label=node-stream`);
const out = { [a]: '', [b]: '' };
const replies = new Map();
const events = [];
const waiters = [];
const check = () => {
  for (const w of [...waiters]) if (w.pred()) { waiters.splice(waiters.indexOf(w), 1); w.resolve(); }
};
const until = (pred, what) => new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error(`no ${what}; A=${JSON.stringify(out[a].slice(-200))} B=${JSON.stringify(out[b].slice(-200))}`)), 20_000);
  waiters.push({ pred, resolve: () => { clearTimeout(t); resolve(); } });
  check();
});

ws.on('message', (data, isBinary) => {
  if (isBinary) {
    const f = parse(Buffer.from(data));
    if (f.agent !== 'a1' || !(f.island in out)) fail(`a frame for ${f.island}/${f.agent}`);
    out[f.island] += f.payload.toString('utf8');
  } else {
    const m = JSON.parse(data.toString());
    if (m.type === 'reply') replies.set(m.id, m);
    if (m.type === 'event') events.push(m.event);
  }
  check();
});
ws.on('error', (e) => fail(`websocket error: ${e.message}`));
ws.on('close', (code) => { if (!done) fail(`closed ${code}`); });
let done = false;
let next = 0;
async function call(msg) {
  const id = ++next;
  ws.send(JSON.stringify({ ...msg, id }));
  await until(() => replies.has(id), `a reply to ${msg.op}`);
  return replies.get(id);
}

ws.on('open', async () => {
  try {
    const sub = await call({ op: 'subscribe', islands: [a, b], types: ['client.attached'] });
    if (!sub.ok) fail(`subscribe: ${JSON.stringify(sub)}`);
    for (const i of [a, b]) {
      const r = await call({ op: 'attach', island: i, agent: 'a1', rows: 24, cols: 80 });
      if (!r.ok || r.read_only !== false) fail(`attach ${i}: ${JSON.stringify(r)}`);
    }
    await until(() => events.filter((e) => e.type === 'client.attached').length >= 2, 'two client.attached events');
    ws.send(frame(3, a, 'a1', Buffer.from('echo node-a-$((2*3))\r')));
    ws.send(JSON.stringify({ op: 'input', island: b, agent: 'a1', b64: Buffer.from('echo node-b-$((3*3))\r').toString('base64') }));
    await until(() => out[a].includes('node-a-6') && out[b].includes('node-b-9'), 'both outputs');
    if (out[b].includes('node-a-6') || out[a].includes('node-b-9')) fail('output crossed terminals');
    const p = await call({ op: 'prompt', island: b, agent: 'a1', text: 'echo node-prompt-$((4*4))' });
    if (!p.ok || p.delivered !== true) fail(`prompt: ${JSON.stringify(p)}`);
    await until(() => out[b].includes('node-prompt-16'), 'the prompt output');
    const d = await call({ op: 'detach', island: a, agent: 'a1' });
    if (!d.ok) fail(`detach: ${JSON.stringify(d)}`);
    const refused = await call({ op: 'input', island: a, agent: 'a1', b64: 'eA==' });
    if (refused.ok || refused.status !== 409) fail(`input after detach: ${JSON.stringify(refused)}`);
    const bad = await call({ op: 'attach', island: 'no-such-island', agent: 'a1' });
    if (bad.ok || bad.status !== 404) fail(`attach to nothing: ${JSON.stringify(bad)}`);
    done = true;
    ws.close(1000);
    console.log('ok');
    process.exit(0);
  } catch (e) {
    fail(e.message);
  }
});
