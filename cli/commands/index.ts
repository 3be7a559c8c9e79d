import type { RegisterCommand } from '../context.js';
import { registerAccess } from './access.js';
import { registerConnect } from './connect.js';
import { registerConnections } from './connections.js';
import { registerDemo } from './demo.js';
import { registerLogin } from './login.js';
import { registerLogout } from './logout.js';
import { registerMask } from './mask.js';
import { registerReview } from './review.js';
import { registerRun } from './run.js';
import { registerServe } from './serve.js';
import { registerWhoami } from './whoami.js';

/** Every command, in the order `--help` lists them. */
export const COMMANDS: readonly RegisterCommand[] = [
  registerLogin,
  registerWhoami,
  registerLogout,
  registerConnections,
  registerConnect,
  registerRun,
  registerReview,
  registerAccess,
  registerServe,
  registerDemo,
  registerMask,
];
