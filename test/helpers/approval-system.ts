/**
 * The approval system as a gateway wires it, on an in-memory SQLite store, for tests of reviews, held
 * requests and their notifications without a gateway around them.
 */
import { onTestFinished } from 'vitest';
import { createApprovalSystem, type ApprovalSystem, type ApprovalSystemOptions } from '../../server/approval/approval-system.js';
import type { RequestReviewInput } from '../../server/approval/approval-service.js';
import { validateConfig } from '../../server/config/load.js';
import type { Principal } from '../../server/identity/principal.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';

/** An approval system under the config key `approval` given, closed (before its store) when the test finishes. */
export function approvalSystemWith(approval: Record<string, unknown>, options: Pick<ApprovalSystemOptions, 'record'> = {}): ApprovalSystem {
  const config = validateConfig({
    identity: { issuer: 'https://idp.example.com', audience: 'a', cli_client_id: 'c' },
    approval,
  });
  const store = new SqliteStore({ file: ':memory:' });
  const system = createApprovalSystem({ config: () => config, store, ...options });
  // The system first: withdrawing held requests writes to the store.
  onTestFinished(async () => {
    await system.close();
    await store.close();
  });
  return system;
}

/** The review the gateway opens when a rule holds `principal`'s chat completion on `llm` for ml-leads, ten minutes. */
export function heldCallReview(principal: Principal, more: Partial<RequestReviewInput> = {}): RequestReviewInput {
  return {
    principal,
    connection: 'llm',
    rule: 'frontier-models-need-review',
    reviewers: ['ml-leads'],
    minApprovals: 1,
    timeoutMs: 600_000,
    summary: { method: 'POST', path: '/v1/chat/completions', model: 'gpt-5', size: 120 },
    sessionId: 'ses_1',
    requestId: 'req_1',
    ...more,
  };
}
