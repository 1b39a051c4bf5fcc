// Latency comparisons (e.g. a slow shadow must not move the primary p99 by more than 1 ms) run alone, after the main
// pass: sub-millisecond differences are only meaningful when no other test file competes for the two cores.
import main from './ava.config.js';

export default { ...main, files: ['test/**/*.timing.test.ts'], concurrency: 1, serial: true };
