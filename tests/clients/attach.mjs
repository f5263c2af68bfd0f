// Attach to a dejimad agent session with Node's `ws`, over TCP and over the Unix socket.
//
// Usage: node attach.mjs PORT ISLAND MARKER SOCKET_PATH
//
// For each transport (ws://127.0.0.1:PORT with label=node, then
// ws+unix://SOCKET_PATH:/... with label=node-unix): the 101 carries exactly one
// `Connection: Upgrade` and no Content-Length / Transfer-Encoding; the first message is hello
// listing this client's label; {"type":"ping"} is answered with {"type":"pong"}; after a
// 30x100 resize, typing `echo MARKER-tcp-$((6*7))` (or -unix-) brings back MARKER-tcp-42.
// Prints "ok" and exits 0 on success; exits non-zero with a message on failure or after 20 s.

import WebSocket from 'ws';

const DEADLINE_MS = 20_000;

function fail(msg) {
  process.stderr.write(`attach.mjs: FAIL: ${msg}\n`);
  process.exit(1);
}

const [port, island, marker, sockPath] = process.argv.slice(2);
if (!port || !island || !marker || !sockPath) {
  fail('usage: node attach.mjs PORT ISLAND MARKER SOCKET_PATH');
}

const timer = setTimeout(() => fail(`not done within ${DEADLINE_MS} ms`), DEADLINE_MS);

/** The 101's raw headers as [name, value] pairs. */
function checkHead(res, what) {
  const pairs = [];
  for (let i = 0; i < res.rawHeaders.length; i += 2) {
    pairs.push([res.rawHeaders[i].toLowerCase(), res.rawHeaders[i + 1]]);
  }
  const all = (n) => pairs.filter(([k]) => k === n).map(([, v]) => v);
  if (res.statusCode !== 101) fail(`${what}: status ${res.statusCode}`);
  const conn = all('connection');
  if (conn.length !== 1 || conn[0] !== 'Upgrade') {
    fail(`${what}: want exactly one Connection: Upgrade, got ${JSON.stringify(conn)}`);
  }
  for (const bad of ['content-length', 'transfer-encoding']) {
    if (all(bad).length) fail(`${what}: a 101 must not carry ${bad}: ${JSON.stringify(all(bad))}`);
  }
  return pairs;
}

/** Attach at `url`, expect hello with `label`, a pong, and `${tag}-42` after typing. */
function attach(url, label, tag) {
  return new Promise((resolve, reject) => {
    const want = `${tag}-42`;
    const ws = new WebSocket(url);
    let head = null;
    let output = Buffer.alloc(0);
    let sawHello = false;
    let sawPong = false;
    let done = false;
    const send = (v) => ws.send(JSON.stringify(v));
    ws.on('upgrade', (res) => {
      head = checkHead(res, url);
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => reject(new Error(`${url}: handshake answered ${res.statusCode}: ${body}`)));
    });
    ws.on('error', (e) => {
      if (!done) reject(new Error(`${url}: ${e.message}`));
    });
    ws.on('close', (code, reason) => {
      if (!done) {
        reject(
          new Error(
            `${url}: closed (${code} ${reason}) before ${want}; output tail ` +
              JSON.stringify(output.toString('utf8').slice(-400)),
          ),
        );
      }
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const msg = JSON.parse(data.toString('utf8'));
      if (!sawHello) {
        if (msg.type !== 'hello') return reject(new Error(`${url}: first message ${data}`));
        sawHello = true;
        const labels = (msg.attached || []).map((c) => c.label);
        if (!labels.includes(label)) {
          return reject(new Error(`${url}: hello's attached ${JSON.stringify(msg.attached)} lacks ${label}`));
        }
        send({ type: 'resize', rows: 30, cols: 100 });
        send({ type: 'ping' });
        const keys = Buffer.from(`echo ${tag}-$((6*7))\r`);
        send({ type: 'data', b64: keys.toString('base64') });
      } else if (msg.type === 'data') {
        output = Buffer.concat([output, Buffer.from(msg.b64, 'base64')]);
      } else if (msg.type === 'pong') {
        sawPong = true;
      } else if (msg.type === 'error') {
        return reject(new Error(`${url}: error frame: ${Buffer.from(msg.b64 || '', 'base64')}`));
      }
      if (sawPong && output.includes(want)) {
        done = true;
        ws.close(1000);
        resolve(head);
      }
    });
  });
}

try {
  const tcp = await attach(
    `ws://127.0.0.1:${port}/v1/islands/${island}/agents/a1/session?label=node`,
    'node',
    `${marker}-tcp`,
  );
  console.log(`tcp 101 headers: ${JSON.stringify(tcp)}`);
  const unix = await attach(
    `ws+unix://${sockPath}:/v1/islands/${island}/agents/a1/session?label=node-unix`,
    'node-unix',
    `${marker}-unix`,
  );
  console.log(`unix 101 headers: ${JSON.stringify(unix)}`);
} catch (e) {
  fail(e.message);
}
clearTimeout(timer);
console.log('ok');
