import { accessSync, constants } from 'node:fs';
import { GateError, InputError, VaultopsError } from '../core/errors.js';
import type { ClusterSpec, NodeSpec } from '../inventory/schema.js';
import type { Host } from '../ssh/host.js';
import type { ServiceManager } from '../ssh/services.js';
import type { ClusterClient } from '../vault/cluster.js';
import { readLocalConfig, renderConfig } from './config-rollout.js';

export interface MaintenancePreflight {
  cluster: ClusterClient;
  clusterName: string;
  spec: ClusterSpec;
  script?: string | undefined;
  config?: string | undefined;
  openHost(node: NodeSpec): Promise<Host>;
  serviceOn(host: Host, node: NodeSpec): ServiceManager;
}

/**
 * Everything checked before the first node is touched; throws InputError or GateError, changes
 * nothing. Returns what was checked, in words.
 */
export async function preflightMaintenance(o: MaintenancePreflight): Promise<string[]> {
  const seen: string[] = [];
  if (o.script !== undefined) {
    try {
      accessSync(o.script, constants.R_OK);
    } catch {
      throw new InputError(`Cannot read the script ${o.script}.`, { hint: 'Give --script the path of a local file.' });
    }
    seen.push(`script ${o.script} readable`);
  }
  if (o.config !== undefined) {
    const { text } = readLocalConfig(o.config);
    for (const n of o.spec.nodes) {
      renderConfig(
        text,
        { name: n.name, api_addr: n.api_addr, cluster_addr: n.cluster_addr ?? '', host: '' },
        o.config,
      );
      if (!n.service?.config)
        throw new InputError(`Node ${n.name} has no service.config: where its configuration file lives on the host.`, {
          hint: 'Add service: {config: /etc/vault.d/vault.hcl} to the node.',
        });
    }
    seen.push(`configuration ${o.config} readable`);
  }
  for (const n of o.spec.nodes)
    if (!n.ssh)
      throw new InputError(`Node ${n.name} has no ssh settings: maintenance must reach every host.`, {
        hint: 'Add ssh: {host, user, key_file, host_key} to the node in the inventory.',
      });
  const st = await o.cluster.status();
  if (st.health !== 'healthy' || (st.autopilot?.failureTolerance ?? 0) < 1)
    throw new GateError(`Cluster ${o.clusterName} is not healthy with failure tolerance >= 1; no node was touched.`, {
      details: st.problems.length ? st.problems : [`failure tolerance ${st.autopilot?.failureTolerance ?? 'unknown'}`],
      hint: 'Fix the problems above (`vaultops status -i INV`), then run again.',
    });
  seen.push(
    `all ${st.nodes.length} nodes reachable, unsealed, voters; autopilot healthy; failure tolerance ${st.autopilot?.failureTolerance}`,
  );
  for (const n of o.spec.nodes) {
    let host: Host;
    try {
      host = await o.openHost(n);
    } catch (e) {
      if (e instanceof InputError || !(e instanceof Error)) throw e;
      throw new GateError(`Node ${n.name} cannot be reached over SSH; no node was touched.`, {
        details: [e.message],
        hint:
          (e instanceof VaultopsError ? e.hint : undefined) ??
          'Start sshd on the host (or fix the ssh settings in the inventory), then run again.',
      });
    }
    try {
      if (!(await o.serviceOn(host, n).status()).running)
        throw new GateError(
          `Node ${n.name}: the service manager says the server is not running, although its API answers.`,
          { hint: "The inventory's service settings may not describe this host; fix them first." },
        );
    } finally {
      host.close();
    }
  }
  seen.push(`SSH to ${o.spec.nodes.map((n) => n.name).join(', ')}: host keys verified, servers running`);
  return seen;
}
