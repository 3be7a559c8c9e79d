/**
 * `sluice audit verify` against a bucket (real s3rver): `--bucket s3://B/prefix --endpoint URL
 * --force-path-style` and `--config FILE` read the session files from the bucket, the index and seal log
 * from the storage directory. Every tamper it catches on disk it catches in the bucket: a flipped byte, a
 * cut object, a deleted object, and two objects swapped.
 */
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { EXIT } from '../../shared/errors.js';
import { connectionSchema } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import { S3Archive } from '../../server/recording/archive/s3-archive.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { Recording } from '../../server/recording/recording.js';
import { loadOrCreateSigningKey } from '../../server/recording/signing-key.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { runCliInProcess } from '../helpers/cli-in-process.js';
import { s3Fixture } from '../helpers/s3-server.js';
import { tempDir } from '../helpers/temp-dir.js';

const PREFIX = 'audit/recordings/';
const s3 = s3Fixture({ credentialsInEnv: true });

const principal: Principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };
const connection = connectionSchema.parse({ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:1', allow_groups: ['ml-eng'] });

/** A storage directory whose sealed sessions were shipped to a fresh bucket; what the CLI needs to verify it. */
async function shippedStorage() {
  const bucket = await s3.bucket();
  const dir = await tempDir('sluice-audit-bucket-');
  const key = randomBytes(32);
  const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
  const archive = new S3Archive({ bucket, prefix: PREFIX, client: s3.client() });
  const signingKey = await loadOrCreateSigningKey(dir);
  const recording = await Recording.open({ dir, spoolDir: dir, archive, store, keyRing: new KeyRing([{ id: 'default', key }]), signingKey });
  const files: string[] = [];
  for (let i = 0; i < 2; i++) {
    const id = `ses_${randomBytes(16).toString('hex')}`;
    const session = await recording.openSession({ id, principal, connection, via: 'proxy', clientAddress: '127.0.0.1' });
    for (let n = 0; n < 3; n++) {
      await session.append('exchange.request', { exchange: `req_${n}`, method: 'POST', path: '/v1/chat/completions', headers: {}, decision: { action: 'allow' } });
    }
    await recording.closeSession(id, 'idle');
    files.push((await store.getSession(id))!.file);
  }
  await recording.close();
  await store.close();
  const keyFile = join(dir, '..', `${dir.split('/').pop()}.key`);
  await writeFile(keyFile, key.toString('base64'));
  onTestFinished(() => rm(keyFile, { force: true }));
  const publicKeyFile = join(dir, '..', `${dir.split('/').pop()}.pub.pem`);
  await writeFile(publicKeyFile, signingKey.publicKeyPem);
  onTestFinished(() => rm(publicKeyFile, { force: true }));
  const args = ['audit', 'verify', '--all', '--data-dir', dir, '--key-file', keyFile, '--public-key', publicKeyFile];
  const bucketArgs = [...args, '--bucket', `s3://${bucket}/${PREFIX}`, '--endpoint', s3.endpoint, '--force-path-style'];
  return { bucket, dir, key, files, args, bucketArgs, publicKeyFile };
}

async function object(bucket: string, name: string): Promise<Buffer> {
  const out = await s3.client().send(new GetObjectCommand({ Bucket: bucket, Key: `${PREFIX}${name}` }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

async function replace(bucket: string, name: string, bytes: Buffer): Promise<void> {
  await s3.client().send(new DeleteObjectCommand({ Bucket: bucket, Key: `${PREFIX}${name}` }));
  await s3.client().send(new PutObjectCommand({ Bucket: bucket, Key: `${PREFIX}${name}`, Body: bytes }));
}

describe('sluice audit verify --bucket', () => {
  it('passes on the shipped sessions, which the directory alone no longer holds', async () => {
    const { args, bucketArgs } = await shippedStorage();
    const ok = await runCliInProcess(bucketArgs);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.match(/intact \(\d+ records, signed\)/g)).toHaveLength(2);
    // The same directory without the bucket: its files are gone from it (shipped), which verify reports.
    const local = await runCliInProcess(args);
    expect(local.code).toBe(EXIT.failure);
  });

  it('fails with ERR_RECORDING_TAMPERED on a flipped byte in an object, naming the bucket and the record', async () => {
    const { bucket, files, bucketArgs } = await shippedStorage();
    const bytes = await object(bucket, files[0]!);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    await replace(bucket, files[0]!, bytes);
    const r = await runCliInProcess(bucketArgs);
    expect(r.code).toBe(EXIT.failure);
    expect(r.stdout).toMatch(/broken at record \d+/);
    expect(r.stderr).toContain('ERR_RECORDING_TAMPERED');
    expect(r.stderr).toContain(`s3://${bucket}/${PREFIX}`);
    expect(r.stderr).toContain('1 session');
  });

  it('fails on a cut object, a deleted object, and two objects swapped', async () => {
    const cut = await shippedStorage();
    const whole = await object(cut.bucket, cut.files[0]!);
    await replace(cut.bucket, cut.files[0]!, whole.subarray(0, whole.length - 40));
    const rCut = await runCliInProcess(cut.bucketArgs);
    expect(rCut.code).toBe(EXIT.failure);
    expect(rCut.stdout).toMatch(/broken at record \d+: cut or rewritten/);
    expect(rCut.stderr).toContain('ERR_RECORDING_TAMPERED');

    const deleted = await shippedStorage();
    await s3.client().send(new DeleteObjectCommand({ Bucket: deleted.bucket, Key: `${PREFIX}${deleted.files[1]!}` }));
    const rDeleted = await runCliInProcess(deleted.bucketArgs);
    expect(rDeleted.code).toBe(EXIT.failure);
    expect(rDeleted.stdout).toContain(`the session file ${deleted.files[1]!} is missing`);
    expect(rDeleted.stderr).toContain('ERR_RECORDING_TAMPERED');

    const swapped = await shippedStorage();
    const [a, b] = [await object(swapped.bucket, swapped.files[0]!), await object(swapped.bucket, swapped.files[1]!)];
    await replace(swapped.bucket, swapped.files[0]!, b);
    await replace(swapped.bucket, swapped.files[1]!, a);
    const rSwapped = await runCliInProcess(swapped.bucketArgs);
    expect(rSwapped.code).toBe(EXIT.failure);
    expect(rSwapped.stdout.match(/broken/g)).toHaveLength(2);
    expect(rSwapped.stderr).toContain('2 sessions');
  });

  it('--config verifies the bucket the gateway config names, with its keys', async () => {
    const { bucket, dir, key, files, publicKeyFile } = await shippedStorage();
    const config = join(dir, 'sluice.yaml');
    await writeFile(
      config,
      JSON.stringify({
        identity: { issuer: 'https://idp.test', audience: 'sluice', cli_client_id: 'sluice-cli' },
        storage: { dir, master_key: key.toString('base64'), recordings: { type: 's3', bucket, prefix: PREFIX, endpoint: s3.endpoint, force_path_style: true } },
      }),
    );
    const env = { ...process.env, SLUICE_MASTER_KEY: '' };
    const ok = await runCliInProcess(['audit', 'verify', '--all', '--config', config, '--public-key', publicKeyFile], env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.match(/intact/g)?.length).toBeGreaterThanOrEqual(2);

    const bytes = await object(bucket, files[1]!);
    bytes[bytes.length - 10]! ^= 0x80;
    await replace(bucket, files[1]!, bytes);
    const bad = await runCliInProcess(['audit', 'verify', '--all', '--config', config, '--public-key', publicKeyFile], env);
    expect(bad.code).toBe(EXIT.failure);
    expect(bad.stderr).toContain('ERR_RECORDING_TAMPERED');
  });
});
