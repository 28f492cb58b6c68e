import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GateError, InputError } from '../core/errors.js';
import { shq, type Host } from '../ssh/host.js';
import { SystemdService, type ServiceManager } from '../ssh/services.js';
import { MaintenanceHaltedError, stabilize, type NodeWaits } from './node-maintenance.js';

/**
 * A new server configuration file on one node: staged next to the live file, checked by the
 * server's own parser where the server has one (`operator diagnose`), swapped in with the old file
 * kept as `<config>.vaultops-prev`, then a `systemctl reload` (SIGHUP) when every changed line is
 * one the server re-reads on SIGHUP, else a restart (a leader by a clean stop, so a healthy
 * standby takes over). A node that does not come back gets its old file again and is restarted
 * before the run halts.
 */
export const CONFIG_STAGED_SUFFIX = '.vaultops-staged';
export const CONFIG_PREVIOUS_SUFFIX = '.vaultops-prev';

/**
 * Settings Vault and OpenBao re-read on SIGHUP (Vault docs, "vault server" / SIGHUP: the log level
 * and the listeners' TLS certificate and key). Any other change needs a restart.
 */
const RELOADABLE = /^(log_level|tls_cert_file|tls_key_file)\s*=/;

export interface ConfigRolloutInput {
  name: string;
  host: Host;
  service: ServiceManager;
  /** The live configuration file on the host (service.config). */
  configPath: string;
  /** The server binary on the host (service.binary), to validate with; skipped when unknown. */
  binaryPath?: string | undefined;
  /** The new configuration, a local file; `{{ node.* }}` placeholders are filled in per node. */
  localFile: string;
  /** What the placeholders stand for on this node. */
  node: NodePlaceholders;
  isLeader: boolean;
  waits: NodeWaits;
  timeoutMs: number;
  emit(message: string): void;
}

export interface ConfigRolloutResult {
  /** 'unchanged' when the node already had this file (a resumed run). */
  applied: 'reload' | 'restart' | 'unchanged';
  newLeader?: string | undefined;
  ms: number;
}

/**
 * One file serves every node although a Raft node's settings differ (node_id, api_addr, listener
 * address): these placeholders are filled in per node from the inventory.
 */
export interface NodePlaceholders {
  name: string;
  api_addr: string;
  cluster_addr: string;
  /** The host part of api_addr. */
  host: string;
}

const PLACEHOLDER = /\{\{\s*([^}]*?)\s*\}\}/g;

/** The file with this node's values in place; an unknown placeholder is an InputError. */
export function renderConfig(text: string, node: NodePlaceholders, file: string): string {
  return text.replace(PLACEHOLDER, (_all, key: string) => {
    const m = /^node\.(name|api_addr|cluster_addr|host)$/.exec(key);
    if (!m)
      throw new InputError(`${file}: unknown placeholder {{ ${key} }}.`, {
        hint: 'The configuration may use {{ node.name }}, {{ node.api_addr }}, {{ node.cluster_addr }} and {{ node.host }}.',
      });
    return node[m[1] as keyof NodePlaceholders];
  });
}

export function readLocalConfig(file: string): { text: string; sha256: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`Cannot read the configuration ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`, {
      hint: 'Give --config the path of the new server configuration file (HCL).',
    });
  }
  return { text, sha256: createHash('sha256').update(text).digest('hex') };
}

/** Reload when every line that differs (comments and blank lines aside) is one the server re-reads on SIGHUP. */
export function reloadSuffices(oldText: string, newText: string): boolean {
  const lines = (t: string) =>
    t
      .split('\n')
      .map((l) => l.replace(/#.*$/, '').trim())
      .filter(Boolean);
  const before = lines(oldText);
  const after = lines(newText);
  const changed = [...after.filter((l) => !before.includes(l)), ...before.filter((l) => !after.includes(l))];
  if (before.length !== after.length) return false;
  return changed.every((l) => RELOADABLE.test(l));
}

export async function rollOutConfig(o: ConfigRolloutInput): Promise<ConfigRolloutResult> {
  const t0 = Date.now();
  const text = renderConfig(readLocalConfig(o.localFile).text, o.node, o.localFile);
  const sha256 = createHash('sha256').update(text).digest('hex');
  const staged = `${o.configPath}${CONFIG_STAGED_SUFFIX}`;
  const previous = `${o.configPath}${CONFIG_PREVIOUS_SUFFIX}`;
  if ((await o.host.sha256(o.configPath)) === sha256) {
    o.emit(`${o.configPath} is already this configuration`);
    return { applied: 'unchanged', ms: Date.now() - t0 };
  }
  await o.waits.gate();

  // 1. Stage next to the live file, with its owner and mode; nothing running changes.
  const local = mkdtempSync(join(tmpdir(), 'vaultops-config-'));
  try {
    writeFileSync(join(local, 'config.hcl'), text, { mode: 0o600 });
    await o.host.upload(join(local, 'config.hcl'), staged, { sha256, mode: 0o640 });
  } finally {
    rmSync(local, { recursive: true, force: true });
  }
  const own = await o.host.exec(
    `chown --reference=${shq(o.configPath)} ${shq(staged)} && chmod --reference=${shq(o.configPath)} ${shq(staged)}`,
  );
  if (own.code !== 0) {
    await o.host.exec(`rm -f -- ${shq(staged)}`);
    throw new GateError(`Cannot give ${o.name}:${staged} the owner and mode of ${o.configPath}: ${own.stderr.trim()}`, {
      hint: 'Nothing was changed on the node. Check the ssh user and sudo settings.',
    });
  }
  o.emit(`staged ${staged} (sha256 verified on the host)`);

  // 2. Validate with the server's own parser.
  if (o.binaryPath) {
    const problem = await parseProblem(o.host, o.binaryPath, staged);
    if (problem) {
      await o.host.exec(`rm -f -- ${shq(staged)}`);
      throw new GateError(`${o.name}: the server does not accept the new configuration; no node was changed by it.`, {
        details: [problem],
        hint: `Fix ${o.localFile}, then run again (or resume).`,
      });
    }
    o.emit(`validated: ${o.binaryPath} parses it`);
  }

  // 3. Swap, keeping the old file.
  const oldText = await o.host.readFile(o.configPath);
  const unit = unitOf(o.service);
  const reload = reloadSuffices(oldText, text) && unit !== undefined;
  const swap = await o.host.exec(
    `cp -p -- ${shq(o.configPath)} ${shq(previous)} && mv -f -- ${shq(staged)} ${shq(o.configPath)}`,
  );
  if (swap.code !== 0)
    throw new GateError(`${o.name}: could not swap ${o.configPath}: ${swap.stderr.trim()}`, {
      hint: `Look at ${o.configPath} and ${previous} on the host; the server was not restarted.`,
    });
  o.emit(`swapped ${o.configPath} (previous kept as ${previous})`);

  // 4. Reload or restart, then the node must be a healthy caught-up voter again.
  let newLeader: string | undefined;
  let stableForMs = 0;
  try {
    if (reload) {
      o.emit(`only settings the server re-reads on SIGHUP changed: systemctl reload`);
      const r = await o.host.exec(`systemctl reload ${shq(unit!)}`, { sudo: true, timeoutMs: 60_000 });
      if (r.code !== 0) throw new Error(`systemctl reload failed: ${r.stderr.trim()}`);
    } else {
      o.emit(
        `${o.isLeader ? 'leader' : 'standby'}: restart (${await o.service.describeStop().catch(() => 'a clean stop')}, start)`,
      );
      await o.service.stop(o.timeoutMs);
      // systemd refuses a start once the unit started StartLimitBurst times within
      // StartLimitIntervalSec (the vendors' units: 3 in 60 s), which earlier maintenance may have used up.
      if (unit) await o.host.exec(`systemctl reset-failed ${shq(unit)}`, { sudo: true }).catch(() => undefined);
      if (o.isLeader) {
        newLeader = await o.waits.newLeader(o.name);
        if (!newLeader) throw new Error(`no other node became active after ${o.name} (the leader) stopped`);
        o.emit(`stopped; ${newLeader} is the active node now`);
      }
    }
    stableForMs = await o.waits.rejoin(o.service);
  } catch (e) {
    const why = (e as Error).message;
    const details = [...((e as { details?: string[] }).details ?? [])];
    o.emit(`did not come back with the new configuration: putting ${previous} back`);
    await o.service.stop(o.timeoutMs).catch(() => undefined);
    await o.host.exec(`cp -p -- ${shq(previous)} ${shq(o.configPath)}`);
    if (unit) await o.host.exec(`systemctl reset-failed ${shq(unit)}`, { sudo: true }).catch(() => undefined);
    try {
      await o.waits.rejoin(o.service);
    } catch (e2) {
      throw new MaintenanceHaltedError(
        o.name,
        `${why}. The old configuration was put back but ${o.name} did not come back either: ${(e2 as Error).message}`,
        { details, hint: 'Look at the node (log above); the other nodes were not touched and keep quorum.' },
      );
    }
    throw new MaintenanceHaltedError(
      o.name,
      `${why}. ${o.name} was rolled back to its previous configuration and is a healthy voter again.`,
      {
        details,
        hint: 'Fix the configuration (the log above says why it failed); the other nodes were not touched. Run again when fixed.',
      },
    );
  }
  await stabilize(o.waits, stableForMs, (m) => o.emit(m));
  return { applied: reload ? 'reload' : 'restart', newLeader, ms: Date.now() - t0 };
}

/** The systemd unit, for `systemctl reload` and `reset-failed`; the lab manager has none (it restarts). */
function unitOf(service: ServiceManager): string | undefined {
  return service instanceof SystemdService ? service.unit : undefined;
}

/**
 * `operator diagnose` reads the file with the server's own parser first; only a parse failure
 * counts here: its later checks (storage, listeners) fail on a host where the server is running.
 */
async function parseProblem(host: Host, binary: string, file: string): Promise<string | undefined> {
  const r = await host.exec(`timeout 60 ${shq(binary)} operator diagnose -config=${shq(file)} 2>&1`, {
    timeoutMs: 75_000,
    maxBytes: 64 * 1024,
  });
  // eslint-disable-next-line no-control-regex
  const plain = r.stdout.replace(/\x1b\[[0-9;]*m/g, '');
  const m = /failure \]\s*Parse Configuration:?\s*(.*)/.exec(plain);
  return m ? `Parse Configuration: ${m[1]!.trim()}` : undefined;
}
