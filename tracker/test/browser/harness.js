// What the browser tests stand on: an ephemeral Kafka topic and a reader of the
// raw events on it (Avro single-object payloads decoded with avsc), the real
// lumen-ingest binary writing to that topic and serving dist/t.js, the demo
// site, and Chromium driven by playwright-core. Every piece cleans up after
// itself; nothing here asserts, the tests do.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import avro from 'avsc';
import kafkajs from 'kafkajs';
import lz4 from 'lz4js';
import { chromium } from 'playwright-core';

export { startDemoServer } from '../../demo/serve.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** Settings, each overridable from the environment like the services' own. */
export const ENV = {
  brokers: (process.env.LUMEN_KAFKA_BROKERS ?? '127.0.0.1:9092').split(','),
  ingestBin: process.env.LUMEN_INGEST_BIN ?? join(REPO, 'target/debug/lumen-ingest'),
  chromium: process.env.LUMEN_CHROMIUM ?? '/usr/bin/chromium',
  sitesFile: join(REPO, 'ingest/sites.example.json'),
  trackerFile: join(REPO, 'tracker/dist/t.js'),
};

/** Chromium flags from the issue: headless, and no traffic of its own. */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Hosts the browser may reach: this machine. */
const LOCAL_HOSTS = ['127.0.0.1', 'localhost'];

/** How long a condition may take before a test fails. Generous: the tracker
 * batches for 1 s and retries with backoff of up to 30 s. */
export const DEFAULT_DEADLINE_MS = 45000;

/** Polls `check` until it returns something truthy (then returns that), or
 * throws once `deadlineMs` has passed, naming `what` it waited for (a string,
 * or a function giving one, for details known only at the time of failure). */
export async function waitFor(what, check, deadlineMs = DEFAULT_DEADLINE_MS) {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) {
      const label = typeof what === 'function' ? what() : what;
      throw new Error(`timed out after ${deadlineMs} ms waiting for ${label}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// ------------------------------------------------------------------ Kafka

const RAW_EVENT = avro.Type.forSchema(JSON.parse(readFileSync(join(REPO, 'schemas/avro/raw_event.avsc'), 'utf8')));
/** Single-object encoding: magic C3 01, then the 8-byte schema fingerprint. */
const AVRO_MAGIC = Buffer.from([0xc3, 0x01]);
const AVRO_HEADER_BYTES = 10;

/** A raw event from its Kafka value, or an Error saying why it is not one. */
export function decodeRawEvent(value) {
  if (!value || !value.subarray(0, 2).equals(AVRO_MAGIC)) return new Error('no Avro single-object header');
  try {
    return RAW_EVENT.fromBuffer(value.subarray(AVRO_HEADER_BYTES));
  } catch (error) {
    return error;
  }
}

// Ingest compresses with LZ4 by default; kafkajs has no codec for it built in.
kafkajs.CompressionCodecs[kafkajs.CompressionTypes.LZ4] = () => ({
  compress: async (encoder) => Buffer.from(lz4.compress(encoder.buffer)),
  decompress: async (buffer) => Buffer.from(lz4.decompress(buffer)),
});

/** A client whose error log lines go to `errors` (shown when a wait times out)
 * instead of the test output. */
function kafkaClient(errors) {
  const logCreator = () => ({ log }) => errors.push(`${log.message}${log.error ? `: ${log.error}` : ''}`);
  return new kafkajs.Kafka({
    clientId: 'lumen-tracker-tests',
    brokers: ENV.brokers,
    logLevel: kafkajs.logLevel.ERROR,
    logCreator,
  });
}

/**
 * Creates a topic named after `label` plus a random suffix, and a consumer that
 * collects every record on it from the beginning. `records` fills as they come
 * (`key` and the decoded `event`), `errors` with the client's error log lines;
 * `remove()` stops reading and deletes the topic.
 */
export async function rawTopic(label) {
  const errors = [];
  const kafka = kafkaClient(errors);
  const topic = `lumen.raw.test-${label}-${randomUUID().slice(0, 8)}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  const consumer = kafka.consumer({ groupId: `${topic}.reader` });
  const records = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      records.push({ key: message.key?.toString(), event: decodeRawEvent(message.value) });
    },
  });
  return {
    topic,
    records,
    errors,
    /** The decoded events so far. */
    events: () => records.map((r) => r.event),
    async remove() {
      await consumer.disconnect();
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    },
  };
}

// ------------------------------------------------------------------ ingest

/** A free TCP port on 127.0.0.1. Ingest is restarted on the same port in the
 * outage test, so the port is chosen here rather than by ingest. */
async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Runs the real lumen-ingest on a free port, producing to `topic` and serving
 * dist/t.js; `flags` ({'--flag': 'value'}, true for a switch) add to or replace
 * the defaults below. Resolves once it serves /t.js. `stop()` sends SIGTERM and
 * waits for the exit; `start(flags)` starts it again on the same port, with
 * `flags` replacing those it was started with. Its output goes to a log file.
 */
export async function startIngest(topic, flags = {}) {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const logFile = join(await mkdtemp(join(tmpdir(), 'lumen-tracker-ingest-')), 'ingest.log');
  const log = createWriteStream(logFile, { flags: 'a' });
  const defaults = {
    '--listen-addr': `127.0.0.1:${port}`,
    '--admin-addr': '127.0.0.1:0',
    '--kafka-brokers': ENV.brokers.join(','),
    '--topic-raw': topic,
    '--sites-file': ENV.sitesFile,
    '--tracker-file': ENV.trackerFile,
    '--drain-timeout-ms': '2000',
    '--insecure-dev-visitor-secret': true,
  };
  let child = null;

  const ingest = {
    origin,
    logFile,
    async start(overrides = flags) {
      const args = Object.entries({ ...defaults, ...overrides }).flatMap(([flag, value]) =>
        value === true ? [flag] : [flag, value],
      );
      const proc = spawn(ENV.ingestBin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'info' } });
      const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal)));
      proc.stdout.pipe(log, { end: false });
      proc.stderr.pipe(log, { end: false });
      child = { proc, exited };
      let early = null;
      exited.then((code) => (early = code));
      await waitFor(`lumen-ingest serving ${origin}/t.js (log: ${logFile})`, async () => {
        if (early !== null) throw new Error(`lumen-ingest exited (${early}):\n${await ingest.logTail()}`);
        const res = await fetch(`${origin}/t.js`).catch(() => null);
        return res?.ok;
      });
    },
    async stop() {
      if (!child) return;
      const { proc, exited } = child;
      child = null;
      proc.kill('SIGTERM');
      return exited;
    },
    async logTail(lines = 40) {
      const text = await readFile(logFile, 'utf8').catch(() => '');
      return text.split('\n').slice(-lines).join('\n');
    },
  };
  await ingest.start();
  return ingest;
}

// ------------------------------------------------------------------ browser

/** Chromium from the system's package, headless. */
export function launchBrowser() {
  return chromium.launch({ executablePath: ENV.chromium, args: CHROMIUM_ARGS });
}

/**
 * A fresh browser context (its own history, no shared state) that never leaves
 * this machine: requests to LOCAL_HOSTS go through, anything else (share
 * networks) is answered with a stub page and recorded in `external`.
 * `problems` collects uncaught page errors and console errors of every page.
 * Each document records `window.historyAtStart` (history.length before any
 * script of the page ran), to tell the entries the tracker added.
 */
export async function isolatedContext(browser) {
  const context = await browser.newContext();
  await context.addInitScript(() => {
    window.historyAtStart = history.length;
  });
  const external = [];
  const problems = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (LOCAL_HOSTS.includes(new URL(url).hostname)) return route.continue();
    external.push(url);
    return route.fulfill({ status: 200, contentType: 'text/html', body: '<title>share stub</title>' });
  });
  context.on('page', (page) => {
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (msg) => msg.type() === 'error' && problems.push(`console error: ${msg.text()}`));
  });
  return { context, external, problems };
}

/** Opens `url` in a new page of `context` and waits until t.js has run there. */
export async function openTracked(context, url) {
  const page = await context.newPage();
  await page.goto(url);
  await page.waitForFunction(() => typeof window.lumen?.token === 'function');
  return page;
}
