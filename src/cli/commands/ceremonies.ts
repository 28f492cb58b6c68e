import type { Command } from 'commander';

/** vaultops root|rekey|rotate: key ceremonies; every call goes to the leader, which holds the ceremony's state in memory. */
export function registerCeremonyCommands(program: Command): void {
  const ceremonyOpts = (c: Command) =>
    c
      .requiredOption('-i, --inventory <file>', 'inventory file')
      .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
      .option('--non-interactive', 'never ask: missing answers are errors naming the flag that supplies them')
      .option('--break-lock', 'take over a stale cluster lock (its process is gone) or one held from another host')
      .option('--json', 'machine-readable output');
  const repeat = (value: string, previous: string[] = []) => [...previous, value];
  const root = program
    .command('root')
    .description('root tokens: generate from a quorum of key holders, revoke, hunt for leftovers');
  ceremonyOpts(
    root
      .command('generate')
      .description(
        'start a root token generation (local OTP, or your PGP key), collect the threshold of shares, decode',
      ),
  )
    .option('--pgp-key <file>', 'encrypt the new token to this PGP public key instead of using an OTP')
    .option(
      '--shares-from <ref>',
      'shares from env:NAME, file:PATH[#field] or cmd:COMMAND (else typed by holders at this terminal)',
    )
    .option('--token-out <file>', 'write the decoded token to this new file (0600)')
    .option('--encrypted-out <file>', 'PGP mode: write the encrypted token here (default: stdout)')
    .option('--show', 'print the decoded token once, at a terminal only')
    .option('--cancel-pending', 'cancel an attempt already in progress (e.g. left by a killed run) first')
    .option('--status', 'only show the attempt in progress, if any')
    .action(async (o) => (await import('../root.js')).rootGenerateCommand(o));
  ceremonyOpts(
    root.command('contribute').description('add your share to the attempt with this nonce (refused for any other)'),
  )
    .requiredOption('--nonce <nonce>', 'the nonce the operator announced')
    .option('--shares-from <ref>', 'your share from env:NAME, file:PATH or cmd:COMMAND (else typed, masked)')
    .option('--encrypted-out <file>', 'if yours is the last share of a PGP attempt: write the encrypted token here')
    .action(async (o) => (await import('../root.js')).rootContributeCommand(o));
  ceremonyOpts(
    root.command('revoke').description('revoke a token (and its children) by accessor or by a reference to it'),
  )
    .option('--accessor <accessor>', "the token's accessor")
    .option('--token <ref>', 'a reference to the token (env:NAME, file:PATH, prompt:LABEL), never the token itself')
    .option('--confirm <cluster>', 'the cluster name, instead of typing it')
    .action(async (o) => (await import('../root.js')).rootRevokeCommand(o));
  ceremonyOpts(
    root
      .command('hunt')
      .description('find tokens with the root policy (accessor, creation time, display name; never the token)'),
  )
    .option('--revoke', "revoke them after a typed confirmation (the inventory's own token last)")
    .option('--keep-own', 'do not revoke the token this run uses')
    .option('--confirm <cluster>', 'the cluster name, instead of typing it')
    .action(async (o) => (await import('../root.js')).rootHuntCommand(o));
  const rekey = program
    .command('rekey')
    .description('replace the unseal (or recovery) key shares: new count and threshold, PGP per holder, verification');
  ceremonyOpts(
    rekey
      .command('start')
      .description('start a rekey and collect the current shares; new shares go to one PGP-encrypted file per holder'),
  )
    .requiredOption('--shares <n>', 'number of new shares')
    .requiredOption('--threshold <t>', 'new threshold')
    .option('--pgp-key <file>', 'one public key per new holder, in order (repeat)', repeat)
    .option('--verify', 'new holders must prove their shares before the old ones stop working')
    .option('--out-dir <dir>', 'where the per-holder files are written', '.')
    .option('--shares-from <ref>', 'current shares from env:NAME, file:PATH[#field] or cmd:COMMAND')
    .option('--recovery', 'rekey the recovery keys (auto-unseal clusters)')
    .option(
      '--confirm <cluster>',
      'without --verify: the cluster name, instead of typing it (required when unattended)',
    )
    .action(async (o) => (await import('../rekey.js')).rekeyStartCommand(o));
  ceremonyOpts(rekey.command('contribute').description('add your current share to the rekey with this nonce'))
    .requiredOption('--nonce <nonce>', 'the rekey nonce')
    .option('--shares-from <ref>', 'your share from a reference (else typed, masked)')
    .option('--out-dir <dir>', 'if yours is the last share: where the per-holder files are written', '.')
    .option('--recovery', 'recovery-key rekey')
    .action(async (o) => (await import('../rekey.js')).rekeyContributeCommand(o));
  ceremonyOpts(
    rekey
      .command('verify')
      .description('prove new shares (verification mode); the old shares work until the threshold is proven'),
  )
    .requiredOption('--nonce <nonce>', 'the verification nonce')
    .option('--shares-from <ref>', 'new shares from a reference (else typed, masked)')
    .option('--recovery', 'recovery-key rekey')
    .action(async (o) => (await import('../rekey.js')).rekeyVerifyCommand(o));
  ceremonyOpts(
    rekey.command('status').description('the rekey in progress, if any: nonce, progress n of threshold, verification'),
  )
    .option('--recovery', 'recovery-key rekey')
    .action(async (o) => (await import('../rekey.js')).rekeyStatusCommand(o));
  ceremonyOpts(rekey.command('cancel').description('cancel the rekey with this nonce; the current shares stay valid'))
    .requiredOption('--nonce <nonce>', 'the rekey nonce')
    .option('--recovery', 'recovery-key rekey')
    .action(async (o) => (await import('../rekey.js')).rekeyCancelCommand(o));
  program
    .command('rotate')
    .description('rotate the barrier encryption key (sys/rotate); shows the key term before and after')
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .option('--json', 'machine-readable output')
    .option('--break-lock', 'take over a stale cluster lock (its process is gone) or one held from another host')
    .action(async (o) => (await import('../rotate.js')).rotateCommand(o));
}
