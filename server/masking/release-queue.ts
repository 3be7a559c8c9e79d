/** An event waiting in a ReleaseQueue: it leaves once none of its fragments is undecided. */
export interface HeldEvent {
  /** Fragments of the event whose masked text is not decided yet. */
  pending: number;
  /** The event as it is to be sent; called once, when it leaves. */
  readonly render: () => string;
}

/**
 * Keeps a stream's events in their order while some wait for masking decisions: an event leaves only
 * after every event before it has. Events that need no decision leave at once when none is waiting,
 * so a stream with nothing held pays nothing.
 */
export class ReleaseQueue {
  #events: HeldEvent[] = [];
  #head = 0;

  /** Events waiting. */
  get length(): number {
    return this.#events.length - this.#head;
  }

  /** Adds text that needs no decision; returns what may be sent now (the text itself when nothing waits). */
  send(text: string): string {
    if (this.length === 0) return text;
    this.#events.push({ pending: 0, render: () => text });
    return this.release();
  }

  /** Adds an event; returns what may be sent now. */
  add(event: HeldEvent): string {
    if (event.pending === 0 && this.length === 0) return event.render();
    this.#events.push(event);
    return this.release();
  }

  /** What may be sent now: the events at the front whose fragments are all decided. */
  release(): string {
    let out = '';
    while (this.#head < this.#events.length && this.#events[this.#head]!.pending === 0) {
      out += this.#events[this.#head]!.render();
      this.#head++;
    }
    if (this.#head === this.#events.length) {
      this.#events = [];
      this.#head = 0;
    } else if (this.#head > 1024) {
      this.#events = this.#events.slice(this.#head);
      this.#head = 0;
    }
    return out;
  }
}
