import type { ConnectionConfig } from '../config/schema.js';
import type { Principal } from '../identity/principal.js';
import type { SessionRef } from '../pipeline/exchange.js';
import type { Recording } from './recording.js';

/** Options of the direct proxy's session grouping. */
export interface ProxySessionsOptions {
  readonly recording: Recording;
  /** A session ends after this long without an exchange starting or running. */
  readonly idleMs: number;
  /** New session ids (globally unique). */
  readonly newId: () => string;
}

/** A re-send's session holds one exchange: sealed soon after it ends, so it reads as complete at once. */
const RESEND_IDLE_MS = 1000;

interface Entry {
  readonly id: string;
  /** The session as its exchanges see it, with the recorder found once when it opened. */
  readonly session: SessionRef;
  /** How long the session may stay idle before it is sealed. */
  readonly idleMs: number;
  lastUsed: number;
  timer: NodeJS.Timeout | undefined;
  /** Calls whose response has not closed yet, a request held for review among them. */
  calls: number;
}

/**
 * Groups an agent's direct-proxy calls into sessions: one per identity (issuer and subject) and
 * connection, opened on the first call and sealed once idle for `idleMs` (never while an exchange of it
 * is still running).
 */
export class ProxySessions {
  readonly #o: ProxySessionsOptions;
  readonly #entries = new Map<string, Entry>();

  constructor(options: ProxySessionsOptions) {
    this.#o = options;
  }

  /**
   * The session of this call, opening one if needed; its recording opens in the background and the recorder
   * waits for it. A re-send (`resendOf`) always gets a session of its own, sealed once idle like the others.
   */
  sessionFor(
    principal: Principal,
    connection: ConnectionConfig,
    clientAddress: string,
    options: { readonly resendOf?: string; readonly response?: { once(event: 'close', listener: () => void): unknown } } = {},
  ): SessionRef {
    const { resendOf } = options;
    // A fresh id never matches an entry, so no other call joins a re-send's session.
    const key = resendOf === undefined ? `${principal.issuer}\0${principal.sub}\0${connection.name}` : `resend\0${this.#o.newId()}`;
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      const idleMs = resendOf === undefined ? this.#o.idleMs : Math.min(this.#o.idleMs, RESEND_IDLE_MS);
      const id = this.#o.newId();
      const { recording } = this.#o;
      const opening = recording.openSession({ id, principal, connection, via: 'proxy', clientAddress, ...(resendOf === undefined ? {} : { resendOf }) });
      const created: Entry = { id, session: { id, recorder: recording.recorder.forSession({ id }) }, idleMs, lastUsed: Date.now(), timer: undefined, calls: 0 };
      entry = created;
      this.#entries.set(key, created);
      opening.catch(() => {
        // A session that could not open is forgotten, so the next call tries a fresh one.
        if (this.#entries.get(key) === created) {
          clearTimeout(created.timer);
          this.#entries.delete(key);
        }
      });
    }
    entry.lastUsed = Date.now();
    // One timer per session, not one per call: when it fires, `#expire` re-arms it for what is left of the idle time.
    if (entry.timer === undefined) this.#arm(key, entry, entry.idleMs);
    if (options.response) {
      // A call held for a reviewer records nothing until it is decided: the session must outlive the wait.
      const held = entry;
      held.calls++;
      options.response.once('close', () => {
        held.calls--;
        held.lastUsed = Date.now();
      });
    }
    return entry.session;
  }

  /** Stops the idle timers; sessions are sealed by `Recording.close`. */
  close(): void {
    for (const e of this.#entries.values()) clearTimeout(e.timer);
    this.#entries.clear();
  }

  #arm(key: string, entry: Entry, delayMs: number): void {
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      void this.#expire(key, entry);
    }, delayMs);
    entry.timer.unref();
  }

  async #expire(key: string, entry: Entry): Promise<void> {
    if (this.#entries.get(key) !== entry) return;
    const idleFor = Date.now() - entry.lastUsed;
    if (idleFor < entry.idleMs) {
      this.#arm(key, entry, entry.idleMs - idleFor);
      return;
    }
    if (entry.calls > 0 || (await this.#o.recording.isBusy(entry.id))) {
      this.#arm(key, entry, entry.idleMs);
      return;
    }
    // A call may have arrived while isBusy was awaited; from here to the delete nothing else runs.
    if (this.#entries.get(key) !== entry) return;
    if (Date.now() - entry.lastUsed < entry.idleMs || entry.calls > 0) {
      this.#arm(key, entry, entry.idleMs);
      return;
    }
    this.#entries.delete(key);
    await this.#o.recording.closeSession(entry.id, 'idle').catch(() => undefined);
  }
}
