import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ArchiveError, listAll, type RecordingArchive } from './archive/archive.js';
import { decodeHeader, headerLength, HEADER_PREFIX, LENGTH_BYTES, MAX_RECORD_BYTES, NONCE_BYTES, sha256, TAG_BYTES } from './record-format.js';
import { describeStorageFailure } from './recording-error.js';
import { noLog, type RecordingLog } from './recording-log.js';
import { encodeSegment, segmentObjectName, segmentPrefixOf, type SegmentMeta } from './segment-format.js';

/** Options of the segment uploader; defaults in SEGMENT_DEFAULTS. */
export interface SegmentUploaderOptions {
  /** The spool directory; session `a/b.rec` is the file `root/a/b.rec`. */
  readonly root: string;
  readonly archive: RecordingArchive;
  /** An open session's new records go up at least this often (`storage.upload_interval`). */
  readonly intervalMs?: number;
  /** ...and as soon as this many bytes wait, in segments of about this size (`storage.segment_max`). */
  readonly segmentMaxBytes?: number;
  readonly log?: RecordingLog;
}

/** The defaults of the uploader, here and nowhere else (the config schema's defaults say the same). */
export const SEGMENT_DEFAULTS = Object.freeze({
  intervalMs: 10_000,
  segmentMaxBytes: 8 * 1024 * 1024,
});

/** How often waiting bytes are looked at, at most: a busy session reaches `segmentMaxBytes` between two intervals. */
const SIZE_POLL_MS = 1_000;

interface Tracked {
  readonly name: string;
  /** Bytes of the file already in the archive as segments. */
  offset: number;
  /** Records already in the archive. */
  records: number;
  /** Hash the next segment's first record chains to. */
  prev: string;
  keyId: string;
  /** The next segment's number. */
  segment: number;
  /** A segment whose upload failed: retried as it is, never re-cut, so a put that landed unseen is recognised. */
  pending?: { readonly meta: SegmentMeta; readonly object: Buffer };
  /** The file's size when last looked at. */
  size: number;
  lastUploadAt: number;
  /** The upload in flight, if any. */
  running?: Promise<void>;
  /** Set when its segments cannot go on (the archive holds other bytes under a segment's name, an unframeable file). */
  stopped?: string;
}

/**
 * Uploads open sessions' new records to the archive as segments while they run (segment-format.ts), so
 * other replicas read a long session before it is sealed and a replica lost with its disk loses at most
 * one interval of it. Each segment is cut at a record boundary from what the file holds; a failed upload is
 * retried with the same bytes at the next tick. The spool removes a session's segments once its whole
 * sealed file is in the archive.
 */
export class SegmentUploader {
  readonly #o: SegmentUploaderOptions;
  readonly #intervalMs: number;
  readonly #segmentMax: number;
  readonly #log: RecordingLog;
  readonly #sessions = new Map<string, Tracked>();
  /** Uploads still in flight of sessions no longer tracked: their segments are removed only after them. */
  readonly #draining = new Map<string, Promise<void>>();
  readonly #removals = new Set<Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: SegmentUploaderOptions) {
    this.#o = options;
    this.#intervalMs = Math.max(1, options.intervalMs ?? SEGMENT_DEFAULTS.intervalMs);
    this.#segmentMax = Math.max(1, options.segmentMaxBytes ?? SEGMENT_DEFAULTS.segmentMaxBytes);
    this.#log = options.log ?? noLog;
  }

  /** Starts uploading segments of an open session's spool file. */
  track(name: string): void {
    if (this.#closed || this.#sessions.has(name)) return;
    this.#sessions.set(name, { name, offset: 0, records: 0, prev: '', keyId: '', segment: 0, size: 0, lastUploadAt: Date.now() });
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => void this.tick(), Math.min(this.#intervalMs, SIZE_POLL_MS));
      this.#timer.unref();
    }
  }

  /**
   * Stops uploading a session's segments (it is sealed, or was never opened). An upload in flight is not
   * waited for, so a seal never waits on a slow bucket: no segment follows it, and `removeSegments` waits for it.
   */
  untrack(name: string): void {
    const t = this.#sessions.get(name);
    if (t === undefined) return;
    this.#sessions.delete(name);
    if (t.running !== undefined) {
      const drained = t.running.finally(() => {
        if (this.#draining.get(name) === drained) this.#draining.delete(name);
      });
      this.#draining.set(name, drained);
    }
    if (this.#sessions.size === 0) this.#stopTimer();
  }

  /** Uploads what is due now: every session whose interval has passed or with a segment's worth waiting; `all` uploads every session's new records. */
  async tick(all = false): Promise<void> {
    const now = Date.now();
    await Promise.all(
      [...this.#sessions.values()].map((t) => {
        if (t.running !== undefined || t.stopped !== undefined) return t.running;
        // Marked running before the first await: two ticks must never cut the same bytes twice.
        t.running = (async () => {
          t.size = await sizeOf(join(this.#o.root, t.name));
          if (!all && now - t.lastUploadAt < this.#intervalMs && t.size - t.offset < this.#segmentMax) return;
          await this.#upload(t);
        })().finally(() => delete t.running);
        return t.running;
      }),
    );
  }

  /** Bytes of open sessions not in the archive yet (as of the last look at their files). */
  pendingBytes(): number {
    let bytes = 0;
    for (const t of this.#sessions.values()) bytes += Math.max(0, t.size - t.offset);
    return bytes;
  }

  /** Removes a session's segments: its whole file is in the archive now. Best effort; a failure is logged. Never rejects. */
  removeSegments(name: string): Promise<void> {
    const run = this.#remove(name);
    this.#removals.add(run);
    void run.finally(() => this.#removals.delete(run));
    return run;
  }

  async #remove(name: string): Promise<void> {
    try {
      // A segment still going up when the session was sealed lands first, then goes with the rest.
      await this.#draining.get(name);
      const objects: string[] = [];
      for await (const o of listAll(this.#o.archive, segmentPrefixOf(name))) objects.push(o.name);
      for (const o of objects) await this.#o.archive.delete(o);
    } catch (err) {
      this.#log.warn({ object: name, err: describeStorageFailure(err) }, 'the segments of a sealed session could not be removed from the archive; its whole file is read instead');
    }
  }

  /** Stops the timer; uploads and removals in flight finish. A session's new records not uploaded stay in the spool file. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stopTimer();
    await Promise.all([...[...this.#sessions.values()].map((t) => t.running), ...this.#draining.values(), ...this.#removals]);
  }

  #stopTimer(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Uploads the pending segment, then cuts and uploads segments until no whole record is left. */
  async #upload(t: Tracked): Promise<void> {
    try {
      // Untracked meanwhile (sealed, its whole file on its way): no segment may follow.
      while (this.#sessions.get(t.name) === t) {
        if (t.pending === undefined) {
          const cut = await this.#cut(t);
          if (cut === undefined) break;
          t.pending = cut;
        }
        await this.#put(t, t.pending.meta, t.pending.object);
        const { meta } = t.pending;
        delete t.pending;
        t.offset = meta.offset + meta.bytes;
        t.records += meta.records;
        t.segment++;
        t.lastUploadAt = Date.now();
      }
      t.lastUploadAt = Date.now();
    } catch (err) {
      if (err instanceof StopSegments) {
        t.stopped = err.message;
        this.#log.warn({ object: t.name, reason: err.message }, 'an open session stops being uploaded in segments; its whole file is shipped when it is sealed');
        return;
      }
      this.#log.warn({ object: t.name, segment: t.segment, err: describeStorageFailure(err) }, 'a segment of an open session could not be uploaded; it is retried at the next interval');
    }
  }

  async #put(t: Tracked, meta: SegmentMeta, object: Buffer): Promise<void> {
    const name = segmentObjectName(t.name, meta.segment);
    try {
      await this.#o.archive.put(name, object);
    } catch (err) {
      if (!(err instanceof ArchiveError && err.code === 'ARCHIVE_EXISTS')) throw err;
      // An earlier try landed unseen: the same bytes mean it is done. Other bytes are never replaced.
      const there = await this.#o.archive.range(name, 0, object.length + 1);
      if (!there.equals(object)) throw new StopSegments(`the archive already holds other bytes under ${name}`);
    }
  }

  /** The next segment of the file: its whole records from `offset`, up to about `segmentMax` bytes; undefined when none is whole yet. */
  async #cut(t: Tracked): Promise<{ meta: SegmentMeta; object: Buffer } | undefined> {
    const path = join(this.#o.root, t.name);
    const handle = await open(path, 'r');
    try {
      const size = (await handle.stat()).size;
      t.size = size;
      const read = async (from: number, length: number): Promise<Buffer> => {
        const buf = Buffer.alloc(Math.max(0, Math.min(length, size - from)));
        const { bytesRead } = await handle.read(buf, 0, buf.length, from);
        return buf.subarray(0, bytesRead);
      };
      let buf = await read(t.offset, this.#segmentMax);
      let pos = 0;
      let prev = t.prev;
      let keyId = t.keyId;
      if (t.offset === 0) {
        // The first segment starts with the file header: the first record chains to its hash.
        if (buf.length < HEADER_PREFIX) return undefined;
        let total: number;
        try {
          total = headerLength(buf);
          if (buf.length < total) buf = await read(0, Math.max(total, this.#segmentMax));
          if (buf.length < total) return undefined;
          keyId = decodeHeader(buf.subarray(0, total)).keyId;
        } catch (err) {
          throw new StopSegments(`its file header cannot be read: ${(err as Error).message}`);
        }
        prev = sha256(buf.subarray(0, total)).toString('hex');
        pos = total;
      }
      const startPrev = t.offset === 0 ? prev : t.prev;
      let records = 0;
      for (;;) {
        if (pos + LENGTH_BYTES > buf.length) break;
        const length = buf.readUInt32BE(pos);
        if (length < NONCE_BYTES + TAG_BYTES || length > MAX_RECORD_BYTES) throw new StopSegments(`record ${t.records + records} at byte ${t.offset + pos} has an impossible length (${length})`);
        const end = pos + LENGTH_BYTES + length;
        if (end > buf.length) {
          // A record larger than a segment goes up alone, once it is whole.
          if (records > 0 || pos > 0 && t.offset === 0) break;
          if (t.offset + end > size) break;
          buf = await read(t.offset, end);
          if (buf.length < end) break;
        }
        prev = sha256(buf.subarray(pos, end)).toString('hex');
        pos = end;
        records++;
      }
      if (pos === 0) return undefined;
      const body = buf.subarray(0, pos);
      const meta: SegmentMeta = { session: sessionIdOf(t.name), segment: t.segment, offset: t.offset, bytes: body.length, firstRecord: t.records, records, prev: startPrev, keyId };
      t.keyId = keyId;
      t.prev = prev;
      return { meta, object: encodeSegment(meta, body) };
    } finally {
      await handle.close();
    }
  }
}

/** The segments of a session cannot go on; the reason is logged once and the session is left to its seal. */
class StopSegments extends Error {}

function sessionIdOf(name: string): string {
  const file = name.slice(name.lastIndexOf('/') + 1);
  return file.endsWith('.rec') ? file.slice(0, -4) : file;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}
