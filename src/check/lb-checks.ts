import { request } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { parseDuration } from '../core/duration.js';
import { sleep } from '../core/sleep.js';
import type { ClusterSpec, LoadBalancerSpec } from '../inventory/schema.js';
import { loadTls, type LoadedTls, type TlsSettings } from '../vault/tls.js';
import type { CheckResult } from './check-result.js';

/**
 * Checks of the load balancer the inventory names (`load_balancer:`), from the client's side:
 * what a request through it reaches and which certificate it shows. Each request opens its own
 * connection, so the balancer picks a node for each.
 */
export interface LbCheckInput {
  spec: ClusterSpec & { load_balancer: LoadBalancerSpec };
  tls: TlsSettings;
  /** The node that is active now (from the nodes themselves), when one is. */
  activeNode?: string | undefined;
  /** Nodes that answer sealed or uninitialised now. */
  downNodes: string[];
}

const RULES = {
  passthrough: {
    id: 'lb.passthrough',
    title: 'The load balancer passes TLS through (clients see the nodes’ certificates)',
    checklist: 'load-balancer',
    severity: 'critical',
    fix: 'Proxy TCP (HAProxy `mode tcp`, nginx `stream {}`) instead of terminating TLS; `vaultops lb config` writes such a configuration.',
  },
  name: {
    id: 'lb.certificate-name',
    title: 'The nodes’ certificates are valid under the load balancer’s name',
    checklist: 'load-balancer',
    severity: 'critical',
    fix: "Add the load balancer's DNS name (or IP) to every node certificate's SANs, then `vaultops tls rotate`.",
  },
  routing: {
    id: 'lb.routing',
    title: 'Requests through the load balancer reach only nodes that may serve them',
    checklist: 'load-balancer',
    severity: 'critical',
    fix: 'Health-check /v1/sys/health over TLS and keep only status 200 (active mode) or use standbyok/perfstandbyok (read mode); `vaultops lb config --format haproxy` does both.',
  },
} as const;

interface Seen {
  status: number;
  fingerprint: string;
  authorized: boolean;
  authorizationError?: string | undefined;
  subject: string;
}

/** How long a node that fails its health checks may still get connections (`fall` checks, `interval` apart). */
export function lbFallTimeMs(lb: LoadBalancerSpec): number {
  return (parseDuration(lb.interval) ?? 500) * (lb.fall + 1);
}

export async function runLoadBalancerChecks(i: LbCheckInput): Promise<CheckResult[]> {
  const lb = i.spec.load_balancer;
  const target = `lb ${new URL(lb.address).host}`;
  const res = (rule: (typeof RULES)[keyof typeof RULES], status: CheckResult['status'], found: string) => ({
    ...rule,
    target,
    status,
    found,
  });
  let loaded: LoadedTls;
  try {
    loaded = loadTls(i.tls);
  } catch (e) {
    const why = (e as Error).message;
    return Object.values(RULES).map((rule) => res(rule, 'unknown', why));
  }
  const byFingerprint = new Map<string, string[]>();
  for (const n of i.spec.nodes) {
    const fp = await nodeFingerprint(new URL(n.api_addr), loaded).catch(() => undefined);
    if (fp) byFingerprint.set(fp, [...(byFingerprint.get(fp) ?? []), n.name]);
  }
  const nodeOf = (s: Seen) => byFingerprint.get(s.fingerprint)?.join('/') ?? 'an unknown server';
  let first: Seen;
  try {
    first = await throughBalancer(lb.address, lb.mode, loaded);
  } catch (e) {
    const why = `${lb.address}: ${(e as Error).message}`;
    return Object.values(RULES).map((rule) => res(rule, 'unknown', why));
  }
  const out: CheckResult[] = [];
  out.push(
    byFingerprint.has(first.fingerprint)
      ? res(
          RULES.passthrough,
          'pass',
          `${first.subject} (sha256 ${short(first.fingerprint)}) is node ${nodeOf(first)}'s`,
        )
      : res(
          RULES.passthrough,
          'fail',
          `${first.subject} (sha256 ${short(first.fingerprint)}) is none of the nodes' certificates: the load balancer terminates TLS`,
        ),
  );
  out.push(
    first.authorized
      ? res(RULES.name, 'pass', `verified against the cluster CA as ${new URL(lb.address).hostname}`)
      : res(RULES.name, 'fail', `${first.subject}: ${first.authorizationError ?? 'not verified'}`),
  );

  // A node that just went down may keep getting connections until the balancer has seen `fall`
  // failed checks: sample until a full round is clean, or until that time has passed.
  const eligible = (s: Seen) => s.status === 200;
  const round = Math.max(4, 2 * i.spec.nodes.length);
  const deadline = Date.now() + lbFallTimeMs(lb) + 500;
  let bad: Seen[] = [];
  let good: Seen[] = [];
  for (;;) {
    bad = [];
    good = [];
    for (let k = 0; k < round; k++) {
      try {
        const s = await throughBalancer(lb.address, lb.mode, loaded);
        (eligible(s) ? good : bad).push(s);
      } catch (e) {
        bad.push({ status: 0, fingerprint: '', authorized: false, subject: (e as Error).message });
      }
    }
    if (!bad.length || Date.now() > deadline) break;
    await sleep(100);
  }
  const reached = [...new Set(good.map(nodeOf))].sort();
  if (bad.length) {
    const what = [...new Set(bad.map((s) => (s.status ? `${nodeOf(s)} (${describe(s.status)})` : s.subject)))];
    out.push(
      res(
        RULES.routing,
        'fail',
        `${bad.length} of ${round} requests still reached ${what.join(', ')} ${lbFallTimeMs(lb)} ms after the first check (interval ${lb.interval}, fall ${lb.fall})${i.downNodes.length ? `; down now: ${i.downNodes.join(', ')}` : ''}`,
      ),
    );
  } else if (lb.mode === 'active' && i.activeNode && reached.some((n) => !n.split('/').includes(i.activeNode!))) {
    out.push(
      res(RULES.routing, 'fail', `requests reached ${reached.join(', ')}, but the active node is ${i.activeNode}`),
    );
  } else {
    const mode = lb.mode === 'active' ? 'the active node' : 'unsealed nodes';
    out.push(
      res(
        RULES.routing,
        'pass',
        `${round} requests reached ${mode} ${reached.join(', ')} (200)${i.downNodes.length ? `; never ${i.downNodes.join(', ')} (down)` : ''}`,
      ),
    );
  }
  return out;
}

function describe(status: number): string {
  return (
    {
      429: 'standby, 429',
      473: 'perf standby, 473',
      501: 'not initialised, 501',
      503: 'sealed, 503',
    }[status] ?? `HTTP ${status}`
  );
}

function short(fp: string): string {
  return fp.slice(0, 23);
}

/** Same host rules as the API client: SNI only for DNS names. */
function sni(host: string, loaded: LoadedTls): string | undefined {
  return loaded.servername ?? (/^[\d.]+$|:/.test(host) ? undefined : host);
}

function nodeFingerprint(url: URL, loaded: LoadedTls): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      {
        host: url.hostname,
        port: Number(url.port || 443),
        ca: loaded.ca,
        servername: sni(url.hostname, loaded),
        rejectUnauthorized: false,
        timeout: 5000,
      },
      () => {
        const fp = socket.getPeerCertificate().fingerprint256;
        socket.end();
        resolve(fp);
      },
    );
    socket.on('timeout', () => {
      socket.destroy();
      reject(new Error('no TLS handshake within 5 s'));
    });
    socket.on('error', reject);
  });
}

/**
 * One GET of /v1/sys/health through the balancer on a connection of its own, asked as the
 * balancer's health check asks (so in read mode a standby answers 200), and the certificate the
 * client saw on the way.
 */
function throughBalancer(address: string, mode: LoadBalancerSpec['mode'], loaded: LoadedTls): Promise<Seen> {
  const url = new URL(address);
  const path = mode === 'active' ? '/v1/sys/health' : '/v1/sys/health?standbyok=true&perfstandbyok=true';
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: Number(url.port || 443),
        path,
        method: 'GET',
        agent: false,
        ca: loaded.ca,
        servername: sni(url.hostname, loaded),
        // Checked below and reported as its own finding, not as "unreachable".
        rejectUnauthorized: false,
        timeout: 5000,
      },
      (res) => {
        const socket = res.socket as import('node:tls').TLSSocket;
        const cert = socket.getPeerCertificate();
        const seen: Seen = {
          status: res.statusCode ?? 0,
          fingerprint: cert.fingerprint256,
          authorized: socket.authorized,
          authorizationError: socket.authorizationError ? String(socket.authorizationError) : undefined,
          subject: `CN=${cert.subject?.CN ?? '?'}`,
        };
        res.resume();
        res.on('end', () => resolve(seen));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', reject);
    req.end();
  });
}
