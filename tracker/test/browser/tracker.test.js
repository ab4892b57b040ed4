// t.js end to end in real Chromium: demo pages load t.js from a running
// lumen-ingest, which writes to an ephemeral Kafka topic; every assertion on
// events reads them back from that topic (Avro, as enrich will).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  isolatedContext,
  launchBrowser,
  openTracked,
  rawTopic,
  startDemoServer,
  startIngest,
  waitFor,
} from './harness.js';

const TOKEN = /^[A-Za-z0-9_-]{16}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** A valid token (schemas/share-token.md vector) for URLs built by hand. */
const VECTOR_TOKEN = 'AcB3bAEjRWeJq83Q';
/** The one console error a page cannot avoid while ingest is down: Chromium's
 * own log line for the refused request (no script can silence it). */
const REFUSED = /^console error: Failed to load resource: net::ERR_CONNECTION_REFUSED$/;

/** The minute a token was minted in (share-token.md bytes 0..4). */
const mintingMinute = (token) => Buffer.from(token, 'base64url').readUInt32BE(0);

let raw;
let ingest;
let demo;
let browser;

before(async () => {
  raw = await rawTopic('tracker');
  ingest = await startIngest(raw.topic);
  demo = await startDemoServer({ ingest: ingest.origin });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await demo?.close();
  await ingest?.stop();
  await raw?.remove();
});

/** Waits for the first event on the topic that matches every field of `fields`. */
function arrived(what, fields) {
  const matches = (e) => Object.entries(fields).every(([k, v]) => e[k] === v);
  const label = () =>
    `${what} on ${raw.topic} (ingest log: ${ingest.logFile}; ` +
    `Kafka client errors: ${raw.errors.slice(-3).join(' | ') || 'none'})`;
  return waitFor(label, () => raw.events().find(matches));
}

/** Selects the text of the first element matching `selector` and copies it
 * with the keyboard, as a reader would. */
async function copyText(page, selector) {
  await page.locator(selector).first().selectText();
  await page.keyboard.press('ControlOrMeta+C');
}

describe('t.js on a publisher page', () => {
  let first;
  let token;
  let articleUrl;

  it('sends a pageview with a minted token and shows #ls=<token> in the address bar', async () => {
    first = await isolatedContext(browser);
    articleUrl = `${demo.url}/articles/dark-social.html`;
    const started = Date.now();
    const page = await openTracked(first.context, articleUrl);
    token = await page.evaluate(() => window.lumen.token());
    assert.match(token, TOKEN);
    assert.equal(page.url(), `${articleUrl}#ls=${token}`);
    assert.equal(await page.evaluate(() => history.length - window.historyAtStart), 0, 'replaceState, no new entry');
    const minute = mintingMinute(token);
    assert.ok(minute >= Math.floor(started / 60000) && minute <= Math.floor(Date.now() / 60000));

    const view = await arrived('the pageview', { kind: 'pageview', minted_token: token });
    assert.equal(view.site_id, 'demo');
    assert.equal(view.url, articleUrl);
    assert.equal(view.landing_token, null);
    assert.equal(view.referrer, null);
    assert.equal(view.webview, null);
    assert.match(view.event_id, UUID);
    assert.ok(view.sent_at >= started && view.sent_at <= view.received_at + 60000, 'sent_at is the client clock');
    assert.match(view.user_agent, /Chrome/);
    assert.deepEqual(first.problems, []);
  });

  it('sends a share with method copy when the reader copies text', async () => {
    const [page] = first.context.pages();
    await copyText(page, 'article p');
    const share = await arrived('the copy share', { kind: 'share', share_method: 'copy', share_token: token });
    assert.equal(share.url, articleUrl);
    assert.equal(share.share_target, null);
    assert.equal(share.parent_token, null, 'the reader arrived without a token');
    assert.deepEqual(first.problems, []);
  });

  it('sends a share with target whatsapp and opens WhatsApp with the tokened link', async () => {
    const [page] = first.context.pages();
    const [popup] = await Promise.all([
      first.context.waitForEvent('page'),
      page.locator('[data-lumen-share="whatsapp"]').first().click(),
    ]);
    await popup.waitForLoadState();
    const opened = new URL(popup.url());
    assert.equal(opened.origin, 'https://wa.me');
    assert.ok(opened.searchParams.get('text').endsWith(` ${articleUrl}#ls=${token}`), opened.href);
    assert.deepEqual(first.external, [opened.href], 'the only request off this machine, answered by a stub');

    const share = await arrived('the whatsapp share', { kind: 'share', share_target: 'whatsapp' });
    assert.equal(share.share_method, 'button');
    assert.equal(share.share_token, token);
    assert.deepEqual(first.problems, []);
  });

  it('links a visit through the tokened URL to the token, with a fresh token of its own', async () => {
    const [sharer] = first.context.pages();
    const second = await isolatedContext(browser);
    const page = await openTracked(second.context, sharer.url());
    const own = await page.evaluate(() => window.lumen.token());
    assert.match(own, TOKEN);
    assert.notEqual(own, token);
    assert.equal(page.url(), `${articleUrl}#ls=${own}`);

    const view = await arrived('the second visit', { kind: 'pageview', minted_token: own });
    assert.equal(view.landing_token, token);
    assert.equal(view.url, articleUrl, 'the URL is reported without the token');

    // Re-sharing from there names the first token as parent: the cascade.
    await page.locator('[data-lumen-share="email"]').first().click();
    const reshare = await arrived('the re-share', { kind: 'share', share_token: own });
    assert.equal(reshare.share_target, 'email');
    assert.equal(reshare.parent_token, token);
    assert.deepEqual(second.problems, []);
    await second.context.close();
  });

  it('counts single-page-app navigations (pushState, popstate) as pageviews with new tokens', async () => {
    const spa = await isolatedContext(browser);
    const page = await openTracked(spa.context, `${demo.url}/live/`);
    const home = await page.evaluate(() => window.lumen.token());
    await page.getByRole('link', { name: 'Vienna' }).click();
    await page.waitForURL(/\/live\/vienna#ls=/);
    const vienna = await page.evaluate(() => window.lumen.token());
    assert.notEqual(vienna, home);
    assert.equal(page.url(), `${demo.url}/live/vienna#ls=${vienna}`);

    const view = await arrived('the pushState pageview', { kind: 'pageview', minted_token: vienna });
    assert.equal(view.url, `${demo.url}/live/vienna`);
    assert.equal(view.referrer, `${demo.url}/live/`, 'an SPA view is referred by the previous view');
    assert.equal(view.landing_token, null);

    await page.goBack();
    await page.waitForURL((url) => url.pathname === '/live/' && url.hash !== `#ls=${home}`);
    const back = await page.evaluate(() => window.lumen.token());
    assert.ok(![home, vienna].includes(back));
    const popped = await arrived('the popstate pageview', { kind: 'pageview', minted_token: back });
    assert.equal(popped.url, `${demo.url}/live/`);
    assert.equal(popped.landing_token, null, 'our own earlier token is not a landing token');
    assert.deepEqual(spa.problems, []);
    await spa.context.close();
  });

  it('keeps the page working while ingest is down and delivers the events once it is back', async () => {
    const outage = await isolatedContext(browser);
    const page = await openTracked(outage.context, `${demo.url}/live/lisbon`);
    const lisbon = await page.evaluate(() => window.lumen.token());
    await arrived('the pageview before the outage', { kind: 'pageview', minted_token: lisbon });

    await ingest.stop();
    await copyText(page, '#story');
    await page.locator('[data-lumen-share="x"]').click();
    await page.getByRole('link', { name: 'Stockholm' }).click();
    await page.waitForURL(/\/live\/stockholm#ls=/);
    assert.equal(await page.locator('#headline').textContent(), 'Stockholm: arrival on time');
    const stockholm = await page.evaluate(() => window.lumen.token());
    assert.notEqual(stockholm, lisbon);
    // Let the tracker try (and fail) at least once before ingest returns.
    await waitFor('a refused delivery', () => outage.problems.length > 0, 10000);
    assert.deepEqual(
      outage.problems.filter((p) => !REFUSED.test(p)),
      [],
      'nothing but the browser’s own network log line',
    );

    await ingest.start();
    await arrived('the copy share made during the outage', { kind: 'share', share_method: 'copy', share_token: lisbon });
    await arrived('the x share made during the outage', { kind: 'share', share_target: 'x', share_token: lisbon });
    const view = await arrived('the pageview made during the outage', { kind: 'pageview', minted_token: stockholm });
    assert.ok(view.sent_at > view.received_at - 60000, 'sent_at is stamped when finally sent');
    assert.deepEqual(
      outage.problems.filter((p) => !REFUSED.test(p)),
      [],
    );
    await outage.context.close();
  });

  it('retries while ingest answers 503 (Kafka unreachable) and delivers once ingest can store', async () => {
    // An ingest of its own that cannot reach Kafka, then the same port with Kafka.
    const broken = await startIngest(raw.topic, { '--kafka-brokers': '127.0.0.1:1', '--produce-timeout-ms': '1000' });
    const site = await startDemoServer({ ingest: broken.origin });
    const { context, problems } = await isolatedContext(browser);
    const refusals = [];
    context.on('response', (r) => r.status() === 503 && refusals.push(r.url()));
    try {
      const page = await openTracked(context, `${site.url}/articles/group-chats.html`);
      const token = await page.evaluate(() => window.lumen.token());
      await waitFor('two 503 answers to the tracker', () => refusals.length >= 2);
      assert.ok(refusals.every((url) => url === `${broken.origin}/v1/events`));
      await broken.stop();
      await broken.start({});
      await arrived('the pageview refused with 503 before', { kind: 'pageview', minted_token: token });
      const unexpected = problems.filter((p) => !/status of 503|ERR_CONNECTION_REFUSED/.test(p));
      assert.deepEqual(unexpected, [], 'nothing but the browser’s own network log lines');
    } finally {
      await context.close();
      await site.close();
      await broken.stop();
    }
  });

  after(() => first?.context.close());
});

describe('t.js options and edge cases', () => {
  /** Sets extra attributes on the Lumen tag of every page of `context`, before
   * t.js runs: the observer fires as the parser inserts the tag, while the async
   * script is still loading. (Rewriting the HTML with route.fulfill would make
   * Chromium treat the page as public and block its requests to 127.0.0.1.) */
  function withTag(context, attributes) {
    return context.addInitScript((attrs) => {
      const observer = new MutationObserver(() => {
        const tag = document.querySelector('script[data-site]');
        if (!tag) return;
        for (const [name, value] of Object.entries(attrs)) tag.setAttribute(name, value);
        observer.disconnect();
      });
      observer.observe(document, { childList: true, subtree: true });
    }, attributes);
  }

  it('runs calls queued before t.js loaded', async () => {
    const { context, problems } = await isolatedContext(browser);
    await context.addInitScript(() => {
      window.lumen = [(api) => (window.queuedToken = api.token())];
    });
    const page = await openTracked(context, `${demo.url}/`);
    assert.equal(await page.evaluate(() => window.queuedToken), await page.evaluate(() => window.lumen.token()));
    assert.deepEqual(problems, []);
    await context.close();
  });

  for (const [attributes, expected] of [
    [{}, () => ''], // untouched: the browser puts the selection in the clipboard itself
    [{ 'data-copy-link': '' }, (link) => `Forwarded many times\n\nRead more: ${link}`],
    [{ 'data-copy-link': 'Lire la suite :' }, (link) => `Forwarded many times\n\nLire la suite : ${link}`],
  ]) {
    it(`adds to copied text only with data-copy-link: ${JSON.stringify(attributes)}`, async () => {
      const { context, problems } = await isolatedContext(browser);
      await withTag(context, attributes);
      const page = await openTracked(context, `${demo.url}/articles/group-chats.html`);
      // Registered after t.js's own listener, so it sees what t.js put in the clipboard.
      await page.evaluate(() =>
        document.addEventListener('copy', (e) => (window.copied = e.clipboardData.getData('text/plain'))),
      );
      await copyText(page, '#forwarding');
      const link = await page.evaluate(() => window.lumen.link());
      assert.equal(await page.evaluate(() => window.copied), expected(link));
      assert.deepEqual(problems, []);
      await context.close();
    });
  }

  /** The privacy signals a browser can send, as navigator properties. */
  const SIGNALS = { gpc: ['globalPrivacyControl', true], dnt: ['doNotTrack', '1'] };

  for (const [attributes, signals, tracked] of [
    [{ 'data-respect-gpc': '' }, ['gpc'], false],
    [{ 'data-respect-dnt': '' }, ['dnt'], false],
    [{ 'data-respect-gpc': '' }, ['dnt'], true],
    [{}, ['gpc', 'dnt'], true],
  ]) {
    const tag = Object.keys(attributes).join(' ') || 'no privacy attribute';
    it(`${tracked ? 'tracks' : 'tracks nothing'} with ${tag} and ${signals.join('+')} sent`, async () => {
      const { context, problems } = await isolatedContext(browser);
      const sent = signals.map((name) => SIGNALS[name]);
      await context.addInitScript((props) => {
        for (const [name, value] of props) Object.defineProperty(Navigator.prototype, name, { get: () => value });
      }, sent);
      await withTag(context, attributes);
      const posts = [];
      context.on('request', (r) => r.method() === 'POST' && posts.push(r.url()));
      const page = await openTracked(context, `${demo.url}/articles/night-trains.html`);
      const token = await page.evaluate(() => window.lumen.token());
      assert.equal(Boolean(token), tracked);
      assert.equal(new URL(page.url()).hash, tracked ? `#ls=${token}` : '');
      if (!tracked) {
        await page.locator('[data-lumen-share="whatsapp"]').first().click();
        await copyText(page, 'article p');
        await page.evaluate(() => history.pushState(null, '', '/articles/elsewhere.html'));
        assert.equal(await page.evaluate(() => window.lumen.token()), undefined);
        assert.deepEqual(posts, [], 'no event left the page');
      }
      assert.deepEqual(problems, []);
      await context.close();
    });
  }

  it('sends the events of one moment in one request, with no cookies and nothing stored', async () => {
    const { context, problems } = await isolatedContext(browser);
    // A cookie for 127.0.0.1 would also go to ingest (cookies ignore ports) if the
    // tracker sent credentials.
    await context.addCookies([{ name: 'session', value: 'reader-42', url: demo.url }]);
    const posts = [];
    context.on('request', (r) => r.method() === 'POST' && posts.push(r));
    const page = await openTracked(context, `${demo.url}/articles/dark-social.html`);
    const token = await page.evaluate(() => window.lumen.token());
    // Three copies in one task: nothing can flush between them.
    await page.evaluate(() => {
      for (let i = 0; i < 3; i++) document.execCommand('copy');
    });
    const copies = () => raw.events().filter((e) => e.share_token === token && e.share_method === 'copy');
    await waitFor('three copy shares', () => copies().length === 3);

    const batches = posts.map((r) => JSON.parse(r.postData()));
    const batch = batches.find((events) => events.some((e) => e.kind === 'share'));
    assert.equal(batch.filter((e) => e.kind === 'share').length, 3, JSON.stringify(batches));
    for (const request of posts) {
      const headers = await request.allHeaders();
      assert.match(headers['content-type'], /^text\/plain/);
      assert.equal(headers.cookie, undefined, 'no cookie goes to ingest');
    }
    const stored = await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]);
    assert.deepEqual(stored, [0, 0, 'session=reader-42'], 'the tracker stores nothing');
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('hands pending events to sendBeacon when the page is hidden', async () => {
    const { context, problems } = await isolatedContext(browser);
    const beacons = [];
    context.on('request', (r) => r.resourceType() === 'ping' && beacons.push(JSON.parse(r.postData())));
    const page = await openTracked(context, `${demo.url}/articles/night-trains.html`);
    const token = await page.evaluate(() => window.lumen.token());
    // Copy, then the tab goes to the background, in one task: the copy is still
    // in the 1 s batch window, so only the beacon can carry it.
    await page.evaluate(() => {
      document.execCommand('copy');
      Object.defineProperty(document, 'visibilityState', { get: () => 'hidden' });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await arrived('the copy sent by beacon', { kind: 'share', share_method: 'copy', share_token: token });
    assert.ok(beacons.flat().some((e) => e.kind === 'share' && e.share_token === token), 'it went by sendBeacon');
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('sends to data-endpoint when the tag names one', async () => {
    const { context, problems } = await isolatedContext(browser);
    // The same ingest under another name, so the requests tell which one was used.
    const endpoint = `${ingest.origin.replace('127.0.0.1', 'localhost')}/`;
    await withTag(context, { 'data-endpoint': endpoint });
    const posts = [];
    context.on('request', (r) => r.method() === 'POST' && posts.push(r.url()));
    const page = await openTracked(context, `${demo.url}/articles/group-chats.html`);
    const token = await page.evaluate(() => window.lumen.token());
    await arrived('the pageview sent to data-endpoint', { kind: 'pageview', minted_token: token });
    assert.deepEqual([...new Set(posts)], [`${endpoint}v1/events`]);
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('survives a page whose fetch throws, and delivers once fetch works again', async () => {
    const { context, problems } = await isolatedContext(browser);
    await context.addInitScript(() => {
      window.realFetch = window.fetch;
      window.fetch = () => {
        window.fetchCalls = (window.fetchCalls || 0) + 1;
        throw new TypeError('fetch broken by the page');
      };
    });
    const page = await openTracked(context, `${demo.url}/articles/night-trains.html`);
    const token = await page.evaluate(() => window.lumen.token());
    await waitFor('two attempts through the broken fetch', () => page.evaluate(() => window.fetchCalls >= 2));
    await page.evaluate(() => (window.fetch = window.realFetch));
    await arrived('the pageview, once fetch works', { kind: 'pageview', minted_token: token });
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('copies the tokened link with a data-lumen-share="copy" button', async () => {
    const { context, problems } = await isolatedContext(browser);
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: demo.url });
    const page = await openTracked(context, `${demo.url}/articles/group-chats.html`);
    const token = await page.evaluate(() => window.lumen.token());
    await page.locator('[data-lumen-share="copy"]').first().click();
    const clipboard = await page.evaluate(() => navigator.clipboard.readText());
    assert.equal(clipboard, `${demo.url}/articles/group-chats.html#ls=${token}`);
    const share = await arrived('the copy-button share', { kind: 'share', share_token: token, share_target: 'copy' });
    assert.equal(share.share_method, 'button');
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('flags the Telegram webview, which its user agent hides', async () => {
    const { context, problems } = await isolatedContext(browser);
    await context.addInitScript(() => {
      window.TelegramWebviewProxy = { postEvent() {} };
    });
    const page = await openTracked(context, `${demo.url}/articles/dark-social.html`);
    const token = await page.evaluate(() => window.lumen.token());
    const view = await arrived('the Telegram pageview', { kind: 'pageview', minted_token: token });
    assert.equal(view.webview, 'telegram');
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('wraps navigator.share: the tokened link goes to the share sheet, a completed share is reported', async () => {
    const { context, problems } = await isolatedContext(browser);
    // Chromium on Linux has no share sheet: stand in for one that completes the
    // first share and is dismissed on the second.
    await context.addInitScript(() => {
      window.shared = [];
      navigator.share = (data) => {
        window.shared.push(data);
        return window.shared.length === 1 ? Promise.resolve() : Promise.reject(new DOMException('dismissed', 'AbortError'));
      };
    });
    const path = '/articles/night-trains.html';
    const page = await openTracked(context, `${demo.url}${path}`);
    const token = await page.evaluate(() => window.lumen.token());
    await page.locator('[data-lumen-share="native"]').first().click();
    const shares = await page.evaluate(() => window.shared);
    assert.deepEqual(shares, [{ title: await page.title(), url: `${demo.url}${path}#ls=${token}` }]);
    const share = await arrived('the native share', { kind: 'share', share_method: 'native', share_token: token });
    assert.equal(share.share_target, null);

    assert.equal(await page.evaluate(() => window.lumen.share({ text: 'dismissed' })), false);
    assert.equal(await page.evaluate(() => window.shared.length), 2);
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('keeps in-page anchors working next to the token', async () => {
    const { context, problems } = await isolatedContext(browser);
    const page = await context.newPage();
    await page.setViewportSize({ width: 600, height: 300 });
    const path = '/articles/night-trains.html';
    await page.goto(`${demo.url}${path}#tips&ls=${VECTOR_TOKEN}`);
    await page.waitForFunction(() => typeof window.lumen?.token === 'function');
    const token = await page.evaluate(() => window.lumen.token());
    assert.equal(page.url(), `${demo.url}${path}#tips&ls=${token}`);
    const anchorInView = () => {
      const top = document.getElementById('tips').getBoundingClientRect().top;
      return scrollY > 0 && top > -1 && top < innerHeight; // -1: subpixel layout
    };
    await waitFor('the landing anchor scrolled into view', () => page.evaluate(anchorInView));
    const view = await arrived('the anchored landing', { kind: 'pageview', minted_token: token });
    assert.equal(view.landing_token, VECTOR_TOKEN);
    assert.equal(view.url, `${demo.url}${path}#tips`);

    await page.locator('.toc a[href="#routes"]').click();
    await page.waitForURL(`${demo.url}${path}#routes&ls=${token}`);
    assert.equal(await page.evaluate(() => window.lumen.token()), token, 'an anchor is not a new pageview');
    assert.equal(await page.evaluate(() => history.length - window.historyAtStart), 1, 'only the click added an entry');
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('reads ?ls= where the fragment was lost, and takes it out of the address bar', async () => {
    const { context, problems } = await isolatedContext(browser);
    const path = '/articles/group-chats.html';
    const page = await openTracked(context, `${demo.url}${path}?ls=${VECTOR_TOKEN}`);
    const token = await page.evaluate(() => window.lumen.token());
    assert.equal(page.url(), `${demo.url}${path}#ls=${token}`);
    const view = await arrived('the ?ls= landing', { kind: 'pageview', minted_token: token });
    assert.equal(view.landing_token, VECTOR_TOKEN);
    assert.equal(view.url, `${demo.url}${path}`);
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('leaves hash routes alone: shared links carry ?ls=, each route is a pageview', async () => {
    const { context, problems } = await isolatedContext(browser);
    const live = `${demo.url}/live/`;
    const page = await openTracked(context, `${live}?ls=${VECTOR_TOKEN}#/stops/vienna`);
    const token = await page.evaluate(() => window.lumen.token());
    assert.equal(page.url(), `${live}#/stops/vienna`, 'the route stays, the arriving token goes');
    assert.equal(await page.evaluate(() => window.lumen.link()), `${live}?ls=${token}#/stops/vienna`);
    const view = await arrived('the hash-routed landing', { kind: 'pageview', minted_token: token });
    assert.equal(view.landing_token, VECTOR_TOKEN);
    assert.equal(view.url, `${live}#/stops/vienna`);

    await page.evaluate(() => (location.hash = '#/stops/stockholm'));
    const next = await waitFor('a token for the new route', () =>
      page.evaluate((old) => window.lumen.token() !== old && window.lumen.token(), token),
    );
    const routed = await arrived('the hash-route pageview', { kind: 'pageview', minted_token: next });
    assert.equal(routed.url, `${live}#/stops/stockholm`);
    assert.equal(routed.referrer, `${live}#/stops/vienna`);
    assert.equal(page.url(), `${live}#/stops/stockholm`);
    assert.deepEqual(problems, []);
    await context.close();
  });

  it('leaves out a mangled landing token but still counts the visit', async () => {
    const { context, problems } = await isolatedContext(browser);
    const path = '/articles/dark-social.html';
    const page = await openTracked(context, `${demo.url}${path}#ls=${VECTOR_TOKEN}%20(via%20chat)`);
    const token = await page.evaluate(() => window.lumen.token());
    assert.equal(page.url(), `${demo.url}${path}#ls=${token}`);
    const view = await arrived('the pageview', { kind: 'pageview', minted_token: token });
    assert.equal(view.landing_token, null);
    assert.deepEqual(problems, []);
    await context.close();
  });
});

describe('the raw topic afterwards', () => {
  it('holds only records that decode as RawEvent', () => {
    assert.ok(raw.records.length > 0);
    const undecodable = raw.records.filter((r) => r.event instanceof Error).map((r) => r.event.message);
    assert.deepEqual(undecodable, []);
  });
});
