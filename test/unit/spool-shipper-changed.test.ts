/**
 * A spooled file that changes between its check and the end of its upload is not left in the archive
 * unchecked: the upload is taken back and the next attempt checks the file as it is now.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { RecordingArchive } from '../../server/recording/archive/archive.js';
import { FsArchive } from '../../server/recording/archive/fs-archive.js';
import { nodeRecordingIo } from '../../server/recording/file-io.js';
import { SpoolShipper } from '../../server/recording/spool-shipper.js';
import { tempDir } from '../helpers/temp-dir.js';

const NAME = 'sessions/2026/12/03/ses_changed.rec';

describe('spool shipper', () => {
  it('takes back an upload whose file changed after its check, and quarantines it when the new bytes fail the check', async () => {
    const spool = await tempDir('sluice-shipchg-');
    const bucket = new FsArchive({ root: await tempDir('sluice-shipchg-') });
    // A bucket: no adoption by rename, every object goes up by put.
    const archive: RecordingArchive = {
      put: (name, body) => bucket.put(name, body),
      get: (name) => bucket.get(name),
      range: (name, offset, length) => bucket.range(name, offset, length),
      list: (prefix, options) => bucket.list(prefix, options),
      delete: (name) => bucket.delete(name),
    };
    await mkdir(dirname(join(spool, NAME)), { recursive: true });
    await writeFile(join(spool, NAME), 'checked bytes');
    const checks: string[] = [];
    const shipper = new SpoolShipper({
      root: spool,
      archive,
      io: nodeRecordingIo,
      backoffMs: 1,
      backoffMaxMs: 1,
      random: () => 0,
      check: async () => {
        checks.push('check');
        if (checks.length === 1) {
          // Altered right after it passed, before its bytes are read for the upload.
          await writeFile(join(spool, NAME), 'forged bytes!');
          return undefined;
        }
        return 'it does not verify';
      },
    });
    onTestFinished(() => shipper.close());
    await shipper.ship(NAME);
    await expect(bucket.get(NAME)).rejects.toMatchObject({ code: 'ARCHIVE_NOT_FOUND' });
    await expect.poll(() => shipper.list()[0]?.status, { timeout: 5_000 }).toBe('quarantined');
    expect(shipper.list()[0]!.quarantineReason).toContain('it does not verify');
    expect(checks).toEqual(['check', 'check']);
    await expect(bucket.get(NAME)).rejects.toMatchObject({ code: 'ARCHIVE_NOT_FOUND' });
  });
});
