// The README is an index and the docs are its pages: every relative link resolves to a file, every #fragment to a
// heading (GitHub's slug rules), the README stays small, and the README's documentation table and docs/ agree.

import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

// Compiled to dist/test/docs/, so the repository is three levels up (no import from src/: this test reads files only).
const ROOT = path.resolve(import.meta.dirname, '../../..');
const README_MAX_BYTES = 25 * 1024;

interface MarkdownLink {
  readonly text: string;
  readonly target: string;
  readonly line: number;
}

/** The lines of a Markdown document outside fenced code blocks (``` or ~~~, indented at most three spaces). */
function proseLines(markdown: string): { text: string; line: number }[] {
  const lines: { text: string; line: number }[] = [];
  let fence: { char: string; length: number } | undefined;
  markdown.split('\n').forEach((text, i) => {
    const marker = /^ {0,3}(`{3,}|~{3,})/.exec(text);
    if (fence === undefined) {
      if (marker) fence = { char: marker[1]![0]!, length: marker[1]!.length };
      else lines.push({ text, line: i + 1 });
    } else if (marker && marker[1]![0] === fence.char && marker[1]!.length >= fence.length && text.trim() === marker[1]) {
      fence = undefined;
    }
  });
  return lines;
}

/** Inline code spans replaced by a placeholder, so `[a](b)` inside backticks is no link (but [`a`](b) still is). */
function withoutCodeSpans(line: string): string {
  return line.replace(/(`+)(?:(?!\1).)+?\1/g, 'code');
}

/** The text GitHub renders for a heading's source: inline code, links, images, emphasis and HTML tags unwrapped. */
function headingText(source: string): string {
  return source
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/`+([^`]*)`+/g, '$1')
    .replace(/<[^>]+>/g, '')
    .replace(/(\*\*|__|\*)(.+?)\1/g, '$2')
    .trim();
}

/** GitHub's heading anchor: lower case; only letters, digits, spaces, hyphens and underscores kept; spaces → hyphens. */
function githubSlug(heading: string): string {
  return headingText(heading)
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** Every anchor a document's headings produce, duplicates numbered -1, -2 … as GitHub does. */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const { text } of proseLines(markdown)) {
    const heading = /^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/.exec(text);
    if (!heading) continue;
    const slug = githubSlug(heading[1]!);
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

/** Inline links and images `[text](target "title")` and reference definitions `[ref]: target`, outside code. */
function markdownLinks(markdown: string): MarkdownLink[] {
  const links: MarkdownLink[] = [];
  for (const { text: raw, line } of proseLines(markdown)) {
    const text = withoutCodeSpans(raw);
    for (const m of text.matchAll(/!?\[((?:[^\]\\]|\\.)*)\]\(\s*(<[^>]*>|[^\s)]*)(?:\s+"[^"]*")?\s*\)/g)) {
      links.push({ text: m[1]!, target: m[2]!.replace(/^<(.*)>$/, '$1'), line });
    }
    const definition = /^ {0,3}\[([^\]]+)\]:\s*(<[^>]*>|\S+)/.exec(text);
    if (definition) links.push({ text: definition[1]!, target: definition[2]!.replace(/^<(.*)>$/, '$1'), line });
  }
  return links;
}

/** Any URI scheme (http:, https:, mailto:, …) is outside the repository and not checked here. */
function isExternal(target: string): boolean {
  return /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//');
}

/**
 * The broken links of one file, as readable problems. `file` is relative to `root`; `read` gives the Markdown of a
 * linked .md file (undefined when it does not exist) and `exists` whether any other path exists.
 */
function brokenLinks(
  file: string,
  markdown: string,
  deps: { read: (relative: string) => string | undefined; exists: (relative: string) => boolean },
): string[] {
  const problems: string[] = [];
  for (const { text, target, line } of markdownLinks(markdown)) {
    if (isExternal(target)) continue;
    const where = `${file}:${line}: link [${text}](${target})`;
    const hash = target.indexOf('#');
    const pathPart = hash === -1 ? target : target.slice(0, hash);
    const fragment = hash === -1 ? undefined : target.slice(hash + 1);
    let linked: string;
    try {
      linked = pathPart === '' ? file : path.posix.normalize(path.posix.join(path.posix.dirname(file), decodeURI(pathPart)));
    } catch {
      problems.push(`${where}: the path is not valid percent-encoding`);
      continue;
    }
    if (linked.startsWith('../') || path.posix.isAbsolute(linked)) {
      problems.push(`${where}: points outside the repository (${linked})`);
      continue;
    }
    const isMarkdown = linked.endsWith('.md');
    const content = isMarkdown ? (linked === file ? markdown : deps.read(linked)) : undefined;
    if (isMarkdown ? content === undefined : !deps.exists(linked.replace(/\/$/, '') || '.')) {
      problems.push(`${where}: ${linked} does not exist`);
      continue;
    }
    if (fragment === undefined || !isMarkdown) continue;
    if (fragment === '') {
      problems.push(`${where}: empty #fragment`);
      continue;
    }
    if (!headingAnchors(content!).has(fragment)) {
      problems.push(`${where}: no heading in ${linked} produces the anchor #${fragment}`);
    }
  }
  return problems;
}

/** The links of the README's "## Documentation" section (up to the next level-2 heading). */
function documentationSection(readme: string): MarkdownLink[] {
  const start = readme.search(/^## Documentation[ \t]*$/m);
  if (start === -1) return [];
  const rest = readme.slice(start).split('\n').slice(1);
  const end = rest.findIndex((line) => /^## /.test(line));
  return markdownLinks((end === -1 ? rest : rest.slice(0, end)).join('\n'));
}

async function markdownFilesUnder(relativeDir: string): Promise<string[]> {
  const entries = await readdir(path.join(ROOT, relativeDir), { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.md'))
    .map((e) => path.relative(ROOT, path.join(e.parentPath, e.name)).split(path.sep).join('/'))
    .sort();
}

const fromDisk = {
  read: (relative: string): string | undefined => {
    const absolute = path.join(ROOT, relative);
    return existsSync(absolute) ? readFileSync(absolute, 'utf8') : undefined;
  },
  exists: (relative: string): boolean => existsSync(path.join(ROOT, relative)),
};

// --- the checker itself, on strings: it must catch what it is meant to catch ---

test('slugs follow GitHub: punctuation dropped, underscores kept, code unwrapped, duplicates numbered', (t) => {
  t.is(githubSlug('Envoy and ext_authz'), 'envoy-and-ext_authz');
  t.is(githubSlug("Binary tensor data (Triton's extension)"), 'binary-tensor-data-tritons-extension');
  t.is(githubSlug('Benchmark: `npm run bench`'), 'benchmark-npm-run-bench');
  t.is(githubSlug('Resilience: deadlines, circuit breakers, load shedding, retries'), 'resilience-deadlines-circuit-breakers-load-shedding-retries');
  t.is(githubSlug('`http` versions'), 'http-versions');
  t.deepEqual([...headingAnchors('# A\n## Setup\n```\n## Not a heading\n```\n## Setup\n### Setup\n')], ['a', 'setup', 'setup-1', 'setup-2']);
});

test('the checker reports a missing file, a missing anchor and a link outside the repository, and skips code', (t) => {
  const files: Record<string, string> = { 'docs/a.md': '# A\n\n## Shadow traffic\n', 'docs/b.md': '# B\n' };
  const deps = { read: (f: string) => files[f], exists: (f: string) => f in files || f === 'examples/gateway.yaml' };
  const scratch = [
    '# Scratch',
    '[ok](a.md#shadow-traffic) [ok too](#scratch) [yaml](../examples/gateway.yaml) [web](https://example.com/#x)',
    '[gone](c.md) [bad anchor](a.md#shadow) [self](#nowhere) [up](../../etc/passwd) [no yaml](../examples/nope.yaml)',
    'inline `[not a link](missing.md)` and [`code text`](b.md#b)',
    '```md',
    '[in a fence](missing.md)',
    '```',
  ].join('\n');
  t.deepEqual(brokenLinks('docs/scratch.md', scratch, deps), [
    'docs/scratch.md:3: link [gone](c.md): docs/c.md does not exist',
    'docs/scratch.md:3: link [bad anchor](a.md#shadow): no heading in docs/a.md produces the anchor #shadow',
    'docs/scratch.md:3: link [self](#nowhere): no heading in docs/scratch.md produces the anchor #nowhere',
    'docs/scratch.md:3: link [up](../../etc/passwd): points outside the repository (../etc/passwd)',
    'docs/scratch.md:3: link [no yaml](../examples/nope.yaml): examples/nope.yaml does not exist',
  ]);
});

test('the documentation section is read up to the next level-2 heading', (t) => {
  const readme = '# R\n[x](docs/x.md)\n## Documentation\n\n| page |\n|---|\n| [a](docs/a.md) |\n| [b](docs/b.md#top) |\n\n## License\n[l](LICENSE)\n';
  t.deepEqual(
    documentationSection(readme).map((l) => l.target),
    ['docs/a.md', 'docs/b.md#top'],
  );
});

// --- the real files ---

test('every relative link in README.md and docs/ resolves to a file and, for Markdown, to a heading', async (t) => {
  const files = ['README.md', ...(await markdownFilesUnder('docs'))];
  t.true(files.length > 1, 'docs/ holds no Markdown pages');
  const problems: string[] = [];
  for (const file of files) problems.push(...brokenLinks(file, await readFile(path.join(ROOT, file), 'utf8'), fromDisk));
  t.deepEqual(problems, [], `broken links:\n${problems.join('\n')}`);
});

test(`README.md is an index of at most ${README_MAX_BYTES / 1024} KiB`, async (t) => {
  const bytes = (await readFile(path.join(ROOT, 'README.md'))).byteLength;
  t.true(bytes <= README_MAX_BYTES, `README.md is ${bytes} bytes, over ${README_MAX_BYTES}: move the detail into a docs/ page`);
});

test("the README's documentation table and docs/*.md name the same pages", async (t) => {
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const listed = documentationSection(readme)
    .map((l) => l.target.replace(/#.*$/, ''))
    .filter((target) => target.startsWith('docs/'));
  t.true(listed.length > 0, 'README.md has no "## Documentation" section linking docs/ pages');
  const missing = listed.filter((page) => !existsSync(path.join(ROOT, page))).map((page) => `README.md documentation table: ${page} does not exist`);
  const pages = (await readdir(path.join(ROOT, 'docs'))).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`);
  const unlisted = pages.filter((page) => !listed.includes(page)).map((page) => `${page}: not linked from the documentation table of README.md`);
  t.deepEqual([...missing, ...unlisted], []);
});

test('docs/README.md lists every other docs page', async (t) => {
  const index = await readFile(path.join(ROOT, 'docs/README.md'), 'utf8');
  const linked = new Set(markdownLinks(index).map((l) => l.target.replace(/#.*$/, '')));
  const pages = (await readdir(path.join(ROOT, 'docs'))).filter((f) => f.endsWith('.md') && f !== 'README.md');
  t.deepEqual(
    pages.filter((page) => !linked.has(page)).map((page) => `docs/${page}: not linked from docs/README.md`),
    [],
  );
});
