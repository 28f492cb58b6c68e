import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import type { BackupStore } from '../backup/stores/store.js';
import { huntRootTokens } from '../vault/root-tokens.js';
import type { ClusterSpec } from '../inventory/schema.js';
import { loadTls, type TlsSettings } from '../vault/tls.js';
import type { ClusterClient, ClusterStatus } from '../vault/cluster.js';
import type { VaultClient } from '../vault/client.js';
import type { CheckResult } from './check-result.js';
import { releaseList, type ReleaseListOptions } from './release-list.js';
import { versionStanding } from './versions.js';

export interface ApiCheckInput {
  clusterName: string;
  spec: ClusterSpec;
  cluster: ClusterClient;
  tls: TlsSettings;
  /** The cluster's backup stores (from the inventory); empty when it has none. */
  stores: BackupStore[];
  drillDir: string;
  /**
   * Reads the drill reports in a folder, newest first (the drill family's readDrillReports, handed
   * in by the caller: check and drill are sibling use cases).
   */
  readDrillReports: (dir: string) => Promise<DrillReportSummary[]>;
  now: Date;
  /** Backups older than this fail (default 25 h: hourly or daily backups with slack). */
  maxBackupAgeMs?: number | undefined;
  /** Drills older than this fail (default 8 days: weekly drills with slack). */
  maxDrillAgeMs?: number | undefined;
  /** Where the release list for version.support comes from (upstream, cached; offline). */
  releases?: ReleaseListOptions | undefined;
}

/** The fields of a drill report (drill/run-drill.ts DrillReport) that the drill check reads. */
export interface DrillReportSummary {
  id: string;
  cluster: string;
  result: 'passed' | 'failed';
  started_at: string;
  finished_at: string;
  rto_ms?: number | undefined;
}

type Partial = Omit<CheckResult, 'status' | 'found' | 'target'> & { target?: string };

const RULES = {
  tlsListener: {
    id: 'tls.listener',
    title: 'TLS on every API listener',
    checklist: 'production-hardening',
    severity: 'critical',
    fix: 'Give every listener tls_cert_file/tls_key_file (never tls_disable = true) and use https:// in api_addr.',
  },
  tlsCert: {
    id: 'tls.certificate',
    title: 'Certificate chain valid, not expiring within 30 days',
    checklist: 'production-hardening',
    severity: 'critical',
    fix: "Issue the node a certificate from the CA in tls.ca_cert with the node's address in its SANs; renew before it expires and send SIGHUP to reload it.",
  },
  voters: {
    id: 'raft.voters',
    title: 'At least 3 voters',
    checklist: 'raft-reference-architecture',
    severity: 'critical',
    fix: 'Run 3 (better 5) voting nodes: `vault operator raft join` more nodes and let autopilot promote them.',
  },
  voters5: {
    id: 'raft.voters-recommended',
    title: '5 voters (tolerates 2 failures)',
    checklist: 'raft-reference-architecture',
    severity: 'info',
    fix: 'Add two more voters spread over the zones.',
  },
  tolerance: {
    id: 'raft.failure-tolerance',
    title: 'Failure tolerance >= 1',
    checklist: 'raft-reference-architecture',
    severity: 'critical',
    fix: 'Bring every voter back healthy (`vaultops status`) and keep an odd number of voters >= 3.',
  },
  zones: {
    id: 'ha.zones',
    title: 'Nodes spread over >= 2 zones',
    checklist: 'raft-reference-architecture',
    severity: 'warning',
    fix: 'Place nodes in at least 2 (best 3) failure domains and record them as `zone:` per node (and autopilot redundancy zones on Enterprise).',
  },
  audit: {
    id: 'audit.devices',
    title: 'At least 2 audit devices enabled',
    checklist: 'audit-devices',
    severity: 'critical',
    fix: 'Enable two audit devices (e.g. file to two disks, or file + socket): `vault audit enable -path=file2 file file_path=/var/log/vault/audit-2.log`. With one, a blocked device blocks Vault.',
  },
  rootTokens: {
    id: 'tokens.root',
    title: 'No root tokens outstanding',
    checklist: 'production-hardening',
    severity: 'critical',
    fix: 'Revoke them (`vaultops root hunt --revoke`) and generate a root token only for a task, from a quorum of key holders (`vaultops root generate`).',
  },
  seal: {
    id: 'seal.config',
    title: 'Auto-unseal, or Shamir with >= 3 shares and threshold >= 2',
    checklist: 'production-hardening',
    severity: 'warning',
    fix: 'Use an auto-unseal (KMS/HSM/transit) or rekey to a sane split: `vaultops rekey start --shares 5 --threshold 3`.',
  },
  telemetry: {
    id: 'telemetry.metrics',
    title: 'Prometheus metrics reachable',
    checklist: 'production-hardening',
    severity: 'warning',
    fix: 'Add `telemetry { prometheus_retention_time = "24h"  disable_hostname = true }` to the server config and scrape /v1/sys/metrics?format=prometheus.',
  },
  version: {
    id: 'version.support',
    title: 'Version current within its line, nodes alike',
    checklist: 'production-hardening',
    severity: 'warning',
    fix: 'Upgrade to the newest patch of the line (`vaultops upgrade`, standbys first); keep all nodes on one version.',
  },
  autopilot: {
    id: 'autopilot.config',
    title: 'Autopilot cleans up dead servers with a min quorum',
    checklist: 'raft-reference-architecture',
    severity: 'warning',
    fix: 'vault operator raft autopilot set-config -cleanup-dead-servers=true -min-quorum=<voters> (min quorum = your voter count, at least 3).',
  },
  backup: {
    id: 'backup.age',
    title: 'A verified backup younger than 25 h',
    checklist: 'recovery',
    severity: 'critical',
    fix: "Schedule `vaultops backup` (`vaultops schedule backup`) to a store listed under the cluster's `stores:`.",
  },
  drill: {
    id: 'drill.age',
    title: 'A passed restore drill in the last 8 days',
    checklist: 'recovery',
    severity: 'warning',
    fix: 'Schedule `vaultops drill` weekly (`vaultops schedule drill`); failures call the webhook.',
  },
} as const satisfies Record<string, Partial>;

const r = (rule: Partial, status: CheckResult['status'], found: string, target = 'cluster'): CheckResult => ({
  ...rule,
  target,
  status,
  found,
});

/** Everything the cluster's API can tell. Each check catches its own errors into `unknown`. */
export async function runApiChecks(i: ApiCheckInput): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const status = await i.cluster.status();
  const reachable = status.nodes.filter((n) => n.reachable);

  for (const n of i.spec.nodes) {
    const url = new URL(n.api_addr);
    if (url.protocol !== 'https:') {
      out.push(
        r(
          RULES.tlsListener,
          'fail',
          `${n.api_addr} is plain HTTP: tokens and unseal keys cross the network in clear`,
          n.name,
        ),
      );
      out.push(r(RULES.tlsCert, 'skip', 'no TLS listener', n.name));
      continue;
    }
    out.push(r(RULES.tlsListener, 'pass', `${n.api_addr}`, n.name));
    out.push(await certificateCheck(n.name, url, i.tls, i.now));
  }

  if (!reachable.length) {
    for (const rule of [
      RULES.voters,
      RULES.tolerance,
      RULES.audit,
      RULES.rootTokens,
      RULES.seal,
      RULES.telemetry,
      RULES.version,
      RULES.autopilot,
    ])
      out.push(r(rule, 'unknown', 'no node answered'));
  } else {
    out.push(...quorumChecks(status));
    const leader = await i.cluster.findLeader().catch(() => undefined);
    const lc = leader?.client;
    out.push(zonesCheck(i.spec));
    out.push(
      await guarded(RULES.audit, lc, async (c) => {
        const body = await c.read<Record<string, unknown>>('sys/audit');
        const data = (body['data'] && typeof body['data'] === 'object' ? body['data'] : body) as Record<
          string,
          { type?: string }
        >;
        const devices = Object.entries(data)
          .filter(([, v]) => v && typeof v === 'object' && typeof v.type === 'string')
          .map(([p, v]) => `${p} (${v.type})`);
        if (devices.length >= 2) return ['pass', `${devices.length} enabled: ${devices.join(', ')}`];
        return [
          'fail',
          devices.length === 0
            ? 'no audit device is enabled: nothing records who did what'
            : `only one audit device (${devices[0]}): if it blocks, every request blocks`,
        ];
      }),
    );
    out.push(
      await guarded(RULES.rootTokens, lc, async (c) => {
        const found = await huntRootTokens(c);
        if (!found.length) return ['pass', 'no token carries the root policy'];
        return [
          'fail',
          `${found.length} root token(s): ${found.map((t) => `accessor ${t.accessor} created ${t.created}${t.displayName ? ` (${t.displayName})` : ''}${t.isOwn ? ', the token this check uses' : ''}`).join('; ')}`,
        ];
      }),
    );
    out.push(
      await guarded(RULES.seal, lc, async (c) => {
        const s = await c.sealStatus();
        if (s.type !== 'shamir')
          return ['pass', `auto-unseal (${s.type})${s.recovery_seal ? `, recovery keys ${s.t} of ${s.n}` : ''}`];
        const sane = s.n >= 3 && s.t >= 2 && s.t <= s.n;
        return [
          sane ? 'pass' : 'fail',
          `Shamir, ${s.n} shares, threshold ${s.t}${sane ? '' : ': one person (or one lost share) decides'}`,
        ];
      }),
    );
    out.push(
      await guarded(RULES.telemetry, lc, async (c) => {
        const res = await c.raw('GET', '/sys/metrics?format=prometheus');
        if (res.status === 200 && /^# (HELP|TYPE) /m.test(res.body.toString('utf8')))
          return ['pass', 'sys/metrics?format=prometheus answers with metrics'];
        const text = res.body.toString('utf8').slice(0, 160).replace(/\s+/g, ' ');
        return [
          'fail',
          `sys/metrics?format=prometheus answered ${res.status}${/prometheus is not enabled/i.test(text) ? ': prometheus_retention_time is not set' : ''}`,
        ];
      }),
    );
    out.push(await versionCheck(i.spec.flavor, status, i.releases));
    out.push(
      await guarded(RULES.autopilot, lc, async (c) => {
        const cfg = await c.read<{
          data: { cleanup_dead_servers?: boolean; min_quorum?: number; dead_server_last_contact_threshold?: string };
        }>('sys/storage/raft/autopilot/configuration');
        const d = cfg.data;
        const problems: string[] = [];
        if (!d.cleanup_dead_servers)
          problems.push('cleanup_dead_servers is off: a dead node stays a voter and counts against quorum');
        if (!d.min_quorum || d.min_quorum < 3)
          problems.push(`min_quorum is ${d.min_quorum ?? 'unset'}: cleanup could shrink the cluster below 3 voters`);
        return problems.length
          ? ['fail', problems.join('; ')]
          : [
              'pass',
              `cleanup_dead_servers on, min_quorum ${d.min_quorum}, dead server threshold ${d.dead_server_last_contact_threshold ?? 'default'}`,
            ];
      }),
    );
  }
  out.push(await backupCheck(i));
  out.push(await drillCheck(i));
  return out;
}

async function guarded(
  rule: Partial,
  client: VaultClient | undefined,
  fn: (c: VaultClient) => Promise<[CheckResult['status'], string]>,
): Promise<CheckResult> {
  if (!client) return r(rule, 'unknown', 'no active node to ask');
  try {
    const [status, found] = await fn(client);
    return r(rule, status, found);
  } catch (e) {
    const code = (e as { status?: number }).status;
    return r(
      rule,
      'unknown',
      code === 403
        ? "permission denied: the inventory's token cannot read this (give it a policy with read/list/sudo on the path)"
        : `could not be read: ${(e as Error).message}`,
    );
  }
}

function quorumChecks(status: ClusterStatus): CheckResult[] {
  if (!status.autopilot) {
    const why = status.autopilotNote ?? 'autopilot state not readable';
    return [r(RULES.voters, 'unknown', why), r(RULES.voters5, 'unknown', why), r(RULES.tolerance, 'unknown', why)];
  }
  const v = status.autopilot.voters;
  return [
    r(RULES.voters, v >= 3 ? 'pass' : 'fail', `${v} voter(s)${v < 3 ? ': losing one node loses quorum' : ''}`),
    r(RULES.voters5, v >= 5 ? 'pass' : 'fail', `${v} voters (tolerates ${Math.floor((v - 1) / 2)})`),
    r(
      RULES.tolerance,
      status.autopilot.failureTolerance >= 1 ? 'pass' : 'fail',
      `failure tolerance ${status.autopilot.failureTolerance}, autopilot ${status.autopilot.healthy ? 'healthy' : 'UNHEALTHY'}`,
    ),
  ];
}

function zonesCheck(spec: ClusterSpec): CheckResult {
  const zones = new Set(spec.nodes.map((n) => n.zone).filter((z): z is string => z !== undefined));
  const missing = spec.nodes.filter((n) => n.zone === undefined).map((n) => n.name);
  if (zones.size >= 2)
    return r(
      RULES.zones,
      'pass',
      `${zones.size} zones: ${[...zones].join(', ')}${missing.length ? ` (no zone: ${missing.join(', ')})` : ''}`,
    );
  return r(
    RULES.zones,
    'fail',
    zones.size === 0 ? 'no node has a zone in the inventory' : `all nodes in one zone (${[...zones][0]})`,
  );
}

async function versionCheck(
  flavor: string | undefined,
  status: ClusterStatus,
  options: ReleaseListOptions | undefined,
): Promise<CheckResult> {
  const versions = [...new Set(status.nodes.map((n) => n.version).filter((v): v is string => v !== undefined))];
  if (!versions.length) return r(RULES.version, 'unknown', 'no node reported a version');
  if (versions.length > 1)
    return r(
      RULES.version,
      'fail',
      `nodes run different versions: ${versions.join(', ')} (an upgrade left half done?)`,
    );
  const v = versions[0]!;
  const f = flavor ?? (/^2\./.test(v) ? 'openbao' : 'vault');
  const list = await releaseList(f, options);
  const from =
    list.source === 'bundled'
      ? `the release list bundled with vaultops (${list.asOf})${list.why ? `; ${list.why}` : ''}`
      : `the upstream release list of ${list.asOf.slice(0, 10)}${list.why ? ` (${list.why})` : ''}`;
  const s = versionStanding(f, v, list.versions);
  if (!s.known) return r(RULES.version, 'unknown', `${f} ${v}: a line that ${from} does not hold`);
  if (s.olderThanList) return r(RULES.version, 'fail', `${f} ${v}: older than every line of ${from}; out of support`);
  const behind = s.newestOfLine !== v;
  const found = `${f} ${v}${behind ? `; ${s.newestOfLine} is the newest of its line` : ', newest of its line'}${s.newerLines ? `; ${s.newerLines} newer minor line(s) exist` : ''} (per ${from})`;
  return r(RULES.version, behind || s.newerLines > 2 ? 'fail' : 'pass', found);
}

async function certificateCheck(node: string, url: URL, settings: TlsSettings, now: Date): Promise<CheckResult> {
  let loaded;
  try {
    loaded = loadTls(settings);
  } catch (e) {
    return r(RULES.tlsCert, 'unknown', (e as Error).message, node);
  }
  const port = Number(url.port || 443);
  return new Promise<CheckResult>((resolveCheck) => {
    const socket = tlsConnect(
      {
        host: url.hostname,
        port,
        ca: loaded.ca,
        servername: loaded.servername ?? (/^[\d.]+$|:/.test(url.hostname) ? undefined : url.hostname),
        rejectUnauthorized: false,
        timeout: 10_000,
      },
      () => {
        const cert: PeerCertificate = socket.getPeerCertificate(true);
        const authorized = socket.authorized;
        const why = socket.authorizationError ? String(socket.authorizationError) : undefined;
        socket.end();
        const expires = new Date(cert.valid_to);
        const days = Math.floor((expires.getTime() - now.getTime()) / 86_400_000);
        const subject = cert.subject?.CN ?? '?';
        const issuer = cert.issuer?.CN ?? '?';
        const desc = `CN=${subject}, issued by ${issuer}, expires ${expires.toISOString().slice(0, 10)} (${days} days)`;
        if (!authorized)
          resolveCheck(r(RULES.tlsCert, 'fail', `${desc}: chain not valid (${why ?? 'unverified'})`, node));
        else if (days < 30) resolveCheck(r(RULES.tlsCert, 'fail', `${desc}: expires within 30 days`, node));
        else resolveCheck(r(RULES.tlsCert, 'pass', desc, node));
      },
    );
    socket.on('timeout', () => {
      socket.destroy();
      resolveCheck(r(RULES.tlsCert, 'unknown', `${url.host} did not answer the TLS handshake within 10 s`, node));
    });
    socket.on('error', (e) => resolveCheck(r(RULES.tlsCert, 'unknown', `${url.host}: ${e.message}`, node)));
  });
}

async function backupCheck(i: ApiCheckInput): Promise<CheckResult> {
  if (!i.stores.length)
    return r(RULES.backup, 'fail', 'the cluster has no `stores:` in the inventory, so no backup can be found');
  const maxAge = i.maxBackupAgeMs ?? 25 * 3_600_000;
  let newest: { at: number; where: string } | undefined;
  const problems: string[] = [];
  for (const s of i.stores) {
    try {
      for (const e of await s.list()) {
        if (!e.manifest || e.manifest.cluster.name !== i.clusterName || e.manifest.reason !== 'backup') continue;
        const at = Date.parse(e.manifest.finished_at);
        if (!newest || at > newest.at) newest = { at, where: `${s.location}/${e.name}` };
      }
    } catch (e) {
      problems.push(`${s.location}: ${(e as Error).message}`);
    }
  }
  if (!newest)
    return r(
      RULES.backup,
      problems.length ? 'unknown' : 'fail',
      problems.length
        ? problems.join('; ')
        : `no verified backup of ${i.clusterName} in ${i.stores.map((s) => s.location).join(', ')}`,
    );
  const age = i.now.getTime() - newest.at;
  return r(
    RULES.backup,
    age <= maxAge ? 'pass' : 'fail',
    `newest ${newest.where}, ${(age / 3_600_000).toFixed(1)} h old`,
  );
}

async function drillCheck(i: ApiCheckInput): Promise<CheckResult> {
  const reports = await i.readDrillReports(i.drillDir);
  const passed = reports.find((x) => x.result === 'passed' && x.cluster === i.clusterName);
  if (!passed)
    return r(
      RULES.drill,
      'fail',
      reports.length
        ? `no passed drill in ${i.drillDir} (last: ${reports[0]!.result} at ${reports[0]!.started_at})`
        : `no drill report in ${i.drillDir}`,
    );
  const age = i.now.getTime() - Date.parse(passed.finished_at);
  const maxAge = i.maxDrillAgeMs ?? 8 * 86_400_000;
  return r(
    RULES.drill,
    age <= maxAge ? 'pass' : 'fail',
    `last passed drill ${passed.id}, ${(age / 86_400_000).toFixed(1)} days old, RTO ${passed.rto_ms === undefined ? 'n/a' : `${(passed.rto_ms / 1000).toFixed(1)} s`}`,
  );
}
