// The upstream stage on its own, for unit tests of guards and failover: iris version 1 is the real in-process ONNX
// model; version 2 is a remote whose every answer (a status and body, or a thrown error) the test scripts.

import type { ExecutionContext } from 'ava';
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { aroundEveryCall, intercept, type Backend, type ForwardedRequest, type ForwardedResponse } from '../../src/backends/backend.js';
import { createBackend } from '../../src/backends/create.js';
import { parseConfig } from '../../src/config/load.js';
import { RequestBody } from '../../src/http/request-body.js';
import { ModelCatalog, type ServedVersion } from '../../src/models/catalog.js';
import { createContext } from '../../src/pipeline/context.js';
import type { Context } from '../../src/pipeline/stage.js';
import { RawBody } from '../../src/protocol/binary.js';
import { GuardRegistry } from '../../src/resilience/registry.js';
import type { RolloutSignals } from '../../src/rollout/signals.js';
import { upstreamStage } from '../../src/stages/upstream.js';
import { createLogger } from '../../src/telemetry/log.js';
import { IRIS_ROW, ROOT, gatewayConfig, irisModels, irisRequest } from './gateway.js';

const log = createLogger('silent');

/** What the scripted remote does with one call. */
export type Script = (request: ForwardedRequest) => Promise<ForwardedResponse>;

/** A remote's JSON answer. */
export function answer(status: number, body: unknown): ForwardedResponse {
  return { status, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(body)) };
}

/** An OIP inference answer from the scripted remote. */
export const remoteOk = (): ForwardedResponse => answer(200, { model_name: 'iris-remote', outputs: [] });

/** A remote-kind backend (pass-through, metadata of iris) answering every forward() from `script`. */
function scriptedRemote(metadata: Backend['metadata'], script: { current: Script }): Backend {
  return {
    kind: 'http',
    passThrough: true,
    start: () => Promise.resolve(),
    metadata,
    ready: () => true,
    infer: () => Promise.reject(new Error('the scripted remote takes forwarded bodies only')),
    forward: (request) => script.current(request),
    close: () => Promise.resolve(),
  };
}

export interface UpstreamUnitOptions {
  /** `models.iris.fallback`. */
  fallback?: string;
  /** `models.iris.versions.2.limits`. */
  limits?: Record<string, unknown>;
  /** `models.iris.versions.2.breaker` (default: opens after 2 calls, stays open a minute). */
  breaker?: Record<string, unknown>;
  signals?: RolloutSignals;
}

export async function upstreamUnit(t: ExecutionContext, options: UpstreamUnitOptions = {}) {
  const models = irisModels() as { iris: Record<string, unknown> & { versions: Record<string, Record<string, unknown>> } };
  if (options.fallback) models.iris.fallback = options.fallback;
  models.iris.versions['2']!.breaker = options.breaker ?? { volumeThreshold: 2, resetTimeoutMs: 60_000 };
  if (options.limits) models.iris.versions['2']!.limits = options.limits;
  const config = await parseConfig(gatewayConfig({ models }), { baseDir: ROOT, source: 'test' });
  /** Versions called, in order, by this setup's stage. */
  const served: string[] = [];
  const script: { current: Script } = { current: async () => remoteOk() };
  let v1: Backend | undefined;
  const catalog = ModelCatalog.fromConfig(config, (m, v, b) => {
    const real = createBackend(m, v, b, log);
    if (v === '1')
      return (v1 = intercept(
        real,
        aroundEveryCall((_op, call) => (served.push('1'), call())),
      ));
    void real.close();
    return intercept(
      scriptedRemote(() => v1!.metadata(), script),
      aroundEveryCall((_op, call) => (served.push('2'), call())),
    );
  });
  await catalog.start();
  const registry = new GuardRegistry({ log });
  t.teardown(async () => {
    registry.close();
    await catalog.close();
  });
  const version = (v: string): ServedVersion => catalog.get('iris')!.versions.get(v)!;
  const fallbacks = new Map(options.fallback ? [['iris', version(options.fallback)] as const] : []);
  const stage = upstreamStage({ catalog, guards: registry.bind(config, catalog), fallbacks, ...(options.signals ? { signals: options.signals } : {}) });
  /** An inference routed to version 2: by weight with stable (1) behind it (`failover`), or pinned by path. */
  const ctx = (o: { pinned?: boolean; failover?: boolean } = {}): Context => {
    const req = new IncomingMessage(new Socket());
    req.push(JSON.stringify(irisRequest([IRIS_ROW])));
    req.push(null);
    const c = createContext({
      requestId: 'r1',
      operation: 'infer',
      modelName: 'iris',
      pathVersion: o.pinned ? '2' : undefined,
      headers: {},
      clientAddress: '127.0.0.1',
      body: new RequestBody(req, 1 << 20),
    });
    c.target = version('2');
    if (o.failover) c.failover = version('1');
    c.responseHeaders['x-model-version'] = '2';
    return c;
  };
  /** Scripts version 2's next answers, one per call (the last one repeats). */
  const scriptV2 = (...answers: Script[]) => {
    let i = 0;
    script.current = (request) => answers[Math.min(i++, answers.length - 1)]!(request);
  };
  /** Calls `stage.handle` as the chain would: nothing may run after the terminal stage. */
  const run = (c: Context) => stage.handle(c, () => Promise.reject(new Error('the terminal stage called next()')));
  return { stage, run, ctx, registry, served, scriptV2, version };
}

/** A reply's body as JSON: in-process answers are exact JSON text (a RawBody), error bodies plain objects. */
export function replyJson(body: unknown): unknown {
  return body instanceof RawBody ? JSON.parse(Buffer.concat(body.chunks).toString('utf8')) : body;
}
