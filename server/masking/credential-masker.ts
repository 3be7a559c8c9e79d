import type { BodyMasker } from './body-masker.js';
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
 * A streaming literal search over bytes: the credentials are replaced wherever they appear, and at most
 * the last (longest secret − 1) bytes are held back, and only when they begin a secret.
 * Works on bytes so a body that needs no other masking is neither decoded nor re-encoded.
 */
export class CredentialScanner {
  readonly #secrets: readonly Buffer[];
  readonly #replacements: readonly Buffer[];
  readonly #hold: number;
  readonly #counter: MaskingCounter;
  #tail: Buffer = Buffer.alloc(0);

  constructor(secrets: readonly string[], counter: MaskingCounter) {
    this.#secrets = secrets.map((s) => Buffer.from(s, 'utf8'));
    this.#replacements = secrets.map((s) => Buffer.from(credentialReplacement(s), 'utf8'));
    this.#hold = Math.max(0, ...this.#secrets.map((s) => s.length - 1));
    this.#counter = counter;
  }

  /** What may be sent after `chunk`. */
  push(chunk: Buffer): Buffer {
    const data = this.#tail.length === 0 ? chunk : Buffer.concat([this.#tail, chunk]);
    const { out, safe } = this.#replace(data, false);
    this.#tail = data.subarray(safe);
    return out;
  }

  /** The held-back rest. */
  end(): Buffer {
    const { out } = this.#replace(this.#tail, true);
    this.#tail = Buffer.alloc(0);
    return out;
  }

  /**
   * Where the tail that could begin a secret starts: only such a tail is held, so the end of an SSE
   * event is not kept waiting for the next chunk.
   */
  #heldFrom(data: Buffer, pos: number): number {
    for (let i = Math.max(pos, data.length - this.#hold); i < data.length; i++) {
      const rest = data.length - i;
      for (const s of this.#secrets) {
        if (s.length > rest && data.compare(s, 0, rest, i) === 0) return i;
      }
    }
    return data.length;
  }

  /** Replaces matches in `data`; `safe` is where the held-back part starts (all of it at the end). */
  #replace(data: Buffer, final: boolean): { out: Buffer; safe: number } {
    const parts: Buffer[] = [];
    let pos = 0;
    for (;;) {
      let at = -1;
      let which = 0;
      this.#secrets.forEach((s, k) => {
        const i = data.indexOf(s, pos);
        if (i !== -1 && (at === -1 || i < at || (i === at && s.length > this.#secrets[which]!.length))) {
          at = i;
          which = k;
        }
      });
      if (at === -1) break;
      const size = this.#secrets[which]!.length;
      parts.push(data.subarray(pos, at), this.#replacements[which]!);
      this.#counter.add('credential', 'builtin:injected_credential');
      pos = at + size;
    }
    const safe = final ? data.length : this.#heldFrom(data, pos);
    if (parts.length === 0) return { out: data.subarray(0, safe), safe };
    parts.push(data.subarray(pos, safe));
    return { out: Buffer.concat(parts), safe };
  }
}

/**
 * A body masker that keeps injected credentials out of the answer: it scans the output of the
 * profile's masker (or, on a connection without masking, the body itself) for the literals.
 */
export class CredentialBodyMasker implements BodyMasker {
  readonly #inner: BodyMasker | null;
  readonly #scanner: CredentialScanner;

  constructor(inner: BodyMasker | null, secrets: readonly string[], counter: MaskingCounter) {
    this.#inner = inner;
    this.#scanner = new CredentialScanner(secrets, counter);
  }

  write(chunk: Buffer): Buffer {
    return this.#scanner.push(this.#inner === null ? chunk : bytes(this.#inner.write(chunk)));
  }

  end(): Buffer {
    const last = this.#inner === null ? Buffer.alloc(0) : bytes(this.#inner.end());
    return Buffer.concat([this.#scanner.push(last), this.#scanner.end()]);
  }

  async writeAsync(chunk: Buffer): Promise<Buffer> {
    if (this.#inner === null) return this.write(chunk);
    const out = this.#inner.writeAsync ? await this.#inner.writeAsync(chunk) : this.#inner.write(chunk);
    return this.#scanner.push(bytes(out));
  }

  async endAsync(): Promise<Buffer> {
    if (this.#inner === null) return this.end();
    const last = this.#inner.endAsync ? await this.#inner.endAsync() : this.#inner.end();
    return Buffer.concat([this.#scanner.push(bytes(last)), this.#scanner.end()]);
  }
}

function bytes(part: string | Buffer): Buffer {
  return typeof part === 'string' ? Buffer.from(part, 'utf8') : part;
}
