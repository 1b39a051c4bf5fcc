// The IdP's JWKS endpoint as a fault: down at start (fail closed), up (recovers within the cooldown), down mid-run
// (the last good key set keeps serving), and down across a config reload (remote key sets survive reloads).

import test from 'ava';
import path from 'node:path';
import type { RunningGateway } from '../../src/app/gateway.js';
import { irisRequest, postJson } from '../helpers/gateway.js';
import { closedPort, ecKey, switchableJwks, tokenFor } from '../helpers/jwt.js';
import { loadFigures, reportLoad, rssMiB, runLoad, timed, type Outcome } from '../helpers/load.js';
import { fileConfig, irisVersion, startFromFile, tempDir, writeConfig } from '../helpers/traffic.js';

const ISS = 'https://faults-idp.example';
const AUD = 'model-gateway';
const key = ecKey('faults-1');
const nowS = Math.floor(Date.now() / 1000);
const BEARER = `Bearer ${tokenFor(key, { iss: ISS, aud: AUD, sub: 'alice', iat: nowS, exp: nowS + 3600 })}`;
const COOLDOWN_MS = 300;

/** The IdP for these tests: its JWKS endpoint on a fixed port, switchable. */
async function jwksEndpoint() {
  return switchableJwks(await closedPort(), [key.jwk]);
}

function config(url: string, weights: Record<string, number>) {
  return fileConfig(
    { iris: { versions: { '1': irisVersion('iris-v1.onnx'), '2': irisVersion('iris-v2.onnx') }, weights } },
    { auth: { issuers: [{ issuer: ISS, audiences: [AUD], algorithms: ['ES256'], jwks: { url, cooldownMs: COOLDOWN_MS, timeoutMs: 500 } }] } },
  );
}

/** Sends `n` requests one after another; each outcome is also recorded in `into` for the scenario's figures. */
async function statuses(gw: RunningGateway, n: number, into: Outcome[]): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await timed(into, () => postJson(`${gw.url}/v2/models/iris/infer`, irisRequest(), { authorization: BEARER }))).status);
  return out;
}

/** The in-process gateway shares the test process, so its RSS is the test's. */
const IN_PROCESS = 'the test process (in-process gateway)';

test.serial('JWKS down at start → 401 (fail closed, JSON); up → 200 within a few cooldowns; down mid-run → still 200 from the last good keys', async (t) => {
  const jwks = await jwksEndpoint();
  t.teardown(() => jwks.down());
  const file = path.join(await tempDir(), 'gateway.yaml');
  await writeConfig(file, config(jwks.url, { '1': 50, '2': 50 }));
  const gw = await startFromFile(file);
  t.teardown(() => gw.stop());
  const outcomes: Outcome[] = [];
  const rssAtStart = rssMiB();

  const down = await timed(outcomes, () => postJson(`${gw.url}/v2/models/iris/infer`, irisRequest(), { authorization: BEARER }));
  t.is(down.status, 401);
  t.is(typeof down.body.error, 'string');

  await jwks.up();
  let recovered = false;
  for (let i = 0; i < 100 && !recovered; i++) {
    recovered = (await statuses(gw, 1, outcomes))[0] === 200;
    if (!recovered) await new Promise((r) => setTimeout(r, COOLDOWN_MS / 3));
  }
  t.true(recovered, 'tokens verify once the JWKS endpoint answers');

  // Down mid-run, under concurrent load: every request still verifies against the last good key set.
  await jwks.down();
  const midRun = await runLoad({
    url: `${gw.url}/v2/models/iris/infer`,
    body: JSON.stringify(irisRequest()),
    headers: { authorization: BEARER },
    concurrency: 4,
    total: 200,
  });
  outcomes.push(...midRun.samples);
  reportLoad(t, 'JWKS down at start, up, down mid-run', loadFigures(outcomes, { startMiB: rssAtStart, endMiB: rssMiB(), of: IN_PROCESS }));
  t.deepEqual(
    midRun.statuses,
    { 200: 200 },
    midRun.failures
      .slice(0, 3)
      .map((f) => f.body)
      .join(' | '),
  );
});

// Remote key sources are process-wide (keyed by their settings), so a reload during an IdP outage keeps the last good
// key set instead of starting empty.
test('JWKS down across a config reload → tokens signed by known keys still get 200', async (t) => {
  const jwks = await jwksEndpoint();
  t.teardown(() => jwks.down());
  await jwks.up();
  const file = path.join(await tempDir(), 'gateway.yaml');
  await writeConfig(file, config(jwks.url, { '1': 50, '2': 50 }));
  const gw = await startFromFile(file);
  t.teardown(() => gw.stop());
  const outcomes: Outcome[] = [];
  const rssAtStart = rssMiB();
  t.deepEqual(await statuses(gw, 5, outcomes), new Array<number>(5).fill(200));
  await jwks.down();
  const applied = gw.controller.nextReload();
  await writeConfig(file, config(jwks.url, { '1': 20, '2': 80 }));
  t.is((await applied).outcome, 'applied');
  t.deepEqual(await statuses(gw, 10, outcomes), new Array<number>(10).fill(200));
  reportLoad(t, 'JWKS down across a reload', loadFigures(outcomes, { startMiB: rssAtStart, endMiB: rssMiB(), of: IN_PROCESS }));
});
