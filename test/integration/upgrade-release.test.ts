import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBinary, FLAVORS } from '../../src/lab/binaries.js';
import { clusterFor } from '../../src/lab/lab.js';
import { upgradePairs } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { runProcess, type Ran } from '../helpers/cli.js';
import {
  makeSigningKeys,
  serveMirror,
  writeRelease,
  type Mirror,
  type SigningKeys,
} from '../helpers/release-mirror.js';

/**
 * `vaultops upgrade --version X --release-mirror URL` (the built CLI) against a real 3-node lab
 * reached over its real sshd: the release comes from a local mirror laid out like the vendor's
 * site, holding the real server binary in the vendor's archive format, its checksum list signed by
 * a key this test makes. A refused release leaves every node untouched; a good one upgrades.
 */
const pairs = upgradePairs();

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'vaultops.js');
const NODE = process.execPath;

describe.each(pairs)(
  'upgrade --version of a $flavor cluster $from -> $to from a signed mirror',
  ({ flavor, from, to }) => {
    let t: TestLab;
    let keys: SigningKeys;
    let root: string;
    let mirror: Mirror;
    const outputs: string[] = [];
    const upgrade = async (extra: string[]): Promise<Ran> => {
      const r = await runProcess(
        NODE,
        [
          BIN,
          'upgrade',
          '-i',
          t.inventory,
          '--non-interactive',
          '--confirm',
          t.lab.name,
          '--wait-timeout',
          '90',
          ...extra,
        ],
        { ...t.env, VAULT_TOKEN: '', BAO_TOKEN: '' },
      );
      outputs.push(r.stdout, r.stderr);
      return r;
    };
    const versions = async () => {
      const c = clusterFor(t.lab);
      try {
        return (await c.status()).nodes.map((n) => n.version);
      } finally {
        c.close();
      }
    };
    const staged = () =>
      t.lab.nodes
        .filter((n) => existsSync(join(n.dir, 'bin', `${FLAVORS[flavor].binaryName}.vaultops-staged`)))
        .map((n) => n.name);

    beforeAll(async () => {
      const newBinary = (await ensureBinary({ flavor, version: to })).path;
      keys = makeSigningKeys();
      root = mkdtempSync(join(tmpdir(), 'vaultops-mirror-'));
      writeRelease(root, keys, { flavor, version: to, binary: newBinary, fast: true });
      mirror = await serveMirror(root);
      t = await startTestLab({ name: `c-rel-${flavor}`, flavor, version: from, ssh: true });
    }, 300_000);
    afterAll(async () => {
      await t?.destroy();
      await mirror?.close();
      keys?.cleanup();
      if (root) rmSync(root, { recursive: true, force: true });
    });

    it('refuses a release signed by another key than --release-key before downloading or staging anything', async () => {
      mirror.requests.length = 0;
      const r = await upgrade(['--version', to, '--release-mirror', mirror.url, '--release-key', keys.otherKey]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/is signed by key [0-9A-F]{16}, not by .*other\.asc: refused, nothing staged/);
      expect(mirror.requests.some((p) => /\.(zip|tar\.gz)$/.test(p))).toBe(false);
      expect(staged()).toEqual([]);
      expect(await versions()).toEqual([from, from, from]);
    });

    it('refuses --version together with --binary (exit 2), and a mirror that does not answer (exit 3)', async () => {
      const both = await upgrade(['--version', to, '--binary', '/bin/true', '--sha256', 'a'.repeat(64)]);
      expect(both.code).toBe(2);
      expect(both.stderr).toContain('--version fetches the release itself');
      // A port that was free a moment ago: nothing listens there.
      const port = await new Promise<number>((resolve) => {
        const s = createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as AddressInfo).port;
          s.close(() => resolve(p));
        });
      });
      const mirrorDown = `http://127.0.0.1:${port}`;
      const down = await upgrade(['--version', to, '--release-mirror', mirrorDown, '--release-key', keys.vendorKey]);
      expect(down.code).toBe(3);
      expect(down.stderr).toContain(`Cannot fetch ${mirrorDown}/`);
      expect(down.stderr).toContain('ECONNREFUSED');
      expect(down.stderr).toContain('--release-mirror');
      expect(staged()).toEqual([]);
    });

    it('upgrades every node from the verified release: signature, then archive sha256, then the usual gates', async () => {
      const r = await upgrade(['--version', to, '--release-mirror', mirror.url, '--release-key', keys.vendorKey]);
      expect(r.stderr).toContain(`signed by ${keys.vendorFingerprint}`);
      expect(r.stderr).toMatch(/: sha256 [0-9a-f]{64} matches the signed checksum list/);
      expect(r.stderr).toContain(`release: ${flavor} ${to} linux/amd64 from ${mirror.url}/`);
      expect(r.code).toBe(0);
      expect(await versions()).toEqual([to, to, to]);
      // The binary every node runs now is the one inside the vendor archive, byte for byte.
      const want = readFileSync((await ensureBinary({ flavor, version: to })).path);
      for (const n of t.lab.nodes)
        expect(readFileSync(join(n.dir, 'bin', FLAVORS[flavor].binaryName)).equals(want)).toBe(true);
    }, 400_000);

    it('never printed a secret of the lab', () => {
      const all = outputs.join('\n');
      for (const s of t.secrets) expect(all).not.toContain(s);
    });
  },
);
