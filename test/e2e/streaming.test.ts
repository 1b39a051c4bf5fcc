// Pass-through streaming: a large body for an `http` version reaches the remote while the client is still sending it,
// byte for byte, is sent again from its first byte when a retry needs it, and is cut with 413 when it outgrows the limit.

import test from 'ava';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gatewayConfig, startTestGateway } from '../helpers/gateway.js';

interface Received {
  firstByteAt: number;
  body: Buffer;
  headers: http.IncomingHttpHeaders;
}

const METADATA = {
  name: 'iris',
  versions: ['1'],
  platform: 'stream-recorder',
  inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [{ name: 'label', datatype: 'INT64', shape: [-1] }],
};

/** An OIP remote that records when each infer body's first byte arrived; `resetFirst` resets its first N connections. */
async function streamRecorder(resetFirst = 0) {
  const received: Received[] = [];
  const firstBytes: ((at: number) => void)[] = [];
  let resets = resetFirst;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let firstByteAt = 0;
    req.on('data', (c: Buffer) => {
      if (firstByteAt === 0) {
        firstByteAt = Date.now();
        firstBytes.shift()?.(firstByteAt);
      }
      chunks.push(c);
    });
    req.on('end', () => {
      const reply = (body: unknown) => {
        const text = JSON.stringify(body);
        // Probes get their connection closed, so an infer call always opens a fresh one (which `resetFirst` can reset).
        const close = req.method === 'GET' ? { connection: 'close' } : {};
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...close });
        res.end(text);
      };
      if (req.method === 'GET' && req.url?.endsWith('/ready')) return reply({ ready: true });
      if (req.method === 'GET') return reply(METADATA);
      const body = Buffer.concat(chunks);
      received.push({ firstByteAt, body, headers: req.headers });
      const rows = (JSON.parse(body.toString()) as { inputs: { shape: number[] }[] }).inputs[0]!.shape[0]!;
      reply({ model_name: 'iris', model_version: '1', outputs: [{ name: 'label', datatype: 'INT64', shape: [rows], data: new Array<number>(rows).fill(0) }] });
    });
  });
  server.on('connection', (socket) => {
    // Only infer connections are reset: the metadata probe has already connected by the time resets are armed.
    if (resets > 0 && server.listening && armed) {
      resets--;
      socket.destroy();
    }
  });
  let armed = false;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    arm: () => void (armed = true),
    resetsLeft: () => resets,
    /** Resolves at the next infer body's first byte. */
    nextFirstByte: () => new Promise<number>((resolve) => firstBytes.push(resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** An iris request of `rows` rows: about 24 bytes a row, so 10,000 rows is well over the 64 KiB streaming threshold. */
function irisBody(rows: number): Buffer {
  const data = Array.from({ length: rows * 4 }, (_, i) => Number(((i % 70) / 10).toFixed(1)));
  return Buffer.from(JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [rows, 4], data }] }));
}

async function remoteGateway(url: string, server: Record<string, unknown> = {}) {
  return startTestGateway(
    gatewayConfig({
      server,
      models: { iris: { versions: { '1': { backend: { kind: 'http', url, model: 'iris', version: '1', retry: { minRetriesPerSecond: 10 } } } } } },
    }),
  );
}

/** Sends `body` in two halves; the second only after `between()` resolves. Resolves with the status and JSON answer. */
function sendInHalves(
  url: string,
  body: Buffer,
  chunked: boolean,
  between: () => Promise<unknown>,
): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json', ...(chunked ? {} : { 'content-length': body.length }) };
    const req = http.request(`${url}/v2/models/iris/infer`, { method: 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> }));
    });
    req.on('error', reject);
    const half = Math.floor(body.length / 2);
    req.write(body.subarray(0, half));
    between().then(
      () => req.end(body.subarray(half)),
      (err: unknown) => {
        req.destroy();
        reject(err as Error);
      },
    );
  });
}

const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms).unref())]);

for (const chunked of [false, true]) {
  test(`a large ${chunked ? 'chunked' : 'content-length'} body reaches the remote before the client has finished sending it, byte for byte`, async (t) => {
    const remote = await streamRecorder();
    t.teardown(() => remote.close());
    const gw = await remoteGateway(remote.url);
    t.teardown(() => gw.stop());
    const body = irisBody(10_000);
    // The second half is sent only once the remote has seen the first byte: a buffering gateway never gets there.
    const reply = await sendInHalves(gw.url, body, chunked, () => within(remote.nextFirstByte(), 5_000, 'the first byte at the remote'));
    t.is(reply.status, 200);
    t.like(reply.json, { model_name: 'iris', model_version: '1' });
    t.is(remote.received.length, 1);
    t.true(remote.received[0]!.body.equals(body));
    if (chunked) t.is(remote.received[0]!.headers['transfer-encoding'], 'chunked');
    else t.is(remote.received[0]!.headers['content-length'], String(body.length));
  });
}

test('a connection reset before the request was sent: the retry sends the streamed body again from its first byte', async (t) => {
  const remote = await streamRecorder(1);
  t.teardown(() => remote.close());
  const gw = await remoteGateway(remote.url);
  t.teardown(() => gw.stop());
  remote.arm();
  const body = irisBody(10_000);
  const reply = await sendInHalves(gw.url, body, false, () => new Promise((r) => setTimeout(r, 100)));
  t.is(reply.status, 200);
  t.is(remote.resetsLeft(), 0, 'the first attempt met a reset connection');
  t.is(remote.received.length, 1);
  t.true(remote.received[0]!.body.equals(body));
});

test('a streamed body that outgrows server.maxBodyBytes: 413 JSON to the client and no complete request at the remote', async (t) => {
  const remote = await streamRecorder();
  t.teardown(() => remote.close());
  const gw = await remoteGateway(remote.url, { maxBodyBytes: 150_000 });
  t.teardown(() => gw.stop());
  const body = irisBody(10_000);
  t.true(body.length > 150_000);
  const reply = await sendInHalves(gw.url, body, true, () => within(remote.nextFirstByte(), 5_000, 'the first byte at the remote'));
  t.is(reply.status, 413);
  t.regex(String(reply.json.error), /exceeds the limit of 150000 bytes/);
  t.is(remote.received.length, 0);
});
