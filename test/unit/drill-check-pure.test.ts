import { describe, expect, it } from 'vitest';
import { canaryValue, sha256Hex } from '../../src/vault/canaries.js';
import { renderHtml, renderMarkdown } from '../../src/drill/drill-report.js';
import type { DrillReport } from '../../src/drill/run-drill.js';
import { decodeProcAddr } from '../../src/check/host-checks.js';
import { versionStanding } from '../../src/check/versions.js';

describe('canary values are hashed as the inventory documents (printf %s "$value" | sha256sum)', () => {
  it('takes the named field, KV v2 nested data, or the only field', () => {
    expect(canaryValue({ data: { value: 'a', other: 'b' } }, { path: 'kv/x', field: 'value' })).toBe('a');
    expect(canaryValue({ data: { data: { v: 'x' }, metadata: { version: 1 } } }, { path: 'secret/data/x' })).toBe('x');
    expect(canaryValue({ data: { only: 'z' } }, { path: 'kv/x' })).toBe('z');
    expect(canaryValue({ data: { a: 1 } }, { path: 'kv/x', field: 'missing' })).toBeUndefined();
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe('host facts: listening sockets from /proc/net/tcp', () => {
  it('decodes IPv4, wildcard IPv6 and v4-mapped addresses', () => {
    expect(decodeProcAddr('0B00007F:2008')).toEqual({ ip: '127.0.0.11', port: 8200 });
    expect(decodeProcAddr('00000000000000000000000000000000:0016')).toEqual({ ip: '::', port: 22 });
    expect(decodeProcAddr('0000000000000000FFFF00000B00007F:2009')).toEqual({ ip: '127.0.0.11', port: 8201 });
  });
});

describe('version support against the releases vaultops knows', () => {
  it('says how far behind the newest patch of the line a version is, and unknown lines are unknown', () => {
    expect(versionStanding('openbao', '2.7.2')).toMatchObject({ known: true, newestOfLine: '2.7.2', newerLines: 0 });
    expect(versionStanding('openbao', '2.6.1')).toMatchObject({ known: true, newestOfLine: '2.6.2', newerLines: 1 });
    // Between two lines of the bundled list: nothing is known of 1.20.
    expect(versionStanding('vault', '1.20.3').known).toBe(false);
    // Older than every line of the list: out of support, not unknown.
    expect(versionStanding('vault', '1.5.0')).toMatchObject({ known: true, olderThanList: true, newerLines: 2 });
  });

  it('judges against the list it is given: 1.21.0 is behind once 1.21.4 is out', () => {
    const upstream = ['1.21.4', '1.21.3', '1.21.0', '1.20.7', '1.19.12'];
    expect(versionStanding('vault', '1.21.0', upstream)).toMatchObject({ newestOfLine: '1.21.4', newerLines: 0 });
    expect(versionStanding('vault', '1.20.7', upstream)).toMatchObject({ newestOfLine: '1.20.7', newerLines: 1 });
  });
});

describe('drill reports', () => {
  const report: DrillReport = {
    format: 'vaultops-drill/1',
    id: 'c-1',
    cluster: 'c',
    result: 'failed',
    started_at: '2026-01-01T00:00:00.000Z',
    finished_at: '2026-01-01T00:00:40.000Z',
    duration_ms: 40_000,
    failed_phase: 'canaries',
    error: 'Canary check failed after the restore: kv/c <differs>',
    exit_code: 1,
    rto_basis: 'not-reached',
    rpo_ms: 3_600_000,
    canaries: [{ path: 'kv/c', result: 'mismatch', expected_from: 'inventory' }],
    phases: [
      {
        name: 'verify',
        title: 'Verify backup',
        started_at: '2026-01-01T00:00:00.000Z',
        finished_at: '2026-01-01T00:00:01.000Z',
        duration_ms: 1000,
        result: 'ok',
      },
      {
        name: 'canaries',
        title: 'Read canaries',
        started_at: '2026-01-01T00:00:30.000Z',
        finished_at: '2026-01-01T00:00:31.000Z',
        duration_ms: 1000,
        result: 'failed',
      },
    ],
  };
  it('HTML is self-contained with an SVG timeline and escapes what it shows', () => {
    const html = renderHtml(report);
    expect(html).toContain('<svg');
    expect(html).toContain('&lt;differs&gt;');
    expect(html).not.toMatch(/<script|<link|src="http/);
  });
  it('Markdown names the failed phase, RPO and the canary by path', () => {
    const md = renderMarkdown(report);
    expect(md).toContain('FAILED');
    expect(md).toContain('**RPO: 60.0 min**');
    expect(md).toContain('| `kv/c` |  | mismatch | inventory |');
  });
});
