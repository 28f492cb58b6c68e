import { z } from 'zod';
import { defineAction } from '../types.js';
import { rotateEncryptionKey } from '../../ceremony/rotate.js';

export default defineAction({
  name: 'vault.rotate',
  description:
    'Rotate the barrier encryption key (sys/rotate); old data stays readable. Shows the key term before and after.',
  schema: z.strictObject({}),
  changes: true,
  gates: ['leader reachable', 'token with sudo on sys/rotate'],
  describe: () => 'rotate the barrier encryption key on the leader (key term +1)',
  async run(ctx) {
    const r = await rotateEncryptionKey(ctx.cluster);
    return {
      status: 'changed',
      message: `key term ${r.before.term} -> ${r.after.term} on ${r.node}`,
      data: { term_before: r.before.term, term_after: r.after.term, node: r.node },
    };
  },
});
