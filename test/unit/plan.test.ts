import { describe, expect, it } from 'vitest';
import { loadActions } from '../../src/actions/registry.js';
import { parsePlaybook } from '../../src/playbook/load.js';
import { checkSelectors, makePlan, type LiveState } from '../../src/playbook/plan.js';
import { ProblemsError } from '../../src/core/problems-error.js';
import type { ClusterSpec } from '../../src/inventory/schema.js';

const actions = await loadActions();
const spec: ClusterSpec = {
  nodes: [
    { name: 'n1', api_addr: 'https://127.0.0.11:8200' },
    { name: 'n2', api_addr: 'https://127.0.0.12:8200' },
    { name: 'n3', api_addr: 'https://127.0.0.13:8200' },
  ],
  groups: { east: ['n3'] },
};
const nodes = spec.nodes.map((n) => ({ name: n.name, apiAddr: n.api_addr }));
const liveNode = (name: string, leader: boolean, sealed = false) => ({
  name,
  api_addr: '',
  zone: null,
  reachable: true,
  state: sealed ? 'sealed' : leader ? 'active' : 'standby',
  sealed,
  initialized: true,
  version: '2.7.2',
  leader,
});
const live: LiveState = {
  leader: 'n2',
  threshold: 3,
  sealed_count: 1,
  unreachable_count: 0,
  nodes: { n1: liveNode('n1', false, true), n2: liveNode('n2', true), n3: liveNode('n3', false) },
};

const pb = (steps: string) => parsePlaybook('p.yml', `name: p\nsteps:\n${steps}`, actions);

describe('the plan resolves targets against the live cluster, in order, with reasons for skips', () => {
  it('leader and standbys come from who leads now, not from the file', () => {
    const plan = makePlan({
      playbook: pb(
        '  - action: flow.wait\n    target: standbys\n    serial: 1\n    with: {seconds: 0}\n  - action: flow.wait\n    target: leader\n    with: {seconds: 0}\n',
      ),
      clusterName: 'c',
      spec,
      nodes,
      live,
      actions,
      vars: {},
    });
    expect(plan.instances.map((i) => `${i.stepId}@${i.node}`)).toEqual(['1@n1', '1@n3', '2@n2']);
    expect(plan.instances.map((i) => i.seq)).toEqual([1, 2, 3]);
  });

  it('a condition on live state is decided in the plan, with its reason', () => {
    const plan = makePlan({
      playbook: pb('  - action: vault.unseal\n    target: all\n    when: node.sealed\n    with: {keys: ["x"]}\n'),
      clusterName: 'c',
      spec,
      nodes,
      live,
      actions,
      vars: {},
    });
    expect(plan.instances.find((i) => i.node === 'n1')!.skip).toBeUndefined();
    expect(plan.instances.find((i) => i.node === 'n2')!.skip).toMatch(/condition is false now: node\.sealed/);
    expect(plan.instances.every((i) => i.changes)).toBe(true);
  });

  it('groups select their members; a selector that matches no node is a positioned problem', () => {
    const plan = makePlan({
      playbook: pb('  - action: flow.wait\n    target: east\n    with: {seconds: 0}\n'),
      clusterName: 'c',
      spec,
      nodes,
      live,
      actions,
      vars: {},
    });
    expect(plan.instances.map((i) => i.node)).toEqual(['n3']);
    const bad = pb(
      '  - action: flow.wait\n    target: node:n9\n    with: {seconds: 0}\n  - action: flow.wait\n    target: westt\n    with: {seconds: 0}\n',
    );
    try {
      checkSelectors(bad, spec, 'c');
      expect.unreachable();
    } catch (e) {
      const d = (e as ProblemsError).details;
      expect(d[0]).toMatch(/^p\.yml:4:\d+ target node:n9 matches no node of cluster c/);
      expect(d[1]).toMatch(/^p\.yml:7:\d+ target "westt" is neither .* \(did you mean "east"\?\)/);
    }
  });

  it('rescue and always steps are planned after the block and marked', () => {
    const plan = makePlan({
      playbook: pb(
        '  - block:\n      - action: flow.wait\n        with: {seconds: 0}\n    rescue:\n      - action: flow.wait\n        with: {seconds: 0}\n    always:\n      - action: flow.wait\n        with: {seconds: 0}\n',
      ),
      clusterName: 'c',
      spec,
      nodes,
      live,
      actions,
      vars: {},
    });
    expect(plan.instances.map((i) => [i.stepId, i.section])).toEqual([
      ['1.block.1', 'main'],
      ['1.rescue.1', 'rescue'],
      ['1.always.1', 'always'],
    ]);
  });
});
