// boxoffice's fan pages: a small client-side router over the public REST API (same origin).
// Pages: search (/), event with live seat map and hold (/events/{id}), booking
// (/bookings/{id}), my bookings (/bookings), development sign-in (/signin).
// No inline handlers or style attributes, so the page runs under a strict
// Content-Security-Policy. Errors from the API are shown as sentences built from the
// problem+json `title` and `detail`.

// ---------------------------------------------------------------------------------------
// DOM helpers

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Builds an element: attrs are attributes, except `text`, `class` and `on` (listeners). */
function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'on') {
      for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    } else if (name === 'text') {
      el.textContent = value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function announce(text) {
  const el = document.getElementById('announcer');
  el.textContent = '';
  // A fresh text node after a tick, so the same sentence twice is announced twice.
  setTimeout(() => { el.textContent = text; }, 50);
}

/** Fills a message box: kind 'error' (role alert), 'info' or 'ok'. Empty text clears it. */
function say(box, kind, text) {
  box.replaceChildren();
  box.className = 'message' + (text ? ' ' + kind : '');
  box.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  if (text) box.append(text instanceof Node ? text : document.createTextNode(text));
}

// ---------------------------------------------------------------------------------------
// Formatting

function sentence(text) {
  const s = String(text ?? '').trim();
  if (!s) return '';
  const first = s[0].toUpperCase() + s.slice(1);
  return /[.!?]$/.test(first) ? first : first + '.';
}

const fractionDigits = new Map();
function money(m) {
  if (!m) return '';
  try {
    if (!fractionDigits.has(m.currency)) {
      const probe = new Intl.NumberFormat(undefined, { style: 'currency', currency: m.currency });
      fractionDigits.set(m.currency, probe.resolvedOptions().maximumFractionDigits);
    }
    const value = m.amount / 10 ** fractionDigits.get(m.currency);
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: m.currency }).format(value);
  } catch {
    return `${m.amount} ${m.currency}`;
  }
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  weekday: 'short', year: 'numeric', month: 'short', day: 'numeric',
  hour: 'numeric', minute: '2-digit', timeZoneName: 'short',
});
function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : dateTime.format(d);
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function seatName(seat) {
  return seat ? `${seat.section}, row ${seat.row}, seat ${seat.number}` : '';
}

// ---------------------------------------------------------------------------------------
// Session (a dev token kept in localStorage) and the API client

const SESSION_KEY = 'boxoffice.session';

const session = {
  get() {
    try {
      const s = JSON.parse(localStorage.getItem(SESSION_KEY));
      if (s && s.token && Date.parse(s.expires_at) > Date.now()) return s;
    } catch { /* no session */ }
    return null;
  },
  set(answer) {
    localStorage.setItem(SESSION_KEY, JSON.stringify({
      token: answer.token, user: answer.user, expires_at: answer.expires_at,
    }));
    renderWho();
  },
  clear() {
    localStorage.removeItem(SESSION_KEY);
    renderWho();
  },
};

class ApiError extends Error {
  constructor(status, problem, message, retryAfterSecs = null) {
    super(message);
    this.status = status;
    this.problem = problem;
    this.retryAfterSecs = retryAfterSecs;
  }
}

/** Server time minus local time, from each answer's `Date` header (±1 s). */
let clockSkewMs = 0;
const serverNow = () => Date.now() + clockSkewMs;

function problemSentence(status, problem, retryAfter) {
  let text;
  if (problem && (problem.title || problem.detail)) {
    const title = sentence(problem.title);
    const detail = sentence(problem.detail);
    text = detail && detail.toLowerCase() !== title.toLowerCase()
      ? `${title} ${detail}`.trim() : title || detail;
  } else {
    text = `The server answered ${status} without saying why.`;
  }
  if (retryAfter && (status === 429 || status === 503)) {
    text += ` Please try again in ${plural(Number(retryAfter) || 1, 'second', 'seconds')}.`;
  }
  return text;
}

/** Calls the API; resolves to the JSON answer (null for 204), rejects with an ApiError. */
async function api(method, path, { body, key, auth = false } = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (key) headers['idempotency-key'] = key;
  if (auth) {
    const s = session.get();
    if (!s) throw new ApiError(401, null, 'Please sign in first.');
    headers.authorization = `Bearer ${s.token}`;
  }
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, null, 'Could not reach the server. Check the connection and try again.');
  }
  const date = Date.parse(response.headers.get('date') || '');
  if (!Number.isNaN(date)) clockSkewMs = date + 500 - Date.now();
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!response.ok) {
    if (response.status === 401 && auth) {
      session.clear();
      throw new ApiError(401, data, 'Your sign-in has expired or is not valid. Please sign in again.');
    }
    const retryAfter = response.headers.get('retry-after');
    throw new ApiError(response.status, data, problemSentence(response.status, data, retryAfter),
      retryAfter ? Number(retryAfter) || 1 : null);
  }
  return data;
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// ---------------------------------------------------------------------------------------
// Router

let generation = 0;
let leaving = [];

/** What a page gets: whether it is still shown, and a place to register its cleanup. */
function pageContext() {
  const mine = generation;
  return {
    alive: () => mine === generation,
    onLeave(fn) { if (mine === generation) leaving.push(fn); else fn(); },
  };
}

function isPagePath(path) {
  return path === '/' || path === '/signin' || path === '/bookings'
    || /^\/(events|bookings)\/[^/]+$/.test(path);
}

async function route({ focus = false } = {}) {
  generation += 1;
  for (const fn of leaving.splice(0)) { try { fn(); } catch { /* best effort */ } }
  const main = document.getElementById('main');
  main.replaceChildren();
  renderWho();
  const ctx = pageContext();
  const path = location.pathname;
  let m;
  if (path === '/') homePage(main, ctx);
  else if ((m = path.match(/^\/events\/([^/]+)$/))) eventPage(main, ctx, decodeURIComponent(m[1]));
  else if (path === '/bookings') myBookingsPage(main, ctx);
  else if ((m = path.match(/^\/bookings\/([^/]+)$/))) bookingPage(main, ctx, decodeURIComponent(m[1]));
  else if (path === '/signin') signInPage(main, ctx);
  else {
    main.append(h('h1', { text: 'Page not found', tabindex: -1 }),
      h('p', {}, 'There is no page here. ', h('a', { href: '/', text: 'Find events' }), '.'));
  }
  if (focus) {
    const heading = main.querySelector('h1');
    (heading || main).focus();
  }
}

function navigate(url, { replace = false } = {}) {
  history[replace ? 'replaceState' : 'pushState'](null, '', url);
  route({ focus: true });
  window.scrollTo(0, 0);
}

function setTitle(text) {
  document.title = text ? `${text} · boxoffice` : 'boxoffice';
}

document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a[href]');
  if (!a || a.target || e.defaultPrevented || e.button !== 0
    || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !isPagePath(url.pathname)) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', () => route({ focus: true }));

function renderWho() {
  const who = document.getElementById('who');
  if (!who) return;
  const s = session.get();
  who.replaceChildren();
  if (s) {
    who.append(h('span', { class: 'signed-in', text: `Signed in as ${s.user}` }), ' ',
      h('button', {
        type: 'button', class: 'link', text: 'Sign out',
        on: { click: () => { session.clear(); route({ focus: true }); } },
      }));
  } else {
    const next = location.pathname === '/signin' ? '/' : location.pathname + location.search;
    who.append(h('a', { href: `/signin?next=${encodeURIComponent(next)}`, text: 'Sign in' }));
  }
}

/** A same-site path to go back to, never another origin. */
function safeNext(value) {
  return value && value.startsWith('/') && !value.startsWith('//') ? value : '/';
}

// ---------------------------------------------------------------------------------------
// Sign-in

function signInPage(main, ctx) {
  setTitle('Sign in');
  const next = safeNext(new URLSearchParams(location.search).get('next'));
  const box = h('div', { class: 'message' });
  const input = h('input', {
    id: 'user', name: 'user', autocomplete: 'username', required: true, maxlength: 64,
    'aria-describedby': 'user-hint',
  });
  const form = h('form', { class: 'stack', novalidate: true },
    h('label', { for: 'user', text: 'Your name' }), input,
    h('p', { id: 'user-hint', class: 'hint', text: 'Letters, digits and . _ - @ only, e.g. alice.' }),
    h('button', { type: 'submit', text: 'Sign in' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const user = input.value.trim();
    if (!user) { say(box, 'error', 'Please type a name.'); input.focus(); return; }
    say(box, 'info', 'Signing in…');
    try {
      const answer = await api('POST', '/v1/auth/token', { body: { user } });
      session.set(answer);
      if (ctx.alive()) navigate(next, { replace: true });
    } catch (error) {
      const text = error.status === 404
        ? 'This server has no development sign-in: it signs people in through its identity provider.'
        : error.message;
      say(box, 'error', text);
      input.focus();
    }
  });
  main.append(
    h('h1', { text: 'Sign in', tabindex: -1 }),
    h('p', { class: 'dev-note' },
      h('strong', { text: 'Development sign-in. ' }),
      'This server runs in development mode, where any name signs you in without a password '
      + '(through its test token issuer). A production deployment signs people in through '
      + 'its own identity provider instead.'),
    box, form);
}

// ---------------------------------------------------------------------------------------
// Home: search with type-ahead, filters and cursor paging

const SUGGEST_DELAY_MS = 150;
const PAGE_SIZE = 20;
const MAX_SEARCH_RETRY_SECS = 10;

function dayStart(date) { return new Date(`${date}T00:00:00`).toISOString().replace(/\.\d{3}Z$/, 'Z'); }
function dayEnd(date) { return new Date(`${date}T23:59:59`).toISOString().replace(/\.\d{3}Z$/, 'Z'); }

function homePage(main, ctx) {
  setTitle('');
  const params = new URLSearchParams(location.search);
  const field = (id, label, attrs = {}) => {
    const input = h('input', { id, name: id, value: params.get(id) || '', ...attrs });
    return [h('div', { class: 'field' }, h('label', { for: id, text: label }), input), input];
  };
  const q = h('input', {
    id: 'q', name: 'q', type: 'search', value: params.get('q') || '', autocomplete: 'off',
    role: 'combobox', 'aria-autocomplete': 'list', 'aria-expanded': 'false',
    'aria-controls': 'suggestions', placeholder: 'Performer, event or venue',
  });
  const list = h('ul', { id: 'suggestions', role: 'listbox', 'aria-label': 'Suggestions', hidden: true });
  const [cityField, city] = field('city', 'City', { autocomplete: 'address-level2' });
  const [categoryField, category] = field('category', 'Category', { list: 'categories' });
  const [fromField, from] = field('from', 'From', { type: 'date' });
  const [toField, to] = field('to', 'To', { type: 'date' });
  const form = h('form', { role: 'search', class: 'search', 'aria-label': 'Events' },
    h('div', { class: 'combo' }, h('label', { for: 'q', text: 'Search events' }), q, list),
    h('fieldset', { class: 'filters' }, h('legend', { text: 'Filters' }),
      cityField, categoryField, fromField, toField),
    h('datalist', { id: 'categories' },
      ['concert', 'comedy', 'sports', 'theater'].map((c) => h('option', { value: c }))),
    h('button', { type: 'submit', text: 'Search' }));
  const box = h('div', { class: 'message' });
  const summary = h('p', { id: 'result-summary', class: 'summary', role: 'status' });
  const results = h('ol', { id: 'results', class: 'results' });
  const more = h('button', { type: 'button', id: 'more', class: 'secondary', text: 'More results', hidden: true });
  main.append(h('h1', { text: 'Find events', tabindex: -1 }), form, box, summary, results, more);

  let nextCursor = null;
  let searchSeq = 0;
  const query = () => {
    const p = new URLSearchParams();
    for (const [name, input] of [['q', q], ['city', city], ['category', category], ['from', from], ['to', to]]) {
      if (input.value.trim()) p.set(name, input.value.trim());
    }
    return p;
  };
  const apiQuery = (p, cursor) => {
    const a = new URLSearchParams();
    for (const name of ['q', 'city', 'category']) if (p.get(name)) a.set(name, p.get(name));
    if (p.get('from')) a.set('from', dayStart(p.get('from')));
    if (p.get('to')) a.set('to', dayEnd(p.get('to')));
    a.set('limit', PAGE_SIZE);
    if (cursor) a.set('cursor', cursor);
    return a;
  };

  async function search(cursor) {
    const seq = ++searchSeq;
    const p = query();
    say(box, 'info', '');
    more.hidden = true;
    if (!cursor) { results.replaceChildren(); summary.textContent = 'Searching…'; }
    try {
      const answer = await api('GET', `/v1/events?${apiQuery(p, cursor)}`);
      if (!ctx.alive() || seq !== searchSeq) return;
      const items = answer.events.map(resultItem);
      results.append(...items);
      nextCursor = answer.next_cursor;
      more.hidden = !nextCursor;
      const shown = results.children.length;
      if (shown === 0) {
        summary.textContent = p.get('q')
          ? `No events match “${p.get('q')}”. Try fewer words or remove a filter.`
          : 'No upcoming events match these filters.';
      } else {
        const estimate = Math.max(answer.total_estimate || 0, shown);
        summary.textContent = `Showing ${shown} of about ${plural(estimate, 'event', 'events')}.`;
      }
      if (cursor && items[0]) items[0].querySelector('a').focus();
    } catch (error) {
      if (!ctx.alive() || seq !== searchSeq) return;
      summary.textContent = '';
      say(box, 'error', error.message);
      // A node still building its index (first start of dev) answers 503: try again then.
      if (error.status === 503 && error.retryAfterSecs && !cursor) {
        const retry = setTimeout(() => { if (seq === searchSeq) search(null); },
          Math.min(error.retryAfterSecs, MAX_SEARCH_RETRY_SECS) * 1000);
        ctx.onLeave(() => clearTimeout(retry));
      }
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    closeList();
    const p = query().toString();
    history.pushState(null, '', p ? `/?${p}` : '/');
    search(null);
  });
  more.addEventListener('click', () => search(nextCursor));

  // Type-ahead: a listbox under the search box, driven by /v1/suggest.
  let suggestions = [];
  let active = -1;
  let suggestSeq = 0;
  let timer = null;
  function closeList() {
    list.hidden = true;
    list.replaceChildren();
    suggestions = [];
    active = -1;
    q.setAttribute('aria-expanded', 'false');
    q.removeAttribute('aria-activedescendant');
  }
  function setActive(i) {
    active = i;
    [...list.children].forEach((li, j) => li.setAttribute('aria-selected', String(j === i)));
    if (i >= 0) q.setAttribute('aria-activedescendant', `suggestion-${i}`);
    else q.removeAttribute('aria-activedescendant');
  }
  function choose(s) {
    closeList();
    if (s.kind === 'event' && s.event_id) {
      navigate(`/events/${encodeURIComponent(s.event_id)}`);
    } else {
      q.value = s.text;
      form.requestSubmit();
    }
  }
  async function suggest() {
    const text = q.value.trim();
    const seq = ++suggestSeq;
    if (text.length < 2) { closeList(); return; }
    try {
      const answer = await api('GET', `/v1/suggest?${new URLSearchParams({ q: text, limit: 8 })}`);
      if (!ctx.alive() || seq !== suggestSeq || document.activeElement !== q) return;
      suggestions = answer.suggestions || [];
      list.replaceChildren(...suggestions.map((s, i) => h('li', {
        id: `suggestion-${i}`, role: 'option', 'aria-selected': 'false', class: 'suggestion',
        on: {
          mousedown: (e) => e.preventDefault(),
          click: () => choose(s),
        },
      }, h('span', { text: s.text }), h('span', { class: 'kind', text: s.kind === 'event' ? 'event' : 'performer' }))));
      list.hidden = suggestions.length === 0;
      q.setAttribute('aria-expanded', String(suggestions.length > 0));
      active = -1;
    } catch {
      closeList(); // type-ahead is a convenience; the search itself reports errors
    }
  }
  q.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(suggest, SUGGEST_DELAY_MS);
  });
  q.addEventListener('keydown', (e) => {
    if (list.hidden) return;
    if (e.key === 'ArrowDown') { e.preventDefault(); setActive((active + 1) % suggestions.length); }
    else if (e.key === 'ArrowUp') { e.preventDefault(); setActive(active <= 0 ? suggestions.length - 1 : active - 1); }
    else if (e.key === 'Escape') { e.preventDefault(); closeList(); }
    else if (e.key === 'Enter' && active >= 0) { e.preventDefault(); choose(suggestions[active]); }
  });
  q.addEventListener('blur', () => setTimeout(closeList, 150));
  ctx.onLeave(() => clearTimeout(timer));

  search(null);
}

function badge(e) {
  if (e.sold_out) return h('span', { class: 'badge sold-out', text: 'Sold out' });
  if (!e.on_sale) return h('span', { class: 'badge off-sale', text: 'Not on sale yet' });
  if (e.total && e.available / e.total < 0.1) {
    return h('span', { class: 'badge few', text: `Only ${e.available} left` });
  }
  return h('span', { class: 'badge open', text: `${e.available} of ${e.total} seats available` });
}

function resultItem(e) {
  const performers = (e.performers || []).map((p) => p.name).join(', ');
  const price = e.price_range
    ? (e.price_range.min.amount === e.price_range.max.amount
      ? money(e.price_range.min)
      : `${money(e.price_range.min)} – ${money(e.price_range.max)}`)
    : '';
  return h('li', { class: 'card', 'data-event-id': e.event_id },
    h('h2', {}, h('a', { href: `/events/${encodeURIComponent(e.event_id)}`, text: e.name })),
    h('p', { class: 'meta' }, h('time', { datetime: e.starts_at, text: when(e.starts_at) }),
      ` · ${e.venue.name}, ${e.venue.city}`),
    performers ? h('p', { class: 'lineup', text: performers }) : null,
    h('p', { class: 'row' }, h('span', { class: 'category', text: e.category }),
      price ? h('span', { class: 'price', text: price }) : null, badge(e)));
}

// ---------------------------------------------------------------------------------------
// Event page: details, sections, live seat map, hold with countdown, checkout

const HOLD_KEY = (eventId) => `boxoffice.hold.${eventId}`;
const SEAT_PITCH = 18;
const SEAT_RADIUS = 7;
const ROW_LABEL_WIDTH = 34;

async function eventPage(main, ctx, eventId) {
  setTitle('Event');
  const box = h('div', { class: 'message' });
  main.append(h('p', { class: 'crumbs' }, h('a', { href: '/', text: 'All events' })),
    h('h1', { text: 'Loading event…', tabindex: -1 }), box);
  let view;
  let seatList;
  try {
    [view, seatList] = await Promise.all([
      api('GET', `/v1/events/${encodeURIComponent(eventId)}`),
      api('GET', `/v1/events/${encodeURIComponent(eventId)}/seats`),
    ]);
  } catch (error) {
    if (!ctx.alive()) return;
    main.querySelector('h1').textContent = error.status === 404 ? 'Event not found' : 'Could not load the event';
    say(box, 'error', error.message);
    return;
  }
  if (!ctx.alive()) return;
  main.replaceChildren();
  const ev = view.event;
  setTitle(ev.name);

  // State: seats by id (server status), my selection, my hold.
  const seats = new Map(seatList.seats.map((s) => [s.id, { ...s }]));
  const selection = new Set();
  let hold = null;
  const holdKeys = new Map();

  const message = h('div', { class: 'message', id: 'event-message' });
  const live = h('p', { id: 'live', class: 'live', 'data-state': 'connecting', text: 'Connecting to live seat updates…' });
  const sectionRows = new Map();
  const table = h('table', { class: 'sections' },
    h('caption', { text: 'Prices and availability' }),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Section' }),
      h('th', { scope: 'col', text: 'Price' }), h('th', { scope: 'col', text: 'Available' }))),
    h('tbody', {}, view.sections.map((s) => {
      const cell = h('td', { text: `${s.available} of ${s.total}` });
      sectionRows.set(s.name, cell);
      return h('tr', {}, h('th', { scope: 'row', text: s.name }), h('td', { text: money(s.price) }), cell);
    })));

  const mapHelp = h('p', { id: 'map-help', class: 'hint', text: 'Select seats by clicking them, or Tab into the map, move with the arrow keys and press Space to select.' });
  const { element: mapEl, paint } = seatMap(seats, view.sections, {
    onToggle: toggle,
  });
  const legend = h('ul', { class: 'legend', 'aria-label': 'Legend' },
    [['available', 'Available'], ['selected', 'Selected'], ['mine', 'Held by you'], ['held', 'Held'], ['sold', 'Sold']]
      .map(([cls, label]) => h('li', {}, svg('svg', { viewBox: '0 0 16 16', width: 16, height: 16, 'aria-hidden': 'true' },
        svg('circle', { cx: 8, cy: 8, r: 6, class: `seat ${cls}`, 'data-status': cls === 'selected' || cls === 'mine' ? (cls === 'mine' ? 'held' : 'available') : cls })), label)));

  const selectionPanel = h('div', { id: 'selection', class: 'panel' });
  const holdPanel = h('div', { id: 'hold', class: 'panel', hidden: true });

  const notices = [];
  if (view.queue && view.queue.enabled) {
    // Seam for the waiting room (not built yet): when it exists, this is where the page
    // sends the fan to /events/{id}/queue and comes back with an admission token.
    notices.push(h('p', { class: 'notice', id: 'queue-notice' },
      h('strong', { text: 'Waiting room. ' }),
      'This event is set to sell through a waiting room, which boxoffice does not have yet; '
      + 'until it does, seats are held here directly.'));
  }
  if (!view.on_sale) {
    notices.push(h('p', { class: 'notice', text: 'Tickets for this event are not on sale yet. The seat map shows what will be sold.' }));
  }

  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '/', text: 'All events' })),
    h('h1', { text: ev.name, tabindex: -1 }),
    h('p', { class: 'meta' }, h('time', { datetime: ev.starts_at, text: when(ev.starts_at) }), ` · ${ev.category}`),
    h('p', { class: 'venue' }, h('strong', { text: view.venue.name }),
      `, ${view.venue.address}, ${view.venue.city}, ${view.venue.country}`),
    ev.description ? h('p', { class: 'description', text: ev.description }) : null,
    view.performers.length ? h('section', { 'aria-labelledby': 'performers-h' },
      h('h2', { id: 'performers-h', text: view.performers.length === 1 ? 'Performer' : 'Performers' }),
      h('ul', { class: 'performers' }, view.performers.map((p) => h('li', {},
        h('strong', { text: p.name }), p.description ? ` — ${p.description}` : '')))) : null,
    h('section', { 'aria-labelledby': 'tickets-h', class: 'tickets' },
      h('h2', { id: 'tickets-h', text: 'Tickets' }),
      notices, table, message,
      h('div', { class: 'picker' },
        h('div', { class: 'map-column' }, live, mapHelp, legend, mapEl),
        h('div', { class: 'side' }, selectionPanel, holdPanel))));

  function recount() {
    const counts = new Map();
    for (const s of seats.values()) {
      const c = counts.get(s.section) || { available: 0, total: 0 };
      c.total += 1;
      if (s.status === 'available') c.available += 1;
      counts.set(s.section, c);
    }
    for (const [name, cell] of sectionRows) {
      const c = counts.get(name);
      if (c) cell.textContent = c.available === 0 ? `Sold out (0 of ${c.total})` : `${c.available} of ${c.total}`;
    }
  }

  function repaint(id) {
    const seat = seats.get(id);
    if (!seat) return;
    const mine = hold && hold.seat_ids.includes(id);
    paint(id, seat.status, { selected: selection.has(id), mine });
  }
  const repaintAll = () => { for (const id of seats.keys()) repaint(id); };

  function toggle(id) {
    const seat = seats.get(id);
    if (!seat) return;
    if (hold) {
      say(message, 'info', 'You already hold seats for this event. Book them or release them to choose again.');
      return;
    }
    if (selection.has(id)) {
      selection.delete(id);
      announce(`${seatName(seat)} removed from your selection.`);
    } else if (seat.status !== 'available') {
      announce(`${seatName(seat)} is ${seat.status}.`);
      return;
    } else if (!view.on_sale) {
      announce('Tickets are not on sale yet.');
      return;
    } else if (selection.size >= MAX_SEATS_PER_HOLD) {
      say(message, 'error', `You can hold at most ${MAX_SEATS_PER_HOLD} seats at once.`);
      return;
    } else {
      selection.add(id);
      announce(`${seatName(seat)} selected, ${money(seat.price)}.`);
    }
    repaint(id);
    renderSelection();
  }

  function renderSelection() {
    selectionPanel.replaceChildren();
    if (hold) { selectionPanel.hidden = true; return; }
    selectionPanel.hidden = false;
    const chosen = [...selection].map((id) => seats.get(id));
    const total = chosen.reduce((sum, s) => sum + s.price.amount, 0);
    selectionPanel.append(h('h3', { text: 'Your selection' }));
    if (chosen.length === 0) {
      selectionPanel.append(h('p', { class: 'hint', text: 'No seats selected yet.' }));
      return;
    }
    selectionPanel.append(
      h('ul', { class: 'chosen' }, chosen.map((s) => h('li', {}, `${seatName(s)} · ${money(s.price)} `,
        h('button', {
          type: 'button', class: 'link', text: 'Remove', 'aria-label': `Remove ${seatName(s)}`,
          on: { click: () => toggle(s.id) },
        })))),
      h('p', { class: 'total', text: `Total ${money({ amount: total, currency: chosen[0].price.currency })}` }));
    if (session.get()) {
      selectionPanel.append(h('button', {
        type: 'button', id: 'hold-button', text: `Hold ${plural(chosen.length, 'seat', 'seats')}`,
        on: { click: holdSelected },
      }));
    } else {
      selectionPanel.append(h('a', {
        class: 'button', id: 'signin-to-hold',
        href: `/signin?next=${encodeURIComponent(location.pathname)}`, text: 'Sign in to hold these seats',
      }));
    }
  }

  async function holdSelected() {
    const ids = [...selection];
    const signature = ids.join(',');
    const key = holdKeys.get(signature) || newKey();
    holdKeys.set(signature, key);
    const button = document.getElementById('hold-button');
    if (button) button.disabled = true;
    say(message, 'info', 'Holding your seats…');
    try {
      const answer = await api('POST', '/v1/holds', { auth: true, key, body: { event_id: eventId, seat_ids: ids } });
      holdKeys.delete(signature);
      if (!ctx.alive()) return;
      selection.clear();
      setHold(answer);
      say(message, 'ok', '');
    } catch (error) {
      if (!ctx.alive()) return;
      if (button) button.disabled = false;
      // Only an answer that changed nothing for sure (429, 503, no answer) keeps the key,
      // so the retry of the same seats is a replay rather than a second hold.
      if (![0, 429, 503].includes(error.status)) holdKeys.delete(signature);
      const taken = error.status === 409 && error.problem && error.problem.unavailable_seats;
      if (taken && taken.length) {
        for (const id of taken) selection.delete(id);
        const names = taken.map((id) => seatName(seats.get(id)) || id);
        say(message, 'error', `Sorry, ${names.length === 1 ? 'this seat was' : 'these seats were'} taken just before you: ${names.join('; ')}. `
          + 'The map is refreshed; please pick other seats.');
        await reloadSeats();
        renderSelection();
      } else {
        if (error.status === 401) renderSelection();
        say(message, 'error', error.message);
      }
    }
  }

  async function reloadSeats() {
    try {
      const fresh = await api('GET', `/v1/events/${encodeURIComponent(eventId)}/seats`);
      for (const s of fresh.seats) {
        const known = seats.get(s.id);
        if (known) known.status = s.status;
      }
    } catch { /* the live stream keeps the map current anyway */ }
    repaintAll();
    recount();
  }

  // The hold: countdown to expires_at, release, book and pay.
  let tick = null;
  ctx.onLeave(() => clearInterval(tick));

  function setHold(answer) {
    hold = answer;
    sessionStorage.setItem(HOLD_KEY(eventId), JSON.stringify(answer));
    repaintAll();
    renderSelection();
    renderHold();
    announce(`${plural(answer.seat_ids.length, 'seat', 'seats')} held for you.`);
  }

  function clearHold() {
    hold = null;
    sessionStorage.removeItem(HOLD_KEY(eventId));
    clearInterval(tick);
    holdPanel.hidden = true;
    holdPanel.replaceChildren();
    repaintAll();
    renderSelection();
  }

  function renderHold() {
    holdPanel.replaceChildren();
    holdPanel.hidden = false;
    const expires = Date.parse(hold.expires_at);
    const countdown = h('time', { id: 'countdown', role: 'timer', 'aria-live': 'off', datetime: hold.expires_at });
    const held = hold.seat_ids.map((id) => seats.get(id)).filter(Boolean);
    const book = h('button', { type: 'button', id: 'book-button', text: 'Book and pay', on: { click: bookHold } });
    const release = h('button', { type: 'button', id: 'release-button', class: 'secondary', text: 'Release seats', on: { click: releaseHold } });
    holdPanel.append(
      h('h3', { id: 'hold-h', text: 'Seats held for you', tabindex: -1 }),
      h('ul', { class: 'chosen' }, held.map((s) => h('li', { text: `${seatName(s)} · ${money(s.price)}` }))),
      hold.total ? h('p', { class: 'total', text: `Total ${money(hold.total)}` }) : null,
      h('p', { class: 'countdown' }, 'Your hold ends in ', countdown, '.'),
      h('div', { class: 'actions' }, book, release));
    let warned = false;
    const update = () => {
      const left = Math.max(0, Math.round((expires - serverNow()) / 1000));
      countdown.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
      countdown.setAttribute('data-seconds', String(left));
      if (left <= 60 && !warned) { warned = true; announce('One minute left on your hold.'); }
      if (left === 0) {
        clearHold();
        say(message, 'error', 'Your hold expired and the seats were released. Pick seats again to continue.');
      }
    };
    update();
    clearInterval(tick);
    tick = setInterval(update, 1000);
    holdPanel.querySelector('h3').focus();
  }

  async function releaseHold() {
    say(message, 'info', 'Releasing your seats…');
    try {
      await api('DELETE', `/v1/holds/${encodeURIComponent(hold.hold_id)}`, { auth: true });
    } catch (error) {
      // 404/409/410: the hold is gone already, which is what releasing asks for.
      if (![404, 409, 410].includes(error.status)) { say(message, 'error', error.message); return; }
    }
    if (!ctx.alive()) return;
    clearHold();
    say(message, 'ok', 'Released. The seats are free for others again.');
  }

  async function bookHold() {
    const button = document.getElementById('book-button');
    button.disabled = true;
    say(message, 'info', 'Creating your booking…');
    try {
      // One key per hold: pressing again, or retrying after an error, replays the booking.
      const booking = await api('POST', '/v1/bookings', {
        auth: true, key: `book-${hold.hold_id}`, body: { hold_id: hold.hold_id },
      });
      sessionStorage.removeItem(HOLD_KEY(eventId));
      const url = booking.payment && booking.payment.checkout_url;
      if (url) {
        say(message, 'info', 'Taking you to the payment page…');
        location.assign(checkoutUrl(url, booking.booking_id));
      } else {
        navigate(`/bookings/${encodeURIComponent(booking.booking_id)}`);
      }
    } catch (error) {
      button.disabled = false;
      if (error.status === 410) {
        clearHold();
        say(message, 'error', 'Your hold expired before the booking was made. Pick seats again to continue.');
      } else {
        say(message, 'error', error.message);
      }
    }
  }

  // Restore a hold made earlier in this tab (e.g. before reloading, or back from payment).
  const saved = sessionStorage.getItem(HOLD_KEY(eventId));
  if (saved && session.get()) {
    try {
      const previous = JSON.parse(saved);
      const current = await api('GET', `/v1/holds/${encodeURIComponent(previous.hold_id)}`, { auth: true });
      if (ctx.alive() && current.status === 'active') setHold({ ...previous, ...current });
      else sessionStorage.removeItem(HOLD_KEY(eventId));
    } catch {
      sessionStorage.removeItem(HOLD_KEY(eventId));
    }
  }
  if (!ctx.alive()) return;
  repaintAll();
  recount();
  renderSelection();

  // The live seat map: the stream's first message is every seat, then batches of changes.
  let source = null;
  function connect() {
    source = new EventSource(`/v1/events/${encodeURIComponent(eventId)}/seats/stream`);
    source.addEventListener('open', () => {
      live.dataset.state = 'live';
      live.textContent = 'Live: the map updates as seats are held and sold.';
    });
    source.addEventListener('seats', (e) => {
      let batch;
      try { batch = JSON.parse(e.data); } catch { return; }
      live.dataset.state = 'live';
      const lost = [];
      for (const change of batch.changes || []) {
        const seat = seats.get(change.id);
        if (!seat || seat.status === change.status) continue;
        seat.status = change.status;
        if (change.status !== 'available' && selection.delete(change.id)) lost.push(seat);
        repaint(change.id);
      }
      recount();
      if (lost.length) {
        renderSelection();
        say(message, 'error', `Someone else just took ${lost.map(seatName).join('; ')}, so ${lost.length === 1 ? 'it was' : 'they were'} removed from your selection.`);
      }
    });
    source.addEventListener('resync', () => {
      // This client fell behind; a new stream starts with the whole map again.
      source.close();
      connect();
    });
    source.addEventListener('error', () => {
      live.dataset.state = 'reconnecting';
      live.textContent = 'Live updates paused; reconnecting…';
    });
  }
  connect();
  ctx.onLeave(() => source && source.close());
}

/** Adds `return_to` so the sandbox's page links back to the booking page. */
function checkoutUrl(url, bookingId) {
  const u = new URL(url, location.href);
  // The dev sandbox names 127.0.0.1; a page opened as localhost keeps its own origin (and
  // so its sign-in) by going there under the same name.
  const loopback = (host) => ['127.0.0.1', 'localhost', '[::1]'].includes(host);
  if (loopback(u.hostname) && loopback(location.hostname) && u.port === location.port) {
    u.hostname = location.hostname;
  }
  u.searchParams.set('return_to', `/bookings/${bookingId}`);
  return u.toString();
}

const MAX_SEATS_PER_HOLD = 10;

/**
 * The seat map as SVG: sections top to bottom, rows as lines of seats centred under the
 * stage. One tab stop; arrow keys move between seats (roving tabindex), Space or Enter
 * toggles. Seats carry `data-seat-id` and `data-status` (the server's status).
 */
function seatMap(seats, sections, { onToggle }) {
  const order = sections.map((s) => s.name);
  const bySection = new Map(order.map((name) => [name, new Map()]));
  for (const seat of seats.values()) {
    if (!bySection.has(seat.section)) bySection.set(seat.section, new Map());
    const rows = bySection.get(seat.section);
    if (!rows.has(seat.row)) rows.set(seat.row, []);
    rows.get(seat.row).push(seat);
  }
  let widest = 1;
  for (const rows of bySection.values()) {
    for (const row of rows.values()) {
      row.sort((a, b) => a.number - b.number);
      widest = Math.max(widest, row.length);
    }
  }
  const width = ROW_LABEL_WIDTH * 2 + widest * SEAT_PITCH;
  const root = svg('svg', {
    class: 'seatmap', role: 'group', 'aria-label': 'Seat map', 'aria-describedby': 'map-help',
  });
  let y = 8;
  root.append(svg('rect', { x: ROW_LABEL_WIDTH, y, width: widest * SEAT_PITCH, height: 20, rx: 4, class: 'stage' }),
    svg('text', { x: width / 2, y: y + 14, class: 'stage-label', 'text-anchor': 'middle', text: 'Stage' }));
  y += 40;
  const seatEls = new Map();
  const grid = []; // rows of seat ids, top to bottom, for arrow keys
  for (const [section, rows] of bySection) {
    if (rows.size === 0) continue;
    root.append(svg('text', { x: width / 2, y: y + 4, class: 'section-label', 'text-anchor': 'middle', text: section }));
    y += 18;
    for (const [rowName, row] of rows) {
      const offset = ROW_LABEL_WIDTH + ((widest - row.length) * SEAT_PITCH) / 2;
      root.append(svg('text', { x: ROW_LABEL_WIDTH - 8, y: y + 4, class: 'row-label', 'text-anchor': 'end', 'aria-hidden': 'true', text: rowName }));
      const ids = [];
      row.forEach((seat, i) => {
        const el = svg('circle', {
          cx: offset + i * SEAT_PITCH + SEAT_PITCH / 2, cy: y, r: SEAT_RADIUS,
          class: 'seat', role: 'checkbox', tabindex: -1,
          'data-seat-id': seat.id, 'data-row': grid.length, 'data-col': i,
        });
        el.append(svg('title'));
        seatEls.set(seat.id, el);
        ids.push(seat.id);
        root.append(el);
      });
      grid.push(ids);
      y += SEAT_PITCH;
    }
    y += 12;
  }
  root.setAttribute('viewBox', `0 0 ${width} ${y}`);
  // Grows with the column up to 1.75× and never shrinks below its natural size: on a phone
  // the seats stay big enough to tap and the map scrolls sideways.
  root.style.minWidth = `${width}px`;
  root.style.maxWidth = `${Math.round(width * 1.75)}px`;

  // Roving tabindex: one seat is the map's tab stop.
  let current = grid.length && grid[0].length ? grid[0][0] : null;
  if (current) seatEls.get(current).setAttribute('tabindex', '0');
  function focusSeat(id) {
    if (!id) return;
    seatEls.get(current)?.setAttribute('tabindex', '-1');
    current = id;
    const el = seatEls.get(id);
    el.setAttribute('tabindex', '0');
    el.focus();
  }
  root.addEventListener('click', (e) => {
    const id = e.target.getAttribute && e.target.getAttribute('data-seat-id');
    if (id) { focusSeat(id); onToggle(id); }
  });
  root.addEventListener('keydown', (e) => {
    const el = seatEls.get(current);
    if (!el) return;
    const r = Number(el.getAttribute('data-row'));
    const c = Number(el.getAttribute('data-col'));
    const near = (row) => {
      // The seat in `row` closest in x to the current one.
      const x = Number(el.getAttribute('cx'));
      let best = row[0];
      for (const id of row) {
        if (Math.abs(Number(seatEls.get(id).getAttribute('cx')) - x)
          < Math.abs(Number(seatEls.get(best).getAttribute('cx')) - x)) best = id;
      }
      return best;
    };
    let next = null;
    if (e.key === 'ArrowRight') next = grid[r][Math.min(c + 1, grid[r].length - 1)];
    else if (e.key === 'ArrowLeft') next = grid[r][Math.max(c - 1, 0)];
    else if (e.key === 'ArrowDown' && r + 1 < grid.length) next = near(grid[r + 1]);
    else if (e.key === 'ArrowUp' && r > 0) next = near(grid[r - 1]);
    else if (e.key === 'Home') next = grid[r][0];
    else if (e.key === 'End') next = grid[r][grid[r].length - 1];
    else if (e.key === ' ' || e.key === 'Enter') { e.preventDefault(); onToggle(current); return; }
    else return;
    e.preventDefault();
    focusSeat(next);
  });

  const words = { available: 'available', held: 'held by someone', sold: 'sold' };
  function paint(id, status, { selected, mine }) {
    const el = seatEls.get(id);
    const seat = seats.get(id);
    if (!el || !seat) return;
    el.setAttribute('data-status', status);
    el.classList.toggle('selected', Boolean(selected));
    el.classList.toggle('mine', Boolean(mine));
    el.setAttribute('aria-checked', String(Boolean(selected || mine)));
    el.setAttribute('aria-disabled', String(status !== 'available' && !selected));
    const state = mine ? 'held by you' : selected ? 'selected' : words[status] || status;
    const label = `${seatName(seat)}, ${money(seat.price)}, ${state}`;
    el.setAttribute('aria-label', label);
    el.firstChild.textContent = label;
  }
  return { element: h('div', { class: 'map-scroll' }, root), paint };
}

// ---------------------------------------------------------------------------------------
// Booking page: status re-read until payment settles it

const BOOKING_POLL_MS = 1000;
const BOOKING_POLL_SLOW_MS = 4000;
const BOOKING_POLL_FAST_FOR_MS = 60000;

const STATUS_TEXT = {
  pending_payment: ['Waiting for payment', 'This page updates by itself once the payment goes through.'],
  confirmed: ['Confirmed', 'Payment received. Your seats are yours. Enjoy the show!'],
  failed: ['Failed', 'The booking did not go through.'],
  refunded: ['Refunded', 'The payment arrived after the hold had expired, so it was refunded and the seats were not sold.'],
};
const FAILURE_TEXT = {
  payment_declined: 'The card was declined; nothing was charged.',
  hold_expired: 'The hold expired before the payment arrived.',
  hold_released: 'The hold was released before the payment arrived.',
};

function requireSignIn(main, what) {
  main.append(h('h1', { text: what, tabindex: -1 }),
    h('p', {}, 'Please ', h('a', {
      href: `/signin?next=${encodeURIComponent(location.pathname + location.search)}`, text: 'sign in',
    }), ' to see this page.'));
}

async function bookingPage(main, ctx, bookingId) {
  setTitle('Booking');
  if (!session.get()) { requireSignIn(main, 'Booking'); return; }
  const heading = h('h1', { text: 'Your booking', tabindex: -1 });
  const box = h('div', { class: 'message' });
  const status = h('p', { id: 'booking-status', class: 'status', role: 'status', 'aria-live': 'polite' });
  const explain = h('p', { class: 'explain' });
  const details = h('div', { class: 'details' });
  const actions = h('div', { class: 'actions' });
  main.append(heading, box, status, explain, actions, details);

  let eventShown = false;
  let timer = null;
  const started = Date.now();
  ctx.onLeave(() => clearTimeout(timer));

  async function load() {
    let booking;
    try {
      booking = await api('GET', `/v1/bookings/${encodeURIComponent(bookingId)}`, { auth: true });
    } catch (error) {
      if (!ctx.alive()) return;
      say(box, 'error', error.message);
      // A 503 or a lost connection passes; anything else will not.
      if ([0, 429, 503].includes(error.status)) timer = setTimeout(load, BOOKING_POLL_SLOW_MS);
      return;
    }
    if (!ctx.alive()) return;
    say(box, 'info', '');
    const [word, text] = STATUS_TEXT[booking.status] || [booking.status, ''];
    if (status.dataset.status !== booking.status) {
      status.dataset.status = booking.status;
      status.replaceChildren('Status: ', h('strong', { class: `badge ${booking.status}`, text: word }));
      explain.textContent = booking.status === 'failed' && FAILURE_TEXT[booking.failure_reason]
        ? `${text} ${FAILURE_TEXT[booking.failure_reason]}` : text;
      actions.replaceChildren();
      if (booking.status === 'pending_payment' && booking.payment && booking.payment.checkout_url) {
        actions.append(h('a', { class: 'button', href: checkoutUrl(booking.payment.checkout_url, booking.booking_id), text: 'Pay now' }));
      }
      if (booking.status === 'failed' || booking.status === 'refunded') {
        actions.append(h('a', { class: 'button secondary', href: `/events/${encodeURIComponent(booking.event_id)}`, text: 'Choose seats again' }));
      }
    }
    if (!eventShown) {
      eventShown = true;
      details.append(h('h2', { text: 'Seats' }),
        h('ul', { class: 'chosen' }, booking.seats.map((s) => h('li', { text: `${seatName(s)} · ${money(s.price)}` }))),
        h('p', { class: 'total', text: `Total ${money(booking.total)}` }),
        h('p', { class: 'hint', text: `Booking ${booking.booking_id}, made ${when(booking.created_at)}.` }));
      api('GET', `/v1/events/${encodeURIComponent(booking.event_id)}`).then((v) => {
        if (!ctx.alive()) return;
        heading.textContent = `Your booking: ${v.event.name}`;
        setTitle(`Booking for ${v.event.name}`);
        details.prepend(h('p', { class: 'meta' }, h('a', { href: `/events/${encodeURIComponent(v.event.event_id)}`, text: v.event.name }),
          ` · ${when(v.event.starts_at)} · ${v.venue.name}, ${v.venue.city}`));
      }).catch(() => { /* the booking stands without its event's name */ });
    }
    if (booking.status === 'pending_payment') {
      const fast = Date.now() - started < BOOKING_POLL_FAST_FOR_MS;
      timer = setTimeout(load, fast ? BOOKING_POLL_MS : BOOKING_POLL_SLOW_MS);
    } else {
      announce(`Booking ${word.toLowerCase()}.`);
    }
  }
  load();
}

// ---------------------------------------------------------------------------------------
// My bookings

const MAX_EVENT_NAMES_FETCHED = 20;

async function myBookingsPage(main, ctx) {
  setTitle('My bookings');
  if (!session.get()) { requireSignIn(main, 'My bookings'); return; }
  const box = h('div', { class: 'message' });
  const list = h('ul', { class: 'results', id: 'my-bookings' });
  main.append(h('h1', { text: 'My bookings', tabindex: -1 }), box, list);
  let answer;
  try {
    answer = await api('GET', '/v1/me/bookings', { auth: true });
  } catch (error) {
    if (ctx.alive()) say(box, 'error', error.message);
    return;
  }
  if (!ctx.alive()) return;
  const bookings = [...answer.bookings].sort((a, b) => b.created_at.localeCompare(a.created_at));
  if (bookings.length === 0) {
    main.append(h('p', {}, 'You have no bookings yet. ', h('a', { href: '/', text: 'Find events' }), '.'));
    return;
  }
  const titles = new Map();
  for (const b of bookings) {
    const title = h('a', { href: `/bookings/${encodeURIComponent(b.booking_id)}`, text: `Booking for event ${b.event_id}` });
    if (!titles.has(b.event_id)) titles.set(b.event_id, []);
    titles.get(b.event_id).push(title);
    const [word] = STATUS_TEXT[b.status] || [b.status];
    list.append(h('li', { class: 'card', 'data-booking-id': b.booking_id },
      h('h2', {}, title),
      h('p', { class: 'row' }, h('span', { class: `badge ${b.status}`, text: word }),
        h('span', { text: `${plural(b.seats.length, 'seat', 'seats')} · ${money(b.total)}` }),
        h('span', { class: 'hint', text: `made ${when(b.created_at)}` }))));
  }
  for (const eventId of [...titles.keys()].slice(0, MAX_EVENT_NAMES_FETCHED)) {
    api('GET', `/v1/events/${encodeURIComponent(eventId)}`).then((v) => {
      for (const a of titles.get(eventId)) a.textContent = `${v.event.name} · ${when(v.event.starts_at)}`;
    }).catch(() => { /* keep the id */ });
  }
}

// ---------------------------------------------------------------------------------------

renderWho();
window.addEventListener('storage', (e) => { if (e.key === SESSION_KEY) renderWho(); });
route();
