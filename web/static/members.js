// @ts-check
// Membership and the conversation's own details for the web client: participants that change
// live (member_added / member_removed), leaving a group, the application's metadata (a
// listing's title and link), closed conversations and system messages. The state functions
// at the top touch no page (node tests them: web/e2e/members.test.mjs); the rest fills in the
// page's elements, with text only: nothing the server sends is ever parsed as markup.

/**
 * @typedef {{id: string, name?: string|null, online?: boolean}} Participant
 * @typedef {{id: string, kind: string, title?: string|null, metadata?: any, closed_at?: string|null,
 *   participants?: Participant[]}} Conversation
 * @typedef {{conversation_id: string, user_id: string, by?: string|null}} MemberChange
 * @typedef {{id: string, seq: number, kind?: string, sender_id?: string|null, body: string, created_at: string,
 *   deleted_at?: string|null}} Message
 * @typedef {'gone'|'added'|'removed'|null} MemberResult
 */

/** The longest metadata title shown; the rest is cut, as a header line has room for one line. */
const MAX_TITLE = 200;

/**
 * applyMember applies a member_added or member_removed event to the conversations held:
 *   'gone'    the user itself was removed (or left): the conversation left the map;
 *   'added'   someone joined: listed by id until its name is known;
 *   'removed' someone else left or was removed;
 *   null      nothing changed (an unknown conversation, or a change already applied).
 * A user added to a conversation gets its `conversation` event first, so an unknown one is
 * not fetched here.
 * @param {Map<string, Conversation>} convs
 * @param {string} me
 * @param {string} type
 * @param {MemberChange} d
 * @returns {MemberResult}
 */
export function applyMember(convs, me, type, d) {
  const c = convs.get(d?.conversation_id);
  if (!c) return null;
  const parts = c.participants || [];
  if (type === 'member_removed') {
    if (d.user_id === me) {
      convs.delete(c.id);
      return 'gone';
    }
    if (!parts.some((p) => p.id === d.user_id)) return null;
    c.participants = parts.filter((p) => p.id !== d.user_id);
    return 'removed';
  }
  if (type !== 'member_added' || parts.some((p) => p.id === d.user_id)) return null;
  c.participants = [...parts, { id: d.user_id, name: null, online: false }];
  return 'added';
}

/**
 * httpUrl returns s as an absolute http(s) URL, or null for anything else (javascript:,
 * data:, relative paths): only such a URL may become a link.
 * @param {unknown} s
 * @returns {string|null}
 */
export function httpUrl(s) {
  if (typeof s !== 'string') return null;
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

/**
 * listing reads what the header shows of a conversation's metadata: its `title` (a string)
 * and its `url` (an http(s) URL). Any other field, or another type, is not shown.
 * @param {any} meta
 * @returns {{title: string|null, url: string|null}}
 */
export function listing(meta) {
  if (!meta || typeof meta !== 'object' || Array.isArray(meta)) return { title: null, url: null };
  const t = typeof meta.title === 'string' ? meta.title.trim() : '';
  return { title: t ? t.slice(0, MAX_TITLE) : null, url: httpUrl(meta.url) };
}

/**
 * markClosed marks closed the conversations to which a send was refused as closed (409
 * conversation_closed): closing emits no event, so a page open at the time learns it from
 * its next send. Returns the ids of the conversations it marked.
 * @param {Map<string, Conversation>} convs
 * @param {Array<{conversation_id: string, state: string, error?: {code?: string}}>} outbox
 * @param {string} now the time to note, ISO 8601 (the exact one is the server's)
 * @returns {string[]}
 */
export function markClosed(convs, outbox, now) {
  const marked = [];
  for (const i of outbox) {
    const c = convs.get(i.conversation_id);
    if (i.state !== 'failed' || i.error?.code !== 'conversation_closed' || !c || c.closed_at) continue;
    c.closed_at = now;
    marked.push(c.id);
  }
  return marked;
}

/** @param {Conversation|undefined} c */
export const isClosed = (c) => !!c?.closed_at;

/** @param {Message} m */
export const isSystem = (m) => m.kind === 'system';

// ---- the page --------------------------------------------------------------------------------

/** @param {string} id */
const el = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * renderDetails fills in the open conversation's metadata line, its closed notice, the
 * composer (disabled once closed) and the leave button (groups only).
 * @param {Conversation} c
 */
export function renderDetails(c) {
  const { title, url } = listing(c.metadata);
  const meta = el('conv-meta');
  meta.replaceChildren();
  if (url) {
    const a = document.createElement('a');
    a.href = url;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    a.textContent = title || url;
    a.dataset.testid = 'conv-link';
    meta.append(a);
  } else if (title) meta.textContent = title;
  meta.hidden = !title && !url;

  const closed = isClosed(c);
  el('closed-notice').hidden = !closed;
  el('conv-closed').hidden = !closed;
  for (const id of ['composer', 'send-button']) /** @type {HTMLTextAreaElement} */ (el(id)).disabled = closed;
  /** @type {HTMLTextAreaElement} */ (el('composer')).placeholder = closed ? 'This conversation is closed' : 'Write a message…';
  el('leave-button').hidden = c.kind !== 'group';
}

/**
 * systemNode renders a system message: centred, without a sender and without actions
 * (nobody edits or deletes what the application's backend posted).
 * @param {HTMLElement|undefined} li the node shown before, reused when unchanged
 * @param {Message} m
 * @param {(iso: string) => string} fmtTime
 * @returns {HTMLElement}
 */
export function systemNode(li, m, fmtTime) {
  const sig = JSON.stringify(['system', m.body, m.deleted_at]);
  if (li && li.dataset.sig === sig) return li;
  li ||= document.createElement('li');
  li.dataset.key = m.id;
  li.dataset.sig = sig;
  li.dataset.seq = String(m.seq);
  li.dataset.kind = 'system';
  li.className = 'msg system' + (m.deleted_at ? ' deleted' : '');
  const body = document.createElement('p');
  body.className = 'body';
  body.textContent = m.deleted_at ? 'message deleted' : m.body;
  const time = document.createElement('time');
  time.dateTime = m.created_at;
  time.textContent = fmtTime(m.created_at);
  li.replaceChildren(body, time);
  return li;
}

/**
 * initLeave wires the leave button: DELETE .../members/me, then left(id) takes the
 * conversation out of the page (the member_removed that follows then changes nothing).
 * @param {{api: (method: string, path: string) => Promise<any>, report: (e: any) => void,
 *   openId: () => string|null, left: (id: string) => void}} opts
 */
export function initLeave(opts) {
  const button = /** @type {HTMLButtonElement} */ (el('leave-button'));
  button.addEventListener('click', async () => {
    const id = opts.openId();
    if (!id) return;
    button.disabled = true;
    try {
      await opts.api('DELETE', `/v1/conversations/${encodeURIComponent(id)}/members/me`);
      opts.left(id);
    } catch (e) {
      opts.report(e);
    } finally {
      button.disabled = false;
    }
  });
}
