import { outputBytes, type BodyMasker } from './body-masker.js';
import type { MaskingCounter } from './masking-summary.js';

/** What a credential sluice injected upstream becomes wherever an answer carries it. */
export const CREDENTIAL_REPLACEMENT = '[CREDENTIAL]';

/**
 * The replacement of one credential literal, exactly as long as it: a body that needs no other masking
 * keeps its Content-Length, so its framing never changes.
 */
export function credentialReplacement(secret: string): string {
  const size = Buffer.byteLength(secret, 'utf8');
  return size >= CREDENTIAL_REPLACEMENT.length ? CREDENTIAL_REPLACEMENT + '*'.repeat(size - CREDENTIAL_REPLACEMENT.length) : '*'.repeat(size);
}

/**
 * Values shorter than this are not treated as secrets: a connection's `headers` also carry versions
 * and flags (`anthropic-version: 2023-06-01` is 10), and masking `v2` everywhere would garble answers.
 */
const MIN_SECRET_CHARS = 8;

/**
 * The literals to keep from the caller for a connection whose `headers` sluice adds to each upstream
 * request: every value, the token after an auth scheme (`Bearer …`), and the forms they take inside a
 * JSON string (a `/` written `\/`). Longest first, so a value is masked whole before a part of it.
 */
export function injectedCredentials(headers: Readonly<Record<string, string>>): string[] {
  const found = new Set<string>();
  for (const value of Object.values(headers)) {
    const trimmed = value.trim();
    const scheme = /^[A-Za-z][A-Za-z0-9._~+-]*\s+(\S.*)$/.exec(trimmed);
    for (const secret of scheme === null ? [trimmed] : [trimmed, scheme[1]!.trim()]) {
      if (secret.length < MIN_SECRET_CHARS) continue;
      found.add(secret);
      const escaped = JSON.stringify(secret).slice(1, -1);
      found.add(escaped);
      found.add(escaped.replace(/\//g, '\\/'));
    }
  }
  return [...found].sort((a, b) => b.length - a.length);
}

/** Replaces every credential literal in a whole text (a header value). */
export function maskCredentialsIn(text: string, secrets: readonly string[], counter: MaskingCounter): string {
  let out = text;
  for (const secret of secrets) {
    if (!out.includes(secret)) continue;
    const parts = out.split(secret);
    for (let i = 1; i < parts.length; i++) counter.add('credential', 'builtin:injected_credential');
    out = parts.join(credentialReplacement(secret));
  }
  return out;
}

/**
 * The injected credentials of one connection, compiled once for the byte search (see CredentialScanner):
 * an exchange binds a scanner to them without copying a byte.
 */
export class CredentialLiterals {
  /** The literals, longest first (see `injectedCredentials`). */
  readonly literals: readonly string[];
  readonly bytes: readonly Buffer[];
  readonly replacements: readonly Buffer[];
  /** The most bytes a chunk's end can hold of a literal not yet complete. */
  readonly hold: number;
  /** 1 at each byte value a literal begins with: a chunk's tail is compared only where one begins. */
  readonly starts: Uint8Array;

  constructor(secrets: readonly string[]) {
    this.literals = secrets;
    this.bytes = secrets.map((s) => Buffer.from(s, 'utf8'));
    this.replacements = secrets.map((s) => Buffer.from(credentialReplacement(s), 'utf8'));
    this.hold = Math.max(0, ...this.bytes.map((b) => b.length - 1));
    this.starts = new Uint8Array(256);
    for (const b of this.bytes) if (b.length > 0) this.starts[b[0]!] = 1;
  }

  get empty(): boolean {
    return this.literals.length === 0;
  }
}

const NO_BYTES = Buffer.alloc(0);

/**
 * A streaming literal search over bytes: the credentials are replaced wherever they appear, and at most
 * the last (longest secret − 1) bytes are held back, and only when they begin a secret.
 * Works on bytes so a body that needs no other masking is neither decoded nor re-encoded.
 */
export class CredentialScanner {
  readonly #literals: CredentialLiterals;
  readonly #counter: MaskingCounter;
  #tail: Buffer = NO_BYTES;
  /** Where `#replace` stopped: the start of the tail it holds back. */
  #safe = 0;

  constructor(secrets: readonly string[] | CredentialLiterals, counter: MaskingCounter) {
    this.#literals = secrets instanceof CredentialLiterals ? secrets : new CredentialLiterals(secrets);
    this.#counter = counter;
  }

  /** What may be sent after `chunk`. */
  push(chunk: Buffer): Buffer {
    const data = this.#tail.length === 0 ? chunk : Buffer.concat([this.#tail, chunk]);
    const out = this.#replace(data, false);
    this.#tail = this.#safe === data.length ? NO_BYTES : data.subarray(this.#safe);
    return out;
  }

  /** The held-back rest. */
  end(): Buffer {
    const out = this.#replace(this.#tail, true);
    this.#tail = NO_BYTES;
    return out;
  }

  /**
   * Where the tail that could begin a secret starts: only such a tail is held, so the end of an SSE
   * event is not kept waiting for the next chunk. Bytes no secret begins with are passed over with one
   * look-up each, so a chunk's end costs no comparison unless a secret's first byte is there.
   */
  #heldFrom(data: Buffer, pos: number): number {
    const { bytes, starts, hold } = this.#literals;
    const length = data.length;
    for (let i = Math.max(pos, length - hold); i < length; i++) {
      if (starts[data[i]!] === 0) continue;
      const rest = length - i;
      for (const s of bytes) {
        if (s.length > rest && startsWithTail(data, i, s, rest)) return i;
      }
    }
    return length;
  }

  /** Replaces matches in `data`; sets `#safe` to where the held-back part starts (all of it at the end). */
  #replace(data: Buffer, final: boolean): Buffer {
    const { bytes, replacements } = this.#literals;
    let parts: Buffer[] | null = null;
    let pos = 0;
    for (;;) {
      let at = -1;
      let which = 0;
      for (let k = 0; k < bytes.length; k++) {
        const s = bytes[k]!;
        const i = data.indexOf(s, pos);
        if (i !== -1 && (at === -1 || i < at || (i === at && s.length > bytes[which]!.length))) {
          at = i;
          which = k;
        }
      }
      if (at === -1) break;
      (parts ??= []).push(data.subarray(pos, at), replacements[which]!);
      this.#counter.add('credential', 'builtin:injected_credential');
      pos = at + bytes[which]!.length;
    }
    const safe = final ? data.length : this.#heldFrom(data, pos);
    this.#safe = safe;
    if (parts === null) return safe === data.length ? data : data.subarray(0, safe);
    parts.push(data.subarray(pos, safe));
    return Buffer.concat(parts);
  }
}

/** Whether `data` from `at` (its last `rest` bytes) is how `secret` begins. */
function startsWithTail(data: Buffer, at: number, secret: Buffer, rest: number): boolean {
  for (let j = 0; j < rest; j++) if (data[at + j] !== secret[j]) return false;
  return true;
}

/**
 * A body masker that keeps injected credentials out of the answer: it scans the output of the
 * profile's masker (or, on a connection without masking, the body itself) for the literals. It has
 * the asynchronous forms only when its inner masker has them, so a masker that is synchronous stays so.
 */
export class CredentialBodyMasker implements BodyMasker {
  readonly #inner: BodyMasker | null;
  readonly #scanner: CredentialScanner;
  readonly writeAsync?: (chunk: Buffer) => Promise<Buffer>;
  readonly endAsync?: () => Promise<Buffer>;

  constructor(inner: BodyMasker | null, secrets: readonly string[] | CredentialLiterals, counter: MaskingCounter) {
    this.#inner = inner;
    this.#scanner = new CredentialScanner(secrets, counter);
    if (inner?.writeAsync !== undefined) this.writeAsync = (chunk) => this.#writeAsync(inner, chunk);
    if (inner?.endAsync !== undefined) this.endAsync = () => this.#endAsync(inner);
  }

  write(chunk: Buffer): Buffer {
    return this.#scanner.push(this.#inner === null ? chunk : outputBytes(this.#inner.write(chunk)));
  }

  end(): Buffer {
    return this.#finish(this.#inner === null ? NO_BYTES : outputBytes(this.#inner.end()));
  }

  async #writeAsync(inner: BodyMasker, chunk: Buffer): Promise<Buffer> {
    return this.#scanner.push(outputBytes(await inner.writeAsync!(chunk)));
  }

  async #endAsync(inner: BodyMasker): Promise<Buffer> {
    return this.#finish(outputBytes(await inner.endAsync!()));
  }

  /** The inner masker's last bytes scanned, then the scanner's held-back rest. */
  #finish(last: Buffer): Buffer {
    const out = this.#scanner.push(last);
    const rest = this.#scanner.end();
    return rest.length === 0 ? out : out.length === 0 ? rest : Buffer.concat([out, rest]);
  }
}
