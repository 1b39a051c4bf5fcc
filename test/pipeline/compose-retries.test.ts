// compose(): a stage declaring `retries: true` may run the rest of the chain again (the breaker stage re-serves a failed
// rollout candidate's request from stable); for every other stage a second next() stays an internal error.

import test from 'ava';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { compose } from '../../src/pipeline/compose.js';
import type { Context, Next, Stage } from '../../src/pipeline/stage.js';

import { bareContext as ctx, recorder } from '../helpers/stages.js';

/** Calls next(); if that rejects or the reply is a 5xx, calls it once more. */
function retrier(log: string[], retries: boolean): Stage {
  const handle = async (_ctx: Context, next: Next) => {
    log.push('retry:first');
    try {
      const first = await next();
      if (first.status < 500) return first;
    } catch {
      // fall through to the second call
    }
    log.push('retry:second');
    return next();
  };
  return retries ? { name: 'retry', retries: true, handle } : { name: 'retry', handle };
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

  test(`a stage with retries: true can call next() twice; the downstream stages run twice${mode}`, async (t) => {
    const log: string[] = [];
    const end = terminal(log, ['fail', 'ok']);
    const reply = await compose([recorder('outer', log), retrier(log, true), recorder('a', log), recorder('b', log), end], { traced })(ctx());
    t.deepEqual(reply, { status: 200, body: { attempt: 2 } });
    t.is(end.calls, 2);
    t.deepEqual(log, [
      'outer:in',
      'retry:first',
      'a:in',
      'b:in',
      'end:fail',
      'b:out',
      'a:out',
      'retry:second',
      'a:in',
      'b:in',
      'end:ok',
      'b:out',
      'a:out',
      'outer:out',
    ]);
  });

  test(`a retrying stage may call next() again after the first call rejected${mode}`, async (t) => {
    const log: string[] = [];
    const end = terminal(log, ['throw', 'ok']);
    const reply = await compose([retrier(log, true), recorder('a', log), end], { traced })(ctx());
    t.deepEqual(reply, { status: 200, body: { attempt: 2 } });
    t.deepEqual(log, ['retry:first', 'a:in', 'end:throw', 'retry:second', 'a:in', 'end:ok', 'a:out']);
  });

  test(`without retries, a second next() is GW_ERR_INTERNAL and the downstream stages do not run again${mode}`, async (t) => {
    const log: string[] = [];
    const end = terminal(log, ['fail', 'ok']);
    const err = await internal(t, compose([retrier(log, false), recorder('a', log), end], { traced })(ctx()));
    t.regex(String((err.cause as Error | undefined)?.message), /stage retry called next\(\) twice/);
    t.is(end.calls, 1);
    t.deepEqual(log, ['retry:first', 'a:in', 'end:fail', 'a:out', 'retry:second']);
  });

  test(`a retrying stage does not let the stages after it call next() twice${mode}`, async (t) => {
    const log: string[] = [];
    const twice: Stage = { name: 'twice', handle: async (_c, next) => (await next(), next()) };
    const end = terminal(log, []);
    // The retrier sees the internal error as a failed first call and runs the chain again: it fails the same way.
    const err = await internal(t, compose([retrier(log, true), twice, end], { traced })(ctx()));
    t.regex(String((err.cause as Error | undefined)?.message), /stage twice called next\(\) twice/);
    t.is(end.calls, 2, 'once per run of the chain, never a second time from the stage without retries');
  });
}

test('traced: true keeps the retries flag of the stage it wraps (and adds none)', async (t) => {
  // Composition is the only observable: a traced retrying stage still may call next() twice, a traced plain one not.
  const log: string[] = [];
  const ok = terminal(log, ['fail', 'ok']);
  t.is((await compose([retrier(log, true), ok], { traced: true })(ctx())).status, 200);
  const plain = terminal([], ['fail', 'ok']);
  await internal(t, compose([retrier([], false), plain], { traced: true })(ctx()));
  t.is(plain.calls, 1);
});

test('a retrying stage calling next() a third time still runs the chain (the flag is not a one-shot)', async (t) => {
  const log: string[] = [];
  const end = terminal(log, ['fail', 'fail', 'ok']);
  const thrice: Stage = {
    name: 'thrice',
    retries: true,
    async handle(_c, next) {
      let reply = await next();
      for (let i = 0; i < 2 && reply.status >= 500; i++) reply = await next();
      return reply;
    },
  };
  const reply = await compose([thrice, recorder('a', log), end])(ctx());
  t.deepEqual(reply, { status: 200, body: { attempt: 3 } });
  t.is(end.calls, 3);
});
