/** How a response body is masked, by its Content-Type. */
export type ContentKind = 'sse' | 'ndjson' | 'json' | 'text' | 'binary';

/** Streams of JSON records, one a line: each line is a record of the stream's channels. */
const NDJSON_TYPES = new Set([
  'application/x-ndjson',
  'application/ndjson',
  'application/jsonl',
  'application/jsonlines',
  'application/x-jsonlines',
  'application/json-seq',
]);

/**
 * Classifies a Content-Type. Anything not known to be text counts as binary (fail closed): an image,
 * audio, a PDF or protobuf cannot be masked, so it passes only where a profile says `binary: allow`.
 * A missing Content-Type is read as text.
 */
export function contentKind(contentType: string | undefined): ContentKind {
  if (contentType === undefined || contentType.trim() === '') return 'text';
  const mime = contentType.split(';', 1)[0]!.trim().toLowerCase();
  if (mime === 'text/event-stream') return 'sse';
  if (NDJSON_TYPES.has(mime)) return 'ndjson';
  if (mime === 'application/json' || mime.endsWith('+json') || mime === 'text/json') return 'json';
  if (mime.startsWith('text/')) return 'text';
  if (
    mime.endsWith('+xml') ||
    mime === 'application/xml' ||
    mime === 'application/javascript' ||
    mime === 'application/x-www-form-urlencoded' ||
    mime === 'application/yaml'
  ) {
    return 'text';
  }
  return 'binary';
}
