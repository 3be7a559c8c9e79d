import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { SluiceError } from '../../shared/errors.js';
import { checkObjectName, isArchiveNotFound, listAll, type ArchiveReader, type RecordingArchive } from './archive/archive.js';
import { FsArchive } from './archive/fs-archive.js';
import type { RecordingIo } from './file-io.js';
import { SESSION_FILE_SUFFIX } from './record-format.js';
import type { RecordingLog } from './recording-log.js';
import { SegmentUploader } from './segment-uploader.js';
import { SegmentedReader, type SegmentAwareReader } from './segmented-reader.js';
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
  /** How often and in what size open sessions go up as segments, for an archive the spool is not part of; defaults in SEGMENT_DEFAULTS. */
  readonly segments?: { readonly intervalMs?: number; readonly segmentMaxBytes?: number };
  /** Checks a finished session file before it is shipped; resolves to why it must not be (see SpoolShipper). */
  readonly check?: (name: string) => Promise<string | undefined>;
  readonly log?: RecordingLog;
}

/**
 * The local spool: where open sessions are appended (the durability point of fail-closed recording),
 * each at `root/<archive name>`, and handed to the archive once sealed. With the directory archive the
 * spool shares its root (`storage.dir`), so a session's file is written where it will stay and the
 * hand-off moves nothing; with a remote archive an open session's new records go up as segments every
 * upload interval (SegmentUploader), so other replicas read it while it runs, and the sealed file is shipped
 * whole in the background (SpoolShipper: retried, quarantined when it cannot be), replacing its segments,
 * then removed here; the bytes waiting (open and sealed) bound what is admitted.
 */
export class SessionSpool {
  readonly root: string;
  /**
   * What readers see: this spool's sessions (open ones, which the archive does not hold yet), then the
   * archive, whole or (open on another replica, or never sealed) as its segments. A session being handed
   * off is found on one side or the other: see `#readerOf`.
   */
  readonly reader: SegmentAwareReader;
  readonly #io: RecordingIo;
  /** True when a spool file already is its archive object (the directory archive over the same root). */
  readonly #inPlace: boolean;
  /** Ships finished files to the archive; none when the spool is the archive. */
  readonly #shipper: SpoolShipper | undefined;
  /** Uploads open sessions' segments; none when the spool is the archive (there, open files are read in place). */
  readonly #segments: SegmentUploader | undefined;

  constructor(options: SessionSpoolOptions) {
    this.root = resolve(options.root);
    this.#io = options.io;
    this.#inPlace = options.archive instanceof FsArchive && options.archive.root === this.root;
    this.reader = this.#readerOf(options.archive);
    const segments = this.#inPlace ? undefined : new SegmentUploader({ root: this.root, archive: options.archive, ...options.segments, ...(options.log === undefined ? {} : { log: options.log }) });
    this.#segments = segments;
    this.#shipper =
      segments === undefined
        ? undefined
        : new SpoolShipper({
            root: this.root,
            archive: options.archive,
            io: options.io,
            ...options.shipping,
            ...(options.check === undefined ? {} : { check: options.check }),
            ...(options.log === undefined ? {} : { log: options.log }),
            // Open sessions' bytes not yet in the archive take the spool's disk as finished ones do.
            openBytes: () => segments.pendingBytes(),
            // The whole sealed file supersedes the segments: it alone carries the signed checkpoint.
            onShipped: (name) => void segments.removeSegments(name),
          });
  }

  /** The spool file of archive name `name`. */
  pathOf(name: string): string {
    checkObjectName(name);
    return join(this.root, name);
  }

  /** Removes the spool file of a session that could not open (nothing of it was recorded). */
  async discard(name: string): Promise<void> {
    this.#segments?.untrack(name);
    await this.#io.remove(this.pathOf(name));
  }

  /** Starts uploading an open session's records as segments while it runs (`storage.upload_interval`). */
  opened(name: string): void {
    this.pathOf(name);
    this.#segments?.track(name);
  }

  /** Uploads every open session's new whole records now, whatever the interval says. */
  uploadSegments(): Promise<void> {
    return this.#segments?.tick(true) ?? Promise.resolve();
  }

  /**
   * Gives a sealed (or interrupted) session's file to the archive; the spool keeps nothing of it once the
   * archive holds it. Resolves when the first upload has been tried: a failed one is retried in the
   * background, and the file stays here (where readers find it) until it is shipped or quarantined.
   * A file not here has nothing to give.
   */
  async handOff(name: string): Promise<void> {
    this.pathOf(name);
    // No segment may be cut from a file that is being shipped whole.
    this.#segments?.untrack(name);
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
  async close(): Promise<void> {
    await this.#shipper?.close();
    await this.#segments?.close();
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
  #readerOf(archive: RecordingArchive): SegmentAwareReader {
    // In place, an open session's file is its object: there are never segments to assemble.
    if (this.#inPlace) return { get: (name) => archive.get(name), range: (name, offset, length) => archive.range(name, offset, length), segmentLayout: async () => undefined };
    const remote = new SegmentedReader(archive);
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
        return read(remote);
      }
    };
    return {
      get: (name) => either((from) => from.get(name)),
      range: (name, offset, length) => either((from) => from.range(name, offset, length)),
      segmentLayout: async (name) => {
        try {
          await local.range(name, 0, 0);
          return undefined;
        } catch (err) {
          if (!isArchiveNotFound(err)) throw err;
          return remote.segmentLayout(name);
        }
      },
    };
  }
}
