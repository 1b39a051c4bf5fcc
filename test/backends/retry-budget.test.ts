// Retry budget: a floor of retries per second plus a share of recent requests, over a sliding window.

import test from 'ava';
import { RetryBudget } from '../../src/backends/retry-budget.js';
import { ManualClock } from '../helpers/manual-clock.js';

function drain(budget: RetryBudget): number {
  let n = 0;
  while (budget.tryRetry() && n < 10_000) n++;
  return n;
}

const allows = test.macro((t, settings: { percent: number; minPerSecond: number }, requests: number, expected: number) => {
  const budget = new RetryBudget({ ...settings, windowMs: 10_000 }, new ManualClock());
  for (let i = 0; i < requests; i++) budget.recordRequest();
  t.is(drain(budget), expected);
});

test('with no traffic only the floor is available (minPerSecond × window)', allows, { percent: 20, minPerSecond: 3 }, 0, 30);
test('20% of the window’s requests on top of the floor', allows, { percent: 20, minPerSecond: 3 }, 1000, 230);
test('a zero budget never retries', allows, { percent: 0, minPerSecond: 0 }, 1000, 0);

test('spent retries come back when the window slides past them', (t) => {
  const clock = new ManualClock();
  const budget = new RetryBudget({ percent: 0, minPerSecond: 1, windowMs: 10_000 }, clock);
  t.is(drain(budget), 10);
  clock.advance(5_000);
  t.false(budget.tryRetry(), 'still inside the window');
  clock.advance(5_000);
  t.is(drain(budget), 10);
  t.deepEqual(budget.totals(), { requests: 0, retries: 10 });
});
