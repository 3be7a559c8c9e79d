import { randomUUID } from 'node:crypto';
import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { SluiceError } from '../../shared/errors.js';
import type { GrantGate } from '../approval/grant-gate.js';
import type { SessionNotices } from '../approval/session-notices.js';
import type { Grant } from '../approval/review.js';
import { MAX_CONTROL_BYTES } from '../../shared/tunnel/control.js';
import { FRAME_HEADER_SIZE } from '../../shared/tunnel/frames.js';
import type { ConnectionConfig } from '../config/schema.js';
import type { GatewayDeps } from '../gateway-deps.js';
import { inAnyGroup, type Principal } from '../identity/principal.js';
import type { ConnectionProtocols } from '../protocols/connection-types.js';
import type { Store } from '../store/store.js';
import { systemClock, type Clock } from '../clock.js';
import { GatewayTunnel } from './gateway-tunnel.js';

/** Bytes past `tunnel.max_frame` that a WebSocket message may have and still be read, to be refused as a frame. */
const OVERSIZED_FRAME_GRACE = 4096;

export interface TunnelRouteDeps extends GatewayDeps {
  /** Each connection type's protocol on tunnel streams. */
  protocols: ConnectionProtocols;
  /** Admits callers to connections with `requires_grant: true`, and ends their tunnels with the grant. */
  grants?: GrantGate;
  /** Where held requests find the tunnel to tell "waiting for approval r_…". */
  notices?: SessionNotices;
  /** Where each caller's places under `tunnel.max_per_user` are counted: the store every replica shares. */
  tunnelSlots: Pick<Store, 'acquireTunnelSlot' | 'releaseTunnelSlot' | 'clearTunnelSlots'>;
  /** This gateway's replica id, owner of the slots its tunnels take. */
  replica: string;
  /** What token expiry is measured against. Default: the system clock. */
  clock?: Clock;
}

interface Admitted {
  principal: Principal;
  connection: ConnectionConfig;
  reason?: string;
  /** The access grant that let the caller in, when the connection requires one. */
  accessGrant?: Grant;
  /** Gives back the caller's place under `tunnel.max_per_user`. */
  givePlace: () => void;
}

/** A new, globally unique session id. */
export function newSessionId(): string {
  return `ses_${randomUUID().replaceAll('-', '')}`;
}

const MAX_REASON = 500;

/**
 * `GET /v1/tunnel?connection=NAME[&reason=TEXT]`: the WebSocket of one `sluice connect`. The bearer token,
 * the connection and the caller's groups are checked before the upgrade, so a refused caller gets a
 * plain HTTP error (401/403/404) and never a socket.
 */
export async function registerTunnelRoute(app: FastifyInstance, deps: TunnelRouteDeps): Promise<void> {
  const { tunnel } = deps.config;
  const sessions = new Set<GatewayTunnel>();
  const { tunnelSlots, replica } = deps;
  const clock = deps.clock ?? systemClock;
  // Slots this replica held when it last stopped without closing its tunnels (a crash) belong to no tunnel now;
  // had it stayed down for replica.dead_after, another replica's sweep would have freed them already.
  await tunnelSlots.clearTunnelSlots(replica);
  /**
   * Takes one of `sub`'s places under `tunnel.max_per_user`, counted in the store across replicas; the
   * function returned gives it back (once, however often it is called). Undefined when `sub` has none left.
   */
  const takePlace = async (sub: string, log: FastifyRequest['log']): Promise<(() => void) | undefined> => {
    const slot = await tunnelSlots.acquireTunnelSlot(sub, replica, deps.config.tunnel.max_per_user);
    if (slot === undefined) return undefined;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      // A slot the store failed to free is cleared when this replica starts again, or swept once it is gone for good.
      tunnelSlots.releaseTunnelSlot(slot).catch((err: unknown) => log.warn({ err, sub }, 'a tunnel slot could not be given back'));
    };
  };
  const admitted = new WeakMap<FastifyRequest, Admitted>();

  await app.register(websocket, {
    options: {
      // A little past the largest frame: a frame just over max_frame is then read and refused by the codec
      // with 4400 and an `error` message (ERR_TUNNEL_PROTOCOL), not cut by ws with a bare 1009. Anything
      // larger is still refused by ws from its length alone, before it is read.
      maxPayload: Math.max(tunnel.max_frame + FRAME_HEADER_SIZE + OVERSIZED_FRAME_GRACE, MAX_CONTROL_BYTES),
      perMessageDeflate: false,
    },
    // Replaces the plugin's default so each CLI learns why its tunnel closed (and reconnects elsewhere).
    preClose(done) {
      const closing = new SluiceError('ERR_SHUTTING_DOWN');
      for (const s of sessions) s.fail(closing);
      app.websocketServer.close(() => done());
    },
  });

  app.get(
    '/v1/tunnel',
    {
      websocket: true,
      preValidation: async (req) => {
        const principal = await deps.authenticate(req.headers);
        // The verifier allows clock leeway; a tunnel lives only until the token's own expiry, so a
        // token already past it is refused here rather than given a socket that closes at once.
        if (principal.expiresAt * 1000 <= clock.now()) throw new SluiceError('ERR_TOKEN_EXPIRED');
        const query = req.query as Record<string, unknown>;
        const name = typeof query.connection === 'string' ? query.connection : '';
        if (!name) throw new SluiceError('ERR_BAD_REQUEST', { message: 'The tunnel needs ?connection=NAME' });
        const connection = deps.config.connections.find((c) => c.name === name);
        if (!connection) {
          throw new SluiceError('ERR_CONNECTION_UNKNOWN', { message: `No connection is named "${name}"`, details: { connection: name } });
        }
        if (!inAnyGroup(principal, connection.allow_groups)) {
          throw new SluiceError('ERR_CONNECTION_FORBIDDEN', {
            message: `You are not allowed to use connection "${name}"`,
            details: { connection: name },
          });
        }
        // Counted and taken in one step of the store, so parallel upgrades cannot all pass the count; given
        // back when the upgrade fails, or when the connection ends (the tunnel closed, or it never opened).
        const givePlace = await takePlace(principal.sub, req.log);
        if (givePlace === undefined) {
          const limit = deps.config.tunnel.max_per_user;
          throw new SluiceError('ERR_TUNNEL_LIMIT', {
            message: `You already have ${limit} tunnels open, the most one user may (tunnel.max_per_user); close one first`,
            details: { limit },
          });
        }
        req.raw.socket.once('close', givePlace);
        // The caller may have gone while the place was being taken: its close has been and gone.
        if (req.raw.socket.destroyed) givePlace();
        try {
          const accessGrant = await deps.grants?.check(principal, connection);
          const reason = typeof query.reason === 'string' ? query.reason.slice(0, MAX_REASON) : undefined;
          admitted.set(req, { principal, connection, reason, accessGrant, givePlace });
        } catch (err) {
          givePlace();
          throw err;
        }
      },
    },
    (socket, req) => {
      const grant = admitted.get(req);
      if (!grant) {
        socket.close(1011, 'ERR_INTERNAL');
        return;
      }
      const session = new GatewayTunnel({
        ws: socket,
        upgradeSocket: req.raw.socket,
        principal: grant.principal,
        connection: grant.connection,
        currentConnection: () => deps.config.connections.find((c) => c.name === grant.connection.name),
        session: { id: newSessionId(), reason: grant.reason },
        clientAddress: req.ip,
        tunnel,
        verifier: deps.verifier,
        protocols: deps.protocols,
        log: req.log,
        recording: deps.recording,
        userAgent: req.headers['user-agent'],
        clock,
      });
      sessions.add(session);
      session.mux.on('close', () => {
        sessions.delete(session);
        grant.givePlace();
      });
      const unregister = deps.notices?.register(session.id, (notice) => session.mux.sendControl({ type: 'notice', ...notice }));
      const { accessGrant } = grant;
      // When the grant ends (and no newer one extends it), the tunnel it allowed closes.
      const unwatch = accessGrant === undefined ? undefined : deps.grants?.watch(grant.principal, grant.connection, accessGrant, (err) => session.fail(err));
      session.mux.on('close', () => {
        unregister?.();
        unwatch?.();
      });
      req.log.info(
        { session: session.id, sub: grant.principal.sub, connection: grant.connection.name },
        'tunnel opened',
      );
      session.start();
    },
  );
}
