// RequestBody: whole reads, the size limit, and forwarding a large body while it is still arriving (replayable).

import test from 'ava';
import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { RequestBody, STREAM_THRESHOLD_BYTES, type StreamedBody } from '../../src/http/request-body.js';

/** A stand-in IncomingMessage: a readable stream with headers. */
function fakeRequest(headers: Record<string, string> = {}): PassThrough & { headers: Record<string, string> } {
  return Object.assign(new PassThrough(), { headers });
}

async function collect(body: StreamedBody): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body.open()) chunks.push(chunk);
  return Buffer.concat(chunks);
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('a small declared body is forwarded as one buffer', async (t) => {
  const req = fakeRequest({ 'content-length': '5' });
  const body = new RequestBody(req as unknown as IncomingMessage, 1024);
  const pending = body.forwardable();
  req.end('hello');
  const forwarded = await pending;
  t.true(Buffer.isBuffer(forwarded));
  t.is(String(forwarded), 'hello');
});

test('a large body still arriving streams: readers get what has arrived, follow the rest, and each open() starts at byte 0', async (t) => {
  const size = STREAM_THRESHOLD_BYTES * 2;
  const req = fakeRequest({ 'content-length': String(size) });
  const body = new RequestBody(req as unknown as IncomingMessage, size);
  const first = Buffer.alloc(size / 2, 1);
  const second = Buffer.alloc(size / 2, 2);
  req.write(first);
  const forwarded = await body.forwardable();
  t.false(Buffer.isBuffer(forwarded));
  const streamed = forwarded as StreamedBody;
  t.is(streamed.length, size);
  // A reader opened now receives the first half before the second has been sent.
  const iterator = streamed.open()[Symbol.asyncIterator]();
  const head = await iterator.next();
  t.deepEqual(head.value, first);
  const rest = (async () => {
    const chunks: Buffer[] = [];
    for (let r = await iterator.next(); !r.done; r = await iterator.next()) chunks.push(r.value);
    return Buffer.concat(chunks);
  })();
  await tick();
  req.end(second);
  t.deepEqual(await rest, second);
  // A second reader (a retry) replays from the first byte; bytes() agrees.
  t.deepEqual(await collect(streamed), Buffer.concat([first, second]));
  t.deepEqual(await body.bytes(), Buffer.concat([first, second]));
  t.false(body.abandoned);
});

test('a chunked body (no content-length) streams too, with no declared length', async (t) => {
  const req = fakeRequest();
  const body = new RequestBody(req as unknown as IncomingMessage, 1024);
  req.write('abc');
  const forwarded = (await body.forwardable()) as StreamedBody;
  t.false(Buffer.isBuffer(forwarded));
  t.is(forwarded.length, undefined);
  req.end('def');
  t.is(String(await collect(forwarded)), 'abcdef');
});

test('a streamed body that grows over the limit fails its readers with 413 and marks the body abandoned', async (t) => {
  const req = fakeRequest();
  const body = new RequestBody(req as unknown as IncomingMessage, 2048);
  req.write(Buffer.alloc(1024));
  const forwarded = (await body.forwardable()) as StreamedBody;
  const reading = collect(forwarded);
  await tick();
  req.write(Buffer.alloc(2048));
  const err = await t.throwsAsync(reading, { instanceOf: GatewayError });
  t.is(err?.code, 'GW_ERR_BODY_TOO_LARGE');
  t.true(body.abandoned);
  await t.throwsAsync(body.bytes(), { message: /exceeds the limit of 2048 bytes/ });
});

test('a declared length over the limit is refused before reading, whichever way the body is asked for', async (t) => {
  const req = fakeRequest({ 'content-length': '5000' });
  const body = new RequestBody(req as unknown as IncomingMessage, 1024);
  const err = await t.throwsAsync(body.forwardable(), { instanceOf: GatewayError });
  t.is(err?.code, 'GW_ERR_BODY_TOO_LARGE');
  t.true(body.abandoned);
  t.is(req.listenerCount('data'), 0);
});

test('a request that closes mid-body fails waiting readers as client-closed', async (t) => {
  const req = fakeRequest();
  const body = new RequestBody(req as unknown as IncomingMessage, 1 << 20);
  req.write('partial');
  const forwarded = (await body.forwardable()) as StreamedBody;
  const reading = collect(forwarded);
  await tick();
  req.destroy();
  const err = await t.throwsAsync(reading, { instanceOf: GatewayError });
  t.is(err?.code, 'GW_ERR_CLIENT_CLOSED');
  t.true(body.abandoned);
});
