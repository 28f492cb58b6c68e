import type { ZodType } from 'zod';
import type { ClusterClient, ClusterNode } from '../vault/cluster.js';
import type { ClusterSpec, NodeSpec } from '../inventory/schema.js';
import type { SshHost } from '../ssh/connection.js';
import type { BackupStore } from '../backup/stores/store.js';
import type { Outcome } from '../core/outcome.js';
import type { Prompter } from '../core/prompter.js';

export type { Outcome, OutcomeStatus } from '../core/outcome.js';
export type { Prompter } from '../core/prompter.js';

export interface ActionContext {
  /** The cluster the run acts on: one connection pool, the inventory's TLS and token. */
  cluster: ClusterClient;
  clusterName: string;
  spec: ClusterSpec;
  /** The node this instance runs on; undefined for `target: cluster`. */
  node?: ClusterNode | undefined;
  /** Playbook vars and registered results of earlier steps. */
  vars: Record<string, unknown>;
  /** Resolves a secret reference (env:, file:, prompt:, cmd:) and registers the value with the redactor. */
  resolveSecret(ref: string): Promise<string | string[]>;
  prompter: Prompter;
  /** A progress line for this step (redacted by the reporter). */
  log: (message: string) => void;
  /** Aborted on Ctrl-C: long waits must stop at the next safe point. */
  signal: AbortSignal;
  /** Where runs keep state (journals, locks); actions may keep files here. */
  stateDir: string;
  /** Opens a node's SSH host (ssh.host defaults to the host of api_addr; known_hosts, jump, sudo from the inventory). */
  openHost(node: NodeSpec, options?: { trustOnFirstUse?: boolean | undefined }): Promise<SshHost>;
  /**
   * The backup store a step names: `to` (a local directory, relative to the working directory),
   * `store` (one of the cluster's `stores:`), or the cluster's only store.
   */
  openStore(choice: { store?: string | undefined; to?: string | undefined }): BackupStore;
  /** The inventory file the run was planned from (actions that rewrite it: upgrade.immutable_verify). */
  inventoryFile?: string | undefined;
  /** The step's `confirm:` was answered (the cluster name typed or given with --confirm) before the run. */
  confirmed: boolean;
}

export interface ActionDefinition<A = Record<string, unknown>> {
  /** e.g. `vault.unseal`; the group before the dot is the folder in src/actions. */
  name: string;
  description: string;
  /** Checks the step's `with:` arguments. */
  schema: ZodType<A>;
  /** Does this action change the cluster? (plan marks it; dry runs skip it with "would ...") */
  changes: boolean;
  /**
   * The cluster lock this action needs: `exclusive` (default for actions that change something) or
   * `shared` for one that only reads the cluster though it writes elsewhere (a snapshot to a store),
   * so it may run beside other readers but never during a restore or an upgrade.
   */
  lock?: 'shared' | 'exclusive';
  /**
   * Destructive: replaces data, keys or tokens. A playbook step using it must carry `confirm:`, so
   * the cluster name is typed (or given with --confirm) before the run starts.
   */
  destructive?: boolean;
  /** Gates this action checks before changing anything, shown in the plan. */
  gates?: readonly string[];
  /** What the plan says this step will do, for this node and these arguments. */
  describe?(args: A, node: ClusterNode | undefined): string;
  run(ctx: ActionContext, args: A): Promise<Outcome>;
}

/** Helper so each action file gets its argument type inferred from its schema. */
export function defineAction<A>(def: ActionDefinition<A>): ActionDefinition<A> {
  return def;
}
