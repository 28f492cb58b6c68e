import { InputError } from '../core/errors.js';
import { writeFileAtomicSync } from '../core/atomic-write.js';
import { loadInventory, selectCluster } from '../inventory/load.js';
import { planLoadBalancer, renderLbConfig, type LbFormat, type LbMode } from '../lb/config.js';
import { err } from '../ui/output.js';

interface LbConfigOptions {
  inventory: string;
  cluster?: string;
  format: string;
  mode?: string;
  output?: string;
}

/** `vaultops lb config`: reads the inventory only; nothing on the cluster is touched. */
export function lbConfigCommand(o: LbConfigOptions): void {
  if (o.format !== 'haproxy' && o.format !== 'nginx')
    throw new InputError(`--format ${o.format} is not a load balancer this command writes.`, {
      hint: 'Use --format haproxy or --format nginx.',
    });
  if (o.mode !== undefined && o.mode !== 'active' && o.mode !== 'read')
    throw new InputError(`--mode ${o.mode} is not a mode.`, {
      hint: 'Use --mode active (only the active node gets traffic) or --mode read (unsealed standbys too).',
    });
  const inv = loadInventory(o.inventory);
  const { name, spec } = selectCluster(inv, o.cluster);
  const plan = planLoadBalancer(name, spec, o.mode as LbMode | undefined);
  const text = renderLbConfig(o.format as LbFormat, plan);
  if (o.format === 'nginx')
    err.line(
      'warning: nginx open source has no active health checks: sealed and uninitialised nodes (and standbys in active mode) stay in rotation; see the comments in the configuration, or use --format haproxy.',
    );
  if (o.output) {
    writeFileAtomicSync(o.output, text, 0o644);
    err.line(`Wrote ${o.output} (${o.format}, mode ${plan.mode}, ${plan.servers.length} nodes).`);
  } else process.stdout.write(text);
}
