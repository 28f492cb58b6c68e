import type { ZodType } from 'zod';
import type { ClusterClient, ClusterNode } from '../vault/cluster.js';
import type { ClusterSpec } from '../inventory/schema.js';

/** What happened to one step on one node. Discriminated so reporters and the recap can count. */
export type Outcome =
  | { status: 'ok'; message?: string; data?: unknown }
  | { status: 'changed'; message?: string; data?: unknown }
  | { status: 'skipped'; reason: string; data?: unknown }
  | { status: 'failed'; message: string; details?: string[]; data?: unknown }
  | { status: 'unreachable'; message: string };

export type OutcomeStatus = Outcome['status'];

/** Questions go through here; the CLI decides who answers (a person at a TTY, or flags/env in CI). */
export interface Prompter {
  readonly interactive: boolean;
  /** A masked secret. Unattended prompters throw an InputError naming `source` (flag, env var or file). */
  secret(question: { message: string; source: string }): Promise<string>;
  /** A typed confirmation: the person must type `expected` (e.g. the cluster name). */
  confirm(question: { message: string; expected: string; source: string }): Promise<void>;
  /** A plain (visible) answer, e.g. a var value. Unattended prompters throw naming `source`. */
  text(question: { message: string; source: string }): Promise<string>;
  /** Pick one of several. */
  select<T extends string>(question: { message: string; choices: readonly T[]; default?: T; source: string }): Promise<T>;
}

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
  log(message: string): void;
  /** Aborted on Ctrl-C: long waits must stop at the next safe point. */
  signal: AbortSignal;
  /** Where runs keep state (journals, locks); actions may keep files here. */
  stateDir: string;
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
