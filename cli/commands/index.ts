import type { RegisterCommand } from '../context.js';
import { registerDemo } from './demo.js';
import { registerLogin } from './login.js';
import { registerLogout } from './logout.js';
import { registerServe } from './serve.js';
import { registerWhoami } from './whoami.js';

/** Every command, in the order `--help` lists them. */
export const COMMANDS: readonly RegisterCommand[] = [registerLogin, registerWhoami, registerLogout, registerServe, registerDemo];
