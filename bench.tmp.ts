import { once } from 'node:events';
import { createServer as createHttp } from 'node:http';
import { createServer } from 'node:net';
import autocannon from 'autocannon';
import { connectionSchema } from '/work/main/server/config/schema.js';
import { createExchangeHandler } from '/work/main/server/pipeline/run-exchange.js';
import { createHttpProtocol } from '/work/main/server/protocols/http.js';

const body = JSON.stringify({ id: 'x', choices: [{ message: { content: 'Hello'.repeat(20) } }] });
const up = createHttp((req, res) => { req.resume(); req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }); res.end(body); }); });
up.listen(0, '127.0.0.1'); await once(up, 'listening');
const upPort = (up.address() as any).port;
const connection = connectionSchema.parse({ name: 'llm', type: 'http', upstream: `http://127.0.0.1:${upPort}`, allow_groups: ['g'], headers: { authorization: 'Bearer x' } }) as any;
const exchange = createExchangeHandler();
const protocol = createHttpProtocol({ exchange });
const gw = createServer((s) => protocol.handle(s, { principal: { sub: 'a', groups: ['g'], roles: [], expiresAt: 0, issuer: 'i' }, connection, session: { id: 's' }, clientAddress: '127.0.0.1' }));
gw.listen(0, '127.0.0.1'); await once(gw, 'listening');
const gwPort = (gw.address() as any).port;
const reqBody = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
async function bench(port: number, connections: number) {
  const r = await autocannon({ url: `http://127.0.0.1:${port}/v1/chat/completions`, method: 'POST', body: reqBody, headers: { 'content-type': 'application/json', authorization: 'Bearer caller' }, connections, duration: 4 });
  return { p50: r.latency.p50, avgLat: r.latency.average, rps: r.requests.average, errors: r.errors, non2xx: r.non2xx };
}
await bench(gwPort, 8); // warm-up
for (const c of [1, 32]) {
  console.log(JSON.stringify({ c, direct: await bench(upPort, c), gateway: await bench(gwPort, c) }));
}
process.exit(0);
