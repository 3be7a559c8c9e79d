/**
 * Segments of an open session, as they go to the archive while it runs (all integers big-endian):
 *
 *   segment = "SLUICESG" (8) ‖ version (1) ‖ u32 length ‖ JSON {session, segment, offset, bytes, first_record, records, prev, key_id} ‖ body
 *
 * The body is the session file's bytes from `offset` to `offset + bytes`, cut at a record boundary:
 * records encrypted and chained exactly as on disk, so no plaintext leaves the spool. Segment 0 starts at
 * offset 0 with the file header. `prev` is the hex SHA-256 the segment's first record chains to (the last
 * record of the segment before; of the header for the first record of all). The metadata is not trusted
 * by itself: it only says where the body belongs, and the records' own authentication, sequence and chain
 * prove the body; numbers, offsets and `prev` that disagree with their neighbours are what give away a
 * segment that is missing, reordered or swapped.
 *
 * A session's segments are the objects `<name without .rec>.segments/<8-digit number>.seg`. Once the
 * session is sealed its whole file is archived at its own name and the segments are removed: the whole
 * file, signed checkpoint included, is what is kept.
 */
import { SESSION_FILE_SUFFIX } from './record-format.js';

const SEGMENT_MAGIC = Buffer.from('SLUICESG', 'ascii');
const SEGMENT_VERSION = 1;
const SEGMENT_PREFIX_BYTES = SEGMENT_MAGIC.length + 1 + 4;
/** Largest segment metadata a reader accepts. */
const MAX_SEGMENT_META_BYTES = 16 * 1024;
const SEGMENTS_SUFFIX = '.segments/';
const SEGMENT_SUFFIX = '.seg';
const NUMBER_DIGITS = 8;

/** What a segment says about itself. */
export interface SegmentMeta {
  readonly session: string;
  /** 0, 1, 2, … in upload order. */
  readonly segment: number;
  /** Byte offset of the body in the session file. */
  readonly offset: number;
  /** Bytes of the body. */
  readonly bytes: number;
  /** Position of the body's first record (records hold one or more events: format 3). */
  readonly firstRecord: number;
  /** Whole records in the body. */
  readonly records: number;
  /** Hex SHA-256 the body's first record chains to. */
  readonly prev: string;
  /** The master key that wraps the session's data key. */
  readonly keyId: string;
}

/** The prefix of a session's segment objects. */
export function segmentPrefixOf(sessionObject: string): string {
  const base = sessionObject.endsWith(SESSION_FILE_SUFFIX) ? sessionObject.slice(0, -SESSION_FILE_SUFFIX.length) : sessionObject;
  return `${base}${SEGMENTS_SUFFIX}`;
}

/** The object name of segment `n` of a session. */
export function segmentObjectName(sessionObject: string, n: number): string {
  return `${segmentPrefixOf(sessionObject)}${String(n).padStart(NUMBER_DIGITS, '0')}${SEGMENT_SUFFIX}`;
}

/** The segment number an object name carries, or undefined for a name that is not a segment's. */
export function segmentNumberOf(objectName: string): number | undefined {
  const m = /\.segments\/(\d{8})\.seg$/.exec(objectName);
  return m === null ? undefined : Number(m[1]);
}

/** The session object a segment object belongs to, or undefined for a name that is not a segment's. */
export function sessionObjectOfSegment(objectName: string): string | undefined {
  const m = /^(.*)\.segments\/\d{8}\.seg$/.exec(objectName);
  return m === null ? undefined : `${m[1]}${SESSION_FILE_SUFFIX}`;
}

/** The segment object: metadata then body. */
export function encodeSegment(meta: SegmentMeta, body: Buffer): Buffer {
  const json = Buffer.from(
    JSON.stringify({
      session: meta.session,
      segment: meta.segment,
      offset: meta.offset,
      bytes: meta.bytes,
      first_record: meta.firstRecord,
      records: meta.records,
      prev: meta.prev,
      key_id: meta.keyId,
    }),
    'utf8',
  );
  const prefix = Buffer.alloc(SEGMENT_PREFIX_BYTES);
  SEGMENT_MAGIC.copy(prefix, 0);
  prefix.writeUInt8(SEGMENT_VERSION, SEGMENT_MAGIC.length);
  prefix.writeUInt32BE(json.length, SEGMENT_MAGIC.length + 1);
  return Buffer.concat([prefix, json, body]);
}

/** Why a segment's metadata cannot be read. */
export class SegmentFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SegmentFormatError';
  }
}

/** Bytes to read from a segment's start to be sure to hold all its metadata. */
export const SEGMENT_META_READ = SEGMENT_PREFIX_BYTES + MAX_SEGMENT_META_BYTES;

/** Decodes a segment's metadata from its first bytes; `bodyAt` is where its body starts. Throws SegmentFormatError. */
export function decodeSegmentMeta(head: Buffer): { meta: SegmentMeta; bodyAt: number } {
  if (head.length < SEGMENT_PREFIX_BYTES || !head.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC)) throw new SegmentFormatError('not a session segment (bad magic)');
  const version = head.readUInt8(SEGMENT_MAGIC.length);
  if (version !== SEGMENT_VERSION) throw new SegmentFormatError(`unsupported segment version ${version}`);
  const length = head.readUInt32BE(SEGMENT_MAGIC.length + 1);
  if (length === 0 || length > MAX_SEGMENT_META_BYTES || head.length < SEGMENT_PREFIX_BYTES + length) throw new SegmentFormatError(`segment metadata length ${length} is out of range`);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(head.subarray(SEGMENT_PREFIX_BYTES, SEGMENT_PREFIX_BYTES + length).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new SegmentFormatError('segment metadata is not valid JSON');
  }
  const { session, segment, offset, bytes, first_record, records, prev, key_id } = json;
  const count = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (typeof session !== 'string' || !count(segment) || !count(offset) || !count(bytes) || !count(first_record) || !count(records) || typeof prev !== 'string' || typeof key_id !== 'string') {
    throw new SegmentFormatError('segment metadata lacks session, segment, offset, bytes, first_record, records, prev or key_id');
  }
  return { meta: { session, segment, offset, bytes, firstRecord: first_record, records, prev, keyId: key_id }, bodyAt: SEGMENT_PREFIX_BYTES + length };
}
