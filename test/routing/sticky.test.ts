// Sticky routing: the same key keeps its version, shares follow the weights, and weight changes move keys monotonically.

import test from 'ava';
import fc from 'fast-check';
import { rendezvousPick, sha256KeyHash, stickyKey, type KeyHash } from '../../src/routing/sticky.js';
import type { VersionWeight } from '../../src/routing/weighted.js';

const KEYS = Array.from({ length: 20_000 }, (_, i) => `user-${i}`);
const split = (weights: Record<string, number>): VersionWeight[] => Object.entries(weights).map(([version, weight]) => ({ version, weight }));
const assign = (weights: Record<string, number>, keys = KEYS, model = 'iris') => keys.map((k) => rendezvousPick(model, k, split(weights), sha256KeyHash)!);

test('the hash is deterministic, inside (0, 1), and differs by version and by model', (t) => {
  const h = sha256KeyHash('iris', '1', 'user-1');
  t.is(h, sha256KeyHash('iris', '1', 'user-1'));
  t.true(h > 0 && h < 1);
  t.not(h, sha256KeyHash('iris', '2', 'user-1'));
  t.not(h, sha256KeyHash('other', '1', 'user-1'));
});

test('the same key always gets the same version for the same weights', (t) => {
  const first = assign({ '1': 90, '2': 10 });
  const again = assign({ '1': 90, '2': 10 });
  t.deepEqual(again, first);
});

const shares = test.macro({
  exec(t, weights: Record<string, number>) {
    const picks = assign(weights);
    const total = Object.values(weights).reduce((a, b) => a + b, 0);
    for (const [version, weight] of Object.entries(weights)) {
      const p = weight / total;
      const observed = picks.filter((v) => v === version).length / KEYS.length;
      // 5 binomial standard deviations over 20,000 keys (at most ±1.8 points): the keys' hashes are fixed, so no flake.
      const tolerance = 5 * Math.sqrt((p * (1 - p)) / KEYS.length);
      t.true(Math.abs(observed - p) <= tolerance, `version ${version}: ${(observed * 100).toFixed(2)}% vs ${(p * 100).toFixed(2)}%`);
    }
  },
  title: (given = '') => `keys spread in proportion to the weights: ${given}`,
});

test('90/10', shares, { '1': 90, '2': 10 });
test('50/30/20', shares, { '1': 50, '2': 30, '3': 20 });
test('1/1/1/1', shares, { a: 1, b: 1, c: 1, d: 1 });

test('raising v2 from 10% to 20% moves callers only to v2, about the 11% of v1 callers it must', (t) => {
  const before = assign({ '1': 90, '2': 10 });
  const after = assign({ '1': 80, '2': 20 });
  let toV2 = 0;
  for (let i = 0; i < KEYS.length; i++) {
    if (before[i] === after[i]) continue;
    t.is(before[i], '1', `${KEYS[i]} moved from ${before[i]} to ${after[i]}`);
    t.is(after[i], '2');
    toV2++;
  }
  // Exactly the callers needed: 10 points of traffic, i.e. ~2,000 of 20,000 keys.
  t.true(Math.abs(toV2 / KEYS.length - 0.1) < 0.01, `moved ${toV2}`);
  // And nobody left v2.
  t.true(before.every((v, i) => v !== '2' || after[i] === '2'));
});

test('with three versions, raising one weight moves callers only to it; the others never trade callers', (t) => {
  const before = assign({ '1': 60, '2': 30, '3': 10 });
  const after = assign({ '1': 60, '2': 30, '3': 25 });
  const moves = new Map<string, number>();
  before.forEach((v, i) => {
    if (v !== after[i]) moves.set(`${v}→${after[i]}`, (moves.get(`${v}→${after[i]}`) ?? 0) + 1);
  });
  t.deepEqual([...moves.keys()].sort(), ['1→3', '2→3']);
  // v1 and v2 lose in proportion to their weights (2:1), as the shares demand.
  const ratio = moves.get('1→3')! / moves.get('2→3')!;
  t.true(ratio > 1.7 && ratio < 2.3, `ratio ${ratio}`);
});

test('lowering a weight moves callers only away from that version', (t) => {
  const before = assign({ '1': 50, '2': 50 }, KEYS.slice(0, 5000));
  const after = assign({ '1': 50, '2': 20 }, KEYS.slice(0, 5000));
  const moved = before.flatMap((v, i) => (v === after[i] ? [] : [`${v}→${after[i]}`]));
  t.deepEqual([...new Set(moved)], ['2→1']);
  // v2's share falls from 50% to 20/70 ≈ 28.6%: about 21 points of the keys must move.
  t.true(Math.abs(moved.length / before.length - (0.5 - 20 / 70)) < 0.03, `moved ${moved.length}`);
});

test('property: for any weights and any single raised weight, every moved key moves to the raised version', (t) => {
  const keys = KEYS.slice(0, 300);
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 100 }), { minLength: 2, maxLength: 6 }).filter((ws) => ws.some((w) => w > 0)),
      fc.nat(),
      fc.integer({ min: 1, max: 100 }),
      (ws, which, raise) => {
        const i = which % ws.length;
        const before = Object.fromEntries(ws.map((w, j) => [`v${j}`, w]));
        const after = { ...before, [`v${i}`]: ws[i]! + raise };
        const a = assign(before, keys, 'prop');
        const b = assign(after, keys, 'prop');
        return a.every((v, k) => v === b[k] || b[k] === `v${i}`);
      },
    ),
    { numRuns: 150, seed: 20240611 },
  );
  t.pass();
});

test('the choice is the lowest −ln(h)/w score (pinned hash values)', (t) => {
  const fixed: Record<string, number> = { a: 0.5, b: 0.9 };
  const hash: KeyHash = (_m, version) => fixed[version]!;
  // −ln 0.5 = 0.69, −ln 0.9 = 0.105: b wins at equal weights…
  t.is(rendezvousPick('m', 'k', split({ a: 1, b: 1 }), hash), 'b');
  // …and a wins once its weight is 7× b's (0.69/7 = 0.099 < 0.105).
  t.is(rendezvousPick('m', 'k', split({ a: 7, b: 1 }), hash), 'a');
  // Weight 0 is never chosen, whatever its hash.
  t.is(rendezvousPick('m', 'k', split({ a: 1, b: 0 }), hash), 'a');
});

const keyFrom = test.macro({
  exec(
    t,
    source: Parameters<typeof stickyKey>[0],
    headers: Record<string, string | string[] | undefined>,
    claims: Record<string, unknown> | undefined,
    expected: string | undefined,
  ) {
    // As Context.header reads them: the first value of a repeated header.
    const header = (name: string) => {
      const v = headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    t.is(stickyKey(source, header, claims), expected);
  },
  title: (given = '') => `sticky key: ${given}`,
});

test('a header value', keyFrom, { header: 'x-user-id' }, { 'x-user-id': 'alice' }, undefined, 'alice');
test('the first of a repeated header', keyFrom, { header: 'x-user-id' }, { 'x-user-id': ['alice', 'bob'] }, undefined, 'alice');
test('no header → no key (weighted random)', keyFrom, { header: 'x-user-id' }, {}, undefined, undefined);
test('an empty header → no key', keyFrom, { header: 'x-user-id' }, { 'x-user-id': '' }, undefined, undefined);
test('a string claim', keyFrom, { claim: 'sub' }, {}, { sub: 'alice' }, 'alice');
test('a numeric claim', keyFrom, { claim: 'tenant' }, {}, { tenant: 42 }, '42');
test('an object claim is not a key', keyFrom, { claim: 'sub' }, {}, { sub: { a: 1 } }, undefined);
test('no identity → no key', keyFrom, { claim: 'sub' }, {}, undefined, undefined);
test('a huge header is cut to 512 characters', keyFrom, { header: 'x-user-id' }, { 'x-user-id': 'x'.repeat(5000) }, undefined, 'x'.repeat(512));
