/**
 * Strict parsing of HTTP/1.1 message heads (RFC 9112) for the local listener, which must find where each
 * request starts to check it, and where each response ends to answer in order. Anything a lenient parser
 * might read two ways (bare LF, obs-fold, space before the colon, Transfer-Encoding with Content-Length,
 * conflicting lengths) is refused rather than guessed: what passes is read the same way by the gateway's parser.
 */

/** One header line; `name` is lower-case, `raw` the line as received (re-sent unchanged). */
export interface HeaderLine {
  readonly name: string;
  readonly value: string;
  readonly raw: string;
}

export interface RequestHead {
  readonly method: string;
  readonly requestLine: string;
  readonly headers: readonly HeaderLine[];
}

export interface ResponseHead {
  readonly status: number;
  readonly headers: readonly HeaderLine[];
}

/** How the body after a head is delimited. */
export type BodyLength =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly bytes: number }
  | { readonly kind: 'chunked' }
  | { readonly kind: 'until-close' };

/** A head that cannot be read safely; `status` is what the local listener answers (400, 431, 505). */
export class HeadError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HeadError';
  }
}

const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
const REQUEST_LINE = new RegExp(`^(${TOKEN}) ([^\\x00-\\x20\\x7f]+) HTTP/(\\d)\\.(\\d)$`);
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: [^\x00-\x08\x0a-\x1f\x7f]*)?$/;
const HEADER_LINE = new RegExp(`^(${TOKEN}):[ \\t]*(.*?)[ \\t]*$`);
// Field values: visible characters, spaces, tabs and obs-text; never CR, LF, NUL or other controls.
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;

/** Split a complete head (ending in CRLF CRLF) into lines, refusing bare CR or LF. */
function headLines(head: Buffer): string[] {
  // latin1 maps each byte to one code unit and back, so obs-text in values survives a re-send unchanged.
  const text = head.toString('latin1', 0, head.length - 4);
  const lines = text.split('\r\n');
  for (const line of lines) {
    if (line.includes('\n') || line.includes('\r')) throw new HeadError(400, 'a line of the request head ends with a bare CR or LF');
  }
  return lines;
}

function headerLines(lines: string[]): HeaderLine[] {
  return lines.map((raw) => {
    if (raw.startsWith(' ') || raw.startsWith('\t')) throw new HeadError(400, 'folded header lines (obs-fold) are not accepted');
    const m = HEADER_LINE.exec(raw);
    if (!m || BAD_VALUE.test(m[2]!)) throw new HeadError(400, `malformed header line "${raw.slice(0, 60)}"`);
    return { name: m[1]!.toLowerCase(), value: m[2]!, raw };
  });
}

/** Parse a request head; only HTTP/1.0 and HTTP/1.1 are spoken on the local port. */
export function parseRequestHead(head: Buffer): RequestHead {
  const [requestLine = '', ...rest] = headLines(head);
  const m = REQUEST_LINE.exec(requestLine);
  if (!m) throw new HeadError(400, 'malformed request line');
  if (m[3] !== '1' || (m[4] !== '0' && m[4] !== '1')) throw new HeadError(505, `HTTP/${m[3]}.${m[4]} is not spoken here: use HTTP/1.1`);
  return { method: m[1]!, requestLine, headers: headerLines(rest) };
}

/** Parse a response head (the gateway's); throws when it cannot be followed. */
export function parseResponseHead(head: Buffer): ResponseHead {
  const [statusLine = '', ...rest] = headLines(head);
  const m = STATUS_LINE.exec(statusLine);
  if (!m) throw new HeadError(502, 'malformed status line');
  return { status: Number(m[1]), headers: headerLines(rest) };
}

/** The last transfer coding is chunked, or undefined when there is no Transfer-Encoding at all. */
function chunkedLast(headers: readonly HeaderLine[]): boolean | undefined {
  const codings = headers
    .filter((h) => h.name === 'transfer-encoding')
    .flatMap((h) => h.value.split(','))
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '');
  if (!headers.some((h) => h.name === 'transfer-encoding')) return undefined;
  return codings.at(-1) === 'chunked';
}

/** The one Content-Length, or undefined; repeated values must agree (RFC 9110 8.6). */
function contentLength(headers: readonly HeaderLine[], status: number): number | undefined {
  let length: number | undefined;
  for (const h of headers) {
    if (h.name !== 'content-length') continue;
    for (const part of h.value.split(',')) {
      const v = part.trim();
      // 15 digits stay exact in a double; no local request or response comes near it.
      if (!/^\d{1,15}$/.test(v)) throw new HeadError(status, `invalid Content-Length "${h.value.slice(0, 40)}"`);
      if (length !== undefined && Number(v) !== length) throw new HeadError(status, 'conflicting Content-Length values');
      length = Number(v);
    }
  }
  return length;
}

/** How a request's body is delimited (RFC 9112 6.3); refuses the ambiguous cases request smuggling lives on. */
export function requestBodyLength(head: RequestHead): BodyLength {
  const chunked = chunkedLast(head.headers);
  const length = contentLength(head.headers, 400);
  if (chunked !== undefined) {
    if (length !== undefined) throw new HeadError(400, 'a request may not carry both Transfer-Encoding and Content-Length');
    if (!chunked) throw new HeadError(400, 'a request Transfer-Encoding must end with chunked');
    return { kind: 'chunked' };
  }
  return length === undefined || length === 0 ? { kind: 'none' } : { kind: 'length', bytes: length };
}

/** How a response's body is delimited, given the method of the request it answers (RFC 9112 6.3). */
export function responseBodyLength(head: ResponseHead, method: string): BodyLength {
  if (method === 'HEAD' || head.status < 200 || head.status === 204 || head.status === 304) return { kind: 'none' };
  const chunked = chunkedLast(head.headers);
  if (chunked !== undefined) return chunked ? { kind: 'chunked' } : { kind: 'until-close' };
  const length = contentLength(head.headers, 502);
  if (length === undefined) return { kind: 'until-close' };
  return length === 0 ? { kind: 'none' } : { kind: 'length', bytes: length };
}

/** The request head again, without the header lines `drop` names (lower-case). */
export function serializeRequestHead(head: RequestHead, drop: ReadonlySet<string>): Buffer {
  const lines = [head.requestLine, ...head.headers.filter((h) => !drop.has(h.name)).map((h) => h.raw)];
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}
