/**
 * Replicas share the index but each appends its open sessions in a spool of its own: a session open on
 * another replica is listed, but its file reaches the archive only once sealed. Reading it here is
 * answered as what it is, not as a missing (tampered-with) recording.
 */
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { INDEX_FILE, sessionObjectName } from '../../server/recording/storage-layout.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import type { NewSession } from '../../server/store/store.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';

const gateways = gatewayFixture({ config: { replica: { id: 'replica-a' } } });

/** Adds an index row, as another replica sharing this index would. */
async function indexRow(gw: TestGateway, id: string, replica: string): Promise<void> {
  const store = new SqliteStore({ file: join(gw.storageDir, INDEX_FILE) });
  onTestFinished(() => store.close());
  const startedAt = Date.now();
  const row: NewSession = {
    id,
    user: 'alice',
    groups: ['ml-eng'],
    connection: 'llm',
    via: 'proxy',
    clientAddress: '10.0.0.2',
    startedAt,
    file: sessionObjectName(id, startedAt),
    keyId: 'default',
    replica,
  };
  await store.createSession(row);
}

async function read(gw: TestGateway, path: string): Promise<{ status: number; error?: { code?: string; message?: string; replica?: string } }> {
  const res = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${await gw.token('carol')}` } });
  return { status: res.status, ...((await res.json()) as { error?: { code?: string; message?: string; replica?: string } }) };
}

describe('a session open on another replica', () => {
  it('is answered "open on replica X, not yet archived" by every read, never as missing or tampered with', async () => {
    const gw = await gateways.start();
    const id = 'ses_0000000000000000000000000000b0b0';
    await indexRow(gw, id, 'replica-b');
    for (const path of [`/v1/sessions/${id}`, `/v1/sessions/${id}/events`, `/v1/sessions/${id}/export?format=jsonl`]) {
      const answer = await read(gw, path);
      expect(answer.status, path).toBe(404);
      expect(answer.error, path).toMatchObject({
        code: 'ERR_NOT_FOUND',
        message: `Session ${id} is open on replica replica-b, not yet archived: it can be read once that replica seals it`,
        replica: 'replica-b',
      });
    }
  });

  it('leaves a missing file of this replica\'s own open session reported as missing', async () => {
    const gw = await gateways.start();
    const id = 'ses_0000000000000000000000000000a0a0';
    await indexRow(gw, id, 'replica-a');
    const exported = await read(gw, `/v1/sessions/${id}/export?format=jsonl`);
    expect(exported.status).toBe(409);
    expect(exported.error).toMatchObject({ code: 'ERR_RECORDING_TAMPERED', message: expect.stringContaining('is missing') });
  });
});
