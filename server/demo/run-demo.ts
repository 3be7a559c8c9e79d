import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { FastifyServerOptions } from 'fastify';
import { startGateway, type RunningGateway } from '../start-gateway.js';
import { DEMO_CLI_CLIENT, DEMO_UPSTREAM_KEY, DEMO_USERS, DEMO_AUDIENCE, demoCiClient, demoConfig } from './demo-config.js';
import { startEchoServer } from './echo-server.js';
import { startIdp } from './idp.js';
import { startModelServer } from './model-server.js';

export interface DemoOptions {
  /** Where recordings and keys go; a fresh temp dir when omitted. */
  dataDir?: string;
  /** Gateway listen address. */
  listen?: string;
  logger?: FastifyServerOptions['logger'];
}

export interface RunningDemo {
  gateway: RunningGateway;
  issuer: string;
  modelUrl: string;
  echoAddress: string;
  dataDir: string;
  ciClient: { clientId: string; clientSecret: string };
  close(): Promise<void>;
}

/** The demo's master key: `<data>/master.key` (0600), made on first run and reused, so a kept data dir stays readable. */
async function demoMasterKey(dataDir: string): Promise<string> {
  const file = join(dataDir, 'master.key');
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = randomBytes(32).toString('base64');
  await writeFile(file, `${key}\n`, { mode: 0o600, flag: 'wx' });
  return key;
}

/** Start the identity provider, the demo upstreams and the gateway, all on loopback. */
export async function startDemo(options: DemoOptions = {}): Promise<RunningDemo> {
  const dataDir = options.dataDir ? resolve(options.dataDir) : await mkdtemp(join(tmpdir(), 'sluice-demo-'));
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const ci = demoCiClient(randomBytes(18).toString('base64url'));
  const closers: Array<() => Promise<void>> = [];
  try {
    const idp = await startIdp({
      audience: DEMO_AUDIENCE,
      users: DEMO_USERS,
      cliClientId: DEMO_CLI_CLIENT,
      ciClients: [ci],
      title: 'sluice demo sign-in',
    });
    closers.push(() => idp.close());
    const model = await startModelServer({ apiKey: DEMO_UPSTREAM_KEY });
    closers.push(() => model.close());
    const echo = await startEchoServer();
    closers.push(() => echo.close());
    const config = demoConfig({
      issuer: idp.issuer,
      listen: options.listen ?? '127.0.0.1:7443',
      modelUrl: model.url,
      echoAddress: echo.address,
      dataDir,
      masterKey: await demoMasterKey(dataDir),
    });
    const gateway = await startGateway({ config, logger: options.logger ?? false });
    closers.push(() => gateway.close());
    return {
      gateway,
      issuer: idp.issuer,
      modelUrl: model.url,
      echoAddress: echo.address,
      dataDir,
      ciClient: { clientId: ci.clientId, clientSecret: ci.clientSecret },
      close: async () => {
        for (const close of closers.reverse()) await close().catch(() => undefined);
      },
    };
  } catch (err) {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    throw err;
  }
}
