import type { ReloadReport } from '../config/live-config.js';
import type { AuditEvents } from './audit-events.js';

/** A reload told as `admin.reload`, whoever asked for it: an admin (`by`: their subject) or the operator's SIGHUP (`by: "SIGHUP"`). */
export type AuditedReload = (by: string) => Promise<ReloadReport>;

/**
 * Wraps `reload` so every attempt is audited, applied or refused: a configuration change reaching the
 * gateway by a signal changes policy as much as one through the API, and a SIEM must see both.
 */
export function auditedReload(reload: () => Promise<ReloadReport>, audit: AuditEvents): AuditedReload {
  return async (by) => {
    let report: ReloadReport;
    try {
      report = await reload();
    } catch (err) {
      audit.emit('admin.reload', { by, result: 'refused', code: (err as { code?: string }).code ?? 'ERR_INTERNAL' });
      throw err;
    }
    audit.emit('admin.reload', { by, result: 'applied', applied: report.applied, restart_required: report.restartRequired });
    return report;
  };
}
