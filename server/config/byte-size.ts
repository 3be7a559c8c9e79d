import { z } from 'zod';

/** Binary units only: a spool sized in GiB on disk must not be 7% smaller than the operator meant. */
const UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };

/** One pattern for what the schema accepts and what `parseByteSize` reads, so the two cannot drift apart. */
const BYTE_SIZE = /^(\d+)(B|KiB|MiB|GiB|TiB)$/;

/** A size in the configuration: `512MiB`, `10GiB`, `4096B`. */
export const byteSizeSchema = z
  .string()
  .regex(BYTE_SIZE, 'must be a size such as 4096B, 64KiB, 512MiB, 10GiB or 1TiB')
  .refine((text) => Number.isSafeInteger(parseByteSize(text)), 'is too large');

/** Bytes of a size string such as `512MiB` or `10GiB`. */
export function parseByteSize(text: string): number {
  const m = BYTE_SIZE.exec(text);
  if (!m) throw new TypeError(`not a size: ${text}`);
  return Number(m[1]) * UNITS[m[2]!]!;
}
