import { resolve } from 'node:path';
import { z } from 'zod';
import { defineAction } from '../types.js';
import { prepareOutDir, Rekey, writeHolderFiles } from '../../ceremony/rekey-ceremony.js';
import { CeremonySession } from '../../ceremony/session.js';
import { readPublicKeyFile } from '../../secrets/pgp.js';

/**
 * Rekeys the unseal (or recovery) keys: new shares and threshold, each new share encrypted to its
 * holder's PGP key and written to its own file. With `verify`, the old keys keep working until
 * the new holders prove their shares (`vaultops rekey verify --nonce`); the step reports the
 * verification nonce. A failure before the threshold cancels the rekey (old keys stay valid).
 */
export default defineAction({
  name: 'vault.rekey',
  description: 'Replace the unseal (or recovery) key shares; new shares go PGP-encrypted to one file per holder.',
  schema: z.strictObject({
    keys: z.array(z.string().min(1)).min(1).describe('Current key shares (a secret_list var).'),
    shares: z.coerce.number().int().min(1).max(255),
    threshold: z.coerce.number().int().min(1).max(255),
    pgp_keys: z
      .preprocess(
        (v) =>
          typeof v === 'string'
            ? v
                .split(',')
                .map((s) => s.trim())
                .filter(Boolean)
            : v,
        z.array(z.string().min(1)).min(1),
      )
      .describe('Public key files, one per new holder, in order (a list, or one comma-separated string).'),
    out_dir: z.string().describe('Directory for the per-holder files (created 0700; files 0600, never overwritten).'),
    verify: z.boolean().default(true),
    target: z.enum(['barrier', 'recovery']).default('barrier'),
  }),
  changes: true,
  gates: ['leader reachable', 'no other rekey in progress'],
  describe: (a) =>
    `rekey ${a.target === 'recovery' ? 'recovery' : 'unseal'} keys to ${a.shares} shares / threshold ${a.threshold}${a.verify ? ' with verification' : ''}, files in ${a.out_dir}`,
  async run(ctx, args) {
    if (!args.verify && !ctx.confirmed) {
      // Without verification the old shares die the moment the threshold is reached.
      return {
        status: 'failed',
        message:
          'a rekey without verification needs a typed confirmation: add confirm: "{{ cluster.name }}" to this step, or keep verify: true; nothing was started',
      };
    }
    const pgpKeys = await Promise.all(args.pgp_keys.map((f) => readPublicKeyFile(f)));
    prepareOutDir(resolve(args.out_dir));
    const session = await CeremonySession.open(ctx.cluster);
    const rekey = await Rekey.start(session, {
      target: args.target,
      shares: args.shares,
      threshold: args.threshold,
      pgpKeys,
      verify: args.verify,
    });
    ctx.log(`rekey on ${session.node.name}: nonce ${rekey.nonce}, ${rekey.required} current shares needed`);
    try {
      for (const key of args.keys) {
        const step = await rekey.submit(key);
        if (step.kind === 'progress') {
          ctx.log(`progress ${step.progress} of ${step.required}`);
          continue;
        }
        const files = await writeHolderFiles(resolve(args.out_dir), step, step.fingerprints);
        const verifying = step.verificationNonce !== undefined;
        return {
          status: 'changed',
          message: verifying
            ? `new shares written to ${files.length} files; old keys stay valid until verified: vaultops rekey verify --nonce ${step.verificationNonce}`
            : `rekeyed: new shares written to ${files.length} files; the old shares no longer unseal`,
          data: { files, verification_nonce: step.verificationNonce, nonce: rekey.nonce },
        };
      }
      throw new Error(`the ${args.keys.length} shares given did not reach the threshold (${rekey.required})`);
    } catch (e) {
      await rekey.cancel().catch(() => undefined);
      throw e;
    }
  },
});
