// Test helper: strict validation of Kubernetes and Istio objects against the schemas of kubernetes-models and
// @kubernetes-models/istio — wrong types and values as the libraries report them, plus what they let through: unknown
// (misspelled) fields at any depth, and Istio duration fields that are no durations.
//
// Where the schemas are: kubernetes-models 4.x ships no JSON schemas at all, only Ajv "standalone" validators compiled
// from them (kubernetes-models/_schemas/*.mjs); @kubernetes-models/istio keeps its JSON schemas as module-private
// constants that it registers in a private Ajv instance. Neither validator sets `additionalProperties: false`, so a
// typo passes both. What both have in common is that the compiled validator reads every property its schema declares
// (`data.terminationGracePeriodSeconds !== undefined`, also when absent) and enumerates the keys of a map
// (`additionalProperties`, e.g. labels). So the object is validated through a Proxy that records, per object, the keys
// the library's own validator looked at: a key it never read, in an object it did not enumerate, is not in the schema.
// That follows $ref, items, oneOf and additionalProperties exactly as the library does, for both libraries, with no
// copy of a schema that could fall behind the installed version. An object whose schema declares no properties at all
// (free-form, e.g. Istio's `status`) therefore admits no keys either: deploy/ has none, and where a field cannot be
// told from a typo the check fails rather than passes.

import * as appsV1 from 'kubernetes-models/apps/v1';
import * as autoscalingV2 from 'kubernetes-models/autoscaling/v2';
import * as coreV1 from 'kubernetes-models/v1';
import * as policyV1 from 'kubernetes-models/policy/v1';
import * as istioNetworking from '@kubernetes-models/istio/networking.istio.io/v1beta1';
import * as istioSecurity from '@kubernetes-models/istio/security.istio.io/v1';
import { parseDurationMs } from '../../src/mesh/render-drift.js';

export type K8sObject = Record<string, unknown> & { apiVersion: string; kind: string; metadata: Record<string, unknown> & { name: string } };

interface ModelClass {
  readonly apiVersion: string;
  readonly kind: string;
  readonly prototype: { validate(): void };
}

function isModelClass(value: unknown): value is ModelClass {
  if (typeof value !== 'function') return false;
  const statics = value as unknown as { apiVersion?: unknown; kind?: unknown };
  return typeof statics.apiVersion === 'string' && typeof statics.kind === 'string';
}

/** apiVersion/kind → model class, for every kind deploy/ may use. */
const MODELS = new Map<string, ModelClass>();
for (const module of [coreV1, appsV1, policyV1, autoscalingV2, istioNetworking, istioSecurity] as readonly object[]) {
  for (const exported of Object.values(module)) if (isModelClass(exported)) MODELS.set(`${exported.apiVersion}/${exported.kind}`, exported);
}

/**
 * Istio fields of type google.protobuf.Duration (from the Istio API protos; the CRD schema only says `string`), keyed by
 * the name of the field that holds them: `tcp.connectTimeout` is ConnectionPoolSettings.TCPSettings.connect_timeout,
 * wherever a TrafficPolicy appears (spec, subsets[], portLevelSettings[]); `http.timeout` is a VirtualService route's.
 * A test proves every entry is a field of the installed schema.
 */
export const ISTIO_DURATION_FIELDS: Readonly<Record<string, readonly string[]>> = {
  tcp: ['connectTimeout', 'maxConnectionDuration'],
  tcpKeepalive: ['time', 'interval'],
  http: ['idleTimeout', 'timeout'],
  outlierDetection: ['interval', 'baseEjectionTime'],
  httpCookie: ['ttl'],
  loadBalancer: ['warmupDurationSecs'],
  retries: ['perTryTimeout'],
  delay: ['fixedDelay', 'exponentialDelay'],
  corsPolicy: ['maxAge'],
};

interface Seen {
  /** Keys the validator read (or tested with `in` / hasOwnProperty). */
  keys: Set<string>;
  /** The validator listed the object's keys: a map (additionalProperties), every key is the schema's. */
  enumerated: boolean;
}

/** A deep Proxy of `root` that records, for every object reached, which keys were read and whether keys were listed. */
function tracked(root: object): { proxy: object; seen: Map<object, Seen> } {
  const seen = new Map<object, Seen>();
  const proxies = new WeakMap<object, object>();
  const wrap = (value: unknown): unknown => {
    if (value === null || typeof value !== 'object') return value;
    const cached = proxies.get(value);
    if (cached) return cached;
    const info: Seen = { keys: new Set(), enumerated: false };
    seen.set(value, info);
    const proxy = new Proxy(value, {
      get(target, key) {
        if (typeof key === 'string') info.keys.add(key);
        return wrap(Reflect.get(target, key));
      },
      has(target, key) {
        if (typeof key === 'string') info.keys.add(key);
        return Reflect.has(target, key);
      },
      getOwnPropertyDescriptor(target, key) {
        if (typeof key === 'string') info.keys.add(key);
        return Reflect.getOwnPropertyDescriptor(target, key);
      },
      ownKeys(target) {
        info.enumerated = true;
        return Reflect.ownKeys(target);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  return { proxy: wrap(root) as object, seen };
}

const isPlainRecord = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);
const join = (at: string, key: string) => (at === '' ? key : `${at}.${key}`);

/** Every key of `node` (recursively) that the validator never read, as a dotted path. */
function unknownFields(node: unknown, seen: Map<object, Seen>, at: string, out: string[]): void {
  if (Array.isArray(node)) {
    node.forEach((item, i) => unknownFields(item, seen, `${at}[${i}]`, out));
    return;
  }
  if (!isPlainRecord(node)) return;
  const info = seen.get(node);
  for (const key of Object.keys(node)) {
    if (info?.enumerated !== true && info?.keys.has(key) !== true) out.push(join(at, key));
    else unknownFields(node[key], seen, join(at, key), out);
  }
}

/** Istio duration fields (see ISTIO_DURATION_FIELDS) whose value is not a duration such as `60s`, `1.5s`, `100ms`. */
function badDurations(node: unknown, parent: string, at: string, out: string[]): void {
  if (Array.isArray(node)) {
    node.forEach((item, i) => badDurations(item, parent, `${at}[${i}]`, out));
    return;
  }
  if (!isPlainRecord(node)) return;
  for (const [key, value] of Object.entries(node)) {
    const path = join(at, key);
    if (ISTIO_DURATION_FIELDS[parent]?.includes(key) === true && value !== null && value !== undefined) {
      if (typeof value !== 'string' || parseDurationMs(value) === undefined)
        out.push(`${path}: ${JSON.stringify(value)} is not a duration (e.g. 60s, 1.5s, 100ms, 1m30s)`);
    } else badDurations(value, key, path, out);
  }
}

/**
 * Throws, naming `kind name` and every offending path, when `object` violates the Kubernetes or Istio schema of its
 * apiVersion/kind: the library's own errors (types, enums, required fields), unknown fields at any depth, and Istio
 * duration fields that are no durations.
 */
export function validateObject(object: K8sObject): void {
  const model = MODELS.get(`${object.apiVersion}/${object.kind}`);
  if (!model) throw new Error(`no schema for ${object.apiVersion} ${object.kind} (${object.metadata.name})`);
  // The model's validate() reads the data from `this`; give it a receiver with the model's prototype (the Istio models
  // find their schema id there) whose own properties are the object's.
  const root = Object.assign(Object.create(model.prototype) as object, object) as Record<string, unknown>;
  const { proxy, seen } = tracked(root);
  const problems: string[] = [];
  try {
    model.prototype.validate.call(proxy);
  } catch (err) {
    problems.push((err as Error).message);
  }
  const unknown: string[] = [];
  unknownFields(root, seen, '', unknown);
  problems.push(...unknown.map((path) => `${path}: unknown field (not in the ${object.apiVersion} ${object.kind} schema)`));
  if (object.apiVersion.split('/')[0]!.endsWith('.istio.io')) badDurations(object, '', '', problems);
  if (problems.length > 0) throw new Error(`${object.kind} ${object.metadata.name}: ${problems.join('; ')}`);
}
