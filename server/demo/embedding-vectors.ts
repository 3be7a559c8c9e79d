import { createHash } from 'node:crypto';

/** OpenAI's own limits on one `POST /v1/embeddings`. */
export const MAX_EMBEDDING_INPUTS = 2048;
export const MAX_EMBEDDING_DIMENSIONS = 3072;

/** What `POST /v1/embeddings` asked for, read from its body. */
export interface EmbeddingsRequest {
  model: string;
  /** Each input as the text (or token ids) it was given. */
  inputs: Array<string | number[]>;
  dimensions: number;
  encoding: 'float' | 'base64';
}

/** Reads an embeddings request body, or returns the message of the 400 it deserves. */
export function readEmbeddingsRequest(body: unknown, defaults: { model: string; dimensions: number }): EmbeddingsRequest | { error: string; code: string } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return { error: 'The request body must be a JSON object.', code: 'invalid_request' };
  }
  const b = body as Record<string, unknown>;
  const inputs = inputsOf(b.input);
  if (inputs === null) {
    return {
      error: `'input' must be a non-empty string, an array of up to ${MAX_EMBEDDING_INPUTS} non-empty strings, an array of token ids or an array of such arrays.`,
      code: 'invalid_input',
    };
  }
  const dimensions = b.dimensions ?? defaults.dimensions;
  if (typeof dimensions !== 'number' || !Number.isInteger(dimensions) || dimensions < 1 || dimensions > MAX_EMBEDDING_DIMENSIONS) {
    return { error: `'dimensions' must be an integer from 1 to ${MAX_EMBEDDING_DIMENSIONS}.`, code: 'invalid_dimensions' };
  }
  const encoding = b.encoding_format ?? 'float';
  if (encoding !== 'float' && encoding !== 'base64') {
    return { error: "'encoding_format' must be 'float' or 'base64'.", code: 'invalid_encoding_format' };
  }
  return { model: typeof b.model === 'string' ? b.model : defaults.model, inputs, dimensions, encoding };
}

function isTokenIds(value: unknown): value is number[] {
  return Array.isArray(value) && value.length > 0 && value.every((n) => Number.isInteger(n) && (n as number) >= 0);
}

function inputsOf(input: unknown): Array<string | number[]> | null {
  if (typeof input === 'string') return input.length > 0 ? [input] : null;
  if (!Array.isArray(input) || input.length === 0 || input.length > MAX_EMBEDDING_INPUTS) return null;
  if (isTokenIds(input)) return [input];
  if (input.every((s) => typeof s === 'string' && s.length > 0)) return input as string[];
  if (input.every(isTokenIds)) return input as number[][];
  return null;
}

/**
 * A unit vector that depends only on the input and the size: the same text always embeds the same, so a
 * test can compare what came through the gateway with what the model computed. Each value is a float32
 * (as OpenAI's are), so the float and base64 encodings carry the same numbers.
 */
export function embeddingOf(input: string | number[], dimensions: number): number[] {
  const seed = typeof input === 'string' ? `text:${input}` : `tokens:${input.join(',')}`;
  const raw: number[] = [];
  for (let block = 0; raw.length < dimensions; block += 1) {
    const digest = createHash('sha256').update(`${dimensions}:${block}:${seed}`).digest();
    for (let i = 0; i + 4 <= digest.length && raw.length < dimensions; i += 4) raw.push(digest.readUInt32LE(i) / 0x7fffffff - 1);
  }
  const norm = Math.hypot(...raw) || 1;
  return raw.map((v) => Math.fround(v / norm));
}

/**
 * The vector as `encoding_format: float` sends it: each float32 in the fewest digits that still read back
 * as that float32, as OpenAI writes them (`-0.0069292835`), not the 17 digits of its float64 value.
 */
export function embeddingFloats(vector: readonly number[]): number[] {
  return vector.map((v) => {
    for (let digits = 1; digits < 9; digits += 1) {
      const short = Number(v.toPrecision(digits));
      if (Math.fround(short) === v) return short;
    }
    return Number(v.toPrecision(9));
  });
}

/** The base64 of the vector's little-endian float32 bytes, the layout the `openai` SDK decodes. */
export function embeddingBase64(vector: readonly number[]): string {
  const bytes = Buffer.alloc(vector.length * 4);
  vector.forEach((v, i) => bytes.writeFloatLE(v, i * 4));
  return bytes.toString('base64');
}
