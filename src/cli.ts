#!/usr/bin/env node
// model-gateway <command>: the process entry. Dispatch lives in commands/run.ts, which imports each command lazily.

import { failureMessage, run, type CommandIo } from './commands/run.js';

const io: CommandIo = { stdout: (t) => void process.stdout.write(t), stderr: (t) => void process.stderr.write(t), env: process.env };
run(process.argv.slice(2), io).then(
  (code) => {
    // -1: a serving command (start, serve-model) keeps the process up until a signal stops it.
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    io.stderr(failureMessage(err));
    process.exitCode = 1;
  },
);
