import { describe, expect, it } from 'vitest';
import { AUTOPILOT_REFRESH_MS, stableSince } from '../../../src/upgrade/node-waits.js';

/**
 * The stabilization pause after a node runs from when the node was seen caught up, so autopilot's
 * refresh lag is not paid on top of it, but never credits more than that one refresh.
 */
describe('the stabilization time counts from the catch-up, within one autopilot refresh', () => {
  const now = 100_000;

  it('counts from the catch-up when autopilot agreed within one refresh', () => {
    expect(stableSince(50_000, 51_500, now)).toBe(50_000);
  });

  it('credits at most one refresh when autopilot called the node unhealthy for longer', () => {
    expect(stableSince(40_000, 60_000, now)).toBe(60_000 - AUTOPILOT_REFRESH_MS);
  });

  it("counts from autopilot's verdict when that came first (it tolerates more trailing logs)", () => {
    expect(stableSince(62_000, 60_000, now)).toBe(60_000);
  });

  it("counts from autopilot's verdict when the node's own indexes were not readable", () => {
    expect(stableSince(undefined, 60_000, now)).toBe(60_000);
  });

  it('gives the whole pause when autopilot was never seen agreeing', () => {
    expect(stableSince(50_000, undefined, now)).toBe(now);
  });
});
