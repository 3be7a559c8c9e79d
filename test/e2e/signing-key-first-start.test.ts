/**
 * The signing key on the first start of a storage directory by several processes at once, as the workers
 * of `serve --workers N` start: each process (the compiled module, in a process of its own) creates or
 * reads `signing-key.pem`, and every one of them reads the whole key, the same one.
 */
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/temp-dir.js';

const SIGNING_KEY_MODULE = fileURLToPath(new URL('../../dist/server/recording/signing-key.js', import.meta.url));

/** Runs `loadOrCreateSigningKeyFile(file)` in a process of its own, at the next multiple of 300 ms so the starters line up; resolves to its key's fingerprint. */
function startInProcess(file: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script =
    `const m = await import(${JSON.stringify(SIGNING_KEY_MODULE)});` +
    `setTimeout(async () => { const k = await m.loadOrCreateSigningKeyFile(${JSON.stringify(file)}); process.stdout.write(m.publicKeyFingerprint(k.publicKey)); }, 300 - (Date.now() % 300));`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the signing key, created by several processes starting at once', () => {
  it('is read whole by every starter, and they agree on one key', async () => {
    for (let round = 0; round < 10; round++) {
      const root = await tempDir('sluice-key-start-');
      const file = join(root, 'data', 'signing-key.pem');
      const runs = await Promise.all(Array.from({ length: 6 }, () => startInProcess(file)));
      for (const run of runs) expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
      expect(new Set(runs.map((r) => r.stdout)).size).toBe(1);
      expect(runs[0]!.stdout).toMatch(/^[0-9a-f]{64}$/);
      expect(await readFile(file, 'utf8')).toContain('-----BEGIN PRIVATE KEY-----');
      // No temporary file is left beside it.
      expect(await readdir(join(root, 'data'))).toEqual(['signing-key.pem']);
    }
  }, 120_000);
});
