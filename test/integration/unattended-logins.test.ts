import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import type { ClusterClient } from '../../src/vault/cluster.js';
import { CLI, CliRunner, NODE, runProcess, type Ran } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

/** What `vaultops backup` and `status` need, and no more: a backup job's policy. */
const BACKUP_POLICY = `
path "sys/storage/raft/snapshot" { capabilities = ["read"] }
path "sys/storage/raft/configuration" { capabilities = ["read"] }
path "sys/storage/raft/autopilot/state" { capabilities = ["read"] }
path "vaultops/*" { capabilities = ["create", "read", "update", "delete", "list"] }
`;

/** An ES256 JWT signed with `key`, as an identity provider (or Kubernetes) would issue one. */
function signJwt(key: ReturnType<typeof generateKeyPairSync>['privateKey'], claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${b64({ alg: 'ES256', typ: 'JWT' })}.${b64(claims)}`;
  const sig = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  return `${input}.${sig}`;
}

/**
 * Logins for unattended runs against real servers: AppRole, TLS certificates and JWT, enabled with
 * the root token and given only a backup policy. The token of a login is renewed during a run that
 * outlives its TTL and revoked at the end; an operator's token is left alone; refused credentials say
 * what to do; no secret appears in any output.
 */
describe.each(flavorsUnderTest())('unattended logins on $flavor $version', ({ flavor, version }) => {
  let t: TestLab;
  let root: ClusterClient;
  let dir: string;
  let cli: CliRunner;
  const envRuns: Ran[] = [];
  const secrets: string[] = [];
  let roleId: string;

  /** A copy of the lab's inventory whose cluster logs in with `auth` instead of the root token. */
  function inventoryWith(file: string, auth: Record<string, unknown> | undefined, token?: string): string {
    const inv = parse(readFileSync(t.inventory, 'utf8')) as { clusters: Record<string, Record<string, unknown>> };
    const cluster = Object.values(inv.clusters)[0]!;
    delete cluster['token'];
    if (auth) cluster['auth'] = auth;
    if (token) cluster['token'] = token;
    const path = join(dir, file);
    writeFileSync(path, stringify(inv));
    return path;
  }

  function secretFile(name: string, value: string): string {
    const path = join(dir, name);
    writeFileSync(path, `${value}\n`, { mode: 0o600 });
    secrets.push(value);
    return path;
  }

  async function accessors(): Promise<string[]> {
    const res = await root.client('n1').raw('LIST', '/auth/token/accessors');
    expect(res.status).toBe(200);
    return (JSON.parse(res.body.toString('utf8')) as { data: { keys: string[] } }).data.keys;
  }

  async function backupDirFiles(sub: string): Promise<string[]> {
    return readdirSync(join(dir, sub)).filter((f) => f.endsWith('.snap') || f.endsWith('.tar'));
  }

  beforeAll(async () => {
    t = await startTestLab({ name: `login-${flavor === 'vault' ? 'v' : 'b'}`, flavor, version });
    dir = mkdtempSync(join(tmpdir(), 'vaultops-logins-'));
    cli = new CliRunner({ env: t.env, cwd: dir });
    secrets.push(...t.secrets);
    ({ client: root } = await connectCluster(t.inventory, undefined));
    const n1 = root.client('n1');
    await n1.write('sys/policies/acl/backup', { policy: BACKUP_POLICY });

    // AppRole: a role for the backup job, one whose tokens live 4 s (renewed up to 60 s), one capped at 5 s.
    await n1.write('sys/auth/approle', { type: 'approle' });
    await n1.write('auth/approle/role/backup', { token_policies: ['backup'], token_ttl: '1h' });
    await n1.write('auth/approle/role/short', { token_policies: ['backup'], token_ttl: '4s', token_max_ttl: '60s' });
    await n1.write('auth/approle/role/capped', { token_policies: ['backup'], token_ttl: '3s', token_max_ttl: '5s' });
    const id = async (role: string) =>
      (await n1.read<{ data: { role_id: string } }>(`auth/approle/role/${role}/role-id`)).data.role_id;
    const secretId = async (role: string) =>
      (await n1.write<{ data: { secret_id: string } }>(`auth/approle/role/${role}/secret-id`, {})).data.secret_id;
    roleId = await id('backup');
    secretFile('role-id', roleId);
    secretFile('secret-id', await secretId('backup'));
    secretFile('short-role-id', await id('short'));
    secretFile('short-secret-id', await secretId('short'));
    secretFile('capped-role-id', await id('capped'));
    secretFile('capped-secret-id', await secretId('capped'));

    // JWT: the server trusts a public key this test made; the job holds a token signed with its private key.
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await n1.write('sys/auth/jwt', { type: 'jwt' });
    await n1.write('auth/jwt/config', {
      jwt_validation_pubkeys: [publicKey.export({ type: 'spki', format: 'pem' }).toString()],
      bound_issuer: 'https://issuer.vaultops.test',
    });
    await n1.write('auth/jwt/role/backup', {
      role_type: 'jwt',
      user_claim: 'sub',
      bound_audiences: ['vaultops'],
      token_policies: ['backup'],
      token_ttl: '1h',
    });
    const now = Math.floor(Date.now() / 1000);
    const jwt = signJwt(privateKey, {
      iss: 'https://issuer.vaultops.test',
      sub: 'system:serviceaccount:vault:vaultops-backup',
      aud: 'vaultops',
      iat: now,
      nbf: now - 5,
      exp: now + 3600,
    });
    // A JWT file is read like a Kubernetes token (0644 there); it is a secret all the same.
    chmodSync(secretFile('jwt', jwt), 0o644);

    // TLS certificates: a CA of the test's own, trusted by auth/cert, signs the job's client certificate.
    const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    openssl(
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        'client-ca.key',
      ].concat(['-out', 'client-ca.pem', '-days', '2', '-subj', '/CN=vaultops test client CA']),
    );
    openssl(
      ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'client.key'].concat(
        ['-out', 'client.csr', '-subj', '/CN=backup-job'],
      ),
    );
    writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
    openssl(
      [
        'x509',
        '-req',
        '-in',
        'client.csr',
        '-CA',
        'client-ca.pem',
        '-CAkey',
        'client-ca.key',
        '-CAcreateserial',
      ].concat(['-out', 'client.pem', '-days', '1', '-extfile', 'client.ext']),
    );
    chmodSync(join(dir, 'client.key'), 0o600);
    await n1.write('sys/auth/cert', { type: 'cert' });
    await n1.write('auth/cert/certs/backup-job', {
      certificate: readFileSync(join(dir, 'client-ca.pem'), 'utf8'),
      token_policies: ['backup'],
      token_ttl: '1h',
    });
  });

  afterAll(async () => {
    root?.close();
    await t?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('AppRole: `vaultops backup` logs in with role_id and secret_id references, and revokes its token at the end', async () => {
    const inv = inventoryWith('approle.yml', {
      method: 'approle',
      role_id: 'file:role-id',
      secret_id: 'file:secret-id',
    });
    const before = await accessors();
    const r = await cli.run(['backup', '-i', inv, '--to', join(dir, 'b-approle'), '--non-interactive']);
    expect(r.stderr).not.toMatch(/warning|error/i);
    expect(r.code).toBe(ExitCode.ok);
    expect(await backupDirFiles('b-approle')).toHaveLength(1);
    // The token lived 1 h: it is gone because vaultops revoked it, not because it expired.
    expect((await accessors()).filter((a) => !before.includes(a))).toEqual([]);
  });

  it('TLS certificate: `vaultops status` logs in with a client certificate the server trusts (autopilot read with its token)', async () => {
    const inv = inventoryWith('cert.yml', {
      method: 'cert',
      name: 'backup-job',
      client_cert: 'client.pem',
      client_key: 'client.key',
    });
    const before = await accessors();
    const r = await cli.run(['status', '-i', inv]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(ExitCode.ok);
    expect(r.stdout).toMatch(/HEALTHY; leader n[123]; autopilot healthy, failure tolerance 1, 3 voters/);
    expect((await accessors()).filter((a) => !before.includes(a))).toEqual([]);
  });

  it('JWT: `vaultops backup` logs in with the token file and the role, the server checking the signature with jwt_validation_pubkeys', async () => {
    const inv = inventoryWith('jwt.yml', { method: 'jwt', role: 'backup', token_file: 'jwt' });
    const before = await accessors();
    const r = await cli.run(['backup', '-i', inv, '--to', join(dir, 'b-jwt'), '--non-interactive']);
    expect(r.stderr).not.toMatch(/warning|error/i);
    expect(r.code).toBe(ExitCode.ok);
    expect(await backupDirFiles('b-jwt')).toHaveLength(1);
    expect((await accessors()).filter((a) => !before.includes(a))).toEqual([]);
  });

  it('a run longer than the token TTL (4 s) keeps working: the token is renewed, then revoked at the end', async () => {
    const inv = inventoryWith('short.yml', {
      method: 'approle',
      role_id: 'file:short-role-id',
      secret_id: 'file:short-secret-id',
    });
    const playbook = join(dir, 'slow-health.yml');
    writeFileSync(
      playbook,
      stringify({
        name: 'slow health check',
        steps: [
          { name: 'wait past the token TTL', action: 'flow.wait', target: 'cluster', with: { seconds: 9 } },
          { name: 'autopilot healthy', action: 'vault.autopilot_health', target: 'cluster' },
        ],
      }),
    );
    const before = await accessors();
    const started = Date.now();
    const r = await cli.run(['run', playbook, '-i', inv, '--non-interactive']);
    expect(Date.now() - started).toBeGreaterThan(9000);
    expect(r.stderr).not.toMatch(/max TTL|expired/);
    expect(r.code).toBe(ExitCode.ok);
    expect((await accessors()).filter((a) => !before.includes(a))).toEqual([]);
  });

  it('a token that reaches its max TTL during a run: a warning says so and what to raise', async () => {
    const inv = inventoryWith('capped.yml', {
      method: 'approle',
      role_id: 'file:capped-role-id',
      secret_id: 'file:capped-secret-id',
    });
    const playbook = join(dir, 'capped-health.yml');
    writeFileSync(
      playbook,
      stringify({
        name: 'capped health check',
        steps: [
          { name: 'wait past the max TTL', action: 'flow.wait', target: 'cluster', with: { seconds: 7 } },
          { name: 'autopilot healthy', action: 'vault.autopilot_health', target: 'cluster' },
        ],
      }),
    );
    const r = await cli.run(['run', playbook, '-i', inv, '--non-interactive']);
    expect(r.stdout + r.stderr).toMatch(
      /warning: the token from the approle login at auth\/approle reached its max TTL and expires in \d+s; .*Raise the role's token_max_ttl/,
    );
    expect(r.code).not.toBe(ExitCode.ok);
  });

  it('a wrong secret_id exits 2 with what to do, and the wrong value appears nowhere', async () => {
    const wrong = 'a0b1c2d3-0000-4000-8000-0123456789ab';
    secretFile('wrong-secret-id', wrong);
    const inv = inventoryWith('wrong.yml', {
      method: 'approle',
      role_id: 'file:role-id',
      secret_id: 'file:wrong-secret-id',
    });
    const r = await cli.run(['backup', '-i', inv, '--to', join(dir, 'b-wrong'), '--non-interactive']);
    expect(r.code).toBe(ExitCode.badInput);
    expect(r.stderr).toMatch(/approle login at auth\/approle on n[123] was refused \(400/);
    expect(r.stderr).toMatch(
      /secret_id \(file:.*wrong-secret-id\).*vault write -f auth\/approle\/role\/ROLE\/secret-id/,
    );
  });

  it('a token the operator gives (auth: {method: token}) is used and never revoked', async () => {
    const created = await root
      .client('n1')
      .write<{ auth: { client_token: string } }>('auth/token/create', { policies: ['backup'], ttl: '1h' });
    const token = created.auth.client_token;
    secretFile('operator-token', token);
    const inv = inventoryWith('token.yml', { method: 'token', token: 'file:operator-token' });
    const r = await cli.run(['backup', '-i', inv, '--to', join(dir, 'b-token'), '--non-interactive']);
    expect(r.stderr).not.toMatch(/warning|error/i);
    expect(r.code).toBe(ExitCode.ok);
    expect(await backupDirFiles('b-token')).toHaveLength(1);
    const self = await root.client('n1').withToken(token).lookupSelf();
    expect(self.policies).toContain('backup');
  });

  it('single-cluster commands log in from VAULTOPS_AUTH_* with VAULT_ADDR, no inventory', async () => {
    const before = await accessors();
    const r = await runProcess(NODE, [CLI, 'status'], {
      PATH: process.env['PATH'],
      HOME: dir,
      VAULTOPS_STATE_DIR: t.stateDir,
      VAULT_ADDR: t.lab.nodes[1]!.apiAddr,
      VAULT_CACERT: t.lab.caCert!,
      VAULTOPS_AUTH_METHOD: 'approle',
      VAULTOPS_AUTH_ROLE_ID: `file:${join(dir, 'role-id')}`,
      VAULTOPS_AUTH_SECRET_ID: `file:${join(dir, 'secret-id')}`,
    });
    envRuns.push(r);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(ExitCode.ok);
    expect(r.stdout).toMatch(/HEALTHY; leader n[123]; autopilot healthy/);
    expect((await accessors()).filter((a) => !before.includes(a))).toEqual([]);
  });

  it('`schedule backup` units name where the secret_id is (systemd LoadCredential=), never a secret', async () => {
    const inv = inventoryWith('sched.yml', {
      method: 'approle',
      role_id: 'file:role-id',
      secret_id: 'file:secret-id',
    });
    const r = await cli.run([
      'schedule',
      'backup',
      '-i',
      inv,
      '--to',
      join(dir, 'b-sched'),
      '--format',
      'systemd,k8s',
      '--image',
      'registry.example.org/vaultops:0.1.0',
    ]);
    expect(r.code).toBe(ExitCode.ok);
    expect(r.stdout).toContain(`LoadCredential=vaultops-secret-id:${join(dir, 'secret-id')}`);
    expect(r.stdout).toContain('Environment=VAULTOPS_AUTH_SECRET_ID=file:%d/vaultops-secret-id');
    expect(r.stdout).not.toMatch(/VAULT_TOKEN/);
    // Without any login in the inventory, the CronJob logs in as its service account.
    const bare = inventoryWith('bare.yml', undefined);
    const k = await cli.run([
      'schedule',
      'backup',
      '-i',
      bare,
      '--to',
      join(dir, 'b-sched'),
      '--format',
      'k8s',
      '--image',
      'registry.example.org/vaultops:0.1.0',
    ]);
    expect(k.code).toBe(ExitCode.ok);
    expect(k.stdout).toContain('serviceAccountName: vaultops-backup');
    expect(k.stdout).toContain('- { name: VAULTOPS_AUTH_METHOD, value: kubernetes }');
    expect(k.stdout).not.toMatch(/VAULT_TOKEN/);
  });

  it('no secret (secret_id, role_id, JWT, tokens, unseal keys) appears in any output', () => {
    cli.expectNoSecrets(secrets);
    const all = envRuns.map((r) => r.stdout + r.stderr).join('\n');
    expect(secrets.filter((s) => all.includes(s))).toEqual([]);
    expect(secrets).toContain(roleId);
  });
});
