// Admission by bytes: a process-wide cap on the request bodies buffered at once, so a burst of large bodies is refused
// (503, Retry-After) before it is read instead of growing the heap past the container's memory limit.

export class BodyBudget {
  /** Bytes reserved by bodies being read or held now. */
  #used = 0;
  /** Bodies refused because the budget was full, since start. */
  refused = 0;

  /** `limit`: the most bytes held at once; 0: unlimited. */
  constructor(readonly limit: number) {}

  get used(): number {
    return this.#used;
  }

  /**
   * Reserves `bytes` if they fit. A body that fits alone is always admitted when nothing else is held (a single body
   * is bounded by server.maxBodyBytes, not by this budget).
   */
  tryReserve(bytes: number): boolean {
    if (this.limit > 0 && this.#used > 0 && this.#used + bytes > this.limit) {
      this.refused++;
      return false;
    }
    this.#used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes);
  }
}
