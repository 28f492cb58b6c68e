import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { CLI, NODE, waitFor } from '../helpers/cli.js';
import { ClusterClient } from '../../src/vault/cluster.js';

/**
 * A person at a terminal: the CLI runs in a real pseudo-terminal (tmux), asks for the key shares
 * masked, and the test types them. Shares reach tmux through a paste buffer fed on stdin, never as
 * a command-line argument. One flavour is enough here: the prompts are ours, not the server's.
 */
const flavour = flavorsUnderTest()[0]!;
const session = `vaultops-e2e-${process.pid}`;

function tmux(args: string[], input?: string): string {
  return execFileSync('tmux', args, { encoding: 'utf8', input, env: { ...process.env, TMUX: '' } });
}

function screen(): string {
  return tmux(['capture-pane', '-p', '-J', '-S', '-200', '-t', session]);
}

/** Types a secret into the pane without it ever being an argument of a process. */
function typeSecret(secret: string): void {
  tmux(['load-buffer', '-b', 'share', '-'], secret);
  tmux(['paste-buffer', '-d', '-b', 'share', '-t', session]);
  tmux(['send-keys', '-t', session, 'Enter']);
}

describe(`interactive unseal at a terminal (${flavour.flavor})`, () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ name: 'e-tty', flavor: flavour.flavor, version: flavour.version });
  });
  afterAll(async () => {
    try {
      tmux(['kill-session', '-t', session]);
    } catch {
      /* already gone */
    }
    await lab?.destroy();
  });

  it('asks for each share masked, unseals the sealed node, and shows the recap; no share is ever on screen', async () => {
    const cluster = new ClusterClient({
      name: 'e-tty',
      nodes: lab.lab.nodes.map((n) => ({ name: n.name, apiAddr: n.apiAddr })),
      tls: { caCert: lab.lab.caCert },
      token: lab.init.root_token,
    });
    const leader = await cluster.findLeader();
    await leader.client.seal();
    await waitFor('a new leader', async () =>
      (await cluster.probeAll()).some((p) => p.health?.state === 'active') ? true : undefined,
    );
    cluster.close();

    // The inventory without a share source: the shares must come from the person at the terminal.
    const inv = join(lab.stateDir, 'tty.yml');
    writeFileSync(inv, readFileSync(lab.inventory, 'utf8').replace(/^\s+keys: .*$/m, ''));
    const script = join(lab.stateDir, 'run.sh');
    writeFileSync(
      script,
      `#!/bin/sh\ncd "${lab.stateDir}"\nVAULTOPS_STATE_DIR="${lab.stateDir}" "${NODE}" "${CLI}" run unseal -i "${inv}" --yes\necho "EXIT=$?"\nsleep 120\n`,
      { mode: 0o700 },
    );
    tmux(['new-session', '-d', '-s', session, '-x', '160', '-y', '50', script]);

    for (let i = 1; i <= 3; i++) {
      await waitFor(
        `the prompt for share ${i}`,
        () => (screen().includes(`Unseal key share (${i} of 3)`) ? true : undefined),
        30_000,
        200,
      );
      typeSecret(lab.init.unseal_keys_b64[i - 1]!);
    }
    const final = await waitFor(
      'the run to end',
      () => {
        const s = screen();
        return /EXIT=\d+/.test(s) ? s : undefined;
      },
      120_000,
      500,
    );
    expect(final).toContain('EXIT=0');
    expect(final).toMatch(new RegExp(`${leader.node.name}\\s+:\\s+ok=1\\s+changed=1`));
    expect(final).toMatch(/\*{10,}/); // the masked echo of a share
    for (const s of lab.secrets) expect(final.includes(s), 'a secret is on the screen').toBe(false);
    // Nothing the CLI spawned carried a share in its arguments (tmux was fed through stdin).
    const children = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    for (const s of lab.secrets) expect(children.includes(s)).toBe(false);
  });

  it('with no TTY and --non-interactive, a missing share fails at once with exit 2 and never waits on stdin', async () => {
    const inv = join(lab.stateDir, 'tty.yml');
    const cluster = new ClusterClient({
      name: 'e-tty',
      nodes: lab.lab.nodes.map((n) => ({ name: n.name, apiAddr: n.apiAddr })),
      tls: { caCert: lab.lab.caCert },
      token: lab.init.root_token,
    });
    const leader = await cluster.findLeader();
    await leader.client.seal();
    cluster.close();
    // stdin is an open pipe that never ends: a CLI that read it would hang until the timeout.
    const child = spawn(NODE, [CLI, 'run', 'unseal', '-i', inv], {
      cwd: lab.stateDir,
      env: { ...lab.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(null);
      }, 30_000);
      child.on('close', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    expect(code).toBe(2);
    expect(err).toMatch(/nobody can be asked/);
    expect(err).toMatch(/--var unseal_keys=/);
    for (const s of lab.secrets) expect(err.includes(s)).toBe(false);
  });
});
