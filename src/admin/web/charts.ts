// The console's time-series charts (last 15 minutes): req/s, 5xx/s and p99 per version, drawn by uPlot — vendored
// from npm into the served files, loaded by the page as a classic script before this module.

import type UPlot from 'uplot';
import { h } from './dom.js';
import type { ChartPoint, History } from './types.js';

declare const uPlot: typeof UPlot;

const MAX_POINTS = 15 * 60;
/** Versions differ by colour and by line style, so the charts read without colour too. */
const COLOURS = ['#1f6feb', '#d4760a', '#7c3aed', '#0e8a6d', '#b3245f'];
const DASHES: (number[] | undefined)[] = [undefined, [8, 4], [2, 3], [12, 4, 2, 4], [4, 4]];

type Metric = 'rps' | 'errors' | 'p99Ms';
const METRICS: { key: Metric; title: string; unit: string }[] = [
  { key: 'rps', title: 'Requests per second', unit: 'req/s' },
  { key: 'errors', title: 'Errors (5xx) per second', unit: '5xx/s' },
  { key: 'p99Ms', title: 'p99 latency', unit: 'ms' },
];

/** Every chart's data: one time axis (epoch s) and one array per `model/version` and metric, aligned with it. */
export class SeriesStore {
  t: number[] = [];
  readonly series = new Map<string, Record<Metric, (number | null)[]>>();

  load(history: History): void {
    this.t = [...history.t];
    this.series.clear();
    for (const [name, s] of Object.entries(history.series)) this.series.set(name, { rps: [...s.rps], errors: [...s.errors], p99Ms: [...s.p99Ms] });
    this.#trim();
  }

  add(t: number, points: Record<string, ChartPoint>): void {
    if (this.t.length > 0 && t <= this.t[this.t.length - 1]!) return;
    for (const name of Object.keys(points))
      if (!this.series.has(name)) this.series.set(name, { rps: this.t.map(() => null), errors: this.t.map(() => null), p99Ms: this.t.map(() => null) });
    this.t.push(t);
    for (const [name, s] of this.series) {
      const p = points[name];
      s.rps.push(p ? p.rps : null);
      s.errors.push(p ? p.errors : null);
      s.p99Ms.push(p ? p.p99Ms : null);
    }
    this.#trim();
  }

  #trim(): void {
    const extra = this.t.length - MAX_POINTS;
    if (extra <= 0) return;
    this.t.splice(0, extra);
    for (const s of this.series.values()) for (const m of METRICS) s[m.key].splice(0, extra);
  }
}

/** A model's three charts, one series per version. */
export class ModelCharts {
  readonly element: HTMLElement;
  readonly #charts: { metric: Metric; plot: UPlot; holder: HTMLElement }[] = [];
  readonly #model: string;
  readonly #versions: string[];

  constructor(model: string, versions: string[]) {
    this.#model = model;
    this.#versions = versions;
    this.element = h('div', { class: 'charts' });
    for (const m of METRICS) {
      const holder = h('div', { class: 'chart', role: 'img', 'aria-label': `${m.title} of ${model} per version, last 15 minutes` });
      const figure = h('figure', {}, h('figcaption', {}, `${m.title} (${m.unit})`), holder);
      this.element.append(figure);
      const plot = new uPlot(
        {
          width: 320,
          height: 150,
          scales: { x: { time: true } },
          legend: { show: true },
          cursor: { drag: { x: false, y: false } },
          axes: [
            { stroke: '#57606a', grid: { stroke: '#eaeef2' } },
            { stroke: '#57606a', grid: { stroke: '#eaeef2' }, size: 48 },
          ],
          series: [
            {},
            ...versions.map((v, i) => ({
              label: `v${v}`,
              stroke: COLOURS[i % COLOURS.length],
              width: 2,
              ...(DASHES[i % DASHES.length] ? { dash: DASHES[i % DASHES.length] } : {}),
              points: { show: false },
              value: (_u: UPlot, x: number | null) => (x === null ? '–' : x.toFixed(m.key === 'p99Ms' ? 1 : 2)),
            })),
          ],
        },
        [[], ...versions.map(() => [])],
        holder,
      );
      this.#charts.push({ metric: m.key, plot, holder });
    }
  }

  update(store: SeriesStore): void {
    for (const { metric, plot } of this.#charts) {
      const data = [store.t, ...this.#versions.map((v) => store.series.get(`${this.#model}/${v}`)?.[metric] ?? store.t.map(() => null))];
      plot.setData(data as UPlot.AlignedData);
    }
  }

  /** Fits the charts to their containers' width (after layout or a resize). */
  resize(): void {
    for (const { plot, holder } of this.#charts) {
      const width = Math.max(200, Math.floor(holder.clientWidth));
      if (width !== plot.width) plot.setSize({ width, height: 150 });
    }
  }

  destroy(): void {
    for (const { plot } of this.#charts) plot.destroy();
  }
}
