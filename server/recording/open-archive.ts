import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { RecordingsSettings } from '../config/recordings-schema.js';
import type { RecordingArchive } from './archive/archive.js';
import { FsArchive } from './archive/fs-archive.js';
import { S3Archive } from './archive/s3-archive.js';

/** The archive `storage.recordings` names, and what to release when the gateway stops. */
export interface OpenedArchive {
  readonly archive: RecordingArchive;
  /** Where it is, for logs and errors: a directory or `s3://bucket/prefix`. */
  readonly location: string;
  close(): void;
}

/**
 * Builds the archive of sealed sessions: a bucket (`type: s3`, credentials from the AWS default chain), a
 * shared directory (`type: dir`), or, with no `storage.recordings`, the files under `storage.dir` where the
 * spool wrote them. The spool itself always stays under `storage.dir`, on this replica's own disk.
 */
export async function openArchive(recordings: RecordingsSettings | undefined, dir: string): Promise<OpenedArchive> {
  if (recordings === undefined) return { archive: new FsArchive({ root: dir }), location: dir, close: () => undefined };
  if (recordings.type === 'dir') {
    const root = resolve(recordings.path);
    await mkdir(root, { recursive: true, mode: 0o700 });
    return { archive: new FsArchive({ root }), location: root, close: () => undefined };
  }
  const archive = new S3Archive({
    bucket: recordings.bucket,
    prefix: recordings.prefix,
    region: recordings.region,
    endpoint: recordings.endpoint,
    forcePathStyle: recordings.force_path_style,
  });
  return { archive, location: `s3://${archive.bucket}/${archive.prefix}`, close: () => archive.close() };
}
