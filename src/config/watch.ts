// Watches the config file for changes, Kubernetes ConfigMap symlink swaps included, and reports new content once settled.

import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { isGatewayError } from '../errors/gateway-error.js';
import type { ReloadConfig } from './schema.js';

export interface ConfigWatcherOptions {
  /** The config file as the gateway was given it (possibly a symlink, as in a ConfigMap volume). */
  file: string;
  settings: Pick<ReloadConfig, 'debounceMs' | 'pollIntervalMs'>;
  /** Called with the new content's hash when the file's content differs from the last one seen; awaited. */
  onChange: (hash: string) => Promise<void>;
  log: Logger;
}

export function contentHash(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * A ConfigMap volume holds `gateway.yaml → ..data/gateway.yaml` and `..data → ..2024_06_11_…`; kubelet updates it by
 * writing a new timestamped directory and atomically renaming a new `..data` symlink over the old one. The file's
 * own inode never changes and the old target directory is deleted, so watching the file (or its resolved path) misses
 * updates. Instead this watches the directory the file is named in (where `..data` is swapped) and the directory its
 * real path is in (for an ordinary file edited in place), re-arming after every check because the real path moves.
 * Events are debounced, then the content is hashed: only a real content change is reported, so touch, chmod or a
 * rewrite with the same bytes do nothing. A periodic poll covers filesystems that emit no events.
 */
export class ConfigWatcher {
  readonly #opts: ConfigWatcherOptions;
  readonly #watchers = new Map<string, FSWatcher>();
  #settings: ConfigWatcherOptions['settings'];
  #lastHash: string | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #queued: Promise<void> | undefined;
  #closed = false;

  constructor(opts: ConfigWatcherOptions) {
    this.#opts = opts;
    this.#settings = opts.settings;
  }

  /** Starts watching; `initialHash` is the content already applied (read now when not given). */
  async start(initialHash?: string): Promise<void> {
    this.#lastHash = initialHash ?? (await this.#read())?.hash;
    await this.#arm();
    this.#schedulePoll();
  }

  /** Applies new debounce/poll settings from a reloaded config. */
  configure(settings: ConfigWatcherOptions['settings']): void {
    this.#settings = settings;
    this.#schedulePoll();
  }

  /** Records content applied by other means (an admin reload) so the watcher does not apply it again. */
  seen(hash: string): void {
    this.#lastHash = hash;
  }

  /**
   * Checks now, without waiting for an event (the poll, and tests). Resolves once the file has been read after this
   * call and any reload that caused has finished.
   */
  check(): Promise<void> {
    if (!this.#running) {
      this.#running = this.#checkOnce().finally(() => {
        this.#running = undefined;
      });
      return this.#running;
    }
    // The check under way may have read the file before this call: queue one more, shared by every caller meanwhile.
    this.#queued ??= this.#running.then(() => {
      this.#queued = undefined;
      return this.#closed ? undefined : this.check();
    });
    return this.#queued;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#debounce);
    clearInterval(this.#poll);
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
  }

  async #checkOnce(): Promise<void> {
    const current = await this.#read();
    await this.#arm();
    if (!current || current.hash === this.#lastHash || this.#closed) return;
    this.#lastHash = current.hash;
    this.#opts.log.info({ file: this.#opts.file, hash: current.hash.slice(0, 12) }, 'config file changed; reloading');
    await this.#opts.onChange(current.hash).catch((err: unknown) => {
      // A refused reload (invalid file, a backend that cannot start) was already logged with its problems by whoever
      // refused it; only something unexpected is logged here.
      if (isGatewayError(err)) this.#opts.log.debug({ err }, 'config reload not applied');
      else this.#opts.log.error({ err }, 'config reload failed');
    });
  }

  async #read(): Promise<{ hash: string } | undefined> {
    try {
      const content = await readFile(this.#opts.file);
      // An empty read is a write caught half-way (truncate, then write): no config is empty. The write's own event follows.
      if (content.length === 0) return undefined;
      return { hash: contentHash(content) };
    } catch (err) {
      // Mid-swap the link can dangle for an instant; the next event or poll reads it again.
      this.#opts.log.debug({ err, file: this.#opts.file }, 'config file not readable right now');
      return undefined;
    }
  }

  #onEvent = (): void => {
    if (this.#closed) return;
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => void this.check(), this.#settings.debounceMs);
  };

  async #arm(): Promise<void> {
    if (this.#closed) return;
    const dirs = new Set([path.dirname(path.resolve(this.#opts.file))]);
    const real = await realpath(this.#opts.file).catch(() => undefined);
    // close() may have run while we waited: a watcher armed now would keep the process alive.
    if (this.#closed) return;
    if (real) dirs.add(path.dirname(real));
    for (const [dir, w] of this.#watchers) {
      if (!dirs.has(dir)) {
        w.close();
        this.#watchers.delete(dir);
      }
    }
    for (const dir of dirs) {
      if (this.#watchers.has(dir)) continue;
      try {
        const w = watch(dir, this.#onEvent);
        // A watched directory that disappears (an old ConfigMap timestamp dir) errors; re-arm on the next check.
        w.on('error', () => {
          w.close();
          if (this.#watchers.get(dir) === w) this.#watchers.delete(dir);
          this.#onEvent();
        });
        this.#watchers.set(dir, w);
      } catch (err) {
        this.#opts.log.warn({ err, dir }, 'cannot watch config directory; relying on polling');
      }
    }
  }

  #schedulePoll(): void {
    clearInterval(this.#poll);
    this.#poll = undefined;
    if (this.#closed || this.#settings.pollIntervalMs <= 0) return;
    this.#poll = setInterval(() => void this.check(), this.#settings.pollIntervalMs);
    this.#poll.unref();
  }
}
