import { describe, expect, it, vi } from 'vitest';
import { createAuditEvents } from '../../server/audit-sinks/audit-events.js';
import type { AuditSinkConfig } from '../../server/audit-sinks/audit-sinks-config.js';
import type { AuditOutboxEntry } from '../../server/store/store.js';

const sink = (name: string, events: string[]): AuditSinkConfig =>
  ({ name, type: 'file', path: `/nonexistent/${name}.jsonl`, events, batch: 100, timeout: '10s', retry_delay: '1s', max_retry_delay: '5m', max_bytes: 1 << 20, keep: 1 }) as AuditSinkConfig;

describe('audit events', () => {
  it('writes each event once per sink taking its kind, as the JSON of its facts and stamp, keeping its document across a failed write', async () => {
    const written: { sink: string; doc: string }[] = [];
    const rows: AuditOutboxEntry[] = [];
    let fail = true;
    const events = createAuditEvents({ sinks: [sink('all', ['*']), sink('ids', ['identity.failure'])], replica: 'host/0', outboxMax: 100, now: () => 1234 });
    events.attach({
      appendAuditEvents(entries) {
        if (fail) {
          fail = false;
          written.push(...entries.flatMap((e) => e.docs.map((doc) => ({ sink: `failed:${e.sink}`, doc }))));
          return Promise.reject(new Error('store away'));
        }
        rows.push(...entries);
        written.push(...entries.flatMap((e) => e.docs.map((doc) => ({ sink: e.sink, doc }))));
        return Promise.resolve(0);
      },
    });
    events.emit('exchange', { session: 'ses_1', code: 'none', tokens: { in: 1, out: 2 }, id: 'forged', gone: undefined });
    events.emit('identity.failure', { code: 'ERR_TOKEN_EXPIRED' });
    events.emit('admin.reload');
    await events.flush();
    await events.flush();
    const docs = written.filter((w) => !w.sink.startsWith('failed:'));
    // One outbox row per sink for the flush, the events in emit order.
    expect(rows.map((r) => [r.sink, r.docs.length])).toEqual([
      ['all', 3],
      ['ids', 1],
    ]);
    expect(docs.map((d) => d.sink)).toEqual(['all', 'all', 'all', 'ids']);
    const parsed = docs.map((d) => JSON.parse(d.doc) as Record<string, unknown>);
    expect(parsed[0]).toEqual({ session: 'ses_1', code: 'none', tokens: { in: 1, out: 2 }, id: parsed[0]!.id, kind: 'exchange', at: 1234, replica: 'host/0' });
    expect(parsed[0]!.id).toMatch(/^aev_[0-9a-f]{32}$/);
    expect(parsed[0]!.id).not.toBe('forged');
    expect(parsed[2]).toEqual({ id: parsed[2]!.id, kind: 'admin.reload', at: 1234, replica: 'host/0' });
    expect(parsed[3]).toEqual(parsed[1]);
    expect(new Set(parsed.map((p) => p.id)).size).toBe(3);
    // The retry writes the very documents the failed write tried: same ids, so a receiver can drop duplicates.
    expect(written.filter((w) => w.sink.startsWith('failed:')).map((w) => w.doc)).toEqual(docs.map((d) => d.doc));
    await events.close();
  });

  it("cuts each sink's run at that sink's batch size, so a claim of whole rows fits a batch", async () => {
    const rows: AuditOutboxEntry[] = [];
    const small = { ...sink('small', ['*']), batch: 2 } as AuditSinkConfig;
    const events = createAuditEvents({ sinks: [small, sink('big', ['*'])], replica: 'host/0', outboxMax: 100, now: () => 1 });
    events.attach({
      appendAuditEvents(entries) {
        rows.push(...entries);
        return Promise.resolve(0);
      },
    });
    for (let i = 0; i < 5; i++) events.emit('admin.reload');
    await events.flush();
    expect(rows.map((r) => [r.sink, r.docs.length])).toEqual([
      ['small', 2],
      ['big', 5],
      ['small', 2],
      ['small', 1],
    ]);
    await events.close();
  });

  it('gathers events emitted over a few milliseconds into one outbox row, written without a flush', async () => {
    const rows: AuditOutboxEntry[] = [];
    const events = createAuditEvents({ sinks: [sink('all', ['*'])], replica: 'host/0', outboxMax: 100, now: () => 1 });
    events.attach({
      appendAuditEvents(entries) {
        rows.push(...entries);
        return Promise.resolve(0);
      },
    });
    // Each row is one transaction and one delivery: events a few milliseconds apart share it.
    for (let i = 0; i < 3; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 7));
      events.emit('admin.reload');
    }
    await vi.waitFor(() => expect(rows.reduce((n, r) => n + r.docs.length, 0)).toBe(3), { timeout: 2000, interval: 5 });
    expect(rows.map((r) => r.docs.length)).toEqual([3]);
    await events.close();
  });
});
