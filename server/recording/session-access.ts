import { SluiceError } from '../../shared/errors.js';
import { hasRole, type Principal } from '../identity/principal.js';
import type { SessionInfo } from '../store/store.js';

/** The `audit` section of the configuration. */
export interface AuditSettings {
  /** Whether users may read the contents (events, exports) of their own sessions. */
  readonly users_read_own: boolean;
}

/** Auditors and admins read every session, index and contents alike. */
export function readsAllSessions(principal: Principal): boolean {
  return hasRole(principal, 'auditor', 'admin');
}

/**
 * The user filter a listing must apply: anyone for auditors and admins (whatever they asked for),
 * the caller's own subject for everyone else. Asking for another user's sessions is refused rather
 * than silently narrowed, so a script never mistakes "none visible" for "none exist".
 */
export function listingUser(principal: Principal, requested: string | undefined): string | undefined {
  if (readsAllSessions(principal)) return requested;
  if (requested !== undefined && requested !== principal.sub) {
    throw new SluiceError('ERR_FORBIDDEN', { message: "Only auditors and admins list other users' sessions" });
  }
  return principal.sub;
}

/** Whether the principal may see this session's index entry. */
export function canSeeSession(principal: Principal, session: SessionInfo): boolean {
  return readsAllSessions(principal) || session.user === principal.sub;
}

/** Whether the principal may read this session's recorded events and exports. */
export function canReadContents(principal: Principal, session: SessionInfo, settings: AuditSettings): boolean {
  return readsAllSessions(principal) || (settings.users_read_own && session.user === principal.sub);
}

/** Throws ERR_FORBIDDEN unless the principal may see the session's index entry. */
export function assertCanSee(principal: Principal, session: SessionInfo): void {
  if (!canSeeSession(principal, session)) {
    throw new SluiceError('ERR_FORBIDDEN', { message: "Only auditors and admins see other users' sessions" });
  }
}

/** Throws ERR_FORBIDDEN unless the principal may read the session's contents. */
export function assertCanRead(principal: Principal, session: SessionInfo, settings: AuditSettings): void {
  assertCanSee(principal, session);
  if (!canReadContents(principal, session, settings)) {
    throw new SluiceError('ERR_FORBIDDEN', {
      message: 'Only auditors and admins read recorded contents on this gateway (audit.users_read_own is false)',
    });
  }
}
