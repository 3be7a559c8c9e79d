/**
 * The text of a decoded gRPC message, for the exchange view and playback: the BYTES tensors of a KServe v2
 * answer (`ModelInferResponse`, or `ModelStreamInferResponse.infer_response`), joined in order. An LLM
 * served over KServe answers its text as BYTES, which the recording (like protobuf's JSON form) holds as
 * base64; a reviewer wants to read the words.
 */

interface Tensor {
  readonly datatype?: unknown;
  readonly contents?: { readonly bytes_contents?: unknown };
}

/** Length-prefixed elements of a raw BYTES tensor: each a 4-byte little-endian length, then its bytes. */
function rawBytesElements(raw: Buffer): Buffer[] | undefined {
  const out: Buffer[] = [];
  let at = 0;
  while (at < raw.length) {
    if (at + 4 > raw.length) return undefined;
    const n = raw.readUInt32LE(at);
    if (at + 4 + n > raw.length) return undefined;
    out.push(raw.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

const fromBase64 = (v: unknown): Buffer | undefined => (typeof v === 'string' ? Buffer.from(v, 'base64') : undefined);

/** The BYTES tensors of `json` as text, or undefined when it holds none (another message, or numbers only). */
export function grpcMessageText(json: unknown): string | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  const message = json as { outputs?: unknown; raw_output_contents?: unknown; infer_response?: unknown };
  if (message.infer_response !== undefined && message.infer_response !== null) return grpcMessageText(message.infer_response);
  if (!Array.isArray(message.outputs)) return undefined;
  const raw = Array.isArray(message.raw_output_contents) ? message.raw_output_contents : [];
  const parts: string[] = [];
  (message.outputs as Tensor[]).forEach((tensor, i) => {
    if (tensor?.datatype !== 'BYTES') return;
    const typed = tensor.contents?.bytes_contents;
    // Triton answers in raw_output_contents (one entry per output, by position) when it can; the typed field otherwise.
    const elements =
      Array.isArray(typed) && typed.length > 0
        ? typed.map(fromBase64).filter((b): b is Buffer => b !== undefined)
        : (rawBytesElements(fromBase64(raw[i]) ?? Buffer.alloc(0)) ?? []);
    for (const e of elements) parts.push(e.toString('utf8'));
  });
  return parts.length === 0 ? undefined : parts.join('');
}
