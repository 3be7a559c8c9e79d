/**
 * Three `sluice serve` processes (the real binary) behind a round-robin TCP load balancer, as a deployment
 * runs them: one PostgreSQL, one shared recordings directory, a spool of their own each. A call held on one
 * replica is released by a reviewer on another; an auditor on a third reads what the other two recorded;
 * two reviewers deciding one review at once on two replicas produce one outcome; a grant approved on one
 * replica opens a tunnel on another and its revocation closes it; a replica killed with a call held is
 * swept by the others and nothing reaches the model.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { startModelServer, type RunningModelServer } from '../../server/demo/model-server.js';
import type { ReviewJson } from '../../shared/reviews-api.js';
import type { SessionListJson } from '../../shared/sessions-api.js';
import { runCli, spawnCli, type SpawnedCli } from '../helpers/cli-process.js';
import { gatewayFixture, UPSTREAM_API_KEY, type TestUser } from '../helpers/gateway.js';
import { signToken } from '../helpers/oidc.js';
import { postgresFixture } from '../helpers/postgres.js';
import { startRoundRobinProxy, type RoundRobinProxy } from '../helpers/round-robin-proxy.js';

const postgres = postgresFixture();
// Only its identity provider: the gateways under test are the spawned binaries.
const gateways = gatewayFixture();

/** Short enough that a killed replica is swept within seconds; each heartbeat is one write per replica. */
const REPLICA_TIMING = { heartbeat_interval: '500ms', dead_after: '3s' };
const HELD_MODEL = 'gpt-5';
/** Reviewed by bob (ml-leads) or carol (security): two people who may race each other. */
const PAIR_MODEL = 'gpt-5-pair';

interface Replica {
  readonly id: string;
  readonly url: string;
  readonly process: SpawnedCli;
}

let root: string;
let model: RunningModelServer;
let replicas: Replica[];
/** Every `sluice serve` spawned, ready or not, so that a failed start leaves none running. */
const served: SpawnedCli[] = [];
let lb: RoundRobinProxy;
const tokens: Partial<Record<TestUser, string>> = {};

function yaml(options: { id: string; database: string; masterKey: string; signingKey: string }): string {
  const { idp } = gateways;
  return [
    'listen: 127.0.0.1:0',
    'identity:',
    `  issuer: ${idp.issuer}`,
    `  audience: ${idp.audience}`,
    '  cli_client_id: sluice-cli',
    'roles:',
    '  reviewer: [ml-leads]',
    '  auditor: [security]',
    'storage:',
    `  dir: ${join(root, options.id)}`,
    `  master_key: ${options.masterKey}`,
    `  signing_key: ${options.signingKey}`,
    `  database: ${options.database}`,
    `  recordings: { type: dir, path: ${join(root, 'recordings')} }`,
    'replica:',
    `  id: ${options.id}`,
    `  heartbeat_interval: ${REPLICA_TIMING.heartbeat_interval}`,
    `  dead_after: ${REPLICA_TIMING.dead_after}`,
    'shutdown_grace: 1s',
    'connections:',
    ...['llm', 'vault'].flatMap((name) => [
      `  - name: ${name}`,
      '    type: http',
      `    upstream: ${model.url}`,
      '    allow_groups: [ml-eng]',
      `    headers: { authorization: "Bearer ${UPSTREAM_API_KEY}" }`,
      ...(name === 'vault' ? ['    requires_grant: true'] : []),
    ]),
    'policies:',
    '  - name: pair-review',
    `    when: 'request.json.?model.orValue("") == "${PAIR_MODEL}"'`,
    '    action: review',
    '    reviewers: [ml-leads, security]',
    '  - name: frontier-models-need-review',
    `    when: 'request.json.?model.orValue("").startsWith("gpt-5")'`,
    '    action: review',
    '    reviewers: [ml-leads]',
    '',
  ].join('\n');
}

/** Starts `sluice serve` and resolves with the URL it logged once ready. */
async function startReplica(id: string, file: string): Promise<Replica> {
  const serve = spawnCli(['serve', '--config', file]);
  served.push(serve);
  await serve.waitForOutput(/sluice gateway ready/, 60_000);
  const ready = serve
    .stdout()
    .split('\n')
    .filter((line) => line.includes('sluice gateway ready'))
    .map((line) => JSON.parse(line) as { url: string })[0]!;
  return { id, url: ready.url, process: serve };
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sluice-e2e-lb-'));
  await mkdir(join(root, 'recordings'));
  await mkdir(join(root, 'keys'), { mode: 0o700 });
  model = await startModelServer({ apiKey: UPSTREAM_API_KEY });
  const database = await postgres.database();
  const masterKey = randomBytes(32).toString('base64');
  // One signing key for every replica, as the master key: a session sealed on one verifies on the others.
  const signingKey = join(root, 'keys', 'signing-key.pem');
  const ids = ['lb-a', 'lb-b', 'lb-c'];
  const files = await Promise.all(
    ids.map(async (id) => {
      const file = join(root, `${id}.yaml`);
      await writeFile(file, yaml({ id, database, masterKey, signingKey }));
      return file;
    }),
  );
  // The first creates the signing key; the others start once it exists, so none makes a second one.
  const first = await startReplica(ids[0]!, files[0]!);
  replicas = [first, ...(await Promise.all(ids.slice(1).map((id, i) => startReplica(id, files[i + 1]!))))];
  lb = await startRoundRobinProxy(replicas.map((r) => ({ port: Number(new URL(r.url).port) })));
  for (const user of ['alice', 'bob', 'carol'] as const) tokens[user] = await signToken(gateways.idp.signingKey, gateways.idp.claimsFor(user));
}, 120_000);

afterAll(async () => {
  await lb?.close();
  await Promise.all(
    served.map(async (serve) => {
      serve.kill('SIGTERM');
      const timer = setTimeout(() => serve.kill('SIGKILL'), 10_000);
      await serve.exited;
      clearTimeout(timer);
    }),
  );
  await model?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

/** The CLI's environment for `user` against `gateway` (a replica, or the load balancer). */
function env(user: TestUser, gateway: string): NodeJS.ProcessEnv {
  return { SLUICE_TOKEN: tokens[user]!, SLUICE_GATEWAY: gateway, XDG_CONFIG_HOME: join(root, 'no-profile') };
}

async function api<T>(gateway: string, user: TestUser, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${gateway}${path}`, {
    method,
    headers: { authorization: `Bearer ${tokens[user]!}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** The one pending review of `rule`, as `user` sees it through `gateway`. */
async function pendingReview(gateway: string, user: TestUser, rule: string): Promise<ReviewJson> {
  let review: ReviewJson | undefined;
  await vi.waitFor(
    async () => {
      const { body } = await api<{ reviews: ReviewJson[] }>(gateway, user, 'GET', '/v1/reviews?status=pending');
      const matching = body.reviews.filter((r) => r.rule === rule);
      expect(matching).toHaveLength(1);
      review = matching[0];
    },
    { timeout: 15_000, interval: 100 },
  );
  return review!;
}

/** alice's `sluice connect NAME` against `gateway`, and an openai SDK on its local port. */
async function connect(gateway: string, name = 'llm'): Promise<{ cli: SpawnedCli; sdk: OpenAI; sessionId: string }> {
  const cli = spawnCli(['connect', name], { env: env('alice', gateway) });
  onTestFinished(() => cli.kill('SIGKILL'));
  await cli.waitForOutput(/local token\s+(\S+)/, 30_000);
  const baseURL = /OpenAI base URL\s+(\S+)/.exec(cli.stdout())![1]!;
  const apiKey = /local token\s+(\S+)/.exec(cli.stdout())![1]!;
  const sessionId = /session (ses_[0-9a-f]{32})/.exec(cli.stdout())![1]!;
  return { cli, sdk: new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 }), sessionId };
}

/**
 * An SDK calling `/v1/proxy/llm` as alice through the load balancer. Its own connection pool: with the
 * process-wide one, a kept-alive connection of an earlier call would carry it to whichever replica that
 * connection landed on, and `replicaOf` could not tell which.
 */
function proxiedSdk(): OpenAI {
  const pool = new Agent();
  onTestFinished(() => pool.destroy());
  return new OpenAI({
    baseURL: `${lb.url}/v1/proxy/llm/v1`,
    apiKey: tokens.alice!,
    maxRetries: 0,
    timeout: 60_000,
    fetch: ((url: string, init?: object) => undiciFetch(url, { ...init, dispatcher: pool })) as unknown as typeof fetch,
  });
}

/** The replica the load balancer gave the latest connection whose first line starts with `head`. */
function replicaOf(head: string): number {
  const placed = lb.connections.filter((c) => c.head.startsWith(head));
  expect(placed.length).toBeGreaterThan(0);
  return placed.at(-1)!.backend;
}

/** Ends a `sluice connect` as Ctrl-C does; its session is sealed and archived. */
async function disconnect(cli: SpawnedCli): Promise<void> {
  cli.kill('SIGINT');
  await cli.exited;
}

describe('three replicas behind a load balancer', () => {
  const sealed: { sessionId: string; replica: number; model: string }[] = [];

  it('holds alice\'s SDK call on one replica and releases it when bob approves with the CLI on another', async () => {
    const { cli, sdk, sessionId } = await connect(lb.url);
    const holder = replicaOf('GET /v1/tunnel');
    const other = (holder + 1) % 3;
    const before = model.requests.length;
    const call = sdk.chat.completions.create({ model: HELD_MODEL, messages: [{ role: 'user', content: 'held on one replica' }] });

    const listed = await vi.waitFor(
      async () => {
        const r = await runCli(['review', 'list', '--json'], { env: env('bob', replicas[other]!.url) });
        expect(r.code).toBe(0);
        const reviews = (JSON.parse(r.stdout) as { reviews: ReviewJson[] }).reviews.filter((x) => x.rule === 'frontier-models-need-review');
        expect(reviews).toHaveLength(1);
        return reviews[0]!;
      },
      { timeout: 15_000, interval: 200 },
    );
    await cli.waitForOutput(new RegExp(`waiting for approval ${listed.id}`));
    expect(model.requests.length).toBe(before);

    const approved = await runCli(['review', 'approve', listed.id, '--reason', 'fine across replicas'], { env: env('bob', replicas[other]!.url) });
    expect(approved.stderr).toBe('');
    expect(approved.code).toBe(0);
    expect(approved.stdout).toContain(`Approved ${listed.id}`);
    const completion = await call;
    expect(completion.choices[0]?.message.content).toContain('held on one replica');
    expect(model.requests.length).toBe(before + 1);
    await cli.waitForOutput(new RegExp(`${listed.id} approved by bob@example.com`));

    await disconnect(cli);
    sealed.push({ sessionId, replica: holder, model: HELD_MODEL });
  });

  it('lets carol, on a third replica, list the sessions the other two recorded and export one', async () => {
    expect(sealed).toHaveLength(1);
    const first = sealed[0]!;
    const second = (first.replica + 1) % 3;
    const third = (first.replica + 2) % 3;
    // A session recorded on the second replica: alice connected to it directly.
    const { cli, sdk, sessionId } = await connect(replicas[second]!.url);
    const answer = await sdk.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'recorded on the second replica' }] });
    expect(answer.choices[0]?.message.content).toContain('recorded on the second replica');
    await disconnect(cli);
    sealed.push({ sessionId, replica: second, model: 'demo' });

    const carol = env('carol', replicas[third]!.url);
    await vi.waitFor(
      async () => {
        const r = await runCli(['sessions', 'list', '--user', 'alice', '--status', 'closed', '--json'], { env: carol });
        expect(r.code).toBe(0);
        const ids = (JSON.parse(r.stdout) as SessionListJson).sessions.map((s) => s.id);
        expect(ids).toEqual(expect.arrayContaining(sealed.map((s) => s.sessionId)));
      },
      { timeout: 15_000, interval: 250 },
    );

    // Each exported where it was not recorded: the file verifies here (one signing key), and tells the exchange.
    const exported: Record<string, Array<Record<string, unknown>>> = {};
    for (const s of sealed) {
      const out = join(root, `${s.sessionId}.jsonl`);
      const r = await runCli(['sessions', 'export', s.sessionId, '--format', 'jsonl', '-o', out], { env: carol });
      expect(r.stderr).toContain(`wrote ${out} (jsonl, recording intact)`);
      expect(r.code).toBe(0);
      const events = (await readFile(out, 'utf8')).split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(events.every((e) => e.session_id === s.sessionId)).toBe(true);
      expect(events.find((e) => e.type === 'exchange.end')).toMatchObject({ status: 200, complete: true, model: s.model });
      expect(events.at(-1)).toMatchObject({ type: 'session.checkpoint' });
      exported[s.sessionId] = events;
    }
    // The first tells of the hold on its replica and of bob's approval, given on another.
    expect(exported[first.sessionId]!.map((e) => e.type)).toEqual(expect.arrayContaining(['review.requested', 'review.approved']));
    expect(exported[first.sessionId]!.find((e) => e.type === 'review.approved')).toMatchObject({ by: 'bob@example.com', note: 'fine across replicas' });
  });

  it('gives one outcome when bob approves on one replica and carol rejects on another at the same moment', async () => {
    for (let round = 0; round < 3; round++) {
      const before = model.requests.length;
      const call = proxiedSdk()
        .chat.completions.create({ model: PAIR_MODEL, messages: [{ role: 'user', content: `race ${round}` }] })
        .then(
          (c) => ({ answer: c.choices[0]?.message.content ?? '', error: undefined }),
          (err: InstanceType<typeof OpenAI.APIError>) => ({ answer: undefined, error: err }),
        );
      const review = await pendingReview(lb.url, 'bob', 'pair-review');
      // Each round on another pair of replicas; the third reads the outcome.
      const [approveOn, rejectOn, readOn] = [0, 1, 2].map((i) => replicas[(round + i) % 3]!.url) as [string, string, string];
      const [approve, reject] = await Promise.all([
        api<{ review?: ReviewJson; error?: { code: string } }>(approveOn, 'bob', 'POST', `/v1/reviews/${review.id}/approve`, { reason: 'approve it' }),
        // Answered with the review itself, where approve wraps it with the grant it may have made.
        api<Partial<ReviewJson> & { error?: { code: string } }>(rejectOn, 'carol', 'POST', `/v1/reviews/${review.id}/reject`, { reason: 'reject it' }),
      ]);
      // One wins; the other is told the review was already decided.
      expect([approve.status, reject.status].sort()).toEqual([200, 409]);
      const loser = approve.status === 409 ? approve : reject;
      expect(loser.body.error?.code).toBe('ERR_REVIEW_CONFLICT');
      const winner = approve.status === 200 ? 'approved' : 'rejected';
      expect(approve.status === 200 ? approve.body.review?.status : reject.body.status).toBe(winner);
      const { body: final } = await api<ReviewJson>(readOn, 'bob', 'GET', `/v1/reviews/${review.id}`);
      expect(final.status).toBe(winner);

      const result = await call;
      if (winner === 'approved') {
        expect(result.answer).toContain(`race ${round}`);
        expect(model.requests.length).toBe(before + 1);
      } else {
        expect(result.error?.status).toBe(403);
        expect(result.error?.code).toBe('ERR_REVIEW_REJECTED');
        expect(result.error?.message).toContain('reject it');
        expect(model.requests.length).toBe(before);
      }
    }
  });

  it('opens a tunnel on one replica with a grant approved on another, and closes it when revoked there', async () => {
    const [a, b] = [replicas[0]!, replicas[1]!];
    const refused = await runCli(['connect', 'vault'], { env: env('alice', a.url) });
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain('ERR_GRANT_REQUIRED');

    const asked = await runCli(['access', 'request', 'vault', '--for', '10m', '--reason', 'incident 7', '--json'], { env: env('alice', lb.url) });
    expect(asked.code).toBe(0);
    const request = JSON.parse(asked.stdout) as { id: string };
    const approved = await runCli(['review', 'approve', request.id], { env: env('bob', b.url) });
    expect(approved.code).toBe(0);

    const { cli, sdk } = await connect(a.url, 'vault');
    const answer = await sdk.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'granted elsewhere' }] });
    expect(answer.choices[0]?.message.content).toContain('granted elsewhere');

    const { body: mine } = await api<{ grants: { id: string; connection: string; active: boolean }[] }>(b.url, 'alice', 'GET', '/v1/grants');
    const grant = mine.grants.find((g) => g.connection === 'vault' && g.active)!;
    expect(grant).toBeDefined();
    const revoked = await api<{ grant: { id: string; active: boolean } }>(b.url, 'bob', 'POST', `/v1/grants/${grant.id}/revoke`, { reason: 'incident closed' });
    expect(revoked.status).toBe(200);
    expect(revoked.body.grant).toMatchObject({ id: grant.id, active: false });
    // Revoked on B, closed on A: alice's connect says why and exits 4; her local port answers no more.
    await cli.waitForOutput(/ERR_GRANT_REVOKED/, 10_000);
    expect(cli.stderr()).toMatch(/Your access grant to "vault" was revoked.*\(ERR_GRANT_REVOKED\)/);
    expect(await cli.exited).toBe(4);
    await expect(sdk.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'after revocation' }] })).rejects.toBeInstanceOf(OpenAI.APIConnectionError);
    // And no replica admits a new tunnel on the revoked grant.
    const again = await runCli(['connect', 'vault'], { env: env('alice', lb.url) });
    expect(again.code).toBe(4);
    expect(again.stderr).toContain('ERR_GRANT_REQUIRED');
  });

  it('abandons the review of a call held on a replica killed with -9, within 10 s, with nothing sent upstream', async () => {
    const before = model.requests.length;
    const call = proxiedSdk()
      .chat.completions.create({ model: HELD_MODEL, messages: [{ role: 'user', content: 'held on a replica that dies' }] })
      .then(
        () => undefined,
        (err: Error) => err,
      );
    const review = await pendingReview(lb.url, 'bob', 'frontier-models-need-review');
    const holder = replicaOf('POST /v1/proxy/llm/');
    const witness = replicas[(holder + 1) % 3]!;

    const killedAt = Date.now();
    replicas[holder]!.process.kill('SIGKILL');
    await replicas[holder]!.process.exited;
    const failure = await call;
    expect(failure).toBeInstanceOf(OpenAI.APIConnectionError);

    await vi.waitFor(
      async () => {
        const { body } = await api<ReviewJson>(witness.url, 'bob', 'GET', `/v1/reviews/${review.id}`);
        expect(body.status).toBe('abandoned');
      },
      { timeout: 10_000, interval: 200 },
    );
    // The bound the sweep promises (dead_after 3 s, then the next heartbeat), checked generously.
    expect(Date.now() - killedAt).toBeLessThan(10_000);
    const { body: swept } = await api<ReviewJson>(witness.url, 'bob', 'GET', `/v1/reviews/${review.id}`);
    expect(swept.resolution).toContain(`replica holding the request (${replicas[holder]!.id}) stopped`);
    // A reviewer approving now cannot release what is gone.
    const late = await api<{ error?: { code: string } }>(witness.url, 'bob', 'POST', `/v1/reviews/${review.id}/approve`, {});
    expect(late.status).toBe(409);
    expect(model.requests.length).toBe(before);
    // The load balancer skips the dead replica: a round of new connections, each served by one left.
    const placedBefore = lb.connections.length;
    for (let i = 0; i < 3; i++) {
      const after = await proxiedSdk().chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: `still served ${i}` }] });
      expect(after.choices[0]?.message.content).toContain(`still served ${i}`);
    }
    const placedAfter = lb.connections.slice(placedBefore);
    expect(placedAfter.filter((c) => c.head.startsWith('POST /v1/proxy/llm/'))).toHaveLength(3);
    expect(placedAfter.every((c) => c.backend !== holder)).toBe(true);
  });
});
