// One model's part of the console: its versions (weight now and in the config, live req/s, 5xx rate, p50/p99,
// breaker, concurrency in use, readiness), the weight editor, and the shadow, rollout and chart panels beside them.

import { api } from './api.js';
import { ModelCharts, type SeriesStore } from './charts.js';
import { act } from './dialogs.js';
import { h, setAttr, setText } from './dom.js';
import { ms, NONE, pct, rate, weightsText } from './format.js';
import { RolloutPanel, ShadowPanel } from './shadow-rollout.js';
import type { Guard, Model, Role, Version } from './types.js';

const BREAKER: Record<Guard['breaker']['state'], { icon: string; text: string }> = {
  closed: { icon: '●', text: 'closed' },
  open: { icon: '■', text: 'OPEN' },
  'half-open': { icon: '◐', text: 'half-open' },
  disabled: { icon: '○', text: 'off' },
};

const SOURCE: Record<Model['weightsSource'], string> = {
  config: 'weights from the config',
  override: 'RUNTIME OVERRIDE',
  rollout: 'weights set by the rollout',
  default: 'no weights: the default version takes all',
};

const COLUMNS = ['Version', 'Weight', 'Config', 'Share', 'Req/s', '5xx', 'p50', 'p99', 'Breaker', 'In use', 'Ready'];

interface Row {
  tr: HTMLTableRowElement;
  cells: Record<string, HTMLTableCellElement>;
}

/** The structure a panel is built for: a reload that changes it rebuilds the panel. */
export function structureOf(m: Model): string {
  return JSON.stringify([m.name, m.versions.map((v) => v.version), m.rollout !== null || m.rolloutError !== undefined]);
}

export class ModelPanel {
  readonly element: HTMLElement;
  readonly structure: string;
  readonly charts: ModelCharts;
  readonly #name: string;
  readonly #rows = new Map<string, Row>();
  readonly #badges: { ready: HTMLElement; source: HTMLElement };
  readonly #editor: WeightEditor;
  readonly #shadow: ShadowPanel;
  readonly #rollout: RolloutPanel | undefined;

  constructor(model: Model, role: () => Role) {
    this.#name = model.name;
    this.structure = structureOf(model);
    const id = `model-${model.name}`;
    this.#badges = { ready: h('span', { class: 'badge' }), source: h('span', { class: 'badge', 'data-field': 'weights-source' }) };
    const tbody = h('tbody');
    for (const v of model.versions) {
      const cells: Record<string, HTMLTableCellElement> = {};
      const tr = h('tr', { 'data-version': v.version });
      for (const c of COLUMNS) {
        const field = c.toLowerCase().replace(/[^a-z0-9]+/g, '-');
        const cell =
          c === 'Version' ? h('th', { scope: 'row' }) : h('td', { 'data-field': field, 'data-label': c, class: c === 'Breaker' || c === 'Ready' ? '' : 'num' });
        cells[field] = cell as HTMLTableCellElement;
        tr.append(cell);
      }
      this.#rows.set(v.version, { tr, cells });
      tbody.append(tr);
    }
    const table = h(
      'table',
      { class: 'versions' },
      h('caption', {}, `Versions of ${model.name}: live figures over the last minute`),
      h('thead', {}, h('tr', {}, ...COLUMNS.map((c) => h('th', { scope: 'col' }, c)))),
      tbody,
    );
    this.#editor = new WeightEditor(model, role);
    this.#shadow = new ShadowPanel(model.name);
    this.#rollout = model.rollout || model.rolloutError ? new RolloutPanel(model.name, role) : undefined;
    this.charts = new ModelCharts(
      model.name,
      model.versions.map((v) => v.version),
    );
    this.element = h(
      'section',
      { class: 'model', 'aria-labelledby': id, 'data-model': model.name },
      h('h2', { id }, model.name, ' ', this.#badges.ready, ' ', this.#badges.source),
      h('div', { class: 'table-scroll' }, table),
      h('div', { class: 'panels' }, this.#editor.element, this.#shadow.element, this.#rollout?.element ?? null),
      this.charts.element,
    );
  }

  update(m: Model, metrics: boolean, store: SeriesStore): void {
    setText(this.#badges.ready, m.ready ? 'ready' : 'NOT READY');
    setAttr(this.#badges.ready, 'data-state', m.ready ? 'ok' : 'bad');
    setText(this.#badges.source, m.weightsSource === 'override' ? `RUNTIME OVERRIDE (config: ${weightsText(m.configWeights)})` : SOURCE[m.weightsSource]);
    setAttr(this.#badges.source, 'data-state', m.weightsSource === 'override' ? 'warn' : 'ok');
    for (const v of m.versions) {
      const row = this.#rows.get(v.version);
      if (row) this.#updateRow(row, v, m, metrics);
    }
    this.#editor.update(m);
    this.#shadow.update(m);
    this.#rollout?.update(m);
    this.charts.update(store);
  }

  #updateRow({ cells }: Row, v: Version, m: Model, metrics: boolean): void {
    setText(cells.version!, `v${v.version}${v.version === m.defaultVersion ? ' (default)' : ''} · ${v.backend}`);
    setText(cells.weight!, String(v.weight));
    setText(cells.config!, m.configWeights ? String(m.configWeights[v.version] ?? 0) : NONE);
    setText(cells.share!, pct(v.share));
    const live = v.live;
    const noFigures = metrics ? NONE : 'metrics off';
    setText(cells['req-s']!, live ? rate(live.rps) : noFigures);
    setText(cells['5xx']!, live ? pct(live.errorRate) : noFigures);
    setAttr(cells['5xx']!, 'data-state', live && live.errorRate !== null && live.errorRate > 0 ? 'bad' : null);
    setText(cells.p50!, live ? ms(live.p50Ms) : noFigures);
    setText(cells.p99!, live ? ms(live.p99Ms) : noFigures);
    const guard = v.guard;
    const breaker = guard ? BREAKER[guard.breaker.state] : undefined;
    const detail =
      guard && guard.breaker.state === 'open' && guard.breaker.retryInMs !== undefined ? ` (trial in ${Math.ceil(guard.breaker.retryInMs / 1000)} s)` : '';
    setText(cells.breaker!, breaker ? `${breaker.icon} ${breaker.text}${detail}` : NONE);
    setAttr(cells.breaker!, 'data-state', guard ? guard.breaker.state : null);
    setText(
      cells['in-use']!,
      guard ? `${guard.limits.inFlight} / ${guard.limits.maxConcurrent}${guard.limits.queued > 0 ? ` (+${guard.limits.queued} queued)` : ''}` : NONE,
    );
    setText(cells.ready!, v.ready ? '✓ ready' : '✗ not ready');
    setAttr(cells.ready!, 'data-state', v.ready ? 'ok' : 'bad');
  }

  get name(): string {
    return this.#name;
  }
}

/** Sliders and numbers in percent that must sum to 100; apply calls PUT .../weights (what `shift` calls), reset DELETE. */
class WeightEditor {
  readonly element: HTMLElement;
  readonly #model: string;
  readonly #role: () => Role;
  readonly #inputs = new Map<string, { range: HTMLInputElement; number: HTMLInputElement }>();
  readonly #sum: HTMLOutputElement;
  readonly #note: HTMLElement;
  readonly #apply: HTMLButtonElement;
  readonly #reset: HTMLButtonElement;
  readonly #revert: HTMLButtonElement;
  #dirty = false;
  #last: Model | undefined;

  constructor(model: Model, role: () => Role) {
    this.#model = model.name;
    this.#role = role;
    const versions = model.versions.map((v) => v.version);
    const rows = versions.map((v) => {
      const id = `w-${model.name}-${v}`;
      const range = h('input', { type: 'range', id, min: 0, max: 100, step: 1, 'data-version': v });
      const number = h('input', {
        type: 'number',
        min: 0,
        max: 100,
        step: 1,
        inputmode: 'numeric',
        'aria-label': `weight of version ${v}, percent`,
        'data-version': v,
      });
      const onInput = (source: HTMLInputElement) => () => this.#edited(v, Number(source.value), versions);
      range.addEventListener('input', onInput(range));
      number.addEventListener('input', onInput(number));
      this.#inputs.set(v, { range, number });
      return h('div', { class: 'weight-row' }, h('label', { for: id }, `v${v}`), range, number, h('span', { 'aria-hidden': 'true' }, '%'));
    });
    this.#sum = h('output', { 'aria-live': 'polite' });
    this.#note = h('p', { class: 'note' });
    this.#apply = h('button', { type: 'submit' }, 'Apply weights');
    this.#reset = h('button', { type: 'button', class: 'secondary', onclick: () => void this.#resetToConfig() }, 'Reset to config');
    this.#revert = h('button', { type: 'button', class: 'secondary', onclick: () => this.#discard() }, 'Discard edits');
    const form = h(
      'form',
      { class: 'weights', onsubmit: (e: Event) => (e.preventDefault(), void this.#submit()) },
      h('fieldset', {}, h('legend', {}, 'Traffic weights (unversioned requests)'), ...rows, h('p', {}, 'Total: ', this.#sum)),
      h('div', { class: 'buttons' }, this.#apply, this.#reset, this.#revert),
      this.#note,
    );
    this.element = h('section', { class: 'panel', 'aria-label': `Weight editor of ${model.name}` }, h('h3', {}, 'Shift traffic'), form);
  }

  update(m: Model): void {
    this.#last = m;
    if (!this.#dirty) for (const v of m.versions) this.#show(v.version, Math.round(v.share * 100));
    const readOnly = this.#role() !== 'write';
    const owned = m.weightsSource === 'rollout' || m.rollout !== null;
    const disabled = readOnly || owned;
    for (const { range, number } of this.#inputs.values()) {
      range.disabled = disabled;
      number.disabled = disabled;
    }
    const total = this.#total();
    setText(this.#sum, `${total}%`);
    setAttr(this.#sum, 'data-state', total === 100 ? 'ok' : 'bad');
    this.#apply.disabled = disabled || !this.#dirty || total !== 100;
    this.#reset.disabled = disabled || m.override === null;
    this.#revert.disabled = !this.#dirty;
    setText(
      this.#note,
      readOnly
        ? 'Read-only session: you can look but not change weights.'
        : owned
          ? 'The progressive rollout owns these weights: use its buttons instead.'
          : this.#dirty
            ? total === 100
              ? 'Edited: apply to send traffic this way.'
              : 'The weights must add up to 100%.'
            : '',
    );
  }

  #show(version: string, value: number): void {
    const inputs = this.#inputs.get(version);
    if (!inputs) return;
    if (inputs.range.valueAsNumber !== value) inputs.range.value = String(value);
    if (document.activeElement !== inputs.number && inputs.number.value !== String(value)) inputs.number.value = String(value);
  }

  #edited(version: string, value: number, versions: string[]): void {
    if (!Number.isFinite(value)) return;
    this.#dirty = true;
    const clamped = Math.max(0, Math.min(100, Math.round(value)));
    this.#show(version, clamped);
    // Two versions: moving one moves the other, so the total stays 100%.
    if (versions.length === 2)
      this.#show(
        versions.find((v) => v !== version)!,
        100 - clamped,
      );
    if (this.#last) this.update(this.#last);
  }

  #total(): number {
    let total = 0;
    for (const { range } of this.#inputs.values()) total += range.valueAsNumber;
    return total;
  }

  #discard(): void {
    this.#dirty = false;
    if (this.#last) this.update(this.#last);
  }

  async #submit(): Promise<void> {
    const weights = Object.fromEntries([...this.#inputs].map(([v, { range }]) => [v, range.valueAsNumber]));
    const applied = await act({
      title: `Shift ${this.#model}`,
      body: `Send unversioned traffic of ${this.#model} as ${weightsText(weights)} (percent). This is a runtime override: kept across reloads that leave these weights alone, lost on restart.`,
      confirmLabel: 'Shift traffic',
      done: `${this.#model}: weights set to ${weightsText(weights)}`,
      run: () => api.put(`/admin/models/${encodeURIComponent(this.#model)}/weights`, weights),
    });
    if (applied) this.#discard();
  }

  async #resetToConfig(): Promise<void> {
    const applied = await act({
      title: `Reset ${this.#model}`,
      body: `Drop the runtime override of ${this.#model}: the config's weights (${weightsText(this.#last?.configWeights)}) apply again.`,
      confirmLabel: 'Reset to config',
      done: `${this.#model}: the config's weights apply again`,
      run: () => api.del(`/admin/models/${encodeURIComponent(this.#model)}/weights`),
    });
    if (applied) this.#discard();
  }
}
