// Benchmark target: `serve-model` in-process with an event-loop delay monitor, for the batching on/off comparison.
// Usage: node dist/bench/loop-probe.js <model dir> <port> [maxBatchSize maxQueueDelayUs]  → "ready <url>";
// each stdin line "report" answers one JSON line {p99Ms, maxMs} for the time since the previous report.

import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { repositoryConfig, startRuntime } from '../src/app/runtime.js';
import { createLogger } from '../src/telemetry/log.js';

const [dir, portArg, maxBatchSize, maxQueueDelayUs] = process.argv.slice(2);
const batching = maxBatchSize === undefined ? undefined : { maxBatchSize: Number(maxBatchSize), maxQueueDelayUs: Number(maxQueueDelayUs ?? 500) };
const config = await repositoryConfig(dir!, { workers: 1, logLevel: 'warn', ...(batching ? { batching } : {}) });
config.server = { ...config.server, host: '127.0.0.1', port: Number(portArg ?? 0) };
const runtime = await startRuntime(config, createLogger('warn'));
const delay = monitorEventLoopDelay({ resolution: 1 });
delay.enable();
process.stdout.write(`ready ${runtime.url}\n`);
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'report') return;
  process.stdout.write(`${JSON.stringify({ p99Ms: delay.percentile(99) / 1e6, maxMs: delay.max / 1e6 })}\n`);
  delay.reset();
});
process.on('SIGTERM', () => void runtime.stop().then(() => process.exit(0)));
