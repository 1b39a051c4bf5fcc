// The gateway-wide panels: the running config (its hash and generation), recent reloads (applied or refused, with
// every problem listed) and the audit trail's newest entries.

import { byId, h, replaceChildren, setText } from './dom.js';
import { dateTime, NONE, stateText } from './format.js';
import type { AuditEntry, Reload, Snapshot } from './types.js';

let lastReloads = '';
let lastAudit = '';

export function renderActivity(s: Snapshot): void {
  const g = s.gateway;
  setText(byId('config-hash'), g.configHash.slice(0, 12));
  byId('config-hash').title = `sha256 ${g.configHash} of the running config as applied`;
  setText(byId('generation'), String(g.generation));
  setText(byId('config-file'), g.configFile ?? 'none (started without a file)');
  const reloads = JSON.stringify(s.reloads);
  if (reloads !== lastReloads) {
    lastReloads = reloads;
    replaceChildren(byId('reloads'), ...s.reloads.map(reloadItem));
  }
  const audit = JSON.stringify(s.audit);
  if (audit !== lastAudit) {
    lastAudit = audit;
    replaceChildren(
      byId('audit-rows'),
      ...(s.audit.length > 0 ? s.audit.map(auditRow) : [h('tr', {}, h('td', { colspan: 6 }, 'No operator action recorded yet.'))]),
    );
  }
  const trail = g.audit;
  setText(
    byId('audit-file'),
    trail === null
      ? 'The audit trail is off (admin.audit.enabled: false).'
      : trail.path
        ? `Kept in ${trail.path}${trail.lastError ? ` — cannot write it: ${trail.lastError}` : ''}`
        : 'Kept in memory and the log only (no file).',
  );
}

function reloadItem(r: Reload): HTMLElement {
  const refused = r.outcome === 'rejected' || r.outcome === 'failed';
  return h(
    'li',
    { 'data-outcome': r.outcome },
    h('span', { class: 'outcome', 'data-state': refused ? 'bad' : 'ok' }, refused ? `✗ ${r.outcome.toUpperCase()}` : `✓ ${r.outcome}`),
    ` ${dateTime(r.at)} · ${r.trigger} · generation ${r.generation}`,
    r.restartRequired ? ` · needs a restart: ${r.restartRequired.join(', ')}` : null,
    refused
      ? h('ul', { class: 'problems' }, ...(r.problems && r.problems.length > 0 ? r.problems : [r.error ?? 'no detail']).map((p) => h('li', {}, p)))
      : null,
  );
}

function who(e: AuditEntry): string {
  const a = e.actor;
  const name = a.subject ?? 'unknown caller';
  const how = a.kind === 'session' ? `console session via ${a.via ?? '?'}` : a.kind;
  return `${name} (${how}${a.role ? `, ${a.role}` : ''})`;
}

function auditRow(e: AuditEntry): HTMLElement {
  const failed = e.outcome.status >= 400;
  return h(
    'tr',
    { 'data-action': e.action, 'data-status': String(e.outcome.status) },
    h('td', {}, dateTime(e.time)),
    h('td', {}, who(e), h('br'), h('small', {}, `from ${e.peer || NONE}`)),
    h('td', {}, e.action),
    h('td', {}, e.target ? Object.values(e.target).join(', ') : NONE),
    h('td', { 'data-state': failed ? 'bad' : 'ok' }, `${failed ? '✗' : '✓'} ${e.outcome.status}${e.outcome.error ? `: ${e.outcome.error}` : ''}`),
    h('td', {}, `${stateText(e.before)} → ${stateText(e.after)}`),
  );
}
