// A dependency-free SVG chart builder (pure): req/s and CPU µs per request per target, medians and min–max whiskers.

import type { Spread } from './stats.js';

export interface ChartPanel {
  title: string;
  unit: string;
  /** One bar per target, in order. */
  bars: { label: string; value: Spread }[];
  /** Digits of the value labels. */
  digits?: number;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const COLORS = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2', '#eeca3b', '#9d755d'];

/** A round axis for values up to `v`: a tick step of 1, 2, 2.5 or 5 × 10^k and at most `ticks` steps to the top. */
export function niceAxis(v: number, ticks = 4): { max: number; step: number } {
  if (!Number.isFinite(v) || v <= 0) return { max: 1, step: 0.25 };
  const raw = v / ticks;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * p >= raw) ?? 10) * p;
  return { max: step * Math.ceil(v / step), step };
}

function panel(p: ChartPanel, x0: number, width: number, height: number): string {
  const top = 75;
  const bottom = height - 70;
  const left = x0 + 60;
  const right = x0 + width - 20;
  const plotH = bottom - top;
  const finite = p.bars.flatMap((b) => [b.value.median, b.value.max]).filter(Number.isFinite);
  const axis = niceAxis(Math.max(0, ...finite) * 1.08);
  const axisMax = axis.max;
  const y = (v: number): number => bottom - (Math.max(0, v) / axisMax) * plotH;
  const slot = (right - left) / Math.max(1, p.bars.length);
  const barW = Math.min(60, slot * 0.6);
  const out: string[] = [];
  out.push(`<text x="${(left + right) / 2}" y="${top - 28}" text-anchor="middle" font-size="15" font-weight="bold">${esc(p.title)}</text>`);
  for (let i = 0; i * axis.step <= axisMax + axis.step / 2; i++) {
    const v = i * axis.step;
    out.push(`<line x1="${left}" x2="${right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" font-size="11" fill="#555">${esc(formatTick(v))}</text>`);
  }
  out.push(
    `<text x="${x0 + 14}" y="${(top + bottom) / 2}" transform="rotate(-90 ${x0 + 14} ${(top + bottom) / 2})" text-anchor="middle" font-size="12" fill="#333">${esc(p.unit)}</text>`,
  );
  p.bars.forEach((b, i) => {
    const cx = left + slot * (i + 0.5);
    const m = b.value.median;
    if (Number.isFinite(m)) {
      out.push(
        `<rect x="${(cx - barW / 2).toFixed(1)}" y="${y(m).toFixed(1)}" width="${barW.toFixed(1)}" height="${(bottom - y(m)).toFixed(1)}" fill="${COLORS[i % COLORS.length]}"><title>${esc(`${b.label}: ${m.toFixed(p.digits ?? 0)} ${p.unit}`)}</title></rect>`,
      );
      if (b.value.n > 1 && b.value.max > b.value.min) {
        const [y1, y2] = [y(b.value.min).toFixed(1), y(b.value.max).toFixed(1)];
        out.push(`<line x1="${cx}" x2="${cx}" y1="${y1}" y2="${y2}" stroke="#222" stroke-width="1.5"/>`);
        out.push(`<line x1="${cx - 6}" x2="${cx + 6}" y1="${y1}" y2="${y1}" stroke="#222" stroke-width="1.5"/>`);
        out.push(`<line x1="${cx - 6}" x2="${cx + 6}" y1="${y2}" y2="${y2}" stroke="#222" stroke-width="1.5"/>`);
      }
      const labelY = Math.min(y(m), Number.isFinite(b.value.max) ? y(b.value.max) : y(m)) - 6;
      out.push(`<text x="${cx}" y="${labelY.toFixed(1)}" text-anchor="middle" font-size="11" fill="#111">${esc(m.toFixed(p.digits ?? 0))}</text>`);
    } else {
      out.push(`<text x="${cx}" y="${bottom - 6}" text-anchor="middle" font-size="11" fill="#999">n/a</text>`);
    }
    out.push(`<text x="${cx}" y="${bottom + 16}" text-anchor="end" font-size="11" transform="rotate(-30 ${cx} ${bottom + 16})">${esc(b.label)}</text>`);
  });
  out.push(`<line x1="${left}" x2="${right}" y1="${bottom}" y2="${bottom}" stroke="#333"/>`);
  return out.join('\n');
}

function formatTick(v: number): string {
  if (v >= 10_000) return `${(v / 1000).toFixed(v % 1000 === 0 ? 0 : 1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** The whole chart: panels side by side, a title and a footnote. */
export function chartSvg(title: string, panels: ChartPanel[], note = 'bars: median over the rounds; whiskers: min–max'): string {
  const panelW = 460;
  const height = 400;
  const width = panelW * panels.length;
  const body = panels.map((p, i) => panel(p, i * panelW, panelW, height)).join('\n');
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height + 30}" viewBox="0 0 ${width} ${height + 30}" font-family="sans-serif">
<rect width="100%" height="100%" fill="#fff"/>
<text x="${width / 2}" y="20" text-anchor="middle" font-size="13" fill="#333">${esc(title)}</text>
${body}
<text x="${width / 2}" y="${height + 20}" text-anchor="middle" font-size="11" fill="#666">${esc(note)}</text>
</svg>
`;
}
