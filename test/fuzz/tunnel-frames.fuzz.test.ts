import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../shared/errors.js';
import { decodeFrame, encodeFrame, FRAME_HEADER_SIZE, FRAME_TYPE, MAX_RESET_REASON, MAX_STREAM_ID, MAX_WINDOW, type Frame } from '../../shared/tunnel/frames.js';
import { rawFrame } from '../helpers/raw-frames.js';
import { fuzz, fuzzSettings } from './fuzz-settings.js';

const LIMITS = { maxFrame: 512, maxMetadata: 256 };

const streamId = fc.integer({ min: 1, max: MAX_STREAM_ID });

/** Frames the encoder may send and the decoder must accept under LIMITS. */
const validFrame: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({
    type: fc.constant('open' as const),
    streamId,
    meta: fc.dictionary(fc.string({ unit: 'binary', maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
  }).filter((f) => Buffer.byteLength(JSON.stringify(f.meta)) <= LIMITS.maxMetadata),
  fc.record({ type: fc.constant('data' as const), streamId, data: fc.uint8Array({ minLength: 1, maxLength: LIMITS.maxFrame }).map((a) => Buffer.from(a)) }),
  fc.record({ type: fc.constant('end' as const), streamId }),
  fc.record({
    type: fc.constant('reset' as const),
    streamId,
    code: fc.integer({ min: 0, max: 0xffff }),
    // a leading U+FEFF now and then: a decoder that strips a BOM would lose it
    reason: fc
      .tuple(fc.constantFrom('', '', '', '\uFEFF'), fc.string({ unit: 'binary', maxLength: 64 }))
      .map(([bom, rest]) => bom + rest)
      .filter((r) => Buffer.byteLength(r) <= MAX_RESET_REASON),
  }),
  fc.record({ type: fc.constant('window' as const), streamId, increment: fc.integer({ min: 1, max: MAX_WINDOW }) }),
);

/** A frame header of any type byte and id, with any payload: mostly near-valid shapes, so the checks past the header run. */
const anyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 2 * LIMITS.maxFrame }).map((a) => Buffer.from(a)),
  fc
    .tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: MAX_STREAM_ID }), fc.uint8Array({ maxLength: LIMITS.maxFrame + 8 }))
    .map(([type, id, payload]) => rawFrame(type, id, payload)),
);

/** What the decoder must refuse, checked independently of it: the table in frames.ts. */
function violatesLimits(buf: Buffer): boolean {
  if (buf.length < FRAME_HEADER_SIZE || buf.readUInt32BE(1) === 0) return true;
  const length = buf.length - FRAME_HEADER_SIZE;
  switch (buf[0]) {
    case FRAME_TYPE.data:
      return length === 0 || length > LIMITS.maxFrame;
    case FRAME_TYPE.window: {
      if (length !== 4) return true;
      const increment = buf.readUInt32BE(FRAME_HEADER_SIZE);
      return increment === 0 || increment > MAX_WINDOW;
    }
    case FRAME_TYPE.end:
      return length !== 0;
    case FRAME_TYPE.open:
      return length > LIMITS.maxMetadata;
    case FRAME_TYPE.reset:
      return length < 2 || length - 2 > MAX_RESET_REASON;
    default:
      return true;
  }
}

describe('tunnel frame codec (fuzz)', () => {
  it('decodes any bytes to a frame that re-encodes to the same bytes, or refuses them with ERR_TUNNEL_PROTOCOL only', { timeout: fuzzSettings().timeoutMs }, async () => {
    await fuzz(
      'tunnel-frames: any bytes',
      fc.property(anyBytes, (buf) => {
        let frame: Frame;
        try {
          frame = decodeFrame(buf, LIMITS);
        } catch (err) {
          expect(err).toBeInstanceOf(SluiceError);
          expect((err as SluiceError).code).toBe('ERR_TUNNEL_PROTOCOL');
          return;
        }
        // Accepted: within every limit, and canonical except for OPEN's JSON, whose spacing is free.
        expect(violatesLimits(buf)).toBe(false);
        if (frame.type !== 'open') expect(encodeFrame(frame).equals(buf)).toBe(true);
        else expect(decodeFrame(encodeFrame(frame), LIMITS)).toEqual(frame);
      }),
    );
  });

  it('round-trips every valid frame through encode and decode', { timeout: fuzzSettings().timeoutMs }, async () => {
    await fuzz(
      'tunnel-frames: round trip',
      fc.property(validFrame, (frame) => {
        const bytes = encodeFrame(frame);
        const decoded = decodeFrame(bytes, LIMITS);
        expect(decoded).toEqual(frame);
        expect(encodeFrame(decoded).equals(bytes)).toBe(true);
      }),
    );
  });

  it('refuses DATA past maxFrame and OPEN metadata past maxMetadata at every size, and accepts them up to it', { timeout: fuzzSettings().timeoutMs }, async () => {
    await fuzz(
      'tunnel-frames: limits',
      fc.property(fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 1, max: 4096 }), streamId, (maxFrame, size, id) => {
        const data = encodeFrame({ type: 'data', streamId: id, data: Buffer.alloc(size, 0x61) });
        const limits = { maxFrame, maxMetadata: maxFrame };
        if (size > maxFrame) expect(() => decodeFrame(data, limits)).toThrow(expect.objectContaining({ code: 'ERR_TUNNEL_PROTOCOL' }));
        else expect(decodeFrame(data, limits)).toMatchObject({ type: 'data', streamId: id });
        const open = encodeFrame({ type: 'open', streamId: id, meta: { pad: 'x'.repeat(Math.max(0, size - 10)) } });
        if (open.length - FRAME_HEADER_SIZE > maxFrame) expect(() => decodeFrame(open, limits)).toThrow(expect.objectContaining({ code: 'ERR_TUNNEL_PROTOCOL' }));
        else expect(decodeFrame(open, limits)).toMatchObject({ type: 'open', streamId: id });
      }),
    );
  });
});
