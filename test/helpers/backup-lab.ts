import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import type { BackupStore, SnapshotSink } from '../../src/backup/stores/store.js';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';
import { run, type RunResult } from '../../src/lab/exec.js';
import type { ClusterClient } from '../../src/vault/cluster.js';
import type { TestLab } from './lab.js';

/** Runs `fn` with a client of the lab (its inventory, its root token); always closed. */
export async function withCluster<T>(
  inventory: string,
  fn: (c: ClusterClient) => Promise<T>,
  clusterName?: string,
): Promise<T> {
  const { client } = await connectCluster(inventory, clusterName);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/** Mounts a KV v1 engine at kv/ (idempotent). */
export async function ensureKv(c: ClusterClient): Promise<void> {
  const { client } = await c.findLeader();
  const mounts = await client.read<{ data?: Record<string, unknown> } & Record<string, unknown>>('sys/mounts');
  if ((mounts.data ?? mounts)['kv/']) return;
  await client.write('sys/mounts/kv', { type: 'kv', options: { version: '1' } });
}

export async function kvPut(c: ClusterClient, path: string, value: string): Promise<void> {
  const { client } = await c.findLeader();
  await client.write(`kv/${path}`, { value });
}

export async function kvGet(c: ClusterClient, path: string): Promise<string | undefined> {
  const { client } = await c.findLeader();
  try {
    return (await client.read<{ data: { value: string } }>(`kv/${path}`)).data.value;
  } catch (e) {
    if ((e as { status?: number }).status === 404) return undefined;
    throw e;
  }
}

/** Writes about `bytes` of incompressible data as KV entries of `entryBytes` each (snapshot size ≈ bytes). */
export async function fillKv(c: ClusterClient, bytes: number, entryBytes = 256 * 1024, prefix = 'fill'): Promise<void> {
  await ensureKv(c);
  const { client } = await c.findLeader();
  const n = Math.ceil(bytes / entryBytes);
  for (let i = 0; i < n; i++)
    await client.write(`kv/${prefix}/${i}`, {
      value: randomBytes(Math.floor((entryBytes * 3) / 4)).toString('base64'),
    });
}

/**
 * The official CLI (`bao` or `vault`) against the lab's leader. The token goes only through the
 * environment (VAULT_TOKEN), never argv, as a careful operator runs it.
 */
export async function officialCli(t: TestLab, args: string[], token = t.init.root_token): Promise<RunResult> {
  const leader = await withCluster(t.inventory, async (c) => (await c.findLeader()).node.apiAddr);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: t.stateDir,
    VAULT_ADDR: leader,
    VAULT_TOKEN: token,
  };
  if (t.lab.caCert) env['VAULT_CACERT'] = t.lab.caCert;
  return run(t.lab.binary, args, { env, timeoutMs: 170_000 });
}

/** Unseals every sealed node with `keys` (as an operator would after a restore) and waits until all serve. */
export async function unsealWith(c: ClusterClient, keys: string[], timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const probes = await c.probeAll();
    if (
      probes.every((p) => p.health && ['active', 'standby', 'perf-standby'].includes(p.health.state)) &&
      probes.some((p) => p.health?.state === 'active')
    )
      return;
    for (const p of probes.filter((x) => x.health?.state === 'sealed')) {
      const client = c.client(p.node.name);
      try {
        for (const k of keys.slice(0, 3)) if (!(await client.unseal(k)).sealed) break;
      } catch {
        /* a follower still installing the snapshot: try again */
      }
    }
    if (Date.now() > deadline)
      throw new Error(
        `nodes did not all unseal: ${probes.map((p) => `${p.node.name}=${p.health?.state ?? 'unreachable'}`).join(', ')}`,
      );
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * A store that runs `onFirstWrite` (e.g. kill the leader) when the first snapshot bytes arrive and
 * holds them until it is done, then behaves like `inner`. Not a fake server: the fault is real, only
 * its timing is chosen.
 */
export class KillOnFirstWriteStore implements BackupStore {
  readonly kind = 'test';
  constructor(
    private readonly inner: BackupStore,
    private readonly onFirstWrite: () => Promise<void>,
  ) {}
  get location() {
    return this.inner.location;
  }
  get retention() {
    return this.inner.retention;
  }
  async begin(name: string): Promise<SnapshotSink> {
    const sink = await this.inner.begin(name);
    let first = true;
    const hook = this.onFirstWrite;
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        const go = () => (sink.stream.write(chunk) ? cb() : sink.stream.once('drain', () => cb()));
        if (!first) return go();
        first = false;
        hook().then(go, cb);
      },
      final(cb) {
        sink.stream.end(() => cb());
      },
      destroy(err, cb) {
        sink.stream.destroy(err ?? undefined);
        cb(err);
      },
    });
    return { name: sink.name, stream, commit: (m) => sink.commit(m), abort: () => sink.abort() };
  }
  list() {
    return this.inner.list();
  }
  open(name: string) {
    return this.inner.open(name);
  }
  localPath(name: string) {
    return this.inner.localPath(name);
  }
  remove(name: string) {
    return this.inner.remove(name);
  }
}
