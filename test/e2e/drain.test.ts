// SIGTERM under steady load against a real gateway process: the mesh drain timeline, measured from the outside.

import test from 'ava';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { gatewayConfig, irisRequest, ROOT, spawnGateway, writeConfigFile } from '../helpers/gateway.js';
import { loadFigures, reportLoad, rssMiB, startLoad } from '../helpers/load.js';
import { remoteModels, startRecordingBackend } from './hardening-recorder.js';

const DRAIN_DELAY_MS = 3_000;
const SHUTDOWN_TIMEOUT_MS = 10_000;
/** How long the emulated mesh takes to stop routing here after readiness fails (must be below the drain delay). */
const PROPAGATION_MS = 500;

interface Answer {
  status: number;
  connection: string | undefined;
  error: string | undefined;
}

/** One request on a brand-new connection (agent: false), as a client that just resolved this endpoint would send. */
function freshRequest(url: string, method: 'GET' | 'POST', body?: string): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.request(url, { method, agent: false, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, error: undefined }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ status: 0, connection: undefined, error: err.code ?? err.message }));
    req.end(body);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('SIGTERM under steady load: readiness fails within 1 s, zero failed or reset requests, new connections accepted during the drain delay, in-flight request and shadow finish, exit 0 before the deadline', async (t) => {
  const primary = await startRecordingBackend({ delayMs: 20 });
  const shadow = await startRecordingBackend({ delayMs: 100 });
  t.teardown(() => primary.close());
  t.teardown(() => shadow.close());
  const file = await writeConfigFile({
    server: { host: '127.0.0.1', port: 0, grpc: { port: 0 }, drainDelayMs: DRAIN_DELAY_MS, shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS },
    admin: { enabled: false },
    logging: { level: 'warn' },
    models: remoteModels({ '1': primary.url, '2': shadow.url }, { shadow: { targets: [{ version: '2', percent: 100 }], timeoutMs: 8_000, maxConcurrent: 16 } }),
  });
  const gw = await spawnGateway(file);
  t.teardown(() => gw.stop('SIGKILL'));
  const infer = `${gw.url}/v2/models/iris/infer`;
  const body = JSON.stringify(irisRequest());
  const rssAtStart = rssMiB(gw.child.pid);

  const load = startLoad({ url: infer, body, concurrency: 4, maxRequests: 20_000 });
  await load.completed(100);

  const signalled = performance.now();
  const since = () => performance.now() - signalled;
  gw.child.kill('SIGTERM');

  // Readiness, polled on new connections the way a kubelet probe arrives.
  let notReadyAtMs = Infinity;
  while (since() < 3_000) {
    const ready = await freshRequest(`${gw.url}/v2/health/ready`, 'GET');
    if (ready.status === 503) {
      notReadyAtMs = since();
      break;
    }
    await sleep(50);
  }
  // The mesh stops routing here only after its endpoints update; until then the load continues.
  await sleep(Math.max(0, notReadyAtMs + PROPAGATION_MS - since()));
  const duringDelay = await freshRequest(infer, 'POST', body);
  const loadResult = await load.stop();
  const stoppedLoadAtMs = since();
  // Still within the drain delay, so the process is alive: the end of the load is the end of the RSS reading.
  const rssAtEnd = rssMiB(gw.child.pid);

  // A slow request (with a slower shadow) that is in flight when the gateway stops accepting. Its shadow can only
  // get a slot once the load's shadows are done.
  for (let i = 0; i < 100 && shadow.completed() < shadow.infers.length; i++) await sleep(20);
  const shadowsBefore = shadow.infers.length;
  primary.setDelay(DRAIN_DELAY_MS + 500);
  shadow.setDelay(DRAIN_DELAY_MS + 2_000);
  const slowSentAtMs = since();
  const slow = freshRequest(infer, 'POST', body);
  await sleep(Math.max(0, DRAIN_DELAY_MS + 500 - since()));
  const afterDelay = await freshRequest(`${gw.url}/v2/health/live`, 'GET');
  const slowAnswer = await slow;
  const code = await gw.exited;
  const exitedAtMs = since();

  const figures = reportLoad(
    t,
    'SIGTERM under load',
    loadFigures(loadResult.samples, { startMiB: rssAtStart, endMiB: rssAtEnd, of: `gateway pid ${gw.child.pid}` }),
  );
  t.log(
    `not ready at ${Math.round(notReadyAtMs)} ms, load stopped at ${Math.round(stoppedLoadAtMs)} ms, exit at ${Math.round(exitedAtMs)} ms; ` +
      `shadows received ${shadow.infers.length}, completed ${shadow.completed()}`,
  );
  t.true(notReadyAtMs <= 1_000, `readiness failed after ${notReadyAtMs} ms`);
  // Counted apart: a reset is the failure a drain must never cause, whatever else goes wrong.
  t.is(
    figures.resets,
    0,
    `connection resets: ${loadResult.samples
      .filter((s) => s.status === 0)
      .map((s) => s.body)
      .join(' | ')}`,
  );
  t.deepEqual(
    loadResult.samples.filter((s) => s.status === 0).map((s) => s.body),
    [],
    'requests without any response',
  );
  t.deepEqual(Object.keys(loadResult.statuses), ['200']);
  t.true(loadResult.samples.length >= 100);
  t.is(duringDelay.status, 200, `a new connection during the drain delay: ${duringDelay.error}`);
  t.is(duringDelay.connection, 'close');
  t.is(afterDelay.status, 0, 'no new connection after the drain delay');
  t.is(afterDelay.error, 'ECONNREFUSED');
  t.is(slowAnswer.status, 200, `the in-flight request: ${slowAnswer.error}`);
  t.is(slowAnswer.connection, 'close');
  t.true(slowSentAtMs < DRAIN_DELAY_MS - 500, `the slow request was sent at ${slowSentAtMs} ms, too late to test in-flight draining`);
  t.is(shadow.infers.length, shadowsBefore + 1, 'the slow request was mirrored');
  t.true(exitedAtMs >= slowSentAtMs + DRAIN_DELAY_MS + 2_000, 'the exit waited for the shadow call in flight');
  t.is(shadow.completed(), shadow.infers.length, 'every shadow call in flight finished (none aborted by the shutdown)');
  t.is(code, 0);
  t.true(exitedAtMs < SHUTDOWN_TIMEOUT_MS, `exited ${exitedAtMs} ms after SIGTERM`);
});

test('a request that outlives the deadline is cut, and the process still exits before server.shutdownTimeoutMs', async (t) => {
  const primary = await startRecordingBackend({ delayMs: 0 });
  t.teardown(() => primary.close());
  const file = await writeConfigFile({
    server: { host: '127.0.0.1', port: 0, grpc: { port: 0 }, drainDelayMs: 300, shutdownTimeoutMs: 2_500 },
    admin: { enabled: false },
    logging: { level: 'warn' },
    models: remoteModels({ '1': primary.url }),
  });
  const gw = await spawnGateway(file);
  t.teardown(() => gw.stop('SIGKILL'));
  primary.setDelay(60_000);
  const stuck = freshRequest(`${gw.url}/v2/models/iris/infer`, 'POST', JSON.stringify(irisRequest()));
  while (primary.infers.length === 0) await sleep(20);
  const signalled = performance.now();
  gw.child.kill('SIGTERM');
  const code = await gw.exited;
  const exitedAtMs = performance.now() - signalled;
  const answer = await stuck;
  t.log(`exit ${code} at ${Math.round(exitedAtMs)} ms; stuck request: ${answer.status || answer.error}`);
  t.true(exitedAtMs < 2_500 + 500, `exited ${exitedAtMs} ms after SIGTERM`);
  t.is(code, 0, 'the drain cut the connection itself; the backstop exit (code 1) was not needed');
  t.regex(gw.stdout(), /closing remaining connections/);
});

/**
 * A raw keep-alive connection: sends one inference request, collects every byte the server sends, and notes when and
 * how the connection ends ('end' is the server's FIN; an error code such as ECONNRESET is a reset).
 */
async function keptAlive(url: string, body: string) {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  socket.setEncoding('latin1');
  let received = '';
  const ended = new Promise<{ atMs: number; how: string }>((resolve) => {
    socket.once('end', () => resolve({ atMs: performance.now(), how: 'end' }));
    socket.once('error', (err: NodeJS.ErrnoException) => resolve({ atMs: performance.now(), how: err.code ?? err.message }));
  });
  const answered = new Promise<string>((resolve, reject) => {
    const onData = (chunk: string) => {
      received += chunk;
      const head = received.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: (\d+)/i.exec(received.slice(0, head));
      if (head < 0 || !length || received.length < head + 4 + Number(length[1])) return;
      socket.off('data', onData);
      resolve(received);
    };
    socket.on('data', onData);
    void ended.then(({ how }) => reject(new Error(`connection ended (${how}) before the response: ${received}`)));
  });
  socket.write(
    `POST /v2/models/iris/infer HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  return { response: await answered, ended, received: () => received, destroy: () => socket.destroy() };
}

test('an idle keep-alive socket opened before SIGTERM is closed by the server at the drain delay (FIN, not reset), after its one request was answered', async (t) => {
  const drainDelayMs = 1_500;
  const primary = await startRecordingBackend({ delayMs: 0 });
  t.teardown(() => primary.close());
  const file = await writeConfigFile({
    server: { host: '127.0.0.1', port: 0, grpc: { port: 0 }, drainDelayMs, shutdownTimeoutMs: 6_000 },
    admin: { enabled: false },
    logging: { level: 'warn' },
    models: remoteModels({ '1': primary.url }),
  });
  const gw = await spawnGateway(file);
  t.teardown(() => gw.stop('SIGKILL'));
  // Answered before the signal, so without `Connection: close`: a socket the client keeps for its next request.
  const idle = await keptAlive(gw.url, JSON.stringify(irisRequest()));
  t.teardown(() => idle.destroy());
  t.regex(idle.response, /^HTTP\/1\.1 200 /);
  t.notRegex(idle.response, /\r\nconnection: close\r\n/i);

  const signalled = performance.now();
  gw.child.kill('SIGTERM');
  const { atMs, how } = await idle.ended;
  const closedAtMs = atMs - signalled;
  const code = await gw.exited;
  const exitedAtMs = performance.now() - signalled;
  t.log(
    `idle keep-alive socket closed (${how}) ${Math.round(closedAtMs)} ms after SIGTERM (drain delay ${drainDelayMs} ms); exit ${code} at ${Math.round(exitedAtMs)} ms`,
  );
  t.is(how, 'end', 'the server closed the idle socket cleanly');
  // Not before the drain delay (clients could not have reconnected elsewhere yet), and not held until the deadline.
  t.true(closedAtMs >= drainDelayMs - 5, `closed ${closedAtMs} ms after SIGTERM, before the drain delay`);
  t.true(closedAtMs <= drainDelayMs + 750, `closed ${closedAtMs} ms after SIGTERM, long after the drain delay`);
  // Nothing lost: the one request reached the backend once and was answered; nothing else came on the socket.
  t.is(idle.received(), idle.response, 'no bytes after the answered response');
  t.is(primary.infers.length, 1);
  t.is(code, 0);
});

const drainConfig = test.macro({
  async exec(t, server: Record<string, unknown>, problem: RegExp | undefined) {
    const parsed = parseConfig(gatewayConfig({ server }), { baseDir: ROOT, source: 'test' });
    if (problem === undefined) {
      await t.notThrowsAsync(parsed);
      return;
    }
    const err = await t.throwsAsync(parsed, { instanceOf: ConfigError });
    t.regex(err!.problems.join('\n'), problem);
  },
  title: (what = '') => `drain config: ${what}`,
});
test('a drain delay below the deadline is accepted', drainConfig, { drainDelayMs: 5_000, shutdownTimeoutMs: 25_000 }, undefined);
test(
  'a drain delay at or past the deadline is rejected at load',
  drainConfig,
  { drainDelayMs: 30_000, shutdownTimeoutMs: 25_000 },
  /^server\.drainDelayMs: must be below server\.shutdownTimeoutMs/m,
);
test('maxHeaderBytes below 1 KiB is rejected', drainConfig, { maxHeaderBytes: 100 }, /^server\.maxHeaderBytes: /m);

test('gateway and serve-model SIGTERMed together under load: the runtime drains until its gateway stops forwarding, zero failed answers, both exit 0', async (t) => {
  // The runtime's drain delay is the shorter one: without its quiet period it would close while the gateway still
  // accepts and forwards (the audit saw every request of the gateway's drain window get 503).
  const runtimeFile = await writeConfigFile({
    server: { drainDelayMs: 1_000, shutdownTimeoutMs: 10_000 },
    logging: { level: 'warn' },
    models: { iris: { versions: { '1': { backend: { kind: 'onnx', path: `${ROOT}/examples/models/iris-v1.onnx` } } } } },
  });
  const { spawnServeModel } = await import('../helpers/serve-model.js');
  const runtime = await spawnServeModel(['--config', runtimeFile, '--port', '0']);
  t.teardown(() => runtime.stop('SIGKILL'));
  const gatewayFile = await writeConfigFile({
    server: { host: '127.0.0.1', port: 0, grpc: { port: 0 }, drainDelayMs: 2_000, shutdownTimeoutMs: 10_000 },
    admin: { enabled: false },
    logging: { level: 'warn' },
    models: { iris: { versions: { '1': { backend: { kind: 'http', url: runtime.url, model: 'iris', version: '1' } } } } },
  });
  const gw = await spawnGateway(gatewayFile);
  t.teardown(() => gw.stop('SIGKILL'));
  const infer = `${gw.url}/v2/models/iris/infer`;
  const load = startLoad({ url: infer, body: JSON.stringify(irisRequest()), concurrency: 4, maxRequests: 50_000 });
  await load.completed(200);
  const signalled = performance.now();
  runtime.child.kill('SIGTERM');
  gw.child.kill('SIGTERM');
  // The mesh keeps sending until the gateway stops accepting (its 2 s drain delay): past the runtime's own delay.
  await sleep(1_900);
  const result = await load.stop();
  const answered = result.samples.filter((s) => s.status !== 0);
  const afterSignal = answered.filter((s) => s.index >= 200).length;
  t.log(`${answered.length} answered, ${afterSignal} of them after the signal; statuses ${JSON.stringify(result.statuses)}`);
  t.true(afterSignal > 50, 'the load went on through the drain');
  t.deepEqual(
    answered.filter((s) => s.status !== 200).map((s) => `${s.status} ${s.body.slice(0, 120)}`),
    [],
  );
  t.is(await gw.exited, 0);
  t.is(await runtime.exited, 0);
  t.log(`gateway and runtime exited ${Math.round(performance.now() - signalled)} ms after the signal`);
});
