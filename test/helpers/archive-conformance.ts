/**
 * The archive contract, run against every `RecordingArchive` implementation: the directory archive now,
 * an S3-compatible bucket later. Each test gets a fresh, empty archive from `open`.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ArchiveError, listAll, type RecordingArchive } from '../../server/recording/archive/archive.js';

/** A fresh, empty archive and how to dispose of it. */
export interface ArchiveUnderTest {
  readonly archive: RecordingArchive;
  close(): Promise<void>;
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** Names that try to leave the archive's root or hide in it; every operation must refuse each. */
export const ESCAPING_NAMES = ['../outside.rec', 'sessions/../../outside.rec', '/etc/passwd', 'sessions/a\0b.rec', '', 'sessions//a.rec', './a.rec', 'sessions/./a.rec', '.hidden.rec', 'sessions\\a.rec', 'sessions/..'];

/** Registers the conformance tests for one archive implementation. */
export function describeArchiveConformance(name: string, open: () => Promise<ArchiveUnderTest>): void {
  async function fresh(): Promise<RecordingArchive> {
    const under = await open();
    onTestFinished(() => under.close());
    return under.archive;
  }

  describe(`${name}: the archive contract`, () => {
    it('stores an object from a buffer or a stream and gives back exactly its bytes', async () => {
      const archive = await fresh();
      const small = Buffer.from('SLUICERC small object');
      await archive.put('sessions/2025/01/02/ses_a.rec', small);
      expect(await bytesOf(await archive.get('sessions/2025/01/02/ses_a.rec'))).toEqual(small);

      // Larger than any one read, from a stream of uneven pieces.
      const big = randomBytes(3 * 1024 * 1024 + 17);
      const pieces = [big.subarray(0, 1), big.subarray(1, 70_000), big.subarray(70_000)];
      await archive.put('sessions/2025/01/02/ses_b.rec', Readable.from(pieces));
      expect((await bytesOf(await archive.get('sessions/2025/01/02/ses_b.rec'))).equals(big)).toBe(true);
      await archive.put('empty.rec', Buffer.alloc(0));
      expect((await bytesOf(await archive.get('empty.rec'))).length).toBe(0);
    });

    it('names a missing object with a typed ARCHIVE_NOT_FOUND error from get and range', async () => {
      const archive = await fresh();
      await archive.put('sessions/present.rec', Buffer.from('x'));
      for (const attempt of [() => archive.get('sessions/absent.rec'), () => archive.range('sessions/absent.rec', 0, 10), () => archive.get('nothing/here/at/all.rec')]) {
        const err = await attempt().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(ArchiveError);
        expect(err).toMatchObject({ code: 'ARCHIVE_NOT_FOUND' });
        expect((err as ArchiveError).object).toMatch(/absent\.rec|all\.rec/);
      }
      // A "directory" of objects is not an object.
      await expect(archive.get('sessions')).rejects.toMatchObject({ code: 'ARCHIVE_NOT_FOUND' });
    });

    it('reads ranges: inside the object, short where it ends, empty from its end on', async () => {
      const archive = await fresh();
      const bytes = Buffer.from('0123456789abcdef');
      await archive.put('r.rec', bytes);
      expect((await archive.range('r.rec', 0, 4)).toString()).toBe('0123');
      expect((await archive.range('r.rec', 10, 4)).toString()).toBe('abcd');
      expect((await archive.range('r.rec', 12, 100)).toString()).toBe('cdef');
      expect((await archive.range('r.rec', 16, 10)).length).toBe(0);
      expect((await archive.range('r.rec', 1000, 10)).length).toBe(0);
      expect((await archive.range('r.rec', 3, 0)).length).toBe(0);
      await expect(archive.range('r.rec', -1, 4)).rejects.toBeInstanceOf(RangeError);
    });

    it('never replaces an object: a second put of a name is refused with ARCHIVE_EXISTS and the first stays', async () => {
      const archive = await fresh();
      await archive.put('sessions/s.rec', Buffer.from('original'));
      await expect(archive.put('sessions/s.rec', Buffer.from('forged'))).rejects.toMatchObject({ code: 'ARCHIVE_EXISTS' });
      await expect(archive.put('sessions/s.rec', Readable.from([Buffer.from('forged')]))).rejects.toMatchObject({ code: 'ARCHIVE_EXISTS' });
      expect((await bytesOf(await archive.get('sessions/s.rec'))).toString()).toBe('original');
    });

    it('leaves nothing behind when a streamed put fails, so the name can be put again', async () => {
      const archive = await fresh();
      const failing = Readable.from(
        (async function* () {
          yield Buffer.from('half of a file');
          throw new Error('the source broke');
        })(),
      );
      await expect(archive.put('sessions/retry.rec', failing)).rejects.toThrow(/the source broke/);
      await expect(archive.get('sessions/retry.rec')).rejects.toMatchObject({ code: 'ARCHIVE_NOT_FOUND' });
      expect((await archive.list('')).objects).toEqual([]);
      await archive.put('sessions/retry.rec', Buffer.from('whole'));
      expect((await bytesOf(await archive.get('sessions/retry.rec'))).toString()).toBe('whole');
    });

    it('lists by prefix in name order with sizes, and pages through every object exactly once', async () => {
      const archive = await fresh();
      const names = [
        'sessions/2025/01/02/ses_b.rec',
        'sessions/2025/01/02/ses_a.rec',
        'sessions/2025/01/10/ses_c.rec',
        'sessions/2025-old.rec',
        'sessions/2024/12/31/ses_z.rec',
        'other/ses_x.rec',
        'sessionsX.rec',
      ];
      for (const [i, n] of names.entries()) await archive.put(n, Buffer.alloc(i + 1));
      const sorted = names.filter((n) => n.startsWith('sessions/')).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      // `-` sorts before `/`: the flat name order, not a directory walk's.
      expect(sorted.indexOf('sessions/2025-old.rec')).toBeLessThan(sorted.indexOf('sessions/2025/01/02/ses_a.rec'));

      const all = await archive.list('sessions/');
      expect(all.objects.map((o) => o.name)).toEqual(sorted);
      expect(all.next).toBeUndefined();
      expect(all.objects.find((o) => o.name === 'sessions/2025/01/02/ses_a.rec')?.size).toBe(2);

      const pages: string[][] = [];
      let after: string | undefined;
      do {
        const page = await archive.list('sessions/', { limit: 2, ...(after === undefined ? {} : { after }) });
        expect(page.objects.length).toBeLessThanOrEqual(2);
        pages.push(page.objects.map((o) => o.name));
        after = page.next;
      } while (after !== undefined);
      expect(pages.flat()).toEqual(sorted);
      expect(pages.length).toBeGreaterThanOrEqual(3);

      expect((await archive.list('sessions/2025/01/')).objects.map((o) => o.name)).toEqual(['sessions/2025/01/02/ses_a.rec', 'sessions/2025/01/02/ses_b.rec', 'sessions/2025/01/10/ses_c.rec']);
      // A prefix need not end at a "directory".
      expect((await archive.list('sessions/2025/01/02/ses_a')).objects.map((o) => o.name)).toEqual(['sessions/2025/01/02/ses_a.rec']);
      expect((await archive.list('nothing/')).objects).toEqual([]);
      const everything = [];
      for await (const o of listAll(archive, '')) everything.push(o.name);
      expect(everything.sort()).toEqual([...names].sort());
    });

    it('deletes idempotently: a deleted object is gone, and deleting it again, or one never put, succeeds', async () => {
      const archive = await fresh();
      await archive.put('sessions/d.rec', Buffer.from('x'));
      await archive.delete('sessions/d.rec');
      await expect(archive.get('sessions/d.rec')).rejects.toMatchObject({ code: 'ARCHIVE_NOT_FOUND' });
      await archive.delete('sessions/d.rec');
      await archive.delete('sessions/never.rec');
      expect((await archive.list('sessions/')).objects).toEqual([]);
      // The name is free again.
      await archive.put('sessions/d.rec', Buffer.from('y'));
      expect((await bytesOf(await archive.get('sessions/d.rec'))).toString()).toBe('y');
    });

    it('refuses names that try to escape the root or hide in it, in every operation', async () => {
      const archive = await fresh();
      await archive.put('sessions/a.rec', Buffer.from('x'));
      for (const bad of ESCAPING_NAMES) {
        for (const attempt of [
          () => archive.put(bad, Buffer.from('escape')),
          () => archive.get(bad),
          () => archive.range(bad, 0, 1),
          () => archive.delete(bad),
        ]) {
          await expect(attempt(), JSON.stringify(bad)).rejects.toMatchObject({ code: 'ARCHIVE_BAD_NAME' });
        }
      }
      for (const bad of ['../', '/', '/etc/', 'a\0/', '../sessions/']) {
        await expect(archive.list(bad), JSON.stringify(bad)).rejects.toMatchObject({ code: 'ARCHIVE_BAD_NAME' });
      }
      expect((await archive.list('')).objects.map((o) => o.name)).toEqual(['sessions/a.rec']);
    });
  });
}
