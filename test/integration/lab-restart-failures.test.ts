import { spawn } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLab } from '../../src/lab/lab.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { CLI, CliRunner, labSecrets, NODE, processesUnder, waitFor } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

const short = { openbao: 'bao', vault: 'vault' } as const;

describe.each(flavorsUnderTest())(
  '`lab up` of a stopped $flavor $version lab that cannot start',
  ({ flavor, version }) => {
    const name = `a-ports-${short[flavor]}`;
    let t: TestLab;
    let cli: CliRunner;
    let secrets: string[];
    let blocker: Server | undefined;

    beforeAll(async () => {
      t = await startTestLab({ name, flavor, version });
      cli = new CliRunner({ env: t.env, cwd: t.stateDir });
      secrets = labSecrets(t.lab.initFile);
    });
    afterAll(async () => {
      await new Promise((r) => (blocker ? blocker.close(r) : r(undefined)));
      await t?.destroy();
    });

    it('`lab down` stops every server process of the lab and keeps its data', async () => {
      const r = await cli.run(['lab', 'down', '--name', name]);
      expect(r.code).toBe(ExitCode.ok);
      expect(r.stdout).toContain(`Lab ${name}: stopped 3 server processes; data kept`);
      expect(processesUnder(t.lab.dir)).toEqual([]);
      expect(readLab(name, t.env)?.nodes.map((n) => n.pid)).toEqual([undefined, undefined, undefined]);
    });

    it('fails with a clear error naming the port and the node, and leaves nothing running', async () => {
      const n2 = t.lab.nodes[1]!;
      blocker = createServer();
      await new Promise<void>((resolve, reject) => {
        blocker!.once('error', reject);
        blocker!.listen({ host: n2.ip, port: 8200, exclusive: true }, resolve);
      });
      const r = await cli.run(['lab', 'up', '--name', name, '--flavor', flavor, '--version', version]);
      expect(r.code).not.toBe(ExitCode.ok);
      expect(r.stderr).toContain(`error: Port ${n2.ip}:8200 for node n2 of lab ${name} is already in use.`);
      expect(r.stderr).toMatch(/hint: Find the process with `ss -ltnp/);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(processesUnder(t.lab.dir)).toEqual([]);
      const st = await cli.run(['lab', 'status', '--name', name, '--json']);
      expect((JSON.parse(st.stdout) as Array<{ state: string }>)[0]?.state).toBe('stopped');
    });

    it('starts again, healthy, once the port is free', async () => {
      await new Promise((r) => blocker!.close(r));
      blocker = undefined;
      const r = await cli.run(['lab', 'up', '--name', name, '--flavor', flavor, '--version', version]);
      expect(r.code).toBe(ExitCode.ok);
      expect(r.stdout).toMatch(new RegExp(`Lab ${name} .*: started in [\\d.]+ s\\.`));
      const s = await cli.run(['status', '-i', t.inventory]);
      expect(s.code).toBe(ExitCode.ok);
      expect(s.stdout).toContain('HEALTHY');
      expect(processesUnder(t.lab.dir)).toHaveLength(3);
    });

    it('a node that does not start: the error shows the last lines of its log and nothing is left running', async () => {
      expect((await cli.run(['lab', 'down', '--name', name])).code).toBe(ExitCode.ok);
      const n3 = t.lab.nodes[2]!;
      const key = join(t.lab.dir, 'tls', 'n3.key');
      copyFileSync(key, `${key}.good`);
      writeFileSync(key, 'not a key\n');
      try {
        const r = await cli.run(['lab', 'up', '--name', name, '--flavor', flavor, '--version', version]);
        expect(r.code).not.toBe(ExitCode.ok);
        expect(r.stderr, r.stderr).toMatch(
          new RegExp(`error: Node n3 of lab ${name} (exited right after it was started|did not answer)`),
        );
        expect(r.stderr).toContain(`last lines of ${n3.log}:`);
        expect(r.stderr).not.toMatch(/^\s+at /m);
        expect(processesUnder(t.lab.dir)).toEqual([]);
      } finally {
        copyFileSync(`${key}.good`, key);
      }
    });

    it('`lab destroy` after a `lab up --ssh` killed once its sshds started: no sshd is left running', async () => {
      const killed = `${name}-k`;
      const dir = join(t.stateDir, 'labs', killed);
      const child = spawn(
        NODE,
        [CLI, 'lab', 'up', '--ssh', '--name', killed, '--flavor', flavor, '--version', version],
        {
          env: t.env,
          stdio: ['ignore', 'ignore', 'ignore'],
        },
      );
      const exited = new Promise((r) => child.once('close', r));
      try {
        // sshd names its directory on its command line: three of them means all three were started.
        await waitFor(
          'the three sshds of the lab',
          () => {
            const sshds = processesUnder(dir).filter((p) =>
              readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('sshd'),
            );
            return sshds.length === 3 ? sshds : undefined;
          },
          60_000,
          20,
        );
      } finally {
        child.kill('SIGKILL');
        await exited;
      }
      expect(processesUnder(dir).length).toBeGreaterThan(0);
      const r = await cli.run(['lab', 'destroy', '--name', killed]);
      expect(r.code).toBe(ExitCode.ok);
      expect(processesUnder(dir)).toEqual([]);
    });

    it('no CLI output of this file contains an unseal key (base64 or hex) or the root token', () => {
      cli.expectNoSecrets(secrets);
    });
  },
);
