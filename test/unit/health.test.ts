import { describe, expect, it } from 'vitest';
import { healthState, isServing, type HealthBody, type NodeState } from '../../src/vault/health.js';

// Bodies as real servers send them for each situation (decision order and fields).
const activeBody: HealthBody = {
  initialized: true,
  sealed: false,
  standby: false,
  performance_standby: false,
  replication_dr_mode: 'disabled',
  version: '2.7.2',
};
const standbyBody: HealthBody = { ...activeBody, standby: true };

describe('/sys/health status codes map to node states', () => {
  const cases: Array<[number, HealthBody, NodeState]> = [
    [200, activeBody, 'active'],
    [429, standbyBody, 'standby'],
    [472, { ...activeBody, replication_dr_mode: 'secondary' }, 'dr-secondary'],
    [473, { ...standbyBody, performance_standby: true }, 'perf-standby'],
    [474, { ...standbyBody, ha_connection_healthy: false }, 'ha-unhealthy'],
    [501, { initialized: false, sealed: true, standby: true }, 'uninitialized'],
    [503, { initialized: true, sealed: true, standby: true }, 'sealed'],
    [530, { initialized: true, sealed: true, removed_from_cluster: true }, 'removed'],
  ];
  it.each(cases)('HTTP %i -> %s', (code, body, state) => {
    expect(healthState(code, body)).toBe(state);
  });

  it('a node started in recovery mode (no health endpoint, an error that says so) is "recovery"', () => {
    const text = '{"errors":["Vault is in recovery mode"]}';
    expect(healthState(400, {}, text)).toBe('recovery');
  });

  it('an unknown code with nothing telling in the body is "unknown", never "active"', () => {
    expect(healthState(500, {}, '{"errors":["internal error"]}')).toBe('unknown');
    expect(healthState(418, {})).toBe('unknown');
  });
});

describe("when the status code is rewritten (a proxy, the Go API's 299), the body decides", () => {
  it.each<[string, HealthBody, NodeState]>([
    ['uninitialised', { initialized: false }, 'uninitialized'],
    ['removed', { initialized: true, removed_from_cluster: true, sealed: true }, 'removed'],
    ['sealed', { initialized: true, sealed: true }, 'sealed'],
    ['standby', standbyBody, 'standby'],
    ['performance standby', { ...standbyBody, performance_standby: true }, 'perf-standby'],
    ['DR secondary', { ...activeBody, replication_dr_mode: 'secondary' }, 'dr-secondary'],
    ['active', activeBody, 'active'],
  ])('299 with a %s body', (_what, body, state) => {
    expect(healthState(299, body)).toBe(state);
  });

  it('a 200 whose body says sealed or standby is not reported active (proxies that turn every code into 200)', () => {
    expect(healthState(200, { initialized: true, sealed: true, standby: true })).toBe('sealed');
    expect(healthState(200, { initialized: false, sealed: true })).toBe('uninitialized');
    expect(healthState(200, standbyBody)).toBe('standby');
  });

  it('the decision order of the server holds for the body too: uninitialised before removed before sealed', () => {
    expect(healthState(299, { initialized: false, removed_from_cluster: true, sealed: true })).toBe('uninitialized');
    expect(healthState(299, { initialized: true, removed_from_cluster: true, sealed: true })).toBe('removed');
  });
});

describe('which states serve requests', () => {
  it('active, standby and perf standby serve; the others do not', () => {
    const all: NodeState[] = [
      'active',
      'standby',
      'perf-standby',
      'dr-secondary',
      'ha-unhealthy',
      'sealed',
      'uninitialized',
      'removed',
      'recovery',
      'unknown',
    ];
    expect(all.filter(isServing)).toEqual(['active', 'standby', 'perf-standby']);
  });
});
