import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it, onTestFinished } from 'vitest';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { SQLITE_MIGRATIONS } from '../../server/store/sqlite-migrations.js';
import { describeStoreConformance } from '../helpers/store-conformance.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'sluice-store-'));
}

describeStoreConformance('SqliteStore (file, WAL)', async () => {
  const dir = await tempDir();
  return { store: new SqliteStore({ file: join(dir, 'index.sqlite') }), dispose: () => rm(dir, { recursive: true, force: true }) };
});

describe('SqliteStore on disk', () => {
  it('uses WAL, records its schema version, and keeps sessions across reopen', async () => {
    const dir = await tempDir();
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'nested', 'index.sqlite');
    const first = new SqliteStore({ file });
    expect(first.schemaVersion).toBe(SQLITE_MIGRATIONS.length);
    await first.createSession({
      id: 'ses_1', user: 'alice', groups: [], connection: 'llm', via: 'proxy', clientAddress: '::1',
      startedAt: 1, file: 'sessions/x.rec', keyId: 'default', replica: 'r1',
    });
    await first.close();

    const raw = new Database(file, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.prepare('SELECT version FROM schema_version').all()).toEqual(SQLITE_MIGRATIONS.map((_, i) => ({ version: i + 1 })));
    raw.close();

    const second = new SqliteStore({ file });
    onTestFinished(() => second.close());
    expect((await second.getSession('ses_1'))?.user).toBe('alice');
    expect((await stat(file)).isFile()).toBe(true);
  });

  it('refuses a database from a newer gateway', async () => {
    const dir = await tempDir();
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'index.sqlite');
    await new SqliteStore({ file }).close();
    const raw = new Database(file);
    raw.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, 0)').run(SQLITE_MIGRATIONS.length + 1);
    raw.close();
    expect(() => new SqliteStore({ file })).toThrow(/newer than this gateway knows/);
  });
});
