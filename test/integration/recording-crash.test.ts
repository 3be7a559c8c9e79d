/**
 * Crash safety: a child process records a streamed answer into a session of the recording (spooled,
 * `fsync: batch`) and is killed with SIGKILL mid-stream. The next start marks the session interrupted; the file reads up to its last
 * whole record and verify says exactly where it ends. Both ways an answer reaches the file are killed: each
 * part appended on its own, and held back as the gateway holds an answer's head and runs to share the record
 * of what follows them, where the kill loses what was still held and must leave nothing that does not verify.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { KeyRing } from '../../server/recording/key-ring.js';
import { Recording } from '../../server/recording/recording.js';
import { readSession } from '../../server/recording/session-reader.js';
import { loadOrCreateSigningKey } from '../../server/recording/signing-key.js';
import { verifySession } from '../../server/recording/verify-session.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';

const root = new URL('../../', import.meta.url).pathname;

/** The child: opens the recording like the gateway does and streams chunks until it is killed. */
const CHILD = `
import { connectionSchema } from '${root}server/config/schema.ts';
import { KeyRing } from '${root}server/recording/key-ring.ts';
import { Recording } from '${root}server/recording/recording.ts';
import { loadOrCreateSigningKey } from '${root}server/recording/signing-key.ts';
import { SqliteStore } from '${root}server/store/sqlite-store.ts';
const dir = process.env.DIR;
const store = new SqliteStore({ file: dir + '/index.sqlite' });
const recording = await Recording.open({
  dir, store, replica: 'crash-test', fsync: 'batch', fsyncIntervalMs: 5,
  keyRing: new KeyRing([{ id: 'default', key: Buffer.from(process.env.KEY, 'base64') }]),
  signingKey: await loadOrCreateSigningKey(dir),
});
const principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4e9, issuer: 'https://idp.test' };
const connection = connectionSchema.parse({ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:1', allow_groups: ['ml-eng'], record: { response_body: 'raw' } });
const session = await recording.openSession({ id: process.env.SESSION, principal, connection, via: 'tunnel', clientAddress: '127.0.0.1' });
await session.append('exchange.request', { exchange: 'req_1', method: 'POST', path: '/v1/chat/completions', headers: {}, decision: { action: 'allow' } });
// WRITE=append: each part is written at once, each tick's in one record. WRITE=defer: the answer's head and
// runs wait to share a record (until a record's worth of them, or the hold's end), as the gateway's do.
const write = process.env.WRITE === 'defer' ? session.defer.bind(session) : session.append.bind(session);
void write('exchange.response', { exchange: 'req_1', status: 200, headers: { 'content-type': 'text/event-stream' } });
let n = 0;
setInterval(() => {
  // Not awaited, as the data path does not wait for answer chunks.
  const written = write('exchange.chunk', { exchange: 'req_1', dir: 'down', bytes: 20000 }, Buffer.alloc(20000, 0x61 + (n % 26)));
  if (++n === 40) void written.then(() => process.stdout.write('streaming\\n'));
}, 1);
`;

describe.each(['append', 'defer'])('crash safety, answer parts written with %s', (write) => {
  it('after SIGKILL mid-stream the next start marks the session interrupted, and the file verifies up to its last whole record', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-crash-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const key = randomBytes(32);
    const SESSION = `ses_${randomBytes(16).toString('hex')}`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
      env: { ...process.env, DIR: dir, KEY: key.toString('base64'), SESSION, WRITE: write },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('streaming')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`the child exited (${code}) before streaming: ${stderr}`)));
    });
    await new Promise((r) => setTimeout(r, 30));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));

    const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
    onTestFinished(() => store.close());
    expect((await store.getSession(SESSION))?.status).toBe('open');
    const keyRing = new KeyRing([{ id: 'default', key }]);
    const signingKey = await loadOrCreateSigningKey(dir);
    const recording = await Recording.open({ dir, store, keyRing, signingKey, replica: 'crash-test' });
    onTestFinished(() => recording.close());

    const session = (await store.getSession(SESSION))!;
    expect(session.status).toBe('interrupted');
    expect(session.endedAt).toBeGreaterThan(session.startedAt);

    const path = join(dir, session.file);
    const size = (await stat(path)).size;
    const verdict = await verifySession(recording.source, session.file, { publicKey: signingKey.publicKey });
    expect(verdict.status).toBe('interrupted');
    expect(verdict.ok).toBe(false);
    // session.start, exchange.request, exchange.response, then at least the 40 chunks written before "streaming"
    // (in as many records or fewer: chunks written together share one).
    expect(verdict.lastGoodEvent).toBeGreaterThanOrEqual(42);
    expect(verdict.records).toBe(verdict.lastGoodSeq + 1);
    const last = verdict.problems.at(-1)!;
    expect(last.kind).toBe('interrupted');
    expect(last.message).toContain(`records 0–${verdict.lastGoodSeq} are intact, ending at byte ${verdict.lastGoodOffset}`);
    // Either the kill fell between records, or the file ends inside one that verify names.
    const truncated = verdict.problems.find((p) => p.kind === 'truncated');
    if (truncated === undefined) expect(verdict.lastGoodOffset).toBe(size);
    else expect(truncated).toMatchObject({ index: verdict.lastGoodSeq + 1, offset: verdict.lastGoodOffset });
    expect(verdict.problems.filter((p) => p.kind !== 'truncated' && p.kind !== 'interrupted')).toEqual([]);

    const events = [];
    for await (const e of readSession(recording.source, session.file)) events.push(e);
    expect(events).toHaveLength(verdict.lastGoodEvent + 1);
    expect(events.at(-1)!.record).toBe(verdict.lastGoodSeq);
    expect(events.slice(0, 3).map((e) => e.type)).toEqual(['session.start', 'exchange.request', 'exchange.response']);
    expect(events.slice(3).every((e) => e.type === 'exchange.chunk' && e.payload?.length === 20000)).toBe(true);
  });
});
