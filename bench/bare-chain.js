// The reference paths: bench/bare-proxy.js alone (`bare`), and two of them in a row (`bare_2hops`: the second
// forwards to the first). A call through the tunnel crosses two processes and two loopback connections (the
// CLI, then the gateway); `bare_2hops` is the simplest Node path of that shape, measured in the same run.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { forkChild, waitForReady } from './procs.js';

const BARE_PROXY = fileURLToPath(new URL('./bare-proxy.js', import.meta.url));

/** The reference paths: their figures explain the product's, no target applies to them. */
export const REFERENCE_PATHS = Object.freeze(['bare', 'bare_2hops']);

/**
 * Starts the bare proxies the measured `paths` need (none, one, or two for `bare_2hops`) for `upstreams`
 * (route → URL). Resolves with each one's `{ entry, url }`, the first hop first; a caller sends to the last,
 * which reaches a route through every hop before it.
 */
export async function startBareChain({ paths, upstreams, connections, logDir }) {
  const hops = paths.includes('bare_2hops') ? 2 : paths.includes('bare') ? 1 : 0;
  const chain = [];
  let routes = upstreams;
  for (let hop = 1; hop <= hops; hop += 1) {
    const name = hop === 1 ? 'bare' : `bare${hop}`;
    const entry = forkChild(name, BARE_PROXY, [], { logFile: join(logDir, `${name}.log`) });
    entry.child.send({ type: 'config', config: { upstreams: routes, ...(connections === undefined ? {} : { connections }) } });
    const { url } = await waitForReady(entry, `bare proxy (hop ${hop})`, 20_000);
    chain.push({ entry, url });
    // The next hop forwards each route to this one, under the same name.
    routes = Object.fromEntries(Object.keys(upstreams).map((route) => [route, `${url}/${route}`]));
  }
  return chain;
}
