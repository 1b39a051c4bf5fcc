// The onion: stages run in order, see the reply on the way out, and errors propagate to the one mapper.

import test from 'ava';
import { compose } from '../../src/pipeline/compose.js';
import type { Stage } from '../../src/pipeline/stage.js';
import { GatewayError } from '../../src/errors/gateway-error.js';

import { bareContext as ctx, recorder } from '../helpers/stages.js';

test('stages wrap each other in order (code before and after next)', async (t) => {
  const log: string[] = [];
  const terminal: Stage = { name: 'end', handle: async () => (log.push('end'), { status: 200, body: 'ok' }) };
  const reply = await compose([recorder('a', log), recorder('b', log), terminal])(ctx());
  t.deepEqual(reply, { status: 200, body: 'ok' });
  t.deepEqual(log, ['a:in', 'b:in', 'end', 'b:out', 'a:out']);
});

test('a stage can answer without calling next (short-circuit)', async (t) => {
  const log: string[] = [];
  const deny: Stage = { name: 'deny', handle: async () => ({ status: 403, body: { error: 'no' } }) };
  const reply = await compose([recorder('a', log), deny, recorder('never', log)])(ctx());
  t.is(reply.status, 403);
  t.deepEqual(log, ['a:in', 'a:out']);
});

test('thrown errors, sync or async, reach the caller as rejections', async (t) => {
  const sync: Stage = {
    name: 'sync',
    handle() {
      throw new GatewayError('GW_ERR_MODEL_NOT_FOUND');
    },
  };
  await t.throwsAsync(compose([sync])(ctx()), { instanceOf: GatewayError, message: 'unknown model' });
  const outer: Stage = { name: 'outer', handle: (_c, next) => next() };
  await t.throwsAsync(compose([outer, sync])(ctx()), { instanceOf: GatewayError });
});

test('running off the end of the chain, or calling next twice, is an internal error', async (t) => {
  const passthrough: Stage = { name: 'p', handle: (_c, next) => next() };
  const offEnd = await t.throwsAsync(compose([passthrough])(ctx()), { instanceOf: GatewayError });
  t.is(offEnd!.code, 'GW_ERR_INTERNAL');
  const twice: Stage = { name: 'twice', handle: async (_c, next) => (await next(), next()) };
  const end: Stage = { name: 'end', handle: async () => ({ status: 200, body: null }) };
  const err = await t.throwsAsync(compose([twice, end])(ctx()), { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_INTERNAL');
});
