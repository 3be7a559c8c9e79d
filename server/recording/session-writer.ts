import { dirname } from 'node:path';
import { SluiceError } from '../../shared/errors.js';
import type { WrappedSessionKey } from '../store/store.js';
import type { EventFields, EventType } from './event-types.js';
import type { RecordingFile, RecordingIo } from './file-io.js';
import type { KeyRing } from './key-ring.js';
import { checkpointMessage, encodeHeader, encodeRecord, NonceSequence, sessionAad, sha256 } from './record-format.js';
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
  /** Told the outcome of every write and fsync (null on success), for readiness. */
  readonly onOutcome?: (error: Error | null) => void;
}

interface Pending {
  readonly t: number;
  readonly type: EventType;
  /** Fields, or a function of the record's position for the checkpoint, which signs the chain before it. */
  readonly fields: object | ((seq: number, prev: Buffer) => object);
  readonly payload?: Buffer;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

const DEFAULT_MAX_PENDING = 64 * 1024 * 1024;

/**
 * Appends encrypted, chained records to one session file. Appends made in the same tick are written
 * together (one `writev`); the chain advances only when a write succeeded, and a failed write's partial
 * bytes are cut off before the next one, so the file always ends on a whole record and a later success
 * continues the chain where it stood.
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
  readonly #dataKey: Buffer;
  readonly #nonces = new NonceSequence();
  readonly #aad: Buffer;
  #queue: Pending[] = [];
  #queuedBytes = 0;
  #flushing = false;
  #seq = 0;
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
    this.#dataKey = dataKey;
    this.#aad = sessionAad(options.sessionId);
    this.#prev = sha256(header);
    this.#size = header.length;
  }

  /** Creates the file and writes its header (synced, so a session that exists on disk can always be read). */
  static async create(options: SessionWriterOptions): Promise<SessionWriter> {
    const { dataKey, wrapped } = options.keyRing.newDataKey(options.sessionId);
    const header = encodeHeader({ session: options.sessionId, created: options.created, keyId: wrapped.keyId });
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

  /** Records written so far (whole, on disk). */
  get records(): number {
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
    return this.#enqueue(type, fields, payload, t);
  }

  /** Appends `session.checkpoint`, signing the chain before it, then syncs and closes the file. */
  async seal(signingKey: SigningKey): Promise<{ records: number; finalHash: string }> {
    if (this.#sealed) throw new Error('The session is already sealed');
    this.#sealed = true;
    let result: { records: number; finalHash: string } | undefined;
    await this.#enqueue('session.checkpoint', (seq: number, prev: Buffer) => {
      const signature = signCheckpoint(signingKey, checkpointMessage(this.sessionId, seq, prev));
      result = { records: seq + 1, finalHash: prev.toString('hex') };
      return { session: this.sessionId, records: seq, final_hash: prev.toString('hex'), signature: signature.toString('base64'), public_key: signingKey.fingerprint };
    }, undefined);
    await this.close();
    return result!;
  }

  /** Syncs and closes without a checkpoint (the session then reads as interrupted). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#sealed = true;
    while (this.#flushing || this.#queue.length > 0) await new Promise((r) => setImmediate(r));
    this.#closed = true;
    clearTimeout(this.#syncTimer);
    try {
      if (this.#o.fsync !== 'never') await this.#file.sync();
    } finally {
      await this.#file.close();
    }
  }

  #enqueue(type: EventType, fields: Pending['fields'], payload: Buffer | undefined, t?: number): Promise<void> {
    if (this.#closed || (this.#sealed && type !== 'session.checkpoint')) {
      return Promise.reject(new SluiceError('ERR_RECORDING_UNAVAILABLE', { message: `Session ${this.sessionId} is already closed`, details: { cause: 'session closed' } }));
    }
    const size = payload?.length ?? 0;
    const limit = this.#o.maxPendingBytes ?? DEFAULT_MAX_PENDING;
    if (this.#queuedBytes + size > limit && this.#queue.length > 0) {
      return Promise.reject(
        new SluiceError('ERR_RECORDING_UNAVAILABLE', {
          message: `The recording cannot keep up (${this.#queuedBytes} bytes waiting for the disk); the exchange was refused`,
          details: { cause: 'recording backlog' },
        }),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ t: t ?? this.now(), type, fields, payload, resolve, reject });
      this.#queuedBytes += size;
      if (!this.#flushing) {
        this.#flushing = true;
        // Appends made in this tick join the same write.
        setImmediate(() => void this.#flush());
      }
    });
  }

  async #flush(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue;
      this.#queue = [];
      for (const p of batch) this.#queuedBytes -= p.payload?.length ?? 0;
      let seq = this.#seq;
      let prev = this.#prev;
      const frames: Buffer[] = [];
      let bytes = 0;
      try {
        for (const p of batch) {
          const fields = typeof p.fields === 'function' ? p.fields(seq, prev) : p.fields;
          const frame = encodeRecord({ dataKey: this.#dataKey, sessionAad: this.#aad, prev, meta: { seq, t: p.t, type: p.type, ...fields }, payload: p.payload, nonces: this.#nonces });
          frames.push(frame);
          bytes += frame.length;
          prev = sha256(frame);
          seq++;
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
        for (const p of batch) p.reject(error);
        continue;
      }
      this.#seq = seq;
      this.#prev = prev;
      this.#size += bytes;
      this.#o.onOutcome?.(null);
      if (this.#o.fsync === 'batch') this.#scheduleSync();
      for (const p of batch) p.resolve();
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
