import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import type { RunningModelServer } from '../../server/demo/model-server.js';
import type { RecordedEvent } from '../../server/recording/event-types.js';
import { keyRingFromSettings } from '../../server/recording/key-ring.js';
import { readStoredSession } from '../helpers/stored-sessions.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import type { Config } from '../../server/config/schema.js';
import type { ReviewJson } from '../../shared/reviews-api.js';
import { runCli, spawnCli } from '../helpers/cli-process.js';
import { gatewayFixture, modelConnection, type TestGateway } from '../helpers/gateway.js';

const gateways = gatewayFixture();
let gw: TestGateway;
let model: RunningModelServer;
let gateway: string;
let dir: string;
let config: Config;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-e2e-review-'));
  gw = await gateways.start({
    connections: ({ model }) => [modelConnection(model), modelConnection(model, { name: 'vault', requires_grant: true })],
    config: {
      roles: { reviewer: ['ml-leads'], auditor: ['security'] },
      policies: [
        { name: 'quick-review', when: 'request.json.?model.orValue("") == "gpt-5-quick"', action: 'review', reviewers: ['ml-leads'], timeout: '1s' },
        { name: 'frontier-models-need-review', when: 'connection.name == "llm" && has(request.json.model) && request.json.model.startsWith("gpt-5")', action: 'review', reviewers: ['ml-leads'], timeout: '10m' },
      ],
    },
  });
  ({ model, config, url: gateway } = gw);
  for (const user of ['alice', 'bob', 'carol'] as const) tokens[user] = await gw.token(user);
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function env(user: string) {
  return { SLUICE_TOKEN: tokens[user]!, SLUICE_GATEWAY: gateway, XDG_CONFIG_HOME: join(tmpdir(), 'sluice-e2e-none') };
}

/** alice's `sluice connect NAME`, and an openai SDK pointed at its local port. */
async function connect(name = 'llm') {
  const cli = spawnCli(['connect', name], { env: env('alice') });
  onTestFinished(() => cli.kill('SIGKILL'));
  await cli.waitForOutput(/local token\s+(\S+)/);
  const baseURL = /OpenAI base URL\s+(\S+)/.exec(cli.stdout())![1]!;
  const apiKey = /local token\s+(\S+)/.exec(cli.stdout())![1]!;
  return { cli, client: new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 }) };
}

/** The decrypted events of a session once the gateway has sealed it. */
async function recordedEvents(sessionId: string): Promise<RecordedEvent[]> {
  const index = new SqliteStore({ file: join(config.storage.dir, 'index.sqlite') });
  onTestFinished(() => index.close());
  let file = '';
  await vi.waitFor(async () => {
    const session = await index.getSession(sessionId);
    expect(session?.status).toBe('closed');
    file = session!.file;
  });
  const events: RecordedEvent[] = [];
  events.push(...(await readStoredSession(config.storage.dir, file, keyRingFromSettings(config.storage)!)));
  return events;
}

/** bob's `sluice review list --json` until alice's review shows up. */
async function pendingReviewId(rule = 'frontier-models-need-review'): Promise<string> {
  let id: string | undefined;
  await vi.waitFor(
    async () => {
      const r = await runCli(['review', 'list', '--json'], { env: env('bob') });
      expect(r.code).toBe(0);
      const reviews = (JSON.parse(r.stdout) as { reviews: ReviewJson[] }).reviews.filter((x) => x.rule === rule);
      expect(reviews).toHaveLength(1);
      id = reviews[0]!.id;
    },
    { timeout: 15_000, interval: 100 },
  );
  return id!;
}

describe('a call that needs review, through `sluice connect`', () => {
  it('is held; alice and carol cannot approve; bob approves with the CLI and alice gets the model\'s answer', async () => {
    const { cli, client } = await connect();
    const before = model.requests.length;
    const call = client.chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: 'please review me' }] });
    const id = await pendingReviewId();
    await cli.waitForOutput(new RegExp(`waiting for approval ${id} \\(reviewers: ml-leads\\)`));
    expect(model.requests.length).toBe(before);

    const shown = await runCli(['review', 'show', id], { env: env('bob') });
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain('requester:   alice@example.com');
    expect(shown.stdout).toContain('request:     POST /v1/chat/completions model=gpt-5');

    const self = await runCli(['review', 'approve', id], { env: env('alice') });
    expect(self.code).toBe(4);
    expect(self.stderr).toContain('ERR_SELF_APPROVAL');
    const carol = await runCli(['review', 'approve', id], { env: env('carol') });
    expect(carol.code).toBe(4);
    expect(carol.stderr).toContain('ERR_NOT_REVIEWER');

    const approved = await runCli(['review', 'approve', id, '--reason', 'fine for the eval'], { env: env('bob') });
    expect(approved.code).toBe(0);
    expect(approved.stdout).toContain(`Approved ${id}`);
    const completion = await call;
    expect(completion.choices[0]?.message.content).toContain('please review me');
    await cli.waitForOutput(new RegExp(`${id} approved by bob@example.com`));

    // The recording tells the story in order: held, approved by bob, forwarded, answered.
    const sessionId = /session (ses_[0-9a-f]{32})/.exec(cli.stdout())![1]!;
    cli.kill('SIGINT');
    await cli.exited;
    const events = await recordedEvents(sessionId);
    const story = events.filter((e) => ['review.requested', 'review.approved', 'exchange.request', 'exchange.response'].includes(e.type));
    expect(story.map((e) => e.type)).toEqual(['review.requested', 'review.approved', 'exchange.request', 'exchange.response']);
    expect(story[0]!.fields).toMatchObject({ review: id });
    expect(story[1]!.fields).toMatchObject({ review: id, by: 'bob@example.com', note: 'fine for the eval' });
    expect(story[2]!.fields).toMatchObject({ method: 'POST', path: '/v1/chat/completions', decision: { action: 'review', rule: 'frontier-models-need-review' } });
    expect(story[3]!.fields).toMatchObject({ status: 200 });
  });

  it('fails with the reviewer\'s reason when bob rejects', async () => {
    const { client } = await connect();
    const call = client.chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: 'no' }] }).catch((e: unknown) => e);
    const id = await pendingReviewId();
    const rejected = await runCli(['review', 'reject', id, '--reason', 'use the demo model'], { env: env('bob') });
    expect(rejected.code).toBe(0);
    const err = (await call) as InstanceType<typeof OpenAI.APIError>;
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(err.status).toBe(403);
    expect(err.code).toBe('ERR_REVIEW_REJECTED');
    expect(err.message).toContain('rejected by bob@example.com: use the demo model');
  });

  it('fails with 403 "review expired" when nobody decides', async () => {
    const { client } = await connect();
    const err = (await client.chat.completions.create({ model: 'gpt-5-quick', messages: [{ role: 'user', content: 'quick' }] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(err.code).toBe('ERR_REVIEW_EXPIRED');
    expect(err.message).toContain('review expired');
  });

  it('shows new reviews to `sluice review watch` as plain lines', async () => {
    const watch = spawnCli(['review', 'watch'], { env: env('bob') });
    onTestFinished(() => watch.kill('SIGKILL'));
    await watch.waitForOutput(/watching reviews/);
    const { client } = await connect();
    const call = client.chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: 'watch me' }] });
    await watch.waitForOutput(/^created\s+r_\S+\s+llm\s+alice@example\.com\s+POST \/v1\/chat\/completions model=gpt-5/m);
    const id = /^created\s+(r_\S+)/m.exec(watch.stdout())![1]!;
    expect((await runCli(['review', 'approve', id], { env: env('bob') })).code).toBe(0);
    await call;
    await watch.waitForOutput(new RegExp(`^approved\\s+${id}`, 'm'));
    watch.kill('SIGINT');
    expect(await watch.exited).toBe(0);
  });
});

describe('a call that needs review, through `sluice run`', () => {
  /** `sluice run llm -- node -e …`: the command calls the model through the tunnel and prints what it got. */
  function runScript(content: string) {
    const script = `(async () => {
      console.error('child: calling the model');
      const res = await fetch(process.env.OPENAI_BASE_URL + '/chat/completions', {
        method: 'POST',
        headers: { authorization: 'Bearer ' + process.env.OPENAI_API_KEY, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-5', messages: [{ role: 'user', content: ${JSON.stringify(content)} }] }),
      });
      console.log('child: status ' + res.status + ' ' + (await res.text()));
    })()`;
    const cli = spawnCli(['run', 'llm', '--', process.execPath, '-e', script], { env: env('alice') });
    onTestFinished(() => cli.kill('SIGKILL'));
    return cli;
  }

  it('prints the gateway\'s notices on the stderr it shares with the command: waiting (with reviewers), then approved', async () => {
    const cli = runScript('run me');
    const id = await pendingReviewId();
    await cli.waitForOutput(new RegExp(`waiting for approval ${id} \\(reviewers: ml-leads\\)`));
    expect(cli.stderr()).toContain('child: calling the model');
    expect(cli.stderr()).toMatch(new RegExp(`^sluice: notice: waiting for approval ${id} \\(reviewers: ml-leads\\)`, 'm'));
    expect((await runCli(['review', 'approve', id], { env: env('bob') })).code).toBe(0);
    expect(await cli.exited).toBe(0);
    expect(cli.stderr()).toMatch(new RegExp(`^sluice: notice: ${id} approved by bob@example\\.com; forwarding the request$`, 'm'));
    expect(cli.stdout()).toMatch(/child: status 200 .*run me/);
  });

  it('prints the rejection and the reviewer\'s reason', async () => {
    const cli = runScript('reject me');
    const id = await pendingReviewId();
    expect((await runCli(['review', 'reject', id, '--reason', 'use the demo model'], { env: env('bob') })).code).toBe(0);
    expect(await cli.exited).toBe(0);
    expect(cli.stderr()).toMatch(new RegExp(`^sluice: warning: Review ${id} was rejected by bob@example\\.com: use the demo model$`, 'm'));
    expect(cli.stdout()).toContain('child: status 403');
  });
});

describe('time-boxed access with `sluice access`', () => {
  it('refuses the tunnel without a grant, opens it once bob approves, and closes it when the grant ends', async () => {
    const refused = await runCli(['connect', 'vault'], { env: env('alice') });
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain('ERR_GRANT_REQUIRED');

    const requested = await runCli(['access', 'request', 'vault', '--for', '4s', '--reason', 'incident 7', '--json'], { env: env('alice') });
    expect(requested.code).toBe(0);
    const review = JSON.parse(requested.stdout) as ReviewJson;
    expect(review).toMatchObject({ kind: 'grant', status: 'pending', connection: 'vault' });
    expect((await runCli(['review', 'approve', review.id], { env: env('bob') })).stdout).toMatch(/may use vault until/);

    const listed = await runCli(['access', 'list'], { env: env('alice') });
    expect(listed.stdout).toMatch(/vault\s+active\s+until/);

    const { cli, client } = await connect('vault');
    const models = await client.models.list();
    expect(models.data.length).toBeGreaterThan(0);
    expect(await cli.exited).toBe(4);
    expect(cli.stderr()).toContain('ERR_GRANT_EXPIRED');
  });
});

describe('reload on SIGHUP', () => {
  it('applies a valid file and refuses an invalid one, keeping the running configuration', async () => {
    const file = join(dir, 'sighup.yaml');
    const text = (when: string) => `identity:
  issuer: ${gw.idp.issuer}
  audience: ${gw.idp.audience}
  cli_client_id: sluice-cli
policies:
  - name: rule
    when: ${JSON.stringify(when)}
    action: deny
`;
    await writeFile(file, text('request.method == "DELETE"'));
    const serve = spawnCli(['serve', '--config', file, '--listen', '127.0.0.1:0', '--log-level', 'info']);
    onTestFinished(() => serve.kill('SIGKILL'));
    await serve.waitForOutput(/sluice gateway ready/);

    await writeFile(file, text('request.method =='));
    serve.kill('SIGHUP');
    await serve.waitForOutput(/configuration reload refused; the running configuration stays/);
    expect(serve.stdout()).toContain('policies[0].when: ');

    await writeFile(file, text('request.method == "PUT"'));
    serve.kill('SIGHUP');
    await serve.waitForOutput(/configuration reloaded \(SIGHUP\)/);
    const line = serve.stdout().split('\n').find((l) => l.includes('configuration reloaded (SIGHUP)'))!;
    expect(JSON.parse(line)).toMatchObject({ applied: ['policies'], restart_required: [] });
    serve.kill('SIGTERM');
    expect(await serve.exited).toBe(0);
  });
});
