// Where rollout state lives: in this process (each replica on its own), or in Redis (shared by the replicas, one leader).

import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { RolloutState } from './machine.js';
import type { SignalSnapshot } from './signals.js';

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
  /** Publishes this replica's samples of a rollout (the leader merges every live replica's). */
  publishSignals(key: string, snapshot: SignalSnapshot): Promise<void>;
  /** Every live replica's latest samples of a rollout; `own` stands in for this replica's. */
  collectSignals(key: string, own: SignalSnapshot): Promise<SignalSnapshot[]>;
  /** Gives up the lease (if held) and disconnects. */
  close(): Promise<void>;
}

/** One replica on its own: state in memory, always the leader, its own samples only. */
export class LocalRolloutStore implements RolloutStore {
  readonly mode = 'local' as const;
  readonly replicaId: string;
  readonly #states = new Map<string, RolloutState>();

  constructor(replicaId: string) {
    this.replicaId = replicaId;
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

  async compareAndSet(key: string, expectedRevision: number | undefined, next: RolloutState): Promise<boolean> {
    if (this.#states.get(key)?.revision !== expectedRevision) return false;
    this.#states.set(key, structuredClone(next));
    return true;
  }

  async forget(key: string): Promise<void> {
    this.#states.delete(key);
  }

  async publishSignals(): Promise<void> {}

  async collectSignals(_key: string, own: SignalSnapshot): Promise<SignalSnapshot[]> {
    return [own];
  }

  async close(): Promise<void> {}
}

/** This replica's default name in shared rollout state: host, pid and a random suffix. */
export function defaultReplicaId(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}
