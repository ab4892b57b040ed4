// Fails the build when dist/t.js is over its budget: 3 KB minified and gzipped
// (the limit; every publisher page pays it).
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const BUDGET_BYTES = 3072;
const file = new URL('../dist/t.js', import.meta.url);
const raw = readFileSync(file);
const gz = gzipSync(raw, { level: 9 }).length;
console.log(`dist/t.js: ${raw.length} bytes minified, ${gz} bytes gzipped (budget ${BUDGET_BYTES})`);
if (gz > BUDGET_BYTES) {
  console.error(`dist/t.js is ${gz - BUDGET_BYTES} bytes over the gzip budget`);
  process.exit(1);
}
