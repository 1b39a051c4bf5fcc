// Renders the Istio VirtualService and DestinationRule for the gateway's Service from the gateway's own routing config.

import type { GatewayConfig, ModelConfig } from '../config/schema.js';
import { compareVersions } from '../models/catalog.js';
import { VERSION_HEADER } from '../protocol/headers.js';
import { completeWeights, WeightedChoice } from '../routing/weighted.js';

/** Where the gateway runs in the mesh; every rendered name and host derives from these. */
export interface MeshTarget {
  /** Kubernetes namespace of the gateway's Service. */
  namespace: string;
  /** The gateway's Service name (also the VirtualService and DestinationRule name). */
  service: string;
  /** The Service port clients call (it targets the gateway's data-plane port). */
  port: number;
  /** The Service port of the OIP over gRPC (it targets server.grpc.port); used when the config serves gRPC. */
  grpcPort: number;
  /** Pod labels every subset selects: the Deployment's selector. */
  podLabels: Readonly<Record<string, string>>;
  /**
   * Pod label carrying the version, for a layout with one workload per version. Unset (the shipped layout): every
   * pod serves every version, so subsets differ only by the version the route pins.
   */
  versionLabel?: string;
}

export const DEFAULT_MESH_TARGET: MeshTarget = {
  namespace: 'model-serving',
  service: 'model-gateway',
  port: 80,
  grpcPort: 8082,
  podLabels: { 'app.kubernetes.io/name': 'model-gateway' },
};

export interface Destination {
  host: string;
  subset?: string;
  port: { number: number };
}

export interface RouteDestination {
  destination: Destination;
  weight?: number;
  headers?: { request: { set: Record<string, string> } };
}

export type UriMatch = { uri: { exact: string } | { prefix: string } } | { port: number };

export interface HttpRoute {
  name: string;
  match?: UriMatch[];
  route: RouteDestination[];
  mirror?: Destination;
  mirrorPercentage?: { value: number };
}

export interface VirtualServiceManifest {
  apiVersion: 'networking.istio.io/v1beta1';
  kind: 'VirtualService';
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  spec: { hosts: string[]; http: HttpRoute[] };
}

export interface Subset {
  name: string;
  labels: Record<string, string>;
}

export interface DestinationRuleManifest {
  apiVersion: 'networking.istio.io/v1beta1';
  kind: 'DestinationRule';
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  spec: {
    host: string;
    trafficPolicy: {
      connectionPool: {
        tcp: { connectTimeout: string; maxConnections: number };
        http: { idleTimeout: string; http1MaxPendingRequests: number; maxRequestsPerConnection: number };
      };
      outlierDetection: {
        splitExternalLocalOriginErrors: boolean;
        consecutiveLocalOriginFailures: number;
        consecutive5xxErrors: number;
        consecutiveGatewayErrors: number;
        interval: string;
        baseEjectionTime: string;
        maxEjectionPercent: number;
      };
    };
    subsets: Subset[];
  };
}

export interface RenderedMesh {
  virtualService: VirtualServiceManifest;
  destinationRule: DestinationRuleManifest;
  /** What the mesh cannot express exactly, for the operator (printed on stderr by the CLI). */
  notes: string[];
}

/** Label marking objects this renderer owns, so a reader knows not to hand-edit the routing. */
export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'model-gateway-mesh-render' } as const;

/** `iris`, `2` → `iris-v2`; Istio wants subset names to be DNS labels, so other characters become '-'. */
export const subsetName = (model: string, version: string) => `${model}-v${version}`.toLowerCase().replace(/[^a-z0-9-]/g, '-');

export const serviceHost = (target: MeshTarget) => `${target.service}.${target.namespace}.svc.cluster.local`;

/**
 * The Envoy idle timeout for connections to the gateway: it must be shorter than the gateway's keep-alive, or Envoy
 * reuses a socket Node has just closed (503 UC during rollouts). 80 % of it, in whole seconds when that is at least
 * a second, else in milliseconds — always strictly shorter.
 */
export function idleTimeoutMs(keepAliveTimeoutMs: number): number {
  const target = keepAliveTimeoutMs * 0.8;
  return target >= 1000 ? Math.floor(target / 1000) * 1000 : Math.floor(target);
}

/** An Istio duration: `60s`, or `800ms` when not whole seconds. */
export const formatDuration = (ms: number) => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);

/**
 * Integer percentages summing to exactly 100 (Istio's rule for weighted routes) from relative integer weights, by the
 * largest-remainder method: each share is floored, and the leftover points go to the largest fractional parts (ties to
 * the earlier version), so no version is off by more than one point.
 */
export function toPercentages(weights: readonly { version: string; weight: number }[]): { version: string; percent: number }[] {
  const total = weights.reduce((sum, w) => sum + w.weight, 0);
  if (total <= 0) throw new Error('at least one weight must be above 0');
  const exact = weights.map((w, i) => ({ i, version: w.version, raw: (w.weight * 100) / total }));
  const result = exact.map((e) => ({ version: e.version, percent: Math.floor(e.raw) }));
  let left = 100 - result.reduce((sum, r) => sum + r.percent, 0);
  const byRemainder = [...exact].sort((a, b) => b.raw - Math.floor(b.raw) - (a.raw - Math.floor(a.raw)) || a.i - b.i);
  for (const e of byRemainder) {
    if (left === 0) break;
    result[e.i]!.percent += 1;
    left -= 1;
  }
  return result;
}

/** The version unversioned metadata/ready requests get, decided exactly as the gateway's routing table does. */
export function defaultVersionOf(model: ModelConfig): string {
  if (model.defaultVersion !== undefined) return model.defaultVersion;
  const ordered = Object.keys(model.versions).sort(compareVersions);
  if (model.weights !== undefined) return new WeightedChoice(completeWeights(model.weights, ordered)).heaviest();
  return ordered[ordered.length - 1]!;
}

/**
 * Why the mesh cannot pin the version it picked for a model, or undefined when it can. The mesh pins by setting
 * x-model-version on each weighted destination; the gateway honours that only with `override.enabled` and no
 * `requiredScope`, and a sticky model's rendezvous hashing has no Istio equivalent.
 */
function whyNotPinnable(model: ModelConfig): string | undefined {
  if (model.sticky !== undefined) return 'it uses sticky routing, which Istio weights cannot reproduce';
  if (!model.override.enabled) return `override.enabled is false, so the gateway would ignore the ${VERSION_HEADER} the mesh sets`;
  if (model.override.requiredScope !== undefined)
    return `override.requiredScope is set, so the gateway would refuse the ${VERSION_HEADER} the mesh sets for callers without it`;
  return undefined;
}

function modelRoutes(name: string, model: ModelConfig, target: MeshTarget, notes: string[]): HttpRoute[] {
  const host = serviceHost(target);
  const to = (version?: string): Destination => ({
    host,
    ...(version === undefined ? {} : { subset: subsetName(name, version) }),
    port: { number: target.port },
  });
  const versions = Object.keys(model.versions).sort(compareVersions);
  const base = `/v2/models/${name}`;
  const routes: HttpRoute[] = [];

  // A version in the path wins in the gateway, so the mesh sends it straight to that version's subset.
  for (const version of versions) {
    routes.push({
      name: `${subsetName(name, version)}-path`,
      match: [{ uri: { exact: `${base}/versions/${version}` } }, { uri: { prefix: `${base}/versions/${version}/` } }],
      route: [{ destination: to(version) }],
    });
  }

  const infer: HttpRoute = { name: `${name}-infer`.toLowerCase(), match: [{ uri: { exact: `${base}/infer` } }], route: [] };
  const positive = model.weights === undefined ? [] : completeWeights(model.weights, versions).filter((w) => w.weight > 0);
  const blocker = whyNotPinnable(model);
  if (model.rollout !== undefined) {
    // Mesh weights would pin versions with x-model-version, and pinned requests bypass the rollout.
    notes.push(`model ${name}: the split stays in the gateway (no subset, no mesh weights) because its progressive rollout sets the weights at runtime`);
    infer.route.push({ destination: to() });
  } else if (positive.length > 1 && blocker !== undefined) {
    notes.push(`model ${name}: the weighted split stays in the gateway (no subset, no mesh weights) because ${blocker}`);
    infer.route.push({ destination: to() });
  } else if (positive.length > 1) {
    for (const { version, percent } of toPercentages(positive)) {
      if (percent === 0) notes.push(`model ${name}: version ${version}'s weight rounds to 0 % in Istio's whole-percent weights; it gets no mesh traffic`);
      infer.route.push({ destination: to(version), weight: percent, headers: { request: { set: { [VERSION_HEADER]: version } } } });
    }
  } else {
    // One version takes everything: the gateway would pick it anyway, so no header is needed.
    infer.route.push({ destination: to(positive[0]?.version ?? defaultVersionOf(model)) });
  }

  const targets = model.shadow?.targets ?? [];
  if (targets.length > 0) {
    // Istio mirrors to one destination per route: take the highest share (the first listed on a tie).
    const chosen = targets.reduce((best, t) => (t.percent > best.percent ? t : best));
    if (targets.length > 1) {
      const dropped = targets.filter((t) => t !== chosen).map((t) => `${t.version} (${t.percent} %)`);
      notes.push(`model ${name}: Istio mirrors to one target; mirroring to version ${chosen.version} (${chosen.percent} %), not to ${dropped.join(', ')}`);
    }
    infer.mirror = to(chosen.version);
    infer.mirrorPercentage = { value: chosen.percent };
    // Envoy copies the request after the route's header rewrites (it has no per-mirror headers in Istio), so the copy
    // cannot ask for the shadow version; say so rather than let an operator believe the mesh compares versions.
    notes.push(
      `model ${name}: Istio mirrors ${chosen.percent} % of unversioned inference to subset ${subsetName(name, chosen.version)}, but the copy keeps ` +
        `the primary's headers (including a pinned ${VERSION_HEADER}), so it runs version ${chosen.version} only on pods that serve nothing else; ` +
        `the gateway's own shadow stage is what sends copies to version ${chosen.version} and compares the answers`,
    );
  }
  routes.push(infer);

  // Unversioned metadata and ready describe the model's default version.
  routes.push({
    name: `${name}-default`.toLowerCase(),
    match: [{ uri: { exact: base } }, { uri: { prefix: `${base}/` } }],
    route: [{ destination: to(defaultVersionOf(model)) }],
  });
  return routes;
}

/** The VirtualService and DestinationRule that route the gateway's Service the way the config routes its models. */
export function renderIstio(config: GatewayConfig, target: MeshTarget = DEFAULT_MESH_TARGET): RenderedMesh {
  const notes: string[] = [];
  const host = serviceHost(target);
  const labels = { 'app.kubernetes.io/name': target.service, ...MANAGED_BY };
  const names = Object.keys(config.models).sort();
  const http: HttpRoute[] = names.flatMap((name) => modelRoutes(name, config.models[name]!, target, notes));
  if (config.server.grpc.enabled) {
    // A gRPC call names its model and version inside the message, where the mesh cannot look: every call on the gRPC
    // port goes to the gateway's gRPC port as it came, and the gateway routes it. Before the catch-all below, whose
    // destination is the REST port; the model routes above match /v2/ paths only, which no gRPC method has.
    http.push({ name: 'grpc', match: [{ port: target.grpcPort }], route: [{ destination: { host, port: { number: target.grpcPort } } }] });
  }
  // Health, server metadata and unknown models: any pod.
  http.push({ name: 'default', route: [{ destination: { host, port: { number: target.port } } }] });

  const subsets: Subset[] = names.flatMap((name) =>
    Object.keys(config.models[name]!.versions)
      .sort(compareVersions)
      .map((version) => ({
        name: subsetName(name, version),
        labels: { ...target.podLabels, ...(target.versionLabel === undefined ? {} : { [target.versionLabel]: version }) },
      })),
  );
  const idle = formatDuration(idleTimeoutMs(config.server.keepAliveTimeoutMs));
  return {
    virtualService: {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'VirtualService',
      metadata: { name: target.service, namespace: target.namespace, labels },
      spec: { hosts: [host], http },
    },
    destinationRule: {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'DestinationRule',
      metadata: { name: target.service, namespace: target.namespace, labels },
      spec: {
        host,
        trafficPolicy: {
          connectionPool: {
            tcp: { connectTimeout: '2s', maxConnections: 1024 },
            http: { idleTimeout: idle, http1MaxPendingRequests: 1024, maxRequestsPerConnection: 0 },
          },
          // Per subset, i.e. per version: a pod whose v2 fails is ejected from v2's cluster only. Only local-origin
          // failures eject (connect failures, resets, timeouts: a pod that is gone or hung). The gateway's own 5xx are
          // deliberate answers — 503 + Retry-After when it sheds load or a version's breaker is open, 504 at its
          // deadline — and ejecting for them would pile that load onto the remaining pods; Istio's default is to
          // eject after 5 consecutive 5xx, so 5xx and gateway-error (502/503/504) ejection are switched off
          // explicitly. Same policy as envoy/*.yaml (envoy/README.md).
          outlierDetection: {
            splitExternalLocalOriginErrors: true,
            consecutiveLocalOriginFailures: 5,
            consecutive5xxErrors: 0,
            consecutiveGatewayErrors: 0,
            interval: '10s',
            baseEjectionTime: '30s',
            maxEjectionPercent: 50,
          },
        },
        subsets,
      },
    },
    notes,
  };
}
