import { randomBytes } from 'node:crypto';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { connectionSchema } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import { nodeRecordingIo, type RecordingIo } from '../../server/recording/file-io.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { HEADER_PREFIX } from '../../server/recording/record-format.js';
import { Recording } from '../../server/recording/recording.js';
import { loadOrCreateSigningKey } from '../../server/recording/signing-key.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';

const alice: Principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };
const connection = connectionSchema.parse({ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:1', allow_groups: ['ml-eng'] });

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

describe('retention', () => {
  it('destroys sealed sessions past retention_days: the wrapped key is overwritten, then the file and index row go; open sessions stay', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-retention-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
    onTestFinished(() => store.close());
    // Watches what the sweep writes over a file before removing it.
    const erased: { path: string; header: Buffer }[] = [];
    const io: RecordingIo = {
      ...nodeRecordingIo,
      remove: async (path) => {
        if (path.endsWith('.rec')) erased.push({ path, header: (await readFile(path)).subarray(0, 400) });
        return nodeRecordingIo.remove(path);
      },
    };
    const recording = await Recording.open({
      dir,
      store,
      io,
      keyRing: new KeyRing([{ id: 'default', key: randomBytes(32) }]),
      signingKey: await loadOrCreateSigningKey(dir),
      retentionDays: 30,
    });
    onTestFinished(() => recording.close());

    const ids = ['ses_old', 'ses_open'];
    for (const id of ids) await recording.openSession({ id, principal: alice, connection, via: 'proxy', clientAddress: '127.0.0.1' });
    await recording.closeSession('ses_old', 'idle');
    const old = (await store.getSession('ses_old'))!;
    expect(old.status).toBe('closed');
    const oldFile = join(dir, old.file);
    expect(await exists(oldFile)).toBe(true);

    // Nothing is 30 days old yet.
    expect(await recording.sweep()).toBe(0);
    expect(await exists(oldFile)).toBe(true);

    // 31 days later.
    expect(await recording.sweep(Date.now() + 31 * 86_400_000)).toBe(1);
    expect(await exists(oldFile)).toBe(false);
    expect(await store.getSession('ses_old')).toBeUndefined();
    expect(erased).toHaveLength(1);
    expect(erased[0]!.path).toBe(oldFile);
    expect(erased[0]!.header.subarray(0, HEADER_PREFIX + 200).equals(Buffer.alloc(HEADER_PREFIX + 200))).toBe(true);
    // The open session is never swept.
    expect((await store.getSession('ses_open'))?.status).toBe('open');
  });
});
