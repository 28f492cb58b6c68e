/**
 * `/sys/health` answers with one of ten status codes, chosen in a fixed order (uninitialised,
 * removed, sealed, HA-unhealthy, DR secondary, perf standby, standby, active), as Vault's
 * sys/health documentation lists them. We ask with the default codes and map them here.
 */
export type NodeState =
  | 'active'
  | 'standby'
  | 'perf-standby'
  | 'dr-secondary'
  | 'ha-unhealthy'
  | 'sealed'
  | 'uninitialized'
  | 'removed'
  | 'recovery'
  | 'unknown';

export interface HealthBody {
  initialized?: boolean;
  sealed?: boolean;
  standby?: boolean;
  performance_standby?: boolean;
  replication_dr_mode?: string;
  replication_performance_mode?: string;
  server_time_utc?: number;
  version?: string;
  cluster_name?: string;
  cluster_id?: string;
  enterprise?: boolean;
  removed_from_cluster?: boolean;
  ha_connection_healthy?: boolean;
  last_request_forwarding_heartbeat_ms?: number;
  echo_duration_ms?: number;
  clock_skew_ms?: number;
}

export interface NodeHealth {
  state: NodeState;
  httpStatus: number;
  body: HealthBody;
}

const BY_CODE: Record<number, NodeState> = {
  200: 'active',
  429: 'standby',
  472: 'dr-secondary',
  473: 'perf-standby',
  474: 'ha-unhealthy',
  501: 'uninitialized',
  503: 'sealed',
  530: 'removed',
};

export function healthState(httpStatus: number, body: HealthBody, rawText = ''): NodeState {
  const byCode = BY_CODE[httpStatus];
  // 200 is also what a proxy (or `standbyok=true`) answers for any node: trust it only when the
  // body does not say the node is something else. The other codes are only sent for their state.
  if (byCode === 'active') return stateFromBody(body) ?? 'active';
  if (byCode) return byCode;
  // A node started with -recovery serves no health endpoint; it answers with an error that says so.
  if (/recovery mode/i.test(rawText)) return 'recovery';
  // Rewritten codes (the Go API's 299, proxies): fall back on the body's own flags.
  const fromBody = stateFromBody(body);
  if (fromBody) return fromBody;
  return body.initialized === true && body.sealed === false && body.standby === false ? 'active' : 'unknown';
}

/** What the body says, in the server's own decision order; undefined when it says nothing unusual. */
function stateFromBody(body: HealthBody): NodeState | undefined {
  if (body.initialized === false) return 'uninitialized';
  if (body.removed_from_cluster) return 'removed';
  if (body.sealed) return 'sealed';
  if (body.replication_dr_mode === 'secondary') return 'dr-secondary';
  if (body.performance_standby) return 'perf-standby';
  if (body.standby) return 'standby';
  return undefined;
}

/** Whether a node in this state serves requests (itself or by forwarding). */
export function isServing(state: NodeState): boolean {
  return state === 'active' || state === 'standby' || state === 'perf-standby';
}
