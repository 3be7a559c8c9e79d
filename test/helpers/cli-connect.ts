/**
 * `sluice connect` (the real binary) up and ready: spawned with `--json`, killed when the test finishes,
 * and its ready line read, for tests that then use the local end it opened.
 */
import { onTestFinished } from 'vitest';
import { spawnCli, type CliOptions, type SpawnedCli } from './cli-process.js';

/** The line `sluice connect --json` prints once its local end is up. */
export interface ConnectReady {
  readonly event: 'ready';
  readonly connection: { readonly name: string; readonly type: string };
  readonly session_id: string;
  readonly gateway: string;
  readonly local_url: string | null;
  readonly local_socket: string | null;
  readonly openai_base_url: string | null;
  readonly local_token: string | null;
  readonly warning?: string;
}

/** A running `sluice connect` and what its ready line said. */
export interface ConnectedCli {
  readonly cli: SpawnedCli;
  readonly ready: ConnectReady;
  /** The TCP port of `local_url`; 0 when it listens on a Unix socket. */
  readonly localPort: number;
}

/** `sluice connect ARGS… --json` (ARGS: the connection, then flags); resolves once it reports ready. */
export async function spawnConnect(args: string[], options: CliOptions = {}): Promise<ConnectedCli> {
  const cli = spawnCli(['connect', ...args, '--json'], options);
  onTestFinished(() => cli.kill('SIGKILL'));
  await cli.waitForOutput(/"event":"ready"/);
  const ready = JSON.parse(cli.stdout().split('\n').find((l) => l.includes('"event":"ready"'))!) as ConnectReady;
  return { cli, ready, localPort: Number(/:(\d+)\/?$/.exec(ready.local_url ?? '')?.[1] ?? 0) };
}
