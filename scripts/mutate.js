// `npm run mutate`: does the test suite notice when a security property is taken away?
//
// Each mutation below removes one property with a small find/replace in one source file and names the test
// files (and, where a file tests much else, the tests by name) that should fail without it. Every mutation is
// applied in a scratch git worktree of HEAD (node_modules linked from this checkout), its tests run with
// vitest, and the file put back before the next one: the checkout itself is never edited. Mutations run one
// after another, as each test run already uses the machine's cores.
//
// A snippet that no longer occurs exactly once in its file stops the run before any test: the list must stay
// true to the code, or its score says nothing.
//
// Options:
//   --list              print the mutations (id, property, file, tests) as JSON and exit
//   --only ID,ID        run only these mutations
//   --with-changes      overlay the checkout's uncommitted and untracked files on the worktree (the code as it
//                       is now rather than as committed)
//   --baseline          first run every chosen mutation's tests on the unmutated code (a test that already
//                       fails would otherwise count as a catch); doubles the run's time
//   --out FILE          also write the JSON result there
//   --timeout SECONDS   longest a mutation's tests may run before counting as caught by timeout (600)
//
// JSON on stdout; progress on stderr. Exit 0 when every mutation was caught, 1 when one survived, 2 on error.
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * @typedef {{ find: string, replace: string }} Edit
 * @typedef {{ id: string, property: string, file: string, edits: Edit[], tests: string[], testNames?: string }} Mutation
 */

/** @type {Mutation[]} */
export const MUTATIONS = [
  {
    id: 'token-audience',
    property: 'a bearer token issued for another audience is refused',
    file: 'server/identity/token-verifier.ts',
    edits: [{ find: '          audience: identity.audience,\n', replace: '' }],
    tests: ['test/integration/identity.test.ts'],
  },
  {
    id: 'token-expiry',
    property: 'an expired bearer token is refused',
    file: 'server/identity/token-verifier.ts',
    // jose checks the signature before the claims, and hands the payload of an expired token along with the error.
    edits: [
      {
        find: '      } catch (cause) {\n        throw mapJoseError(cause, jwksUri);',
        replace:
          "      } catch (cause) {\n        if ((cause as { code?: string }).code === 'ERR_JWT_EXPIRED') payload = (cause as { payload: jose.JWTPayload }).payload;\n        else throw mapJoseError(cause, jwksUri);",
      },
    ],
    tests: ['test/integration/identity.test.ts'],
  },
  {
    id: 'tunnel-upgrade-group',
    property: "a caller outside the connection's allow_groups gets no tunnel (checked at the upgrade)",
    file: 'server/tunnel/tunnel-route.ts',
    edits: [{ find: 'if (!inAnyGroup(principal, connection.allow_groups)) {', replace: 'if (false) {' }],
    tests: ['test/integration/tunnel-gateway.test.ts'],
    testNames: 'outside allow_groups',
  },
  {
    id: 'tunnel-stream-group',
    property: 'an open tunnel whose caller lost the group carries no further stream',
    file: 'server/tunnel/gateway-tunnel.ts',
    edits: [{ find: 'if (!inAnyGroup(this.principal, current.allow_groups)) {', replace: 'if (false) {' }],
    tests: ['test/integration/data-path-hardening.test.ts'],
    testNames: 'at its next stream',
  },
  {
    id: 'tunnel-reauth-group',
    property: 'a re-authentication by a subject no longer in the group closes the tunnel',
    file: 'server/tunnel/gateway-tunnel.ts',
    edits: [{ find: 'if (current === undefined || !inAnyGroup(next, current.allow_groups)) {', replace: 'if (current === undefined) {' }],
    tests: ['test/integration/tunnel-gateway.test.ts'],
    testNames: 'lost the group',
  },
  {
    id: 'self-approval',
    property: 'a requester cannot approve their own held request',
    file: 'server/approval/approval-service.ts',
    edits: [{ find: "if (review.requester.sub === principal.sub) {\n      throw new SluiceError('ERR_SELF_APPROVAL'", replace: "if (false) {\n      throw new SluiceError('ERR_SELF_APPROVAL'" }],
    tests: ['test/integration/approval-store.test.ts', 'test/integration/approval-gateway.test.ts'],
  },
  {
    id: 'request-record-fail-closed',
    property: 'nothing is forwarded when the request record cannot be written',
    file: 'server/pipeline/run-exchange.ts',
    edits: [
      {
        find: '    await recording.recordRequest(await requestRecord(exchange, masking, decision, recordedBody));\n',
        replace: '    await recording.recordRequest(await requestRecord(exchange, masking, decision, recordedBody)).catch(() => undefined);\n',
      },
    ],
    tests: ['test/integration/recording-gateway.test.ts', 'test/integration/tcp-request-record.test.ts'],
    testNames: 'forwards nothing|never dials',
  },
  {
    id: 'tcp-request-record-fail-closed',
    property: 'a tcp stream whose request record cannot be written never reaches the upstream',
    file: 'server/pipeline/run-exchange.ts',
    edits: [
      {
        find: '    await recording.recordRequest(await requestRecord(exchange, masking, decision, recordedBody));\n',
        replace:
          "    await recording.recordRequest(await requestRecord(exchange, masking, decision, recordedBody)).catch((err: unknown) => {\n      if (exchange.connection.type !== 'tcp') throw err;\n    });\n",
      },
    ],
    tests: ['test/integration/tcp-request-record.test.ts'],
  },
  {
    id: 'stream-hold-back',
    property: 'a streamed answer holds back text that more text could still turn into a match',
    file: 'server/masking/hold-back.ts',
    edits: [{ find: '  from(text: string, from: number): number {\n    let cut = text.length;\n', replace: '  from(text: string, from: number): number {\n    return text.length;\n    let cut = text.length;\n' }],
    tests: ['test/unit/masking-sse.test.ts', 'test/integration/masking-transform.test.ts'],
  },
  {
    id: 'luhn-check',
    property: 'only digit runs that pass the Luhn check are masked as card numbers',
    file: 'server/masking/checksums.ts',
    edits: [{ find: '  return sum % 10 === 0;\n', replace: '  return true;\n' }],
    tests: ['test/unit/masking-detectors.test.ts'],
  },
  {
    id: 'hash-chain',
    property: 'verification refuses a record that does not chain to the one before it',
    file: 'server/recording/verify-session.ts',
    edits: [{ find: 'if (!record.prev.equals(expectedPrev)) {', replace: 'if (false) {' }],
    tests: ['test/unit/recording-format.test.ts'],
  },
  {
    id: 'caller-authorization-dropped',
    property: "the caller's Authorization header never reaches the upstream",
    file: 'server/pipeline/forward-headers.ts',
    edits: [{ find: "  'host',\n  'authorization',\n  'cookie',\n", replace: "  'host',\n  'cookie',\n" }],
    tests: ['test/integration/caller-authorization-dropped.test.ts'],
  },
  {
    id: 'tunnel-frame-limit',
    property: 'a tunnel DATA frame past max frame is refused',
    file: 'shared/tunnel/frames.ts',
    edits: [{ find: 'if (length > limits.maxFrame) throw malformed(', replace: 'if (false) throw malformed(' }],
    tests: ['test/unit/tunnel-frames.test.ts', 'test/integration/tunnel-oversized-frame.test.ts'],
  },
  {
    id: 'deny-rules',
    property: 'a matching deny rule refuses the request',
    file: 'server/policy/policy-engine.ts',
    edits: [{ find: "    case 'deny':\n      return Object.freeze({ action: 'deny', rule: rule.name,", replace: "    case 'deny':\n      return Object.freeze({ action: 'allow', rule: rule.name," }],
    tests: ['test/unit/policy-engine.test.ts'],
  },
  {
    id: 'token-file-0600',
    property: "the CLI's token file is readable by its owner only (0600)",
    file: 'cli/auth/file-token-store.ts',
    edits: [{ find: "open(temp, 'wx', 0o600)", replace: "open(temp, 'wx', 0o644)" }],
    tests: ['test/unit/token-store.test.ts'],
  },
  {
    id: 'grant-revocation-wake-up',
    property: "a revoked grant closes its holder's open tunnel at once, not at the grant's expiry",
    file: 'server/approval/grant-gate.ts',
    edits: [{ find: "        if (event.type !== 'grant.revoked' || ended === undefined) return;\n", replace: '        return;\n' }],
    tests: ['test/integration/grant-revocation.test.ts'],
  },
  {
    id: 'review-preview-sealed',
    property: "a held request's preview is kept sealed under the master key, bound to its requester",
    file: 'server/approval/review-preview-seal.ts',
    edits: [
      {
        find: "sealed: ring.sealUnder(ring.currentId, Buffer.from(text, 'utf8'), context(requester)).toString('base64')",
        replace: "sealed: Buffer.from(text, 'utf8').toString('base64')",
      },
      {
        find: "return ring.openUnder(preview.key, Buffer.from(preview.sealed, 'base64'), context(requester))?.toString('utf8');",
        replace: "return Buffer.from(preview.sealed, 'base64').toString('utf8');",
      },
    ],
    tests: ['test/integration/review-body.test.ts'],
  },
  {
    id: 'placeholders-per-exchange',
    property: "a placeholder is restored only in the exchange that gave it out, never with another exchange's value",
    file: 'server/masking/placeholder-map.ts',
    edits: [
      {
        find: 'export class PlaceholderMap {\n',
        replace: 'const SHARED_TOKENS = new Map<string, Map<string, string>>();\nconst SHARED_VALUES = new Map<string, string>();\nexport class PlaceholderMap {\n',
      },
      { find: '  readonly #tokens = new Map<string, Map<string, string>>();\n', replace: '  readonly #tokens = SHARED_TOKENS;\n' },
      { find: '  readonly #values = new Map<string, string>();\n', replace: '  readonly #values = SHARED_VALUES;\n' },
    ],
    tests: ['test/integration/request-masking.test.ts'],
  },
  {
    id: 'quota-slot-release',
    property: 'a call in flight gives its concurrent_streams slot back when its answer ends',
    file: 'server/quotas/quota-stage.ts',
    edits: [{ find: '        if (slots.length > 0) release(slots);\n', replace: '' }],
    tests: ['test/integration/quotas.test.ts'],
    testNames: 'calls in flight',
  },
];

function parseArgs(argv) {
  const opts = { list: false, only: undefined, withChanges: false, baseline: false, out: undefined, timeoutSeconds: 600 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--list') opts.list = true;
    else if (a === '--only') opts.only = String(argv[++i] ?? '').split(',').filter(Boolean);
    else if (a === '--with-changes') opts.withChanges = true;
    else if (a === '--baseline') opts.baseline = true;
    else if (a === '--out') opts.out = argv[++i];
    else if (a === '--timeout') opts.timeoutSeconds = Number(argv[++i]);
    else throw new Error(`Unknown option ${a}; see the comment at the top of scripts/mutate.js`);
  }
  if (!(opts.timeoutSeconds > 0)) throw new Error('--timeout needs a number of seconds');
  return opts;
}

const log = (msg) => process.stderr.write(`[mutate] ${msg}\n`);

/** The text of `file` with every edit applied; throws when a snippet does not occur exactly once. */
export function applyEdits(mutation, text) {
  let out = text;
  for (const { find, replace } of mutation.edits) {
    const first = out.indexOf(find);
    if (first === -1) throw new Error(`Mutation ${mutation.id}: snippet not found in ${mutation.file}:\n${find}`);
    if (out.indexOf(find, first + 1) !== -1) throw new Error(`Mutation ${mutation.id}: snippet occurs more than once in ${mutation.file}:\n${find}`);
    out = out.slice(0, first) + replace + out.slice(first + find.length);
  }
  return out;
}

function git(args, cwd = ROOT) {
  return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A detached worktree of HEAD, optionally with the checkout's uncommitted files copied over it. */
function createWorktree(base, withChanges) {
  const dir = join(base, 'worktree');
  git(['worktree', 'add', '--detach', '--quiet', dir, 'HEAD']);
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  if (withChanges) {
    const changed = git(['ls-files', '--modified', '--others', '--exclude-standard', '-z']).split('\0').filter(Boolean);
    for (const path of new Set(changed)) {
      const from = join(ROOT, path);
      const to = join(dir, path);
      if (existsSync(from)) {
        mkdirSync(dirname(to), { recursive: true });
        cpSync(from, to);
      } else rmSync(to, { force: true });
    }
    log(`copied ${changed.length} uncommitted file(s) over HEAD`);
  }
  return dir;
}

/** Runs vitest on `tests` in `dir`; resolves with whether they passed and the names of what failed. */
function runVitest(dir, tests, testNames, reportFile, timeoutSeconds) {
  return new Promise((resolve) => {
    const args = ['vitest', 'run', ...tests, '--reporter=json', `--outputFile=${reportFile}`];
    if (testNames !== undefined) args.push('-t', testNames);
    rmSync(reportFile, { force: true });
    // A process group of its own, so a timeout ends vitest's workers and whatever the tests spawned with it.
    const child = spawn('npx', args, { cwd: dir, detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CI: '1' } });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    }, timeoutSeconds * 1000);
    child.on('close', (code) => {
      clearTimeout(timer);
      const failing = [];
      let ran = 0;
      if (existsSync(reportFile)) {
        const report = JSON.parse(readFileSync(reportFile, 'utf8'));
        for (const file of report.testResults ?? []) {
          const rel = file.name.startsWith(dir) ? file.name.slice(dir.length + 1) : file.name;
          const asserted = file.assertionResults ?? [];
          ran += asserted.filter((t) => t.status === 'passed' || t.status === 'failed').length;
          for (const t of asserted) if (t.status === 'failed') failing.push(`${rel} > ${t.fullName}`);
          if (file.status === 'failed' && !asserted.some((t) => t.status === 'failed')) failing.push(`${rel} (file failed: ${String(file.message ?? '').split('\n')[0]})`);
        }
      }
      if (timedOut) failing.push(`(timed out after ${timeoutSeconds} s)`);
      else if (code !== 0 && failing.length === 0) failing.push(`(vitest exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')})`);
      resolve({ passed: code === 0 && !timedOut, failing, ran });
    });
  });
}

function compileDist(dir) {
  try {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'ignore' });
  } catch {
    // tsc emits despite type errors (a mutation may well add one); what matters is that dist/ is fresh.
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  let chosen = MUTATIONS;
  if (opts.only !== undefined) {
    const unknown = opts.only.filter((id) => !MUTATIONS.some((m) => m.id === id));
    if (unknown.length > 0) throw new Error(`Unknown mutation id(s): ${unknown.join(', ')}`);
    chosen = MUTATIONS.filter((m) => opts.only.includes(m.id));
  }
  if (opts.list) {
    process.stdout.write(`${JSON.stringify(chosen.map(({ id, property, file, tests, testNames }) => ({ id, property, file, tests, testNames })), null, 2)}\n`);
    return 0;
  }

  const base = mkdtempSync(join(tmpdir(), 'sluice-mutate-'));
  let dir;
  const cleanUp = () => {
    if (dir !== undefined) {
      try {
        git(['worktree', 'remove', '--force', dir]);
      } catch {}
      dir = undefined;
    }
    rmSync(base, { recursive: true, force: true });
  };
  const onSignal = () => {
    cleanUp();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    dir = createWorktree(base, opts.withChanges);
    // Every snippet is checked before any test runs.
    const originals = new Map();
    for (const m of chosen) {
      if (!originals.has(m.file)) originals.set(m.file, readFileSync(join(dir, m.file), 'utf8'));
      applyEdits(m, originals.get(m.file));
    }
    const started = Date.now();
    const reportFile = join(base, 'vitest.json');
    const needsDist = (m) => m.tests.some((t) => t.startsWith('test/e2e/'));
    if (chosen.some(needsDist)) compileDist(dir);

    let baseline;
    if (opts.baseline) {
      // Each distinct test set once, as the mutations run it.
      const sets = new Map(chosen.map((m) => [JSON.stringify([m.tests, m.testNames ?? null]), m]));
      baseline = { passed: true, seconds: 0, failing_tests: [] };
      for (const m of sets.values()) {
        log(`baseline: ${m.tests.join(' ')}${m.testNames === undefined ? '' : ` -t "${m.testNames}"`}`);
        const t0 = Date.now();
        const r = await runVitest(dir, m.tests, m.testNames, reportFile, opts.timeoutSeconds);
        baseline.seconds = Math.round((baseline.seconds + (Date.now() - t0) / 1000) * 10) / 10;
        if (!r.passed) {
          baseline.passed = false;
          baseline.failing_tests.push(...r.failing);
          log(`baseline FAILED: ${r.failing.join('; ')}`);
        }
      }
    }

    const results = [];
    for (const m of chosen) {
      const path = join(dir, m.file);
      const original = originals.get(m.file);
      writeFileSync(path, applyEdits(m, original));
      const t0 = Date.now();
      try {
        if (needsDist(m)) compileDist(dir);
        const r = await runVitest(dir, m.tests, m.testNames, reportFile, opts.timeoutSeconds);
        const seconds = Math.round((Date.now() - t0) / 100) / 10;
        // A run that selected no test at all proves nothing: a renamed test must not pass for a survivor.
        const caught = !r.passed;
        const entry = { id: m.id, property: m.property, file: m.file, caught, seconds, failing_tests: r.failing };
        if (r.passed && r.ran === 0) entry.note = 'no test ran: check tests/testNames';
        results.push(entry);
        log(`${m.id}: ${caught ? 'caught' : 'SURVIVED'} in ${seconds} s${caught ? ` (${r.failing.length} failing)` : ''}`);
      } finally {
        writeFileSync(path, original);
        if (needsDist(m)) compileDist(dir);
      }
    }
    const caught = results.filter((r) => r.caught).length;
    const output = {
      head: git(['rev-parse', 'HEAD']).trim(),
      with_changes: opts.withChanges,
      ...(baseline === undefined ? {} : { baseline }),
      mutations: results,
      score: { caught, total: results.length, ratio: results.length === 0 ? 0 : Math.round((caught / results.length) * 1000) / 1000 },
      seconds: Math.round((Date.now() - started) / 100) / 10,
    };
    const json = `${JSON.stringify(output, null, 2)}\n`;
    process.stdout.write(json);
    if (opts.out !== undefined) writeFileSync(opts.out, json);
    return caught === results.length && (baseline === undefined || baseline.passed) ? 0 : 1;
  } finally {
    cleanUp();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => (process.exitCode = code),
    (err) => {
      process.stderr.write(`[mutate] ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 2;
    },
  );
}
