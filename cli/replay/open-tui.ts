import { getAccessToken } from '../auth/access-token.js';
import type { CliContext } from '../context.js';
import type { AppProps } from '../tui/app.js';
import type { SessionDetail } from '../tui/model.js';
import { sendAgain } from './resend-client.js';
import { planResend } from './resend-request.js';
import { SessionApi, type SessionFilters } from './session-api.js';
import { runApp } from './tui-runner.js';

export { isInteractive } from './tui-runner.js';
export type { SessionFilters } from './session-api.js';

/**
 * The TUI's I/O, wired to the gateway as the current user: sessions load from the sessions API and a
 * re-send goes through the direct proxy route. `preloaded` sessions are served without a second load.
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
    resend: async (session, exchange, { maskedOk }) => {
      const plan = planResend(session, exchange, { maskedOk });
      return sendAgain({ gateway: api.gateway, token: api.token }, plan);
    },
  };
}

/**
 * `sluice sessions` on a terminal: the Ink TUI over the sessions matching `filters` (list, session,
 * exchange, playback, re-send). Resolves when the user quits.
 */
export async function openSessionsTui(ctx: CliContext, filters: SessionFilters = {}): Promise<void> {
  const access = await getAccessToken({ profile: ctx.profile(), env: ctx.env });
  const api = new SessionApi(access);
  const sessions = await api.list(filters);
  await runApp(ctx, { sessions, ...tuiServices(api) });
}
