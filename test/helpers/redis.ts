// Test helper: a real redis-server on an ephemeral 127.0.0.1 port that a test can stop and start again.

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { closedPort } from './jwt.js';

export const REDIS_MISSING =
  'redis-server not found: install it (Debian/Ubuntu: `apt-get install -y redis-server`, macOS: `brew install redis`) or set REDIS_SERVER=/path/to/redis-server';

function findRedisServer(): string | undefined {
  const candidates = [
    process.env.REDIS_SERVER,
    ...(process.env.PATH ?? '').split(path.delimiter).map((dir) => path.join(dir, 'redis-server')),
    '/usr/bin/redis-server',
    '/usr/sbin/redis-server',
  ];
  for (const candidate of candidates) {
    if (!candidate) continue;
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export const REDIS_BIN = findRedisServer();

/**
 * Run Redis tests when redis-server exists, and always under CI=true (where a missing binary must fail the run, not
 * skip it); elsewhere they are skipped with the install hint printed once.
 */
export const redisTestsEnabled = REDIS_BIN !== undefined || process.env.CI === 'true';
if (!redisTestsEnabled) process.stderr.write(`skipping Redis tests: ${REDIS_MISSING}\n`);

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGKILL: an abrupt outage, no goodbye to clients) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty: it keeps no data). */
  start(): Promise<void>;
}

export async function startRedis(): Promise<RedisServer> {
  if (REDIS_BIN === undefined) throw new Error(REDIS_MISSING);
  const bin = REDIS_BIN;
  const port = await closedPort();
  let child: ChildProcess | undefined;
  const start = async () => {
    const proc = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start on port ${port}:\n${out}`)), 10_000);
      proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}:\n${out}`));
      });
    });
  };
  const stop = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = once(proc, 'exit');
    proc.kill('SIGKILL');
    await exited;
  };
  await start();
  return { port, url: `redis://127.0.0.1:${port}`, stop, start };
}
