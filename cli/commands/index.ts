import type { RegisterCommand } from '../context.js';
import { registerDemo } from './demo.js';
import { registerServe } from './serve.js';

/** Every command, in the order `--help` lists them. */
export const COMMANDS: readonly RegisterCommand[] = [registerServe, registerDemo];
