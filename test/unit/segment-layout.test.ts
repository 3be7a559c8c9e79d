/**
 * How a session's segments are placed: in a run from byte 0, or broken at the first segment that does not
 * follow (a gap, another session's, another key's, the wrong offset or record, a cut body), named.
 */
import { describe, expect, it } from 'vitest';
import { FsArchive } from '../../server/recording/archive/fs-archive.js';
import { encodeSegment, segmentObjectName, sessionObjectOfSegment, type SegmentMeta } from '../../server/recording/segment-format.js';
import { readSegmentLayout, SegmentedReader } from '../../server/recording/segmented-reader.js';
import { tempDir } from '../helpers/temp-dir.js';

const FILE = 'sessions/2026/12/03/ses_x.rec';

async function archive(): Promise<FsArchive> {
  const root = await tempDir('sluice-seglayout-');
  return new FsArchive({ root });
}

function meta(segment: number, offset: number, bytes: number, firstRecord: number, more: Partial<SegmentMeta> = {}): SegmentMeta {
  return { session: 'ses_x', segment, offset, bytes, firstRecord, records: 2, prev: 'aa', keyId: 'default', ...more };
}

/** Three segments of 10, 20 and 5 bytes: body bytes are their file offsets, mod 256. */
async function threeSegments(a: FsArchive, change: Partial<Record<number, Partial<SegmentMeta>>> = {}): Promise<void> {
  const sizes = [10, 20, 5];
  let offset = 0;
  for (const [n, size] of sizes.entries()) {
    const body = Buffer.from(Array.from({ length: size }, (_, i) => (offset + i) % 256));
    await a.put(segmentObjectName(FILE, n), encodeSegment(meta(n, offset, size, n * 2, change[n]), body));
    offset += size;
  }
}

describe('segment layout', () => {
  it('places segments in a run and reads the file bytes across them, whole and by range', async () => {
    const a = await archive();
    await threeSegments(a);
    const layout = await readSegmentLayout(a, FILE);
    expect(layout).toMatchObject({ bytes: 35, records: 6, problems: [] });
    const reader = new SegmentedReader(a);
    const whole: Buffer[] = [];
    for await (const chunk of await reader.get(FILE)) whole.push(chunk as Buffer);
    expect([...Buffer.concat(whole)]).toEqual(Array.from({ length: 35 }, (_, i) => i));
    expect([...(await reader.range(FILE, 8, 25))]).toEqual(Array.from({ length: 25 }, (_, i) => 8 + i));
    expect(sessionObjectOfSegment(segmentObjectName(FILE, 2))).toBe(FILE);
    expect(await readSegmentLayout(a, 'sessions/2026/12/03/ses_none.rec')).toBeUndefined();
  });

  it.each([
    [{ 1: { session: 'ses_other' } }, 'it belongs to session ses_other'],
    [{ 1: { keyId: 'old' } }, 'it names master key "old"'],
    [{ 1: { offset: 12 } }, 'it starts at byte 12, where the segments before it end at byte 10'],
    [{ 1: { firstRecord: 5 } }, 'it starts at record 5, where the segments before it end at record 2'],
    [{ 1: { bytes: 19 } }, 'it holds 20 bytes of records and says 19'],
    [{ 1: { segment: 2 } }, 'it says it is segment 2'],
  ] as const)('names segment 1 when it does not follow: %j', async (change, why) => {
    const a = await archive();
    await threeSegments(a, change);
    const layout = await readSegmentLayout(a, FILE);
    expect(layout).toMatchObject({ bytes: 10, records: 2, pieces: [expect.objectContaining({ object: segmentObjectName(FILE, 0) })] });
    expect(layout!.problems).toEqual([expect.objectContaining({ segment: 1, object: segmentObjectName(FILE, 1), offset: 10, message: expect.stringContaining(why) })]);
  });

  it('names a missing segment, and reads only what comes before it', async () => {
    const a = await archive();
    await threeSegments(a);
    await a.delete(segmentObjectName(FILE, 1));
    const layout = await readSegmentLayout(a, FILE);
    expect(layout!.problems).toEqual([expect.objectContaining({ segment: 1, message: expect.stringContaining(`Segment 1 (${segmentObjectName(FILE, 1)}) is missing`) })]);
    expect((await new SegmentedReader(a).range(FILE, 0, 100)).length).toBe(10);
  });
});
