/**
 * A `Store` that fails on purpose: it forwards every call to a real store, except the calls a fault plan
 * names, which throw. With no plan armed it is a conforming store (the conformance suite runs against it).
 */
import type { Store } from '../../server/store/store.js';

/** The store's methods that return a promise: what can fail the way a database call fails. */
export type StoreMethod = {
  [K in keyof Store]: Store[K] extends (...args: never[]) => Promise<unknown> ? K : never;
}[keyof Store];

/** Which calls fail, and how. */
export interface FaultPlan {
  readonly failOn: StoreMethod;
  /** Calls of `failOn` that succeed before the first fault; default 0. */
  readonly after?: number;
  /** How many calls fail, one after the other; default 1. */
  readonly times?: number;
  /**
   * `before`: the call never reaches the store (the connection dropped on the way). `after-commit`: the
   * store applies it and the caller still gets the error (the answer was lost after the commit). Default `before`.
   */
  readonly when?: 'before' | 'after-commit';
}

/** A store with faults to arm. */
export interface FaultyStore extends Store {
  /** Replaces the plan; counting starts again. */
  arm(plan: FaultPlan): void;
  /** Faults thrown so far under the current plan. */
  readonly injected: number;
}

/** The error a fault throws: what a driver throws when the database is unreachable. */
export class InjectedFault extends Error {
  readonly code = 'ECONNRESET';
  constructor(method: string) {
    super(`injected fault: ${method} (connection reset)`);
  }
}

/** Wraps `inner`; faults follow `plan`, or none until `arm` is called. */
export function faultyStore(inner: Store, plan?: FaultPlan): FaultyStore {
  let current = plan;
  let calls = 0;
  let injected = 0;
  const due = (method: string): boolean => {
    if (current === undefined || method !== current.failOn) return false;
    calls++;
    const after = current.after ?? 0;
    return calls > after && calls <= after + (current.times ?? 1);
  };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'arm') {
        return (next: FaultPlan) => {
          current = next;
          calls = 0;
          injected = 0;
        };
      }
      if (prop === 'injected') return injected;
      // Read on the target itself: a backend's private fields are not reachable through the proxy.
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      const method = String(prop);
      return async (...args: unknown[]) => {
        if (!due(method)) return (value as (...a: unknown[]) => unknown).apply(target, args);
        injected++;
        if (current?.when === 'after-commit') await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        throw new InjectedFault(method);
      };
    },
  }) as FaultyStore;
}
