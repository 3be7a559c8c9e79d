/**
 * The gateway's own gRPC listener (`grpc_listen`): agents without the CLI call a grpc connection with
 * grpc-js (or connect-node), their bearer token in `authorization` metadata and the connection named by
 * `x-sluice-connection`. Same authentication as the HTTP API, same pipeline as the tunnel (access, policy,
 * masking, recording), and the caller's credential never reaches the model.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { describe, expect, it, onTestFinished } from 'vitest';
import { validateConfig } from '../../server/config/load.js';
import { parseListen } from '../../server/listen-address.js';
import { CONNECTION_METADATA } from '../../server/protocols/grpc-direct.js';
import { startGrpcListener } from '../../server/protocols/grpc-listener.js';
import type { RecordedEvent } from '../../server/recording/event-types.js';
import { startGateway } from '../../server/start-gateway.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { sessionEvents } from '../helpers/gateway-session-events.js';
import { gatewayFixture, modelConnection, type TestGateway, type TestUser } from '../helpers/gateway.js';
import { testKserveClient } from '../helpers/grpc-tunnel.js';
import { kserveService } from '../helpers/kserve-connect.js';
import { InferenceClient, inferRequest, startKserveModel, type InferRequest, type KserveModel, type KserveModelOptions, type UnaryAnswer } from '../helpers/kserve-model.js';
import { signToken } from '../helpers/oidc.js';
import { tempDir } from '../helpers/temp-dir.js';

const gateways = gatewayFixture();

/** The credential the gateway sends the model in place of anything the caller sent. */
const MODEL_KEY = 'Bearer triton-key-only-the-gateway-knows';

const TOKENS = ['mail ', 'jane.doe@exa', 'mple.com', ' soon'];

interface Setup {
  gw: TestGateway;
  model: KserveModel;
  /** A grpc-js client of the gateway's gRPC listener. */
  client: grpc.Client;
  /** A grpc-js client of the model itself. */
  direct: grpc.Client;
  /** `127.0.0.1:PORT` of the gRPC listener. */
  address: string;
  /** Metadata of a call by `user` (or with `token`) naming `connection`. */
  metadata(user?: TestUser | { token?: string }, connection?: string): Promise<grpc.Metadata>;
  /** Closes the clients, the listener and the app, which seals the sessions. */
  seal(): Promise<void>;
}

/** A model, a gateway with a `triton` grpc connection masking emails (and an http `llm`), its gRPC listener and clients. */
async function setup(o: { connection?: Record<string, unknown>; config?: Record<string, unknown>; model?: KserveModelOptions } = {}): Promise<Setup> {
  const model = await startKserveModel({ tokens: TOKENS, ...o.model });
  onTestFinished(() => model.close());
  const gw = await gateways.start({
    connections: (upstreams) => [
      {
        name: 'triton',
        type: 'grpc',
        upstream: `grpc://${model.address}`,
        allow_groups: ['ml-eng'],
        masking: ['pii'],
        metadata: { authorization: MODEL_KEY },
        record: { request_body: 'raw', response_body: 'masked' },
        ...o.connection,
      },
      modelConnection(upstreams.model),
    ],
    config: { grpc_listen: '127.0.0.1:0', masking_profiles: { pii: { detectors: ['email'] } }, ...o.config },
  });
  expect(gw.app.grpcCalls).not.toBeNull();
  const listener = await startGrpcListener(parseListen('127.0.0.1:0'), gw.app.grpcCalls!);
  onTestFinished(() => listener.close());
  const address = listener.url.slice('http://'.length);
  const client = testKserveClient(address);
  const direct = testKserveClient(model.address);
  return {
    gw,
    model,
    client,
    direct,
    address,
    async metadata(user = 'alice', connection = 'triton') {
      const m = new grpc.Metadata();
      const token = typeof user === 'string' ? await gw.token(user) : user.token;
      if (token !== undefined) m.set('authorization', `Bearer ${token}`);
      m.set(CONNECTION_METADATA, connection);
      return m;
    },
    async seal() {
      client.close();
      await listener.close();
      await gw.stopApp();
    },
  };
}

/** A unary call with `metadata`, and its answer whichever it is. */
function call(client: grpc.Client, method: string, request: unknown, metadata: grpc.Metadata, options: grpc.CallOptions = {}): Promise<UnaryAnswer> {
  return new Promise((resolve) => {
    const fn = (client as unknown as Record<string, Function>)[method]!.bind(client);
    fn(request, metadata, options, (err: grpc.ServiceError | null, response: Record<string, unknown>) => {
      resolve(err === null ? { ok: true, response } : { ok: false, code: err.code, details: err.details });
    });
  });
}

/** ModelStreamInfer with one request and `metadata`: the text of its messages and how it ended. */
function streamText(client: grpc.Client, request: InferRequest, metadata: grpc.Metadata): Promise<{ tokens: string[]; code: number; details: string }> {
  return new Promise((resolve) => {
    const stream = (client as unknown as { ModelStreamInfer(m: grpc.Metadata): grpc.ClientDuplexStream<unknown, Record<string, unknown>> }).ModelStreamInfer(metadata);
    const tokens: string[] = [];
    stream.on('data', (m: { infer_response: { outputs: { contents: { bytes_contents: Buffer[] } }[] } }) => {
      tokens.push(m.infer_response.outputs[0]!.contents.bytes_contents.map(String).join(''));
    });
    stream.on('error', () => undefined);
    stream.on('status', (s: grpc.StatusObject) => resolve({ tokens, code: s.code, details: s.details }));
    stream.write(request);
    stream.end();
  });
}

type Outputs = { name: string; contents: { bytes_contents: Buffer[]; fp32_contents: number[] } }[];

/** The sealed direct-path sessions of `gw` on `connection`. */
async function proxySessions(gw: TestGateway, connection = 'triton') {
  return (await gw.sessions()).filter((s) => s.via === 'proxy' && s.connection === connection);
}

describe('calls on grpc_listen', () => {
  it('answers ModelInfer as the model does, emails masked; the model gets the connection metadata, never the caller\'s token; the recording holds the call and verifies', async () => {
    const s = await setup();
    const request = inferRequest('llama', 'write to bob@example.org');
    const metadata = await s.metadata();
    metadata.set('x-team', 'search');
    const via = await call(s.client, 'ModelInfer', request, metadata);
    const direct = await call(s.direct, 'ModelInfer', request, new grpc.Metadata());
    expect(via.ok).toBe(true);
    const outputs = (via as unknown as { response: { outputs: Outputs } }).response.outputs;
    expect(outputs[0]!.contents.bytes_contents.map(String)).toEqual(['WRITE TO [EMAIL]']);
    // Apart from the masked element, the answer is the model's own.
    (direct as unknown as { response: { outputs: Outputs } }).response.outputs[0]!.contents.bytes_contents[0] = Buffer.from('WRITE TO [EMAIL]');
    expect(via).toEqual(direct);

    const [seen] = s.model.calls;
    const callerToken = String(metadata.get('authorization')[0]);
    expect(seen!.metadata).toMatchObject({ authorization: MODEL_KEY, 'x-team': 'search' });
    expect(JSON.stringify(seen!.metadata)).not.toContain(callerToken.slice('Bearer '.length));
    expect(seen!.metadata[CONNECTION_METADATA]).toBeUndefined();

    await s.seal();
    const [session] = await proxySessions(s.gw);
    expect(session).toMatchObject({ user: 'alice', status: 'closed' });
    const { events, ok } = await sessionEvents(s.gw, session!.id);
    expect(ok).toBe(true);
    expect(events.find((e) => e.type === 'exchange.request')?.fields).toMatchObject({ method: 'POST', path: '/inference.GRPCInferenceService/ModelInfer', headers: { authorization: '[removed]' } });
    const messages = events.filter((e): e is RecordedEvent<'grpc.message'> => e.type === 'grpc.message');
    expect(messages.map((m) => m.fields.dir)).toEqual(['up', 'down']);
    expect(messages[0]!.fields.json).toMatchObject({ model_name: 'llama' });
    expect(messages[1]!.payload!.includes('bob@example.org'.toUpperCase())).toBe(false);
    expect(events.find((e): e is RecordedEvent<'exchange.end'> => e.type === 'exchange.end')!.fields).toMatchObject({ complete: true, trailers: { 'grpc-status': '0' } });
    // The caller's token is nowhere in what was recorded.
    expect(JSON.stringify(events)).not.toContain(callerToken.slice('Bearer '.length));
  });

  it('streams ModelStreamInfer message by message, the email split over two messages masked; no credential reaches a model the connection gives none', async () => {
    const s = await setup({ connection: { metadata: {} } });
    const answer = await streamText(s.client, inferRequest('llama', 'story'), await s.metadata());
    expect(answer.code).toBe(grpc.status.OK);
    expect(answer.tokens.join('')).toBe('mail [EMAIL] soon');
    for (const t of answer.tokens) expect(t).not.toMatch(/jane|exa|mple/);
    const direct = await streamText(s.direct, inferRequest('llama', 'story'), new grpc.Metadata());
    expect(direct.tokens).toEqual(TOKENS);
    expect(s.model.calls.map((c) => c.method)).toEqual(['ModelStreamInfer', 'ModelStreamInfer']);
    expect(s.model.calls[0]!.metadata.authorization).toBeUndefined();
  });

  it('refuses a call without a token, with an expired one or one for another audience: UNAUTHENTICATED, the model never called', async () => {
    const s = await setup();
    const request = inferRequest('llama', 'hi');
    const now = Math.floor(s.gw.clock.now() / 1000);
    const cases: Array<[{ token?: string }, string]> = [
      [{}, 'A bearer token is required'],
      [{ token: 'not-a-jwt' }, 'not a well-formed JWT'],
      [{ token: await s.gw.token('alice', { iat: now - 7200, exp: now - 3600 }) }, 'expired'],
      [{ token: await s.gw.token('alice', { aud: 'another-service' }) }, 'audience'],
    ];
    for (const [token, message] of cases) {
      const answer = await call(s.client, 'ModelInfer', request, await s.metadata(token));
      expect(answer).toMatchObject({ ok: false, code: grpc.status.UNAUTHENTICATED, details: expect.stringContaining(message) });
    }
    // An unauthenticated caller learns nothing about connections: an unknown name answers the same.
    expect(await call(s.client, 'ModelInfer', request, await s.metadata({}, 'no-such-connection'))).toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    expect(s.model.calls).toEqual([]);
    await s.seal();
    expect(await proxySessions(s.gw)).toEqual([]);
  });

  it('refuses a caller outside allow_groups with PERMISSION_DENIED, recorded; the model never called', async () => {
    const s = await setup();
    const answer = await call(s.client, 'ModelInfer', inferRequest('llama', 'hi'), await s.metadata('dave'));
    expect(answer).toEqual({ ok: false, code: grpc.status.PERMISSION_DENIED, details: 'You are not allowed to use connection "triton"' });
    expect(s.model.calls).toEqual([]);
    await s.seal();
    const [session] = await proxySessions(s.gw);
    const { events, ok } = await sessionEvents(s.gw, session!.id);
    expect(ok).toBe(true);
    expect(events.find((e) => e.type === 'exchange.error')?.fields).toMatchObject({ code: 'ERR_CONNECTION_FORBIDDEN' });
  });

  it('refuses by a deny rule with PERMISSION_DENIED and the rule\'s message, recorded; another model passes', async () => {
    const s = await setup({
      config: {
        policies: [
          {
            name: 'no-frontier-models',
            when: 'connection.name == "triton" && request.grpc.method == "ModelInfer" && request.json.model_name.startsWith("gpt-")',
            action: 'deny',
            message: 'Frontier models are not served on triton',
          },
        ],
      },
    });
    const metadata = await s.metadata();
    expect(await call(s.client, 'ModelInfer', inferRequest('gpt-5', 'plans'), metadata)).toEqual({ ok: false, code: grpc.status.PERMISSION_DENIED, details: 'Frontier models are not served on triton' });
    expect(await call(s.client, 'ModelInfer', inferRequest('llama', 'hi'), metadata)).toMatchObject({ ok: true });
    expect(s.model.calls.map((c) => (c.requests[0] as InferRequest).model_name)).toEqual(['llama']);
    await s.seal();
    // Both calls of the caller on the connection are one session.
    const sessions = await proxySessions(s.gw);
    expect(sessions).toHaveLength(1);
    const { events, ok } = await sessionEvents(s.gw, sessions[0]!.id);
    expect(ok).toBe(true);
    expect(events.find((e) => e.type === 'policy.decision')!.fields).toMatchObject({ action: 'deny', rule: 'no-frontier-models' });
    expect(events.filter((e) => e.type === 'exchange.end')).toHaveLength(2);
  });

  it('names the connection by metadata or by authority; an unknown or non-grpc connection, or none, is refused with a clear status', async () => {
    const s = await setup();
    const request = inferRequest('llama', 'hi');
    expect(await call(s.client, 'ModelInfer', request, await s.metadata('alice', 'nope'))).toEqual({
      ok: false,
      code: grpc.status.NOT_FOUND,
      details: `No connection is named "nope" (named by ${CONNECTION_METADATA} or the call's authority)`,
    });
    expect(await call(s.client, 'ModelInfer', request, await s.metadata('alice', 'llm'))).toMatchObject({ ok: false, code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('is a http connection') });
    const anonymous = new grpc.Metadata();
    anonymous.set('authorization', `Bearer ${await s.gw.token('alice')}`);
    expect(await call(s.client, 'ModelInfer', request, anonymous)).toMatchObject({ ok: false, code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining(CONNECTION_METADATA) });
    expect(s.model.calls).toEqual([]);

    // A client whose authority is triton.<anything> needs no metadata for it.
    const client = new InferenceClient(s.address, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'triton.gateway.test' });
    onTestFinished(() => client.close());
    expect(await call(client, 'ModelInfer', request, anonymous)).toMatchObject({ ok: true });
    expect(s.model.calls).toHaveLength(1);
  });

  it('serves a connect-node gRPC client too', async () => {
    const s = await setup();
    const token = await s.gw.token('alice');
    const client = createClient(
      kserveService(),
      createGrpcTransport({
        baseUrl: `http://${s.address}`,
        interceptors: [
          (next) => async (req) => {
            req.header.set('authorization', `Bearer ${token}`);
            req.header.set(CONNECTION_METADATA, 'triton');
            return next(req);
          },
        ],
      }),
    ) as unknown as Record<string, (req: unknown) => Promise<Record<string, unknown>>>;
    // connect-es names fields in lowerCamelCase (modelName for model_name).
    const answer = (await client.modelInfer!({ modelName: 'llama', id: 'r1', inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1n], contents: { bytesContents: [Buffer.from('ask bob@example.org')] } }] })) as {
      modelName: string;
      outputs: { contents: { bytesContents: Uint8Array[]; fp32Contents: number[] } }[];
    };
    expect(answer.modelName).toBe('llama');
    expect(Buffer.from(answer.outputs[0]!.contents.bytesContents[0]!).toString()).toBe('ASK [EMAIL]');
    expect(answer.outputs[1]!.contents.fp32Contents).toEqual([0.5, 0.25, 0.125]);
    expect(s.model.calls[0]!.metadata.authorization).toBe(MODEL_KEY);
  });
});

describe('sluice serve with grpc_listen', () => {
  /** Metadata of a call by alice to `triton`, with a token the fixture's identity provider issues now. */
  async function aliceCallingTriton(): Promise<grpc.Metadata> {
    const idp = gateways.idp;
    const now = Math.floor(Date.now() / 1000);
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${await signToken(idp.signingKey, idp.claimsFor('alice', { iat: now, exp: now + 300 }))}`);
    metadata.set(CONNECTION_METADATA, 'triton');
    return metadata;
  }

  /** The gateway `sluice serve` starts with `grpc_listen` (and `more`, such as tls): a `triton` connection to `model`, its data under `dir`. */
  async function serveGrpcListen(model: KserveModel, dir: string, more: Record<string, unknown> = {}) {
    const idp = gateways.idp;
    const config = validateConfig({
      listen: '127.0.0.1:0',
      grpc_listen: '127.0.0.1:0',
      ...more,
      identity: { issuer: idp.issuer, audience: idp.audience, cli_client_id: idp.cliClientId },
      storage: { dir: join(dir, 'data'), master_key: randomBytes(32).toString('base64') },
      connections: [{ name: 'triton', type: 'grpc', upstream: `grpc://${model.address}`, allow_groups: ['ml-eng'] }],
    });
    const gw = await startGateway({ config, logger: false });
    onTestFinished(() => gw.close());
    return { config, gw };
  }

  it('listens on its own port, and a drain lets the streaming call in flight finish while refusing new connections', async () => {
    const model = await startKserveModel({ tokens: Array.from({ length: 20 }, (_, i) => `t${i} `), tokenDelayMs: 25 });
    onTestFinished(() => model.close());
    const dir = await tempDir('sluice-grpc-direct-');
    const { config, gw } = await serveGrpcListen(model, dir);
    expect(gw.grpcUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(gw.grpcUrl).not.toBe(gw.url);
    const address = gw.grpcUrl!.slice('http://'.length);
    const metadata = await aliceCallingTriton();
    const client = testKserveClient(address);

    const streaming = streamText(client, inferRequest('llama', 'long story'), metadata);
    // The drain starts once the answer is under way.
    const until = Date.now() + 10_000;
    while (model.calls.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    const drained = gw.drain();
    const answer = await streaming;
    expect(answer.code).toBe(grpc.status.OK);
    expect(answer.tokens).toHaveLength(20);
    expect(await drained).toBe('drained');

    const late = testKserveClient(address);
    expect(await call(late, 'ModelInfer', inferRequest('llama', 'hi'), metadata)).toMatchObject({ ok: false, code: grpc.status.UNAVAILABLE });
    // The drain sealed the call's session, which verifies.
    const index = new SqliteStore({ file: join(config.storage.dir, 'index.sqlite') });
    const { sessions } = await index.listSessions();
    await index.close();
    expect(sessions).toMatchObject([{ via: 'proxy', connection: 'triton', user: 'alice', status: 'closed' }]);
    const { events, ok } = await sessionEvents({ config } as TestGateway, sessions[0]!.id);
    expect(ok).toBe(true);
    expect(events.filter((e) => e.type === 'grpc.message' && (e as RecordedEvent<'grpc.message'>).fields.dir === 'down')).toHaveLength(20);
  });

  it('speaks HTTP/2 over TLS with the gateway\'s certificate when tls is set', async () => {
    const model = await startKserveModel();
    onTestFinished(() => model.close());
    const dir = await tempDir('sluice-grpc-tls-');
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    const openssl = spawn('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
    expect(await new Promise((r) => openssl.on('exit', r))).toBe(0);
    const { gw } = await serveGrpcListen(model, dir, { tls: { cert, key } });
    expect(gw.grpcUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const address = gw.grpcUrl!.slice('https://'.length);
    const metadata = await aliceCallingTriton();
    const client = new InferenceClient(address, grpc.credentials.createSsl(await readFile(cert)));
    onTestFinished(() => client.close());
    expect(await call(client, 'ModelInfer', inferRequest('llama', 'over tls'), metadata)).toMatchObject({ ok: true });
    // A plaintext client gets nothing from a TLS listener.
    const plain = testKserveClient(address);
    expect(await call(plain, 'ModelInfer', inferRequest('llama', 'in clear'), metadata, { deadline: Date.now() + 3000 })).toMatchObject({ ok: false });
    expect(model.calls).toHaveLength(1);
  });

  it('refuses to listen for gRPC in clear text off loopback without --insecure', async () => {
    const idp = gateways.idp;
    const config = validateConfig({
      listen: '127.0.0.1:0',
      grpc_listen: '0.0.0.0:0',
      identity: { issuer: idp.issuer, audience: idp.audience, cli_client_id: idp.cliClientId },
    });
    await expect(startGateway({ config, logger: false })).rejects.toMatchObject({ code: 'ERR_INSECURE_LISTEN', message: expect.stringContaining('gRPC on 0.0.0.0:0') });
  });
});
