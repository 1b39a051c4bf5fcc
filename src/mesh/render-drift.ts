// Drift between checked-in Istio manifests and what `mesh render` makes of the gateway config, as readable lines.

import type { RenderedMesh } from './istio.js';

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

const show = (value: unknown) => (value === undefined ? 'nothing' : JSON.stringify(value));

/**
 * Arrays whose items have an identity are compared by it, not by position, so one inserted route reads as "missing
 * route X" instead of every later route differing: routes and subsets by `name`, weighted destinations by subset.
 */
function identity(item: unknown): string | undefined {
  if (!isObject(item)) return undefined;
  if (typeof item.name === 'string') return item.name;
  const destination = item.destination;
  if (isObject(destination))
    return typeof destination.subset === 'string' ? destination.subset : typeof destination.host === 'string' ? destination.host : undefined;
  return undefined;
}

function diff(expected: unknown, actual: unknown, at: string, out: string[]): void {
  if (Array.isArray(expected) && Array.isArray(actual)) {
    const maybeKeys = expected.map(identity);
    const maybeActualKeys = actual.map(identity);
    const defined = (list: (string | undefined)[]): list is string[] => list.every((k) => k !== undefined) && new Set(list).size === list.length;
    if (defined(maybeKeys) && defined(maybeActualKeys)) {
      const keys = maybeKeys;
      const actualKeys = maybeActualKeys;
      keys.forEach((key, i) => {
        const j = actualKeys.indexOf(key);
        if (j < 0) out.push(`${at}[${key}]: missing from the manifest (the config renders ${show(expected[i])})`);
        else diff(expected[i], actual[j], `${at}[${key}]`, out);
      });
      actualKeys.forEach((k, j) => {
        if (!keys.includes(k)) out.push(`${at}[${k}]: in the manifest but not in the config (${show(actual[j])})`);
      });
      // Routes are matched first to last, so their order is part of the routing.
      const common = keys.filter((k) => actualKeys.includes(k));
      const actualOrder = actualKeys.filter((k) => keys.includes(k));
      if (common.join('\n') !== actualOrder.join('\n')) out.push(`${at}: order differs: manifest ${actualOrder.join(', ')}; config ${common.join(', ')}`);
      return;
    }
    for (let i = 0; i < Math.max(expected.length, actual.length); i++) diff(expected[i], actual[i], `${at}[${i}]`, out);
    return;
  }
  if (isObject(expected) && isObject(actual)) {
    for (const key of new Set([...Object.keys(expected), ...Object.keys(actual)])) diff(expected[key], actual[key], at === '' ? key : `${at}.${key}`, out);
    return;
  }
  if (JSON.stringify(expected) !== JSON.stringify(actual)) out.push(`${at}: manifest has ${show(actual)}, the config renders ${show(expected)}`);
}

const DURATION_UNITS_MS = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
const DURATION = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/;
const DURATION_PART = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;

/**
 * Istio durations (Go's time.ParseDuration syntax, which Istio's CRD validation uses): `60s`, `1m`, `500ms`, `1h`,
 * `1.5s`, `1m30s`; undefined for anything else (`sixty`, `60`, `-1s`).
 */
export function parseDurationMs(text: string): number | undefined {
  const trimmed = text.trim();
  if (!DURATION.test(trimmed)) return undefined;
  let ms = 0;
  for (const [, amount, unit] of trimmed.matchAll(DURATION_PART)) ms += Number(amount) * DURATION_UNITS_MS[unit as keyof typeof DURATION_UNITS_MS];
  return ms;
}

function find(documents: readonly unknown[], kind: string, name: string): Record<string, unknown> | undefined {
  return documents.find(
    (d): d is Record<string, unknown> =>
      isObject(d) &&
      d.kind === kind &&
      typeof d.apiVersion === 'string' &&
      d.apiVersion.startsWith('networking.istio.io/') &&
      isObject(d.metadata) &&
      d.metadata.name === name,
  );
}

/**
 * Every difference between the manifests in `documents` and the rendered ones, in the parts the gateway config owns:
 * the VirtualService's hosts and routes, the DestinationRule's host and subsets, and an idle timeout below the
 * gateway's keep-alive. Connection-pool sizes and outlier detection are the operator's to tune and are not compared.
 * Empty when there is no drift.
 */
export function meshDrift(rendered: RenderedMesh, documents: readonly unknown[], keepAliveTimeoutMs: number): string[] {
  const out: string[] = [];
  const vsName = rendered.virtualService.metadata.name;
  const vs = find(documents, 'VirtualService', vsName);
  if (!vs) out.push(`VirtualService ${vsName}: not found in the manifest`);
  else {
    const lines: string[] = [];
    diff(rendered.virtualService.spec, vs.spec, 'spec', lines);
    diff(rendered.virtualService.metadata.namespace, isObject(vs.metadata) ? vs.metadata.namespace : undefined, 'metadata.namespace', lines);
    out.push(...lines.map((l) => `VirtualService ${vsName}: ${l}`));
  }
  const drName = rendered.destinationRule.metadata.name;
  const dr = find(documents, 'DestinationRule', drName);
  if (!dr) out.push(`DestinationRule ${drName}: not found in the manifest`);
  else {
    const spec = isObject(dr.spec) ? dr.spec : {};
    const lines: string[] = [];
    diff(rendered.destinationRule.spec.host, spec.host, 'spec.host', lines);
    diff(rendered.destinationRule.spec.subsets, spec.subsets, 'spec.subsets', lines);
    diff(rendered.destinationRule.metadata.namespace, isObject(dr.metadata) ? dr.metadata.namespace : undefined, 'metadata.namespace', lines);
    const pool = isObject(spec.trafficPolicy) && isObject(spec.trafficPolicy.connectionPool) ? spec.trafficPolicy.connectionPool : undefined;
    const idle = isObject(pool) && isObject(pool.http) ? pool.http.idleTimeout : undefined;
    const idleMs = typeof idle === 'string' ? parseDurationMs(idle) : undefined;
    if (idleMs === undefined) {
      lines.push(
        `spec.trafficPolicy.connectionPool.http.idleTimeout: ${idle === undefined ? 'missing' : `${show(idle)} is not a duration`}; it must be set below the gateway's server.keepAliveTimeoutMs (${keepAliveTimeoutMs} ms), since Istio's default is 1 h`,
      );
    } else if (idleMs >= keepAliveTimeoutMs) {
      lines.push(
        `spec.trafficPolicy.connectionPool.http.idleTimeout: ${idle as string} is not below the gateway's server.keepAliveTimeoutMs (${keepAliveTimeoutMs} ms): Envoy would reuse connections the gateway has closed (503 UC)`,
      );
    }
    out.push(...lines.map((l) => `DestinationRule ${drName}: ${l}`));
  }
  return out;
}
