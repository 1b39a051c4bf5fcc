// Counts a backend's calls in flight (infer and forward alike), so a retired backend is closed only once they ended.

import { aroundEveryCall, type BackendInterceptor } from './backend.js';

export class InFlightCalls {
  #count = 0;
  #idle: (() => void)[] = [];

  /** The interceptor that counts; compose it outermost so every call through the backend is seen. */
  readonly interceptor: BackendInterceptor = aroundEveryCall((_operation, call) => {
    this.#count++;
    let pending;
    try {
      pending = call();
    } catch (err) {
      this.#done();
      return Promise.reject(err);
    }
    return pending.finally(() => this.#done());
  });

  #done(): void {
    if (--this.#count === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  get count(): number {
    return this.#count;
  }

  /** Resolves when no call is in flight. */
  whenIdle(): Promise<void> {
    return this.#count === 0 ? Promise.resolve() : new Promise((resolve) => this.#idle.push(resolve));
  }
}
