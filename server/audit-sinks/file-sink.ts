import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { AuditSink } from './audit-sink.js';
import type { AuditSinkConfig } from './audit-sinks-config.js';

type FileSinkConfig = Extract<AuditSinkConfig, { type: 'file' }>;

/**
 * JSON lines appended to a file, synced before the batch counts as delivered. Before a batch would take
 * the file past `max_bytes` it is rotated: `path.<keep-1>` becomes `path.<keep>` (the oldest goes),
 * …, `path` becomes `path.1`. A batch never straddles two files. Files are created 0600: the events name
 * users and connections.
 */
export function createFileSink(config: FileSinkConfig): AuditSink {
  const path = config.path;
  const sendDocs = async (docs: readonly string[]): Promise<void> => {
    if (docs.length === 0) return;
    // One buffer and one write per batch: the line breaks are joined in, not appended per line.
    const lines = Buffer.from(`${docs.join('\n')}\n`, 'utf8');
    let handle = await openForAppend(path);
    try {
      const size = (await handle.stat()).size;
      if (size > 0 && size + lines.length > config.max_bytes) {
        await handle.close();
        await rotate(path, config.keep);
        handle = await openForAppend(path);
      }
      await handle.write(lines);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  };
  return {
    send: (events) => sendDocs(events.map((e) => JSON.stringify(e))),
    sendDocs,
    close: () => Promise.resolve(),
  };
}

/** Opens the file to append, making its directory first only when it is missing (most batches find both). */
async function openForAppend(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'a', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    return open(path, 'a', 0o600);
  }
}

async function rotate(path: string, keep: number): Promise<void> {
  if (keep === 0) {
    await rm(path, { force: true });
    return;
  }
  await rm(`${path}.${keep}`, { force: true });
  for (let n = keep - 1; n >= 1; n--) {
    await rename(`${path}.${n}`, `${path}.${n + 1}`).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }
  await rename(path, `${path}.1`);
}
