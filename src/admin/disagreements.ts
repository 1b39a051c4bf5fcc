// The newest shadow disagreements of one model, read from the end of the disagreement log (a bounded read, never the
// whole file): what the console shows one click away from a pair's agreement rate.

import { GatewayError } from '../errors/gateway-error.js';
import type { LoggedTensor } from '../shadow/disagreement-log.js';
import { parseLines, tailLines } from './tail.js';

/** Bytes read from the end of each file (the log and its `.1`); a line holds both answers, cut per output. */
export const DISAGREEMENT_TAIL_BYTES = 1024 * 1024;
export const MAX_DISAGREEMENTS = 50;

export interface LoggedDisagreement {
  time: string;
  requestId: string;
  model: string;
  primaryVersion: string;
  shadowVersion: string;
  comparison: Record<string, unknown>[];
  /** Present when the log is written with `disagreementLog.includeInputs`. */
  inputs?: LoggedTensor[];
  primary: LoggedTensor[];
  shadow: LoggedTensor[];
}

export interface DisagreementsView {
  model: string;
  /** The log file, or null when the config has no disagreement log. */
  path: string | null;
  entries: LoggedDisagreement[];
}

const isDisagreement = (v: unknown): v is LoggedDisagreement =>
  typeof v === 'object' && v !== null && typeof (v as LoggedDisagreement).model === 'string' && Array.isArray((v as LoggedDisagreement).primary);

/** Parses `?limit=N` (1–max, default `fallback`); a bad value is a 400, not a silent default. */
export function limitParam(url: URL, fallback: number, max: number): number {
  const raw = url.searchParams.get('limit');
  if (raw === null) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isInteger(n) || n < 1 || n > max)
    throw new GatewayError('GW_ERR_INVALID_REQUEST', `limit must be an integer from 1 to ${max}, not '${raw.slice(0, 20)}'`);
  return n;
}

/** The newest `limit` disagreements of `model`, newest first. */
export async function recentDisagreements(path: string | undefined, model: string, limit: number): Promise<DisagreementsView> {
  if (path === undefined) return { model, path: null, entries: [] };
  const ofModel = (lines: string[]) => parseLines(lines, isDisagreement).filter((d) => d.model === model);
  let found = ofModel(await tailLines(path, DISAGREEMENT_TAIL_BYTES));
  if (found.length < limit) found = [...ofModel(await tailLines(`${path}.1`, DISAGREEMENT_TAIL_BYTES)), ...found];
  return { model, path, entries: found.slice(-limit).reverse() };
}
