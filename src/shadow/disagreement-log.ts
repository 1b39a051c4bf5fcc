// A JSON Lines file of sampled shadow disagreements, written off the request path with a bounded queue and one rotation.

import { open, rename, type FileHandle } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { DisagreementLogConfig } from '../config/schema.js';
import type { Tensor } from '../protocol/oip.js';
import { encodeJsonData } from '../protocol/tensor.js';
import type { Rng } from '../routing/weighted.js';
import type { OutputComparison } from './compare.js';

/** Lines waiting to be written are capped at this many bytes; beyond it lines are dropped and counted. */
export const MAX_PENDING_BYTES = 4 * 1024 * 1024;

export interface Disagreement {
  requestId: string;
  model: string;
  primaryVersion: string;
  shadowVersion: string;
  comparison: readonly OutputComparison[];
  primary: readonly Tensor[];
  shadow: readonly Tensor[];
  /** The request's inputs, written only with `includeInputs` (they may be personal data). */
  inputs?: readonly Tensor[];
}

export interface LoggedTensor {
  name: string;
  datatype: string;
  shape: number[];
  data: (number | boolean | string | null)[];
  /** Present when only the first maxElementsPerOutput elements were written. */
  truncated?: true;
}

export interface DisagreementLogStats {
  path: string;
  written: number;
  /** Disagreements not written because of sampleRate. */
  sampledOut: number;
  /** Disagreements dropped because the writer fell behind (queue full) or a write failed. */
  dropped: number;
  rotations: number;
}

export class DisagreementLog {
  readonly path: string;
  readonly #config: DisagreementLogConfig;
  readonly #rng: Rng;
  readonly #log: Logger;
  readonly #queue: string[] = [];
  #queuedBytes = 0;
  #handle: FileHandle | undefined;
  #size = 0;
  #writing: Promise<void> | undefined;
  #closed = false;
  readonly #stats = { written: 0, sampledOut: 0, dropped: 0, rotations: 0 };

  /** `path` is the config's path already resolved to an absolute one. */
  constructor(path: string, config: DisagreementLogConfig, log: Logger, rng: Rng = Math.random) {
    this.path = path;
    this.#config = config;
    this.#rng = rng;
    this.#log = log;
  }

  /** Same file and settings: a reload can keep this writer instead of reopening. */
  sameAs(path: string, config: DisagreementLogConfig): boolean {
    return path === this.path && JSON.stringify(config) === JSON.stringify(this.#config);
  }

  /** Samples, encodes and queues one disagreement; never blocks and never throws. */
  record(d: Disagreement): void {
    if (this.#closed) return;
    if (this.#config.sampleRate < 1 && !(this.#rng() < this.#config.sampleRate)) {
      this.#stats.sampledOut++;
      return;
    }
    const line = `${JSON.stringify({
      time: new Date().toISOString(),
      requestId: d.requestId,
      model: d.model,
      primaryVersion: d.primaryVersion,
      shadowVersion: d.shadowVersion,
      comparison: d.comparison.filter((o) => o.rowsAgreed < o.rows || o.mismatch !== undefined).map(finiteComparison),
      ...(this.#config.includeInputs && d.inputs ? { inputs: d.inputs.map((t) => this.#tensor(t)) } : {}),
      primary: d.primary.map((t) => this.#tensor(t)),
      shadow: d.shadow.map((t) => this.#tensor(t)),
    })}\n`;
    const bytes = Buffer.byteLength(line);
    if (this.#queuedBytes + bytes > MAX_PENDING_BYTES) {
      this.#stats.dropped++;
      return;
    }
    this.#queue.push(line);
    this.#queuedBytes += bytes;
    this.#kick();
  }

  stats(): DisagreementLogStats {
    return { path: this.path, ...this.#stats };
  }

  /** Resolves once every queued line has been written (or dropped on error). */
  async flush(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
    await this.#handle?.close().catch(() => undefined);
    this.#handle = undefined;
  }

  #tensor(t: Tensor): LoggedTensor {
    const max = this.#config.maxElementsPerOutput;
    const all = encodeJsonData(t);
    // NaN/±Infinity are written as null by JSON, so say so explicitly rather than lose them silently.
    const data = all.slice(0, max).map((v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v));
    return { name: t.name, datatype: t.datatype, shape: [...t.shape], data, ...(all.length > max ? { truncated: true as const } : {}) };
  }

  #kick(): void {
    if (this.#writing) return;
    this.#writing = this.#drain()
      .catch((err: unknown) => this.#log.warn({ err, path: this.path }, 'cannot write the shadow disagreement log'))
      .finally(() => {
        this.#writing = undefined;
        if (this.#queue.length > 0) this.#kick();
      });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0);
      const text = batch.join('');
      this.#queuedBytes = 0;
      const bytes = Buffer.byteLength(text);
      try {
        if (!this.#handle) {
          this.#handle = await open(this.path, 'a');
          this.#size = (await this.#handle.stat()).size;
        }
        if (this.#size > 0 && this.#size + bytes > this.#config.maxFileBytes) await this.#rotate();
        await this.#handle!.write(text);
        this.#size += bytes;
        this.#stats.written += batch.length;
      } catch (err) {
        this.#stats.dropped += batch.length;
        await this.#handle?.close().catch(() => undefined);
        this.#handle = undefined;
        throw err;
      }
    }
  }

  async #rotate(): Promise<void> {
    await this.#handle?.close();
    this.#handle = undefined;
    await rename(this.path, `${this.path}.1`);
    this.#handle = await open(this.path, 'a');
    this.#size = 0;
    this.#stats.rotations++;
  }
}

/** JSON has no Infinity: unbounded differences (NaN on one side, an all-zero primary) are written as null. */
function finiteComparison(o: OutputComparison): Record<string, unknown> {
  const finite = (x: number | undefined) => (x === undefined ? undefined : Number.isFinite(x) ? x : null);
  return { ...o, maxAbsDiff: finite(o.maxAbsDiff), relL2: finite(o.relL2) };
}
