// Strict validation of Envoy YAML against the real Envoy v3 API protos: unknown fields, wrong types and unknown @types fail.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import protobuf from 'protobufjs';
import { parse as parseYaml } from 'yaml';

// Dev tooling (tests, checks): protobufjs and the protos are devDependencies, and nothing on the runtime path imports this.
const require = createRequire(import.meta.url);

/** The proto trees inside @grpc/grpc-js-xds (envoy-api, googleapis, xds with udpa, protoc-gen-validate). */
export function envoyProtoDirs(): string[] {
  const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
  return ['envoy-api', 'googleapis', 'xds', 'protoc-gen-validate', 'udpa'].map((d) => join(deps, d)).filter((d) => existsSync(d));
}

/** Well-known types protobufjs bundles; descriptor.proto ships as a file inside protobufjs. */
const BUNDLED = /^google\/protobuf\/(any|api|duration|empty|field_mask|source_context|struct|timestamp|type|wrappers)\.proto$/;

function protoFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...protoFiles(full));
    else if (entry.name.endsWith('.proto')) out.push(full);
  }
  return out;
}

/**
 * Every Envoy/xds/udpa .proto whose imports all exist (the package ships a subset of the API: v2 and a few
 * third-party imports are missing, and files needing them are left out), loaded into one protobufjs Root.
 */
export function loadEnvoyProtos(dirs: readonly string[] = envoyProtoDirs()): protobuf.Root {
  const descriptor = join(dirname(require.resolve('protobufjs/package.json')), 'google', 'protobuf', 'descriptor.proto');
  const locate = (rel: string): string | undefined => {
    if (BUNDLED.test(rel)) return rel;
    if (rel === 'google/protobuf/descriptor.proto') return descriptor;
    return dirs.map((d) => join(d, rel)).find((f) => existsSync(f));
  };
  const imports = new Map<string, string[]>();
  const importsOf = (file: string): string[] => {
    let found = imports.get(file);
    if (found === undefined) {
      found = [...readFileSync(file, 'utf8').matchAll(/^import\s+(?:public\s+|weak\s+)?"([^"]+)";/gm)].map((m) => m[1]!);
      imports.set(file, found);
    }
    return found;
  };
  const loadable = new Map<string, boolean>();
  const canLoad = (file: string, seen: Set<string>): boolean => {
    const known = loadable.get(file);
    if (known !== undefined) return known;
    if (seen.has(file)) return true; // an import cycle is judged by its other members
    seen.add(file);
    const ok = importsOf(file).every((rel) => {
      const target = locate(rel);
      return target !== undefined && (BUNDLED.test(target) || target === descriptor || canLoad(target, seen));
    });
    loadable.set(file, ok);
    return ok;
  };
  const roots = dirs.filter((d) => !d.endsWith('googleapis') && !d.endsWith('protoc-gen-validate'));
  const files = roots.flatMap((d) => protoFiles(d)).filter((f) => !/\/(tests?|java)\//.test(relative(dirs[0] ?? '', f)) && canLoad(f, new Set()));
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    if (BUNDLED.test(target)) return target;
    if (target === 'google/protobuf/descriptor.proto') return descriptor;
    if (existsSync(target) && resolve(target) === target) return target;
    return locate(target) ?? resolve(dirname(origin), target);
  };
  root.loadSync(files, { keepCase: true });
  root.resolveAll();
  return root;
}

export interface EnvoyValidation {
  /** Violations: the config would be rejected by Envoy's strict proto parsing (or names a type it does not know). */
  errors: string[];
  /** Deprecated fields in use (Envoy accepts them with a warning). */
  warnings: string[];
  /** Every `@type` (and TypedStruct `type_url`) that was resolved, in document order. */
  types: string[];
}

const TYPE_URL_PREFIX = 'type.googleapis.com/';
const DURATION = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/;
const MAX_DURATION_SECONDS = 315_576_000_000;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;
const INT_RANGES: Record<string, [bigint, bigint]> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  fixed32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  fixed64: [0n, 2n ** 64n - 1n],
};
const WRAPPERS: Record<string, string> = {
  'google.protobuf.DoubleValue': 'double',
  'google.protobuf.FloatValue': 'float',
  'google.protobuf.Int64Value': 'int64',
  'google.protobuf.UInt64Value': 'uint64',
  'google.protobuf.Int32Value': 'int32',
  'google.protobuf.UInt32Value': 'uint32',
  'google.protobuf.BoolValue': 'bool',
  'google.protobuf.StringValue': 'string',
  'google.protobuf.BytesValue': 'bytes',
};
/** Types whose proto3 JSON form is not an object of fields: inside an Any they sit under "value". */
const SPECIAL_JSON = new Set([
  ...Object.keys(WRAPPERS),
  'google.protobuf.Duration',
  'google.protobuf.Timestamp',
  'google.protobuf.FieldMask',
  'google.protobuf.Struct',
  'google.protobuf.Value',
  'google.protobuf.ListValue',
]);
const TYPED_STRUCTS = new Set(['xds.type.v3.TypedStruct', 'udpa.type.v1.TypedStruct']);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const lowerCamel = (name: string): string => name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
const show = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

/**
 * Walks a proto3-JSON value against a message type. protobufjs's fromObject is lenient (unknown fields are dropped,
 * wrong types coerced), so every rule of the JSON mapping Envoy's parser enforces is checked here instead.
 */
class StrictWalker {
  readonly result: EnvoyValidation = { errors: [], warnings: [], types: [] };
  readonly #fieldIndex = new Map<protobuf.Type, Map<string, protobuf.Field>>();

  constructor(private readonly root: protobuf.Root) {}

  #error(path: string, message: string): void {
    this.result.errors.push(`${path || '(root)'}: ${message}`);
  }

  #fields(type: protobuf.Type): Map<string, protobuf.Field> {
    let index = this.#fieldIndex.get(type);
    if (index === undefined) {
      index = new Map();
      for (const field of type.fieldsArray) {
        index.set(field.name, field);
        const jsonName = field.options?.json_name;
        index.set(typeof jsonName === 'string' ? jsonName : lowerCamel(field.name), field);
      }
      this.#fieldIndex.set(type, index);
    }
    return index;
  }

  #lookupMessage(fullName: string): protobuf.Type | undefined {
    const found = this.root.lookup(fullName);
    return found instanceof protobuf.Type ? found : undefined;
  }

  message(type: protobuf.Type, value: unknown, path: string): void {
    const name = type.fullName.replace(/^\./, '');
    if (SPECIAL_JSON.has(name)) return this.#special(name, value, path);
    if (name === 'google.protobuf.Any') return this.#any(value, path);
    if (!isObject(value)) return this.#error(path, `expected an object (${name}), got ${show(value)}`);
    if (name === 'google.protobuf.Empty' && Object.keys(value).length > 0) return this.#error(path, 'google.protobuf.Empty takes no fields');
    const fields = this.#fields(type);
    const seen = new Map<protobuf.Field, string>();
    const oneofs = new Map<string, string>();
    for (const [key, child] of Object.entries(value)) {
      const at = path ? `${path}.${key}` : key;
      const field = fields.get(key);
      if (field === undefined) {
        this.#error(at, `unknown field '${key}' in ${name}`);
        continue;
      }
      const twice = seen.get(field);
      if (twice !== undefined) this.#error(at, `field '${field.name}' is given twice (as '${twice}' and '${key}')`);
      seen.set(field, key);
      if (child === null && field.resolvedType?.fullName !== '.google.protobuf.Value') continue; // null = unset
      if (field.partOf !== null && field.partOf !== undefined) {
        const other = oneofs.get(field.partOf.name);
        if (other !== undefined) this.#error(at, `'${key}' and '${other}' are in the same oneof '${field.partOf.name}': set only one`);
        oneofs.set(field.partOf.name, key);
      }
      if (field.options?.deprecated === true) this.result.warnings.push(`${at}: field '${field.name}' of ${name} is deprecated`);
      this.#field(field, child, at);
      this.#rules(field, child, at);
    }
    // The protoc-gen-validate rules Envoy checks right after parsing that a reader would most often trip over.
    for (const field of type.fieldsArray) {
      // Inside a oneof, `required` binds only when that member is the one chosen, so only plain fields are checked.
      if (
        (field.partOf === null || field.partOf === undefined) &&
        field.options?.['(validate.rules).message.required'] === true &&
        (value[field.name] ?? value[lowerCamel(field.name)] ?? null) === null
      ) {
        this.#error(path, `${name} requires the field '${field.name}'`);
      }
    }
    for (const oneof of type.oneofsArray) {
      if (oneof.options?.['(validate.required)'] === true && !oneofs.has(oneof.name)) {
        this.#error(path, `${name} requires one of ${oneof.oneof.map((f) => `'${f}'`).join(', ')}`);
      }
    }
  }

  /** Length and range rules (validate.rules string.min_len, <int>.gt/gte/lt/lte) on a set, well-typed scalar. */
  #rules(field: protobuf.Field, value: unknown, path: string): void {
    const options = field.options;
    if (options === undefined || field.repeated || field.map) return;
    const minLen = options['(validate.rules).string.min_len'];
    if (typeof minLen === 'number' && typeof value === 'string' && value.length < minLen) this.#error(path, `must be at least ${minLen} character(s) long`);
    if (typeof value !== 'number') return;
    const bound = (op: string): number | undefined => {
      const b = options[`(validate.rules).${field.type}.${op}`];
      return typeof b === 'number' ? b : undefined;
    };
    const [gt, gte, lt, lte] = [bound('gt'), bound('gte'), bound('lt'), bound('lte')];
    if (gt !== undefined && !(value > gt)) this.#error(path, `must be greater than ${gt}`);
    if (gte !== undefined && !(value >= gte)) this.#error(path, `must be at least ${gte}`);
    if (lt !== undefined && !(value < lt)) this.#error(path, `must be less than ${lt}`);
    if (lte !== undefined && !(value <= lte)) this.#error(path, `must be at most ${lte}`);
  }

  #field(field: protobuf.Field, value: unknown, path: string): void {
    if (field instanceof protobuf.MapField) {
      if (!isObject(value)) return this.#error(path, `expected a map (object), got ${show(value)}`);
      for (const [key, item] of Object.entries(value)) {
        if (field.keyType !== 'string')
          this.#scalar(field.keyType, /^(true|false)$/.test(key) && field.keyType === 'bool' ? key === 'true' : key, `${path}[${key}]`);
        this.#single(field, item, `${path}.${key}`);
      }
      return;
    }
    if (field.repeated) {
      if (!Array.isArray(value)) return this.#error(path, `expected a list, got ${show(value)}`);
      value.forEach((item, i) => this.#single(field, item, `${path}[${i}]`));
      return;
    }
    this.#single(field, value, path);
  }

  #single(field: protobuf.Field, value: unknown, path: string): void {
    const resolved = field.resolvedType;
    if (resolved instanceof protobuf.Type) return this.message(resolved, value, path);
    if (resolved instanceof protobuf.Enum) return this.#enum(resolved, value, path);
    this.#scalar(field.type, value, path);
  }

  #enum(type: protobuf.Enum, value: unknown, path: string): void {
    if (type.fullName === '.google.protobuf.NullValue') {
      if (value !== null) this.#error(path, `expected null, got ${show(value)}`);
      return;
    }
    if (typeof value === 'string') {
      if (!(value in type.values))
        this.#error(path, `unknown value ${show(value)} for enum ${type.fullName.slice(1)} (one of ${Object.keys(type.values).join(', ')})`);
      return;
    }
    if (typeof value === 'number' && Number.isInteger(value)) {
      if (!Object.values(type.values).includes(value)) this.#error(path, `unknown number ${value} for enum ${type.fullName.slice(1)}`);
      return;
    }
    this.#error(path, `expected an enum name of ${type.fullName.slice(1)}, got ${show(value)}`);
  }

  #scalar(kind: string, value: unknown, path: string): void {
    switch (kind) {
      case 'string':
        if (typeof value !== 'string') this.#error(path, `expected a string, got ${show(value)}`);
        return;
      case 'bool':
        if (typeof value !== 'boolean') this.#error(path, `expected true or false, got ${show(value)}`);
        return;
      case 'bytes':
        if (typeof value !== 'string' || !BASE64.test(value)) this.#error(path, `expected base64 bytes, got ${show(value)}`);
        return;
      case 'double':
      case 'float':
        if (typeof value === 'number' ? !Number.isFinite(value) : typeof value !== 'string' || !/^(NaN|-?Infinity|-?\d+(\.\d+)?([eE][+-]?\d+)?)$/.test(value)) {
          this.#error(path, `expected a number, got ${show(value)}`);
        } else if (kind === 'float' && typeof value === 'number' && Math.abs(value) > 3.4028234663852886e38)
          this.#error(path, `${value} is out of float range`);
        return;
      default: {
        const range = INT_RANGES[kind];
        if (range === undefined) return this.#error(path, `unsupported field type ${kind}`);
        // proto3 JSON: integers as numbers, or as decimal strings (64-bit values often are).
        const asText =
          typeof value === 'number' && Number.isInteger(value) ? String(value) : typeof value === 'string' && /^-?\d+$/.test(value) ? value : undefined;
        if (asText === undefined) return this.#error(path, `expected an integer (${kind}), got ${show(value)}`);
        const n = BigInt(asText);
        if (n < range[0] || n > range[1]) this.#error(path, `${asText} is out of ${kind} range`);
      }
    }
  }

  #special(name: string, value: unknown, path: string): void {
    const wrapped = WRAPPERS[name];
    if (wrapped !== undefined) return this.#scalar(wrapped, value, path);
    switch (name) {
      case 'google.protobuf.Duration': {
        const m = typeof value === 'string' ? DURATION.exec(value) : null;
        if (m === null) return this.#error(path, `expected a duration such as "1.5s", got ${show(value)}`);
        if (Number(m[2]) > MAX_DURATION_SECONDS) this.#error(path, `duration ${value as string} is out of range`);
        return;
      }
      case 'google.protobuf.Timestamp':
        if (typeof value !== 'string' || !RFC3339.test(value) || Number.isNaN(Date.parse(value)))
          this.#error(path, `expected an RFC 3339 timestamp, got ${show(value)}`);
        return;
      case 'google.protobuf.FieldMask':
        if (typeof value !== 'string') this.#error(path, `expected a field mask string, got ${show(value)}`);
        return;
      case 'google.protobuf.Struct':
        if (!isObject(value)) this.#error(path, `expected an object (Struct), got ${show(value)}`);
        return;
      case 'google.protobuf.ListValue':
        if (!Array.isArray(value)) this.#error(path, `expected a list (ListValue), got ${show(value)}`);
        return;
      default:
        return; // google.protobuf.Value: any JSON
    }
  }

  #any(value: unknown, path: string): void {
    if (!isObject(value)) return this.#error(path, `expected an object with "@type" (google.protobuf.Any), got ${show(value)}`);
    const url = value['@type'];
    if (typeof url !== 'string' || url === '') return this.#error(path, 'google.protobuf.Any needs "@type"');
    const at = `${path}[@type=${url}]`;
    const slash = url.lastIndexOf('/');
    if (!url.startsWith(TYPE_URL_PREFIX) || slash !== TYPE_URL_PREFIX.length - 1) {
      return this.#error(path, `"@type" must be ${TYPE_URL_PREFIX}<message>, got ${show(url)}`);
    }
    const typeName = url.slice(slash + 1);
    const type = this.#lookupMessage(typeName);
    if (type === undefined) return this.#error(path, `unknown @type ${typeName} (no such message in the Envoy API protos)`);
    this.result.types.push(typeName);
    const { ['@type']: _typeUrl, ...rest } = value;
    if (SPECIAL_JSON.has(typeName)) {
      const keys = Object.keys(rest);
      if (keys.length !== 1 || keys[0] !== 'value') return this.#error(at, `an Any of ${typeName} holds exactly one key, "value"`);
      return this.#special(typeName, rest.value, `${at}.value`);
    }
    if (typeName === 'google.protobuf.Any') return this.#error(at, 'an Any directly inside an Any is not supported by Envoy');
    this.message(type, rest, at);
    if (TYPED_STRUCTS.has(typeName)) this.#typedStruct(rest, at);
  }

  /** TypedStruct carries its config as a Struct under `value`, typed by `type_url`: validate that too. */
  #typedStruct(value: Record<string, unknown>, path: string): void {
    const url = value.type_url ?? value.typeUrl;
    if (typeof url !== 'string') return this.#error(path, 'TypedStruct needs type_url');
    const typeName = url.slice(url.lastIndexOf('/') + 1);
    const type = this.#lookupMessage(typeName);
    if (type === undefined) return this.#error(path, `unknown TypedStruct type_url ${typeName}`);
    this.result.types.push(typeName);
    this.message(type, value.value ?? {}, `${path}.value`);
  }
}

/** Validates a decoded document (YAML → JS) as the message `typeName`, Bootstrap by default. */
export function validateEnvoyObject(root: protobuf.Root, value: unknown, typeName = 'envoy.config.bootstrap.v3.Bootstrap'): EnvoyValidation {
  const type = root.lookupType(typeName);
  const walker = new StrictWalker(root);
  walker.message(type, value, '');
  return walker.result;
}

/** Parses Envoy YAML (errors and duplicate keys are violations) and validates it. */
export function validateEnvoyYaml(root: protobuf.Root, text: string, typeName?: string): EnvoyValidation {
  let value: unknown;
  try {
    value = parseYaml(text, { uniqueKeys: true });
  } catch (err) {
    return { errors: [`(yaml): ${(err as Error).message}`], warnings: [], types: [] };
  }
  return validateEnvoyObject(root, value, typeName);
}
