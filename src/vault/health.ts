/**
 * `/sys/health` answers with one of ten status codes, chosen in a fixed order (uninitialised,
 * removed, sealed, HA-unhealthy, DR secondary, perf standby, standby, active): see
 * shared/reference/vault-ops-api.md §1.1. We ask with the default codes and map them here.
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
  if (byCode) return byCode;
  // A node started with -recovery serves no health endpoint; it answers with an error that says so.
  if (/recovery mode/i.test(rawText)) return 'recovery';
  // Some proxies turn codes into 200; fall back on the body's own flags.
  if (body.initialized === false) return 'uninitialized';
  if (body.removed_from_cluster) return 'removed';
  if (body.sealed) return 'sealed';
  return 'unknown';
}

/** Whether a node in this state serves requests (itself or by forwarding). */
export function isServing(state: NodeState): boolean {
  return state === 'active' || state === 'standby' || state === 'perf-standby';
}
