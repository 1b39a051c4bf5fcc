// A bounded cache of verified tokens: RS256/ES256 verification costs more than the whole proxy path, so do it once per token.

import { hash } from 'node:crypto';
import type { Identity } from '../pipeline/stage.js';

interface Entry {
  identity: Identity;
  /** Epoch ms after which the entry must not be used: the token's `exp`, or sooner. */
  expiresAt: number;
}

/** The last token verified on one connection, remembered while the connection lives. */
interface Remembered extends Entry {
  token: string;
}

/**
 * Keyed by SHA-256 of the token, so the cache holds no usable credentials. Least recently used entries are evicted;
 * an entry never outlives its token's `exp` (no clock tolerance is applied here: past `exp`, the token is verified
 * again and the verifier's tolerance decides).
 *
 * Before that, each keep-alive connection remembers its last verified token: a caller (or the Envoy in front) that
 * sends the same token again on the same connection is recognised by comparing the strings, with no hashing. What is
 * remembered is the token that connection already carried, and it goes with the connection (a WeakMap entry).
 */
export class TokenCache {
  readonly #entries = new Map<string, Entry>();
  readonly #byConnection = new WeakMap<object, Remembered>();

  constructor(
    private readonly maxEntries: number,
    private readonly maxTtlMs: number,
    private readonly now: () => number,
  ) {}

  static key(token: string): string {
    return hash('sha256', token, 'base64url');
  }

  /** The identity `token` was verified as on `connection`, if it is the one remembered there and still live. */
  onConnection(connection: object, token: string): Identity | undefined {
    const remembered = this.#byConnection.get(connection);
    if (remembered === undefined || remembered.token !== token) return undefined;
    if (this.now() >= remembered.expiresAt) {
      this.#byConnection.delete(connection);
      return undefined;
    }
    return remembered.identity;
  }

  /** Remembers `token` as `connection`'s, for as long as its cache entry may live (only while the cache is on). */
  remember(connection: object, token: string, identity: Identity, expSeconds: number): void {
    if (this.maxEntries === 0) return;
    const now = this.now();
    const expiresAt = Math.min(expSeconds * 1000, now + this.maxTtlMs);
    if (expiresAt > now) this.#byConnection.set(connection, { token, identity, expiresAt });
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: string): Identity | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    if (this.now() >= entry.expiresAt) return undefined;
    this.#entries.set(key, entry); // most recently used goes last
    return entry.identity;
  }

  /** `expSeconds` is the token's verified `exp`. */
  set(key: string, identity: Identity, expSeconds: number): void {
    if (this.maxEntries === 0) return;
    const now = this.now();
    const expiresAt = Math.min(expSeconds * 1000, now + this.maxTtlMs);
    if (expiresAt <= now) return;
    this.#entries.delete(key);
    while (this.#entries.size >= this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
    this.#entries.set(key, { identity, expiresAt });
  }
}
