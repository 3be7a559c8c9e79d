import { SluiceError } from '../../shared/errors.js';
import type { Clock } from '../clock.js';
import type { Exchange } from '../pipeline/exchange.js';
import type { OutcomeListener } from '../metrics/exchange-observer.js';
import type { QuotaAdd, QuotaSlotTake, QuotaTake, Store } from '../store/store.js';
import { QUOTA_LIMITS, type QuotaLimit, type QuotaRule } from './quota-config.js';
import { dayWindow, minuteWindow, monthWindow, type QuotaWindow } from './quota-windows.js';
import { USAGE_OF_LIMIT, usageKey } from './usage-counters.js';
import type { PolicyUsage } from '../policy/policy-input.js';

/** Options of {@link createQuotaStage}. */
export interface QuotaStageOptions {
  /** The rules as configured now (a reload changes them). */
  readonly rules: () => readonly QuotaRule[];
  /** Where counters live: the store every replica shares, so a limit holds across them. */
  readonly store: Store;
  /** What windows are measured by. */
  readonly clock: Clock;
  /** This replica's id: the slots of calls in flight are held in its name, and swept with it if it dies. */
  readonly replica: string;
  /** Whether each caller's own usage is counted now (some policy reads `usage`); absent: never. */
  readonly tracksUsage?: () => boolean;
  /** Told when usage could not be counted (the answer is already with its caller). */
  readonly onCountFailure?: (error: unknown) => void;
}

/** Quotas in the pipeline: checked before forwarding, counted from the answers' usage after they end. */
export interface QuotaStage {
  /**
   * Takes a slot under every matching rule's `concurrent_streams` (held until the exchange ends), then one
   * request from every `requests_per_minute` and checks the token budgets, in one step of the store each;
   * throws ERR_QUOTA_EXCEEDED (with `retry_after`, seconds) when one is used up, having taken nothing.
   * `model` reads the request's model, asked only when a matching rule names models.
   */
  admit(exchange: Exchange, model: () => Promise<string | undefined>): Promise<void>;
  /** The caller's counts in the current windows, as policies see them (`usage`); counted while `tracksUsage` says so. */
  usage(sub: string): Promise<PolicyUsage>;
  /** Gives an ended exchange's slots back and counts its answer's usage into the token budgets of the rules that admitted it. */
  readonly counted: OutcomeListener;
}

/** What each limit counts and in which window. */
const LIMITS: Readonly<Record<QuotaLimit, { readonly counter: 'requests' | 'tokens' | 'input_tokens' | 'output_tokens'; readonly window: (now: number) => QuotaWindow; readonly words: string }>> = {
  requests_per_minute: { counter: 'requests', window: minuteWindow, words: 'requests per minute' },
  tokens_per_day: { counter: 'tokens', window: dayWindow, words: 'tokens per day' },
  tokens_per_month: { counter: 'tokens', window: monthWindow, words: 'tokens per calendar month' },
  input_tokens_per_day: { counter: 'input_tokens', window: dayWindow, words: 'input tokens per day' },
  output_tokens_per_day: { counter: 'output_tokens', window: dayWindow, words: 'output tokens per day' },
};

/** One limit of one rule for one subject (or, without a rule, the caller's own usage counter), as admitted: what its usage is added to later. */
interface Budget {
  readonly rule?: QuotaRule;
  readonly limit: QuotaLimit;
  readonly key: string;
}

/** Creates the quota stage; with no `quotas:` rules it asks the store nothing. */
export function createQuotaStage(options: QuotaStageOptions): QuotaStage {
  const { store, clock } = options;
  /** The token budgets of exchanges admitted and not yet ended, by exchange id. */
  const admitted = new Map<string, readonly Budget[]>();
  /** The slots of exchanges admitted and not yet ended, by exchange id. */
  const inFlight = new Map<string, readonly string[]>();
  const release = (slots: readonly string[]): void => {
    // A slot the store failed to free is cleared when this replica starts again, or swept once it is gone for good.
    store.releaseQuotaSlots(slots).catch((err: unknown) => options.onCountFailure?.(err));
  };

  return {
    async usage(sub) {
      const now = clock.now();
      const counts = await Promise.all(QUOTA_LIMITS.map((limit) => store.quotaCount(usageKey(limit, sub), LIMITS[limit].window(now).start)));
      return Object.fromEntries(QUOTA_LIMITS.map((limit, i) => [USAGE_OF_LIMIT[limit], counts[i]!])) as unknown as PolicyUsage;
    },
    async admit(exchange, model) {
      const rules = options.rules();
      const tracked: Budget[] = options.tracksUsage?.() === true ? QUOTA_LIMITS.map((limit) => ({ limit, key: usageKey(limit, exchange.principal.sub) })) : [];
      if (rules.length === 0 && tracked.length === 0) return;
      const needsModel = rules.some((r) => r.models !== undefined);
      const requestModel = needsModel ? await model() : undefined;
      const matching = rules.filter((r) => applies(r, exchange, requestModel));
      const budgets = matching.flatMap((rule) => budgetsOf(rule, exchange));
      const slots = matching.flatMap((rule) => slotsOf(rule, exchange).map((take) => ({ rule, take })));
      if (budgets.length === 0 && slots.length === 0 && tracked.length === 0) return;
      let held: readonly string[] = [];
      if (slots.length > 0) {
        const taken = await store.acquireQuotaSlots(slots.map((s) => s.take), options.replica);
        if (typeof taken === 'number') {
          const { rule, take } = slots[taken]!;
          // A slot frees when any call of this subject ends, which is soon: the caller tries again shortly.
          throw new SluiceError('ERR_QUOTA_EXCEEDED', {
            message: `Quota "${rule.name}" allows ${take.limit} calls in flight at once${rule.per === 'user' ? '' : ` per ${rule.per}`}, and all are under way; retry after 1 s`,
            details: { quota: rule.name, limit: 'concurrent_streams', retry_after: 1 },
          });
        }
        held = taken;
      }
      if (budgets.length === 0 && tracked.length === 0) {
        if (held.length > 0) inFlight.set(exchange.id, held);
        return;
      }
      const now = clock.now();
      // The caller's own request count rides along the rules' takes, last, so a refusal always names a rule.
      const counted = [...budgets, ...tracked.filter((t) => t.limit === 'requests_per_minute')];
      const takes: QuotaTake[] = counted.map(({ rule, limit, key }) => {
        const window = LIMITS[limit].window(now);
        return { key, window: window.start, expiresAt: window.end, limit: rule?.[limit] ?? Number.MAX_SAFE_INTEGER, add: limit === 'requests_per_minute' ? 1 : 0 };
      });
      let refused: number | undefined;
      try {
        refused = await store.takeQuotas(takes, now);
      } catch (err) {
        if (held.length > 0) release(held);
        throw err;
      }
      if (refused !== undefined) {
        if (held.length > 0) release(held);
        const { rule, limit } = budgets[refused]! as Required<Budget>;
        const take = takes[refused]!;
        const retryAfter = Math.max(1, Math.ceil((take.expiresAt - now) / 1000));
        throw new SluiceError('ERR_QUOTA_EXCEEDED', {
          message: `Quota "${rule.name}" allows ${take.limit} ${LIMITS[limit].words}${rule.per === 'user' ? '' : ` per ${rule.per}`}, and it is used up; retry after ${retryAfter} s`,
          details: { quota: rule.name, limit, retry_after: retryAfter },
        });
      }
      if (held.length > 0) inFlight.set(exchange.id, held);
      const tokenBudgets = [...budgets, ...tracked].filter((b) => b.limit !== 'requests_per_minute');
      if (tokenBudgets.length > 0) admitted.set(exchange.id, tokenBudgets);
    },
    counted({ exchange, answer }) {
      const slots = inFlight.get(exchange.id);
      if (slots !== undefined) {
        inFlight.delete(exchange.id);
        if (slots.length > 0) release(slots);
      }
      const budgets = admitted.get(exchange.id);
      if (budgets === undefined) return;
      admitted.delete(exchange.id);
      const usage = answer?.usage;
      if (usage === undefined) return;
      const input = usage.prompt_tokens ?? 0;
      const output = usage.completion_tokens ?? 0;
      const amounts = { tokens: usage.total_tokens ?? input + output, input_tokens: input, output_tokens: output } as const;
      const now = clock.now();
      const adds: QuotaAdd[] = budgets.map(({ limit, key }) => {
        const window = LIMITS[limit].window(now);
        return { key, window: window.start, expiresAt: window.end, amount: amounts[LIMITS[limit].counter as keyof typeof amounts] };
      });
      store.addQuotaUsage(adds).catch((err: unknown) => options.onCountFailure?.(err));
    },
  };
}

/**
 * Whether a rule applies: every selector it gives matches. A rule naming models applies to a request whose
 * model cannot be read, so a body the gateway cannot parse does not slip past a budget.
 */
function applies(rule: QuotaRule, exchange: Exchange, model: string | undefined): boolean {
  const { principal, connection } = exchange;
  if (rule.users !== undefined && !rule.users.includes(principal.sub)) return false;
  if (rule.groups !== undefined && !principal.groups.some((g) => rule.groups!.includes(g))) return false;
  if (rule.connections !== undefined && !rule.connections.includes(connection.name)) return false;
  if (rule.models !== undefined && model !== undefined && !rule.models.includes(model)) return false;
  return true;
}

/** Whose counts a rule keeps for this caller: the user, the connection, or each group of a per-group rule. */
function subjectsOf(rule: QuotaRule, exchange: Exchange): string[] {
  return rule.per === 'user'
    ? [`user:${exchange.principal.sub}`]
    : rule.per === 'connection'
      ? [`connection:${exchange.connection.name}`]
      : exchange.principal.groups.filter((g) => rule.groups === undefined || rule.groups.includes(g)).map((g) => `group:${g}`);
}

/** A rule's slots for this caller's call in flight: one per subject it counts, when it sets `concurrent_streams`. */
function slotsOf(rule: QuotaRule, exchange: Exchange): QuotaSlotTake[] {
  if (rule.concurrent_streams === undefined) return [];
  const limit = rule.concurrent_streams;
  return subjectsOf(rule, exchange).map((subject) => ({ key: [rule.name, 'concurrent_streams', encodeURIComponent(subject)].join('|'), limit }));
}

/** A rule's budgets for this caller: one per limit it sets and per subject it counts (each group of a per-group rule). */
function budgetsOf(rule: QuotaRule, exchange: Exchange): Budget[] {
  const subjects = subjectsOf(rule, exchange);
  return QUOTA_LIMITS.filter((l) => rule[l] !== undefined).flatMap((limit) =>
    // Encoded, so no name can pose as another subject's key.
    subjects.map((subject) => ({ rule, limit, key: [rule.name, limit, encodeURIComponent(subject)].join('|') })),
  );
}
