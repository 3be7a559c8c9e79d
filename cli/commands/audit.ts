import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { SluiceError } from '../../shared/errors.js';
import { decodeMasterKey, DEFAULT_KEY_ID, KeyRing } from '../../server/recording/key-ring.js';
import { SIGNING_KEY_FILE } from '../../server/recording/signing-key.js';
import { verdictText, verifyStorageDir } from '../../server/recording/verify-storage-dir.js';
import type { RegisterCommand } from '../context.js';

const verifyFlags = z.object({
  all: z.boolean().default(false),
  dataDir: z.string().min(1).default('./data'),
  keyFile: z.string().min(1).optional(),
  keyId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/).default(DEFAULT_KEY_ID),
  publicKey: z.string().min(1).optional(),
  strict: z.boolean().default(false),
  json: z.boolean().default(false),
});

const keyList = z.array(z.object({ id: z.string().min(1), key: z.string().min(1) })).min(1);

/**
 * The master keys: a `--key-file` holding one base64 key, or YAML/JSON `[{id, key}]` (or the
 * `master_keys:` of a config); else `SLUICE_MASTER_KEY`. A lone key takes `keyId`.
 */
export async function loadKeyRing(keyFile: string | undefined, env: NodeJS.ProcessEnv, keyId: string): Promise<KeyRing> {
  const bad = (why: string): SluiceError => new SluiceError('ERR_USAGE', { message: why });
  let text: string;
  if (keyFile !== undefined) {
    try {
      text = await readFile(keyFile, 'utf8');
    } catch (err) {
      throw bad(`Cannot read the key file ${keyFile} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  } else if (env.SLUICE_MASTER_KEY?.trim()) {
    text = env.SLUICE_MASTER_KEY;
  } else {
    throw bad('No master key: pass --key-file FILE or set SLUICE_MASTER_KEY');
  }
  const where = keyFile ?? 'SLUICE_MASTER_KEY';
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(text.trim())) {
    try {
      return new KeyRing([{ id: keyId, key: decodeMasterKey(text) }]);
    } catch (err) {
      throw bad(`The master key in ${where} ${(err as Error).message}`);
    }
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch {
    throw bad(`${where} is neither a base64 key nor YAML/JSON`);
  }
  const list = keyList.safeParse(Array.isArray(parsed) ? parsed : (parsed as { master_keys?: unknown } | null)?.master_keys);
  if (!list.success) throw bad(`${where} must hold a base64 key or a list of {id, key}`);
  try {
    return new KeyRing(list.data.map((k) => ({ id: k.id, key: decodeMasterKey(k.key) })));
  } catch (err) {
    throw bad(`${where}: ${(err as Error).message}`);
  }
}

/** `sluice audit verify`: checks session files offline, with no gateway. */
export const registerAudit: RegisterCommand = (program, ctx) => {
  const audit = program.command('audit').summary('check recordings offline').description('Audit tools that work on a copy of the storage directory, with no gateway running.');

  audit
    .command('verify')
    .description(
      'Verify session files: every record authenticates and chains to the one before, the checkpoint signature ' +
        'verifies, and, where index.sqlite exists, each sealed session holds what the index says. Prints one line ' +
        'per session and exits with ERR_RECORDING_TAMPERED when any is broken.',
    )
    .argument('[id]', 'one session id (ses_…)')
    .option('--all', 'every session of the directory', false)
    .option('--data-dir <dir>', 'the storage directory (storage.dir)', './data')
    .option('--key-file <file>', 'master key(s): one base64 key, or YAML/JSON [{id, key}]; default $SLUICE_MASTER_KEY')
    .option('--key-id <id>', 'the id of a lone master key', DEFAULT_KEY_ID)
    .option('--public-key <file>', `checkpoint public key PEM (GET /v1/audit/public-key); default DIR/${SIGNING_KEY_FILE}`)
    .option('--strict', 'count interrupted sessions (no checkpoint) as failures too', false)
    .option('--json', 'print JSON', false)
    .action(async (id: string | undefined, raw: Record<string, unknown>) => {
      const f = verifyFlags.parse(raw);
      if ((id === undefined) === !f.all) throw new SluiceError('ERR_USAGE', { message: 'Name one session id, or pass --all' });
      if (id !== undefined && !/^ses_[0-9a-f]{32}$/.test(id)) throw new SluiceError('ERR_USAGE', { message: `"${id}" is not a session id (ses_…)` });
      const dir = resolve(f.dataDir);
      const keyRing = await loadKeyRing(f.keyFile, ctx.env, f.keyId);
      const keyPath = f.publicKey ?? join(dir, SIGNING_KEY_FILE);
      let publicKey: string;
      try {
        publicKey = await readFile(keyPath, 'utf8');
      } catch (err) {
        throw new SluiceError('ERR_USAGE', { message: `Cannot read the public key ${keyPath} (${(err as NodeJS.ErrnoException).code ?? String(err)}); pass --public-key FILE` });
      }

      const results = [];
      let failed = 0;
      let seen = 0;
      for await (const v of verifyStorageDir({ dir, keyRing, publicKey, ...(id === undefined ? {} : { only: id }) })) {
        const verdict = verdictText(v, f.strict);
        seen++;
        if (verdict.failed) failed++;
        if (f.json) {
          results.push({
            id: v.id,
            file: v.file,
            status: verdict.status,
            failed: verdict.failed,
            verdict: verdict.text,
            index_status: v.indexStatus ?? null,
            records: v.result?.records ?? 0,
            last_good_seq: v.result?.lastGoodSeq ?? -1,
            last_good_offset: v.result?.lastGoodOffset ?? 0,
            problems: (v.result?.problems ?? []).map((p) => ({ kind: p.kind, record: p.index, offset: p.offset, message: p.message })),
          });
        } else {
          ctx.out.stdout.write(`${v.id}  ${verdict.text}\n`);
        }
      }
      if (f.json) ctx.out.stdout.write(`${JSON.stringify({ ok: failed === 0, sessions: results }, null, 2)}\n`);
      if (id !== undefined && seen === 0) {
        throw new SluiceError('ERR_NOT_FOUND', { message: `No session ${id} in ${dir}` });
      }
      if (failed > 0) {
        throw new SluiceError('ERR_RECORDING_TAMPERED', { message: `${failed} session${failed === 1 ? '' : 's'} in ${dir} failed verification` });
      }
    });
};
