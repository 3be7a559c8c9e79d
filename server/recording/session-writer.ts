import { createSecretKey, type KeyObject } from 'node:crypto';
import { dirname } from 'node:path';
import { SluiceError } from '../../shared/errors.js';
import type { WrappedSessionKey } from '../store/store.js';
import type { EventFields, EventType } from './event-types.js';
import type { RecordingFile, RecordingIo } from './file-io.js';
import type { KeyRing } from './key-ring.js';
import { encodeRecord, RecordCoder } from './record-events.js';
import { checkpointMessage, DEFAULT_COMPRESSION, encodeHeader, NonceSequence, sessionAad, sha256, type RecordCompression, type RecordEvent } from './record-format.js';
import { recordingUnavailable } from './recording-error.js';
import { signCheckpoint, type SigningKey } from './signing-key.js';

/** When written records reach stable storage: after every write, on a timer, or when the OS decides. */
export type FsyncMode = 'always' | 'batch' | 'never';

/** Options of one session file's writer. */
export interface SessionWriterOptions {
  readonly io: RecordingIo;
  /** Absolute path of the new spool file; its directory is created. */
  readonly path: string;
  readonly sessionId: string;
  /** Milliseconds since the epoch; every record's `t` counts from here. */
  readonly created: number;
  /** Makes the session's data key, wrapped under the ring's current master key. */
  readonly keyRing: KeyRing;
  readonly fsync: FsyncMode;
  /** For `batch`: longest time a written record waits for fsync. */
  readonly fsyncIntervalMs: number;
  /** Most bytes of payload waiting to be written; beyond it appends are refused rather than buffered. */
  readonly maxPendingBytes?: number;
  /** Whether records may be compressed (`storage.compression`); default DEFAULT_COMPRESSION. */
  readonly compression?: RecordCompression;
  /** Longest time a deferred append waits for an append to share its record with; default 20 ms. */
  readonly holdMs?: number;
  /** Told the outcome of every write and fsync (null on success), for readiness. */
  readonly onOutcome?: (error: Error | null) => void;
}

interface Pending {
  readonly t: number;
  readonly type: EventType;
  /** Fields, or for the checkpoint a function of the records before it and the last one's hash, which it signs. */
  readonly fields: object | ((records: number, prev: Buffer) => object);
  readonly payload?: Buffer;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
  /** Set once written or failed. */
  settled?: boolean;
  /** Told once it is settled (`written()`). */
  waiters?: (() => void)[];
}

const DEFAULT_MAX_PENDING = 64 * 1024 * 1024;
const DEFAULT_HOLD_MS = 20;
/**
 * Events written together share a record until their payloads reach this; the next starts another record.
 * A record is what a reader decrypts and inflates at once, so it stays small; an event larger than this
 * is a record of its own.
 */
const RECORD_SHARE_BYTES = 64 * 1024;

/**
 * Appends encrypted, chained records to one session file. Appends made in the same tick are written
 * together (one `writev`) and share records: one nonce, tag and chain hash for several events, each with
 * its own `seq` (counted across the session) and `t`. A deferred append (`defer`: what nothing waits for
 * on its own, such as an answer's head and runs) waits, bounded in time and bytes, for the next append, so
 * the events of an answer land in one record with its end. The chain advances only when a write
 * succeeded, and a failed write's partial bytes are cut off before the next one, so the file always ends on
 * a whole record and a later success continues the chain where it stood.
 */
export class SessionWriter {
  readonly path: string;
  readonly sessionId: string;
  readonly created: number;
  readonly keyId: string;
  /**
   * The session's data key wrapped under master key `keyId`. The file names the key id only: the owner
   * keeps this in the index (`Store.putSessionKey`), where erasing the session deletes it.
   */
  readonly wrappedKey: WrappedSessionKey;
  readonly #o: SessionWriterOptions;
  readonly #file: RecordingFile;
  /** The data key as a KeyObject, made once: each record's cipher then takes it without copying the bytes. */
  readonly #dataKey: KeyObject;
  readonly #nonces = new NonceSequence();
  readonly #aad: Buffer;
  readonly #compression: RecordCompression;
  /** Codes this file's records, learning whether its large records compress. */
  readonly #coder: RecordCoder;
  /** Appends to write at the next flush, in order. */
  #queue: Pending[] = [];
  /** Deferred appends, in order, waiting to join the next append (or their hold to end). */
  #held: Pending[] = [];
  #heldBytes = 0;
  /**
   * Armed while the hold may hold something. An append that empties the hold leaves it armed: re-arming a timer
   * for every answer (its head is deferred, its end is not) cost a timer set and cleared per exchange, while a
   * timer that finds the hold empty simply lapses, and one that finds newer appends waits out their time.
   */
  #holdTimer: NodeJS.Timeout | undefined;
  /** When (`performance.now()`, a clock no wall-clock step moves) what waits in the hold is written: its first append's arrival plus `holdMs`. */
  #holdUntil = 0;
  /** Payload bytes queued or held. */
  #queuedBytes = 0;
  /** The last append that left the hold: once it is settled, every one before it is. */
  #tail: Pending | undefined;
  #flushing = false;
  /** Events written (whole, on disk): the next event's `seq`. */
  #seq = 0;
  /** Records written (whole, on disk). */
  #records = 0;
  #prev: Buffer;
  /** Bytes of whole records (and header) on disk. */
  #size: number;
  /** A write failed part-way: bytes past `#size` must be cut before the next write. */
  #dirtyTail = false;
  #syncTimer: NodeJS.Timeout | undefined;
  #sealed = false;
  #closed = false;

  private constructor(options: SessionWriterOptions, file: RecordingFile, dataKey: Buffer, header: Buffer, wrappedKey: WrappedSessionKey) {
    this.#o = options;
    this.path = options.path;
    this.sessionId = options.sessionId;
    this.created = options.created;
    this.keyId = wrappedKey.keyId;
    this.wrappedKey = wrappedKey;
    this.#file = file;
    this.#dataKey = createSecretKey(dataKey);
    this.#aad = sessionAad(options.sessionId);
    this.#compression = options.compression ?? DEFAULT_COMPRESSION;
    this.#coder = new RecordCoder(this.#compression);
    this.#prev = sha256(header);
    this.#size = header.length;
  }

  /** Creates the file and writes its header (synced, so a session that exists on disk can always be read). */
  static async create(options: SessionWriterOptions): Promise<SessionWriter> {
    const { dataKey, wrapped } = options.keyRing.newDataKey(options.sessionId);
    const header = encodeHeader({ session: options.sessionId, created: options.created, keyId: wrapped.keyId, compression: options.compression ?? DEFAULT_COMPRESSION });
    let file: RecordingFile | undefined;
    try {
      await options.io.mkdir(dirname(options.path));
      file = await options.io.create(options.path);
      const written = await file.writev([header]);
      if (written !== header.length) throw Object.assign(new Error('short write of the session header'), { code: 'EIO' });
      if (options.fsync !== 'never') await file.sync();
    } catch (err) {
      await file?.close().catch(() => undefined);
      if (file !== undefined) await options.io.remove(options.path).catch(() => undefined);
      options.onOutcome?.(err as Error);
      throw recordingUnavailable(err, 'the session file');
    }
    options.onOutcome?.(null);
    return new SessionWriter(options, file, dataKey, header, wrapped);
  }

  /** Records written so far (whole, on disk); each holds one or more events. */
  get records(): number {
    return this.#records;
  }

  /** Events written so far (whole, on disk). */
  get events(): number {
    return this.#seq;
  }

  /** Hash of the last whole record (of the header before the first). */
  get lastHash(): Buffer {
    return this.#prev;
  }

  /** Milliseconds since the session started. */
  now(): number {
    return Date.now() - this.created;
  }

  /**
   * Appends a record; resolves once it is written (and synced, with `fsync: always`), rejects with
   * ERR_RECORDING_UNAVAILABLE naming the cause. `t` defaults to now.
   */
  append<T extends EventType>(type: T, fields: EventFields[T], payload?: Buffer, t?: number): Promise<void> {
    return this.#enqueue(type, fields, payload, t, false);
  }

  /**
   * Appends an event nothing waits for on its own: it is written with the next `append`, in the same
   * record where they fit, or once it has waited `holdMs` or the deferred payloads reach a record's worth,
   * whichever comes first. Resolves and rejects as `append` does, once written.
   */
  defer<T extends EventType>(type: T, fields: EventFields[T], payload?: Buffer, t?: number): Promise<void> {
    return this.#enqueue(type, fields, payload, t, true);
  }

  /**
   * Settles once every append made so far, except those still deferred, is written (or failed): an
   * exchange that must not write its end after a failed write of its own waits for this, then looks.
   */
  written(): Promise<void> {
    const tail = this.#tail;
    if (tail === undefined || tail.settled === true) return Promise.resolve();
    return new Promise((resolve) => (tail.waiters ??= []).push(resolve));
  }

  /** Appends `session.checkpoint`, signing the chain before it, then syncs and closes the file. */
  async seal(signingKey: SigningKey): Promise<{ records: number; finalHash: string }> {
    if (this.#sealed) throw new Error('The session is already sealed');
    this.#sealed = true;
    let result: { records: number; finalHash: string } | undefined;
    await this.#enqueue(
      'session.checkpoint',
      (records: number, prev: Buffer) => {
        const signature = signCheckpoint(signingKey, checkpointMessage(this.sessionId, records, prev));
        result = { records: records + 1, finalHash: prev.toString('hex') };
        return { session: this.sessionId, records, final_hash: prev.toString('hex'), signature: signature.toString('base64'), public_key: signingKey.fingerprint };
      },
      undefined,
      undefined,
      false,
    );
    await this.close();
    return result!;
  }

  /** Syncs and closes without a checkpoint (the session then reads as interrupted). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#sealed = true;
    this.#release();
    while (this.#flushing || this.#queue.length > 0) await new Promise((r) => setImmediate(r));
    this.#closed = true;
    clearTimeout(this.#syncTimer);
    clearTimeout(this.#holdTimer);
    this.#holdTimer = undefined;
    try {
      if (this.#o.fsync !== 'never') await this.#file.sync();
    } finally {
      await this.#file.close();
    }
  }

  #enqueue(type: EventType, fields: Pending['fields'], payload: Buffer | undefined, t: number | undefined, deferred: boolean): Promise<void> {
    if (this.#closed || (this.#sealed && type !== 'session.checkpoint')) {
      return Promise.reject(new SluiceError('ERR_RECORDING_UNAVAILABLE', { message: `Session ${this.sessionId} is already closed`, details: { cause: 'session closed' } }));
    }
    const size = payload?.length ?? 0;
    const limit = this.#o.maxPendingBytes ?? DEFAULT_MAX_PENDING;
    if (this.#queuedBytes + size > limit && this.#queue.length + this.#held.length > 0) {
      return Promise.reject(
        new SluiceError('ERR_RECORDING_UNAVAILABLE', {
          message: `The recording cannot keep up (${this.#queuedBytes} bytes waiting for the disk); the exchange was refused`,
          details: { cause: 'recording backlog' },
        }),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const pending: Pending = { t: t ?? this.now(), type, fields, payload, resolve, reject };
      this.#queuedBytes += size;
      if (!deferred) {
        // Whatever waits in the hold goes first, in the same write: order is the order of appends.
        this.#release();
        this.#push(pending);
        return;
      }
      const holdMs = this.#o.holdMs ?? DEFAULT_HOLD_MS;
      if (this.#held.length === 0) this.#holdUntil = performance.now() + holdMs;
      this.#held.push(pending);
      this.#heldBytes += size;
      if (this.#heldBytes >= RECORD_SHARE_BYTES) this.#release();
      else if (this.#holdTimer === undefined) this.#armHold(holdMs);
    });
  }

  #armHold(ms: number): void {
    this.#holdTimer = setTimeout(() => {
      this.#holdTimer = undefined;
      if (this.#held.length === 0) return;
      // The appends held now may have come after the ones this timer was armed for: they wait out their own time.
      const rest = this.#holdUntil - performance.now();
      if (rest > 0) this.#armHold(rest);
      else this.#release();
    }, ms);
    this.#holdTimer.unref();
  }

  /** Moves the deferred appends to the queue. */
  #release(): void {
    if (this.#held.length === 0) return;
    const held = this.#held;
    this.#held = [];
    this.#heldBytes = 0;
    for (const p of held) this.#push(p);
  }

  #push(pending: Pending): void {
    this.#queue.push(pending);
    this.#tail = pending;
    if (!this.#flushing) {
      this.#flushing = true;
      // Appends made in this tick join the same write.
      setImmediate(() => void this.#flush());
    }
  }

  async #flush(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue;
      this.#queue = [];
      for (const p of batch) this.#queuedBytes -= p.payload?.length ?? 0;
      let seq = this.#seq;
      let records = this.#records;
      let prev = this.#prev;
      const frames: Buffer[] = [];
      let bytes = 0;
      try {
        for (const group of recordsOf(batch)) {
          const events: RecordEvent[] = group.map((p) => {
            const fields = typeof p.fields === 'function' ? p.fields(records, prev) : p.fields;
            return { meta: { seq: seq++, t: p.t, type: p.type, ...fields }, ...(p.payload === undefined ? {} : { payload: p.payload }) };
          });
          const frame = await encodeRecord({ dataKey: this.#dataKey, sessionAad: this.#aad, prev, events, compression: this.#compression, nonces: this.#nonces, coder: this.#coder });
          frames.push(frame);
          bytes += frame.length;
          prev = sha256(frame);
          records++;
        }
        if (this.#dirtyTail) {
          await this.#file.truncate(this.#size);
          this.#dirtyTail = false;
        }
        await this.#writeAll(frames, bytes);
        if (this.#o.fsync === 'always') await this.#file.sync();
      } catch (err) {
        const error = recordingUnavailable(err);
        this.#o.onOutcome?.(err as Error);
        for (const p of batch) settle(p, error);
        continue;
      }
      this.#seq = seq;
      this.#records = records;
      this.#prev = prev;
      this.#size += bytes;
      this.#o.onOutcome?.(null);
      if (this.#o.fsync === 'batch') this.#scheduleSync();
      for (const p of batch) settle(p);
    }
    this.#flushing = false;
  }

  async #writeAll(frames: Buffer[], total: number): Promise<void> {
    let written = 0;
    let rest = frames;
    try {
      while (written < total) {
        const n = await this.#file.writev(rest);
        if (n <= 0) throw Object.assign(new Error('the disk accepted no bytes'), { code: 'EIO' });
        written += n;
        rest = skipBytes(rest, n);
      }
    } catch (err) {
      // Whether some bytes landed is unknowable after an error; cutting back to the last whole record is always safe.
      this.#dirtyTail = true;
      throw err;
    }
  }

  #scheduleSync(): void {
    if (this.#syncTimer !== undefined) return;
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = undefined;
      if (this.#closed) return;
      this.#file.sync().then(
        () => this.#o.onOutcome?.(null),
        (err: Error) => this.#o.onOutcome?.(err),
      );
    }, this.#o.fsyncIntervalMs);
    this.#syncTimer.unref();
  }
}

/**
 * Resolves or rejects an append, then tells whoever waits in `written()`: after the append's own
 * handlers, which were attached first, so a waiter sees what they noted about a failure.
 */
function settle(p: Pending, error?: Error): void {
  if (error === undefined) p.resolve();
  else p.reject(error);
  p.settled = true;
  for (const w of p.waiters ?? []) w();
}

/**
 * A batch cut into records: consecutive events share one until their payloads reach RECORD_SHARE_BYTES.
 * The checkpoint is a record of its own: its signature covers the records before it, and an event beside
 * it would be covered by nothing.
 */
function recordsOf(batch: readonly Pending[]): Pending[][] {
  const groups: Pending[][] = [];
  let current: Pending[] = [];
  let bytes = 0;
  for (const p of batch) {
    const size = p.payload?.length ?? 0;
    const alone = typeof p.fields === 'function';
    if (current.length > 0 && (alone || bytes + size > RECORD_SHARE_BYTES)) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
    current.push(p);
    bytes += size;
    if (alone) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

/** The buffers after the first `n` bytes. */
function skipBytes(buffers: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  let skip = n;
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}
