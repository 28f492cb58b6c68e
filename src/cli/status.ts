import { ExitCode } from '../core/exit-codes.js';
import type { ClusterStatus, NodeStatus } from '../vault/cluster.js';
import { out, table } from '../ui/output.js';
import { connectCluster } from './cluster-from-inventory.js';

interface StatusOptions {
  /** Without one: the cluster at VAULT_ADDR / BAO_ADDR. */
  inventory?: string;
  cluster?: string;
  json?: boolean;
}

export async function statusCommand(o: StatusOptions): Promise<void> {
  const { client } = await connectCluster(o.inventory, o.cluster);
  let st: ClusterStatus;
  try {
    st = await client.status();
  } finally {
    await client.release();
  }
  if (o.json) out.json(st);
  else printStatus(st);
  process.exitCode =
    st.health === 'healthy' ? ExitCode.ok : st.health === 'unreachable' ? ExitCode.unreachable : ExitCode.degraded;
}

export function printStatus(st: ClusterStatus): void {
  const ap = st.autopilot
    ? `autopilot ${st.autopilot.healthy ? 'healthy' : 'UNHEALTHY'}, failure tolerance ${st.autopilot.failureTolerance}, ${st.autopilot.voters} voters`
    : `autopilot unknown (${st.autopilotNote ?? 'not read'})`;
  out.line(
    `Cluster ${st.cluster}${st.clusterName ? ` (${st.clusterName})` : ''}: ${st.health.toUpperCase()}; leader ${st.leader ?? 'none'}; ${ap}`,
  );
  const rows = st.nodes.map((n) => [
    `${n.name}${n.leader ? ' *' : ''}`,
    n.address,
    n.version ?? '-',
    seal(n),
    n.state,
    n.voter === undefined ? '-' : n.voter ? 'yes' : 'no',
    n.lastContact ?? '-',
    n.lastIndex === undefined ? '-' : String(n.lastIndex),
    n.healthy === undefined ? '-' : n.healthy ? 'yes' : 'no',
  ]);
  for (const line of table(rows, [
    'NODE',
    'ADDRESS',
    'VERSION',
    'SEAL',
    'ROLE',
    'VOTER',
    'LAST CONTACT',
    'APPLIED INDEX',
    'HEALTHY',
  ]))
    out.line(line);
  if (st.problems.length) {
    out.line();
    for (const p of st.problems) out.line(`! ${p}`);
  }
  out.line('(* = leader)');
}

function seal(n: NodeStatus): string {
  if (!n.reachable) return 'unreachable';
  if (n.initialized === false) return 'uninitialized';
  return n.sealed ? 'sealed' : 'unsealed';
}
