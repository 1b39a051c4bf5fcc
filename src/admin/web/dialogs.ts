// Confirmation before an action, and the messages after one: a modal <dialog> (Escape cancels, focus starts on Cancel)
// and two live regions — errors are announced at once (role=alert), successes politely (role=status).

import { byId, h, replaceChildren, setText } from './dom.js';

/** Asks before an action; resolves true when confirmed. */
export function confirmAction(title: string, body: string, confirmLabel: string): Promise<boolean> {
  const dialog = byId<HTMLDialogElement>('confirm');
  setText(byId('confirm-title'), title);
  setText(byId('confirm-body'), body);
  const ok = byId<HTMLButtonElement>('confirm-ok');
  setText(ok, confirmLabel);
  return new Promise((resolve) => {
    const done = () => {
      dialog.removeEventListener('close', done);
      resolve(dialog.returnValue === 'confirm');
    };
    dialog.returnValue = '';
    dialog.addEventListener('close', done);
    dialog.showModal();
    byId<HTMLButtonElement>('confirm-cancel').focus();
  });
}

let clearTimer: number | undefined;

/** Shows what an action did (or why it failed) until the next message, or 8 s. */
export function notify(kind: 'ok' | 'error', message: string): void {
  const ok = byId('status');
  const alert = byId('alert');
  setText(kind === 'ok' ? ok : alert, message);
  setText(kind === 'ok' ? alert : ok, '');
  window.clearTimeout(clearTimer);
  clearTimer = window.setTimeout(() => {
    setText(ok, '');
    setText(alert, '');
  }, 8000);
}

/** Runs an operator action after its confirmation; reports the outcome. Returns whether it succeeded. */
export async function act(options: { title: string; body: string; confirmLabel: string; done: string; run: () => Promise<unknown> }): Promise<boolean> {
  if (!(await confirmAction(options.title, options.body, options.confirmLabel))) return false;
  try {
    await options.run();
    notify('ok', options.done);
    return true;
  } catch (err) {
    notify('error', `${options.title} failed: ${(err as Error).message}`);
    return false;
  }
}

/** Opens the details dialog with a title and content. */
export function showDetails(title: string, ...content: (Node | string)[]): void {
  const dialog = byId<HTMLDialogElement>('details');
  setText(byId('details-title'), title);
  replaceChildren(byId('details-body'), ...content);
  if (!dialog.open) dialog.showModal();
}

export function detailsLoading(title: string): void {
  showDetails(title, h('p', {}, 'Loading…'));
}
