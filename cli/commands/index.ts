import type { Command } from 'commander';
import type { RegisterCommand } from '../context.js';
import { registerAccess } from './access.js';
import { registerAdmin } from './admin.js';
import { registerAudit } from './audit.js';
import { registerConnect } from './connect.js';
import { registerConnections } from './connections.js';
import { registerDemo } from './demo.js';
import { registerGrpc } from './grpc.js';
import { registerLogin } from './login.js';
import { registerLogout } from './logout.js';
import { registerMask } from './mask.js';
import { registerReplay } from './replay.js';
import { registerReview } from './review.js';
import { registerRun } from './run.js';
import { registerServe } from './serve.js';
import { registerSessions } from './sessions.js';
import { registerUsage } from './usage.js';
import { registerWhoami } from './whoami.js';

/** Commands that call a gateway with the saved login or `SLUICE_TOKEN` (by path; subcommands included). */
const GATEWAY_CLIENTS: ReadonlySet<string> = new Set(['whoami', 'connections', 'connect', 'run', 'replay', 'sessions', 'usage', 'review', 'access', 'audit checkpoints']);

/**
 * `--gateway URL` on every client command, standing for `SLUICE_GATEWAY` for this run: the gateway a
 * `SLUICE_TOKEN` is sent to; with a saved login it must be the profile's, which `getAccessToken` checks
 * (a token is never sent to another gateway). Declared per command rather than on the root program as
 * `--profile` is: the root would take `login --gateway` for itself, and there it means the gateway to log
 * in to and remember. Registered last, once every command exists.
 */
export const registerGatewayOption: RegisterCommand = (program, ctx) => {
  const declared = new WeakSet<Command>();
  const declare = (cmd: Command): void => {
    cmd.option('--gateway <url>', "the gateway to call, as SLUICE_GATEWAY (default: the profile's; with a saved login it must be the profile's)");
    declared.add(cmd);
    for (const sub of cmd.commands) declare(sub);
  };
  const visit = (cmd: Command, path: string): void => {
    if (GATEWAY_CLIENTS.has(path)) declare(cmd);
    else for (const sub of cmd.commands) visit(sub, `${path} ${sub.name()}`);
  };
  for (const cmd of program.commands) visit(cmd, cmd.name());
  // A parent command parses the flags it knows before its subcommand does: `sessions list --gateway X` leaves it on `sessions`.
  program.hook('preAction', (_root, action) => {
    for (let cmd: Command | null = action; cmd !== null; cmd = cmd.parent) {
      const value: unknown = declared.has(cmd) ? cmd.getOptionValue('gateway') : undefined;
      if (typeof value === 'string') {
        ctx.env = { ...ctx.env, SLUICE_GATEWAY: value };
        return;
      }
    }
  });
};

/** Every command, in the order `--help` lists them; then the options several commands share. */
export const COMMANDS: readonly RegisterCommand[] = [
  registerLogin,
  registerWhoami,
  registerLogout,
  registerConnections,
  registerConnect,
  registerRun,
  registerReplay,
  registerSessions,
  registerUsage,
  registerReview,
  registerAccess,
  registerAudit,
  registerAdmin,
  registerServe,
  registerDemo,
  registerMask,
  registerGrpc,
  registerGatewayOption,
];
