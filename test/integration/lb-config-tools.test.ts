import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLabCa } from '../../src/lab/certs.js';
import { CLI, NODE, runProcess } from '../helpers/cli.js';

/**
 * `vaultops lb config` (the built CLI) checked by the real tools: `haproxy -c -f` and `nginx -t -c`
 * accept what it writes. No cluster is needed: the tools check syntax, the CA file and the names.
 */
const HAPROXY = '/usr/sbin/haproxy';
const NGINX = '/usr/sbin/nginx';
// Debian builds the stream module as a dynamic module; a main nginx.conf loads it (modules-enabled/).
const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

describe('lb config writes configurations the real load balancers accept', () => {
  let dir: string;
  let inventory: string;
  let caCert: string;
  const cli = (args: string[]) => runProcess(NODE, [CLI, ...args], { ...process.env });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vaultops-lb-config-'));
    caCert = (await ensureLabCa(join(dir, 'tls'), 'lbtest')).caCert;
    inventory = join(dir, 'inventory.yml');
    writeFileSync(
      inventory,
      [
        'clusters:',
        '  prod:',
        `    tls: { ca_cert: ${JSON.stringify(caCert)} }`,
        '    load_balancer: { address: "https://127.0.0.1:18200", mode: active, interval: 400ms, fall: 3, rise: 2 }',
        '    nodes:',
        '      - { name: n1, api_addr: "https://127.0.0.11:8200" }',
        '      - { name: n2, api_addr: "https://127.0.0.12:8200" }',
        '      - { name: n3, api_addr: "https://localhost:8200" }',
        '',
      ].join('\n'),
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const haproxyCheck = async (text: string) => {
    const file = join(dir, 'haproxy.cfg');
    writeFileSync(file, text);
    return runProcess(HAPROXY, ['-c', '-f', file], process.env);
  };

  it('haproxy, active mode: passthrough, TLS health checks against the CA, only 200 keeps a node', async () => {
    const r = await cli(['lb', 'config', '-i', inventory, '--format', 'haproxy']);
    expect(r.code, r.stderr).toBe(0);
    const cfg = r.stdout;
    expect(cfg).toMatch(/^\s*mode tcp$/m);
    // No TLS termination: the listener has no certificate, the servers no `ssl` for traffic.
    expect(cfg).not.toMatch(/\bbind\b.*\bssl\b/);
    expect(cfg).not.toMatch(/\bcrt\b/);
    expect(cfg).toMatch(/^\s*bind 127\.0\.0\.1:18200$/m);
    expect(cfg).toContain('http-check send meth GET uri /v1/sys/health\n');
    expect(cfg).toMatch(/^\s*http-check expect status 200$/m);
    expect(cfg).toContain(`check-ssl verify required ca-file ${caCert}`);
    // The inventory's timing is used: out after 3 failures 400 ms apart.
    expect(cfg).toMatch(/inter 400ms .*fall 3 rise 2/);
    expect(cfg).toMatch(/^\s*server n1 127\.0\.0\.11:8200$/m);
    // A node named by DNS has its name checked too.
    expect(cfg).toMatch(/^\s*server n3 localhost:8200 check-sni localhost verifyhost localhost$/m);
    const check = await haproxyCheck(cfg);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stderr).not.toMatch(/ALERT|WARNING/);
  });

  it('haproxy, read mode: standbys and perf standbys count as up through standbyok/perfstandbyok', async () => {
    const r = await cli(['lb', 'config', '-i', inventory, '--format', 'haproxy', '--mode', 'read']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('uri /v1/sys/health?standbyok=true&perfstandbyok=true\n');
    expect(r.stdout).toMatch(/^\s*http-check expect status 200$/m);
    expect(r.stdout).toMatch(/^\s*balance leastconn$/m);
    const check = await haproxyCheck(r.stdout);
    expect(check.code, check.stderr).toBe(0);
  });

  it('haproxy -c refuses the configuration when the CA file is not a certificate (the check is real)', async () => {
    const r = await cli(['lb', 'config', '-i', inventory, '--format', 'haproxy']);
    const check = await haproxyCheck(r.stdout.replaceAll(caCert, inventory));
    expect(check.code).not.toBe(0);
    expect(check.stderr).toMatch(/ca-file/);
  });

  it.each(['active', 'read'])('nginx, %s mode: a stream (TCP) proxy nginx -t accepts', async (mode) => {
    const r = await cli(['lb', 'config', '-i', inventory, '--format', 'nginx', '--mode', mode]);
    expect(r.code, r.stderr).toBe(0);
    // Said on stderr and in the file: nginx open source cannot act on health.
    expect(r.stderr).toMatch(/no active health checks/);
    expect(r.stdout).toMatch(/STAY IN ROTATION/);
    expect(r.stdout).toMatch(/^stream \{$/m);
    expect(r.stdout).not.toMatch(/\bssl_certificate\b|\bproxy_ssl\b/);
    expect(r.stdout).toMatch(/server 127\.0\.0\.11:8200 max_fails=1 fail_timeout=2s;/);
    const file = join(dir, `nginx-${mode}.conf`);
    const main = existsSync(NGINX_STREAM_MODULE) ? `load_module ${NGINX_STREAM_MODULE};\n` : '';
    writeFileSync(file, `${main}pid ${join(dir, 'nginx.pid')};\nerror_log stderr;\n${r.stdout}`);
    const t = await runProcess(NGINX, ['-t', '-c', file, '-p', dir], process.env);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stderr).toMatch(/test is successful/);
  });

  it('a load balancer named by DNS listens on every address of its host, on the port of its address', async () => {
    const named = join(dir, 'named.yml');
    writeFileSync(
      named,
      readFileSync(inventory, 'utf8').replace('https://127.0.0.1:18200', 'https://vault.example.com:18443'),
    );
    const r = await cli(['lb', 'config', '-i', named, '--format', 'haproxy']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\s*bind \*:18443$/m);
    const check = await haproxyCheck(r.stdout);
    expect(check.code, check.stderr).toBe(0);
  });

  it('-o writes the file; bad flags and an inventory without a CA get errors that say what to do', async () => {
    const out = join(dir, 'written.cfg');
    const w = await cli(['lb', 'config', '-i', inventory, '--format', 'haproxy', '-o', out]);
    expect(w.code, w.stderr).toBe(0);
    expect(readFileSync(out, 'utf8')).toMatch(/^backend vault_prod_active$/m);

    const f = await cli(['lb', 'config', '-i', inventory, '--format', 'traefik']);
    expect(f.code).toBe(2);
    expect(f.stderr).toMatch(/--format haproxy or --format nginx/);
    const m = await cli(['lb', 'config', '-i', inventory, '--format', 'haproxy', '--mode', 'all']);
    expect(m.code).toBe(2);
    expect(m.stderr).toMatch(/--mode active .* or --mode read/);

    const noCa = join(dir, 'no-ca.yml');
    writeFileSync(noCa, 'clusters:\n  c:\n    nodes:\n      - { name: n1, api_addr: "https://127.0.0.11:8200" }\n');
    const c = await cli(['lb', 'config', '-i', noCa, '--format', 'haproxy']);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/no tls\.ca_cert/);
    expect(c.stderr).toMatch(/Add tls: \{ ca_cert/);
  });
});
