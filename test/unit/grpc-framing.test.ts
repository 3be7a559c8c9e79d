import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../shared/errors.js';
import { encodeFrame, GrpcFrameSplitter } from '../../server/protocols/grpc/grpc-framing.js';
import { encodeGrpcMessage, formatGrpcTimeout, grpcStatusOf, GRPC_STATUS, parseGrpcTimeout } from '../../server/protocols/grpc/grpc-status.js';

/** Writes `chunks` to a splitter and collects the frames it emits, or the error it fails with. */
async function split(chunks: Buffer[], maxMessage = 1024): Promise<Buffer[] | Error> {
  const splitter = new GrpcFrameSplitter(maxMessage, 'request');
  const frames: Buffer[] = [];
  return new Promise((resolve) => {
    splitter.on('data', (f: Buffer) => frames.push(f));
    splitter.on('end', () => resolve(frames));
    splitter.on('error', resolve);
    for (const c of chunks) splitter.write(c);
    splitter.end();
  });
}

describe('gRPC framing', () => {
  const a = encodeFrame(Buffer.from('first message'));
  const b = encodeFrame(Buffer.from('second'));
  const empty = encodeFrame(Buffer.alloc(0));

  it('emits one whole frame per message, however the bytes arrive', async () => {
    const glued = Buffer.concat([a, empty, b]);
    expect(await split([glued])).toEqual([a, empty, b]);
    // One byte at a time: the prefix and the payload both split.
    expect(await split([...glued].map((byte) => Buffer.from([byte])))).toEqual([a, empty, b]);
  });

  it('fails on a message over the limit before buffering it, and on a stream cut inside a message', async () => {
    const big = Buffer.alloc(5);
    big.writeUInt32BE(2048, 1);
    expect(await split([big], 1024)).toMatchObject({ code: 'ERR_BODY_TOO_LARGE' });
    expect(await split([a.subarray(0, 8)])).toMatchObject({ code: 'ERR_BAD_REQUEST' });
    expect(await split([Buffer.from([7, 0, 0, 0, 0])])).toMatchObject({ code: 'ERR_BAD_REQUEST' });
  });
});

describe('gRPC statuses', () => {
  it('map refusals to the status a gRPC client understands', () => {
    const status = (code: ConstructorParameters<typeof SluiceError>[0]) => grpcStatusOf(new SluiceError(code));
    expect(status('ERR_AUTH_REQUIRED')).toBe(GRPC_STATUS.UNAUTHENTICATED);
    expect(status('ERR_POLICY_DENIED')).toBe(GRPC_STATUS.PERMISSION_DENIED);
    expect(status('ERR_CONNECTION_FORBIDDEN')).toBe(GRPC_STATUS.PERMISSION_DENIED);
    expect(status('ERR_BODY_TOO_LARGE')).toBe(GRPC_STATUS.RESOURCE_EXHAUSTED);
    expect(status('ERR_TUNNEL_LIMIT')).toBe(GRPC_STATUS.RESOURCE_EXHAUSTED);
    expect(status('ERR_UPSTREAM_UNAVAILABLE')).toBe(GRPC_STATUS.UNAVAILABLE);
    expect(status('ERR_RECORDING_UNAVAILABLE')).toBe(GRPC_STATUS.UNAVAILABLE);
    expect(status('ERR_UPSTREAM_TIMEOUT')).toBe(GRPC_STATUS.DEADLINE_EXCEEDED);
    expect(status('ERR_MASKING_BLOCKED')).toBe(GRPC_STATUS.INTERNAL);
    expect(status('ERR_INTERNAL')).toBe(GRPC_STATUS.INTERNAL);
  });

  it('percent-encode grpc-message outside printable ASCII', () => {
    expect(encodeGrpcMessage('Model "x" 100% denied — né\n')).toBe('Model "x" 100%25 denied %E2%80%94 n%C3%A9%0A');
  });

  it('read and write grpc-timeout', () => {
    expect(parseGrpcTimeout('250m')).toBe(250);
    expect(parseGrpcTimeout('2S')).toBe(2000);
    expect(parseGrpcTimeout('1H')).toBe(3_600_000);
    expect(parseGrpcTimeout('500000u')).toBe(500);
    expect(parseGrpcTimeout('123456789m')).toBeUndefined();
    expect(parseGrpcTimeout('5x')).toBeUndefined();
    expect(parseGrpcTimeout(undefined)).toBeUndefined();
    expect(formatGrpcTimeout(0.2)).toBe('1m');
    expect(formatGrpcTimeout(1500)).toBe('1500m');
    expect(parseGrpcTimeout(formatGrpcTimeout(200_000_000))).toBe(200_000_000);
  });
});
