// Child process: the capacity part's load generator, N concurrent streamed answers (`openStreams` in
// load.js) in a process of its own, so its event loop shares nothing with the bench's and its CPU is
// measured apart. The config arrives over IPC (`openStreams` options); `{type: "mark", id}` answers with
// `{type: "mark", id, window}`, the figures since the previous mark; "shutdown" stops every stream and exits.
import { openStreams } from './load.js';
import { serveFromParent } from './procs.js';

let streams;

process.on('message', (msg) => {
  if (msg?.type !== 'mark') return;
  process.send?.(streams ? { type: 'mark', id: msg.id, window: streams.mark() } : { type: 'error', message: 'mark before the streams started' });
});

await serveFromParent(async (options) => {
  streams = openStreams(options);
  return { url: options.url, close: () => streams.stop() };
});
