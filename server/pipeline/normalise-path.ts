import { SluiceError } from '../../shared/errors.js';

/** How strict path hygiene is for one connection; defaults in `DEFAULT_PATH_HYGIENE`. */
export interface PathHygieneOptions {
  /** Keep `%2F` inside a segment (encoded, as sent) instead of refusing it. */
  readonly allowEncodedSlashes?: boolean;
}

/** Defaults of `PathHygieneOptions`: fail closed. */
export const DEFAULT_PATH_HYGIENE = { allowEncodedSlashes: false } as const satisfies Required<PathHygieneOptions>;

/** The rule of path hygiene a refused path broke; callers and tests switch on it, never on the message. */
export type PathRule =
  | 'origin-form'
  | 'malformed-escape'
  | 'control-character'
  | 'backslash'
  | 'encoded-slash'
  | 'invalid-utf8'
  | 'dot-segment-parameters'
  | 'dot-segment-encoded-slash'
  | 'above-root'
  | 'not-normalised'
  | 'outside-base';

const RULE_MESSAGES: Readonly<Record<PathRule, string>> = {
  'origin-form': 'The request target must be a path starting with "/": absolute-form ("http://host/…"), authority-form and "*" targets are refused',
  'malformed-escape': 'The request path has a "%" that does not start a percent-encoded byte',
  'control-character': 'The request path holds a control character (raw or percent-encoded, such as %00)',
  backslash: 'The request path holds a backslash ("\\" or %5C), which some servers read as "/"',
  'encoded-slash': 'The request path holds an encoded slash (%2F), which an upstream may decode into a path policy never judged (a connection may allow it with allow_encoded_slashes)',
  'invalid-utf8': 'The request path percent-encodes bytes that are not valid UTF-8 (such as the overlong %C0%AE), which lenient decoders turn into "." or "/"',
  'dot-segment-parameters': 'The request path has a dot segment with parameters (such as "..;"), which some servers resolve as ".."',
  'dot-segment-encoded-slash': 'The request path has a dot segment next to an encoded slash, which climbs once an upstream decodes the slash',
  'above-root': 'The request path climbs above its root with ".." segments',
  'not-normalised': 'The request path reached the pipeline without being normalised',
  'outside-base': 'The forwarded path would leave the base path of the upstream',
};

/** A refusal under `ERR_PATH_REFUSED`, naming the rule in its message and in `details.rule`. */
export function pathRefused(rule: PathRule, message: string = RULE_MESSAGES[rule]): SluiceError {
  return new SluiceError('ERR_PATH_REFUSED', { message, details: { rule } });
}

const HEX = '0123456789ABCDEF';

function isUnreserved(b: number): boolean {
  return (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e;
}

/** Characters RFC 3986 lets a path segment carry unencoded: unreserved, sub-delims, ":" and "@". */
function isRawPchar(b: number): boolean {
  return isUnreserved(b) || "!$&'()*+,;=:@".includes(String.fromCharCode(b));
}

function encoded(b: number): string {
  return `%${HEX[b >> 4]}${HEX[b & 15]}`;
}

/**
 * Most paths need no work: only characters that may stand unencoded, no empty segment and no dot segment
 * (with or without parameters). They are returned as they are, without a byte-by-byte pass.
 */
const ALREADY_NORMAL = /^(?:\/(?!\.\.?(?:[/;]|$))[A-Za-z0-9\-._~!$&'()*+,;=:@]+)*\/?$/;

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * One segment in normal form: unreserved characters decoded, everything else that stays encoded in
 * upper-case hex, characters that may not stand unencoded encoded. Throws for what hygiene refuses.
 */
function normaliseSegment(raw: string, allowEncodedSlashes: boolean): string {
  let out = '';
  let bytes: number[] | null = null;
  const byte = (b: number): void => {
    // Only bytes beyond ASCII need a UTF-8 check; ASCII is valid by itself.
    if (b >= 0x80 || bytes !== null) (bytes ??= []).push(b);
  };
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25) {
      const hex = raw.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw pathRefused('malformed-escape');
      const b = Number.parseInt(hex, 16);
      i += 2;
      if (b < 0x20 || b === 0x7f) throw pathRefused('control-character');
      if (b === 0x5c) throw pathRefused('backslash');
      if (b === 0x2f && !allowEncodedSlashes) throw pathRefused('encoded-slash');
      byte(b);
      out += isUnreserved(b) ? String.fromCharCode(b) : encoded(b);
    } else if (c < 0x20 || c === 0x7f) {
      throw pathRefused('control-character');
    } else if (c === 0x5c) {
      throw pathRefused('backslash');
    } else if (c >= 0x80) {
      // Node's parser hands over raw bytes as latin1 characters; anything wider came from elsewhere and is
      // taken as UTF-8, like a browser would send it.
      for (const b of c <= 0xff ? [c] : Buffer.from(String.fromCharCode(c), 'utf8')) {
        byte(b);
        out += encoded(b);
      }
    } else {
      byte(c);
      out += isRawPchar(c) ? raw[i] : encoded(c);
    }
  }
  if (bytes !== null) {
    try {
      strictUtf8.decode(Uint8Array.from(bytes));
    } catch {
      throw pathRefused('invalid-utf8');
    }
  }
  return out;
}

/** "." or "..", the part before any ";parameters" considered. */
function dotKind(segment: string): '.' | '..' | undefined {
  const semi = segment.indexOf(';');
  const bare = semi === -1 ? segment : segment.slice(0, semi);
  return bare === '.' || bare === '..' ? bare : undefined;
}

/** The path of a request target in normal form; see `normaliseRequestTarget`. */
function normalisePathname(pathname: string, allowEncodedSlashes: boolean): string {
  const segments = pathname.split('/');
  const kept: string[] = [];
  let trailingSlash = false;
  // segments[0] is the empty string before the leading "/".
  for (let i = 1; i < segments.length; i++) {
    const segment = normaliseSegment(segments[i]!, allowEncodedSlashes);
    const last = i === segments.length - 1;
    const dot = dotKind(segment);
    if (dot !== undefined && segment.length > dot.length) throw pathRefused('dot-segment-parameters');
    if (dot === undefined && segment.includes('%2F')) {
      // An upstream that decodes %2F sees these pieces as segments of their own.
      if (segment.split('%2F').some((piece) => dotKind(piece) !== undefined)) throw pathRefused('dot-segment-encoded-slash');
    }
    if (dot === '..') {
      if (kept.length === 0) throw pathRefused('above-root');
      kept.pop();
      trailingSlash = true;
    } else if (dot === '.' || segment === '') {
      // Repeated slashes collapse; a final empty segment is the trailing slash, which APIs tell apart.
      trailingSlash = dot === '.' || last ? true : trailingSlash;
    } else {
      kept.push(segment);
      trailingSlash = false;
    }
  }
  return kept.length === 0 ? '/' : `/${kept.join('/')}${trailingSlash ? '/' : ''}`;
}

/**
 * A request target (origin-form path and query) in the one form policy judges, the recording keeps and
 * the upstream receives: unreserved characters percent-decoded (RFC 3986 §6.2.2), upper-case hex for what
 * stays encoded, repeated slashes collapsed, "." and ".." segments (`%2e` included) resolved. The query is
 * left exactly as sent. Throws ERR_PATH_REFUSED for targets that are not origin-form, encoded slashes
 * (unless allowed), backslashes, control characters, malformed escapes, bytes that are not UTF-8, dot
 * segments with parameters and paths that climb above their root.
 */
export function normaliseRequestTarget(target: string, options: PathHygieneOptions = {}): string {
  const { allowEncodedSlashes } = { ...DEFAULT_PATH_HYGIENE, ...options };
  if (!target.startsWith('/')) throw pathRefused('origin-form');
  const q = target.indexOf('?');
  const pathname = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q);
  if (ALREADY_NORMAL.test(pathname)) return target;
  return normalisePathname(pathname, allowEncodedSlashes) + query;
}

/** The path part of a target, without its query. */
export function pathnameOf(target: string): string {
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

/**
 * The segments of a path as the most lenient upstream could read it: "\\", %2F and %5C taken as "/",
 * %2E as ".", ";parameters" ignored on dot segments; null when that reading climbs above the root.
 */
export function lenientSegments(pathname: string): string[] | null {
  const out: string[] = [];
  for (const raw of pathname.split(/\/|\\|%2f|%5c/i)) {
    const segment = raw.replace(/%2e/gi, '.');
    const dot = dotKind(segment);
    if (dot === '..') {
      if (out.length === 0) return null;
      out.pop();
    } else if (dot === undefined && segment !== '') {
      out.push(segment);
    }
  }
  return out;
}
