import type { SessionCounters, SessionProgress, TokenUsage } from '../store/store.js';
import type { EventFields, EventType } from './event-types.js';
import type { SessionWriter } from './session-writer.js';
import type { SigningKey } from './signing-key.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** How long a closing session waits for its exchanges in flight to record their end. */
const CLOSE_WAIT_MS = 5000;

/** What a sealed (or failed) session reports to its owner. */
export interface SessionClosed {
  readonly status: 'closed' | 'interrupted';
  readonly endedAt: number;
  readonly records?: number;
  readonly finalHash?: string;
  /** Hex SHA-256 of the file's last record (the checkpoint itself), what the seal log pins; set when sealed. */
  readonly headHash?: string;
}

/**
 * One open recording session: its file writer, the exchanges in flight, and the index progress not yet
 * written to the store. Closed once: it waits (bounded) for exchanges in flight, appends `session.end`,
 * then seals the file with a signed checkpoint.
 */
export class OpenSessionFile {
  readonly id: string;
  /** The session file's archive name (`sessions/…/<id>.rec`), which the index and the seal log record. */
  readonly name: string;
  readonly writer: SessionWriter;
  #active = 0;
  #exchanges = 0;
  #idle: (() => void) | undefined;
  #closing: Promise<SessionClosed> | undefined;
  #counters: Mutable<SessionCounters> = { requests: 0, errors: 0, bytesUp: 0, bytesDown: 0, denied: 0, held: 0, masked: 0 };
  #tokens: Mutable<TokenUsage> = { prompt: 0, completion: 0, total: 0 };
  #models: string[] = [];
  #modelUsage = new Map<string, { requests: number; prompt: number; completion: number }>();
  #lastStatus: number | undefined;
  #dirty = false;

  constructor(id: string, name: string, writer: SessionWriter) {
    this.id = id;
    this.name = name;
    this.writer = writer;
  }

  /** Whether an exchange is in flight. */
  get busy(): boolean {
    return this.#active > 0;
  }

  get closing(): boolean {
    return this.#closing !== undefined;
  }

  /** Appends an event (see SessionWriter.append). */
  append<T extends EventType>(type: T, fields: EventFields[T], payload?: Buffer, t?: number): Promise<void> {
    return this.writer.append(type, fields, payload, t);
  }

  /** Appends an event nothing waits for on its own, to share the record of the next (see SessionWriter.defer). */
  defer<T extends EventType>(type: T, fields: EventFields[T], payload?: Buffer, t?: number): Promise<void> {
    return this.writer.defer(type, fields, payload, t);
  }

  /** Counts an exchange in flight until `exchangeDone`. */
  exchangeStarted(): void {
    this.#active++;
    this.#exchanges++;
  }

  exchangeDone(): void {
    if (this.#active > 0) this.#active--;
    if (this.#active === 0) this.#idle?.();
  }

  /** Adds to the progress the index has not seen yet. */
  addProgress(p: SessionProgress): void {
    for (const [k, v] of Object.entries(p.counters ?? {}) as [keyof SessionCounters, number][]) this.#counters[k] += v;
    for (const [k, v] of Object.entries(p.tokens ?? {}) as [keyof TokenUsage, number][]) this.#tokens[k] += v;
    for (const m of p.models ?? []) if (!this.#models.includes(m)) this.#models.push(m);
    for (const [m, u] of Object.entries(p.modelUsage ?? {})) {
      const sum = this.#modelUsage.get(m) ?? { requests: 0, prompt: 0, completion: 0 };
      this.#modelUsage.set(m, { requests: sum.requests + u.requests, prompt: sum.prompt + u.prompt, completion: sum.completion + u.completion });
    }
    if (p.lastStatus !== undefined) this.#lastStatus = p.lastStatus;
    this.#dirty = true;
  }

  /** Takes the progress accumulated since the last call, or undefined if there is none. */
  takeProgress(): SessionProgress | undefined {
    if (!this.#dirty) return undefined;
    const progress: SessionProgress = {
      counters: this.#counters,
      tokens: this.#tokens,
      models: this.#models,
      ...(this.#modelUsage.size === 0 ? {} : { modelUsage: Object.fromEntries(this.#modelUsage) }),
      ...(this.#lastStatus === undefined ? {} : { lastStatus: this.#lastStatus }),
    };
    this.#counters = { requests: 0, errors: 0, bytesUp: 0, bytesDown: 0, denied: 0, held: 0, masked: 0 };
    this.#tokens = { prompt: 0, completion: 0, total: 0 };
    this.#models = [];
    this.#modelUsage = new Map();
    this.#lastStatus = undefined;
    this.#dirty = false;
    return progress;
  }

  /** Puts back progress the store did not take, so it is retried with the next flush. */
  restoreProgress(p: SessionProgress): void {
    this.addProgress(p);
  }

  /** Ends the session: waits for exchanges in flight, appends `session.end`, seals. Idempotent. */
  close(reason: string, signingKey: SigningKey): Promise<SessionClosed> {
    this.#closing ??= this.#close(reason, signingKey);
    return this.#closing;
  }

  async #close(reason: string, signingKey: SigningKey): Promise<SessionClosed> {
    if (this.#active > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, CLOSE_WAIT_MS);
        timer.unref();
        this.#idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    try {
      await this.writer.append('session.end', { reason, exchanges: this.#exchanges });
      const { records, finalHash } = await this.writer.seal(signingKey);
      return { status: 'closed', endedAt: Date.now(), records, finalHash, headHash: this.writer.lastHash.toString('hex') };
    } catch {
      // The file keeps every whole record it has; without a checkpoint it reads as interrupted.
      await this.writer.close().catch(() => undefined);
      return { status: 'interrupted', endedAt: Date.now() };
    }
  }
}
