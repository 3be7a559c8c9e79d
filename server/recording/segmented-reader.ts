import { Readable } from 'node:stream';
import { ArchiveError, isArchiveNotFound, listAll, type ArchiveReader, type RecordingArchive } from './archive/archive.js';
import { decodeSegmentMeta, SEGMENT_META_READ, segmentNumberOf, segmentPrefixOf, SegmentFormatError, type SegmentMeta } from './segment-format.js';

/** One segment that fits its predecessors: where its body is and where that lies in the session file. */
export interface SegmentPiece {
  /** Its object name. */
  readonly object: string;
  readonly meta: SegmentMeta;
  /** Where the body starts in the object. */
  readonly bodyAt: number;
}

/** Why the segments do not make one run from the session file's start: the first segment where it breaks. */
export interface SegmentProblem {
  /** The segment number expected there. */
  readonly segment: number;
  /** The object concerned (the one found, or the name the missing one would have). */
  readonly object: string;
  /** Byte offset in the session file where the run stops. */
  readonly offset: number;
  /** Index of the first record not covered. */
  readonly record: number;
  readonly message: string;
}

/** A session read from its segments: the run that holds together, from byte 0, and where (if anywhere) it breaks. */
export interface SegmentLayout {
  readonly pieces: readonly SegmentPiece[];
  /** Bytes of the session file the run covers. */
  readonly bytes: number;
  /** Whole records the run covers. */
  readonly records: number;
  /** Empty when every segment listed fits; otherwise the first break (a gap, a reordered, altered or foreign segment). */
  readonly problems: readonly SegmentProblem[];
}

/** A reader that can say whether it reads a session from segments, and how they lie. */
export interface SegmentAwareReader extends ArchiveReader {
  /** The layout when `name` is read from segments; undefined when a whole object of that name is read. */
  segmentLayout(name: string): Promise<SegmentLayout | undefined>;
}

/** Whether `reader` can tell a session read from segments. */
export function isSegmentAware(reader: ArchiveReader): reader is SegmentAwareReader {
  return typeof (reader as Partial<SegmentAwareReader>).segmentLayout === 'function';
}

/**
 * Lists a session's segments and checks that they make one run from byte 0: numbered 0, 1, 2, … with no
 * gap, each saying it is the segment its name says, of the same session and master key, starting where the
 * one before ended (bytes and records), and as long as it says. Undefined when the session has no segments.
 */
export async function readSegmentLayout(archive: Pick<RecordingArchive, 'list' | 'range'>, name: string): Promise<SegmentLayout | undefined> {
  const prefix = segmentPrefixOf(name);
  const found: { object: string; number: number; size: number }[] = [];
  for await (const o of listAll(archive, prefix)) {
    const number = segmentNumberOf(o.name);
    if (number !== undefined) found.push({ object: o.name, number, size: o.size });
  }
  if (found.length === 0) return undefined;
  found.sort((a, b) => a.number - b.number);
  const pieces: SegmentPiece[] = [];
  let bytes = 0;
  let records = 0;
  let session: string | undefined;
  let keyId: string | undefined;
  const broken = (segment: number, object: string, message: string): SegmentLayout => ({ pieces, bytes, records, problems: [{ segment, object, offset: bytes, record: records, message }] });
  for (const [expected, f] of found.entries()) {
    if (f.number !== expected) {
      const missing = `${prefix}${String(expected).padStart(8, '0')}.seg`;
      return broken(expected, missing, `Segment ${expected} (${missing}) is missing: the session is readable up to byte ${bytes} (record ${records}), and ${found.length - expected} later segment(s) cannot be placed`);
    }
    let piece: SegmentPiece;
    try {
      const { meta, bodyAt } = decodeSegmentMeta(await archive.range(f.object, 0, SEGMENT_META_READ));
      piece = { object: f.object, meta, bodyAt };
    } catch (err) {
      if (!(err instanceof SegmentFormatError)) throw err;
      return broken(expected, f.object, `Segment ${expected} (${f.object}) cannot be read: ${err.message}`);
    }
    const { meta } = piece;
    const why =
      meta.segment !== expected ? `it says it is segment ${meta.segment}`
      : session !== undefined && meta.session !== session ? `it belongs to session ${meta.session}`
      : keyId !== undefined && meta.keyId !== keyId ? `it names master key "${meta.keyId}", the segments before it "${keyId}"`
      : meta.offset !== bytes ? `it starts at byte ${meta.offset}, where the segments before it end at byte ${bytes}`
      : meta.firstRecord !== records ? `it starts at record ${meta.firstRecord}, where the segments before it end at record ${records}`
      : f.size !== piece.bodyAt + meta.bytes ? `it holds ${f.size - piece.bodyAt} bytes of records and says ${meta.bytes}`
      : undefined;
    if (why !== undefined) return broken(expected, f.object, `Segment ${expected} (${f.object}) does not follow the segments before it: ${why}`);
    session = meta.session;
    keyId = meta.keyId;
    pieces.push(piece);
    bytes += meta.bytes;
    records += meta.records;
  }
  return { pieces, bytes, records, problems: [] };
}

/** The piece holding byte `offset` of the session file, or undefined past the run. */
export function pieceAt(layout: SegmentLayout, offset: number): SegmentPiece | undefined {
  return layout.pieces.find((p) => offset >= p.meta.offset && offset < p.meta.offset + p.meta.bytes);
}

/**
 * Reads sessions as whole objects where the archive has them, and otherwise as the run of their segments
 * (an open session of another replica, or one whose replica stopped before sealing it): the bytes are the
 * session file's from byte 0 to the end of the last segment that fits, so every reader and the verifier
 * read them as a file that ends early.
 */
export class SegmentedReader implements SegmentAwareReader {
  readonly #archive: ArchiveReader & Pick<RecordingArchive, 'list'>;

  constructor(archive: ArchiveReader & Pick<RecordingArchive, 'list'>) {
    this.#archive = archive;
  }

  async segmentLayout(name: string): Promise<SegmentLayout | undefined> {
    try {
      await this.#archive.range(name, 0, 0);
      return undefined;
    } catch (err) {
      if (!isArchiveNotFound(err)) throw err;
    }
    return readSegmentLayout(this.#archive, name);
  }

  async get(name: string): Promise<Readable> {
    try {
      return await this.#archive.get(name);
    } catch (err) {
      if (!isArchiveNotFound(err)) throw err;
      const layout = await readSegmentLayout(this.#archive, name);
      if (layout === undefined || layout.pieces.length === 0) throw err;
      const archive = this.#archive;
      // One segment in memory at a time: segments are cut at storage.segment_max.
      return Readable.from(
        (async function* () {
          for (const p of layout.pieces) yield await archive.range(p.object, p.bodyAt, p.meta.bytes);
        })(),
      );
    }
  }

  async range(name: string, offset: number, length: number): Promise<Buffer> {
    try {
      return await this.#archive.range(name, offset, length);
    } catch (err) {
      if (!isArchiveNotFound(err)) throw err;
      const layout = await readSegmentLayout(this.#archive, name);
      if (layout === undefined || layout.pieces.length === 0) throw err;
      const parts: Buffer[] = [];
      let at = offset;
      const end = Math.min(offset + length, layout.bytes);
      while (at < end) {
        const p = pieceAt(layout, at);
        if (p === undefined) break;
        const within = at - p.meta.offset;
        const take = Math.min(end - at, p.meta.bytes - within);
        const part = await this.#archive.range(p.object, p.bodyAt + within, take);
        if (part.length !== take) throw new ArchiveError('ARCHIVE_NOT_FOUND', p.object, `Segment ${p.object} changed while it was read`);
        parts.push(part);
        at += take;
      }
      return Buffer.concat(parts);
    }
  }
}
