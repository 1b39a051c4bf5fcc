// Build step (`npm run build`): puts the ops console's static files beside its compiled scripts in dist/src/admin/web/
// — the page and stylesheet from src/admin/web/, and uPlot (script, stylesheet, licence) vendored from node_modules,
// so the console works offline and loads nothing from a CDN.

import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SOURCE = join(ROOT, 'src/admin/web');
const TARGET = join(ROOT, 'dist/src/admin/web');
/** The files of the page besides its compiled TypeScript. */
const STATIC = /\.(html|css|svg)$/;

/** uPlot's files as the console serves them: `vendor/<name>`. */
export const UPLOT_FILES = ['dist/uPlot.iife.min.js', 'dist/uPlot.min.css', 'LICENSE'];

export function copyConsoleAssets(): string[] {
  mkdirSync(join(TARGET, 'vendor'), { recursive: true });
  const copied: string[] = [];
  for (const name of readdirSync(SOURCE).filter((n) => STATIC.test(n))) {
    copyFileSync(join(SOURCE, name), join(TARGET, name));
    copied.push(name);
  }
  const uplot = dirname(createRequire(import.meta.url).resolve('uplot/package.json'));
  for (const file of UPLOT_FILES) {
    const name = file === 'LICENSE' ? 'uPlot.LICENSE.txt' : file.slice(file.lastIndexOf('/') + 1);
    copyFileSync(join(uplot, file), join(TARGET, 'vendor', name));
    copied.push(`vendor/${name}`);
  }
  return copied;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) copyConsoleAssets();
