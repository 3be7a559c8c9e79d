import { SluiceError } from '../../shared/errors.js';
import type { Clock } from '../clock.js';
import type { Exchange } from '../pipeline/exchange.js';
import type { OutcomeListener } from '../metrics/exchange-observer.js';
import type { QuotaAdd, QuotaTake, Store } from '../store/store.js';
import { QUOTA_LIMITS, type QuotaLimit, type QuotaRule } from './quota-config.js';
import { dayWindow, minuteWindow, monthWindow, type QuotaWindow } from './quota-windows.js';

/** Options of {@link createQuotaStage}. */
export interface QuotaStageOptions {
  /** The rules as configured now (a reload changes them). */
  readonly rules: () => readonly QuotaRule[];
  /** Where counters live: the store every replica shares, so a limit holds across them. */
  readonly store: Store;
  /** What windows are measured by. */
  readonly clock: Clock;
  /** Told when usage could not be counted (the answer is already with its caller). */
  readonly onCountFailure?: (error: unknown) => void;
}

/** Quotas in the pipeline: checked before forwarding, counted from the answers' usage after they end. */
export interface QuotaStage {
  /**
   * Takes one request from every matching rule's `requests_per_minute` and checks its token budgets, in
   * one step of the store; throws ERR_QUOTA_EXCEEDED (with `retry_after`, seconds) when one is used up.
   * `model` reads the request's model, asked only when a matching rule names models.
   */
  admit(exchange: Exchange, model: () => Promise<string | undefined>): Promise<void>;
  /** Counts an ended answer's usage into the token budgets of the rules that admitted it. */
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

/** One limit of one rule for one subject, as admitted: what its usage is added to later. */
interface Budget {
  readonly rule: QuotaRule;
  readonly limit: QuotaLimit;
  readonly key: string;
}

/** Creates the quota stage; with no `quotas:` rules it asks the store nothing. */
export function createQuotaStage(options: QuotaStageOptions): QuotaStage {
  const { store, clock } = options;
  /** The token budgets of exchanges admitted and not yet ended, by exchange id. */
  const admitted = new Map<string, readonly Budget[]>();

  return {
    async admit(exchange, model) {
      const rules = options.rules();
      if (rules.length === 0) return;
      const needsModel = rules.some((r) => r.models !== undefined);
      const requestModel = needsModel ? await model() : undefined;
      const budgets = rules.filter((r) => applies(r, exchange, requestModel)).flatMap((rule) => budgetsOf(rule, exchange));
      if (budgets.length === 0) return;
      const now = clock.now();
      const takes: QuotaTake[] = budgets.map(({ rule, limit, key }) => {
        const window = LIMITS[limit].window(now);
        return { key, window: window.start, expiresAt: window.end, limit: rule[limit]!, add: limit === 'requests_per_minute' ? 1 : 0 };
      });
      const refused = await store.takeQuotas(takes, now);
      if (refused !== undefined) {
        const { rule, limit } = budgets[refused]!;
        const take = takes[refused]!;
        const retryAfter = Math.max(1, Math.ceil((take.expiresAt - now) / 1000));
        throw new SluiceError('ERR_QUOTA_EXCEEDED', {
          message: `Quota "${rule.name}" allows ${take.limit} ${LIMITS[limit].words}${rule.per === 'user' ? '' : ` per ${rule.per}`}, and it is used up; retry after ${retryAfter} s`,
          details: { quota: rule.name, limit, retry_after: retryAfter },
        });
      }
      const tokenBudgets = budgets.filter((b) => b.limit !== 'requests_per_minute');
      if (tokenBudgets.length > 0) admitted.set(exchange.id, tokenBudgets);
    },
    counted({ exchange, answer }) {
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

/** A rule's budgets for this caller: one per limit it sets and per subject it counts (each group of a per-group rule). */
function budgetsOf(rule: QuotaRule, exchange: Exchange): Budget[] {
  const subjects =
    rule.per === 'user'
      ? [`user:${exchange.principal.sub}`]
      : rule.per === 'connection'
        ? [`connection:${exchange.connection.name}`]
        : exchange.principal.groups.filter((g) => rule.groups === undefined || rule.groups.includes(g)).map((g) => `group:${g}`);
  return QUOTA_LIMITS.filter((l) => rule[l] !== undefined).flatMap((limit) =>
    // Encoded, so no name can pose as another subject's key.
    subjects.map((subject) => ({ rule, limit, key: [rule.name, limit, encodeURIComponent(subject)].join('|') })),
  );
}
