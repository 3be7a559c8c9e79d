import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { SluiceError } from '../../shared/errors.js';
import { checkObjectName, isArchiveNotFound, listAll, type ArchiveReader, type RecordingArchive } from './archive/archive.js';
import { FsArchive } from './archive/fs-archive.js';
import type { RecordingIo } from './file-io.js';
import { SESSION_FILE_SUFFIX } from './record-format.js';
import type { RecordingLog } from './recording-log.js';
import { SpoolShipper, type Shipment, type ShippingSettings, type SpoolStats } from './spool-shipper.js';
import { SESSIONS_DIR } from './storage-layout.js';

/** Options of the spool. */
export interface SessionSpoolOptions {
  /** The local directory open sessions are appended under, at their archive names. */
  readonly root: string;
  /** Spool file operations; tests inject faults here. */
  readonly io: RecordingIo;
  /** Where sealed sessions go. */
  readonly archive: RecordingArchive;
  /** Retries, backoff and the spool's cap, for an archive the spool is not part of; defaults in SHIPPER_DEFAULTS. */
  readonly shipping?: ShippingSettings;
  /** Checks a finished session file before it is shipped; resolves to why it must not be (see SpoolShipper). */
  readonly check?: (name: string) => Promise<string | undefined>;
  readonly log?: RecordingLog;
}

/**
 * The local spool: where open sessions are appended (the durability point of fail-closed recording),
 * each at `root/<archive name>`, and handed to the archive once sealed. With the directory archive the
 * spool shares its root (`storage.dir`), so a session's file is written where it will stay and the
 * hand-off moves nothing; with a remote archive the sealed file is shipped in the background (SpoolShipper:
 * retried, quarantined when it cannot be), then removed here, and the bytes waiting bound what is admitted.
 */
export class SessionSpool {
  readonly root: string;
  /**
   * What readers see: this spool's sessions (open ones, which the archive does not hold yet), then the
   * archive. A session being handed off is found on one side or the other: see `#readerOf`.
   */
  readonly reader: ArchiveReader;
  readonly #io: RecordingIo;
  /** True when a spool file already is its archive object (the directory archive over the same root). */
  readonly #inPlace: boolean;
  /** Ships finished files to the archive; none when the spool is the archive. */
  readonly #shipper: SpoolShipper | undefined;

  constructor(options: SessionSpoolOptions) {
    this.root = resolve(options.root);
    this.#io = options.io;
    this.#inPlace = options.archive instanceof FsArchive && options.archive.root === this.root;
    this.reader = this.#readerOf(options.archive);
    this.#shipper = this.#inPlace
      ? undefined
      : new SpoolShipper({ root: this.root, archive: options.archive, io: options.io, ...options.shipping, ...(options.check === undefined ? {} : { check: options.check }), ...(options.log === undefined ? {} : { log: options.log }) });
  }

  /** The spool file of archive name `name`. */
  pathOf(name: string): string {
    checkObjectName(name);
    return join(this.root, name);
  }

  /** Removes the spool file of a session that could not open (nothing of it was recorded). */
  discard(name: string): Promise<void> {
    return this.#io.remove(this.pathOf(name));
  }

  /**
   * Gives a sealed (or interrupted) session's file to the archive; the spool keeps nothing of it once the
   * archive holds it. Resolves when the first upload has been tried: a failed one is retried in the
   * background, and the file stays here (where readers find it) until it is shipped or quarantined.
   * A file not here has nothing to give.
   */
  async handOff(name: string): Promise<void> {
    this.pathOf(name);
    await this.#shipper?.ship(name);
  }

  /**
   * Queues what a previous run left in the spool: each finished session file that `finished(name)` says
   * is no longer being written (files of sessions open in another process sharing the spool stay). Uploads
   * run in the background; resolves to the number queued.
   */
  async recover(finished: (name: string) => Promise<boolean>): Promise<number> {
    const shipper = this.#shipper;
    if (shipper === undefined) return 0;
    let queued = 0;
    // The spool is laid out as a directory archive is, so its listing skips temporary and hidden files.
    for await (const object of listAll(new FsArchive({ root: this.root }), `${SESSIONS_DIR}/`)) {
      if (!object.name.endsWith(SESSION_FILE_SUFFIX) || !(await finished(object.name))) continue;
      await shipper.enqueue(object.name);
      queued++;
    }
    return queued;
  }

  /** The finished files waiting in the spool (none when the spool is the archive). */
  shipments(): Shipment[] {
    return this.#shipper?.list() ?? [];
  }

  /** Clears a session's quarantine and ships it now; the objects retried (none: nothing of it is spooled). */
  retry(session: string): string[] {
    return this.#shipper?.retry(session) ?? [];
  }

  /** Spool counts; undefined when the spool is the archive (nothing is ever waiting). */
  stats(): SpoolStats | undefined {
    return this.#shipper?.stats();
  }

  /** Why a new exchange must be refused (the spool is past `storage.spool_max`), or undefined. */
  refusal(): SluiceError | undefined {
    return this.#shipper?.refusal();
  }

  /** Stops retries; uploads in flight finish. What is left is shipped by the next start. */
  close(): Promise<void> {
    return this.#shipper?.close() ?? Promise.resolve();
  }

  /**
   * Writes and syncs a small file where sessions are spooled: what readiness probes while storage fails,
   * so the gateway turns ready again by itself once the disk recovers, even with no traffic.
   */
  async probe(): Promise<void> {
    const dir = join(this.root, SESSIONS_DIR);
    const path = join(dir, `.probe-${randomBytes(6).toString('hex')}`);
    await this.#io.mkdir(dir);
    const file = await this.#io.create(path);
    try {
      await file.writev([Buffer.from('probe')]);
      await file.sync();
    } finally {
      await file.close().catch(() => undefined);
      await this.#io.remove(path).catch(() => undefined);
    }
  }

  /** See `reader`. */
  #readerOf(archive: RecordingArchive): ArchiveReader {
    if (this.#inPlace) return archive;
    // The spool is laid out as a directory archive is: object names are paths under its root.
    const local = new FsArchive({ root: this.root });
    // The spool first: a hand-off puts the file into the archive and only then removes it here, so a file
    // missing from the spool is already in the archive. Asked the other way round, a hand-off that
    // finished between the two reads would hide a file that exists the whole time.
    const either = async <T>(read: (from: ArchiveReader) => Promise<T>): Promise<T> => {
      try {
        return await read(local);
      } catch (err) {
        if (!isArchiveNotFound(err)) throw err;
        return read(archive);
      }
    };
    return {
      get: (name) => either((from) => from.get(name)),
      range: (name, offset, length) => either((from) => from.range(name, offset, length)),
    };
  }
}
