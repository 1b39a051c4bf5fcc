// Weighted choice: weight validation, exact proportions under a uniform sweep, zero weights, and what "same weights" means.

import test from 'ava';
import { MAX_WEIGHT } from '../../src/config/schema.js';
import { completeWeights, sameWeights, WeightedChoice, weightProblems } from '../../src/routing/weighted.js';

const VERSIONS = ['1', '2', '3'];

const problems = test.macro({
  exec(t, weights: unknown, expected: string[]) {
    t.deepEqual(weightProblems(weights, VERSIONS), expected);
  },
  title: (given = '') => `weights: ${given}`,
});

test('a usable split has no problems', problems, { '1': 75, '2': 25 }, []);
test('zero weights are allowed next to a positive one', problems, { '1': 0, '2': 1, '3': 0 }, []);
test('an unknown version is named with the known ones', problems, { '1': 50, '9': 50 }, ["version '9' is not one of 1, 2, 3"]);
test('negative weights are rejected', problems, { '1': -1, '2': 5 }, ["weight of version '1' must be an integer from 0 to 1000000, got -1"]);
test('fractional weights are rejected', problems, { '1': 0.5, '2': 5 }, ["weight of version '1' must be an integer from 0 to 1000000, got 0.5"]);
test('string weights are rejected', problems, { '1': '75' }, [`weight of version '1' must be an integer from 0 to 1000000, got "75"`]);
test('huge weights are rejected', problems, { '1': MAX_WEIGHT + 1 }, [`weight of version '1' must be an integer from 0 to 1000000, got ${MAX_WEIGHT + 1}`]);
test('all-zero weights are rejected', problems, { '1': 0, '2': 0 }, ['at least one weight must be above 0']);
test('an empty map is rejected', problems, {}, ['weights must name at least one version']);
for (const notAnObject of [null, [75, 25], 'x', 7]) {
  test(`a non-object is rejected (${JSON.stringify(notAnObject)})`, problems, notAnObject, [
    'weights must be an object of version → integer weight, e.g. {"1": 90, "2": 10}',
  ]);
}

test('unlisted versions get weight 0, in the model’s version order', (t) => {
  t.deepEqual(completeWeights({ '3': 1, '1': 9 }, VERSIONS), [
    { version: '1', weight: 9 },
    { version: '2', weight: 0 },
    { version: '3', weight: 1 },
  ]);
});

test('"same weights" treats an unlisted version as weight 0', (t) => {
  t.true(
    sameWeights(
      [{ version: '1', weight: 5 }],
      [
        { version: '1', weight: 5 },
        { version: '2', weight: 0 },
      ],
    ),
  );
  t.false(
    sameWeights(
      [{ version: '1', weight: 5 }],
      [
        { version: '1', weight: 5 },
        { version: '2', weight: 1 },
      ],
    ),
  );
});

/** A uniform sweep of [0, 1): n evenly spaced values, so picks are exactly proportional. */
function sweep(n: number): () => number {
  let i = 0;
  return () => (i++ % n) / n;
}

const proportions = test.macro({
  exec(t, weights: Record<string, number>, draws: number, expected: Record<string, number>) {
    const choice = new WeightedChoice(completeWeights(weights, VERSIONS));
    const rng = sweep(draws);
    const counts: Record<string, number> = {};
    for (let i = 0; i < draws; i++) {
      const v = choice.pick(rng);
      counts[v] = (counts[v] ?? 0) + 1;
    }
    t.deepEqual(counts, expected);
  },
  title: (given = '') => `picks are exactly proportional to weights: ${given}`,
});

test('90/10', proportions, { '1': 90, '2': 10 }, 1000, { '1': 900, '2': 100 });
test('1/2/1 with three versions', proportions, { '1': 1, '2': 2, '3': 1 }, 400, { '1': 100, '2': 200, '3': 100 });
test('a zero-weight version is never picked', proportions, { '1': 0, '2': 3, '3': 0 }, 300, { '2': 300 });
test('the last version gets the top of the range', proportions, { '1': 1, '3': 1 }, 2, { '1': 1, '3': 1 });

test('rng values at the edges stay inside the range', (t) => {
  const choice = new WeightedChoice(completeWeights({ '1': 1, '2': 1 }, VERSIONS));
  t.is(
    choice.pick(() => 0),
    '1',
  );
  t.is(
    choice.pick(() => 1 - Number.EPSILON),
    '2',
  );
});

test('share and heaviest (ties go to the later version)', (t) => {
  const choice = new WeightedChoice(completeWeights({ '1': 30, '2': 30, '3': 40 }, VERSIONS));
  t.is(choice.share('3'), 0.4);
  t.is(choice.heaviest(), '3');
  t.is(new WeightedChoice(completeWeights({ '1': 5, '2': 5 }, VERSIONS)).heaviest(), '2');
});

test('a split with no positive weight cannot be built', (t) => {
  t.throws(() => new WeightedChoice(completeWeights({ '1': 0 }, VERSIONS)), { message: /above 0/ });
});
