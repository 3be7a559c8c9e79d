import type { RegisterCommand } from '../context.js';
import { registerAccess } from './access.js';
import { registerAdmin } from './admin.js';
import { registerAudit } from './audit.js';
import { registerConnect } from './connect.js';
import { registerConnections } from './connections.js';
import { registerDemo } from './demo.js';
import { registerLogin } from './login.js';
import { registerLogout } from './logout.js';
import { registerMask } from './mask.js';
import { registerReplay } from './replay.js';
import { registerReview } from './review.js';
import { registerRun } from './run.js';
import { registerServe } from './serve.js';
import { registerSessions } from './sessions.js';
import { registerWhoami } from './whoami.js';

/** Every command, in the order `--help` lists them. */
export const COMMANDS: readonly RegisterCommand[] = [
  registerLogin,
  registerWhoami,
  registerLogout,
  registerConnections,
  registerConnect,
  registerRun,
  registerReplay,
  registerSessions,
  registerReview,
  registerAccess,
  registerAudit,
  registerAdmin,
  registerServe,
  registerDemo,
  registerMask,
];
