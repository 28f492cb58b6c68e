import { z } from 'zod';
import { defineAction } from '../types.js';
import { hasRetentionRule } from '../../backup/stores/retention.js';
import { pruneStore, backupOf, type BackupResult } from '../../backup/take-backup.js';

/** `backup.snapshot`: one verified Raft snapshot from the leader into a store, then the store's retention. */
export default defineAction({
  name: 'backup.snapshot',
  description:
    'Take a Raft snapshot from the leader, verify it while it streams (gzip, tar, SHA256SUMS, sealed sums), keep it with a manifest, then apply retention.',
  schema: z.strictObject({
    store: z.string().optional().describe("A store from the cluster's `stores:` (default: its only one)."),
    to: z.string().optional().describe('A local directory instead of an inventory store.'),
    prune: z.boolean().default(true).describe("Apply the store's retention once the new snapshot is verified."),
  }),
  // It writes a file and may delete old backups by retention; the cluster itself is only read.
  changes: true,
  lock: 'shared',
  gates: ['a leader answers', 'the snapshot is verified before it is kept'],
  describe: (args) =>
    `snapshot the leader into ${args.to ?? (args.store ? `store ${args.store}` : "the cluster's store")}${args.prune === false ? '' : ', then retention'}`,
  async run(ctx, raw) {
    // Playbook vars left empty arrive as "": treat them as not given.
    const args = { ...raw, store: raw.store || undefined, to: raw.to || undefined };
    const store = ctx.openStore(args);
    let result: BackupResult;
    let removed: string[] = [];
    try {
      result = await backupOf(ctx, store, { log: ctx.log, signal: ctx.signal });
      if (args.prune && hasRetentionRule(store.retention))
        removed = (await pruneStore(store, { dryRun: false, cluster: ctx.clusterName, justTaken: result.name }))
          .removed;
    } finally {
      store.close?.();
    }
    const m = result.manifest;
    return {
      status: 'changed',
      message: `${result.name}: ${m.size} bytes, Raft index ${m.raft.index}, verified${removed.length ? `; retention removed ${removed.length}` : ''}`,
      data: {
        file: `${result.location}/${result.name}`,
        name: result.name,
        sha256: m.sha256,
        size: m.size,
        raft_index: m.raft.index,
        raft_term: m.raft.term,
        leader: m.leader.node,
        removed,
      },
    };
  },
});
