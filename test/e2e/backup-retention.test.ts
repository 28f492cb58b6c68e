import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/core/exit-codes.js';
import { MANIFEST_FORMAT, type Manifest } from '../../src/backup/stores/manifest.js';
import { CliRunner } from '../helpers/cli.js';
import { snapshotFixture } from '../helpers/snapshot-fixture.js';

/**
 * `backups prune` on a directory of snapshot files made here (valid Raft-snapshot tar.gz files with
 * the manifest and sidecar `vaultops backup` writes): what retention counts, orders and deletes.
 * No server is needed to decide retention, so none is started; the real `vaultops backup` followed
 * by its prune is covered in backup-snapshot.test.ts.
 */
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Made {
  name: string;
}

/** Writes `<name>`, `<name>.sha256` and `<name>.json` as vaultops does, finished `minutesAgo` ago (file mtime too). */
function put(
  dir: string,
  cluster: string,
  minutesAgo: number,
  o: { bytes?: Buffer; finishedAt?: Date; sidecar?: string; index?: number } = {},
): Made {
  const finished = o.finishedAt ?? new Date(Date.now() - minutesAgo * 60_000);
  const name = `${cluster}-${finished
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/[-:]/g, '')}.snap`;
  const bytes = o.bytes ?? snapshotFixture({ stateBytes: 5000 });
  const m: Manifest = {
    format: MANIFEST_FORMAT,
    file: name,
    reason: 'backup',
    cluster: { name: cluster },
    leader: { node: 'n1', api_addr: 'https://n1:8200' },
    raft: { index: o.index ?? 1234, term: 7, servers: [] },
    size: bytes.length,
    sha256: sha256(bytes),
    members: [],
    started_at: finished.toISOString(),
    finished_at: finished.toISOString(),
    duration_ms: 0,
  };
  const path = join(dir, name);
  writeFileSync(path, bytes, { mode: 0o600 });
  writeFileSync(`${path}.sha256`, o.sidecar ?? `${sha256(bytes)}  ${name}\n`);
  writeFileSync(`${path}.json`, JSON.stringify(m));
  const t = new Date(Date.now() - minutesAgo * 60_000);
  utimesSync(path, t, t);
  return { name };
}

describe('backups prune', () => {
  let root: string;
  let cli: CliRunner;
  let n = 0;
  const fresh = () => {
    const d = join(root, `d${n++}`);
    mkdirSync(d);
    return d;
  };
  const snaps = (d: string) =>
    readdirSync(d)
      .filter((f) => f.endsWith('.snap'))
      .sort();

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'vaultops-prune-'));
    cli = new CliRunner({ env: process.env, cwd: root });
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("--cluster a --keep-last 1 keeps a's newest and never touches b's, even when b's is newer", async () => {
    const d = fresh();
    const a1 = put(d, 'a', 120);
    const a2 = put(d, 'a', 60);
    const b1 = put(d, 'b', 10);
    const r = await cli.run(['backups', 'prune', '--to', d, '--cluster', 'a', '--keep-last', '1', '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(snaps(d)).toEqual([a2.name, b1.name].sort());
    const j = JSON.parse(r.stdout) as { remove: Array<{ name: string }>; keep: Array<{ name: string }> };
    expect(j.remove.map((x) => x.name)).toEqual([a1.name]);
    expect(j.keep.map((x) => x.name)).toEqual([a2.name]);
  });

  it('without --cluster, retention applies to each cluster on its own: every cluster keeps its newest', async () => {
    const d = fresh();
    const a1 = put(d, 'a', 120);
    const a2 = put(d, 'a', 60);
    const b1 = put(d, 'b', 30);
    const b2 = put(d, 'b', 10);
    const r = await cli.run(['backups', 'prune', '--to', d, '--keep-last', '1']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(snaps(d)).toEqual([a2.name, b2.name].sort());
    void a1;
    void b1;
  });

  it('a 1-byte file whose manifest claims it finished in 2099 is not kept as the newest; real backups stay and it is reported', async () => {
    const d = fresh();
    const real1 = put(d, 'a', 120);
    const real2 = put(d, 'a', 60);
    const fake = put(d, 'a', 0, { bytes: Buffer.from('x'), finishedAt: new Date('2099-01-01T00:00:00Z') });
    const r = await cli.run(['backups', 'prune', '--to', d, '--keep-last', '1']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(snaps(d)).toContain(real2.name);
    expect(snaps(d)).not.toContain(real1.name);
    expect(snaps(d)).toContain(fake.name);
    expect(r.stdout).toMatch(new RegExp(`${fake.name.replace(/\./g, '\\.')}.*(not counted|unverified)`, 'i'));
  });

  it('a newest file whose bytes match its manifest but is not a snapshot is never counted: the real ones stay', async () => {
    const d = fresh();
    const real1 = put(d, 'a', 120);
    const real2 = put(d, 'a', 60);
    const junk = put(d, 'a', 5, { bytes: Buffer.from('not a snapshot at all') });
    const r = await cli.run(['backups', 'prune', '--to', d, '--keep-last', '1', '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(snaps(d)).toEqual([real2.name, junk.name].sort());
    void real1;
    const j = JSON.parse(r.stdout) as {
      unverified: Array<{ name: string; why: string }>;
      keep: Array<{ name: string }>;
    };
    expect(j.unverified.map((u) => u.name)).toEqual([junk.name]);
    expect(j.unverified[0]!.why).toMatch(/gzip/);
    expect(j.keep.map((k) => k.name)).toEqual([real2.name]);
  });

  it('a file whose sha256 differs from its sidecar is not counted as a kept good backup', async () => {
    const d = fresh();
    const real1 = put(d, 'a', 120);
    const swapped = put(d, 'a', 60, { sidecar: `${'0'.repeat(64)}  whatever\n` });
    const r = await cli.run(['backups', 'prune', '--to', d, '--keep-last', '1', '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const j = JSON.parse(r.stdout) as {
      unverified: Array<{ name: string; why: string }>;
      keep: Array<{ name: string }>;
      remove: unknown[];
    };
    expect(j.unverified.map((u) => u.name)).toEqual([swapped.name]);
    expect(j.unverified[0]!.why).toMatch(/sidecar/);
    expect(j.keep.map((k) => k.name)).toEqual([real1.name]);
    expect(j.remove).toEqual([]);
    expect(snaps(d)).toEqual([real1.name, swapped.name].sort());
  });
});
