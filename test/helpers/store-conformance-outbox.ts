/**
 * The audit outbox part of the Store conformance suite: rows per sink in append order, one sender per sink
 * at a time under its lease (across two replicas' connections), acks, depth, and the cap that drops the
 * oldest rows and says how many.
 */
import { describe, expect, it } from 'vitest';
import type { AuditOutboxEntry } from '../../server/store/store.js';
import type { OpenStores } from './store-conformance.js';

const T0 = 1_700_000_000_000;
const LEASE = 30_000;
const ROOMY = 100_000;

function entries(sink: string, from: number, count: number): AuditOutboxEntry[] {
  return Array.from({ length: count }, (_, i) => ({ sink, doc: JSON.stringify({ n: from + i }) }));
}

const numbers = (rows: readonly { doc: string }[] | undefined): number[] => (rows ?? []).map((r) => (JSON.parse(r.doc) as { n: number }).n);

export function describeAuditOutboxConformance(openStores: OpenStores): void {
  describe('audit outbox', () => {
    it('keeps each sink its own rows in append order, across appends from two replicas, until acked', async () => {
      const { store, peer } = await openStores();
      expect(await store.appendAuditEvents([...entries('siem', 0, 3), ...entries('file', 100, 1)], ROOMY)).toBe(0);
      expect(await peer.appendAuditEvents(entries('siem', 3, 2), ROOMY)).toBe(0);
      expect(await store.auditOutboxDepth('siem')).toBe(5);
      expect(await peer.auditOutboxDepth()).toBe(6);

      const batch = await store.claimAuditBatch('siem', 'r1', T0, LEASE, 4);
      expect(numbers(batch)).toEqual([0, 1, 2, 3]);
      const seqs = batch!.map((r) => r.seq);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
      await store.ackAuditEvents('siem', seqs.slice(0, 2));
      // Unacked rows come again: at least once.
      expect(numbers(await store.claimAuditBatch('siem', 'r1', T0 + 1, LEASE, 10))).toEqual([2, 3, 4]);
      // An ack names one sink: the other sink's rows stay.
      await store.ackAuditEvents('file', seqs);
      expect(numbers(await peer.claimAuditBatch('file', 'r2', T0, LEASE, 10))).toEqual([100]);
      expect(await store.auditOutboxDepth('siem')).toBe(3);
    });

    it('lets one holder claim a sink at a time: the other gets nothing until the lease expires', async () => {
      const { store, peer } = await openStores();
      await store.appendAuditEvents(entries('siem', 0, 2), ROOMY);
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

    it('drops the oldest rows past the cap, whatever their sink, and says how many', async () => {
      const { store, peer } = await openStores();
      expect(await store.appendAuditEvents([...entries('siem', 0, 3), ...entries('file', 0, 2)], 10)).toBe(0);
      expect(await peer.appendAuditEvents(entries('siem', 3, 7), 6)).toBe(6);
      expect(await store.auditOutboxDepth()).toBe(6);
      expect(numbers(await store.claimAuditBatch('siem', 'r1', T0, LEASE, 100))).toEqual([4, 5, 6, 7, 8, 9]);
      expect(await store.claimAuditBatch('file', 'r1', T0, LEASE, 100)).toEqual([]);
      // Acked rows no longer count toward the cap.
      const rows = await store.claimAuditBatch('siem', 'r1', T0, LEASE, 100);
      await store.ackAuditEvents('siem', rows!.map((r) => r.seq));
      expect(await store.appendAuditEvents(entries('siem', 10, 6), 6)).toBe(0);
      // Sequence numbers keep growing past deleted rows, so a late ack never removes a newer row.
      const next = await store.claimAuditBatch('siem', 'r1', T0, LEASE, 100);
      expect(Math.min(...next!.map((r) => r.seq))).toBeGreaterThan(Math.max(...rows!.map((r) => r.seq)));
    });
  });
}
