// Rollout state shared through Redis: a leader lease, compare-and-set state per rollout, and each replica's samples.

import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { connectRedis } from '../redis/connect.js';
import type { CoordinationConfig } from '../config/schema.js';
import { GatewayError } from '../errors/gateway-error.js';
import { LogThrottle } from '../telemetry/log-throttle.js';
import type { Logger } from '../telemetry/log.js';
import type { RolloutState } from './machine.js';
import type { SignalSnapshot } from './signals.js';
import { defaultReplicaId, type RolloutStore, type StoreDurability } from './store.js';

export type RolloutRedisConfig = CoordinationConfig['redis'];

/** Extends the lease only while this replica still holds it: a lease that expired and was taken is never stolen back. */
export const RENEW_LEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`;

/** Deletes the lease only if this replica holds it (compare-and-delete). */
export const RELEASE_LEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;

/**
 * Writes a rollout's state only if its stored revision is ARGV[1]; ARGV[1] = '' means "only if there is none".
 * ARGV[2] is the new revision, ARGV[3] the state as JSON.
 */
export const COMPARE_AND_SET_SCRIPT = `
if ARGV[1] == '' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
elseif redis.call('HGET', KEYS[1], 'revision') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'revision', ARGV[2], 'state', ARGV[3])
return 1
`;

/**
 * Removes replicas (ARGV[i]) from the set (KEYS[1]) whose samples key (KEYS[i + 1]) has expired. Checked inside the
 * script so a replica that published between the collector's MGET and this removal is not dropped.
 */
export const PRUNE_REPLICAS_SCRIPT = `
local removed = 0
for i, member in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    removed = removed + redis.call('SREM', KEYS[1], member)
  end
end
return removed
`;

const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');

/** `host:pid:random`: unique per process even when pids repeat across containers. */

export interface RedisRolloutStoreOptions {
  config: RolloutRedisConfig;
  log: Logger;
  replicaId: string;
  /** Clock for the lease's local expiry and log throttling. */
  now?: () => number;
}

export class RedisRolloutStore implements RolloutStore {
  readonly mode = 'redis' as const;
  /** The state lives in Redis: any replica, restarted or new, picks each rollout up where it is. */
  readonly durability: StoreDurability = { kept: 'redis', stateFile: null, stateFileError: null };
  readonly replicaId: string;
  readonly #client: Redis;
  readonly #config: RolloutRedisConfig;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #failureLog: LogThrottle;
  #leader = false;
  /** When the last successful take/renew was sent (local clock): the lease runs at most leaseTtlMs from then. */
  #leaseFrom = 0;

  constructor(client: Redis, options: RedisRolloutStoreOptions) {
    this.#client = client;
    this.#config = options.config;
    this.#log = options.log;
    this.replicaId = options.replicaId;
    this.#now = options.now ?? Date.now;
    this.#failureLog = new LogThrottle(options.log, this.#now, 5_000);
  }

  get client(): Redis {
    return this.#client;
  }

  get #leaseKey(): string {
    return `${this.#config.keyPrefix}leader`;
  }

  async lead(): Promise<boolean> {
    const ttl = this.#config.leaseTtlMs;
    // Stamped before sending: Redis started the lease no earlier, so the local view never outlives the real lease.
    const sentAt = this.#now();
    try {
      // Renew first even when we think we lost it: a renewal whose reply was lost left the lease with our id.
      let won = (await this.#script(RENEW_LEASE_SCRIPT, [this.#leaseKey], [this.replicaId, String(ttl)])) === 1;
      if (!won) won = (await this.#client.set(this.#leaseKey, this.replicaId, 'PX', ttl, 'NX')) === 'OK';
      if (won && !this.#leader) this.#log.info({ replicaId: this.replicaId }, 'rollout leader lease taken');
      if (!won && this.#leader) this.#log.warn({ replicaId: this.replicaId }, 'rollout leader lease lost');
      this.#leader = won;
      if (won) this.#leaseFrom = sentAt;
      return won;
    } catch (err) {
      // The renewal may or may not have landed: stop acting as leader now; the lease expires by itself if it did.
      this.#leader = false;
      this.#failureLog.warn('lead', { err, replicaId: this.replicaId }, 'rollout store unavailable: not leading until Redis answers');
      return false;
    }
  }

  isLeader(): boolean {
    return this.#leader && this.#now() - this.#leaseFrom < this.#config.leaseTtlMs;
  }

  async read(key: string): Promise<RolloutState | undefined> {
    let json: string | null;
    try {
      json = await this.#client.hget(this.#stateKey(key), 'state');
    } catch (err) {
      throw unavailable(`reading rollout state '${key}'`, err);
    }
    if (json === null) return undefined;
    try {
      return JSON.parse(json) as RolloutState;
    } catch (err) {
      throw new GatewayError('GW_ERR_ROLLOUT_STORE_UNAVAILABLE', `the shared rollout state '${key}' in Redis is not valid JSON: ${errorText(err)}`, {
        cause: err,
      });
    }
  }

  async compareAndSet(key: string, expectedRevision: number | undefined, next: RolloutState): Promise<boolean> {
    const args = [expectedRevision === undefined ? '' : String(expectedRevision), String(next.revision), JSON.stringify(next)];
    try {
      return (await this.#script(COMPARE_AND_SET_SCRIPT, [this.#stateKey(key)], args)) === 1;
    } catch (err) {
      throw unavailable(`writing rollout state '${key}'`, err);
    }
  }

  async publishSignals(key: string, snapshot: SignalSnapshot): Promise<void> {
    const ttl = this.#signalsTtlMs();
    const replicas = this.#replicasKey(key);
    try {
      const results = await this.#client
        .multi()
        .set(this.#signalsKey(key, this.replicaId), JSON.stringify(snapshot), 'PX', ttl)
        .sadd(replicas, this.replicaId)
        .pexpire(replicas, ttl)
        .exec();
      const failed = results?.find(([err]) => err !== null)?.[0];
      if (results === null || failed) throw failed ?? new Error('transaction aborted');
    } catch (err) {
      // Missing samples only make the leader judge on fewer of them (and wait for minSamples): never fatal.
      this.#failureLog.warn('publish', { err, rollout: key }, 'rollout store unavailable: samples not published');
    }
  }

  async collectSignals(key: string, own: SignalSnapshot): Promise<SignalSnapshot[]> {
    const replicas = this.#replicasKey(key);
    try {
      const members = (await this.#client.smembers(replicas)).filter((id) => id !== this.replicaId).sort();
      if (members.length === 0) return [own];
      const keys = members.map((id) => this.#signalsKey(key, id));
      const values = await this.#client.mget(...keys);
      const expired = members.filter((_, i) => values[i] === null);
      if (expired.length > 0) {
        await this.#script(PRUNE_REPLICAS_SCRIPT, [replicas, ...expired.map((id) => this.#signalsKey(key, id))], expired);
      }
      const snapshots: SignalSnapshot[] = [own];
      values.forEach((json, i) => {
        if (json === null) return;
        try {
          snapshots.push(JSON.parse(json) as SignalSnapshot);
        } catch (err) {
          this.#failureLog.warn('parse', { err, rollout: key, replica: members[i] }, 'unreadable rollout samples of a replica ignored');
        }
      });
      return snapshots;
    } catch (err) {
      // Judging on this replica's samples alone beats not judging at all while Redis is away.
      this.#failureLog.warn('collect', { err, rollout: key }, 'rollout store unavailable: judging on this replica samples only');
      return [own];
    }
  }

  async forget(key: string): Promise<void> {
    try {
      // This replica's own samples go too; other replicas' expire on their own.
      await this.#client.del(this.#stateKey(key), this.#signalsKey(key, this.replicaId));
    } catch (err) {
      this.#failureLog.warn('forget', { err, key }, 'rollout state not deleted (Redis unavailable); a later identical rollout section would resume it');
    }
  }

  async close(): Promise<void> {
    if (this.#leader) {
      this.#leader = false;
      try {
        // Hand over at once instead of making the next leader wait out the lease.
        await this.#script(RELEASE_LEASE_SCRIPT, [this.#leaseKey], [this.replicaId]);
      } catch (err) {
        this.#log.warn({ err, replicaId: this.replicaId }, 'rollout leader lease not released; it expires by itself');
      }
    }
    // Not connected: QUIT would be refused (no offline queue), and disconnect also stops the reconnect attempts.
    if (this.#client.status !== 'ready') {
      this.#client.disconnect();
      return;
    }
    try {
      await this.#client.quit();
    } catch {
      this.#client.disconnect();
    }
  }

  /** Samples outlive a few missed publishes, and at least a lease, so a leader change does not lose them. */
  #signalsTtlMs(): number {
    return Math.max(3 * this.#config.syncIntervalMs, this.#config.leaseTtlMs);
  }

  #stateKey(key: string): string {
    return `${this.#config.keyPrefix}state:${key}`;
  }

  #replicasKey(key: string): string {
    return `${this.#config.keyPrefix}replicas:${key}`;
  }

  #signalsKey(key: string, replicaId: string): string {
    return `${this.#config.keyPrefix}signals:${key}:${replicaId}`;
  }

  async #script(script: string, keys: string[], args: string[]): Promise<unknown> {
    try {
      return await this.#client.evalsha(sha1(script), keys.length, ...keys, ...args);
    } catch (err) {
      // After a Redis restart (or failover) the script cache is empty: EVAL loads it again.
      if (err instanceof Error && err.message.startsWith('NOSCRIPT')) return this.#client.eval(script, keys.length, ...keys, ...args);
      throw err;
    }
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function unavailable(what: string, err: unknown): GatewayError {
  return new GatewayError('GW_ERR_ROLLOUT_STORE_UNAVAILABLE', `the shared rollout state (Redis) is unavailable while ${what}: ${errorText(err)}`, {
    cause: err,
  });
}

/** Connects the rollout store's client (see connectRedis). Redis being down at start is not fatal: no replica leads until it is back. */
export async function connectRolloutStore(
  config: RolloutRedisConfig,
  deps: { log: Logger; replicaId?: string; now?: () => number },
): Promise<RedisRolloutStore> {
  const client = await connectRedis({
    url: config.url,
    commandTimeoutMs: config.commandTimeoutMs,
    connectTimeoutMs: config.connectTimeoutMs,
    what: 'rollout store',
    meanwhile: 'no replica leads rollouts until it is',
    log: deps.log,
    ...(deps.now ? { now: deps.now } : {}),
  });
  return new RedisRolloutStore(client, { config, log: deps.log, replicaId: deps.replicaId ?? defaultReplicaId(), now: deps.now });
}
