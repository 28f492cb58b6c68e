import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { InputError } from '../../core/errors.js';
import { defineAction } from '../types.js';
import { restoreSnapshot, type KeySetSecrets } from '../../backup/restore-snapshot.js';
import { LocalDirStore } from '../../backup/stores/local-dir-store.js';
import { localCopy, type BackupStore } from '../../backup/stores/store.js';
import { identityForAction } from './identity.js';

/**
 * `backup.restore`: verify, refuse another cluster's snapshot unless allowed, safety snapshot,
 * restore on the leader, wait for the restored data, unseal, verify health. The typed confirmation is
 * the step's `confirm:` (asked before the run starts), so the action does not ask again.
 */
export default defineAction({
  name: 'backup.restore',
  description:
    'Restore a verified Raft snapshot into the cluster (safety snapshot first), wait until it is really back, unseal if needed, check health.',
  schema: z.strictObject({
    from: z
      .string()
      .optional()
      .describe('The snapshot file; empty = the newest verified backup of this cluster in the store.'),
    store: z.string().optional().describe('Store to pick the latest from and to keep the safety snapshot in.'),
    to: z.string().optional().describe('A local directory instead of an inventory store.'),
    force_other_cluster: z.boolean().default(false).describe('Allow a snapshot from another cluster (snapshot-force).'),
    unseal_keys: z
      .array(z.string().min(1))
      .optional()
      .describe("Key shares that open the restored data (a secret_list var), when they are not this cluster's own."),
    source_token: z
      .string()
      .optional()
      .describe("A token valid in the restored data (another cluster's), for the health checks."),
    timeout: z.number().int().min(10).default(180).describe('Seconds the cluster may take to come back.'),
    identity: z
      .string()
      .optional()
      .describe(
        "Secret reference (env:, file:, cmd:) to the age identity or armored OpenPGP private key that opens an encrypted backup; default: the store's decrypt.identity.",
      ),
    identity_passphrase: z.string().optional().describe("Secret reference to the OpenPGP private key's passphrase."),
  }),
  changes: true,
  destructive: true,
  gates: [
    'snapshot verified (gzip, tar, sums, manifest)',
    'same cluster unless force_other_cluster',
    'safety snapshot taken',
  ],
  describe: (args) =>
    `restore ${args.from || 'the latest verified backup'} on the leader${args.force_other_cluster ? " (another cluster's snapshot allowed)" : ''}, after a safety snapshot`,
  async run(ctx, raw) {
    // Playbook vars left empty arrive as "": treat them as not given.
    const args = {
      ...raw,
      store: raw.store || undefined,
      to: raw.to || undefined,
      from: raw.from || undefined,
      source_token: raw.source_token || undefined,
      unseal_keys: raw.unseal_keys?.length ? raw.unseal_keys : undefined,
    };
    let file: string;
    let safety: BackupStore;
    let cleanup = async (): Promise<void> => undefined;
    if (args.from) {
      file = resolve(args.from);
      safety =
        args.store !== undefined || args.to !== undefined ? ctx.openStore(args) : new LocalDirStore(dirname(file));
    } else {
      safety = ctx.openStore(args);
      const newest = (await safety.list()).find(
        (e) => e.manifest?.cluster.name === ctx.clusterName && e.manifest.reason === 'backup',
      );
      if (!newest) {
        safety.close?.();
        return { status: 'failed', message: `no verified backup of ${ctx.clusterName} in ${safety.location}` };
      }
      // A remote store's snapshot is copied to a private temp dir and verified there like any file.
      const copy = await localCopy(safety, newest.name);
      cleanup = copy.cleanup;
      file = copy.path;
    }
    const keysFor = async (label: string | undefined): Promise<KeySetSecrets> => {
      if (args.unseal_keys)
        return { label: label ?? 'the given unseal_keys', keys: args.unseal_keys, token: args.source_token };
      const own = ctx.spec.unseal;
      if ((label === undefined || label === own?.key_set) && own?.keys) {
        const keys = await ctx.resolveSecret(own.keys);
        return {
          label: own.key_set ?? ctx.clusterName,
          keys: Array.isArray(keys) ? keys : keys.split(/[\s,]+/).filter(Boolean),
          token: args.source_token,
        };
      }
      throw new InputError(
        `The restored data needs the unseal keys of key set "${label ?? 'unknown'}", which is not this cluster's.`,
        {
          hint: 'Pass them to the step as with: { unseal_keys: "{{ vars.source_unseal_keys }}" } (a secret_list var).',
        },
      );
    };
    let r: Awaited<ReturnType<typeof restoreSnapshot>>;
    try {
      r = await restoreSnapshot({
        cluster: ctx.cluster,
        clusterName: ctx.clusterName,
        flavor: ctx.spec.flavor,
        keySet: ctx.spec.unseal?.key_set,
        file,
        forceOtherCluster: args.force_other_cluster,
        prompter: ctx.prompter,
        // The loader refuses this action in a step without confirm:, answered before the run.
        confirmed: ctx.confirmed,
        safetyStore: safety,
        keysFor,
        log: ctx.log,
        signal: ctx.signal,
        timeoutMs: args.timeout * 1000,
        canaries: ctx.spec.canaries,
        identity: identityForAction(
          ctx,
          { identity: args.identity || undefined, passphrase: args.identity_passphrase || undefined },
          safety,
        ),
      });
    } finally {
      await cleanup().catch(() => undefined);
      safety.close?.();
    }
    return {
      status: 'changed',
      message: `restored Raft index ${r.snapshotIndex} (was ${r.indexBefore ?? '?'}); ${r.status.nodes.length} nodes unsealed voters, autopilot healthy${r.unsealedWith ? `; unsealed with ${r.unsealedWith}` : ''}`,
      data: {
        file: r.file,
        snapshot_index: r.snapshotIndex,
        index_before: r.indexBefore,
        forced: r.forced,
        unsealed_with: r.unsealedWith,
        safety_snapshot: `${r.safetyBackup.location}/${r.safetyBackup.name}`,
      },
    };
  },
});
