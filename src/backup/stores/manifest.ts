import { z } from 'zod';
import type { SnapshotMeta, VerifiedSnapshot } from './snapshot-verify.js';
import type { BackupEntry } from './store.js';

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
  /**
   * Present when the stored file is encrypted (`<name>.snap.age` / `.snap.pgp`). `size`, `sha256`
   * and `members` above stay those of the plaintext snapshot (what the verifier saw and what a
   * restore uploads); `stored_*` are those of the file on disk, which the sidecar carries. Only
   * public material is recorded: age recipients, OpenPGP fingerprints. Older manifests have no field.
   */
  encryption: z
    .object({
      format: z.enum(['age', 'openpgp']),
      recipients: z.array(z.string()),
      stored_size: z.number(),
      stored_sha256: z.string().regex(/^[0-9a-f]{64}$/),
    })
    .optional(),
});

export type ManifestEncryption = NonNullable<z.infer<typeof manifestSchema>['encryption']>;

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
  encryption?: ManifestEncryption | undefined;
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
    ...(i.encryption ? { encryption: i.encryption } : {}),
  };
}

/** Size and sha256 of the file as stored: the ciphertext for an encrypted backup, else the snapshot. */
export function storedFileOf(m: Manifest): { size: number; sha256: string } {
  return m.encryption
    ? { size: m.encryption.stored_size, sha256: m.encryption.stored_sha256 }
    : { size: m.size, sha256: m.sha256 };
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

/**
 * A store's listing entry for snapshot `name`: verified when its manifest (`manifestText`, undefined
 * when there is none) parses and names the size the store holds; otherwise the problem, in words.
 */
export function backupEntry(
  name: string,
  size: number,
  modifiedAt: Date,
  manifestText: string | undefined,
): BackupEntry {
  const manifest = manifestText === undefined ? undefined : parseManifest(manifestText);
  let problem: string | undefined;
  if (manifestText === undefined) problem = 'no manifest (not written by vaultops backup)';
  else if (!manifest) problem = 'manifest is not valid';
  else if (storedFileOf(manifest).size !== size)
    problem = `size ${size} differs from the manifest's ${storedFileOf(manifest).size}`;
  else problem = timeProblem(manifest, modifiedAt);
  return { name, size, modifiedAt, manifest: problem ? undefined : manifest, problem };
}

/**
 * How far the manifest's finish time may lie after the file's last modification (the store's
 * clock, not the manifest's word): a snapshot is written, then finished, then renamed, so an honest
 * manifest is at most seconds later; an hour covers a remote store whose clock is off.
 */
const CLOCK_SKEW_MS = 3_600_000;

/**
 * A manifest's finish time decides the order of backups, so it must be plausible by something the
 * manifest does not say: not after the file's own modification time (plus skew), which also rules
 * out a claim in the future.
 */
function timeProblem(m: Manifest, modifiedAt: Date): string | undefined {
  const finished = Date.parse(m.finished_at);
  if (Number.isNaN(finished)) return `the manifest's finished_at ${JSON.stringify(m.finished_at)} is not a time`;
  if (finished > modifiedAt.getTime() + CLOCK_SKEW_MS)
    return `the manifest says it finished at ${m.finished_at}, after the file was last written (${modifiedAt.toISOString()}): its time cannot be trusted, so it is not counted`;
  return undefined;
}

/** Newest first: by the manifest's finish time (checked by backupEntry), else the file's modification time; then by name. */
export function newestFirst(entries: BackupEntry[]): BackupEntry[] {
  const time = (e: BackupEntry) => (e.manifest ? Date.parse(e.manifest.finished_at) : e.modifiedAt.getTime());
  return entries.sort((a, b) => time(b) - time(a) || b.name.localeCompare(a.name));
}
