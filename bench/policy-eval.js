// `npm run build && node bench/policy-eval.js`: policy evaluation per request, in µs, with 50 rules.
// One JSON object on stdout. The rules are realistic CEL over identity, connection and the JSON body;
// the measured request matches none of the first 49 (the worst case: every rule is evaluated), then the
// one where rule 25 matches (first match wins), then the first case as the gateway runs it (rules tried
// without the body until one needs it). The activation is built per request, as in the gateway.
//
// Env: BENCH_POLICY_ITERATIONS (200000), BENCH_POLICY_RULES (50).
import { validateConfig } from '../dist/server/config/load.js';
import { compilePolicies } from '../dist/server/policy/policy-engine.js';

const iterations = Number(process.env.BENCH_POLICY_ITERATIONS ?? 200_000);
const ruleCount = Number(process.env.BENCH_POLICY_RULES ?? 50);

const shapes = [
  (i) => `connection.name == "llm-${i}" && request.json.model.startsWith("gpt-5")`,
  (i) => `"team-${i}" in identity.groups && request.method == "POST"`,
  (i) => `request.json.max_tokens > ${10_000 + i}`,
  (i) => `!(request.json.model in ["demo", "gpt-4o-mini", "m-${i}"]) && connection.labels.tier == "t-${i}"`,
  (i) => `request.path.startsWith("/v${i}/") || request.headers["x-team"] == "team-${i}"`,
  (i) => `request.json.messages.exists(m, m.role == "tool-${i}")`,
  (i) => `session.reason == "incident-${i}" && now.getHours("UTC") >= 0`,
];

const policies = Array.from({ length: ruleCount }, (_, i) => ({
  name: `rule-${i}`,
  when: i === ruleCount - 1 ? 'request.size > 1000000' : shapes[i % shapes.length](i),
  action: i % 3 === 0 ? 'deny' : i % 3 === 1 ? 'review' : 'allow',
  ...(i % 3 === 1 ? { reviewers: ['ml-leads'] } : {}),
}));
const config = validateConfig({ identity: { issuer: 'https://idp.example.com', audience: 'a', cli_client_id: 'c' }, policies });
const engine = compilePolicies({ policies: config.policies, policyDefault: config.policy_default });

const subject = {
  principal: { sub: 'alice', email: 'alice@example.com', groups: ['ml-eng'], roles: [], expiresAt: 0, issuer: 'https://idp' },
  connection: { name: 'llm', type: 'http', labels: { tier: 'prod' } },
  session: { id: 'ses_1', reason: 'eval' },
  method: 'POST',
  path: '/v1/chat/completions',
  headers: { 'content-type': 'application/json', 'x-team': 'search', 'user-agent': 'OpenAI/JS 6.49.0' },
};
const json = { model: 'demo', max_tokens: 256, messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello' }] };
const body = { json, size: JSON.stringify(json).length };

function measure(label, run) {
  for (let i = 0; i < Math.min(iterations, 20_000); i++) run();
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) run();
  const ns = Number(process.hrtime.bigint() - start);
  return { label, iterations, us_per_eval: Math.round((ns / iterations / 1000) * 100) / 100 };
}

const none = measure(`${ruleCount} rules, none matches (all evaluated)`, () => {
  if (engine.evaluate(subject, body).action !== 'allow') throw new Error('unexpected match');
});
const middleSubject = { ...subject, connection: { ...subject.connection, labels: { tier: 't-24' } }, headers: { ...subject.headers, 'x-team': 'team-25' } };
const middle = measure(`${ruleCount} rules, an early rule matches`, () => engine.evaluate(middleSubject, body));
// As the gateway runs them: first without the body, then with it from the first rule that needs it.
const staged = measure(`${ruleCount} rules, none matches, tried without the body first (as the gateway does)`, () => {
  const early = engine.evaluateWithoutBody(subject);
  const decision = 'needsBody' in early ? early.withBody(body) : early;
  if (decision.action !== 'allow') throw new Error('unexpected match');
});
process.stdout.write(`${JSON.stringify({ node: process.version, rules: ruleCount, reads_body: engine.readsBody, results: [none, middle, staged] }, null, 2)}\n`);
