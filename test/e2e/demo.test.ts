import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { runCli, spawnCli } from '../helpers/cli-process.js';
import { portInUse } from '../helpers/loopback.js';
import { approveDevice } from '../helpers/oidc.js';
import { tempDir } from '../helpers/temp-dir.js';

const COMPLETE_URL = /(http:\/\/127\.0\.0\.1:\d+\/\S*user_code=\S+)/;

describe('sluice demo', () => {
  it('is ready in under 10 s, and login plus whoami work against it from other processes', async () => {
    // The demo's signing key goes beside its data directory (`data-keys`): both inside one temp directory.
    const data = join(await tempDir('sluice-demo-data-'), 'data');
    const started = Date.now();
    const demo = spawnCli(['demo', '--listen', '127.0.0.1:0', '--data', data, '--json']);
    onTestFinished(() => demo.kill('SIGKILL'));
    await demo.waitForOutput(/"gateway":/);
    const readyMs = Date.now() - started;
    expect(readyMs).toBeLessThan(10_000);
    const info = JSON.parse(demo.stdout().trim().split('\n').at(-1)!) as {
      gateway: string;
      data_dir: string;
      config_file: string;
      ci_client: { clientId: string; clientSecret: string };
    };
    expect(info.data_dir).toBe(data);

    // The config it runs is written out, secrets left to the environment, and `serve --check` accepts it.
    expect(info.config_file).toBe(join(data, 'sluice.yaml'));
    const written = await readFile(info.config_file, 'utf8');
    expect(written).toContain('master_key: ${env:SLUICE_MASTER_KEY}');
    expect(written).toMatch(/name: frontier-models-need-review/);
    const masterKey = (await readFile(join(data, 'master.key'), 'utf8')).trim();
    expect(written).not.toContain(masterKey);
    const check = await runCli(['serve', '--config', info.config_file, '--check'], { env: { SLUICE_MASTER_KEY: masterKey } });
    expect(check.code, check.stderr).toBe(0);

    const config = await tempDir('sluice-demo-cli-');
    const env = { XDG_CONFIG_HOME: config, SLUICE_TOKEN_STORE: 'file', SLUICE_DEVICE_POLL_INTERVAL: '0.2' };
    const login = spawnCli(['login', '--gateway', info.gateway, '--no-browser'], { env });
    onTestFinished(() => login.kill('SIGKILL'));
    await login.waitForOutput(COMPLETE_URL);
    await approveDevice({ verificationUriComplete: COMPLETE_URL.exec(login.stderr())![1]!, accountId: 'bob' });
    expect(await login.exited).toBe(0);

    const whoami = await runCli(['whoami', '--json'], { env });
    expect(whoami.code).toBe(0);
    expect(JSON.parse(whoami.stdout)).toMatchObject({ sub: 'bob', groups: ['ml-eng', 'ml-leads'], roles: ['reviewer'] });

    const ci = await runCli(['login', '--client-credentials', '--gateway', info.gateway, '--json'], {
      env: { ...env, XDG_CONFIG_HOME: await tempDir('sluice-demo-ci-'), SLUICE_CLIENT_ID: info.ci_client.clientId, SLUICE_CLIENT_SECRET: info.ci_client.clientSecret },
    });
    expect(ci.code).toBe(0);

    demo.kill('SIGINT');
    expect(await demo.exited).toBe(0);
  });

  it('prints the commands to try next and where its data lives', async () => {
    // Without --data the demo makes its data directory under the temp directory: this test's own.
    const demo = spawnCli(['demo', '--listen', '127.0.0.1:0'], { env: { TMPDIR: await tempDir('sluice-demo-tmp-') } });
    onTestFinished(() => demo.kill('SIGKILL'));
    const out = await demo.waitForOutput(/Ctrl-C stops the demo/);
    expect(out).toMatch(/npx sluice login --gateway http:\/\/127\.0\.0\.1:\d+/);
    expect(out).toMatch(/data\s+\S*sluice-demo-/);
    demo.kill('SIGTERM');
    expect(await demo.exited).toBe(0);
  });

  it('fails on a port in use with ERR_LISTEN_FAILED (exit 2) before it writes a data directory or keys', async () => {
    const port = await portInUse();
    const parent = await tempDir('sluice-demo-busy-');
    const r = await runCli(['demo', '--listen', `127.0.0.1:${port}`, '--data', join(parent, 'data')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`sluice: Cannot listen on 127.0.0.1:${port}: address in use: stop what holds it, or choose another address with --listen (EADDRINUSE) (ERR_LISTEN_FAILED)\n`);
    // Neither the data directory, its master key, nor the signing key beside it.
    expect(await readdir(parent)).toEqual([]);
  });
});
