import { describe, expect, it } from 'vitest';
import { compareVersions } from '../../src/core/version.js';
import { parseGoDuration } from '../../src/core/duration.js';

describe('the version gate orders server versions as releases are ordered', () => {
  it('compares numerically, not as text', () => {
    expect(compareVersions('1.21.0', '1.19.0')).toBeGreaterThan(0);
    expect(compareVersions('2.10.0', '2.9.9')).toBeGreaterThan(0);
    expect(compareVersions('v2.7.2', '2.7.2')).toBe(0);
    expect(compareVersions('2.6.2', '2.7.2')).toBeLessThan(0);
  });

  it('puts a pre-release before its release and ignores build metadata', () => {
    expect(compareVersions('1.21.0-rc1', '1.21.0')).toBeLessThan(0);
    expect(compareVersions('1.21.0+ent', '1.21.0')).toBe(0);
  });
});

describe('autopilot durations are read as Go prints them', () => {
  it('parses single and compound units', () => {
    expect(parseGoDuration('10s')).toBe(10_000);
    expect(parseGoDuration('4s')).toBe(4000);
    expect(parseGoDuration('1m30s')).toBe(90_000);
    expect(parseGoDuration('500ms')).toBe(500);
    expect(parseGoDuration('1h0m0s')).toBe(3_600_000);
  });

  it('gives undefined for anything else', () => {
    expect(parseGoDuration('ten seconds')).toBeUndefined();
    expect(parseGoDuration('')).toBeUndefined();
    expect(parseGoDuration(undefined)).toBeUndefined();
  });
});
