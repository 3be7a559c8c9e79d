import type { AppProps } from '../tui/app.js';
import type { SessionDetail } from '../tui/model.js';
import { sendAgain } from './resend-client.js';
import { planResend } from './resend-request.js';
import type { SessionApi } from './session-api.js';

/**
 * The TUI's I/O, wired to the gateway as the current user: sessions load from the sessions API and a
 * re-send goes through the direct proxy route. `preloaded` sessions are served once without a second load.
 */
export function tuiServices(api: SessionApi, preloaded: readonly SessionDetail[] = []): Pick<AppProps, 'loadSession' | 'resend'> {
  const cache = new Map(preloaded.map((d) => [d.summary.id, d]));
  return {
    loadSession: async (id) => {
      const hit = cache.get(id);
      if (hit !== undefined) {
        // Once: coming back to the session later shows what was recorded since.
        cache.delete(id);
        return hit;
      }
      return api.load(id);
    },
    resend: async (session, exchange, { maskedOk }) => sendAgain({ gateway: api.gateway, token: api.token }, planResend(session, exchange, { maskedOk })),
  };
}
