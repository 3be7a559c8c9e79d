/**
 * Recordings in a bucket (`storage.recordings: {type: s3}`) through the real gateway, a real S3-protocol
 * server (s3rver) and the openai SDK: the spool under storage.dir hands each sealed session to the bucket,
 * every reader finds it there, `verifyStorageDir` verifies it there, and retention deletes it there.
 */
import { DeleteObjectCommand, GetObjectCommand, ListObjectsCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { describe, expect, it, onTestFinished } from 'vitest';
import { connectionSchema } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import { S3Archive } from '../../server/recording/archive/s3-archive.js';
import { openDirectoryIndex } from '../../server/recording/audit-index.js';
import { keyRingFromSettings, KeyRing } from '../../server/recording/key-ring.js';
import { Recording } from '../../server/recording/recording.js';
import { loadOrCreateSigningKey } from '../../server/recording/signing-key.js';
import { verifyStorageDir, type SessionVerdict } from '../../server/recording/verify-storage-dir.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { gatewayFixture, modelConnection } from '../helpers/gateway.js';
import { signToken } from '../helpers/oidc.js';
import { s3Fixture } from '../helpers/s3-server.js';

const PROMPT = 'Summarise the quarterly numbers for ACME-271828';
const PREFIX = 'sluice/recordings/';

const s3 = s3Fixture({ credentialsInEnv: true });
const gateways = gatewayFixture();

async function keysIn(client: S3Client, bucket: string): Promise<string[]> {
  const out = await client.send(new ListObjectsCommand({ Bucket: bucket }));
  return (out.Contents ?? []).map((o) => o.Key!);
}

async function objectBytes(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function verdicts(dir: string, archive: S3Archive, keyRing: KeyRing, publicKey: string): Promise<SessionVerdict[]> {
  const index = await openDirectoryIndex(dir);
  try {
    const out: SessionVerdict[] = [];
    for await (const v of verifyStorageDir({ dir, archive, keyRing, publicKey, ...(index === undefined ? {} : { index }) })) out.push(v);
    return out;
  } finally {
    await index?.close();
  }
}

describe('recordings in an S3 bucket', () => {
  it('hands the sealed session to the bucket and out of the spool; the API reads it back from there; verify passes, and fails on a flipped byte', async () => {
    const bucket = await s3.bucket();
    const client = s3.client();
    const gw = await gateways.start({
      connections: ({ model }) => [modelConnection(model, { record: { request_body: 'raw', response_body: 'raw' } })],
      config: {
        roles: { auditor: ['security'] },
        storage: { recordings: { type: 's3', bucket, prefix: PREFIX, endpoint: s3.endpoint, force_path_style: true } },
      },
    });
    const alice = await signToken(gateways.idp.signingKey, gateways.idp.claimsFor('alice'));
    const sdk = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: alice, maxRetries: 0 });
    const completion = await sdk.chat.completions.create({ model: 'demo-small', messages: [{ role: 'user', content: PROMPT }] });
    const answer = completion.choices[0]!.message.content!;
    const publicKey = ((await gw.app.inject({ method: 'GET', url: '/v1/audit/public-key' })).json() as { public_key_pem: string }).public_key_pem;

    await gw.stopApp(); // seals the proxy session and hands it off
    const [session, ...others] = await gw.sessions();
    expect(others).toEqual([]);
    expect(session).toMatchObject({ status: 'closed', user: 'alice' });
    // In the bucket under the prefix, gone from the spool.
    expect(await keysIn(client, bucket)).toEqual([`${PREFIX}${session!.file}`]);
    expect(await exists(join(gw.storageDir, session!.file))).toBe(false);
    // The object is the encrypted session file: no prompt, no answer.
    const object = await objectBytes(client, bucket, `${PREFIX}${session!.file}`);
    expect(object.includes(Buffer.from(PROMPT))).toBe(false);
    expect(object.includes(Buffer.from(answer.slice(0, 24)))).toBe(false);

    // Read back through the API, from the bucket.
    await gw.startApp();
    const carol = await signToken(gateways.idp.signingKey, gateways.idp.claimsFor('carol'));
    const res = await fetch(`${gw.url}/v1/sessions/${session!.id}/events`, { headers: { authorization: `Bearer ${carol}` } });
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body).toContain('exchange.request');
    expect(body).toContain('exchange.end');
    await gw.stopApp();

    // Verified from the bucket, as an auditor would.
    const keyRing = keyRingFromSettings({ master_key: gw.masterKey })!;
    const archive = new S3Archive({ bucket, prefix: PREFIX, client });
    const intact = await verdicts(gw.storageDir, archive, keyRing, publicKey);
    expect(intact.map((v) => ({ id: v.id, ok: v.result?.ok }))).toEqual([{ id: session!.id, ok: true }]);

    // Someone with write access to the bucket flips one byte in the middle of the object.
    const forged = Buffer.from(object);
    forged[Math.floor(forged.length / 2)]! ^= 0x01;
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: `${PREFIX}${session!.file}` }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${PREFIX}${session!.file}`, Body: forged }));
    const tampered = await verdicts(gw.storageDir, archive, keyRing, publicKey);
    expect(tampered.map((v) => ({ id: v.id, ok: v.result?.ok }))).toEqual([{ id: session!.id, ok: false }]);
  });

  it('retention deletes the object from the bucket', async () => {
    const bucket = await s3.bucket();
    const client = s3.client();
    const dir = await mkdtemp(join(tmpdir(), 'sluice-s3-retention-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
    onTestFinished(() => store.close());
    const archive = new S3Archive({ bucket, prefix: PREFIX, client });
    const recording = await Recording.open({
      dir,
      spoolDir: dir,
      archive,
      store,
      keyRing: new KeyRing([{ id: 'default', key: randomBytes(32) }]),
      signingKey: await loadOrCreateSigningKey(dir),
      retentionDays: 30,
    });
    onTestFinished(() => recording.close());
    const principal: Principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };
    const connection = connectionSchema.parse({ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:1', allow_groups: ['ml-eng'] });
    await recording.openSession({ id: 'ses_old', principal, connection, via: 'proxy', clientAddress: '127.0.0.1' });
    await recording.closeSession('ses_old', 'idle');
    const file = (await store.getSession('ses_old'))!.file;
    expect(await keysIn(client, bucket)).toEqual([`${PREFIX}${file}`]);
    expect(await exists(join(dir, file))).toBe(false);

    expect(await recording.sweep(Date.now() + 31 * 86_400_000)).toBe(1);
    expect(await keysIn(client, bucket)).toEqual([]);
    expect(await store.getSession('ses_old')).toBeUndefined();
  });
});
