import { join } from 'node:path';
import { z } from 'zod';
import { defineAction } from '../types.js';
import { LocalDirStore } from '../../backup/stores/local-dir-store.js';
import { backupOf } from '../../backup/take-backup.js';
import { upgradeStateFiles } from '../../upgrade/state-files.js';

export default defineAction({
  name: 'upgrade.snapshot',
  description:
    "Take a verified Raft snapshot from the leader before an upgrade (Vault's storage is not backward compatible: rolling back means restoring it).",
  schema: z.strictObject({
    dir: z.string().optional().describe('Directory for the snapshot (default <state>/upgrades/<cluster>).'),
  }),
  changes: false,
  gates: ['snapshot verified (complete tar, SHA256SUMS)'],
  describe: (args) => `save a verified snapshot from the leader${args.dir ? ` into ${args.dir}` : ''}`,
  async run(ctx, args) {
    const dir = args.dir ?? upgradeStateFiles(ctx.stateDir, ctx.clusterName).dir;
    const r = await backupOf(ctx, new LocalDirStore(dir), { log: (m) => ctx.log(m), signal: ctx.signal });
    return { status: 'ok', message: `snapshot ${join(r.location, r.name)}`, data: { path: join(r.location, r.name) } };
  },
});
