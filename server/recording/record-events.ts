/**
 * The events of one record (record-format.ts describes the file): packed after each other, then coded —
 * stored, or compressed with raw DEFLATE and the format's preset dictionary — and read back for every
 * format version, one event per record before version 3.
 */
import type { KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { constants, deflateRaw, deflateRawSync, inflateRawSync, type ZlibOptions } from 'node:zlib';
import { EVENT_DICTIONARY } from './event-dictionary.js';
import {
  checkedMeta,
  CODING_BYTES,
  decodeSingleEvent,
  FORMAT_VERSION,
  HASH_BYTES,
  MAX_EVENTS_BYTES,
  openRecord,
  sealRecord,
  type NonceSequence,
  type RecordCompression,
  type RecordEvent,
  type SessionHeader,
} from './record-format.js';

/** A version 3 record's coding byte: how its body holds its events. */
const CODING = Object.freeze({ stored: 0, deflate: 1 });

/**
 * Bodies up to this size are compressed at zlib's default level 6. A small record's time is mostly the
 * fixed cost of a compressor and its dictionary (about 15 µs for an exchange's request or answer, of which
 * a one-byte record costs 9): a faster level saves about 2 µs and costs 13–15% more bytes, which the small
 * exchanges' bytes on disk per body byte cannot spare.
 */
const SMALL_BODY_MAX = 4 * 1024;
/**
 * The output buffer of a small body's compressor. zlib's default (16 KiB) is a fresh ArrayBuffer per record,
 * which a body of at most SMALL_BODY_MAX, compressed, never needs; at 2 KiB it comes from Node's shared pool
 * (about 2 µs less per record, and less memory for the collector), and an output that does not fit takes a
 * second chunk. The bytes written are the same: the buffer's size does not change the stream.
 */
const SMALL_OUTPUT_CHUNK = 2 * 1024;
/**
 * A small body's compressor window: 16 KiB instead of zlib's 32 KiB, so each record's compressor sets up half
 * the window and chain table (0.4–0.8 µs less per record, 2–3%, and 64 KiB less memory per compressor). The
 * bytes are the same: the dictionary (4,449 bytes) and a body of at most SMALL_BODY_MAX stay within the
 * distance a 16 KiB window reaches (16 KiB − 262 bytes), so every match a 32 KiB window would take is still
 * taken; a larger dictionary or SMALL_BODY_MAX past that would still be read, in a few more bytes. A reader
 * inflates with a 32 KiB window, which reads a smaller window's stream.
 *
 * Most of the rest of the fixed cost is not in these options: loading the dictionary hashes every byte of it
 * (1.7 µs per KiB, about 7 µs) at any level, strategy or memLevel. Only a shorter suffix of it would cut that,
 * and below its last 4 KiB an exchange's records take 19% more bytes (their answers use masking.summary and
 * not_kept, near its start). Level 1 saves about 2 µs for 6–10% more bytes, and Z_FIXED 1–3 µs for 13–24%:
 * more than the small exchanges' bytes on disk per body byte can spare.
 */
const SMALL_WINDOW_BITS = 14;
const SMALL_OPTIONS: ZlibOptions = Object.freeze({ dictionary: EVENT_DICTIONARY, level: 6, windowBits: SMALL_WINDOW_BITS, chunkSize: SMALL_OUTPUT_CHUNK });

/**
 * Larger bodies (an answer's runs, which its end waits for) at Z_BEST_SPEED: there the time grows with the
 * bytes, and level 1 takes 2–3 times less of it (16 KiB of streamed text 20 µs instead of 42, 64 KiB 50
 * instead of 125) for 8–15% more bytes, a few thousandths of a byte on disk per body byte.
 */
const LARGE_OPTIONS: ZlibOptions = Object.freeze({ dictionary: EVENT_DICTIONARY, level: constants.Z_BEST_SPEED });

/**
 * Bodies up to this size are compressed on the event loop, where they take tens of microseconds (up to
 * about 110 for 16 KiB that does not compress). Larger ones go to libuv's threads unless the coder has
 * seen that its large bodies compress (below).
 */
const SYNC_DEFLATE_MAX = 16 * 1024;

/**
 * Up to this size a large body is compressed on the event loop too, once the coder's last large body
 * compressed to at most COMPRESSIBLE_RATIO: streamed text and JSON batches at level 1 take about 20–40 µs
 * for 16–64 KiB there, where a round trip through libuv's threads costs 60–100 µs more CPU for the same
 * bytes (a stream object, a thread hand-off, a callback). Bytes that do not compress cost about 14 µs per
 * KiB at any level, so a body that stops compressing stalls the loop once (up to about 1.3 ms at this
 * size) and sends the coder's next large bodies back to the threads; a writer whose large bodies alternate
 * pays that at most every other large record. A record of one larger event always goes there.
 */
const LARGE_SYNC_DEFLATE_MAX = 96 * 1024;
const COMPRESSIBLE_RATIO = 0.5;

const deflateRawAsync = promisify(deflateRaw) as (buf: Buffer, options: ZlibOptions) => Promise<Buffer>;

/** The packed events: each `u32 meta length ‖ meta JSON ‖ u32 payload length ‖ payload`, as parts. */
export function packEvents(events: readonly RecordEvent[]): { parts: Buffer[]; bytes: number } {
  const parts: Buffer[] = [];
  let bytes = 0;
  for (const e of events) {
    const json = JSON.stringify(e.meta);
    const payload = e.payload ?? EMPTY;
    // One buffer per event for both lengths and the metadata: fewer allocations than a buffer per part.
    const metaLength = Buffer.byteLength(json, 'utf8');
    const head = Buffer.allocUnsafe(8 + metaLength);
    head.writeUInt32BE(metaLength, 0);
    head.write(json, 4, 'utf8');
    head.writeUInt32BE(payload.length, 4 + metaLength);
    parts.push(head);
    if (payload.length > 0) parts.push(payload);
    bytes += 8 + metaLength + payload.length;
  }
  return { parts, bytes };
}

const EMPTY = Buffer.alloc(0);

/**
 * Codes the record bodies of one writer: stored or compressed as its file allows, and where a large body
 * is compressed (event loop or libuv's threads) by whether the writer's large bodies have been compressing.
 */
export class RecordCoder {
  readonly compression: RecordCompression;
  /** Whether the last body larger than SYNC_DEFLATE_MAX compressed to at most COMPRESSIBLE_RATIO. */
  #largeCompresses = false;

  constructor(compression: RecordCompression) {
    this.compression = compression;
  }

  /**
   * A version 3 record body for `events`, coding byte first: compressed when the file allows it and that is
   * smaller, stored otherwise. Resolves at once for bodies compressed on the event loop.
   */
  async code(events: readonly RecordEvent[]): Promise<Buffer[]> {
    const { parts, bytes } = packEvents(events);
    if (bytes > MAX_EVENTS_BYTES) throw new Error(`The events of one record take ${bytes} bytes, more than a reader accepts (${MAX_EVENTS_BYTES})`);
    if (this.compression === 'none') return [STORED, ...parts];
    const whole = parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes);
    const options = bytes <= SMALL_BODY_MAX ? SMALL_OPTIONS : LARGE_OPTIONS;
    const onLoop = bytes <= SYNC_DEFLATE_MAX || (this.#largeCompresses && bytes <= LARGE_SYNC_DEFLATE_MAX);
    const packed = onLoop ? deflateRawSync(whole, options) : await deflateRawAsync(whole, options);
    if (bytes > SYNC_DEFLATE_MAX) this.#largeCompresses = packed.length <= bytes * COMPRESSIBLE_RATIO;
    return packed.length < bytes ? [DEFLATED, packed] : [STORED, ...parts];
  }
}

/**
 * A version 3 record body for `events`, coding byte first: compressed when the file allows it and that is
 * smaller, stored otherwise. Resolves at once for small bodies (compressed synchronously).
 */
export function codeEvents(events: readonly RecordEvent[], compression: RecordCompression): Promise<Buffer[]> {
  return new RecordCoder(compression).code(events);
}

const STORED = Buffer.from([CODING.stored]);
const DEFLATED = Buffer.from([CODING.deflate]);

/** Encrypts one version 3 record holding `events` (one or more); returns its bytes on disk. */
export async function encodeRecord(options: {
  /** The session's data key; a KeyObject made once spares each record a copy of the key. */
  dataKey: Buffer | KeyObject;
  sessionAad: Buffer;
  prev: Buffer;
  events: readonly RecordEvent[];
  compression: RecordCompression;
  nonces?: NonceSequence;
  /** The writer's coder (with what it learnt of its bodies); by default one for this record alone. */
  coder?: RecordCoder;
}): Promise<Buffer> {
  if (options.events.length === 0) throw new Error('A record holds at least one event');
  const parts = await (options.coder ?? new RecordCoder(options.compression)).code(options.events);
  return sealRecord({ dataKey: options.dataKey, sessionAad: options.sessionAad, prev: options.prev, parts, ...(options.nonces === undefined ? {} : { nonces: options.nonces }) });
}

/** A decrypted record: the chain hash it carries and its events, in order. */
export interface DecodedRecord {
  readonly prev: Buffer;
  readonly events: readonly RecordEvent[];
}

/**
 * Decrypts one record of a file with this header into its events; throws if it does not authenticate,
 * inflate or parse. A version 1 or 2 record is one event; a version 3 record is compressed only where its
 * header allows it.
 */
export function decodeRecord(frame: Buffer, dataKey: Buffer, sessionAad: Buffer, header: Pick<SessionHeader, 'version' | 'compression'>): DecodedRecord {
  const plain = openRecord(frame, dataKey, sessionAad);
  if (plain.length < HASH_BYTES + CODING_BYTES) throw new Error('The record is too short');
  const prev = plain.subarray(0, HASH_BYTES);
  if (header.version !== FORMAT_VERSION) return { prev, events: [decodeSingleEvent(plain.subarray(HASH_BYTES))] };
  const coding = plain[HASH_BYTES];
  const body = plain.subarray(HASH_BYTES + CODING_BYTES);
  if (coding === CODING.stored) return { prev, events: unpackEvents(body) };
  if (coding !== CODING.deflate) throw new Error(`The record's coding ${String(coding)} is unknown`);
  if (header.compression !== 'deflate') throw new Error('The record is compressed in a file whose header says compression "none"');
  // Bounded: an authentic record never inflates past what a writer may put in one.
  return { prev, events: unpackEvents(inflateRawSync(body, { dictionary: EVENT_DICTIONARY, maxOutputLength: MAX_EVENTS_BYTES })) };
}

function unpackEvents(body: Buffer): RecordEvent[] {
  const events: RecordEvent[] = [];
  let at = 0;
  while (at < body.length) {
    if (at + 4 > body.length) throw new Error('The record ends inside an event');
    const metaLength = body.readUInt32BE(at);
    at += 4;
    if (at + metaLength + 4 > body.length) throw new Error('An event metadata length is out of range');
    const meta = checkedMeta(JSON.parse(body.subarray(at, at + metaLength).toString('utf8')));
    at += metaLength;
    const payloadLength = body.readUInt32BE(at);
    at += 4;
    if (at + payloadLength > body.length) throw new Error('An event payload length is out of range');
    events.push(payloadLength > 0 ? { meta, payload: body.subarray(at, at + payloadLength) } : { meta });
    at += payloadLength;
  }
  if (events.length === 0) throw new Error('The record holds no event');
  return events;
}
