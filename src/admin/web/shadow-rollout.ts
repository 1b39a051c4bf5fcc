// A model's shadow panel (agreement per pair with its count — the admin API's own figures — and its last
// disagreements one click away) and its progressive-rollout panel (position, weights, each gate against its
// threshold, the last decision and why, and the operator's buttons, each behind a confirmation).

import { api } from './api.js';
import { act, detailsLoading, notify, showDetails } from './dialogs.js';
import { h, setAttr, setText } from './dom.js';
import { clock, dateTime, ms, NONE, pct, weightsText } from './format.js';
import type { Disagreement, Gate, LoggedTensor, Model, Pair, Role, Rollout } from './types.js';

export class ShadowPanel {
  readonly element: HTMLElement;
  readonly #model: string;
  readonly #tbody: HTMLTableSectionElement;
  readonly #empty: HTMLElement;
  readonly #rows = new Map<string, Record<string, HTMLElement>>();

  constructor(model: string) {
    this.#model = model;
    this.#tbody = h('tbody');
    this.#empty = h('p', { class: 'note' });
    const head = ['Pair', 'Compared', 'Agreement', 'Mirrored / dropped / failed', ''];
    this.element = h(
      'section',
      { class: 'panel', 'aria-label': `Shadow comparison of ${model}` },
      h('h3', {}, 'Shadow agreement'),
      h(
        'div',
        { class: 'table-scroll' },
        h('table', { class: 'shadow' }, h('thead', {}, h('tr', {}, ...head.map((c) => h('th', { scope: 'col' }, c)))), this.#tbody),
      ),
      this.#empty,
    );
  }

  update(m: Model): void {
    for (const p of m.shadowPairs) {
      const key = `${p.primaryVersion}→${p.shadowVersion}`;
      let cells = this.#rows.get(key);
      if (!cells) {
        cells = {
          compared: h('td', { class: 'num', 'data-field': 'compared' }),
          agreement: h('span', { 'data-field': 'agreement' }),
          outputs: h('small', { 'data-field': 'outputs' }),
          mirrored: h('td', { class: 'num', title: 'copies mirrored / dropped at the shadow concurrency cap / shadow errors (timeouts)' }),
        };
        const button = h('button', { type: 'button', class: 'link', onclick: () => void this.#disagreements(p) }, 'Disagreements');
        const tr = h(
          'tr',
          { 'data-pair': key },
          h('th', { scope: 'row', class: 'nowrap' }, `v${p.primaryVersion} → v${p.shadowVersion}`),
          cells.compared,
          h('td', { class: 'num' }, cells.agreement, cells.outputs),
          cells.mirrored,
          h('td', {}, button),
        );
        this.#tbody.append(tr);
        this.#rows.set(key, cells);
      }
      this.#fill(cells, p);
    }
    setText(
      this.#empty,
      m.shadowPairs.length === 0 ? 'No shadow comparisons yet (no shadow configured, or no mirrored traffic since start or the last reset).' : '',
    );
  }

  #fill(cells: Record<string, HTMLElement>, p: Pair): void {
    setText(cells.compared!, String(p.compared));
    setText(cells.agreement!, pct(p.agreementRate));
    setAttr(cells.agreement!, 'data-rate', p.agreementRate === null ? '' : String(p.agreementRate));
    setText(
      cells.outputs!,
      Object.entries(p.outputs)
        .map(([name, o]) => `${name} ${pct(o.agreementRate)}`)
        .join(' · ') || NONE,
    );
    setText(cells.mirrored!, `${p.mirrored} / ${p.dropped} / ${p.errors.shadow}${p.errors.shadowTimeouts > 0 ? ` (${p.errors.shadowTimeouts})` : ''}`);
  }

  async #disagreements(p: Pair): Promise<void> {
    const title = `${this.#model}: last disagreements v${p.primaryVersion} → v${p.shadowVersion}`;
    detailsLoading(title);
    try {
      const view = await api.get<{ path: string | null; entries: Disagreement[] }>(
        `/admin/models/${encodeURIComponent(this.#model)}/shadow/disagreements?limit=20`,
      );
      const entries = view.entries.filter((d) => d.primaryVersion === p.primaryVersion && d.shadowVersion === p.shadowVersion).slice(0, 10);
      if (view.path === null)
        return showDetails(title, h('p', {}, 'No disagreement log is configured (disagreementLog in the config), so individual disagreements are not kept.'));
      if (entries.length === 0) return showDetails(title, h('p', {}, `None in the newest part of ${view.path}.`));
      showDetails(title, h('p', { class: 'note' }, `From ${view.path}, newest first.`), ...entries.map(disagreementView));
    } catch (err) {
      showDetails(title, h('p', { role: 'alert' }, `Cannot read the disagreements: ${(err as Error).message}`));
    }
  }
}

function tensorText(t: LoggedTensor): string {
  return `${t.name} ${t.datatype}[${t.shape.join('×')}] ${JSON.stringify(t.data)}${t.truncated ? ' …' : ''}`;
}

function disagreementView(d: Disagreement): HTMLElement {
  const disagreed = d.comparison.map((c) => `${c.name} (${c.mode}: ${c.rowsAgreed}/${c.rows} rows agree)`).join(', ');
  return h(
    'article',
    { class: 'disagreement' },
    h('h4', {}, `${dateTime(d.time)} · request ${d.requestId}`),
    h('p', {}, `Disagreed: ${disagreed || NONE}`),
    h(
      'dl',
      {},
      h('dt', {}, 'Inputs'),
      h('dd', {}, d.inputs ? d.inputs.map(tensorText).join('\n') : 'not logged (disagreementLog.includeInputs is off; join on the request id)'),
      h('dt', {}, `Primary v${d.primaryVersion}`),
      h('dd', {}, d.primary.map(tensorText).join('\n')),
      h('dt', {}, `Shadow v${d.shadowVersion}`),
      h('dd', {}, d.shadow.map(tensorText).join('\n')),
    ),
  );
}

const GATE_NAMES: Record<Gate['gate'], string> = { agreement: 'Agreement', errorRate: 'Error rate', p99: 'p99 latency' };
const GATE_STATUS: Record<Gate['status'], string> = { pass: '✓ pass', fail: '✗ FAIL', waiting: '… waiting', skipped: '– skipped' };

function gateValue(g: Gate, x: number | null): string {
  if (x === null) return NONE;
  return g.gate === 'p99' ? ms(x) : pct(x, 2);
}

type RolloutAction = 'pause' | 'resume' | 'promote' | 'abort';

const ACTIONS: { action: RolloutAction; label: string; allowed: Rollout['status'][]; explain: string }[] = [
  { action: 'pause', label: 'Pause', allowed: ['running'], explain: 'Freeze the rollout where it is (a failing gate still rolls it back).' },
  {
    action: 'resume',
    label: 'Resume',
    allowed: ['paused', 'rolled-back', 'aborted'],
    explain: 'Continue the rollout (or restart one that was rolled back or aborted).',
  },
  { action: 'promote', label: 'Promote', allowed: ['running', 'paused'], explain: 'Go to the next step now, skipping the gates.' },
  { action: 'abort', label: 'Abort', allowed: ['running', 'paused'], explain: 'Send all traffic back to stable.' },
];

export class RolloutPanel {
  readonly element: HTMLElement;
  readonly #model: string;
  readonly #role: () => Role;
  readonly #fields: Record<string, HTMLElement>;
  readonly #gates: HTMLTableSectionElement;
  readonly #buttons = new Map<RolloutAction, HTMLButtonElement>();
  readonly #note: HTMLElement;
  #status: Rollout['status'] | undefined;

  constructor(model: string, role: () => Role) {
    this.#model = model;
    this.#role = role;
    const field = (name: string) => h('dd', { 'data-field': name });
    this.#fields = { status: field('status'), position: field('position'), weights: field('weights'), next: field('next'), decision: field('decision') };
    this.#gates = h('tbody');
    this.#note = h('p', { class: 'note' });
    const buttons = h('div', { class: 'buttons' });
    for (const a of ACTIONS) {
      const button = h(
        'button',
        { type: 'button', class: a.action === 'abort' ? 'danger' : '', 'data-action': a.action, onclick: () => void this.#run(a) },
        a.label,
      );
      this.#buttons.set(a.action, button);
      buttons.append(button);
    }
    this.element = h(
      'section',
      { class: 'panel wide', 'aria-label': `Progressive rollout of ${model}` },
      h('h3', {}, 'Progressive rollout'),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Status'),
        this.#fields.status!,
        h('dt', {}, 'Position'),
        this.#fields.position!,
        h('dt', {}, 'Weights'),
        this.#fields.weights!,
        h('dt', {}, 'Next evaluation'),
        this.#fields.next!,
        h('dt', {}, 'Last decision'),
        this.#fields.decision!,
      ),
      h(
        'div',
        { class: 'table-scroll' },
        h(
          'table',
          { class: 'gates' },
          h('caption', {}, 'Gates at the latest evaluation'),
          h('thead', {}, h('tr', {}, ...['Gate', 'Value', 'Threshold', 'Samples', 'Result'].map((c) => h('th', { scope: 'col' }, c)))),
          this.#gates,
        ),
      ),
      buttons,
      this.#note,
    );
  }

  update(m: Model): void {
    const r = m.rollout;
    if (!r) {
      setText(this.#fields.status!, m.rolloutError ?? NONE);
      for (const b of this.#buttons.values()) b.disabled = true;
      return;
    }
    this.#status = r.status;
    setText(this.#fields.status!, r.status === 'rolled-back' || r.status === 'aborted' ? r.status.toUpperCase() : r.status);
    setAttr(this.#fields.status!, 'data-state', r.status);
    setText(this.#fields.position!, `${r.position}${r.phase === 'shadow' ? ` (shadowing ${r.shadowPercent}%)` : ''}`);
    setText(this.#fields.weights!, weightsText(r.weights));
    setText(this.#fields.next!, r.nextEvaluationAt ? clock(r.nextEvaluationAt) : NONE);
    const d = r.lastDecision;
    setText(this.#fields.decision!, `${d.decision} by ${d.actor} at ${clock(d.at)}: ${d.reason}`);
    const gates = r.gates ?? [];
    const rows = gates.map((g) =>
      h(
        'tr',
        { 'data-gate': g.gate, 'data-state': g.status },
        h('th', { scope: 'row' }, GATE_NAMES[g.gate]),
        h('td', { class: 'num' }, gateValue(g, g.value)),
        h('td', { class: 'num' }, `${g.gate === 'agreement' ? '≥' : '≤'} ${gateValue(g, g.limit)}`),
        h('td', { class: 'num' }, String(g.samples)),
        h('td', { title: g.detail }, GATE_STATUS[g.status]),
      ),
    );
    const signature = JSON.stringify(gates);
    if (this.#gates.dataset.signature !== signature) {
      this.#gates.replaceChildren(...(rows.length > 0 ? rows : [h('tr', {}, h('td', { colspan: 5 }, 'Not evaluated yet.'))]));
      this.#gates.dataset.signature = signature;
    }
    const readOnly = this.#role() !== 'write';
    for (const a of ACTIONS) this.#buttons.get(a.action)!.disabled = readOnly || !a.allowed.includes(r.status);
    setText(this.#note, readOnly ? 'Read-only session: you can look but not act.' : '');
  }

  async #run(a: (typeof ACTIONS)[number]): Promise<void> {
    if (this.#status && !a.allowed.includes(this.#status)) return notify('error', `${a.label} is not possible while the rollout is ${this.#status}`);
    await act({
      title: `${a.label} the rollout of ${this.#model}`,
      body: a.explain,
      confirmLabel: a.label,
      done: `${this.#model}: rollout ${a.action} done`,
      run: () => api.post(`/admin/models/${encodeURIComponent(this.#model)}/rollout/${a.action}`),
    });
  }
}
