/**
 * A read racing a hand-off: the spool puts a sealed file into the archive, then removes its own copy. A
 * reader must find the file on one side or the other at every moment of that.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { text } from 'node:stream/consumers';
import { describe, expect, it, onTestFinished } from 'vitest';
import { isArchiveNotFound, type RecordingArchive } from '../../server/recording/archive/archive.js';
import { FsArchive } from '../../server/recording/archive/fs-archive.js';
import { nodeRecordingIo } from '../../server/recording/file-io.js';
import { SessionSpool } from '../../server/recording/session-spool.js';

const NAME = 'sessions/2026/01/02/ses_00000000000000000000000000000001.rec';
const BYTES = 'the sealed session file, whole';

/**
 * An upload-only archive (a bucket) that, whenever it is asked for an object it lacks, lets the pending
 * hand-off finish before it answers: the worst moment for a reader that asks the archive first.
 */
function archiveThatHandsOffOnMiss(root: string, handOff: () => Promise<void>): RecordingArchive {
  const fs = new FsArchive({ root });
  const onMiss = async <T>(read: () => Promise<T>): Promise<T> => {
    try {
      return await read();
    } catch (err) {
      if (isArchiveNotFound(err)) await handOff();
      throw err;
    }
  };
  return {
    get: (name) => onMiss(() => fs.get(name)),
    range: (name, offset, length) => onMiss(() => fs.range(name, offset, length)),
    list: (prefix, options) => fs.list(prefix, options),
    delete: (name) => fs.delete(name),
    put: (name, body) => fs.put(name, body),
  };
}

async function spooledFile() {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-handoff-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  let spool: SessionSpool | undefined;
  const handOffs: Promise<void>[] = [];
  const archive = archiveThatHandsOffOnMiss(join(dir, 'archive'), () => {
    const handOff = spool!.handOff(NAME);
    handOffs.push(handOff);
    return handOff;
  });
  spool = new SessionSpool({ root: join(dir, 'spool'), io: nodeRecordingIo, archive });
  const path = spool.pathOf(NAME);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, BYTES);
  return { spool, archive, handOffs };
}

describe('reading a session while it is handed to the archive', () => {
  it('finds a range of the file whichever side holds it when the hand-off completes mid-read', async () => {
    const { spool, handOffs } = await spooledFile();
    expect((await spool.reader.range(NAME, 0, 64)).toString('utf8')).toBe(BYTES);
    await Promise.all(handOffs);
    // Once handed off, only the archive holds it.
    await spool.handOff(NAME);
    expect((await spool.reader.range(NAME, 0, 64)).toString('utf8')).toBe(BYTES);
  });

  it('streams the whole file whichever side holds it when the hand-off completes mid-read', async () => {
    const { spool, handOffs } = await spooledFile();
    expect(await text(await spool.reader.get(NAME))).toBe(BYTES);
    await Promise.all(handOffs);
    await spool.handOff(NAME);
    expect(await text(await spool.reader.get(NAME))).toBe(BYTES);
  });

  it('says a file neither side holds is not found', async () => {
    const { spool } = await spooledFile();
    await expect(spool.reader.range('sessions/2026/01/02/ses_00000000000000000000000000000002.rec', 0, 1)).rejects.toSatisfy(isArchiveNotFound);
  });
});
