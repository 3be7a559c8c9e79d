/**
 * The two ways a caller's request reaches connection `llm`: the gateway's proxy route, with the caller's
 * token, and a tunnel as `sluice connect` opens it. Tests of what the gateway refuses run on both, as a
 * refusal that one of them skips is a way around it.
 */
import { TunnelClient } from '../../cli/tunnel/tunnel-client.js';
import { httpOver, type HttpAnswer, type TestGateway } from './gateway.js';

/** How the request travels. */
export type LlmRoute = 'proxy' | 'tunnel';

/** Both routes to `llm`, for one caller. */
export interface LlmRoutes {
  /** POSTs `body` to `target` (the upstream's path, as `/v1/chat/completions`) by `route`; the answer, read to its end. */
  post(route: LlmRoute, target: string, body: Buffer, headers?: Record<string, string>): Promise<HttpAnswer>;
  /** Closes the tunnel. */
  close(): void;
}

/** Opens the tunnel to `llm` of `gw` as the bearer of `token`; the proxy route needs nothing opened. */
export async function openLlmRoutes(gw: TestGateway, token: string): Promise<LlmRoutes> {
  const tunnel = new TunnelClient({ gateway: gw.url, connection: 'llm', getToken: async () => ({ token }) });
  await tunnel.start();
  return {
    async post(route, target, body, headers = {}) {
      const all = { 'content-type': 'application/json', ...headers };
      if (route === 'tunnel') {
        const stream = await tunnel.openStream({});
        return httpOver(() => stream, { method: 'POST', path: target, headers: { ...all, 'content-length': String(body.length) }, body });
      }
      const res = await fetch(`${gw.url}/v1/proxy/llm${target}`, { method: 'POST', headers: { ...all, authorization: `Bearer ${token}` }, body });
      return { status: res.status, headers: Object.fromEntries(res.headers), body: Buffer.from(await res.arrayBuffer()) };
    },
    close: () => tunnel.close(),
  };
}
