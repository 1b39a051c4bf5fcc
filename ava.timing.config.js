// Latency comparisons (e.g. a slow shadow must not move the primary p99 by more than 1 ms) run alone, after the main
// pass: sub-millisecond differences are only meaningful when no other test file competes for the two cores. The
// console's browser test runs here too: a Chromium takes a core of its own, which would slow the main pass's
// deadline tests, and the test itself holds the page to a 2 s limit.
import main from './ava.config.js';

export default { ...main, files: ['test/**/*.timing.test.ts', 'test/console/browser.test.ts'], concurrency: 1, serial: true };
