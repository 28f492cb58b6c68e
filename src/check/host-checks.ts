import type { NodeSpec } from '../inventory/schema.js';
import type { Host } from '../ssh/host.js';
import { shq } from '../ssh/host.js';
import type { CheckResult } from './check-result.js';

const RULES = {
  swap: {
    id: 'host.swap',
    title: 'Swap off, or mlock in effect',
    checklist: 'production-hardening',
    severity: 'warning',
    fix: 'Disable swap (`swapoff -a`, remove it from /etc/fstab), or run with mlock (disable_mlock = false, CAP_IPC_LOCK). With Raft storage HashiCorp advises swap off and disable_mlock = true.',
  },
  core: {
    id: 'host.core-dumps',
    title: 'Core dumps disabled for the server',
    checklist: 'production-hardening',
    severity: 'critical',
    fix: 'Set LimitCORE=0 in the unit (or `ulimit -c 0` before start): a core dump holds the master key in clear.',
  },
  user: {
    id: 'host.server-user',
    title: 'Server not running as root',
    checklist: 'production-hardening',
    severity: 'critical',
    fix: 'Run the server as its own unprivileged user (User=vault in the unit) with only CAP_IPC_LOCK.',
  },
  unit: {
    id: 'host.unit-hardening',
    title: 'systemd unit hardened',
    checklist: 'systemd-unit',
    severity: 'warning',
    fix: "Use the production guide's unit: ProtectSystem=full, PrivateTmp=yes, NoNewPrivileges=yes, CapabilityBoundingSet=CAP_SYSLOG CAP_IPC_LOCK, LimitCORE=0, ProtectHome=read-only.",
  },
  perms: {
    id: 'host.permissions',
    title: 'Data dir, config and TLS keys not open to others',
    checklist: 'production-hardening',
    severity: 'critical',
    fix: "chmod 700 the data dir, 640 (or 600) the config and TLS keys, owned by the server's user.",
  },
  ports: {
    id: 'host.ports',
    title: 'Only the API, cluster and SSH ports listen',
    checklist: 'production-hardening',
    severity: 'warning',
    fix: "Stop or firewall other listeners on the node's addresses; allow only 8200 (API), 8201 (cluster) and SSH from admin networks.",
  },
  mac: {
    id: 'host.mac',
    title: 'SELinux enforcing or AppArmor confining the server',
    checklist: 'production-hardening',
    severity: 'warning',
    fix: 'Run SELinux in enforcing mode with the vault policy, or load an AppArmor profile for the server binary.',
  },
  clock: {
    id: 'host.clock',
    title: 'Clock synchronised',
    checklist: 'production-hardening',
    severity: 'warning',
    fix: 'Run chrony or systemd-timesyncd: TLS, token TTLs and Raft timing rely on the clock.',
  },
} as const;

type Rule = (typeof RULES)[keyof typeof RULES];
const r = (rule: Rule, target: string, status: CheckResult['status'], found: string): CheckResult => ({
  ...rule,
  target,
  status,
  found,
});

export const HOST_RULES: readonly Rule[] = Object.values(RULES);

/** Every host check of a node as `unknown` (the host could not be reached), never as passed. */
export function unknownHostChecks(node: string, why: string): CheckResult[] {
  return HOST_RULES.map((rule) => r(rule, node, 'unknown', `host not checked: ${why}`));
}

/**
 * One shell script gathers every fact (one round trip), printed as key=value lines. The server's
 * pid: systemd's MainPID, else the process whose command line names the node's config, else pidof.
 */
export function factScript(n: NodeSpec): string {
  const svc = n.service ?? {};
  const unit = svc.name ?? '';
  const config = svc.config ?? '';
  // "[s]erver" keeps pgrep from finding this very shell, whose command line holds the pattern too.
  const pattern = config ? `[s]erver -config=${config.replace(/[.[\]*^$\\]/g, '\\$&')}` : '';
  return [
    'PID=',
    svc.manager === 'systemd'
      ? `PID=$(systemctl show -p MainPID --value ${shq(unit || 'vault')} 2>/dev/null); [ "$PID" = 0 ] && PID=`
      : '',
    pattern ? `[ -z "$PID" ] && PID=$(pgrep -f -- ${shq(pattern)} | head -n1)` : '',
    '[ -z "$PID" ] && PID=$(pidof vault bao 2>/dev/null | awk \'{print $1}\')',
    'echo "pid=$PID"',
    'echo "swaps=$(tail -n +2 /proc/swaps 2>/dev/null | wc -l)"',
    'if [ -n "$PID" ]; then',
    '  echo "uid=$(stat -c %u /proc/$PID)"; echo "user=$(stat -c %U /proc/$PID)"',
    '  awk \'/^Max core file size/{print "core_soft="$5; print "core_hard="$6}\' /proc/$PID/limits',
    '  echo "vmlck=$(awk \'/^VmLck/{print $2}\' /proc/$PID/status)"',
    '  echo "mac_label=$(tr -d \'\\0\' < /proc/$PID/attr/current 2>/dev/null)"',
    'fi',
    'echo "selinux=$(cat /sys/fs/selinux/enforce 2>/dev/null)"',
    'echo "apparmor=$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)"',
    config
      ? `echo "mlock_disabled=$(grep -Ec '^[[:space:]]*disable_mlock[[:space:]]*=[[:space:]]*true' ${shq(config)} 2>/dev/null)"`
      : '',
    // Paths are data: every value from the inventory goes through shq, never into double quotes
    // (where $(...) and backticks would run). Newlines become spaces so a path stays one fact line.
    ...[
      ['data', svc.data_dir],
      ['config', config],
    ]
      .filter(([, p]) => p)
      .map(
        ([k, p]) =>
          `printf 'perm_${k}=%s|%s\\n' ${shq(p!.replace(/[\r\n]/g, ' '))} "$(stat -c '%a %U' -- ${shq(p!)} 2>/dev/null)"`,
      ),
    config
      ? `for k in $(sed -n 's/.*tls_key_file[[:space:]]*=[[:space:]]*"\\(.*\\)".*/\\1/p' ${shq(config)} 2>/dev/null); do echo "perm_key=$k|$(stat -c '%a %U' "$k" 2>/dev/null)"; done`
      : '',
    'echo "ntp=$(timedatectl show -p NTPSynchronized --value 2>/dev/null)"',
    'echo "chrony=$(chronyc -n tracking 2>/dev/null | sed -n \'s/^Leap status *: *//p\')"',
    svc.manager === 'systemd'
      ? `systemctl show ${shq(unit || 'vault')} -p ProtectSystem -p PrivateTmp -p NoNewPrivileges -p CapabilityBoundingSet -p LimitCORE -p ProtectHome 2>/dev/null | sed 's/^/unit_/'`
      : '',
    'awk \'NR>1 && $4=="0A"{print "listen="$2}\' /proc/net/tcp /proc/net/tcp6 2>/dev/null',
    'exit 0',
  ]
    .filter(Boolean)
    .join('\n');
}

interface Facts {
  one: Map<string, string>;
  many: Map<string, string[]>;
}

function parseFacts(text: string): Facts {
  const one = new Map<string, string>();
  const many = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i <= 0) continue;
    const k = line.slice(0, i);
    const v = line.slice(i + 1).trim();
    one.set(k, v);
    many.set(k, [...(many.get(k) ?? []), v]);
  }
  return { one, many };
}

/** /proc/net/tcp "0100007F:1F90" -> 127.0.0.1:8080; tcp6 addresses as hex groups (:: for wildcard). */
export function decodeProcAddr(hex: string): { ip: string; port: number } {
  const [a, p] = hex.split(':') as [string, string];
  const port = Number.parseInt(p, 16);
  if (a.length === 8) {
    const bytes = a
      .match(/../g)!
      .map((b) => Number.parseInt(b, 16))
      .reverse();
    return { ip: bytes.join('.'), port };
  }
  if (/^0+$/.test(a)) return { ip: '::', port };
  if (/^0{16}FFFF0000/i.test(a)) return decodeProcAddr(`${a.slice(24)}:${p}`);
  return { ip: a.toLowerCase(), port };
}

export async function runHostChecks(n: NodeSpec, host: Host): Promise<CheckResult[]> {
  const res = await host.exec(factScript(n), { timeoutMs: 30_000 });
  if (res.code !== 0)
    return unknownHostChecks(
      n.name,
      `the fact script failed (${res.code ?? res.signal}): ${res.stderr.trim().slice(0, 200)}`,
    );
  const f = parseFacts(res.stdout);
  const get = (k: string) => f.one.get(k) ?? '';
  const pid = get('pid');
  const out: CheckResult[] = [];
  const noPid = (rule: Rule) =>
    r(
      rule,
      n.name,
      'unknown',
      'the server process was not found on the host (set service.config or service.name in the inventory)',
    );

  const swaps = Number(get('swaps') || '0');
  const vmlck = Number(get('vmlck') || '0');
  if (swaps === 0) out.push(r(RULES.swap, n.name, 'pass', 'no swap device active'));
  else if (pid && vmlck > 0 && get('mlock_disabled') !== '1')
    out.push(
      r(RULES.swap, n.name, 'pass', `${swaps} swap device(s), but the server's memory is locked (VmLck ${vmlck} kB)`),
    );
  else
    out.push(
      r(
        RULES.swap,
        n.name,
        'fail',
        `${swaps} swap device(s) active and the server's memory is not locked: secrets can be paged to disk`,
      ),
    );

  if (!pid) out.push(noPid(RULES.core), noPid(RULES.user));
  else {
    const soft = get('core_soft');
    const hard = get('core_hard');
    out.push(
      soft === '0'
        ? r(RULES.core, n.name, 'pass', `pid ${pid}: core file size limit 0 (hard ${hard})`)
        : r(
            RULES.core,
            n.name,
            'fail',
            `pid ${pid}: core file size limit ${soft || '?'} (hard ${hard || '?'}): a crash writes the memory, keys included, to disk`,
          ),
    );
    const uid = get('uid');
    out.push(
      uid === '0'
        ? r(RULES.user, n.name, 'fail', `pid ${pid} runs as root`)
        : uid
          ? r(RULES.user, n.name, 'pass', `pid ${pid} runs as ${get('user')} (uid ${uid})`)
          : noPid(RULES.user),
    );
  }

  if (n.service?.manager !== 'systemd')
    out.push(r(RULES.unit, n.name, 'skip', `not a systemd service (manager ${n.service?.manager ?? 'unset'})`));
  else {
    const want: Record<string, (v: string) => boolean> = {
      unit_ProtectSystem: (v) => v === 'full' || v === 'strict' || v === 'yes',
      unit_PrivateTmp: (v) => v === 'yes',
      unit_NoNewPrivileges: (v) => v === 'yes',
      unit_LimitCORE: (v) => v === '0',
      unit_CapabilityBoundingSet: (v) => v !== '' && !/cap_sys_admin/i.test(v),
    };
    const bad = Object.entries(want)
      .filter(([k, ok]) => !ok(get(k)))
      .map(([k]) => `${k.slice(5)}=${get(k) || '(unset)'}`);
    out.push(
      r(
        RULES.unit,
        n.name,
        bad.length ? 'fail' : 'pass',
        bad.length
          ? `unit ${n.service.name ?? 'vault'}: ${bad.join(', ')}`
          : `unit ${n.service.name ?? 'vault'} sets the production guide's hardening`,
      ),
    );
  }

  const permLines = [
    ...(f.many.get('perm_data') ?? []).map((v) => ['data dir', v, 0o077] as const),
    ...(f.many.get('perm_config') ?? []).map((v) => ['config', v, 0o027] as const),
    ...(f.many.get('perm_key') ?? []).map((v) => ['TLS key', v, 0o077] as const),
  ];
  if (!permLines.length)
    out.push(r(RULES.perms, n.name, 'unknown', "no data_dir or config in the inventory's service block to look at"));
  else {
    const bad: string[] = [];
    const seen: string[] = [];
    for (const [what, v, forbidden] of permLines) {
      const bar = v.lastIndexOf('|');
      const path = bar < 0 ? v : v.slice(0, bar);
      const [mode, owner] = (bar < 0 ? '' : v.slice(bar + 1)).split(' ');
      if (!mode) {
        bad.push(`${what} ${path} not found`);
        continue;
      }
      seen.push(`${what} ${mode}`);
      if (Number.parseInt(mode, 8) & forbidden) bad.push(`${what} ${path} is ${mode} (${owner})`);
    }
    out.push(r(RULES.perms, n.name, bad.length ? 'fail' : 'pass', bad.length ? bad.join('; ') : seen.join(', ')));
  }

  const nodeIp = new URL(n.api_addr).hostname;
  const allowed = new Set([
    Number(new URL(n.api_addr).port || 8200),
    n.cluster_addr ? Number(new URL(n.cluster_addr).port || 8201) : 8201,
    n.ssh?.port ?? 22,
  ]);
  const listeners = (f.many.get('listen') ?? []).map(decodeProcAddr);
  const relevant = listeners.filter((l) => l.ip === nodeIp || l.ip === '0.0.0.0' || l.ip === '::');
  const extra = [...new Set(relevant.filter((l) => !allowed.has(l.port)).map((l) => `${l.ip}:${l.port}`))];
  out.push(
    r(
      RULES.ports,
      n.name,
      extra.length ? 'fail' : 'pass',
      extra.length
        ? `also listening on the node's addresses: ${extra.join(', ')}`
        : `listening on ${nodeIp}/wildcard: ${[...new Set(relevant.map((l) => l.port))].sort((a, b) => a - b).join(', ') || 'nothing'}`,
    ),
  );

  const selinux = get('selinux');
  const apparmor = get('apparmor');
  const label = get('mac_label');
  if (selinux === '1')
    out.push(r(RULES.mac, n.name, 'pass', `SELinux enforcing${label ? `, server context ${label}` : ''}`));
  else if (apparmor === 'Y' && label && !/unconfined/.test(label))
    out.push(r(RULES.mac, n.name, 'pass', `AppArmor confines the server (${label})`));
  else
    out.push(
      r(
        RULES.mac,
        n.name,
        'fail',
        selinux === '0'
          ? 'SELinux permissive'
          : apparmor === 'Y'
            ? `AppArmor enabled but the server is ${label || 'unconfined'}`
            : 'neither SELinux nor AppArmor is active on this host',
      ),
    );

  const ntp = get('ntp');
  const chrony = get('chrony');
  if (ntp === 'yes' || /^normal$/i.test(chrony))
    out.push(
      r(RULES.clock, n.name, 'pass', ntp === 'yes' ? 'timedatectl: NTPSynchronized=yes' : 'chrony: leap status normal'),
    );
  else if (ntp === 'no' || (chrony && !/^normal$/i.test(chrony)))
    out.push(r(RULES.clock, n.name, 'fail', ntp === 'no' ? 'timedatectl: NTPSynchronized=no' : `chrony: ${chrony}`));
  else
    out.push(
      r(RULES.clock, n.name, 'unknown', 'neither timedatectl nor chronyc could say (no systemd/chrony on the host?)'),
    );
  return out;
}
