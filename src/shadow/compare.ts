// Shadow comparison: a primary's and its shadow's outputs, tensor by tensor and row by row, as classification or regression.

import type { CompareRule } from '../config/schema.js';
import type { Datatype, Tensor, TensorData } from '../protocol/oip.js';
import { formatShape, halfToFloat } from '../protocol/tensor.js';

export type CompareMode = CompareRule['mode'];

/** How one output compared. Rows are the first dimension (a rank-0 tensor is one row). */
export interface OutputComparison {
  name: string;
  mode: Exclude<CompareMode, 'ignore'>;
  rows: number;
  rowsAgreed: number;
  /** Why the tensors could not be compared element by element (missing, dtype, shape); all their rows disagree. */
  mismatch?: string;
  /** Regression only: the largest |shadow − primary| over the tensor. */
  maxAbsDiff?: number;
  /** Regression only: ‖shadow − primary‖₂ / ‖primary‖₂ over the tensor (0 when both are zero, ∞ when only the primary is). */
  relL2?: number;
}

export interface Comparison {
  /** Every compared output agreed on every row. */
  agreed: boolean;
  outputs: OutputComparison[];
}

const FLOAT: ReadonlySet<Datatype> = new Set(['FP16', 'FP32', 'FP64']);

/** The comparison used for an output without a configured rule: labels are compared exactly, floats numerically. */
export function defaultRule(datatype: Datatype): CompareRule {
  return FLOAT.has(datatype) ? { mode: 'regression', maxRelL2: 0.01, maxAbsDiff: 1e-6 } : { mode: 'classification' };
}

type Elements = ArrayLike<number | bigint | string>;

/** Element values as stored, except FP16 (half bits) which is widened to numbers. */
function elements(t: Tensor): Elements {
  if (t.datatype !== 'FP16') return t.data;
  const bits = t.data as Uint16Array;
  const out = new Float64Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfToFloat(bits[i]!);
  return out;
}

function isNumeric(data: TensorData): boolean {
  return !Array.isArray(data);
}

function rowsOf(shape: readonly number[]): number {
  return shape.length === 0 ? 1 : shape[0]!;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function argmax(values: Elements, from: number, to: number): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = from; i < to; i++) {
    const v = Number(values[i]);
    if (v > bestValue || (best < 0 && v === bestValue)) {
      bestValue = v;
      best = i - from;
    }
  }
  return best;
}

function compareClassification(p: Tensor, s: Tensor, rows: number, rowSize: number): number {
  const a = elements(p);
  const b = elements(s);
  let agreed = 0;
  const scores = FLOAT.has(p.datatype);
  for (let r = 0; r < rows; r++) {
    const from = r * rowSize;
    const to = from + rowSize;
    let same: boolean;
    if (scores && rowSize === 1)
      same = Number(a[from]) >= 0.5 === Number(b[from]) >= 0.5; // one probability: binary decision
    else if (scores) same = argmax(a, from, to) === argmax(b, from, to);
    else {
      same = true;
      for (let i = from; i < to && same; i++) same = a[i] === b[i];
    }
    if (same) agreed++;
  }
  return agreed;
}

function compareRegression(p: Tensor, s: Tensor, rows: number, rowSize: number, rule: Extract<CompareRule, { mode: 'regression' }>) {
  const a = elements(p);
  const b = elements(s);
  let agreed = 0;
  let maxAbs = 0;
  let sqDiffTotal = 0;
  let sqPrimaryTotal = 0;
  for (let r = 0; r < rows; r++) {
    let rowMaxAbs = 0;
    let sqDiff = 0;
    let sqPrimary = 0;
    for (let i = r * rowSize, end = i + rowSize; i < end; i++) {
      const x = Number(a[i]);
      const y = Number(b[i]);
      // Identical values (equal infinities, or NaN on both sides) are no difference; NaN on one side is an infinite one.
      const d = x === y || (Number.isNaN(x) && Number.isNaN(y)) ? 0 : Number.isNaN(x - y) ? Infinity : Math.abs(x - y);
      if (d > rowMaxAbs) rowMaxAbs = d;
      sqDiff += d * d;
      if (Number.isFinite(x)) sqPrimary += x * x;
    }
    const relL2 = sqDiff === 0 ? 0 : sqPrimary === 0 ? Infinity : Math.sqrt(sqDiff / sqPrimary);
    if (relL2 <= rule.maxRelL2 || rowMaxAbs <= rule.maxAbsDiff) agreed++;
    if (rowMaxAbs > maxAbs) maxAbs = rowMaxAbs;
    sqDiffTotal += sqDiff;
    sqPrimaryTotal += sqPrimary;
  }
  const relL2 = sqDiffTotal === 0 ? 0 : sqPrimaryTotal === 0 ? Infinity : Math.sqrt(sqDiffTotal / sqPrimaryTotal);
  return { agreed, maxAbsDiff: maxAbs, relL2 };
}

/** Compares primary and shadow outputs with per-output rules; built once per config generation. */
export class ShadowComparator {
  readonly #rules: Readonly<Record<string, CompareRule>>;

  constructor(rules: Readonly<Record<string, CompareRule>> = {}) {
    this.#rules = rules;
  }

  ruleFor(name: string, datatype: Datatype): CompareRule {
    return Object.hasOwn(this.#rules, name) ? this.#rules[name]! : defaultRule(datatype);
  }

  compare(primary: readonly Tensor[], shadow: readonly Tensor[]): Comparison {
    const outputs: OutputComparison[] = [];
    const byName = new Map(shadow.map((t) => [t.name, t]));
    const names = [...primary.map((t) => t.name), ...shadow.map((t) => t.name).filter((n) => !primary.some((t) => t.name === n))];
    for (const name of names) {
      const p = primary.find((t) => t.name === name);
      const s = byName.get(name);
      const rule = this.ruleFor(name, (p ?? s)!.datatype);
      if (rule.mode === 'ignore') continue;
      outputs.push(this.#compareOne(name, rule, p, s));
    }
    return { agreed: outputs.every((o) => o.rowsAgreed === o.rows && o.mismatch === undefined), outputs };
  }

  #compareOne(name: string, rule: Exclude<CompareRule, { mode: 'ignore' }>, p: Tensor | undefined, s: Tensor | undefined): OutputComparison {
    const mismatch = (reason: string, rows: number): OutputComparison => ({ name, mode: rule.mode, rows: Math.max(rows, 1), rowsAgreed: 0, mismatch: reason });
    if (!p) return mismatch('missing from the primary', rowsOf(s!.shape));
    if (!s) return mismatch('missing from the shadow', rowsOf(p.shape));
    const rows = rowsOf(p.shape);
    if (p.datatype !== s.datatype) return mismatch(`datatype ${p.datatype} vs ${s.datatype}`, rows);
    if (!sameShape(p.shape, s.shape)) return mismatch(`shape ${formatShape(p.shape)} vs ${formatShape(s.shape)}`, rows);
    const rowSize = rows === 0 ? 0 : p.data.length / rows;
    if (rule.mode === 'classification') return { name, mode: rule.mode, rows, rowsAgreed: compareClassification(p, s, rows, rowSize) };
    if (!isNumeric(p.data)) return mismatch(`regression needs numbers, got ${p.datatype}`, rows);
    const { agreed, maxAbsDiff, relL2 } = compareRegression(p, s, rows, rowSize, rule);
    return { name, mode: rule.mode, rows, rowsAgreed: agreed, maxAbsDiff, relL2 };
  }
}
