import { describe, expect, it } from 'vitest';
import type { ServiceManager } from '../../src/ssh/services.js';
import { UpgradeHaltedError, type Member, type NodeUpgradeContext } from '../../src/upgrade/members.js';
import { startAndRejoin } from '../../src/upgrade/node-waits.js';
import type { ClusterClient } from '../../src/vault/cluster.js';

/**
 * A unit whose start fails (systemd: `systemctl start` exits non-zero when a Type=notify server
 * exits before it is ready) is a halt with the log's last lines, the error --rollback-on-failure
 * acts on. The machine test (machines-faults.test.ts) shows it end to end; this pins the contract
 * without a cluster: nothing here talks to a server, the start fails first.
 */
describe('startAndRejoin when the service does not start', () => {
  it('halts with UpgradeHaltedError carrying the journal lines', async () => {
    const service: ServiceManager = {
      kind: 'systemd',
      status: () => Promise.resolve({ running: false }),
      start: () => Promise.reject(new Error('systemctl start openbao on n2 failed: Job for openbao.service failed.')),
      stop: () => Promise.resolve(),
      logTail: () => Promise.resolve(['n2 bao[99]: error loading configuration from /etc/openbao/openbao.hcl']),
      describeStop: () => Promise.resolve('systemctl stop openbao (KillSignal SIGINT)'),
    };
    const m = { spec: { name: 'n2' }, service } as unknown as Member;
    const ctx = { cluster: { client: () => ({}) } as unknown as ClusterClient } as NodeUpgradeContext;
    const e = await startAndRejoin(ctx, m, '2.7.2', 1000, () => undefined).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UpgradeHaltedError);
    const h = e as UpgradeHaltedError;
    expect(h.node).toBe('n2');
    expect(h.message).toContain('Upgrade halted at n2: n2 did not start on 2.7.2');
    expect(h.details.join('\n')).toContain('error loading configuration');
  });
});
