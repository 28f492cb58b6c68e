import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';
import { RootGeneration, WrongShareError } from '../../src/ceremony/generate-root.js';
import { CeremonyLostError, CeremonySession } from '../../src/ceremony/session.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { VaultApiError } from '../../src/core/errors.js';
import { VaultClient } from '../../src/vault/client.js';
import { generateRootCancel } from '../../src/vault/ceremonies.js';
import { labSecrets, waitFor } from '../helpers/cli.js';
import { CeremonyCli, decryptArmored, makePgpKey, REPO, runAtTerminal } from '../helpers/ceremony.js';
import { huntRootTokens } from '../../src/vault/root-tokens.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

const short = { openbao: 'bao', vault: 'vault' } as const;

describe.each(flavorsUnderTest())('root token ceremonies on a $flavor $version lab', ({ flavor, version }) => {
  let t: TestLab;
  /** A second lab (3 nodes: the lab helper waits for failure tolerance 1): its shares are the "wrong shares from another cluster". */
  let other: TestLab;
  let cli: CeremonyCli;
  let work: string;
  const secrets: string[] = [];
  let name: string;

  beforeAll(async () => {
    t = await startTestLab({ name: `d-root-${short[flavor]}`, flavor, version });
    other = await startTestLab({ name: `d-rootx-${short[flavor]}`, flavor, version });
    name = t.lab.name;
    cli = new CeremonyCli(t.env, t.stateDir);
    work = mkdtempSync(join(t.stateDir, 'work-'));
    secrets.push(...labSecrets(t.lab.initFile), ...labSecrets(other.lab.initFile));
  });
  afterAll(async () => {
    try {
      if (cli?.log.length) cli.expectNoSecrets(secrets);
    } finally {
      await other?.destroy();
      await t?.destroy();
    }
  });

  const sharesRef = () => `file:${t.lab.initFile}#unseal_keys_b64`;
  async function api(token?: string): Promise<VaultClient> {
    const { client } = await connectCluster(t.inventory, undefined);
    const leader = (await client.findLeader()).client;
    return token === undefined ? leader : leader.withToken(token);
  }
  async function rootAccessors(): Promise<string[]> {
    return (await huntRootTokens(await api())).map((r) => r.accessor).sort();
  }
  async function expectRevoked(token: string): Promise<void> {
    const c = await api(token);
    const e = await c.lookupSelf().then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(VaultApiError);
    expect((e as VaultApiError).status).toBe(403);
  }

  it('generates a root token with a local OTP, the token works with policy root, and revoke kills it', async () => {
    const tokenFile = join(work, 'otp-token');
    const r = await cli.run([
      'root',
      'generate',
      '-i',
      t.inventory,
      '--shares-from',
      sharesRef(),
      '--token-out',
      tokenFile,
      '--non-interactive',
    ]);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(r.stderr).toMatch(/Nonce: [0-9a-f-]{36}/);
    expect(r.stderr).toMatch(/Progress: 2 of 3/);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const token = readFileSync(tokenFile, 'utf8').trim();
    secrets.push(token);
    const self = await (await api(token)).lookupSelf();
    expect(self.policies).toContain('root');
    expect(self.accessor).not.toBe('');

    const rv = await cli.run([
      'root',
      'revoke',
      '-i',
      t.inventory,
      '--token',
      `file:${tokenFile}`,
      '--confirm',
      name,
      '--non-interactive',
    ]);
    expect(rv.code, rv.stderr).toBe(ExitCode.ok);
    expect(rv.stdout).toContain(self.accessor);
    await expectRevoked(token);
  });

  it('generates a root token encrypted to a PGP key; the decrypted token works, and revoke by accessor kills it', async () => {
    const key = await makePgpKey(work, 'operator');
    const out = join(work, 'root.asc');
    const r = await cli.run([
      'root',
      'generate',
      '-i',
      t.inventory,
      '--pgp-key',
      key.publicFile,
      '--shares-from',
      sharesRef(),
      '--encrypted-out',
      out,
      '--non-interactive',
    ]);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(r.stderr).toContain(key.fingerprint);
    const armored = readFileSync(out, 'utf8');
    expect(armored).toContain('-----BEGIN PGP MESSAGE-----');
    const token = await decryptArmored(armored, key.armoredPrivate);
    secrets.push(token);
    const self = await (await api(token)).lookupSelf();
    expect(self.policies).toContain('root');

    const rv = await cli.run([
      'root',
      'revoke',
      '-i',
      t.inventory,
      '--accessor',
      self.accessor,
      '--confirm',
      name,
      '--non-interactive',
    ]);
    expect(rv.code, rv.stderr).toBe(ExitCode.ok);
    await expectRevoked(token);
  });

  it('refuses revocation without the typed cluster name, and a token given on the command line', async () => {
    const noConfirm = await cli.run(['root', 'revoke', '-i', t.inventory, '--accessor', 'x', '--non-interactive']);
    expect(noConfirm.code).toBe(ExitCode.badInput);
    expect(noConfirm.stderr).toContain(`--confirm ${name}`);
    const literal = await cli.run([
      'root',
      'revoke',
      '-i',
      t.inventory,
      '--token',
      'not-a-reference',
      '--confirm',
      name,
      '--non-interactive',
    ]);
    expect(literal.code).toBe(ExitCode.badInput);
    expect(literal.stderr).toMatch(/takes a reference/);
  });

  it('a wrong share (from another cluster) gives a clear error, the attempt stays open, and the right shares then complete it', async () => {
    const { client } = await connectCluster(t.inventory, undefined);
    try {
      const session = await CeremonySession.open(client);
      const attempt = await RootGeneration.start(session);
      const good = t.init.unseal_keys_b64;
      const wrong = other.init.unseal_keys_b64[0]!;
      expect((await attempt.submit(good[0]!)).kind).toBe('progress');
      expect((await attempt.submit(good[1]!)).kind).toBe('progress');
      const e = await attempt.submit(wrong).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(WrongShareError);
      expect((e as WrongShareError).attemptOpen).toBe(true);
      expect((e as Error).message).toMatch(/did not combine.*at least one of them is wrong.*still open/);
      // Vault discards the shares of the aborted round (vault/generate_root.go) but keeps the attempt.
      const st = await attempt.status();
      expect(st).toMatchObject({ started: true, nonce: attempt.nonce, progress: 0 });
      // A wrong share whose Shamir x-coordinate (its last byte) equals a good one's: the server
      // cannot even combine them ("failed to compute root key: duplicate part detected"). A share
      // from another cluster does that about once in a hundred tries; here it is made to.
      const colliding = Buffer.from(wrong, 'base64');
      colliding[colliding.length - 1] = Buffer.from(good[0]!, 'base64').at(-1)!;
      secrets.push(colliding.toString('base64'));
      expect((await attempt.submit(good[0]!)).kind).toBe('progress');
      expect((await attempt.submit(good[1]!)).kind).toBe('progress');
      const dup = await attempt.submit(colliding.toString('base64')).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(dup).toBeInstanceOf(WrongShareError);
      expect((dup as WrongShareError).attemptOpen).toBe(true);
      expect(await attempt.status()).toMatchObject({ started: true, nonce: attempt.nonce, progress: 0 });
      let last;
      for (const s of good.slice(0, 3)) last = await attempt.submit(s);
      expect(last?.kind).toBe('complete');
      const token = (last as { token: string }).token;
      secrets.push(token);
      const c = client.client(session.node.name).withToken(token);
      expect((await c.lookupSelf()).policies).toContain('root');
      await c.write('auth/token/revoke-self', {});
      await expectRevoked(token);
    } finally {
      client.close();
    }
  });

  it('a share for a stale nonce is refused and not sent; the current attempt is untouched', async () => {
    const { client } = await connectCluster(t.inventory, undefined);
    try {
      const session = await CeremonySession.open(client);
      const first = await RootGeneration.start(session);
      const stale = first.nonce;
      await first.cancel();
      const current = await RootGeneration.start(session);
      const r = await cli.run(
        [
          'root',
          'contribute',
          '-i',
          t.inventory,
          '--nonce',
          stale,
          '--shares-from',
          `env:D_SHARE`,
          '--non-interactive',
        ],
        { D_SHARE: t.init.unseal_keys_b64[0]! },
      );
      expect(r.code).toBe(ExitCode.badInput);
      expect(r.stderr).toContain(`has nonce ${current.nonce}, not ${stale}: your share was not sent`);
      expect((await current.status()).progress).toBe(0);
      const ok = await cli.run(
        [
          'root',
          'contribute',
          '-i',
          t.inventory,
          '--nonce',
          current.nonce,
          '--shares-from',
          `env:D_SHARE`,
          '--non-interactive',
        ],
        { D_SHARE: t.init.unseal_keys_b64[0]! },
      );
      expect(ok.code, ok.stderr).toBe(ExitCode.ok);
      expect(ok.stderr).toContain('Progress: 1 of 3');
      await current.submit(t.init.unseal_keys_b64[1]!);
      // The last share of an OTP attempt must come from the starter's terminal: from elsewhere it
      // would mint a token nobody can decode.
      const last = await cli.run(
        [
          'root',
          'contribute',
          '-i',
          t.inventory,
          '--nonce',
          current.nonce,
          '--shares-from',
          `env:D_SHARE`,
          '--non-interactive',
        ],
        { D_SHARE: t.init.unseal_keys_b64[2]! },
      );
      expect(last.code).toBe(ExitCode.badInput);
      expect(last.stderr).toContain('the last share must be typed where the ceremony was started');
      expect((await current.status()).progress).toBe(2);
      await current.cancel();
    } finally {
      client.close();
    }
  });

  it('after a run was killed mid-ceremony, the next run sees the pending attempt and cancels it only when told to', async () => {
    const { client } = await connectCluster(t.inventory, undefined);
    let left: string;
    try {
      left = (await RootGeneration.start(await CeremonySession.open(client))).nonce; // a run that died here
    } finally {
      client.close();
    }
    const tokenFile = join(work, 'after-pending');
    const refused = await cli.run([
      'root',
      'generate',
      '-i',
      t.inventory,
      '--shares-from',
      sharesRef(),
      '--token-out',
      tokenFile,
      '--non-interactive',
    ]);
    expect(refused.code).toBe(ExitCode.badInput);
    expect(refused.stderr).toContain(left);
    expect(refused.stderr).toContain('--cancel-pending');
    const status = await cli.run(['root', 'generate', '-i', t.inventory, '--status', '--json', '--non-interactive']);
    expect(JSON.parse(status.stdout)).toMatchObject({ started: true, nonce: left, progress: 0, required: 3 });
    const r = await cli.run([
      'root',
      'generate',
      '-i',
      t.inventory,
      '--shares-from',
      sharesRef(),
      '--token-out',
      tokenFile,
      '--cancel-pending',
      '--non-interactive',
    ]);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(r.stderr).toContain(`Cancelled the pending attempt ${left}`);
    const token = readFileSync(tokenFile, 'utf8').trim();
    secrets.push(token);
    const rv = await cli.run([
      'root',
      'revoke',
      '-i',
      t.inventory,
      '--token',
      `file:${tokenFile}`,
      '--confirm',
      name,
      '--non-interactive',
    ]);
    expect(rv.code, rv.stderr).toBe(ExitCode.ok);
    await expectRevoked(token);
  });

  it('when the leader changes mid-ceremony, the next share is refused with "the attempt is lost"', async () => {
    const { client } = await connectCluster(t.inventory, undefined);
    try {
      const session = await CeremonySession.open(client);
      const attempt = await RootGeneration.start(session);
      await attempt.submit(t.init.unseal_keys_b64[0]!);
      await session.pinnedClient.write('sys/step-down', {});
      await waitFor('another node to lead', async () => {
        const l = await client.findLeader().catch(() => undefined);
        return l && l.node.name !== session.node.name ? true : undefined;
      });
      const e = await attempt.submit(t.init.unseal_keys_b64[1]!).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(CeremonyLostError);
      expect((e as Error).message).toMatch(/leader changed.*is lost/);
      // Clean up whatever the old node may still hold, in case it leads again later.
      await generateRootCancel(session.pinnedClient, session.paths).catch(() => undefined);
    } finally {
      client.close();
    }
  });

  it('the root-generate playbook generates, uses and revokes the token; a failing step in between still ends revoked', async () => {
    const before = await rootAccessors();
    const ok = await cli.run([
      'run',
      join(REPO, 'playbooks', 'root-generate.yml'),
      '-i',
      t.inventory,
      '--non-interactive',
      '-y',
    ]);
    expect(ok.code, ok.stderr + ok.stdout).toBe(ExitCode.ok);
    const all = ok.stdout + ok.stderr;
    expect(all).toMatch(/token works \(accessor \S+, policies root\)/);
    expect(all).toMatch(/revoked the token with accessor/);
    expect(await rootAccessors()).toEqual(before);

    // The same runbook with a step that fails after the token exists: the always: block revokes it.
    const failing = join(work, 'root-then-fail.yml');
    writeFileSync(
      failing,
      readFileSync(join(REPO, 'playbooks', 'root-generate.yml'), 'utf8').replace(
        'policy: root',
        'policy: no-such-policy',
      ),
    );
    const bad = await cli.run(['run', failing, '-i', t.inventory, '--non-interactive', '-y']);
    expect(bad.code).toBe(ExitCode.failed);
    const text = bad.stdout + bad.stderr;
    expect(text).toMatch(/lacks policy no-such-policy/);
    expect(text).toMatch(/revoked the token with accessor/);
    expect(await rootAccessors()).toEqual(before);
    // Nothing of the token reached the journal either.
    const journal = readdirSync(join(t.stateDir, 'runs'), { recursive: true })
      .map(String)
      .filter((f) => !statSync(join(t.stateDir, 'runs', f)).isDirectory());
    const journalText = journal.map((f) => readFileSync(join(t.stateDir, 'runs', f), 'utf8')).join('\n');
    expect(journalText.length).toBeGreaterThan(0);
    expect(secrets.filter((x) => journalText.includes(x))).toEqual([]);
  });

  it('at a terminal, holders type their shares one after another (masked), each confirming the nonce first', async () => {
    const tokenFile = join(work, 'typed-token');
    const shares = t.init.unseal_keys_b64;
    const nonceOf = (out: string) => /Nonce: ([0-9a-f-]{36})/.exec(out)![1]!;
    const steps = [0, 1, 2].flatMap((i) => [
      {
        when: new RegExp(`Holder ${i + 1}: the nonce of this ceremony is`),
        type: (out: string) => nonceOf(out).slice(0, 8),
      },
      { when: new RegExp(`Holder ${i + 1}: your unseal key share`), type: () => shares[i]! },
    ]);
    const r = await runAtTerminal(cli, ['root', 'generate', '-i', t.inventory, '--token-out', tokenFile], t.env, steps);
    expect(r.code, r.stdout).toBe(ExitCode.ok);
    expect(r.stdout).toContain('Progress: 2 of 3');
    expect(r.stdout).toContain('*'); // the mask, not the share
    const token = readFileSync(tokenFile, 'utf8').trim();
    secrets.push(token);
    expect((await (await api(token)).lookupSelf()).policies).toContain('root');
    const rv = await cli.run([
      'root',
      'revoke',
      '-i',
      t.inventory,
      '--token',
      `file:${tokenFile}`,
      '--confirm',
      name,
      '--non-interactive',
    ]);
    expect(rv.code, rv.stderr).toBe(ExitCode.ok);
    await expectRevoked(token);
  });

  it('at a terminal, a holder who types the wrong nonce stops the ceremony before any share is sent, and the OTP attempt is cancelled', async () => {
    const steps = [{ when: /Holder 1: the nonce of this ceremony is/, type: () => 'deadbeef' }];
    const r = await runAtTerminal(
      cli,
      ['root', 'generate', '-i', t.inventory, '--token-out', join(work, 'never')],
      t.env,
      steps,
    );
    expect(r.code).toBe(ExitCode.badInput);
    expect(r.stdout).toMatch(/confirmation did not match the nonce .*: no share was sent/);
    expect(r.stdout).toMatch(/was cancelled: its OTP existed only in this process/);
    const status = await cli.run(['root', 'generate', '-i', t.inventory, '--status', '--json', '--non-interactive']);
    expect(JSON.parse(status.stdout)).toMatchObject({ started: false });
  });

  // Last: this revokes the lab's init root token, which the inventory uses.
  it('root hunt lists the init root token by accessor (never the token) and revokes it only after confirmation', async () => {
    const initAccessor = (await (await api(t.init.root_token)).lookupSelf()).accessor;
    const list = await cli.run(['root', 'hunt', '-i', t.inventory, '--json', '--non-interactive']);
    expect(list.code, list.stderr).toBe(ExitCode.ok);
    const found = JSON.parse(list.stdout) as {
      root_tokens: Array<{ accessor: string; displayName: string; created: string; isOwn: boolean }>;
    };
    const mine = found.root_tokens.find((x) => x.accessor === initAccessor);
    expect(mine).toMatchObject({ displayName: 'root', isOwn: true });
    expect(Number.isNaN(Date.parse(mine!.created))).toBe(false);
    // The generated tokens of the earlier tests were all revoked: the init token is the only one left.
    expect(found.root_tokens).toHaveLength(1);

    const unconfirmed = await cli.run(['root', 'hunt', '-i', t.inventory, '--revoke', '--non-interactive']);
    expect(unconfirmed.code).toBe(ExitCode.badInput);
    expect((await (await api(t.init.root_token)).lookupSelf()).accessor).toBe(initAccessor);

    const r = await cli.run(['root', 'hunt', '-i', t.inventory, '--revoke', '--confirm', name, '--non-interactive']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(r.stdout).toContain(initAccessor);
    expect(r.stdout).toContain('Revoked 1 root token');
    await expectRevoked(t.init.root_token);
  });
});
