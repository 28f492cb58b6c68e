/** Response shapes of the endpoints we use, as real servers send them (not always as documented). */

export interface SealStatus {
  type: string;
  initialized: boolean;
  sealed: boolean;
  t: number;
  n: number;
  progress: number;
  nonce: string;
  version: string;
  build_date?: string;
  migration?: boolean;
  cluster_name?: string;
  cluster_id?: string;
  recovery_seal: boolean;
  storage_type?: string;
  removed_from_cluster?: boolean;
}

export interface LeaderStatus {
  ha_enabled: boolean;
  is_self: boolean;
  active_time?: string;
  leader_address: string;
  leader_cluster_address: string;
  performance_standby?: boolean;
  raft_committed_index?: number;
  raft_applied_index?: number;
}

export interface InitRequest {
  secret_shares?: number;
  secret_threshold?: number;
  pgp_keys?: string[];
  root_token_pgp_key?: string;
  recovery_shares?: number;
  recovery_threshold?: number;
  recovery_pgp_keys?: string[];
  stored_shares?: number;
}

export interface InitResponse {
  keys: string[];
  keys_base64: string[];
  recovery_keys?: string[];
  recovery_keys_base64?: string[];
  root_token: string;
}

export interface RaftServer {
  node_id: string;
  address: string;
  leader: boolean;
  protocol_version: string;
  voter: boolean;
}

export interface RaftConfiguration {
  config: { index: number; servers: RaftServer[] };
}

export interface AutopilotServer {
  id: string;
  name: string;
  address: string;
  node_status: string;
  last_contact: string;
  last_term: number;
  last_index: number;
  healthy: boolean;
  stable_since: string;
  status: string; // leader | voter | non-voter
  version?: string;
  upgrade_version?: string;
  redundancy_zone?: string;
  node_type?: string;
}

export interface AutopilotState {
  healthy: boolean;
  failure_tolerance: number;
  leader: string;
  voters: string[];
  non_voters?: string[];
  servers: Record<string, AutopilotServer>;
  optimistic_failure_tolerance?: number;
}

export interface AutopilotConfiguration {
  cleanup_dead_servers?: boolean;
  last_contact_threshold?: string;
  dead_server_last_contact_threshold?: string;
  max_trailing_logs?: number;
  min_quorum?: number;
  server_stabilization_time?: string;
}

export interface TokenLookup {
  accessor: string;
  policies: string[];
  display_name: string;
  creation_time: number;
  expire_time: string | null;
  ttl: number;
  id?: string;
}
