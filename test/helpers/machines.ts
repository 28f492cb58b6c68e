import { clusterFor, runInMachine, type LabRecord } from '../../src/lab/lab.js';
import { serverLayout } from '../../src/lab/machine-root.js';

/**
 * What the machine test files ask of a lab of machines (`lab up --hosts`), asked inside each machine
 * (nsenter, not over the network) or of the cluster's API. `nodes` defaults to the lab's nodes.
 */
type Nodes = readonly { name: string }[];

/** A command as root inside one machine; its stdout, trimmed. */
export async function inMachine(lab: LabRecord, node: string, command: string[]): Promise<string> {
  return (await runInMachine(lab, node, command)).stdout.trim();
}

/** systemd's main pid of a node's server unit: a new one means the unit was restarted. */
export function mainPid(lab: LabRecord, node: string): Promise<string> {
  return inMachine(lab, node, [
    'systemctl',
    'show',
    '-p',
    'ExecMainPID',
    '--value',
    `${serverLayout(lab.flavor).unit}.service`,
  ]);
}

/** mainPid of each node, in node order. */
export function mainPids(lab: LabRecord, nodes: Nodes = lab.nodes): Promise<string[]> {
  return Promise.all(nodes.map((n) => mainPid(lab, n.name)));
}

/** The server version each node reports on its API (sys/health), in node order. */
export async function versions(lab: LabRecord, nodes?: LabRecord['nodes']): Promise<(string | undefined)[]> {
  const c = clusterFor(nodes ? { ...lab, nodes } : lab);
  try {
    return (await c.status()).nodes.map((n) => n.version);
  } finally {
    c.close();
  }
}

/** The nodes holding a staged binary (`<binary>.vaultops-staged`): an upgrade's first change on a host. */
export async function staged(lab: LabRecord, nodes: Nodes = lab.nodes): Promise<string[]> {
  const file = `${serverLayout(lab.flavor).binary}.vaultops-staged`;
  const found: string[] = [];
  for (const n of nodes) if ((await runInMachine(lab, n.name, ['test', '-e', file])).code === 0) found.push(n.name);
  return found;
}
