/**
 * Bulk bytes for tests of byte-exact carriage: blocks of one random MiB, each stamped with its index, so
 * that a dropped, repeated or reordered block changes the hash of what arrives.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Writable } from 'node:stream';

const MiB = 1024 * 1024;

/** Writes `count` numbered MiB blocks to `stream`, waiting for 'drain' when it asks; returns the SHA-256 (hex) of all written. */
export async function writeNumberedBlocks(stream: Writable, count: number): Promise<string> {
  const block = randomBytes(MiB);
  const sent = createHash('sha256');
  for (let i = 0; i < count; i++) {
    const chunk = Buffer.from(block);
    chunk.writeUInt32BE(i, 0);
    sent.update(chunk);
    if (!stream.write(chunk)) await once(stream, 'drain');
  }
  return sent.digest('hex');
}
