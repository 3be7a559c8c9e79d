/**
 * A session sealed by a gateway that wrote an older recording format, from `test/fixtures/recording-vN/`:
 * its file, the index row that gateway wrote, the master key it was written with and the key that sealed
 * it; and a storage directory set up the way that gateway left it, for today's code to read.
 */
import { chmod, copyFile, mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { KeyRing } from '../../server/recording/key-ring.js';
import { INDEX_FILE } from '../../server/recording/storage-layout.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import type { NewSession, Store } from '../../server/store/store.js';

/** The recording formats the fixtures keep, each written by the gateway of its time. */
export type OlderFormat = 1 | 2;

/** The index row the older gateway wrote, as the fixture keeps it. */
export interface OlderSessionRow extends NewSession {
  readonly records: number;
  readonly finalHash: string;
  readonly endedAt: number;
  /** The wrapped data key (base64), from format 2 on, where the index keeps it; format 1 keeps it in the file's header. */
  readonly wrappedKey?: string;
}

/** One fixture's session and keys. */
export interface OlderFormatSession {
  readonly version: OlderFormat;
  /** The fixture's folder. */
  readonly fixture: string;
  readonly row: OlderSessionRow;
  /** The master key the session was written with (base64), under key id `default`. */
  readonly masterKey: string;
  readonly keyRing: KeyRing;
}

/** Reads the fixture of format `version`. */
export async function olderFormatSession(version: OlderFormat): Promise<OlderFormatSession> {
  const fixture = new URL(`../fixtures/recording-v${version}/`, import.meta.url).pathname;
  const row = JSON.parse(await readFile(join(fixture, 'index-row.json'), 'utf8')) as OlderSessionRow;
  const masterKey = (await readFile(join(fixture, 'master-key.b64'), 'utf8')).trim();
  return { version, fixture, row, masterKey, keyRing: new KeyRing([{ id: 'default', key: Buffer.from(masterKey, 'base64') }]) };
}

/** Puts the session where code on storage directory `dir` finds it: its file, and its rows in `store` (the key row where the format has one). */
export async function placeOlderSession(session: OlderFormatSession, dir: string, store: Store): Promise<void> {
  const { row, fixture } = session;
  await mkdir(dirname(join(dir, row.file)), { recursive: true });
  await copyFile(join(fixture, row.file), join(dir, row.file));
  await store.createSession({ id: row.id, user: row.user, groups: row.groups, connection: row.connection, via: row.via, clientAddress: row.clientAddress, startedAt: row.startedAt, file: row.file, keyId: row.keyId, replica: row.replica });
  if (row.wrappedKey !== undefined) await store.putSessionKey(row.id, { keyId: row.keyId, wrapped: Buffer.from(row.wrappedKey, 'base64') });
  await store.closeSession(row.id, { status: 'closed', endedAt: row.endedAt, records: row.records, finalHash: row.finalHash });
}

/**
 * Makes `dir` the storage directory the older gateway left: the session placed in its SQLite index, the
 * seal log it was sealed into, and no key canary, which came later.
 * The signing key that sealed it goes to `dir/keys` (0600), outside what a gateway writes, as
 * `storage.signing_key` wants. Returns the `storage` settings of a gateway started on it.
 */
export async function olderStorageDir(session: OlderFormatSession, dir: string): Promise<{ dir: string; master_key: string; signing_key: string }> {
  const store = new SqliteStore({ file: join(dir, INDEX_FILE) });
  try {
    await placeOlderSession(session, dir, store);
  } finally {
    await store.close();
  }
  for (const f of ['seals.log', 'seals.checkpoints']) await copyFile(join(session.fixture, f), join(dir, f));
  const signingKey = join(dir, 'keys', 'signing-key.pem');
  await mkdir(dirname(signingKey), { mode: 0o700 });
  await copyFile(join(session.fixture, 'signing-key.pem'), signingKey);
  await chmod(signingKey, 0o600);
  return { dir, master_key: session.masterKey, signing_key: signingKey };
}
