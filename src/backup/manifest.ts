import { z } from 'zod';
import type { SnapshotMeta, VerifiedSnapshot } from './snapshot-verify.js';

/**
 * The manifest written next to every snapshot (`<file>.json`). It says what the snapshot is without
 * opening it, which cluster it came from (so restore can refuse another cluster's snapshot before
 * Vault does) and which unseal/recovery key set it needs after a restore.
 */
export const MANIFEST_FORMAT = 'vaultops-backup/1';

export const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  file: z.string(),
  reason: z.enum(['backup', 'pre-restore']).default('backup'),
  cluster: z.object({
    /** The cluster's name in the inventory. */
    name: z.string(),
    /** cluster_name and cluster_id as the server reports them (sys/health). */
    cluster_name: z.string().optional(),
    cluster_id: z.string().optional(),
    flavor: z.string().optional(),
  }),
  server_version: z.string().optional(),
  leader: z.object({ node: z.string(), api_addr: z.string() }),
  raft: z.object({
    index: z.number(),
    term: z.number(),
    servers: z.array(z.object({ id: z.string(), address: z.string(), voter: z.boolean() })),
  }),
  size: z.number(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  members: z.array(z.object({ name: z.string(), size: z.number(), sha256: z.string() })),
  started_at: z.string(),
  finished_at: z.string(),
  duration_ms: z.number(),
  /** Label of the unseal/recovery key set that opens the data in this snapshot (inventory `unseal.key_set`). */
  key_set: z.string().optional(),
});

export type Manifest = z.infer<typeof manifestSchema>;

export interface ManifestInput {
  file: string;
  reason?: 'backup' | 'pre-restore' | undefined;
  clusterName: string;
  serverClusterName?: string | undefined;
  clusterId?: string | undefined;
  flavor?: string | undefined;
  serverVersion?: string | undefined;
  leader: { node: string; apiAddr: string };
  snapshot: VerifiedSnapshot;
  startedAt: Date;
  finishedAt: Date;
  keySet?: string | undefined;
}

export function buildManifest(i: ManifestInput): Manifest {
  const meta: SnapshotMeta = i.snapshot.meta;
  return {
    format: MANIFEST_FORMAT,
    file: i.file,
    reason: i.reason ?? 'backup',
    cluster: { name: i.clusterName, cluster_name: i.serverClusterName, cluster_id: i.clusterId, flavor: i.flavor },
    server_version: i.serverVersion,
    leader: { node: i.leader.node, api_addr: i.leader.apiAddr },
    raft: { index: meta.index, term: meta.term, servers: meta.servers },
    size: i.snapshot.bytes,
    sha256: i.snapshot.sha256,
    members: i.snapshot.members,
    started_at: i.startedAt.toISOString(),
    finished_at: i.finishedAt.toISOString(),
    duration_ms: i.finishedAt.getTime() - i.startedAt.getTime(),
    key_set: i.keySet,
  };
}

/** Parses a manifest; undefined when it is not one of ours (a hand-copied file, an official-CLI snapshot). */
export function parseManifest(text: string): Manifest | undefined {
  try {
    const r = manifestSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** The sidecar in `sha256sum` format, so `sha256sum -c <file>.sha256` works by hand. */
export function sidecarText(sha256: string, fileName: string): string {
  return `${sha256}  ${fileName}\n`;
}
