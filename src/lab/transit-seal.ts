import { InputError, VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import type { ClusterClient } from '../vault/cluster.js';

/**
 * `lab up --seal transit --seal-provider NAME`: the lab's nodes auto-unseal with the transit engine
 * of another running lab (the provider), as production clusters do with a KMS. What lab.json keeps
 * is in `LabSeal` (no secret); the token the nodes use lives only in each node's server.hcl (0600):
 * it is never printed, logged, put in an error, in argv, in lab.json or in the inventory. A new
 * token is made on every `lab up` (the old one is revoked), so a periodic token that lapsed while
 * the lab was down never locks the lab out.
 */
export interface LabSeal {
  type: 'transit';
  /** The lab whose transit engine seals this one. */
  provider: string;
  keyName: string;
  mountPath: string;
  policy: string;
  /** Accessor of the token in the node configs: revoked when it is replaced or the lab destroyed. Not a secret. */
  tokenAccessor?: string | undefined;
}

export interface SealRequest {
  type: 'transit';
  provider: string;
}

/** A prepared seal: the record for lab.json and the stanza for the node configs (holds the token). */
export interface PreparedSeal {
  record: LabSeal;
  /** `seal "transit" { ... }` with the token: for the 0600 node configs only. */
  stanza: string;
}

/**
 * How this file reaches the provider lab. lab.ts hands it in: lab.ts imports this file, so this file
 * must not import lab.ts.
 */
export interface ProviderLabs<L extends ProviderLab = ProviderLab> {
  /** The lab record of `name`, if such a lab exists. */
  read(name: string): L | undefined;
  /** Whether every node of the lab runs (a provider must be fully up). */
  state(lab: L): 'running' | 'partial' | 'stopped';
  /** A client of the lab's cluster with its own admin token. */
  cluster(lab: L): ClusterClient;
}

/** The parts of a lab record this file reads. */
export interface ProviderLab {
  name: string;
  caCert?: string | undefined;
  seal?: LabSeal | undefined;
}

const MOUNT = 'transit/';
const PERIOD = '24h';

/** Refuses, before anything is created, a provider that is not a running lab. Exit 2. */
function requireProvider<L extends ProviderLab>(name: string, providerName: string, labs: ProviderLabs<L>): L {
  if (providerName === name)
    throw new InputError(`Lab ${name} cannot be sealed by its own transit engine.`, {
      hint: 'Start another lab first (`vaultops lab up --name seal-provider`) and pass --seal-provider seal-provider.',
    });
  const provider = labs.read(providerName);
  const state = provider ? labs.state(provider) : undefined;
  if (!provider || state !== 'running') {
    const what = provider ? `is ${state}` : 'does not exist';
    throw new InputError(
      `Lab ${name} is sealed by the transit engine of lab ${providerName}, which ${what}: its nodes could not unseal, so nothing was started. ` +
        `A transit seal needs its provider running first: ${provider ? `start it with \`vaultops lab up --name ${providerName}\`` : `start one with \`vaultops lab up --name ${providerName}\` (any flavour)`}, then run this command again.`,
      { hint: '`vaultops lab status` lists the labs on this machine, their state and their seal.' },
    );
  }
  return provider;
}

/**
 * On the provider, with its own token: enable transit (idempotent), create this lab's key, a policy
 * that can only encrypt and decrypt with that key, and an orphan periodic token with that policy.
 */
export async function prepareTransitSeal<L extends ProviderLab>(
  name: string,
  request: SealRequest,
  labs: ProviderLabs<L>,
  progress: (m: string) => void,
): Promise<PreparedSeal> {
  if (request.type !== 'transit')
    throw new InputError(`Unknown seal "${String(request.type)}".`, {
      hint: 'Use --seal transit --seal-provider NAME, or leave --seal out for Shamir keys.',
    });
  const provider = requireProvider(name, request.provider, labs);
  const keyName = `vaultops-lab-${name}`;
  const policy = `vaultops-lab-${name}-seal`;
  progress(
    `Preparing the transit seal on lab ${provider.name}: key ${keyName}, policy ${policy}, a token for this lab...`,
  );
  const cluster = labs.cluster(provider);
  try {
    const { node, client } = await cluster.findLeader();
    const mounts = await client.read<Record<string, { type?: string }> & { data?: Record<string, { type?: string }> }>(
      'sys/mounts',
    );
    const existing = (mounts.data ?? mounts)[MOUNT];
    if (!existing) await client.write(`sys/mounts/${MOUNT.slice(0, -1)}`, { type: 'transit' });
    else if (existing.type !== 'transit')
      throw new VaultopsError(
        `Lab ${provider.name} has a ${existing.type ?? 'non-transit'} engine at ${MOUNT}, not transit.`,
        { hint: `Use another provider lab, or disable that mount on ${provider.name}.` },
      );
    await client.write(`${MOUNT}keys/${keyName}`, {});
    await client.write(`sys/policies/acl/${policy}`, {
      policy: [
        `path "${MOUNT}encrypt/${keyName}" {`,
        '  capabilities = ["update"]',
        '}',
        `path "${MOUNT}decrypt/${keyName}" {`,
        '  capabilities = ["update"]',
        '}',
        '',
      ].join('\n'),
    });
    const created = await client.write<{ auth: { client_token: string; accessor: string } }>(
      'auth/token/create-orphan',
      {
        policies: [policy],
        period: PERIOD,
        renewable: true,
        display_name: `vaultops-lab-${name}-seal`,
      },
    );
    const token = created.auth.client_token;
    redactor.add(token);
    const tls =
      provider.caCert && node.apiAddr.startsWith('https:')
        ? [`  tls_ca_cert = ${JSON.stringify(provider.caCert)}`]
        : [];
    const stanza = [
      `# Auto-unseal by the transit engine of lab ${provider.name} (vaultops lab up --seal transit). The token is a secret: this file is 0600.`,
      'seal "transit" {',
      `  address = ${JSON.stringify(node.apiAddr)}`,
      `  token = ${JSON.stringify(token)}`,
      `  key_name = ${JSON.stringify(keyName)}`,
      `  mount_path = ${JSON.stringify(MOUNT)}`,
      ...tls,
      '}',
      '',
    ].join('\n');
    return {
      record: {
        type: 'transit',
        provider: provider.name,
        keyName,
        mountPath: MOUNT,
        policy,
        tokenAccessor: created.auth.accessor,
      },
      stanza,
    };
  } finally {
    cluster.close();
  }
}

/** Best effort: revokes a seal token on its provider by accessor (a provider that is down keeps it until its period lapses). */
export async function revokeSealToken<L extends ProviderLab>(
  seal: LabSeal | undefined,
  accessor: string | undefined,
  labs: ProviderLabs<L>,
): Promise<void> {
  if (!seal || !accessor) return;
  const provider = labs.read(seal.provider);
  if (!provider || labs.state(provider) !== 'running') return;
  const cluster = labs.cluster(provider);
  try {
    const { client } = await cluster.findLeader();
    await client.write('auth/token/revoke-accessor', { accessor });
  } catch {
    /* gone already, or the provider is busy: the token lapses after its period */
  } finally {
    cluster.close();
  }
}

/** A stopped lab keeps its seal; a different one asked for is refused, not ignored. */
export function checkSameSeal(lab: ProviderLab, request: SealRequest | undefined): void {
  if (!request) return;
  const have = lab.seal ? `a transit seal from lab ${lab.seal.provider}` : 'Shamir unseal keys';
  const want = `a transit seal from lab ${request.provider}`;
  if (lab.seal?.provider === request.provider) return;
  throw new InputError(`Lab ${lab.name} was made with ${have}, not ${want}.`, {
    hint: `Run \`vaultops lab up --name ${lab.name}\` without --seal to start it as it is, or \`vaultops lab destroy --name ${lab.name}\` first.`,
  });
}

/** "transit (lab NAME)" or "shamir", for `lab status`. */
export function sealLabel(lab: ProviderLab): string {
  return lab.seal ? `transit (lab ${lab.seal.provider})` : 'shamir';
}

/** Labs sealed by `name`'s transit engine (they cannot unseal after a restart while it is down). */
export function labsSealedBy<L extends ProviderLab>(name: string, labs: readonly L[]): L[] {
  return labs.filter((l) => l.seal?.provider === name);
}
