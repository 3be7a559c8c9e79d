/**
 * Bulk bytes for tests of byte-exact carriage: blocks of one random MiB, each stamped with its index, so
 * that a dropped, repeated or reordered block changes the hash of what arrives.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Duplex, Readable, Writable } from 'node:stream';

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

/** What has arrived on a stream so far: how many bytes, and their SHA-256. */
export interface Arrivals {
  readonly bytes: number;
  /** The SHA-256 (hex) of everything that arrived; call once, after the stream ended. */
  digest(): string;
}

/** Counts and hashes what `stream` delivers from now on (it is put in flowing mode), to compare with what was sent. */
export function hashArrivals(stream: Readable): Arrivals {
  const hash = createHash('sha256');
  let bytes = 0;
  stream.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  return {
    get bytes() {
      return bytes;
    },
    digest: () => hash.digest('hex'),
  };
}

/**
 * Sends `count` numbered MiB blocks into `stream`, which echoes them, ends its side and waits for the echo's
 * end; returns the SHA-256 of what was sent and what came back.
 */
export async function echoNumberedBlocks(stream: Duplex, count: number): Promise<{ sent: string; received: Arrivals }> {
  const received = hashArrivals(stream);
  const ended = once(stream, 'end');
  const sent = await writeNumberedBlocks(stream, count);
  stream.end();
  await ended;
  return { sent, received };
}
