// Token buckets in Redis, shared by every replica: one atomic Lua script per decision, a local fallback when Redis is away.

import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { connectRedis } from '../redis/connect.js';
import type { RateLimitStoreConfig } from '../config/schema.js';
import type { Logger } from '../telemetry/log.js';
import { LogThrottle } from '../telemetry/log-throttle.js';
import { MemoryStore } from './memory-store.js';
import { RateLimitStats, StoreUnavailableError, type BucketOutcome, type BucketRequest, type RateLimitStore } from './store.js';
import type { Now } from '../core/clock.js';

/**
 * The same arithmetic as token-bucket.ts, run atomically inside Redis. Time is Redis's own TIME unless a clock value is
 * passed (ARGV[4]): one clock for all replicas, so a replica whose clock runs ahead cannot refill buckets early.
 * A bucket key expires once it would be full again, so idle keys cost no memory.
 */
export const TOKEN_BUCKET_SCRIPT = `
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[4] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[4])
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = burst
local ts = now
local prevTokens = tonumber(state[1])
local prevTs = tonumber(state[2])
if prevTokens ~= nil and prevTs ~= nil then
  tokens = math.min(burst, prevTokens + math.max(0, now - prevTs) * rate / 1000)
  ts = math.max(prevTs, now)
end
local allowed = 0
if tokens + 1e-9 >= cost then
  tokens = math.max(0, tokens - cost)
  allowed = 1
end
local left = string.format('%.17g', tokens)
redis.call('HSET', KEYS[1], 'tokens', left, 'ts', string.format('%.17g', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return { allowed, left }
`;

const SCRIPT_SHA = createHash('sha1').update(TOKEN_BUCKET_SCRIPT).digest('hex');

export interface RedisStoreOptions {
  keyPrefix: string;
  /** The local bucket that decides for failureMode-open rules while Redis is unreachable. */
  fallback: MemoryStore;
  log: Logger;
  stats?: RateLimitStats;
  /** Tests only: pass this time to the script instead of using Redis TIME. */
  scriptTime?: Now;
  /** Time for log throttling. */
  now?: Now;
}

export class RedisStore implements RateLimitStore {
  readonly kind = 'redis';
  readonly stats: RateLimitStats;
  readonly #client: Redis;
  readonly #o: RedisStoreOptions;
  readonly #failureLog: LogThrottle;

  constructor(client: Redis, options: RedisStoreOptions) {
    this.#client = client;
    this.#o = options;
    this.stats = options.stats ?? new RateLimitStats();
    this.#failureLog = new LogThrottle(options.log, options.now ?? Date.now, 5_000);
  }

  get client(): Redis {
    return this.#client;
  }

  async take(request: BucketRequest): Promise<BucketOutcome> {
    // Not connected: decide now rather than queue (the offline queue is off) or wait for a timeout per request.
    if (this.#client.status !== 'ready') return this.#unavailable(request, new Error(`redis connection is ${this.#client.status}`));
    const args = [
      String(request.policy.ratePerSecond),
      String(request.policy.burst),
      String(request.cost),
      this.#o.scriptTime ? String(this.#o.scriptTime()) : '',
    ];
    let reply: unknown;
    try {
      reply = await this.#eval(this.#o.keyPrefix + request.key, args);
    } catch (err) {
      return this.#unavailable(request, err);
    }
    if (!Array.isArray(reply) || reply.length !== 2) return this.#unavailable(request, new Error(`unexpected script reply ${JSON.stringify(reply)}`));
    return { allowed: reply[0] === 1, tokens: Number(reply[1]), degraded: false };
  }

  async #eval(key: string, args: string[]): Promise<unknown> {
    try {
      return await this.#client.evalsha(SCRIPT_SHA, 1, key, ...args);
    } catch (err) {
      // After a Redis restart (or failover) the script cache is empty: EVAL loads it again.
      if (err instanceof Error && err.message.startsWith('NOSCRIPT')) return this.#client.eval(TOKEN_BUCKET_SCRIPT, 1, key, ...args);
      throw err;
    }
  }

  #unavailable(request: BucketRequest, err: unknown): BucketOutcome {
    this.stats.storeErrors++;
    this.#failureLog.warn(
      'unavailable',
      { err, failureMode: request.failureMode, storeErrors: this.stats.storeErrors },
      'rate-limit store unavailable: failureMode open rules use a local bucket, closed rules answer 503',
    );
    if (request.failureMode === 'closed') {
      this.stats.failedClosed++;
      throw new StoreUnavailableError('rate-limit store is unavailable', { cause: err });
    }
    this.stats.fallbackDecisions++;
    return { ...this.#o.fallback.decideNow(request), degraded: true };
  }

  async close(): Promise<void> {
    try {
      await this.#client.quit();
    } catch {
      this.#client.disconnect();
    }
    await this.#o.fallback.close();
  }
}

type RedisStoreConfig = Extract<RateLimitStoreConfig, { kind: 'redis' }>;

/** Connects the shared buckets' client (see connectRedis). Redis being down at start is not fatal: rules apply their failureMode. */
export async function connectRedisStore(config: RedisStoreConfig, deps: { log: Logger; stats?: RateLimitStats; now?: Now }): Promise<RedisStore> {
  const stats = deps.stats ?? new RateLimitStats();
  const client = await connectRedis({
    url: config.url,
    commandTimeoutMs: config.commandTimeoutMs,
    connectTimeoutMs: config.connectTimeoutMs,
    what: 'rate-limit store',
    meanwhile: 'rules apply their failureMode until it is',
    log: deps.log,
    onDisconnect: () => stats.disconnects++,
  });
  return new RedisStore(client, {
    keyPrefix: config.keyPrefix,
    fallback: new MemoryStore(config.fallbackMaxKeys, deps.now ?? Date.now),
    log: deps.log,
    stats,
    ...(deps.now ? { scriptTime: deps.now } : {}),
  });
}
