/**
 * The segment uploader against a directory archive with faults injected: a failed upload is retried with
 * the same bytes, one that landed unseen is recognised, and the segments always add up to the file.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { FsArchive } from '../../server/recording/archive/fs-archive.js';
import type { ArchiveBody, RecordingArchive } from '../../server/recording/archive/archive.js';
import { nodeRecordingIo } from '../../server/recording/file-io.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { SegmentUploader } from '../../server/recording/segment-uploader.js';
import { SegmentedReader } from '../../server/recording/segmented-reader.js';
import { SessionWriter } from '../../server/recording/session-writer.js';
import { tempDir } from '../helpers/temp-dir.js';

const NAME = 'sessions/2026/12/03/ses_up.rec';

async function sessionFile(spool: string): Promise<SessionWriter> {
  await mkdir(dirname(join(spool, NAME)), { recursive: true });
  const writer = await SessionWriter.create({ io: nodeRecordingIo, path: join(spool, NAME), sessionId: 'ses_up', created: Date.now(), keyRing: new KeyRing([{ id: 'default', key: randomBytes(32) }]), fsync: 'never', fsyncIntervalMs: 0 });
  onTestFinished(() => writer.close().catch(() => undefined));
  return writer;
}

async function append(writer: SessionWriter, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await writer.append('tcp.chunk', { exchange: 'x', dir: 'up', bytes: 3 }, Buffer.from('abc'));
}

/** The directory archive, with `put` failing as `fault` says for each call (by count from 1). */
function faulty(inner: FsArchive, fault: (call: number) => 'before' | 'after' | undefined): RecordingArchive & { puts: number } {
  const a = {
    puts: 0,
    put: async (name: string, body: ArchiveBody) => {
      const f = fault(++a.puts);
      if (f === 'before') throw new Error('bucket unreachable');
      await inner.put(name, body);
      if (f === 'after') throw new Error('the answer was lost');
    },
    get: (name: string) => inner.get(name),
    range: (name: string, offset: number, length: number) => inner.range(name, offset, length),
    list: (prefix: string, options?: { after?: string; limit?: number }) => inner.list(prefix, options),
    delete: (name: string) => inner.delete(name),
  };
  return a;
}

async function segmentsRead(archive: FsArchive): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of await new SegmentedReader(archive).get(NAME)) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

describe('segment uploader', () => {
  it('retries a failed upload with the same bytes, and recognises one that landed unseen', async () => {
    const spool = await tempDir('sluice-segup-');
    const bucket = new FsArchive({ root: await tempDir('sluice-segup-') });
    const archive = faulty(bucket, (call) => (call === 1 ? 'before' : call === 3 ? 'after' : undefined));
    const uploader = new SegmentUploader({ root: spool, archive, intervalMs: 3_600_000 });
    onTestFinished(() => uploader.close());
    const writer = await sessionFile(spool);
    uploader.track(NAME);
    await append(writer, 3);

    await uploader.tick(true); // put 1 fails before anything lands
    expect((await bucket.list('sessions/')).objects).toEqual([]);
    expect(uploader.pendingBytes()).toBeGreaterThan(0);
    // More records meanwhile: the retry still sends the segment as it was cut, then cuts the rest.
    await append(writer, 2);
    await uploader.tick(true); // put 2: segment 0 as first cut; put 3: segment 1 lands, its answer is lost
    await uploader.tick(true); // put 4: segment 1 again, found there with the same bytes
    const names = (await bucket.list('sessions/')).objects.map((o) => o.name);
    expect(names).toEqual([`${NAME.slice(0, -4)}.segments/00000000.seg`, `${NAME.slice(0, -4)}.segments/00000001.seg`]);
    expect(await segmentsRead(bucket)).toEqual(await readFile(join(spool, NAME)));
    expect(uploader.pendingBytes()).toBe(0);

    await append(writer, 1);
    await uploader.tick(true);
    expect((await bucket.list('sessions/')).objects).toHaveLength(3);
    expect(await segmentsRead(bucket)).toEqual(await readFile(join(spool, NAME)));
  });

  it('lets a seal go on while a segment upload hangs, and removes that segment once it lands', async () => {
    const spool = await tempDir('sluice-segup-');
    const bucket = new FsArchive({ root: await tempDir('sluice-segup-') });
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const putStarted = new Promise<void>((r) => (started = r));
    const slow: RecordingArchive = {
      put: async (name, body) => {
        started();
        await released;
        await bucket.put(name, body);
      },
      get: (name) => bucket.get(name),
      range: (name, offset, length) => bucket.range(name, offset, length),
      list: (prefix, options) => bucket.list(prefix, options),
      delete: (name) => bucket.delete(name),
    };
    const uploader = new SegmentUploader({ root: spool, archive: slow, intervalMs: 3_600_000 });
    onTestFinished(() => uploader.close());
    const writer = await sessionFile(spool);
    uploader.track(NAME);
    await append(writer, 2);
    const ticking = uploader.tick(true);
    await putStarted;
    uploader.untrack(NAME); // returns at once: the seal does not wait for the bucket
    let removed = false;
    const removing = uploader.removeSegments(NAME).then(() => (removed = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(removed).toBe(false);
    release();
    await Promise.all([ticking, removing]);
    expect((await bucket.list('sessions/')).objects).toEqual([]);
  });

  it('never cuts the same bytes twice when ticks overlap, and uploads nothing once untracked', async () => {
    const spool = await tempDir('sluice-segup-');
    const bucket = new FsArchive({ root: await tempDir('sluice-segup-') });
    const uploader = new SegmentUploader({ root: spool, archive: bucket, intervalMs: 3_600_000, segmentMaxBytes: 200 });
    onTestFinished(() => uploader.close());
    const writer = await sessionFile(spool);
    uploader.track(NAME);
    await append(writer, 10);
    await Promise.all([uploader.tick(true), uploader.tick(true), uploader.tick(true)]);
    expect(await segmentsRead(bucket)).toEqual(await readFile(join(spool, NAME)));

    uploader.untrack(NAME);
    const before = (await bucket.list('sessions/')).objects.length;
    await append(writer, 2);
    await uploader.tick(true);
    expect((await bucket.list('sessions/')).objects).toHaveLength(before);
    await uploader.removeSegments(NAME);
    expect((await bucket.list('sessions/')).objects).toEqual([]);
  });
});
