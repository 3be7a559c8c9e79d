import { describe, expect, it } from 'vitest';
import { createAuditEvents } from '../../server/audit-sinks/audit-events.js';
import type { AuditSinkConfig } from '../../server/audit-sinks/audit-sinks-config.js';
import type { AuditOutboxEntry } from '../../server/store/store.js';

const sink = (name: string, events: string[]): AuditSinkConfig =>
  ({ name, type: 'file', path: `/nonexistent/${name}.jsonl`, events, batch: 100, timeout: '10s', retry_delay: '1s', max_retry_delay: '5m', max_bytes: 1 << 20, keep: 1 }) as AuditSinkConfig;

describe('audit events', () => {
  it('writes each event once per sink taking its kind, as the JSON of its facts and stamp, keeping its document across a failed write', async () => {
    const written: AuditOutboxEntry[] = [];
    let fail = true;
    const events = createAuditEvents({ sinks: [sink('all', ['*']), sink('ids', ['identity.failure'])], replica: 'host/0', outboxMax: 100, now: () => 1234 });
    events.attach({
      appendAuditEvents(entries) {
        if (fail) {
          fail = false;
          written.push(...entries.map((e) => ({ sink: `failed:${e.sink}`, doc: e.doc })));
          return Promise.reject(new Error('store away'));
        }
        written.push(...entries);
        return Promise.resolve(0);
      },
    });
    events.emit('exchange', { session: 'ses_1', code: 'none', tokens: { in: 1, out: 2 }, id: 'forged', gone: undefined });
    events.emit('identity.failure', { code: 'ERR_TOKEN_EXPIRED' });
    events.emit('admin.reload');
    await events.flush();
    await events.flush();
    const docs = written.filter((w) => !w.sink.startsWith('failed:'));
    expect(docs.map((d) => d.sink)).toEqual(['all', 'all', 'ids', 'all']);
    const parsed = docs.map((d) => JSON.parse(d.doc) as Record<string, unknown>);
    expect(parsed[0]).toEqual({ session: 'ses_1', code: 'none', tokens: { in: 1, out: 2 }, id: parsed[0]!.id, kind: 'exchange', at: 1234, replica: 'host/0' });
    expect(parsed[0]!.id).toMatch(/^aev_[0-9a-f]{32}$/);
    expect(parsed[0]!.id).not.toBe('forged');
    expect(parsed[3]).toEqual({ id: parsed[3]!.id, kind: 'admin.reload', at: 1234, replica: 'host/0' });
    expect(new Set(parsed.map((p) => p.id)).size).toBe(3);
    // The retry writes the very documents the failed write tried: same ids, so a receiver can drop duplicates.
    expect(written.filter((w) => w.sink.startsWith('failed:')).map((w) => w.doc)).toEqual(docs.map((d) => d.doc));
    await events.close();
  });
});
