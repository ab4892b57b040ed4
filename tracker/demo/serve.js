// Serves the demo publisher site (this folder) over HTTP, for `make demo` and
// for the browser tests. Pages name ingest as http://127.0.0.1:8080 (make demo's
// address); `ingest` rewrites that origin so tests can point the pages at an
// ingest on any port. /live/* is a single-page app: unknown paths under it get
// live/index.html. No dependencies.
//
//   node tracker/demo/serve.js [--port 8000] [--ingest http://127.0.0.1:8080]
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('.', import.meta.url));
/** The ingest origin written in the pages. */
const PAGE_INGEST = 'http://127.0.0.1:8080';
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
};
/** Path prefixes served by a single-page app's index. */
const SPA_ROOTS = ['/live/'];

/** The file under ROOT for a request path, or null when it escapes ROOT. */
function fileFor(pathname) {
  let path;
  try {
    path = decodeURIComponent(pathname);
  } catch {
    return null;
  }
  if (path.endsWith('/')) path += 'index.html';
  const spa = SPA_ROOTS.find((root) => path.startsWith(root) && !extname(path));
  if (spa) path = spa + 'index.html';
  // join() resolves every '..', so a path that climbs out no longer starts with ROOT.
  const file = join(ROOT, path);
  return file.startsWith(ROOT) ? file : null;
}

/**
 * Starts the demo site. Resolves to its base URL and a close function.
 * @param {{ port?: number, host?: string, ingest?: string }} options
 */
export function startDemoServer({ port = 0, host = '127.0.0.1', ingest = PAGE_INGEST } = {}) {
  const server = createServer(async (req, res) => {
    const file = fileFor(new URL(req.url, 'http://demo').pathname);
    const type = file && TYPES[extname(file)];
    let body = type && (await readFile(file).catch(() => null));
    if (!body) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    if (type.startsWith('text/html')) body = body.toString().replaceAll(PAGE_INGEST, ingest.replace(/\/+$/, ''));
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const { port: bound } = server.address();
      resolve({ url: `http://${host}:${bound}`, close: () => new Promise((done) => server.close(done)) });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: { port: { type: 'string', default: '8000' }, host: { type: 'string', default: '127.0.0.1' }, ingest: { type: 'string' } },
  });
  const { url } = await startDemoServer({ port: Number(values.port), host: values.host, ingest: values.ingest });
  console.log(`demo site on ${url} (tag points at ${values.ingest ?? PAGE_INGEST})`);
}
