// Share tokens, exactly as schemas/share-token.md defines them: 12 bytes written
// as 16 characters of unpadded base64url. Bytes 0..4 hold the minting minute
// (big-endian minutes since the epoch), 4..11 hold 56 random bits, 11 is a
// check byte. This module only mints; enrich is the one that validates and
// reads the age back.

/** Milliseconds in a minute: the token's time resolution. */
const MINUTE_MS = 60000;

/** XOR mask of the check byte (schemas/share-token.md). */
const CHECK_MASK = 0xa5;

/**
 * Writes 12 token bytes as unpadded base64url (exactly 16 characters, since
 * 12 bytes are 4 whole base64 groups).
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function encode(bytes) {
  return btoa(String.fromCharCode.apply(null, bytes))
    .replace(/\+/g, '-')
    .replace(/\//g, '_');
}

/**
 * Mints a token for the minute of `nowMs`. `fill` writes random bytes into the
 * array it is given (crypto.getRandomValues in the browser; tests pass fixed
 * bytes to reproduce the vectors).
 * @param {number} nowMs
 * @param {(bytes: Uint8Array) => unknown} fill
 * @returns {string}
 */
export function mint(nowMs, fill) {
  const bytes = new Uint8Array(12);
  const minute = Math.floor(nowMs / MINUTE_MS);
  // Uint8Array stores each value mod 256, which keeps just the byte we want.
  bytes[0] = minute >>> 24;
  bytes[1] = minute >>> 16;
  bytes[2] = minute >>> 8;
  bytes[3] = minute;
  fill(bytes.subarray(4, 11));
  let sum = 0;
  for (let i = 0; i < 11; i++) sum += bytes[i];
  // (sum mod 256) XOR mask: the XOR only touches the low byte, the store drops the rest.
  bytes[11] = sum ^ CHECK_MASK;
  return encode(bytes);
}
