/**
 * Runs, seed and reporting shared by every fuzz target. `npm test` runs each target with a few
 * thousand cases; `npm run fuzz` with FUZZ_RUNS=100000. The seed is fixed unless FUZZ_SEED says
 * otherwise, so a run can be repeated case for case; a failure prints fast-check's seed and path,
 * which replay the failing case alone (`FUZZ_SEED=<seed>` reproduces the whole run).
 */
import fc from 'fast-check';

/** The seed when FUZZ_SEED is unset: fixed, so two runs of the suite fuzz the same cases. */
export const DEFAULT_FUZZ_SEED = 20_250_611;

/** Cases per target when FUZZ_RUNS is unset. */
export const DEFAULT_FUZZ_RUNS = 5000;

/** The figures of one target's run, printed as one JSON line so they can be quoted. */
export interface FuzzFigures {
  readonly target: string;
  readonly runs: number;
  readonly seed: number;
  readonly seconds: number;
}

/** Runs and seed of this run; a target that is costly per case may ask for fewer runs by default. */
export function fuzzSettings(defaultRuns: number = DEFAULT_FUZZ_RUNS): { runs: number; seed: number; timeoutMs: number } {
  const runs = positiveInteger('FUZZ_RUNS', process.env.FUZZ_RUNS) ?? defaultRuns;
  const seed = integer('FUZZ_SEED', process.env.FUZZ_SEED) ?? DEFAULT_FUZZ_SEED;
  // Generous on purpose: the bound is there so a hung case fails the run instead of stalling it.
  return { runs, seed, timeoutMs: 120_000 + runs * 20 };
}

/** Checks `property` over this run's cases and prints the run's figures. */
export async function fuzz<Ts extends [unknown, ...unknown[]]>(
  target: string,
  property: fc.IProperty<Ts> | fc.IAsyncProperty<Ts>,
  defaultRuns: number = DEFAULT_FUZZ_RUNS,
): Promise<FuzzFigures> {
  const { runs, seed } = fuzzSettings(defaultRuns);
  const started = process.hrtime.bigint();
  await fc.assert(property as fc.IAsyncProperty<Ts>, { numRuns: runs, seed });
  const figures: FuzzFigures = { target, runs, seed, seconds: Number((process.hrtime.bigint() - started) / 1_000_000n) / 1000 };
  console.log(JSON.stringify(figures));
  return figures;
}

function integer(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got ${JSON.stringify(value)}`);
  return n;
}

function positiveInteger(name: string, value: string | undefined): number | undefined {
  const n = integer(name, value);
  if (n !== undefined && n < 1) throw new Error(`${name} must be at least 1, got ${n}`);
  return n;
}
