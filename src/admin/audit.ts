// The audit trail of operator actions: who changed what, when, from where, and the state before and after — every
// admin change (console or CLI) and every refused admin call. One JSON line each in a bounded file that survives
// restarts (rotated to one `.1`), a structured log line, and the newest entries in memory for the API and the console.

import { open, rename, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AdminConfig } from '../config/schema.js';
import { parseLines, tailLines } from './tail.js';

export interface AuditActor {
  /** The JWT's subject or "static token"; null when the caller could not be identified (a refused call). */
  subject: string | null;
  /**
   * `session`: a console session (its login credential in `via`); `custom`: an embedder's AdminAuthorizer that does
   * not name its callers; `unauthenticated`: no valid credential.
   */
  kind: 'static-token' | 'jwt' | 'session' | 'custom' | 'unauthenticated';
  /** The access the call was authorised with (a session: its role); null when refused before that was known. */
  role: 'read' | 'write' | null;
  via?: 'static-token' | 'jwt';
}

export interface AuditEntry {
  time: string;
  actor: AuditActor;
  /** The connection's peer address (and the X-Forwarded-For it sent, when it sent one). */
  peer: string;
  forwardedFor?: string;
  /** e.g. `weights.set`, `weights.reset`, `reload`, `rollout.pause`, `shadow.reset`, `session.login`, `refused`. */
  action: string;
  target: Record<string, string> | null;
  request: { method: string; path: string };
  outcome: { status: number; error?: string };
  before: unknown;
  after: unknown;
  /** Refused calls left out of the trail (beyond its rate cap) since the previous refused entry. */
  suppressed?: number;
}

export interface AuditStats {
  /** The file, or null when the trail is kept in memory and the log only. */
  path: string | null;
  written: number;
  /** Entries that could not be written to the file (they are still in the log and in memory). */
  failed: number;
  rotations: number;
  /** Refused calls not recorded because more than `refusedPerMinute` came in one minute. */
  suppressed: number;
  lastError: string | null;
}

export interface AuditTrailOptions {
  /** Absolute path of the JSON Lines file; undefined keeps the trail in memory and the log only. */
  path: string | undefined;
  maxFileBytes: number;
  log: Logger;
  /** Newest entries kept in memory (and loaded from the file at start). */
  memory?: number;
  /** Refused calls recorded per minute at most: a flood of bad tokens must not rotate real actions out of the file. */
  refusedPerMinute?: number;
  now?: () => number;
}

export const DEFAULT_AUDIT_MEMORY = 1000;
/** The file's name next to the config file when `admin.audit.path` is unset. */
export const DEFAULT_AUDIT_FILE = 'model-gateway-audit.jsonl';

/**
 * Where the trail is written: `admin.audit.path` (relative to the config file's directory), else next to the config
 * file; undefined for a gateway started without a file (memory and log only).
 */
export function auditPath(config: AdminConfig['audit'], configFile: string | undefined): string | undefined {
  const dir = configFile ? path.dirname(path.resolve(configFile)) : undefined;
  if (config.path !== undefined) return path.resolve(dir ?? process.cwd(), config.path);
  return dir === undefined ? undefined : path.join(dir, DEFAULT_AUDIT_FILE);
}

const isEntry = (v: unknown): v is AuditEntry =>
  typeof v === 'object' && v !== null && typeof (v as AuditEntry).time === 'string' && typeof (v as AuditEntry).action === 'string';

export class AuditTrail {
  readonly #o: Required<Omit<AuditTrailOptions, 'path'>> & { path: string | undefined };
  readonly #entries: AuditEntry[] = [];
  readonly #listeners = new Set<(entry: AuditEntry) => void>();
  #handle: FileHandle | undefined;
  #size = 0;
  #writes: Promise<void> = Promise.resolve();
  #closed = false;
  #refusedWindow = { minute: -1, count: 0 };
  #suppressedSinceLast = 0;
  readonly #stats = { written: 0, failed: 0, rotations: 0, suppressed: 0, lastError: null as string | null };

  private constructor(options: AuditTrailOptions) {
    this.#o = { memory: DEFAULT_AUDIT_MEMORY, refusedPerMinute: 60, now: Date.now, ...options };
  }

  /** Opens the trail and loads its newest entries from the file (and its `.1`), so they survive a restart. */
  static async open(options: AuditTrailOptions): Promise<AuditTrail> {
    const trail = new AuditTrail(options);
    const file = options.path;
    if (file === undefined) return trail;
    const memory = trail.#o.memory;
    try {
      // An entry is a few hundred bytes to a few KiB; read enough of each file to fill memory, never the whole file.
      const window = Math.min(options.maxFileBytes, memory * 4096);
      let loaded = parseLines(await tailLines(file, window), isEntry);
      if (loaded.length < memory) loaded = [...parseLines(await tailLines(`${file}.1`, window), isEntry), ...loaded];
      trail.#entries.push(...loaded.slice(-memory));
    } catch (err) {
      trail.#stats.lastError = (err as Error).message;
      options.log.error({ err, path: file }, 'cannot read the audit trail file; earlier entries are not shown');
    }
    try {
      // Opened now, so a file that cannot be written is reported at start rather than at the first operator action.
      trail.#handle = await open(file, 'a', 0o600);
      trail.#size = (await trail.#handle.stat()).size;
    } catch (err) {
      trail.#stats.lastError = (err as Error).message;
      options.log.error({ err, path: file }, 'cannot open the audit trail file: entries go to the log (and memory) only until it can be written');
    }
    return trail;
  }

  get path(): string | undefined {
    return this.#o.path;
  }

  /**
   * Records one entry: in memory and the log at once, then appended to the file. Resolves once it is written (or its
   * write failed, which is logged and counted — the action it records has happened either way).
   */
  record(partial: Omit<AuditEntry, 'time' | 'suppressed'>): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const entry: AuditEntry = { time: new Date(this.#o.now()).toISOString(), ...partial };
    if (partial.outcome.status === 401 || partial.outcome.status === 403) {
      if (!this.#admitRefused()) return Promise.resolve();
      if (this.#suppressedSinceLast > 0) {
        entry.suppressed = this.#suppressedSinceLast;
        this.#suppressedSinceLast = 0;
      }
    }
    this.#entries.push(entry);
    if (this.#entries.length > this.#o.memory) this.#entries.splice(0, this.#entries.length - this.#o.memory);
    this.#o.log.info({ audit: entry }, `admin audit: ${entry.action} by ${entry.actor.subject ?? 'unknown caller'} → ${entry.outcome.status}`);
    for (const listener of this.#listeners) listener(entry);
    if (this.#o.path === undefined) return Promise.resolve();
    const line = `${JSON.stringify(entry)}\n`;
    this.#writes = this.#writes.then(() => this.#append(line));
    return this.#writes;
  }

  /** The newest `limit` entries, newest first. */
  recent(limit: number): AuditEntry[] {
    return this.#entries.slice(-limit).reverse();
  }

  stats(): AuditStats {
    return { path: this.#o.path ?? null, ...this.#stats };
  }

  /** Calls `listener` with every entry as it is recorded; returns the unsubscribe function. */
  onEntry(listener: (entry: AuditEntry) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Waits for the entries being written, then closes the file. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#writes;
    await this.#handle?.close().catch(() => undefined);
    this.#handle = undefined;
  }

  #admitRefused(): boolean {
    const minute = Math.floor(this.#o.now() / 60_000);
    if (this.#refusedWindow.minute !== minute) this.#refusedWindow = { minute, count: 0 };
    if (this.#refusedWindow.count >= this.#o.refusedPerMinute) {
      this.#stats.suppressed++;
      this.#suppressedSinceLast++;
      return false;
    }
    this.#refusedWindow.count++;
    return true;
  }

  async #append(line: string): Promise<void> {
    const file = this.#o.path!;
    const bytes = Buffer.byteLength(line);
    try {
      if (!this.#handle) {
        this.#handle = await open(file, 'a', 0o600);
        this.#size = (await this.#handle.stat()).size;
      }
      if (this.#size > 0 && this.#size + bytes > this.#o.maxFileBytes) {
        await this.#handle.close();
        this.#handle = undefined;
        await rename(file, `${file}.1`);
        this.#handle = await open(file, 'a', 0o600);
        this.#size = 0;
        this.#stats.rotations++;
      }
      await this.#handle.write(line);
      this.#size += bytes;
      this.#stats.written++;
    } catch (err) {
      this.#stats.failed++;
      this.#stats.lastError = (err as Error).message;
      await this.#handle?.close().catch(() => undefined);
      this.#handle = undefined;
      this.#o.log.error({ err, path: file }, 'cannot write the audit trail file; the entry is in this log line only');
    }
  }
}
