import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { VaultClient } from '../../src/vault/client.js';
import { isAlive, waitFor } from './cli.js';
import type { TestLab } from './lab.js';

/**
 * A one-node Raft server auto-unsealed by the transit engine of a running lab (the "provider").
 * The lab code has no seal option yet (src/lab is another engineer's), so this test helper renders
 * its own config, starts the process itself and records its command line for the leak check.
 * The transit token lives only in the config file (0600), never in argv or the environment.
 */
export interface TransitNode {
  inventory: string;
  initFile: string;
  apiAddr: string;
  pid: number;
  cmdline: string;
  /** Every secret it holds: recovery keys (both forms), its root token, the transit token. */
  secrets: string[];
  init: { recovery_keys_b64: string[]; recovery_keys_hex: string[]; root_token: string };
  log: string;
  stop(): Promise<void>;
}

export async function startTransitSealedNode(provider: TestLab, options: { dir: string; name: string }): Promise<TransitNode> {
  const root = new VaultClient({ address: provider.lab.nodes[0]!.apiAddr, token: provider.init.root_token, tls: { caCert: provider.lab.caCert } });
  const leader = await findActive(provider);
  const admin = leader.withToken(provider.init.root_token);
  await admin.write('sys/mounts/transit', { type: 'transit' });
  await admin.write('transit/keys/autounseal', {});
  await admin.write('sys/policies/acl/autounseal', { policy: 'path "transit/encrypt/autounseal" { capabilities = ["update"] }\npath "transit/decrypt/autounseal" { capabilities = ["update"] }\n' });
  const created = await admin.write<{ auth: { client_token: string } }>('auth/token/create', { policies: ['autounseal'], period: '24h', no_parent: true });
  const transitToken = created.auth.client_token;
  root.transport.close();

  const ip = await freeLoopback();
  const dir = join(options.dir, options.name);
  mkdirSync(join(dir, 'data'), { recursive: true, mode: 0o700 });
  const config = join(dir, 'server.hcl');
  writeFileSync(
    config,
    [
      'ui = false',
      'disable_mlock = true',
      `cluster_name = "${options.name}"`,
      `api_addr = "http://${ip}:8200"`,
      `cluster_addr = "https://${ip}:8201"`,
      `storage "raft" {\n  path = "${join(dir, 'data')}"\n  node_id = "t1"\n}`,
      `listener "tcp" {\n  address = "${ip}:8200"\n  cluster_address = "${ip}:8201"\n  tls_disable = true\n}`,
      `seal "transit" {\n  address = "${leader.address}"\n  token = "${transitToken}"\n  key_name = "autounseal"\n  mount_path = "transit/"\n  tls_ca_cert = "${provider.lab.caCert}"\n}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const log = join(dir, 'server.log');
  const fd = openSync(log, 'a', 0o600);
  const child = spawn(provider.lab.binary, ['server', `-config=${config}`], { cwd: dir, detached: true, stdio: ['ignore', fd, fd], env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir } });
  closeSync(fd);
  child.unref();
  const pid = child.pid!;
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  const apiAddr = `http://${ip}:8200`;
  const node = new VaultClient({ address: apiAddr });
  const stop = async () => {
    node.transport.close();
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    await waitFor('the transit-sealed node to stop', () => (isAlive(pid) ? undefined : true), 30_000).catch(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    });
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor('the transit-sealed node to answer', async () => ((await node.health()).httpStatus > 0 ? true : undefined), 30_000);
    const { parsed } = await node.init({ recovery_shares: 5, recovery_threshold: 3 });
    const initFile = join(dir, 'init.json');
    const init = { recovery_keys_b64: parsed.recovery_keys_base64 ?? [], recovery_keys_hex: parsed.recovery_keys ?? [], root_token: parsed.root_token };
    writeFileSync(initFile, `${JSON.stringify(init, null, 2)}\n`, { mode: 0o600 });
    await waitFor('the transit-sealed node to unseal itself and lead', async () => ((await node.health()).state === 'active' ? true : undefined), 60_000);
    const inventory = join(dir, 'inventory.yml');
    writeFileSync(
      inventory,
      [
        'clusters:',
        `  ${options.name}:`,
        `    flavor: ${provider.lab.flavor}`,
        `    token: "file:${initFile}#root_token"`,
        '    nodes:',
        '      - name: t1',
        `        api_addr: "${apiAddr}"`,
        '',
      ].join('\n'),
    );
    return { inventory, initFile, apiAddr, pid, cmdline, init, log, secrets: [...init.recovery_keys_b64, ...init.recovery_keys_hex, init.root_token, transitToken], stop };
  } catch (e) {
    const tail = (() => {
      try {
        return readFileSync(log, 'utf8').split('\n').slice(-15).join('\n');
      } catch {
        return '';
      }
    })();
    await stop();
    throw new Error(`transit-sealed node failed: ${(e as Error).message}\n${tail}`);
  }
}

async function findActive(provider: TestLab): Promise<VaultClient> {
  for (const n of provider.lab.nodes) {
    const c = new VaultClient({ address: n.apiAddr, tls: { caCert: provider.lab.caCert } });
    if ((await c.health().catch(() => undefined))?.state === 'active') return c;
    c.transport.close();
  }
  throw new Error('the provider lab has no active node');
}

/** 127.0.0.250-254 lie above the lab slots (x1..x9 for slots 1-24). */
async function freeLoopback(): Promise<string> {
  for (let last = 254; last >= 250; last--) {
    const ip = `127.0.0.${last}`;
    if ((await isFree(ip, 8200)) && (await isFree(ip, 8201))) return ip;
  }
  throw new Error('no free loopback address in 127.0.0.250-254');
}

function isFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}
