/**
 * `sluice review show` and `GET /v1/reviews/:id` show the held request's body, as the recording keeps it:
 * masked by the connection's profiles, JSON pretty-printed, bounded; lists never carry it; a connection
 * that records no request bodies shows none.
 */
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { INDEX_FILE } from '../../server/recording/storage-layout.js';
import { reviewListSchema, type ReviewDetailJson } from '../../shared/reviews-api.js';
import { runCliInProcess } from '../helpers/cli-in-process.js';
import { gatewayFixture, modelConnection, type TestGateway } from '../helpers/gateway.js';

const gateways = gatewayFixture();
let gw: TestGateway;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  gw = await gateways.start({
    connections: ({ model }) => [
      modelConnection(model),
      modelConnection(model, { name: 'llm-pii', masking: ['pii'] }),
      modelConnection(model, { name: 'llm-quiet', record: { request_body: 'none', response_body: 'none' } }),
    ],
    config: {
      policies: [{ name: 'frontier', when: 'request.json.?model.orValue("").startsWith("gpt-5")', action: 'review', reviewers: ['ml-leads'] }],
      masking_profiles: { pii: { detectors: ['email'] } },
    },
  });
  tokens.alice = await gw.token('alice');
  tokens.bob = await gw.token('bob');
});

/** Sends a held call as alice (it waits for its review) and resolves to the review's id once it is pending. */
async function held(connection: string, body: unknown): Promise<{ id: string; answer: Promise<Response> }> {
  const answer = fetch(`${gw.url}/v1/proxy/${connection}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tokens.alice}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  let id = '';
  await vi.waitFor(
    async () => {
      const res = await fetch(`${gw.url}/v1/reviews?status=pending&connection=${connection}`, { headers: { authorization: `Bearer ${tokens.bob}` } });
      const list = reviewListSchema.parse(await res.json());
      expect(list.reviews).toHaveLength(1);
      id = list.reviews[0]!.id;
      // lists never carry the body
      expect(JSON.stringify(list)).not.toContain('messages');
    },
    { timeout: 10_000, interval: 50 },
  );
  return { id, answer };
}

async function decide(id: string, answer: Promise<Response>): Promise<void> {
  const res = await fetch(`${gw.url}/v1/reviews/${id}/reject`, { method: 'POST', headers: { authorization: `Bearer ${tokens.bob}`, 'content-type': 'application/json' }, body: '{}' });
  expect(res.status).toBe(200);
  expect((await answer).status).toBe(403);
}

function sluice(args: string[]) {
  return runCliInProcess(args, { SLUICE_TOKEN: tokens.bob!, SLUICE_GATEWAY: gw.url, XDG_CONFIG_HOME: join(tmpdir(), 'sluice-review-body-none') });
}

describe('the held request\'s body for its reviewers', () => {
  it('`review show` prints the prompt pretty-printed; the API gives it as `body`', async () => {
    const request = { model: 'gpt-5', messages: [{ role: 'user', content: 'Draft the launch plan' }] };
    const { id, answer } = await held('llm', request);
    const shown = await sluice(['review', 'show', id]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`body:\n${JSON.stringify(request, null, 2).replace(/^/gm, '  ')}`);
    const json = JSON.parse((await sluice(['review', 'show', id, '--json'])).stdout) as ReviewDetailJson;
    expect(JSON.parse(json.body!)).toEqual(request);
    // The index keeps the preview sealed under the master key: no prompt in clear in the database or its journal.
    for (const file of (await readdir(gw.storageDir)).filter((f) => f.startsWith(INDEX_FILE))) {
      const bytes = await readFile(join(gw.storageDir, file));
      expect(bytes.includes('Draft the launch plan')).toBe(false);
      // Nor merely encoded: no base64 run in the index decodes to the prompt.
      const decoded = (bytes.toString('latin1').match(/[A-Za-z0-9+/]{24,}={0,2}/g) ?? []).map((run) => Buffer.from(run, 'base64').toString('latin1'));
      expect(decoded.filter((text) => text.includes('Draft the launch plan'))).toEqual([]);
    }
    await decide(id, answer);
  });

  it('masks it as the connection\'s profiles mask the recording, and bounds it at 4096 characters', async () => {
    const request = { model: 'gpt-5-mini', messages: [{ role: 'user', content: `Mail jane.doe@example.org the numbers. ${'x'.repeat(6000)}` }] };
    const { id, answer } = await held('llm-pii', request);
    const res = await fetch(`${gw.url}/v1/reviews/${id}`, { headers: { authorization: `Bearer ${tokens.bob}` } });
    const review = (await res.json()) as ReviewDetailJson;
    expect(review.body).not.toContain('jane.doe@example.org');
    expect(review.body).toContain('[EMAIL]');
    expect(review.body).toMatch(/\n… \(\d+ more characters\)$/);
    expect(review.body!.length).toBeLessThan(4096 + 40);
    await decide(id, answer);
  });

  it('shows none where the connection records no request bodies', async () => {
    const { id, answer } = await held('llm-quiet', { model: 'gpt-5', messages: [{ role: 'user', content: 'secret plans' }] });
    const shown = await sluice(['review', 'show', id]);
    expect(shown.stdout).toContain('body:        not recorded');
    expect(shown.stdout).not.toContain('secret plans');
    await decide(id, answer);
  });
});
