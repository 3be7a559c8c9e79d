import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { S3Archive } from '../../server/recording/archive/s3-archive.js';
import { describeArchiveConformance } from '../helpers/archive-conformance.js';
import { s3Fixture } from '../helpers/s3-server.js';

const s3 = s3Fixture();

async function bytesOf(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

describeArchiveConformance('S3Archive', async () => ({
  archive: new S3Archive({ bucket: await s3.bucket(), client: s3.client() }),
  close: async () => undefined,
}));

describeArchiveConformance('S3Archive under a prefix, multipart above 1 byte', async () => ({
  archive: new S3Archive({ bucket: await s3.bucket(), prefix: 'recordings/eu', client: s3.client(), multipartThreshold: 1, partSize: 5 * 1024 * 1024 }),
  close: async () => undefined,
}));

describe('S3Archive in a bucket', () => {
  it('keeps each object at <prefix><name>, byte for byte, and lists nothing outside its prefix', async () => {
    const bucket = await s3.bucket();
    const client = s3.client();
    const archive = new S3Archive({ bucket, prefix: 'tenant-a/', client });
    await archive.put('sessions/2025/01/02/ses_a.rec', Buffer.from('sealed bytes'));
    const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'tenant-a/sessions/2025/01/02/ses_a.rec' }));
    expect(Buffer.from(await out.Body!.transformToByteArray()).toString()).toBe('sealed bytes');
    // A key beside the prefix, not the archive's.
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'tenant-b/sessions/x.rec', Body: 'other' }));
    expect((await archive.list('')).objects.map((o) => o.name)).toEqual(['sessions/2025/01/02/ses_a.rec']);
  });

  it('uploads a large streamed object in parts and reads it back whole and by range', async () => {
    const bucket = await s3.bucket();
    const client = s3.client();
    const archive = new S3Archive({ bucket, client, multipartThreshold: 6 * 1024 * 1024, partSize: 5 * 1024 * 1024 });
    const big = randomBytes(13 * 1024 * 1024 + 5);
    const pieces: Buffer[] = [];
    for (let at = 0; at < big.length; at += 300_000) pieces.push(big.subarray(at, at + 300_000));
    await archive.put('sessions/big.rec', Readable.from(pieces));
    expect((await bytesOf(await archive.get('sessions/big.rec'))).equals(big)).toBe(true);
    expect((await archive.range('sessions/big.rec', 5 * 1024 * 1024 - 3, 10)).equals(big.subarray(5 * 1024 * 1024 - 3, 5 * 1024 * 1024 + 7))).toBe(true);
    expect((await archive.list('')).objects).toEqual([{ name: 'sessions/big.rec', size: big.length }]);
  });

  it('abandons a multipart upload whose source fails: no object in the bucket, and the name can be put again', async () => {
    const bucket = await s3.bucket();
    const client = s3.client();
    const archive = new S3Archive({ bucket, client, multipartThreshold: 1024, partSize: 5 * 1024 * 1024 });
    const failing = Readable.from(
      (async function* () {
        yield randomBytes(6 * 1024 * 1024);
        throw new Error('the spool file broke');
      })(),
    );
    await expect(archive.put('sessions/broken.rec', failing)).rejects.toThrow(/the spool file broke/);
    await expect(archive.get('sessions/broken.rec')).rejects.toMatchObject({ code: 'ARCHIVE_NOT_FOUND' });
    expect((await archive.list('')).objects).toEqual([]);
    await archive.put('sessions/broken.rec', Buffer.from('whole'));
    expect((await bytesOf(await archive.get('sessions/broken.rec'))).toString()).toBe('whole');
  });

  it('fails clearly, naming the bucket, when the server cannot be reached', async () => {
    // Credentials come from the default chain only: here, the environment.
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'S3RVER');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'S3RVER');
    onTestFinished(() => void vi.unstubAllEnvs());
    const archive = new S3Archive({ bucket: 'recordings', endpoint: 'http://127.0.0.1:1', forcePathStyle: true, region: 'us-east-1' });
    onTestFinished(() => archive.close());
    const err = await archive.get('sessions/a.rec').then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err?.message).toMatch(/recordings bucket s3:\/\/recordings\/ at http:\/\/127\.0\.0\.1:1 could not be reached for GetObject of sessions\/a\.rec: ECONNREFUSED/);
  });
});
