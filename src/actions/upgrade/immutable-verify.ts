import { z } from 'zod';
import { defineAction } from '../types.js';
import { verifyImmutable } from '../../upgrade/immutable.js';
import { recordUpgrade } from '../../upgrade/inventory-update.js';
import { rmSync } from 'node:fs';
import { immutableStateFile } from './args-and-state-files.js';

export default defineAction({
  name: 'upgrade.immutable_verify',
  description:
    'After an immutable upgrade: one leader, every new node on the version, list-peers has only the new nodes, sys/version-history lists it; then the inventory is rewritten to list only the new nodes.',
  schema: z.strictObject({
    version: z.string().min(1).describe('The version every new node must report, e.g. {{ preflight.target }}.'),
    write_inventory: z
      .string()
      .optional()
      .describe("Write the updated inventory here instead of over the run's inventory."),
  }),
  changes: true,
  describe: (args) =>
    `one leader, only the new nodes in list-peers, all on ${args.version}, version history; write the inventory${args.write_inventory ? ` to ${args.write_inventory}` : ''}`,
  async run(ctx, args) {
    const v = await verifyImmutable(ctx, args.version);
    rmSync(immutableStateFile(ctx), { force: true });
    if (!ctx.inventoryFile && !args.write_inventory)
      return {
        status: 'ok',
        message: `leader ${v.leader}; nodes ${v.nodes.join(', ')}; version history ${v.versionHistory.join(', ')} (no inventory to write)`,
        data: v,
      };
    const files = await recordUpgrade({
      inventoryFile: ctx.inventoryFile ?? args.write_inventory!,
      clusterName: ctx.clusterName,
      spec: ctx.spec,
      target: args.version,
      replacedBy: v.nodes,
      writeTo: args.write_inventory,
    });
    return {
      status: 'changed',
      message: `leader ${v.leader}; nodes ${v.nodes.join(', ')}; version history ${v.versionHistory.join(', ')}; inventory written: ${files.join(', ')}`,
      data: { ...v, inventory: files },
    };
  },
});
