// Token minting against schemas/share-token.md: its vectors, and properties of
// freshly minted tokens checked by an independent decoder written from the spec.
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { describe, it } from 'node:test';
import { encode, mint } from '../../src/token.js';

const VECTOR = {
  token: 'AcB3bAEjRWeJq83Q',
  mintedAt: Date.parse('2025-11-18T05:00:00Z'),
  minute: 29390700,
  random: [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd],
};

/** The spec's validity rule, written independently of src/token.js: 16
 * base64url characters, check byte = (sum of bytes 0..11 mod 256) XOR 0xA5.
 * Returns the minting minute, or null when the token is invalid. */
function decode(token) {
  if (!/^[A-Za-z0-9_-]{16}$/.test(token)) return null;
  const b = Buffer.from(token, 'base64url');
  const sum = b.subarray(0, 11).reduce((a, x) => a + x, 0);
  if (((sum % 256) ^ 0xa5) !== b[11]) return null;
  return b.readUInt32BE(0);
}

const fixedRandom = (bytes) => bytes.set(VECTOR.random);
const cryptoRandom = (bytes) => webcrypto.getRandomValues(bytes);

describe('share-token.md vectors', () => {
  for (const [token, minute] of [
    ['AcB3bAEjRWeJq83Q', VECTOR.minute],
    ['AcB3bAEjRWeJq83R', null], // check byte
    ['AcB3bAEjRWeJq83', null], // length
    ['AcB3bAEjRWeJq8+Q', null], // alphabet
  ]) {
    it(`the spec's decoder reads ${token} as ${minute ?? 'invalid'}`, () => {
      assert.equal(decode(token), minute);
    });
  }

  it('encodes the vector bytes as the vector token', () => {
    const bytes = Uint8Array.from(Buffer.from(VECTOR.token, 'base64url'));
    assert.equal(encode(bytes), VECTOR.token);
  });

  it('mints the vector token at any instant of its minute', () => {
    for (const offsetMs of [0, 1, 30000, 59999]) {
      assert.equal(mint(VECTOR.mintedAt + offsetMs, fixedRandom), VECTOR.token);
    }
  });

  it('mints a different token in the next minute', () => {
    assert.equal(decode(mint(VECTOR.mintedAt + 60000, fixedRandom)), VECTOR.minute + 1);
  });
});

describe('minted tokens', () => {
  it('are 16 base64url characters that pass the check and carry the minute', () => {
    for (const at of [0, Date.now(), Date.UTC(2038, 0, 19, 3, 14, 8), 0xffffffff * 60000]) {
      const token = mint(at, cryptoRandom);
      assert.match(token, /^[A-Za-z0-9_-]{16}$/);
      assert.equal(decode(token), Math.floor(at / 60000), `minute of ${token}`);
    }
  });

  it('hold 56 random bits: no repeats and every random bit varies over 2000 mints', () => {
    const now = Date.now();
    const tokens = Array.from({ length: 2000 }, () => mint(now, cryptoRandom));
    assert.equal(new Set(tokens).size, tokens.length);
    let seenOne = 0n;
    let seenZero = 0n;
    for (const token of tokens) {
      const bits = BigInt('0x' + Buffer.from(token, 'base64url').subarray(4, 11).toString('hex'));
      seenOne |= bits;
      seenZero |= ~bits & ((1n << 56n) - 1n);
    }
    assert.equal(seenOne, (1n << 56n) - 1n);
    assert.equal(seenZero, (1n << 56n) - 1n);
  });

  it('catch every one-character typo of the vector token (1008 of them)', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const token = mint(VECTOR.mintedAt, fixedRandom);
    for (let i = 0; i < token.length; i++) {
      for (const c of alphabet.replace(token[i], '')) {
        const typo = token.slice(0, i) + c + token.slice(i + 1);
        assert.equal(decode(typo), null, `typo ${typo}`);
      }
    }
  });
});
