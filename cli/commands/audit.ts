import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { EXIT, SluiceError } from '../../shared/errors.js';
import type { RecordingsSettings } from '../../server/config/recordings-schema.js';
import type { ArchiveReader, RecordingArchive } from '../../server/recording/archive/archive.js';
import { FsArchive } from '../../server/recording/archive/fs-archive.js';
import { openDatabaseIndex, openDirectoryIndex, type AuditIndex } from '../../server/recording/audit-index.js';
import { decodeMasterKey, DEFAULT_KEY_ID, KeyRing, keyRingFromSettings } from '../../server/recording/key-ring.js';
import { sealCheckpointSchema, type SealCheckpoint } from '../../server/recording/seal-log-format.js';
import { SIGNING_KEY_FILE } from '../../server/recording/signing-key.js';
import { INDEX_FILE } from '../../server/recording/storage-layout.js';
import { parseExportedCheckpoints, readSealLog } from '../../server/recording/verify-seal-log.js';
import { sealLogVerdictText, verdictText, verifyStorageDir } from '../../server/recording/verify-storage-dir.js';
import { ApiClient } from '../api-client.js';
import { usageError } from '../flag-errors.js';
import { getAccessToken } from '../auth/access-token.js';
import type { CliContext, RegisterCommand } from '../context.js';

const verifyFlags = z.object({
  all: z.boolean().default(false),
  dataDir: z.string().min(1).default('./data'),
  keyFile: z.string().min(1).optional(),
  keyId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 letters, digits, ".", "_" or "-"').default(DEFAULT_KEY_ID),
  publicKey: z.string().min(1).optional(),
  checkpoints: z.string().min(1).optional(),
  strict: z.boolean().default(false),
  json: z.boolean().default(false),
  config: z.string().min(1).optional(),
  bucket: z.string().regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/, 'must be s3://BUCKET or s3://BUCKET/PREFIX').optional(),
  endpoint: z.url({ protocol: /^https?$/, message: 'must be an http(s) URL' }).optional(),
  region: z.string().min(1).optional(),
  forcePathStyle: z.boolean().default(false),
  // The message never echoes the value: it may hold a password.
  database: z.string().refine((v) => /^postgres(ql)?:\/\//.test(v) && URL.canParse(v), 'must be a postgres:// URL').optional(),
  replica: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/, 'must be a replica id (replica.id)').optional(),
});

/** The archive `audit verify` reads session files from, and how to name it in messages. */
interface VerifiedArchive {
  readonly archive: ArchiveReader & Pick<RecordingArchive, 'list'>;
  readonly where: string;
  close(): void;
}

/**
 * Where the session files are: the bucket of `--bucket` (credentials from the AWS default chain), the
 * archive the config's `storage.recordings` names, or the directory itself. The S3 client is loaded only
 * when a bucket is asked for, so verifying a directory stays light.
 */
async function archiveToVerify(f: z.infer<typeof verifyFlags>, dir: string, recordings: RecordingsSettings | undefined): Promise<VerifiedArchive> {
  if (f.bucket !== undefined) {
    const [bucket, ...prefix] = f.bucket.slice('s3://'.length).split('/');
    const { S3Archive } = await import('../../server/recording/archive/s3-archive.js');
    let archive;
    try {
      archive = new S3Archive({ bucket: bucket!, prefix: prefix.join('/'), ...(f.endpoint === undefined ? {} : { endpoint: f.endpoint }), ...(f.region === undefined ? {} : { region: f.region }), forcePathStyle: f.forcePathStyle });
    } catch (err) {
      throw new SluiceError('ERR_USAGE', { message: `--bucket ${f.bucket}: ${(err as Error).message}` });
    }
    return { archive, where: `s3://${archive.bucket}/${archive.prefix}`, close: () => archive.close() };
  }
  if (recordings !== undefined) {
    const { openArchive } = await import('../../server/recording/open-archive.js');
    const opened = await openArchive(recordings, dir);
    return { archive: opened.archive, where: opened.location, close: () => opened.close() };
  }
  return { archive: new FsArchive({ root: dir }), where: dir, close: () => undefined };
}

/** The index `audit verify` reads sessions and data keys from, and how to name it in messages. */
interface VerifiedIndex {
  readonly index: AuditIndex | undefined;
  readonly where: string;
}

/**
 * Where the session index is: the PostgreSQL of `--database` or of the config's `storage.database` (only
 * the sessions of `replica` and its workers when one is named), else the directory's own index.sqlite.
 */
async function indexToVerify(database: string | undefined, replica: string | undefined, dir: string): Promise<VerifiedIndex> {
  if (database !== undefined) {
    const opened = await openDatabaseIndex({ url: database, ...(replica === undefined ? {} : { replica }) });
    return { index: opened.index, where: replica === undefined ? opened.where : `${opened.where}, replica ${replica}` };
  }
  return { index: await openDirectoryIndex(dir), where: dir };
}

const checkpointsFlags = z.object({
  since: z.coerce.number().int().min(-1).default(-1),
  json: z.boolean().default(false),
});

// `logs` and `next` since a directory keeps a seal log per worker; a gateway from before pages by `next_since` alone.
const checkpointsPage = z.object({
  log: z.string(),
  logs: z.array(z.string()).optional(),
  checkpoints: z.array(sealCheckpointSchema),
  next: z.string().nullable().optional(),
  next_since: z.number().int().nullable(),
});

/**
 * The public key that checks checkpoints: `--public-key` (the PEM of `GET /v1/audit/public-key`, or the
 * signing key file itself), else `DIR/signing-key.pem` of an install that keeps it there, with a warning:
 * a key read from the directory under test vouches for nothing its writer could not also forge.
 */
async function loadPublicKey(file: string | undefined, dir: string, ctx: CliContext): Promise<KeyObject> {
  const path = file ?? join(dir, SIGNING_KEY_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    if (file === undefined && code === 'ENOENT') {
      throw new SluiceError('ERR_USAGE', {
        message: `No public key: ${path} does not exist (the signing key is kept outside the data directory, storage.signing_key); pass --public-key FILE with the PEM of GET /v1/audit/public-key`,
      });
    }
    throw new SluiceError('ERR_USAGE', { message: `Cannot read the public key ${path} (${code}); pass --public-key FILE` });
  }
  let key: KeyObject;
  try {
    key = createPublicKey(text);
  } catch {
    throw new SluiceError('ERR_USAGE', { message: `${path} is not a PEM key` });
  }
  if (file === undefined) {
    ctx.out.stderr.write(
      `warning: the public key is read from the directory being verified (${path}); whoever could rewrite the recordings could replace it too. Pass --public-key with a copy kept elsewhere.\n`,
    );
  }
  return key;
}

async function loadExportedCheckpoints(file: string): Promise<SealCheckpoint[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new SluiceError('ERR_USAGE', { message: `Cannot read the checkpoints file ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})` });
  }
  const parsed = parseExportedCheckpoints(text);
  if (typeof parsed === 'string') throw new SluiceError('ERR_USAGE', { message: `${file} is not exported checkpoints: ${parsed}` });
  return parsed;
}

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

/**
 * The sessions --strict fails although nothing was done to them, in words: `1 session in DIR is not sealed
 * yet (1 open, the gateway is still writing it)`. Never "tampered": the gateway is writing an open one, and
 * a crash leaves an interrupted one behind.
 */
function unsealedText(counts: { open: number; interrupted: number }, where: string): string {
  const n = counts.open + counts.interrupted;
  const why = [
    ...(counts.open > 0 ? [`${counts.open} open, the gateway is still writing ${counts.open === 1 ? 'it' : 'them'}`] : []),
    ...(counts.interrupted > 0 ? [`${counts.interrupted} interrupted, with no checkpoint`] : []),
  ].join('; ');
  return `${n} session${n === 1 ? '' : 's'}${where} ${n === 1 ? 'is' : 'are'} not sealed yet (${why})`;
}

/**
 * The sessions that could not be checked for want of their data keys, in words: `2 sessions in DIR could
 * not be verified (no data key: the index is not available; verify a copy of storage.dir with its index.sqlite)`.
 */
function keylessSessionsText(n: number, where: string): string {
  return `${n} session${n === 1 ? '' : 's'}${where} could not be verified (no data key: the index is not available; verify a copy of storage.dir with its ${INDEX_FILE})`;
}

/** `sluice audit verify`: checks session files offline, with no gateway; `sluice audit checkpoints` exports the seal log's checkpoints. */
export const registerAudit: RegisterCommand = (program, ctx) => {
  const audit = program
    .command('audit')
    .summary('check recordings offline')
    .description('Audit tools: verify works on a copy of the storage directory with no gateway running; checkpoints exports what pins it from outside.');

  audit
    .command('verify')
    .description(
      'Verify session files: every record authenticates and chains to the one before, the checkpoint signature ' +
        'verifies, and, where the index exists (index.sqlite, or the PostgreSQL of storage.database), each sealed session holds what the index says (the index also ' +
        'holds the data keys of format 2 files; a session whose key was erased does not verify). The seal log ' +
        '(seals.log) must chain and match its signed checkpoints, and every session it lists must be present and ' +
        'hold exactly what its entry pins. Prints one line per session (and, with --all, one for the seal log) and ' +
        'exits with ERR_RECORDING_TAMPERED when any is broken; format 2 files of a directory without its index are ' +
        'unverifiable (no data key), which exits 1 without claiming tampering.',
    )
    .argument('[id]', 'one session id (ses_…)')
    .option('--all', 'every session of the directory', false)
    .option('--data-dir <dir>', 'the storage directory (storage.dir)', './data')
    .option('--key-file <file>', 'master key(s): one base64 key, or YAML/JSON [{id, key}]; default $SLUICE_MASTER_KEY')
    .option('--key-id <id>', 'the id of a lone master key', DEFAULT_KEY_ID)
    .option('--public-key <file>', `checkpoint public key PEM (GET /v1/audit/public-key) or the signing key; default DIR/${SIGNING_KEY_FILE} where an install keeps it there`)
    .option('--checkpoints <file>', 'seal log checkpoints exported earlier (sluice audit checkpoints --json): the log must reach and match each one')
    .option('--strict', 'exit 1 for open or interrupted sessions too: not sealed yet (no checkpoint), though not tampered with', false)
    .option('--json', 'print JSON', false)
    .option('--config <file>', "verify the storage a gateway config names: storage.dir (seal log; index.sqlite unless storage.database names the PostgreSQL index) and the archive of storage.recordings (a bucket or a shared directory); master keys from the config unless --key-file")
    .option('--bucket <url>', 's3://BUCKET[/PREFIX]: read the session files from this bucket (credentials from the AWS default chain); the index and seal log stay those of --data-dir')
    .option('--endpoint <url>', 'with --bucket: an S3-compatible endpoint (MinIO, Ceph RGW)')
    .option('--region <region>', 'with --bucket: the bucket region')
    .option('--force-path-style', 'with --bucket: path-style URLs (endpoint/bucket/key), as most S3-compatible servers need', false)
    .option('--database <url>', 'postgres://…: read the session index (sessions, data keys) from this PostgreSQL (storage.database), read-only; the session files and seal log stay those of --data-dir')
    .option('--replica <id>', "with a PostgreSQL index: only the sessions of this replica and its workers (replica.id; default the config's), for replicas that keep their own directories")
    .action(async (id: string | undefined, raw: Record<string, unknown>) => {
      const parsed = verifyFlags.safeParse(raw);
      if (!parsed.success) throw usageError(parsed.error);
      const f = parsed.data;
      if ((id === undefined) === !f.all) throw new SluiceError('ERR_USAGE', { message: 'Name one session id, or pass --all' });
      if (id !== undefined && !/^ses_[0-9a-f]{32}$/.test(id)) throw new SluiceError('ERR_USAGE', { message: `"${id}" is not a session id (ses_…)` });
      if (f.bucket !== undefined && f.config !== undefined) throw new SluiceError('ERR_USAGE', { message: 'Pass --config or --bucket, not both: the config names its bucket' });
      if (f.database !== undefined && f.config !== undefined) throw new SluiceError('ERR_USAGE', { message: 'Pass --config or --database, not both: the config names its database' });
      if (f.bucket === undefined && (f.endpoint !== undefined || f.region !== undefined || f.forcePathStyle)) {
        throw new SluiceError('ERR_USAGE', { message: '--endpoint, --region and --force-path-style go with --bucket' });
      }
      let config: { storage: Parameters<typeof keyRingFromSettings>[0] & { dir: string; recordings?: RecordingsSettings; database?: string }; replica: { id?: string } } | undefined;
      if (f.config !== undefined) {
        const { loadConfigFile } = await import('../../server/config/load.js');
        config = await loadConfigFile(f.config, { env: ctx.env });
      }
      const database = f.database ?? config?.storage.database;
      if (f.replica !== undefined && database === undefined) throw new SluiceError('ERR_USAGE', { message: '--replica goes with --database, or a --config whose storage.database is set' });
      // Replicas sharing a database keep their own directories: a configured id says which sessions are this one's.
      const replica = database === undefined ? undefined : (f.replica ?? config?.replica.id);
      const dir = resolve(config?.storage.dir ?? f.dataDir);
      const fromConfig = f.keyFile === undefined && !ctx.env.SLUICE_MASTER_KEY?.trim() && config !== undefined ? keyRingFromSettings(config.storage) : undefined;
      const keyRing = fromConfig ?? (await loadKeyRing(f.keyFile, ctx.env, f.keyId));
      const exported = f.checkpoints === undefined ? undefined : await loadExportedCheckpoints(f.checkpoints);
      const publicKey = await loadPublicKey(f.publicKey, dir, ctx);
      const sealLog = await readSealLog({ dir, publicKey, ...(exported === undefined ? {} : { exported }) });
      const logVerdict = sealLogVerdictText(sealLog);

      const results = [];
      let failed = 0;
      // Open and interrupted sessions fail only under --strict: they are not sealed, which is not tampering.
      const unsealed = { open: 0, interrupted: 0 };
      // Nor do sessions whose keys are in an index this directory lacks: not checked is not tampered with.
      let unverifiable = 0;
      let seen = 0;
      // The directory as the gateway reads it: session files from its archive, sessions and their keys from its index.
      const verified = await archiveToVerify(f, dir, config?.storage.recordings);
      const { archive } = verified;
      const indexed = await indexToVerify(database, replica, dir).catch((err: unknown) => {
        verified.close();
        throw err;
      });
      const { index } = indexed;
      // Messages name where the files, the index and the seal log were read, each that is not the directory.
      const elsewhere = indexed.where === dir ? (verified.where === dir ? '' : ` (index and seal log in ${dir})`) : ` (index in ${indexed.where}, seal log in ${dir})`;
      const where = `${verified.where}${elsewhere}`;
      try {
        for await (const v of verifyStorageDir({ dir, archive, index, keyRing, publicKey, sealLog, ...(id === undefined ? {} : { only: id }) })) {
          const verdict = verdictText(v, f.strict);
          seen++;
          if (verdict.failed && (verdict.status === 'open' || verdict.status === 'interrupted')) unsealed[verdict.status]++;
          else if (verdict.status === 'unverifiable') unverifiable++;
          else if (verdict.failed) failed++;
          if (f.json) {
            results.push({
              id: v.id,
              file: v.file,
              status: verdict.status,
              failed: verdict.failed,
              verdict: verdict.text,
              index_status: v.indexStatus ?? null,
              seal_log_entry: v.seal?.entry ?? null,
              records: v.result?.records ?? 0,
              last_good_seq: v.result?.lastGoodSeq ?? -1,
              last_good_offset: v.result?.lastGoodOffset ?? 0,
              problems: (v.result?.problems ?? []).map((p) => ({ kind: p.kind, record: p.index, offset: p.offset, message: p.message })),
            });
          } else {
            ctx.out.stdout.write(`${v.id}  ${verdict.text}\n`);
          }
        }
      } finally {
        await index?.close();
        verified.close();
      }
      if (f.json) {
        const log = {
          status: logVerdict.status,
          failed: logVerdict.failed,
          verdict: logVerdict.text,
          log: sealLog.logId ?? null,
          entries: sealLog.entries,
          signed_through: sealLog.signedThrough,
          pinned_through: sealLog.pinnedThrough,
          problems: sealLog.problems.map((p) => ({ kind: p.kind, entry: p.entry, message: p.message })),
        };
        const ok = failed === 0 && unverifiable === 0 && unsealed.open + unsealed.interrupted === 0 && !logVerdict.failed;
        ctx.out.stdout.write(`${JSON.stringify({ ok, index: index === undefined ? null : indexed.where, sessions: results, seal_log: log }, null, 2)}\n`);
      } else if (id === undefined || logVerdict.failed) {
        ctx.out.stdout.write(`seal log  ${logVerdict.text}\n`);
      }
      if (id !== undefined && seen === 0 && !logVerdict.failed) {
        throw new SluiceError('ERR_NOT_FOUND', { message: `No session ${id} in ${where}` });
      }
      const unchecked = [
        ...(unverifiable > 0 ? [keylessSessionsText(unverifiable, '')] : []),
        ...(unsealed.open + unsealed.interrupted > 0 ? [unsealedText(unsealed, '')] : []),
      ];
      if (failed > 0 || logVerdict.failed) {
        const what = [...(failed > 0 ? [`${failed} session${failed === 1 ? '' : 's'}`] : []), ...(logVerdict.failed ? ['the seal log'] : [])].join(' and ');
        throw new SluiceError('ERR_RECORDING_TAMPERED', { message: `${what} in ${where} failed verification${unchecked.length > 0 ? `; also ${unchecked.join('; ')}` : ''}` });
      }
      // Exit 1 as for any failure, but not ERR_RECORDING_TAMPERED: nothing here was found altered.
      if (unverifiable > 0) {
        if (!f.json) ctx.out.stderr.write(`sluice: ${keylessSessionsText(unverifiable, ` in ${where}`)}\n`);
        ctx.exitCode = EXIT.failure;
      }
      if (unsealed.open + unsealed.interrupted > 0) {
        if (!f.json) ctx.out.stderr.write(`sluice: --strict: ${unsealedText(unsealed, ` in ${where}`)}\n`);
        ctx.exitCode = EXIT.failure;
      }
    });

  audit
    .command('checkpoints')
    .description(
      'Print the signed checkpoints of every seal log of the gateway\'s storage directory, one per worker (GET /v1/audit/checkpoints; auditors and admins). ' +
        'Keep the --json output where the gateway cannot reach it: `sluice audit verify --checkpoints FILE` then ' +
        'detects a seal log that was rewritten or cut back before the last checkpoint kept.',
    )
    .option('--since <seq>', 'only checkpoints of entries after this one', '-1')
    .option('--json', 'print one JSON checkpoint per line (the format --checkpoints reads)', false)
    .action(async (raw: Record<string, unknown>) => {
      const parsed = checkpointsFlags.safeParse(raw);
      if (!parsed.success) throw new SluiceError('ERR_USAGE', { message: '--since must be an entry number (0 or more)' });
      const f = parsed.data;
      const access = await getAccessToken({ profile: ctx.profile(), env: ctx.env });
      const api = new ApiClient({ gateway: access.gateway, token: access.token });
      let since = f.since;
      let after: string | undefined;
      let logs: readonly string[] = [];
      let count = 0;
      for (;;) {
        const page = await api.request({ path: '/v1/audit/checkpoints', query: { since, ...(after === undefined ? {} : { after }) }, schema: checkpointsPage });
        logs = page.logs ?? [page.log];
        for (const cp of page.checkpoints) {
          count++;
          // The log is named only where there is more than one to tell apart; --json lines always name it.
          const log = logs.length > 1 ? `  ${cp.log}` : '';
          ctx.out.stdout.write(f.json ? `${JSON.stringify(cp)}\n` : `${String(cp.seq).padStart(8)}  ${cp.head}  ${new Date(cp.signed_at).toISOString()}${log}\n`);
        }
        if (typeof page.next === 'string') after = page.next;
        else if (page.next === undefined && page.next_since !== null) since = page.next_since;
        else break;
      }
      if (!f.json && count === 0) ctx.out.stdout.write(`No checkpoints of seal log${logs.length > 1 ? 's' : ''} ${logs.join(', ')} yet.\n`);
    });
};
