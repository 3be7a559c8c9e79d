import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { SluiceError } from '../../shared/errors.js';
import { ArchiveError, type RecordingArchive } from './archive/archive.js';
import type { RecordingIo } from './file-io.js';
import { SESSION_FILE_SUFFIX } from './record-format.js';
import { describeStorageFailure } from './recording-error.js';
import { noLog, type RecordingLog } from './recording-log.js';

/** How the shipper retries and how much the spool may hold; `SHIPPER_DEFAULTS` fills what is unset. */
export interface ShippingSettings {
  /** Retries after a failed upload before the object is quarantined (`storage.upload_retries`). */
  readonly retries?: number;
  /** First retry delay; it doubles per failure, with jitter (`storage.upload_backoff`). */
  readonly backoffMs?: number;
  /** Longest retry delay (`storage.upload_backoff_max`). */
  readonly backoffMaxMs?: number;
  /** Bytes the spool may hold waiting for the archive before new exchanges are refused (`storage.spool_max`). */
  readonly maxBytes?: number;
  /** Uploads at a time. */
  readonly concurrency?: number;
}

/** The defaults of `ShippingSettings`, here and nowhere else (the config schema's defaults say the same). */
export const SHIPPER_DEFAULTS = Object.freeze({
  retries: 10,
  backoffMs: 1_000,
  backoffMaxMs: 300_000,
  maxBytes: 10 * 1024 ** 3,
  // Two: one large session going up does not hold back the small ones behind it, and a slow bucket is not flooded.
  concurrency: 2,
});

/** Options of the shipper. */
export interface SpoolShipperOptions extends ShippingSettings {
  /** The spool directory; object `a/b.rec` is the file `root/a/b.rec`. */
  readonly root: string;
  readonly archive: RecordingArchive;
  /** Removes a shipped file; tests inject faults here. */
  readonly io: RecordingIo;
  /**
   * Checks a spooled object before each upload (it may have been altered while it waited); resolves to why it must not be shipped (it fails its
   * own verification), or undefined. A check that throws (the file cannot be read) quarantines it too.
   */
  readonly check?: (name: string) => Promise<string | undefined>;
  readonly log?: RecordingLog;
  /** In [0, 1): the jitter of retry delays. Default Math.random. */
  readonly random?: () => number;
  /** Bytes of open sessions not in the archive yet, counted against `maxBytes` with the finished ones. Default none. */
  readonly openBytes?: () => number;
  /** Told each object once the archive holds it (and the spool no longer does); what it starts is its own to finish. */
  readonly onShipped?: (name: string) => void;
}

/** Where an object is on its way to the archive. */
export type ShipmentStatus = 'spooled' | 'uploading' | 'quarantined';

/** One spooled object as operators see it (`sluice admin recordings`). */
export interface Shipment {
  readonly name: string;
  /** The session it belongs to (its file name without `.rec`). */
  readonly session: string;
  readonly status: ShipmentStatus;
  readonly bytes: number;
  /** Uploads tried so far. */
  readonly attempts: number;
  readonly lastError?: string;
  /** When the next try starts (ms since the epoch), while it waits for one. */
  readonly nextAttemptAt?: number;
  /** Why it is quarantined: kept in the spool and skipped until retried by hand. */
  readonly quarantineReason?: string;
}

/** Counts for readiness and metrics. */
export interface SpoolStats {
  /** Objects waiting for (or in) an upload. */
  readonly spooled: number;
  readonly quarantined: number;
  /** Bytes of every object held, quarantined ones included (they take space on the spool's disk), and of open sessions not uploaded yet. */
  readonly bytes: number;
  readonly maxBytes: number;
  /** Whether new exchanges are admitted (`bytes` is within `maxBytes`). */
  readonly admitting: boolean;
  /** Since start: bytes and objects shipped, uploads that failed. */
  readonly uploadedBytes: number;
  readonly uploaded: number;
  readonly failures: number;
}

interface Entry {
  readonly name: string;
  status: ShipmentStatus;
  bytes: number;
  attempts: number;
  lastError?: string;
  nextAttemptAt: number;
  quarantineReason?: string;
  /** Settled when the first attempt is over, whatever its outcome: what `ship` waits for. */
  firstAttempt?: { promise: Promise<void>; resolve: () => void };
}

type Outcome = { shipped: true; uploadedBytes: number } | { shipped: false; quarantine: string };

/**
 * Moves finished objects from the spool to the archive in the background: each is checked once, uploaded
 * (or adopted by a rename), and removed from the spool only once the archive holds it. A failed upload is
 * retried with exponential backoff and jitter; after `retries` retries the object is quarantined, as is one
 * that fails its check or whose name the archive already holds with other bytes. Quarantined objects stay
 * in the spool, are skipped, and never block the others. The unit is an object name under the spool, so a
 * segment of an open session can be shipped the same way as a whole sealed file.
 */
export class SpoolShipper {
  readonly root: string;
  readonly #o: SpoolShipperOptions;
  readonly #s: Required<ShippingSettings>;
  readonly #log: RecordingLog;
  readonly #random: () => number;
  readonly #entries = new Map<string, Entry>();
  readonly #running = new Set<Promise<void>>();
  #bytes = 0;
  #uploadedBytes = 0;
  #uploaded = 0;
  #failures = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: SpoolShipperOptions) {
    this.#o = options;
    this.root = options.root;
    this.#s = {
      retries: options.retries ?? SHIPPER_DEFAULTS.retries,
      backoffMs: options.backoffMs ?? SHIPPER_DEFAULTS.backoffMs,
      backoffMaxMs: options.backoffMaxMs ?? SHIPPER_DEFAULTS.backoffMaxMs,
      maxBytes: options.maxBytes ?? SHIPPER_DEFAULTS.maxBytes,
      concurrency: Math.max(1, options.concurrency ?? SHIPPER_DEFAULTS.concurrency),
    };
    this.#log = options.log ?? noLog;
    this.#random = options.random ?? Math.random;
  }

  /**
   * Queues a finished object and resolves once its first upload has been tried (shipped, or left to retry or
   * quarantined): a caller that seals a session and stops finds it in the archive when the archive works.
   * Never rejects. An object not in the spool has nothing to ship.
   */
  async ship(name: string): Promise<void> {
    const entry = await this.#add(name, true);
    await entry?.firstAttempt?.promise;
  }

  /** Queues a finished object without waiting for its upload (what a restart finds left in the spool). */
  async enqueue(name: string): Promise<void> {
    await this.#add(name, false);
  }

  /** Every object held, in name order. */
  list(): Shipment[] {
    return [...this.#entries.values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((e) => ({
        name: e.name,
        session: basename(e.name, SESSION_FILE_SUFFIX),
        status: e.status,
        bytes: e.bytes,
        attempts: e.attempts,
        ...(e.lastError === undefined ? {} : { lastError: e.lastError }),
        ...(e.status === 'spooled' ? { nextAttemptAt: e.nextAttemptAt } : {}),
        ...(e.quarantineReason === undefined ? {} : { quarantineReason: e.quarantineReason }),
      }));
  }

  /**
   * Clears the quarantine of a session's objects (or one waiting for a retry) and tries them now, checks
   * included. Returns the objects retried; none when the session has nothing in the spool.
   */
  retry(session: string): string[] {
    const retried: string[] = [];
    for (const e of this.#entries.values()) {
      if (basename(e.name, SESSION_FILE_SUFFIX) !== session || e.status === 'uploading') continue;
      e.status = 'spooled';
      e.attempts = 0;
      e.nextAttemptAt = 0;
      delete e.quarantineReason;
      retried.push(e.name);
    }
    if (retried.length > 0) {
      this.#log.info({ session, objects: retried }, 'spooled session retried by hand');
      this.#pump();
    }
    return retried;
  }

  stats(): SpoolStats {
    let quarantined = 0;
    for (const e of this.#entries.values()) if (e.status === 'quarantined') quarantined++;
    const bytes = this.#heldBytes();
    return {
      spooled: this.#entries.size - quarantined,
      quarantined,
      bytes,
      maxBytes: this.#s.maxBytes,
      admitting: bytes <= this.#s.maxBytes,
      uploadedBytes: this.#uploadedBytes,
      uploaded: this.#uploaded,
      failures: this.#failures,
    };
  }

  /**
   * Why a new exchange must be refused: the spool holds more than `maxBytes` waiting for the archive
   * (fail-closed: past it the local disk, the durability point, would fill). Undefined while there is room;
   * uploads that drain it admit exchanges again by themselves.
   */
  refusal(): SluiceError | undefined {
    const bytes = this.#heldBytes();
    if (bytes <= this.#s.maxBytes) return undefined;
    const cause = `recording spool full: ${bytes} bytes wait for the archive, storage.spool_max is ${this.#s.maxBytes}`;
    return new SluiceError('ERR_RECORDING_UNAVAILABLE', {
      message: `The recording spool ${this.root} is full (${bytes} bytes of sessions wait for the archive; storage.spool_max is ${this.#s.maxBytes} bytes); the exchange was refused`,
      details: { cause },
    });
  }

  /** Stops retrying; uploads in flight finish (each is bounded by the archive's own timeouts). */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await Promise.all([...this.#running]);
    for (const e of this.#entries.values()) e.firstAttempt?.resolve();
  }

  async #add(name: string, wait: boolean): Promise<Entry | undefined> {
    const existing = this.#entries.get(name);
    if (existing !== undefined) return existing;
    // A file that cannot be looked at is still queued: its attempts fail, and it ends quarantined with the reason.
    const bytes = await sizeOf(join(this.root, name)).catch(() => 0);
    if (bytes === undefined || this.#entries.has(name)) return this.#entries.get(name);
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    const entry: Entry = { name, status: 'spooled', bytes, attempts: 0, nextAttemptAt: 0, ...(wait ? { firstAttempt: { promise, resolve } } : {}) };
    this.#entries.set(name, entry);
    this.#bytes += bytes;
    if (this.#closed) entry.firstAttempt?.resolve();
    this.#pump();
    return entry;
  }

  /** Starts what is due, up to the concurrency; arms one timer for the earliest retry. */
  #pump(): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const now = Date.now();
    const waiting = [...this.#entries.values()].filter((e) => e.status === 'spooled').sort((a, b) => a.nextAttemptAt - b.nextAttemptAt);
    for (const e of waiting) {
      if (this.#running.size >= this.#s.concurrency) return;
      if (e.nextAttemptAt > now) {
        this.#timer = setTimeout(() => this.#pump(), e.nextAttemptAt - now);
        this.#timer.unref();
        return;
      }
      const run = this.#attempt(e);
      this.#running.add(run);
      void run.finally(() => {
        this.#running.delete(run);
        this.#pump();
      });
    }
  }

  async #attempt(e: Entry): Promise<void> {
    e.status = 'uploading';
    e.attempts++;
    try {
      const outcome = await this.#upload(e);
      if (outcome.shipped) {
        this.#forget(e);
        this.#uploaded++;
        this.#uploadedBytes += outcome.uploadedBytes;
        this.#o.onShipped?.(e.name);
      } else {
        this.#quarantine(e, outcome.quarantine);
      }
    } catch (err) {
      this.#failures++;
      e.lastError = describeStorageFailure(err);
      if (e.attempts > this.#s.retries) {
        this.#quarantine(e, `the upload failed ${e.attempts} times; last: ${e.lastError}`);
      } else {
        e.status = 'spooled';
        e.nextAttemptAt = Date.now() + this.#delay(e.attempts);
        this.#log.warn({ object: e.name, attempts: e.attempts, retry_in_ms: e.nextAttemptAt - Date.now(), err: e.lastError }, 'a finished session could not be shipped to the archive; it stays in the spool and is retried');
      }
    } finally {
      e.firstAttempt?.resolve();
      delete e.firstAttempt;
    }
  }

  /** Exponential from `backoffMs`, capped, with equal jitter: at least half the step, so retries spread out without bunching at zero. */
  #delay(failures: number): number {
    const step = Math.min(this.#s.backoffMaxMs, this.#s.backoffMs * 2 ** Math.min(failures - 1, 52));
    return Math.round(step / 2 + this.#random() * (step / 2));
  }

  async #upload(e: Entry): Promise<Outcome> {
    const { archive, io } = this.#o;
    const path = join(this.root, e.name);
    const size = await sizeOf(path);
    // Gone from the spool: another process sharing it (a worker) shipped it, or an operator moved it.
    if (size === undefined) return { shipped: true, uploadedBytes: 0 };
    e.bytes = this.#resize(e.bytes, size);
    const checked = await versionOf(path);
    if (this.#o.check !== undefined) {
      let problem: string | undefined;
      try {
        problem = await this.#o.check(e.name);
      } catch (err) {
        problem = `it cannot be read: ${describeStorageFailure(err)}`;
      }
      if (problem !== undefined) return { shipped: false, quarantine: `it fails verification: ${problem}` };
    }
    try {
      if (archive.adoptFile !== undefined) {
        try {
          await archive.adoptFile(path, e.name);
          return { shipped: true, uploadedBytes: size };
        } catch (err) {
          // A directory archive on another file system (a shared mount) cannot take the file by a rename: copy it.
          if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
        }
      }
      await archive.put(e.name, createReadStream(path));
      // Changed between its check and the end of its upload: the object may hold bytes nobody checked. It is
      // this upload's own (a put never replaces), so it is taken back, and the next attempt checks again.
      if ((await versionOf(path)) !== checked) {
        await archive.delete(e.name);
        throw new Error(`${e.name} changed in the spool while it was shipped; it is checked again`);
      }
    } catch (err) {
      if (!(err instanceof ArchiveError && err.code === 'ARCHIVE_EXISTS')) throw err;
      // An earlier upload landed but the spool copy outlived it (its removal failed, or a crash came between):
      // the same bytes mean the work is done. Other bytes under the name are never overwritten.
      const same = await sameBytes(archive, e.name, path);
      if (!same) return { shipped: false, quarantine: 'the archive already holds a different object under its name; the spool copy is kept and the object is not replaced' };
      await io.remove(path);
      return { shipped: true, uploadedBytes: 0 };
    }
    await io.remove(path);
    return { shipped: true, uploadedBytes: size };
  }

  #quarantine(e: Entry, reason: string): void {
    e.status = 'quarantined';
    e.quarantineReason = reason;
    this.#log.warn({ object: e.name, attempts: e.attempts, reason }, 'a spooled session is quarantined: it stays in the spool and is not shipped until retried (sluice admin recordings --retry)');
  }

  /** Finished objects held, and open sessions' bytes not uploaded yet. */
  #heldBytes(): number {
    return this.#bytes + (this.#o.openBytes?.() ?? 0);
  }

  #forget(e: Entry): void {
    this.#entries.delete(e.name);
    this.#bytes -= e.bytes;
  }

  /** The object grew or shrank since it was queued (a segment, later): the total follows. */
  #resize(was: number, now: number): number {
    this.#bytes += now - was;
    return now;
  }
}

/** What tells one state of a file from the next: size, change time and inode. */
async function versionOf(path: string): Promise<string> {
  const s = await stat(path, { bigint: true });
  return `${s.size}:${s.ctimeNs}:${s.mtimeNs}:${s.ino}`;
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Whether the archive's object `name` holds exactly the bytes of the file at `path`: same size, same SHA-256. */
async function sameBytes(archive: RecordingArchive, name: string, path: string): Promise<boolean> {
  const local = await digestOf(createReadStream(path));
  const remote = await digestOf(await archive.get(name));
  return local.size === remote.size && local.sha256 === remote.sha256;
}

async function digestOf(stream: AsyncIterable<Uint8Array>): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    size += chunk.byteLength;
  }
  return { size, sha256: hash.digest('hex') };
}
