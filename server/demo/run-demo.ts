import { randomBytes } from 'node:crypto';
import { access, mkdtemp, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { FastifyServerOptions } from 'fastify';
import { SIGNING_KEY_FILE } from '../recording/signing-key.js';
import { parseListen } from '../listen-address.js';
import { probeListen } from '../listen-probe.js';
import { startGateway, type RunningGateway } from '../start-gateway.js';
import { DEMO_CLI_CLIENT, DEMO_UPSTREAM_KEY, DEMO_USERS, DEMO_AUDIENCE, demoCiClient, demoConfig, demoConfigDocument, type DemoConfigOptions } from './demo-config.js';
import { startEchoServer } from './echo-server.js';
import { startIdp } from './idp.js';
import { startModelServer } from './model-server.js';
import { stringify as stringifyYaml } from 'yaml';

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
  /** The checkpoint signing key: beside the data directory, never in it. */
  signingKeyFile: string;
  /** The config the demo's gateway runs, as a sluice.yaml (the master key as `${env:SLUICE_MASTER_KEY}`). */
  configFile: string;
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

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/**
 * Where the demo keeps its signing key: `<data>-keys/signing-key.pem`, a sibling of the data directory,
 * so copying or tampering with the data directory never carries the key that vouches for it. A data
 * directory kept from before has its key moved there, so its sessions keep verifying.
 */
async function demoSigningKeyFile(dataDir: string): Promise<string> {
  const keysDir = join(dirname(dataDir), `${basename(dataDir)}-keys`);
  await mkdir(keysDir, { recursive: true, mode: 0o700 });
  const file = join(keysDir, SIGNING_KEY_FILE);
  const old = join(dataDir, SIGNING_KEY_FILE);
  if (!(await exists(file)) && (await exists(old))) await rename(old, file);
  return file;
}

/**
 * Writes the config the demo runs to `<data>/sluice.yaml` (0600), the master key left to the environment
 * as a real deployment keeps it, so a reader sees exactly what joins the parts.
 */
async function writeDemoConfigFile(settings: DemoConfigOptions): Promise<string> {
  const doc = demoConfigDocument({ ...settings, masterKey: '${env:SLUICE_MASTER_KEY}' });
  const file = join(settings.dataDir, 'sluice.yaml');
  const text =
    '# The config this demo runs. Its identity provider and model live only while `sluice demo` runs.\n' +
    `# SLUICE_MASTER_KEY="$(cat ${join(settings.dataDir, 'master.key')})" sluice serve --config ${file} --check\n` +
    stringifyYaml(doc);
  await writeFile(file, text, { mode: 0o600 });
  return file;
}

/** Start the identity provider, the demo upstreams and the gateway, all on loopback. */
export async function startDemo(options: DemoOptions = {}): Promise<RunningDemo> {
  const listen = options.listen ?? '127.0.0.1:7443';
  // The port first: a demo that cannot listen must fail before it writes a data directory and keys.
  await probeListen(parseListen(listen));
  const dataDir = options.dataDir ? resolve(options.dataDir) : await mkdtemp(join(tmpdir(), 'sluice-demo-'));
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const signingKeyFile = await demoSigningKeyFile(dataDir);
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
    const settings: DemoConfigOptions = {
      issuer: idp.issuer,
      listen,
      modelUrl: model.url,
      echoAddress: echo.address,
      dataDir,
      masterKey: await demoMasterKey(dataDir),
      signingKeyFile,
    };
    const config = demoConfig(settings);
    const gateway = await startGateway({ config, logger: options.logger ?? false });
    const configFile = await writeDemoConfigFile(settings);
    closers.push(() => gateway.close());
    return {
      gateway,
      issuer: idp.issuer,
      modelUrl: model.url,
      echoAddress: echo.address,
      dataDir,
      signingKeyFile,
      configFile,
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
