import { getAccessToken } from '../auth/access-token.js';
import type { CliContext } from '../context.js';
import { SessionApi, type SessionFilters } from './session-api.js';
import { tuiServices } from './tui-services.js';
import { runApp } from './tui-runner.js';

export { isInteractive } from './interactive.js';
export type { SessionFilters } from './session-api.js';

/**
 * `sluice sessions` on a terminal: the Ink TUI over the sessions matching `filters` (list, session,
 * exchange, playback, re-send), as the current user. Resolves when the user quits.
 */
export async function openSessionsTui(ctx: CliContext, filters: SessionFilters = {}): Promise<void> {
  const access = await getAccessToken({ profile: ctx.profile(), env: ctx.env });
  const api = new SessionApi(access);
  const sessions = await api.list(filters);
  await runApp(ctx, { sessions, ...tuiServices(api) });
}
