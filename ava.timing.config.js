// Latency comparisons (e.g. a slow shadow must not move the primary p99 by more than 1 ms) run alone, after the main
// pass: sub-millisecond differences are only meaningful when no other test file competes for the two cores.
export default {
  "files": [
    "test/**/*.timing.test.ts"
  ],
  "typescript": {
    "rewritePaths": {
      "src/": "dist/src/",
      "test/": "dist/test/",
      "scripts/": "dist/scripts/"
    },
    "compile": false
  },
  "workerThreads": false,
  "timeout": "2m",
  "concurrency": 1,
  "serial": true
};
