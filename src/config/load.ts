// Loads a config file: YAML → ${ENV} substitution → strict schema → file checks (files it reads exist and are readable,
// the directories it writes the disagreement log and the audit trail to exist and are writable); reports every problem by path.

import { access, readFile, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { configSchema, type GatewayConfig } from './schema.js';

/** A config that cannot be used; `problems` lists each one as `path: message`. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(source: string, problems: string[]) {
    super(`invalid config ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface LoadedConfig {
  config: GatewayConfig;
  /** Absolute path of the file it came from (relative paths in it resolve against its directory). */
  file: string;
}

const ENV_REF = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const WHOLE_REF = /^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$/;

/**
 * Replaces `${NAME}` and `${NAME:-default}` in every string value (not in keys); `$$` is a literal `$`.
 * Substitution happens after YAML parsing so a secret containing YAML syntax cannot change the document's shape.
 */
export function substituteEnv(value: unknown, env: NodeJS.ProcessEnv, problems: string[], at: string[] = []): unknown {
  if (typeof value === 'string') {
    const replaced = value.replace(ENV_REF, (match, varName: string | undefined, fallback: string | undefined) => {
      if (match === '$$') return '$';
      const found = env[varName!];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      problems.push(`${formatPath(at)}: environment variable ${varName} is not set`);
      return '';
    });
    // `port: ${PORT:-8080}` must stay a number: a value that is one whole reference is typed like a YAML scalar.
    if (WHOLE_REF.test(value)) {
      if (/^-?\d+(\.\d+)?$/.test(replaced)) return Number(replaced);
      if (replaced === 'true' || replaced === 'false') return replaced === 'true';
    }
    return replaced;
  }
  if (Array.isArray(value)) return value.map((item, i) => substituteEnv(item, env, problems, [...at, String(i)]));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substituteEnv(v, env, problems, [...at, k]);
    return out;
  }
  return value;
}

function formatPath(at: readonly PropertyKey[]): string {
  return at.length === 0 ? '(root)' : at.map(String).join('.');
}

/** Validates an already-parsed config object; relative paths resolve against `baseDir`. Throws ConfigError. */
export async function parseConfig(raw: unknown, options: { baseDir: string; source: string; env?: NodeJS.ProcessEnv }): Promise<GatewayConfig> {
  const envProblems: string[] = [];
  const substituted = substituteEnv(raw ?? {}, options.env ?? process.env, envProblems);
  const problems = [...envProblems];
  const envPaths = new Set(envProblems.map((p) => p.slice(0, p.indexOf(': '))));
  const result = configSchema.safeParse(substituted);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const at = formatPath(issue.path);
      // A value emptied by a missing variable would be reported twice; the variable is the real problem.
      if (!envPaths.has(at)) problems.push(`${at}: ${describeIssue(issue)}`);
    }
  }
  // Input files are checked even when other keys are wrong, so one run lists everything to fix.
  for (const input of inputFiles(substituted)) {
    const absolute = path.resolve(options.baseDir, input.path);
    input.resolve(absolute);
    try {
      await access(absolute, constants.R_OK);
    } catch {
      problems.push(`${input.at}: file not found (${absolute})`);
    }
  }
  const logDirProblem = await disagreementLogProblem(substituted, options.baseDir);
  if (logDirProblem) problems.push(logDirProblem);
  const auditDirProblem = await writableDirProblem(substituted, ['admin', 'audit', 'path'], options.baseDir);
  if (auditDirProblem) problems.push(auditDirProblem);
  if (problems.length > 0 || !result.success) throw new ConfigError(options.source, sortByPath(problems));
  for (const input of inputFiles(result.data)) input.resolve(path.resolve(options.baseDir, input.path));
  return result.data;
}

interface InputFile {
  at: string;
  path: string;
  resolve(absolute: string): void;
}

/**
 * Every file the config reads — onnx model paths and issuers' `jwks.file` — found in a config that may not be valid.
 * Relative paths resolve against the config file's directory, like a ConfigMap's neighbouring keys.
 */
function inputFiles(config: unknown): InputFile[] {
  const found: InputFile[] = [];
  const issuers = isRecord(config) && isRecord(config.auth) ? config.auth.issuers : undefined;
  if (Array.isArray(issuers)) {
    issuers.forEach((issuer: unknown, i) => {
      const jwks = isRecord(issuer) ? issuer.jwks : undefined;
      if (isRecord(jwks) && typeof jwks.file === 'string' && jwks.file !== '') {
        found.push({ at: `auth.issuers.${i}.jwks.file`, path: jwks.file, resolve: (absolute) => (jwks.file = absolute) });
      }
    });
  }
  const models = (config as { models?: unknown } | null)?.models;
  if (!isRecord(models)) return found;
  for (const [modelName, model] of Object.entries(models)) {
    const versions = isRecord(model) ? model.versions : undefined;
    if (!isRecord(versions)) continue;
    for (const [version, versionConfig] of Object.entries(versions)) {
      const backend = isRecord(versionConfig) ? versionConfig.backend : undefined;
      if (isRecord(backend) && backend.kind === 'onnx' && typeof backend.path === 'string' && backend.path !== '') {
        found.push({
          at: `models.${modelName}.versions.${version}.backend.path`,
          path: backend.path,
          resolve: (absolute) => {
            backend.path = absolute;
          },
        });
      }
    }
  }
  return found;
}

/**
 * The disagreement log is the one file the config writes: its directory (relative paths resolve against the config
 * file's directory, like the files it reads) must exist and be writable, or every line would be dropped silently.
 * The file itself may not exist yet. The path is left as written; the controller resolves it the same way.
 */
async function disagreementLogProblem(config: unknown, baseDir: string): Promise<string | undefined> {
  const log = isRecord(config) ? config.disagreementLog : undefined;
  if (!isRecord(log) || typeof log.path !== 'string' || log.path === '') return undefined;
  const dir = path.dirname(path.resolve(baseDir, log.path));
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error('not a directory');
    await access(dir, constants.W_OK);
    return undefined;
  } catch {
    return `disagreementLog.path: directory ${dir} does not exist or is not writable`;
  }
}

/** Like the disagreement log's: the directory of a file the config writes (here `admin.audit.path`) must be writable. */
async function writableDirProblem(config: unknown, at: string[], baseDir: string): Promise<string | undefined> {
  let value: unknown = config;
  for (const key of at) value = isRecord(value) ? value[key] : undefined;
  if (typeof value !== 'string' || value === '') return undefined;
  const dir = path.dirname(path.resolve(baseDir, value));
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error('not a directory');
    await access(dir, constants.W_OK);
    return undefined;
  } catch {
    return `${at.join('.')}: directory ${dir} does not exist or is not writable`;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Problems sorted by path (stable), so a parent's unknown keys are listed before its children's issues. */
function sortByPath(problems: string[]): string[] {
  const key = (p: string) => p.slice(0, p.indexOf(': '));
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => (key(a.p) < key(b.p) ? -1 : key(a.p) > key(b.p) ? 1 : a.i - b.i))
    .map((x) => x.p);
}

interface Issue {
  code: string;
  message: string;
  keys?: readonly string[];
  issues?: readonly Issue[];
}

function describeIssue(issue: Issue): string {
  if (issue.code === 'unrecognized_keys' && issue.keys) {
    return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
  }
  // A bad record key (a model or version name) carries the key schema's own message.
  if (issue.code === 'invalid_key' && issue.issues && issue.issues.length > 0) return issue.issues.map(describeIssue).join('; ');
  return issue.message;
}

/** Reads and validates a YAML (or JSON) config file. Throws ConfigError listing every problem. */
export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadedConfig> {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = await readFile(absolute, 'utf8');
  } catch (err) {
    throw new ConfigError(absolute, [`(file): cannot read: ${(err as Error).message}`]);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      absolute,
      doc.errors.map((e) => `(yaml): ${e.message.split('\n')[0]}`),
    );
  }
  const config = await parseConfig(doc.toJS(), { baseDir: path.dirname(absolute), source: absolute, env });
  return { config, file: absolute };
}
