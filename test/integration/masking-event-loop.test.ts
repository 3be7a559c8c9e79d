/**
 * Masking cost through the real gateway: a 1 MiB request body built to be as costly as possible to mask
 * (digit runs with separators for the phone and card detectors, dotted runs around `@` for email, colons
 * for IPv6) is recorded masked and echoed back by the upstream, as JSON and as text. Meanwhile another
 * caller's requests (another connection, and /healthz) keep being answered promptly: masking yields the
 * event loop every millisecond or so, and every rule costs a small constant per character.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { RecordedEvent } from '../../server/recording/event-types.js';
import { keyRingFromSettings } from '../../server/recording/key-ring.js';
import { INDEX_FILE } from '../../server/recording/open-storage.js';
import { readSession } from '../../server/recording/session-reader.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startTestUpstream } from '../helpers/upstream.js';

/** Values that must not come back, nor be on record, wherever the junk around them puts them. */
const PII = ['jane.doe@example.com', '415-555-2671', '4111 1111 1111 1111', '2001:db8::8a2e:370:7334'];

/** A deterministic pseudo-random sequence. */
function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
}

/** About `bytes` of text every detector finds candidates in at nearly every character, with PII between. */
function adversarialText(bytes: number): string {
  const next = lcg(7);
  const digits = (n: number, separators: string) => {
    let s = '';
    for (let i = 0; i < n; i++) s += String(Math.floor(next() * 10)) + separators[Math.floor(next() * separators.length)]!;
    return s;
  };
  const pieces = [
    () => '1 '.repeat(200),
    () => digits(200, ' '),
    () => digits(200, ' -.'),
    () => digits(100, '() +-'),
    () => `${'a.'.repeat(40)}a@${'b.'.repeat(40)}`,
    () => 'a:1:b:2:'.repeat(50),
    () => `x@${'a'.repeat(60)}.`.repeat(8),
  ];
  let text = '';
  let i = 0;
  while (text.length < bytes) {
    text += pieces[Math.floor(next() * pieces.length)]!();
    if (i++ % 40 === 0) text += ` ${PII[(i / 40) % PII.length | 0]} `;
  }
  return text.slice(0, bytes);
}

/** Runs `probe` back to back until `done` settles; returns every probe's latency in ms. */
async function latenciesDuring(done: Promise<unknown>, probe: () => Promise<void>): Promise<number[]> {
  let finished = false;
  void done.finally(() => (finished = true)).catch(() => undefined);
  const out: number[] = [];
  // Bounded in count, whatever happens to `done`.
  for (let i = 0; i < 2000 && !finished; i++) {
    const started = performance.now();
    await probe();
    out.push(performance.now() - started);
    await sleep(5);
  }
  return out;
}

/** The value below which a fraction `p` of `values` fall. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function recordedRequestBodies(gw: TestGateway): Promise<string[]> {
  const { dir, master_key } = gw.config.storage as { dir: string; master_key: string };
  const store = new SqliteStore({ file: join(dir, INDEX_FILE) });
  const bodies: string[] = [];
  try {
    for (const session of (await store.listSessions()).sessions) {
      for await (const e of readSession(join(dir, session.file), keyRingFromSettings({ master_key })!)) {
        if (e.type === 'exchange.request' && (e as RecordedEvent<'exchange.request'>).fields.body?.capture === 'masked') {
          bodies.push(Buffer.from(e.payload ?? Buffer.alloc(0)).toString('utf8'));
        }
      }
    }
  } finally {
    await store.close();
  }
  return bodies;
}

describe('masking cost and the event loop', () => {
  it('masks a 1 MiB adversarial body, recorded and echoed as JSON and as text, while other callers wait < 50 ms', async () => {
    const upstream = await startTestUpstream();
    onTestFinished(() => upstream.close());
    const gw = await startTestGateway({
      config: {
        connections: [
          {
            name: 'api',
            type: 'http',
            upstream: upstream.url,
            allow_groups: ['ml-eng'],
            masking: ['pii'],
            record: { request_body: 'masked', response_body: 'masked' },
          },
          { name: 'other', type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'] },
        ],
        masking_profiles: {
          pii: { detectors: ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secret'], json_keys: ['password'] },
        },
        // A rule that reads the body: the whole body is read ahead, so it is recorded (masked), not only its digest.
        policies: [{ name: 'reads-the-body', when: 'request.size < 0', action: 'deny' }],
        policy_read_ahead: 4 * 1024 * 1024,
      },
    });
    const token = await gw.token('alice');
    const headers = { authorization: `Bearer ${token}` };
    const text = adversarialText(1024 * 1024);
    // First requests open sessions and recordings and load the phone metadata: not what is measured here.
    for (const path of ['/healthz', '/v1/proxy/other/ping', '/v1/proxy/api/ping']) await (await fetch(`${gw.url}${path}`, { headers })).arrayBuffer();
    const warm = await fetch(`${gw.url}/v1/proxy/api/echo`, { method: 'POST', headers: { ...headers, 'content-type': 'text/plain' }, body: PII.join(' ') });
    expect(await warm.text()).toBe('[EMAIL] [PHONE] [CREDIT_CARD] [IP_ADDRESS]');

    const cases = [
      { type: 'application/json', body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: text }] }) },
      { type: 'text/plain', body: text },
    ];
    for (const { type, body } of cases) {
      const started = performance.now();
      const big = fetch(`${gw.url}/v1/proxy/api/echo`, { method: 'POST', headers: { ...headers, 'content-type': type }, body }).then(async (r) => ({
        status: r.status,
        text: await r.text(),
      }));
      const [health, other] = await Promise.all([
        latenciesDuring(big, async () => {
          const r = await fetch(`${gw.url}/healthz`);
          expect(r.status).toBe(200);
          await r.arrayBuffer();
        }),
        latenciesDuring(big, async () => {
          const r = await fetch(`${gw.url}/v1/proxy/other/ping`, { headers });
          expect(r.status).toBe(200);
          await r.arrayBuffer();
        }),
      ]);
      const answer = await big;
      const elapsed = performance.now() - started;

      expect(answer.status, answer.text.slice(0, 300)).toBe(200);
      for (const value of PII) expect(answer.text, `${type}: ${value} came back`).not.toContain(value);
      if (type === 'application/json') expect(() => JSON.parse(answer.text) as unknown).not.toThrow();
      // Bounded: a small constant per character, even for this text (generous for a shared machine).
      expect(elapsed, `${type}: masked in ${elapsed.toFixed(0)} ms`).toBeLessThan(30_000);
      // Probes ran all along, and did not wait on the masking: 9 in 10 answered within 50 ms. The rest
      // is left to a machine shared with other work, and to moving 1 MiB through the gateway at all
      // (read ahead for policy, parsed, recorded), which costs a few tens of ms with no masking.
      for (const [probe, latencies] of [['/healthz', health], ['other connection', other]] as const) {
        const shown = `${type}, ${probe}: ${latencies.map((l) => l.toFixed(0)).join(' ')} ms`;
        expect(latencies.length, shown).toBeGreaterThan(5);
        expect(percentile(latencies, 0.9), shown).toBeLessThan(50);
        expect(Math.max(...latencies), shown).toBeLessThan(250);
      }
    }

    await gw.stopApp();
    const recorded = await recordedRequestBodies(gw);
    expect(recorded).toHaveLength(3);
    for (const body of recorded.slice(1)) {
      expect(body.length).toBeGreaterThan(100_000);
      for (const value of PII) expect(body).not.toContain(value);
    }
  }, 120_000);
});
