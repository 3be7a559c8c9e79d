import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame } from '../../shared/tunnel/frames.js';

const LIMITS = { maxFrame: 1024 };

describe('tunnel frames and a leading U+FEFF', () => {
  it('keeps it in a RESET reason, so the reason round-trips', () => {
    const frame = { type: 'reset' as const, streamId: 1, code: 0, reason: '\uFEFF' };
    expect(decodeFrame(encodeFrame(frame), LIMITS)).toEqual(frame);
  });

  it('refuses OPEN metadata that is JSON only once a BOM is stripped', () => {
    const bytes = Buffer.concat([Buffer.from([1, 0, 0, 0, 1]), Buffer.from('\uFEFF{"client":"127.0.0.1:1"}', 'utf8')]);
    expect(() => decodeFrame(bytes, LIMITS)).toThrow(expect.objectContaining({ code: 'ERR_TUNNEL_PROTOCOL' }));
  });
});
