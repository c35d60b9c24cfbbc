// Message search for the web client: the search box, its results, and opening a result in
// its conversation. The page gives it what it needs (api, names, how to open a message) so
// that this file knows nothing of the page's state.
//
// A snippet is HTML from the server (escaped text with <mark> around the matches), but it
// reaches the page as text nodes and <mark> elements built here, never through innerHTML:
// the page keeps its one rule that no string is ever parsed as markup.

const ENTITIES = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&#34;': '"', '&#39;': "'", '&quot;': '"' };

// snippetNodes turns a snippet into nodes: the marked parts in <mark>, the rest as text.
export function snippetNodes(snippet) {
  const nodes = [];
  let marked = false;
  for (const part of snippet.split(/(<mark>|<\/mark>)/)) {
    if (part === '<mark>') marked = true;
    else if (part === '</mark>') marked = false;
    else if (part) {
      const text = part.replace(/&(amp|lt|gt|quot|#34|#39);/g, (e) => ENTITIES[e]);
      if (!marked) nodes.push(document.createTextNode(text));
      else {
        const m = document.createElement('mark');
        m.textContent = text;
        nodes.push(m);
      }
    }
  }
  return nodes;
}

// initSearch wires the search form. opts: api(method, path), title(conversationId),
// sender(userId), open(conversationId, seq), report(error).
export function initSearch(opts) {
  const form = document.getElementById('search-form');
  const input = document.getElementById('search-input');
  const list = document.getElementById('search-results');
  const more = document.getElementById('search-more');
  let query = '';
  let cursor = null;

  async function run(append) {
    const params = new URLSearchParams({ q: query, limit: '20' });
    if (append && cursor) params.set('cursor', cursor);
    more.disabled = true;
    try {
      const r = await opts.api('GET', '/v1/search?' + params);
      if (!append) list.replaceChildren();
      list.append(...r.results.map(resultNode));
      if (!append && !r.results.length) list.append(li('note', 'No messages found.'));
      cursor = r.next_cursor;
    } catch (e) {
      opts.report(e);
    } finally {
      more.disabled = false;
      more.hidden = !cursor;
      list.hidden = false;
    }
  }

  function resultNode(r) {
    const m = r.message;
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'search-hit';
    button.dataset.testid = 'search-hit';
    button.dataset.conversationId = m.conversation_id;
    button.dataset.seq = m.seq;
    const head = document.createElement('span');
    head.className = 'search-where';
    head.textContent = `${opts.title(m.conversation_id)} · ${opts.sender(m.sender_id)}`;
    const text = document.createElement('span');
    text.className = 'search-snippet';
    text.append(...snippetNodes(r.snippet));
    button.append(head, text);
    button.addEventListener('click', () => opts.open(m.conversation_id, m.seq));
    const item = document.createElement('li');
    item.append(button);
    return item;
  }

  function li(cls, text) {
    const item = document.createElement('li');
    item.className = cls;
    item.textContent = text;
    return item;
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    query = input.value.trim();
    cursor = null;
    if (!query) {
      list.replaceChildren();
      list.hidden = more.hidden = true;
      return;
    }
    run(false);
  });
  more.addEventListener('click', () => run(true));
}
