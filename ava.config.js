// The main test pass: every test file except the latency comparisons and the console's browser test, which run alone
// afterwards (ava.timing.config.js).
export default {
  files: ['test/**/*.test.ts', '!test/**/*.timing.test.ts', '!test/console/browser.test.ts'],
  typescript: {
    rewritePaths: {
      'src/': 'dist/src/',
      'test/': 'dist/test/',
      'scripts/': 'dist/scripts/',
    },
    compile: false,
  },
  workerThreads: false,
  timeout: '2m',
  concurrency: 2,
};
