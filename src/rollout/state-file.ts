// The file a gateway without `coordination` keeps its rollouts' state in, so a restart resumes them: read once at
// start, checked entry by entry, and rewritten atomically (temp file in the same directory, fsync, rename, fsync of the
// directory) after every change. A file it does not recognise is never overwritten.

import { open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { RolloutState } from './machine.js';

/** The marker every state file starts with; a file without it is someone else's and is left alone. */
export const STATE_FILE_FORMAT = 'model-gateway/rollout-state';
export const STATE_FILE_VERSION = 1;

interface StateFileBody {
  format: typeof STATE_FILE_FORMAT;
  version: typeof STATE_FILE_VERSION;
  /** When and by which replica it was written (for people reading it). */
  writtenAt: string;
  replica: string;
  /** Rollout key (`<model>:<hash of its section>`) → its state. */
  rollouts: Record<string, RolloutState>;
}

/** What reading the file found: the valid states, the entries dropped (with why), or why the file is unusable. */
export type StateFileRead = { ok: true; states: Map<string, RolloutState>; dropped: { key: string; reason: string }[] } | { ok: false; reason: string };

const STATUSES = new Set(['running', 'paused', 'rolled-back', 'aborted', 'complete']);
const DECISIONS = new Set(['start', 'hold', 'advance', 'complete', 'rollback', 'pause', 'resume', 'restart', 'promote', 'abort']);

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isInt = (x: unknown): x is number => Number.isInteger(x);
const isTime = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0;

function isPosition(x: unknown): boolean {
  return isObject(x) && STATUSES.has(x.status as string) && (x.phase === 'shadow' || x.phase === 'step') && isInt(x.step);
}

/** Why `x` is not a rollout state this gateway can resume, or undefined when it is one. */
export function stateProblem(x: unknown): string | undefined {
  if (!isObject(x)) return 'not an object';
  if (!isPosition(x)) return 'status, phase or step missing or unknown';
  if (x.phase === 'shadow' ? x.step !== -1 : (x.step as number) < 0) return `step ${String(x.step)} does not fit phase ${String(x.phase)}`;
  if (!isInt(x.phaseId) || (x.phaseId as number) < 1 || !isInt(x.revision) || (x.revision as number) < 1) return 'phaseId or revision missing';
  if (!isTime(x.phaseStartedAt) || !isTime(x.startedAt)) return 'phaseStartedAt or startedAt missing';
  if (x.stableP99Ms !== null && typeof x.stableP99Ms !== 'number') return 'stableP99Ms is neither a number nor null';
  const d = x.lastDecision;
  if (!isObject(d) || !isTime(d.at) || !DECISIONS.has(d.decision as string) || !isPosition(d.from) || !isPosition(d.to)) return 'lastDecision malformed';
  const e = x.lastEvaluation;
  if (e !== null && !(isObject(e) && isTime(e.at) && Array.isArray(e.gates) && isObject(e.window))) return 'lastEvaluation malformed';
  return undefined;
}

/** Parses a state file's text: entries that are not resumable states are dropped, each with its reason. */
export function parseStateFile(text: string): StateFileRead {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `not valid JSON (${(err as Error).message})` };
  }
  if (!isObject(body) || body.format !== STATE_FILE_FORMAT) return { ok: false, reason: `not a rollout state file (no "format": "${STATE_FILE_FORMAT}")` };
  if (body.version !== STATE_FILE_VERSION)
    return { ok: false, reason: `written in format version ${String(body.version)}, this gateway reads version ${STATE_FILE_VERSION}` };
  if (!isObject(body.rollouts)) return { ok: false, reason: '"rollouts" is not an object' };
  const states = new Map<string, RolloutState>();
  const dropped: { key: string; reason: string }[] = [];
  for (const [key, state] of Object.entries(body.rollouts)) {
    const problem = stateProblem(state);
    if (problem === undefined) states.set(key, state as RolloutState);
    else dropped.push({ key, reason: problem });
  }
  return { ok: true, states, dropped };
}

/** Reads the file; a missing file is an empty one. */
export async function readStateFile(file: string): Promise<StateFileRead> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ok: true, states: new Map(), dropped: [] };
    return { ok: false, reason: `cannot be read (${(err as Error).message})` };
  }
  return parseStateFile(text);
}

/**
 * Replaces the file with `states` atomically: a reader (or a restart after a crash at any point) sees the old file or
 * the new one, never a mix. The temp file is in the same directory, so the rename never crosses file systems.
 */
export async function writeStateFile(file: string, states: ReadonlyMap<string, RolloutState>, replica: string, now: number): Promise<void> {
  const body: StateFileBody = {
    format: STATE_FILE_FORMAT,
    version: STATE_FILE_VERSION,
    writtenAt: new Date(now).toISOString(),
    replica,
    rollouts: Object.fromEntries(states),
  };
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const handle = await open(temp, 'w', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(body, null, 1)}\n`);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await handle.close();
  try {
    await rename(temp, file);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await syncDirectory(path.dirname(file));
}

/** Makes the rename itself durable. Best effort: some platforms (Windows) cannot open a directory. */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // The file's own content is already synced; only the rename's durability is left to the OS.
  }
}
