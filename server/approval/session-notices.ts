import type { SessionNotice } from './held-requests.js';

/** Sends a notice down one tunnel. */
export type NoticeSender = (notice: SessionNotice) => void;

/**
 * The tunnels of this replica by session id, so a held request can tell its requester's `sluice connect`
 * "waiting for approval r_…". A session's exchanges run on the replica that holds its tunnel, so a local
 * map is enough even with several replicas.
 */
export interface SessionNotices {
  /** Returns the function that unregisters. */
  register(sessionId: string, send: NoticeSender): () => void;
  /** Sends to the session's tunnel if it is open here; a proxy session has none and gets nothing. */
  notify(sessionId: string, notice: SessionNotice): void;
}

/** Creates an empty registry. */
export function createSessionNotices(): SessionNotices {
  const senders = new Map<string, NoticeSender>();
  return {
    register(sessionId, send) {
      senders.set(sessionId, send);
      return () => {
        if (senders.get(sessionId) === send) senders.delete(sessionId);
      };
    },
    notify(sessionId, notice) {
      try {
        senders.get(sessionId)?.(notice);
      } catch {
        // The tunnel is closing; the notice has nowhere to go.
      }
    },
  };
}
