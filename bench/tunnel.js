// `sluice connect <conn> --port N --json`, started for a bench run through bench/cli-guard.js (which stops the
// CLI if the bench process dies) and resolved once the CLI prints its local URL. Shared by the data-path part
// (run.js) and the capacity part (capacity.js), so both load the tunnel the same way.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { forkChild, freePort, log, stopChild, waitForMessage } from './procs.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH = fileURLToPath(new URL('.', import.meta.url));
export const CLI = join(ROOT, 'bin', 'sluice.js');

/** Output lines of the CLI kept for an error message: enough to show why it stopped, bounded. */
const KEPT_LINES = 40;

/**
 * Starts the tunnel and resolves with `{ url, auth, entry, pid, lines, stopping, exit }`: `auth` is the
 * `Authorization` value the local port wants (its local token, as an SDK sends OPENAI_API_KEY), `pid` the
 * CLI's own process (not the guard's), `exit` a message once the CLI exits on its own while `stopping` is
 * false. `env` carries SLUICE_TOKEN / SLUICE_GATEWAY / HOME; `nodeArgs` go to the CLI's node (--cpu-prof).
 * `quiet()` says when an exit is expected (the bench is stopping) and so not worth a log line.
 */
export async function startTunnel({ connection, env, workDir, timeoutMs, nodeArgs = [], quiet = () => false }) {
  const port = await freePort();
  const entry = forkChild(`cli(${connection})`, join(BENCH, 'cli-guard.js'), [CLI, connection, String(port), ...nodeArgs], {
    logFile: join(workDir, `cli-${connection}.log`),
    env,
  });
  const lines = [];
  let cliPid;
  entry.child.on('message', (msg) => {
    if (msg?.type === 'line') {
      lines.push(`${msg.stream}: ${msg.line}`);
      if (lines.length > KEPT_LINES) lines.shift();
    }
    if (msg?.type === 'spawned') {
      cliPid = msg.pid;
      entry.extraPids.add(msg.pid);
    }
  });
  try {
    const ready = await waitForMessage(
      entry,
      (msg) => {
        if (msg?.type === 'exit') throw new Error(`sluice connect exited (code ${msg.code}, signal ${msg.signal}) before it was ready`);
        if (msg?.type === 'spawn-error') throw new Error(`cannot start sluice connect: ${msg.message}`);
        // The first lines may name the gateway's URL (also on 127.0.0.1): wait for the port we asked for.
        return msg?.type === 'line' && new RegExp(`http://127\\.0\\.0\\.1:${port}(?!\\d)`).test(msg.line);
      },
      timeoutMs,
      `a "http://127.0.0.1:${port}" line from sluice connect`,
    );
    log(`sluice connect ${connection} ready: ${ready.line.trim()}`);
    const { local_token: localToken } = JSON.parse(ready.line);
    const tunnel = { url: `http://127.0.0.1:${port}`, auth: `Bearer ${localToken}`, entry, pid: cliPid, lines, stopping: false, exit: null };
    entry.child.on('message', (msg) => {
      if (msg?.type !== 'exit' || tunnel.stopping || quiet()) return;
      tunnel.exit = `sluice connect ${connection} exited on its own (code ${msg.code}, signal ${msg.signal})`;
      log(`${tunnel.exit}; last output:\n  ${lines.join('\n  ')}`);
    });
    return tunnel;
  } catch (err) {
    await stopChild(entry);
    const tail = lines.length ? ` -- its output: ${lines.slice(-12).join(' | ')}` : '';
    throw new Error(`${err.message}${tail}`);
  }
}

/** Stops a tunnel started by `startTunnel`; its exit is then not reported as a failure. */
export async function stopTunnel(tunnel) {
  tunnel.stopping = true;
  await stopChild(tunnel.entry);
}
