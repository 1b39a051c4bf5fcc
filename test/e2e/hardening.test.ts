// HTTP hardening end to end, over raw sockets against a real gateway and a real remote backend that records what
// reaches it: request smuggling, oversized heads, slow clients, hop-by-hop stripping, X-Forwarded-For, admin isolation.

import test from 'ava';
import net from 'node:net';
import type { RunningGateway } from '../../src/app/gateway.js';
import { gatewayConfig, irisModels, irisRequest, postJson, startTestGateway } from '../helpers/gateway.js';
import { remoteModels, startRecordingBackend, type RecordingBackend } from './hardening-recorder.js';

let backend: RecordingBackend;
let gw: RunningGateway;
let host: string;
let port: number;

test.before(async () => {
  backend = await startRecordingBackend();
  gw = await startTestGateway(
    gatewayConfig({
      models: remoteModels({ '1': backend.url }),
      server: { maxHeaderBytes: 4096, headersTimeoutMs: 1000, requestTimeoutMs: 2000 },
      admin: { token: 'hardening-admin-token-0123456789' },
    }),
  );
  const url = new URL(gw.url);
  host = url.hostname;
  port = Number(url.port);
});

test.after.always(async () => {
  await gw?.stop();
  await backend?.close();
});

interface RawReply {
  /** Every status code seen on the connection, in order (two means the bytes were read as two requests). */
  statuses: number[];
  text: string;
  /** The server closed the connection (rather than our timeout ending the read). */
  closedByServer: boolean;
}

/** Writes `chunks` (with `gapMs` between them) on one connection and reads until the server closes it or `readMs` passes. */
async function raw(chunks: string[], { gapMs = 0, readMs = 5_000 } = {}): Promise<RawReply> {
  const socket = net.connect(port, host);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  const closed = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), readMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  socket.on('error', () => {}); // a reset after the reply is the server closing; the reply text is what we judge
  void (async () => {
    for (const chunk of chunks) {
      if (socket.destroyed) return;
      socket.write(chunk);
      if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
    }
  })();
  const closedByServer = await closed;
  socket.destroy();
  const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
  return { statuses, text, closedByServer };
}

const BODY = JSON.stringify(irisRequest());
const INFER = '/v2/models/iris/infer';
/** A complete second request hidden in the first one's body: if it ever reaches the backend, the gateway was smuggled. */
const SMUGGLED = `POST ${INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`;

const smuggling = test.macro({
  async exec(t, head: string, body: string) {
    const before = backend.infers.length;
    const reply = await raw([`POST ${INFER} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n${head}\r\n${body}`]);
    t.deepEqual(reply.statuses, [400], reply.text);
    t.regex(reply.text, /\{"error":"malformed HTTP request/);
    t.true(reply.closedByServer, 'the connection is closed after the 400');
    t.is(backend.infers.length, before, 'nothing reached the backend');
  },
  title: (what = '') => `smuggling: ${what} → 400, connection closed, zero requests reach the backend`,
});

test.serial('Content-Length with Transfer-Encoding: chunked (CL.TE)', smuggling, `Content-Length: 6\r\nTransfer-Encoding: chunked\r\n`, `0\r\n\r\n${SMUGGLED}`);
test.serial('Transfer-Encoding: chunked with Content-Length (TE.CL)', smuggling, `Transfer-Encoding: chunked\r\nContent-Length: 4\r\n`, `0\r\n\r\n${SMUGGLED}`);
test.serial('two different Content-Length headers', smuggling, `Content-Length: ${BODY.length}\r\nContent-Length: 0\r\n`, `${BODY}${SMUGGLED}`);
test.serial('two equal Content-Length headers', smuggling, `Content-Length: ${BODY.length}\r\nContent-Length: ${BODY.length}\r\n`, BODY);
test.serial('Content-Length: a, b list', smuggling, `Content-Length: ${BODY.length}, ${BODY.length}\r\n`, BODY);
test.serial('obs-fold continuation line', smuggling, `X-Folded: a\r\n  b\r\nContent-Length: ${BODY.length}\r\n`, BODY);
test.serial('obs-fold on Transfer-Encoding', smuggling, `Content-Length: ${BODY.length}\r\nTransfer-Encoding:\r\n chunked\r\n`, `${BODY}${SMUGGLED}`);
test.serial('Transfer-Encoding that does not end in chunked', smuggling, `Transfer-Encoding: chunked, identity\r\n`, `0\r\n\r\n${SMUGGLED}`);
test.serial('space before the colon of Content-Length', smuggling, `Content-Length : ${BODY.length}\r\n`, BODY);
test.serial('bare LF line ending inside the head', smuggling, `X-A: 1\nContent-Length: ${BODY.length}\r\n`, BODY);

test.serial('a head larger than server.maxHeaderBytes (4 KiB) → 431 JSON; one just below it is served', async (t) => {
  const big = await raw([`GET /v2/health/live HTTP/1.1\r\nHost: gw\r\nX-Pad: ${'a'.repeat(5000)}\r\n\r\n`]);
  t.deepEqual(big.statuses, [431], big.text);
  t.regex(big.text, /\{"error":"request headers are too large"\}/);
  const ok = await raw([`GET /v2/health/live HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nX-Pad: ${'a'.repeat(3000)}\r\n\r\n`]);
  t.deepEqual(ok.statuses, [200], ok.text);
});

test.serial('slow-loris headers (one byte per 150 ms) → 408 JSON after headersTimeoutMs (1 s), well before the 10 s guard', async (t) => {
  const head = `GET /v2/health/live HTTP/1.1\r\nHost: gw\r\nX-Slow: ${'s'.repeat(200)}\r\n\r\n`;
  const started = Date.now();
  const reply = await raw([...head], { gapMs: 150, readMs: 10_000 });
  t.true(reply.closedByServer, 'the gateway cut the connection');
  t.deepEqual(reply.statuses, [408], reply.text);
  t.regex(reply.text, /\{"error":"request was not received in time"\}/);
  t.true(Date.now() - started < 10_000);
});

test.serial(
  'slow body (headers complete, body trickles) → exactly one 408 JSON after requestTimeoutMs (2 s), connection closed, nothing reaches the backend',
  async (t) => {
    const before = backend.infers.length;
    const head = `POST ${INFER} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\n\r\n`;
    const started = Date.now();
    // 80 bytes at one per 150 ms would take 12 s: the request timeout always falls mid-body.
    const reply = await raw([head, ...BODY.slice(0, 80)], { gapMs: 150, readMs: 10_000 });
    const elapsed = Date.now() - started;
    t.true(reply.closedByServer, 'the gateway cut the connection');
    // Deterministic: Node's request timeout reaches the server's clientError handler while the socket is still
    // writable (the client never half-closes), and the handler always writes the 408 before closing it.
    t.deepEqual(reply.statuses, [408], reply.text);
    t.regex(reply.text, /\r\ncontent-type: application\/json\r\n/i);
    t.regex(reply.text, /\r\nconnection: close\r\n/i);
    t.regex(reply.text, /\r\n\r\n\{"error":"request was not received in time"\}$/);
    t.true(elapsed >= 1_900 && elapsed < 10_000, `cut after ${elapsed} ms`);
    t.is(backend.infers.length, before);
  },
);

test.serial(
  'hop-by-hop headers, every header named in Connection and a client x-shadow are stripped before the remote; X-Forwarded-For is appended to',
  async (t) => {
    const before = backend.infers.length;
    const head = [
      `POST ${INFER} HTTP/1.1`,
      'Host: gw',
      'Content-Type: application/json',
      `Content-Length: ${BODY.length}`,
      'Connection: keep-alive, X-Hop-Secret, x-other-hop',
      'X-Hop-Secret: must-not-pass',
      'X-Other-Hop: nor-this',
      'Keep-Alive: timeout=5',
      'TE: trailers',
      'Trailer: x-checksum',
      'Proxy-Authorization: Basic cHJveHk6c2VjcmV0',
      'Proxy-Connection: keep-alive',
      'Authorization: Bearer not-for-the-backend',
      'Cookie: session=abc',
      'X-Forwarded-For: 203.0.113.7',
      'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      'X-Shadow: true',
      '',
      '',
    ].join('\r\n');
    const reply = await raw([head + BODY, `GET /v2/health/live HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n`]);
    t.deepEqual(reply.statuses, [200, 200], reply.text);
    t.is(backend.infers.length, before + 1);
    const seen = backend.infers.at(-1)!.headers;
    // x-shadow is gateway-owned (src/shadow/mark.ts): a client's only keeps the gateway from mirroring the request.
    for (const name of [
      'x-hop-secret',
      'x-other-hop',
      'keep-alive',
      'te',
      'trailer',
      'proxy-authorization',
      'proxy-connection',
      'authorization',
      'cookie',
      'x-shadow',
    ]) {
      t.is(seen[name], undefined, `${name} reached the backend`);
    }
    t.not(String(seen.connection ?? ''), 'keep-alive, X-Hop-Secret, x-other-hop');
    t.is(seen['x-forwarded-for'], '203.0.113.7, 127.0.0.1', 'the client chain plus the peer the gateway saw');
    t.is(seen.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'end-to-end headers pass');
    t.regex(String(seen['x-request-id']), /\S+/);
  },
);

test.serial('without a client X-Forwarded-For the remote sees exactly the peer address', async (t) => {
  const res = await postJson(`${gw.url}${INFER}`, irisRequest());
  t.is(res.status, 200);
  t.is(backend.infers.at(-1)!.headers['x-forwarded-for'], '127.0.0.1');
});

test.serial(
  "x-shadow is the gateway's own: a client's is never forwarded and only stops the mirror; a mirrored copy carries it, and a second gateway serves that copy unmirrored",
  async (t) => {
    // Gateway A mirrors version 1 (primary) to 2 (a recording backend) and to 3 (gateway B). B serves iris from its
    // own remote and would mirror everything to its own shadow backend, unless the request is itself a mirror.
    const [primary, mirror, remote, remoteShadow] = await Promise.all([
      startRecordingBackend(),
      startRecordingBackend(),
      startRecordingBackend(),
      startRecordingBackend(),
    ]);
    t.teardown(() => Promise.all([primary, mirror, remote, remoteShadow].map((b) => b.close())));
    const mirrorAll = (versions: string[]) => ({
      shadow: { targets: versions.map((version) => ({ version, percent: 100 })), timeoutMs: 5_000, maxConcurrent: 4 },
    });
    const b = await startTestGateway(gatewayConfig({ models: remoteModels({ '1': remote.url, '2': remoteShadow.url }, mirrorAll(['2'])) }));
    t.teardown(() => b.stop());
    const a = await startTestGateway(gatewayConfig({ models: remoteModels({ '1': primary.url, '2': mirror.url, '3': b.url }, mirrorAll(['2', '3'])) }));
    t.teardown(() => a.stop());
    const settled = async () => {
      await a.controller.shadow.idle();
      await b.controller.shadow.idle();
    };
    const parameters = (r: { body: string }) => (JSON.parse(r.body) as { parameters?: Record<string, unknown> }).parameters;

    // A client's x-shadow: true is served (by the primary only), stops the mirror, and is not forwarded.
    t.is((await postJson(`${a.url}${INFER}`, irisRequest(), { 'x-shadow': 'true' })).status, 200);
    await settled();
    t.is(primary.infers.length, 1);
    t.is(primary.infers[0]!.headers['x-shadow'], undefined, 'a client x-shadow reached the primary backend');
    t.deepEqual([mirror.infers.length, remote.infers.length, remoteShadow.infers.length], [0, 0, 0], 'a request the client marked was mirrored');

    // An unmarked request: the primary call is unmarked; each copy is marked by the gateway (header and parameter).
    t.is((await postJson(`${a.url}${INFER}`, irisRequest())).status, 200);
    await settled();
    t.is(primary.infers.length, 2);
    t.is(primary.infers[1]!.headers['x-shadow'], undefined, 'the primary call is marked as a mirror');
    t.is(mirror.infers.length, 1);
    t.is(mirror.infers[0]!.headers['x-shadow'], 'true', 'the mirrored copy carries x-shadow: true');
    t.is(parameters(mirror.infers[0]!)?.shadow, true);
    // Two hops: B saw A's x-shadow: true, so it served the copy without mirroring it again; as a client header it was
    // not forwarded, but the copy's body (forwarded as received) still tells B's remote that it is a mirror.
    t.is(remote.infers.length, 1);
    t.is(remote.infers[0]!.headers['x-shadow'], undefined, 'gateway B forwarded the x-shadow it received');
    t.is(parameters(remote.infers[0]!)?.shadow, true);
    t.is(remoteShadow.infers.length, 0, 'gateway B mirrored a mirror');
  },
);

const adminPath = test.macro({
  async exec(t, method: string, path: string) {
    const res = await fetch(`${gw.url}${path}`, { method, headers: { authorization: 'Bearer hardening-admin-token-0123456789' } });
    t.is(res.status, 404);
    t.regex(String(((await res.json()) as { error?: unknown }).error), /no such endpoint/);
    t.truthy(gw.admin, 'the admin API runs, on its own port');
    const onAdmin = await fetch(`${gw.admin!.url}/admin/status`, { headers: { authorization: 'Bearer hardening-admin-token-0123456789' } });
    t.is(onAdmin.status, 200);
    await onAdmin.arrayBuffer();
  },
  title: (_, method: string, path: string) => `admin API is unreachable on the data-plane port: ${method} ${path} → 404 JSON`,
});
test(adminPath, 'GET', '/admin/status');
test(adminPath, 'POST', '/admin/reload');
test(adminPath, 'POST', '/admin/models/iris/weights');
test(adminPath, 'GET', '/metrics');

const spoofedXff = test.macro({
  async exec(t, trustedHops: number, expected: number[]) {
    const limited = await startTestGateway({
      ...gatewayConfig({ models: irisModels() }),
      rateLimits: { rules: [{ name: 'per-client', key: { clientAddress: { trustedHops } }, ratePerSecond: 0.001, burst: 1 }] },
    });
    t.teardown(() => limited.stop());
    const statuses: number[] = [];
    for (const xff of ['198.51.100.1', '198.51.100.2', '198.51.100.3']) {
      statuses.push((await postJson(`${limited.url}${INFER}`, irisRequest(), { 'x-forwarded-for': xff })).status);
    }
    t.deepEqual(statuses, expected);
  },
  title: (what = '') => `rate-limit keys by client address: ${what}`,
});
test('with trustedHops 0 a client-written X-Forwarded-For is ignored (the socket peer is the key: 200, 429, 429)', spoofedXff, 0, [200, 429, 429]);
test('with trustedHops 1 the entry the trusted proxy appended is the key (one bucket per address)', spoofedXff, 1, [200, 200, 200]);
