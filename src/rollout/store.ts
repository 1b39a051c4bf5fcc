// Where rollout state lives: in this process (each replica on its own), or in Redis (shared by the replicas, one leader).

import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import type { GatewayConfig } from '../config/schema.js';
import type { Logger } from '../telemetry/log.js';
import type { RolloutState } from './machine.js';
import type { SignalSnapshot } from './signals.js';
import { readStateFile, writeStateFile } from './state-file.js';

/**
 * The manager's only view of persistence and coordination. Keys name one rollout: `<model>:<hash of its config>`, so
 * a changed rollout section starts a fresh rollout and replicas on different configs never share one by mistake.
 */
export interface RolloutStore {
  /** `local`: this replica only; `redis`: shared. */
  readonly mode: 'local' | 'redis';
  /** This replica's id (host name and pid, plus randomness). */
  readonly replicaId: string;
  /** Takes or renews the leader lease; resolves true while this replica leads (always, for a local store). */
  lead(): Promise<boolean>;
  /** Whether the last lead() won (without asking the store). */
  isLeader(): boolean;
  read(key: string): Promise<RolloutState | undefined>;
  /**
   * Writes `next` only if the stored state's revision is still `expectedRevision` (undefined: only if there is none).
   * False when another replica wrote first: read again and decide again.
   */
  compareAndSet(key: string, expectedRevision: number | undefined, next: RolloutState): Promise<boolean>;
  /**
   * Forgets a rollout this replica's config no longer has (removed or changed), so the same section coming back
   * starts fresh. Best effort: resolves even when the store is unreachable.
   */
  forget(key: string): Promise<void>;
  /**
   * A store only this replica uses drops the rollouts not in `keys` (called once at start: a section changed or
   * removed while the gateway was down). A shared store has none: replicas still on an older config may use them.
   */
  retainOnly?(keys: readonly string[]): Promise<void>;
  /** Where the state is kept (the admin API shows it). */
  readonly durability: StoreDurability;
  /** Publishes this replica's samples of a rollout (the leader merges every live replica's). */
  publishSignals(key: string, snapshot: SignalSnapshot): Promise<void>;
  /** Every live replica's latest samples of a rollout; `own` stands in for this replica's. */
  collectSignals(key: string, own: SignalSnapshot): Promise<SignalSnapshot[]>;
  /** Gives up the lease (if held) and disconnects. */
  close(): Promise<void>;
}

/** Where a store keeps rollout state, as the admin API shows it. */
export interface StoreDurability {
  /** `redis`: shared, survives any replica; `file`: this replica's state file; `memory`: lost on restart. */
  kept: 'redis' | 'file' | 'memory';
  /** The state file (also when it could not be used), else null. */
  stateFile: string | null;
  /** Why the state file is not being used or written, else null. */
  stateFileError: string | null;
}

export interface LocalStoreOptions {
  /** The state file (absolute); absent: in memory only. */
  file?: string;
  /** Logs what reading and writing the file found; absent: silent. */
  log?: Logger;
  /** Epoch ms for the file's `writtenAt`. */
  now?: () => number;
}

/**
 * One replica on its own: always the leader, its own samples only. The state is in memory and, with a state file,
 * written through to it after every change, so a restart resumes each rollout where it was.
 */
export class LocalRolloutStore implements RolloutStore {
  readonly mode = 'local' as const;
  readonly replicaId: string;
  readonly #states: Map<string, RolloutState>;
  readonly #file: string | undefined;
  readonly #log: Logger | undefined;
  readonly #now: () => number;
  /** Why the file is not used (unreadable, not a state file): it is then never written, so nothing is destroyed. */
  #unusable: string | undefined;
  /** The last write's failure, until a write succeeds again. */
  #writeError: string | undefined;
  #writes: Promise<void> = Promise.resolve();

  constructor(replicaId: string, options: LocalStoreOptions & { states?: Map<string, RolloutState>; unusable?: string } = {}) {
    this.replicaId = replicaId;
    this.#states = options.states ?? new Map();
    this.#file = options.file;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
    this.#unusable = options.unusable;
  }

  /**
   * A store with the state file read: its valid entries are resumed; an invalid entry is dropped (that rollout starts
   * again); a file that cannot be read or is not a state file is reported and left untouched, and the store keeps its
   * state in memory only. Never throws.
   */
  static async open(replicaId: string, options: LocalStoreOptions = {}): Promise<LocalRolloutStore> {
    const { file, log } = options;
    if (file === undefined) return new LocalRolloutStore(replicaId, options);
    const read = await readStateFile(file);
    if (!read.ok) {
      log?.error(
        { event: 'rollout.state-file', file, reason: read.reason },
        `rollout state file ${file} ${read.reason}: it is left untouched and rollout state is kept in memory only, so a restart starts every rollout again; move the file away (or set rolloutState.path) to keep state across restarts`,
      );
      return new LocalRolloutStore(replicaId, { ...options, unusable: read.reason });
    }
    for (const { key, reason } of read.dropped)
      log?.warn(
        { event: 'rollout.state-file', file, rollout: key, reason },
        `rollout state file ${file}: entry ${key} ignored (${reason}); that rollout starts again`,
      );
    if (read.states.size > 0) log?.info({ event: 'rollout.state-file', file, rollouts: [...read.states.keys()] }, `rollout state read from ${file}`);
    return new LocalRolloutStore(replicaId, { ...options, states: read.states });
  }

  get durability(): StoreDurability {
    if (this.#file === undefined) return { kept: 'memory', stateFile: null, stateFileError: null };
    const error = this.#unusable ?? this.#writeError;
    return { kept: this.#unusable === undefined ? 'file' : 'memory', stateFile: this.#file, stateFileError: error ?? null };
  }

  async lead(): Promise<boolean> {
    return true;
  }

  isLeader(): boolean {
    return true;
  }

  async read(key: string): Promise<RolloutState | undefined> {
    const s = this.#states.get(key);
    return s && structuredClone(s);
  }

  /** Resolves once the change is on disk (or its write failed and was logged): an acknowledged action survives a crash. */
  async compareAndSet(key: string, expectedRevision: number | undefined, next: RolloutState): Promise<boolean> {
    if (this.#states.get(key)?.revision !== expectedRevision) return false;
    this.#states.set(key, structuredClone(next));
    await this.#persist();
    return true;
  }

  async forget(key: string): Promise<void> {
    if (this.#states.delete(key)) await this.#persist();
  }

  /** Drops rollouts the config no longer has (a restart with a section changed or removed): nobody else can want them. */
  async retainOnly(keys: readonly string[]): Promise<void> {
    const wanted = new Set(keys);
    let dropped = false;
    for (const key of [...this.#states.keys()]) if (!wanted.has(key)) dropped = this.#states.delete(key) || dropped;
    if (dropped) await this.#persist();
  }

  async publishSignals(): Promise<void> {}

  async collectSignals(_key: string, own: SignalSnapshot): Promise<SignalSnapshot[]> {
    return [own];
  }

  async close(): Promise<void> {
    await this.#writes;
  }

  /** Writes the current states, one write at a time, each with everything changed before it. Never throws. */
  #persist(): Promise<void> {
    const file = this.#file;
    if (file === undefined || this.#unusable !== undefined) return Promise.resolve();
    this.#writes = this.#writes.then(async () => {
      try {
        await writeStateFile(file, this.#states, this.replicaId, this.#now());
        if (this.#writeError !== undefined) this.#log?.info({ event: 'rollout.state-file', file }, `rollout state file ${file} written again`);
        this.#writeError = undefined;
      } catch (err) {
        const first = this.#writeError === undefined;
        this.#writeError = `cannot be written (${(err as Error).message})`;
        // Once per failing run: the rollout goes on in memory; only a restart would lose it.
        if (first)
          this.#log?.error(
            { event: 'rollout.state-file', file, err },
            `rollout state file ${file} ${this.#writeError}: rollouts go on, but a restart now would start them again`,
          );
      }
    });
    return this.#writes;
  }
}

/**
 * The state file of a gateway without `coordination`: `rolloutState.path` (relative to the config file's directory),
 * else `<config file>.rollout-state.json` beside it; undefined when nothing is to be kept (`persist: false`, or no
 * config file and no path).
 */
export function stateFileOf(settings: GatewayConfig['rolloutState'], configFile: string | undefined): string | undefined {
  if (!settings.persist) return undefined;
  const base = configFile === undefined ? process.cwd() : path.dirname(path.resolve(configFile));
  if (settings.path !== undefined) return path.resolve(base, settings.path);
  return configFile === undefined ? undefined : `${path.resolve(configFile)}.rollout-state.json`;
}

/** This replica's default name in shared rollout state: host, pid and a random suffix. */
export function defaultReplicaId(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}
