import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadInventory, parseInventory, selectCluster } from '../../src/inventory/load.js';
import { ProblemsError } from '../../src/core/problems-error.js';
import { ExitCode } from '../../src/core/exit-codes.js';

const GOOD = `clusters:
  prod:
    flavor: openbao
    tls:
      ca_cert: tls/ca.pem
    token: "env:VAULT_TOKEN"
    nodes:
      - name: n1
        api_addr: https://10.0.0.1:8200
        zone: a
      - name: n2
        api_addr: https://10.0.0.2:8200
        zone: b
`;

function problemsOf(text: string, file = 'inv.yml'): string[] {
  try {
    parseInventory(file, text);
  } catch (e) {
    expect(e).toBeInstanceOf(ProblemsError);
    const pe = e as ProblemsError;
    expect(pe.exitCode).toBe(ExitCode.badInput);
    return [...pe.details];
  }
  throw new Error('the inventory was accepted');
}

describe('a good inventory loads', () => {
  it('gives the clusters and resolves relative paths against the inventory file', () => {
    const inv = parseInventory('/etc/vaultops/inv.yml', GOOD);
    const { name, spec } = selectCluster(inv, undefined);
    expect(name).toBe('prod');
    expect(spec.nodes.map((n) => n.name)).toEqual(['n1', 'n2']);
    expect(spec.tls?.ca_cert).toBe('/etc/vaultops/tls/ca.pem');
  });

  it('resolves every file: reference and local file against the inventory file, whatever the working directory', () => {
    const text = `clusters:
  prod:
    token: "file:init.json#root_token"
    unseal: { keys: "file:../keys/shares.json#unseal_keys_b64", threshold: 3 }
    tls: { ca_cert: tls/ca.pem, client_cert: /etc/pki/c.pem, client_key: ~/k.pem }
    stores:
      s3: { type: s3, endpoint: "https://s3.example", bucket: b, access_key_id: "file:s3/id", secret_access_key: "file:/abs/secret",
            decrypt: { identity: "file:age/id.txt" } }
      other: { type: dir, path: backups, encrypt: { age: [age1qqq, keys/team.txt] } }
      remote: { type: sftp, host: h, path: /srv/b, key_file: ~/.ssh/id, known_hosts: kh }
      pgp: { type: dir, path: ~/b, encrypt: { openpgp: [keys/ops.asc] }, decrypt: { identity: "env:ID" } }
    vars: { shares: "file:shares.txt", plain: "text", list: ["file:a", "cmd:pass show x"] }
    nodes:
      - name: n1
        api_addr: https://10.0.0.1:8200
        ssh: { key_file: keys/id_ed25519, known_hosts: known_hosts, host: h }
        service: { binary: bin/vault }
        vars: { k: "file:node.key" }
vars: { top: "file:top.txt" }
`;
    const inv = parseInventory('/etc/vaultops/inv.yml', text);
    const spec = selectCluster(inv, undefined).spec;
    expect(spec.token).toBe('file:/etc/vaultops/init.json#root_token');
    expect(spec.unseal?.keys).toBe('file:/etc/keys/shares.json#unseal_keys_b64');
    expect(spec.tls).toMatchObject({
      ca_cert: '/etc/vaultops/tls/ca.pem',
      client_cert: '/etc/pki/c.pem',
      client_key: join(homedir(), 'k.pem'),
    });
    expect(spec.stores?.['s3']).toMatchObject({
      access_key_id: 'file:/etc/vaultops/s3/id',
      secret_access_key: 'file:/abs/secret',
      decrypt: { identity: 'file:/etc/vaultops/age/id.txt' },
    });
    expect(spec.stores?.['other']).toEqual({
      type: 'dir',
      path: '/etc/vaultops/backups',
      encrypt: { age: ['age1qqq', '/etc/vaultops/keys/team.txt'] },
    });
    // The SFTP server's directory is the server's; other references stay as written.
    expect(spec.stores?.['remote']).toEqual({
      type: 'sftp',
      host: 'h',
      path: '/srv/b',
      key_file: join(homedir(), '.ssh/id'),
      known_hosts: '/etc/vaultops/kh',
    });
    expect(spec.stores?.['pgp']).toEqual({
      type: 'dir',
      path: join(homedir(), 'b'),
      encrypt: { openpgp: ['/etc/vaultops/keys/ops.asc'] },
      decrypt: { identity: 'env:ID' },
    });
    expect(spec.vars).toEqual({
      shares: 'file:/etc/vaultops/shares.txt',
      plain: 'text',
      list: ['file:/etc/vaultops/a', 'cmd:pass show x'],
    });
    expect(spec.nodes[0]!.ssh).toMatchObject({
      key_file: '/etc/vaultops/keys/id_ed25519',
      known_hosts: '/etc/vaultops/known_hosts',
      host: 'h',
    });
    // A path on the node is the node's business.
    expect(spec.nodes[0]!.service?.binary).toBe('bin/vault');
    expect(spec.nodes[0]!.vars).toEqual({ k: 'file:/etc/vaultops/node.key' });
    expect(inv.data.vars).toEqual({ top: 'file:/etc/vaultops/top.txt' });
  });

  it('selectCluster refuses an unknown name and lists the clusters', () => {
    const inv = parseInventory('inv.yml', GOOD);
    expect(() => selectCluster(inv, 'staging')).toThrow(/no cluster "staging"/);
  });
});

describe('a broken inventory is reported at file:line:col, every problem at once', () => {
  it('a value of the wrong type points at the value', () => {
    const text = GOOD.replace('zone: b', 'zone: b\n        ssh:\n          port: "twenty-two"');
    const problems = problemsOf(text);
    expect(problems).toHaveLength(1);
    // line 15 is `port: "twenty-two"`; the value starts at column 17
    expect(problems[0]).toMatch(/^inv\.yml:15:17 clusters\.prod\.nodes\.1\.ssh\.port: .*number/i);
  });

  it('an unknown key points at the key and suggests the nearest one', () => {
    const text = GOOD.replace('        zone: a', '        zonee: a');
    const problems = problemsOf(text);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^inv\.yml:10:9 unknown key "zonee" .*did you mean "zone"\?/);
  });

  it('an unknown key with nothing close lists what is allowed', () => {
    const problems = problemsOf(GOOD.replace('    flavor: openbao', '    flavor: openbao\n    xyzzyqwerty: 1'));
    expect(problems[0]).toMatch(/^inv\.yml:4:5 unknown key "xyzzyqwerty".*allowed: flavor, version, tls/);
  });

  it('two nodes with one name: the second is pointed at', () => {
    const problems = problemsOf(GOOD.replace('- name: n2', '- name: n1'));
    expect(problems).toEqual([expect.stringMatching(/^inv\.yml:11:15 node name "n1" is used twice in cluster prod/)]);
  });

  it('reports all problems together: schema problems in one pass', () => {
    const text = `clusters:
  prod:
    flavr: openbao
    token: hvs.a-literal-token
    nodes:
      - name: n1
        api_addr: ftp://10.0.0.1
      - name: "bad name"
        api_addr: https://10.0.0.2:8200
`;
    const problems = problemsOf(text);
    expect(problems).toHaveLength(4);
    expect(problems.join('\n')).toMatch(/inv\.yml:3:5 unknown key "flavr".*did you mean "flavor"/);
    expect(problems.join('\n')).toMatch(/inv\.yml:4:12 clusters\.prod\.token: a secret reference/);
    expect(problems.join('\n')).toMatch(/inv\.yml:7:19 clusters\.prod\.nodes\.0\.api_addr/);
    expect(problems.join('\n')).toMatch(/inv\.yml:8:15 clusters\.prod\.nodes\.1\.name/);
  });

  it('reports all rule problems together (duplicate names, duplicate addresses, unknown group members)', () => {
    const text = `${GOOD.replace('- name: n2', '- name: n1').replace('10.0.0.2', '10.0.0.1')}    groups:
      east: [n1, n9]
`;
    const problems = problemsOf(text);
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/^inv\.yml:11:15 node name "n1" is used twice/);
    expect(problems[1]).toMatch(/^inv\.yml:12:19 api_addr https:\/\/10\.0\.0\.1:8200 is used twice/);
    expect(problems[2]).toMatch(/^inv\.yml:15:18 group east names node "n9"/);
  });

  it('YAML syntax errors are positioned too, and duplicate keys are refused', () => {
    const problems = problemsOf('clusters:\n  prod:\n    flavor: openbao\n    flavor: vault\n    nodes: []\n');
    expect(problems[0]).toMatch(/^inv\.yml:4:5 .*(duplicate|unique)/i);
  });

  it('a missing file is a bad-input error that says how to get one', () => {
    expect(() => loadInventory('/nonexistent/inv.yml')).toThrow(
      /Cannot read inventory \/nonexistent\/inv\.yml: ENOENT/,
    );
  });

  it('loadInventory names the file it read in every problem', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vaultops-unit-inv-'));
    const file = join(dir, 'bad.yml');
    writeFileSync(file, GOOD.replace('        zone: a', '        zonee: a'));
    expect(() => loadInventory(file)).toThrow(ProblemsError);
    try {
      loadInventory(file);
    } catch (e) {
      expect((e as ProblemsError).details[0]).toContain(`${file}:10:9`);
    }
    rmSync(dir, { recursive: true, force: true });
  });
});
