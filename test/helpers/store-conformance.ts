/**
 * The one conformance suite of the `Store` interface. A backend's test file calls
 * `describeStoreConformance(name, factory)` (and `describeStoreFaults`, store-conformance-faults.ts); the
 * factory returns a fresh, empty store per test and whatever cleans it up. The suite asserts only what
 * the interface promises: sessions, keys, heartbeats and leases here, reviews, grants and tunnel slots in
 * store-conformance-reviews.ts.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import type { NewSession, Store } from '../../server/store/store.js';
import { describeQuotaConformance } from './store-conformance-quotas.js';
import { describeUsageConformance } from './store-conformance-usage.js';
import { describeAuditOutboxConformance } from './store-conformance-outbox.js';
import { accessRequest, describeReviewConformance, heldRequest, ROOMY, T0 } from './store-conformance-reviews.js';

/** A fresh, empty store and how to dispose of it. */
export interface StoreUnderTest {
  readonly store: Store;
  /** Another connection to the same database, as a second replica holds one; races run across both when given. */
  readonly openPeer?: () => Promise<Store>;
  readonly dispose?: () => Promise<void>;
}

/** A fresh store and a second replica's view of it (the store itself when the backend offers none); closed after the test. */
export type OpenStores = () => Promise<{ readonly store: Store; readonly peer: Store }>;

/** Opens what `factory` makes and closes it when the test finishes. */
export function storeOpener(factory: () => Promise<StoreUnderTest>): OpenStores {
  return async () => {
    const { store, openPeer, dispose } = await factory();
    const peer = openPeer === undefined ? store : await openPeer();
    onTestFinished(async () => {
      if (peer !== store) await peer.close();
      await store.close();
      await dispose?.();
    });
    return { store, peer };
  };
}

let counter = 0;

function session(fields: Partial<NewSession> = {}): NewSession {
  counter++;
  return {
    id: `ses_${counter.toString(16).padStart(32, '0')}`,
    user: 'alice',
    email: 'alice@example.com',
    groups: ['ml-eng'],
    connection: 'llm',
    via: 'tunnel',
    clientAddress: '127.0.0.1',
    startedAt: 1_700_000_000_000 + counter,
    file: `sessions/2023/11/14/ses_${counter}.rec`,
    keyId: 'default',
    replica: 'r1',
    ...fields,
  };
}

/** Registers the conformance suite for one backend. */
export function describeStoreConformance(name: string, factory: () => Promise<StoreUnderTest>): void {
  const openStores = storeOpener(factory);
  const open = async (): Promise<Store> => (await openStores()).store;

  describe(`Store conformance: ${name}`, () => {
    it('creates a session open with zeroed counters and reads it back', async () => {
      const store = await open();
      const s = session({ reason: 'debugging', clientId: 'sluice-cli', cliVersion: '0.1.0' });
      await store.createSession(s);
      const got = await store.getSession(s.id);
      expect(got).toMatchObject({ ...s, groups: ['ml-eng'], status: 'open', models: [], lastStatus: 0 });
      expect(got?.counters).toEqual({ requests: 0, errors: 0, bytesUp: 0, bytesDown: 0, denied: 0, held: 0, masked: 0 });
      expect(got?.tokens).toEqual({ prompt: 0, completion: 0, total: 0 });
      expect(got?.endedAt).toBeUndefined();
      expect(await store.getSession('ses_unknown')).toBeUndefined();
    });

    it('refuses a second session with the same id', async () => {
      const store = await open();
      const s = session();
      await store.createSession(s);
      await expect(store.createSession(s)).rejects.toThrow();
    });

    it('adds counters and tokens, merges models in order of first use, keeps the last status', async () => {
      const store = await open();
      const s = session();
      await store.createSession(s);
      await store.updateSession(s.id, { counters: { requests: 1, bytesUp: 100, bytesDown: 1000 }, tokens: { prompt: 5, completion: 7, total: 12 }, models: ['gpt-b'], lastStatus: 200 });
      await store.updateSession(s.id, { counters: { requests: 1, errors: 1, denied: 1, held: 2, masked: 3 }, models: ['gpt-a', 'gpt-b'], lastStatus: 502 });
      await store.updateSession(s.id, { counters: { requests: 1 } });
      await store.updateSession('ses_unknown', { counters: { requests: 1 }, models: ['x'] });
      const got = await store.getSession(s.id);
      expect(got?.counters).toEqual({ requests: 3, errors: 1, bytesUp: 100, bytesDown: 1000, denied: 1, held: 2, masked: 3 });
      expect(got?.tokens).toEqual({ prompt: 5, completion: 7, total: 12 });
      expect(got?.models).toEqual(['gpt-b', 'gpt-a']);
      expect(got?.lastStatus).toBe(502);
    });

    it('seals a session with its record count and final hash', async () => {
      const store = await open();
      const s = session();
      await store.createSession(s);
      await store.closeSession(s.id, { status: 'closed', endedAt: s.startedAt + 5000, records: 12, finalHash: 'ab'.repeat(32) });
      expect(await store.getSession(s.id)).toMatchObject({ status: 'closed', endedAt: s.startedAt + 5000, records: 12, finalHash: 'ab'.repeat(32) });
    });

    it('lists newest first with every filter, combined', async () => {
      const store = await open();
      const a = session({ user: 'alice', connection: 'llm' });
      const b = session({ user: 'bob', connection: 'llm' });
      const c = session({ user: 'alice', connection: 'echo', via: 'proxy' });
      for (const s of [a, b, c]) await store.createSession(s);
      await store.updateSession(a.id, { models: ['gpt-4o'] });
      await store.updateSession(b.id, { models: ['llama'] });
      await store.closeSession(b.id, { status: 'closed', endedAt: b.startedAt + 1 });

      const ids = async (f: Parameters<Store['listSessions']>[0]) => (await store.listSessions(f)).sessions.map((s) => s.id);
      expect(await ids({})).toEqual([c.id, b.id, a.id]);
      expect(await ids({ user: 'alice' })).toEqual([c.id, a.id]);
      expect(await ids({ connection: 'llm' })).toEqual([b.id, a.id]);
      expect(await ids({ user: 'alice', connection: 'llm' })).toEqual([a.id]);
      expect(await ids({ model: 'llama' })).toEqual([b.id]);
      expect(await ids({ status: 'open' })).toEqual([c.id, a.id]);
      expect(await ids({ status: 'closed' })).toEqual([b.id]);
      expect(await ids({ since: b.startedAt })).toEqual([c.id, b.id]);
      expect(await ids({ until: b.startedAt })).toEqual([a.id]);
      expect(await ids({ since: a.startedAt, until: c.startedAt })).toEqual([b.id, a.id]);
      expect(await ids({ user: 'carol' })).toEqual([]);
    });

    it('keeps which exchange a re-send re-sends, and finds the re-sends of an exchange or of a whole session', async () => {
      const store = await open();
      const original = session();
      const again1 = session({ resendOf: `${original.id}#1`, via: 'proxy' });
      const again2 = session({ resendOf: `${original.id}#2`, via: 'proxy' });
      const again12 = session({ resendOf: `${original.id}#12`, via: 'proxy' });
      const other = session({ resendOf: `${again1.id}#1`, via: 'proxy' });
      for (const s of [original, again1, again2, again12, other]) await store.createSession(s);
      expect((await store.getSession(again2.id))?.resendOf).toBe(`${original.id}#2`);
      expect((await store.getSession(original.id))?.resendOf).toBeUndefined();
      const ids = async (resendOf: string) => (await store.listSessions({ resendOf })).sessions.map((s) => s.id);
      expect(await ids(`${original.id}#1`)).toEqual([again1.id]);
      expect(await ids(original.id)).toEqual([again12.id, again2.id, again1.id]);
      expect(await ids(again1.id)).toEqual([other.id]);
      expect(await ids(`${other.id}#1`)).toEqual([]);
    });

    it('pages with a cursor, never repeating or skipping a session, even with equal start times', async () => {
      const store = await open();
      const created: NewSession[] = [];
      for (let i = 0; i < 7; i++) created.push(session({ startedAt: 1_800_000_000_000 + Math.floor(i / 3) }));
      for (const s of created) await store.createSession(s);
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.listSessions({ limit: 3, cursor });
        expect(page.sessions.length).toBeLessThanOrEqual(3);
        seen.push(...page.sessions.map((s) => s.id));
        cursor = page.next;
        pages++;
      } while (cursor !== undefined);
      expect(pages).toBe(3);
      expect(new Set(seen).size).toBe(7);
      expect(seen.sort()).toEqual(created.map((s) => s.id).sort());
    });

    it('marks only the open sessions of one replica interrupted', async () => {
      const store = await open();
      const mine = session({ replica: 'r1' });
      const sealed = session({ replica: 'r1' });
      const theirs = session({ replica: 'r2' });
      for (const s of [mine, sealed, theirs]) await store.createSession(s);
      await store.closeSession(sealed.id, { status: 'closed', endedAt: 1 });
      expect(await store.interruptOpenSessions('r1', 42)).toEqual([mine.id]);
      expect(await store.getSession(mine.id)).toMatchObject({ status: 'interrupted', endedAt: 42 });
      expect((await store.getSession(sealed.id))?.status).toBe('closed');
      expect((await store.getSession(theirs.id))?.status).toBe('open');
    });

    it('finds sealed sessions past retention, oldest first, and deletes them', async () => {
      const store = await open();
      const old = session({ startedAt: 1000 });
      const older = session({ startedAt: 500 });
      const openOld = session({ startedAt: 700 });
      const recent = session({ startedAt: 5000 });
      for (const s of [old, older, openOld, recent]) await store.createSession(s);
      for (const s of [old, older, recent]) await store.closeSession(s.id, { status: 'closed', endedAt: s.startedAt + 1 });
      await store.updateSession(old.id, { models: ['m'] });
      expect((await store.expiredSessions(2000, 10)).map((s) => s.id)).toEqual([older.id, old.id]);
      expect((await store.expiredSessions(2000, 1)).map((s) => s.id)).toEqual([older.id]);
      await store.deleteSession(old.id);
      expect(await store.getSession(old.id)).toBeUndefined();
      expect((await store.listSessions({ model: 'm' })).sessions).toEqual([]);
    });

    it('keeps a wrapped session key once and erases it', async () => {
      const store = await open();
      const key = { keyId: 'k1', wrapped: Buffer.from([1, 2, 3, 0, 255]) };
      await store.putSessionKey('ses_1', key);
      await expect(store.putSessionKey('ses_1', { keyId: 'k2', wrapped: Buffer.from([9]) })).rejects.toThrow();
      const back = await store.getSessionKey('ses_1');
      expect(back?.keyId).toBe('k1');
      expect(Buffer.compare(Buffer.from(back!.wrapped), key.wrapped)).toBe(0);
      expect(await store.deleteSessionKey('ses_1')).toBe(true);
      expect(await store.getSessionKey('ses_1')).toBeUndefined();
      expect(await store.deleteSessionKey('ses_1')).toBe(false);
    });

    it('lists the replicas seen since a time, never moving a heartbeat back', async () => {
      const store = await open();
      await store.heartbeat('r2', 1000);
      await store.heartbeat('r1', 3000);
      await store.heartbeat('r1', 2000);
      expect(await store.liveReplicas(1000)).toEqual(['r1', 'r2']);
      expect(await store.liveReplicas(2500)).toEqual(['r1']);
    });

    it('lists the replicas that own open state: open sessions, pending reviews whose caller they hold, tunnel slots', async () => {
      const { store, peer } = await openStores();
      expect(await store.replicasWithOpenState()).toEqual([]);
      const open1 = session({ replica: 'with-session' });
      const sealed = session({ replica: 'only-sealed' });
      const interrupted = session({ replica: 'only-interrupted' });
      for (const s of [open1, sealed, interrupted]) await store.createSession(s);
      await store.closeSession(sealed.id, { status: 'closed', endedAt: 1 });
      await store.closeSession(interrupted.id, { status: 'interrupted', endedAt: 1 });
      const pending = await peer.createReview(heldRequest({ replica: 'with-review' }), ROOMY);
      const decided = await store.createReview(heldRequest({ replica: 'only-decided' }), ROOMY);
      await store.resolveReview(decided.id, { status: 'rejected', at: T0 + 1 });
      // A review no caller waits for belongs to no replica.
      await store.createReview(accessRequest(), ROOMY);
      const slot = await peer.acquireTunnelSlot('alice', 'with-slot', 5);
      await store.acquireTunnelSlot('bob', 'with-session', 5);
      expect(await store.replicasWithOpenState()).toEqual(['with-review', 'with-session', 'with-slot']);

      await store.interruptOpenSessions('with-session', 2);
      await store.resolveReview(pending.id, { status: 'abandoned', at: T0 + 2 });
      await store.releaseTunnelSlot(slot!);
      expect(await peer.replicasWithOpenState()).toEqual(['with-session']);
      await store.clearTunnelSlots('with-session');
      expect(await store.replicasWithOpenState()).toEqual([]);
    });

    it('gives a lease to one holder at a time until it expires or is released', async () => {
      const store = await open();
      expect(await store.acquireLease('sweep', 'r1', 1000, 500)).toBe(true);
      expect(await store.acquireLease('sweep', 'r2', 1200, 500)).toBe(false);
      expect(await store.acquireLease('sweep', 'r1', 1400, 500)).toBe(true);
      expect(await store.acquireLease('sweep', 'r2', 1800, 500)).toBe(false);
      expect(await store.acquireLease('sweep', 'r2', 1900, 500)).toBe(true);
      await store.releaseLease('sweep', 'r1');
      expect(await store.acquireLease('sweep', 'r1', 2000, 500)).toBe(false);
      await store.releaseLease('sweep', 'r2');
      expect(await store.acquireLease('sweep', 'r1', 2000, 500)).toBe(true);
    });

    it('gives a contested lease to exactly one of several holders racing', async () => {
      const store = await open();
      const won = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((h) => store.acquireLease('retention', h, 1000, 60_000)));
      expect(won.filter(Boolean)).toHaveLength(1);
    });

    describeReviewConformance(openStores);
    describeQuotaConformance(openStores);
    describeUsageConformance(openStores);
    describeAuditOutboxConformance(openStores);
  });
}
