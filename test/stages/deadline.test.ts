// Deadline stage: the model's timeoutMs, counted from the end of the body, aborts the downstream call and answers 504.

import test from 'ava';
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { parseConfig } from '../../src/config/load.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { RequestBody } from '../../src/http/request-body.js';
import type { ServedVersion } from '../../src/models/catalog.js';
import { createContext } from '../../src/pipeline/context.js';
import type { Context, Operation, Reply } from '../../src/pipeline/stage.js';
import { deadlineStage } from '../../src/stages/deadline.js';
import { ROOT, gatewayConfig, irisModels } from '../helpers/gateway.js';
import { ManualClock } from '../helpers/manual-clock.js';

async function stage(clock: ManualClock) {
  const models = irisModels() as { iris: Record<string, unknown> };
  models.iris.timeoutMs = 500;
  const config = await parseConfig(gatewayConfig({ models }), { baseDir: ROOT, source: 'test' });
  return deadlineStage({ timeouts: new Map(Object.entries(config.models).map(([name, m]) => [name, m.timeoutMs])), clock });
}

/** A real IncomingMessage whose body arrives when `end()` is called. */
function incoming(): { req: IncomingMessage; end(): void } {
  const req = new IncomingMessage(new Socket());
  return {
    req,
    end() {
      req.push('{}');
      req.push(null);
    },
  };
}

function ctxFor(req: IncomingMessage, operation: Operation = 'infer'): Context {
  const ctx = createContext({
    requestId: 'r1',
    operation,
    modelName: 'iris',
    pathVersion: '1',
    headers: {},
    clientAddress: '127.0.0.1',
    body: new RequestBody(req, 1 << 20),
  });
  ctx.target = { model: 'iris', version: '1' } as ServedVersion;
  return ctx;
}

/** A downstream call that only ends when its signal aborts, like a backend call to a hung remote. */
function hangingNext(ctx: Context, seen: AbortSignal[]): () => Promise<Reply> {
  return () => {
    const signal = ctx.signal;
    seen.push(signal);
    return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
  };
}

test('expiry aborts the downstream signal with GW_ERR_DEADLINE_EXCEEDED (504) at exactly timeoutMs', async (t) => {
  const clock = new ManualClock();
  const s = await stage(clock);
  const { req, end } = incoming();
  end();
  const ctx = ctxFor(req);
  const seen: AbortSignal[] = [];
  const reply = s.handle(ctx, hangingNext(ctx, seen));
  await ctx.body.bytes();
  await new Promise<void>((resolve) => setImmediate(resolve));
  clock.advance(499);
  t.false(seen[0]!.aborted);
  clock.advance(1);
  const err = await t.throwsAsync(reply, { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_DEADLINE_EXCEEDED');
  t.is(err!.status, 504);
  t.regex(err!.message, /model 'iris' did not answer within its deadline of 500 ms/);
  t.is(seen[0]!.reason, err);
});

test('the clock starts once the body has been received, not before', async (t) => {
  const clock = new ManualClock();
  const s = await stage(clock);
  const { req, end } = incoming();
  const ctx = ctxFor(req);
  const seen: AbortSignal[] = [];
  const reply = s.handle(ctx, hangingNext(ctx, seen));
  clock.advance(5_000); // a slow upload: not the model's time
  t.is(clock.pending, 0);
  end();
  await ctx.body.bytes();
  await new Promise<void>((resolve) => setImmediate(resolve));
  t.is(clock.pending, 1);
  clock.advance(500);
  await t.throwsAsync(reply, { instanceOf: GatewayError, message: /deadline of 500 ms/ });
});

test('a reply in time is returned and its timer cancelled; a client abort still reaches the backend', async (t) => {
  const clock = new ManualClock();
  const s = await stage(clock);
  const { req, end } = incoming();
  end();
  const ctx = ctxFor(req);
  t.deepEqual(await s.handle(ctx, () => Promise.resolve({ status: 200, body: { ok: true } })), { status: 200, body: { ok: true } });
  t.is(clock.pending, 0);

  const second = incoming();
  second.end();
  const ctx2 = ctxFor(second.req);
  const seen: AbortSignal[] = [];
  const reply = s.handle(ctx2, hangingNext(ctx2, seen));
  await ctx2.body.bytes();
  await new Promise<void>((resolve) => setImmediate(resolve));
  const gone = new GatewayError('GW_ERR_CLIENT_CLOSED');
  ctx2.abort(gone); // the client went away
  t.is(await t.throwsAsync(reply), gone);
  t.is(seen[0]!.reason, gone);
});

test('metadata and readiness calls get no deadline and keep their signal', async (t) => {
  const s = await stage(new ManualClock());
  const { req } = incoming();
  const ctx = ctxFor(req, 'model-metadata');
  const before = ctx.signal;
  await s.handle(ctx, () => Promise.resolve({ status: 200, body: {} }));
  t.is(ctx.signal, before);
  t.false(ctx.signal.aborted);
});

/** Lets the stage and the downstream call run up to their next real wait (body read, timer started). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * A downstream call that reads the body like a backend, then keeps the signal it was given and waits until the test
 * completes it or that signal aborts. Only the signal and the reply are observed, never how the stage is built.
 */
function controlledNext(ctx: Context): { next: () => Promise<Reply>; signal: () => AbortSignal; complete(reply: Reply): void } {
  let signal: AbortSignal | undefined;
  let complete: ((reply: Reply) => void) | undefined;
  return {
    next: async () => {
      await ctx.body.bytes();
      const s = ctx.signal;
      signal = s;
      return new Promise<Reply>((resolve, reject) => {
        complete = resolve;
        if (s.aborted) return reject(s.reason);
        s.addEventListener('abort', () => reject(s.reason), { once: true });
      });
    },
    signal: () => {
      if (!signal) throw new Error('the downstream call has not started');
      return signal;
    },
    complete: (reply) => {
      if (!complete) throw new Error('the downstream call has not started');
      complete(reply);
    },
  };
}

/** Starts one inference through `s` with its body already received; `settled` records how its reply ended. */
function start(s: Awaited<ReturnType<typeof stage>>) {
  const { req, end } = incoming();
  end();
  const ctx = ctxFor(req);
  const downstream = controlledNext(ctx);
  const reply = s.handle(ctx, downstream.next);
  const outcome: { settled?: 'replied' | 'failed'; value?: unknown } = {};
  reply.then(
    (value) => Object.assign(outcome, { settled: 'replied', value }),
    (err: unknown) => Object.assign(outcome, { settled: 'failed', value: err }),
  );
  return { reply, downstream, outcome };
}

/** Two inferences through one stage, the second started 300 ms after the first; the first has just expired (t = 500). */
async function firstExpired(t: import('ava').ExecutionContext) {
  const clock = new ManualClock();
  const s = await stage(clock);
  const first = start(s);
  await settle();
  clock.advance(300);
  const second = start(s);
  await settle();
  t.not(first.downstream.signal(), second.downstream.signal(), 'each request gets its own downstream signal');
  clock.advance(199);
  await settle();
  t.false(first.downstream.signal().aborted);
  t.false(second.downstream.signal().aborted);
  clock.advance(1);
  const err = await t.throwsAsync(first.reply, { instanceOf: GatewayError, message: /deadline of 500 ms/ });
  t.is(err!.status, 504);
  t.true(first.downstream.signal().aborted);
  t.is(first.downstream.signal().reason, err);
  await settle();
  t.false(second.downstream.signal().aborted, 'the first request’s timeout must not abort the second request’s call');
  t.is(second.outcome.settled, undefined, 'the second request is still waiting for its backend');
  return { clock, first, second, firstError: err! };
}

test('a timeout aborts only its own request: a request started 300 ms later keeps its signal and still completes', async (t) => {
  const { second } = await firstExpired(t);
  second.downstream.complete({ status: 200, body: { ok: 'second' } });
  t.deepEqual(await second.reply, { status: 200, body: { ok: 'second' } });
});

test('a timeout aborts only its own request: the later request expires at its own deadline, not at the first one’s', async (t) => {
  const { clock, second, firstError } = await firstExpired(t);
  clock.advance(299); // t = 799: 499 ms into the second request
  await settle();
  t.false(second.downstream.signal().aborted);
  t.is(second.outcome.settled, undefined);
  clock.advance(1); // t = 800: its own 500 ms
  const err = await t.throwsAsync(second.reply, { instanceOf: GatewayError, message: /deadline of 500 ms/ });
  t.is(err!.status, 504);
  t.not(err, firstError, 'its own deadline error, not the first request’s');
  t.true(second.downstream.signal().aborted);
  t.is(second.downstream.signal().reason, err);
});
