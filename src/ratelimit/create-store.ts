// Creates the process's rate-limit store from config: once per process, so buckets survive config reloads.

import type { RateLimitsConfig } from '../config/schema.js';
import type { Logger } from '../telemetry/log.js';
import { MemoryStore } from './memory-store.js';
import { RateLimitStats, type RateLimitStore } from './store.js';
import type { Now } from '../core/clock.js';

export async function createRateLimitStore(config: RateLimitsConfig | undefined, deps: { log: Logger; now?: Now }): Promise<RateLimitStore> {
  const stats = new RateLimitStats();
  const store = config?.store ?? { kind: 'memory' as const, maxKeys: 100_000 };
  // Redis (ioredis) is loaded only by a gateway that uses it.
  if (store.kind === 'redis') return (await import('./redis-store.js')).connectRedisStore(store, { log: deps.log, stats, now: deps.now });
  return new MemoryStore(store.maxKeys, deps.now ?? Date.now, stats);
}
