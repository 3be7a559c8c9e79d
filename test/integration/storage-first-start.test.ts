/**
 * The seal log on the first start of a storage directory when several start at once, as the workers of
 * `serve --workers N` do: starters of one log agree on it, and each worker keeps a seal log of its own that
 * `readSealLog` checks with the rest. (The signing key's first start: test/e2e/signing-key-first-start.test.ts.)
 */
import { generateKeyPairSync } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { SealLog } from '../../server/recording/seal-log.js';
import { SEAL_LOG_FILE } from '../../server/recording/seal-log-format.js';
import { signingKeyFrom } from '../../server/recording/signing-key.js';
import { readSealLog } from '../../server/recording/verify-seal-log.js';
import { sealLogVerdictText } from '../../server/recording/verify-storage-dir.js';
import { tempDir } from '../helpers/temp-dir.js';

const signingKey = signingKeyFrom(generateKeyPairSync('ed25519').privateKey);

describe('the first start of a storage directory, by several starters at once', () => {
  it('opens one seal log for two starters of the same log at once: the second continues the first', async () => {
    for (let round = 0; round < 5; round++) {
      const dir = await tempDir('sluice-first-start-');
      const [a, b] = await Promise.all([SealLog.open({ dir, signingKey }), SealLog.open({ dir, signingKey })]);
      onTestFinished(async () => {
        await Promise.all([a.close(), b.close()]);
      });
      expect(a.id).toBe(b.id);
      expect((await readFile(join(dir, SEAL_LOG_FILE), 'utf8')).trim().split('\n')).toHaveLength(1);
    }
  });

  it('keeps one seal log per worker, verified together; damage in one is named', async () => {
    const dir = await tempDir('sluice-first-start-');
    const logs = await Promise.all([0, 1, 2].map((worker) => SealLog.open({ dir, signingKey, worker })));
    expect(logs.map((l) => l.path.slice(dir.length + 1))).toEqual(['seals.log', 'seals.1.log', 'seals.2.log']);
    expect(new Set(logs.map((l) => l.id)).size).toBe(3);
    // Interleaved appends: each chain is its own, so none forks.
    for (let i = 0; i < 3; i++) {
      for (const [w, log] of logs.entries()) {
        await log.append({ type: 'seal', session: `ses_w${w}_${i}`, file: `sessions/ses_w${w}_${i}.sluicerec`, status: 'closed', records: 2 + i, finalHash: 'ab'.repeat(32), sealedAt: 1000 + i });
      }
    }
    await Promise.all(logs.map((l) => l.close()));
    expect((await readdir(dir)).sort()).toEqual(['seals.1.checkpoints', 'seals.1.log', 'seals.2.checkpoints', 'seals.2.log', 'seals.checkpoints', 'seals.log']);

    const report = await readSealLog({ dir, publicKey: signingKey.publicKey });
    expect(report.problems).toEqual([]);
    expect(report.logs?.map((l) => [l.file, l.logId, l.entries, l.signedThrough])).toEqual(logs.map((l) => [l.path.slice(dir.length + 1), l.id, 4, 3]));
    expect(report.sessions.size).toBe(9);
    expect(report.sessions.get('ses_w2_1')).toMatchObject({ log: logs[2]!.id, records: 3, entry: 2 });
    const intact = sealLogVerdictText(report);
    expect(intact.failed).toBe(false);
    expect(intact.text).toContain('seals.2.log (4 entries; signed through entry 3)');

    // A byte flipped in worker 2's log: the verdict fails and names that log; the others stay intact.
    const path = join(dir, 'seals.2.log');
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.replace('"records":3', '"records":4'));
    const broken = await readSealLog({ dir, publicKey: signingKey.publicKey });
    const verdict = sealLogVerdictText(broken);
    expect(verdict.failed).toBe(true);
    expect(verdict.text).toContain('seals.2.log: ');
    expect(broken.problems.every((p) => p.message.startsWith('seals.2.log: '))).toBe(true);

    // Reopened, worker 1 continues its own chain.
    const again = await SealLog.open({ dir, signingKey, worker: 1 });
    expect(again.id).toBe(logs[1]!.id);
    expect(again.head.seq).toBe(3);
    await again.close();
  });
});
