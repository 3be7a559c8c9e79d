/**
 * The Ink TUI in a real terminal: tmux runs `node bin/sluice.js …` against a real gateway holding
 * recorded sessions, the test types keys into the pane and reads the screen back with `capture-pane`.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { SLUICE_BIN } from '../helpers/cli-process.js';
import { closedSessions, gatewayFixture, modelConnection, type TestGateway } from '../helpers/gateway.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROMPT = 'Which river runs through Vienna';
const LAST_WORDS = 'This answer comes from the sluice demo model.';

const gateways = gatewayFixture();
let gw: TestGateway;
let gateway: string;
let dir: string;
let auditorToken: string;
/** alice's session on `vision`, the one the test opens. */
let visionSession = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-e2e-tmux-'));
  const record = { request_body: 'raw', response_body: 'raw', raw: false };
  gw = await gateways.start({
    // Slow enough that the screen can be caught while the answer is still playing.
    model: { chunks: 8, chunkDelayMs: 150 },
    connections: ({ model }) => [modelConnection(model, { record }), modelConnection(model, { name: 'vision', record })],
    config: { roles: { auditor: ['security'] }, storage: { proxy_session_idle: '300ms' } },
  });
  gateway = gw.url;
  // An auditor on the ML team: reads every session, and may send through the ML connections (re-send).
  auditorToken = await gw.token('carol', { groups: ['security', 'ml-eng'] });

  // alice's calls, one session per connection, streamed like a chat UI would.
  const aliceToken = await gw.token('alice');
  for (const name of ['llm', 'vision']) {
    const client = new OpenAI({ baseURL: `${gateway}/v1/proxy/${name}/v1`, apiKey: aliceToken, maxRetries: 0 });
    const { data, response } = await client.chat.completions.create({ model: 'demo-echo', messages: [{ role: 'user', content: PROMPT }], stream: true }).withResponse();
    for await (const _chunk of data) {
      // read to the end: the recording holds the whole answer
    }
    if (name === 'vision') visionSession = response.headers.get('x-sluice-session') ?? '';
  }
  // The proxy seals a session once idle; wait for both so their recordings are complete.
  await closedSessions(gateway, auditorToken, 2);
}, 60_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A tmux server of its own (so a developer's tmux is never touched) running one sluice command. */
async function startTmux(args: string[]): Promise<{ keys(...keys: string[]): Promise<void>; type(text: string): Promise<void>; screen(): Promise<string> }> {
  // A socket in the test's own directory: removed with it, whatever happens to the server.
  const socket = join(dir, `tmux-${randomBytes(3).toString('hex')}`);
  const tmux = (...a: string[]) => run('tmux', ['-S', socket, ...a], { env });
  // Ink draws only its last frame when it thinks it runs in CI: the pane must not inherit that.
  const { CI: _ci, CONTINUOUS_INTEGRATION: _cont, ...rest } = process.env;
  const env = { ...rest, SLUICE_TOKEN: auditorToken, SLUICE_GATEWAY: gateway, XDG_CONFIG_HOME: join(dir, 'no-config'), TERM: 'xterm-256color' };
  onTestFinished(async () => {
    await tmux('kill-server').catch(() => undefined);
  });
  // The pane stays after the command ends, showing how it ended, so a failure can be read from the screen.
  const command = `${[process.execPath, SLUICE_BIN, ...args].map((a) => `'${a}'`).join(' ')}; echo "[exited $?]"; sleep 600`;
  await tmux('new-session', '-d', '-x', '120', '-y', '40', '-s', 'tui', '-c', ROOT, command);
  return {
    keys: async (...keys) => {
      await tmux('send-keys', '-t', 'tui', ...keys);
    },
    type: async (text) => {
      await tmux('send-keys', '-t', 'tui', '-l', text);
    },
    screen: async () => (await tmux('capture-pane', '-p', '-t', 'tui')).stdout,
  };
}

/** Polls the pane until `check` finds what it needs; fails with the last screen. */
async function waitForScreen(screen: () => Promise<string>, check: (text: string) => boolean, what: string, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    last = await screen();
    if (check(last)) return last;
    await new Promise((r) => setTimeout(r, 40));
  }
  throw new Error(`timed out waiting for ${what}; the screen was:\n${last}`);
}

describe('the TUI in tmux', () => {
  it('`sluice sessions`: filters the list, opens a session and an exchange, and plays the answer back', async () => {
    const t = await startTmux(['sessions']);
    let screen = await waitForScreen(t.screen, (s) => s.includes('2 of 2'), 'the session list');
    expect(screen).toContain('Sessions');
    expect(screen).toMatch(/alice@example\.com\s+llm\s+1\s+demo-echo/);
    expect(screen).toMatch(/alice@example\.com\s+vision\s+1\s+demo-echo/);

    await t.type('visi');
    screen = await waitForScreen(t.screen, (s) => s.includes('1 of 2'), 'the filtered list');
    expect(screen).toContain('filter: visi');
    expect(screen).toMatch(/› .*vision/);
    expect(screen).not.toMatch(/alice@example\.com\s+llm\s/);

    await t.keys('Enter');
    screen = await waitForScreen(t.screen, (s) => s.includes('alice@example.com · vision (http)'), 'the session view');
    expect(screen).toContain(visionSession);
    expect(screen).toMatch(/› #1\s+POST\s+\/v1\/chat\/completions\s+200/);

    await t.keys('Enter');
    screen = await waitForScreen(t.screen, (s) => s.includes('#1 POST /v1/chat/completions → 200'), 'the exchange view');
    expect(screen).toContain('── request');
    expect(screen).toContain(PROMPT);

    await t.keys('p');
    screen = await waitForScreen(t.screen, (s) => s.includes('▶ playing'), 'playback under way');
    expect(screen).toContain('Playback #1 POST /v1/chat/completions');
    // Still playing: the answer's last words were recorded about a second in.
    expect(screen).not.toContain(LAST_WORDS);
    screen = await waitForScreen(t.screen, (s) => s.includes('■ ended'), 'the end of playback');
    expect(screen.replace(/\s+/g, ' ')).toContain(`You said: "${PROMPT}".`);
    expect(screen.replace(/\s+/g, ' ')).toContain(LAST_WORDS);

    // `r` sends the recorded request through the gateway again, as the auditor: the demo model echoes
    // the same prompt, so the answers match.
    await t.keys('Escape');
    await waitForScreen(t.screen, (s) => s.includes('#1 POST /v1/chat/completions → 200'), 'back on the exchange');
    const sentBefore = gw.model.requests.length;
    await t.keys('r');
    screen = await waitForScreen(t.screen, (s) => s.includes('Re-send · '), 'the re-send diff');
    expect(screen).toContain('Re-send · answers are identical');
    expect(screen).toContain(`old: ${visionSession} #1`);
    const newSession = /new: (ses_[0-9a-f]{32}) #1/.exec(screen)?.[1];
    expect(newSession).toBeDefined();
    expect(newSession).not.toBe(visionSession);
    expect(gw.model.requests.length).toBe(sentBefore + 1);
    expect(gw.model.requests.at(-1)!.body).toContain(PROMPT);

    // Esc walks back to the list, and Esc on the list (filter cleared first) quits.
    await t.keys('Escape');
    await waitForScreen(t.screen, (s) => s.includes('#1 POST /v1/chat/completions → 200'), 'back on the exchange');
    await t.keys('Escape');
    await waitForScreen(t.screen, (s) => s.includes('› #1'), 'back on the session');
    await t.keys('Escape');
    await waitForScreen(t.screen, (s) => s.includes('1 of 2'), 'back on the filtered list');
    await t.keys('Escape');
    await waitForScreen(t.screen, (s) => s.includes('2 of 2'), 'the filter cleared');
    await t.keys('Escape');
    await waitForScreen(t.screen, (s) => s.includes('[exited 0]'), 'the TUI to quit');
  });

  it('`sluice replay SESSION --exchange 1` on a terminal opens the playback of that exchange', async () => {
    const t = await startTmux(['replay', visionSession, '--exchange', '1', '--speed', '2']);
    let screen = await waitForScreen(t.screen, (s) => s.includes('Playback #1 POST /v1/chat/completions'), 'the playback view');
    screen = await waitForScreen(t.screen, (s) => s.includes('■ ended'), 'the end of playback');
    expect(screen).toContain('2×');
    expect(screen.replace(/\s+/g, ' ')).toContain(LAST_WORDS);
    await t.keys('Escape');
    screen = await waitForScreen(t.screen, (s) => s.includes('› #1'), 'the session view');
    expect(screen).toContain(visionSession);
  });
});
