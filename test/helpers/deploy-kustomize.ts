// Test helper: builds a kustomization like `kustomize build` (the subset deploy/ uses), refusing any kustomization key
// it does not model, and records which files a build reads (so a test can prove every file under deploy/ is checked).
// Objects are validated with ./k8s-schema.ts.

import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { K8sObject } from './k8s-schema.js';

export type { K8sObject } from './k8s-schema.js';

export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function asObject(doc: unknown, source: string): K8sObject {
  if (
    !isRecord(doc) ||
    typeof doc.apiVersion !== 'string' ||
    typeof doc.kind !== 'string' ||
    !isRecord(doc.metadata) ||
    typeof doc.metadata.name !== 'string'
  ) {
    throw new Error(`${source}: a document without apiVersion, kind and metadata.name`);
  }
  return doc as K8sObject;
}

export async function readManifests(file: string, reads?: Set<string>): Promise<K8sObject[]> {
  reads?.add(path.resolve(file));
  const docs = [...parseAllDocuments(await readFile(file, 'utf8'))];
  const errors = docs.flatMap((d) => d.errors.map((e) => e.message));
  if (errors.length > 0) throw new Error(`${file}: ${errors.join('; ')}`);
  return docs
    .map((d) => d.toJS() as unknown)
    .filter((d) => d !== null)
    .map((d) => asObject(d, file));
}

/** List items merged by these keys, as Kubernetes' strategic merge does for containers, volumes, mounts, env, ports. */
const MERGE_KEYS = ['name', 'mountPath', 'containerPort'] as const;

function mergeKey(items: unknown[]): (typeof MERGE_KEYS)[number] | undefined {
  return MERGE_KEYS.find((key) => items.length > 0 && items.every((item) => isRecord(item) && item[key] !== undefined));
}

/** A strategic-merge patch: maps merge, keyed lists merge by key, other lists are replaced, `null` deletes a key. */
export function strategicMerge(base: unknown, patch: unknown): unknown {
  if (isRecord(base) && isRecord(patch)) {
    const out: Record<string, unknown> = { ...base };
    for (const [key, value] of Object.entries(patch)) {
      if (value === null) delete out[key];
      else out[key] = key in base ? strategicMerge(base[key], value) : value;
    }
    return out;
  }
  if (Array.isArray(base) && Array.isArray(patch)) {
    const key = mergeKey([...base, ...patch]);
    if (key === undefined) return patch;
    const out = [...base];
    for (const item of patch as Record<string, unknown>[]) {
      const i = out.findIndex((existing) => isRecord(existing) && existing[key] === item[key]);
      if (i < 0) out.push(item);
      else out[i] = strategicMerge(out[i], item);
    }
    return out;
  }
  return patch;
}

/** The kustomization keys this builder models, and the keys it models inside each entry of the list-valued ones. */
const SUPPORTED_KEYS = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'configMapGenerator', 'generatorOptions', 'patches', 'images']);
const SUPPORTED_ENTRY_KEYS: Readonly<Record<string, ReadonlySet<string>>> = {
  configMapGenerator: new Set(['name', 'files']),
  generatorOptions: new Set(['disableNameSuffixHash']),
  patches: new Set(['path']),
  images: new Set(['name', 'newName', 'newTag']),
};

/** Every way a kustomization.yaml can ask for something this builder would silently not do, as readable lines. */
function unsupported(k: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (k.apiVersion !== 'kustomize.config.k8s.io/v1beta1' || k.kind !== 'Kustomization')
    problems.push(`apiVersion/kind must be kustomize.config.k8s.io/v1beta1 Kustomization`);
  const unknown = Object.keys(k).filter((key) => !SUPPORTED_KEYS.has(key));
  if (unknown.length > 0) problems.push(`kustomization keys this test cannot build: ${unknown.join(', ')}`);
  for (const [key, allowed] of Object.entries(SUPPORTED_ENTRY_KEYS)) {
    const value = k[key];
    if (value === undefined) continue;
    const entries = key === 'generatorOptions' ? [value] : Array.isArray(value) ? value : undefined;
    if (entries === undefined) {
      problems.push(`${key}: expected a list`);
      continue;
    }
    entries.forEach((entry, i) => {
      const at = key === 'generatorOptions' ? key : `${key}[${i}]`;
      if (!isRecord(entry)) problems.push(`${at}: expected a mapping`);
      else for (const field of Object.keys(entry)) if (!allowed.has(field)) problems.push(`${at}.${field}: not modelled by this test's kustomize build`);
    });
  }
  const resources = k.resources;
  if (resources !== undefined && !(Array.isArray(resources) && resources.every((r) => typeof r === 'string')))
    problems.push('resources: expected a list of paths');
  return problems;
}

interface ImageRule {
  name: string;
  newName?: string;
  newTag?: string;
}

function podSpecs(object: K8sObject): Record<string, unknown>[] {
  const spec = object.spec;
  const template = isRecord(spec) && isRecord(spec.template) ? spec.template.spec : undefined;
  return isRecord(template) ? [template] : [];
}

function applyImages(object: K8sObject, rules: readonly ImageRule[]): void {
  for (const pod of podSpecs(object)) {
    for (const list of [pod.containers, pod.initContainers]) {
      if (!Array.isArray(list)) continue;
      for (const container of list) {
        if (!isRecord(container) || typeof container.image !== 'string') continue;
        const [name, tag] = container.image.split(':') as [string, string | undefined];
        const rule = rules.find((r) => r.name === name);
        if (rule) container.image = `${rule.newName ?? name}${rule.newTag !== undefined ? `:${rule.newTag}` : tag !== undefined ? `:${tag}` : ''}`;
      }
    }
  }
}

/**
 * The objects `kustomize build dir` would print, for the features deploy/ uses: resources (files and directories),
 * configMapGenerator with files and a stable name, namespace, strategic-merge patches by path, and images. Any other
 * kustomization key, or key inside those entries, is an error, so a new feature cannot be silently ignored by the
 * tests. Every file the build reads (kustomization.yaml files included) is added to `reads`, as an absolute path.
 */
export async function buildKustomization(dir: string, reads: Set<string> = new Set()): Promise<K8sObject[]> {
  const file = path.join(dir, 'kustomization.yaml');
  const read = async (f: string) => {
    reads.add(path.resolve(f));
    return readFile(f, 'utf8');
  };
  const [doc] = [...parseAllDocuments(await read(file))];
  const k = doc?.toJS() as unknown;
  if (!isRecord(k)) throw new Error(`${file}: not a mapping`);
  const problems = unsupported(k);
  if (problems.length > 0) throw new Error(`${file}: ${problems.join('; ')}`);

  const objects: K8sObject[] = [];
  for (const resource of (k.resources ?? []) as string[]) {
    const target = path.join(dir, resource);
    if ((await stat(target)).isDirectory()) objects.push(...(await buildKustomization(target, reads)));
    else objects.push(...(await readManifests(target, reads)));
  }
  const options = isRecord(k.generatorOptions) ? k.generatorOptions : {};
  for (const generator of (k.configMapGenerator ?? []) as { name: string; files?: string[] }[]) {
    if (options.disableNameSuffixHash !== true) throw new Error(`${file}: name-suffix hashes are not modelled; set generatorOptions.disableNameSuffixHash`);
    const data: Record<string, string> = {};
    for (const f of generator.files ?? []) data[path.basename(f)] = await read(path.join(dir, f));
    objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: generator.name }, data });
  }
  for (const patch of (k.patches ?? []) as { path: string }[]) {
    for (const p of await readManifests(path.join(dir, patch.path), reads)) {
      const i = objects.findIndex((o) => o.apiVersion === p.apiVersion && o.kind === p.kind && o.metadata.name === p.metadata.name);
      if (i < 0) throw new Error(`${patch.path}: patches ${p.kind} ${p.metadata.name}, which no resource defines`);
      objects[i] = strategicMerge(objects[i], p) as K8sObject;
    }
  }
  if (Array.isArray(k.images)) for (const object of objects) applyImages(object, k.images as ImageRule[]);
  if (typeof k.namespace === 'string') for (const object of objects) object.metadata = { ...object.metadata, namespace: k.namespace };
  return objects;
}

/** The one object of a kind (and name, when given); throws when it is missing or ambiguous. */
export function pick(objects: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!;
}
