// compose(): next() runs the rest of the chain at most once, for every stage — retries and failover belong to the
// terminal stage (stages/upstream.ts), as in Envoy's router — and a chain is checked when it is built.

import test from 'ava';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { compose } from '../../src/pipeline/compose.js';
import type { Context, Next, Stage } from '../../src/pipeline/stage.js';

import { bareContext as ctx, recorder } from '../helpers/stages.js';

/** Calls next(); if that rejects or the reply is a 5xx, calls it once more — what no stage may do. */
function retrier(log: string[]): Stage {
  return {
    name: 'retry',
    async handle(_ctx: Context, next: Next) {
      log.push('retry:first');
      try {
        const first = await next();
        if (first.status < 500) return first;
      } catch {
        // fall through to the second call
      }
      log.push('retry:second');
      return next();
    },
  };
}

/** A terminal stage answering from a script of outcomes, one per call; counts its calls. */
function terminal(log: string[], outcomes: ('ok' | 'fail' | 'throw')[]): Stage & { calls: number } {
  const stage = {
    name: 'end',
    calls: 0,
    async handle() {
      const outcome = outcomes[stage.calls++] ?? 'ok';
      log.push(`end:${outcome}`);
      if (outcome === 'throw') throw new GatewayError('GW_ERR_BACKEND_FAILED', 'first attempt failed');
      return { status: outcome === 'ok' ? 200 : 503, body: { attempt: stage.calls } };
    },
  };
  return stage;
}

async function internal(t: import('ava').ExecutionContext, run: Promise<unknown>): Promise<GatewayError> {
  const err = await t.throwsAsync(run, { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_INTERNAL');
  return err!;
}

for (const traced of [false, true]) {
  const mode = traced ? ' (traced)' : '';

  test(`a second next() after a failed reply is GW_ERR_INTERNAL; the downstream stages ran once${mode}`, async (t) => {
    const log: string[] = [];
    const end = terminal(log, ['fail', 'ok']);
    const err = await internal(t, compose([retrier(log), recorder('a', log), end], { traced })(ctx()));
    t.regex(String((err.cause as Error | undefined)?.message), /stage retry called next\(\) twice/);
    t.is(end.calls, 1);
    t.deepEqual(log, ['retry:first', 'a:in', 'end:fail', 'a:out', 'retry:second']);
  });

  test(`a second next() after a rejected first call is refused too${mode}`, async (t) => {
    const log: string[] = [];
    const end = terminal(log, ['throw', 'ok']);
    await internal(t, compose([retrier(log), recorder('a', log), end], { traced })(ctx()));
    t.is(end.calls, 1);
    t.deepEqual(log, ['retry:first', 'a:in', 'end:throw', 'retry:second']);
  });

  test(`one next() per stage per request: an outer stage's single call is unaffected by an inner one's refusal${mode}`, async (t) => {
    const log: string[] = [];
    const twice: Stage = { name: 'twice', handle: async (_c, next) => (await next(), next()) };
    const end = terminal(log, []);
    const err = await internal(t, compose([recorder('outer', log), twice, end], { traced })(ctx()));
    t.regex(String((err.cause as Error | undefined)?.message), /stage twice called next\(\) twice/);
    t.is(end.calls, 1);
    t.deepEqual(log, ['outer:in', 'end:ok']);
  });
}

test('a chain is checked when composed: no stages, or a stage without a name or handler, is a TypeError', (t) => {
  t.throws(() => compose([]), { instanceOf: TypeError, message: /at least one stage/ });
  t.throws(() => compose([{ name: 'x' } as unknown as Stage]), { instanceOf: TypeError, message: /invalid stage x/ });
  t.throws(() => compose([{ handle: () => Promise.resolve({ status: 200, body: null }) } as unknown as Stage]), { instanceOf: TypeError });
});
