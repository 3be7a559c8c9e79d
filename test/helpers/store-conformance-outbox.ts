/**
 * The audit outbox part of the Store conformance suite: rows (runs of events) per sink in append order,
 * claims of whole rows up to a number of events, one sender per sink at a time under its lease (across two
 * replicas' connections), acks, depth in events, and the cap that drops the oldest rows and says how many
 * events went.
 */
import { describe, expect, it } from 'vitest';
import type { AuditOutboxEntry } from '../../server/store/store.js';
import type { OpenStores } from './store-conformance.js';

const T0 = 1_700_000_000_000;
const LEASE = 30_000;
const ROOMY = 100_000;

/** One row: a run of `count` events for `sink`, numbered from `from`. */
function run(sink: string, from: number, count: number): AuditOutboxEntry {
  return { sink, docs: Array.from({ length: count }, (_, i) => JSON.stringify({ n: from + i })) };
}

const numbers = (rows: readonly { docs: readonly string[] }[] | undefined): number[] =>
  (rows ?? []).flatMap((r) => r.docs.map((doc) => (JSON.parse(doc) as { n: number }).n));

export function describeAuditOutboxConformance(openStores: OpenStores): void {
  describe('audit outbox', () => {
    it('keeps each sink its own rows in append order, across appends from two replicas, until acked', async () => {
      const { store, peer } = await openStores();
      expect(await store.appendAuditEvents([run('siem', 0, 3), run('file', 100, 1), run('siem', 3, 1)], ROOMY)).toBe(0);
      expect(await peer.appendAuditEvents([run('siem', 4, 2)], ROOMY)).toBe(0);
      expect(await store.auditOutboxDepth('siem')).toBe(6);
      expect(await peer.auditOutboxDepth()).toBe(7);

      // Whole rows up to the limit in events: 3 + 1 fit in 5, the next row of 2 does not.
      const batch = await store.claimAuditBatch('siem', 'r1', T0, LEASE, 5);
      expect(numbers(batch)).toEqual([0, 1, 2, 3]);
      const seqs = batch!.map((r) => r.seq);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
      await store.ackAuditEvents('siem', seqs.slice(0, 1));
      // Unacked rows come again: at least once.
      expect(numbers(await store.claimAuditBatch('siem', 'r1', T0 + 1, LEASE, 10))).toEqual([3, 4, 5]);
      // An ack names one sink: the other sink's rows stay.
      await store.ackAuditEvents('file', seqs);
      expect(numbers(await peer.claimAuditBatch('file', 'r2', T0, LEASE, 10))).toEqual([100]);
      expect(await store.auditOutboxDepth('siem')).toBe(3);
    });

    it('gives a row larger than the limit alone rather than never', async () => {
      const { store } = await openStores();
      await store.appendAuditEvents([run('siem', 0, 4), run('siem', 4, 1)], ROOMY);
      expect(numbers(await store.claimAuditBatch('siem', 'r1', T0, LEASE, 2))).toEqual([0, 1, 2, 3]);
    });

    it('refuses a document with a raw line break rather than splitting it into two events', async () => {
      const { store } = await openStores();
      await expect(store.appendAuditEvents([{ sink: 'siem', docs: ['{"a":1}\n{"forged":true}'] }], ROOMY)).rejects.toThrow(/line break/);
      expect(await store.auditOutboxDepth()).toBe(0);
    });

    it('lets one holder claim a sink at a time: the other gets nothing until the lease expires', async () => {
      const { store, peer } = await openStores();
      await store.appendAuditEvents([run('siem', 0, 2)], ROOMY);
      const claims = await Promise.all(['a', 'b', 'c', 'd'].map((h, i) => (i % 2 === 0 ? store : peer).claimAuditBatch('siem', h, T0, LEASE, 10)));
      expect(claims.filter((c) => c !== undefined)).toHaveLength(1);
      const winner = ['a', 'b', 'c', 'd'][claims.findIndex((c) => c !== undefined)]!;
      const loser = winner === 'a' ? 'b' : 'a';
      expect(await peer.claimAuditBatch('siem', loser, T0 + LEASE - 1, LEASE, 10)).toBeUndefined();
      // Renewed by its holder, then taken over once it lapses.
      expect(numbers(await store.claimAuditBatch('siem', winner, T0 + 10, LEASE, 10))).toEqual([0, 1]);
      expect(numbers(await peer.claimAuditBatch('siem', loser, T0 + 10 + LEASE, LEASE, 10))).toEqual([0, 1]);
      expect(await store.claimAuditBatch('siem', winner, T0 + 11 + LEASE, LEASE, 10)).toBeUndefined();
      // A sink's lease is its own: another sink is free.
      expect(await store.claimAuditBatch('file', winner, T0 + 11 + LEASE, LEASE, 10)).toEqual([]);
    });

    it('acks the batch delivered before with the next claim, of its sink only, even when the lease has passed to another holder', async () => {
      const { store, peer } = await openStores();
      await store.appendAuditEvents([run('siem', 0, 2), run('file', 100, 1), run('siem', 2, 2)], ROOMY);
      const first = await store.claimAuditBatch('siem', 'r1', T0, LEASE, 2);
      expect(numbers(first)).toEqual([0, 1]);
      const fileSeqs = (await store.claimAuditBatch('file', 'r1', T0, LEASE, 10))!.map((r) => r.seq);
      // The next claim removes what the first delivered and reads on from there; seqs of another sink are ignored.
      const second = await store.claimAuditBatch('siem', 'r1', T0 + 1, LEASE, 10, [...first!.map((r) => r.seq), ...fileSeqs]);
      expect(numbers(second)).toEqual([2, 3]);
      expect(await store.auditOutboxDepth('siem')).toBe(2);
      expect(await store.auditOutboxDepth('file')).toBe(1);
      // Refused the lease (it lapsed and another replica took it), the claim still removes what this holder delivered.
      expect(numbers(await peer.claimAuditBatch('siem', 'r2', T0 + 1 + LEASE, LEASE, 10))).toEqual([2, 3]);
      expect(await store.claimAuditBatch('siem', 'r1', T0 + 2 + LEASE, LEASE, 10, second!.map((r) => r.seq))).toBeUndefined();
      expect(await peer.auditOutboxDepth('siem')).toBe(0);
    });

    it('drops the oldest rows past the cap in events, whatever their sink, and says how many events went', async () => {
      const { store, peer } = await openStores();
      expect(await store.appendAuditEvents([run('siem', 0, 3), run('file', 0, 2)], 10)).toBe(0);
      // 9 events, 3 over: the oldest row (3 events) goes whole, the next is kept.
      expect(await peer.appendAuditEvents([run('siem', 3, 4)], 6)).toBe(3);
      expect(await store.auditOutboxDepth()).toBe(6);
      expect(numbers(await store.claimAuditBatch('siem', 'r1', T0, LEASE, 100))).toEqual([3, 4, 5, 6]);
      expect(numbers(await store.claimAuditBatch('file', 'r1', T0, LEASE, 100))).toEqual([0, 1]);
      // 4 over with rows of 2 and 4 ahead: both go (2 is not enough), 6 events.
      expect(await store.appendAuditEvents([run('siem', 7, 4)], 6)).toBe(6);
      expect(numbers(await store.claimAuditBatch('siem', 'r1', T0, LEASE, 100))).toEqual([7, 8, 9, 10]);
      // Acked rows no longer count toward the cap.
      const rows = await store.claimAuditBatch('siem', 'r1', T0, LEASE, 100);
      await store.ackAuditEvents('siem', rows!.map((r) => r.seq));
      expect(await store.appendAuditEvents([run('siem', 11, 6)], 6)).toBe(0);
      // Sequence numbers keep growing past deleted rows, so a late ack never removes a newer row.
      const next = await store.claimAuditBatch('siem', 'r1', T0, LEASE, 100);
      expect(Math.min(...next!.map((r) => r.seq))).toBeGreaterThan(Math.max(...rows!.map((r) => r.seq)));
    });
  });
}
