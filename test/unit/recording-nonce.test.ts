import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeRecord, encodeRecord } from '../../server/recording/record-events.js';
import { FORMAT_VERSION, LENGTH_BYTES, NONCE_BYTES, NonceSequence, sessionAad } from '../../server/recording/record-format.js';

describe('record nonces', () => {
  it('never repeat within a session, and every record still decrypts', async () => {
    const dataKey = randomBytes(32);
    const aad = sessionAad('ses_test');
    const nonces = new NonceSequence();
    const seen = new Set<string>();
    let prev: Buffer = Buffer.alloc(32);
    for (let seq = 0; seq < 2000; seq++) {
      const frame = await encodeRecord({ dataKey, sessionAad: aad, prev, events: [{ meta: { seq, t: seq, type: 'exchange.chunk' }, payload: Buffer.from(`chunk ${seq}`) }], compression: 'deflate', nonces });
      seen.add(frame.subarray(LENGTH_BYTES, LENGTH_BYTES + NONCE_BYTES).toString('hex'));
      const decoded = decodeRecord(frame, dataKey, aad, { version: FORMAT_VERSION, compression: 'deflate' });
      expect(decoded.events[0]!.payload?.toString()).toBe(`chunk ${seq}`);
      prev = decoded.prev;
    }
    expect(seen.size).toBe(2000);
  });

  it('draws a fresh random prefix per session', () => {
    const a = Buffer.alloc(12);
    const b = Buffer.alloc(12);
    new NonceSequence().next(a);
    new NonceSequence().next(b);
    expect(a.subarray(0, 4).equals(b.subarray(0, 4))).toBe(false);
    expect(a.subarray(4).equals(b.subarray(4))).toBe(true);
  });
});
