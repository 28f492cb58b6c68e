import { VaultopsError } from '../core/errors.js';
import type { ClusterClient } from '../vault/cluster.js';

/** The end state: one leader, every node on the target, `sys/version-history` lists it. */
export async function verifyUpgrade(
  cluster: ClusterClient,
  clusterName: string,
  target: string,
): Promise<{ leader: string; versionHistory: string[] }> {
  const after = await cluster.status();
  const active = after.nodes.filter((n) => n.leader);
  const behind = after.nodes.filter((n) => n.version !== target);
  if (active.length !== 1 || behind.length || after.health !== 'healthy') {
    throw new VaultopsError(`After the upgrade cluster ${clusterName} is not as expected.`, {
      details: [
        `active nodes: ${active.map((n) => n.name).join(', ') || 'none'}`,
        ...behind.map((n) => `${n.name} reports ${n.version ?? 'no version'}`),
        ...after.problems,
      ],
    });
  }
  const history = await versionHistory(cluster);
  if (!history.includes(target))
    throw new VaultopsError(`sys/version-history does not list ${target} (it has ${history.join(', ')}).`);
  return { leader: active[0]!.name, versionHistory: history };
}

/** `sys/version-history` (a LIST): versions in the order they were first run. */
export async function versionHistory(cluster: ClusterClient): Promise<string[]> {
  const leader = await cluster.findLeader();
  const res = await leader.client.raw('GET', '/sys/version-history?list=true');
  if (res.status !== 200) return [];
  const body = JSON.parse(res.body.toString('utf8')) as {
    data?: { keys?: string[]; key_info?: Record<string, { timestamp_installed?: string }> };
  };
  const keys = body.data?.keys ?? [];
  const info = body.data?.key_info ?? {};
  return [...keys].sort((a, b) =>
    (info[a]?.timestamp_installed ?? '').localeCompare(info[b]?.timestamp_installed ?? ''),
  );
}
