/**
 * What a test gateway recorded for one session, read back from disk as an auditor would: the session
 * found in the gateway's index, its file decrypted and its chain and signature verified.
 */
import { createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { RecordedEvent } from '../../server/recording/event-types.js';
import { keyRingFromSettings } from '../../server/recording/key-ring.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import type { TestGateway } from './gateway.js';
import { readStoredSession, verifyStoredSession } from './stored-sessions.js';

/** The events of session `id` as stored by `gw`, and whether the file verifies against the gateway's signing key. */
export async function sessionEvents(gw: TestGateway, id: string): Promise<{ events: RecordedEvent[]; ok: boolean }> {
  const dir = gw.config.storage.dir;
  const index = new SqliteStore({ file: join(dir, 'index.sqlite') });
  const session = await index.getSession(id);
  await index.close();
  expect(session, `session ${id} is indexed`).toBeDefined();
  const keyRing = keyRingFromSettings(gw.config.storage)!;
  const events = await readStoredSession(dir, session!.file, keyRing);
  const verdict = await verifyStoredSession(dir, session!.file, keyRing, { publicKey: createPublicKey(await readFile(join(dir, 'signing-key.pem'))) });
  return { events, ok: verdict.ok };
}
