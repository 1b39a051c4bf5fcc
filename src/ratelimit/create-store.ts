// Creates the process's rate-limit store from config: once per process, so buckets survive config reloads.

import type { RateLimitsConfig } from '../config/schema.js';
import type { Logger } from '../telemetry/log.js';
import { MemoryStore } from './memory-store.js';
import { connectRedisStore } from './redis-store.js';
import { RateLimitStats, type RateLimitStore } from './store.js';
import type { Clock } from './token-bucket.js';

export async function createRateLimitStore(config: RateLimitsConfig | undefined, deps: { log: Logger; clock?: Clock }): Promise<RateLimitStore> {
  const stats = new RateLimitStats();
  const store = config?.store ?? { kind: 'memory' as const, maxKeys: 100_000 };
  if (store.kind === 'redis') return connectRedisStore(store, { log: deps.log, stats, clock: deps.clock });
  return new MemoryStore(store.maxKeys, deps.clock ?? Date.now, stats);
}
