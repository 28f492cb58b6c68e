import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labSecrets, runProcess, type Ran } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

/**
 * `npm run image` builds a FROM scratch image of vaultops with podman (installed by the test set-up),
 * and `vaultops backup` runs from that image against a real lab, as a Kubernetes CronJob would run it.
 *
 * How containers run on this machine: its sandbox mounts cgroup v1 next to an empty cgroup v2 (crun
 * refuses "hybrid mode", runc with the cgroupfs manager works) and withholds CAP_SYS_RESOURCE (a
 * container may keep the host's limits, not raise them: podman's default RLIMIT_NOFILE/NPROC are
 * refused). So the runs below ask for runc, cgroupfs and limits no higher than this process's. On an
 * ordinary host `podman run IMAGE` needs none of that.
 */
const ROOT = join(import.meta.dirname, '..', '..');
const TAG = `localhost/vaultops:test-${process.pid}`;
const hard = (flag: string) => Number(execFileSync('bash', ['-c', `ulimit -H${flag}`], { encoding: 'utf8' }).trim());
const podman = (args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Ran> =>
  runProcess('podman', ['--runtime', 'runc', '--cgroup-manager', 'cgroupfs', ...args], env);
const limits = () => {
  const nofile = hard('n');
  const nproc = Math.min(hard('u'), 4096);
  return ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`];
};

describe('the container image (npm run image)', () => {
  const { flavor, version } = flavorsUnderTest()[0]!;
  let t: TestLab;
  const outputs: string[] = [];

  beforeAll(async () => {
    const built = spawnSync('bash', ['scripts/image.sh', '--tag', TAG], { cwd: ROOT, encoding: 'utf8' });
    expect(built.status, built.stderr).toBe(0);
    t = await startTestLab({ name: 'f-image', flavor, version });
  }, 600_000);
  afterAll(async () => {
    for (const o of outputs) for (const s of t ? labSecrets(t.lab.initFile) : []) expect(o).not.toContain(s);
    await t?.destroy();
    spawnSync('podman', ['rmi', '-f', TAG]);
  }, 120_000);

  it('is built FROM scratch, runs as an unprivileged user, and its vaultops answers --version', async () => {
    const inspect = await podman(['image', 'inspect', TAG, '--format', '{{.Config.User}} {{len .RootFS.Layers}}']);
    expect(inspect.code, inspect.stderr).toBe(0);
    // One layer: the root tree scripts/image.sh laid out, nothing from a base image.
    expect(inspect.stdout.trim()).toBe('65532:65532 1');
    const r = await podman(['run', '--rm', '--network', 'none', ...limits(), TAG, '--version']);
    expect(r.code, r.stderr).toBe(0);
    const pkg = (await import(join(ROOT, 'package.json'), { with: { type: 'json' } })) as {
      default: { version: string };
    };
    expect(r.stdout.trim()).toBe(`vaultops ${pkg.default.version}`);
  });

  it('`vaultops backup` from the image writes a verified snapshot of a real cluster', async () => {
    const dir = t.stateDir;
    const to = join(dir, 'from-image');
    // The lab's files (inventory, token, CA) at the same paths inside; root only because the lab's
    // files are root's 0600: a real deployment gives the image's user (65532) read access instead.
    const r = await podman([
      'run',
      '--rm',
      '--network',
      'host',
      '--user',
      '0:0',
      ...limits(),
      '-v',
      `${dir}:${dir}`,
      '-e',
      `VAULTOPS_STATE_DIR=${join(dir, 'state-in-image')}`,
      TAG,
      'backup',
      '-i',
      t.inventory,
      '--to',
      to,
      '--non-interactive',
    ]);
    outputs.push(r.stdout, r.stderr);
    expect(r.code, r.stderr).toBe(0);
    const snaps = readdirSync(to).filter((f) => f.endsWith('.snap'));
    expect(snaps).toHaveLength(1);
    // Verified again here, outside the image, by the vaultops under test.
    const v = await runProcess(
      process.execPath,
      [join(ROOT, 'bin', 'vaultops.js'), 'backups', 'verify', join(to, snaps[0]!)],
      t.env,
    );
    outputs.push(v.stdout, v.stderr);
    expect(v.code, v.stderr).toBe(0);
  });
});
