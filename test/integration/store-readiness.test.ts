/**
 * A gateway on PostgreSQL whose database goes away and comes back: `/readyz` says the store is down and
 * recovers by itself, and a new session while it is down is refused 503 ERR_STORE_UNAVAILABLE (the store's
 * code, not the recording's), then served again once the database is back, without restarting sluice.
 */
import OpenAI from 'openai';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { gatewayFixture } from '../helpers/gateway.js';
import { postgresFixture } from '../helpers/postgres.js';

const postgres = postgresFixture();
const gateways = gatewayFixture();

interface ReadyJson {
  status: string;
  checks: Record<string, { ok: boolean; code?: string; message?: string }>;
}

async function readyz(url: string): Promise<{ status: number; body: ReadyJson }> {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, body: (await res.json()) as ReadyJson };
}

describe('readiness on the store', () => {
  it('is unready while PostgreSQL is down, refuses new sessions with ERR_STORE_UNAVAILABLE, and recovers by itself', async () => {
    const database = await postgres.database();
    // Sweeps and heartbeats far apart: the test's own calls are what meets the dead database.
    const gw = await gateways.start({ config: { storage: { database }, replica: { heartbeat_interval: '10m', dead_after: '30m' } } });
    const sdk = new OpenAI({ baseURL: `${gw.url}/v1/proxy/llm/v1`, apiKey: await gw.token('alice'), maxRetries: 0, timeout: 30_000 });

    const before = await readyz(gw.url);
    expect(before.status).toBe(200);
    expect(before.body.checks.store).toEqual({ ok: true });

    await postgres.stop();
    // Started again even when an expectation below fails, so the fixture can drop the database.
    let restarted = false;
    onTestFinished(async () => {
      if (!restarted) await postgres.start();
    });

    const down = await readyz(gw.url);
    expect(down.status).toBe(503);
    expect(down.body.status).toBe('unready');
    expect(down.body.checks.store).toMatchObject({ ok: false, code: 'ERR_STORE_UNAVAILABLE', message: expect.stringContaining('PostgreSQL') });

    const refused = await sdk.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'while the database is down' }] }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(OpenAI.APIError);
    expect((refused as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    expect((refused as InstanceType<typeof OpenAI.APIError>).code).toBe('ERR_STORE_UNAVAILABLE');

    await postgres.start();
    restarted = true;
    await vi.waitFor(
      async () => {
        const up = await readyz(gw.url);
        expect(up.status).toBe(200);
        expect(up.body.checks.store).toEqual({ ok: true });
      },
      { timeout: 15_000, interval: 200 },
    );
    const completion = await sdk.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'after the database is back' }] });
    expect(completion.choices[0]?.message.content).toContain('after the database is back');
  });
});
