import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLabCa, issueNodeCert } from '../../src/lab/certs.js';
import { clusterFor, labToken, readInit, runInMachine, unsealAll, waitHealthy } from '../../src/lab/lab.js';
import { serverLayout } from '../../src/lab/machine-root.js';
import { bridgeAddress } from '../../src/lab/machine-net.js';
import { CLI, NODE, runProcess, waitFor, type Ran } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { mainPids } from '../helpers/machines.js';

/**
 * A lab of systemd machines with a real HAProxy in front (`lab up --hosts --lb haproxy`), one lab
 * for the file, on the first flavour under test: the load balancer `vaultops lb config` writes,
 * `vaultops check` of it (and of a real nginx, which cannot act on health), and `vaultops tls
 * rotate` with certificates from the lab CA.
 */
const { flavor, version } = flavorsUnderTest()[0]!;
const layout = serverLayout(flavor);

interface Check {
  id: string;
  status: string;
  found: string;
}

/** The certificate a TLS server at host:port shows (sha256), without trusting anything. */
function fingerprintAt(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host, port, rejectUnauthorized: false, timeout: 3000 }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
    s.on('timeout', () => {
      s.destroy();
      reject(new Error('timeout'));
    });
  });
}

describe(`load balancer and TLS rotation on ${flavor} ${version} machines`, () => {
  let t: TestLab;
  let work: string;
  let lbHost: string;
  const outputs: string[] = [];
  const cli = async (args: string[]): Promise<Ran> => {
    const r = await runProcess(NODE, [CLI, ...args], { ...t.env, VAULT_TOKEN: '', BAO_TOKEN: '' });
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const check = async (inventory = t.inventory) => {
    const r = await cli(['check', '-i', inventory, '--json']);
    const report = JSON.parse(r.stdout) as { checks: Check[] };
    return (id: string) => report.checks.find((c) => c.id === id)!;
  };
  const nodeFingerprints = async () =>
    Object.fromEntries(
      await Promise.all(t.lab.nodes.map(async (n) => [n.name, await fingerprintAt(n.ip, 8200)] as const)),
    );
  const leaderName = async () => {
    const c = clusterFor(t.lab, labToken(t.lab));
    try {
      return (await c.findLeader()).node.name;
    } finally {
      c.close();
    }
  };

  beforeAll(async () => {
    t = await startTestLab({ name: 'lbtls', flavor, version, hosts: true, lb: 'haproxy' });
    work = mkdtempSync(join(tmpdir(), 'vaultops-lb-tls-'));
    lbHost = bridgeAddress(t.lab.machines!.subnet);
  }, 240_000);

  afterAll(async () => {
    await t?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
    const all = outputs.join('\n');
    for (const s of t?.secrets ?? []) expect(all).not.toContain(s);
  }, 120_000);

  it('the lab runs the configuration `lb config` writes, on the bridge address, and the inventory names it', async () => {
    const inv = readFileSync(t.inventory, 'utf8');
    expect(inv).toContain(`load_balancer:\n      address: "https://${lbHost}:8200"\n      mode: active`);
    const r = await cli(['lb', 'config', '-i', t.inventory, '--format', 'haproxy']);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(t.lab.loadBalancer!.config, 'utf8')).toBe(r.stdout);
    expect(r.stdout).toMatch(new RegExp(`^\\s*bind ${lbHost.replace(/\./g, '\\.')}:8200$`, 'm'));
    // Bound to the bridge address only, never every address of this machine.
    const ss = spawnSync('ss', ['-Hltnp'], { encoding: 'utf8' }).stdout;
    const haproxy = ss.split('\n').filter((l) => /"haproxy"/.test(l) && l.includes(`${lbHost}:8200`));
    expect(haproxy.length).toBeGreaterThan(0);
    expect(ss.split('\n').filter((l) => /"haproxy"/.test(l) && /(0\.0\.0\.0|\*|\[::\]):8200\b/.test(l))).toEqual([]);
  });

  it('check: requests through HAProxy reach the active node, whose own certificate the client sees', async () => {
    const leader = await leaderName();
    const fps = await nodeFingerprints();
    expect(await fingerprintAt(lbHost, 8200)).toBe(fps[leader]);
    const c = await check();
    expect(c('lb.passthrough').status).toBe('pass');
    expect(c('lb.passthrough').found).toContain(`node ${leader}'s`);
    expect(c('lb.certificate-name').status).toBe('pass');
    expect(c('lb.routing').status, c('lb.routing').found).toBe('pass');
    expect(c('lb.routing').found).toMatch(new RegExp(`reached the active node ${leader} \\(200\\)`));
  });

  it('a sealed active node drops out within the fall time; the new active node is served soon after', async () => {
    const fps = await nodeFingerprints();
    const cluster = clusterFor(t.lab, labToken(t.lab));
    const sealed = (await cluster.findLeader()).node.name;
    const samples: { at: number; fp?: string }[] = [];
    // Sampled on fresh connections from before the seal until the new active node has been served
    // ten times in a row: a sealing node steps down before it reports itself sealed.
    let settled = false;
    const sampler = (async () => {
      const deadline = Date.now() + 40_000;
      while (!settled && Date.now() < deadline) {
        const fp = await fingerprintAt(lbHost, 8200).catch(() => undefined);
        samples.push({ at: Date.now(), ...(fp ? { fp } : {}) });
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const sealStart = Date.now();
    let sealDone = 0;
    try {
      await cluster.client(sealed).seal();
      sealDone = Date.now();
      await waitFor(
        'the new active node served ten times in a row through the load balancer',
        async () => {
          const recent = samples.filter((s) => s.at > sealDone).slice(-10);
          return recent.length === 10 && recent.every((s) => s.fp && s.fp !== fps[sealed]) ? true : undefined;
        },
        30_000,
      );
    } finally {
      settled = true;
      await sampler;
      cluster.close();
    }
    const lastSealed = Math.max(sealStart, ...samples.filter((s) => s.fp === fps[sealed]).map((s) => s.at));
    // Once the seal has returned (the node answers 503), the inventory's timing applies:
    // interval 500ms, fall 2 -> out after at most 1.5 s; 0.5 s of slack.
    expect(lastSealed - sealDone).toBeLessThanOrEqual(2000);
    const firstNew = samples.find((s) => s.at > sealStart && s.fp && s.fp !== fps[sealed])!.at;
    console.log(
      `sealed ${sealed}: the seal took ${sealDone - sealStart} ms; last connection to it ${lastSealed - sealStart} ms after the seal began, first to the new active node ${firstNew - sealStart} ms after`,
    );
    const c = await check();
    expect(c('lb.routing').status, c('lb.routing').found).toBe('pass');
    expect(c('lb.routing').found).toContain(`never ${sealed} (down)`);
    expect(c('lb.routing').found).not.toMatch(new RegExp(`active node ${sealed}\\b`));
    await unsealAll(t.lab, readInit(t.lab), () => undefined);
    await waitHealthy(t.lab, labToken(t.lab), () => undefined);
  }, 120_000);

  it('check fails a real nginx in front: it cannot take standbys (or sealed nodes) out', async () => {
    // nginx open source has only passive checks: what `lb config --format nginx` says in its comments.
    const conf = await cli(['lb', 'config', '-i', t.inventory, '--format', 'nginx']);
    expect(conf.code, conf.stderr).toBe(0);
    const dir = join(work, 'nginx');
    mkdirSync(dir);
    const file = join(dir, 'nginx.conf');
    writeFileSync(
      file,
      `load_module /usr/lib/nginx/modules/ngx_stream_module.so;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\n${conf.stdout.replace(`listen ${lbHost}:8200;`, `listen ${lbHost}:8209;`)}`,
    );
    const inventory = join(work, 'via-nginx.yml');
    writeFileSync(
      inventory,
      readFileSync(t.inventory, 'utf8').replace(`https://${lbHost}:8200`, `https://${lbHost}:8209`),
    );
    const started = spawnSync('/usr/sbin/nginx', ['-c', file, '-p', dir], { encoding: 'utf8' });
    expect(started.status, started.stderr).toBe(0);
    try {
      const c = await check(inventory);
      expect(c('lb.passthrough').status).toBe('pass');
      expect(c('lb.routing').status).toBe('fail');
      expect(c('lb.routing').found).toMatch(/standby, 429/);
    } finally {
      const pid = Number(readFileSync(join(dir, 'nginx.pid'), 'utf8').trim());
      process.kill(pid, 'SIGTERM');
      await waitFor(
        'nginx to stop',
        async () => {
          try {
            process.kill(pid, 0);
            return undefined;
          } catch {
            return true;
          }
        },
        10_000,
      );
    }
  }, 60_000);

  /** A certificate per node from the lab CA, valid for its names and the load balancer's address. */
  const issue = async (dirName: string) => {
    const dir = join(work, dirName);
    mkdirSync(dir);
    const ca = await ensureLabCa(join(t.lab.dir, 'tls'), t.lab.name);
    for (const n of t.lab.nodes) await issueNodeCert(dir, ca, n, [`IP:${lbHost}`]);
    return dir;
  };
  const leftovers = async () => {
    const found: string[] = [];
    for (const n of t.lab.nodes) {
      const r = await runInMachine(t.lab, n.name, ['sh', '-c', `ls ${layout.tlsDir}`]);
      if (/vaultops-(new|old)/.test(r.stdout)) found.push(`${n.name}: ${r.stdout.trim().replace(/\n/g, ' ')}`);
    }
    return found;
  };

  it('tls rotate refuses a certificate whose names do not match (and a key that is not its own) before touching any node', async () => {
    const good = await issue('mixed');
    const bad = join(work, 'bad');
    mkdirSync(bad);
    // n1 gets n2's certificate (n2's names); n3 gets a key that belongs to another certificate.
    copyFileSync(join(good, 'n2.pem'), join(bad, 'n1.pem'));
    copyFileSync(join(good, 'n2.key'), join(bad, 'n1.key'));
    copyFileSync(join(good, 'n2.pem'), join(bad, 'n2.pem'));
    copyFileSync(join(good, 'n2.key'), join(bad, 'n2.key'));
    copyFileSync(join(good, 'n3.pem'), join(bad, 'n3.pem'));
    copyFileSync(join(good, 'n1.key'), join(bad, 'n3.key'));
    const before = await nodeFingerprints();
    const pids = await mainPids(t.lab);
    const r = await cli(['tls', 'rotate', '-i', t.inventory, '--cert-dir', bad, '--non-interactive']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no node was touched');
    expect(r.stderr).toMatch(/n1: .*n1\.pem \(CN=n2, .*does not cover [0-9.]+\.11, n1/);
    expect(r.stderr).toMatch(/n3: .*n3\.key is not the key of .*n3\.pem/);
    expect(r.stderr).not.toMatch(/^\s+n2:/m);
    expect(await nodeFingerprints()).toEqual(before);
    expect(await mainPids(t.lab)).toEqual(pids);
    expect(await leftovers()).toEqual([]);
  });

  it('tls rotate: node by node, active last, SIGHUP (no restart), each node then serves its new certificate', async () => {
    const dir = await issue('new');
    const leader = await leaderName();
    const pids = await mainPids(t.lab);
    const r = await cli(['tls', 'rotate', '-i', t.inventory, '--cert-dir', dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { nodes: { node: string; status: string; fingerprint_after: string }[] };
    expect(result.nodes.map((n) => n.status)).toEqual(['rotated', 'rotated', 'rotated']);
    expect(result.nodes.at(-1)!.node).toBe(leader);
    const now = await nodeFingerprints();
    for (const n of t.lab.nodes) {
      const { X509Certificate } = await import('node:crypto');
      const expected = new X509Certificate(readFileSync(join(dir, `${n.name}.pem`))).fingerprint256;
      expect(now[n.name]).toBe(expected);
      expect(result.nodes.find((x) => x.node === n.name)!.fingerprint_after).toBe(expected);
    }
    // Reloaded, not restarted: the same server processes, still unsealed and healthy.
    expect(await mainPids(t.lab)).toEqual(pids);
    await waitHealthy(t.lab, labToken(t.lab), () => undefined);
    // Through the load balancer, the client now sees the active node's new certificate.
    expect(await fingerprintAt(lbHost, 8200)).toBe(now[leader]);
    // Run again: every node already serves its certificate, nothing is touched.
    const again = await cli(['tls', 'rotate', '-i', t.inventory, '--cert-dir', dir, '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect((JSON.parse(again.stdout) as typeof result).nodes.map((n) => n.status)).toEqual([
      'unchanged',
      'unchanged',
      'unchanged',
    ]);
  }, 120_000);

  it('the tls-rotate playbook rotates through the engine the same way', async () => {
    const dir = await issue('playbook');
    const r = await cli(['run', 'tls-rotate', '-i', t.inventory, '--var', `cert_dir=${dir}`, '--non-interactive']);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const now = await nodeFingerprints();
    const { X509Certificate } = await import('node:crypto');
    for (const n of t.lab.nodes)
      expect(now[n.name]).toBe(new X509Certificate(readFileSync(join(dir, `${n.name}.pem`))).fingerprint256);
    const c = await check();
    expect(c('lb.passthrough').status).toBe('pass');
    expect(c('tls.certificate').status).toBe('pass');
  }, 120_000);
});
