// Lumen's tracker, served by ingest at /t.js. Publishers install it with one tag:
//
//   <script>window.lumen = window.lumen || [];</script>
//   <script async src="https://INGEST/t.js" data-site="SITE_ID"></script>
//
// It owns what happens in the reader's browser (DESIGN.md, "How shares become
// visible"): a fresh share token per pageview, put in the address bar as
// #ls=TOKEN; pageview events carrying that token and the one the visit arrived
// with; share events for copies, share buttons and the Web Share API; and
// delivery of those events to ingest. Classifying visits is enrich's job.
//
// Tag attributes (all optional but data-site):
//   data-site          the site id ingest knows the publisher by
//   data-endpoint      ingest's base URL (default: the origin this script came from)
//   data-copy-link     on copy, append "<label> <tokened link>" to the copied text;
//                      the value is the label (empty: "Read more:")
//   data-respect-gpc   track nothing when the browser sends Global Privacy Control
//   data-respect-dnt   track nothing when the browser sends Do Not Track
//
// Privacy: no cookies, nothing in storage; undelivered events live in memory only.
// The script never throws into the page: every entry point is wrapped in safe().

import { mint } from './token.js';

/** Share buttons (data-lumen-share="NAME"): the network's share URL, where {u}
 * is the tokened link and {t} the page title, both URI-encoded. Names not listed
 * here are still reported as shares; the element then does what it does itself. */
const NETWORKS = {
  whatsapp: 'https://wa.me/?text={t}%20{u}',
  facebook: 'https://www.facebook.com/sharer/sharer.php?u={u}',
  x: 'https://x.com/intent/post?text={t}&url={u}',
  linkedin: 'https://www.linkedin.com/sharing/share-offsite/?url={u}',
  telegram: 'https://t.me/share/url?url={u}&text={t}',
  reddit: 'https://www.reddit.com/submit?url={u}&title={t}',
  bluesky: 'https://bsky.app/intent/compose?text={t}%20{u}',
  threads: 'https://www.threads.net/intent/post?text={t}%20{u}',
  email: 'mailto:?subject={t}&body={u}',
  sms: 'sms:?&body={t}%20{u}',
};

/** Events created within this window go out in one request. */
const BATCH_MS = 1000;
/** Events per request: keeps a body far below the 64 KB that keepalive fetches
 * and sendBeacon may carry. */
const MAX_BATCH = 20;
/** Undelivered events kept in memory while ingest is unreachable; the oldest go first. */
const MAX_QUEUE = 100;
/** Retry delay after the first failure; it doubles per failure up to RETRY_MAX_MS. */
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 30000;
/** Label of the copied link when data-copy-link has no value. */
const COPY_LABEL = 'Read more:';
/** Shapes ingest accepts (ingest/src/validate.rs): a token, and a label such as
 * a share target. Anything else would get the whole event refused, so a mangled
 * landing token or an odd button name is left out instead. */
const TOKEN_SHAPE = /^[\w-]{1,16}$/;
const LABEL_SHAPE = /^[a-z0-9._-]{1,32}$/;

const w = window;
const d = document;
const nav = navigator;
const C = crypto;
const H = history;
/** The page may wrap replaceState too; the address-bar token goes through the original. */
const replaceState = H.replaceState;

const noop = () => {};

/** Runs `fn`, swallowing any error: a tracker bug must never break the page. */
const safe =
  (fn) =>
  (...args) => {
    try {
      return fn(...args);
    } catch {
      return undefined;
    }
  };

/** An RFC 4122 v4 UUID. crypto.randomUUID exists only in secure contexts; plain
 * http pages get the same from getRandomValues. */
function uuid() {
  if (C.randomUUID) return C.randomUUID();
  const b = C.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 15) | 64;
  b[8] = (b[8] & 63) | 128;
  const h = Array.from(b, (x) => (x + 256).toString(16).slice(1)).join('');
  return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)].join('-');
}

/**
 * The current address split for tracking: `url` without any ls token (the
 * remaining fragment kept), `tok` the ls token it carries (fragment first, then
 * the query for links whose fragment was lost), `rest` the fragment without ls,
 * `route` whether that fragment is a hash router's path (#/path, #!path), and
 * `key` what a new pageview changes: the address without fragment, or with it
 * on hash-routed pages.
 */
function parse() {
  const u = new URL(location.href);
  let tok = u.searchParams.get('ls');
  if (tok != null) u.searchParams.delete('ls');
  const rest = u.hash
    .slice(1)
    .split('&')
    .filter((part) => (part.slice(0, 3) == 'ls=' ? ((tok = part.slice(3)), false) : part))
    .join('&');
  u.hash = rest;
  const route = /^[/!]/.test(rest);
  return { url: u.href, key: route ? u.href : u.href.split('#')[0], tok, rest, route };
}

function start(script) {
  const data = script.dataset;
  const site = data.site;
  if (!site) return console.warn('lumen: the t.js tag has no data-site');
  const endpoint = (data.endpoint || new URL(script.src).origin).replace(/\/+$/, '') + '/v1/events';
  const optedOut =
    ('respectGpc' in data && nav.globalPrivacyControl) ||
    ('respectDnt' in data && (nav.doNotTrack == '1' || w.doNotTrack == '1'));

  /** The current pageview: parse() fields plus its minted `token` and `landing` token. */
  let cur;
  let queue = [];
  let timer = 0;
  let busy = false;
  let failures = 0;

  /** The current page's address carrying the current token. Hash-routed pages
   * get it in the query: a fragment token would break their routes. */
  function link() {
    if (cur.route) {
      const u = new URL(cur.url);
      u.searchParams.set('ls', cur.token);
      return u.href;
    }
    return cur.url + (cur.rest ? '&' : '#') + 'ls=' + cur.token;
  }

  /** Puts the current token in the address bar without adding a history entry;
   * on hash-routed pages only takes an arriving ?ls= out of it. */
  function mark() {
    replaceState.call(H, H.state, '', cur.route ? cur.url : link());
  }

  function send(kind, fields) {
    if (!cur) return;
    // referrer is always sent ('' = none): without it ingest would take the
    // Referer header of this request, which names our own page.
    queue.push(Object.assign({ event_id: uuid(), site_id: site, kind, url: cur.url, referrer: '' }, fields));
    queue.splice(0, queue.length - MAX_QUEUE);
    schedule(BATCH_MS);
  }

  function schedule(ms) {
    if (!timer) timer = setTimeout(safe(flush), ms);
  }

  /** The request body of a batch, each event stamped with the client's send time. */
  function body(batch) {
    const now = Date.now();
    batch.forEach((e) => (e.sent_at = now));
    // A string body is sent as text/plain, a CORS-simple request: no preflight.
    return JSON.stringify(batch);
  }

  /** POSTs a body to ingest: keepalive, so it survives the page; no cookies. */
  function post(text) {
    return fetch(endpoint, { method: 'POST', body: text, keepalive: true, credentials: 'omit' });
  }

  /** Sends the next batch with fetch, which (unlike sendBeacon) tells a 503 from
   * a 202; retries with backoff on 5xx, 408, 429 and network errors. */
  function flush() {
    clearTimeout(timer);
    timer = 0;
    if (busy || !queue.length) return;
    const batch = queue.splice(0, MAX_BATCH);
    busy = true;
    const retry = (after) => {
      busy = false;
      queue = batch.concat(queue);
      queue.splice(0, queue.length - MAX_QUEUE);
      const backoff = Math.min(RETRY_BASE_MS * 2 ** failures++, RETRY_MAX_MS);
      schedule(after > 0 ? Math.min(after * 1000, RETRY_MAX_MS) : backoff * (0.5 + Math.random() / 2));
    };
    // Through a promise so that a fetch that throws (a page's broken wrapper) is
    // retried like any failure instead of leaving `busy` set forever.
    new Promise((sent) => sent(post(body(batch)))).then(
      safe((res) => {
        const s = res.status;
        if (s >= 500 || s == 408 || s == 429) return retry(+res.headers.get('Retry-After'));
        // Delivered, or refused for good (4xx): either way these events are done.
        busy = false;
        failures = 0;
        if (queue.length) schedule(0);
      }),
      safe(() => retry(0)),
    );
  }

  /** The page is going away (or may be frozen): hand everything to sendBeacon,
   * which outlives the page; keepalive fetch when it refuses. No retries from here. */
  function leave() {
    clearTimeout(timer);
    timer = 0;
    while (queue.length) {
      const text = body(queue.splice(0, MAX_BATCH));
      if (!(nav.sendBeacon && nav.sendBeacon(endpoint, text))) {
        post(text).catch(noop);
      }
    }
  }

  function view(first) {
    const prev = cur;
    const p = parse();
    const fill = (bytes) => C.getRandomValues(bytes);
    const landing = first && p.tok && TOKEN_SHAPE.test(p.tok) ? p.tok : undefined;
    cur = Object.assign(p, { token: mint(Date.now(), fill), landing });
    mark();
    send('pageview', {
      referrer: first ? d.referrer : prev.url,
      minted_token: cur.token,
      landing_token: cur.landing,
      webview: 'TelegramWebviewProxy' in w || 'TelegramWebview' in w ? 'telegram' : undefined,
    });
    // The browser looked for an element named "anchor&ls=TOKEN" and found none:
    // do the scroll it would have done for "#anchor" (once it is parsed: this
    // async script may run before the body is).
    const scroll = () => {
      const el = d.getElementById(decodeURIComponent(p.rest));
      if (el && !w.scrollY) el.scrollIntoView();
    };
    if (first && p.tok && p.rest) {
      if (d.readyState == 'loading') d.addEventListener('DOMContentLoaded', safe(scroll));
      else scroll();
    }
  }

  /** After any history change: a new address is a new pageview (SPA navigation);
   * the same address without our token (an in-page anchor, the page's own
   * replaceState) gets the token back. */
  function changed() {
    const p = parse();
    if (p.key != cur.key) view(false);
    else if (!p.route && p.tok != cur.token) {
      Object.assign(cur, { url: p.url, rest: p.rest });
      mark();
    }
  }

  function share(method, target) {
    send('share', { share_token: cur.token, share_method: method, share_target: target, parent_token: cur.landing });
  }

  /** lumen.share(data): navigator.share with the tokened link (unless data.url is
   * given), reported as a native share once the reader completed it. Resolves to
   * whether it was shared; never rejects. */
  function nativeShare(shareData) {
    const full = Object.assign({ title: d.title, url: cur ? link() : location.href }, shareData);
    return nav.share
      ? nav.share(full).then(
          () => (cur && share('native'), true),
          () => false,
        )
      : Promise.resolve(false);
  }

  function onClick(e) {
    const el = e.target.closest && e.target.closest('[data-lumen-share]');
    if (!el) return;
    const target = el.getAttribute('data-lumen-share').toLowerCase();
    if (target == 'native') {
      e.preventDefault();
      return nativeShare();
    }
    const tpl = NETWORKS[target];
    if (tpl) {
      e.preventDefault();
      const href = tpl.replace('{u}', encodeURIComponent(link())).replace('{t}', encodeURIComponent(d.title));
      if (/^https:/.test(href)) w.open(href, '_blank', 'noopener');
      else location.href = href;
    } else if (target == 'copy' && nav.clipboard) {
      e.preventDefault();
      nav.clipboard.writeText(link()).catch(noop);
    }
    share('button', LABEL_SHAPE.test(target) ? target : undefined);
  }

  function onCopy(e) {
    const text = String(getSelection());
    share('copy');
    const editable = e.target.closest && e.target.closest('input,textarea,[contenteditable]');
    if ('copyLink' in data && text.trim() && e.clipboardData && !editable) {
      e.clipboardData.setData('text/plain', text + '\n\n' + (data.copyLink || COPY_LABEL) + ' ' + link());
      e.preventDefault();
    }
  }

  const api = {
    /** Runs a queued call: ['share', data], or a function given the API. */
    push: safe((cmd) => (typeof cmd == 'function' ? cmd(api) : api[cmd[0]](...cmd.slice(1)))),
    share: (shareData) => safe(nativeShare)(shareData) || Promise.resolve(false),
    /** The current pageview's minted token (undefined when tracking is off). */
    token: () => cur && cur.token,
    /** The current page's address with the current token. */
    link: () => (cur ? link() : location.href),
  };

  if (!optedOut) {
    view(true);
    for (const m of ['pushState', 'replaceState']) {
      const orig = H[m];
      H[m] = function () {
        const r = orig.apply(this, arguments);
        safe(changed)();
        return r;
      };
    }
    w.addEventListener('popstate', safe(changed));
    w.addEventListener('hashchange', safe(changed));
    d.addEventListener('click', safe(onClick));
    d.addEventListener('copy', safe(onCopy));
    d.addEventListener('visibilitychange', safe(() => d.visibilityState == 'hidden' && leave()));
    w.addEventListener('pagehide', safe(leave));
    w.addEventListener('online', safe(flush));
  }

  const queued = w.lumen;
  w.lumen = api;
  if (Array.isArray(queued)) queued.forEach(api.push);
}

// Only the first copy of the tag runs; a later one finds the API installed.
const script = d.currentScript;
if (script && !(w.lumen && w.lumen.token)) safe(start)(script);
