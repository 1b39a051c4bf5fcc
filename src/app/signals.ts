// SIGTERM/SIGINT handling shared by `start` and `serve-model`: stop once, exit at once on a second signal, and never
// outlive the shutdown deadline (a backstop for a close() that hangs).

import type { Logger } from '../telemetry/log.js';

export interface SignalStop {
  /** Drains and closes; the signal tells why (SIGTERM from the kubelet, SIGINT from a terminal). */
  stop(signal: NodeJS.Signals): Promise<void>;
  /** After this long from the first signal the process exits with 1 whatever is still running, ms. */
  deadlineMs: number;
}

export function stopOnSignals(log: Logger, { stop, deadlineMs }: SignalStop): void {
  const onSignal = (signal: NodeJS.Signals) => {
    process.once(signal, () => {
      log.warn({ signal }, 'second signal: exiting now');
      log.flush();
      process.exit(1);
    });
    setTimeout(() => {
      log.error({ deadlineMs }, 'shutdown deadline passed: exiting now');
      log.flush();
      process.exit(1);
    }, deadlineMs).unref();
    stop(signal).then(
      () => {
        log.info('stopped');
        log.flush();
        process.exitCode = 0;
      },
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        log.flush();
        process.exitCode = 1;
      },
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}
