// Child process: the least a Node reverse proxy does — node:http in, an undici pool out, bodies streamed
// both ways, hop-by-hop headers dropped — and nothing else: no identity, policy, recording or tunnel.
// The bench runs it beside the gateway as the `bare` path, so the figures show how much of the gap to
// a direct connection any Node proxy pays on this machine and how much is sluice's own work.
//
// `/plain/…` goes to the fast upstream, `/stream/…` to the model server; an upstream URL with a path puts it in
// front of the forwarded one (bench/bare-chain.js chains two proxies that way). Config (the two upstream URLs, and
// `connections`: sockets per upstream, 64 unless given) arrives over IPC, as the gateway's does. The
// capacity part raises `connections` to its stream count: a long streamed answer holds its socket, so a
// smaller pool would queue streams in the reference path that the gateway (no per-upstream cap) serves at once.
import { createServer } from 'node:http';
import { pipeline } from 'node:stream';
import { Pool } from 'undici';
import { serveFromParent } from './procs.js';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

function forwardable(headers) {
  const out = {};
  for (const [name, value] of Object.entries(headers)) if (!HOP_BY_HOP.has(name) && value !== undefined) out[name] = value;
  return out;
}

await serveFromParent(async ({ upstreams, connections = 64 }) => {
  const routes = new Map(
    Object.entries(upstreams).map(([route, url]) => {
      const { origin, pathname } = new URL(url);
      return [route, { pool: new Pool(origin, { connections }), prefix: pathname.replace(/\/$/, '') }];
    }),
  );
  const server = createServer((req, res) => {
    const slash = req.url.indexOf('/', 1);
    const route = routes.get(req.url.slice(1, slash === -1 ? undefined : slash));
    if (route === undefined || slash === -1) {
      res.writeHead(404).end();
      return;
    }
    route.pool.request({ path: route.prefix + req.url.slice(slash), method: req.method, headers: forwardable(req.headers), body: req }).then(
      ({ statusCode, headers, body }) => {
        // The caller left while the upstream answered (a load generator ending its window): newer Node refuses
        // to pipe to a closed response, with an exception that would end this process.
        if (res.destroyed) {
          body.on('error', () => undefined).destroy();
          return;
        }
        res.writeHead(statusCode, forwardable(headers));
        pipeline(body, res, () => undefined);
      },
      () => res.writeHead(502).end(),
    );
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await Promise.all([...routes.values()].map((r) => r.pool.close()));
    },
  };
});
