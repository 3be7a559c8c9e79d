import { describe, expect, it } from 'vitest';
import { checkWorkersNeedDatabase, MAX_WORKERS, parseWorkerCount } from '../../server/cluster/worker-count.js';
import { restartBackoff } from '../../server/cluster/worker-pool.js';

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

describe('restarting a dead worker', () => {
  const options = { restartDelayMs: 1000, stableAfterMs: 30_000, maxRestartDelayMs: 60_000 };

  it('waits longer each time a worker dies at start, up to the maximum', () => {
    let previous: number | undefined;
    const waits: number[] = [];
    for (let i = 0; i < 9; i++) {
      const { delay, next } = restartBackoff(200, previous, options);
      waits.push(delay);
      previous = next;
    }
    expect(waits).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]);
  });

  it('starts again at once-a-second after a worker that ran long enough', () => {
    expect(restartBackoff(45_000, 32_000, options)).toEqual({ delay: 1000, next: 2000 });
  });
});
