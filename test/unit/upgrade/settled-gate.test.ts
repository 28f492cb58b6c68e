import { describe, expect, it } from 'vitest';
import { settledGate } from '../../../src/upgrade/node-waits.js';

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
