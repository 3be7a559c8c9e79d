import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { SluiceError, isSluiceError, toSluiceError } from '../../shared/errors.js';
import { DEFAULT_POLICY_READ_AHEAD, readBodyForPolicy, type ReadAheadBody } from '../policy/body-read-ahead.js';
import { checkAccess } from './access.js';
import { requestPathFor } from './request-path.js';
import { refuseReviews, type ApprovalStage, type HoldOutcome } from './approval-stage.js';
import { hasRequestBody } from './bounded-body.js';
import { sendErrorResponse } from './error-response.js';
import { newRequestId, type Exchange, type ExchangeContext } from './exchange.js';
import { noMasking, type MaskingStage } from './masking-stage.js';
import { allowAllPolicy, type Decision, type DecisionBody, type PolicyStage } from './policy-stage.js';
import { discardRecorder, type Recorder } from './recorder.js';
import { recordRefusal, requestEvent, type ExchangeProgress } from './refusal-record.js';
import { peekArrivedBody, sendStageAnswer } from './stage-answer.js';
import { callUpstream, takeWholeBody } from './upstream-call.js';
import { createUpstreamPools, type UpstreamPoolOptions, type UpstreamPools } from './upstream-pools.js';

/** The stages of the pipeline; each defaults to its pass-through (policy allows, masking changes nothing, recorder keeps nothing). */
export interface ExchangeHandlerOptions {
  readonly policy?: PolicyStage;
  readonly approval?: ApprovalStage;
  readonly masking?: MaskingStage;
  readonly recorder?: Recorder;
  /** Pools to upstreams; by default the handler creates and owns them. */
  readonly pools?: UpstreamPools;
  readonly poolOptions?: UpstreamPoolOptions;
  /** Most body bytes read ahead (as sent and decompressed) when policy looks at the body; a longer one is refused when a rule needs it. Default 1 MiB. */
  readonly policyReadAhead?: number;
}

/** Runs HTTP exchanges through the pipeline; the one path shared by the tunnel's HTTP protocol and the proxy route. */
export interface ExchangeHandler {
  /** Takes over `res`: it is always settled (answered, ended or aborted), and nothing is thrown. */
  handle(req: IncomingMessage, res: ServerResponse, context: ExchangeContext): void;
  /** Closes the upstream pools it owns, aborting calls still in flight. */
  close(): Promise<void>;
}

/** Creates the exchange handler: the pipeline's stages, in data-path order, live in `run` below. */
export function createExchangeHandler(options: ExchangeHandlerOptions = {}): ExchangeHandler {
  const policy = options.policy ?? allowAllPolicy;
  const approval = options.approval ?? refuseReviews;
  const masking = options.masking ?? noMasking;
  const recorder = options.recorder ?? discardRecorder;
  const ownsPools = options.pools === undefined;
  const pools = options.pools ?? createUpstreamPools(options.poolOptions);

  async function run(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: ExchangeContext,
    exchange: Exchange,
    progress: ExchangeProgress,
    pathRefusal: unknown,
  ): Promise<void> {
    const { connection } = ctx;

    // 1. identity: established by the caller of the pipeline (tunnel auth or the proxy route's bearer token).
    // 2. access: the principal must be in one of the connection's groups.
    checkAccess(exchange);
    // A target that cannot be put in normal form is refused here, inside the pipeline, so it is recorded.
    if (pathRefusal !== undefined) throw pathRefusal;

    // A declared body over the limit is refused before anyone reads it (chunked bodies are counted as they flow).
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > connection.max_body) {
      throw new SluiceError('ERR_BODY_TOO_LARGE', {
        message: `The request body (${declared} bytes) exceeds the limit of ${connection.max_body} bytes of connection "${connection.name}"`,
        details: { connection: connection.name, limit: connection.max_body },
      });
    }

    // 3. policy, with the body read ahead (bounded, then put back) when a rule's outcome depends on it.
    const readAhead = options.policyReadAhead ?? DEFAULT_POLICY_READ_AHEAD;
    let continued = false;
    let policyBody: ReadAheadBody | undefined;
    const readBodyAhead = async (): Promise<ReadAheadBody> => {
      // The body must arrive before it can be seen, so a caller waiting for 100 Continue is told to send it now.
      if (ctx.awaitingContinue === true && hasRequestBody(req)) {
        res.writeContinue();
        continued = true;
      }
      policyBody ??= await readBodyForPolicy(req, { limit: readAhead });
      return policyBody;
    };
    const judgeableBody = async (): Promise<DecisionBody> => {
      const body = await readBodyAhead();
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
      return body;
    };
    let decision: Decision;
    try {
      decision = await policy.decide(exchange, judgeableBody);
    } catch (err) {
      // A rule that failed refused the request: recorded as the decision it is, naming the rule.
      if (isSluiceError(err) && err.code === 'ERR_POLICY_ERROR') {
        const rule = typeof err.details?.rule === 'string' ? err.details.rule : undefined;
        progress.decision = { action: 'deny', ...(rule === undefined ? {} : { rule }), reason: err.message };
        await recorder.emit({ type: 'policy.decision', exchange, decision: progress.decision });
      }
      throw err;
    }
    progress.decision = decision;
    if (decision.action === 'deny') {
      // The refusal is part of the record: written before it is answered, like everything else.
      await recorder.emit({ type: 'policy.decision', exchange, decision });
      throw new SluiceError('ERR_POLICY_DENIED', {
        message: decision.reason ?? `Policy${decision.rule === undefined ? '' : ` "${decision.rule}"`} denies this request on connection "${connection.name}"`,
        details: { connection: connection.name, ...(decision.rule === undefined ? {} : { rule: decision.rule }) },
      });
    }

    // 4. approval: a held exchange waits here until a reviewer decides; a caller that leaves withdraws it.
    if (decision.action === 'review') {
      // Reviewers see what is asked (model, size) as far as the read-ahead goes; a caller waiting for
      // 100 Continue uploads nothing before the decision.
      if (ctx.awaitingContinue !== true) await readBodyAhead();
      const gone = new AbortController();
      const onClose = (): void => gone.abort();
      res.once('close', onClose);
      let outcome: HoldOutcome;
      try {
        outcome = await approval.hold(exchange, decision, {
          signal: gone.signal,
          body: policyBody,
          // An approval that outlives the caller's connection is bound to the exact body: read ahead, put back.
          wholeBody: async () => {
            await readBodyAhead();
            return peekArrivedBody(req);
          },
        });
      } finally {
        res.off('close', onClose);
      }
      if (outcome.kind === 'answer') {
        // The caller asked not to wait for its review: answered and recorded, never forwarded.
        await sendStageAnswer({ req, res, exchange, decision, answer: outcome.answer, recorder, masking, progress });
        return;
      }
    }

    // 5. recorder: nothing is forwarded unless the request was recorded (with its body, when it arrived whole).
    const body = takeWholeBody(req);
    progress.requestRecorded = true;
    await recorder.emit(await requestEvent(exchange, masking, decision, body));

    if (res.destroyed) {
      // The caller left while the exchange was held; the recording still needs its end.
      await recorder.emit({ type: 'exchange.end', exchange, status: 0, complete: false, requestBytes: body?.length ?? 0, responseBytes: 0, durationMs: Date.now() - exchange.startedAt });
      return;
    }
    // The caller holds its body until told to send it, so refused requests never upload anything.
    if (ctx.awaitingContinue === true && !continued) res.writeContinue();

    // 6. upstream, 7. masking (per response), 8. recorder (response head and end): see upstream-call.ts.
    callUpstream({
      exchange,
      extraMasking: decision.mask,
      req,
      res,
      route: pools.routeFor(connection),
      masking,
      recorder,
      body,
      maxBody: connection.max_body,
      proto: (req.socket as Partial<TLSSocket>).encrypted === true ? 'https' : 'http',
    });
  }

  return {
    handle(req, res, ctx) {
      // The one path policy judges, the recording keeps and the upstream receives. A target that cannot be
      // normalised keeps its raw form here, for the record of its refusal; it never goes further.
      let path = ctx.path;
      let pathRefusal: unknown;
      try {
        path = requestPathFor(ctx.path, ctx.connection);
      } catch (err) {
        pathRefusal = err;
      }
      const exchange: Exchange = {
        id: newRequestId(),
        principal: ctx.principal,
        connection: ctx.connection,
        session: ctx.session,
        clientAddress: ctx.clientAddress,
        via: ctx.via,
        method: req.method ?? 'GET',
        path,
        headers: req.headers,
        startedAt: Date.now(),
      };
      const progress: ExchangeProgress = { requestRecorded: false };
      run(req, res, ctx, exchange, progress, pathRefusal).catch(async (error: unknown) => {
        const err = toSluiceError(error);
        // Recorded before it is answered, like everything else; a refusal that cannot be recorded is still answered.
        await recordRefusal({ recorder, masking, exchange, req, res, progress, error: err }).catch(() => undefined);
        sendErrorResponse(res, err, exchange.id);
      });
    },
    async close() {
      if (ownsPools) await pools.close();
    },
  };
}
