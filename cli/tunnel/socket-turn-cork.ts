import type { Readable, Writable } from 'node:stream';

/**
 * What `source` hands `sink` in one turn of the event loop is written together, once the turn is over.
 * One read of the tunnel often carries several DATA frames of a stream (a streamed answer's events, an
 * answer's head and body): to the local socket each would be a system call, and a wake-up of the local
 * client, of its own. One request read from the local socket leaves the guard as its head and its body:
 * to the tunnel stream each would be a DATA frame of its own. Nothing waits longer than the turn. Call it
 * before piping, so the sink is corked ahead of the first write.
 */
export function corkEachTurn(source: Readable, sink: Writable): void {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    sink.uncork();
  };
  source.on('data', () => {
    if (corked) return;
    corked = true;
    sink.cork();
    process.nextTick(uncork);
  });
}
