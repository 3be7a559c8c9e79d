import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { configDir } from '../../cli/state/paths.js';
import { openProfiles } from '../../cli/state/profiles.js';
import { SluiceError } from '../../shared/errors.js';

const dirs: string[] = [];

async function tempRoot(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-profiles-'));
  dirs.push(dir);
  return dir;
}

afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe('config directory', () => {
  it('is $XDG_CONFIG_HOME/sluice, else ~/.config/sluice; a relative XDG_CONFIG_HOME is ignored', () => {
    expect(configDir({ env: { XDG_CONFIG_HOME: '/x/conf', HOME: '/home/a' } })).toBe('/x/conf/sluice');
    expect(configDir({ env: { HOME: '/home/a' } })).toBe('/home/a/.config/sluice');
    expect(configDir({ env: { XDG_CONFIG_HOME: 'relative', HOME: '/home/a' } })).toBe('/home/a/.config/sluice');
  });
});

describe('profiles', () => {
  it('creates the config dir 0700 on first write and persists profiles across opens', async () => {
    const dir = join(await tempRoot(), 'sluice');
    const profiles = await openProfiles({ dir });
    expect(profiles.get('default')).toBeUndefined();
    await expect(stat(dir)).rejects.toThrow(); // reading alone creates nothing

    await profiles.set('default', {
      gateway: 'https://gw.example.com',
      issuer: 'https://idp.example.com',
      cliClientId: 'sluice-cli',
      audience: 'urn:sluice:gateway',
      loginKind: 'device_code',
    });
    if (process.platform !== 'win32') expect((await stat(dir)).mode & 0o777).toBe(0o700);

    const onDisk = JSON.parse(await readFile(join(dir, 'profiles.json'), 'utf8'));
    expect(onDisk.version).toBe(1);
    expect(onDisk.profiles.default).toMatchObject({ gateway: 'https://gw.example.com', audience: 'urn:sluice:gateway', loginKind: 'device_code' });

    const reopened = await openProfiles({ dir });
    expect(reopened.get('default')).toMatchObject({ issuer: 'https://idp.example.com', cliClientId: 'sluice-cli' });
    expect(reopened.get('default')?.updatedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('merges updates into a profile and keeps profiles apart', async () => {
    const dir = join(await tempRoot(), 'sluice');
    const profiles = await openProfiles({ dir });
    await profiles.set('default', { gateway: 'https://a.example.com', issuer: 'https://idp-a.example.com' });
    await profiles.set('staging', { gateway: 'https://b.example.com' });
    await profiles.set('default', { gateway: 'https://a2.example.com', loginKind: 'client_credentials' });

    const reopened = await openProfiles({ dir });
    expect(reopened.get('default')).toMatchObject({
      gateway: 'https://a2.example.com',
      issuer: 'https://idp-a.example.com',
      loginKind: 'client_credentials',
    });
    expect(reopened.get('staging')?.gateway).toBe('https://b.example.com');
    expect(Object.keys(reopened.list()).sort()).toEqual(['default', 'staging']);
  });

  it('removes a profile', async () => {
    const dir = join(await tempRoot(), 'sluice');
    const profiles = await openProfiles({ dir });
    await profiles.set('staging', { gateway: 'https://b.example.com' });
    expect(await profiles.remove('staging')).toBe(true);
    expect(await profiles.remove('staging')).toBe(false);
    expect((await openProfiles({ dir })).get('staging')).toBeUndefined();
  });

  it('rejects profile names that are not plain words, and names inherited from Object', async () => {
    const dir = join(await tempRoot(), 'sluice');
    const profiles = await openProfiles({ dir });
    for (const name of ['../x', '', '.hidden', 'a/b', 'x'.repeat(65)]) {
      expect(() => profiles.get(name)).toThrowError(SluiceError);
    }
    expect(profiles.get('constructor')).toBeUndefined();
    expect(profiles.get('toString')).toBeUndefined();
  });

  it('reports a profiles file that is not sluice profiles as ERR_USAGE naming the file', async () => {
    const dir = join(await tempRoot(), 'sluice');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'profiles.json'), '[1, 2, 3]');
    const err = await openProfiles({ dir }).catch((e: unknown) => e as SluiceError);
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('ERR_USAGE');
    expect((err as SluiceError).message).toContain(join(dir, 'profiles.json'));
  });
});
