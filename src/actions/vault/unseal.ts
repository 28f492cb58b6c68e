import { z } from 'zod';
import { defineAction } from '../types.js';
import { UnreachableError, VaultApiError } from '../../core/errors.js';
import { sleep } from '../../core/sleep.js';

export default defineAction({
  name: 'vault.unseal',
  description: 'Unseal a sealed node with key shares, then wait until it serves again.',
  schema: z.strictObject({
    keys: z
      .array(z.string().min(1))
      .min(1, 'at least one key share')
      .describe('Unseal key shares (a secret_list var, e.g. {{ vars.unseal_keys }}).'),
    key_set: z.string().optional().describe('Label of the key set, for messages.'),
    wait: z.number().int().min(0).default(60).describe('Seconds to wait for the node to serve after unsealing.'),
  }),
  changes: true,
  gates: ['node reachable'],
  describe: (_args, node) => `unseal ${node?.name ?? 'the node'} if it is sealed`,
  async run(ctx, args) {
    const node = ctx.node!;
    const client = ctx.cluster.client(node.name);
    let status;
    try {
      status = await client.sealStatus();
    } catch (e) {
      if (e instanceof UnreachableError) return { status: 'unreachable', message: e.message };
      throw e;
    }
    if (!status.sealed) return { status: 'skipped', reason: `${node.name} is not sealed` };
    if (status.type !== 'shamir')
      return {
        status: 'failed',
        message: `${node.name} uses the ${status.type} seal: it unseals itself (check the seal's KMS), key shares do not apply`,
      };
    const setName = args.key_set ?? ctx.spec.unseal?.key_set ?? "the inventory's key set";
    // Start from a clean attempt: a half-finished one (someone else's shares) would mix with ours.
    if (status.progress > 0) {
      ctx.log(`${node.name} had an unseal attempt in progress (${status.progress} of ${status.t}); starting over`);
      await client.unsealReset();
    }
    let used = 0;
    for (const key of args.keys) {
      if (ctx.signal.aborted) return { status: 'failed', message: 'interrupted while unsealing' };
      try {
        status = await client.unseal(key);
      } catch (e) {
        if (e instanceof VaultApiError && e.status === 400) {
          await client.unsealReset().catch(() => undefined);
          return {
            status: 'failed',
            message: `${node.name} refused the key shares of ${setName} (${e.errors.join('; ') || 'invalid share'}): they are not the shares of the key set that sealed this node`,
          };
        }
        throw e;
      }
      used++;
      ctx.log(`${node.name}: unseal progress ${status.sealed ? status.progress : status.t} of ${status.t}`);
      if (!status.sealed) break;
    }
    if (status.sealed) {
      return {
        status: 'failed',
        message: `${node.name} is still sealed after ${used} share${used === 1 ? '' : 's'} (needs ${status.t}): supply at least ${status.t} shares of ${setName}`,
      };
    }
    // Unsealed is not yet serving: a standby must find the active node (a Raft node may need to catch up).
    const deadline = Date.now() + args.wait * 1000;
    for (;;) {
      const h = await client.health().catch(() => undefined);
      if (h && (h.state === 'active' || h.state === 'standby' || h.state === 'perf-standby'))
        return { status: 'changed', message: `unsealed with ${used} share${used === 1 ? '' : 's'}; now ${h.state}` };
      if (Date.now() > deadline || ctx.signal.aborted)
        return {
          status: 'failed',
          message: `${node.name} unsealed but did not serve within ${args.wait} s (state ${h?.state ?? 'unreachable'})`,
        };
      await sleep(300);
    }
  },
});
