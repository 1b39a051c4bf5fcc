// The house as docs/architecture.md draws it: every folder of src/ on one floor, every import pointing down (or within
// its folder), no import cycle anywhere, no source file over ~400 lines. The table in the page is what is checked.

import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../helpers/gateway.js';

const SRC = path.join(ROOT, 'src');
const MAX_LINES = 400;

/** Every .ts file under src/, relative to it (posix separators). */
function sourceFiles(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return e.name.endsWith('.ts') ? [path.relative(SRC, full).split(path.sep).join('/')] : [];
  });
}

/** The floor or file a source file belongs to: its top-level folder (`stages/`), or itself at the top (`cli.ts`). */
const unitOf = (file: string): string => (file.includes('/') ? `${file.slice(0, file.indexOf('/'))}/` : file);

/**
 * Imports and re-exports of project files: static ones (`import type` included: a type is a dependency too) and lazy
 * `import('./x.js')` calls (a command loaded on demand is still a dependency of its dispatcher).
 */
export function importsOf(file: string, text: string, lazy = true): string[] {
  const found: string[] = [];
  const specifiers = [
    ...text.matchAll(/^(?:import|export)\s[^'";]*?from\s+'(\.{1,2}\/[^']+)'/gm),
    ...(lazy ? text.matchAll(/\bimport\(\s*'(\.{1,2}\/[^']+)'\s*\)/g) : []),
  ];
  for (const m of specifiers) {
    found.push(path.posix.normalize(path.posix.join(path.posix.dirname(file), m[1]!)).replace(/\.js$/, '.ts'));
  }
  return found;
}

/** `floor → units` from the page's table: rows `| 12 | \`commands/\` | ... |`. */
export function floorsFromPage(markdown: string): Map<string, number> {
  const floors = new Map<string, number>();
  for (const m of markdown.matchAll(/^\| (\d+) \| ([^|]+) \|/gm)) {
    for (const unit of m[2]!.matchAll(/`([^`]+)`/g)) {
      if (floors.has(unit[1]!)) throw new Error(`${unit[1]} is on two floors`);
      floors.set(unit[1]!, Number(m[1]));
    }
  }
  return floors;
}

const files = sourceFiles();
const texts = new Map(files.map((f) => [f, readFileSync(path.join(SRC, f), 'utf8')]));
const graph = new Map(files.map((f) => [f, importsOf(f, texts.get(f)!).filter((t) => texts.has(t))]));
const floors = floorsFromPage(readFileSync(path.join(ROOT, 'docs/architecture.md'), 'utf8'));

test('the page puts every folder and top-level file of src/ on exactly one floor, and names nothing else', (t) => {
  const units = [...new Set(files.map(unitOf))].sort();
  t.deepEqual([...floors.keys()].sort(), units);
});

test('every import points down a floor or stays inside its folder', (t) => {
  const upward: string[] = [];
  for (const [from, targets] of graph) {
    for (const to of targets) {
      const [a, b] = [unitOf(from), unitOf(to)];
      if (a === b) continue;
      if (!(floors.get(a)! > floors.get(b)!)) upward.push(`${from} (floor ${floors.get(a)}) imports ${to} (floor ${floors.get(b)})`);
    }
  }
  t.deepEqual(upward, []);
});

/** The strongly connected components with more than one file (Tarjan). */
function cycles(nodes: Iterable<string>, next: (n: string) => readonly string[]): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next(v)) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const n of nodes) if (!index.has(n)) visit(n);
  return found;
}

test('no import cycle between files, inside a folder or across folders', (t) => {
  t.deepEqual(
    cycles(graph.keys(), (f) => graph.get(f)!),
    [],
  );
});

test('the cycle finder finds a cycle (so the check above can fail)', (t) => {
  const g = new Map([
    ['a', ['b']],
    ['b', ['c']],
    ['c', ['a']],
    ['d', ['a']],
  ]);
  t.deepEqual(
    cycles(g.keys(), (n) => g.get(n)!),
    [['a', 'b', 'c']],
  );
});

test('the page parser and the import reader see what they should', (t) => {
  t.deepEqual(
    [...floorsFromPage('| 3 | `a/`, `b/` | x |\n| 1 | `c.ts` | y |').entries()],
    [
      ['a/', 3],
      ['b/', 3],
      ['c.ts', 1],
    ],
  );
  t.deepEqual(
    importsOf('stages/x.ts', "import type { A } from '../pipeline/stage.js';\nexport { b } from './b.js';\nimport fs from 'node:fs';\nawait import('./c.js');"),
    ['pipeline/stage.ts', 'stages/b.ts', 'stages/c.ts'],
  );
});

test(`no source file is over ${MAX_LINES} lines`, (t) => {
  const long = files.map((f) => [f, texts.get(f)!.split('\n').length] as const).filter(([, n]) => n > MAX_LINES);
  t.deepEqual(long, []);
});

test('no stage imports the config: stages/chain.ts alone reads it to build their options', (t) => {
  const offenders = files.filter((f) => f.startsWith('stages/') && f !== 'stages/chain.ts' && graph.get(f)!.some((to) => to.startsWith('config/')));
  t.deepEqual(offenders, []);
});

test('the pipeline contract imports no stage', (t) => {
  const offenders = files.filter((f) => f.startsWith('pipeline/') && graph.get(f)!.some((to) => to.startsWith('stages/')));
  t.deepEqual(offenders, []);
});

/** Every file `file` loads at start-up, read from the compiled output (type-only imports are gone there; dynamic
 * `import()` is not followed). */
function loadedAtStart(file: string): Set<string> {
  const dist = path.join(ROOT, 'dist/src');
  const seen = new Set<string>();
  const visit = (f: string) => {
    if (seen.has(f)) return;
    seen.add(f);
    const text = readFileSync(path.join(dist, f.replace(/\.ts$/, '.js')), 'utf8');
    for (const to of importsOf(f, text.replace(/^import\s+['"]/gm, "import x from '"), false)) if (texts.has(to)) visit(to);
  };
  visit(file);
  return seen;
}

test('the CLI entry and its light commands load none of the gateway: `version`, `token` and the admin commands start fast', (t) => {
  const heavy = ['app/', 'stages/', 'server/', 'backends/', 'reload/', 'config/', 'auth/'];
  for (const entry of ['cli.ts', 'commands/admin.ts', 'commands/token.ts']) {
    const loaded = [...loadedAtStart(entry)].filter((f) => heavy.some((h) => f.startsWith(h)));
    t.deepEqual(loaded, [], `${entry} loads ${loaded.join(', ')}`);
  }
  t.true(loadedAtStart('commands/start.ts').has('app/gateway.ts'), 'the check follows real imports');
});
