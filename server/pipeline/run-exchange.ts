import { SluiceError, isSluiceError, toSluiceError } from '../../shared/errors.js';
import { DEFAULT_POLICY_READ_AHEAD } from '../policy/body-read-ahead.js';
import { connectionTypeOf, CONNECTION_TYPE_NAMES, type ConnectionType } from '../protocols/connection-types.js';
import { checkAccess } from './access.js';
import { refuseReviews, type ApprovalStage, type HoldOutcome } from './approval-stage.js';
import type { Carrier } from './carrier.js';
import type { Exchange } from './exchange.js';
import { MaskingFrames } from './masking-frames.js';
import { noMasking, type MaskingStage, type RestoreMap } from './masking-stage.js';
import { maskAhead, masksRequests, requestToForward, type MaskedAhead, type RequestToForward } from '../masking/request-whole-body.js';
import { parseJsonBody } from '../codec/json-text.js';
import { allowAllPolicy, type Decision, type DecisionBody, type PolicyStage } from './policy-stage.js';
import { RecordingFrames } from './recording-frames.js';
import { recordRefusal, requestRecord, type ExchangeProgress, type Forwarding } from './refusal-record.js';
import { reviewPreview } from './review-preview.js';
import { sendStageAnswer } from './stage-answer.js';
import type { ExchangeObserver } from '../metrics/exchange-observer.js';
import type { QuotaStage } from '../quotas/quota-stage.js';
import type { Upstream } from './upstream.js';
import { createUpstreamPools, type UpstreamPoolOptions, type UpstreamPools } from './upstream-pools.js';

/** The stages of the pipeline; each defaults to its pass-through (policy allows, masking changes nothing). */
export interface ExchangeHandlerOptions {
  readonly policy?: PolicyStage;
  readonly approval?: ApprovalStage;
  readonly masking?: MaskingStage;
  /** Pools to HTTP upstreams; by default the handler creates and owns them. */
  readonly pools?: UpstreamPools;
  readonly poolOptions?: UpstreamPoolOptions;
  /** Most body bytes read ahead (as sent and decompressed) when policy looks at the body; a longer one is refused when a rule needs it. Default 1 MiB. */
  readonly policyReadAhead?: number;
  /** Watches each exchange through its recording (metrics); absent: nothing watches, and nothing is paid for it. */
  readonly observer?: ExchangeObserver;
  /** Quotas checked before forwarding (server/quotas); absent: none. */
  readonly quotas?: QuotaStage;
}

/** Runs exchanges through the pipeline: the one path of every carrier (the tunnel's protocols and the proxy route). */
export interface ExchangeHandler {
  /**
   * Runs every stage, in data-path order, for one exchange of any connection type. Takes over the carrier:
   * it is always settled (answered, ended or aborted), and nothing is thrown.
   */
  runExchange(exchange: Exchange, carrier: Carrier): void;
  /** Closes the upstream pools it owns, aborting calls still in flight. */
  close(): Promise<void>;
}

/** Creates the exchange handler: the pipeline's stages, in data-path order, live in `stages` below. */
export function createExchangeHandler(options: ExchangeHandlerOptions = {}): ExchangeHandler {
  const policy = options.policy ?? allowAllPolicy;
  const approval = options.approval ?? refuseReviews;
  const masking = options.masking ?? noMasking;
  const readAhead = options.policyReadAhead ?? DEFAULT_POLICY_READ_AHEAD;
  const ownsPools = options.pools === undefined;
  const pools = options.pools ?? createUpstreamPools(options.poolOptions);
  const upstreams = new Map<string, Upstream>(CONNECTION_TYPE_NAMES.map((name) => [name, connectionTypeOf(name).upstream({ pools, ownsPools })]));

  async function stages(exchange: Exchange, carrier: Carrier, progress: ExchangeProgress): Promise<void> {
    const { connection, recording } = exchange;
    const type = connectionTypeOf(connection.type);

    // 1. identity: established by the caller of the pipeline (tunnel auth or the proxy route's bearer token).
    // 2. access: the principal must be in one of the connection's groups.
    checkAccess(exchange);
    // A target that cannot be put in normal form is refused here, inside the pipeline, so it is recorded.
    if (carrier.targetRefusal !== undefined) throw carrier.targetRefusal;

    // A declared body over the limit is refused before anyone reads it (chunked bodies are counted as they flow).
    const declared = exchange.headers['content-length'];
    if (declared !== undefined && carrier.bodyLimit !== undefined && Number(declared) > carrier.bodyLimit) {
      throw new SluiceError('ERR_BODY_TOO_LARGE', {
        message: `The request body (${declared} bytes) exceeds the limit of ${carrier.bodyLimit} bytes of connection "${connection.name}"`,
        details: { connection: connection.name, limit: carrier.bodyLimit },
      });
    }

    // 3. policy, with the body read ahead (bounded, then put back) when a rule's outcome depends on it.
    const readBody = carrier.readAhead?.bind(carrier, readAhead);
    // On a connection that masks requests, rules judge the body as it will leave (`request.json`), the body
    // as sent only as `request.raw_json`; masked here once, and forwarded as masked here.
    let ahead: MaskedAhead | null = null;
    const maskedForPolicy = async (body: DecisionBody): Promise<DecisionBody> => {
      if (!masksRequests(exchange)) return body;
      const asSent = carrier.peekBody?.();
      // A body not whole (its caller left mid-way) cannot be masked: rules see no JSON rather than the values.
      if (asSent === undefined) return { json: null, raw_json: body.json, size: body.size };
      if (asSent.length === 0) return body;
      try {
        ahead ??= await maskAhead(exchange, asSent, masking);
        progress.maskedRequest = ahead.masked.body;
      } catch (err) {
        // As when masking fails before forwarding: a body that cannot be masked is never kept as sent.
        progress.requestRecorded = true;
        await recording.recordRequest(await requestRecord(exchange, masking, undefined, undefined, true)).catch(() => undefined);
        throw err;
      }
      const parsed = parseJsonBody(ahead.masked.body, exchange.headers['content-type']);
      return { json: parsed.kind === 'json' ? parsed.value : null, raw_json: body.json, size: body.size };
    };
    const judgeableBody = async (): Promise<DecisionBody> => {
      const body = await readBody!();
      // A rule that reads the body cannot judge one it was not shown: refuse rather than let padding past the
      // read-ahead, a zip bomb, or an encoding the upstream reads but sluice could not, turn `request.json`
      // into null and slip by a rule about the model.
      if (body.problem?.kind === 'too-large') {
        throw new SluiceError('ERR_BODY_TOO_LARGE', {
          message: `The request body (${body.size} bytes) is too large for the policies of connection "${connection.name}" to inspect: ${body.problem.reason}`,
          details: { connection: connection.name, limit: readAhead },
        });
      }
      if (body.problem?.kind === 'unreadable') {
        throw new SluiceError('ERR_BODY_UNREADABLE', {
          message: `The request body cannot be read as JSON, so the policies of connection "${connection.name}" cannot judge it: ${body.problem.reason}`,
          details: { connection: connection.name },
        });
      }
      return maskedForPolicy(body);
    };
    let decision: Decision;
    try {
      decision = await policy.decide(exchange, readBody === undefined ? undefined : judgeableBody);
    } catch (err) {
      // A rule that failed refused the request: recorded as the decision it is, naming the rule.
      if (isSluiceError(err) && err.code === 'ERR_POLICY_ERROR') {
        const rule = typeof err.details?.rule === 'string' ? err.details.rule : undefined;
        progress.decision = { action: 'deny', ...(rule === undefined ? {} : { rule }), reason: err.message };
        await recording.recordDecision(progress.decision);
      }
      throw err;
    }
    progress.decision = decision;
    if (decision.action === 'deny') {
      // The refusal is part of the record: written before it is answered, like everything else.
      await recording.recordDecision(decision);
      throw new SluiceError('ERR_POLICY_DENIED', {
        message: decision.reason ?? `Policy${decision.rule === undefined ? '' : ` "${decision.rule}"`} denies this request on connection "${connection.name}"`,
        details: { connection: connection.name, ...(decision.rule === undefined ? {} : { rule: decision.rule }) },
      });
    }

    if (decision.mask !== undefined && decision.mask.length > 0 && !type.masked) {
      // A rule that asks for masking expects the response masked: a type that cannot mask refuses rather than send it as is.
      await recording.recordDecision(decision);
      throw new SluiceError('ERR_MASKING_BLOCKED', {
        message: `Policy${decision.rule === undefined ? '' : ` "${decision.rule}"`} asks for masking, which ${connection.type} connection "${connection.name}" cannot do`,
        details: { connection: connection.name, ...(decision.rule === undefined ? {} : { rule: decision.rule }) },
      });
    }

    if (decision.maskRequest !== undefined && decision.maskRequest.length > 0 && connection.type !== 'http') {
      // Only an HTTP body is read whole and rewritten: a rule that masks prompts refuses what it cannot mask.
      await recording.recordDecision(decision);
      throw new SluiceError('ERR_MASKING_BLOCKED', {
        message: `Policy${decision.rule === undefined ? '' : ` "${decision.rule}"`} asks for request masking, which ${connection.type} connection "${connection.name}" cannot do`,
        details: { connection: connection.name, ...(decision.rule === undefined ? {} : { rule: decision.rule }) },
      });
    }

    // Quotas, before a reviewer is asked to look at a request its caller may not send now.
    if (options.quotas !== undefined) {
      await options.quotas.admit(exchange, async () => {
        const json = (await readBody?.())?.json as { model?: unknown } | null | undefined;
        return typeof json?.model === 'string' ? json.model : undefined;
      });
    }

    // 4. approval: a held exchange waits here until a reviewer decides; a caller that leaves withdraws it.
    if (decision.action === 'review') {
      if (!type.reviewable) {
        // No reviewer can be asked to hold what cannot wait (a raw byte stream): the rule refuses it, as a deny does.
        await recording.recordDecision(decision);
        throw new SluiceError('ERR_POLICY_DENIED', {
          message: `Policy "${decision.rule}" requires a review, which ${connection.type} connection "${connection.name}" cannot wait for`,
          details: { connection: connection.name, rule: decision.rule },
        });
      }
      if (await holdAnswered(exchange, carrier, decision, progress)) return;
    }

    // Request masking: the body is read whole (bounded by max_body) and leaves masked; the recording keeps
    // what went upstream, the original only with `record.request_body: raw`.
    let toForward: RequestToForward;
    try {
      toForward = await requestToForward(exchange, carrier, masking, decision.maskRequest, ahead);
    } catch (err) {
      // A body that could not be masked (too large, unreadable) is never kept as sent, nor what is left of it.
      progress.requestRecorded = true;
      await recording.recordRequest(await requestRecord(exchange, masking, decision, undefined, true)).catch(() => undefined);
      throw err;
    }
    const { asSent, masked: maskedRequest } = toForward;
    const body = maskedRequest?.body ?? asSent;
    // The upstream reads the body it gets: its length is the masked one (headers are what it is sent).
    if (maskedRequest !== null) exchange.headers['content-length'] = String(maskedRequest.body.length);
    const recordedBody = maskedRequest !== null && connection.record.request_body === 'raw' ? asSent : body;

    // 5. recorder: nothing is forwarded unless the request was recorded (with its body, when it arrived whole).
    progress.requestRecorded = true;
    await recording.recordRequest(await requestRecord(exchange, masking, decision, recordedBody));
    if (carrier.gone) {
      // The caller left while the exchange was held; the recording still needs its end.
      await recording.recordEnd({ status: 0, complete: false, requestBytes: body?.length ?? 0, responseBytes: 0, durationMs: Date.now() - exchange.startedAt });
      return;
    }

    // 6. upstream, 7. masking (per response), 8. recorder (response head, body, end): frames through decorators.
    forward(exchange, carrier, type, decision, body, progress, maskedRequest?.restore ?? null);
  }

  /** Holds the exchange for its review; true when the approval stage answered it instead of letting it go on. */
  async function holdAnswered(exchange: Exchange, carrier: Carrier, decision: Extract<Decision, { action: 'review' }>, progress: ExchangeProgress): Promise<boolean> {
    // Reviewers see what is asked (model, size) as far as the read-ahead goes; a caller waiting for
    // 100 Continue uploads nothing before the decision.
    const seen = carrier.readAhead !== undefined && !carrier.bodyHeld ? await carrier.readAhead(readAhead) : undefined;
    const gone = new AbortController();
    const stopListening = carrier.onGone(() => gone.abort());
    let outcome: HoldOutcome;
    try {
      outcome = await approval.hold(exchange, decision, {
        signal: gone.signal,
        ...(seen === undefined ? {} : { body: seen }),
        // What was read ahead above, as the recording will keep it: the reviewer sees the prompt they approve.
        preview: () => reviewPreview(exchange, masking, decision, seen === undefined ? undefined : carrier.peekBody?.()),
        // An approval that outlives the caller's connection is bound to the exact body: read ahead, put back.
        wholeBody: async () => {
          await carrier.readAhead?.(readAhead);
          return carrier.peekBody?.();
        },
      });
    } finally {
      stopListening();
    }
    if (outcome.kind === 'forward') return false;
    // The caller asked not to wait for its review: answered and recorded, never forwarded.
    await sendStageAnswer(exchange, carrier, masking, decision, outcome.answer, progress);
    return true;
  }

  /** Starts the upstream call, its response frames passing masking then the recorder on their way to the carrier. */
  function forward(exchange: Exchange, carrier: Carrier, type: ConnectionType, decision: Decision, body: Buffer | undefined, progress: ExchangeProgress, restore: RestoreMap | null): void {
    const fail = (error: unknown): void => void refuse(exchange, carrier, progress, error);
    // A chunk that cannot be recorded stops the exchange at once, in both directions.
    const tap = exchange.recording.tap(fail);
    const plan = type.masked ? masking.responseMasking(exchange, decision.mask, restore) : null;
    const forwarding: Forwarding = {
      recorded: new RecordingFrames({
        exchange,
        next: carrier,
        tap,
        fail,
        settled: () => progress.settled,
        facts: () => ({ requestBytes: forwarding.call?.requestBytes ?? 0, ...(plan === null ? {} : { masking: plan.summary() }) }),
      }),
      masked: null,
      call: null,
    };
    if (plan !== null) forwarding.masked = new MaskingFrames(plan, forwarding.recorded, fail);
    progress.forwarding = forwarding;
    carrier.onGone((error) => {
      if (error !== undefined) {
        fail(error);
        return;
      }
      if (progress.settled || forwarding.recorded.finishing) return;
      // The caller went away: nothing waits for this exchange any more, so its end is written as it can be.
      progress.settled = true;
      stopForwarding(forwarding, new Error('The caller closed the connection'));
      exchange.recording.appendBestEffort(forwarding.recorded.ending(false));
    });
    forwarding.call = upstreams.get(exchange.connection.type)!.call({
      exchange,
      // Each streamed chunk goes upstream once the recording holds it.
      body: body ?? carrier.requestBody(tap === null ? undefined : (chunk) => tap.upRecorded(chunk)),
      secure: carrier.secure,
      frames: forwarding.masked ?? forwarding.recorded,
      requestEnded: () => forwarding.recorded.requestEnded(),
      fail,
    });
  }

  /**
   * The one error path of every stage: stops what is under way, records the refusal (before it is answered,
   * like everything else), then answers it in the carrier's way. A refusal that cannot be recorded is still answered.
   */
  async function refuse(exchange: Exchange, carrier: Carrier, progress: ExchangeProgress, error: unknown): Promise<void> {
    if (progress.settled) return;
    progress.settled = true;
    const err = toSluiceError(error);
    if (progress.forwarding !== undefined) stopForwarding(progress.forwarding, err);
    await recordRefusal(exchange, carrier, masking, progress, err).catch(() => undefined);
    carrier.refuse(err, exchange.id);
  }

  return {
    runExchange(started, carrier) {
      const exchange = options.observer === undefined ? started : options.observer.observe(started);
      const progress: ExchangeProgress = { requestRecorded: false, settled: false };
      stages(exchange, carrier, progress).catch((error: unknown) => refuse(exchange, carrier, progress, error));
    },
    async close() {
      await Promise.all([...upstreams.values()].map((u) => u.close()));
    },
  };
}

/** Stops an exchange under way: the upstream call and the masking Transform. */
function stopForwarding(forwarding: Forwarding, reason: Error): void {
  forwarding.call?.abort(reason);
  forwarding.masked?.stop();
}
