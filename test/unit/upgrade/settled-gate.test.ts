import { describe, expect, it } from 'vitest';
import { GateError } from '../../../src/core/errors.js';
import { settledGate } from '../../../src/upgrade/node-waits.js';
import { gateBeforeNode } from '../../../src/upgrade/rolling.js';
import type { ClusterClient, ClusterStatus } from '../../../src/vault/cluster.js';

/** The upgrade gates (rolling and immutable) share this: a moment of autopilot disagreement is not a refusal. */
describe('an upgrade gate looks again only when autopilot alone disagrees', () => {
  it('returns the first clean answer after autopilot recovers', async () => {
    const answers = [['autopilot reports the cluster unhealthy', 'failure tolerance is 0'], []];
    let calls = 0;
    const r = await settledGate(async () => ({ problems: answers[calls++] ?? [] }), 5_000);
    expect(r.problems).toEqual([]);
    expect(calls).toBe(2);
  });

  it('returns at once when a node is unreachable, without waiting', async () => {
    let calls = 0;
    const started = Date.now();
    const r = await settledGate(
      async () => (calls++, { problems: ['n3 is unreachable: connect ECONNREFUSED', 'failure tolerance is 0'] }),
      5_000,
    );
    expect(calls).toBe(1);
    expect(Date.now() - started).toBeLessThan(500);
    expect(r.problems[0]).toContain('unreachable');
  });

  it('gives up after the settle time and returns what autopilot still says', async () => {
    let calls = 0;
    const r = await settledGate(
      async () => (calls++, { problems: ['autopilot reports the cluster unhealthy'] }),
      1_500,
    );
    expect(r.problems).toEqual(['autopilot reports the cluster unhealthy']);
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(calls).toBeLessThanOrEqual(3);
  });
});

/** The gate right before a node goes down (rolling upgrade, maintenance) looks again the same way. */
describe('the gate before a node', () => {
  const flapping = (problems: string[][]) => {
    let calls = 0;
    const status = async (): Promise<Partial<ClusterStatus>> => {
      const p = problems[Math.min(calls++, problems.length - 1)]!;
      const sealed = p.some((x) => x.endsWith('is sealed'));
      return {
        health: p.length ? 'degraded' : 'healthy',
        autopilot: { healthy: p.length === 0, failureTolerance: p.length ? 0 : 1, voters: 3 },
        nodes: sealed ? [{ name: 'n2', state: 'sealed' } as ClusterStatus['nodes'][number]] : [],
        problems: p,
      };
    };
    return { cluster: { status } as unknown as ClusterClient, clusterName: 'c1', calls: () => calls };
  };

  it('takes the node down once autopilot recovers from a late heartbeat', async () => {
    const o = flapping([['autopilot reports the cluster unhealthy', 'failure tolerance is 0: x'], []]);
    await expect(gateBeforeNode(o, { spec: { name: 'n3' } as never })).resolves.toBeUndefined();
    expect(o.calls()).toBe(2);
  });

  it('refuses at once when a node is sealed, naming it and the unseal runbook', async () => {
    const o = flapping([['n2 is sealed', 'failure tolerance is 0: x']]);
    const started = Date.now();
    const e = (await gateBeforeNode(o, { spec: { name: 'n3' } as never }).catch((x: unknown) => x)) as GateError;
    expect(e).toBeInstanceOf(GateError);
    expect(e.message).toContain('Not taking n3 down');
    expect(e.hint).toContain('vaultops run unseal');
    expect(o.calls()).toBe(1);
    expect(Date.now() - started).toBeLessThan(500);
  });
});
