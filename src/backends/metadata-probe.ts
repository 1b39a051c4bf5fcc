// The remote backends' metadata probe: fetch the remote's model metadata at start and then every interval, keep the
// last good answer, and log the first failure of a run loudly and the rest quietly.

import type { Logger } from 'pino';
import type { BackendMetadata } from '../protocol/oip.js';

export interface MetadataProbeOptions {
  /** One fetch of the metadata; rejects when the remote cannot answer it. */
  readonly fetch: () => Promise<BackendMetadata>;
  readonly intervalMs: number;
  readonly log: Logger;
  /** What the log lines name as the backend (a URL, a gRPC target). */
  readonly target: string;
}

export class MetadataProbe {
  readonly #o: MetadataProbeOptions;
  #metadata: BackendMetadata | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failing = false;
  #closed = false;

  constructor(options: MetadataProbeOptions) {
    this.#o = options;
  }

  /** The last metadata the remote gave; undefined until a fetch succeeded (the version is not ready until then). */
  get metadata(): BackendMetadata | undefined {
    return this.#metadata;
  }

  /**
   * Fetches once, then keeps probing in the background. A remote that is not up yet is no reason to fail the gateway
   * (in a pod the runtime container may start later): the version stays not-ready and the probe keeps trying.
   */
  async start(): Promise<void> {
    await this.#probe();
    this.#schedule();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  async #probe(): Promise<void> {
    try {
      this.#metadata = await this.#o.fetch();
      if (this.#failing) this.#o.log.info({ backend: this.#o.target }, 'backend metadata fetched again');
      this.#failing = false;
    } catch (err) {
      if (this.#closed) return; // the backend was closed under the probe: nothing to report
      const fields = { backend: this.#o.target, reason: err instanceof Error ? err.message : String(err) };
      if (!this.#failing)
        this.#o.log.warn(
          fields,
          this.#metadata
            ? 'cannot refresh the backend metadata; keeping the last one'
            : 'backend not reachable yet; the version stays not-ready and will be retried',
        );
      else this.#o.log.debug(fields, 'backend metadata probe failed again');
      this.#failing = true;
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      void this.#probe().then(() => this.#schedule());
    }, this.#o.intervalMs);
    // Probes never keep the process alive on their own.
    this.#timer.unref();
  }
}
