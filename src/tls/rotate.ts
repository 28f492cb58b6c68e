import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { InputError, VaultopsError } from '../core/errors.js';
import { abortableSleep } from '../core/sleep.js';
import type { ClusterSpec, NodeSpec } from '../inventory/schema.js';
import { shq, type Host } from '../ssh/host.js';
import { serviceManager } from '../ssh/services.js';
import type { ClusterClient } from '../vault/cluster.js';
import { isServing } from '../vault/health.js';

/**
 * TLS certificate rotation without a restart: every new certificate is checked before anything is
 * touched (chain to the cluster CA, validity, the node's names, the key), then node by node
 * (standbys first, the active node last) it is staged next to the live files, swapped in with a
 * backup of the old pair, and the listener reloaded with SIGHUP (`systemctl reload`, whose
 * ExecReload sends HUP; Vault and OpenBao reload listener certificates on SIGHUP). The node must
 * then serve the new certificate over TLS and still answer before the next node is touched.
 */
export interface TlsRotateOptions {
  clusterName: string;
  spec: ClusterSpec;
  cluster: ClusterClient;
  /** One `<node>.pem` (or `.crt`) and `<node>.key` per node. */
  certDir: string;
  openHost(node: NodeSpec): Promise<Host>;
  progress(message: string): void;
  signal: AbortSignal;
  now?: Date | undefined;
  /** How long a node has to serve the new certificate after the reload (default 30 s). */
  verifyTimeoutMs?: number | undefined;
}

export interface NodeRotation {
  node: string;
  status: 'rotated' | 'unchanged';
  fingerprint_before: string;
  fingerprint_after: string;
  not_after: string;
}

interface Prepared {
  node: NodeSpec;
  certFile: string;
  keyFile: string;
  fingerprint: string;
  notAfter: string;
  current: string;
  remoteCert: string;
  remoteKey: string;
}

const DEFAULT_UNIT = { vault: 'vault', openbao: 'openbao' } as const;

export async function rotateTlsCertificates(o: TlsRotateOptions): Promise<NodeRotation[]> {
  const caFile = o.spec.tls?.ca_cert;
  if (!caFile)
    throw new InputError(`Cluster ${o.clusterName} has no tls.ca_cert: new certificates are checked against it.`, {
      hint: `Add tls: { ca_cert: /path/to/ca.pem } to cluster ${o.clusterName} in the inventory.`,
    });
  const ca = new X509Certificate(readFileSync(caFile));
  const hosts = new Map<string, Host>();
  try {
    const prepared = await preflight(o, ca, hosts);
    const results: NodeRotation[] = [];
    for (const p of await leaderLast(o, prepared)) {
      if (o.signal.aborted) throw new VaultopsError('Interrupted before the next node: nothing more was touched.');
      results.push(await rotateNode(o, ca, p, hosts.get(p.node.name)!));
    }
    return results;
  } finally {
    for (const h of hosts.values()) h.close();
  }
}

/** Every check, on every node, before any node is touched; all problems are reported at once. */
async function preflight(o: TlsRotateOptions, ca: X509Certificate, hosts: Map<string, Host>): Promise<Prepared[]> {
  const problems: string[] = [];
  const prepared: Prepared[] = [];
  const now = o.now ?? new Date();
  const lbHost = o.spec.load_balancer ? new URL(o.spec.load_balancer.address).hostname : undefined;
  for (const node of o.spec.nodes) {
    const say = (m: string) => problems.push(`${node.name}: ${m}`);
    const certFile = ['pem', 'crt'].map((e) => join(o.certDir, `${node.name}.${e}`)).find((f) => existsSync(f));
    const keyFile = join(o.certDir, `${node.name}.key`);
    if (!certFile || !existsSync(keyFile)) {
      say(
        `${certFile ? '' : `no ${node.name}.pem (or .crt) `}${existsSync(keyFile) ? '' : `no ${node.name}.key `}in ${o.certDir}`,
      );
      continue;
    }
    let chain: X509Certificate[];
    try {
      chain = pemBlocks(readFileSync(certFile, 'utf8'), 'CERTIFICATE').map((b) => new X509Certificate(b));
      if (!chain.length) throw new Error('no PEM certificate in it');
    } catch (e) {
      say(`${certFile} is not a PEM certificate (${(e as Error).message})`);
      continue;
    }
    const leaf = chain[0]!;
    // The chain in the file, then the cluster CA: each certificate signed by the next.
    const links = [...chain, ca];
    const broken = links
      .slice(0, -1)
      .findIndex((c, k) => c.fingerprint256 !== ca.fingerprint256 && !signedBy(c, links[k + 1]!));
    if (broken >= 0) say(`${certFile} is not signed by the cluster CA (${ca.subject.replace(/\n/g, ', ')})`);
    if (new Date(leaf.validFrom) > now) say(`${certFile} is not valid before ${leaf.validFrom}`);
    if (new Date(leaf.validTo) <= now) say(`${certFile} expired on ${leaf.validTo}`);
    else if (new Date(leaf.validTo).getTime() - now.getTime() < 30 * 86_400_000)
      o.progress(`warning: ${node.name}: the new certificate expires on ${leaf.validTo}, within 30 days`);

    // The names clients use: the node's api_addr host, every name its current certificate has
    // (a load balancer's name, other DNS names), and the load balancer's address.
    const apiHost = new URL(node.api_addr).hostname.replace(/^\[|\]$/g, '');
    let current: { fingerprint: string; names: string[] } | undefined;
    try {
      current = await servedCertificate(node.api_addr, ca, false);
    } catch (e) {
      say(`cannot read the certificate it serves now at ${node.api_addr}: ${(e as Error).message}`);
    }
    const wanted = new Set([apiHost, ...(current?.names ?? []), ...(lbHost ? [lbHost] : [])]);
    const missing = [...wanted].filter((n) => !covers(leaf, n));
    if (missing.length)
      say(
        `${certFile} (${subjectCn(leaf)}, SANs ${leaf.subjectAltName ?? 'none'}) does not cover ${missing.join(', ')}: clients reaching the node by ${missing.length > 1 ? 'those names' : 'that name'} would refuse it`,
      );
    try {
      const key = createPrivateKey(readFileSync(keyFile));
      const fromKey = createPublicKey(key).export({ type: 'spki', format: 'der' });
      const fromCert = leaf.publicKey.export({ type: 'spki', format: 'der' });
      if (!fromKey.equals(fromCert)) say(`${keyFile} is not the key of ${certFile}`);
    } catch (e) {
      say(`${keyFile} is not a readable unencrypted private key (${(e as Error).message.split('\n')[0]})`);
    }

    // Where the listener reads its pair: the server configuration on the host.
    let remoteCert: string | undefined;
    let remoteKey: string | undefined;
    try {
      const host = await o.openHost(node);
      hosts.set(node.name, host);
      const config = node.service?.config;
      if (!config) say('service.config is not set in the inventory: the listener’s certificate paths are read from it');
      else {
        const text = await host.readFile(config);
        remoteCert = /^\s*tls_cert_file\s*=\s*"([^"]+)"/m.exec(text)?.[1];
        remoteKey = /^\s*tls_key_file\s*=\s*"([^"]+)"/m.exec(text)?.[1];
        if (!remoteCert || !remoteKey) say(`${config} has no tls_cert_file / tls_key_file in its listener`);
      }
    } catch (e) {
      say(`cannot reach the host: ${(e as Error).message}`);
    }
    if (!missing.length && broken < 0 && current && remoteCert && remoteKey)
      prepared.push({
        node,
        certFile,
        keyFile,
        fingerprint: leaf.fingerprint256,
        notAfter: new Date(leaf.validTo).toISOString(),
        current: current.fingerprint,
        remoteCert,
        remoteKey,
      });
  }
  if (problems.length)
    throw new InputError(`The new certificates of ${o.clusterName} were refused; no node was touched.`, {
      details: problems,
      hint: `Issue each node a certificate from the cluster CA whose SANs cover its api_addr host and every name it has now, put <node>.pem and <node>.key in ${o.certDir}, and run again.`,
    });
  return prepared;
}

/** Standbys first, the active node last: a reload that went wrong on a standby costs nothing. */
async function leaderLast(o: TlsRotateOptions, prepared: Prepared[]): Promise<Prepared[]> {
  const leader = await o.cluster
    .findLeader()
    .then((l) => l.node.name)
    .catch(() => undefined);
  return [...prepared.filter((p) => p.node.name !== leader), ...prepared.filter((p) => p.node.name === leader)];
}

async function rotateNode(o: TlsRotateOptions, ca: X509Certificate, p: Prepared, host: Host): Promise<NodeRotation> {
  const name = p.node.name;
  const result = (status: NodeRotation['status']): NodeRotation => ({
    node: name,
    status,
    fingerprint_before: p.current,
    fingerprint_after: p.fingerprint,
    not_after: p.notAfter,
  });
  if (p.current === p.fingerprint) {
    o.progress(`${name}: already serves the new certificate; nothing to do.`);
    return result('unchanged');
  }
  const sh = async (command: string, what: string) => {
    const r = await host.exec(command, { sudo: true, timeoutMs: 60_000 });
    if (r.code !== 0) throw new VaultopsError(`${name}: could not ${what}: ${r.stderr.trim() || `exit ${r.code}`}`);
  };
  const [cert, key] = [p.remoteCert, p.remoteKey];
  o.progress(`${name}: staging the new certificate next to ${cert}...`);
  await host.upload(p.certFile, `${cert}.vaultops-new`, { mode: 0o644 });
  await host.upload(p.keyFile, `${key}.vaultops-new`, { mode: 0o600 });
  // The new pair gets the owner and mode of the live one, so the server (often not root) can read it.
  await sh(
    [cert, key]
      .map(
        (f) =>
          `chown --reference=${shq(f)} ${shq(`${f}.vaultops-new`)} && chmod --reference=${shq(f)} ${shq(`${f}.vaultops-new`)}`,
      )
      .join(' && '),
    'give the staged files the owner and mode of the live ones',
  );
  if (o.signal.aborted) {
    await sh(`rm -f ${shq(`${cert}.vaultops-new`)} ${shq(`${key}.vaultops-new`)}`, 'remove the staged files');
    throw new VaultopsError(`Interrupted on ${name} before its certificate was swapped: it was not changed.`);
  }
  o.progress(`${name}: swapping it in (the old pair kept as *.vaultops-old) and reloading the listener (SIGHUP)...`);
  await sh(
    [cert, key].map((f) => `cp -p ${shq(f)} ${shq(`${f}.vaultops-old`)}`).join(' && ') +
      ' && ' +
      [cert, key].map((f) => `mv -f ${shq(`${f}.vaultops-new`)} ${shq(f)}`).join(' && '),
    'swap the certificate files',
  );
  try {
    await reload(o, p.node, host);
    await waitServing(o, ca, p.node, p.fingerprint);
  } catch (e) {
    o.progress(`${name}: ${(e as Error).message}; putting the old certificate back...`);
    await sh(
      [cert, key].map((f) => `mv -f ${shq(`${f}.vaultops-old`)} ${shq(f)}`).join(' && '),
      'put the old certificate back',
    );
    await reload(o, p.node, host);
    await waitServing(o, ca, p.node, p.current).catch(() => undefined);
    throw new VaultopsError(
      `${name} did not take the new certificate (${(e as Error).message}); it serves its old one again. Nodes before it keep their new certificates; nothing after it was touched.`,
      {
        hint: 'Look at the server log on the node (journalctl -u UNIT), fix the cause, and run `vaultops tls rotate` again: nodes that already serve their new certificate are skipped.',
      },
    );
  }
  o.progress(`${name}: serves the new certificate (sha256 ${p.fingerprint.slice(0, 23)}...) and answers.`);
  return result('rotated');
}

/** SIGHUP to the server: `systemctl reload` on systemd hosts (the unit's ExecReload), else kill -HUP. */
async function reload(o: TlsRotateOptions, node: NodeSpec, host: Host): Promise<void> {
  const unit = node.service?.name ?? DEFAULT_UNIT[o.spec.flavor ?? 'vault'];
  if ((node.service?.manager ?? 'systemd') === 'systemd') {
    const r = await host.exec(`systemctl reload ${shq(unit)}`, { sudo: true, timeoutMs: 60_000 });
    if (r.code !== 0) throw new VaultopsError(`systemctl reload ${unit} failed: ${r.stderr.trim()}`);
    return;
  }
  const st = await serviceManager(host, node.service, unit).status();
  if (!st.pid) throw new VaultopsError('the server is not running');
  const r = await host.exec(`kill -HUP ${st.pid}`, { timeoutMs: 15_000 });
  if (r.code !== 0) throw new VaultopsError(`kill -HUP ${st.pid} failed: ${r.stderr.trim()}`);
}

async function waitServing(
  o: TlsRotateOptions,
  ca: X509Certificate,
  node: NodeSpec,
  fingerprint: string,
): Promise<void> {
  const deadline = Date.now() + (o.verifyTimeoutMs ?? 30_000);
  let last = 'no answer yet';
  for (;;) {
    try {
      const served = await servedCertificate(node.api_addr, ca, true);
      if (served.fingerprint === fingerprint) {
        const h = await o.cluster.client(node.name).health();
        if (isServing(h.state)) return;
        last = `it answers ${h.state}`;
      } else last = `it still serves sha256 ${served.fingerprint.slice(0, 23)}...`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline)
      throw new VaultopsError(`after ${Math.round((o.verifyTimeoutMs ?? 30_000) / 1000)} s ${last}`);
    await abortableSleep(300, o.signal).catch(() => undefined);
  }
}

/**
 * The certificate a node serves and its names; with `verify`, only one valid under the CA for its
 * api_addr host (the one being replaced may be expired or wrong: that is why it is replaced).
 */
export function servedCertificate(
  apiAddr: string,
  ca: X509Certificate,
  verify: boolean,
): Promise<{ fingerprint: string; names: string[] }> {
  const url = new URL(apiAddr);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      {
        host,
        port: Number(url.port || 443),
        ca: ca.toString(),
        servername: isIP(host) ? undefined : host,
        rejectUnauthorized: verify,
        timeout: 5000,
      },
      () => {
        const c = socket.getPeerCertificate();
        socket.end();
        const names = (c.subjectaltname ?? '')
          .split(/,\s*/)
          .map((s) => /^(?:DNS|IP Address):(.+)$/.exec(s)?.[1])
          .filter((s): s is string => !!s);
        resolve({ fingerprint: c.fingerprint256, names });
      },
    );
    socket.on('timeout', () => {
      socket.destroy();
      reject(new Error('no TLS handshake within 5 s'));
    });
    socket.on('error', reject);
  });
}

function covers(cert: X509Certificate, name: string): boolean {
  return isIP(name) ? cert.checkIP(name) !== undefined : cert.checkHost(name) !== undefined;
}

function signedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

function subjectCn(cert: X509Certificate): string {
  return /CN=([^\n]+)/.exec(cert.subject)?.[1] ? `CN=${/CN=([^\n]+)/.exec(cert.subject)![1]}` : cert.subject;
}

function pemBlocks(text: string, label: string): string[] {
  return [...text.matchAll(new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----`, 'g'))].map(
    (m) => m[0],
  );
}
