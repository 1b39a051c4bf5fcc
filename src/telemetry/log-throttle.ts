// Logs at most one line per key per interval, with a count of the lines it held back: dry-run denials can come in floods.

import type { Logger } from './log.js';

export class LogThrottle {
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly intervalMs = 1000,
    /** Distinct keys remembered at most, so attacker-chosen keys cannot grow it without bound. */
    private readonly maxKeys = 1000,
  ) {}

  warn(key: string, fields: Record<string, unknown>, message: string): void {
    const now = this.now();
    const seen = this.#last.get(key);
    if (seen !== undefined && now - seen.at < this.intervalMs) {
      seen.suppressed++;
      return;
    }
    if (seen === undefined && this.#last.size >= this.maxKeys) this.#last.clear();
    this.#last.set(key, { at: now, suppressed: 0 });
    this.log.warn(seen && seen.suppressed > 0 ? { ...fields, suppressed: seen.suppressed } : fields, message);
  }
}
