import { promisify } from 'node:util';
import { brotliDecompress, gunzip, inflate, inflateRaw, type ZlibOptions } from 'node:zlib';

/**
 * Undoing a body's `Content-Encoding` (gzip, deflate, br) within a bound on the decoded size, so a small
 * compressed body cannot expand into gigabytes in the gateway's memory (a zip bomb stops at the bound).
 */

/** Options of {@link decodeContentEncoding}. */
export interface ContentDecodingOptions {
  /** Most bytes the decoded body may have; a longer one is reported `tooLarge`, never held whole. */
  readonly maxOutput: number;
  /** Most codings applied one over the other; more is refused. Default 2. */
  readonly maxCodings?: number;
}

/** The decoded bytes, or why there are none. */
export type ContentDecoded = { readonly bytes: Buffer } | { readonly tooLarge: true } | { readonly error: string };

type Decoder = (bytes: Buffer, options: ZlibOptions) => Promise<Buffer>;

const gunzipAsync = promisify(gunzip) as Decoder;
const inflateAsync = promisify(inflate) as Decoder;
const inflateRawAsync = promisify(inflateRaw) as Decoder;
const brotliAsync = promisify(brotliDecompress) as Decoder;

/** HTTP's "deflate" is zlib-wrapped (RFC 9110), but some clients send raw deflate; browsers and curl accept both. */
const inflateEither: Decoder = (bytes, options) =>
  inflateAsync(bytes, options).catch((err: unknown) => {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw err;
    return inflateRawAsync(bytes, options);
  });

const DECODERS: Readonly<Record<string, Decoder>> = {
  gzip: gunzipAsync,
  'x-gzip': gunzipAsync,
  deflate: inflateEither,
  br: brotliAsync,
};

/** The codings of a Content-Encoding value in the order they were applied, without `identity`. */
export function contentCodings(contentEncoding: string | undefined): string[] {
  return (contentEncoding ?? '')
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
}

/** Undoes every coding of `contentEncoding`, last applied first; unknown codings and corrupt data are errors. */
export async function decodeContentEncoding(bytes: Buffer, contentEncoding: string | undefined, options: ContentDecodingOptions): Promise<ContentDecoded> {
  const codings = contentCodings(contentEncoding);
  if (codings.length === 0) return bytes.length > options.maxOutput ? { tooLarge: true } : { bytes };
  const maxCodings = options.maxCodings ?? 2;
  if (codings.length > maxCodings) return { error: `${codings.length} content codings (${codings.join(', ')}) are more than the ${maxCodings} accepted` };
  const unknown = codings.find((c) => DECODERS[c] === undefined);
  if (unknown !== undefined) return { error: `content-encoding "${unknown}" is not supported (gzip, deflate and br are)` };
  let current = bytes;
  for (const coding of [...codings].reverse()) {
    try {
      current = await DECODERS[coding]!(current, { maxOutputLength: options.maxOutput });
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') return { tooLarge: true };
      return { error: `the ${coding} body cannot be decoded: ${(err as Error).message}` };
    }
  }
  return { bytes: current };
}
