import { decodeGrpcMessage, grpcMethodOf, grpcStatusName } from '../../shared/grpc-status-names.js';
import type { EventFields, RecordedEvent } from './event-types.js';

/** What an export says about one gRPC call: its method, how it ended, and how many messages went each way. */
export interface GrpcCallFacts {
  readonly service: string;
  readonly method: string;
  /** `grpc-status` of the trailers; null while none is recorded (the call did not end, or ended without one). */
  status: number | null;
  /** The status's name (`OK`, `PERMISSION_DENIED`…); null with no status or one outside the table. */
  status_name: string | null;
  /** `grpc-message`, percent-decoded; null when the trailers carry none. */
  message: string | null;
  messages_up: number;
  messages_down: number;
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Follows a session's events and knows, for each exchange of a `grpc` session, its service and method, its
 * final status and its message counts. Holds one small record per call, never a message.
 */
export class GrpcCallTracker {
  #grpc = false;
  readonly #byId = new Map<string, GrpcCallFacts>();

  /** Whether the session is a gRPC one (known from its `session.start`). */
  get isGrpcSession(): boolean {
    return this.#grpc;
  }

  /** Takes one event; returns the facts of its exchange when it belongs to a gRPC call. */
  observe(e: RecordedEvent): GrpcCallFacts | undefined {
    if (e.type === 'session.start') {
      this.#grpc = (e.fields as EventFields['session.start']).connection.type === 'grpc';
      return undefined;
    }
    if (!this.#grpc) return undefined;
    const id = (e.fields as { exchange?: unknown }).exchange;
    if (typeof id !== 'string') return undefined;
    switch (e.type) {
      case 'exchange.request':
        return this.#start(id, (e.fields as EventFields['exchange.request']).path);
      case 'exchange.error': {
        const f = e.fields as EventFields['exchange.error'];
        // A call refused before it was recorded names its path only here.
        return this.#byId.get(id) ?? (f.request === undefined ? undefined : this.#start(id, f.request.path));
      }
      case 'grpc.message': {
        const x = this.#byId.get(id);
        if (x !== undefined) {
          if ((e.fields as EventFields['grpc.message']).dir === 'up') x.messages_up += 1;
          else x.messages_down += 1;
        }
        return x;
      }
      case 'exchange.end': {
        const x = this.#byId.get(id);
        const trailers = (e.fields as EventFields['exchange.end']).trailers;
        const status = first(trailers?.['grpc-status']);
        const message = first(trailers?.['grpc-message']);
        if (x !== undefined && status !== undefined && /^\d+$/.test(status)) {
          x.status = Number(status);
          x.status_name = grpcStatusName(x.status);
        }
        if (x !== undefined && message !== undefined && message !== '') x.message = decodeGrpcMessage(message);
        return x;
      }
      default:
        return this.#byId.get(id);
    }
  }

  /** The facts of one call seen so far. */
  find(id: string): GrpcCallFacts | undefined {
    return this.#byId.get(id);
  }

  #start(id: string, path: string): GrpcCallFacts | undefined {
    const known = this.#byId.get(id);
    if (known !== undefined) return known;
    const call = grpcMethodOf(path);
    if (call === undefined) return undefined;
    const x: GrpcCallFacts = { ...call, status: null, status_name: null, message: null, messages_up: 0, messages_down: 0 };
    this.#byId.set(id, x);
    return x;
  }
}
