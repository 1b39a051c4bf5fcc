// Circuit breaker per version (opossum): what counts, volume threshold, rolling window, half-open trial, Retry-After.

import test from 'ava';
import type { ErrorCode } from '../../src/errors/codes.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { BackendBreaker, isBackendFailure, type BreakerSettings, type BreakerState } from '../../src/resilience/breaker.js';
import { createLogger } from '../../src/telemetry/log.js';
import { ManualClock } from '../helpers/manual-clock.js';

const log = createLogger('silent');
const SETTINGS: BreakerSettings = { enabled: true, volumeThreshold: 4, errorThresholdPercent: 50, windowMs: 10_000, windowBuckets: 10, resetTimeoutMs: 10_000 };

function breaker(settings: Partial<BreakerSettings> = {}, clock = new ManualClock()): BackendBreaker {
  const b = new BackendBreaker({ ...SETTINGS, ...settings }, 'model m version 2', log, clock);
  return b;
}

const failWith = (code: ErrorCode) => () => Promise.reject(new GatewayError(code));
const ok = () => Promise.resolve('ok');

/** Resolves on the next change to `state`. The ref'd guard timer also keeps the loop alive: opossum unrefs its reset timer. */
function whenState(b: BackendBreaker, state: BreakerState, timeoutMs = 5_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const guard = setTimeout(() => reject(new Error(`breaker did not become ${state} within ${timeoutMs} ms`)), timeoutMs);
    const off = b.onStateChange((s) => {
      if (s !== state) return;
      clearTimeout(guard);
      off();
      resolve();
    });
  });
}

const counts = test.macro({
  exec(t, err: unknown, expected: boolean) {
    t.is(isBackendFailure(err), expected);
  },
  title: (_ = '', err: unknown, expected: boolean) =>
    `${err instanceof GatewayError ? `${err.code} (${err.status})` : String(err)} ${expected ? 'counts' : 'does not count'} against the backend`,
});
for (const code of [
  'GW_ERR_BACKEND_FAILED',
  'GW_ERR_BACKEND_UNAVAILABLE',
  'GW_ERR_BACKEND_TIMEOUT',
  'GW_ERR_DEADLINE_EXCEEDED',
  'GW_ERR_BAD_GATEWAY',
  'GW_ERR_MODEL_NOT_READY',
  'GW_ERR_BACKEND_UNREACHABLE',
  // An open breaker speaks for its backend's recent failures (it can only come from a version's own guard).
  'GW_ERR_CIRCUIT_OPEN',
] as const) {
  test(counts, new GatewayError(code), true);
}
for (const code of [
  'GW_ERR_INVALID_REQUEST',
  'GW_ERR_BAD_JSON',
  'GW_ERR_BODY_TOO_LARGE',
  'GW_ERR_CLIENT_CLOSED',
  'GW_ERR_OVERLOADED',
  'GW_ERR_SHUTTING_DOWN',
  'GW_ERR_INTERNAL',
  'GW_ERR_NOT_REPRESENTABLE_IN_JSON',
  'GW_ERR_BODY_BUDGET_FULL',
  'GW_ERR_MEMORY_PRESSURE',
] as const) {
  test(counts, new GatewayError(code), false);
}
test(counts, new TypeError('a bug in the gateway'), false);
test('a deadline the caller chose (gRPC) does not count against the backend; the model’s own deadline does', (t) => {
  t.false(isBackendFailure(new GatewayError('GW_ERR_DEADLINE_EXCEEDED', 'the call’s deadline passed', { blame: 'caller' })));
  t.true(isBackendFailure(new GatewayError('GW_ERR_DEADLINE_EXCEEDED')));
});

test('stays closed below the volume threshold, opens once it is reached above the error percentage', async (t) => {
  const b = breaker();
  for (let i = 0; i < 3; i++) await t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_UNAVAILABLE')));
  t.is(b.snapshot().state, 'closed', '3 failures < volumeThreshold 4');
  await t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_UNAVAILABLE')));
  t.like(b.snapshot(), { state: 'open', opened: 1, window: { requests: 4, failures: 4, errorPercent: 100 } });
  let ran = false;
  const err = await t.throwsAsync(
    b.run(async () => {
      ran = true;
      return 'ok';
    }),
    { instanceOf: GatewayError },
  );
  t.false(ran, 'an open breaker never calls the backend');
  t.is(err!.code, 'GW_ERR_CIRCUIT_OPEN');
  t.is(err!.status, 503);
  t.is(err!.headers['retry-after'], '10');
  t.is(b.snapshot().rejected, 1);
  b.shutdown();
});

test('Retry-After counts down to the trial with the injected clock', async (t) => {
  const clock = new ManualClock();
  const b = breaker({ volumeThreshold: 1 }, clock);
  await t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_FAILED')));
  clock.advance(3_500);
  t.is(b.snapshot().retryInMs, 6_500);
  t.throws(() => b.refuseIfOpen(), { message: /next trial request is due in 7 s/ });
  b.shutdown();
});

test('4xx errors never open it, however many', async (t) => {
  const b = breaker({ volumeThreshold: 1, errorThresholdPercent: 1 });
  for (let i = 0; i < 50; i++) await t.throwsAsync(b.run(failWith('GW_ERR_INVALID_REQUEST')));
  t.like(b.snapshot(), { state: 'closed', window: { requests: 50, failures: 0 } });
  b.shutdown();
});

test('the error percentage must be exceeded: half failures at 50% stay closed', async (t) => {
  const b = breaker();
  // Success first, so the running error rate never exceeds 50% at any failure.
  for (let i = 0; i < 10; i++) await (i % 2 === 1 ? t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_FAILED'))) : b.run(ok));
  t.like(b.snapshot(), { state: 'closed', window: { requests: 10, failures: 5, errorPercent: 50 } });
  b.shutdown();
});

test('a failed result (a remote 5xx reply) counts as a failure but is still returned', async (t) => {
  const b = breaker({ volumeThreshold: 2 });
  const reply = { status: 502, body: { error: 'upstream says no' } };
  t.is(
    await b.run(
      () => Promise.resolve(reply),
      (r) => r.status >= 500,
    ),
    reply,
  );
  t.is(
    await b.run(
      () => Promise.resolve(reply),
      (r) => r.status >= 500,
    ),
    reply,
  );
  t.is(b.snapshot().state, 'open');
  b.shutdown();
});

test('failures that leave the rolling window no longer count', async (t) => {
  const clock = new ManualClock();
  const b = breaker({ volumeThreshold: 4, windowMs: 1_000, windowBuckets: 10 }, clock);
  for (let i = 0; i < 3; i++) await t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_FAILED')));
  clock.advance(1_000);
  t.like(b.snapshot().window, { requests: 0, failures: 0 });
  await t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_FAILED')));
  t.is(b.snapshot().state, 'closed', 'only 1 request in the window now');
  b.shutdown();
});

test('half-open lets exactly one trial through; its success closes the breaker', async (t) => {
  const b = breaker({ volumeThreshold: 1, resetTimeoutMs: 100 });
  await t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_UNAVAILABLE')));
  await whenState(b, 'half-open');
  let finishTrial!: (v: string) => void;
  const trial = b.run(() => new Promise<string>((resolve) => (finishTrial = resolve)));
  const second = await t.throwsAsync(b.run(ok), { instanceOf: GatewayError });
  t.is(second!.code, 'GW_ERR_CIRCUIT_OPEN', 'a second request while the trial runs is refused');
  t.is(second!.headers['retry-after'], '1');
  finishTrial('fine');
  t.is(await trial, 'fine');
  t.is(b.snapshot().state, 'closed');
  t.is(await b.run(ok), 'ok');
  b.shutdown();
});

const trialFails = test.macro(async (t, code: ErrorCode) => {
  const b = breaker({ volumeThreshold: 1, resetTimeoutMs: 100 });
  await t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_UNAVAILABLE')));
  await whenState(b, 'half-open');
  await t.throwsAsync(b.run(failWith(code)));
  t.like(b.snapshot(), { state: 'open', opened: 2 });
  b.shutdown();
});
test('a failed trial opens it again', trialFails, 'GW_ERR_BACKEND_TIMEOUT');
test('a trial the client abandons proves nothing: it stays open', trialFails, 'GW_ERR_CLIENT_CLOSED');

test('while closed, clients hanging up do not count against the backend', async (t) => {
  const b = breaker({ volumeThreshold: 1, errorThresholdPercent: 1 });
  for (let i = 0; i < 5; i++) await t.throwsAsync(b.run(failWith('GW_ERR_CLIENT_CLOSED')));
  t.is(b.snapshot().state, 'closed');
  b.shutdown();
});

test('after shutdown calls are refused as shutting down', async (t) => {
  const b = breaker();
  b.shutdown();
  const err = await t.throwsAsync(b.run(ok), { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_SHUTTING_DOWN');
});

test('consecutive calls that could not reach the backend open it at once, below the volume threshold; any other outcome resets the count', async (t) => {
  const b = breaker({ volumeThreshold: 100, consecutiveConnectFailures: 3 });
  // Two unreachable calls, then a success: the run is broken.
  for (let i = 0; i < 2; i++) await t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_UNREACHABLE')));
  await b.run(ok);
  for (let i = 0; i < 2; i++) await t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_UNREACHABLE')));
  t.is(b.snapshot().state, 'closed');
  // A timeout is a failure, but not a connection that never formed: it breaks the run too.
  await t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_TIMEOUT')));
  for (let i = 0; i < 2; i++) await t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_UNREACHABLE')));
  t.is(b.snapshot().state, 'closed');
  const opened = whenState(b, 'open');
  await t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_UNREACHABLE')));
  await opened;
  t.is(b.snapshot().state, 'open', 'three in a row, though the window holds 9 calls and the volume threshold is 100');
  await t.throwsAsync(b.run(ok), { message: /circuit breaker is open/ });
  b.shutdown();
});

test('consecutiveConnectFailures 0 turns the rule off', async (t) => {
  const b = breaker({ volumeThreshold: 100, consecutiveConnectFailures: 0 });
  for (let i = 0; i < 20; i++) await t.throwsAsync(b.run(failWith('GW_ERR_BACKEND_UNREACHABLE')));
  t.is(b.snapshot().state, 'closed');
  b.shutdown();
});
