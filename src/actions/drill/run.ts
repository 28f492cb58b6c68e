import { join } from 'node:path';
import { z } from 'zod';
import { InputError } from '../../core/errors.js';
import { type BackupStore } from '../../backup/stores/store.js';
import { LocalDirStore } from '../../backup/stores/local-dir-store.js';
import { restoreSnapshot, type KeySetSecrets } from '../../backup/restore-snapshot.js';
import { formatMs } from '../../drill/drill-report.js';
import { drillReportDir, finishDrill } from '../../drill/finish-drill.js';
import { runDrill } from '../../drill/run-drill.js';
import { defineAction } from '../types.js';
import { identityForAction } from '../backup/identity.js';

/**
 * `drill.run`: the DR drill as a playbook step (playbooks/dr-drill.yml). It changes nothing on the
 * cluster; it starts and always tears down a scratch lab cluster on the machine running vaultops.
 */
export default defineAction({
  name: 'drill.run',
  description:
    'Restore the newest verified backup into a scratch lab cluster, unseal it, compare canaries by sha256, check the Raft index, tear it down; RTO/RPO reports.',
  schema: z.strictObject({
    store: z.string().optional().describe('Store of the cluster to take the backup from (default: its only one).'),
    from_dir: z.string().optional().describe('A folder of backups instead of an inventory store.'),
    report_dir: z
      .string()
      .optional()
      .describe('Where the reports go (default <state>/drills/<cluster>, where `vaultops check` looks).'),
    notify_url: z
      .string()
      .optional()
      .describe('Webhook for a failed drill (a secret var; never written to the journal).'),
    timeout: z.number().int().min(10).default(180).describe('Seconds the restored cluster may take to come back.'),
    identity: z
      .string()
      .optional()
      .describe(
        "Secret reference (env:, file:, cmd:) to the age identity or armored OpenPGP private key that opens an encrypted backup; default: the store's decrypt.identity.",
      ),
    identity_passphrase: z.string().optional().describe("Secret reference to the OpenPGP private key's passphrase."),
  }),
  changes: true,
  gates: ['newest backup verified before anything starts', 'scratch cluster torn down whatever happens'],
  describe: (args) =>
    `drill: restore the newest backup${args.from_dir ? ` in ${args.from_dir}` : ''} into a scratch lab cluster on this machine, read the canaries, tear it down`,
  async run(ctx, raw) {
    const args = {
      ...raw,
      store: raw.store || undefined,
      from_dir: raw.from_dir || undefined,
      report_dir: raw.report_dir || undefined,
      notify_url: raw.notify_url || undefined,
    };
    const store: BackupStore = args.from_dir ? new LocalDirStore(args.from_dir) : ctx.openStore({ store: args.store });
    const keysFor = async (label: string | undefined): Promise<KeySetSecrets> => {
      const own = ctx.spec.unseal;
      if ((label === undefined || label === own?.key_set) && own?.keys) {
        const keys = await ctx.resolveSecret(own.keys);
        // An operator's token (token:, or auth: {method: token}) unlocks the restored data; a login does not.
        const tokenRef = ctx.spec.token ?? (ctx.spec.auth?.method === 'token' ? ctx.spec.auth.token : undefined);
        const token = tokenRef ? await ctx.resolveSecret(tokenRef) : undefined;
        return {
          label: own.key_set ?? ctx.clusterName,
          keys: Array.isArray(keys) ? keys : keys.split(/[\s,]+/).filter(Boolean),
          token: typeof token === 'string' ? token : undefined,
        };
      }
      throw new InputError(
        `The backup needs the unseal keys of key set "${label ?? 'unknown'}", and ${ctx.clusterName}'s inventory entry has ${own?.key_set ?? 'none'}.`,
        { hint: 'Run `vaultops drill` with an inventory that lists the cluster holding that key set.' },
      );
    };
    let report;
    try {
      ({ report } = await runDrill({
        clusterName: ctx.clusterName,
        flavor: ctx.spec.flavor,
        canaries: ctx.spec.canaries ?? [],
        store,
        keysFor,
        restore: restoreSnapshot,
        liveCluster: ctx.cluster,
        scratchParent: join(ctx.stateDir, 'drills', '.scratch'),
        prompter: ctx.prompter,
        restoreTimeoutMs: args.timeout * 1000,
        log: ctx.log,
        identity: identityForAction(
          ctx,
          { identity: args.identity || undefined, passphrase: args.identity_passphrase || undefined },
          store,
        ),
      }));
    } finally {
      store.close?.();
    }
    const { files, warning } = await finishDrill(report, {
      reportDir: args.report_dir ?? drillReportDir(ctx.stateDir, ctx.clusterName),
      notifyUrl: args.notify_url,
    });
    if (warning) ctx.log(`warning: ${warning}`);
    const data = {
      drill_id: report.id,
      result: report.result,
      rto_ms: report.rto_ms,
      rpo_ms: report.rpo_ms,
      failed_phase: report.failed_phase,
      reports: files,
    };
    if (report.result !== 'passed')
      return {
        status: 'failed',
        message: `drill failed in ${report.failed_phase ?? '?'}: ${report.error ?? ''} (report ${files.html})`,
        data,
      };
    return {
      status: 'ok',
      message: `drill passed: RTO ${formatMs(report.rto_ms)}, RPO ${formatMs(report.rpo_ms)}; report ${files.html}`,
      data,
    };
  },
});
