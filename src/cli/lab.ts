import { relative } from 'node:path';
import { InputError } from '../core/errors.js';
import { checkVersion, ensureBinary, FLAVORS, parseFlavor } from '../lab/binaries.js';
import {
  currentPid,
  labDestroy,
  labDir,
  labDown,
  labState,
  labUp,
  listLabs,
  readLab,
  rebootHostsNode,
} from '../lab/lab.js';
import { hardenLab, productionLikeConfig } from '../lab/production-like.js';
import { LAB_SERVER_USER } from '../lab/run-as.js';
import { checkSameSeal, labsSealedBy, sealLabel, type SealRequest } from '../lab/transit-seal.js';
import type { LoadBalancerRequest } from '../lab/load-balancer.js';
import { loadInventory, selectCluster } from '../inventory/load.js';
import { planLoadBalancer, renderHaproxy } from '../lb/config.js';
import { out, progressPrinter, table } from '../ui/output.js';

interface LabOptions {
  name: string;
  json?: boolean;
  flavor?: string;
  version?: string;
  vaultBinary?: string;
  tls?: boolean;
  inventory?: string;
  ssh?: boolean;
  productionLike?: boolean;
  seal?: string;
  sealProvider?: string;
  hosts?: boolean;
  lb?: string;
  nodes?: string;
  node?: string;
}

function parseNodes(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 9)
    throw new InputError(`--nodes ${value} is not a node count.`, {
      hint: 'Use a whole number from 1 to 9 (3 or 5 for a cluster that survives a failure).',
    });
  return n;
}

/** --seal / --seal-provider; undefined keeps what a stopped lab has (Shamir for a new one). */
function parseSeal(o: LabOptions): SealRequest | undefined {
  if (o.seal === undefined && o.sealProvider === undefined) return undefined;
  if (o.seal === undefined || o.seal === 'transit') {
    if (o.seal === undefined)
      throw new InputError('--seal-provider needs --seal transit.', {
        hint: `Write \`--seal transit --seal-provider ${o.sealProvider}\`.`,
      });
    if (!o.sealProvider)
      throw new InputError(
        '--seal transit needs --seal-provider NAME: the running lab whose transit engine unseals this one.',
        {
          hint: 'Start a provider first (`vaultops lab up --name seal-provider`), then `vaultops lab up --name NAME --seal transit --seal-provider seal-provider`.',
        },
      );
    return { type: 'transit', provider: o.sealProvider };
  }
  if (o.seal === 'shamir' && o.sealProvider === undefined) return undefined;
  throw new InputError(`Unknown seal "${o.seal}"${o.seal === 'shamir' ? ' with --seal-provider' : ''}.`, {
    hint: 'Use --seal shamir (the default: unseal key shares) or --seal transit --seal-provider NAME.',
  });
}

export async function labFetchCommand(o: LabOptions): Promise<void> {
  const flavor = parseFlavor(o.flavor);
  const version = checkVersion(flavor, o.version);
  const started = Date.now();
  const bin = await ensureBinary({
    flavor,
    version,
    explicit: o.vaultBinary,
    onProgress: progressPrinter({ quiet: o.json === true }),
  });
  const seconds = (Date.now() - started) / 1000;
  if (o.json) out.json({ flavor, version, path: bin.path, source: bin.source, seconds });
  else
    out.line(
      `${FLAVORS[flavor].product} ${version}: ${bin.path} (${bin.source === 'fetched' ? `fetched in ${seconds.toFixed(1)} s` : `from ${bin.source}`})`,
    );
}

export async function labUpCommand(o: LabOptions): Promise<void> {
  const progress = progressPrinter({ quiet: o.json === true });
  const existing = readLab(o.name);
  const seal = parseSeal(o);
  // Without --flavor, an existing lab keeps its own; a different one asked for is refused, not ignored.
  const flavor = parseFlavor(o.flavor ?? existing?.flavor);
  if (existing && labState(existing) === 'running') {
    const wanted = o.version
      ? checkVersion(flavor, o.version)
      : existing.flavor === flavor
        ? existing.version
        : undefined;
    if (existing.flavor !== flavor || wanted !== existing.version) {
      throw new InputError(
        `Lab ${existing.name} is running ${FLAVORS[existing.flavor].product} ${existing.version}, not ${FLAVORS[flavor].product} ${wanted ?? FLAVORS[flavor].defaultVersion}.`,
        {
          hint: `Use another --name for a second lab, or \`vaultops lab destroy --name ${existing.name}\` first.`,
        },
      );
    }
    checkSameSeal(existing, seal);
    report(o, existing, 'already running; nothing to do');
    return;
  }
  const version = checkVersion(flavor, o.version ?? (existing?.flavor === flavor ? existing.version : undefined));
  const started = Date.now();
  const bin = await ensureBinary({ flavor, version, explicit: o.vaultBinary, onProgress: progress });
  if (o.productionLike && o.tls === false) throw new InputError('--production-like needs TLS; drop --no-tls.');
  const extraConfig = o.productionLike ? productionLikeConfig(flavor, labDir(o.name)) : undefined;
  const nodes = parseNodes(o.nodes);
  const { lab, created } = await labUp({
    name: o.name,
    flavor,
    version,
    binary: bin.path,
    tls: o.tls !== false,
    inventory: o.inventory,
    ssh: o.ssh === true,
    extraConfig,
    seal,
    runAs: o.productionLike ? LAB_SERVER_USER : undefined,
    hosts: o.hosts === true,
    loadBalancer: parseLoadBalancer(o.lb),
    ...(nodes ? { nodes } : {}),
    onProgress: progress,
  });
  if (created && o.productionLike) await hardenLab(lab, progress);
  report(o, lab, `${created ? 'created and started' : 'started'} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

function parseLoadBalancer(kind: string | undefined): LoadBalancerRequest | undefined {
  if (kind === undefined) return undefined;
  if (kind !== 'haproxy')
    throw new InputError(`--lb ${kind} is not a load balancer the lab runs.`, { hint: 'Use --lb haproxy.' });
  return labLoadBalancerRequest();
}

/**
 * The lab's HAProxy gets the configuration `vaultops lb config --format haproxy` writes for the
 * lab's inventory: what the lab runs is what an operator would deploy.
 */
export function labLoadBalancerRequest(): LoadBalancerRequest {
  return {
    kind: 'haproxy',
    render: (inventoryFile) => {
      const { name, spec } = selectCluster(loadInventory(inventoryFile), undefined);
      return renderHaproxy(planLoadBalancer(name, spec));
    },
  };
}

function report(o: LabOptions, lab: NonNullable<ReturnType<typeof readLab>>, what: string): void {
  if (o.json) {
    out.json({
      name: lab.name,
      flavor: lab.flavor,
      version: lab.version,
      state: labState(lab),
      seal: sealJson(lab),
      inventory: lab.inventory,
      nodes: lab.nodes.map((n) => ({ name: n.name, api_addr: n.apiAddr, pid: n.pid })),
      message: what,
    });
    return;
  }
  out.line(
    `Lab ${lab.name} (${FLAVORS[lab.flavor].product} ${lab.version}, ${lab.nodes.length} ${lab.machines ? 'machines' : 'nodes'}${lab.tls ? ', TLS' : ', no TLS'}${lab.seal ? `, auto-unseal by lab ${lab.seal.provider}'s transit engine` : ''}): ${what}.`,
  );
  if (lab.inventory) {
    const rel = relative(process.cwd(), lab.inventory);
    out.line(`Inventory: ${rel.startsWith('..') ? lab.inventory : rel}`);
    out.line(`Next: vaultops status -i ${rel.startsWith('..') ? lab.inventory : rel}`);
  }
}

export async function labStatusCommand(o: LabOptions): Promise<void> {
  const labs = o.name && o.name !== 'lab' ? [readLab(o.name)].filter((l) => l !== undefined) : listLabs();
  if (o.json) {
    out.json(
      labs.map((l) => ({
        name: l.name,
        flavor: l.flavor,
        version: l.version,
        state: labState(l),
        seal: sealJson(l),
        inventory: l.inventory,
        dir: l.dir,
        nodes: l.nodes.map((n) => ({ name: n.name, api_addr: n.apiAddr, pid: n.pid })),
        ...(l.newNodes?.length
          ? {
              new_nodes: l.newNodes.map((n) => ({
                name: n.name,
                api_addr: n.apiAddr,
                pid: currentPid(n),
                version: l.newVersion,
              })),
            }
          : {}),
      })),
    );
    return;
  }
  if (labs.length === 0) {
    out.line('No labs. Start one with `vaultops lab up` (OpenBao) or `vaultops lab up --flavor vault`.');
    return;
  }
  const rows = labs.map((l) => [
    l.name,
    `${l.flavor} ${l.version}`,
    labState(l),
    sealLabel(l),
    [
      ...l.nodes.map((n) => n.apiAddr.replace(/^https?:\/\//, '')),
      // New nodes of an immutable upgrade under way (`lab add-nodes`), with the version they run.
      ...(l.newNodes?.length
        ? [`+ new ${l.newVersion ?? ''}:`, ...l.newNodes.map((n) => n.apiAddr.replace(/^https?:\/\//, ''))]
        : []),
    ].join(' '),
    l.inventory ?? '',
  ]);
  for (const line of table(rows, ['LAB', 'SERVER', 'STATE', 'SEAL', 'NODES', 'INVENTORY'])) out.line(line);
}

export async function labDownCommand(o: LabOptions): Promise<void> {
  const { lab, stopped } = await labDown(o.name, progressPrinter({ quiet: o.json === true }));
  if (o.json) out.json({ name: o.name, exists: lab !== undefined, stopped });
  else if (!lab) out.line(`No lab named ${o.name}.`);
  else
    out.line(
      `Lab ${o.name}: ${stopped ? `stopped ${stopped} server process${stopped === 1 ? '' : 'es'}` : 'was not running'}; data kept (\`vaultops lab up --name ${o.name}\` starts it again).`,
    );
  if (lab && !o.json) warnDependents(o.name, 'down');
}

/** A provider's transit engine is what its dependants unseal with: say so when it goes away. */
function warnDependents(name: string, what: 'down' | 'destroyed'): void {
  const deps = labsSealedBy(name, listLabs());
  if (deps.length === 0) return;
  const names = deps.map((d) => d.name).join(', ');
  out.line(
    what === 'down'
      ? `Note: lab ${names} auto-unseal${deps.length === 1 ? 's' : ''} with ${name}'s transit engine: running nodes stay unsealed, but none can start again until \`vaultops lab up --name ${name}\`.`
      : `Note: lab ${names} was sealed by ${name}'s transit engine, now gone: ${deps.length === 1 ? 'it' : 'they'} can never unseal again; \`vaultops lab destroy --name NAME\` ${deps.length === 1 ? 'it' : 'them'}.`,
  );
}

function sealJson(
  lab: NonNullable<ReturnType<typeof readLab>>,
): { type: 'shamir' } | { type: 'transit'; provider: string; key_name: string } {
  return lab.seal ? { type: 'transit', provider: lab.seal.provider, key_name: lab.seal.keyName } : { type: 'shamir' };
}

export async function labDestroyCommand(o: LabOptions): Promise<void> {
  const { lab, stopped } = await labDestroy(o.name, progressPrinter({ quiet: o.json === true }));
  if (o.json) out.json({ name: o.name, existed: lab !== undefined, stopped });
  else
    out.line(
      lab
        ? `Lab ${o.name} destroyed (${stopped} process${stopped === 1 ? '' : 'es'} stopped; data, keys and inventory removed).`
        : `No lab named ${o.name}.`,
    );
  if (lab && !o.json) warnDependents(o.name, 'destroyed');
}

export async function labRebootCommand(o: LabOptions): Promise<void> {
  const lab = readLab(o.name);
  if (!lab) throw new InputError(`No lab named ${o.name}.`, { hint: 'See `vaultops lab status`.' });
  if (!lab.machines)
    throw new InputError(`Lab ${o.name} has no machines to reboot (it was made without --hosts).`, {
      hint: `\`vaultops lab up --hosts --name NAME\` makes a lab of systemd machines.`,
    });
  const started = Date.now();
  await rebootHostsNode(lab, o.node ?? '', progressPrinter({ quiet: o.json === true }));
  const seconds = (Date.now() - started) / 1000;
  if (o.json) out.json({ name: o.name, node: o.node, rebooted: true, seconds });
  else
    out.line(
      `Machine ${o.node} of lab ${o.name} rebooted in ${seconds.toFixed(1)} s; its server is up and sealed until it is unsealed.`,
    );
}
