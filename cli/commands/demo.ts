import { join } from 'node:path';
import type { RegisterCommand } from '../context.js';
import { waitForSignal } from '../signals.js';

export const registerDemo: RegisterCommand = (program, ctx) => {
  program
    .command('demo')
    .summary('run a complete local sluice to try it out')
    .description(
      'Run a complete local sluice: an OpenID provider with demo users, a demo OpenAI-compatible model, ' +
        'a TCP echo service and the gateway joining them, all on 127.0.0.1. Stop with Ctrl-C.',
    )
    .option('--data <dir>', 'keep recordings and keys in this directory (default: a new temp dir)')
    .option('--listen <host:port>', 'gateway address', '127.0.0.1:7443')
    .option('--verbose', 'print the gateway request log', false)
    .option('--json', 'print the demo endpoints as JSON once ready', false)
    .action(async (opts: { data?: string; listen: string; verbose: boolean; json: boolean }) => {
      const started = Date.now();
      // Listening before anything is printed: a caller may signal as soon as it reads the output.
      const stop = waitForSignal(['SIGINT', 'SIGTERM']);
      // Loaded on use: the provider and gateway are heavy and other commands never need them.
      const { startDemo } = await import('../../server/demo/run-demo.js');
      const { DEMO_USERS } = await import('../../server/demo/demo-config.js');
      const demo = await startDemo({
        dataDir: opts.data,
        listen: opts.listen,
        logger: opts.verbose ? { level: 'info' } : false,
      });
      const gw = demo.gateway.url;
      if (opts.json) {
        ctx.out.stdout.write(
          `${JSON.stringify({ gateway: gw, issuer: demo.issuer, model: demo.modelUrl, echo: demo.echoAddress, data_dir: demo.dataDir, signing_key: demo.signingKeyFile, config_file: demo.configFile, ci_client: demo.ciClient, users: DEMO_USERS })}\n`,
        );
      } else {
        const users = DEMO_USERS.map((u) => `    ${u.id.padEnd(6)} ${u.groups.join(', ')}`).join('\n');
        ctx.out.stdout.write(
          [
            `sluice demo ready in ${((Date.now() - started) / 1000).toFixed(1)} s`,
            '',
            `  gateway     ${gw}`,
            `  sign-in     ${demo.issuer}   (an OpenID provider with demo users)`,
            `  model       ${demo.modelUrl}   (reached only through the gateway)`,
            `  data        ${demo.dataDir}`,
            `  signing key ${demo.signingKeyFile}   (outside the data directory; verify with --public-key)`,
            `  config      ${demo.configFile}   (what this demo runs, as a sluice.yaml)`,
            '',
            '  demo users (pick one on the sign-in page):',
            users,
            '',
            'Try, in another terminal:',
            `  npx sluice login --gateway ${gw}`,
            '  npx sluice whoami',
            '  npx sluice connections',
            '  npx sluice connect llm --port 8080        # prints a local token, sl_local_…',
            '  curl -s http://127.0.0.1:8080/v1/chat/completions -H "authorization: Bearer sl_local_…" \\',
            '       -H "content-type: application/json" \\',
            `       -d '{"model":"demo","messages":[{"role":"user","content":"hello"}]}'`,
            '',
            'As a CI job (client credentials):',
            `  SLUICE_CLIENT_ID=${demo.ciClient.clientId} SLUICE_CLIENT_SECRET=${demo.ciClient.clientSecret} \\`,
            `    npx sluice login --client-credentials --gateway ${gw}`,
            '',
            'Verify the recordings offline (the signing key vouches for them from outside the data directory):',
            `  npx sluice audit verify --all --data-dir ${demo.dataDir} --key-file ${join(demo.dataDir, 'master.key')} --public-key ${demo.signingKeyFile}`,
            '',
            'Ctrl-C stops the demo.',
            '',
          ].join('\n'),
        );
      }
      await stop;
      await demo.close();
    });
};
