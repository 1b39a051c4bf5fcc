// What docs/configuration.md is held against: every key of the config schema (from z.toJSONSchema) and the default the
// gateway applies to each (by parsing configs that switch every optional section and every branch on).

import { z } from 'zod';
import { configSchema } from '../../src/config/schema.js';

/** A key in the docs' notation with placeholders collapsed: `models.*.versions.*.backend.path`, `auth.issuers[].typ`. */
export type KeyPath = string;

interface JsonNode {
  type?: string | string[];
  properties?: Record<string, JsonNode>;
  additionalProperties?: JsonNode | boolean;
  items?: JsonNode;
  anyOf?: JsonNode[];
  oneOf?: JsonNode[];
  allOf?: JsonNode[];
  $ref?: string;
}

const isObjectNode = (n: JsonNode | boolean | undefined): n is JsonNode => typeof n === 'object' && n !== null;

/** Every key of the schema: `leaf` for values (scalars, arrays and records of scalars), not for sections. */
export function schemaKeys(): Map<KeyPath, { leaf: boolean }> {
  const keys = new Map<KeyPath, { leaf: boolean }>();
  const add = (path: KeyPath, leaf: boolean) => {
    if (path !== '') keys.set(path, { leaf: leaf || keys.get(path)?.leaf === true });
  };
  const walk = (node: JsonNode, path: KeyPath): void => {
    if (node.$ref !== undefined) throw new Error(`unexpected $ref at ${path}: inline every schema`);
    const branches = node.anyOf ?? node.oneOf ?? node.allOf;
    if (branches) {
      add(path, false);
      for (const b of branches) walk(b, path);
      return;
    }
    if (node.properties) {
      add(path, false);
      for (const [key, child] of Object.entries(node.properties)) walk(child, path === '' ? key : `${path}.${key}`);
      return;
    }
    const values = node.additionalProperties;
    if (isObjectNode(values) && (values.properties || values.anyOf || values.oneOf)) {
      add(path, false);
      walk(values, `${path}.*`);
      return;
    }
    if (node.type === 'array' && node.items && (node.items.properties || node.items.anyOf)) {
      add(path, false);
      walk(node.items, `${path}[]`);
      return;
    }
    add(path, true);
  };
  walk(z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonNode, '');
  return keys;
}

/** Record keys in the samples start with this, so flattened paths can turn them back into `*`. */
const R = 'REC';

const onnx = { kind: 'onnx', path: 'model.onnx' };
const http = { kind: 'http', url: 'http://127.0.0.1:9' };
const grpc = { kind: 'grpc', target: '127.0.0.1:9' };
const issuer = { issuer: 'i', audiences: ['a'], algorithms: ['ES256'], jwks: { url: 'http://127.0.0.1:9/jwks' } };
const rule = { name: 'r', key: { clientAddress: {} }, ratePerSecond: 1, burst: 1 };

/**
 * Configs that between them turn on every optional section and every branch of a union, each with only its required
 * keys: whatever else the parsed config holds is a default the gateway applied.
 */
const SAMPLES: unknown[] = [
  {
    models: {
      [`${R}m`]: {
        versions: { [`${R}1`]: { backend: { ...onnx, batching: { maxBatchSize: 2 } } }, [`${R}2`]: { backend: http }, [`${R}3`]: { backend: grpc } },
        shadow: { targets: [{ version: `${R}2` }], compare: { [`${R}o`]: { mode: 'regression' } } },
        sticky: { header: 'x-user' },
        auth: {},
      },
      [`${R}r`]: {
        versions: { [`${R}1`]: { backend: onnx }, [`${R}2`]: { backend: onnx } },
        rollout: { stable: `${R}1`, candidate: `${R}2`, shadow: { compare: { [`${R}o`]: { mode: 'regression' } } } },
      },
    },
    disagreementLog: { path: 'd.jsonl' },
    auth: { issuers: [issuer] },
    rateLimits: { rules: [rule] },
    coordination: { redis: { url: 'redis://127.0.0.1:9' } },
  },
  {
    models: { [`${R}m`]: { versions: { [`${R}1`]: { backend: onnx } } } },
    rateLimits: { store: { kind: 'redis', url: 'redis://127.0.0.1:9' }, rules: [rule] },
  },
];

type Flat = Map<KeyPath, unknown>;

/** Values by key path; records and empty containers are values, non-empty sections and object arrays are walked. */
function flatten(value: unknown, path: KeyPath, into: Flat): Flat {
  const isPlain = typeof value === 'object' && value !== null && !Array.isArray(value);
  if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'object' && v !== null && !Array.isArray(v))) {
    for (const item of value) flatten(item, `${path}[]`, into);
  } else if (isPlain && Object.keys(value).length > 0) {
    for (const [key, child] of Object.entries(value)) flatten(child, `${path === '' ? '' : `${path}.`}${key.startsWith(R) ? '*' : key}`, into);
  } else if (path !== '') into.set(path, value);
  return into;
}

/** The default the gateway applies to each key that has one (a key the samples leave out but the parse fills in). */
export function effectiveDefaults(): Map<KeyPath, unknown> {
  const defaults = new Map<KeyPath, unknown>();
  for (const sample of SAMPLES) {
    const given = flatten(sample, '', new Map());
    const parsed = flatten(configSchema.parse(sample), '', new Map());
    for (const [path, value] of parsed) {
      if (given.has(path) || [...given.keys()].some((g) => g.startsWith(`${path}.`) || g.startsWith(`${path}[]`))) continue;
      defaults.set(path, value);
    }
  }
  return defaults;
}

export interface DocRow {
  line: number;
  key: KeyPath;
  /** The default column as written. */
  defaultCell: string;
}

/** The rows of the reference table: the first backticked name of the key column, placeholders (`<model>`) collapsed. */
export function referenceRows(markdown: string): DocRow[] {
  const rows: DocRow[] = [];
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.startsWith('## Reference'));
  lines.forEach((text, i) => {
    if (i <= start || !text.startsWith('| `')) return;
    const cells = text.split('|').map((c) => c.trim());
    const key = /`([^`]+)`/.exec(cells[1]!)?.[1];
    if (key !== undefined) rows.push({ line: i + 1, key: key.replace(/<[^>]+>/g, '*'), defaultCell: cells[2] ?? '' });
  });
  return rows;
}

/** A default cell's literal: the backticked value it opens with (JSON when it parses as JSON), else undefined. */
export function documentedDefault(cell: string): { value: unknown } | undefined {
  const m = /^`([^`]*)`/.exec(cell);
  if (!m) return undefined;
  try {
    return { value: JSON.parse(m[1]!) };
  } catch {
    return { value: m[1] };
  }
}
