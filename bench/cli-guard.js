// Child process (forked by run.js): runs `node bin/sluice.js connect NAME --port N --json` and makes sure it
// never outlives the bench. If the bench process dies without cleaning up (even SIGKILL), the IPC
// channel closes, this guard sees 'disconnect' and stops the CLI (SIGINT, then SIGKILL after 3 s).
// Output lines of the CLI are relayed to the parent, which waits for the ready line (`http://127.0.0.1:N`
// and the tunnel's local token).
//
// argv: [cliPath, name, port, ...extraNodeArgs]
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const [cliPath, name, port, ...nodeArgs] = process.argv.slice(2);
const child = spawn(process.execPath, [...nodeArgs, cliPath, 'connect', name, '--port', port, '--json'], {
  env: process.env,
  stdio: ['ignore', 'pipe', 'pipe'],
});
process.send?.({ type: 'spawned', pid: child.pid });

for (const [stream, label] of [
  [child.stdout, 'stdout'],
  [child.stderr, 'stderr'],
]) {
  createInterface({ input: stream }).on('line', (line) => {
    if (process.connected) process.send?.({ type: 'line', stream: label, line });
  });
}

let exited = false;
child.on('exit', (code, signal) => {
  exited = true;
  if (process.connected) process.send?.({ type: 'exit', code, signal });
  // Give the IPC message a moment to flush, then go.
  setTimeout(() => process.exit(0), 50);
});
child.on('error', (err) => {
  if (process.connected) process.send?.({ type: 'spawn-error', message: String(err) });
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  if (exited) {
    process.exit(0);
  }
  child.kill('SIGINT');
  setTimeout(() => {
    if (!exited) child.kill('SIGKILL');
    setTimeout(() => process.exit(0), 100).unref();
  }, 3000).unref();
}

process.on('message', (msg) => {
  if (msg?.type === 'shutdown') stop();
});
process.on('disconnect', stop);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
