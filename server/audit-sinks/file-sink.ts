import { open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { mkdir } from 'node:fs/promises';
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
  return {
    async send(events) {
      const lines = Buffer.from(events.map((e) => `${JSON.stringify(e)}\n`).join(''), 'utf8');
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      const size = await stat(path).then((s) => s.size, () => 0);
      if (size > 0 && size + lines.length > config.max_bytes) await rotate(path, config.keep);
      const handle = await open(path, 'a', 0o600);
      try {
        await handle.write(lines);
        await handle.datasync();
      } finally {
        await handle.close();
      }
    },
    close: () => Promise.resolve(),
  };
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
