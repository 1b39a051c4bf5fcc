// Shadow comparison rules: labels, top-1 of scores, regression tolerances, NaN, and every way two tensors can fail to match.

import test from 'ava';
import type { CompareRule } from '../../src/config/schema.js';
import type { Tensor } from '../../src/protocol/oip.js';
import { floatToHalf } from '../../src/protocol/tensor.js';
import { defaultRule, ShadowComparator, type OutputComparison } from '../../src/shadow/compare.js';

const t64 = (name: string, values: number[], shape = [values.length]): Tensor => ({
  name,
  datatype: 'INT64',
  shape,
  data: BigInt64Array.from(values.map(BigInt)),
});
const f32 = (name: string, values: number[], shape: number[]): Tensor => ({ name, datatype: 'FP32', shape, data: Float32Array.from(values) });
const f64 = (name: string, values: number[], shape: number[]): Tensor => ({ name, datatype: 'FP64', shape, data: Float64Array.from(values) });

const compares = test.macro({
  exec(t, rules: Record<string, CompareRule>, primary: Tensor[], shadow: Tensor[], expected: Partial<OutputComparison>[], agreed: boolean) {
    const result = new ShadowComparator(rules).compare(primary, shadow);
    t.is(result.outputs.length, expected.length);
    expected.forEach((e, i) => t.like(result.outputs[i], e));
    t.is(result.agreed, agreed);
  },
  title: (given = '') => `compare: ${given}`,
});

test(
  'identical labels agree',
  compares,
  {},
  [t64('label', [0, 1, 2])],
  [t64('label', [0, 1, 2])],
  [{ name: 'label', mode: 'classification', rows: 3, rowsAgreed: 3 }],
  true,
);
test('one differing label of three', compares, {}, [t64('label', [0, 1, 2])], [t64('label', [0, 2, 2])], [{ rows: 3, rowsAgreed: 2 }], false);
test(
  'a label row of several elements agrees only if all match',
  compares,
  {},
  [t64('top2', [1, 2, 0, 1], [2, 2])],
  [t64('top2', [1, 2, 1, 0], [2, 2])],
  [{ rows: 2, rowsAgreed: 1 }],
  false,
);
test(
  'BYTES labels compare exactly',
  compares,
  {},
  [{ name: 'cls', datatype: 'BYTES', shape: [2], data: ['cat', 'dog'] }],
  [{ name: 'cls', datatype: 'BYTES', shape: [2], data: ['cat', 'cow'] }],
  [{ mode: 'classification', rows: 2, rowsAgreed: 1 }],
  false,
);

const top1: Record<string, CompareRule> = { p: { mode: 'classification' } };
test(
  'classification of scores is top-1 per row',
  compares,
  top1,
  [f32('p', [0.1, 0.7, 0.2, 0.5, 0.3, 0.2], [2, 3])],
  [f32('p', [0.2, 0.5, 0.3, 0.3, 0.6, 0.1], [2, 3])],
  [{ rows: 2, rowsAgreed: 1 }],
  false,
);
test(
  'a single probability per row is a p ≥ 0.5 decision',
  compares,
  top1,
  [f32('p', [0.9, 0.2, 0.51], [3, 1])],
  [f32('p', [0.6, 0.4, 0.49], [3, 1])],
  [{ rows: 3, rowsAgreed: 2 }],
  false,
);

test(
  'float outputs default to regression; within 1% relative L2 they agree',
  compares,
  {},
  [f64('y', [100, 200], [2, 1])],
  [f64('y', [100.5, 199], [2, 1])],
  [{ mode: 'regression', rows: 2, rowsAgreed: 2, maxAbsDiff: 1 }],
  true,
);
test(
  'beyond the tolerance a row disagrees; maxAbsDiff and relL2 are reported',
  compares,
  {},
  [f64('y', [3, 4, 1, 0], [2, 2])],
  [f64('y', [3, 4, 1.5, 0], [2, 2])],
  [{ rows: 2, rowsAgreed: 1, maxAbsDiff: 0.5, relL2: Math.sqrt(0.25 / 26) }],
  false,
);
test(
  'a configured tolerance replaces the default',
  compares,
  { y: { mode: 'regression', maxRelL2: 0.5, maxAbsDiff: 0 } },
  [f64('y', [1, 1], [1, 2])],
  [f64('y', [1.3, 1], [1, 2])],
  [{ rowsAgreed: 1 }],
  true,
);
test(
  'an all-zero primary: agreement only through maxAbsDiff, relL2 is unbounded',
  compares,
  {},
  [f64('y', [0, 0], [1, 2])],
  [f64('y', [1e-3, 0], [1, 2])],
  [{ rowsAgreed: 0, relL2: Infinity, maxAbsDiff: 1e-3 }],
  false,
);
test('tiny absolute differences at zero still agree', compares, {}, [f64('y', [0, 0], [1, 2])], [f64('y', [1e-9, 0], [1, 2])], [{ rowsAgreed: 1 }], true);
test(
  'NaN in the same place on both sides is no difference',
  compares,
  {},
  [f64('y', [NaN, 1], [1, 2])],
  [f64('y', [NaN, 1], [1, 2])],
  [{ rowsAgreed: 1, maxAbsDiff: 0 }],
  true,
);
test(
  'NaN on one side is an infinite difference',
  compares,
  {},
  [f64('y', [NaN, 1], [1, 2])],
  [f64('y', [0, 1], [1, 2])],
  [{ rowsAgreed: 0, maxAbsDiff: Infinity }],
  false,
);
test(
  'FP16 is compared as numbers',
  compares,
  {},
  [{ name: 'h', datatype: 'FP16', shape: [1, 2], data: Uint16Array.from([floatToHalf(1), floatToHalf(2)]) }],
  [{ name: 'h', datatype: 'FP16', shape: [1, 2], data: Uint16Array.from([floatToHalf(1), floatToHalf(2.001)]) }],
  [{ mode: 'regression', rowsAgreed: 1 }],
  true,
);

test(
  'different datatypes are a mismatch (every row disagrees)',
  compares,
  {},
  [t64('label', [1, 2])],
  [{ name: 'label', datatype: 'INT32', shape: [2], data: Int32Array.from([1, 2]) }],
  [{ rows: 2, rowsAgreed: 0, mismatch: 'datatype INT64 vs INT32' }],
  false,
);
test(
  'different shapes are a mismatch',
  compares,
  {},
  [f32('p', [1, 2, 3, 4], [2, 2])],
  [f32('p', [1, 2, 3, 4], [1, 4])],
  [{ rows: 2, rowsAgreed: 0, mismatch: 'shape [2,2] vs [1,4]' }],
  false,
);
test(
  'an output missing from the shadow is a mismatch',
  compares,
  {},
  [t64('label', [1, 2]), f32('p', [1], [1, 1])],
  [f32('p', [1], [1, 1])],
  [
    { name: 'label', mismatch: 'missing from the shadow', rows: 2 },
    { name: 'p', rowsAgreed: 1 },
  ],
  false,
);
test(
  'an output only the shadow has is a mismatch',
  compares,
  {},
  [t64('label', [1])],
  [t64('label', [1]), t64('extra', [5, 6, 7])],
  [
    { name: 'label', rowsAgreed: 1 },
    { name: 'extra', mismatch: 'missing from the primary', rows: 3 },
  ],
  false,
);
test(
  'ignored outputs are not compared',
  compares,
  { p: { mode: 'ignore' } },
  [t64('label', [1]), f32('p', [0.1], [1, 1])],
  [t64('label', [1]), f32('p', [0.9], [1, 1])],
  [{ name: 'label', rowsAgreed: 1 }],
  true,
);
test(
  'regression of text is a mismatch, not a crash',
  compares,
  { s: { mode: 'regression', maxRelL2: 0.01, maxAbsDiff: 0 } },
  [{ name: 's', datatype: 'BYTES', shape: [1], data: ['a'] }],
  [{ name: 's', datatype: 'BYTES', shape: [1], data: ['a'] }],
  [{ mismatch: 'regression needs numbers, got BYTES' }],
  false,
);
test('a rank-0 tensor is one row', compares, {}, [f64('s', [1], [])], [f64('s', [1], [])], [{ rows: 1, rowsAgreed: 1 }], true);
test('an empty batch agrees trivially', compares, {}, [t64('label', [], [0])], [t64('label', [], [0])], [{ rows: 0, rowsAgreed: 0 }], true);

test('default rules by datatype', (t) => {
  for (const dt of ['FP16', 'FP32', 'FP64'] as const) t.is(defaultRule(dt).mode, 'regression', dt);
  for (const dt of ['BOOL', 'INT8', 'INT64', 'UINT8', 'UINT64', 'BYTES'] as const) t.is(defaultRule(dt).mode, 'classification', dt);
});
