import { mkdtemp, readdir, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import type { AuditEvent } from '../../server/audit-sinks/audit-event.js';
import { auditSinkSchema, auditSinkSettings, AUDIT_SINK_FIELDS } from '../../server/audit-sinks/audit-sinks-config.js';
import { createFileSink } from '../../server/audit-sinks/file-sink.js';
import { startOutboxSender } from '../../server/audit-sinks/outbox-sender.js';
import { retryDelay } from '../../server/audit-sinks/retry-delay.js';
import { syslogFrame } from '../../server/audit-sinks/syslog-frame.js';
import { systemClock } from '../../server/clock.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { z } from 'zod';

const event = (n: number): AuditEvent => ({ id: `aev_${String(n).padStart(32, '0')}`, kind: 'identity.failure', at: 1_700_000_000_000 + n, replica: 'r1', code: 'ERR_AUTH_REQUIRED', pad: 'x'.repeat(300) });

describe('audit sinks config', () => {
  const sinks = z.strictObject(AUDIT_SINK_FIELDS);
  it('refuses duplicate sink names, unknown kinds and unknown keys', () => {
    const hook = { name: 'a', type: 'webhook', url: 'https://x.example/h' };
    expect(sinks.safeParse({ sinks: [hook, hook] }).success).toBe(false);
    expect(auditSinkSchema.safeParse({ ...hook, events: ['review.maybe'] }).success).toBe(false);
    expect(auditSinkSchema.safeParse({ ...hook, events: ['review.*', 'identity.failure'] }).success).toBe(true);
    expect(auditSinkSchema.safeParse({ ...hook, token: 'x' }).success).toBe(false);
    expect(auditSinkSettings(sinks.parse({}))).toEqual({ sinks: [], outboxMax: 100_000, flushIntervalMs: 100 });
  });

  it('gives a file sink batches of 1000 by default and the others 100; a batch given is kept', () => {
    expect(auditSinkSchema.parse({ name: 'f', type: 'file', path: '/var/log/sluice/audit.jsonl' }).batch).toBe(1000);
    expect(auditSinkSchema.parse({ name: 'f', type: 'file', path: '/var/log/sluice/audit.jsonl', batch: 50 }).batch).toBe(50);
    expect(auditSinkSchema.parse({ name: 'h', type: 'webhook', url: 'https://x.example/h' }).batch).toBe(100);
    expect(auditSinkSchema.parse({ name: 's', type: 'syslog', host: 'siem', port: 6514 }).batch).toBe(100);
    expect(auditSinkSchema.safeParse({ name: 'f', type: 'file', path: '/x', batch: 10_001 }).success).toBe(false);
  });

  it('reads flush_interval as a duration of at most 10s', () => {
    expect(auditSinkSettings(sinks.parse({ flush_interval: '25ms' })).flushIntervalMs).toBe(25);
    expect(auditSinkSettings(sinks.parse({ flush_interval: '0ms' })).flushIntervalMs).toBe(0);
    const tooLong = sinks.safeParse({ flush_interval: '11s' });
    expect(tooLong.success).toBe(false);
    expect(tooLong.error?.issues[0]?.message).toMatch(/at most 10s/);
    expect(sinks.safeParse({ flush_interval: 'soon' }).success).toBe(false);
  });
});

describe('file sink', () => {
  it('rotates before a batch would pass max_bytes, keeping `keep` old files, lines whole', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-audit-file-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'audit.jsonl');
    const sink = createFileSink(auditSinkSchema.parse({ name: 'f', type: 'file', path, max_bytes: 1024, keep: 2 }) as Extract<z.output<typeof auditSinkSchema>, { type: 'file' }>);
    for (let n = 0; n < 12; n++) await sink.send([event(n), event(100 + n)]);
    expect((await readdir(dir)).sort()).toEqual(['audit.jsonl', 'audit.jsonl.1', 'audit.jsonl.2']);
    const current = (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as AuditEvent);
    expect(current.map((e) => e.id)).toEqual([event(11).id, event(111).id]);
    const older = (await readFile(`${path}.1`, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as AuditEvent);
    expect(older.map((e) => e.id)).toEqual([event(10).id, event(110).id]);
  });

  it('keeps its file open between batches, yet follows the path when the file is moved or deleted under it, looking once a second', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-audit-file-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'audit.jsonl');
    let clock = 1_000_000;
    const sink = createFileSink(auditSinkSchema.parse({ name: 'f', type: 'file', path }) as Extract<z.output<typeof auditSinkSchema>, { type: 'file' }>, { now: () => clock });
    onTestFinished(() => sink.close());
    const ids = async (file: string): Promise<string[]> => (await readFile(file, 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as AuditEvent).id);
    await sink.send([event(1)]);
    await sink.send([event(2)]);
    // logrotate's way: move the file aside. Within the second since the path was last looked at, a batch
    // still goes to the file held (moved, nothing lost); the first batch after it starts a new file at the path.
    await rename(path, `${path}.rotated`);
    clock += 999;
    await sink.send([event(3)]);
    clock += 1;
    await sink.send([event(4)]);
    expect(await ids(`${path}.rotated`)).toEqual([event(1).id, event(2).id, event(3).id]);
    expect(await ids(path)).toEqual([event(4).id]);
    await rm(path);
    clock += 1000;
    await sink.send([event(5)]);
    expect(await ids(path)).toEqual([event(5).id]);
  });
});

describe('syslog frame', () => {
  it('is an octet-counted RFC 5424 message whose count is its UTF-8 length', () => {
    const frame = syslogFrame({ ...event(1), kind: 'session.opened', note: 'café' }, 'gw host', 42).toString('utf8');
    const space = frame.indexOf(' ');
    const message = frame.slice(space + 1);
    expect(Number(frame.slice(0, space))).toBe(Buffer.byteLength(message));
    expect(message).toMatch(/^<110>1 2023-11-14T22:13:20\.001Z gw_host sluice 42 session\.opened - \{/);
  });
});

describe('retry delay', () => {
  it('doubles from the base to the cap, jittered within the upper half', () => {
    expect(retryDelay(1, 100, 10_000, () => 0)).toBe(50);
    expect(retryDelay(1, 100, 10_000, () => 1)).toBe(100);
    expect(retryDelay(4, 100, 10_000, () => 1)).toBe(800);
    expect(retryDelay(30, 100, 10_000, () => 0.5)).toBe(7500);
  });
});

/** A sender of sink `s` in `store` (batch 100) whose deliveries land in `deliveries`, one array each; stopped when the test ends. */
function startTestSender(store: SqliteStore, deliveries: string[][], timing: { readonly lingerMs: number; readonly pollMs?: number }) {
  const sender = startOutboxSender({
    name: 's',
    sink: { send: () => Promise.reject(new Error('unused')), sendDocs: (docs) => (deliveries.push([...docs]), Promise.resolve()), close: () => Promise.resolve() },
    outbox: store,
    holder: 'r1',
    batch: 100,
    timeoutMs: 10_000,
    retryDelayMs: 1000,
    maxRetryDelayMs: 1000,
    clock: systemClock,
    ...timing,
  });
  onTestFinished(() => sender.stop());
  return sender;
}

/** Appends a row of `count` events to sink `s`, numbered from `from`. */
const appendRow = (store: SqliteStore, from: number, count: number) =>
  store.appendAuditEvents([{ sink: 's', docs: Array.from({ length: count }, (_, i) => JSON.stringify(event(from + i))) }], 100_000);

describe('outbox sender', () => {
  it('goes on at once while rows that do not pack into a batch keep it short, and lingers only when the outbox was nearly empty', async () => {
    const store = new SqliteStore({ file: ':memory:' });
    onTestFinished(() => store.close());
    // Rows of 60 events with a batch of 100: every claim takes one row and comes back 40 short.
    for (let r = 0; r < 20; r++) await appendRow(store, r * 60, 60);
    const deliveries: string[][] = [];
    // A sender that lingered after each short claim would deliver one row an hour.
    startTestSender(store, deliveries, { lingerMs: 3_600_000 });
    await vi.waitFor(() => expect(deliveries.flat()).toHaveLength(1200), { timeout: 10_000 });
    expect(deliveries.flat().map((d) => (JSON.parse(d) as AuditEvent).id)).toEqual(Array.from({ length: 1200 }, (_, n) => event(n).id));
    // The last batch is acked by the claim after it, a turn after its delivery.
    await vi.waitFor(async () => expect(await store.auditOutboxDepth('s')).toBe(0), { timeout: 2_000 });
  });

  it('catches up on a backlog for a file sink a thousand events a synced write, at its default batch', async () => {
    const store = new SqliteStore({ file: ':memory:' });
    onTestFinished(() => store.close());
    // What the emitter leaves behind a sender that fell behind: rows of one flush each.
    for (let r = 0; r < 20; r++) await appendRow(store, r * 60, 60);
    const dir = await mkdtemp(join(tmpdir(), 'sluice-audit-backlog-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const config = auditSinkSchema.parse({ name: 's', type: 'file', path: join(dir, 'audit.jsonl') }) as Extract<z.output<typeof auditSinkSchema>, { type: 'file' }>;
    const file = createFileSink(config);
    const writes: number[] = [];
    const sender = startOutboxSender({
      name: 's',
      sink: { ...file, sendDocs: (docs) => (writes.push(docs.length), file.sendDocs!(docs)) },
      outbox: store,
      holder: 'r1',
      batch: config.batch,
      timeoutMs: 10_000,
      retryDelayMs: 1000,
      maxRetryDelayMs: 1000,
      lingerMs: 3_600_000,
      clock: systemClock,
    });
    onTestFinished(() => sender.stop());
    await vi.waitFor(async () => expect((await readFile(config.path, 'utf8')).split('\n').filter(Boolean)).toHaveLength(1200), { timeout: 10_000 });
    // Whole rows up to 1000 events a claim: 16 rows, then the other 4. A batch of 100 took one row of 60 a write.
    expect(writes).toEqual([960, 240]);
    const ids = (await readFile(config.path, 'utf8')).split('\n').filter(Boolean).map((line) => (JSON.parse(line) as AuditEvent).id);
    expect(ids).toEqual(Array.from({ length: 1200 }, (_, n) => event(n).id));
  });

  it('acks a delivered batch with its next claim, or when it stops, so nothing delivered is left to send again', async () => {
    const store = new SqliteStore({ file: ':memory:' });
    onTestFinished(() => store.close());
    await appendRow(store, 0, 10);
    const deliveries: string[][] = [];
    const sender = startTestSender(store, deliveries, { lingerMs: 3_600_000, pollMs: 3_600_000 });
    await vi.waitFor(() => expect(deliveries.flat()).toHaveLength(10), { timeout: 5000 });
    // Delivered, lingering for the next claim, which would ack it: still in the outbox.
    expect(await store.auditOutboxDepth('s')).toBe(10);
    await sender.stop();
    expect(await store.auditOutboxDepth('s')).toBe(0);
    expect(deliveries).toHaveLength(1);
  });

  it('woken from idle by appends, lets the rows gather for one delivery rather than sending each as it comes', async () => {
    const store = new SqliteStore({ file: ':memory:' });
    onTestFinished(() => store.close());
    const deliveries: string[][] = [];
    const sender = startTestSender(store, deliveries, { lingerMs: 300, pollMs: 3_600_000 });
    // Let the first claim find the outbox empty, so the sender waits for a wake.
    await new Promise((r) => setTimeout(r, 50));
    // Three flushes of the emitter a few milliseconds apart, each one row and one wake, as under load.
    for (let r = 0; r < 3; r++) {
      await appendRow(store, r * 10, 10);
      sender.wake();
      await new Promise((r) => setTimeout(r, 10));
    }
    await vi.waitFor(() => expect(deliveries.flat()).toHaveLength(30), { timeout: 5000 });
    expect(deliveries.map((d) => d.length)).toEqual([30]);
    expect(deliveries.flat().map((d) => (JSON.parse(d) as AuditEvent).id)).toEqual(Array.from({ length: 30 }, (_, n) => event(n).id));
  });
});
