// One way to connect to Redis for every shared store (rate-limit buckets, rollout state): fail fast while
// disconnected, reconnect on its own, log transitions once, and never make start-up wait longer than its timeout.

import { Redis } from 'ioredis';
import { LogThrottle } from '../telemetry/log-throttle.js';
import type { Logger } from '../telemetry/log.js';

export interface RedisConnectOptions {
  url: string;
  commandTimeoutMs: number;
  connectTimeoutMs: number;
  /** What the connection is for, in log messages, e.g. `rate-limit store`. */
  what: string;
  /** Logged with the warning when Redis is not reachable at start: what happens until it is. */
  meanwhile: string;
  log: Logger;
  /** Called when an established connection is lost. */
  onDisconnect?: () => void;
  now?: () => number;
}

/**
 * Connects (without queueing commands while disconnected, reconnecting with back-off) and waits up to the connect
 * timeout for the first connection. Redis being down at start is not fatal: the client keeps trying.
 */
export async function connectRedis(o: RedisConnectOptions): Promise<Redis> {
  const { log, what } = o;
  const client = new Redis(o.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: o.commandTimeoutMs,
    connectTimeout: o.connectTimeoutMs,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2_000),
    lazyConnect: false,
  });
  const where = redactUrl(o.url);
  let connected = false;
  let everConnected = false;
  client.on('ready', () => {
    log.info({ redis: where, reconnected: everConnected }, `${what} connected`);
    connected = everConnected = true;
  });
  client.on('close', () => {
    if (!connected) return;
    connected = false;
    o.onDisconnect?.();
    log.warn({ redis: where }, `${what} connection lost; reconnecting`);
  });
  const errorLog = new LogThrottle(log, o.now ?? Date.now, 5_000);
  // Without a listener an 'error' event would crash the process; reconnects are ioredis's job.
  client.on('error', (err: Error) => errorLog.warn('error', { err, redis: where }, `${what} error`));
  // Connection errors are retried by ioredis: wait for 'ready' or the timeout, whichever comes first.
  await new Promise<void>((resolve) => {
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      resolve();
    }, o.connectTimeoutMs);
    client.once('ready', onReady);
  });
  if (client.status !== 'ready') log.warn({ redis: where, connectTimeoutMs: o.connectTimeoutMs }, `${what} not reachable at start; ${o.meanwhile}`);
  return client;
}

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'redis (unparsable url)';
  }
}
