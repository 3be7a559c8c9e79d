import { describe, expect, it } from 'vitest';
import { checkWorkersNeedDatabase, MAX_WORKERS, parseWorkerCount } from '../../server/cluster/worker-count.js';

describe('--workers', () => {
  it('takes a whole number, or auto as the cores this process may use', () => {
    expect(parseWorkerCount('1', 8)).toBe(1);
    expect(parseWorkerCount('3', 8)).toBe(3);
    expect(parseWorkerCount('auto', 4)).toBe(4);
    expect(parseWorkerCount('auto', 0)).toBe(1);
  });

  it('refuses anything else with ERR_USAGE', () => {
    for (const bad of ['0', '-1', '1.5', 'two', '', String(MAX_WORKERS + 1)]) {
      expect(() => parseWorkerCount(bad, 4)).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
    }
  });

  it('needs storage.database for more than one worker', () => {
    expect(() => checkWorkersNeedDatabase(1, undefined)).not.toThrow();
    expect(() => checkWorkersNeedDatabase(2, 'postgres://db/sluice')).not.toThrow();
    expect(() => checkWorkersNeedDatabase(2, undefined)).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID', message: expect.stringContaining('storage.database') }));
  });
});
