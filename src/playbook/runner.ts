import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import type { Prompter } from '../actions/types.js';
import { loadActions, type AnyAction } from '../actions/registry.js';
import { loadInventory, selectCluster } from '../inventory/load.js';
import type { ClusterSpec } from '../inventory/schema.js';
import { resolveAuth, type ResolvedAuth } from '../vault/auth-settings.js';
import { readVaultEnv } from '../vault/env.js';
import { parseDuration } from '../core/duration.js';
import { ClusterClient } from '../vault/cluster.js';
import { loadPlaybook, type Playbook } from './load.js';
import { checkSelectors, clusterScope, liveState, makePlan, type Plan } from './plan.js';
import { resolveInputs } from './inputs.js';
import { Journal, sha256, whoAmI, type RunMeta } from './journal.js';
import type { LockMode } from './lock.js';
import type { Door } from './door.js';
import { executePlan, type EngineProgress, type EngineResult } from './engine.js';
import type { Emit } from './events.js';

export interface PrepareOptions {
  playbookFile: string;
  inventoryFile: string;
  clusterName?: string | undefined;
  vars: Record<string, string>;
  prompter: Prompter;
  stateDir: string;
  /** `plan`: resolve nothing secret and ask nothing. */
  planOnly: boolean;
}

export interface Prepared {
  playbook: Playbook;
  plan: Plan;
  cluster: ClusterClient;
  clusterName: string;
  spec: ClusterSpec;
  actions: Map<string, AnyAction>;
  vars: Record<string, unknown>;
  secretNames: Set<string>;
  threshold: number | null;
  inventoryFile: string;
  givenVars: Record<string, string>;
}

/** Loads, checks, asks the cluster how it is now, resolves inputs and makes the plan. Changes nothing. */
export async function prepare(opts: PrepareOptions): Promise<Prepared> {
  const actions = await loadActions();
  const inv = loadInventory(opts.inventoryFile);
  const { name: clusterName, spec } = selectCluster(inv, opts.clusterName);
  const playbook = loadPlaybook(opts.playbookFile, actions);
  checkSelectors(playbook, spec, clusterName);
  const env = readVaultEnv();
  const tokenRef = spec.auth?.method === 'token' ? spec.auth.token : spec.token;
  // The plan runs nothing: a prompt: or cmd: reference is left for `run` (the plan says so below),
  // and a login whose secret is one of those is not attempted.
  const auth = await resolveAuth({
    auth: spec.auth,
    token: spec.token,
    skipInteractive: opts.planOnly,
    prompter: {
      askSecret: (label) =>
        opts.prompter.secret({ message: label, source: `the inventory's login (${tokenRef ?? spec.auth?.method})` }),
    },
  }).catch((e: unknown): ResolvedAuth => {
    if (opts.planOnly) return {};
    throw e;
  });
  const cluster = new ClusterClient({
    name: clusterName,
    nodes: spec.nodes.map((n) => ({ name: n.name, apiAddr: n.api_addr, clusterAddr: n.cluster_addr, zone: n.zone })),
    tls: {
      caCert: spec.tls?.ca_cert ?? env.tls.caCert,
      clientCert: spec.tls?.client_cert ?? env.tls.clientCert,
      clientKey: spec.tls?.client_key ?? env.tls.clientKey,
      serverName: spec.tls?.server_name ?? env.tls.serverName,
      skipVerify: spec.tls?.skip_verify ?? env.tls.skipVerify,
    },
    token: auth.token,
    login: auth.login,
    namespace: spec.namespace ?? env.namespace,
    timeoutMs: (spec.timeouts?.request ? parseDuration(spec.timeouts.request) : undefined) ?? env.timeoutMs ?? 10_000,
    retries: env.maxRetries ?? 1,
  });
  try {
    await cluster.login();
  } catch (e) {
    // A plan reads health without a token; `run` needs the login and stops here.
    if (!opts.planOnly) {
      cluster.close();
      throw e;
    }
  }
  try {
    const probes = await cluster.probeAll();
    let threshold: number | null = spec.unseal?.threshold ?? null;
    for (const p of probes) {
      if (!p.health) continue;
      const st = await cluster
        .client(p.node.name)
        .sealStatus()
        .catch(() => undefined);
      if (st?.t) {
        threshold = st.t;
        break;
      }
    }
    const live = liveState(cluster.nodes, probes, threshold);
    const scope = { cluster: clusterScope(clusterName, spec), live };
    const inputs = await resolveInputs({
      playbook,
      given: opts.vars,
      scope,
      prompter: opts.prompter,
      planOnly: opts.planOnly,
    });
    const shownVars: Record<string, unknown> = Object.fromEntries(
      Object.entries(inputs.vars).filter(([k]) => !inputs.secretNames.has(k)),
    );
    // The plan names what it does not know yet instead of printing "undefined".
    for (const name of inputs.missing) shownVars[name] = `<${name}>`;
    const plan = makePlan({ playbook, clusterName, spec, nodes: cluster.nodes, live, actions, vars: shownVars });
    if (opts.planOnly && tokenRef?.startsWith('cmd:'))
      plan.notes.push("the token was not read: `run` would run the inventory's token command (token: cmd:...) first");
    for (const name of inputs.missing) {
      plan.notes.push(
        `var ${name} has no value yet: \`run\` asks for it at a terminal; unattended, pass --var ${name}=${inputs.secretNames.has(name) ? 'env:NAME' : '...'}`,
      );
    }
    return {
      playbook,
      plan,
      cluster,
      clusterName,
      spec,
      actions,
      vars: inputs.vars,
      secretNames: inputs.secretNames,
      threshold,
      inventoryFile: opts.inventoryFile,
      givenVars: opts.vars,
    };
  } catch (e) {
    await cluster.release();
    throw e;
  }
}

export interface ExecuteOptions {
  emit: Emit;
  /** The door the run came through (locks held); its signal stops the run at the next safe point. */
  door: Door;
  /** Aborted by a second interrupt: cuts `always:` clean-up short too. */
  hardSignal?: AbortSignal | undefined;
  stateDir: string;
  prompter: Prompter;
  resume?: { runId: string; done: Map<string, string> } | undefined;
  /** Called once the journal is opened, before the first step. */
  onStart?: ((runId: string, journal: Journal) => void) | undefined;
  /** Called with the engine's live view of clean-up still owed (for a hard exit to report). */
  onProgress?: ((p: EngineProgress) => void) | undefined;
}

/**
 * The lock a plan needs: shared only for a plan whose changes are all of shared-lock actions (a
 * backup playbook), so backups run beside each other but never during a restore or an upgrade;
 * exclusive for everything else, read-only playbooks included (a conservative default: a run's
 * later steps may depend on nothing else touching the cluster meanwhile).
 */
export function lockModeOf(p: Prepared): LockMode {
  const lockOf = (action: string) => p.actions.get(action)?.lock ?? 'exclusive';
  const changing = p.plan.instances.filter((i) => i.changes);
  return changing.length > 0 && changing.every((i) => lockOf(i.action) === 'shared') ? 'shared' : 'exclusive';
}

/** Opens the journal and runs the plan behind an open door (see door.ts: locks, confirmation). */
export async function execute(p: Prepared, o: ExecuteOptions): Promise<EngineResult & { runId: string; ms: number }> {
  const runId = o.door.runId;
  const { user, host } = whoAmI();
  const started = Date.now();
  const journal = new Journal(o.stateDir, runId);
  if (o.resume) journal.append({ type: 'resume', ts: new Date().toISOString(), pid: process.pid, user });
  else {
    const meta: RunMeta = {
      id: runId,
      playbook: p.playbook.name,
      playbookFile: resolve(p.playbook.file),
      playbookSha256: sha256(p.playbook.text),
      inventory: resolve(p.inventoryFile),
      inventorySha256: sha256(readFileSync(p.inventoryFile)),
      cluster: p.clusterName,
      user,
      host,
      pid: process.pid,
      startedAt: new Date().toISOString(),
      givenVars: p.givenVars,
    };
    journal.append({ type: 'run', ts: meta.startedAt, ...meta, plan: p.plan });
  }
  o.onStart?.(runId, journal);
  o.emit({ type: 'run-start', runId, plan: p.plan, resumedFrom: o.resume?.runId });
  const result = await executePlan(
    {
      runId,
      playbook: p.playbook,
      plan: p.plan,
      actions: p.actions,
      cluster: p.cluster,
      clusterName: p.clusterName,
      spec: p.spec,
      vars: p.vars,
      prompter: o.prompter,
      journal,
      emit: o.emit,
      signal: o.door.signal,
      hardSignal: o.hardSignal,
      stateDir: o.stateDir,
      inventoryFile: p.inventoryFile,
      done: o.resume?.done,
      threshold: p.threshold,
    },
    o.onProgress,
  );
  const ms = Date.now() - started;
  const message = result.message
    ? `${result.message}${result.leftUndone.length ? `; left undone: ${result.leftUndone.join('; ')}` : ''}`
    : undefined;
  journal.append({
    type: 'end',
    ts: new Date().toISOString(),
    status: result.status,
    ...(message ? { message: redactor.redact(message) } : {}),
  });
  o.emit({ type: 'run-end', runId, status: result.status, recap: result.recap, message, ms });
  return { ...result, message, runId, ms };
}

/** Vars given as --var k=v (repeatable) and --vars-file FILE (YAML/JSON mapping). */
export function parseVarFlags(flags: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of flags ?? []) {
    const eq = f.indexOf('=');
    if (eq <= 0)
      throw new InputError(`--var ${f}: expected NAME=VALUE.`, {
        hint: 'e.g. --var min_failure_tolerance=1 or --var unseal_keys=env:UNSEAL_KEYS',
      });
    out[f.slice(0, eq)] = f.slice(eq + 1);
  }
  return out;
}
