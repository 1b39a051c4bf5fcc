// Answers Node would write itself, made the gateway's: JSON for a request without Host, for CONNECT and for an
// unsupported Expect, and `Expect: 100-continue` answered with the refusal (413/401/404/503) instead of `100 Continue`
// whenever the gateway will not read the body. Raw sockets against a real gateway.

import test from 'ava';
import net from 'node:net';
import type { RunningGateway } from '../../src/app/gateway.js';
import { gatewayConfig, irisModels, irisRequest, startTestGateway } from '../helpers/gateway.js';
import { ecKey, tokenFor } from '../helpers/jwt.js';

const ISS = 'https://idp.node-answers';
const key = ecKey('na');
const nowS = Math.floor(Date.now() / 1000);
const token = tokenFor(key, { iss: ISS, aud: 'gw', sub: 'alice', scope: 'iris:infer', exp: nowS + 3600 });

let gw: RunningGateway;
let port: number;
test.before(async () => {
  const models = irisModels() as Record<string, Record<string, unknown>>;
  models.iris!.auth = { infer: { scopes: ['iris:infer'] } };
  gw = await startTestGateway({
    ...gatewayConfig({ models, server: { maxBodyBytes: 1024 * 1024 }, admin: { port: 0, token: 'node-answers-admin-token-0123' } }),
    auth: { issuers: [{ issuer: ISS, audiences: ['gw'], algorithms: ['ES256'], jwks: { keys: [key.jwk] } }] },
  });
  port = Number(new URL(gw.url).port);
});
test.after.always(() => gw?.stop());

/** Sends `head` (and, once `100 Continue` arrives, `body`) on one connection; returns everything read until close or 2 s. */
async function exchange(head: string, body?: string, to = port): Promise<{ text: string; continued: boolean }> {
  const socket = net.connect(to, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let text = '';
  let continued = false;
  socket.on('error', () => {});
  socket.on('data', (d: Buffer) => {
    text += d.toString('latin1');
    if (!continued && text.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
      continued = true;
      if (body !== undefined) socket.write(body);
    }
  });
  socket.write(head);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 2_000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  socket.destroy();
  return { text, continued };
}

/** The final response of a raw exchange: status, headers (lower-case) and the JSON body. */
function final(text: string): { status: number; headers: Record<string, string>; json: Record<string, unknown> } {
  const start = text.startsWith('HTTP/1.1 100 Continue\r\n\r\n') ? 'HTTP/1.1 100 Continue\r\n\r\n'.length : 0;
  const [head, ...rest] = text.slice(start).split('\r\n\r\n');
  const [statusLine, ...lines] = head!.split('\r\n');
  const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  return { status: Number(statusLine!.split(' ')[1]), headers, json: JSON.parse(rest.join('\r\n\r\n')) as Record<string, unknown> };
}

test('a request without Host gets a JSON 400 and the connection closes', async (t) => {
  const { text } = await exchange('GET /v2/health/live HTTP/1.1\r\n\r\n');
  const res = final(text);
  t.is(res.status, 400);
  t.is(res.headers['content-type'], 'application/json');
  t.is(res.headers.connection, 'close');
  t.regex(String(res.json.error), /needs a Host header/);
  const old = await exchange('GET /v2/health/live HTTP/1.0\r\n\r\n');
  t.is(final(old.text).status, 200, 'HTTP/1.0 has no Host requirement');
});

test('CONNECT gets a JSON 405 (no tunnel, no silent close)', async (t) => {
  const res = final((await exchange('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')).text);
  t.is(res.status, 405);
  t.regex(String(res.json.error), /CONNECT is not supported/);
});

test('an Expect other than 100-continue gets a JSON 417', async (t) => {
  const res = final((await exchange('POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: fast-please\r\n\r\n')).text);
  t.is(res.status, 417);
  t.regex(String(res.json.error), /unsupported Expect/);
});

const infer = (headers: string, length: number) =>
  `POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\nExpect: 100-continue\r\n${headers}\r\n`;

test('Expect: 100-continue is answered 413 / 401 / 404 instead of 100 Continue when the body will not be read', async (t) => {
  const tooBig = await exchange(infer(`Authorization: Bearer ${token}\r\n`, 5 * 1024 * 1024));
  t.false(tooBig.continued);
  t.is(final(tooBig.text).status, 413);
  const noToken = await exchange(infer('', 100));
  t.false(noToken.continued);
  t.is(final(noToken.text).status, 401);
  t.is(final(noToken.text).headers.connection, 'close', 'the body was never sent: the connection cannot be reused');
  const unknown = await exchange(infer(`Authorization: Bearer ${token}\r\n`, 100).replace('/models/iris/', '/models/nope/'));
  t.false(unknown.continued);
  t.is(final(unknown.text).status, 404);
});

test('Expect: 100-continue on a request the gateway will serve: 100 Continue, then the answer', async (t) => {
  const body = JSON.stringify(irisRequest());
  const ok = await exchange(`${infer(`Authorization: Bearer ${token}\r\nConnection: close\r\n`, Buffer.byteLength(body))}`, body);
  t.true(ok.continued);
  const res = final(ok.text);
  t.is(res.status, 200);
  t.like(res.json, { model_name: 'iris' });
});

test('the admin listener answers the same edges as JSON: no Host → 400, CONNECT → 405, a malformed head → 400', async (t) => {
  const adminPort = Number(new URL(gw.admin!.url).port);
  const noHost = final((await exchange('GET /admin/status HTTP/1.1\r\n\r\n', undefined, adminPort)).text);
  t.is(noHost.status, 400);
  t.regex(String(noHost.json.error), /needs a Host header/);
  const tunnel = final((await exchange('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', undefined, adminPort)).text);
  t.is(tunnel.status, 405);
  const garbage = final((await exchange('GET /admin/status HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n', undefined, adminPort)).text);
  t.is(garbage.status, 400);
  t.regex(String(garbage.json.error), /malformed HTTP request/);
});
