// Preload for node targets (--import): GC pauses (and, if asked, event-loop delay) written to $BENCH_GC_FILE on SIGUSR2.

import { renameSync, writeFileSync } from 'node:fs';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { summarize } from './stats.js';

const file = process.env.BENCH_GC_FILE;
if (file) {
  let pauses: number[] = [];
  let seq = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) pauses.push(entry.duration);
  }).observe({ entryTypes: ['gc'] });
  // Event-loop delay needs a 1 ms timer, which costs CPU: only when asked (the ONNX batching rows).
  const loop = process.env.BENCH_LOOP_DELAY === '1' ? monitorEventLoopDelay({ resolution: 1 }) : undefined;
  loop?.enable();

  const report = (): void => {
    seq++;
    const body = {
      seq,
      pid: process.pid,
      gc: summarize(pauses),
      ...(loop ? { loop: { p99Ms: loop.percentile(99) / 1e6, maxMs: loop.max / 1e6 } } : {}),
    };
    pauses = [];
    loop?.reset();
    try {
      // Written aside, then renamed: a reader never sees half a file.
      writeFileSync(`${file}.tmp`, JSON.stringify(body));
      renameSync(`${file}.tmp`, file);
    } catch {
      // the bench's temp dir is gone: nothing to report to
    }
  };
  process.on('SIGUSR2', report);
  process.on('exit', report);
}
