import type { ArchiveBody, ArchiveListOptions, ArchivePage, RecordingArchive } from './archive/archive.js';
import { listAll } from './archive/archive.js';
import { SESSION_FILE_SUFFIX } from './record-format.js';
import { segmentPrefixOf } from './segment-format.js';

/**
 * The archive as retention sees it: deleting a session's object deletes its segments too. A session whose
 * replica stopped before sealing it exists only as segments, and one sealed while a segment's removal
 * failed leaves some behind; destroyed, no byte of either may stay in the archive.
 */
export function withSegmentsDeleted(archive: RecordingArchive): RecordingArchive {
  return {
    put: (name: string, body: ArchiveBody) => archive.put(name, body),
    get: (name: string) => archive.get(name),
    range: (name: string, offset: number, length: number) => archive.range(name, offset, length),
    list: (prefix: string, options?: ArchiveListOptions): Promise<ArchivePage> => archive.list(prefix, options),
    delete: async (name: string) => {
      if (name.endsWith(SESSION_FILE_SUFFIX)) {
        const segments: string[] = [];
        for await (const o of listAll(archive, segmentPrefixOf(name))) segments.push(o.name);
        for (const segment of segments) await archive.delete(segment);
      }
      await archive.delete(name);
    },
    ...(archive.adoptFile === undefined ? {} : { adoptFile: (path: string, name: string) => archive.adoptFile!(path, name) }),
  };
}
