/**
 * gRPC calls held for review through the tunnel on the real gateway: nothing reaches the model while a
 * call waits; an approval forwards it and the caller gets the model's answer; a rejection is
 * PERMISSION_DENIED with the reviewer's note; a review nobody decides in time is DEADLINE_EXCEEDED.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import type { ReviewJson } from '../../shared/reviews-api.js';
import { gatewayFixture, type TestGateway } from '../helpers/gateway.js';
import { openTunnelPort, testKserveClient, tritonConnection } from '../helpers/grpc-tunnel.js';
import { inferRequest, startKserveModel, STREAM_TOKENS, streamInfer, unary, type KserveModel } from '../helpers/kserve-model.js';

const gateways = gatewayFixture();

const POLICIES = [
  { name: 'big-model', when: 'request.grpc.method == "ModelInfer" && request.json.model_name == "llama-big"', action: 'review', reviewers: ['ml-leads'], timeout: '10m' },
  { name: 'slow-review', when: 'request.grpc.method == "ModelInfer" && request.json.model_name == "llama-slow"', action: 'review', reviewers: ['ml-leads'], timeout: '300ms' },
  { name: 'streams', when: 'request.grpc.method == "ModelStreamInfer"', action: 'review', reviewers: ['ml-leads'], timeout: '10m' },
];

async function setup(): Promise<{ gw: TestGateway; model: KserveModel; client: grpc.Client; direct: grpc.Client; api: (method: string, path: string, body?: unknown) => Promise<unknown> }> {
  const model = await startKserveModel();
  onTestFinished(() => model.close());
  const gw = await gateways.start({
    connections: () => [tritonConnection(model)],
    config: { policies: POLICIES },
  });
  const client = testKserveClient((await openTunnelPort(gw)).address);
  const direct = testKserveClient(model.address);
  const bob = await gw.token('bob');
  const api = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const res = await fetch(`${gw.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${bob}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return res.json();
  };
  return { gw, model, client, direct, api };
}

async function pendingReview(api: (method: string, path: string) => Promise<unknown>, rule: string): Promise<ReviewJson> {
  let found: ReviewJson | undefined;
  await vi.waitFor(
    async () => {
      const { reviews } = (await api('GET', '/v1/reviews?status=pending')) as { reviews: ReviewJson[] };
      found = reviews.find((r) => r.rule === rule);
      expect(found).toBeDefined();
    },
    { timeout: 10_000, interval: 50 },
  );
  return found!;
}

describe('grpc calls held for review', () => {
  it('holds a unary call until a reviewer approves it, then answers as the model does', async () => {
    const s = await setup();
    const request = inferRequest('llama-big', 'hello');
    const answer = unary(s.client, 'ModelInfer', request);
    const review = await pendingReview(s.api, 'big-model');
    expect(s.model.calls).toHaveLength(0);
    await s.api('POST', `/v1/reviews/${review.id}/approve`, { reason: 'fine' });
    const via = await answer;
    expect(via).toEqual(await unary(s.direct, 'ModelInfer', request));
    expect(s.model.calls.filter((c) => c.method === 'ModelInfer')).toHaveLength(2);
  });

  it("answers PERMISSION_DENIED with the reviewer's note when the review is rejected; nothing reaches the model", async () => {
    const s = await setup();
    const answer = unary(s.client, 'ModelInfer', inferRequest('llama-big', 'hello'));
    const review = await pendingReview(s.api, 'big-model');
    await s.api('POST', `/v1/reviews/${review.id}/reject`, { reason: 'not this model today' });
    expect(await answer).toEqual({ ok: false, code: grpc.status.PERMISSION_DENIED, details: expect.stringContaining('not this model today') });
    expect(s.model.calls).toHaveLength(0);
  });

  it('answers DEADLINE_EXCEEDED when nobody decides before the rule timeout', async () => {
    const s = await setup();
    const answer = await unary(s.client, 'ModelInfer', inferRequest('llama-slow', 'hello'));
    expect(answer).toEqual({ ok: false, code: grpc.status.DEADLINE_EXCEEDED, details: expect.stringContaining('review expired') });
    expect(s.model.calls).toHaveLength(0);
  });

  it('holds a streaming call before its first message is forwarded, and streams it once approved', async () => {
    const s = await setup();
    const answer = streamInfer(s.client, inferRequest('llama', 'story'));
    const review = await pendingReview(s.api, 'streams');
    expect(s.model.calls).toHaveLength(0);
    await s.api('POST', `/v1/reviews/${review.id}/approve`, {});
    const streamed = await answer;
    expect(streamed.code).toBe(grpc.status.OK);
    expect(streamed.messages).toHaveLength(STREAM_TOKENS.length);
  });
});
