import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsArchive } from '../../server/recording/archive/fs-archive.js';
import { describeArchiveConformance, ESCAPING_NAMES } from '../helpers/archive-conformance.js';
import { tempDir } from '../helpers/temp-dir.js';

describeArchiveConformance('FsArchive', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-archive-'));
  return { archive: new FsArchive({ root: join(dir, 'root') }), close: () => rm(dir, { recursive: true, force: true }) };
});

describe('FsArchive on disk', () => {
  it('keeps objects as 0600 files under the root at their names, leaving no temporary files', async () => {
    const dir = await tempDir('sluice-archive-');
    const archive = new FsArchive({ root: dir });
    await archive.put('sessions/2025/01/02/ses_a.rec', Buffer.from('bytes'));
    expect(await readFile(join(dir, 'sessions/2025/01/02/ses_a.rec'), 'utf8')).toBe('bytes');
    expect((await stat(join(dir, 'sessions/2025/01/02/ses_a.rec'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'sessions/2025'))).mode & 0o777).toBe(0o700);
    expect(await readdir(join(dir, 'sessions/2025/01/02'))).toEqual(['ses_a.rec']);
  });

  it('writes nothing outside its root for a name that tries to escape it', async () => {
    const parent = await tempDir('sluice-archive-');
    const root = join(parent, 'root');
    const archive = new FsArchive({ root });
    await archive.put('sessions/a.rec', Buffer.from('x'));
    for (const bad of ESCAPING_NAMES) await archive.put(bad, Buffer.from('escape')).catch(() => undefined);
    expect((await readdir(parent)).sort()).toEqual(['root']);
    expect(await readdir(root)).toEqual(['sessions']);
  });

  it('lists neither hidden files (a spool or put in progress) nor what is not a regular file', async () => {
    const dir = await tempDir('sluice-archive-');
    const archive = new FsArchive({ root: dir });
    await archive.put('sessions/a.rec', Buffer.from('x'));
    await writeFile(join(dir, 'sessions', '.b.put.tmp'), 'half');
    await mkdir(join(dir, 'sessions', '.hidden'));
    await writeFile(join(dir, 'sessions', '.hidden', 'c.rec'), 'x');
    await symlink('/etc/hostname', join(dir, 'sessions', 'link.rec'));
    expect((await archive.list('sessions/')).objects.map((o) => o.name)).toEqual(['sessions/a.rec']);
  });

  it('adopts a finished file by renaming it into place, refusing a name that is taken', async () => {
    const dir = await tempDir('sluice-archive-');
    const archive = new FsArchive({ root: join(dir, 'archive') });
    await mkdir(join(dir, 'spool'));
    const spooled = join(dir, 'spool', 'ses_a.rec');
    await writeFile(spooled, 'sealed bytes');
    const inode = (await stat(spooled)).ino;
    await archive.adoptFile(spooled, 'sessions/2025/01/02/ses_a.rec');
    await expect(stat(spooled)).rejects.toMatchObject({ code: 'ENOENT' });
    // The same file, not a copy.
    expect((await stat(join(dir, 'archive/sessions/2025/01/02/ses_a.rec'))).ino).toBe(inode);

    await writeFile(spooled, 'other bytes');
    await expect(archive.adoptFile(spooled, 'sessions/2025/01/02/ses_a.rec')).rejects.toMatchObject({ code: 'ARCHIVE_EXISTS' });
    expect(await readFile(join(dir, 'archive/sessions/2025/01/02/ses_a.rec'), 'utf8')).toBe('sealed bytes');
    // A file already at its object's path (the spool sharing the archive's root) is left where it is.
    await archive.adoptFile(join(dir, 'archive/sessions/2025/01/02/ses_a.rec'), 'sessions/2025/01/02/ses_a.rec');
    expect(await readFile(join(dir, 'archive/sessions/2025/01/02/ses_a.rec'), 'utf8')).toBe('sealed bytes');
  });
});
