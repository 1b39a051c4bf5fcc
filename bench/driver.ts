// Load driver in its own process, so it never shares an event loop with what it measures.
// Usage: node dist/bench/driver.js '<json LoadSpec>'  → prints one JSON LoadResult line on stdout.

import { runLoad, type LoadSpec } from './load.js';

export type { LoadResult, LoadSpec } from './load.js';

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
runLoad(spec).then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (err: unknown) => {
    process.stderr.write(`driver failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
