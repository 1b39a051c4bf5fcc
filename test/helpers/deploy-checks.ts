// Test helper: checks for the deploy/ files no Kubernetes schema covers — the Dockerfile and Triton's config.pbtxt.
// Each returns readable problems (empty when fine), so a broken fixture can prove exactly which rule it trips.

import { access } from 'node:fs/promises';
import path from 'node:path';

// ---------------------------------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  line: number;
  keyword: string;
  args: string;
}

/** Instructions with line continuations joined and comments dropped (the subset of Dockerfile syntax deploy/ uses). */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) line = `${line.slice(0, -1)} ${lines[++i]!.trim()}`;
    const m = /^(\S+)\s*(.*)$/.exec(line)!;
    out.push({ line: start + 1, keyword: m[1]!.toUpperCase(), args: m[2]!.trim() });
  }
  return out;
}

/** An exec-form argument list (`["node", "x.js"]`), or undefined when `args` is none. */
function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  try {
    const list = JSON.parse(args) as unknown;
    return Array.isArray(list) && list.every((w) => typeof w === 'string') ? list : undefined;
  } catch {
    return undefined;
  }
}

/** `--from=build /app/x ./x` → flags and positional words (exec-form JSON arrays are parsed as JSON). */
function words(args: string): { flags: Map<string, string>; positional: string[] } {
  const flags = new Map<string, string>();
  const positional: string[] = [];
  const list = execForm(args) ?? args.split(/\s+/).filter((w) => w !== '');
  for (const word of list) {
    const flag = /^--([\w-]+)=(.*)$/.exec(word);
    if (flag && positional.length === 0) flags.set(flag[1]!, flag[2]!);
    else positional.push(word);
  }
  return { flags, positional };
}

export interface DockerfileRules {
  /** The build context (`docker build -f deploy/Dockerfile .` from the repository root). */
  contextDir: string;
  /** Directories `npm run build` (tsc) compiles: the build stage must copy every one of them. */
  compiled: readonly string[];
}

/**
 * What would make the image fail to build or differ from what deploy/ relies on: a stage not on Node 24, a COPY of a
 * path missing from the build context, a build stage without the compiled sources, a final stage without the gateway's
 * ENTRYPOINT, the example models serve-model reads, the vendored protos (ext_authz gRPC), or a non-root user.
 */
export async function dockerfileProblems(text: string, rules: DockerfileRules): Promise<string[]> {
  const problems: string[] = [];
  const all = instructions(text);
  for (const ins of all) {
    if (ins.args.startsWith('[') && execForm(ins.args) === undefined)
      problems.push(`line ${ins.line}: ${ins.keyword} ${ins.args}: not a JSON array of strings (Docker would run it as a shell command)`);
  }
  const stages: { name?: string; from: Instruction; body: Instruction[] }[] = [];
  for (const ins of all) {
    if (ins.keyword === 'FROM') {
      const { positional } = words(ins.args);
      const name = positional[1]?.toUpperCase() === 'AS' ? positional[2] : undefined;
      const image = positional[0] ?? '';
      const earlier = stages.some((s) => s.name === image);
      if (!earlier && !/^node:24(?:[-.@]|$)/.test(image)) problems.push(`line ${ins.line}: FROM ${image}: every stage must be built on Node 24 (node:24…)`);
      stages.push({ ...(name === undefined ? {} : { name }), from: ins, body: [] });
    } else if (stages.length === 0) {
      if (ins.keyword !== 'ARG') problems.push(`line ${ins.line}: ${ins.keyword} before the first FROM`);
    } else stages[stages.length - 1]!.body.push(ins);
  }
  if (stages.length === 0) return [...problems, 'no FROM: not a Dockerfile'];

  // Every context path a COPY/ADD names must exist, or `docker build` fails.
  for (const ins of all.filter((i) => i.keyword === 'COPY' || i.keyword === 'ADD')) {
    const { flags, positional } = words(ins.args);
    if (flags.has('from')) continue;
    for (const source of positional.slice(0, -1)) {
      await access(path.join(rules.contextDir, source)).catch(() => problems.push(`line ${ins.line}: ${ins.keyword} ${source}: not in the build context`));
    }
  }

  const copies = (stage: (typeof stages)[number]) => stage.body.filter((i) => i.keyword === 'COPY').map((i) => ({ ...words(i.args), line: i.line }));
  const build = stages.find((s) => s.body.some((i) => i.keyword === 'RUN' && /npm run build/.test(i.args)));
  if (!build) problems.push('no stage runs `npm run build`');
  else {
    const copied = new Set(
      copies(build)
        .filter((c) => !c.flags.has('from'))
        .flatMap((c) => c.positional.slice(0, -1).map((p) => path.posix.normalize(p))),
    );
    for (const dir of rules.compiled)
      if (!copied.has(dir)) problems.push(`the build stage (line ${build.from.line}) does not COPY ${dir}, which \`npm run build\` compiles`);
  }

  const final = stages[stages.length - 1]!;
  const entrypoints = final.body.filter((i) => i.keyword === 'ENTRYPOINT');
  const entrypoint = entrypoints.at(-1);
  if (!entrypoint) problems.push('the final stage has no ENTRYPOINT ["node", "dist/src/cli.js"] (deployment.yaml passes only args)');
  else if (JSON.stringify(execForm(entrypoint.args)) !== JSON.stringify(['node', 'dist/src/cli.js'])) {
    problems.push(
      `line ${entrypoint.line}: ENTRYPOINT must be the exec form ["node", "dist/src/cli.js"] (so SIGTERM reaches node and deployment.yaml's args apply)`,
    );
  }
  const finalCopies = copies(final);
  const ships = (from: string, to: string) =>
    finalCopies.some((c) => c.positional.length === 2 && path.posix.normalize(c.positional[0]!) === from && path.posix.normalize(c.positional[1]!) === to);
  if (!finalCopies.some((c) => c.flags.has('from') && ships('/app/dist/src', 'dist/src')))
    problems.push('the final stage does not copy the compiled gateway (/app/dist/src → ./dist/src)');
  if (!finalCopies.some((c) => c.flags.has('from') && ships('/app/examples', 'examples')))
    problems.push('the final stage does not copy /app/examples → ./examples (the models serve-model --model-dir /app/examples/models reads)');
  if (!finalCopies.some((c) => !c.flags.has('from') && ships('protos', 'protos')))
    problems.push('the final stage does not copy protos → ./protos (the ext_authz gRPC service loads them)');
  const workdir = final.body.filter((i) => i.keyword === 'WORKDIR').at(-1)?.args;
  if (workdir !== '/app')
    problems.push(`the final stage's WORKDIR must be /app (the ENTRYPOINT and --model-dir are relative to it), not ${workdir ?? 'unset'}`);
  const user = final.body.filter((i) => i.keyword === 'USER').at(-1)?.args;
  if (user !== 'node' && user !== '1000')
    problems.push(`the final stage must run as USER node (uid 1000, as deployment.yaml's runAsNonRoot/runAsUser expect), not ${user ?? 'root'}`);
  return problems;
}

// ---------------------------------------------------------------------------------------------------------------------
// Triton config.pbtxt (protobuf text format of inference.ModelConfig)

type TextValue = string | number | boolean | { enumName: string } | TextField[];
export interface TextField {
  name: string;
  value: TextValue;
  line: number;
}

class TextFormatError extends Error {}

/** A protobuf text-format parser for what model configs use: fields, messages (with or without ':'), lists, scalars. */
export function parseTextFormat(text: string): TextField[] {
  const tokens: { t: string; line: number }[] = [];
  const re = /\s+|#[^\n]*|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[A-Za-z_][\w.]*|[{}[\]:,;<>]|./gy;
  let line = 1;
  for (let m = re.exec(text); m !== null && m[0] !== ''; m = re.exec(text)) {
    const t = m[0];
    if (!/^\s|^#/.test(t)) tokens.push({ t, line });
    line += t.split('\n').length - 1;
  }
  let i = 0;
  const peek = () => tokens[i]?.t;
  const next = () => {
    const token = tokens[i++];
    if (token === undefined) throw new TextFormatError('unexpected end of input');
    return token;
  };
  const expect = (t: string) => {
    const token = next();
    if (token.t !== t) throw new TextFormatError(`line ${token.line}: expected '${t}', found '${token.t}'`);
  };
  const scalar = (): TextValue => {
    const token = next();
    if (/^"(?:[^"\\\n]|\\.)*"$|^'(?:[^'\\\n]|\\.)*'$/.test(token.t)) {
      const escapes: Record<string, string> = { n: '\n', t: '\t', r: '\r' };
      return token.t.slice(1, -1).replace(/\\(.)/g, (_, c: string) => escapes[c] ?? c);
    }
    if (/^["']/.test(token.t)) throw new TextFormatError(`line ${token.line}: unterminated string`);
    if (/^-?(?:\d|\.\d)/.test(token.t)) return Number(token.t);
    if (token.t === 'true' || token.t === 'false') return token.t === 'true';
    if (/^[A-Za-z_]/.test(token.t)) return { enumName: token.t };
    throw new TextFormatError(`line ${token.line}: expected a value, found '${token.t}'`);
  };
  const message = (close: string | undefined): TextField[] => {
    const fields: TextField[] = [];
    while (peek() !== close) {
      if (peek() === undefined) throw new TextFormatError(`unexpected end of input: missing '${close}'`);
      const name = next();
      if (!/^[A-Za-z_]\w*$/.test(name.t)) throw new TextFormatError(`line ${name.line}: expected a field name, found '${name.t}'`);
      const colon = peek() === ':';
      if (colon) i++;
      const value = (): TextValue => {
        if (peek() === '{' || peek() === '<') {
          const open = next().t;
          return message(open === '{' ? '}' : '>');
        }
        if (!colon) throw new TextFormatError(`line ${name.line}: expected ':' or '{' after ${name.t}`);
        return scalar();
      };
      if (colon && peek() === '[') {
        i++;
        while (peek() !== ']') {
          fields.push({ name: name.t, value: value(), line: name.line });
          if (peek() === ',') i++;
          else if (peek() !== ']') throw new TextFormatError(`line ${name.line}: expected ',' or ']' in the list ${name.t}`);
        }
        i++;
      } else fields.push({ name: name.t, value: value(), line: name.line });
      if (peek() === ',' || peek() === ';') i++;
    }
    if (close !== undefined) expect(close);
    return fields;
  };
  return message(undefined);
}

/** inference.ModelConfig's fields (Triton's model_config.proto); any other top-level name is a typo Triton refuses. */
const MODEL_CONFIG_FIELDS = new Set([
  'name',
  'platform',
  'backend',
  'runtime',
  'version_policy',
  'max_batch_size',
  'input',
  'output',
  'batch_input',
  'batch_output',
  'optimization',
  'dynamic_batching',
  'sequence_batching',
  'ensemble_scheduling',
  'instance_group',
  'default_model_filename',
  'cc_model_filenames',
  'metric_tags',
  'parameters',
  'model_warmup',
  'model_operations',
  'model_transaction_policy',
  'model_repository_agents',
  'response_cache',
]);
/** ModelConfig fields that are not `repeated` or maps: given twice, Triton refuses the file. */
const SINGULAR = new Set([
  'name',
  'platform',
  'backend',
  'runtime',
  'version_policy',
  'max_batch_size',
  'optimization',
  'dynamic_batching',
  'sequence_batching',
  'ensemble_scheduling',
  'default_model_filename',
  'model_operations',
  'model_transaction_policy',
  'model_repository_agents',
  'response_cache',
]);

export interface TritonModelExpectation {
  /** The model's directory name in the repository (what the gateway's backend.model calls). */
  model: string;
  /** Version directories the repository holds for it. */
  available: readonly number[];
  /** Versions the gateway calls: the version policy must serve every one. */
  called: readonly number[];
}

/**
 * What Triton would refuse, or load differently from what the gateway calls: text-format syntax, unknown or repeated
 * fields, a name other than the directory's, a backend other than ONNX Runtime, a bad max_batch_size, and a version
 * policy that leaves a called version unserved (Triton's default policy is `latest { num_versions: 1 }`).
 */
export function tritonConfigProblems(text: string, expect: TritonModelExpectation): string[] {
  let fields: TextField[];
  try {
    fields = parseTextFormat(text);
  } catch (err) {
    return [`not protobuf text format: ${(err as Error).message}`];
  }
  const problems: string[] = [];
  const counts = new Map<string, number>();
  for (const f of fields) {
    if (!MODEL_CONFIG_FIELDS.has(f.name)) problems.push(`line ${f.line}: unknown field '${f.name}' in inference.ModelConfig`);
    counts.set(f.name, (counts.get(f.name) ?? 0) + 1);
  }
  for (const [name, n] of counts) if (SINGULAR.has(name) && n > 1) problems.push(`'${name}' given ${n} times`);
  const one = (name: string) => fields.find((f) => f.name === name)?.value;

  if (one('name') !== expect.model) problems.push(`name must be "${expect.model}" (the repository directory), not ${JSON.stringify(one('name') ?? null)}`);
  if (one('backend') !== 'onnxruntime' && one('platform') !== 'onnxruntime_onnx')
    problems.push('backend must be "onnxruntime" (or platform "onnxruntime_onnx"): the repository holds model.onnx files');
  const batch = one('max_batch_size');
  if (batch !== undefined && !(typeof batch === 'number' && Number.isInteger(batch) && batch >= 0))
    problems.push(`max_batch_size must be an integer ≥ 0, not ${JSON.stringify(batch)}`);

  const policy = one('version_policy');
  let served: number[];
  const byNewest = [...expect.available].sort((a, b) => b - a);
  if (policy === undefined) served = byNewest.slice(0, 1);
  else if (!Array.isArray(policy) || policy.length !== 1) {
    problems.push('version_policy must hold exactly one of latest, all, specific');
    served = [];
  } else {
    const [kind] = policy;
    const body = Array.isArray(kind!.value) ? kind!.value : [];
    if (kind!.name === 'all') served = [...expect.available];
    else if (kind!.name === 'latest') {
      const n = body.find((f) => f.name === 'num_versions')?.value;
      served = byNewest.slice(0, typeof n === 'number' ? n : 0);
    } else if (kind!.name === 'specific')
      served = body
        .filter((f) => f.name === 'versions')
        .map((f) => f.value)
        .filter((v): v is number => typeof v === 'number');
    else {
      problems.push(`version_policy: unknown policy '${kind!.name}' (latest, all, specific)`);
      served = [];
    }
    for (const f of body) {
      const allowed = kind!.name === 'latest' ? ['num_versions'] : kind!.name === 'specific' ? ['versions'] : [];
      if (!allowed.includes(f.name)) problems.push(`line ${f.line}: unknown field '${f.name}' in version_policy.${kind!.name}`);
    }
  }
  const missing = expect.called.filter((v) => !served.includes(v));
  if (missing.length > 0) {
    problems.push(
      `the version policy serves ${served.length === 0 ? 'no version' : `version(s) ${served.join(', ')}`}, not ${missing.join(', ')} that the gateway calls${policy === undefined ? " (Triton's default is the latest version only)" : ''}`,
    );
  }
  return problems;
}
