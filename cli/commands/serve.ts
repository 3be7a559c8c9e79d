import type { RegisterCommand } from '../context.js';

export const registerServe: RegisterCommand = (program) => {
  program.command('serve').description('run the gateway (placeholder)');
};
