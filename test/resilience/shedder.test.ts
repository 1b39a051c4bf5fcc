// Load shedding: a hard cap on in-flight requests per version, with an optional short bounded wait; beyond it → 503 at once.

import test from 'ava';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { ConcurrencyLimiter, type LimitSettings } from '../../src/resilience/shedder.js';
import { ManualClock } from '../helpers/manual-clock.js';

const open = () => new AbortController().signal;

function limiter(settings: Partial<LimitSettings> = {}, clock = new ManualClock()) {
  return new ConcurrencyLimiter({ maxConcurrent: 2, maxQueue: 0, maxQueueWaitMs: 100, ...settings }, 'model m version 1', clock);
}

async function overloaded(t: import('ava').ExecutionContext, p: Promise<unknown>): Promise<GatewayError> {
  const err = await t.throwsAsync(p, { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_OVERLOADED');
  t.is(err!.status, 503);
  t.is(err!.headers['retry-after'], '1');
  return err!;
}

test('admits up to maxConcurrent, rejects the next at once with 503 + Retry-After, and a release frees a slot', async (t) => {
  const l = limiter();
  const a = await l.acquire(open());
  await l.acquire(open());
  const err = await overloaded(t, l.acquire(open()));
  t.regex(err.message, /model m version 1 is at its limit of 2 concurrent requests/);
  a();
  a(); // releasing twice must not free a second slot
  await l.acquire(open());
  await overloaded(t, l.acquire(open()));
  t.like(l.snapshot(), { maxConcurrent: 2, inFlight: 2, queued: 0, admitted: 3, shed: 2 });
});

test('with a queue, waiters get freed slots in arrival order', async (t) => {
  const l = limiter({ maxConcurrent: 1, maxQueue: 2 });
  const first = await l.acquire(open());
  const order: string[] = [];
  const b = l.acquire(open()).then((release) => (order.push('b'), release));
  const c = l.acquire(open()).then((release) => (order.push('c'), release));
  await overloaded(t, l.acquire(open())); // the queue of 2 is full
  t.like(l.snapshot(), { inFlight: 1, queued: 2 });
  first();
  (await b)();
  await c;
  t.deepEqual(order, ['b', 'c']);
  t.like(l.snapshot(), { inFlight: 1, queued: 0 });
});

const waitsThenFails = test.macro(async (t, how: 'timeout' | 'abort') => {
  const clock = new ManualClock();
  const l = limiter({ maxConcurrent: 1, maxQueue: 1, maxQueueWaitMs: 250 }, clock);
  await l.acquire(open());
  const aborter = new AbortController();
  const waiting = l.acquire(aborter.signal);
  if (how === 'timeout') {
    clock.advance(249);
    t.is(l.snapshot().queued, 1);
    clock.advance(1);
    const err = await overloaded(t, waiting);
    t.regex(err.message, /no free slot within 250 ms/);
  } else {
    const reason = new GatewayError('GW_ERR_DEADLINE_EXCEEDED');
    aborter.abort(reason);
    t.is(await t.throwsAsync(waiting), reason);
    t.is(clock.pending, 0, 'the wait timer is cancelled');
  }
  t.is(l.snapshot().queued, 0);
});
test('a waiter gives up after maxQueueWaitMs with 503', waitsThenFails, 'timeout');
test("a waiter whose request is aborted leaves the queue with the signal's reason", waitsThenFails, 'abort');

test('an already aborted signal never takes a slot', async (t) => {
  const l = limiter();
  const aborter = new AbortController();
  aborter.abort(new GatewayError('GW_ERR_CLIENT_CLOSED'));
  await t.throwsAsync(l.acquire(aborter.signal), { instanceOf: GatewayError });
  t.is(l.snapshot().inFlight, 0);
});
